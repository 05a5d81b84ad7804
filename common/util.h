/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Small helpers shared by all parts. No policy, no I/O loops. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sodium.h>
#include <sys/stat.h>

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void freep(void *p) { free(*(void **)p); }
#define _cleanup_free_ _cleanup_(freep)

/* A heap buffer that may hold secret bytes: wiped before it is freed. */
struct secbuf {
        uint8_t *p;
        size_t len;
};
static inline void secbuf_wipe(struct secbuf *b) {
        if (b->p) {
                sodium_memzero(b->p, b->len);
                free(b->p);
        }
        b->p = NULL;
        b->len = 0;
}
#define _cleanup_secbuf_ _cleanup_(secbuf_wipe)

static inline void closep(int *fd) {
        if (*fd >= 0) {
                extern int close(int);
                close(*fd);
        }
        *fd = -1;
}
#define _cleanup_close_ _cleanup_(closep)

/* Copy src into dst (size n), always NUL-terminated. False if truncated. */
bool strcpy_bounded(char *dst, size_t n, const char *src);
uint64_t now_unix(void);
uint64_t now_mono_usec(void);
/* Hex-encode n bytes into out (2n+1 bytes). */
void hex_encode(char *out, const uint8_t *in, size_t n);
/* Decode exactly n bytes from a 2n-character hex string. */
int hex_decode(uint8_t *out, size_t n, const char *hex, size_t hexlen);
/* Read all of fd into a malloc'd buffer (wiped on failure), at most max bytes.
 * -EFBIG when larger. */
int read_all_fd(int fd, size_t max, uint8_t **out, size_t *len);
/* Open NAME in dfd (AT_FDCWD for a path; symbolic links refused with -ELOOP)
 * and read it whole, at most max bytes, as one version of the file: it must
 * be a regular file (-EINVAL) left alone for FILE_QUIET_MSEC before the read
 * (an in-place rewrite such as cp's truncate-then-write may still be going
 * on), unchanged by the read (size, mtime, ctime) and still be what NAME
 * names after it. Changed files are read again, for at most about three seconds;
 * then -EAGAIN. *st is the stat of the version read (check owner and mode on
 * it), *out is malloc'd and wiped on failure. -ENOENT, -EFBIG as usual. */
#define FILE_QUIET_MSEC 250
int read_settled_file_at(int dfd, const char *name, size_t max, struct stat *st, uint8_t **out, size_t *len);
/* Write all of buf, retrying on EINTR/short writes. */
int write_all(int fd, const void *buf, size_t n);
/* Parse a non-negative decimal integer in [min,max]. */
int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* Duration like "30s", "5m", "2h", "1d" or plain seconds. */
int parse_duration_sec(const char *s, uint64_t *out);
