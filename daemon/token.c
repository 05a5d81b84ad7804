/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tokens (JWT, EdDSA) and derived keys. Signing keys are derived from the
 * master key with crypto_kdf (subkey id = key number, context "tokensig"):
 * nothing secret is stored, and a sealed daemon holds none of them. The
 * store keeps only the list of key numbers with their creation and
 * retirement times (meta "token.keys"). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "engines.h"
#include "server.h"
#include "token.h"
#include "util.h"

#define KEYS_MAX 64
#define META_KEYS "token.keys"
#define CLOCK_SKEW 60

struct tkey {
        uint32_t num;
        uint64_t created, retired;  /* retired 0 = the current key */
        char kid[JWT_KID_MAX + 1];
        uint8_t pk[crypto_sign_PUBLICKEYBYTES];
};

struct tokens {
        size_t published;           /* keys in the JWKS file as last written */
        size_t n;
        struct tkey k[KEYS_MAX];
        uint8_t *sk;                /* sodium_malloc: the current key's secret key */
        bool ready;
};

int tokens_new(struct tokens **out) {
        struct tokens *t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
        if (!t->sk) {
                free(t);
                return -ENOMEM;
        }
        *out = t;
        return 0;
}

void tokens_free(struct tokens *t) {
        if (!t)
                return;
        sodium_free(t->sk);
        free(t);
}

/* ---- files verifiers read ---- */

static int write_file_atomic(const char *path, const void *p, size_t n) {
        char tmp[4200];
        if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long) getpid()) >= (int) sizeof(tmp))
                return -ENAMETOOLONG;
        _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        int rc = write_all(fd, p, n);
        if (rc == 0 && (fchmod(fd, 0644) < 0 || fsync(fd) < 0))
                rc = -errno;
        if (rc == 0 && rename(tmp, path) < 0)
                rc = -errno;
        if (rc < 0)
                unlink(tmp);
        return rc;
}

static bool published(const struct cofferd *d, const struct tkey *k, uint64_t now) {
        return k->retired == 0 || k->retired + d->cfg.token_max_ttl_sec + CLOCK_SKEW > now;
}

static int jwks_build(struct cofferd *d, char *out, size_t outsz) {
        struct jwk keys[KEYS_MAX];
        size_t n = 0;
        uint64_t now = now_unix();
        /* Newest first: verifiers that try keys in order find the current one. */
        for (size_t i = d->tokens->n; i-- > 0;) {
                const struct tkey *k = &d->tokens->k[i];
                if (!published(d, k, now))
                        continue;
                strcpy_bounded(keys[n].kid, sizeof(keys[n].kid), k->kid);
                memcpy(keys[n].pk, k->pk, sizeof(keys[n].pk));
                n++;
        }
        return jwks_write(keys, n, out, outsz);
}

static void log_file_error(const char *what, const char *path, int rc) {
        fprintf(stderr, "cofferd: cannot write the %s %s: %s\n", what, path, strerror(-rc));
}

static size_t count_published(const struct cofferd *d) {
        size_t n = 0;
        uint64_t now = now_unix();
        for (size_t i = 0; i < d->tokens->n; i++)
                n += published(d, &d->tokens->k[i], now);
        return n;
}

static int publish_jwks(struct cofferd *d) {
        char buf[KEYS_MAX * 256];
        d->tokens->published = count_published(d);
        int n = jwks_build(d, buf, sizeof(buf));
        if (n < 0)
                return n;
        int rc = write_file_atomic(d->jwks_path, buf, (size_t) n);
        if (rc < 0)
                log_file_error("JWKS", d->jwks_path, rc);
        return rc;
}

struct revctx {
        char *buf;
        size_t len, cap;
        bool first;
        int err;
};

static int add_revoked(void *ud, struct lease *l) {
        struct revctx *c = ud;
        char hex[33], item[128];
        if (l->kind != LEASE_TOKEN || !l->revoked)
                return 0;
        lease_id_hex(l->id, hex);
        int n = snprintf(item, sizeof(item), "%s{\"jti\":\"%s\",\"exp\":%" PRIu64 ",\"revoked\":%" PRIu64 "}",
                         c->first ? "" : ",", hex, l->expires, l->revoked);
        if (c->len + (size_t) n + 16 > c->cap) {
                size_t cap = c->cap * 2 + (size_t) n + 16;
                char *b = realloc(c->buf, cap);
                if (!b)
                        return c->err = -ENOMEM;
                c->buf = b;
                c->cap = cap;
        }
        memcpy(c->buf + c->len, item, (size_t) n);
        c->len += (size_t) n;
        c->first = false;
        return 0;
}

int tokens_write_revocations(struct cofferd *d) {
        struct revctx c = { .cap = 4096, .first = true };
        c.buf = malloc(c.cap);
        if (!c.buf)
                return -ENOMEM;
        c.len = (size_t) snprintf(c.buf, c.cap, "{\"updated\":%" PRIu64 ",\"revoked\":[", now_unix());
        lease_foreach_revoked(d->leases, add_revoked, &c);
        int rc = c.err;
        if (rc == 0) {
                memcpy(c.buf + c.len, "]}\n", 3);
                c.len += 3;
                rc = write_file_atomic(d->revocation_path, c.buf, c.len);
                if (rc < 0)
                        log_file_error("revocation list", d->revocation_path, rc);
        }
        free(c.buf);
        return rc;
}

/* ---- keys ---- */

/* RFC 7638 thumbprint of the OKP key: the kid. */
static int make_kid(const uint8_t pk[static 32], char *kid, size_t n) {
        char x[64], json[128];
        uint8_t h[crypto_hash_sha256_BYTES];
        if (b64url_encode(pk, 32, x, sizeof(x)) < 0)
                return -EINVAL;
        int len = snprintf(json, sizeof(json), "{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"%s\"}", x);
        crypto_hash_sha256(h, (const uint8_t *) json, (size_t) len);
        return b64url_encode(h, sizeof(h), kid, n) < 0 ? -EINVAL : 0;
}

static int derive_key(const uint8_t *master, uint32_t num, uint8_t pk[static 32], uint8_t *sk) {
        uint8_t seed[crypto_sign_SEEDBYTES];
        crypto_kdf_derive_from_key(seed, sizeof(seed), num, "tokensig", master);
        crypto_sign_seed_keypair(pk, sk, seed);
        sodium_memzero(seed, sizeof(seed));
        return 0;
}

static int keys_load(struct tokens *t, struct store *st) {
        uint8_t *v = NULL;
        size_t len = 0;
        t->n = 0;
        int rc = store_meta_get(st, META_KEYS, &v, &len);
        if (rc == -ENOENT)
                return 0;
        if (rc < 0)
                return rc;
        char *text = strndup((const char *) v, len), *save = NULL;
        free(v);
        if (!text)
                return -ENOMEM;
        for (char *line = strtok_r(text, "\n", &save); line && rc == 0; line = strtok_r(NULL, "\n", &save)) {
                unsigned num;
                unsigned long long created, retired;
                if (t->n == KEYS_MAX || sscanf(line, "%u %llu %llu", &num, &created, &retired) != 3 || num == 0)
                        rc = -EBADMSG;
                else
                        t->k[t->n++] = (struct tkey){ .num = num, .created = created, .retired = retired };
        }
        free(text);
        return rc;
}

static int keys_save(struct tokens *t, struct store *st) {
        char buf[KEYS_MAX * 64];
        size_t len = 0;
        for (size_t i = 0; i < t->n; i++)
                len += (size_t) snprintf(buf + len, sizeof(buf) - len, "%u %" PRIu64 " %" PRIu64 "\n", t->k[i].num,
                                         t->k[i].created, t->k[i].retired);
        return store_meta_put(st, META_KEYS, buf, len);
}

static int keys_derive(struct tokens *t, const uint8_t *master) {
        uint8_t *sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
        if (!sk)
                return -ENOMEM;
        for (size_t i = 0; i < t->n; i++) {
                derive_key(master, t->k[i].num, t->k[i].pk, sk);
                make_kid(t->k[i].pk, t->k[i].kid, sizeof(t->k[i].kid));
                if (i == t->n - 1)
                        memcpy(t->sk, sk, crypto_sign_SECRETKEYBYTES);
        }
        sodium_free(sk);
        t->ready = t->n > 0;
        return 0;
}

int tokens_unsealed(struct cofferd *d) {
        struct tokens *t = d->tokens;
        int rc = keys_load(t, d->store);
        if (rc < 0)
                return rc;
        if (t->n == 0) {
                t->k[0] = (struct tkey){ .num = 1, .created = now_unix() };
                t->n = 1;
                rc = keys_save(t, d->store);
                if (rc < 0)
                        return rc;
        }
        rc = keys_derive(t, d->seal.master);
        if (rc == 0) {
                (void) publish_jwks(d);
                (void) tokens_write_revocations(d);
        }
        return rc;
}

void tokens_refresh(struct cofferd *d) {
        /* A retired key leaves the JWKS once no token signed with it can be
         * valid any more. */
        if (d->tokens->ready && count_published(d) != d->tokens->published)
                (void) publish_jwks(d);
}

void tokens_sealed(struct cofferd *d) {
        struct tokens *t = d->tokens;
        sodium_memzero(t->sk, crypto_sign_SECRETKEYBYTES);
        t->ready = false;
}

static const struct tkey *key_by_kid(const struct cofferd *d, const char *kid, uint64_t now) {
        for (size_t i = 0; i < d->tokens->n; i++) {
                const struct tkey *k = &d->tokens->k[i];
                if (strcmp(k->kid, kid) == 0 && published(d, k, now))
                        return k;
        }
        return NULL;
}

/* ---- minting ---- */

static void issuer(const struct cofferd *d, char *out, size_t n) {
        char host[256] = "localhost";
        if (d->cfg.token_issuer[0]) {
                strcpy_bounded(out, n, d->cfg.token_issuer);
                return;
        }
        gethostname(host, sizeof(host) - 1);
        host[sizeof(host) - 1] = 0;
        snprintf(out, n, "coffer@%.240s", host);
}

int token_mint(struct cofferd *d, const struct token_subject *s, const char *aud, uint64_t ttl,
               struct lease *parent, char *out, size_t outsz, struct lease **lease_out) {
        if (!d->tokens->ready)
                return -ENOKEY;
        char object[300];
        snprintf(object, sizeof(object), "token:%s", aud);
        struct lease_new n = {
                .kind = LEASE_TOKEN,
                .owner_uid = s->uid,
                .owner = s->sub,
                .object = object,
                .ttl = ttl,
                .max_ttl = ttl,
                .renewable = false,
                .parent = parent,
                .audit_session = UINT32_MAX,
                .data = d->tokens->k[d->tokens->n - 1].kid,
        };
        struct lease *l;
        uint64_t now = now_unix();
        int rc = lease_create(d->leases, &n, d->cfg.max_leases_per_uid, now, &l);
        if (rc < 0)
                return rc;
        struct jwt_claims c = { .iat = now, .nbf = now, .exp = l->expires, .has_uid = true, .uid = s->uid };
        issuer(d, c.iss, sizeof(c.iss));
        strcpy_bounded(c.sub, sizeof(c.sub), s->sub);
        strcpy_bounded(c.aud, sizeof(c.aud), aud);
        strcpy_bounded(c.unit, sizeof(c.unit), s->unit);
        lease_id_hex(l->id, c.jti);
        if (parent && parent->kind == LEASE_SESSION)
                lease_id_hex(parent->id, c.sid);
        rc = jwt_sign(&c, d->tokens->k[d->tokens->n - 1].kid, d->tokens->sk, out, outsz);
        if (rc < 0) {
                lease_revoke(d->leases, l, "sign-failed", now);
                return rc;
        }
        *lease_out = l;
        return 0;
}

/* The principal a token or a derived key is for: the unit for a system
 * service, the user otherwise. */
static bool is_service(const struct peer *p) {
        size_t n = strlen(p->unit);
        return n > 8 && strcmp(p->unit + n - 8, ".service") == 0 && strncmp(p->unit, "user@", 5) != 0;
}

/* A token's sub is the unit only for a service's own (system) uid: the
 * jobs of users that a service runs (cron.service, a scheduler) are those
 * users, and the unit claim says where they ran. System uids: below 1000
 * (Debian's UID_MIN) and systemd's DynamicUser= range. */
static bool sub_is_unit(const struct peer *p) {
        return is_service(p) && (p->uid < 1000 || (p->uid >= 61184 && p->uid <= 65519));
}

int process_token_issue(struct request *r) {
        char aud[300];
        uint64_t ttl = 0;
        if (wire_get_str(r->msg, T_AUDIENCE, aud, sizeof(aud)) < 0 || !proto_audience_valid(aud))
                return ops_fail(r, -EINVAL, "give a valid audience: %s", PROTO_AUDIENCE_RULE);
        if (wire_get_u64(r->msg, T_TTL, &ttl) == -EBADMSG)
                return ops_fail(r, -EINVAL, "malformed ttl");
        snprintf(r->object, sizeof(r->object), "token:%.255s", aud);
        struct pol_decision dec;
        int rc = ops_authorize(r, POL_ISSUE, r->object, &dec);
        if (rc < 0)
                return rc;
        uint64_t bound = r->d->cfg.token_max_ttl_sec;
        if (dec.max_ttl_sec && dec.max_ttl_sec < bound)
                bound = dec.max_ttl_sec;
        if (ttl > bound)
                return ops_fail(r, -EINVAL, "ttl %" PRIu64 "s is longer than allowed for %s (%" PRIu64 "s)", ttl,
                                r->object, bound);
        if (ttl == 0)
                ttl = r->d->cfg.token_ttl_sec < bound ? r->d->cfg.token_ttl_sec : bound;
        const struct peer *p = r->peer;
        struct token_subject s = { .uid = p->uid, .sub = sub_is_unit(p) ? p->unit : p->user, .unit = p->unit };
        struct lease *parent = lease_session_of(r->d->leases, p->audit_session, p->uid, now_unix()), *l;
        char tok[JWT_MAX + 1];
        rc = token_mint(r->d, &s, aud, ttl, parent, tok, sizeof(tok), &l);
        if (rc == -EDQUOT)
                return ops_cap_fail(r, p->uid, "you");
        if (rc < 0)
                return ops_store_fail(r, rc, "token issue");
        lease_id_hex(l->id, r->lease);
        if (parent) {
                char sh[33];
                lease_id_hex(parent->id, sh);
                snprintf(r->detail, sizeof(r->detail), "session=%s", sh);
        }
        wire_put_bytes(r->out, T_TOKEN, tok, strlen(tok));
        wire_put_u64(r->out, T_EXPIRES, l->expires);
        wire_put_str(r->out, T_LEASE_ID, r->lease);
        sodium_memzero(tok, sizeof(tok));
        return 0;
}

static void verdict(struct request *r, const char *status, const char *reason) {
        wire_put_u64(r->out, T_ALLOW, strcmp(status, "valid") == 0);
        wire_put_str(r->out, T_STATUS, status);
        wire_put_str(r->out, T_ERR_MSG, reason);
        snprintf(r->detail, sizeof(r->detail), "status=%s", status);
}

int process_token_verify(struct request *r) {
        const uint8_t *tok;
        size_t len;
        char aud[300] = "";
        struct jwt_parsed p;
        const char *why = NULL;
        snprintf(r->object, sizeof(r->object), "token:verify");
        r->rule = "builtin:anyone";
        if (wire_get_bytes(r->msg, T_TOKEN, &tok, &len) < 0 || len == 0)
                return ops_fail(r, -EINVAL, "give the token to verify");
        int rc = wire_get_str(r->msg, T_AUDIENCE, aud, sizeof(aud));
        if ((rc < 0 && rc != -ENOENT) || (rc == 0 && !proto_audience_valid(aud)))
                return ops_fail(r, -EINVAL, "give a valid audience to check against, or none: %s",
                                PROTO_AUDIENCE_RULE);
        if (len > JWT_MAX || jwt_parse((const char *) tok, len, &p, &why) < 0) {
                verdict(r, "malformed", why ? why : "longer than any coffer token");
                return 0;
        }
        uint64_t now = now_unix();
        const struct tkey *k = key_by_kid(r->d, p.kid, now);
        wire_put_str(r->out, T_KID, p.kid);
        if (!k) {
                verdict(r, "unknown-key", "no published coffer key has this kid (rotated out, or another issuer)");
                return 0;
        }
        if (jwt_verify_sig((const char *) tok, &p, k->pk) < 0) {
                verdict(r, "bad-signature", "the signature does not verify: the token was altered");
                return 0;
        }
        /* Signed by us: the claims can be shown. */
        struct jwt_claims *c = &p.claims;
        strcpy_bounded(r->lease, sizeof(r->lease), proto_lease_id_valid(c->jti) ? c->jti : "");
        wire_put_str(r->out, T_USER, c->sub);
        wire_put_str(r->out, T_AUDIENCE, c->aud);
        wire_put_str(r->out, T_LEASE_ID, c->jti);
        wire_put_str(r->out, T_SID, c->sid);
        wire_put_u64(r->out, T_CREATED, c->iat);
        wire_put_u64(r->out, T_NBF, c->nbf);
        wire_put_u64(r->out, T_EXPIRES, c->exp);
        uint8_t id[LEASE_ID_SIZE];
        struct lease *l = lease_id_parse(c->jti, id) == 0 ? lease_find(r->d->leases, id) : NULL;
        if (c->exp <= now)
                verdict(r, "expired", "the token has expired");
        else if (c->nbf > now + CLOCK_SKEW)
                verdict(r, "not-yet-valid", "the token is not valid yet (nbf in the future)");
        else if (aud[0] && strcmp(aud, c->aud) != 0)
                verdict(r, "wrong-audience", "the token was issued for another audience");
        else if (!l || l->revoked)
                verdict(r, "revoked", l ? "the token was revoked (or its session ended)"
                                        : "the token's lease is gone: it was revoked");
        else
                verdict(r, "valid", "");
        return 0;
}

int process_token_jwks(struct request *r) {
        char buf[KEYS_MAX * 256];
        snprintf(r->object, sizeof(r->object), "token:jwks");
        r->rule = "builtin:public";
        int n = jwks_build(r->d, buf, sizeof(buf));
        if (n < 0)
                return ops_fail(r, n, "cannot build the JWKS");
        wire_put_bytes(r->out, T_JWKS, buf, (size_t) n);
        return 0;
}

int process_token_rotate(struct request *r) {
        struct tokens *t = r->d->tokens;
        uint64_t now = now_unix();
        /* Keys no longer published can go; the newest always stays. */
        size_t j = 0;
        for (size_t i = 0; i < t->n; i++)
                if (i == t->n - 1 || published(r->d, &t->k[i], now))
                        t->k[j++] = t->k[i];
        t->n = j;
        if (t->n == KEYS_MAX)
                return ops_fail(r, -ENOSPC, "too many token keys still published; wait for old tokens to expire");
        t->k[t->n - 1].retired = now;
        t->k[t->n] = (struct tkey){ .num = t->k[t->n - 1].num + 1, .created = now };
        t->n++;
        int rc = keys_save(t, r->d->store);
        if (rc == 0)
                rc = keys_derive(t, r->d->seal.master);
        if (rc < 0) {
                /* The transaction rolls back; reload what the store says. */
                keys_load(t, r->d->store);
                keys_derive(t, r->d->seal.master);
                return ops_store_fail(r, rc, "token key rotation");
        }
        (void) publish_jwks(r->d);
        wire_put_str(r->out, T_KID, t->k[t->n - 1].kid);
        snprintf(r->detail, sizeof(r->detail), "kid=%s", t->k[t->n - 1].kid);
        return 0;
}

/* ---- derived keys ---- */

int process_key_derive(struct request *r) {
        char name[PROTO_NAME_MAX + 1], principal[300];
        uint64_t bytes = 32;
        if (wire_get_str(r->msg, T_NAME, name, sizeof(name)) < 0 || !proto_name_valid(name))
                return ops_fail(r, -EINVAL, "give a key name (like a secret name: a/b/c)");
        if (wire_get_u64(r->msg, T_BYTES, &bytes) == -EBADMSG || bytes < 16 || bytes > 64)
                return ops_fail(r, -EINVAL, "--bytes must be between 16 and 64");
        snprintf(r->object, sizeof(r->object), "key:%s", name);
        int rc = ops_authorize(r, POL_ISSUE, r->object, NULL);
        if (rc < 0)
                return rc;
        const struct peer *p = r->peer;
        /* A service's key is the unit's and the uid's: different users' jobs
         * in one unit (cron.service, a scheduler) must not share keys. */
        if (is_service(p))
                snprintf(principal, sizeof(principal), "unit:%s:uid:%u", p->unit, (unsigned) p->uid);
        else
                snprintf(principal, sizeof(principal), "uid:%u", (unsigned) p->uid);
        snprintf(r->detail, sizeof(r->detail), "principal=%s bytes=%" PRIu64, principal, bytes);
        uint8_t *sub = sodium_malloc(32), *out = sodium_malloc(64);
        if (!sub || !out) {
                sodium_free(sub);
                sodium_free(out);
                return ops_fail(r, -ENOMEM, "out of memory");
        }
        crypto_kdf_derive_from_key(sub, 32, 1, "derivkey", r->d->seal.master);
        crypto_generichash_state h;
        crypto_generichash_init(&h, sub, 32, (size_t) bytes);
        crypto_generichash_update(&h, (const uint8_t *) "coffer-derive-v1", 17);
        crypto_generichash_update(&h, (const uint8_t *) principal, strlen(principal) + 1);
        crypto_generichash_update(&h, (const uint8_t *) name, strlen(name));
        crypto_generichash_final(&h, out, (size_t) bytes);
        sodium_memzero(&h, sizeof(h));
        wire_put_bytes(r->out, T_VALUE, out, (size_t) bytes);
        sodium_free(sub);
        sodium_free(out);
        return 0;
}
