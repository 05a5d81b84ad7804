/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* JSON Web Tokens signed with EdDSA (Ed25519, RFC 8037), the JWKS document
 * that publishes their public keys, and the strict parser used to verify
 * them. Only this file turns token bytes into claims. No I/O, no allocation
 * beyond the caller's buffers. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JWT_MAX 8192            /* longest token accepted or produced */
#define JWT_KID_MAX 63
#define JWT_STR_MAX 255         /* longest string claim */
#define JWT_ID_LEN 32           /* jti / sid: 32 lowercase hex characters */

struct jwt_claims {
        char iss[JWT_STR_MAX + 1];
        char sub[JWT_STR_MAX + 1];
        char aud[JWT_STR_MAX + 1];     /* one audience (a string, or the first of an array) */
        uint64_t iat, nbf, exp;        /* unix seconds */
        char jti[JWT_ID_LEN + 1];
        char sid[JWT_ID_LEN + 1];      /* coffer session lease id, "" = none */
        char unit[JWT_STR_MAX + 1];    /* systemd unit, "" = none */
        bool has_uid;
        uint32_t uid;
};

/* base64url without padding (RFC 7515 section 2). encode returns the length
 * written (NUL-terminated) or -E2BIG. decode is strict: no padding, no
 * characters outside the alphabet, no non-zero trailing bits; returns the
 * decoded length or -EINVAL / -E2BIG. */
int b64url_encode(const uint8_t *in, size_t n, char *out, size_t outsz);
int b64url_decode(const char *in, size_t n, uint8_t *out, size_t outsz);

/* Sign: header {"alg":"EdDSA","typ":"JWT","kid":KID}, payload with every
 * claim set in c (empty strings and has_uid=false are left out; iat, nbf and
 * exp are always written), compact, members in the order of the struct.
 * sk is a libsodium Ed25519 secret key (64 bytes). Returns the token length
 * (out is NUL-terminated) or a negative errno: -EINVAL for a kid that is
 * empty or over JWT_KID_MAX, a string that is not NUL-terminated in its
 * field or not UTF-8, a jti/sid that is neither "" nor JWT_ID_LEN lowercase
 * hex, iat/nbf/exp >= 2^53; -E2BIG when out is too small or the token would
 * be longer than JWT_MAX. What it signs, jwt_parse() reads back unchanged. */
int jwt_sign(const struct jwt_claims *c, const char *kid, const uint8_t sk[64], char *out, size_t outsz);

struct jwt_parsed {
        char kid[JWT_KID_MAX + 1];
        struct jwt_claims claims;
        size_t signing_input_len;      /* token[0 .. this) is what was signed */
        uint8_t sig[64];
};

/* Parse token (len bytes, need not be NUL-terminated) without checking the
 * signature. Refuses: not three parts, bad base64url, a header whose alg is
 * not "EdDSA" or that has "crit", no kid, JSON that is not one object,
 * duplicate members, nesting deeper than 8, numbers that are not
 * non-negative integers below 2^53 where an integer is expected, strings
 * over JWT_STR_MAX, bad UTF-8 or escapes, trailing bytes, a signature that is
 * not 64 bytes, and missing exp. Also refused: \u0000 in any string, a typ
 * other than "JWT", an empty kid, a jti/sid that is not JWT_ID_LEN lowercase
 * hex, uid not below 2^32, an aud that is not a string or a non-empty array
 * of strings. Unknown claims are ignored (RFC 7519) but must still be valid
 * JSON within these limits. Returns 0 or -EINVAL with *why set to a static
 * phrase; on failure *p is all zeroes. */
int jwt_parse(const char *token, size_t len, struct jwt_parsed *p, const char **why);

/* 0 if p's signature over token[0 .. p->signing_input_len) verifies with pk,
 * -EBADMSG otherwise. */
int jwt_verify_sig(const char *token, const struct jwt_parsed *p, const uint8_t pk[32]);

struct jwk {
        char kid[JWT_KID_MAX + 1];
        uint8_t pk[32];
};
/* {"keys":[{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","use":"sig","kid":...,"x":...},...]}
 * followed by a newline. Returns the length or -E2BIG (-EINVAL for a kid
 * that is empty, unterminated or not UTF-8). */
int jwks_write(const struct jwk *keys, size_t n, char *out, size_t outsz);

/* Append s to out at out[len] as a JSON string (quotes included), escaping
 * what JSON requires; out stays NUL-terminated. Returns the new length or
 * -E2BIG (-EINVAL if s is not UTF-8); on failure out[len] is set to NUL
 * when len < outsz. For other JSON the daemon writes (the revocation list). */
int json_put_string(char *out, size_t outsz, size_t len, const char *s);
