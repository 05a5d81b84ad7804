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
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <systemd/sd-daemon.h>

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

/* A file verifiers read (jwks.json, revoked.json). It carries updated and
 * next_update: a verifier that finds next_update past must not trust it. A
 * write that fails (a full file system) leaves the file as it was, so it is
 * retried with backoff until it works, and the daemon says so meanwhile. */
struct pubfile {
        const char *what;           /* "JWKS", "revocation list" */
        const char *path;
        uint64_t updated;           /* unix seconds of the last good write; 0 = none yet in this run */
        uint64_t stale_since;       /* unix seconds of the first failed write since; 0 = current */
        uint64_t retry_at;          /* monotonic µs: not before */
        uint64_t backoff;           /* µs; 0 = the last write worked */
        uint64_t alerted;           /* monotonic µs of the last alert; 0 = none */
};

struct tokens {
        size_t published;           /* keys in the JWKS as last built for the file */
        size_t n;
        struct tkey k[KEYS_MAX];
        uint8_t *sk;                /* sodium_malloc: the current key's secret key */
        bool ready;                 /* unsealed: sk holds the current key */
        bool have_pk;               /* the public keys were derived (stays so when sealed) */
        bool jwks_dirty;            /* the JWKS changed since it was written */
        struct pubfile jwks, revoked;
};

int tokens_new(struct tokens **out, const char *jwks_path, const char *revocation_path) {
        struct tokens *t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
        if (!t->sk) {
                free(t);
                return -ENOMEM;
        }
        t->jwks = (struct pubfile){ .what = "JWKS", .path = jwks_path };
        t->revoked = (struct pubfile){ .what = "revocation list", .path = revocation_path };
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

#define RETRY_FIRST_USEC 1000000u          /* a failed write is retried after 1 s, */
#define RETRY_MAX_USEC (30u * 1000000u)    /* doubling up to 30 s */
#define ALERT_EVERY_USEC (300u * 1000000u) /* while stale, the alert is repeated every 5 min */

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

static size_t count_published(const struct cofferd *d) {
        size_t n = 0;
        uint64_t now = now_unix();
        for (size_t i = 0; i < d->tokens->n; i++)
                n += published(d, &d->tokens->k[i], now);
        return n;
}

static void put_text(struct wire_writer *w, const char *s) {
        wire_write_bytes(w, s, strlen(s));
}

/* {"updated":U,"next_update":N, — every file opens with its dates. */
static void put_dates(struct wire_writer *w, const struct cofferd *d, uint64_t now) {
        char s[96];
        snprintf(s, sizeof(s), "{\"updated\":%" PRIu64 ",\"next_update\":%" PRIu64 ",", now,
                 now + 2 * (uint64_t) d->cfg.publish_interval_sec);
        put_text(w, s);
}

/* The JWKS document with the dates in front of "keys" (RFC 7517 lets a JWK
 * Set carry members that verifiers do not know). */
static int jwks_file(struct cofferd *d, uint64_t now, struct wire_writer *w) {
        char keys[KEYS_MAX * 256];
        int n = jwks_build(d, keys, sizeof(keys));
        if (n < 0)
                return n;
        put_dates(w, d, now);
        put_text(w, keys + 1);
        return w->error ? -ENOMEM : 0;
}

static int add_revoked(void *ud, struct lease *l) {
        struct wire_writer *w = ud;
        char hex[33], item[128];
        if (l->kind != LEASE_TOKEN || !l->revoked)
                return 0;
        lease_id_hex(l->id, hex);
        snprintf(item, sizeof(item), "%s{\"jti\":\"%s\",\"exp\":%" PRIu64 ",\"revoked\":%" PRIu64 "}",
                 w->p[w->len - 1] == '[' ? "" : ",", hex, l->expires, l->revoked);
        put_text(w, item);
        return w->error ? -ENOMEM : 0;
}

static int revocations_file(struct cofferd *d, uint64_t now, struct wire_writer *w) {
        put_dates(w, d, now);
        put_text(w, "\"revoked\":[");
        if (!w->error)
                lease_foreach_revoked(d->leases, add_revoked, w);
        put_text(w, "]}\n");
        return w->error ? -ENOMEM : 0;
}

static void format_time(uint64_t t, char out[static 32]) {
        struct tm tm;
        time_t tt = (time_t) t;
        if (!gmtime_r(&tt, &tm) || strftime(out, 32, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
                snprintf(out, 32, "%" PRIu64, t);
}

static void pub_ok(struct pubfile *f, uint64_t now) {
        if (f->stale_since)
                server_log("cofferd: the %s %s is current again, after %" PRIu64 "s stale", f->what, f->path,
                           now - f->stale_since);
        *f = (struct pubfile){ .what = f->what, .path = f->path, .updated = now };
}

/* Retry from the sweep with backoff; alert at once, then every few minutes
 * while the file stays stale (not at every retry). */
static void pub_failed(struct pubfile *f, int rc, uint64_t now, uint64_t mono) {
        char since[32];
        f->backoff = f->backoff ? f->backoff * 2 : RETRY_FIRST_USEC;
        if (f->backoff > RETRY_MAX_USEC)
                f->backoff = RETRY_MAX_USEC;
        f->retry_at = mono + f->backoff;
        if (!f->stale_since)
                f->stale_since = now;
        if (f->alerted && mono - f->alerted < ALERT_EVERY_USEC)
                return;
        f->alerted = mono;
        format_time(f->stale_since, since);
        server_log(SD_WARNING "cofferd: ALERT: cannot write the %s %s: %s; it is stale since %s and verifiers "
                              "do not see what changed since; retrying every %us at most",
                   f->what, f->path, strerror(-rc), since, RETRY_MAX_USEC / 1000000u);
}

/* Write f if it changed or is older than publish_interval, once its retry
 * time has come. 0 when written, 1 when not due, or the error. */
static int publish(struct cofferd *d, struct pubfile *f, bool changed,
                   int (*build)(struct cofferd *d, uint64_t now, struct wire_writer *w)) {
        uint64_t now = now_unix(), mono = now_mono_usec();
        bool old = f->updated && now >= f->updated + d->cfg.publish_interval_sec;
        if (!(changed || old || f->stale_since) || mono < f->retry_at)
                return 1;
        /* Not a frame: the list may be longer than a frame's limit. */
        struct wire_writer w = { .limit = SIZE_MAX / 2 };
        int rc = build(d, now, &w);
        if (rc == 0)
                rc = write_file_atomic(f->path, w.p, w.len);
        wire_writer_free(&w);
        if (rc < 0)
                pub_failed(f, rc, now, mono);
        else
                pub_ok(f, now);
        return rc;
}

void tokens_refresh(struct cofferd *d) {
        struct tokens *t = d->tokens;
        /* A retired key leaves the JWKS once no token signed with it can be
         * valid any more. */
        size_t n = count_published(d);
        if (t->have_pk && n != t->published) {
                t->published = n;
                t->jwks_dirty = true;
        }
        /* The flags are cleared only by a write that worked. */
        if (publish(d, &t->revoked, d->revlist_dirty, revocations_file) == 0)
                d->revlist_dirty = false;
        if (t->have_pk && publish(d, &t->jwks, t->jwks_dirty, jwks_file) == 0)
                t->jwks_dirty = false;
}

void tokens_put_status(const struct cofferd *d, struct wire_writer *w) {
        const struct tokens *t = d->tokens;
        if (t->revoked.stale_since)
                wire_put_u64(w, T_REVOKED_STALE, t->revoked.stale_since);
        if (t->jwks.stale_since)
                wire_put_u64(w, T_JWKS_STALE, t->jwks.stale_since);
}

/* Users can fill the file system of their session directories: a file
 * verifiers rely on must not share it. */
void tokens_check_placement(const struct cofferd *d) {
        const char *paths[] = { d->jwks_path, d->revocation_path };
        struct stat ss, ps;
        if (stat(d->session_dir, &ss) < 0)
                return;
        for (size_t i = 0; i < ELEMENTSOF(paths); i++) {
                char dir[4096];
                strcpy_bounded(dir, sizeof(dir), paths[i]);
                char *slash = strrchr(dir, '/');
                if (!slash)
                        strcpy_bounded(dir, sizeof(dir), ".");
                else if (slash == dir)
                        dir[1] = 0;
                else
                        *slash = 0;
                if (stat(dir, &ps) == 0 && ps.st_dev == ss.st_dev)
                        server_log(SD_WARNING "cofferd: WARNING: %s is on the file system of the session directories "
                                              "(%s), which users can fill: its rewrites could then fail and be late; "
                                              "give session_dir a tmpfs of its own (cofferd(8), RUNTIME FILES)",
                                   paths[i], d->session_dir);
        }
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
        t->have_pk = t->ready;
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
                /* The leases were checked at unseal: publish both now. */
                t->jwks_dirty = true;
                d->revlist_dirty = true;
                tokens_refresh(d);
        }
        return rc;
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
        t->jwks_dirty = true; /* written after the request (server_leases_changed) */
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
