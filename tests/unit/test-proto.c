/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for common/proto.c: name and prefix rules, the request
 * decoders (good and bad messages, built with the writer), version records
 * and opcode names. Key material is compared with memcmp, never printed. */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <sodium.h>

#include "proto.h"
#include "util.h"

static int setup(void **state) {
        return sodium_init() < 0 ? -1 : 0;
}

/* A message under construction: fields go into w, parse() fills m, which
 * borrows w's buffer until done(). */
struct msg {
        struct wire_writer w;
        struct wire_msg m;
};

static void msg_init(struct msg *x) {
        wire_writer_init(&x->w);
}

static const struct wire_msg *msg_parse(struct msg *x) {
        assert_false(x->w.error);
        assert_int_equal(wire_body_parse(&x->m, x->w.p, x->w.len), 0);
        return &x->m;
}

static void msg_done(struct msg *x) {
        wire_writer_free(&x->w);
}

/* A string of n copies of c; caller frees. */
static char *repeat(char c, size_t n) {
        char *s = malloc(n + 1);
        assert_non_null(s);
        memset(s, c, n);
        s[n] = 0;
        return s;
}

/* ---- names and prefixes ---- */

static void test_name_valid(void **state) {
        static const char *good[] = {
                "hf/token", "db/train-ro", "a", "A.b_c-d/e", "0", "a/b/c/d", "...", "a.b/..c/d..", ".x", "-",
        };
        char *max = repeat('n', PROTO_NAME_MAX);
        char *segs = repeat('s', PROTO_NAME_MAX);

        for (size_t i = 1; i < PROTO_NAME_MAX; i += 2)
                segs[i] = '/'; /* "s/s/s/.../s" ... ending in 's' */
        segs[PROTO_NAME_MAX - 1] = 's';
        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                if (!proto_name_valid(good[i]))
                        fail_msg("name '%s' should be valid", good[i]);
        assert_true(proto_name_valid(max));
        assert_true(proto_name_valid(segs));
        free(max);
        free(segs);
}

static void test_name_invalid(void **state) {
        static const char *bad[] = {
                "", "/", "/a", "a/", "a//b", "//", "..", "a/../b", ".", "a/./b", "./a", "a/.", "../a", "a/..",
                "a b", " a", "a\\b", "a\tb", "a\nb", "a:b", "a*", "a%2f", "caf\xc3\xa9", "\xff", "a\x7f",
        };
        char *over = repeat('n', PROTO_NAME_MAX + 1);

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                if (proto_name_valid(bad[i]))
                        fail_msg("name %zu should be invalid", i);
        assert_false(proto_name_valid(over));
        free(over);
}

/* Audiences are paths like names (policy globs match their segments), with
 * ':' allowed inside a segment. */
static void test_audience_valid(void **state) {
        static const char *good[] = {
                "inference-api", "ml2/train", "ml2/a/b", "urn:example:api", "host:8443", "a", "...", "a.b/..c",
        };
        static const char *bad[] = {
                "", "/", "/ml2", "ml2/", "ml2//prod", "ml2/../../prod", "..", ".", "ml2/./x", "ml2/..", "../x",
                "a b", "a\tb", "a\nb", "a\x01b", "a\x7f", "caf\xc3\xa9", "a*", "a%2f", "https://api.example.com",
        };
        char *max = repeat('a', PROTO_AUDIENCE_MAX);
        char *over = repeat('a', PROTO_AUDIENCE_MAX + 1);

        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                if (!proto_audience_valid(good[i]))
                        fail_msg("audience '%s' should be valid", good[i]);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                if (proto_audience_valid(bad[i]))
                        fail_msg("audience %zu should be invalid", i);
        assert_true(proto_audience_valid(max));
        assert_false(proto_audience_valid(over));
        free(max);
        free(over);
}

static void test_prefix_valid(void **state) {
        static const char *good[] = { "", "a", "a/", "hf/", "hf/token", "db/train-ro/", "A.b_c-d/e/" };
        static const char *bad[] = { "/", "//", "/a", "a//", "a//b", "../", "./", "a/../", "a/./",
                                     "..", ".", "a b/", "a\\b/", "caf\xc3\xa9/" };
        char *max = repeat('p', PROTO_NAME_MAX);
        char *over = repeat('p', PROTO_NAME_MAX + 1);

        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                if (!proto_prefix_valid(good[i]))
                        fail_msg("prefix '%s' should be valid", good[i]);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                if (proto_prefix_valid(bad[i]))
                        fail_msg("prefix %zu should be invalid", i);
        assert_true(proto_prefix_valid(max));
        max[PROTO_NAME_MAX - 1] = '/'; /* 255-character name plus '/' */
        assert_true(proto_prefix_valid(max));
        assert_false(proto_prefix_valid(over));
        free(max);
        free(over);
}

/* ---- proto_decode_secret ---- */

static void test_secret_name_only(void **state) {
        struct msg x;
        struct req_secret r;
        const char *why = NULL;

        msg_init(&x);
        wire_put_str(&x.w, T_NAME, "hf/token");
        assert_int_equal(proto_decode_secret(msg_parse(&x), &r, &why), 0);
        assert_string_equal(r.name, "hf/token");
        assert_int_equal(r.version, 0);
        assert_false(r.has_cas);
        assert_null(r.value);
        assert_int_equal(r.value_len, 0);
        assert_int_equal(r.max_versions, 0);
        msg_done(&x);
}

static void test_secret_all_fields(void **state) {
        static const uint8_t value[] = { 's', 0, 'e', 0xff };
        struct msg x;
        struct req_secret r;
        const char *why = NULL;

        msg_init(&x);
        wire_put_str(&x.w, T_NAME, "db/train-ro");
        wire_put_bytes(&x.w, T_VALUE, value, sizeof(value));
        wire_put_u64(&x.w, T_VERSION, 12);
        wire_put_u64(&x.w, T_CAS, 11);
        wire_put_u64(&x.w, T_MAX_VERSIONS, 1000);
        assert_int_equal(proto_decode_secret(msg_parse(&x), &r, &why), 0);
        assert_string_equal(r.name, "db/train-ro");
        assert_int_equal(r.version, 12);
        assert_true(r.has_cas);
        assert_int_equal(r.cas, 11);
        assert_int_equal(r.max_versions, 1000);
        assert_int_equal(r.value_len, sizeof(value));
        assert_true(memcmp(r.value, value, sizeof(value)) == 0);
        msg_done(&x);
}

static void test_secret_cas_zero_is_present(void **state) {
        struct msg x;
        struct req_secret r;
        const char *why = NULL;

        msg_init(&x);
        wire_put_str(&x.w, T_NAME, "a");
        wire_put_u64(&x.w, T_CAS, 0);
        wire_put_bytes(&x.w, T_VALUE, NULL, 0);
        assert_int_equal(proto_decode_secret(msg_parse(&x), &r, &why), 0);
        assert_true(r.has_cas);
        assert_int_equal(r.cas, 0);
        assert_non_null(r.value); /* present, empty */
        assert_int_equal(r.value_len, 0);
        msg_done(&x);
}

static void test_secret_missing_name(void **state) {
        struct msg x;
        struct req_secret r;
        const char *why = NULL;

        msg_init(&x);
        wire_put_bytes(&x.w, T_VALUE, "v", 1);
        assert_int_equal(proto_decode_secret(msg_parse(&x), &r, &why), -EINVAL);
        assert_non_null(why);
        assert_non_null(strstr(why, "missing"));
        msg_done(&x);
}

static void test_secret_bad_name(void **state) {
        static const char *bad[] = { "", "/a", "a/", "a//b", "..", "a/../b", "a b", "a\\b", "caf\xc3\xa9" };
        char *over = repeat('n', PROTO_NAME_MAX + 1);
        struct msg x;
        struct req_secret r;
        const char *why;

        for (size_t i = 0; i <= ELEMENTSOF(bad); i++) {
                why = NULL;
                msg_init(&x);
                wire_put_str(&x.w, T_NAME, i < ELEMENTSOF(bad) ? bad[i] : over);
                assert_int_equal(proto_decode_secret(msg_parse(&x), &r, &why), -EINVAL);
                assert_non_null(why);
                assert_non_null(strstr(why, "invalid secret name"));
                msg_done(&x);
        }
        free(over);
}

static void test_secret_name_wrong_type(void **state) {
        struct msg x;
        struct req_secret r;
        const char *why = NULL;

        msg_init(&x);
        wire_put_bytes(&x.w, T_NAME, "hf/token", 8);
        assert_int_equal(proto_decode_secret(msg_parse(&x), &r, &why), -EINVAL);
        assert_non_null(why);
        msg_done(&x);

        msg_init(&x);
        wire_put_u64(&x.w, T_NAME, 1);
        assert_int_equal(proto_decode_secret(msg_parse(&x), &r, &why), -EINVAL);
        msg_done(&x);
}

static void test_secret_numbers_wrong_type(void **state) {
        static const uint8_t tags[] = { T_VERSION, T_CAS, T_MAX_VERSIONS };
        struct msg x;
        struct req_secret r;
        const char *why;

        for (size_t i = 0; i < ELEMENTSOF(tags); i++) {
                why = NULL;
                msg_init(&x);
                wire_put_str(&x.w, T_NAME, "a");
                wire_put_str(&x.w, tags[i], "1");
                assert_int_equal(proto_decode_secret(msg_parse(&x), &r, &why), -EINVAL);
                assert_non_null(why);
                msg_done(&x);

                msg_init(&x);
                wire_put_str(&x.w, T_NAME, "a");
                wire_put_bytes(&x.w, tags[i], "\0\0\0\0\0\0\0\1", 8);
                assert_int_equal(proto_decode_secret(msg_parse(&x), &r, &why), -EINVAL);
                msg_done(&x);
        }
}

static void test_secret_value_wrong_type(void **state) {
        struct msg x;
        struct req_secret r;
        const char *why = NULL;

        msg_init(&x);
        wire_put_str(&x.w, T_NAME, "a");
        wire_put_str(&x.w, T_VALUE, "text");
        assert_int_equal(proto_decode_secret(msg_parse(&x), &r, &why), -EINVAL);
        assert_non_null(why);
        /* The error text never carries the value. */
        assert_null(strstr(why, "text"));
        msg_done(&x);

        msg_init(&x);
        wire_put_str(&x.w, T_NAME, "a");
        wire_put_u64(&x.w, T_VALUE, 5);
        assert_int_equal(proto_decode_secret(msg_parse(&x), &r, &why), -EINVAL);
        msg_done(&x);
}

static void test_secret_value_max(void **state) {
        uint8_t *big = calloc(1, WIRE_VALUE_MAX + 1);
        struct msg x;
        struct req_secret r;
        const char *why = NULL;

        assert_non_null(big);
        msg_init(&x);
        wire_put_str(&x.w, T_NAME, "big");
        wire_put_bytes(&x.w, T_VALUE, big, WIRE_VALUE_MAX);
        assert_int_equal(proto_decode_secret(msg_parse(&x), &r, &why), 0);
        assert_int_equal(r.value_len, WIRE_VALUE_MAX);
        msg_done(&x);

        msg_init(&x);
        wire_put_str(&x.w, T_NAME, "big");
        wire_put_bytes(&x.w, T_VALUE, big, WIRE_VALUE_MAX + 1);
        assert_int_equal(proto_decode_secret(msg_parse(&x), &r, &why), -E2BIG);
        assert_non_null(why);
        msg_done(&x);
        free(big);
}

static void test_secret_max_versions(void **state) {
        static const struct {
                uint64_t v;
                int rc;
        } cases[] = { { 0, 0 }, { 1, 0 }, { 1000, 0 }, { 1001, -EINVAL }, { UINT64_MAX, -EINVAL } };
        struct msg x;
        struct req_secret r;
        const char *why;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                why = NULL;
                msg_init(&x);
                wire_put_str(&x.w, T_NAME, "a");
                wire_put_u64(&x.w, T_MAX_VERSIONS, cases[i].v);
                assert_int_equal(proto_decode_secret(msg_parse(&x), &r, &why), cases[i].rc);
                if (cases[i].rc < 0)
                        assert_non_null(why);
                msg_done(&x);
        }
}

static void test_secret_ignores_unrelated_tags(void **state) {
        struct msg x;
        struct req_secret r;
        const char *why = NULL;

        msg_init(&x);
        wire_put_str(&x.w, T_NAME, "a");
        wire_put_str(&x.w, T_PREFIX, "whatever");
        wire_put_u64(&x.w, 63, 1);
        assert_int_equal(proto_decode_secret(msg_parse(&x), &r, &why), 0);
        msg_done(&x);
}

/* ---- proto_decode_list ---- */

static void test_list_no_prefix(void **state) {
        struct msg x;
        struct req_list r;
        const char *why = NULL;

        msg_init(&x);
        memset(&r, 'x', sizeof(r));
        assert_int_equal(proto_decode_list(msg_parse(&x), &r, &why), 0);
        assert_string_equal(r.prefix, "");
        msg_done(&x);
}

static void test_list_prefix(void **state) {
        static const char *good[] = { "", "hf", "hf/", "db/train-ro" };
        struct msg x;
        struct req_list r;
        const char *why = NULL;

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                msg_init(&x);
                wire_put_str(&x.w, T_PREFIX, good[i]);
                assert_int_equal(proto_decode_list(msg_parse(&x), &r, &why), 0);
                assert_string_equal(r.prefix, good[i]);
                msg_done(&x);
        }
}

static void test_list_bad_prefix(void **state) {
        static const char *bad[] = { "/", "a//", "../", "a b" };
        char *over = repeat('p', 300);
        struct msg x;
        struct req_list r;
        const char *why;

        for (size_t i = 0; i <= ELEMENTSOF(bad); i++) {
                why = NULL;
                msg_init(&x);
                wire_put_str(&x.w, T_PREFIX, i < ELEMENTSOF(bad) ? bad[i] : over);
                assert_int_equal(proto_decode_list(msg_parse(&x), &r, &why), -EINVAL);
                assert_non_null(why);
                msg_done(&x);
        }
        free(over);

        msg_init(&x);
        wire_put_bytes(&x.w, T_PREFIX, "hf/", 3);
        assert_int_equal(proto_decode_list(msg_parse(&x), &r, &why), -EINVAL);
        msg_done(&x);

        msg_init(&x);
        wire_put_u64(&x.w, T_PREFIX, 0);
        assert_int_equal(proto_decode_list(msg_parse(&x), &r, &why), -EINVAL);
        msg_done(&x);
}

/* ---- proto_decode_init ---- */

static uint8_t key[PROTO_KEY_MAX + 1];

static int init_with(const char *method, size_t key_len, bool with_key, struct req_seal *r, const char **why) {
        struct msg x;
        int rc;

        msg_init(&x);
        if (method)
                wire_put_str(&x.w, T_METHOD, method);
        if (with_key)
                wire_put_bytes(&x.w, T_KEY, key, key_len);
        rc = proto_decode_init(msg_parse(&x), r, why);
        msg_done(&x);
        return rc;
}

static int shamir_with(uint64_t shares, uint64_t threshold, struct req_seal *r, const char **why) {
        struct msg x;
        int rc;

        msg_init(&x);
        wire_put_str(&x.w, T_METHOD, "shamir");
        wire_put_u64(&x.w, T_SHARES, shares);
        wire_put_u64(&x.w, T_THRESHOLD, threshold);
        rc = proto_decode_init(msg_parse(&x), r, why);
        msg_done(&x);
        return rc;
}

static void test_init_keyfile(void **state) {
        struct req_seal r;
        const char *why = NULL;

        randombytes_buf(key, sizeof(key));
        assert_int_equal(init_with("keyfile", 32, true, &r, &why), 0);
        assert_string_equal(r.method, "keyfile");
        assert_int_equal(r.key_len, 32);
        assert_int_equal(init_with("keyfile", PROTO_KEY_MAX, true, &r, &why), 0);
        assert_int_equal(r.key_len, PROTO_KEY_MAX);
}

static void test_init_keyfile_too_short(void **state) {
        struct req_seal r;
        const char *why = NULL;

        assert_int_equal(init_with("keyfile", PROTO_KEYFILE_MIN - 1, true, &r, &why), -EINVAL);
        assert_non_null(why);
        why = NULL;
        assert_int_equal(init_with("keyfile", 1, true, &r, &why), -EINVAL);
        assert_non_null(why);
}

static void test_init_key_missing_empty_or_large(void **state) {
        static const char *methods[] = { "keyfile", "passphrase" };
        struct req_seal r;
        const char *why;

        for (size_t i = 0; i < ELEMENTSOF(methods); i++) {
                why = NULL;
                assert_int_equal(init_with(methods[i], 0, false, &r, &why), -EINVAL);
                assert_non_null(why);
                assert_int_equal(init_with(methods[i], 0, true, &r, &why), -EINVAL);
                assert_int_equal(init_with(methods[i], PROTO_KEY_MAX + 1, true, &r, &why), -EINVAL);
        }
}

static void test_init_passphrase(void **state) {
        struct req_seal r;
        const char *why = NULL;

        assert_int_equal(init_with("passphrase", 1, true, &r, &why), 0);
        assert_string_equal(r.method, "passphrase");
        assert_int_equal(r.key_len, 1);
        assert_int_equal(r.shares, 0);
        assert_int_equal(r.threshold, 0);
}

static void test_init_key_wrong_type(void **state) {
        struct msg x;
        struct req_seal r;
        const char *why = NULL;

        msg_init(&x);
        wire_put_str(&x.w, T_METHOD, "passphrase");
        wire_put_str(&x.w, T_KEY, "correct horse");
        assert_int_equal(proto_decode_init(msg_parse(&x), &r, &why), -EINVAL);
        assert_non_null(why);
        assert_null(strstr(why, "horse"));
        msg_done(&x);
}

static void test_init_shamir_bounds(void **state) {
        static const struct {
                uint64_t shares, threshold;
                int rc;
        } cases[] = {
                { 2, 2, 0 },          { 3, 2, 0 },          { 5, 3, 0 },           { 255, 255, 0 },
                { 255, 2, 0 },        { 5, 1, -EINVAL },    { 5, 0, -EINVAL },     { 3, 4, -EINVAL },
                { 1, 1, -EINVAL },    { 0, 0, -EINVAL },    { 256, 2, -EINVAL },   { 256, 256, -EINVAL },
                { UINT64_MAX, 2, -EINVAL },                 { 5, UINT64_MAX, -EINVAL },
        };
        struct req_seal r;
        const char *why;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                why = NULL;
                int rc = shamir_with(cases[i].shares, cases[i].threshold, &r, &why);
                if (rc != cases[i].rc)
                        fail_msg("shamir %" PRIu64 "/%" PRIu64 ": rc %d, expected %d", cases[i].threshold,
                                 cases[i].shares, rc, cases[i].rc);
                if (rc == 0) {
                        assert_int_equal(r.shares, cases[i].shares);
                        assert_int_equal(r.threshold, cases[i].threshold);
                        assert_null(r.key); /* no key needed */
                } else
                        assert_non_null(why);
        }
}

static void test_init_shamir_missing_or_wrong_type(void **state) {
        struct msg x;
        struct req_seal r;
        const char *why = NULL;

        msg_init(&x);
        wire_put_str(&x.w, T_METHOD, "shamir");
        wire_put_u64(&x.w, T_THRESHOLD, 2);
        assert_int_equal(proto_decode_init(msg_parse(&x), &r, &why), -EINVAL);
        msg_done(&x);

        msg_init(&x);
        wire_put_str(&x.w, T_METHOD, "shamir");
        wire_put_u64(&x.w, T_SHARES, 3);
        assert_int_equal(proto_decode_init(msg_parse(&x), &r, &why), -EINVAL);
        msg_done(&x);

        msg_init(&x);
        wire_put_str(&x.w, T_METHOD, "shamir");
        wire_put_bytes(&x.w, T_SHARES, "\0\0\0\0\0\0\0\3", 8);
        wire_put_u64(&x.w, T_THRESHOLD, 2);
        assert_int_equal(proto_decode_init(msg_parse(&x), &r, &why), -EINVAL);
        msg_done(&x);

        msg_init(&x);
        wire_put_str(&x.w, T_METHOD, "shamir");
        wire_put_u64(&x.w, T_SHARES, 3);
        wire_put_str(&x.w, T_THRESHOLD, "2");
        assert_int_equal(proto_decode_init(msg_parse(&x), &r, &why), -EINVAL);
        msg_done(&x);
}

static void test_init_bad_method(void **state) {
        static const char *bad[] = { "rot13", "", "Keyfile", "keyfile ", "shamir\x7f", "passphrasepassphrase" };
        struct req_seal r;
        const char *why;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                why = NULL;
                assert_int_equal(init_with(bad[i], 32, true, &r, &why), -EINVAL);
                assert_non_null(why);
        }
        why = NULL;
        assert_int_equal(init_with(NULL, 32, true, &r, &why), -EINVAL); /* missing */
        assert_non_null(why);
}

static void test_init_method_wrong_type(void **state) {
        struct msg x;
        struct req_seal r;
        const char *why = NULL;

        msg_init(&x);
        wire_put_bytes(&x.w, T_METHOD, "keyfile", 7);
        wire_put_bytes(&x.w, T_KEY, key, 32);
        assert_int_equal(proto_decode_init(msg_parse(&x), &r, &why), -EINVAL);
        assert_non_null(why);
        msg_done(&x);
}

/* ---- proto_decode_unseal ---- */

static int unseal_with(size_t key_len, bool with_key, struct req_seal *r, const char **why) {
        struct msg x;
        int rc;

        msg_init(&x);
        if (with_key)
                wire_put_bytes(&x.w, T_KEY, key, key_len);
        rc = proto_decode_unseal(msg_parse(&x), r, why);
        msg_done(&x);
        return rc;
}

static void test_unseal(void **state) {
        struct req_seal r;
        const char *why = NULL;

        assert_int_equal(unseal_with(PROTO_SHARE_SIZE, true, &r, &why), 0);
        assert_int_equal(r.key_len, PROTO_SHARE_SIZE);
        assert_int_equal(unseal_with(1, true, &r, &why), 0);
        assert_int_equal(unseal_with(PROTO_KEY_MAX, true, &r, &why), 0);
}

static void test_unseal_bad_key(void **state) {
        struct req_seal r;
        const char *why = NULL;
        struct msg x;

        assert_int_equal(unseal_with(0, false, &r, &why), -EINVAL);
        assert_non_null(why);
        assert_int_equal(unseal_with(0, true, &r, &why), -EINVAL);
        assert_int_equal(unseal_with(PROTO_KEY_MAX + 1, true, &r, &why), -EINVAL);

        msg_init(&x);
        wire_put_str(&x.w, T_KEY, "passphrase");
        assert_int_equal(proto_decode_unseal(msg_parse(&x), &r, &why), -EINVAL);
        msg_done(&x);

        msg_init(&x);
        wire_put_u64(&x.w, T_KEY, 1);
        assert_int_equal(proto_decode_unseal(msg_parse(&x), &r, &why), -EINVAL);
        msg_done(&x);
}

/* ---- version records ---- */

static void test_version_roundtrip(void **state) {
        static const struct proto_version in[] = {
                { 1, 1700000000, 0, false },
                { 2, 1700000001, 1700000100, false },
                { UINT64_MAX, UINT64_MAX, UINT64_MAX, true },
                { 0, 0, 0, true },
        };
        struct wire_writer w;
        struct wire_reader r;
        struct proto_version out;

        wire_writer_init(&w);
        for (size_t i = 0; i < ELEMENTSOF(in); i++)
                assert_true(proto_version_write(&w, &in[i]));
        assert_int_equal(w.len, 25 * ELEMENTSOF(in));
        wire_reader_init(&r, w.p, w.len);
        for (size_t i = 0; i < ELEMENTSOF(in); i++) {
                assert_true(proto_version_read(&r, &out));
                assert_true(out.version == in[i].version);
                assert_true(out.created == in[i].created);
                assert_true(out.deleted == in[i].deleted);
                assert_int_equal(out.destroyed, in[i].destroyed);
        }
        assert_true(wire_reader_done(&r));
        assert_false(proto_version_read(&r, &out));
        wire_writer_free(&w);
}

static void test_version_destroyed_byte(void **state) {
        static const uint8_t bad[] = { 2, 0x80, 0xff };
        struct wire_writer w;
        struct wire_reader r;
        struct proto_version out;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                wire_writer_init(&w);
                assert_true(wire_write_u64(&w, 1) && wire_write_u64(&w, 2) && wire_write_u64(&w, 0));
                assert_true(wire_write_u8(&w, bad[i]));
                wire_reader_init(&r, w.p, w.len);
                assert_false(proto_version_read(&r, &out));
                assert_true(r.error);
                wire_writer_free(&w);
        }
}

static void test_version_truncated(void **state) {
        static const struct proto_version v = { 7, 8, 9, true };
        struct wire_writer w;
        struct wire_reader r;
        struct proto_version out;

        wire_writer_init(&w);
        assert_true(proto_version_write(&w, &v));
        for (size_t n = 0; n < 25; n++) {
                wire_reader_init(&r, w.p, n);
                assert_false(proto_version_read(&r, &out));
                assert_true(r.error);
        }
        wire_writer_free(&w);
}

/* ---- opcode names ---- */

static void test_op_name(void **state) {
        static const struct {
                uint16_t op;
                const char *name;
        } ops[] = {
                { OP_STATUS, "status" },     { OP_INIT, "init" },         { OP_UNSEAL, "unseal" },
                { OP_SEAL, "seal" },         { OP_ROTATE, "rotate" },     { OP_PUT, "put" },
                { OP_GET, "get" },           { OP_LIST, "list" },         { OP_VERSIONS, "versions" },
                { OP_DELETE, "delete" },     { OP_UNDELETE, "undelete" }, { OP_DESTROY, "destroy" },
                { OP_WHOAMI, "whoami" },     { OP_AUDIT_VERIFY, "audit-verify" },
                { OP_ACCEPT_ROLLBACK, "accept-rollback" },
        };

        for (size_t i = 0; i < ELEMENTSOF(ops); i++) {
                assert_string_equal(proto_op_name(ops[i].op), ops[i].name);
                assert_string_equal(proto_op_name(ops[i].op | PROTO_REPLY_BIT), ops[i].name);
        }
        assert_string_equal(proto_op_name(0), "unknown");
        assert_string_equal(proto_op_name(7), "unknown");
        assert_string_equal(proto_op_name(999), "unknown");
        assert_string_equal(proto_op_name(PROTO_REPLY_BIT), "unknown");
        assert_string_equal(proto_op_name(OP_ERROR), "unknown");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_name_valid),
                cmocka_unit_test(test_name_invalid),
                cmocka_unit_test(test_prefix_valid),
                cmocka_unit_test(test_audience_valid),
                cmocka_unit_test(test_secret_name_only),
                cmocka_unit_test(test_secret_all_fields),
                cmocka_unit_test(test_secret_cas_zero_is_present),
                cmocka_unit_test(test_secret_missing_name),
                cmocka_unit_test(test_secret_bad_name),
                cmocka_unit_test(test_secret_name_wrong_type),
                cmocka_unit_test(test_secret_numbers_wrong_type),
                cmocka_unit_test(test_secret_value_wrong_type),
                cmocka_unit_test(test_secret_value_max),
                cmocka_unit_test(test_secret_max_versions),
                cmocka_unit_test(test_secret_ignores_unrelated_tags),
                cmocka_unit_test(test_list_no_prefix),
                cmocka_unit_test(test_list_prefix),
                cmocka_unit_test(test_list_bad_prefix),
                cmocka_unit_test(test_init_keyfile),
                cmocka_unit_test(test_init_keyfile_too_short),
                cmocka_unit_test(test_init_key_missing_empty_or_large),
                cmocka_unit_test(test_init_passphrase),
                cmocka_unit_test(test_init_key_wrong_type),
                cmocka_unit_test(test_init_shamir_bounds),
                cmocka_unit_test(test_init_shamir_missing_or_wrong_type),
                cmocka_unit_test(test_init_bad_method),
                cmocka_unit_test(test_init_method_wrong_type),
                cmocka_unit_test(test_unseal),
                cmocka_unit_test(test_unseal_bad_key),
                cmocka_unit_test(test_version_roundtrip),
                cmocka_unit_test(test_version_destroyed_byte),
                cmocka_unit_test(test_version_truncated),
                cmocka_unit_test(test_op_name),
        };
        int rc = cmocka_run_group_tests_name("proto", tests, setup, NULL);

        sodium_memzero(key, sizeof(key));
        return rc;
}
