/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* EdDSA JWTs (RFC 7519, RFC 8037), JWKS output and the strict JSON reader
 * that turns token bytes into claims. Everything works in the caller's
 * buffers or on the stack; no allocation, no global state. */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include <sodium.h>

#include "jwt.h"

#define B64_VARIANT sodium_base64_VARIANT_URLSAFE_NO_PADDING
#define JSON_DEPTH_MAX 8                        /* the outermost object is depth 1 */
#define INT_CLAIM_MAX ((UINT64_C(1) << 53) - 1) /* iat, nbf, exp: exact in a double */
#define SIG_B64_LEN 86                          /* 64 bytes, unpadded */
#define JSON_MAX (JWT_MAX / 4 * 3)              /* most bytes a part can decode to */

_Static_assert(crypto_sign_BYTES == 64, "Ed25519 signatures are 64 bytes");
_Static_assert(crypto_sign_SECRETKEYBYTES == 64, "libsodium Ed25519 secret keys are 64 bytes");
_Static_assert(crypto_sign_PUBLICKEYBYTES == 32, "Ed25519 public keys are 32 bytes");
_Static_assert(JWT_MAX <= UINT16_MAX, "member name offsets are 16 bits");

/* ---- base64url ---- */

static size_t b64_len(size_t n) {
        return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

int b64url_encode(const uint8_t *in, size_t n, char *out, size_t outsz) {
        size_t len;

        if (n > (size_t) INT_MAX / 4 * 3)
                return -E2BIG;
        len = b64_len(n);
        /* sodium_bin2base64() aborts when the buffer is short; this is the same
         * bound (sodium_base64_ENCODED_LEN() counts the NUL). */
        if (len >= outsz)
                return -E2BIG;
        sodium_bin2base64(out, outsz, in, n, B64_VARIANT);
        return (int) len;
}

/* 1 if c is in the URL-safe alphabet. Comparisons, no table lookups or
 * branches on the data. */
static unsigned b64url_char_ok(unsigned char c) {
        unsigned u = c;

        return (unsigned) (u - 'A' <= 'Z' - 'A') | (unsigned) (u - 'a' <= 'z' - 'a') |
               (unsigned) (u - '0' <= '9' - '0') | (unsigned) (u == '-') | (unsigned) (u == '_');
}

/* sodium_base642bin() (no ignore set, no end pointer) refuses a length of
 * 4k+1, '=' and non-zero trailing bits, but libsodium 1.0.18 reads the input
 * as plain char: where char is signed it decodes every byte 0x80..0xff as
 * '_'. So the alphabet is checked here first. The length arithmetic tells
 * -E2BIG from -EINVAL and keeps the result inside an int. */
int b64url_decode(const char *in, size_t n, uint8_t *out, size_t outsz) {
        size_t need, got = 0;
        unsigned ok = 1;

        if (n == 0)
                return 0; /* out may be NULL then; libsodium declares it non-null */
        if (n % 4 == 1)
                return -EINVAL;
        need = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
        if (need > outsz || need > INT_MAX)
                return -E2BIG;
        for (size_t i = 0; i < n; i++)
                ok &= b64url_char_ok((unsigned char) in[i]);
        if (!ok)
                return -EINVAL;
        if (sodium_base642bin(out, outsz, in, n, NULL, &got, NULL, B64_VARIANT) != 0 || got != need)
                return -EINVAL;
        return (int) need;
}

/* ---- UTF-8 ---- */

/* Length of the well-formed UTF-8 sequence at s (n bytes available, s[0] >=
 * 0x80), or 0: no overlong forms, no surrogates, nothing above U+10FFFF, no
 * truncated sequence. Reads past the first bad byte never happen, so a NUL
 * terminator is a safe end for n = SIZE_MAX. */
static size_t utf8_seq(const uint8_t *s, size_t n) {
        uint8_t c = s[0], lo = 0x80, hi = 0xbf;
        size_t len;

        if (c >= 0xc2 && c <= 0xdf)
                len = 2;
        else if (c >= 0xe0 && c <= 0xef) {
                len = 3;
                if (c == 0xe0)
                        lo = 0xa0;
                else if (c == 0xed)
                        hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
                len = 4;
                if (c == 0xf0)
                        lo = 0x90;
                else if (c == 0xf4)
                        hi = 0x8f;
        } else
                return 0;
        if (n < 2 || s[1] < lo || s[1] > hi)
                return 0;
        for (size_t i = 2; i < len; i++)
                if (i >= n || (s[i] & 0xc0) != 0x80)
                        return 0;
        return len;
}

static size_t utf8_put(uint8_t *out, uint32_t cp) {
        if (cp < 0x80) {
                out[0] = (uint8_t) cp;
                return 1;
        }
        if (cp < 0x800) {
                out[0] = (uint8_t) (0xc0 | (cp >> 6));
                out[1] = (uint8_t) (0x80 | (cp & 0x3f));
                return 2;
        }
        if (cp < 0x10000) {
                out[0] = (uint8_t) (0xe0 | (cp >> 12));
                out[1] = (uint8_t) (0x80 | ((cp >> 6) & 0x3f));
                out[2] = (uint8_t) (0x80 | (cp & 0x3f));
                return 3;
        }
        out[0] = (uint8_t) (0xf0 | (cp >> 18));
        out[1] = (uint8_t) (0x80 | ((cp >> 12) & 0x3f));
        out[2] = (uint8_t) (0x80 | ((cp >> 6) & 0x3f));
        out[3] = (uint8_t) (0x80 | (cp & 0x3f));
        return 4;
}

/* ---- JSON writer ---- */

/* Appends to p[0 .. sz), keeping it NUL-terminated; the first error sticks. */
struct jw {
        char *p;
        size_t sz, len;
        int err;
};

static void jw_bytes(struct jw *w, const void *s, size_t n) {
        if (w->err)
                return;
        if (w->len >= w->sz || n >= w->sz - w->len || n > (size_t) INT_MAX - w->len) {
                w->err = -E2BIG;
                return;
        }
        memcpy(w->p + w->len, s, n);
        w->len += n;
        w->p[w->len] = '\0';
}

static void jw_raw(struct jw *w, const char *s) {
        jw_bytes(w, s, strlen(s));
}

static void jw_u64(struct jw *w, uint64_t v) {
        char b[21];
        size_t i = sizeof(b);

        do {
                b[--i] = (char) ('0' + v % 10);
                v /= 10;
        } while (v);
        jw_bytes(w, b + i, sizeof(b) - i);
}

static void jw_string(struct jw *w, const char *s) {
        static const char hex[] = "0123456789abcdef";
        const uint8_t *u = (const uint8_t *) s;
        size_t n = strlen(s);

        jw_bytes(w, "\"", 1);
        for (size_t i = 0; i < n && !w->err;) {
                uint8_t c = u[i];
                char e[6] = { '\\', 0, '0', '0', 0, 0 };

                if (c >= 0x80) {
                        size_t k = utf8_seq(u + i, n - i);
                        if (!k) {
                                w->err = -EINVAL;
                                return;
                        }
                        jw_bytes(w, u + i, k);
                        i += k;
                        continue;
                }
                i++;
                switch (c) {
                case '"':
                case '\\':
                        e[1] = (char) c;
                        break;
                case '\b':
                        e[1] = 'b';
                        break;
                case '\f':
                        e[1] = 'f';
                        break;
                case '\n':
                        e[1] = 'n';
                        break;
                case '\r':
                        e[1] = 'r';
                        break;
                case '\t':
                        e[1] = 't';
                        break;
                default:
                        if (c >= 0x20) {
                                jw_bytes(w, &c, 1);
                                continue;
                        }
                        e[1] = 'u';
                        e[4] = hex[c >> 4];
                        e[5] = hex[c & 0xf];
                        jw_bytes(w, e, 6);
                        continue;
                }
                jw_bytes(w, e, 2);
        }
        jw_bytes(w, "\"", 1);
}

int json_put_string(char *out, size_t outsz, size_t len, const char *s) {
        struct jw w = { .p = out, .sz = outsz, .len = len };

        jw_string(&w, s);
        if (w.err) {
                if (len < outsz)
                        out[len] = '\0';
                return w.err;
        }
        return (int) w.len;
}

/* ---- signing ---- */

static bool str_fits(const char *s, size_t size) {
        return strnlen(s, size) < size;
}

static bool hex_id(const char *s, size_t n) {
        if (n != JWT_ID_LEN)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

/* "" (left out) or exactly JWT_ID_LEN lowercase hex digits. */
static bool id_ok(const char *s, size_t size) {
        size_t n = strnlen(s, size);
        return n == 0 || (n < size && hex_id(s, n));
}

static bool kid_ok(const char *kid) {
        size_t n = strnlen(kid, JWT_KID_MAX + 1);
        return n > 0 && n <= JWT_KID_MAX;
}

static void jw_key(struct jw *w, const char *name) {
        if (w->err)
                return;
        jw_raw(w, w->p[w->len - 1] == '{' ? "\"" : ",\"");
        jw_raw(w, name);
        jw_raw(w, "\":");
}

static void jw_claim_str(struct jw *w, const char *name, const char *v) {
        if (!v[0])
                return;
        jw_key(w, name);
        jw_string(w, v);
}

static void jw_claim_u64(struct jw *w, const char *name, uint64_t v) {
        jw_key(w, name);
        jw_u64(w, v);
}

int jwt_sign(const struct jwt_claims *c, const char *kid, const uint8_t sk[64], char *out, size_t outsz) {
        char hdr[512], payload[JSON_MAX];
        struct jw h = { .p = hdr, .sz = sizeof(hdr) }, w = { .p = payload, .sz = sizeof(payload) };
        uint8_t sig[crypto_sign_BYTES];
        size_t total, pos;
        int r;

        if (outsz > 0)
                out[0] = '\0';
        if (!kid_ok(kid) || !str_fits(c->iss, sizeof(c->iss)) || !str_fits(c->sub, sizeof(c->sub)) ||
            !str_fits(c->aud, sizeof(c->aud)) || !str_fits(c->unit, sizeof(c->unit)) ||
            !id_ok(c->jti, sizeof(c->jti)) || !id_ok(c->sid, sizeof(c->sid)) || c->iat > INT_CLAIM_MAX ||
            c->nbf > INT_CLAIM_MAX || c->exp > INT_CLAIM_MAX)
                return -EINVAL;

        jw_raw(&h, "{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"kid\":");
        jw_string(&h, kid);
        jw_raw(&h, "}");
        if (h.err)
                return h.err;

        jw_raw(&w, "{");
        jw_claim_str(&w, "iss", c->iss);
        jw_claim_str(&w, "sub", c->sub);
        jw_claim_str(&w, "aud", c->aud);
        jw_claim_u64(&w, "iat", c->iat);
        jw_claim_u64(&w, "nbf", c->nbf);
        jw_claim_u64(&w, "exp", c->exp);
        jw_claim_str(&w, "jti", c->jti);
        jw_claim_str(&w, "sid", c->sid);
        jw_claim_str(&w, "unit", c->unit);
        if (c->has_uid)
                jw_claim_u64(&w, "uid", c->uid);
        jw_raw(&w, "}");
        if (w.err)
                return w.err; /* -EINVAL: not UTF-8; -E2BIG: could never fit in JWT_MAX */

        total = b64_len(h.len) + 1 + b64_len(w.len) + 1 + SIG_B64_LEN;
        if (total > JWT_MAX || total >= outsz)
                return -E2BIG;

        r = b64url_encode((const uint8_t *) hdr, h.len, out, outsz);
        if (r < 0)
                return r;
        pos = (size_t) r;
        out[pos++] = '.';
        r = b64url_encode((const uint8_t *) payload, w.len, out + pos, outsz - pos);
        if (r < 0)
                return r;
        pos += (size_t) r;
        crypto_sign_detached(sig, NULL, (const unsigned char *) out, pos, sk);
        out[pos++] = '.';
        r = b64url_encode(sig, sizeof(sig), out + pos, outsz - pos);
        if (r < 0)
                return r;
        pos += (size_t) r;
        return (int) pos;
}

/* ---- strict JSON reader ---- */

struct jp {
        const uint8_t *s;
        size_t len, pos;
        bool header; /* which part, for the error phrases */
        const char *why;
        /* Member names of the objects still open, for duplicate detection:
         * each is [length byte][bytes][NUL] in names; name_off holds their
         * offsets, one sorted run per open object, so a lookup is a binary
         * search (a linear scan made a 6 kB payload of ~850 members cost
         * milliseconds). A member takes at least 4 bytes of JSON. */
        size_t names_len, n_names;
        uint8_t names[JWT_MAX];
        uint16_t name_off[JSON_MAX / 4 + 1];
        char str[JWT_STR_MAX + 1]; /* scratch for strings that are not kept */
};

/* Sets the phrase for the part being read; always false. */
#define FAIL(j, msg) ((j)->why = (j)->header ? msg " in header" : msg " in payload", false)

static bool fail(struct jp *j, const char *why) {
        j->why = why;
        return false;
}

static void skip_ws(struct jp *j) {
        while (j->pos < j->len) {
                uint8_t c = j->s[j->pos];
                if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
                        break;
                j->pos++;
        }
}

static int peek(const struct jp *j) {
        return j->pos < j->len ? j->s[j->pos] : -1;
}

static bool is_digit(int c) {
        return c >= '0' && c <= '9';
}

static bool hex4(struct jp *j, uint32_t *v) {
        uint32_t x = 0;

        if (j->len - j->pos < 4)
                return false;
        for (size_t i = 0; i < 4; i++) {
                uint8_t c = j->s[j->pos + i];
                uint32_t d;
                if (c >= '0' && c <= '9')
                        d = (uint32_t) (c - '0');
                else if (c >= 'a' && c <= 'f')
                        d = (uint32_t) (c - 'a' + 10);
                else if (c >= 'A' && c <= 'F')
                        d = (uint32_t) (c - 'A' + 10);
                else
                        return false;
                x = x << 4 | d;
        }
        j->pos += 4;
        *v = x;
        return true;
}

/* At a backslash: decode one escape (a surrogate pair counts as one) into
 * out as UTF-8. */
static bool parse_escape(struct jp *j, uint8_t out[4], size_t *n) {
        uint32_t cp, lo;
        int c;

        j->pos++;
        c = peek(j);
        if (c < 0)
                return FAIL(j, "bad escape");
        j->pos++;
        switch (c) {
        case '"':
        case '\\':
        case '/':
                cp = (uint32_t) c;
                break;
        case 'b':
                cp = '\b';
                break;
        case 'f':
                cp = '\f';
                break;
        case 'n':
                cp = '\n';
                break;
        case 'r':
                cp = '\r';
                break;
        case 't':
                cp = '\t';
                break;
        case 'u':
                if (!hex4(j, &cp))
                        return FAIL(j, "bad \\u escape");
                if (cp == 0)
                        return FAIL(j, "\\u0000");
                if (cp >= 0xdc00 && cp <= 0xdfff)
                        return FAIL(j, "lone surrogate");
                if (cp >= 0xd800 && cp <= 0xdbff) {
                        if (j->len - j->pos < 2 || j->s[j->pos] != '\\' || j->s[j->pos + 1] != 'u')
                                return FAIL(j, "lone surrogate");
                        j->pos += 2;
                        if (!hex4(j, &lo))
                                return FAIL(j, "bad \\u escape");
                        if (lo < 0xdc00 || lo > 0xdfff)
                                return FAIL(j, "lone surrogate");
                        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                }
                break;
        default:
                return FAIL(j, "bad escape");
        }
        *n = utf8_put(out, cp);
        return true;
}

/* At a quote: the string decoded into out (at most cap bytes plus a NUL). */
static bool parse_string(struct jp *j, char *out, size_t cap, size_t *outlen) {
        size_t n = 0;

        j->pos++;
        for (;;) {
                uint8_t tmp[4];
                size_t k;
                uint8_t c;

                if (j->pos >= j->len)
                        return FAIL(j, "unterminated string");
                c = j->s[j->pos];
                if (c == '"') {
                        j->pos++;
                        break;
                }
                if (c < 0x20)
                        return FAIL(j, "control character in string");
                if (c == '\\') {
                        if (!parse_escape(j, tmp, &k))
                                return false;
                } else if (c < 0x80) {
                        tmp[0] = c;
                        k = 1;
                        j->pos++;
                } else {
                        k = utf8_seq(j->s + j->pos, j->len - j->pos);
                        if (!k)
                                return FAIL(j, "bad UTF-8");
                        memcpy(tmp, j->s + j->pos, k);
                        j->pos += k;
                }
                if (k > cap - n)
                        return FAIL(j, "string too long");
                memcpy(out + n, tmp, k);
                n += k;
        }
        out[n] = '\0';
        *outlen = n;
        return true;
}

/* A JSON number. *is_uint is set when it is a plain non-negative integer;
 * *v is then its value, saturated just above INT_CLAIM_MAX. */
static bool parse_number(struct jp *j, bool *is_uint, uint64_t *v) {
        bool plain = true;
        uint64_t x = 0;

        if (peek(j) == '-') {
                plain = false;
                j->pos++;
        }
        if (peek(j) == '0') {
                j->pos++;
                if (is_digit(peek(j)))
                        return FAIL(j, "number with a leading zero");
        } else if (is_digit(peek(j))) {
                while (is_digit(peek(j))) {
                        if (x <= INT_CLAIM_MAX)
                                x = x * 10 + (uint64_t) (j->s[j->pos] - '0');
                        j->pos++;
                }
        } else
                return FAIL(j, "bad number");
        if (peek(j) == '.') {
                plain = false;
                j->pos++;
                if (!is_digit(peek(j)))
                        return FAIL(j, "bad number");
                while (is_digit(peek(j)))
                        j->pos++;
        }
        if (peek(j) == 'e' || peek(j) == 'E') {
                plain = false;
                j->pos++;
                if (peek(j) == '+' || peek(j) == '-')
                        j->pos++;
                if (!is_digit(peek(j)))
                        return FAIL(j, "bad number");
                while (is_digit(peek(j)))
                        j->pos++;
        }
        *is_uint = plain;
        *v = x;
        return true;
}

static bool parse_literal(struct jp *j, const char *lit) {
        size_t n = strlen(lit);

        if (j->len - j->pos < n || memcmp(j->s + j->pos, lit, n) != 0)
                return FAIL(j, "bad value");
        j->pos += n;
        return true;
}

/* Called with the reader at the member's value (whitespace skipped); must
 * consume it. depth is that of the object holding the member. */
typedef bool (*member_fn)(struct jp *j, const char *name, unsigned depth, void *ctx);

static bool parse_object(struct jp *j, unsigned depth, member_fn fn, void *ctx);
static bool parse_array(struct jp *j, unsigned depth);

/* Any value; depth is what a container here would have. */
static bool parse_value(struct jp *j, unsigned depth) {
        bool is_uint;
        uint64_t v;
        size_t n;

        skip_ws(j);
        switch (peek(j)) {
        case '{':
                return parse_object(j, depth, NULL, NULL);
        case '[':
                return parse_array(j, depth);
        case '"':
                return parse_string(j, j->str, JWT_STR_MAX, &n);
        case 't':
                return parse_literal(j, "true");
        case 'f':
                return parse_literal(j, "false");
        case 'n':
                return parse_literal(j, "null");
        default:
                if (peek(j) == '-' || is_digit(peek(j)))
                        return parse_number(j, &is_uint, &v);
                return FAIL(j, "bad value");
        }
}

static bool parse_array(struct jp *j, unsigned depth) {
        if (depth > JSON_DEPTH_MAX)
                return FAIL(j, "nesting deeper than 8");
        j->pos++;
        skip_ws(j);
        if (peek(j) == ']') {
                j->pos++;
                return true;
        }
        for (;;) {
                if (!parse_value(j, depth + 1))
                        return false;
                skip_ws(j);
                if (peek(j) == ',') {
                        j->pos++;
                        continue;
                }
                if (peek(j) == ']') {
                        j->pos++;
                        return true;
                }
                return FAIL(j, "expected ',' or ']'");
        }
}

static int name_cmp(const struct jp *j, size_t a, size_t b) {
        const uint8_t *x = j->names + a, *y = j->names + b;

        if (x[0] != y[0])
                return x[0] < y[0] ? -1 : 1;
        return memcmp(x + 1, y + 1, x[0]);
}

/* Record the name just decoded at names_len in the sorted run that starts
 * at first; false if the run already has it. */
static bool add_name(struct jp *j, size_t first, size_t n) {
        size_t lo = first, hi = j->n_names, at = j->names_len;

        j->names[at] = (uint8_t) n;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = name_cmp(j, j->name_off[mid], at);
                if (c == 0)
                        return FAIL(j, "duplicate member");
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        if (j->n_names >= sizeof(j->name_off) / sizeof(j->name_off[0]))
                return FAIL(j, "too many members");
        memmove(j->name_off + lo + 1, j->name_off + lo, (j->n_names - lo) * sizeof(j->name_off[0]));
        j->name_off[lo] = (uint16_t) at;
        j->n_names++;
        j->names_len += n + 2;
        return true;
}

static bool parse_object(struct jp *j, unsigned depth, member_fn fn, void *ctx) {
        size_t mark = j->names_len, first = j->n_names;

        if (depth > JSON_DEPTH_MAX)
                return FAIL(j, "nesting deeper than 8");
        j->pos++;
        skip_ws(j);
        if (peek(j) == '}') {
                j->pos++;
                return true;
        }
        for (;;) {
                char *name;
                size_t n;

                skip_ws(j);
                if (peek(j) != '"')
                        return FAIL(j, "expected a member name");
                /* Cannot run out (names take less room than their JSON),
                 * but do not rely on that. */
                if (sizeof(j->names) - j->names_len < JWT_STR_MAX + 2)
                        return FAIL(j, "too many members");
                name = (char *) j->names + j->names_len + 1;
                if (!parse_string(j, name, JWT_STR_MAX, &n) || !add_name(j, first, n))
                        return false;

                skip_ws(j);
                if (peek(j) != ':')
                        return FAIL(j, "expected ':'");
                j->pos++;
                skip_ws(j);
                if (fn ? !fn(j, name, depth, ctx) : !parse_value(j, depth + 1))
                        return false;
                skip_ws(j);
                if (peek(j) == ',') {
                        j->pos++;
                        continue;
                }
                if (peek(j) == '}') {
                        j->pos++;
                        break;
                }
                return FAIL(j, "expected ',' or '}'");
        }
        j->names_len = mark;
        j->n_names = first;
        return true;
}

/* The whole of s must be one object, optionally surrounded by whitespace. */
static bool parse_json(struct jp *j, const uint8_t *s, size_t len, bool header, member_fn fn, void *ctx) {
        j->s = s;
        j->len = len;
        j->pos = 0;
        j->header = header;
        j->why = NULL;
        j->names_len = 0;
        j->n_names = 0;

        skip_ws(j);
        if (peek(j) != '{')
                return FAIL(j, "not a JSON object");
        if (!parse_object(j, 1, fn, ctx))
                return false;
        skip_ws(j);
        if (j->pos != j->len)
                return FAIL(j, "trailing bytes after the object");
        return true;
}

/* A string member's value into out (size cap + 1); why if it is not a string. */
static bool read_string(struct jp *j, char *out, size_t cap, size_t *n, const char *why) {
        if (peek(j) != '"')
                return fail(j, why);
        return parse_string(j, out, cap, n);
}

static bool read_uint(struct jp *j, uint64_t max, uint64_t *v, const char *why) {
        bool is_uint;
        int c = peek(j);

        if (c != '-' && !is_digit(c))
                return fail(j, why);
        if (!parse_number(j, &is_uint, v))
                return false;
        if (!is_uint || *v > max)
                return fail(j, why);
        return true;
}

static bool read_id(struct jp *j, char out[JWT_ID_LEN + 1], const char *why) {
        size_t n;

        if (!read_string(j, j->str, JWT_STR_MAX, &n, why))
                return false;
        if (!hex_id(j->str, n))
                return fail(j, why);
        memcpy(out, j->str, n + 1);
        return true;
}

/* A string, or a non-empty array of strings of which the first is kept. The
 * array is at depth 2 (aud is a member of the outermost object). */
static bool read_aud(struct jp *j, char *out) {
        static const char why[] = "aud is not a string or a non-empty array of strings";
        size_t n;

        if (peek(j) == '"')
                return parse_string(j, out, JWT_STR_MAX, &n);
        if (peek(j) != '[')
                return fail(j, why);
        j->pos++;
        for (bool first = true;; first = false) {
                skip_ws(j);
                if (!read_string(j, first ? out : j->str, JWT_STR_MAX, &n, why))
                        return false;
                skip_ws(j);
                if (peek(j) == ']') {
                        j->pos++;
                        return true;
                }
                if (peek(j) != ',')
                        return FAIL(j, "expected ',' or ']'");
                j->pos++;
        }
}

struct header_seen {
        struct jwt_parsed *p;
        bool alg, kid;
};

static bool header_member(struct jp *j, const char *name, unsigned depth, void *ctx) {
        struct header_seen *h = ctx;
        size_t n;

        if (strcmp(name, "alg") == 0) {
                if (!read_string(j, j->str, JWT_STR_MAX, &n, "header alg is not EdDSA"))
                        return false;
                if (strcmp(j->str, "EdDSA") != 0)
                        return fail(j, "header alg is not EdDSA");
                h->alg = true;
                return true;
        }
        if (strcmp(name, "kid") == 0) {
                if (!read_string(j, j->str, JWT_STR_MAX, &n, "header kid is not a string"))
                        return false;
                if (n == 0 || n > JWT_KID_MAX)
                        return fail(j, "header kid is empty or longer than 63 bytes");
                memcpy(h->p->kid, j->str, n + 1);
                h->kid = true;
                return true;
        }
        if (strcmp(name, "typ") == 0) {
                if (!read_string(j, j->str, JWT_STR_MAX, &n, "header typ is not JWT"))
                        return false;
                if (strcmp(j->str, "JWT") != 0)
                        return fail(j, "header typ is not JWT");
                return true;
        }
        if (strcmp(name, "crit") == 0)
                return fail(j, "header has crit");
        return parse_value(j, depth + 1);
}

struct payload_seen {
        struct jwt_claims *c;
        bool exp;
};

static bool payload_member(struct jp *j, const char *name, unsigned depth, void *ctx) {
        struct payload_seen *ps = ctx;
        struct jwt_claims *c = ps->c;
        uint64_t v;
        size_t n;

        if (strcmp(name, "iss") == 0)
                return read_string(j, c->iss, JWT_STR_MAX, &n, "iss is not a string");
        if (strcmp(name, "sub") == 0)
                return read_string(j, c->sub, JWT_STR_MAX, &n, "sub is not a string");
        if (strcmp(name, "aud") == 0)
                return read_aud(j, c->aud);
        if (strcmp(name, "iat") == 0)
                return read_uint(j, INT_CLAIM_MAX, &c->iat, "iat is not an integer in [0, 2^53)");
        if (strcmp(name, "nbf") == 0)
                return read_uint(j, INT_CLAIM_MAX, &c->nbf, "nbf is not an integer in [0, 2^53)");
        if (strcmp(name, "exp") == 0) {
                ps->exp = true;
                return read_uint(j, INT_CLAIM_MAX, &c->exp, "exp is not an integer in [0, 2^53)");
        }
        if (strcmp(name, "jti") == 0)
                return read_id(j, c->jti, "jti is not 32 lowercase hex digits");
        if (strcmp(name, "sid") == 0)
                return read_id(j, c->sid, "sid is not 32 lowercase hex digits");
        if (strcmp(name, "unit") == 0)
                return read_string(j, c->unit, JWT_STR_MAX, &n, "unit is not a string");
        if (strcmp(name, "uid") == 0) {
                if (!read_uint(j, UINT32_MAX, &v, "uid is not an integer in [0, 2^32)"))
                        return false;
                c->uid = (uint32_t) v;
                c->has_uid = true;
                return true;
        }
        return parse_value(j, depth + 1); /* unknown: checked, then ignored */
}

static int parse_fail(struct jwt_parsed *p, const char **why, const char *msg) {
        memset(p, 0, sizeof(*p));
        if (why)
                *why = msg;
        return -EINVAL;
}

int jwt_parse(const char *token, size_t len, struct jwt_parsed *p, const char **why) {
        struct jp j;
        uint8_t buf[JSON_MAX];
        struct header_seen hs = { .p = p };
        struct payload_seen ps = { .c = &p->claims };
        const char *dot1, *dot2, *sig;
        size_t hlen, plen, slen;
        int r;

        memset(p, 0, sizeof(*p));
        if (len > JWT_MAX)
                return parse_fail(p, why, "token longer than 8192 bytes");
        dot1 = len ? memchr(token, '.', len) : NULL;
        if (!dot1)
                return parse_fail(p, why, "not three dot-separated parts");
        dot2 = memchr(dot1 + 1, '.', len - (size_t) (dot1 + 1 - token));
        if (!dot2)
                return parse_fail(p, why, "not three dot-separated parts");
        sig = dot2 + 1;
        slen = len - (size_t) (sig - token);
        if (memchr(sig, '.', slen))
                return parse_fail(p, why, "not three dot-separated parts");
        hlen = (size_t) (dot1 - token);
        plen = (size_t) (dot2 - dot1 - 1);

        r = b64url_decode(token, hlen, buf, sizeof(buf));
        if (r < 0)
                return parse_fail(p, why, "bad base64url in header");
        if (!parse_json(&j, buf, (size_t) r, true, header_member, &hs))
                return parse_fail(p, why, j.why);
        if (!hs.alg)
                return parse_fail(p, why, "header alg is not EdDSA");
        if (!hs.kid)
                return parse_fail(p, why, "header kid missing");

        r = b64url_decode(dot1 + 1, plen, buf, sizeof(buf));
        if (r < 0)
                return parse_fail(p, why, "bad base64url in payload");
        if (!parse_json(&j, buf, (size_t) r, false, payload_member, &ps))
                return parse_fail(p, why, j.why);
        if (!ps.exp)
                return parse_fail(p, why, "exp missing");

        if (slen != SIG_B64_LEN)
                return parse_fail(p, why, "signature is not 64 bytes");
        if (b64url_decode(sig, slen, p->sig, sizeof(p->sig)) != (int) sizeof(p->sig))
                return parse_fail(p, why, "bad base64url in signature");
        p->signing_input_len = (size_t) (dot2 - token);
        return 0;
}

int jwt_verify_sig(const char *token, const struct jwt_parsed *p, const uint8_t pk[32]) {
        /* 0 only in what a failed jwt_parse() left behind: never verifies. */
        if (p->signing_input_len == 0)
                return -EBADMSG;
        if (crypto_sign_verify_detached(p->sig, (const unsigned char *) token, p->signing_input_len, pk) != 0)
                return -EBADMSG;
        return 0;
}

/* ---- JWKS ---- */

int jwks_write(const struct jwk *keys, size_t n, char *out, size_t outsz) {
        struct jw w = { .p = out, .sz = outsz };
        char x[44];

        jw_raw(&w, "{\"keys\":[");
        for (size_t i = 0; i < n && !w.err; i++) {
                if (!kid_ok(keys[i].kid)) {
                        w.err = -EINVAL;
                        break;
                }
                if (i > 0)
                        jw_raw(&w, ",");
                jw_raw(&w, "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"alg\":\"EdDSA\",\"use\":\"sig\",\"kid\":");
                jw_string(&w, keys[i].kid);
                if (b64url_encode(keys[i].pk, sizeof(keys[i].pk), x, sizeof(x)) != 43)
                        w.err = -EINVAL; /* cannot happen */
                jw_raw(&w, ",\"x\":\"");
                jw_raw(&w, x);
                jw_raw(&w, "\"}");
        }
        jw_raw(&w, "]}\n");
        if (w.err) {
                if (outsz > 0)
                        out[0] = '\0';
                return w.err;
        }
        return (int) w.len;
}
