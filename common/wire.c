/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "wire.h"

void wire_reader_init(struct wire_reader *r, const void *p, size_t len) {
        *r = (struct wire_reader){ .p = p, .len = len };
}

bool wire_read_bytes(struct wire_reader *r, const uint8_t **p, size_t n) {
        if (r->error || n > r->len - r->off) {
                r->error = true;
                return false;
        }
        *p = r->p + r->off;
        r->off += n;
        return true;
}

static bool read_be(struct wire_reader *r, uint64_t *v, size_t n) {
        const uint8_t *p;
        if (!wire_read_bytes(r, &p, n))
                return false;
        uint64_t x = 0;
        for (size_t i = 0; i < n; i++)
                x = (x << 8) | p[i];
        *v = x;
        return true;
}

bool wire_read_u8(struct wire_reader *r, uint8_t *v) {
        uint64_t x;
        if (!read_be(r, &x, 1))
                return false;
        *v = (uint8_t) x;
        return true;
}

bool wire_read_u16(struct wire_reader *r, uint16_t *v) {
        uint64_t x;
        if (!read_be(r, &x, 2))
                return false;
        *v = (uint16_t) x;
        return true;
}

bool wire_read_u32(struct wire_reader *r, uint32_t *v) {
        uint64_t x;
        if (!read_be(r, &x, 4))
                return false;
        *v = (uint32_t) x;
        return true;
}

bool wire_read_u64(struct wire_reader *r, uint64_t *v) {
        return read_be(r, v, 8);
}

bool wire_read_lbytes(struct wire_reader *r, const uint8_t **p, size_t *n, size_t max) {
        uint32_t len;
        if (!wire_read_u32(r, &len))
                return false;
        if (len > max) {
                r->error = true;
                return false;
        }
        *n = len;
        return wire_read_bytes(r, p, len);
}

/* ---- writer ---- */

void wire_writer_init(struct wire_writer *w) {
        *w = (struct wire_writer){ 0 };
}

void wire_writer_reset(struct wire_writer *w) {
        if (w->p)
                sodium_memzero(w->p, w->len);
        w->len = 0;
        w->error = false;
}

void wire_writer_free(struct wire_writer *w) {
        if (w->p) {
                sodium_memzero(w->p, w->cap);
                free(w->p);
        }
        *w = (struct wire_writer){ 0 };
}

/* Grow by allocate-copy-wipe rather than realloc: the old block may hold a
 * secret and realloc would free it unwiped. */
static bool reserve(struct wire_writer *w, size_t n) {
        size_t limit = w->limit ? w->limit : WIRE_HEADER_SIZE + WIRE_BODY_MAX;
        if (w->error || w->len > limit || n > limit - w->len) {
                w->error = true;
                return false;
        }
        if (w->len + n <= w->cap)
                return true;
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->len + n)
                cap *= 2;
        if (cap > limit)
                cap = limit;
        uint8_t *p = malloc(cap);
        if (!p) {
                w->error = true;
                return false;
        }
        if (w->p) {
                memcpy(p, w->p, w->len);
                sodium_memzero(w->p, w->cap);
                free(w->p);
        }
        w->p = p;
        w->cap = cap;
        return true;
}

bool wire_write_bytes(struct wire_writer *w, const void *p, size_t n) {
        if (!reserve(w, n))
                return false;
        if (n)
                memcpy(w->p + w->len, p, n);
        w->len += n;
        return true;
}

static bool write_be(struct wire_writer *w, uint64_t v, size_t n) {
        uint8_t b[8];
        for (size_t i = 0; i < n; i++)
                b[i] = (uint8_t) (v >> (8 * (n - 1 - i)));
        return wire_write_bytes(w, b, n);
}

bool wire_write_u8(struct wire_writer *w, uint8_t v) { return write_be(w, v, 1); }
bool wire_write_u16(struct wire_writer *w, uint16_t v) { return write_be(w, v, 2); }
bool wire_write_u32(struct wire_writer *w, uint32_t v) { return write_be(w, v, 4); }
bool wire_write_u64(struct wire_writer *w, uint64_t v) { return write_be(w, v, 8); }

bool wire_write_lbytes(struct wire_writer *w, const void *p, size_t n) {
        if (n > UINT32_MAX) {
                w->error = true;
                return false;
        }
        return wire_write_u32(w, (uint32_t) n) && wire_write_bytes(w, p, n);
}

/* ---- frames ---- */

int wire_header_parse(struct wire_header *h, const uint8_t buf[static WIRE_HEADER_SIZE]) {
        struct wire_reader r;
        wire_reader_init(&r, buf, WIRE_HEADER_SIZE);
        wire_read_u32(&r, &h->magic);
        wire_read_u16(&r, &h->version);
        wire_read_u16(&r, &h->opcode);
        wire_read_u32(&r, &h->request_id);
        wire_read_u32(&r, &h->body_len);
        if (r.error || h->magic != WIRE_MAGIC)
                return -EBADMSG;
        if (h->version != WIRE_VERSION)
                return -EPROTONOSUPPORT;
        if (h->body_len > WIRE_BODY_MAX)
                return -EMSGSIZE;
        return 0;
}

bool wire_frame_begin(struct wire_writer *w, uint16_t opcode, uint32_t request_id) {
        return wire_write_u32(w, WIRE_MAGIC) && wire_write_u16(w, WIRE_VERSION) &&
               wire_write_u16(w, opcode) && wire_write_u32(w, request_id) && wire_write_u32(w, 0);
}

int wire_frame_end(struct wire_writer *w) {
        if (w->error || w->len < WIRE_HEADER_SIZE)
                return -ENOBUFS;
        size_t body = w->len - WIRE_HEADER_SIZE;
        if (body > WIRE_BODY_MAX)
                return -EMSGSIZE;
        for (size_t i = 0; i < 4; i++)
                w->p[12 + i] = (uint8_t) (body >> (8 * (3 - i)));
        return 0;
}

/* ---- fields ---- */

static bool put_field(struct wire_writer *w, uint8_t tag, uint8_t type, const void *p, size_t n) {
        return wire_write_u8(w, tag) && wire_write_u8(w, type) && wire_write_lbytes(w, p, n);
}

bool wire_put_u64(struct wire_writer *w, uint8_t tag, uint64_t v) {
        return wire_write_u8(w, tag) && wire_write_u8(w, WIRE_U64) && wire_write_u32(w, 8) &&
               wire_write_u64(w, v);
}

bool wire_put_str(struct wire_writer *w, uint8_t tag, const char *s) {
        size_t n = strlen(s);
        if (n > WIRE_STRING_MAX) {
                w->error = true;
                return false;
        }
        return put_field(w, tag, WIRE_STRING, s, n);
}

bool wire_put_bytes(struct wire_writer *w, uint8_t tag, const void *p, size_t n) {
        return put_field(w, tag, WIRE_BYTES, p, n);
}

bool utf8_is_valid(const uint8_t *p, size_t n) {
        size_t i = 0;
        while (i < n) {
                uint8_t c = p[i];
                size_t len;
                uint32_t cp;
                if (c < 0x80) {
                        i++;
                        continue;
                } else if ((c & 0xe0) == 0xc0) {
                        len = 2, cp = c & 0x1f;
                } else if ((c & 0xf0) == 0xe0) {
                        len = 3, cp = c & 0x0f;
                } else if ((c & 0xf8) == 0xf0) {
                        len = 4, cp = c & 0x07;
                } else
                        return false;
                if (len > n - i)
                        return false;
                for (size_t j = 1; j < len; j++) {
                        if ((p[i + j] & 0xc0) != 0x80)
                                return false;
                        cp = (cp << 6) | (p[i + j] & 0x3f);
                }
                /* Overlong forms, surrogates and values past U+10FFFF. */
                if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
                    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                i += len;
        }
        return true;
}

static int parse_field(struct wire_msg *m, struct wire_reader *r) {
        uint8_t tag, type;
        const uint8_t *p;
        size_t n;
        if (!wire_read_u8(r, &tag) || !wire_read_u8(r, &type) || !wire_read_lbytes(r, &p, &n, WIRE_BODY_MAX))
                return -EBADMSG;
        if (tag == 0 || tag >= WIRE_TAG_MAX || m->f[tag].type != 0)
                return -EBADMSG;
        struct wire_field *f = &m->f[tag];
        switch (type) {
        case WIRE_U64:
                if (n != 8)
                        return -EBADMSG;
                for (size_t i = 0; i < 8; i++)
                        f->u64 = (f->u64 << 8) | p[i];
                break;
        case WIRE_STRING:
                if (n > WIRE_STRING_MAX || memchr(p, 0, n) || !utf8_is_valid(p, n))
                        return -EBADMSG;
                break;
        case WIRE_BYTES:
                break;
        default:
                return -EBADMSG;
        }
        f->type = type;
        f->p = p;
        f->len = (uint32_t) n;
        return 0;
}

int wire_body_parse(struct wire_msg *m, const uint8_t *body, size_t len) {
        struct wire_reader r;
        memset(m->f, 0, sizeof(m->f));
        if (len > WIRE_BODY_MAX)
                return -EMSGSIZE;
        wire_reader_init(&r, body, len);
        while (wire_reader_left(&r) > 0) {
                int rc = parse_field(m, &r);
                if (rc < 0)
                        return rc;
        }
        return 0;
}

static const struct wire_field *field(const struct wire_msg *m, uint8_t tag, uint8_t type, int *rc) {
        if (tag == 0 || tag >= WIRE_TAG_MAX || m->f[tag].type == 0) {
                *rc = -ENOENT;
                return NULL;
        }
        if (m->f[tag].type != type) {
                *rc = -EBADMSG;
                return NULL;
        }
        *rc = 0;
        return &m->f[tag];
}

int wire_get_u64(const struct wire_msg *m, uint8_t tag, uint64_t *v) {
        int rc;
        const struct wire_field *f = field(m, tag, WIRE_U64, &rc);
        if (f)
                *v = f->u64;
        return rc;
}

int wire_get_str(const struct wire_msg *m, uint8_t tag, char *buf, size_t bufsz) {
        int rc;
        const struct wire_field *f = field(m, tag, WIRE_STRING, &rc);
        if (!f)
                return rc;
        if (f->len >= bufsz)
                return -ENAMETOOLONG;
        memcpy(buf, f->p, f->len);
        buf[f->len] = 0;
        return 0;
}

int wire_get_bytes(const struct wire_msg *m, uint8_t tag, const uint8_t **p, size_t *n) {
        int rc;
        const struct wire_field *f = field(m, tag, WIRE_BYTES, &rc);
        if (f) {
                *p = f->p;
                *n = f->len;
        }
        return rc;
}
