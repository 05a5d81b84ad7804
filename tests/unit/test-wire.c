/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for common/wire.c: the bounds-checked reader, the writer, frame
 * headers, body parsing (every rejection) and the typed accessors. Malformed
 * bodies are built with the writer's raw u8/u32 calls so each test shows the
 * exact bytes it sends. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <sodium.h>

#include "util.h"
#include "wire.h"

static int setup(void **state) {
        return sodium_init() < 0 ? -1 : 0;
}

/* One raw field header: tag, type, length (the value follows separately). */
static void raw_field(struct wire_writer *w, uint8_t tag, uint8_t type, uint32_t len) {
        assert_true(wire_write_u8(w, tag));
        assert_true(wire_write_u8(w, type));
        assert_true(wire_write_u32(w, len));
}

static int parse_writer(struct wire_msg *m, const struct wire_writer *w) {
        assert_false(w->error);
        return wire_body_parse(m, w->p, w->len);
}

/* Parse one string field holding exactly the n bytes at s. */
static int parse_string(const void *s, size_t n) {
        struct wire_writer w;
        struct wire_msg m;
        int rc;

        wire_writer_init(&w);
        raw_field(&w, 1, WIRE_STRING, (uint32_t) n);
        assert_true(wire_write_bytes(&w, s, n));
        rc = parse_writer(&m, &w);
        wire_writer_free(&w);
        return rc;
}

/* ---- reader ---- */

static void test_reader_big_endian(void **state) {
        static const uint8_t buf[] = { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a,
                                       0x0b, 0x0c, 0x0d, 0x0e, 0x0f };
        struct wire_reader r;
        uint8_t u8;
        uint16_t u16;
        uint32_t u32;
        uint64_t u64;

        wire_reader_init(&r, buf, sizeof(buf));
        assert_true(wire_read_u8(&r, &u8));
        assert_int_equal(u8, 0x01);
        assert_true(wire_read_u16(&r, &u16));
        assert_int_equal(u16, 0x0203);
        assert_true(wire_read_u32(&r, &u32));
        assert_int_equal(u32, 0x04050607);
        assert_true(wire_read_u64(&r, &u64));
        assert_true(u64 == UINT64_C(0x08090a0b0c0d0e0f));
        assert_int_equal(wire_reader_left(&r), 0);
        assert_true(wire_reader_done(&r));
}

static void test_reader_short_read_fails(void **state) {
        static const uint8_t buf[] = { 1, 2, 3 };
        struct wire_reader r;
        uint32_t u32 = 0xdeadbeef;

        wire_reader_init(&r, buf, sizeof(buf));
        assert_false(wire_read_u32(&r, &u32));
        assert_true(r.error);
        assert_int_equal(u32, 0xdeadbeef); /* untouched */
        assert_int_equal(r.off, 0);        /* nothing consumed */
        assert_false(wire_reader_done(&r));

        uint16_t u16 = 0xbeef;
        wire_reader_init(&r, buf, 1);
        assert_false(wire_read_u16(&r, &u16));
        assert_true(r.error);
        assert_int_equal(u16, 0xbeef);
}

static void test_reader_error_is_sticky(void **state) {
        static const uint8_t buf[] = { 1, 2, 3 };
        struct wire_reader r;
        uint64_t u64;
        uint8_t u8;
        const uint8_t *p;

        wire_reader_init(&r, buf, sizeof(buf));
        assert_false(wire_read_u64(&r, &u64));
        /* The bytes are there, but the reader has failed and stays failed. */
        assert_false(wire_read_u8(&r, &u8));
        assert_false(wire_read_bytes(&r, &p, 0));
        assert_true(r.error);
        assert_false(wire_reader_done(&r));
}

static void test_reader_bytes_borrow(void **state) {
        static const uint8_t buf[] = { 'a', 'b', 'c', 'd' };
        struct wire_reader r;
        const uint8_t *p;

        wire_reader_init(&r, buf, sizeof(buf));
        assert_true(wire_read_bytes(&r, &p, 0));
        assert_ptr_equal(p, buf);
        assert_true(wire_read_bytes(&r, &p, 3));
        assert_ptr_equal(p, buf);
        assert_true(wire_read_bytes(&r, &p, 1));
        assert_ptr_equal(p, buf + 3);
        assert_true(wire_reader_done(&r));
        assert_false(wire_read_bytes(&r, &p, 1));
        assert_true(r.error);
}

static void test_reader_bytes_huge_n(void **state) {
        static const uint8_t buf[4] = { 0 };
        struct wire_reader r;
        const uint8_t *p;

        wire_reader_init(&r, buf, sizeof(buf));
        assert_true(wire_read_bytes(&r, &p, 2));
        assert_false(wire_read_bytes(&r, &p, SIZE_MAX));
        assert_true(r.error);
}

static void test_reader_empty(void **state) {
        struct wire_reader r;
        uint8_t u8;

        wire_reader_init(&r, NULL, 0);
        assert_true(wire_reader_done(&r));
        assert_false(wire_read_u8(&r, &u8));
        assert_true(r.error);
}

static void test_reader_lbytes_ok(void **state) {
        static const uint8_t buf[] = { 0, 0, 0, 3, 'x', 'y', 'z', 0, 0, 0, 0 };
        struct wire_reader r;
        const uint8_t *p;
        size_t n;

        wire_reader_init(&r, buf, sizeof(buf));
        assert_true(wire_read_lbytes(&r, &p, &n, 3)); /* exactly max */
        assert_int_equal(n, 3);
        assert_memory_equal(p, "xyz", 3);
        assert_true(wire_read_lbytes(&r, &p, &n, 0)); /* empty */
        assert_int_equal(n, 0);
        assert_true(wire_reader_done(&r));
}

static void test_reader_lbytes_over_max(void **state) {
        static const uint8_t buf[] = { 0, 0, 0, 5, 'a', 'b', 'c', 'd', 'e' };
        struct wire_reader r;
        const uint8_t *p;
        size_t n;

        wire_reader_init(&r, buf, sizeof(buf));
        assert_false(wire_read_lbytes(&r, &p, &n, 4));
        assert_true(r.error);
}

static void test_reader_lbytes_past_end(void **state) {
        static const uint8_t buf[] = { 0, 0, 0, 10, 'a', 'b', 'c' };
        struct wire_reader r;
        const uint8_t *p;
        size_t n;

        wire_reader_init(&r, buf, sizeof(buf));
        assert_false(wire_read_lbytes(&r, &p, &n, 100));
        assert_true(r.error);
}

static void test_reader_lbytes_short_length(void **state) {
        static const uint8_t buf[] = { 0, 0, 1 };
        struct wire_reader r;
        const uint8_t *p;
        size_t n;

        wire_reader_init(&r, buf, sizeof(buf));
        assert_false(wire_read_lbytes(&r, &p, &n, 100));
        assert_true(r.error);
}

/* ---- writer ---- */

static void test_writer_big_endian(void **state) {
        static const uint8_t want[] = { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a,
                                        0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0, 0, 0, 2, 'h', 'i' };
        struct wire_writer w;

        wire_writer_init(&w);
        assert_true(wire_write_u8(&w, 0x01));
        assert_true(wire_write_u16(&w, 0x0203));
        assert_true(wire_write_u32(&w, 0x04050607));
        assert_true(wire_write_u64(&w, UINT64_C(0x08090a0b0c0d0e0f)));
        assert_true(wire_write_lbytes(&w, "hi", 2));
        assert_false(w.error);
        assert_int_equal(w.len, sizeof(want));
        assert_memory_equal(w.p, want, sizeof(want));
        wire_writer_free(&w);
        assert_null(w.p);
        assert_int_equal(w.len, 0);
}

static void test_writer_grows(void **state) {
        struct wire_writer w;
        struct wire_reader r;
        const unsigned count = 100000; /* 400 kB: many reallocations */

        wire_writer_init(&w);
        for (unsigned i = 0; i < count; i++)
                assert_true(wire_write_u32(&w, i));
        assert_false(w.error);
        assert_int_equal(w.len, 4 * count);
        assert_true(w.cap >= w.len);

        /* Every value survived each copy into a larger block. */
        wire_reader_init(&r, w.p, w.len);
        for (unsigned i = 0; i < count; i++) {
                uint32_t v;
                assert_true(wire_read_u32(&r, &v));
                assert_int_equal(v, i);
        }
        assert_true(wire_reader_done(&r));
        wire_writer_free(&w);
}

static void test_writer_limit_exceeded(void **state) {
        struct wire_writer w;

        wire_writer_init(&w);
        w.limit = 10;
        assert_true(wire_write_u64(&w, 1));
        assert_false(wire_write_u32(&w, 2)); /* 12 > 10 */
        assert_true(w.error);
        assert_int_equal(w.len, 8);          /* nothing partial written */
        assert_false(wire_write_u8(&w, 3));  /* sticky, even though it would fit */
        assert_int_equal(w.len, 8);
        assert_true(w.cap <= 10);

        wire_writer_reset(&w); /* clears the error, keeps the limit */
        assert_false(w.error);
        assert_int_equal(w.len, 0);
        assert_true(wire_write_bytes(&w, "0123456789", 10));
        assert_false(wire_write_u8(&w, 0));
        wire_writer_free(&w);
}

static void test_writer_default_limit(void **state) {
        struct wire_writer w;
        const size_t max = WIRE_HEADER_SIZE + WIRE_BODY_MAX;
        uint8_t *big = calloc(1, max);

        assert_non_null(big);
        wire_writer_init(&w);
        assert_true(wire_write_bytes(&w, big, max - 1));
        assert_true(wire_write_u8(&w, 0));
        assert_int_equal(w.len, max);
        assert_false(wire_write_u8(&w, 0));
        assert_true(w.error);
        wire_writer_free(&w);

        wire_writer_init(&w);
        assert_false(wire_write_bytes(&w, big, SIZE_MAX));
        assert_true(w.error);
        wire_writer_free(&w);
        free(big);
}

static void test_writer_reset_keeps_capacity(void **state) {
        struct wire_writer w;

        wire_writer_init(&w);
        assert_true(wire_write_bytes(&w, "secret", 6));
        uint8_t *p = w.p;
        size_t cap = w.cap;
        wire_writer_reset(&w);
        assert_int_equal(w.len, 0);
        assert_ptr_equal(w.p, p);
        assert_int_equal(w.cap, cap);
        /* reset wipes what was written */
        for (size_t i = 0; i < 6; i++)
                assert_int_equal(w.p[i], 0);
        assert_true(wire_write_u8(&w, 7));
        assert_int_equal(w.p[0], 7);
        wire_writer_free(&w);
}

/* The length prefix is 32 bits; a longer run is refused before it is read. */
static void test_writer_lbytes_too_long(void **state) {
        struct wire_writer w;
        static const uint8_t one = 0;

        wire_writer_init(&w);
        assert_false(wire_write_lbytes(&w, &one, (size_t) UINT32_MAX + 1));
        assert_true(w.error);
        assert_int_equal(w.len, 0);
        wire_writer_free(&w);
}

static void test_writer_empty_write(void **state) {
        struct wire_writer w;

        wire_writer_init(&w);
        assert_true(wire_write_bytes(&w, NULL, 0));
        assert_int_equal(w.len, 0);
        assert_false(w.error);
        wire_writer_free(&w);
}

/* ---- header and frames ---- */

static void header_bytes(uint8_t buf[static WIRE_HEADER_SIZE], uint32_t magic, uint16_t version, uint16_t op,
                         uint32_t id, uint32_t body_len) {
        struct wire_writer w;

        wire_writer_init(&w);
        assert_true(wire_write_u32(&w, magic) && wire_write_u16(&w, version) && wire_write_u16(&w, op) &&
                    wire_write_u32(&w, id) && wire_write_u32(&w, body_len));
        assert_int_equal(w.len, WIRE_HEADER_SIZE);
        memcpy(buf, w.p, WIRE_HEADER_SIZE);
        wire_writer_free(&w);
}

static void test_header_ok(void **state) {
        uint8_t buf[WIRE_HEADER_SIZE];
        struct wire_header h;

        header_bytes(buf, WIRE_MAGIC, WIRE_VERSION, 0x8011, 0xa1b2c3d4, 1234);
        assert_memory_equal(buf, "COFR", 4);
        assert_int_equal(wire_header_parse(&h, buf), 0);
        assert_int_equal(h.magic, WIRE_MAGIC);
        assert_int_equal(h.version, WIRE_VERSION);
        assert_int_equal(h.opcode, 0x8011);
        assert_int_equal(h.request_id, 0xa1b2c3d4);
        assert_int_equal(h.body_len, 1234);
}

static void test_header_bad_magic(void **state) {
        uint8_t buf[WIRE_HEADER_SIZE];
        struct wire_header h;

        header_bytes(buf, 0x434f4653, WIRE_VERSION, 1, 1, 0);
        assert_int_equal(wire_header_parse(&h, buf), -EBADMSG);
        header_bytes(buf, 0x52464f43, WIRE_VERSION, 1, 1, 0); /* little-endian "COFR" */
        assert_int_equal(wire_header_parse(&h, buf), -EBADMSG);
        header_bytes(buf, 0, 0, 0, 0, 0);
        assert_int_equal(wire_header_parse(&h, buf), -EBADMSG);
}

static void test_header_wrong_version(void **state) {
        uint8_t buf[WIRE_HEADER_SIZE];
        struct wire_header h;

        header_bytes(buf, WIRE_MAGIC, 0, 1, 1, 0);
        assert_int_equal(wire_header_parse(&h, buf), -EPROTONOSUPPORT);
        header_bytes(buf, WIRE_MAGIC, WIRE_VERSION + 1, 1, 1, 0);
        assert_int_equal(wire_header_parse(&h, buf), -EPROTONOSUPPORT);
        header_bytes(buf, WIRE_MAGIC, 0x0100, 1, 1, 0); /* version 1, little-endian */
        assert_int_equal(wire_header_parse(&h, buf), -EPROTONOSUPPORT);
}

static void test_header_body_too_large(void **state) {
        uint8_t buf[WIRE_HEADER_SIZE];
        struct wire_header h;

        header_bytes(buf, WIRE_MAGIC, WIRE_VERSION, 1, 1, WIRE_BODY_MAX);
        assert_int_equal(wire_header_parse(&h, buf), 0);
        header_bytes(buf, WIRE_MAGIC, WIRE_VERSION, 1, 1, WIRE_BODY_MAX + 1);
        assert_int_equal(wire_header_parse(&h, buf), -EMSGSIZE);
        header_bytes(buf, WIRE_MAGIC, WIRE_VERSION, 1, 1, UINT32_MAX);
        assert_int_equal(wire_header_parse(&h, buf), -EMSGSIZE);
}

static void test_frame_end_patches_length(void **state) {
        struct wire_writer w;
        struct wire_header h;
        struct wire_msg m;
        uint64_t v;

        wire_writer_init(&w);
        assert_true(wire_frame_begin(&w, 17, 42));
        assert_int_equal(w.len, WIRE_HEADER_SIZE);
        assert_true(wire_put_str(&w, 1, "hf/token"));
        assert_true(wire_put_u64(&w, 3, 7));
        assert_int_equal(wire_frame_end(&w), 0);
        assert_int_equal(wire_header_parse(&h, w.p), 0);
        assert_int_equal(h.opcode, 17);
        assert_int_equal(h.request_id, 42);
        assert_int_equal(h.body_len, w.len - WIRE_HEADER_SIZE);
        assert_int_equal(h.body_len, (6 + 8) + (6 + 8));
        assert_int_equal(wire_body_parse(&m, w.p + WIRE_HEADER_SIZE, h.body_len), 0);
        assert_int_equal(wire_get_u64(&m, 3, &v), 0);
        assert_int_equal(v, 7);
        wire_writer_free(&w);
}

static void test_frame_end_empty_body(void **state) {
        struct wire_writer w;
        struct wire_header h;

        wire_writer_init(&w);
        assert_true(wire_frame_begin(&w, 1, 0));
        assert_int_equal(wire_frame_end(&w), 0);
        assert_int_equal(w.len, WIRE_HEADER_SIZE);
        assert_int_equal(wire_header_parse(&h, w.p), 0);
        assert_int_equal(h.body_len, 0);
        wire_writer_free(&w);
}

static void test_frame_end_large_body(void **state) {
        struct wire_writer w;
        struct wire_header h;
        uint8_t *big = calloc(1, WIRE_VALUE_MAX);

        assert_non_null(big);
        wire_writer_init(&w);
        assert_true(wire_frame_begin(&w, 16, 1));
        assert_true(wire_put_bytes(&w, 2, big, WIRE_VALUE_MAX));
        assert_int_equal(wire_frame_end(&w), 0);
        assert_int_equal(wire_header_parse(&h, w.p), 0);
        assert_int_equal(h.body_len, WIRE_VALUE_MAX + WIRE_FIELD_HEADER);
        wire_writer_free(&w);
        free(big);
}

static void test_frame_end_errors(void **state) {
        struct wire_writer w;

        wire_writer_init(&w);
        assert_int_equal(wire_frame_end(&w), -ENOBUFS); /* no header */

        w.limit = WIRE_HEADER_SIZE + 4;
        assert_true(wire_frame_begin(&w, 1, 1));
        assert_false(wire_put_u64(&w, 1, 1));
        assert_int_equal(wire_frame_end(&w), -ENOBUFS); /* writer failed */
        wire_writer_free(&w);

        /* A writer allowed past the protocol limit still cannot end the frame. */
        uint8_t *big = calloc(1, WIRE_BODY_MAX + 1);
        assert_non_null(big);
        wire_writer_init(&w);
        w.limit = WIRE_HEADER_SIZE + WIRE_BODY_MAX + 1;
        assert_true(wire_frame_begin(&w, 1, 1));
        assert_true(wire_write_bytes(&w, big, WIRE_BODY_MAX + 1));
        assert_int_equal(wire_frame_end(&w), -EMSGSIZE);
        wire_writer_free(&w);
        free(big);
}

/* ---- body parse: accepted shapes ---- */

static void test_body_empty(void **state) {
        struct wire_msg m;
        uint64_t v;

        assert_int_equal(wire_body_parse(&m, NULL, 0), 0);
        for (unsigned t = 0; t < WIRE_TAG_MAX; t++)
                assert_int_equal(m.f[t].type, 0);
        assert_int_equal(wire_get_u64(&m, 1, &v), -ENOENT);
}

static void test_body_clears_old_fields(void **state) {
        struct wire_writer w;
        struct wire_msg m;
        uint64_t v;

        wire_writer_init(&w);
        assert_true(wire_put_u64(&w, 5, 1));
        assert_int_equal(parse_writer(&m, &w), 0);
        assert_int_equal(wire_get_u64(&m, 5, &v), 0);
        assert_int_equal(wire_body_parse(&m, NULL, 0), 0);
        assert_int_equal(wire_get_u64(&m, 5, &v), -ENOENT);
        wire_writer_free(&w);
}

static void test_body_tag_bounds_accepted(void **state) {
        struct wire_writer w;
        struct wire_msg m;
        uint64_t v;

        wire_writer_init(&w);
        assert_true(wire_put_u64(&w, 1, 11));
        assert_true(wire_put_u64(&w, WIRE_TAG_MAX - 1, 63));
        assert_int_equal(parse_writer(&m, &w), 0);
        assert_int_equal(wire_get_u64(&m, 1, &v), 0);
        assert_int_equal(v, 11);
        assert_int_equal(wire_get_u64(&m, WIRE_TAG_MAX - 1, &v), 0);
        assert_int_equal(v, 63);
        wire_writer_free(&w);
}

static void test_body_any_field_order(void **state) {
        struct wire_writer w;
        struct wire_msg m;
        char s[8];

        wire_writer_init(&w);
        assert_true(wire_put_str(&w, 9, "b"));
        assert_true(wire_put_str(&w, 2, "a"));
        assert_int_equal(parse_writer(&m, &w), 0);
        assert_int_equal(wire_get_str(&m, 2, s, sizeof(s)), 0);
        assert_string_equal(s, "a");
        assert_int_equal(wire_get_str(&m, 9, s, sizeof(s)), 0);
        assert_string_equal(s, "b");
        wire_writer_free(&w);
}

/* ---- body parse: rejections ---- */

static void test_body_rejects_tag_zero(void **state) {
        struct wire_writer w;
        struct wire_msg m;

        wire_writer_init(&w);
        assert_true(wire_put_u64(&w, 0, 1));
        assert_int_equal(parse_writer(&m, &w), -EBADMSG);
        wire_writer_free(&w);
}

static void test_body_rejects_tag_too_large(void **state) {
        static const uint8_t tags[] = { WIRE_TAG_MAX, WIRE_TAG_MAX + 1, 128, 255 };
        struct wire_writer w;
        struct wire_msg m;

        for (size_t i = 0; i < ELEMENTSOF(tags); i++) {
                wire_writer_init(&w);
                assert_true(wire_put_str(&w, tags[i], "x"));
                assert_int_equal(parse_writer(&m, &w), -EBADMSG);
                wire_writer_free(&w);
        }
}

static void test_body_rejects_duplicate_tag(void **state) {
        struct wire_writer w;
        struct wire_msg m;

        wire_writer_init(&w);
        assert_true(wire_put_u64(&w, 3, 1));
        assert_true(wire_put_u64(&w, 3, 1));
        assert_int_equal(parse_writer(&m, &w), -EBADMSG);
        wire_writer_free(&w);

        /* Same tag, different type. */
        wire_writer_init(&w);
        assert_true(wire_put_str(&w, 1, "a"));
        assert_true(wire_put_bytes(&w, 1, "a", 1));
        assert_int_equal(parse_writer(&m, &w), -EBADMSG);
        wire_writer_free(&w);

        /* Not adjacent. */
        wire_writer_init(&w);
        assert_true(wire_put_bytes(&w, 2, "", 0));
        assert_true(wire_put_u64(&w, 4, 0));
        assert_true(wire_put_bytes(&w, 2, "", 0));
        assert_int_equal(parse_writer(&m, &w), -EBADMSG);
        wire_writer_free(&w);
}

static void test_body_rejects_unknown_type(void **state) {
        static const uint8_t types[] = { 0, 4, 5, 0x80, 0xff };
        struct wire_writer w;
        struct wire_msg m;

        for (size_t i = 0; i < ELEMENTSOF(types); i++) {
                wire_writer_init(&w);
                raw_field(&w, 1, types[i], 8);
                assert_true(wire_write_u64(&w, 0));
                assert_int_equal(parse_writer(&m, &w), -EBADMSG);
                wire_writer_free(&w);
        }
}

static void test_body_rejects_u64_wrong_length(void **state) {
        static const uint32_t lens[] = { 0, 1, 4, 7, 9, 16 };
        static const uint8_t zeros[16];
        struct wire_writer w;
        struct wire_msg m;

        for (size_t i = 0; i < ELEMENTSOF(lens); i++) {
                wire_writer_init(&w);
                raw_field(&w, 1, WIRE_U64, lens[i]);
                assert_true(wire_write_bytes(&w, zeros, lens[i]));
                assert_int_equal(parse_writer(&m, &w), -EBADMSG);
                wire_writer_free(&w);
        }
}

static void test_body_rejects_string_nul(void **state) {
        assert_int_equal(parse_string("\0", 1), -EBADMSG);
        assert_int_equal(parse_string("ab\0cd", 5), -EBADMSG);
        assert_int_equal(parse_string("abc\0", 4), -EBADMSG);
        assert_int_equal(parse_string("abcd", 4), 0);
}

static void test_body_rejects_invalid_utf8(void **state) {
        static const char *bad[] = {
                "\xff", "\x80", "a\xbf", "\xc3", "\xe2\x82", "\xc3\x28", "\xf8\x88\x80\x80\x80",
                "\xf4\x90\x80\x80", /* U+110000 */
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(parse_string(bad[i], strlen(bad[i])), -EBADMSG);
}

static void test_body_rejects_overlong_utf8(void **state) {
        static const char *bad[] = {
                "\xc0\xaf", "\xc0\x80", "\xc1\xbf", "\xe0\x80\xaf", "\xe0\x9f\xbf", "\xf0\x80\x80\xaf",
                "\xf0\x8f\xbf\xbf",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(parse_string(bad[i], strlen(bad[i])), -EBADMSG);
}

static void test_body_rejects_surrogates(void **state) {
        static const char *bad[] = {
                "\xed\xa0\x80", "\xed\xad\xbf", "\xed\xb0\x80", "\xed\xbf\xbf",
                "\xed\xa0\xbd\xed\xb8\x80", /* CESU-8 pair */
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(parse_string(bad[i], strlen(bad[i])), -EBADMSG);
}

static void test_body_string_max(void **state) {
        char *s = malloc(WIRE_STRING_MAX + 1);

        assert_non_null(s);
        memset(s, 'a', WIRE_STRING_MAX + 1);
        assert_int_equal(parse_string(s, WIRE_STRING_MAX), 0);
        assert_int_equal(parse_string(s, WIRE_STRING_MAX + 1), -EBADMSG);
        free(s);
}

static void test_body_rejects_truncated_field_header(void **state) {
        static const uint8_t hdr[WIRE_FIELD_HEADER] = { 1, WIRE_BYTES, 0, 0, 0, 0 };
        struct wire_msg m;

        for (size_t n = 1; n < WIRE_FIELD_HEADER; n++)
                assert_int_equal(wire_body_parse(&m, hdr, n), -EBADMSG);
        assert_int_equal(wire_body_parse(&m, hdr, WIRE_FIELD_HEADER), 0);
}

static void test_body_rejects_length_past_end(void **state) {
        struct wire_writer w;
        struct wire_msg m;

        wire_writer_init(&w);
        raw_field(&w, 2, WIRE_BYTES, 10);
        assert_true(wire_write_bytes(&w, "123456789", 9));
        assert_int_equal(parse_writer(&m, &w), -EBADMSG);
        wire_writer_free(&w);

        /* A u64 cut short. */
        wire_writer_init(&w);
        raw_field(&w, 3, WIRE_U64, 8);
        assert_true(wire_write_u32(&w, 0));
        assert_int_equal(parse_writer(&m, &w), -EBADMSG);
        wire_writer_free(&w);

        /* A length that would wrap a 32-bit offset. */
        wire_writer_init(&w);
        raw_field(&w, 2, WIRE_BYTES, UINT32_MAX);
        assert_true(wire_write_bytes(&w, "x", 1));
        assert_int_equal(parse_writer(&m, &w), -EBADMSG);
        wire_writer_free(&w);
}

static void test_body_rejects_trailing_bytes(void **state) {
        static const uint8_t junk[][5] = { { 0 }, { 1, 2, 3 }, { 1, WIRE_BYTES, 0, 0, 0 } };
        static const size_t junk_len[] = { 1, 3, 5 };
        struct wire_writer w;
        struct wire_msg m;

        for (size_t i = 0; i < ELEMENTSOF(junk); i++) {
                wire_writer_init(&w);
                assert_true(wire_put_u64(&w, 3, 9));
                assert_true(wire_write_bytes(&w, junk[i], junk_len[i]));
                assert_int_equal(parse_writer(&m, &w), -EBADMSG);
                wire_writer_free(&w);
        }
}

static void test_body_rejects_oversized(void **state) {
        struct wire_msg m;
        uint8_t *big = calloc(1, WIRE_BODY_MAX + 1);

        assert_non_null(big);
        /* Rejected on its size alone, before the first field is read. */
        assert_int_equal(wire_body_parse(&m, big, WIRE_BODY_MAX + 1), -EMSGSIZE);
        free(big);
}

/* ---- accessors ---- */

static void test_get_absent(void **state) {
        struct wire_writer w;
        struct wire_msg m;
        uint64_t v = 99;
        char s[8] = "keep";
        const uint8_t *p = NULL;
        size_t n = 99;

        wire_writer_init(&w);
        assert_true(wire_put_u64(&w, 1, 5));
        assert_int_equal(parse_writer(&m, &w), 0);
        assert_int_equal(wire_get_u64(&m, 2, &v), -ENOENT);
        assert_int_equal(wire_get_str(&m, 2, s, sizeof(s)), -ENOENT);
        assert_int_equal(wire_get_bytes(&m, 2, &p, &n), -ENOENT);
        /* Outputs untouched. */
        assert_int_equal(v, 99);
        assert_string_equal(s, "keep");
        assert_null(p);
        assert_int_equal(n, 99);
        /* Tags outside the table are simply absent. */
        assert_int_equal(wire_get_u64(&m, 0, &v), -ENOENT);
        assert_int_equal(wire_get_u64(&m, WIRE_TAG_MAX, &v), -ENOENT);
        assert_int_equal(wire_get_str(&m, 255, s, sizeof(s)), -ENOENT);
        assert_int_equal(wire_get_bytes(&m, 200, &p, &n), -ENOENT);
        wire_writer_free(&w);
}

static void test_get_wrong_type(void **state) {
        struct wire_writer w;
        struct wire_msg m;
        uint64_t v;
        char s[8];
        const uint8_t *p;
        size_t n;

        wire_writer_init(&w);
        assert_true(wire_put_u64(&w, 1, 5));
        assert_true(wire_put_str(&w, 2, "s"));
        assert_true(wire_put_bytes(&w, 3, "b", 1));
        assert_int_equal(parse_writer(&m, &w), 0);
        assert_int_equal(wire_get_str(&m, 1, s, sizeof(s)), -EBADMSG);
        assert_int_equal(wire_get_bytes(&m, 1, &p, &n), -EBADMSG);
        assert_int_equal(wire_get_u64(&m, 2, &v), -EBADMSG);
        assert_int_equal(wire_get_bytes(&m, 2, &p, &n), -EBADMSG);
        assert_int_equal(wire_get_u64(&m, 3, &v), -EBADMSG);
        assert_int_equal(wire_get_str(&m, 3, s, sizeof(s)), -EBADMSG);
        wire_writer_free(&w);
}

static void test_get_str_small_buffer(void **state) {
        struct wire_writer w;
        struct wire_msg m;
        char s[8];

        wire_writer_init(&w);
        assert_true(wire_put_str(&w, 1, "hello"));
        assert_true(wire_put_str(&w, 2, ""));
        assert_int_equal(parse_writer(&m, &w), 0);
        assert_int_equal(wire_get_str(&m, 1, s, 5), -ENAMETOOLONG); /* no room for NUL */
        assert_int_equal(wire_get_str(&m, 1, s, 1), -ENAMETOOLONG);
        assert_int_equal(wire_get_str(&m, 1, s, 0), -ENAMETOOLONG);
        assert_int_equal(wire_get_str(&m, 1, s, 6), 0);
        assert_string_equal(s, "hello");
        assert_int_equal(wire_get_str(&m, 2, s, 0), -ENAMETOOLONG);
        assert_int_equal(wire_get_str(&m, 2, s, 1), 0);
        assert_string_equal(s, "");
        wire_writer_free(&w);
}

/* ---- round trips ---- */

static void test_roundtrip_u64(void **state) {
        static const uint64_t vals[] = { 0, 1, 0xff, 0x100, UINT32_MAX, UINT64_C(0x0102030405060708), UINT64_MAX };
        struct wire_writer w;
        struct wire_msg m;

        wire_writer_init(&w);
        for (size_t i = 0; i < ELEMENTSOF(vals); i++)
                assert_true(wire_put_u64(&w, (uint8_t) (i + 1), vals[i]));
        assert_int_equal(parse_writer(&m, &w), 0);
        for (size_t i = 0; i < ELEMENTSOF(vals); i++) {
                uint64_t v;
                assert_int_equal(wire_get_u64(&m, (uint8_t) (i + 1), &v), 0);
                assert_true(v == vals[i]);
        }
        /* Field encoding: tag, type, 4-byte length 8, 8-byte big-endian value. */
        static const uint8_t first[] = { 1, WIRE_U64, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0 };
        assert_memory_equal(w.p, first, sizeof(first));
        wire_writer_free(&w);
}

static void test_roundtrip_str(void **state) {
        static const char *vals[] = { "", "hf/token", "caf\xc3\xa9", "\xe2\x82\xac", "\xf0\x9d\x84\x9e",
                                      "\xf4\x8f\xbf\xbf" };
        struct wire_writer w;
        struct wire_msg m;
        char s[WIRE_STRING_MAX + 1];

        wire_writer_init(&w);
        for (size_t i = 0; i < ELEMENTSOF(vals); i++)
                assert_true(wire_put_str(&w, (uint8_t) (i + 1), vals[i]));
        assert_int_equal(parse_writer(&m, &w), 0);
        for (size_t i = 0; i < ELEMENTSOF(vals); i++) {
                assert_int_equal(wire_get_str(&m, (uint8_t) (i + 1), s, sizeof(s)), 0);
                assert_string_equal(s, vals[i]);
        }
        wire_writer_free(&w);

        /* The longest string, and one byte more refused by the writer. */
        char *big = malloc(WIRE_STRING_MAX + 2);
        assert_non_null(big);
        memset(big, 'z', WIRE_STRING_MAX);
        big[WIRE_STRING_MAX] = 0;
        wire_writer_init(&w);
        assert_true(wire_put_str(&w, 1, big));
        assert_int_equal(parse_writer(&m, &w), 0);
        assert_int_equal(wire_get_str(&m, 1, s, sizeof(s)), 0);
        assert_int_equal(strlen(s), WIRE_STRING_MAX);
        big[WIRE_STRING_MAX] = 'z';
        big[WIRE_STRING_MAX + 1] = 0;
        assert_false(wire_put_str(&w, 2, big));
        assert_true(w.error);
        wire_writer_free(&w);
        free(big);
}

static void test_roundtrip_bytes(void **state) {
        static const uint8_t with_nul[] = { 0, 1, 0, 0xff, 0 };
        struct wire_writer w;
        struct wire_msg m;
        const uint8_t *p;
        size_t n;
        uint8_t *big = malloc(WIRE_VALUE_MAX);

        assert_non_null(big);
        randombytes_buf(big, WIRE_VALUE_MAX);
        wire_writer_init(&w);
        assert_true(wire_put_bytes(&w, 1, NULL, 0));
        assert_true(wire_put_bytes(&w, 2, with_nul, sizeof(with_nul)));
        assert_true(wire_put_bytes(&w, 3, big, WIRE_VALUE_MAX));
        assert_int_equal(parse_writer(&m, &w), 0);
        assert_int_equal(wire_get_bytes(&m, 1, &p, &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(wire_get_bytes(&m, 2, &p, &n), 0);
        assert_int_equal(n, sizeof(with_nul));
        assert_memory_equal(p, with_nul, sizeof(with_nul));
        assert_int_equal(wire_get_bytes(&m, 3, &p, &n), 0);
        assert_int_equal(n, WIRE_VALUE_MAX);
        assert_true(memcmp(p, big, WIRE_VALUE_MAX) == 0);
        /* Values are borrowed from the body, not copied. */
        assert_true(p > w.p && p + n <= w.p + w.len);
        wire_writer_free(&w);
        free(big);
}

/* ---- utf8_is_valid ---- */

struct utf8_vector {
        const char *s;
        size_t n; /* 0: strlen */
        bool valid;
};

static void test_utf8_vectors(void **state) {
        static const struct utf8_vector v[] = {
                { "", 0, true },
                { "plain ascii ~\x7f", 0, true },
                { "\0", 1, true }, /* NUL is valid UTF-8; the body parser refuses it separately */
                { "\xc2\x80", 0, true },          /* U+0080, smallest 2-byte */
                { "\xdf\xbf", 0, true },          /* U+07FF */
                { "\xe0\xa0\x80", 0, true },      /* U+0800, smallest 3-byte */
                { "\xed\x9f\xbf", 0, true },      /* U+D7FF, below the surrogates */
                { "\xee\x80\x80", 0, true },      /* U+E000, above them */
                { "\xef\xbf\xbf", 0, true },      /* U+FFFF */
                { "\xf0\x90\x80\x80", 0, true },  /* U+10000, smallest 4-byte */
                { "\xf4\x8f\xbf\xbf", 0, true },  /* U+10FFFF, the last code point */
                { "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 0, true },
                { "\x80", 0, false },             /* lone continuation */
                { "\xbf", 0, false },
                { "\xc0\x80", 0, false },         /* overlong NUL */
                { "\xc1\xbf", 0, false },         /* overlong U+007F */
                { "\xe0\x80\x80", 0, false },     /* overlong 3-byte */
                { "\xe0\x9f\xbf", 0, false },     /* overlong U+07FF */
                { "\xf0\x80\x80\x80", 0, false }, /* overlong 4-byte */
                { "\xf0\x8f\xbf\xbf", 0, false }, /* overlong U+FFFF */
                { "\xed\xa0\x80", 0, false },     /* U+D800 */
                { "\xed\xbf\xbf", 0, false },     /* U+DFFF */
                { "\xf4\x90\x80\x80", 0, false }, /* U+110000 */
                { "\xf5\x80\x80\x80", 0, false },
                { "\xf7\xbf\xbf\xbf", 0, false },
                { "\xf8\x88\x80\x80\x80", 0, false }, /* 5-byte form */
                { "\xfc\x84\x80\x80\x80\x80", 0, false },
                { "\xfe", 0, false },
                { "\xff", 0, false },
                { "\xc3", 0, false },             /* truncated */
                { "\xe2\x82", 0, false },
                { "\xf0\x9d\x84", 0, false },
                { "a\xc3", 0, false },
                { "\xc3\x28", 0, false },         /* bad continuation */
                { "\xe2\x28\xa1", 0, false },
                { "\xe2\x82\x28", 0, false },
                { "\xf0\x28\x8c\xbc", 0, false },
                { "\xc3\xa9\xc3", 0, false },
        };

        for (size_t i = 0; i < ELEMENTSOF(v); i++) {
                size_t n = v[i].n ? v[i].n : strlen(v[i].s);
                if (utf8_is_valid((const uint8_t *) v[i].s, n) != v[i].valid)
                        fail_msg("utf8 vector %zu: expected %s", i, v[i].valid ? "valid" : "invalid");
        }
}

/* A truncated sequence must not be read past n, even if valid bytes follow. */
static void test_utf8_respects_length(void **state) {
        static const uint8_t euro[] = { 0xe2, 0x82, 0xac };

        assert_true(utf8_is_valid(euro, 3));
        assert_false(utf8_is_valid(euro, 1));
        assert_false(utf8_is_valid(euro, 2));
        assert_true(utf8_is_valid(euro, 0));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_reader_big_endian),
                cmocka_unit_test(test_reader_short_read_fails),
                cmocka_unit_test(test_reader_error_is_sticky),
                cmocka_unit_test(test_reader_bytes_borrow),
                cmocka_unit_test(test_reader_bytes_huge_n),
                cmocka_unit_test(test_reader_empty),
                cmocka_unit_test(test_reader_lbytes_ok),
                cmocka_unit_test(test_reader_lbytes_over_max),
                cmocka_unit_test(test_reader_lbytes_past_end),
                cmocka_unit_test(test_reader_lbytes_short_length),
                cmocka_unit_test(test_writer_big_endian),
                cmocka_unit_test(test_writer_grows),
                cmocka_unit_test(test_writer_limit_exceeded),
                cmocka_unit_test(test_writer_default_limit),
                cmocka_unit_test(test_writer_reset_keeps_capacity),
                cmocka_unit_test(test_writer_lbytes_too_long),
                cmocka_unit_test(test_writer_empty_write),
                cmocka_unit_test(test_header_ok),
                cmocka_unit_test(test_header_bad_magic),
                cmocka_unit_test(test_header_wrong_version),
                cmocka_unit_test(test_header_body_too_large),
                cmocka_unit_test(test_frame_end_patches_length),
                cmocka_unit_test(test_frame_end_empty_body),
                cmocka_unit_test(test_frame_end_large_body),
                cmocka_unit_test(test_frame_end_errors),
                cmocka_unit_test(test_body_empty),
                cmocka_unit_test(test_body_clears_old_fields),
                cmocka_unit_test(test_body_tag_bounds_accepted),
                cmocka_unit_test(test_body_any_field_order),
                cmocka_unit_test(test_body_rejects_tag_zero),
                cmocka_unit_test(test_body_rejects_tag_too_large),
                cmocka_unit_test(test_body_rejects_duplicate_tag),
                cmocka_unit_test(test_body_rejects_unknown_type),
                cmocka_unit_test(test_body_rejects_u64_wrong_length),
                cmocka_unit_test(test_body_rejects_string_nul),
                cmocka_unit_test(test_body_rejects_invalid_utf8),
                cmocka_unit_test(test_body_rejects_overlong_utf8),
                cmocka_unit_test(test_body_rejects_surrogates),
                cmocka_unit_test(test_body_string_max),
                cmocka_unit_test(test_body_rejects_truncated_field_header),
                cmocka_unit_test(test_body_rejects_length_past_end),
                cmocka_unit_test(test_body_rejects_trailing_bytes),
                cmocka_unit_test(test_body_rejects_oversized),
                cmocka_unit_test(test_get_absent),
                cmocka_unit_test(test_get_wrong_type),
                cmocka_unit_test(test_get_str_small_buffer),
                cmocka_unit_test(test_roundtrip_u64),
                cmocka_unit_test(test_roundtrip_str),
                cmocka_unit_test(test_roundtrip_bytes),
                cmocka_unit_test(test_utf8_vectors),
                cmocka_unit_test(test_utf8_respects_length),
        };

        return cmocka_run_group_tests_name("wire", tests, setup, NULL);
}
