/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer target for common/jwt.c. An input is either
 *  - a token as it arrives from a client, or
 *  - when it starts with '{' (which no token does): header JSON, a newline,
 *    payload JSON. These are made into a token signed with the fixed key, so
 *    mutations reach the JSON reader directly instead of through base64url.
 * The token goes through jwt_parse() (from an exact-size copy, so a read
 * past it is an ASan report), and whatever parses through jwt_verify_sig()
 * against the fixed key. Properties checked (abort on failure):
 *  - every refusal comes with a reason;
 *  - a token built from JSON that parses verifies;
 *  - re-signing parsed claims with the fixed key and parsing the result
 *    gives the same kid and claims (writer and reader agree);
 *  - the input's first bytes used as the sub claim survive sign + parse
 *    whenever jwt_sign() accepts them.
 * The input also goes through b64url_decode() as a whole. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* RFC 8037 appendix A key, so seeds signed with it reach the verify path
 * with a signature that holds. */
static const uint8_t seed[32] = {
        0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
        0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
};

static uint8_t pk[32], sk[64];

static void init(void) {
        static int done;

        if (done)
                return;
        if (sodium_init() < 0 || crypto_sign_seed_keypair(pk, sk, seed) != 0)
                abort();
        done = 1;
}

static bool claims_equal(const struct jwt_claims *a, const struct jwt_claims *b) {
        return strcmp(a->iss, b->iss) == 0 && strcmp(a->sub, b->sub) == 0 && strcmp(a->aud, b->aud) == 0 &&
               a->iat == b->iat && a->nbf == b->nbf && a->exp == b->exp && strcmp(a->jti, b->jti) == 0 &&
               strcmp(a->sid, b->sid) == 0 && strcmp(a->unit, b->unit) == 0 && a->has_uid == b->has_uid &&
               a->uid == b->uid;
}

static void resign(const struct jwt_parsed *p, size_t insize) {
        static char tok[JWT_MAX + 1];
        static struct jwt_parsed q;
        const char *why = NULL;
        int n = jwt_sign(&p->claims, p->kid, sk, tok, sizeof(tok));

        /* Our output can be a little longer than the input (typ, iat and nbf
         * are always written), so only near-maximal inputs may not fit. */
        if (n == -E2BIG && insize > JWT_MAX - 64)
                return;
        if (n < 0)
                abort();
        if (jwt_parse(tok, (size_t) n, &q, &why) != 0)
                abort();
        if (strcmp(p->kid, q.kid) != 0 || !claims_equal(&p->claims, &q.claims))
                abort();
        if (jwt_verify_sig(tok, &q, pk) != 0)
                abort();
}

static void sub_roundtrip(const uint8_t *data, size_t size) {
        static struct jwt_claims c;
        static struct jwt_parsed q;
        static char tok[JWT_MAX + 1];
        const char *why = NULL;
        size_t n = size < JWT_STR_MAX ? size : JWT_STR_MAX;
        const uint8_t *nul = memchr(data, 0, n);
        int r;

        if (nul)
                n = (size_t) (nul - data);
        memset(&c, 0, sizeof(c));
        memcpy(c.sub, data, n);
        c.sub[n] = '\0';
        c.exp = 1;
        r = jwt_sign(&c, "k", sk, tok, sizeof(tok));
        if (r == -EINVAL)
                return; /* not UTF-8 */
        if (r < 0 || jwt_parse(tok, (size_t) r, &q, &why) != 0 || strcmp(q.claims.sub, c.sub) != 0)
                abort();
}

/* "header\npayload" to header.payload.signature; NULL if it cannot be one. */
static char *json_token(const uint8_t *data, size_t size, size_t *len) {
        const uint8_t *nl = memchr(data, '\n', size);
        size_t hlen, plen, cap, pos;
        uint8_t sig[64];
        char *tok;
        int r;

        if (!nl)
                return NULL;
        hlen = (size_t) (nl - data);
        plen = size - hlen - 1;
        if (hlen > JWT_MAX || plen > JWT_MAX)
                return NULL;
        /* Generous: 4/3 of each part rounded up, two dots, 86 + NUL. */
        cap = (hlen + 2) / 3 * 4 + 1 + (plen + 2) / 3 * 4 + 1 + 87;
        tok = malloc(cap);
        if (!tok)
                return NULL;
        r = b64url_encode(data, hlen, tok, cap);
        if (r < 0)
                abort();
        pos = (size_t) r;
        tok[pos++] = '.';
        r = b64url_encode(nl + 1, plen, tok + pos, cap - pos);
        if (r < 0)
                abort();
        pos += (size_t) r;
        crypto_sign_detached(sig, NULL, (const uint8_t *) tok, pos, sk);
        tok[pos++] = '.';
        r = b64url_encode(sig, sizeof(sig), tok + pos, cap - pos);
        if (r < 0)
                abort();
        *len = pos + (size_t) r;
        return tok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static struct jwt_parsed p;
        static uint8_t dec[JWT_MAX];
        const char *why = NULL;
        bool from_json = size > 0 && data[0] == '{';
        size_t len = size;
        char *tok;

        init();
        if (from_json)
                tok = json_token(data, size, &len);
        else {
                tok = malloc(size ? size : 1);
                if (tok)
                        memcpy(tok, data, size);
        }
        if (tok) {
                if (jwt_parse(tok, len, &p, &why) == 0) {
                        int v = jwt_verify_sig(tok, &p, pk);
                        if (from_json && v != 0)
                                abort();
                        resign(&p, len);
                } else if (!why) {
                        abort();
                }
                (void) b64url_decode(tok, len, dec, sizeof(dec));
                free(tok);
        }
        sub_roundtrip(data, size);
        return 0;
}
