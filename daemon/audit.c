/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The audit log: JSON lines, each closed by "prev" (the previous record's MAC)
 * and "mac" (BLAKE2b-256 of the line up to `,"mac":"`, keyed with the current
 * segment's key). docs/AUDIT.md describes the format and what verification
 * proves. The verifier's input is hostile: it is read by a small scanner that
 * knows only the flat objects written here.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <systemd/sd-journal.h>

#include "audit.h"
#include "util.h"

#define MAC_SIZE 32
#define LINE_MAX_BYTES 65536 /* one record, newline excluded */
#define TAIL_WINDOW (4 * LINE_MAX_BYTES)
#define MAC_MARK ",\"mac\":\""
#define MARK_LEN (sizeof(MAC_MARK) - 1)
#define END_LEN (MARK_LEN + 2 * MAC_SIZE + 2) /* ,"mac":"<64 hex>"} */
#define BOXED_SIZE (crypto_box_SEALBYTES + MAC_SIZE)
#define BOXED_B64_LEN sodium_base64_ENCODED_LEN(BOXED_SIZE, sodium_base64_VARIANT_ORIGINAL)
#define FP_SIZE 8

/* Bytes a string field may take in the record, escaped, the marker "..."
 * included: the escaped output is what fills the disk, and a non-ASCII byte
 * escapes to six. Longer values are cut (never inside an escape), end with
 * "..." and the record says "truncated". The worst record stays near 6 KiB. */
#define FIELD_MAX 256
#define NAME_MAX_OUT 1024
#define TRUNC_MARK "..."

/* journald MESSAGE_IDs, one per event type (generated once, never change). */
#define MID_ALLOW "1482c5e568254ed8b2dd96e2dd22fa40"
#define MID_DENY "189ed07a93f1415b80c5d463cdf9a753"
#define MID_SEGMENT "6a981197437b430c9f8d5e44966e3115"

struct line {
        char *buf;      /* buf[0] is a spare byte for a leading "\n" */
        size_t len;     /* bytes of the record, from buf + 1 */
        bool overflow;
        bool truncated; /* a field value was cut to its cap */
};

struct audit {
        int fd;
        bool journal;
        bool torn;               /* the file may end inside a line: start the next write with "\n" */
        bool keyed;              /* false: an unkeyed segment (plain BLAKE2b) */
        uint64_t seq;            /* of the last record written */
        uint8_t head[MAC_SIZE];  /* its MAC */
        uint64_t gen;            /* the store generation every record carries: the anchor */
        uint8_t *key;            /* current segment key, sodium_malloc'd */
        uint8_t *next;           /* the next segment's key until its record is written */
        struct line ln;
};

/* ---- building a line ---- */

static void put(struct line *l, const char *s, size_t n) {
        if (l->overflow || n > LINE_MAX_BYTES - l->len) {
                l->overflow = true;
                return;
        }
        memcpy(l->buf + 1 + l->len, s, n);
        l->len += n;
}

/* A string literal, its length counted by the compiler. */
#define put_lit(l, lit) put((l), "" lit, sizeof(lit) - 1)

static void putf(struct line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct line *l, const char *fmt, ...) {
        char tmp[160];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t) n >= sizeof(tmp))
                l->overflow = true;
        else
                put(l, tmp, (size_t) n);
}

/* Length of the valid UTF-8 sequence at s (its code point in *cp), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp) {
        static const uint32_t min[5] = { 0, 0, 0x80, 0x800, 0x10000 };
        size_t len = s[0] < 0x80 ? 1 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : s[0] >= 0xe0 && s[0] < 0xf0 ? 3
                                      : s[0] >= 0xf0 && s[0] < 0xf5 ? 4 : 0;
        if (len == 0 || len > n)
                return 0;
        uint32_t c = len == 1 ? s[0] : s[0] & (0x7f >> len);
        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                c = c << 6 | (s[i] & 0x3f);
        }
        if (c < min[len] || c > 0x10ffff || (c >= 0xd800 && c < 0xe000))
                return 0; /* overlong, out of range, or a surrogate */
        *cp = c;
        return len;
}

static size_t put_u(char t[static 6], uint32_t u) {
        static const char hexd[] = "0123456789abcdef";
        t[0] = '\\';
        t[1] = 'u';
        for (int i = 0; i < 4; i++)
                t[2 + i] = hexd[u >> (12 - 4 * i) & 15];
        return 6;
}

static bool plain(unsigned char c) {
        return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
}

/* The escape of the character at s: up to 12 bytes in t. *k: its input length. */
static size_t escape_one(const unsigned char *s, size_t n, char t[static 12], size_t *k) {
        uint32_t cp = 0;
        *k = utf8_seq(s, n, &cp);
        if (*k == 0) {
                *k = 1;
                return put_u(t, 0xdc00u | s[0]);
        }
        if (cp == '"' || cp == '\\') {
                t[0] = '\\';
                t[1] = (char) cp;
                return 2;
        }
        if (cp < 0x10000)
                return put_u(t, cp);
        size_t m = put_u(t, 0xd800u + ((cp - 0x10000) >> 10));
        return m + put_u(t + m, 0xdc00u + ((cp - 0x10000) & 0x3ff));
}

/* Output is printable ASCII only: a hostile name can neither end the string
 * nor the line, nor put terminal escapes or bidi tricks before an admin's
 * eyes. Valid UTF-8 becomes \uXXXX; an invalid byte XX becomes \udcXX (the
 * "surrogateescape" convention), so the original bytes can be recovered.
 * Writes at most max bytes; false when the value did not fit whole. */
static bool put_escaped(struct line *l, const unsigned char *s, size_t n, size_t max) {
        size_t out = 0;
        for (size_t i = 0; i < n;) {
                size_t run = i;
                while (run < n && plain(s[run]) && out + (run - i) < max)
                        run++;
                put(l, (const char *) s + i, run - i);
                out += run - i;
                if ((i = run) == n)
                        break;
                char t[12];
                size_t k, m = plain(s[i]) ? 0 : escape_one(s + i, n - i, t, &k);
                if (m == 0 || out + m > max)
                        return false;
                put(l, t, m);
                out += m;
                i += k;
        }
        return true;
}

/* ,"key":"value" of n input bytes; the value at most max bytes as written. */
static void put_strn(struct line *l, const char *key, const char *s, size_t n, size_t max) {
        putf(l, ",\"%s\":\"", key);
        size_t start = l->len;
        if (!put_escaped(l, (const unsigned char *) s, n, max)) {
                l->len = start;
                put_escaped(l, (const unsigned char *) s, n, max - (sizeof(TRUNC_MARK) - 1));
                put_lit(l, TRUNC_MARK);
                l->truncated = true;
        }
        put_lit(l, "\"");
}

/* The same for a string, or null. Beyond 6 * max input bytes nothing more
 * could fit, so no more is looked at. */
static void put_str(struct line *l, const char *key, const char *s, size_t max) {
        if (s)
                put_strn(l, key, s, strnlen(s, 6 * max + 1), max);
        else
                putf(l, ",\"%s\":null", key);
}

static void put_head(struct audit *a, const char *event) {
        struct timespec ts;
        struct tm tm;
        char t[32];
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%S", &tm);
        a->ln.len = 0;
        a->ln.overflow = a->ln.truncated = false;
        putf(&a->ln, "{\"seq\":%llu,\"time\":\"%s.%06ldZ\",\"event\":\"%s\",\"gen\":%llu",
             (unsigned long long) (a->seq + 1), t, ts.tv_nsec / 1000, event, (unsigned long long) a->gen);
}

/* An unkeyed segment still hashes each record, so that an edit anywhere in
 * it breaks the chain up to the first keyed record after it. */
static void mac_line(uint8_t mac[static MAC_SIZE], const uint8_t *key, const char *line, size_t len) {
        crypto_generichash(mac, MAC_SIZE, (const uint8_t *) line, len, key, key ? MAC_SIZE : 0);
}

/* A failed write may have left part of the line in the file: cut it off
 * again, or failing that make the next record start on a fresh line. */
static void undo_partial(struct audit *a, size_t written) {
        struct stat st;
        if (written == 0)
                return;
        if (fstat(a->fd, &st) < 0 || st.st_size < (off_t) written ||
            ftruncate(a->fd, st.st_size - (off_t) written) < 0)
                a->torn = true;
}

/* Close the line with prev and mac (under key) and append it with a single
 * write(). Advances the chain only once the whole line is in the file. */
static int finish(struct audit *a, const uint8_t *key) {
        struct line *l = &a->ln;
        char hex[2 * MAC_SIZE + 1];
        uint8_t mac[MAC_SIZE];
        if (a->seq == UINT64_MAX)
                return -EOVERFLOW;
        if (l->truncated)
                put_lit(l, ",\"truncated\":true");
        hex_encode(hex, a->head, MAC_SIZE);
        putf(l, ",\"prev\":\"%s\"", hex);
        mac_line(mac, key, l->buf + 1, l->len);
        hex_encode(hex, mac, MAC_SIZE);
        putf(l, MAC_MARK "%s\"}", hex);
        if (l->overflow)
                return -E2BIG;
        l->buf[1 + l->len] = '\n';
        l->buf[0] = '\n';
        const char *p = a->torn ? l->buf : l->buf + 1;
        size_t n = l->len + 1 + a->torn;
        ssize_t w;
        do
                w = write(a->fd, p, n);
        while (w < 0 && errno == EINTR);
        if (w < 0 || (size_t) w != n) {
                int rc = w < 0 ? -errno : -EIO;
                undo_partial(a, w < 0 ? 0 : (size_t) w);
                return rc;
        }
        a->torn = false;
        a->seq++;
        memcpy(a->head, mac, MAC_SIZE);
        return 0;
}

/* ---- segments ---- */

static void fingerprint(char out[static 2 * FP_SIZE + 1], const uint8_t pk[static 32]) {
        uint8_t fp[FP_SIZE];
        crypto_generichash(fp, sizeof(fp), pk, 32, NULL, 0);
        hex_encode(out, fp, sizeof(fp));
}

static void put_sealed_key(struct line *l, const uint8_t *key, const uint8_t pk[static 32]) {
        uint8_t boxed[BOXED_SIZE];
        char b64[BOXED_B64_LEN], fp[2 * FP_SIZE + 1];
        crypto_box_seal(boxed, key, MAC_SIZE, pk);
        sodium_bin2base64(b64, sizeof(b64), boxed, sizeof(boxed), sodium_base64_VARIANT_ORIGINAL);
        fingerprint(fp, pk);
        put_lit(l, ",\"key\":\"");
        put(l, b64, strlen(b64));
        putf(l, "\",\"pk\":\"%s\"", fp);
}

static void journal_segment(const struct audit *a, const char *mode, const char *cause) {
        if (a->journal)
                sd_journal_send("MESSAGE=coffer: audit log segment %s (%s) at record %llu, store generation %llu",
                                mode, cause, (unsigned long long) a->seq, (unsigned long long) a->gen,
                                "MESSAGE_ID=" MID_SEGMENT, "PRIORITY=6", "COFFER_AUDIT_MODE=%s", mode,
                                "COFFER_AUDIT_SEQ=%llu", (unsigned long long) a->seq,
                                "COFFER_STORE_GENERATION=%llu", (unsigned long long) a->gen, NULL);
}

/* Write the segment record under the new key (master_key, or a fresh random
 * one sealed to box_pk, or none); switch to it only once the record is in the
 * file, so a failed switch leaves the old segment going. */
static int segment_start(struct audit *a, const char *cause, const uint8_t *master_key, const uint8_t *box_pk) {
        bool keyed = master_key || box_pk;
        if (master_key)
                memcpy(a->next, master_key, MAC_SIZE);
        else
                randombytes_buf(a->next, MAC_SIZE);
        put_head(a, "segment");
        putf(&a->ln, ",\"mode\":\"%s\",\"cause\":\"%s\"", master_key ? "master" : "sealed", cause);
        if (box_pk)
                put_sealed_key(&a->ln, a->next, box_pk);
        else if (!master_key)
                put_lit(&a->ln, ",\"key\":null");
        int rc = finish(a, keyed ? a->next : NULL);
        if (rc < 0) {
                sodium_memzero(a->next, MAC_SIZE);
                return rc;
        }
        uint8_t *old = a->key;
        a->key = a->next;
        a->next = old;
        sodium_memzero(a->next, MAC_SIZE);
        a->keyed = keyed;
        journal_segment(a, master_key ? "master" : box_pk ? "sealed" : "unkeyed", cause);
        return 0;
}

int audit_unsealed(struct audit *a, const uint8_t mac_key[static 32]) {
        return segment_start(a, "unsealed", mac_key, NULL);
}

int audit_sealed(struct audit *a, const uint8_t box_pk[static 32]) {
        return segment_start(a, "sealed", NULL, box_pk);
}

/* ---- a scanner for the flat objects written above ---- */

enum vtype { V_NONE, V_STR, V_NUM, V_NULL, V_BOOL };

struct span {
        const char *p; /* for strings, without the quotes, escapes not decoded */
        size_t n;
        enum vtype type;
};

struct fields {
        struct span seq, event, gen, mode, key, prev, mac;
};

static bool is_hex(char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* The writer's hex is lowercase; accepting other spellings of the same MAC
 * would let a byte of the file change without verification noticing. */
static bool lower_hex(const char *s, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

/* p is at the opening quote; returns the closing quote or NULL. */
static const char *scan_string(const char *p, const char *end) {
        for (p++; p < end; p++) {
                unsigned char c = (unsigned char) *p;
                if (c == '"')
                        return p;
                if (c < 0x20)
                        return NULL;
                if (c != '\\')
                        continue;
                if (++p >= end)
                        return NULL;
                if (*p == 'u') {
                        if (end - p < 5 || !is_hex(p[1]) || !is_hex(p[2]) || !is_hex(p[3]) || !is_hex(p[4]))
                                return NULL;
                        p += 4;
                } else if (!memchr("\"\\/bfnrt", *p, 8))
                        return NULL;
        }
        return NULL;
}

static const char *scan_literal(const char *p, const char *end, const char *lit, enum vtype t, struct span *v) {
        size_t n = strlen(lit);
        if ((size_t) (end - p) < n || memcmp(p, lit, n) != 0)
                return NULL;
        *v = (struct span){ p, n, t };
        return p + n;
}

/* Only what the writer produces: strings, unsigned integers, null, true. */
static const char *scan_value(const char *p, const char *end, struct span *v) {
        if (p >= end)
                return NULL;
        if (*p == '"') {
                const char *q = scan_string(p, end);
                if (q)
                        *v = (struct span){ p + 1, (size_t) (q - p - 1), V_STR };
                return q ? q + 1 : NULL;
        }
        if (*p == 'n')
                return scan_literal(p, end, "null", V_NULL, v);
        if (*p == 't')
                return scan_literal(p, end, "true", V_BOOL, v);
        const char *q = p;
        while (q < end && *q >= '0' && *q <= '9' && q - p < 20)
                q++;
        if (q == p)
                return NULL;
        *v = (struct span){ p, (size_t) (q - p), V_NUM };
        return q;
}

static struct span *field_slot(struct fields *f, const char *k, size_t n) {
#define IS(name) (n == sizeof(#name) - 1 && memcmp(k, #name, n) == 0)
        if (IS(seq))
                return &f->seq;
        if (IS(event))
                return &f->event;
        if (IS(gen))
                return &f->gen;
        if (IS(mode))
                return &f->mode;
        if (IS(key))
                return &f->key;
        if (IS(prev))
                return &f->prev;
        if (IS(mac))
                return &f->mac;
#undef IS
        return NULL;
}

/* {"k":v,...} covering exactly [p, end), no whitespace. A repeated field we
 * rely on is refused: other readers might take the other copy. */
static int scan_object(const char *p, const char *end, struct fields *f) {
        memset(f, 0, sizeof(*f));
        if (p >= end || *p++ != '{')
                return -EBADMSG;
        for (;;) {
                struct span v;
                if (p >= end || *p != '"')
                        return -EBADMSG;
                const char *q = scan_string(p, end);
                if (!q || q + 1 >= end || q[1] != ':')
                        return -EBADMSG;
                struct span *slot = field_slot(f, p + 1, (size_t) (q - p - 1));
                p = scan_value(q + 2, end, &v);
                if (!p || (slot && slot->type != V_NONE))
                        return -EBADMSG;
                if (slot)
                        *slot = v;
                if (p < end && *p == '}')
                        return p + 1 == end ? 0 : -EBADMSG;
                if (p >= end || *p++ != ',')
                        return -EBADMSG;
        }
}

static bool span_is(const struct span *s, const char *lit) {
        return s->type == V_STR && s->n == strlen(lit) && memcmp(s->p, lit, s->n) == 0;
}

static bool span_u64(const struct span *s, uint64_t *out) {
        uint64_t v = 0;
        if (s->type != V_NUM || s->n == 0 || (s->n > 1 && s->p[0] == '0'))
                return false;
        for (size_t i = 0; i < s->n; i++) {
                unsigned d = (unsigned) (s->p[i] - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return false;
                v = v * 10 + d;
        }
        *out = v;
        return true;
}

struct record {
        struct fields f;
        uint64_t seq;
        uint8_t prev[MAC_SIZE];
        uint8_t mac[MAC_SIZE];
        size_t maced; /* bytes covered by the MAC */
};

/* Is this line a whole record as the writer makes them? Nothing is
 * authenticated yet. */
static bool parse_record(const char *line, size_t len, struct record *r) {
        if (len <= END_LEN)
                return false;
        const char *mark = line + len - END_LEN;
        if (memcmp(mark, MAC_MARK, MARK_LEN) != 0 || memcmp(line + len - 2, "\"}", 2) != 0 ||
            scan_object(line, line + len, &r->f) < 0 || !span_u64(&r->f.seq, &r->seq) || r->f.prev.type != V_STR ||
            !lower_hex(r->f.prev.p, r->f.prev.n) || !lower_hex(mark + MARK_LEN, 2 * MAC_SIZE) ||
            hex_decode(r->prev, MAC_SIZE, r->f.prev.p, r->f.prev.n) < 0 ||
            hex_decode(r->mac, MAC_SIZE, mark + MARK_LEN, 2 * MAC_SIZE) < 0)
                return false;
        r->maced = (size_t) (mark - line);
        return true;
}

/* ---- open: continue the chain of an existing file ---- */

/* Walk back over the window's lines to the last whole record; skip lines a
 * crash may have torn. The window's first line may start before the window
 * and is only used if the window is the whole file. */
static int chain_from_window(struct audit *a, const char *buf, size_t n, bool whole_file) {
        struct record r;
        a->torn = n > 0 && buf[n - 1] != '\n';
        for (size_t end = n; end > 0;) {
                if (buf[end - 1] == '\n')
                        end--;
                size_t start = end;
                while (start > 0 && buf[start - 1] != '\n')
                        start--;
                if (start == 0 && !whole_file)
                        break;
                if (parse_record(buf + start, end - start, &r)) {
                        a->seq = r.seq;
                        memcpy(a->head, r.mac, MAC_SIZE);
                        /* A log written before generations anchors none. */
                        if (r.f.gen.type != V_NONE && !span_u64(&r.f.gen, &a->gen))
                                return -EBADMSG;
                        return 0;
                }
                end = start;
        }
        /* No record: only a file that is one torn first record is ours. */
        return whole_file && !memchr(buf, '\n', n) ? 0 : -EBADMSG;
}

static int chain_from_tail(struct audit *a) {
        struct stat st;
        if (fstat(a->fd, &st) < 0)
                return -errno;
        if (st.st_size == 0)
                return 0;
        off_t off = st.st_size > TAIL_WINDOW ? st.st_size - TAIL_WINDOW : 0;
        size_t want = (size_t) (st.st_size - off), got = 0;
        _cleanup_free_ char *buf = malloc(want);
        if (!buf)
                return -ENOMEM;
        while (got < want) {
                ssize_t r = pread(a->fd, buf + got, want - got, off + (off_t) got);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        return r < 0 ? -errno : -EIO;
                got += (size_t) r;
        }
        return chain_from_window(a, buf, got, off == 0);
}

/* O_NONBLOCK so that a FIFO planted at the path cannot hang the open; read
 * and write on one descriptor so the tail we chain onto is the file we append
 * to. The lock keeps a second daemon from forking the chain. */
static int open_log(const char *path) {
        struct stat st;
        int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK, 0600);
        if (fd < 0)
                return errno == EISDIR || errno == ENXIO ? -EINVAL : -errno; /* a directory, a socket */
        int rc = fstat(fd, &st) < 0 ? -errno
                 : !S_ISREG(st.st_mode) ? -EINVAL
                 : (st.st_mode & (S_IWGRP | S_IWOTH)) || (st.st_uid != geteuid() && st.st_uid != 0) ? -EPERM
                 : fcntl(fd, F_SETFL, O_APPEND) < 0 ? -errno
                 : flock(fd, LOCK_EX | LOCK_NB) < 0 ? (errno == EWOULDBLOCK ? -EBUSY : -errno)
                 : 0;
        if (rc < 0) {
                close(fd);
                return rc;
        }
        return fd;
}

static int audit_new(struct audit **out) {
        struct audit *a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->fd = -1;
        a->ln.buf = malloc(LINE_MAX_BYTES + 2);
        a->key = sodium_malloc(MAC_SIZE);
        a->next = sodium_malloc(MAC_SIZE);
        *out = a;
        if (!a->ln.buf || !a->key || !a->next)
                return -ENOMEM;
        /* journald "when it is there": no socket, no message per request. */
        const char *nj = getenv("COFFER_AUDIT_NO_JOURNAL");
        a->journal = !(nj && strcmp(nj, "1") == 0) && access("/run/systemd/journal/socket", W_OK) == 0;
        return 0;
}

int audit_open(struct audit **out, const char *path, const uint8_t *box_pk) {
        struct audit *a = NULL;
        int rc = audit_new(&a);
        if (rc == 0)
                rc = a->fd = open_log(path);
        if (rc >= 0)
                rc = chain_from_tail(a);
        if (rc >= 0)
                rc = segment_start(a, "start", NULL, box_pk);
        if (rc < 0) {
                audit_close(a);
                return rc;
        }
        *out = a;
        return 0;
}

void audit_close(struct audit *a) {
        if (!a)
                return;
        if (a->fd >= 0)
                close(a->fd);
        if (a->key)
                sodium_free(a->key); /* sodium_free wipes */
        if (a->next)
                sodium_free(a->next);
        free(a->ln.buf);
        free(a);
}

uint64_t audit_generation(const struct audit *a) {
        return a->gen;
}

void audit_set_generation(struct audit *a, uint64_t gen) {
        a->gen = gen;
}

int audit_free_space(const struct audit *a, uint64_t *bytes) {
        struct statvfs sv;
        if (fstatvfs(a->fd, &sv) < 0)
                return -errno;
        /* What an unprivileged writer may use: the daemon may not be able to
         * dip into the blocks reserved for root. */
        *bytes = (uint64_t) sv.f_bavail * sv.f_frsize;
        return 0;
}

void audit_head(const struct audit *a, uint64_t *seq, uint8_t mac[static 32]) {
        *seq = a->seq;
        memcpy(mac, a->head, MAC_SIZE);
}

const char *audit_strerror(int rc) {
        switch (rc) {
        case -ELOOP:
                return "it is a symbolic link; the audit log must be a regular file";
        case -EINVAL:
                return "it is not a regular file";
        case -EPERM:
                return "it is writable by group or others, or owned by another user; make it owned by the "
                       "daemon's user with mode 0600 (chmod go-w)";
        case -EBUSY:
                return "another cofferd is writing it";
        case -EBADMSG:
                return "it does not end with an audit record (not an audit log, or its end is damaged); "
                       "move it aside to start a new log";
        default:
                return strerror(rc < 0 ? -rc : rc);
        }
}

/* ---- records ---- */

static const char *result_name(int result, char *buf, size_t n) {
        const char *name = result < 0 && result > -4096 ? strerrorname_np(-result) : NULL;
        if (result == 0)
                return "ok";
        if (name)
                return name;
        snprintf(buf, n, "error %d", result);
        return buf;
}

/* MESSAGE is shown as text: no control characters from callers there. The
 * structured fields carry the exact bytes. */
static const char *printable(char *dst, size_t n, const char *s) {
        size_t i = 0;
        for (; s && s[i] && i + 1 < n; i++)
                dst[i] = (unsigned char) s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
        dst[i] = '\0';
        return s ? dst : "-";
}

static void journal_request(const struct audit_event *ev, const char *result) {
        const struct peer *p = ev->peer;
        char op[64], obj[256];
        bool deny = ev->decision && strcmp(ev->decision, "deny") == 0;
        sd_journal_send("MESSAGE=coffer: %s %s by uid %ld: %s%s%s", printable(op, sizeof(op), ev->op),
                        printable(obj, sizeof(obj), ev->object), p ? (long) p->uid : -1L,
                        ev->decision ? ev->decision : "-", ev->result ? " " : "", ev->result ? result : "",
                        "MESSAGE_ID=%s", deny ? MID_DENY : MID_ALLOW, "PRIORITY=%d", deny ? 4 : 6,
                        "COFFER_OP=%s", ev->op ? ev->op : "", "COFFER_OBJECT=%s", ev->object ? ev->object : "",
                        "COFFER_DECISION=%s", ev->decision ? ev->decision : "", "COFFER_UID=%ld",
                        p ? (long) p->uid : -1L, "COFFER_PID=%ld", p ? (long) p->pid : -1L, "COFFER_RESULT=%s",
                        result, NULL);
}

/* The peer's strings are fixed arrays: bounded by their size even if a bug
 * left one unterminated. */
#define put_field(l, key, arr, max) put_strn((l), (key), (arr), strnlen((arr), sizeof(arr)), (max))

static void put_peer(struct line *l, const struct peer *p) {
        char file[PEER_EXE_FILE_MAX];
        if (!p)
                return;
        putf(l, ",\"uid\":%u,\"gid\":%u,\"pid\":%ld", (unsigned) p->uid, (unsigned) p->gid, (long) p->pid);
        put_field(l, "user", p->user, FIELD_MAX);
        put_field(l, "exe", p->exe, NAME_MAX_OUT);
        /* The path is the caller's view; the file is what ran. Flags, as
         * "truncated", only when they hold. */
        peer_exe_file(p, file, sizeof(file));
        put_field(l, "exe_file", file, FIELD_MAX);
        if (!p->exe_verified)
                put_lit(l, ",\"exe_unverified\":true");
        if (p->foreign_ns)
                put_lit(l, ",\"foreign_ns\":true");
        put_field(l, "unit", p->unit, FIELD_MAX);
        if (p->audit_session == UINT32_MAX)
                put_lit(l, ",\"audit_session\":null");
        else
                putf(l, ",\"audit_session\":%u", (unsigned) p->audit_session);
        put_field(l, "login_session", p->login_session, FIELD_MAX);
}

int audit_record(struct audit *a, const struct audit_event *ev) {
        char rbuf[32];
        const char *result = result_name(ev->result, rbuf, sizeof(rbuf));
        struct line *l = &a->ln;
        put_head(a, "request");
        put_str(l, "op", ev->op, FIELD_MAX);
        put_str(l, "object", ev->object, NAME_MAX_OUT);
        put_str(l, "decision", ev->decision, FIELD_MAX);
        put_str(l, "rule", ev->rule, NAME_MAX_OUT);
        put_str(l, "result", result, FIELD_MAX);
        if (ev->version)
                putf(l, ",\"version\":%llu", (unsigned long long) ev->version);
        else
                put_lit(l, ",\"version\":null");
        if (ev->lease)
                put_str(l, "lease", ev->lease, FIELD_MAX);
        if (ev->detail)
                put_str(l, "detail", ev->detail, NAME_MAX_OUT);
        put_peer(l, ev->peer);
        int rc = finish(a, a->keyed ? a->key : NULL);
        if (a->journal)
                journal_request(ev, result);
        return rc;
}

/* ---- verification ---- */

struct verifier {
        const uint8_t *mac_key, *box_pk, *box_sk;
        struct audit_report *rep;
        uint64_t line;
        uint64_t good_line;     /* line of the last record that verified */
        uint64_t seq;           /* its seq and MAC: what the next record must chain to */
        uint8_t prev[MAC_SIZE];
        uint8_t key[MAC_SIZE];  /* the current segment's key */
        bool in_segment, keyed, master, seen_keyed;
        uint64_t torn_line, torn_count, after_torn;
        char torn_why[96];      /* the first line that is not a whole record */
        char why[144];          /* the problem that ended verification */
};

static int fatal(struct verifier *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fatal(struct verifier *v, const char *fmt, ...) {
        va_list ap;
        int n = snprintf(v->why, sizeof(v->why), "line %llu: ", (unsigned long long) v->line);
        va_start(ap, fmt);
        vsnprintf(v->why + n, sizeof(v->why) - (size_t) n, fmt, ap);
        va_end(ap);
        return -EBADMSG;
}

static int open_sealed_key(struct verifier *v, const struct span *key) {
        uint8_t boxed[BOXED_SIZE];
        size_t n = 0;
        if (key->type != V_STR || key->n != BOXED_B64_LEN - 1 ||
            sodium_base642bin(boxed, sizeof(boxed), key->p, key->n, NULL, &n, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            n != BOXED_SIZE)
                return fatal(v, "segment record with a malformed key");
        if (crypto_box_seal_open(v->key, boxed, BOXED_SIZE, v->box_pk, v->box_sk) != 0)
                return fatal(v, "the segment key cannot be opened with this store's audit key");
        return 0;
}

static int open_segment(struct verifier *v, const struct fields *f) {
        bool master = span_is(&f->mode, "master");
        if (!master && !span_is(&f->mode, "sealed"))
                return fatal(v, "segment record with an unknown mode");
        if (master && f->key.type != V_NONE)
                return fatal(v, "master segment record with a key");
        if (!master && f->key.type == V_NULL) {
                /* Before init there is nothing to key with. After a keyed
                 * segment, an unkeyed one could be anybody's splice. */
                if (v->seen_keyed)
                        return fatal(v, "an unkeyed segment after keyed ones (records spliced in?)");
                v->keyed = v->master = false;
                v->rep->unkeyed++;
                return 0;
        }
        int rc = master ? 0 : open_sealed_key(v, &f->key);
        if (rc < 0)
                return rc;
        if (master)
                memcpy(v->key, v->mac_key, MAC_SIZE);
        v->keyed = v->seen_keyed = true;
        v->master = master;
        return 0;
}

static int check_chain(struct verifier *v, const struct record *r) {
        if (v->seq == UINT64_MAX || r->seq != v->seq + 1)
                return fatal(v, "sequence %llu follows %llu (%s)", (unsigned long long) r->seq,
                             (unsigned long long) v->seq,
                             r->seq > v->seq ? "records deleted?" : "records reordered or duplicated?");
        if (sodium_memcmp(r->prev, v->prev, MAC_SIZE) == 0)
                return 0;
        if (v->good_line == 0)
                return fatal(v, "the first record does not start a chain (the log's beginning is missing?)");
        return fatal(v, "prev does not match line %llu (reordered or inserted?)", (unsigned long long) v->good_line);
}

/* 0: the record verifies; 1: not a whole record (torn, or damaged), skipped
 * so the chain resumes after it; -EBADMSG: the chain is broken here. */
static int verify_line(struct verifier *v, const char *line, size_t len) {
        struct record r;
        uint8_t mac[MAC_SIZE];
        if (!parse_record(line, len, &r))
                return 1;
        int rc = check_chain(v, &r);
        if (rc < 0)
                return rc;
        if (span_is(&r.f.event, "segment")) {
                rc = open_segment(v, &r.f);
                if (rc < 0)
                        return rc;
                v->in_segment = true;
                v->rep->segments++;
        } else if (!v->in_segment)
                return fatal(v, "a record before any segment start");
        mac_line(mac, v->keyed ? v->key : NULL, line, r.maced);
        if (sodium_memcmp(mac, r.mac, MAC_SIZE) != 0)
                return fatal(v, "MAC mismatch (record edited?)");
        v->seq = r.seq;
        v->good_line = v->line;
        memcpy(v->prev, r.mac, MAC_SIZE);
        v->rep->records++;
        v->rep->unendorsed = v->master ? 0 : v->rep->unendorsed + 1;
        v->after_torn += v->torn_line != 0;
        return 0;
}

static void note_torn(struct verifier *v, bool at_end, bool too_long) {
        v->torn_count++;
        if (v->torn_line)
                return;
        v->torn_line = v->line;
        snprintf(v->torn_why, sizeof(v->torn_why), "line %llu: %s", (unsigned long long) v->line,
                 too_long ? "longer than 64 KiB, not an audit record"
                 : at_end ? "truncated record at the end of the log (torn write, or cut?)"
                          : "not a whole audit record (torn by a crash, or damaged)");
}

/* bad_line is the first problem. A torn line need not be the end of the
 * story, so the reason also says what came after it. */
static int conclude(struct verifier *v, int rc) {
        struct audit_report *rep = v->rep;
        rep->last_seq = v->seq;
        memcpy(rep->last_mac, v->prev, MAC_SIZE);
        sodium_memzero(v->key, sizeof(v->key));
        if (rc == 0 && v->torn_line == 0)
                return 0;
        rep->bad_line = v->torn_line ? v->torn_line : v->line;
        if (!v->torn_line)
                snprintf(rep->reason, sizeof(rep->reason), "%s", v->why);
        else if (rc < 0)
                snprintf(rep->reason, sizeof(rep->reason), "%s; then %s", v->torn_why, v->why);
        else
                snprintf(rep->reason, sizeof(rep->reason), "%s; %llu more such line(s); the %llu records after it verify",
                         v->torn_why, (unsigned long long) (v->torn_count - 1), (unsigned long long) v->after_torn);
        return -EBADMSG;
}

struct reader {
        int fd;
        char *buf;         /* LINE_MAX_BYTES + 1 */
        size_t have, used; /* buf[used..have) is not consumed yet */
        uint64_t left;     /* bytes it may still read: the end of what is verified */
        size_t quota;      /* bytes it may read in this slice */
        bool dropped;      /* the line being read is over the cap: its head is gone */
        bool eof;
};

/* The next line, without its newline. Returns 1 for a line, 0 at the end,
 * -EAGAIN when the slice's quota is used up (call again), -errno on a read
 * error. *too_long: the line was over the cap (only its tail is returned);
 * *last: it had no newline. */
static int next_line(struct reader *rd, const char **line, size_t *len, bool *too_long, bool *last) {
        *too_long = *last = false;
        for (;;) {
                char *nl = rd->have > rd->used ? memchr(rd->buf + rd->used, '\n', rd->have - rd->used) : NULL;
                if (nl || rd->eof) {
                        *line = rd->buf + rd->used;
                        *len = nl ? (size_t) (nl - *line) : rd->have - rd->used;
                        *last = !nl;
                        *too_long = rd->dropped;
                        rd->dropped = false;
                        rd->used += *len + (nl != NULL);
                        return nl || *len > 0 || *too_long;
                }
                memmove(rd->buf, rd->buf + rd->used, rd->have - rd->used);
                rd->have -= rd->used;
                rd->used = 0;
                if (rd->have > LINE_MAX_BYTES) {
                        rd->dropped = true; /* drop it, keep looking for its newline */
                        rd->have = 0;
                }
                if (rd->quota == 0)
                        return -EAGAIN;
                size_t want = LINE_MAX_BYTES + 1 - rd->have;
                want = want < rd->quota ? want : rd->quota;
                ssize_t n = read(rd->fd, rd->buf + rd->have, want < rd->left ? want : (size_t) rd->left);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                rd->eof = n == 0;
                rd->have += (size_t) n;
                rd->left -= (size_t) n;
                rd->quota -= (size_t) n;
        }
}

/* In sodium_malloc memory: it holds copies of the keys, so that a seal
 * during a slow verification wipes nothing it still reads. */
struct audit_verify {
        uint8_t mac_key[MAC_SIZE], box_pk[32], box_sk[32];
        struct verifier v;
        struct reader rd;
        struct audit_report rep;
        int rc;            /* 0, or -EBADMSG once the chain broke */
        bool done;
};

int audit_verify_begin(struct audit_verify **out, int fd, uint64_t size, const uint8_t mac_key[static 32],
                       const uint8_t box_pk[static 32], const uint8_t box_sk[static 32]) {
        *out = NULL;
        if (lseek(fd, 0, SEEK_SET) < 0 && errno != ESPIPE)
                return -errno;
        struct audit_verify *av = sodium_malloc(sizeof(*av));
        char *buf = malloc(LINE_MAX_BYTES + 1);
        if (!av || !buf) {
                if (av)
                        sodium_free(av);
                free(buf);
                return -ENOMEM;
        }
        memset(av, 0, sizeof(*av));
        memcpy(av->mac_key, mac_key, MAC_SIZE);
        memcpy(av->box_pk, box_pk, 32);
        memcpy(av->box_sk, box_sk, 32);
        av->v = (struct verifier){ .mac_key = av->mac_key, .box_pk = av->box_pk, .box_sk = av->box_sk,
                                   .rep = &av->rep };
        av->rd = (struct reader){ .fd = fd, .buf = buf, .left = size };
        *out = av;
        return 0;
}

int audit_verify_step(struct audit_verify *av, size_t budget) {
        struct verifier *v = &av->v;
        const char *line = NULL;
        size_t len = 0;
        bool too_long, last;
        av->rd.quota = budget;
        while (!av->done && av->rc == 0) {
                int r = next_line(&av->rd, &line, &len, &too_long, &last);
                if (r == -EAGAIN)
                        return 1;
                if (r < 0)
                        return r;
                if (r == 0) {
                        av->done = true;
                        break;
                }
                v->line++;
                int rc = too_long ? 1 : verify_line(v, line, len);
                if (rc == 1)
                        note_torn(v, last, too_long);
                av->rc = rc == 1 ? 0 : rc;
        }
        return 0;
}

int audit_verify_end(struct audit_verify *av, struct audit_report *rep) {
        int rc = conclude(&av->v, av->rc);
        *rep = av->rep;
        audit_verify_free(av);
        return rc;
}

void audit_verify_free(struct audit_verify *av) {
        if (!av)
                return;
        free(av->rd.buf);
        sodium_free(av); /* wipes the keys */
}

int audit_verify_fd(int fd, const uint8_t mac_key[static 32], const uint8_t box_pk[static 32],
                    const uint8_t box_sk[static 32], struct audit_report *rep) {
        struct audit_verify *av = NULL;
        memset(rep, 0, sizeof(*rep));
        int rc = audit_verify_begin(&av, fd, UINT64_MAX, mac_key, box_pk, box_sk);
        if (rc == 0)
                do
                        rc = audit_verify_step(av, SIZE_MAX);
                while (rc > 0);
        if (rc < 0) {
                audit_verify_free(av);
                return rc;
        }
        return audit_verify_end(av, rep);
}
