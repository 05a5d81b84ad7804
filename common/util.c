/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#define READ_CHUNK 4096

bool strcpy_bounded(char *dst, size_t n, const char *src) {
        size_t len;

        if (n == 0)
                return false;
        len = strlen(src);
        if (len >= n) {
                memcpy(dst, src, n - 1);
                dst[n - 1] = '\0';
                return false;
        }
        memcpy(dst, src, len + 1);
        return true;
}

static uint64_t clock_usec(clockid_t id) {
        struct timespec ts;

        if (clock_gettime(id, &ts) < 0)
                return 0;
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

uint64_t now_unix(void) {
        return clock_usec(CLOCK_REALTIME) / 1000000u;
}

uint64_t now_mono_usec(void) {
        return clock_usec(CLOCK_MONOTONIC);
}

/* Hex may carry keys: convert without tables or data-dependent branches. */
static char hex_digit(unsigned v) {
        /* v < 10 -> '0' + v, else 'a' + v - 10; the mask is all ones when v < 10. */
        unsigned lt10 = (v - 10u) >> 8;

        return (char) (v + 'a' - 10u - (lt10 & ('a' - 10u - '0')));
}

void hex_encode(char *out, const uint8_t *in, size_t n) {
        for (size_t i = 0; i < n; i++) {
                out[2 * i] = hex_digit(in[i] >> 4);
                out[2 * i + 1] = hex_digit(in[i] & 0xf);
        }
        out[2 * n] = '\0';
}

/* Value of one hex digit (either case); *bad gets all ones if c is not one. */
static uint8_t hex_value(unsigned char c, unsigned *bad) {
        unsigned num = c ^ 0x30u;                       /* '0'..'9' -> 0..9 */
        unsigned num_ok = (num - 10u) >> 8;             /* all ones iff num < 10 */
        unsigned alpha = (c & ~0x20u) - 55u;            /* 'A'..'F'/'a'..'f' -> 10..15 */
        unsigned alpha_ok = ((alpha - 10u) ^ (alpha - 16u)) >> 8;

        *bad |= ~(num_ok | alpha_ok) & 0xffu;
        return (uint8_t) ((num_ok & num) | (alpha_ok & alpha));
}

int hex_decode(uint8_t *out, size_t n, const char *hex, size_t hexlen) {
        unsigned bad = 0;

        if (n > SIZE_MAX / 2 || hexlen != 2 * n)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                uint8_t hi = hex_value((unsigned char) hex[2 * i], &bad);
                uint8_t lo = hex_value((unsigned char) hex[2 * i + 1], &bad);

                out[i] = (uint8_t) (hi << 4 | lo);
        }
        if (bad) {
                sodium_memzero(out, n);
                return -EINVAL;
        }
        return 0;
}

/* realloc could leave a secret-bearing copy behind: copy, wipe, free instead. */
static int secbuf_grow(struct secbuf *b, size_t *cap, size_t newcap) {
        uint8_t *p = malloc(newcap);

        if (!p)
                return -ENOMEM;
        if (b->p) {
                memcpy(p, b->p, b->len);
                sodium_memzero(b->p, *cap);
                free(b->p);
        }
        b->p = p;
        *cap = newcap;
        return 0;
}

int read_all_fd(int fd, size_t max, uint8_t **out, size_t *len) {
        /* Read up to one byte past max so "exactly max" and "more" differ. */
        size_t limit = max < SIZE_MAX ? max + 1 : SIZE_MAX;
        struct secbuf b = { NULL, 0 };
        size_t cap = 0;
        int r;

        r = secbuf_grow(&b, &cap, limit < READ_CHUNK ? limit : READ_CHUNK);
        while (r == 0) {
                ssize_t k;

                if (b.len == cap) {
                        r = secbuf_grow(&b, &cap, cap <= limit / 2 ? cap * 2 : limit);
                        continue;
                }
                k = read(fd, b.p + b.len, cap - b.len);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        r = -errno;
                else if (k == 0)
                        break;
                else if ((b.len += (size_t) k) > max)
                        r = -EFBIG;
        }
        if (r < 0) {
                /* secbuf_wipe only wipes len bytes; the spare capacity is clean. */
                secbuf_wipe(&b);
                return r;
        }
        *out = b.p;
        *len = b.len;
        return 0;
}

#define SETTLE_TRIES 12 /* quiet waits of FILE_QUIET_MSEC: about three seconds, then give up */

static int64_t ts_nsec(const struct timespec *ts) {
        return (int64_t) ts->tv_sec * 1000000000 + ts->tv_nsec;
}

static bool same_version(const struct stat *a, const struct stat *b) {
        return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
               ts_nsec(&a->st_mtim) == ts_nsec(&b->st_mtim) && ts_nsec(&a->st_ctim) == ts_nsec(&b->st_ctim);
}

/* How long to wait before a file changed at ctime may be read: a writer may be
 * between two writes (or after a truncate) without the file showing it. A
 * ctime far in the future is a clock step, not a writer: read it. */
static int64_t quiet_wait_nsec(const struct stat *st) {
        const int64_t quiet = (int64_t) FILE_QUIET_MSEC * 1000000;
        struct timespec now;

        if (clock_gettime(CLOCK_REALTIME, &now) < 0)
                return 0;
        int64_t age = ts_nsec(&now) - ts_nsec(&st->st_ctim);
        return age < quiet && age > -quiet ? quiet - age : 0;
}

static void sleep_nsec(int64_t ns) {
        struct timespec ts = { .tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000 };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* One try: 0 with the file, -EAGAIN when it was changing, < 0 on an error. */
static int read_settled_once(int dfd, const char *name, size_t max, struct stat *st, struct secbuf *b) {
        _cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        struct stat after, named;
        int64_t wait;
        int rc;

        if (fd < 0 || fstat(fd, st) < 0)
                return -errno;
        if (!S_ISREG(st->st_mode))
                return -EINVAL;
        if (st->st_size > 0 && (uint64_t) st->st_size > max)
                return -EFBIG;
        wait = quiet_wait_nsec(st);
        if (wait > 0) {
                sleep_nsec(wait);
                return -EAGAIN;
        }

        rc = read_all_fd(fd, max, &b->p, &b->len);
        if (rc < 0)
                return rc;

        if (fstat(fd, &after) < 0 || fstatat(dfd, name, &named, AT_SYMLINK_NOFOLLOW) < 0 ||
            !same_version(st, &after) || !same_version(st, &named) || (uint64_t) st->st_size != b->len) {
                secbuf_wipe(b);
                return -EAGAIN;
        }
        return 0;
}

int read_settled_file_at(int dfd, const char *name, size_t max, struct stat *st, uint8_t **out, size_t *len) {
        struct secbuf b = { NULL, 0 };
        int rc = -EAGAIN;

        *out = NULL;
        *len = 0;
        for (int i = 0; i < SETTLE_TRIES && rc == -EAGAIN; i++)
                rc = read_settled_once(dfd, name, max, st, &b);
        if (rc < 0)
                return rc;

        *out = b.p;
        *len = b.len;
        return 0;
}

int write_all(int fd, const void *buf, size_t n) {
        const uint8_t *p = buf;

        while (n > 0) {
                ssize_t k = write(fd, p, n);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        return -EIO;
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

/* Exactly n decimal digits, nothing else. -EINVAL if malformed, -ERANGE on overflow. */
static int parse_digits(const char *s, size_t n, uint64_t *out) {
        uint64_t v = 0;

        if (n == 0)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                unsigned d = (unsigned) (s[i] - '0');

                if (v > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        *out = v;
        return 0;
}

int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out) {
        uint64_t v;
        int r;

        if (!s)
                return -EINVAL;
        r = parse_digits(s, strlen(s), &v);
        if (r < 0)
                return r;
        if (v < min || v > max)
                return -ERANGE;
        *out = v;
        return 0;
}

static uint64_t duration_unit(char c) {
        switch (c) {
        case 's': return 1;
        case 'm': return 60;
        case 'h': return 60 * 60;
        case 'd': return 24 * 60 * 60;
        default:  return 0;
        }
}

int parse_duration_sec(const char *s, uint64_t *out) {
        uint64_t v, unit = 1;
        size_t n;
        int r;

        if (!s)
                return -EINVAL;
        n = strlen(s);
        if (n > 0 && (s[n - 1] < '0' || s[n - 1] > '9')) {
                unit = duration_unit(s[n - 1]);
                if (unit == 0)
                        return -EINVAL;
                n--;
        }
        r = parse_digits(s, n, &v);
        if (r < 0)
                return r;
        if (v > UINT64_MAX / unit)
                return -ERANGE;
        *out = v * unit;
        return 0;
}
