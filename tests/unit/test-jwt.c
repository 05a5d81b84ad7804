/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for common/jwt.c: base64url (strictness included), the RFC 8037
 * test vector, sign/parse/verify round trips, tampering, every refusal of the
 * strict JSON reader, JWKS output and the -E2BIG paths of every writer.
 * Refusals are built from literal header and payload JSON signed with the
 * test key, so each test shows the exact bytes the parser sees. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <sodium.h>

#include "jwt.h"

#define HDR "{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"kid\":\"k1\"}"

/* RFC 8037 appendix A. */
static const char rfc_d[] = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
static const char rfc_x[] = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
static const char rfc_input[] = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
static const char rfc_sig[] = "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

/* The test key pair: the RFC 8037 key. */
static uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];

static int setup(void **state) {
        uint8_t seed[crypto_sign_SEEDBYTES];

        if (sodium_init() < 0)
                return -1;
        if (b64url_decode(rfc_d, strlen(rfc_d), seed, sizeof(seed)) != (int) sizeof(seed))
                return -1;
        return crypto_sign_seed_keypair(pk, sk, seed);
}

static void b64(const void *in, size_t n, char *out, size_t outsz) {
        assert_int_equal(b64url_encode(in, n, out, outsz), (int) ((n * 4 + 2) / 3));
}

/* header.payload.signature from literal JSON (plen bytes of payload), signed
 * with sk. */
static void raw_token_n(char *out, size_t outsz, const char *hdr, const char *payload, size_t plen) {
        uint8_t sig[64];
        size_t pos;

        b64(hdr, strlen(hdr), out, outsz);
        pos = strlen(out);
        out[pos++] = '.';
        b64(payload, plen, out + pos, outsz - pos);
        pos += strlen(out + pos);
        assert_int_equal(crypto_sign_detached(sig, NULL, (const uint8_t *) out, pos, sk), 0);
        out[pos++] = '.';
        b64(sig, sizeof(sig), out + pos, outsz - pos);
}

static void raw_token(char *out, size_t outsz, const char *hdr, const char *payload) {
        raw_token_n(out, outsz, hdr, payload, strlen(payload));
}

/* NULL if tok parses, else the phrase (and the result is checked to be
 * -EINVAL with a cleared *p). */
static const char *why_tok(const char *tok, size_t len) {
        static struct jwt_parsed p;
        static const struct jwt_parsed zero;
        const char *why = NULL;
        int r = jwt_parse(tok, len, &p, &why);

        if (r == 0)
                return NULL;
        assert_int_equal(r, -EINVAL);
        assert_non_null(why);
        assert_memory_equal(&p, &zero, sizeof(p));
        return why;
}

static const char *why_json(const char *hdr, const char *payload) {
        static char tok[JWT_MAX * 2];

        raw_token(tok, sizeof(tok), hdr, payload);
        return why_tok(tok, strlen(tok));
}

static void parse_json_ok(const char *hdr, const char *payload, struct jwt_parsed *p) {
        char tok[JWT_MAX + 1];
        const char *why = NULL;

        raw_token(tok, sizeof(tok), hdr, payload);
        assert_int_equal(jwt_parse(tok, strlen(tok), p, &why), 0);
        assert_int_equal(jwt_verify_sig(tok, p, pk), 0);
}

#define assert_why(hdr, payload, expect) assert_string_equal(why_json(hdr, payload), expect)
#define assert_payload_why(payload, expect) assert_why(HDR, payload, expect)

/* Decode part i (0-based) of tok into out as a string. */
static void part_json(const char *tok, int i, char *out, size_t outsz) {
        const char *s = tok, *e;
        int n;

        while (i-- > 0)
                s = strchr(s, '.') + 1;
        e = strchr(s, '.');
        if (!e)
                e = s + strlen(s);
        n = b64url_decode(s, (size_t) (e - s), (uint8_t *) out, outsz - 1);
        assert_true(n >= 0);
        out[n] = '\0';
}

static struct jwt_claims full_claims(void) {
        struct jwt_claims c = {
                .iss = "cofferd",
                .sub = "alice",
                .aud = "coffer",
                .iat = 1700000000,
                .nbf = 1700000001,
                .exp = 1700003600,
                .jti = "0123456789abcdef0123456789abcdef",
                .sid = "fedcba9876543210fedcba9876543210",
                .unit = "backup.service",
                .has_uid = true,
                .uid = 1000,
        };
        return c;
}

static void assert_claims_equal(const struct jwt_claims *a, const struct jwt_claims *b) {
        assert_string_equal(a->iss, b->iss);
        assert_string_equal(a->sub, b->sub);
        assert_string_equal(a->aud, b->aud);
        assert_true(a->iat == b->iat);
        assert_true(a->nbf == b->nbf);
        assert_true(a->exp == b->exp);
        assert_string_equal(a->jti, b->jti);
        assert_string_equal(a->sid, b->sid);
        assert_string_equal(a->unit, b->unit);
        assert_int_equal(a->has_uid, b->has_uid);
        assert_int_equal(a->uid, b->uid);
}

/* ---- RFC 8037 ---- */

static void test_rfc8037_vector(void **state) {
        uint8_t sig[64];
        char out[128];
        char payload[64];
        struct jwt_parsed p;
        const char *why = NULL;
        char tok[256];

        /* A.2: the public key derived from the A.1 seed. */
        b64(pk, sizeof(pk), out, sizeof(out));
        assert_string_equal(out, rfc_x);

        /* A.4: signature over the vector's exact signing input. */
        assert_int_equal(crypto_sign_detached(sig, NULL, (const uint8_t *) rfc_input, strlen(rfc_input), sk), 0);
        b64(sig, sizeof(sig), out, sizeof(out));
        assert_string_equal(out, rfc_sig);

        /* A.5: it verifies, and the payload is what the RFC says. */
        snprintf(tok, sizeof(tok), "%s.%s", rfc_input, rfc_sig);
        part_json(tok, 1, payload, sizeof(payload));
        assert_string_equal(payload, "Example of Ed25519 signing");
        /* Not a token this parser accepts: no kid, and a payload that is not JSON. */
        assert_int_equal(jwt_parse(tok, strlen(tok), &p, &why), -EINVAL);
        assert_string_equal(why, "header kid missing");
        p.signing_input_len = strlen(rfc_input);
        assert_int_equal(b64url_decode(rfc_sig, strlen(rfc_sig), p.sig, sizeof(p.sig)), 64);
        assert_int_equal(jwt_verify_sig(tok, &p, pk), 0);
}

/* ---- base64url ---- */

static void test_b64_roundtrip(void **state) {
        uint8_t in[70], back[70];
        char enc[100], ref[100];

        randombytes_buf(in, sizeof(in));
        for (size_t n = 0; n <= sizeof(in); n++) {
                int len = b64url_encode(in, n, enc, sizeof(enc));
                assert_int_equal(len, (int) ((n * 4 + 2) / 3));
                assert_int_equal(strlen(enc), (size_t) len);
                sodium_bin2base64(ref, sizeof(ref), in, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
                assert_string_equal(enc, ref);
                assert_int_equal(b64url_decode(enc, (size_t) len, back, sizeof(back)), (int) n);
                assert_memory_equal(back, in, n);
        }
        assert_int_equal(b64url_decode("", 0, NULL, 0), 0);
        assert_int_equal(b64url_encode(NULL, 0, enc, 1), 0);
        assert_string_equal(enc, "");
}

static int dec(const char *s) {
        uint8_t out[64];
        return b64url_decode(s, strlen(s), out, sizeof(out));
}

static void test_b64_strict(void **state) {
        uint8_t out[16];

        assert_int_equal(b64url_decode("RXhhbXBsZQ", 10, out, sizeof(out)), 7);
        assert_memory_equal(out, "Example", 7);
        assert_int_equal(dec("RXhhbXBsZR"), -EINVAL); /* non-zero trailing bits */
        assert_int_equal(dec("RXhhbXBsZf"), -EINVAL);
        assert_int_equal(dec("RXhhbXBsZQ=="), -EINVAL); /* padding */
        assert_int_equal(dec("RXhhbXBsZQ="), -EINVAL);
        assert_int_equal(dec("RXhhbXBs"), 6);
        assert_int_equal(dec("RXhhbXBs===="), -EINVAL);
        assert_int_equal(dec("+/8A"), -EINVAL);         /* standard alphabet */
        assert_int_equal(dec("-_8A"), 3);               /* same bytes, URL-safe */
        assert_int_equal(dec("ab+d"), -EINVAL);
        assert_int_equal(dec("ab/d"), -EINVAL);
        assert_int_equal(dec("ab d"), -EINVAL);
        assert_int_equal(dec("abcd\n"), -EINVAL);
        assert_int_equal(dec(" abcd"), -EINVAL);
        assert_int_equal(dec("ab.d"), -EINVAL);
        assert_int_equal(dec("abcde"), -EINVAL); /* 4k+1 characters */
        assert_int_equal(dec("a"), -EINVAL);
        /* libsodium 1.0.18 alone decodes bytes >= 0x80 as '_' where char is signed. */
        assert_int_equal(dec("ab\xc3\xa9"), -EINVAL);
        for (unsigned c = 0; c < 256; c++) {
                char s4[4] = { 'A', 'A', 'A', (char) c };
                bool in = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                          c == '_';
                assert_int_equal(b64url_decode(s4, 4, out, sizeof(out)), in ? 3 : -EINVAL);
                s4[0] = (char) c;
                s4[3] = 'A';
                assert_int_equal(b64url_decode(s4, 4, out, sizeof(out)), in ? 3 : -EINVAL);
        }
        assert_int_equal(b64url_decode("ab\0d", 4, out, sizeof(out)), -EINVAL); /* NUL inside */
        /* Length is what counts, not a NUL terminator. */
        assert_int_equal(b64url_decode("abcdAA==", 6, out, sizeof(out)), 4);
}

/* For every 1-byte and many 2-byte inputs, try all 64 final characters:
 * exactly those whose unused low bits are zero decode (4 for one byte, 16
 * for two), and only the canonical one gives the input back. */
static void test_b64_trailing_bits_exhaustive(void **state) {
        static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        uint8_t in[2], out[2];
        char enc[8];

        for (size_t n = 1; n <= 2; n++) {
                unsigned unused = n == 1 ? 0xf : 0x3;
                for (unsigned v = 0; v < (n == 1 ? 256u : 65536u); v += n == 1 ? 1 : 97) {
                        size_t accepted = 0, same = 0;
                        int len;

                        in[0] = (uint8_t) (v & 0xff);
                        in[1] = (uint8_t) (v >> 8);
                        len = b64url_encode(in, n, enc, sizeof(enc));
                        assert_int_equal(len, (int) n + 1);
                        for (unsigned a = 0; a < 64; a++) {
                                enc[len - 1] = alphabet[a];
                                int r = b64url_decode(enc, (size_t) len, out, sizeof(out));
                                if ((a & unused) != 0) {
                                        assert_int_equal(r, -EINVAL);
                                        continue;
                                }
                                assert_int_equal(r, (int) n);
                                accepted++;
                                if (memcmp(out, in, n) == 0)
                                        same++;
                        }
                        assert_int_equal(accepted, n == 1 ? 4 : 16);
                        assert_int_equal(same, 1);
                }
        }
}

static void test_b64_e2big(void **state) {
        uint8_t in[10] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, out[10];
        char enc[32];

        /* 10 bytes -> 14 characters plus the NUL. */
        for (size_t sz = 0; sz < 15; sz++)
                assert_int_equal(b64url_encode(in, sizeof(in), enc, sz), -E2BIG);
        assert_int_equal(b64url_encode(in, sizeof(in), enc, 15), 14);
        for (size_t sz = 0; sz < 10; sz++)
                assert_int_equal(b64url_decode(enc, 14, out, sz), -E2BIG);
        assert_int_equal(b64url_decode(enc, 14, out, 10), 10);
        assert_memory_equal(out, in, 10);
        /* Results that would not fit in an int: refused before anything is read. */
        assert_int_equal(b64url_encode(in, (size_t) INT_MAX, enc, sizeof(enc)), -E2BIG);
        assert_int_equal(b64url_encode(in, SIZE_MAX, enc, SIZE_MAX), -E2BIG);
        assert_int_equal(b64url_decode(enc, SIZE_MAX - 3, out, SIZE_MAX), -E2BIG);
}

/* ---- sign / parse / verify ---- */

static void test_sign_roundtrip(void **state) {
        struct jwt_claims c = full_claims();
        struct jwt_parsed p;
        char tok[JWT_MAX + 1], json[JWT_MAX];
        const char *why = NULL;
        int n;

        n = jwt_sign(&c, "k1", sk, tok, sizeof(tok));
        assert_true(n > 0);
        assert_int_equal(strlen(tok), (size_t) n);
        part_json(tok, 0, json, sizeof(json));
        assert_string_equal(json, HDR);
        part_json(tok, 1, json, sizeof(json));
        assert_string_equal(json, "{\"iss\":\"cofferd\",\"sub\":\"alice\",\"aud\":\"coffer\",\"iat\":1700000000,"
                                  "\"nbf\":1700000001,\"exp\":1700003600,"
                                  "\"jti\":\"0123456789abcdef0123456789abcdef\","
                                  "\"sid\":\"fedcba9876543210fedcba9876543210\","
                                  "\"unit\":\"backup.service\",\"uid\":1000}");

        assert_int_equal(jwt_parse(tok, (size_t) n, &p, &why), 0);
        assert_string_equal(p.kid, "k1");
        assert_claims_equal(&p.claims, &c);
        assert_int_equal(p.signing_input_len, (size_t) (strrchr(tok, '.') - tok));
        assert_int_equal(jwt_verify_sig(tok, &p, pk), 0);

        /* Deterministic: the same claims give the same token. */
        char again[JWT_MAX + 1];
        assert_int_equal(jwt_sign(&c, "k1", sk, again, sizeof(again)), n);
        assert_string_equal(again, tok);

        /* The token need not be NUL-terminated. */
        memcpy(again, tok, (size_t) n);
        memset(again + n, 'A', 8);
        assert_int_equal(jwt_parse(again, (size_t) n, &p, &why), 0);
        assert_int_equal(jwt_verify_sig(again, &p, pk), 0);
}

static void test_sign_minimal(void **state) {
        struct jwt_claims c = { .exp = 42 }, z = { 0 };
        struct jwt_parsed p;
        char tok[JWT_MAX + 1], json[256];
        const char *why = NULL;

        assert_true(jwt_sign(&c, "key-2024", sk, tok, sizeof(tok)) > 0);
        part_json(tok, 1, json, sizeof(json));
        assert_string_equal(json, "{\"iat\":0,\"nbf\":0,\"exp\":42}");
        assert_int_equal(jwt_parse(tok, strlen(tok), &p, &why), 0);
        z.exp = 42;
        assert_claims_equal(&p.claims, &z);
        assert_string_equal(p.kid, "key-2024");

        /* uid 0 is written when has_uid is set. */
        c.has_uid = true;
        assert_true(jwt_sign(&c, "k", sk, tok, sizeof(tok)) > 0);
        part_json(tok, 1, json, sizeof(json));
        assert_string_equal(json, "{\"iat\":0,\"nbf\":0,\"exp\":42,\"uid\":0}");
        assert_int_equal(jwt_parse(tok, strlen(tok), &p, &why), 0);
        assert_true(p.claims.has_uid);
        assert_int_equal(p.claims.uid, 0);
}

static void test_tamper_every_char(void **state) {
        struct jwt_claims c = full_claims();
        struct jwt_parsed p;
        char tok[JWT_MAX + 1];
        const char *why;
        int n = jwt_sign(&c, "k1", sk, tok, sizeof(tok));
        size_t accepted_parse = 0;

        assert_true(n > 0);
        for (size_t i = 0; i < (size_t) n; i++) {
                char orig = tok[i];
                if (orig == '.')
                        continue;
                /* Flip to a different alphabet character (same length). */
                tok[i] = orig == 'A' ? 'B' : 'A';
                if (jwt_parse(tok, (size_t) n, &p, &why) == 0) {
                        accepted_parse++;
                        assert_int_equal(jwt_verify_sig(tok, &p, pk), -EBADMSG);
                }
                tok[i] = orig;
        }
        /* Some flips still parse (the check then rests on the signature). */
        assert_true(accepted_parse > 0);
        assert_int_equal(jwt_parse(tok, (size_t) n, &p, &why), 0);
        assert_int_equal(jwt_verify_sig(tok, &p, pk), 0);
}

static void test_tamper_each_part(void **state) {
        struct jwt_claims c = full_claims();
        struct jwt_parsed p;
        char tok[JWT_MAX + 1];
        const char *why;
        int n = jwt_sign(&c, "k1", sk, tok, sizeof(tok));
        const char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');
        size_t mid[3] = { (size_t) (d1 - tok) / 2, (size_t) (d1 - tok + d2 - tok) / 2,
                          (size_t) (d2 - tok + n) / 2 };

        for (size_t k = 0; k < 3; k++) {
                char orig = tok[mid[k]];
                tok[mid[k]] = orig == 'x' ? 'y' : 'x';
                assert_true(jwt_parse(tok, (size_t) n, &p, &why) < 0 || jwt_verify_sig(tok, &p, pk) == -EBADMSG);
                tok[mid[k]] = orig;
        }
}

static void test_wrong_key(void **state) {
        struct jwt_claims c = full_claims();
        struct jwt_parsed p;
        uint8_t pk2[32], sk2[64];
        char tok[JWT_MAX + 1];
        const char *why;

        crypto_sign_keypair(pk2, sk2);
        assert_true(jwt_sign(&c, "k1", sk2, tok, sizeof(tok)) > 0);
        assert_int_equal(jwt_parse(tok, strlen(tok), &p, &why), 0);
        assert_int_equal(jwt_verify_sig(tok, &p, pk), -EBADMSG);
        assert_int_equal(jwt_verify_sig(tok, &p, pk2), 0);
        /* Verification covers exactly the signing input. */
        p.signing_input_len--;
        assert_int_equal(jwt_verify_sig(tok, &p, pk2), -EBADMSG);
        /* What a failed parse leaves behind never verifies. */
        tok[0] = '!';
        assert_int_equal(jwt_parse(tok, strlen(tok), &p, &why), -EINVAL);
        assert_int_equal(jwt_verify_sig(tok, &p, pk2), -EBADMSG);
}

static void test_escape_roundtrip(void **state) {
        struct jwt_claims c = { .exp = 1 };
        struct jwt_parsed p;
        char tok[JWT_MAX + 1], json[1024];
        const char *why = NULL;

        strcpy(c.sub, "a\"b\\c\nd\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e\t\x01\x1f\x7f/");
        strcpy(c.iss, "\b\f\r");
        strcpy(c.unit, "x");
        assert_true(jwt_sign(&c, "k\"\\\xc3\xa9", sk, tok, sizeof(tok)) > 0);
        part_json(tok, 0, json, sizeof(json));
        assert_string_equal(json, "{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"kid\":\"k\\\"\\\\\xc3\xa9\"}");
        part_json(tok, 1, json, sizeof(json));
        assert_string_equal(json, "{\"iss\":\"\\b\\f\\r\",\"sub\":\"a\\\"b\\\\c\\nd\xc3\xa9\xe2\x82\xac"
                                  "\xf0\x9d\x84\x9e\\t\\u0001\\u001f\x7f/\",\"iat\":0,\"nbf\":0,\"exp\":1,"
                                  "\"unit\":\"x\"}");
        assert_int_equal(jwt_parse(tok, strlen(tok), &p, &why), 0);
        assert_claims_equal(&p.claims, &c);
        assert_string_equal(p.kid, "k\"\\\xc3\xa9");
}

static void test_parse_escapes(void **state) {
        struct jwt_parsed p;

        parse_json_ok(HDR, "{\"exp\":1,\"sub\":\"\\u0041\\u00e9\\u20AC\\ud834\\udd1e\\/\\\"\\\\\\b\\f\\n\\r\\t\"}", &p);
        assert_string_equal(p.claims.sub, "A\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e/\"\\\b\f\n\r\t");
        parse_json_ok(HDR, "{\"exp\":1,\"sub\":\"\\uDBFF\\uDFFF\"}", &p); /* U+10FFFF */
        assert_string_equal(p.claims.sub, "\xf4\x8f\xbf\xbf");
        /* Names are compared decoded. */
        parse_json_ok(HDR, "{\"\\u0065xp\":7}", &p);
        assert_true(p.claims.exp == 7);

        assert_payload_why("{\"exp\":1,\"sub\":\"\\ud834\"}", "lone surrogate in payload");
        assert_payload_why("{\"exp\":1,\"sub\":\"\\ud834x\"}", "lone surrogate in payload");
        assert_payload_why("{\"exp\":1,\"sub\":\"\\ud834\\u0041\"}", "lone surrogate in payload");
        assert_payload_why("{\"exp\":1,\"sub\":\"\\ud834\\ud834\"}", "lone surrogate in payload");
        assert_payload_why("{\"exp\":1,\"sub\":\"\\udd1e\"}", "lone surrogate in payload");
        assert_payload_why("{\"exp\":1,\"x\":\"\\udd1e\\ud834\"}", "lone surrogate in payload");
        assert_payload_why("{\"exp\":1,\"sub\":\"\\u0000\"}", "\\u0000 in payload");
        assert_payload_why("{\"exp\":1,\"sub\":\"\\u12\"}", "bad \\u escape in payload");
        assert_payload_why("{\"exp\":1,\"sub\":\"\\u12g4\"}", "bad \\u escape in payload");
        assert_payload_why("{\"exp\":1,\"sub\":\"\\u12", "bad \\u escape in payload");
        assert_payload_why("{\"exp\":1,\"sub\":\"\\ud834\\udd1\"}", "bad \\u escape in payload");
        assert_payload_why("{\"exp\":1,\"sub\":\"\\ud834\\u", "bad \\u escape in payload");
        assert_payload_why("{\"exp\":1,\"sub\":\"\\x41\"}", "bad escape in payload");
        assert_payload_why("{\"exp\":1,\"sub\":\"\\'\"}", "bad escape in payload");
        assert_payload_why("{\"exp\":1,\"sub\":\"\\", "bad escape in payload");
        assert_payload_why("{\"exp\":1,\"sub\":\"abc", "unterminated string in payload");
}

static void test_raw_bytes_in_strings(void **state) {
        struct jwt_parsed p;

        assert_payload_why("{\"exp\":1,\"sub\":\"a\x01\"}", "control character in string in payload");
        assert_payload_why("{\"exp\":1,\"sub\":\"a\nb\"}", "control character in string in payload");
        assert_payload_why("{\"exp\":1,\"sub\":\"a\x1f\"}", "control character in string in payload");
        assert_payload_why("{\"exp\":1,\"x\":\"\tb\"}", "control character in string in payload");
        assert_why("{\"alg\":\"EdDSA\",\"kid\":\"a\x02\"}", "{\"exp\":1}", "control character in string in header");

        static const char *bad[] = {
                "\x80", "\xbf", "\xc0\x80", "\xc1\xbf", "\xe0\x80\x80", "\xe0\x9f\xbf", "\xf0\x80\x80\x80",
                "\xf0\x8f\xbf\xbf", "\xed\xa0\x80", "\xed\xbf\xbf", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80",
                "\xf8\x88\x80\x80\x80", "\xfe", "\xff", "\xc3", "\xe2\x82", "\xf0\x9d\x84", "\xc3\x28",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                char json[64];
                snprintf(json, sizeof(json), "{\"exp\":1,\"sub\":\"%s\"}", bad[i]);
                assert_payload_why(json, "bad UTF-8 in payload");
                snprintf(json, sizeof(json), "{\"exp\":1,\"%s\":1}", bad[i]);
                assert_payload_why(json, "bad UTF-8 in payload");
        }
        parse_json_ok(HDR, "{\"exp\":1,\"sub\":\"\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xf0\x90\x80\x80"
                           "\xf4\x8f\xbf\xbf\x7f\"}",
                      &p);
        assert_string_equal(p.claims.sub, "\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xf0\x90\x80\x80"
                                          "\xf4\x8f\xbf\xbf\x7f");
}

static void test_string_length(void **state) {
        struct jwt_parsed p;
        char json[1200], s[600];

        memset(s, 'a', 255);
        s[255] = '\0';
        snprintf(json, sizeof(json), "{\"exp\":1,\"sub\":\"%s\"}", s);
        parse_json_ok(HDR, json, &p);
        assert_int_equal(strlen(p.claims.sub), 255);
        snprintf(json, sizeof(json), "{\"exp\":1,\"sub\":\"%sa\"}", s);
        assert_payload_why(json, "string too long in payload");
        /* Bytes count, not characters: 127 two-byte characters fit, 128 do not. */
        s[0] = '\0';
        for (int i = 0; i < 127; i++)
                strcat(s, "\xc3\xa9");
        snprintf(json, sizeof(json), "{\"exp\":1,\"unit\":\"%s\"}", s);
        parse_json_ok(HDR, json, &p);
        snprintf(json, sizeof(json), "{\"exp\":1,\"unit\":\"%s\\u00e9\"}", s);
        assert_payload_why(json, "string too long in payload");
        /* Names and unknown strings have the same limit. */
        memset(s, 'n', 256);
        s[256] = '\0';
        snprintf(json, sizeof(json), "{\"exp\":1,\"%s\":1}", s);
        assert_payload_why(json, "string too long in payload");
        snprintf(json, sizeof(json), "{\"exp\":1,\"x\":\"%s\"}", s);
        assert_payload_why(json, "string too long in payload");
}

static void test_integers(void **state) {
        struct jwt_parsed p;

        parse_json_ok(HDR, "{\"iat\":0,\"nbf\":9007199254740991,\"exp\":9007199254740991,\"uid\":4294967295}", &p);
        assert_true(p.claims.iat == 0);
        assert_true(p.claims.nbf == UINT64_C(9007199254740991));
        assert_true(p.claims.exp == UINT64_C(9007199254740991));
        assert_true(p.claims.has_uid);
        assert_int_equal(p.claims.uid, UINT32_MAX);
        parse_json_ok(HDR, "{\"exp\":1}", &p);
        assert_true(p.claims.iat == 0 && p.claims.nbf == 0 && p.claims.exp == 1 && !p.claims.has_uid);

        static const char *exp_bad[] = {
                "9007199254740992", "18446744073709551615", "18446744073709551616",
                "99999999999999999999999999999999999999", "-1", "-0", "1.0", "1.5", "1e3", "1E3", "0e0",
                "\"1\"", "true", "null", "[1]", "{}",
        };
        for (size_t i = 0; i < sizeof(exp_bad) / sizeof(exp_bad[0]); i++) {
                char json[128];
                snprintf(json, sizeof(json), "{\"exp\":%s}", exp_bad[i]);
                assert_payload_why(json, "exp is not an integer in [0, 2^53)");
        }
        assert_payload_why("{\"exp\":1,\"iat\":-5}", "iat is not an integer in [0, 2^53)");
        assert_payload_why("{\"exp\":1,\"nbf\":2.5}", "nbf is not an integer in [0, 2^53)");
        assert_payload_why("{\"exp\":1,\"uid\":4294967296}", "uid is not an integer in [0, 2^32)");
        assert_payload_why("{\"exp\":1,\"uid\":-1}", "uid is not an integer in [0, 2^32)");
        /* Not JSON numbers at all. */
        assert_payload_why("{\"exp\":0123}", "number with a leading zero in payload");
        assert_payload_why("{\"exp\":00}", "number with a leading zero in payload");
        assert_payload_why("{\"exp\":1.}", "bad number in payload");
        assert_payload_why("{\"exp\":1e}", "bad number in payload");
        assert_payload_why("{\"exp\":-}", "bad number in payload");
        assert_payload_why("{\"exp\":+1}", "exp is not an integer in [0, 2^53)");
        assert_payload_why("{\"exp\":1,\"x\":.5}", "bad value in payload");
        assert_payload_why("{\"exp\":1,\"x\":01}", "number with a leading zero in payload");
        assert_payload_why("{\"exp\":0x10}", "expected ',' or '}' in payload");
        /* Unknown members may hold any JSON number. */
        parse_json_ok(HDR, "{\"exp\":1,\"a\":-0.5e-7,\"b\":1E+400,\"c\":123456789012345678901234567890,\"d\":-0}", &p);
}

static void test_ids(void **state) {
        struct jwt_parsed p;

        parse_json_ok(HDR, "{\"exp\":1,\"jti\":\"00000000000000000000000000000000\"}", &p);
        assert_string_equal(p.claims.jti, "00000000000000000000000000000000");
        assert_payload_why("{\"exp\":1,\"jti\":\"0123456789ABCDEF0123456789abcdef\"}", "jti is not 32 lowercase hex digits");
        assert_payload_why("{\"exp\":1,\"jti\":\"0123456789abcdef0123456789abcde\"}", "jti is not 32 lowercase hex digits");
        assert_payload_why("{\"exp\":1,\"jti\":\"0123456789abcdef0123456789abcdef0\"}", "jti is not 32 lowercase hex digits");
        assert_payload_why("{\"exp\":1,\"jti\":\"\"}", "jti is not 32 lowercase hex digits");
        assert_payload_why("{\"exp\":1,\"jti\":5}", "jti is not 32 lowercase hex digits");
        assert_payload_why("{\"exp\":1,\"sid\":\"0123456789abcdef0123456789abcdeg\"}", "sid is not 32 lowercase hex digits");
        assert_payload_why("{\"exp\":1,\"sid\":null}", "sid is not 32 lowercase hex digits");
}

static void test_string_claim_types(void **state) {
        assert_payload_why("{\"exp\":1,\"iss\":1}", "iss is not a string");
        assert_payload_why("{\"exp\":1,\"sub\":null}", "sub is not a string");
        assert_payload_why("{\"exp\":1,\"unit\":[\"a\"]}", "unit is not a string");
        assert_payload_why("{\"exp\":1,\"aud\":1}", "aud is not a string or a non-empty array of strings");
        assert_payload_why("{\"exp\":1,\"aud\":[]}", "aud is not a string or a non-empty array of strings");
        assert_payload_why("{\"exp\":1,\"aud\":[\"a\",1]}", "aud is not a string or a non-empty array of strings");
        assert_payload_why("{\"exp\":1,\"aud\":[[\"a\"]]}", "aud is not a string or a non-empty array of strings");
        assert_payload_why("{\"exp\":1,\"aud\":[\"a\",]}", "aud is not a string or a non-empty array of strings");
        assert_payload_why("{\"exp\":1,\"aud\":[\"a\" \"b\"]}", "expected ',' or ']' in payload");
        assert_payload_why("{\"exp\":1,\"aud\":[\"a\"", "expected ',' or ']' in payload");
}

static void test_aud_array(void **state) {
        struct jwt_parsed p;

        parse_json_ok(HDR, "{\"exp\":1,\"aud\":[\"coffer\",\"other\",\"third\"]}", &p);
        assert_string_equal(p.claims.aud, "coffer");
        parse_json_ok(HDR, "{\"exp\":1,\"aud\":[ \"only\" ]}", &p);
        assert_string_equal(p.claims.aud, "only");
        parse_json_ok(HDR, "{\"exp\":1,\"aud\":\"plain\"}", &p);
        assert_string_equal(p.claims.aud, "plain");
}

static void test_unknown_claims_ignored(void **state) {
        struct jwt_parsed p;

        parse_json_ok("{\"kid\":\"k1\",\"x5t\":\"abc\",\"alg\":\"EdDSA\",\"nested\":{\"a\":[1,{\"b\":null}]}}",
                      " {\n\t\"exp\" : 9 ,\"scope\":[\"read\",\"write\"],\"admin\":false,\"n\":null,"
                      "\"o\":{\"sub\":\"mallory\",\"exp\":1,\"x\":{}},\"t\":true,\"e\":[],\"f\":-1.25} \r\n",
                      &p);
        assert_true(p.claims.exp == 9);
        assert_string_equal(p.claims.sub, "");
        assert_string_equal(p.kid, "k1");
        /* Same name in sibling objects and in an inner object is fine. */
        parse_json_ok(HDR, "{\"exp\":1,\"a\":{\"x\":1},\"b\":{\"x\":1,\"a\":{\"x\":2}},\"x\":3}", &p);
}

static void test_duplicates(void **state) {
        assert_payload_why("{\"exp\":1,\"exp\":2}", "duplicate member in payload");
        assert_payload_why("{\"exp\":1,\"\\u0065xp\":2}", "duplicate member in payload");
        assert_payload_why("{\"exp\":1,\"sub\":\"a\",\"x\":0,\"sub\":\"b\"}", "duplicate member in payload");
        assert_payload_why("{\"exp\":1,\"x\":1,\"x\":1}", "duplicate member in payload");
        assert_payload_why("{\"exp\":1,\"o\":{\"a\":1,\"b\":{},\"a\":2}}", "duplicate member in payload");
        assert_payload_why("{\"exp\":1,\"\":1,\"\":2}", "duplicate member in payload");
        assert_why("{\"alg\":\"EdDSA\",\"kid\":\"a\",\"kid\":\"b\"}", "{\"exp\":1}", "duplicate member in header");
        assert_why("{\"alg\":\"EdDSA\",\"alg\":\"EdDSA\",\"kid\":\"a\"}", "{\"exp\":1}", "duplicate member in header");
        /* Names of inner objects do not clash with outer ones, before or after. */
        assert_payload_why("{\"exp\":1,\"a\":{\"b\":1},\"b\":2,\"a\":3}", "duplicate member in payload");
        assert_payload_why("{\"exp\":1,\"a\":[{\"b\":1},{\"b\":1,\"c\":{},\"b\":0}]}", "duplicate member in payload");
        struct jwt_parsed p;
        parse_json_ok(HDR, "{\"exp\":1,\"a\":{\"exp\":2,\"a\":{\"a\":1}},\"b\":[{\"a\":1,\"b\":2},{\"a\":1}],\"c\":3}", &p);
        assert_true(p.claims.exp == 1);
}

/* Many members, in both orders, with the duplicate first, last or in the
 * middle of the sorted order; names differing only in length or last byte. */
static void test_duplicates_many(void **state) {
        static char json[JWT_MAX];
        struct jwt_parsed p;

        for (int order = 0; order < 2; order++) {
                size_t pos = (size_t) sprintf(json, "{\"exp\":1");
                for (int k = 0; k < 500; k++)
                        pos += (size_t) sprintf(json + pos, ",\"%03x\":%d", order ? 499 - k : k, k);
                pos += (size_t) sprintf(json + pos, ",\"\":0,\"0\":0,\"00\":0,\"0000\":0");
                strcpy(json + pos, "}");
                parse_json_ok(HDR, json, &p);
                static const char *again[] = { "000", "1f3", "1f2", "0fa", "0f9", "\\u0030\\u0030\\u0030", "", "00", "exp" };
                for (size_t i = 0; i < sizeof(again) / sizeof(again[0]); i++) {
                        sprintf(json + pos, ",\"%s\":0}", again[i]);
                        assert_payload_why(json, "duplicate member in payload");
                }
        }
}

static void test_depth(void **state) {
        struct jwt_parsed p;

        /* The outermost object is level 1: eight levels pass, nine do not. */
        parse_json_ok(HDR, "{\"exp\":1,\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{\"g\":{}}}}}}}}", &p);
        assert_payload_why("{\"exp\":1,\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{\"g\":{\"h\":{}}}}}}}}}",
                           "nesting deeper than 8 in payload");
        parse_json_ok(HDR, "{\"exp\":1,\"a\":[[[[[[[1]]]]]]]}", &p);
        assert_payload_why("{\"exp\":1,\"a\":[[[[[[[[1]]]]]]]]}", "nesting deeper than 8 in payload");
        assert_payload_why("{\"exp\":1,\"a\":[{\"b\":[{\"c\":[{\"d\":[{}]}]}]}]}", "nesting deeper than 8 in payload");
        assert_why("{\"alg\":\"EdDSA\",\"kid\":\"a\",\"x\":[[[[[[[[]]]]]]]]}", "{\"exp\":1}",
                   "nesting deeper than 8 in header");
        /* Far deeper input is refused without recursing that deep. */
        char deep[4096];
        memset(deep, '[', sizeof(deep));
        memcpy(deep, "{\"x\":", 5);
        deep[sizeof(deep) - 1] = '\0';
        assert_payload_why(deep, "nesting deeper than 8 in payload");
}

static void test_json_structure(void **state) {
        assert_payload_why("", "not a JSON object in payload");
        assert_payload_why("   ", "not a JSON object in payload");
        assert_payload_why("[{\"exp\":1}]", "not a JSON object in payload");
        assert_payload_why("\"exp\"", "not a JSON object in payload");
        assert_payload_why("\xef\xbb\xbf{\"exp\":1}", "not a JSON object in payload"); /* BOM */
        assert_payload_why("{\"exp\":1}x", "trailing bytes after the object in payload");
        assert_payload_why("{\"exp\":1}{}", "trailing bytes after the object in payload");
        assert_payload_why("{\"exp\":1} \n,", "trailing bytes after the object in payload");
        assert_payload_why("{\"exp\":1", "expected ',' or '}' in payload");
        assert_payload_why("{\"exp\":1,}", "expected a member name in payload");
        assert_payload_why("{exp:1}", "expected a member name in payload");
        assert_payload_why("{'exp':1}", "expected a member name in payload");
        assert_payload_why("{\"exp\" 1}", "expected ':' in payload");
        assert_payload_why("{\"exp\":1,\"a\":tru}", "bad value in payload");
        assert_payload_why("{\"exp\":1,\"a\":True}", "bad value in payload");
        assert_payload_why("{\"exp\":1,\"a\":nul}", "bad value in payload");
        assert_payload_why("{\"exp\":1,\"a\":}", "bad value in payload");
        assert_payload_why("{\"exp\":1,\"a\":[1,]}", "bad value in payload");
        assert_payload_why("{\"exp\":1,\"a\":[1 2]}", "expected ',' or ']' in payload");
        assert_payload_why("{\"exp\":1,\"a\":NaN}", "bad value in payload");
        assert_payload_why("{}", "exp missing");
        assert_payload_why("{\"sub\":\"a\",\"iat\":1,\"o\":{\"exp\":1}}", "exp missing");
        assert_payload_why("{\"exp\":1,\"x\":\"\\u0000\"}", "\\u0000 in payload");

        /* NUL bytes in the decoded JSON. */
        char tok[512];
        static const char nul_after[] = "{\"exp\":1}\0";
        raw_token_n(tok, sizeof(tok), HDR, nul_after, sizeof(nul_after) - 1);
        assert_string_equal(why_tok(tok, strlen(tok)), "trailing bytes after the object in payload");
        static const char nul_in[] = "{\"exp\":1,\"sub\":\"a\0b\"}";
        raw_token_n(tok, sizeof(tok), HDR, nul_in, sizeof(nul_in) - 1);
        assert_string_equal(why_tok(tok, strlen(tok)), "control character in string in payload");
        static const char nul_name[] = "{\"exp\":1,\"\0\":1}";
        raw_token_n(tok, sizeof(tok), HDR, nul_name, sizeof(nul_name) - 1);
        assert_string_equal(why_tok(tok, strlen(tok)), "control character in string in payload");
}

static void test_header(void **state) {
        struct jwt_parsed p;
        char kid[80];

        parse_json_ok("{\"alg\":\"EdDSA\",\"kid\":\"no-typ\"}", "{\"exp\":1}", &p);
        assert_string_equal(p.kid, "no-typ");
        parse_json_ok("{\"kid\":\"\\u006b\",\"typ\":\"JWT\",\"alg\":\"\\u0045dDSA\"}", "{\"exp\":1}", &p);
        assert_string_equal(p.kid, "k");

        assert_why("{\"alg\":\"none\",\"kid\":\"a\"}", "{\"exp\":1}", "header alg is not EdDSA");
        assert_why("{\"alg\":\"HS256\",\"kid\":\"a\"}", "{\"exp\":1}", "header alg is not EdDSA");
        assert_why("{\"alg\":\"eddsa\",\"kid\":\"a\"}", "{\"exp\":1}", "header alg is not EdDSA");
        assert_why("{\"alg\":\"EdDSA \",\"kid\":\"a\"}", "{\"exp\":1}", "header alg is not EdDSA");
        assert_why("{\"alg\":null,\"kid\":\"a\"}", "{\"exp\":1}", "header alg is not EdDSA");
        assert_why("{\"alg\":[\"EdDSA\"],\"kid\":\"a\"}", "{\"exp\":1}", "header alg is not EdDSA");
        assert_why("{\"kid\":\"a\"}", "{\"exp\":1}", "header alg is not EdDSA");
        assert_why("{\"alg\":\"EdDSA\",\"kid\":\"a\",\"crit\":[\"exp\"]}", "{\"exp\":1}", "header has crit");
        assert_why("{\"alg\":\"EdDSA\",\"kid\":\"a\",\"crit\":[]}", "{\"exp\":1}", "header has crit");
        assert_why("{\"alg\":\"EdDSA\"}", "{\"exp\":1}", "header kid missing");
        assert_why("{\"alg\":\"EdDSA\",\"o\":{\"kid\":\"a\"}}", "{\"exp\":1}", "header kid missing");
        assert_why("{\"alg\":\"EdDSA\",\"kid\":1}", "{\"exp\":1}", "header kid is not a string");
        assert_why("{\"alg\":\"EdDSA\",\"kid\":\"\"}", "{\"exp\":1}", "header kid is empty or longer than 63 bytes");
        assert_why("{\"alg\":\"EdDSA\",\"kid\":\"a\",\"typ\":\"jwt\"}", "{\"exp\":1}", "header typ is not JWT");
        assert_why("{\"alg\":\"EdDSA\",\"kid\":\"a\",\"typ\":\"at+jwt\"}", "{\"exp\":1}", "header typ is not JWT");
        assert_why("{\"alg\":\"EdDSA\",\"kid\":\"a\",\"typ\":1}", "{\"exp\":1}", "header typ is not JWT");
        assert_why("[\"alg\"]", "{\"exp\":1}", "not a JSON object in header");
        assert_why("{\"alg\":\"EdDSA\",\"kid\":\"a\"} x", "{\"exp\":1}", "trailing bytes after the object in header");

        /* kid: 63 bytes pass, 64 do not. */
        memset(kid, 0, sizeof(kid));
        memset(kid, 'k', 63);
        char hdr[160];
        snprintf(hdr, sizeof(hdr), "{\"alg\":\"EdDSA\",\"kid\":\"%s\"}", kid);
        parse_json_ok(hdr, "{\"exp\":1}", &p);
        assert_string_equal(p.kid, kid);
        snprintf(hdr, sizeof(hdr), "{\"alg\":\"EdDSA\",\"kid\":\"%sk\"}", kid);
        assert_why(hdr, "{\"exp\":1}", "header kid is empty or longer than 63 bytes");
}

static void test_parts(void **state) {
        struct jwt_claims c = full_claims();
        char tok[JWT_MAX + 1], bad[JWT_MAX * 2];
        uint8_t sig[65] = { 0 };
        char *last;
        int n = jwt_sign(&c, "k1", sk, tok, sizeof(tok));

        assert_true(n > 0);
        assert_string_equal(why_tok("", 0), "not three dot-separated parts");
        assert_string_equal(why_tok(NULL, 0), "not three dot-separated parts");
        assert_string_equal(why_tok("abc", 3), "not three dot-separated parts");
        assert_string_equal(why_tok("..", 2), "not a JSON object in header");
        /* Two parts: the signature removed. */
        last = strrchr(tok, '.');
        assert_string_equal(why_tok(tok, (size_t) (last - tok)), "not three dot-separated parts");
        /* Four parts. */
        snprintf(bad, sizeof(bad), "%s.AAAA", tok);
        assert_string_equal(why_tok(bad, strlen(bad)), "not three dot-separated parts");
        snprintf(bad, sizeof(bad), "%s.", tok);
        assert_string_equal(why_tok(bad, strlen(bad)), "not three dot-separated parts");
        /* Signature of 63, 65 and 0 bytes. */
        size_t head = (size_t) (last - tok) + 1;
        memcpy(bad, tok, head);
        b64(sig, 63, bad + head, sizeof(bad) - head);
        assert_string_equal(why_tok(bad, strlen(bad)), "signature is not 64 bytes");
        b64(sig, 65, bad + head, sizeof(bad) - head);
        assert_string_equal(why_tok(bad, strlen(bad)), "signature is not 64 bytes");
        bad[head] = '\0';
        assert_string_equal(why_tok(bad, strlen(bad)), "signature is not 64 bytes");
        /* 86 characters but not base64url. */
        memcpy(bad, tok, (size_t) n + 1);
        bad[n - 1] = '=';
        assert_string_equal(why_tok(bad, (size_t) n), "bad base64url in signature");
        bad[n - 1] = 'B'; /* non-zero trailing bits in the last character */
        assert_string_equal(why_tok(bad, (size_t) n), "bad base64url in signature");
        /* Header and payload base64url. */
        memcpy(bad, tok, (size_t) n + 1);
        bad[2] = '+';
        assert_string_equal(why_tok(bad, (size_t) n), "bad base64url in header");
        bad[2] = '\xff';
        assert_string_equal(why_tok(bad, (size_t) n), "bad base64url in header");
        memcpy(bad, tok, (size_t) n + 1);
        bad[head - 3] = '/';
        assert_string_equal(why_tok(bad, (size_t) n), "bad base64url in payload");
        snprintf(bad, sizeof(bad), "%.*s=%s", (int) (strchr(tok, '.') - tok), tok, strchr(tok, '.'));
        assert_string_equal(why_tok(bad, strlen(bad)), "bad base64url in header");
        /* Empty header and payload parts. */
        snprintf(bad, sizeof(bad), ".%s", strchr(tok, '.') + 1);
        assert_string_equal(why_tok(bad, strlen(bad)), "not a JSON object in header");
        /* Too long: refused before anything else. */
        memset(bad, 'A', JWT_MAX + 1);
        memcpy(bad, tok, (size_t) n);
        assert_string_equal(why_tok(bad, JWT_MAX + 1), "token longer than 8192 bytes");
}

/* Tokens of every length around JWT_MAX: up to it they parse, above not. */
static void test_long_token(void **state) {
        static const char *hdrs[] = {
                "{\"alg\":\"EdDSA\",\"kid\":\"k\"}",
                "{\"alg\":\"EdDSA\",\"kid\":\"kk\"}",
                "{\"alg\":\"EdDSA\",\"kid\":\"kkk\"}",
        };
        struct jwt_parsed p;
        static char payload[JWT_MAX], tok[JWT_MAX * 2];
        const char *why;
        bool exact = false;

        for (size_t h = 0; h < 3; h++) {
                bool over = false;
                /* 30 members always present, filled one character at a time. */
                for (size_t fill = 5600; !over; fill++) {
                        size_t pos = (size_t) snprintf(payload, sizeof(payload), "{\"exp\":1");
                        for (size_t k = 0; k < 30; k++) {
                                size_t chunk = fill > k * 200 ? fill - k * 200 : 0;
                                if (chunk > 200)
                                        chunk = 200;
                                pos += (size_t) snprintf(payload + pos, sizeof(payload) - pos, ",\"%02zu\":\"", k);
                                memset(payload + pos, 'x', chunk);
                                pos += chunk;
                                payload[pos++] = '"';
                        }
                        payload[pos++] = '}';
                        payload[pos] = '\0';
                        raw_token(tok, sizeof(tok), hdrs[h], payload);
                        size_t len = strlen(tok);
                        if (len <= JWT_MAX) {
                                assert_int_equal(jwt_parse(tok, len, &p, &why), 0);
                                assert_int_equal(jwt_verify_sig(tok, &p, pk), 0);
                                exact |= len == JWT_MAX;
                        } else {
                                assert_string_equal(why_tok(tok, len), "token longer than 8192 bytes");
                                over = true;
                        }
                }
        }
        assert_true(exact);
}

static void test_sign_refusals(void **state) {
        struct jwt_claims c;
        char tok[JWT_MAX + 1], kid[80];

        c = full_claims();
        assert_int_equal(jwt_sign(&c, "", sk, tok, sizeof(tok)), -EINVAL);
        memset(kid, 'k', 64);
        kid[64] = '\0';
        assert_int_equal(jwt_sign(&c, kid, sk, tok, sizeof(tok)), -EINVAL);
        kid[63] = '\0';
        assert_true(jwt_sign(&c, kid, sk, tok, sizeof(tok)) > 0);
        assert_int_equal(jwt_sign(&c, "k\xff", sk, tok, sizeof(tok)), -EINVAL);
        assert_string_equal(tok, "");

        c = full_claims();
        strcpy(c.jti, "0123456789ABCDEF0123456789abcdef");
        assert_int_equal(jwt_sign(&c, "k", sk, tok, sizeof(tok)), -EINVAL);
        c = full_claims();
        strcpy(c.sid, "abc");
        assert_int_equal(jwt_sign(&c, "k", sk, tok, sizeof(tok)), -EINVAL);
        c = full_claims();
        memset(c.jti, 'a', sizeof(c.jti)); /* not terminated */
        assert_int_equal(jwt_sign(&c, "k", sk, tok, sizeof(tok)), -EINVAL);
        c = full_claims();
        memset(c.sub, 'a', sizeof(c.sub)); /* not terminated */
        assert_int_equal(jwt_sign(&c, "k", sk, tok, sizeof(tok)), -EINVAL);
        c = full_claims();
        strcpy(c.sub, "bad \xc3\x28 utf-8");
        assert_int_equal(jwt_sign(&c, "k", sk, tok, sizeof(tok)), -EINVAL);
        c = full_claims();
        c.exp = UINT64_C(1) << 53;
        assert_int_equal(jwt_sign(&c, "k", sk, tok, sizeof(tok)), -EINVAL);
        c.exp = (UINT64_C(1) << 53) - 1;
        assert_true(jwt_sign(&c, "k", sk, tok, sizeof(tok)) > 0);
        c.iat = UINT64_MAX;
        assert_int_equal(jwt_sign(&c, "k", sk, tok, sizeof(tok)), -EINVAL);
        c = full_claims();
        c.nbf = UINT64_C(1) << 53;
        assert_int_equal(jwt_sign(&c, "k", sk, tok, sizeof(tok)), -EINVAL);

        /* Claims that cannot fit in JWT_MAX: -E2BIG whatever the buffer. */
        static char big[JWT_MAX * 4];
        c = full_claims();
        memset(c.iss, '\x01', JWT_STR_MAX);
        memset(c.sub, '\x01', JWT_STR_MAX);
        memset(c.aud, '\x01', JWT_STR_MAX);
        memset(c.unit, '\x01', JWT_STR_MAX);
        assert_int_equal(jwt_sign(&c, "k", sk, big, sizeof(big)), -E2BIG);
        /* Every string at its maximum still fits when it needs no escapes. */
        memset(c.iss, 'i', JWT_STR_MAX);
        memset(c.sub, 's', JWT_STR_MAX);
        memset(c.aud, 'a', JWT_STR_MAX);
        memset(c.unit, 'u', JWT_STR_MAX);
        int n = jwt_sign(&c, kid, sk, big, sizeof(big));
        assert_true(n > 0 && n <= JWT_MAX);
        struct jwt_parsed p;
        const char *why;
        assert_int_equal(jwt_parse(big, (size_t) n, &p, &why), 0);
        assert_claims_equal(&p.claims, &c);
}

static void test_sign_e2big(void **state) {
        struct jwt_claims c = full_claims();
        char tok[JWT_MAX + 1], small[JWT_MAX + 1];
        int n = jwt_sign(&c, "k1", sk, tok, sizeof(tok));

        assert_true(n > 0);
        for (size_t sz = 0; sz <= (size_t) n; sz++) {
                memset(small, 'Z', sizeof(small));
                assert_int_equal(jwt_sign(&c, "k1", sk, small, sz), -E2BIG);
                if (sz > 0)
                        assert_int_equal(small[0], '\0');
                assert_int_equal(small[sz], 'Z'); /* nothing written past the buffer */
        }
        assert_int_equal(jwt_sign(&c, "k1", sk, small, (size_t) n + 1), n);
        assert_string_equal(small, tok);
}

/* ---- JWKS ---- */

static void test_jwks(void **state) {
        struct jwk keys[2];
        char out[1024], x[64];
        int n;

        memset(keys, 0, sizeof(keys));
        strcpy(keys[0].kid, "2024-01");
        memcpy(keys[0].pk, pk, 32);
        strcpy(keys[1].kid, "q\"uote");
        memset(keys[1].pk, 0xff, 32);

        n = jwks_write(keys, 2, out, sizeof(out));
        assert_true(n > 0);
        assert_int_equal(strlen(out), (size_t) n);
        assert_string_equal(out, "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"alg\":\"EdDSA\",\"use\":\"sig\","
                                 "\"kid\":\"2024-01\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"},"
                                 "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"alg\":\"EdDSA\",\"use\":\"sig\","
                                 "\"kid\":\"q\\\"uote\",\"x\":\"__________________________________________8\"}]}\n");
        /* Parsed back by substrings. */
        assert_non_null(strstr(out, "\"kid\":\"2024-01\""));
        b64(pk, 32, x, sizeof(x));
        char want[96];
        snprintf(want, sizeof(want), "\"x\":\"%s\"", x);
        assert_non_null(strstr(out, want));
        assert_int_equal(out[n - 1], '\n');

        for (size_t sz = 0; sz <= (size_t) n; sz++)
                assert_int_equal(jwks_write(keys, 2, out, sz), -E2BIG);
        assert_int_equal(jwks_write(keys, 2, out, (size_t) n + 1), n);

        assert_int_equal(jwks_write(NULL, 0, out, sizeof(out)), 12);
        assert_string_equal(out, "{\"keys\":[]}\n");
        assert_int_equal(jwks_write(NULL, 0, out, 12), -E2BIG);

        keys[1].kid[0] = '\0';
        assert_int_equal(jwks_write(keys, 2, out, sizeof(out)), -EINVAL);
        memset(keys[1].kid, 'k', sizeof(keys[1].kid)); /* not terminated */
        assert_int_equal(jwks_write(keys, 2, out, sizeof(out)), -EINVAL);
        strcpy(keys[1].kid, "\xc3");
        assert_int_equal(jwks_write(keys, 2, out, sizeof(out)), -EINVAL);
}

/* A token signed by jwt_sign verifies against the key jwks_write publishes. */
static void test_jwks_matches_token(void **state) {
        struct jwk k = { .kid = "main" };
        struct jwt_claims c = full_claims();
        struct jwt_parsed p;
        char jwks[256], tok[JWT_MAX + 1];
        const char *why, *x;
        uint8_t pk2[32];

        memcpy(k.pk, pk, 32);
        assert_true(jwks_write(&k, 1, jwks, sizeof(jwks)) > 0);
        assert_true(jwt_sign(&c, "main", sk, tok, sizeof(tok)) > 0);
        assert_int_equal(jwt_parse(tok, strlen(tok), &p, &why), 0);
        assert_non_null(strstr(jwks, "\"kid\":\"main\""));
        x = strstr(jwks, "\"x\":\"");
        assert_non_null(x);
        x += 5;
        assert_int_equal(b64url_decode(x, 43, pk2, sizeof(pk2)), 32);
        assert_int_equal(jwt_verify_sig(tok, &p, pk2), 0);
}

/* ---- json_put_string ---- */

static void test_json_put_string(void **state) {
        char out[64];
        int n;

        strcpy(out, "[");
        n = json_put_string(out, sizeof(out), 1, "a\"\\\n\r\t\b\f\x01\x1f\x7f/\xc3\xa9");
        assert_int_equal(n, (int) strlen(out));
        assert_string_equal(out, "[\"a\\\"\\\\\\n\\r\\t\\b\\f\\u0001\\u001f\x7f/\xc3\xa9\"");
        n = json_put_string(out, sizeof(out), (size_t) n, "");
        assert_string_equal(out, "[\"a\\\"\\\\\\n\\r\\t\\b\\f\\u0001\\u001f\x7f/\xc3\xa9\"\"\"");

        /* "ab" + "\"x\\n\"" is 7 characters plus the NUL. */
        for (size_t sz = 0; sz < 8; sz++) {
                memset(out, 'Z', sizeof(out));
                strcpy(out, "ab");
                assert_int_equal(json_put_string(out, sz, 2, "x\n"), -E2BIG);
                if (sz > 2)
                        assert_string_equal(out, "ab"); /* cut back */
                if (sz >= 3)
                        assert_int_equal(out[sz], 'Z'); /* nothing past the buffer */
        }
        strcpy(out, "ab");
        assert_int_equal(json_put_string(out, 8, 2, "x\n"), 7);
        assert_string_equal(out, "ab\"x\\n\"");
        assert_int_equal(json_put_string(out, 8, 8, ""), -E2BIG);
        assert_int_equal(json_put_string(out, 8, 9, ""), -E2BIG);

        strcpy(out, "ab");
        assert_int_equal(json_put_string(out, sizeof(out), 2, "ok\xe2\x82"), -EINVAL);
        assert_string_equal(out, "ab");
        assert_int_equal(json_put_string(out, sizeof(out), 2, "\xed\xa0\x80"), -EINVAL);
        assert_int_equal(json_put_string(out, sizeof(out), 2, "\xc0\xaf"), -EINVAL);
        assert_int_equal(json_put_string(out, sizeof(out), 2, "\xf0\x9d\x84\x9e"), 8);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_rfc8037_vector),
                cmocka_unit_test(test_b64_roundtrip),
                cmocka_unit_test(test_b64_strict),
                cmocka_unit_test(test_b64_trailing_bits_exhaustive),
                cmocka_unit_test(test_b64_e2big),
                cmocka_unit_test(test_sign_roundtrip),
                cmocka_unit_test(test_sign_minimal),
                cmocka_unit_test(test_tamper_every_char),
                cmocka_unit_test(test_tamper_each_part),
                cmocka_unit_test(test_wrong_key),
                cmocka_unit_test(test_escape_roundtrip),
                cmocka_unit_test(test_parse_escapes),
                cmocka_unit_test(test_raw_bytes_in_strings),
                cmocka_unit_test(test_string_length),
                cmocka_unit_test(test_integers),
                cmocka_unit_test(test_ids),
                cmocka_unit_test(test_string_claim_types),
                cmocka_unit_test(test_aud_array),
                cmocka_unit_test(test_unknown_claims_ignored),
                cmocka_unit_test(test_duplicates),
                cmocka_unit_test(test_duplicates_many),
                cmocka_unit_test(test_depth),
                cmocka_unit_test(test_json_structure),
                cmocka_unit_test(test_header),
                cmocka_unit_test(test_parts),
                cmocka_unit_test(test_long_token),
                cmocka_unit_test(test_sign_refusals),
                cmocka_unit_test(test_sign_e2big),
                cmocka_unit_test(test_jwks),
                cmocka_unit_test(test_jwks_matches_token),
                cmocka_unit_test(test_json_put_string),
        };

        return cmocka_run_group_tests_name("jwt", tests, setup, NULL);
}
