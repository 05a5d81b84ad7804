/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Opcodes, field tags and request decoders shared by cofferd and libcoffer.
 * docs/PROTOCOL.md is the prose version of this file. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "wire.h"

#define PROTO_REPLY_BIT 0x8000u

enum proto_op {
        OP_STATUS       = 1,
        OP_INIT         = 2,
        OP_UNSEAL       = 3,
        OP_SEAL         = 4,
        OP_ROTATE       = 5,
        OP_ACCEPT_ROLLBACK = 6,
        OP_PUT          = 16,
        OP_GET          = 17,
        OP_LIST         = 18,
        OP_VERSIONS     = 19,
        OP_DELETE       = 20,
        OP_UNDELETE     = 21,
        OP_DESTROY      = 22,
        OP_WHOAMI       = 32,
        OP_AUDIT_VERIFY = 33,
        OP_POLICY_RELOAD = 40,
        OP_POLICY_EXPLAIN = 41,
        OP_LEASE_LIST   = 48,
        OP_LEASE_RENEW  = 49,
        OP_LEASE_REVOKE = 50,
        OP_SESSION_OPEN = 56,
        OP_SESSION_CLOSE = 57,
        OP_TOKEN_ISSUE  = 64,
        OP_TOKEN_VERIFY = 65,
        OP_TOKEN_JWKS   = 66,
        OP_TOKEN_ROTATE = 67,
        OP_KEY_DERIVE   = 72,
        OP_GRANT_CREATE = 80,
        OP_GRANT_REDEEM = 81,
        OP_GRANT_REVOKE = 82,
        OP_ERROR        = 0xffff, /* reply only */
};

enum proto_tag {
        T_NAME          = 1,  /* string: secret name */
        T_VALUE         = 2,  /* bytes: secret value */
        T_VERSION       = 3,  /* u64 */
        T_CAS           = 4,  /* u64: expected current version (0 = must not exist) */
        T_PREFIX        = 5,  /* string */
        T_NAMES         = 6,  /* bytes: packed lbytes strings */
        T_VERSIONS      = 7,  /* bytes: packed version records */
        T_ERR_CODE      = 8,  /* u64: positive errno */
        T_ERR_MSG       = 9,  /* string */
        T_METHOD        = 10, /* string: keyfile | passphrase | shamir */
        T_KEY           = 11, /* bytes: keyfile content, passphrase or one share */
        T_SHARES        = 12, /* u64 on init request: n; bytes on init reply: packed shares */
        T_THRESHOLD     = 13, /* u64 */
        T_INITIALIZED   = 14, /* u64 bool */
        T_SEALED        = 15, /* u64 bool */
        T_PROGRESS      = 16, /* u64: shares submitted so far */
        T_TERM          = 17, /* u64: data-key term */
        T_SERVER_VER    = 18, /* string */
        T_MAX_VERSIONS  = 19, /* u64 */
        T_UID           = 20, /* u64 */
        T_GID           = 21, /* u64 */
        T_GROUPS        = 22, /* bytes: packed u32 */
        T_PID           = 23, /* u64 */
        T_EXE           = 24, /* string */
        T_UNIT          = 25, /* string */
        T_AUDIT_SESSION = 26, /* u64 */
        T_LOGIN_SESSION = 27, /* string */
        T_RECORDS       = 28, /* u64: audit records verified */
        T_BAD_LINE      = 29, /* u64: first bad line (0 = none) */
        T_PIDFD_KIND    = 30, /* string: how the process was pinned */
        T_CREATED       = 31, /* u64 */
        T_USER          = 32, /* string */
        T_DELETED       = 33, /* u64 bool */
        T_STATE_DIR     = 34, /* string */
        T_SEGMENTS      = 35, /* u64 */
        T_ACTION        = 36, /* string: policy action */
        T_OBJECT        = 37, /* string: policy object, e.g. secret:hf/token */
        T_ALLOW         = 38, /* u64 bool */
        T_RULE          = 39, /* string: the deciding rule as written */
        T_FILE          = 40, /* string */
        T_LINE          = 41, /* u64 */
        T_SESSION       = 42, /* u64 bool: in a login session */
        T_COUNT         = 43, /* u64 */
        T_LEASE_ID      = 44, /* string: 32 lowercase hex */
        T_TTL           = 45, /* u64 seconds */
        T_EXPIRES       = 46, /* u64 unix seconds */
        T_LEASES        = 47, /* bytes: packed lease records */
        T_ALL           = 48, /* u64 bool */
        T_SERVICE       = 49, /* string: PAM service */
        T_TTY           = 50, /* string */
        T_RHOST         = 51, /* string */
        T_AUDIENCE      = 52, /* string */
        T_TOKEN         = 53, /* bytes: a JWT */
        T_JWKS          = 54, /* bytes: JSON */
        T_DIR           = 55, /* string: a directory */
        T_CREDS         = 56, /* bytes: packed session credential records */
        T_BYTES         = 57, /* u64 */
        T_STATUS        = 58, /* string: a token's status */
        T_KID           = 59, /* string */
        T_DENIED        = 60, /* u64: credentials the policy did not allow */
        T_WANT_TOKENS   = 61, /* u64 bool */
        T_SID           = 62, /* string: a token's coffer session lease id */
        T_NBF           = 63, /* u64: a token's not-before */
        T_EXE_FILE      = 64, /* string: the running file, "MAJOR:MINOR:INODE"; "" = unknown */
        T_EXE_VERIFIED  = 65, /* u64 bool: EXE, looked up by the daemon, names that file */
        T_FOREIGN_NS    = 66, /* u64 bool: another user namespace than the host's */
        T_REVOKED_STALE = 67, /* u64 unix seconds: revoked.json is stale since (absent: current) */
        T_JWKS_STALE    = 68, /* u64 unix seconds: jwks.json is stale since (absent: current) */
        T_STORE_GEN     = 69, /* u64: the store's generation */
        T_ANCHOR_GEN    = 70, /* u64: the generation the audit log anchors */
};

/* Names: 1..PROTO_NAME_MAX bytes of [A-Za-z0-9._-], segments separated by
 * single '/', no empty segment, no "." or ".." segment. */
#define PROTO_NAME_MAX       256
#define PROTO_SHAMIR_MAX     255
#define PROTO_SHARE_SIZE     33   /* index byte + 32 key bytes */
#define PROTO_KEYFILE_MIN    32
#define PROTO_KEY_MAX        4096 /* keyfile, passphrase or share */

bool proto_name_valid(const char *name);
/* A prefix for list: empty, or a name, optionally ending in '/'. */
bool proto_prefix_valid(const char *prefix);

/* Decoded requests. Borrowed pointers point into the message body. */
struct req_secret {
        char name[PROTO_NAME_MAX + 1];
        uint64_t version;        /* 0 = latest */
        bool has_cas;
        uint64_t cas;
        const uint8_t *value;
        size_t value_len;
        uint64_t max_versions;   /* 0 = unchanged */
};

struct req_list {
        char prefix[PROTO_NAME_MAX + 2];
};

struct req_seal {
        char method[16];
        const uint8_t *key;
        size_t key_len;
        uint64_t shares;
        uint64_t threshold;
};

/* policy explain: an action on an object, for the caller or for a subject
 * described by the fields present. */
struct req_explain {
        char action[16];
        char object[PROTO_NAME_MAX + 16];
        bool has_subject;
        char user[64];           /* "" = none */
        bool has_uid;
        uint64_t uid;
        const uint8_t *groups;   /* packed lbytes group names (T_NAMES) */
        size_t groups_len;
        char unit[256];
        char exe[WIRE_STRING_MAX + 1];
        bool session;
};

/* Each returns 0 or a negative errno; *why names the offending field. */
int proto_decode_explain(const struct wire_msg *m, struct req_explain *r, const char **why);
int proto_decode_secret(const struct wire_msg *m, struct req_secret *r, const char **why);
int proto_decode_list(const struct wire_msg *m, struct req_list *r, const char **why);
int proto_decode_init(const struct wire_msg *m, struct req_seal *r, const char **why);
int proto_decode_unseal(const struct wire_msg *m, struct req_seal *r, const char **why);

/* One version record inside T_VERSIONS. */
struct proto_version {
        uint64_t version;
        uint64_t created;   /* unix seconds */
        uint64_t deleted;   /* unix seconds, 0 = live */
        bool destroyed;
};
bool proto_version_write(struct wire_writer *w, const struct proto_version *v);
bool proto_version_read(struct wire_reader *r, struct proto_version *v);

/* One lease record inside T_LEASES. */
struct proto_lease {
        char id[33];
        char kind[16];
        char owner[256];
        uint32_t owner_uid;
        char object[272];
        char parent[33];
        uint64_t issued, expires, max_expires;
        bool renewable;
};
bool proto_lease_write(struct wire_writer *w, const struct proto_lease *l);
bool proto_lease_read(struct wire_reader *r, struct proto_lease *l);

/* One credential inside T_CREDS: env name, path, object, token (may be empty). */
struct proto_cred {
        char env[64];
        char path[4096];
        char object[272];
        const uint8_t *token;
        size_t token_len;
};
bool proto_cred_write(struct wire_writer *w, const struct proto_cred *c);
bool proto_cred_read(struct wire_reader *r, struct proto_cred *c);

/* A lease id: exactly 32 lowercase hex characters. */
bool proto_lease_id_valid(const char *s);
/* Token audience: 1..PROTO_AUDIENCE_MAX bytes of [A-Za-z0-9._:-] in segments
 * separated by single '/', like a name: no empty, "." or ".." segment. */
#define PROTO_AUDIENCE_MAX 255
#define PROTO_AUDIENCE_RULE "an audience is 1-255 characters of A-Z a-z 0-9 . _ - : in segments separated by " \
                            "single '/', no empty, '.' or '..' segment"
bool proto_audience_valid(const char *s);
/* A login-map / credential variable name: [A-Z_][A-Z0-9_]{0,62}. */
bool proto_env_name_valid(const char *s);

const char *proto_op_name(uint16_t op);
