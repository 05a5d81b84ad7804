/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The wire module: the only code that touches frame bytes.
 *
 * A frame is a fixed 16-byte header followed by a body of typed fields:
 *
 *   header: magic u32 | version u16 | opcode u16 | request id u32 | body length u32
 *   field:  tag u8 | type u8 | length u32 | value[length]
 *
 * All integers are big-endian. Lengths are unsigned and checked against hard
 * caps before anything is allocated. See docs/PROTOCOL.md.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_MAGIC           UINT32_C(0x434f4652) /* "COFR" */
#define WIRE_VERSION         1
#define WIRE_HEADER_SIZE     16
#define WIRE_FIELD_HEADER    6
#define WIRE_VALUE_MAX       (1024u * 1024u)          /* largest secret value */
#define WIRE_BODY_MAX        (WIRE_VALUE_MAX + 65536u) /* value plus its fields */
#define WIRE_STRING_MAX      4096u                    /* any single string field */
#define WIRE_TAG_MAX         128u                     /* tags are 1 .. WIRE_TAG_MAX-1 */

enum wire_type {
        WIRE_U64    = 1, /* exactly 8 bytes */
        WIRE_STRING = 2, /* UTF-8 text, no NUL, at most WIRE_STRING_MAX bytes */
        WIRE_BYTES  = 3, /* opaque, at most WIRE_BODY_MAX bytes */
};

struct wire_header {
        uint32_t magic;
        uint16_t version;
        uint16_t opcode;
        uint32_t request_id;
        uint32_t body_len;
};

/* Bounds-checked reader over a borrowed byte range. A short read sets ->error
 * and every later read fails too, so callers may check once at the end. */
struct wire_reader {
        const uint8_t *p;
        size_t len;
        size_t off;
        bool error;
};

void wire_reader_init(struct wire_reader *r, const void *p, size_t len);
bool wire_read_u8(struct wire_reader *r, uint8_t *v);
bool wire_read_u16(struct wire_reader *r, uint16_t *v);
bool wire_read_u32(struct wire_reader *r, uint32_t *v);
bool wire_read_u64(struct wire_reader *r, uint64_t *v);
/* Borrow n bytes from the reader (no copy). */
bool wire_read_bytes(struct wire_reader *r, const uint8_t **p, size_t n);
/* A u32 length followed by that many bytes, at most max. */
bool wire_read_lbytes(struct wire_reader *r, const uint8_t **p, size_t *n, size_t max);
static inline size_t wire_reader_left(const struct wire_reader *r) { return r->len - r->off; }
static inline bool wire_reader_done(const struct wire_reader *r) { return !r->error && r->off == r->len; }

/* Growable writer. Memory that held secrets is wiped on reset and free. */
struct wire_writer {
        uint8_t *p;
        size_t len;
        size_t cap;
        size_t limit; /* 0 = WIRE_HEADER_SIZE + WIRE_BODY_MAX */
        bool error;   /* allocation failure or limit exceeded */
};

void wire_writer_init(struct wire_writer *w);
void wire_writer_free(struct wire_writer *w);   /* wipes */
void wire_writer_reset(struct wire_writer *w);  /* wipes, keeps capacity */
bool wire_write_u8(struct wire_writer *w, uint8_t v);
bool wire_write_u16(struct wire_writer *w, uint16_t v);
bool wire_write_u32(struct wire_writer *w, uint32_t v);
bool wire_write_u64(struct wire_writer *w, uint64_t v);
bool wire_write_bytes(struct wire_writer *w, const void *p, size_t n);
bool wire_write_lbytes(struct wire_writer *w, const void *p, size_t n);

/* Header. */
int wire_header_parse(struct wire_header *h, const uint8_t buf[static WIRE_HEADER_SIZE]);
/* Begin a frame: writes the header with a zero body length; wire_frame_end patches it. */
bool wire_frame_begin(struct wire_writer *w, uint16_t opcode, uint32_t request_id);
int wire_frame_end(struct wire_writer *w);

/* Fields. */
bool wire_put_u64(struct wire_writer *w, uint8_t tag, uint64_t v);
bool wire_put_str(struct wire_writer *w, uint8_t tag, const char *s);
bool wire_put_bytes(struct wire_writer *w, uint8_t tag, const void *p, size_t n);

/* A parsed body: at most one field per tag. Values borrow the body buffer. */
struct wire_field {
        uint8_t type; /* 0 = absent */
        const uint8_t *p;
        uint32_t len;
        uint64_t u64;
};

struct wire_msg {
        struct wire_header hdr;
        struct wire_field f[WIRE_TAG_MAX];
};

/* Parse a body into fields. Rejects unknown types, tag 0 or >= WIRE_TAG_MAX,
 * duplicate tags, wrong sizes, strings with NUL or over WIRE_STRING_MAX,
 * invalid UTF-8, and trailing bytes. Returns 0, -EBADMSG, or -EMSGSIZE when
 * len exceeds WIRE_BODY_MAX. */
int wire_body_parse(struct wire_msg *m, const uint8_t *body, size_t len);

/* Typed accessors. Return 0, -ENOENT when absent, -EBADMSG when the type is
 * wrong. Strings are copied NUL-terminated into the caller's buffer. */
int wire_get_u64(const struct wire_msg *m, uint8_t tag, uint64_t *v);
int wire_get_str(const struct wire_msg *m, uint8_t tag, char *buf, size_t bufsz);
int wire_get_bytes(const struct wire_msg *m, uint8_t tag, const uint8_t **p, size_t *n);

bool utf8_is_valid(const uint8_t *p, size_t n);
