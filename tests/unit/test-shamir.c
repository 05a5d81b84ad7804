/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for common/shamir.c and (at the end) common/util.c.
 * Secrets are compared with memcmp, never assert_memory_equal, so a failure
 * does not print key bytes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <sodium.h>

#include "shamir.h"
#include "util.h"

#define SHARE(buf, i) ((buf) + (size_t) (i) * SHAMIR_SHARE_SIZE)

static uint8_t all_shares[255 * SHAMIR_SHARE_SIZE];

static int setup(void **state) {
        return sodium_init() < 0 ? -1 : 0;
}

/* Copy the shares named by idx[0..k-1] next to each other and combine them. */
static int combine_subset(uint8_t out[static SHAMIR_SECRET_SIZE], const uint8_t *shares,
                          const unsigned *idx, unsigned k) {
        uint8_t picked[255 * SHAMIR_SHARE_SIZE];
        int r;

        for (unsigned i = 0; i < k; i++)
                memcpy(SHARE(picked, i), SHARE(shares, idx[i]), SHAMIR_SHARE_SIZE);
        r = shamir_combine(out, picked, k);
        sodium_memzero(picked, sizeof(picked));
        return r;
}

static void check_roundtrip(unsigned k, unsigned n) {
        uint8_t secret[SHAMIR_SECRET_SIZE], got[SHAMIR_SECRET_SIZE];
        unsigned first[255], last[255];

        randombytes_buf(secret, sizeof(secret));
        assert_int_equal(shamir_split(all_shares, secret, n, k), 0);
        for (unsigned i = 0; i < n; i++)
                assert_int_equal(SHARE(all_shares, i)[0], i + 1);

        for (unsigned i = 0; i < k; i++) {
                first[i] = i;
                last[i] = n - k + i;
        }
        assert_int_equal(combine_subset(got, all_shares, first, k), 0);
        assert_true(memcmp(got, secret, sizeof(secret)) == 0);
        assert_int_equal(combine_subset(got, all_shares, last, k), 0);
        assert_true(memcmp(got, secret, sizeof(secret)) == 0);
}

static void test_roundtrip_2_of_2(void **state) { check_roundtrip(2, 2); }
static void test_roundtrip_2_of_3(void **state) { check_roundtrip(2, 3); }
static void test_roundtrip_3_of_5(void **state) { check_roundtrip(3, 5); }
static void test_roundtrip_5_of_5(void **state) { check_roundtrip(5, 5); }
static void test_roundtrip_7_of_20(void **state) { check_roundtrip(7, 20); }
static void test_roundtrip_2_of_255(void **state) { check_roundtrip(2, 255); }
static void test_roundtrip_255_of_255(void **state) { check_roundtrip(255, 255); }

static void test_every_3_subset_of_5(void **state) {
        uint8_t secret[SHAMIR_SECRET_SIZE], got[SHAMIR_SECRET_SIZE];
        unsigned count = 0;

        randombytes_buf(secret, sizeof(secret));
        assert_int_equal(shamir_split(all_shares, secret, 5, 3), 0);
        for (unsigned a = 0; a < 5; a++)
                for (unsigned b = a + 1; b < 5; b++)
                        for (unsigned c = b + 1; c < 5; c++) {
                                /* Also in reverse: order of shares must not matter. */
                                unsigned fwd[] = { a, b, c }, rev[] = { c, b, a };

                                assert_int_equal(combine_subset(got, all_shares, fwd, 3), 0);
                                assert_true(memcmp(got, secret, sizeof(secret)) == 0);
                                assert_int_equal(combine_subset(got, all_shares, rev, 3), 0);
                                assert_true(memcmp(got, secret, sizeof(secret)) == 0);
                                count++;
                        }
        assert_int_equal(count, 10);
}

/* k-1 shares interpolate some other degree-(k-2) polynomial: wrong with
 * probability 1 - 2^-256. */
static void test_too_few_shares_give_other_value(void **state) {
        uint8_t secret[SHAMIR_SECRET_SIZE], got[SHAMIR_SECRET_SIZE];
        unsigned idx[] = { 0, 3 };

        randombytes_buf(secret, sizeof(secret));
        assert_int_equal(shamir_split(all_shares, secret, 5, 3), 0);
        assert_int_equal(combine_subset(got, all_shares, idx, 2), 0);
        assert_true(memcmp(got, secret, sizeof(secret)) != 0);
}

static void test_split_is_randomised(void **state) {
        uint8_t secret[SHAMIR_SECRET_SIZE] = { 0 };
        uint8_t a[2 * SHAMIR_SHARE_SIZE], b[2 * SHAMIR_SHARE_SIZE];

        assert_int_equal(shamir_split(a, secret, 2, 2), 0);
        assert_int_equal(shamir_split(b, secret, 2, 2), 0);
        assert_true(memcmp(a, b, sizeof(a)) != 0);
}

static void test_combine_rejects_duplicate_x(void **state) {
        uint8_t secret[SHAMIR_SECRET_SIZE], got[SHAMIR_SECRET_SIZE];
        uint8_t sentinel[SHAMIR_SECRET_SIZE];
        unsigned dup[] = { 0, 1, 1 }, dup_far[] = { 2, 0, 2 };

        randombytes_buf(secret, sizeof(secret));
        assert_int_equal(shamir_split(all_shares, secret, 5, 3), 0);
        memset(got, 0xa5, sizeof(got));
        memcpy(sentinel, got, sizeof(got));
        assert_int_equal(combine_subset(got, all_shares, dup, 3), -EINVAL);
        assert_int_equal(combine_subset(got, all_shares, dup_far, 3), -EINVAL);
        /* Output untouched on failure. */
        assert_memory_equal(got, sentinel, sizeof(got));
}

static void test_combine_rejects_x_zero(void **state) {
        uint8_t secret[SHAMIR_SECRET_SIZE], got[SHAMIR_SECRET_SIZE];

        randombytes_buf(secret, sizeof(secret));
        assert_int_equal(shamir_split(all_shares, secret, 3, 2), 0);
        SHARE(all_shares, 1)[0] = 0;
        assert_int_equal(shamir_combine(got, all_shares, 2), -EINVAL);
        SHARE(all_shares, 0)[0] = 0;
        SHARE(all_shares, 1)[0] = 2;
        assert_int_equal(shamir_combine(got, all_shares, 2), -EINVAL);
}

static void test_split_rejects_bad_k_n(void **state) {
        uint8_t secret[SHAMIR_SECRET_SIZE] = { 0 };

        assert_int_equal(shamir_split(all_shares, secret, 5, 0), -EINVAL);
        assert_int_equal(shamir_split(all_shares, secret, 5, 1), -EINVAL);
        assert_int_equal(shamir_split(all_shares, secret, 3, 4), -EINVAL);
        assert_int_equal(shamir_split(all_shares, secret, 0, 0), -EINVAL);
        assert_int_equal(shamir_split(all_shares, secret, 1, 1), -EINVAL);
        assert_int_equal(shamir_split(all_shares, secret, 256, 2), -EINVAL);
        assert_int_equal(shamir_split(all_shares, secret, 256, 256), -EINVAL);
}

static void test_combine_rejects_bad_k(void **state) {
        uint8_t secret[SHAMIR_SECRET_SIZE], got[SHAMIR_SECRET_SIZE];

        randombytes_buf(secret, sizeof(secret));
        assert_int_equal(shamir_split(all_shares, secret, 255, 2), 0);
        assert_int_equal(shamir_combine(got, all_shares, 0), -EINVAL);
        assert_int_equal(shamir_combine(got, all_shares, 1), -EINVAL);
        /* 256 shares cannot have distinct non-zero x; refused before reading them. */
        assert_int_equal(shamir_combine(got, all_shares, 256), -EINVAL);
}

/* Known answers from FIPS-197 section 4.2: {57}*{83} = {c1}, {57}*{13} = {fe},
 * {57}*{02} = {ae}, {57}*{10} = {07}. Hand-built shares of f(x) = s + {57}x
 * at those x must interpolate back to s; a different field (polynomial) or a
 * broken multiply or inverse would not. */
static void test_gf256_known_answers(void **state) {
        static const uint8_t xs[] = { 0x83, 0x13, 0x02, 0x10 };
        static const uint8_t products[] = { 0xc1, 0xfe, 0xae, 0x07 };
        uint8_t s[SHAMIR_SECRET_SIZE], got[SHAMIR_SECRET_SIZE], shares[4 * SHAMIR_SHARE_SIZE];

        for (size_t b = 0; b < sizeof(s); b++)
                s[b] = (uint8_t) (b * 37 + 11);
        for (unsigned i = 0; i < 4; i++) {
                SHARE(shares, i)[0] = xs[i];
                for (size_t b = 0; b < sizeof(s); b++)
                        SHARE(shares, i)[1 + b] = s[b] ^ products[i];
        }
        for (unsigned i = 0; i < 4; i++)
                for (unsigned j = 0; j < 4; j++) {
                        unsigned idx[] = { i, j };

                        if (i == j)
                                continue;
                        assert_int_equal(combine_subset(got, shares, idx, 2), 0);
                        assert_memory_equal(got, s, sizeof(s)); /* public test vector */
                }
        /* All four points lie on the same line, so a 4-of-n combine agrees. */
        assert_int_equal(shamir_combine(got, shares, 4), 0);
        assert_memory_equal(got, s, sizeof(s));
}

/* ---- util.c ---- */

static void test_hex_roundtrip(void **state) {
        static const uint8_t bin[] = { 0x00, 0x01, 0x7f, 0x80, 0xab, 0xcd, 0xef, 0xff, 0x09, 0xa0 };
        char hex[2 * sizeof(bin) + 1];
        uint8_t back[sizeof(bin)];
        uint8_t all[256], all_back[256];
        char all_hex[2 * 256 + 1];

        hex_encode(hex, bin, sizeof(bin));
        assert_string_equal(hex, "00017f80abcdefff09a0");
        assert_int_equal(hex_decode(back, sizeof(back), hex, strlen(hex)), 0);
        assert_memory_equal(back, bin, sizeof(bin));
        assert_int_equal(hex_decode(back, 3, "ABcdEf", 6), 0);
        assert_memory_equal(back, "\xab\xcd\xef", 3);

        for (unsigned i = 0; i < 256; i++)
                all[i] = (uint8_t) i;
        hex_encode(all_hex, all, sizeof(all));
        assert_int_equal(hex_decode(all_back, sizeof(all_back), all_hex, 512), 0);
        assert_memory_equal(all_back, all, sizeof(all));

        hex_encode(hex, bin, 0);
        assert_string_equal(hex, "");
        assert_int_equal(hex_decode(back, 0, "", 0), 0);
}

static void test_hex_decode_rejects(void **state) {
        static const char *const bad[] = { "0g", "g0", " 0", "0 ", "-1", "0x", "/0", ":0", "@0", "G0", "`0" };
        uint8_t out[4];

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(hex_decode(out, 1, bad[i], 2), -EINVAL);
        assert_int_equal(hex_decode(out, 1, "0\0", 2), -EINVAL);
        /* Wrong length either way, including odd. */
        assert_int_equal(hex_decode(out, 2, "abc", 3), -EINVAL);
        assert_int_equal(hex_decode(out, 2, "ab", 2), -EINVAL);
        assert_int_equal(hex_decode(out, 1, "abcd", 4), -EINVAL);
        assert_int_equal(hex_decode(out, SIZE_MAX / 2 + 1, "", 0), -EINVAL);
        /* A bad digit late in the string leaves no partial output behind. */
        memset(out, 0x55, sizeof(out));
        assert_int_equal(hex_decode(out, 4, "abcdefzz", 8), -EINVAL);
        assert_memory_equal(out, "\0\0\0\0", 4);
}

static void test_parse_u64(void **state) {
        uint64_t v = 42;

        assert_int_equal(parse_u64("", 0, UINT64_MAX, &v), -EINVAL);
        assert_int_equal(parse_u64("-1", 0, UINT64_MAX, &v), -EINVAL);
        assert_int_equal(parse_u64("+1", 0, UINT64_MAX, &v), -EINVAL);
        assert_int_equal(parse_u64(" 1", 0, UINT64_MAX, &v), -EINVAL);
        assert_int_equal(parse_u64("1 ", 0, UINT64_MAX, &v), -EINVAL);
        assert_int_equal(parse_u64("1\n", 0, UINT64_MAX, &v), -EINVAL);
        assert_int_equal(parse_u64("0x10", 0, UINT64_MAX, &v), -EINVAL);
        assert_int_equal(parse_u64("1e3", 0, UINT64_MAX, &v), -EINVAL);
        assert_int_equal(parse_u64(NULL, 0, UINT64_MAX, &v), -EINVAL);
        assert_int_equal(parse_u64("18446744073709551616", 0, UINT64_MAX, &v), -ERANGE);
        assert_int_equal(parse_u64("99999999999999999999999", 0, UINT64_MAX, &v), -ERANGE);
        assert_int_equal(parse_u64("5", 10, 20, &v), -ERANGE);
        assert_int_equal(parse_u64("21", 10, 20, &v), -ERANGE);
        assert_int_equal(v, 42); /* untouched on failure */

        assert_int_equal(parse_u64("18446744073709551615", 0, UINT64_MAX, &v), 0);
        assert_true(v == UINT64_MAX);
        assert_int_equal(parse_u64("0", 0, UINT64_MAX, &v), 0);
        assert_int_equal(v, 0);
        assert_int_equal(parse_u64("007", 0, UINT64_MAX, &v), 0);
        assert_int_equal(v, 7);
        assert_int_equal(parse_u64("000000000000000000000000018446744073709551615", 0, UINT64_MAX, &v), 0);
        assert_true(v == UINT64_MAX);
        assert_int_equal(parse_u64("10", 10, 20, &v), 0);
        assert_int_equal(v, 10);
        assert_int_equal(parse_u64("20", 10, 20, &v), 0);
        assert_int_equal(v, 20);
}

static void test_parse_duration(void **state) {
        static const struct { const char *s; uint64_t v; } ok[] = {
                { "30", 30 }, { "30s", 30 }, { "5m", 300 }, { "2h", 7200 }, { "1d", 86400 },
                { "0", 0 }, { "0d", 0 }, { "090s", 90 },
                { "213503982334601d", UINT64_C(213503982334601) * 86400 },
                { "18446744073709551615s", UINT64_MAX },
        };
        static const char *const inval[] = {
                "", "s", "m", "-5m", "+5m", " 5m", "5 m", "5m ", "5M", "5x", "1h30m", "5ms", "1.5h", "m5",
        };
        static const char *const range[] = {
                "213503982334602d", "307445734561825861m", "18446744073709551616", "18446744073709551616s",
        };
        uint64_t v = 42;

        for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
                assert_int_equal(parse_duration_sec(ok[i].s, &v), 0);
                assert_true(v == ok[i].v);
        }
        v = 42;
        for (size_t i = 0; i < ELEMENTSOF(inval); i++)
                assert_int_equal(parse_duration_sec(inval[i], &v), -EINVAL);
        for (size_t i = 0; i < ELEMENTSOF(range); i++)
                assert_int_equal(parse_duration_sec(range[i], &v), -ERANGE);
        assert_int_equal(parse_duration_sec(NULL, &v), -EINVAL);
        assert_int_equal(v, 42);
}

static void test_strcpy_bounded(void **state) {
        char buf[4];

        assert_true(strcpy_bounded(buf, sizeof(buf), "abc"));
        assert_string_equal(buf, "abc");
        assert_false(strcpy_bounded(buf, sizeof(buf), "abcd"));
        assert_string_equal(buf, "abc");
        assert_true(strcpy_bounded(buf, sizeof(buf), ""));
        assert_string_equal(buf, "");
        assert_false(strcpy_bounded(buf, 0, "x"));
}

static void test_clocks(void **state) {
        uint64_t a = now_mono_usec(), b = now_mono_usec();

        assert_true(a > 0);
        assert_true(b >= a);
        assert_true(now_unix() > UINT64_C(1600000000)); /* after 2020 */
}

/* Fill a pipe with n bytes, close the writer, then read_all_fd(max). */
static int pipe_read(size_t n, size_t max, uint8_t **out, size_t *len) {
        int p[2], r;
        uint8_t *data = malloc(n ? n : 1);

        assert_non_null(data);
        for (size_t i = 0; i < n; i++)
                data[i] = (uint8_t) (i * 7);
        assert_int_equal(pipe(p), 0);
        assert_int_equal(write_all(p[1], data, n), 0); /* n stays below the pipe buffer */
        close(p[1]);
        r = read_all_fd(p[0], max, out, len);
        close(p[0]);
        if (r == 0) {
                assert_int_equal(*len, n);
                assert_memory_equal(*out, data, n);
        }
        free(data);
        return r;
}

static void test_read_all_fd(void **state) {
        uint8_t *buf = NULL;
        size_t len = 0;

        assert_int_equal(pipe_read(0, 0, &buf, &len), 0);
        free(buf);
        assert_int_equal(pipe_read(100, 100, &buf, &len), 0);
        free(buf);
        /* 10000 bytes crosses several buffer growths. */
        assert_int_equal(pipe_read(10000, 10000, &buf, &len), 0);
        free(buf);
        assert_int_equal(pipe_read(10000, SIZE_MAX, &buf, &len), 0);
        free(buf);

        buf = NULL;
        assert_int_equal(pipe_read(1, 0, &buf, &len), -EFBIG);
        assert_int_equal(pipe_read(101, 100, &buf, &len), -EFBIG);
        assert_int_equal(pipe_read(10000, 4096, &buf, &len), -EFBIG);
        assert_int_equal(pipe_read(10000, 9999, &buf, &len), -EFBIG);
        assert_null(buf);
        assert_int_equal(read_all_fd(-1, 10, &buf, &len), -EBADF);
        assert_null(buf);
}

static void test_write_all_bad_fd(void **state) {
        assert_int_equal(write_all(-1, "x", 1), -EBADF);
        assert_int_equal(write_all(-1, "", 0), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_roundtrip_2_of_2),
                cmocka_unit_test(test_roundtrip_2_of_3),
                cmocka_unit_test(test_roundtrip_3_of_5),
                cmocka_unit_test(test_roundtrip_5_of_5),
                cmocka_unit_test(test_roundtrip_7_of_20),
                cmocka_unit_test(test_roundtrip_2_of_255),
                cmocka_unit_test(test_roundtrip_255_of_255),
                cmocka_unit_test(test_every_3_subset_of_5),
                cmocka_unit_test(test_too_few_shares_give_other_value),
                cmocka_unit_test(test_split_is_randomised),
                cmocka_unit_test(test_combine_rejects_duplicate_x),
                cmocka_unit_test(test_combine_rejects_x_zero),
                cmocka_unit_test(test_split_rejects_bad_k_n),
                cmocka_unit_test(test_combine_rejects_bad_k),
                cmocka_unit_test(test_gf256_known_answers),
                /* util.c */
                cmocka_unit_test(test_hex_roundtrip),
                cmocka_unit_test(test_hex_decode_rejects),
                cmocka_unit_test(test_parse_u64),
                cmocka_unit_test(test_parse_duration),
                cmocka_unit_test(test_strcpy_bounded),
                cmocka_unit_test(test_clocks),
                cmocka_unit_test(test_read_all_fd),
                cmocka_unit_test(test_write_all_bad_fd),
        };

        return cmocka_run_group_tests_name("shamir+util", tests, setup, NULL);
}
