/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <string.h>

#include "proto.h"

static bool name_char_ok(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
               c == '_' || c == '-';
}

/* An audience may also hold ':' (urn:example:api, host:port). */
static bool aud_char_ok(char c) {
        return name_char_ok(c) || c == ':';
}

/* Segments of chars that char_ok accepts joined by single '/', none "." or
 * "..", at most max bytes. A trailing '/' is allowed only when
 * trailing_slash is set (list prefixes). */
static bool segments_valid(const char *s, size_t max, bool (*char_ok)(char), bool trailing_slash) {
        size_t n = strlen(s);
        if (n == 0 || n > max)
                return false;
        const char *seg = s;
        for (size_t i = 0; i <= n; i++) {
                char c = s[i];
                if (c == '/' || c == 0) {
                        size_t len = (size_t) (s + i - seg);
                        if (len == 0)
                                return c == 0 && trailing_slash && i > 0;
                        if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
                                return false;
                        seg = s + i + 1;
                } else if (!char_ok(c))
                        return false;
        }
        return true;
}

bool proto_name_valid(const char *name) {
        return segments_valid(name, PROTO_NAME_MAX, name_char_ok, false);
}

bool proto_prefix_valid(const char *prefix) {
        return prefix[0] == 0 || segments_valid(prefix, PROTO_NAME_MAX, name_char_ok, true);
}

static int get_name(const struct wire_msg *m, char *name, size_t size, const char **why) {
        int rc = wire_get_str(m, T_NAME, name, size);
        if (rc == -ENOENT) {
                *why = "secret name is missing";
                return -EINVAL;
        }
        if (rc < 0 || !proto_name_valid(name)) {
                *why = "invalid secret name: use 1-256 characters of A-Z a-z 0-9 . _ - in segments "
                       "separated by '/', no empty, '.' or '..' segment";
                return -EINVAL;
        }
        return 0;
}

/* An optional u64: absent leaves *v alone; present with the wrong type is an error. */
static int opt_u64(const struct wire_msg *m, uint8_t tag, uint64_t *v, bool *present) {
        int rc = wire_get_u64(m, tag, v);
        if (present)
                *present = rc == 0;
        return rc == -ENOENT ? 0 : rc;
}

int proto_decode_secret(const struct wire_msg *m, struct req_secret *r, const char **why) {
        int rc;
        memset(r, 0, sizeof(*r));
        rc = get_name(m, r->name, sizeof(r->name), why);
        if (rc < 0)
                return rc;
        if (opt_u64(m, T_VERSION, &r->version, NULL) < 0 || opt_u64(m, T_CAS, &r->cas, &r->has_cas) < 0 ||
            opt_u64(m, T_MAX_VERSIONS, &r->max_versions, NULL) < 0) {
                *why = "version, cas and max-versions must be unsigned integers";
                return -EINVAL;
        }
        if (r->max_versions > 1000) {
                *why = "max-versions must be at most 1000 (0 keeps the current setting)";
                return -EINVAL;
        }
        rc = wire_get_bytes(m, T_VALUE, &r->value, &r->value_len);
        if (rc == -EBADMSG) {
                *why = "value must be a bytes field";
                return -EINVAL;
        }
        if (rc == 0 && r->value_len > WIRE_VALUE_MAX) {
                *why = "value is larger than 1 MiB";
                return -E2BIG;
        }
        return 0;
}

int proto_decode_list(const struct wire_msg *m, struct req_list *r, const char **why) {
        memset(r, 0, sizeof(*r));
        int rc = wire_get_str(m, T_PREFIX, r->prefix, sizeof(r->prefix));
        if (rc == -ENOENT)
                return 0;
        if (rc < 0 || !proto_prefix_valid(r->prefix)) {
                *why = "invalid prefix: use the characters of secret names, optionally ending in '/'";
                return -EINVAL;
        }
        return 0;
}

static int get_key(const struct wire_msg *m, struct req_seal *r, bool required, const char **why) {
        int rc = wire_get_bytes(m, T_KEY, &r->key, &r->key_len);
        if (rc == -ENOENT && !required)
                return 0;
        if (rc < 0 || r->key_len == 0 || r->key_len > PROTO_KEY_MAX) {
                *why = "key material is missing, empty or larger than 4096 bytes";
                return -EINVAL;
        }
        return 0;
}

int proto_decode_init(const struct wire_msg *m, struct req_seal *r, const char **why) {
        memset(r, 0, sizeof(*r));
        int rc = wire_get_str(m, T_METHOD, r->method, sizeof(r->method));
        if (rc < 0) {
                *why = rc == -ENOENT ? "unseal method is missing" : "unknown unseal method: use keyfile, passphrase or shamir";
                return -EINVAL;
        }
        if (strcmp(r->method, "shamir") == 0) {
                if (wire_get_u64(m, T_SHARES, &r->shares) < 0 || wire_get_u64(m, T_THRESHOLD, &r->threshold) < 0 ||
                    r->threshold < 2 || r->threshold > r->shares || r->shares > PROTO_SHAMIR_MAX) {
                        *why = "shamir needs 2 <= threshold <= shares <= 255";
                        return -EINVAL;
                }
                return get_key(m, r, false, why);
        }
        if (strcmp(r->method, "keyfile") == 0 || strcmp(r->method, "passphrase") == 0) {
                rc = get_key(m, r, true, why);
                if (rc < 0)
                        return rc;
                if (strcmp(r->method, "keyfile") == 0 && r->key_len < PROTO_KEYFILE_MIN) {
                        *why = "a keyfile must hold at least 32 bytes of random data";
                        return -EINVAL;
                }
                return 0;
        }
        *why = "unknown unseal method: use keyfile, passphrase or shamir";
        return -EINVAL;
}

int proto_decode_unseal(const struct wire_msg *m, struct req_seal *r, const char **why) {
        memset(r, 0, sizeof(*r));
        return get_key(m, r, true, why);
}

static int opt_str(const struct wire_msg *m, uint8_t tag, char *buf, size_t n, bool *present) {
        int rc = wire_get_str(m, tag, buf, n);
        if (rc == 0 && present)
                *present = true;
        return rc == -ENOENT ? 0 : rc;
}

int proto_decode_explain(const struct wire_msg *m, struct req_explain *r, const char **why) {
        uint64_t session = 0;
        bool has = false, has_session = false;
        memset(r, 0, sizeof(*r));
        if (wire_get_str(m, T_ACTION, r->action, sizeof(r->action)) < 0 ||
            wire_get_str(m, T_OBJECT, r->object, sizeof(r->object)) < 0) {
                *why = "give an action and an object, e.g. `coffer policy explain read secret:hf/token`";
                return -EINVAL;
        }
        if (opt_str(m, T_USER, r->user, sizeof(r->user), &has) < 0 || opt_str(m, T_UNIT, r->unit, sizeof(r->unit), &has) < 0 ||
            opt_str(m, T_EXE, r->exe, sizeof(r->exe), &has) < 0 || opt_u64(m, T_UID, &r->uid, &r->has_uid) < 0 ||
            opt_u64(m, T_SESSION, &session, &has_session) < 0) {
                *why = "malformed subject: user, unit and exe are strings, uid and session numbers";
                return -EINVAL;
        }
        int rc = wire_get_bytes(m, T_NAMES, &r->groups, &r->groups_len);
        if (rc == -EBADMSG) {
                *why = "groups must be a list of names";
                return -EINVAL;
        }
        r->session = session != 0;
        r->has_subject = has || r->has_uid || has_session || rc == 0;
        return 0;
}

bool proto_version_write(struct wire_writer *w, const struct proto_version *v) {
        return wire_write_u64(w, v->version) && wire_write_u64(w, v->created) && wire_write_u64(w, v->deleted) &&
               wire_write_u8(w, v->destroyed ? 1 : 0);
}

bool proto_version_read(struct wire_reader *r, struct proto_version *v) {
        uint8_t d = 0;
        bool ok = wire_read_u64(r, &v->version) && wire_read_u64(r, &v->created) &&
                  wire_read_u64(r, &v->deleted) && wire_read_u8(r, &d);
        if (ok && d > 1) {
                r->error = true;
                return false;
        }
        v->destroyed = d == 1;
        return ok;
}

static bool put_str(struct wire_writer *w, const char *s) {
        return wire_write_lbytes(w, s, strlen(s));
}

/* A string of at most n-1 bytes, no NUL inside, valid UTF-8. */
static bool get_str(struct wire_reader *r, char *out, size_t n) {
        const uint8_t *p;
        size_t len;
        if (!wire_read_lbytes(r, &p, &len, n - 1))
                return false;
        if (memchr(p, 0, len) || !utf8_is_valid(p, len)) {
                r->error = true;
                return false;
        }
        memcpy(out, p, len);
        out[len] = 0;
        return true;
}

bool proto_lease_write(struct wire_writer *w, const struct proto_lease *l) {
        return put_str(w, l->id) && put_str(w, l->kind) && put_str(w, l->owner) && wire_write_u32(w, l->owner_uid) &&
               put_str(w, l->object) && put_str(w, l->parent) && wire_write_u64(w, l->issued) &&
               wire_write_u64(w, l->expires) && wire_write_u64(w, l->max_expires) &&
               wire_write_u8(w, l->renewable ? 1 : 0);
}

bool proto_lease_read(struct wire_reader *r, struct proto_lease *l) {
        uint8_t ren = 0;
        bool ok = get_str(r, l->id, sizeof(l->id)) && get_str(r, l->kind, sizeof(l->kind)) &&
                  get_str(r, l->owner, sizeof(l->owner)) && wire_read_u32(r, &l->owner_uid) &&
                  get_str(r, l->object, sizeof(l->object)) && get_str(r, l->parent, sizeof(l->parent)) &&
                  wire_read_u64(r, &l->issued) && wire_read_u64(r, &l->expires) &&
                  wire_read_u64(r, &l->max_expires) && wire_read_u8(r, &ren);
        if (ok && ren > 1) {
                r->error = true;
                return false;
        }
        l->renewable = ren == 1;
        return ok;
}

bool proto_cred_write(struct wire_writer *w, const struct proto_cred *c) {
        return put_str(w, c->env) && put_str(w, c->path) && put_str(w, c->object) &&
               wire_write_lbytes(w, c->token, c->token_len);
}

bool proto_cred_read(struct wire_reader *r, struct proto_cred *c) {
        return get_str(r, c->env, sizeof(c->env)) && get_str(r, c->path, sizeof(c->path)) &&
               get_str(r, c->object, sizeof(c->object)) && wire_read_lbytes(r, &c->token, &c->token_len, 65536);
}

bool proto_lease_id_valid(const char *s) {
        size_t i;
        for (i = 0; s[i]; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return i == 32;
}

/* Policy globs over audiences (token:ml2/...) match segments, so an audience
 * is a path like a secret name: "ml2/../../prod" must not pass as ml2's. */
bool proto_audience_valid(const char *s) {
        return segments_valid(s, PROTO_AUDIENCE_MAX, aud_char_ok, false);
}

bool proto_env_name_valid(const char *s) {
        size_t i;
        for (i = 0; s[i]; i++) {
                char c = s[i];
                if (!((c >= 'A' && c <= 'Z') || c == '_' || (i > 0 && c >= '0' && c <= '9')))
                        return false;
        }
        return i >= 1 && i <= 63;
}

const char *proto_op_name(uint16_t op) {
        switch (op & ~PROTO_REPLY_BIT) {
        case OP_STATUS: return "status";
        case OP_INIT: return "init";
        case OP_UNSEAL: return "unseal";
        case OP_SEAL: return "seal";
        case OP_ROTATE: return "rotate";
        case OP_ACCEPT_ROLLBACK: return "accept-rollback";
        case OP_PUT: return "put";
        case OP_GET: return "get";
        case OP_LIST: return "list";
        case OP_VERSIONS: return "versions";
        case OP_DELETE: return "delete";
        case OP_UNDELETE: return "undelete";
        case OP_DESTROY: return "destroy";
        case OP_WHOAMI: return "whoami";
        case OP_AUDIT_VERIFY: return "audit-verify";
        case OP_POLICY_RELOAD: return "policy-reload";
        case OP_POLICY_EXPLAIN: return "policy-explain";
        case OP_LEASE_LIST: return "lease-list";
        case OP_LEASE_RENEW: return "lease-renew";
        case OP_LEASE_REVOKE: return "lease-revoke";
        case OP_SESSION_OPEN: return "session-open";
        case OP_SESSION_CLOSE: return "session-close";
        case OP_TOKEN_ISSUE: return "token-issue";
        case OP_TOKEN_VERIFY: return "token-verify";
        case OP_TOKEN_JWKS: return "token-jwks";
        case OP_TOKEN_ROTATE: return "token-rotate";
        case OP_KEY_DERIVE: return "key-derive";
        case OP_GRANT_CREATE: return "grant-create";
        case OP_GRANT_REDEEM: return "grant-redeem";
        case OP_GRANT_REVOKE: return "grant-revoke";
        default: return "unknown";
        }
}
