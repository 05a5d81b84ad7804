/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One-time grants: sudo-less delegation of one secret. A user allowed to
 * `delegate` secret:NAME creates a grant; whoever holds the grant string (and
 * is the named user / runs in the named unit, when one was given) may redeem
 * it, at most N times before it expires.
 *
 * The grant is a lease (kind grant, owned by its creator). The string is
 * "cgr1_" + base64url(lease id 16 | secret 32 | expiry 8, big-endian); the
 * daemon keeps only BLAKE2b(secret) in the lease data, compared in constant
 * time. The expiry in the string is not trusted for anything but the wording
 * of "this grant expired" once the lease is gone. */
#include <errno.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "engines.h"
#include "jwt.h"
#include "server.h"
#include "util.h"

#define GRANT_PREFIX "cgr1_"
#define GRANT_SECRET 32
#define GRANT_RAW (LEASE_ID_SIZE + GRANT_SECRET + 8)
#define GRANT_DEFAULT_TTL 3600u
#define GRANT_MAX_TTL (30u * 86400u)
#define GRANT_MAX_USES 10000u
#define COFFER_GRANT_STR_MAX 128u

struct grant_data {
        unsigned uses, used;
        uid_t for_uid;          /* (uid_t) -1 = anyone */
        char for_user[64];
        char for_unit[256];
        char hash[65];          /* hex BLAKE2b-256 of the secret part */
        /* The creator as attested at create: their delegate right is decided
         * again at each redeem, under the policy then in force, for this
         * subject. Grants made before these were kept: no unit, no exe, in a
         * login session. */
        char by_unit[256];
        char by_exe[4096];
        bool by_login;
};

#define GRANT_DATA_MAX 5000

static int data_parse(const char *s, struct grant_data *g) {
        unsigned long long uses = 0, used = 0, uid = 0, login = 1;
        memset(g, 0, sizeof(*g));
        /* uses=N used=K uid=U user=NAME unit=GLOB hash=HEX by_unit=UNIT
         * by_exe=PATH by_login=0|1, one a line; the data is under the lease
         * MAC, so a parse failure is a bug. */
        for (const char *p = s; p && *p;) {
                const char *nl = strchr(p, '\n');
                size_t n = nl ? (size_t) (nl - p) : strlen(p);
                char line[GRANT_DATA_MAX];
                if (n >= sizeof(line))
                        return -EBADMSG;
                memcpy(line, p, n);
                line[n] = 0;
                if (sscanf(line, "uses=%llu", &uses) == 1 || sscanf(line, "used=%llu", &used) == 1 ||
                    sscanf(line, "uid=%llu", &uid) == 1 || sscanf(line, "by_login=%llu", &login) == 1) {
                } else if (strncmp(line, "user=", 5) == 0)
                        strcpy_bounded(g->for_user, sizeof(g->for_user), line + 5);
                else if (strncmp(line, "unit=", 5) == 0)
                        strcpy_bounded(g->for_unit, sizeof(g->for_unit), line + 5);
                else if (strncmp(line, "hash=", 5) == 0)
                        strcpy_bounded(g->hash, sizeof(g->hash), line + 5);
                else if (strncmp(line, "by_unit=", 8) == 0)
                        strcpy_bounded(g->by_unit, sizeof(g->by_unit), line + 8);
                else if (strncmp(line, "by_exe=", 7) == 0)
                        strcpy_bounded(g->by_exe, sizeof(g->by_exe), line + 7);
                p = nl ? nl + 1 : NULL;
        }
        g->uses = (unsigned) uses;
        g->used = (unsigned) used;
        g->for_uid = g->for_user[0] ? (uid_t) uid : (uid_t) -1;
        g->by_login = login != 0;
        return g->uses && strlen(g->hash) == 64 ? 0 : -EBADMSG;
}

static void data_format(const struct grant_data *g, char *out, size_t n) {
        snprintf(out, n, "uses=%u\nused=%u\nuid=%u\nuser=%s\nunit=%s\nhash=%s\nby_unit=%s\nby_exe=%s\nby_login=%d",
                 g->uses, g->used, (unsigned) (g->for_user[0] ? g->for_uid : 0), g->for_user, g->for_unit, g->hash,
                 g->by_unit, g->by_exe, g->by_login);
}

static void hash_hex(const uint8_t *secret, char out[65]) {
        uint8_t h[32];
        crypto_generichash(h, sizeof(h), secret, GRANT_SECRET, (const uint8_t *) "coffer-grant-v1", 15);
        hex_encode(out, h, sizeof(h));
}

/* Parse a grant string. 0, or -EINVAL when it is not one at all. */
static int grant_decode(const char *s, uint8_t id[LEASE_ID_SIZE], uint8_t secret[GRANT_SECRET], uint64_t *exp) {
        uint8_t raw[GRANT_RAW + 4];
        size_t n = strlen(s);
        if (n < sizeof(GRANT_PREFIX) || strncmp(s, GRANT_PREFIX, sizeof(GRANT_PREFIX) - 1) != 0)
                return -EINVAL;
        int len = b64url_decode(s + sizeof(GRANT_PREFIX) - 1, n - (sizeof(GRANT_PREFIX) - 1), raw, sizeof(raw));
        if (len != GRANT_RAW) {
                sodium_memzero(raw, sizeof(raw));
                return -EINVAL;
        }
        memcpy(id, raw, LEASE_ID_SIZE);
        memcpy(secret, raw + LEASE_ID_SIZE, GRANT_SECRET);
        *exp = 0;
        for (int i = 0; i < 8; i++)
                *exp = *exp << 8 | raw[LEASE_ID_SIZE + GRANT_SECRET + i];
        sodium_memzero(raw, sizeof(raw));
        return 0;
}

/* A unit name or glob: unit-name characters and '*', in the policy's glob
 * syntax (the same matcher checks it at redeem). */
static bool unit_glob_ok(const char *s) {
        for (const char *c = s; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                      strchr("@._:-*", *c)))
                        return false;
        return strlen(s) < 256 && policy_glob_valid(s);
}

/* The data is one field a line: a name with a newline in it (an exe path is
 * the caller's to choose) is kept as unknown, which no exe: or unit: term
 * matches, rather than let it add lines. */
static void attested_copy(char *dst, size_t n, const char *src) {
        if (strchr(src, '\n') || !strcpy_bounded(dst, n, src))
                dst[0] = 0;
}

int process_grant_create(struct request *r) {
        char name[PROTO_NAME_MAX + 1], user[64] = "", unit[256] = "";
        uint64_t uses = 1, ttl = 0;
        int rc;
        if (wire_get_str(r->msg, T_NAME, name, sizeof(name)) < 0 || !proto_name_valid(name))
                return ops_fail(r, -EINVAL, "give the secret to delegate (--secret NAME)");
        if (wire_get_u64(r->msg, T_COUNT, &uses) == -EBADMSG || wire_get_u64(r->msg, T_TTL, &ttl) == -EBADMSG)
                return ops_fail(r, -EINVAL, "malformed uses or ttl");
        if ((rc = wire_get_str(r->msg, T_USER, user, sizeof(user))) < 0 && rc != -ENOENT)
                return ops_fail(r, -EINVAL, "malformed --for-user");
        if ((rc = wire_get_str(r->msg, T_UNIT, unit, sizeof(unit))) < 0 && rc != -ENOENT)
                return ops_fail(r, -EINVAL, "malformed --for-unit");
        snprintf(r->object, sizeof(r->object), "secret:%s", name);
        if (uses == 0 || uses > GRANT_MAX_USES)
                return ops_fail(r, -EINVAL, "--uses must be between 1 and %u", GRANT_MAX_USES);
        if (user[0] && unit[0])
                return ops_fail(r, -EINVAL, "give --for-user or --for-unit, not both");
        if (unit[0] && !unit_glob_ok(unit))
                return ops_fail(r, -EINVAL, "--for-unit takes a unit name or glob (letters, digits, @ . _ : -, "
                                            "and * for any characters but not **)");
        struct pol_decision dec;
        rc = ops_authorize(r, POL_DELEGATE, r->object, &dec);
        if (rc < 0)
                return rc;
        uint64_t bound = GRANT_MAX_TTL;
        if (dec.max_ttl_sec && dec.max_ttl_sec < bound)
                bound = dec.max_ttl_sec;
        if (ttl > bound)
                return ops_fail(r, -EINVAL, "ttl %" PRIu64 "s is longer than allowed for delegating %s (%" PRIu64 "s)",
                                ttl, r->object, bound);
        if (ttl == 0)
                ttl = GRANT_DEFAULT_TTL < bound ? GRANT_DEFAULT_TTL : bound;
        if (dec.max_uses && uses > dec.max_uses)
                return ops_fail(r, -EINVAL, "%" PRIu64 " uses is more than allowed for delegating %s (%" PRIu64 ")",
                                uses, r->object, dec.max_uses);
        struct grant_data g = { .uses = (unsigned) uses, .for_uid = (uid_t) -1 };
        if (user[0]) {
                struct passwd pw, *pwr = NULL;
                char buf[4096];
                if (getpwnam_r(user, &pw, buf, sizeof(buf), &pwr) != 0 || !pwr)
                        return ops_fail(r, -EINVAL, "unknown user '%s' for --for-user", user);
                g.for_uid = pw.pw_uid;
                strcpy_bounded(g.for_user, sizeof(g.for_user), user);
        }
        strcpy_bounded(g.for_unit, sizeof(g.for_unit), unit);
        /* Only what was proven: an exe whose path did not lead to the file
         * it runs, or anything of a caller in a foreign namespace, is not
         * recorded, so no redeem can be decided on it. */
        bool distrusted = ops_foreign_distrusted(r);
        attested_copy(g.by_unit, sizeof(g.by_unit), distrusted ? "" : r->peer->unit);
        attested_copy(g.by_exe, sizeof(g.by_exe), distrusted || !r->peer->exe_verified ? "" : r->peer->exe);
        g.by_login = lease_session_of(r->d->leases, r->peer->audit_session, r->peer->uid, now_unix()) != NULL;
        /* The secret must exist now: a grant for nothing is a mistake. */
        {
                _cleanup_secbuf_ struct secbuf v = { 0 };
                uint64_t ver;
                rc = store_secret_get(r->d->store, r->d->seal.kr, name, 0, &v.p, &v.len, &ver);
                if (rc < 0)
                        return ops_store_fail(r, rc, "grant create");
        }
        uint8_t raw[GRANT_RAW];
        randombytes_buf(raw + LEASE_ID_SIZE, GRANT_SECRET);
        hash_hex(raw + LEASE_ID_SIZE, g.hash);
        char data[GRANT_DATA_MAX];
        data_format(&g, data, sizeof(data));
        struct lease_new n = { .kind = LEASE_GRANT, .owner_uid = r->peer->uid, .owner = r->peer->user,
                               .object = r->object, .ttl = ttl, .max_ttl = ttl, .audit_session = UINT32_MAX,
                               .data = data };
        struct lease *l;
        rc = lease_create(r->d->leases, &n, r->d->cfg.max_leases_per_uid, now_unix(), &l);
        if (rc == -EDQUOT)
                rc = ops_cap_fail(r, r->peer->uid, "you");
        else if (rc < 0)
                rc = ops_store_fail(r, rc, "grant create");
        if (rc < 0) {
                sodium_memzero(raw, sizeof(raw));
                return rc;
        }
        memcpy(raw, l->id, LEASE_ID_SIZE);
        for (int i = 0; i < 8; i++)
                raw[LEASE_ID_SIZE + GRANT_SECRET + i] = (uint8_t) (l->expires >> (56 - 8 * i));
        char grant[sizeof(GRANT_PREFIX) + 2 * GRANT_RAW];
        memcpy(grant, GRANT_PREFIX, sizeof(GRANT_PREFIX) - 1);
        b64url_encode(raw, sizeof(raw), grant + sizeof(GRANT_PREFIX) - 1, sizeof(grant) - sizeof(GRANT_PREFIX) + 1);
        sodium_memzero(raw, sizeof(raw));
        lease_id_hex(l->id, r->lease);
        snprintf(r->detail, sizeof(r->detail), "uses=%u for_user=%s for_unit=%s", g.uses, g.for_user, g.for_unit);
        wire_put_bytes(r->out, T_TOKEN, grant, strlen(grant));
        wire_put_str(r->out, T_LEASE_ID, r->lease);
        wire_put_u64(r->out, T_EXPIRES, l->expires);
        sodium_memzero(grant, sizeof(grant));
        return 0;
}

/* The grant named by a request's T_TOKEN, checked; or -errno with the text set. */
static int find_grant(struct request *r, struct lease **out, struct grant_data *g, uint64_t *exp) {
        const uint8_t *p;
        size_t n;
        char s[COFFER_GRANT_STR_MAX + 1];
        uint8_t id[LEASE_ID_SIZE], secret[GRANT_SECRET];
        if (wire_get_bytes(r->msg, T_TOKEN, &p, &n) < 0 || n == 0 || n > COFFER_GRANT_STR_MAX)
                return ops_fail(r, -EINVAL, "give the grant string (cgr1_...)");
        memcpy(s, p, n);
        s[n] = 0;
        int rc = grant_decode(s, id, secret, exp);
        sodium_memzero(s, sizeof(s));
        if (rc < 0)
                return ops_fail(r, -EINVAL, "that is not a coffer grant (they start with cgr1_); was it cut short?");
        lease_id_hex(id, r->lease);
        struct lease *l = lease_find(r->d->leases, id);
        char h[65];
        hash_hex(secret, h);
        sodium_memzero(secret, sizeof(secret));
        if (l && l->kind == LEASE_GRANT && data_parse(l->data, g) == 0 && sodium_memcmp(h, g->hash, 64) == 0) {
                *out = l;
                snprintf(r->object, sizeof(r->object), "%s", l->object);
                return 0;
        }
        snprintf(r->object, sizeof(r->object), "grant:%s", r->lease);
        if (l && l->kind == LEASE_GRANT)
                return ops_fail(r, -ENOENT, "this grant does not match the one issued (tampered or mistyped)");
        if (*exp && *exp <= now_unix())
                return ops_fail(r, -ENOENT, "this grant expired; ask its creator for a new one");
        return ops_fail(r, -ENOENT, "no such grant: it was revoked, expired or never issued");
}

int process_grant_redeem(struct request *r) {
        struct lease *l;
        struct grant_data g;
        uint64_t exp;
        int rc = find_grant(r, &l, &g, &exp);
        if (rc < 0) {
                r->denied = true;
                return rc;
        }
        r->rule = "grant";
        snprintf(r->detail, sizeof(r->detail), "creator=%s(uid %u) redeemer=%s(uid %u)", l->owner,
                 (unsigned) l->owner_uid, r->peer->user, (unsigned) r->peer->uid);
        /* Every refusal below is a denial, whatever its errno. */
        r->denied = true;
        if (g.for_user[0] && r->peer->uid != g.for_uid)
                return ops_fail(r, -EACCES, "permission denied: this grant is for user %s, not %s", g.for_user,
                                r->peer->user);
        if (g.for_unit[0]) {
                if (ops_foreign_distrusted(r))
                        return ops_fail(r, -EACCES, "permission denied: this grant is for units matching %s; your "
                                                    "process runs in another user namespace than the "
                                                    "host's, where units are not trusted", g.for_unit);
                if (!r->peer->unit[0] || !policy_glob_match(g.for_unit, r->peer->unit))
                        return ops_fail(r, -EACCES, "permission denied: this grant is for units matching %s; "
                                                    "you run in %s", g.for_unit,
                                        r->peer->unit[0] ? r->peer->unit : "no unit");
                if (peer_recheck(r->peer) < 0)
                        return ops_fail(r, -ESRCH, "your process changed its executable or unit since it "
                                                   "connected; reconnect");
        }
        if (l->revoked && g.used >= g.uses)
                return ops_fail(r, -ENOENT, "this grant was already used (%u of %u uses)", g.used, g.uses);
        if (l->revoked)
                return ops_fail(r, -ENOENT, "this grant was revoked by its creator");
        /* Expiry runs in batches: one past its time may not be revoked yet. */
        if (l->expires <= now_unix())
                return ops_fail(r, -ENOENT, "this grant expired; ask its creator for a new one");
        /* The grant stands on its creator's right to delegate, now: taking
         * that away (policy reload) voids outstanding grants. And an explicit
         * deny for the redeemer beats the grant, as it beats every allow. */
        struct pol_decision dec = { 0 };
        struct passwd pw, *pwr = NULL;
        char buf[4096];
        if (l->owner_uid != r->d->self_uid &&
            (getpwuid_r(l->owner_uid, &pw, buf, sizeof(buf), &pwr) != 0 || !pwr ||
             ops_decide_user_as(r, pw.pw_uid, pw.pw_gid, pw.pw_name, g.by_unit, g.by_exe, g.by_login, POL_DELEGATE,
                                l->object, &dec) <= 0))
                return ops_fail(r, -EACCES, "permission denied: the grant's creator (%s) may no longer delegate %s",
                                l->owner, l->object);
        memset(&dec, 0, sizeof(dec));
        rc = ops_decide(r, POL_READ, l->object, &dec);
        if (rc < 0 && rc != -ESRCH)
                return ops_fail(r, rc, "policy evaluation failed: %s", strerror(-rc));
        if (!dec.allow && dec.file)
                return ops_fail(r, -EACCES, "permission denied: a deny rule (%s:%u) forbids you %s, grant or not",
                                dec.file, dec.line, l->object);
        r->denied = false;
        const char *name = l->object + strlen("secret:");
        _cleanup_secbuf_ struct secbuf v = { 0 };
        uint64_t ver;
        rc = store_secret_get(r->d->store, r->d->seal.kr, name, 0, &v.p, &v.len, &ver);
        if (rc < 0)
                return ops_store_fail(r, rc, "grant redeem");
        g.used++;
        char data[GRANT_DATA_MAX];
        data_format(&g, data, sizeof(data));
        rc = lease_set_data(r->d->leases, l, data);
        if (rc == 0 && g.used >= g.uses)
                rc = lease_revoke(r->d->leases, l, "used-up", now_unix());
        if (rc < 0)
                return ops_store_fail(r, rc, "grant redeem");
        size_t dn = strlen(r->detail);
        snprintf(r->detail + dn, sizeof(r->detail) - dn, " use=%u/%u", g.used, g.uses);
        r->version = ver;
        wire_put_str(r->out, T_NAME, name);
        wire_put_u64(r->out, T_VERSION, ver);
        wire_put_bytes(r->out, T_VALUE, v.p, v.len);
        wire_put_u64(r->out, T_COUNT, g.uses - g.used);
        return 0;
}

int process_grant_revoke(struct request *r) {
        struct lease *l = NULL;
        struct grant_data g;
        uint64_t exp;
        char hex[40];
        int rc;
        if (wire_get_str(r->msg, T_LEASE_ID, hex, sizeof(hex)) == 0) {
                uint8_t id[LEASE_ID_SIZE];
                if (lease_id_parse(hex, id) < 0)
                        return ops_fail(r, -EINVAL, "give the grant or its id (32 hex characters)");
                strcpy_bounded(r->lease, sizeof(r->lease), hex);
                l = lease_find(r->d->leases, id);
                if (l && l->kind != LEASE_GRANT)
                        l = NULL;
                snprintf(r->object, sizeof(r->object), "%s", l ? l->object : "grant:unknown");
        } else if ((rc = find_grant(r, &l, &g, &exp)) < 0)
                return rc;
        r->rule = "builtin:own-lease";
        if (!l || (l->owner_uid != r->peer->uid && !ops_is_admin(r, "lease:grant"))) {
                r->denied = l != NULL;
                return ops_fail(r, -ENOENT, "no grant %s of yours; `coffer lease ls` lists them", r->lease);
        }
        if (l->owner_uid != r->peer->uid)
                r->rule = "admin";
        if (l->revoked)
                return ops_fail(r, -ENOENT, "grant %s is already used up or revoked", r->lease);
        rc = lease_revoke(r->d->leases, l, "revoked", now_unix());
        if (rc < 0)
                return ops_store_fail(r, rc, "grant revoke");
        wire_put_u64(r->out, T_COUNT, (uint64_t) rc);
        return 0;
}
