/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for client/mask.c, the engine of `coffer run --mask`: which
 * values are masked, every encoding, values split across reads at every
 * offset, what is held back and when it appears (feed, pause, finish), and
 * that chunking never changes the result. Values here are made up. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <sodium.h>

#include "mask.h"
#include "util.h"

static int setup(void **state) {
        return sodium_init() < 0 ? -1 : 0;
}

static struct mask *mask_of(const char *const *values, size_t n) {
        struct mask *m;
        assert_int_equal(mask_new(&m), 0);
        for (size_t i = 0; i < n; i++)
                assert_true(mask_add_value(m, values[i], strlen(values[i])) > 0);
        return m;
}

static struct mask *mask1(const char *value) {
        return mask_of(&value, 1);
}

/* The output so far as a string (o is reset). */
static char *take(struct mask_out *o) {
        char *s = malloc(o->len + 1);
        assert_non_null(s);
        if (o->len)
                memcpy(s, o->p, o->len);
        s[o->len] = 0;
        o->len = 0;
        return s;
}

/* Feed the chunks (no pauses), finish, return everything shown. */
static char *mask_chunks(const struct mask *m, const char *const *chunks, size_t n) {
        struct mask_stream *s;
        struct mask_out o = { 0 };
        assert_int_equal(mask_stream_new(&s, m), 0);
        for (size_t i = 0; i < n; i++)
                assert_int_equal(mask_stream_feed(s, &o, chunks[i], strlen(chunks[i])), 0);
        assert_int_equal(mask_stream_finish(s, &o), 0);
        assert_int_equal(mask_stream_held(s), 0);
        mask_stream_free(s);
        char *r = take(&o);
        mask_out_free(&o);
        return r;
}

static char *mask_str(const struct mask *m, const char *in) {
        return mask_chunks(m, &in, 1);
}

static void assert_masked(const struct mask *m, const char *in, const char *want) {
        char *got = mask_str(m, in);
        assert_string_equal(got, want);
        free(got);
}

/* ---- which values ---- */

static void test_short_values_are_not_masked(void **state) {
        struct mask *m;
        assert_int_equal(mask_new(&m), 0);
        assert_int_equal(mask_add_value(m, "abc", 3), 0);
        assert_int_equal(mask_add_value(m, "", 0), 0);
        assert_int_equal(mask_add_value(m, "  ab\n", 5), 0); /* 2 bytes once trimmed */
        assert_int_equal(mask_patterns(m), 0);
        assert_masked(m, "abc ab", "abc ab");
        assert_true(mask_add_value(m, "abcd", 4) > 0);
        assert_masked(m, "abc abcd", "abc ***");
        mask_free(m);
}

static void test_no_values_pass_through(void **state) {
        struct mask *m;
        assert_int_equal(mask_new(&m), 0);
        assert_masked(m, "anything at all\n", "anything at all\n");
        mask_free(m);
}

/* A stream that never saw a byte pauses and finishes with nothing to say. */
static void test_empty_stream(void **state) {
        struct mask *m = mask1("s3cr3t-value");
        struct mask_stream *s;
        struct mask_out o = { 0 };
        assert_int_equal(mask_stream_new(&s, m), 0);
        assert_int_equal(mask_stream_feed(s, &o, "", 0), 0);
        assert_int_equal(mask_stream_pause(s, &o), 0);
        assert_int_equal(mask_stream_finish(s, &o), 0);
        assert_int_equal(o.len, 0);
        assert_int_equal(mask_stream_held(s), 0);
        mask_out_free(&o);
        mask_stream_free(s);
        mask_free(m);
}

static void test_raw_value(void **state) {
        struct mask *m = mask1("s3cr3t-value");
        assert_masked(m, "token=s3cr3t-value\n", "token=***\n");
        assert_masked(m, "s3cr3t-values3cr3t-value", "******");
        assert_masked(m, "s3cr3t-valu", "***"); /* a long start of a value at the end: masked */
        assert_masked(m, "xx s3", "xx s3");      /* a short one is not */
        assert_masked(m, "S3CR3T-VALUE", "S3CR3T-VALUE");
        mask_free(m);
}

static void test_several_values_leftmost_longest(void **state) {
        static const char *const v[] = { "abcdef", "abcdefgh", "cdefXYZW" };
        struct mask *m = mask_of(v, ELEMENTSOF(v));
        assert_masked(m, "xabcdefghx", "x***x");
        assert_masked(m, "xabcdefzx", "x***zx");
        assert_masked(m, "abcdefXYZW", "***XYZW"); /* leftmost wins over the overlapping one */
        assert_masked(m, "ab cdefXYZW", "ab ***");
        mask_free(m);
}

static void test_trimmed_and_crlf_forms(void **state) {
        struct mask *m = mask1("tok-12345\n");
        assert_masked(m, "got tok-12345 ok", "got *** ok");
        assert_masked(m, "got tok-12345\n", "got ***");
        mask_free(m);
        m = mask1("line-one\nline-two\n");
        assert_masked(m, "[line-one\r\nline-two\r\n]", "[***]"); /* through a pty */
        assert_masked(m, "[line-one\nline-two]", "[***]");
        mask_free(m);
}

/* ---- encodings ---- */

static char *b64(const void *p, size_t n, int variant) {
        size_t cap = sodium_base64_ENCODED_LEN(n, variant);
        char *e = malloc(cap);
        assert_non_null(e);
        sodium_bin2base64(e, cap, p, n, variant);
        return e;
}

static const int b64_variants[] = { sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
                                    sodium_base64_VARIANT_URLSAFE, sodium_base64_VARIANT_URLSAFE_NO_PADDING };

static void test_base64_whole(void **state) {
        /* These bytes encode with '+' and '/' (standard) and '-' and '_' (URL-safe). */
        static const char *const values[] = { "p4ss>>?w0rd~~", "p4ss>>?w0rd~~x", "p4ss>>?w0rd~" };
        for (size_t k = 0; k < ELEMENTSOF(values); k++) {
                const char *v = values[k];
                struct mask *m = mask1(v);
                char *std = b64(v, strlen(v), sodium_base64_VARIANT_ORIGINAL);
                char *url = b64(v, strlen(v), sodium_base64_VARIANT_URLSAFE);
                assert_true(strpbrk(std, "+/") != NULL);
                assert_true(strpbrk(url, "-_") != NULL);
                for (size_t i = 0; i < ELEMENTSOF(b64_variants); i++) {
                        char *e = b64(v, strlen(v), b64_variants[i]);
                        char in[128];
                        snprintf(in, sizeof(in), "v: %s;\n", e);
                        assert_masked(m, in, "v: ***;\n");
                        free(e);
                }
                free(std);
                free(url);
                mask_free(m);
        }
}

/* The value inside longer encoded data (e.g. "Basic base64(user:VALUE)"):
 * everything of it but the characters shared with its neighbours is masked. */
static void test_base64_inside_longer_data(void **state) {
        static const char v[] = "hf_Zq8xLp2Rt";
        struct mask *m = mask1(v);
        for (size_t pre = 0; pre <= 5; pre++)
                for (size_t post = 0; post <= 3; post++)
                        for (size_t i = 0; i < ELEMENTSOF(b64_variants); i++) {
                                char data[64];
                                size_t n = 0;
                                memcpy(data + n, "user:", pre), n += pre;
                                memcpy(data + n, v, strlen(v)), n += strlen(v);
                                memcpy(data + n, "@xyz", post), n += post;
                                char *e = b64(data, n, b64_variants[i]);
                                char *got = mask_str(m, e);
                                size_t a = (8 * pre + 5) / 6, b = 8 * (pre + strlen(v)) / 6;
                                char want[128];
                                if (pre == 0 && post == 0)
                                        snprintf(want, sizeof(want), "***");
                                else
                                        snprintf(want, sizeof(want), "%.*s***%s", (int) a, e, e + b);
                                assert_string_equal(got, want);
                                free(got);
                                free(e);
                        }
        mask_free(m);
}

static void test_percent_encoding(void **state) {
        struct mask *m = mask1("p@ss w/rd&x=1");
        assert_masked(m, "https://h/?t=p%40ss%20w%2Frd%26x%3D1&a=b", "https://h/?t=***&a=b");
        assert_masked(m, "https://h/?t=p%40ss%20w%2frd%26x%3d1&a=b", "https://h/?t=***&a=b");
        assert_masked(m, "t=p%40ss+w%2Frd%26x%3D1&a=b", "t=***&a=b");
        mask_free(m);
        m = mask1("it's(ok)*!");
        assert_masked(m, "q=it's(ok)*!", "q=***");
        assert_masked(m, "q=it%27s%28ok%29%2A%21", "q=***");
        mask_free(m);
}

static void test_json_escaping(void **state) {
        struct mask *m = mask1("l1\n\"q\"/\xc3\xa9<\t\x01");
        assert_masked(m, "{\"k\":\"l1\\n\\\"q\\\"/\xc3\xa9<\\t\\u0001\"}", "{\"k\":\"***\"}");           /* minimal */
        assert_masked(m, "{\"k\":\"l1\\n\\\"q\\\"/\\u00e9<\\t\\u0001\"}", "{\"k\":\"***\"}");          /* Python */
        assert_masked(m, "{\"k\":\"l1\\n\\\"q\\\"\\/\\u00e9<\\t\\u0001\"}", "{\"k\":\"***\"}");        /* PHP */
        assert_masked(m, "{\"k\":\"l1\\n\\\"q\\\"/\xc3\xa9\\u003c\\t\\u0001\"}", "{\"k\":\"***\"}");   /* Go */
        mask_free(m);
        m = mask1("emoji-\xf0\x9f\x94\x91-key");
        assert_masked(m, "\"emoji-\\ud83d\\udd11-key\"", "\"***\"");
        mask_free(m);
}

/* ---- streaming ---- */

static void test_split_at_every_offset(void **state) {
        static const char line[] = "export TOKEN=s3cr3t-value-0123 # done\n";
        struct mask *m = mask1("s3cr3t-value-0123");
        for (size_t k = 0; k <= strlen(line); k++) {
                char a[64], *b = (char *) line + k;
                snprintf(a, sizeof(a), "%.*s", (int) k, line);
                const char *const chunks[] = { a, b };
                char *got = mask_chunks(m, chunks, 2);
                assert_string_equal(got, "export TOKEN=*** # done\n");
                free(got);
        }
        mask_free(m);
}

static void test_byte_by_byte(void **state) {
        static const char in[] = "a s3cr3t-value b s3cr3t-value\n";
        struct mask *m = mask1("s3cr3t-value");
        struct mask_stream *s;
        struct mask_out o = { 0 };
        assert_int_equal(mask_stream_new(&s, m), 0);
        for (size_t i = 0; in[i]; i++) {
                assert_int_equal(mask_stream_feed(s, &o, in + i, 1), 0);
                assert_null(memmem(o.p, o.len, "s3c", 3)); /* never shown, not even in part */
        }
        assert_int_equal(mask_stream_finish(s, &o), 0);
        char *got = take(&o);
        assert_string_equal(got, "a *** b ***\n");
        free(got);
        mask_out_free(&o);
        mask_stream_free(s);
        mask_free(m);
}

/* Ordinary output is shown at once: lines and prompts are never delayed. */
static void test_output_is_not_delayed(void **state) {
        struct mask *m = mask1("s3cr3t-value");
        struct mask_stream *s;
        struct mask_out o = { 0 };
        assert_int_equal(mask_stream_new(&s, m), 0);
        assert_int_equal(mask_stream_feed(s, &o, "step 1 done\n", 12), 0);
        char *got = take(&o);
        assert_string_equal(got, "step 1 done\n");
        free(got);
        assert_int_equal(mask_stream_feed(s, &o, "Continue? [y/N] ", 16), 0);
        got = take(&o);
        assert_string_equal(got, "Continue? [y/N] ");
        free(got);
        assert_int_equal(mask_stream_held(s), 0);
        mask_out_free(&o);
        mask_stream_free(s);
        mask_free(m);
}

/* Half a value, a pause, the other half: held, then masked whole. */
static void test_pause_inside_value_holds(void **state) {
        struct mask *m = mask1("s3cr3t-value");
        struct mask_stream *s;
        struct mask_out o = { 0 };
        assert_int_equal(mask_stream_new(&s, m), 0);
        assert_int_equal(mask_stream_feed(s, &o, "key: s3cr3t", 11), 0);
        assert_int_equal(mask_stream_pause(s, &o), 0);
        char *got = take(&o);
        assert_string_equal(got, "key: ");
        free(got);
        assert_int_equal(mask_stream_held(s), 6);
        assert_int_equal(mask_stream_feed(s, &o, "-value\n", 7), 0);
        got = take(&o);
        assert_string_equal(got, "***\n");
        free(got);
        mask_out_free(&o);
        mask_stream_free(s);
        mask_free(m);
}

/* At a pause a held start of at most MASK_RELEASE_MAX bytes is shown (an
 * echoed keystroke); if the value goes on, the rest is still masked. */
static void test_pause_releases_short_start(void **state) {
        struct mask *m = mask1("hf_abcdef123");
        struct mask_stream *s;
        struct mask_out o = { 0 };
        assert_int_equal(mask_stream_new(&s, m), 0);
        assert_int_equal(mask_stream_feed(s, &o, "$ h", 3), 0);
        char *got = take(&o);
        assert_string_equal(got, "$ ");
        free(got);
        assert_int_equal(mask_stream_pause(s, &o), 0);
        got = take(&o);
        assert_string_equal(got, "h");
        free(got);
        assert_int_equal(mask_stream_held(s), 0);
        assert_int_equal(mask_stream_feed(s, &o, "f", 1), 0);
        assert_int_equal(mask_stream_pause(s, &o), 0);
        got = take(&o);
        assert_string_equal(got, "f");
        free(got);
        assert_int_equal(mask_stream_feed(s, &o, "_abc", 4), 0);
        assert_int_equal(mask_stream_pause(s, &o), 0); /* 6 bytes into the value: held */
        assert_int_equal(o.len, 0);
        assert_int_equal(mask_stream_feed(s, &o, "def123 ok\n", 10), 0);
        got = take(&o);
        assert_string_equal(got, "*** ok\n");
        free(got);
        /* A short start that turns out not to be a value is just text. */
        assert_int_equal(mask_stream_feed(s, &o, "h", 1), 0);
        assert_int_equal(mask_stream_pause(s, &o), 0);
        assert_int_equal(mask_stream_feed(s, &o, "appy\n", 5), 0);
        got = take(&o);
        assert_string_equal(got, "happy\n");
        free(got);
        mask_out_free(&o);
        mask_stream_free(s);
        mask_free(m);
}

/* At a pause a complete match is masked even if a longer pattern (the
 * value with its trailing newline) could still follow. */
static void test_pause_takes_complete_match(void **state) {
        struct mask *m = mask1("tok-12345\n");
        struct mask_stream *s;
        struct mask_out o = { 0 };
        assert_int_equal(mask_stream_new(&s, m), 0);
        assert_int_equal(mask_stream_feed(s, &o, "tok-12345", 9), 0);
        assert_int_equal(o.len, 0);
        assert_int_equal(mask_stream_pause(s, &o), 0);
        char *got = take(&o);
        assert_string_equal(got, "***");
        free(got);
        mask_out_free(&o);
        mask_stream_free(s);
        mask_free(m);
}

/* Property: without pauses, how the output is cut into reads never changes
 * the result, and no value survives. */
static void test_chunking_invariance(void **state) {
        static const char *const v[] = { "Zq8xLp2Rt", "hf_abcdef123", "p4ss>>?w0rd~~" };
        static const char alphabet[] = "abcdefhpqxZLRt_2345-? \n>~";
        struct mask *m = mask_of(v, ELEMENTSOF(v));
        char text[4096];
        for (int round = 0; round < 200; round++) {
                size_t n = 0;
                while (n < sizeof(text) - 32) {
                        uint32_t r = randombytes_uniform(10);
                        if (r == 0) {
                                const char *w = v[randombytes_uniform(ELEMENTSOF(v))];
                                memcpy(text + n, w, strlen(w));
                                n += strlen(w);
                        } else
                                text[n++] = alphabet[randombytes_uniform(sizeof(alphabet) - 1)];
                }
                text[n] = 0;
                char *whole = mask_str(m, text);
                char *pieces[64];
                size_t np = 0, off = 0;
                while (off < n && np < ELEMENTSOF(pieces) - 1) {
                        size_t k = 1 + randombytes_uniform(200);
                        if (k > n - off)
                                k = n - off;
                        pieces[np] = strndup(text + off, k);
                        off += k, np++;
                }
                pieces[np++] = strdup(text + off);
                char *chunked = mask_chunks(m, (const char *const *) pieces, np);
                assert_string_equal(chunked, whole);
                for (size_t i = 0; i < ELEMENTSOF(v); i++)
                        assert_null(strstr(whole, v[i]));
                for (size_t i = 0; i < np; i++)
                        free(pieces[i]);
                free(whole);
                free(chunked);
        }
        mask_free(m);
}

/* ---- encodings wrapped across lines (base64 at 76 or 64 columns, xxd -p at 60) ---- */

/* A made-up 64-byte value: GNU base64 shows its encoding on two lines. */
#define V64_TEXT "wr4p-k3y-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQ"
static const char V64[] = V64_TEXT, USER_V64[] = "user:" V64_TEXT;

/* enc with eol after every `width` characters and at the end, as base64(1) writes it. */
static char *wrap(const char *enc, size_t width, const char *eol) {
        size_t n = strlen(enc), e = strlen(eol), k = 0;
        char *w = malloc(n + (n / width + 2) * e + 1);
        assert_non_null(w);
        for (size_t i = 0; i < n; i++) {
                if (i > 0 && i % width == 0) {
                        memcpy(w + k, eol, e);
                        k += e;
                }
                w[k++] = enc[i];
        }
        memcpy(w + k, eol, e);
        w[k + e] = 0;
        return w;
}

static void assert_wrapped_masked(const struct mask *m, const char *enc) {
        static const char *const eols[] = { "\n", "\r\n", "\r\r\n" };
        char want[8];
        for (size_t e = 0; e < ELEMENTSOF(eols); e++)
                for (size_t width = 1; width <= strlen(enc) + 1; width++) {
                        char *w = wrap(enc, width, eols[e]);
                        snprintf(want, sizeof(want), "***%s", eols[e]);
                        assert_masked(m, w, want);
                        free(w);
                }
}

static void test_base64_wrapped_at_any_column(void **state) {
        struct mask *m = mask1(V64);
        for (size_t i = 0; i < ELEMENTSOF(b64_variants); i++) {
                char *e = b64(V64, strlen(V64), b64_variants[i]);
                assert_true(strlen(e) > 76);
                assert_wrapped_masked(m, e); /* 76 (base64), 64 (openssl), and every other width */
                free(e);
        }
        mask_free(m);
}

static void test_base64_wrapped_inside_longer_data(void **state) {
        struct mask *m = mask1(V64);
        char *e = b64(USER_V64, strlen(USER_V64), sodium_base64_VARIANT_ORIGINAL);
        char *w = wrap(e, 76, "\n");
        char *got = mask_str(m, w);
        /* "user:" is 5 bytes: 6 characters of its own, one shared with the value. */
        assert_memory_equal(got, e, 6);
        assert_non_null(strstr(got, "***"));
        assert_null(strstr(got, "\n\n"));
        for (size_t i = 6; i + 8 <= strlen(e); i++) {
                char piece[9];
                memcpy(piece, e + i, 8);
                piece[8] = 0;
                assert_null(strstr(got, piece));
        }
        free(got);
        free(w);
        free(e);
        mask_free(m);
}

static void test_hex_wrapped(void **state) {
        struct mask *m = mask1(V64);
        char hex[2 * sizeof(V64) - 1];
        sodium_bin2hex(hex, sizeof(hex), (const uint8_t *) V64, strlen(V64));
        assert_masked(m, hex, "***");
        char *w = wrap(hex, 60, "\n"); /* xxd -p */
        assert_masked(m, w, "***\n");
        free(w);
        for (size_t i = 0; hex[i]; i++)
                hex[i] = (char) (hex[i] >= 'a' ? hex[i] - 'a' + 'A' : hex[i]);
        assert_masked(m, hex, "***");
        mask_free(m);
}

static void test_wrapped_split_at_every_offset(void **state) {
        struct mask *m = mask1(V64);
        char *e = b64(V64, strlen(V64), sodium_base64_VARIANT_ORIGINAL);
        char *w = wrap(e, 76, "\r\n");
        size_t n = strlen(w);
        for (size_t cut = 0; cut <= n; cut++) {
                char *a = strndup(w, cut);
                const char *chunks[] = { a, w + cut };
                char *got = mask_chunks(m, chunks, 2);
                assert_string_equal(got, "***\r\n");
                free(got);
                free(a);
        }
        free(w);
        free(e);
        mask_free(m);
}

static void test_wrapping_is_one_line_break(void **state) {
        struct mask *m = mask1(V64);
        char *e = b64(V64, strlen(V64), sodium_base64_VARIANT_ORIGINAL);
        char in[256];
        /* Two breaks, or a break before the first character: not the encoding. */
        snprintf(in, sizeof(in), "%.40s\n\n%s", e, e + 40);
        char *got = mask_str(m, in);
        assert_string_equal(got, in);
        free(got);
        snprintf(in, sizeof(in), "x\n%s", e);
        assert_masked(m, in, "x\n***");
        free(e);
        mask_free(m);
}

/* A line that ends in the first characters of an encoding is not held
 * behind its line break any longer than one without: at a pause it shows. */
static void test_pause_shows_line_ending_in_start(void **state) {
        struct mask *m = mask1(V64);
        char *e = b64(V64, strlen(V64), sodium_base64_VARIANT_ORIGINAL);
        char in[32];
        struct mask_stream *s;
        struct mask_out o = { 0 };
        snprintf(in, sizeof(in), "id: %.2s\r\n", e);
        assert_int_equal(mask_stream_new(&s, m), 0);
        assert_int_equal(mask_stream_feed(s, &o, in, strlen(in)), 0);
        assert_int_equal(mask_stream_pause(s, &o), 0);
        char *got = take(&o);
        assert_string_equal(got, in);
        free(got);
        /* Many line breaks after a start hold nothing: memory stays bounded. */
        assert_int_equal(mask_stream_feed(s, &o, e, 10), 0);
        for (int i = 0; i < 1000; i++)
                assert_int_equal(mask_stream_feed(s, &o, "\n", 1), 0);
        assert_int_equal(mask_stream_held(s), 0);
        assert_int_equal(mask_stream_finish(s, &o), 0);
        mask_stream_free(s);
        mask_out_free(&o);
        free(e);
        mask_free(m);
}

static void test_long_value(void **state) {
        size_t n = 100000;
        char *v = malloc(n + 1), *in = malloc(n + 16);
        for (size_t i = 0; i < n; i++)
                v[i] = (char) ('A' + i % 26);
        v[n] = 0;
        struct mask *m = mask1(v);
        assert_true(mask_longest(m) >= n);
        snprintf(in, n + 16, "<%s>\n", v);
        assert_masked(m, in, "<***>\n");
        mask_free(m);
        free(v);
        free(in);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_short_values_are_not_masked),
                cmocka_unit_test(test_no_values_pass_through),
                cmocka_unit_test(test_empty_stream),
                cmocka_unit_test(test_raw_value),
                cmocka_unit_test(test_several_values_leftmost_longest),
                cmocka_unit_test(test_trimmed_and_crlf_forms),
                cmocka_unit_test(test_base64_whole),
                cmocka_unit_test(test_base64_inside_longer_data),
                cmocka_unit_test(test_percent_encoding),
                cmocka_unit_test(test_json_escaping),
                cmocka_unit_test(test_split_at_every_offset),
                cmocka_unit_test(test_byte_by_byte),
                cmocka_unit_test(test_output_is_not_delayed),
                cmocka_unit_test(test_pause_inside_value_holds),
                cmocka_unit_test(test_pause_releases_short_start),
                cmocka_unit_test(test_pause_takes_complete_match),
                cmocka_unit_test(test_chunking_invariance),
                cmocka_unit_test(test_long_value),
                cmocka_unit_test(test_base64_wrapped_at_any_column),
                cmocka_unit_test(test_base64_wrapped_inside_longer_data),
                cmocka_unit_test(test_hex_wrapped),
                cmocka_unit_test(test_wrapped_split_at_every_offset),
                cmocka_unit_test(test_wrapping_is_one_line_break),
                cmocka_unit_test(test_pause_shows_line_ending_in_start),
        };
        return cmocka_run_group_tests(tests, setup, NULL);
}
