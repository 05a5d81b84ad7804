/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libcoffer: the client API of cofferd.
 *
 * Every function that can fail returns 0 (or a positive count) on success and
 * a negative errno on failure; coffer_last_error() then describes the failure
 * for the calling thread in words a person can act on. The library never logs.
 * A handle may be shared between threads: requests on it are serialized.
 *
 * Errors worth knowing:
 *   -ECONNREFUSED, -ENOENT (on connect)  the daemon is not running
 *   -EPERM        the socket is not owned by root or the daemon user
 *   -ENOKEY       the daemon is sealed: run `coffer operator unseal`
 *   -EACCES       refused by the daemon's authorization
 *   -ENOENT       no such secret or version
 *   -ESTALE       check-and-set mismatch
 *   -EBADMSG      integrity failure (tampered store) or malformed reply
 *   -EKEYREJECTED wrong unseal key, passphrase or share
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define COFFER_API __attribute__((visibility("default")))
#define COFFER_WUR __attribute__((warn_unused_result))

#define COFFER_VALUE_MAX (1024u * 1024u)
#define COFFER_NAME_MAX 256u
#define COFFER_SOCKET_ENV "COFFER_SOCKET"

typedef struct coffer coffer;
typedef struct coffer_secret coffer_secret;

COFFER_API size_t coffer_value_max(void);
COFFER_API const char *coffer_default_socket(void);

/* Connect to path, or $COFFER_SOCKET, or the default socket when path is NULL.
 * Before sending anything, checks that path is a socket owned by root, the
 * daemon user ($COFFER_DAEMON_USER, default "coffer") or the caller, and that
 * the peer process the kernel reports has one of those uids. */
COFFER_API COFFER_WUR int coffer_connect(coffer **out, const char *path);
/* The same with a timeout (ms, 0 = none) that covers connect() itself (a
 * daemon whose listen queue is full) and then every request, as
 * coffer_set_timeout. coffer_connect uses 60 s. */
COFFER_API COFFER_WUR int coffer_connect_timeout(coffer **out, const char *path, unsigned ms);
COFFER_API void coffer_disconnect(coffer *c);
/* Give up on a request after ms milliseconds without progress (0 = wait
 * forever; the default is 60 s). A timed-out request fails with -ETIMEDOUT
 * and leaves the connection unusable: reconnect. */
COFFER_API COFFER_WUR int coffer_set_timeout(coffer *c, unsigned ms);
/* Last error message of the calling thread; never NULL. */
COFFER_API const char *coffer_last_error(void);

/* Secret values live in guarded memory that is wiped when freed. */
COFFER_API const uint8_t *coffer_secret_data(const coffer_secret *s);
COFFER_API size_t coffer_secret_size(const coffer_secret *s);
COFFER_API uint64_t coffer_secret_version(const coffer_secret *s);
COFFER_API void coffer_secret_free(coffer_secret *s);

/* version 0 = the newest version; -ENOENT if it is deleted or destroyed (an
 * older version is returned only when asked for by number). */
COFFER_API COFFER_WUR int coffer_get(coffer *c, coffer_secret **out, const char *name, uint64_t version);
/* cas < 0: no check; cas = 0: the secret must not exist; cas > 0: current version must be cas.
 * max_versions 0 = leave as is. */
COFFER_API COFFER_WUR int coffer_put(coffer *c, uint64_t *version_out, const char *name, const void *value,
                                     size_t len, int64_t cas, uint64_t max_versions);
/* *names is a NULL-terminated array; free with coffer_strv_free. Returns the count. */
COFFER_API COFFER_WUR int coffer_list(coffer *c, char ***names, const char *prefix);
COFFER_API void coffer_strv_free(char **v);

typedef struct coffer_version {
        uint64_t version;
        uint64_t created;   /* unix seconds */
        uint64_t deleted;   /* unix seconds, 0 = live */
        int destroyed;
} coffer_version;
/* *out is malloc'd (free with free()); returns the count. */
COFFER_API COFFER_WUR int coffer_versions(coffer *c, coffer_version **out, const char *name);
/* Soft delete of version (0 = newest live). */
COFFER_API COFFER_WUR int coffer_delete(coffer *c, uint64_t *version_out, const char *name, uint64_t version);
COFFER_API COFFER_WUR int coffer_undelete(coffer *c, const char *name, uint64_t version);
COFFER_API COFFER_WUR int coffer_destroy(coffer *c, const char *name, uint64_t version);

typedef struct coffer_status {
        int initialized;
        int sealed;
        unsigned progress;   /* Shamir shares submitted */
        unsigned threshold;  /* shares needed; 1 for keyfile/passphrase */
        char method[16];     /* keyfile | passphrase | shamir | "" */
        char version[32];    /* daemon version */
        uint64_t term;       /* newest data-key term, 0 when sealed */
        /* Since when (unix seconds) the daemon has failed to rewrite the
         * revocation list / the JWKS it publishes; 0 = current. */
        uint64_t revocations_stale_since;
        uint64_t jwks_stale_since;
} coffer_status;
COFFER_API COFFER_WUR int coffer_status_get(coffer *c, coffer_status *st);

/* Operator. method: "keyfile", "passphrase" or "shamir".
 * init with keyfile/passphrase: key is the keyfile content (>= 32 bytes) or the passphrase.
 * init with shamir: key NULL; *shares_out receives n * COFFER_SHARE_SIZE bytes
 * (guarded memory, free with coffer_secret_free). */
#define COFFER_SHARE_SIZE 33u
COFFER_API COFFER_WUR int coffer_operator_init(coffer *c, coffer_secret **shares_out, const char *method,
                                               const void *key, size_t key_len, unsigned shares,
                                               unsigned threshold);
/* Submit a keyfile, passphrase or one share. On success st says whether the
 * daemon is now unsealed and the share progress. */
COFFER_API COFFER_WUR int coffer_operator_unseal(coffer *c, coffer_status *st, const void *key, size_t key_len);
COFFER_API COFFER_WUR int coffer_operator_seal(coffer *c);
COFFER_API COFFER_WUR int coffer_operator_rotate(coffer *c, uint64_t *term_out);
/* The daemon refuses to unseal a store older than the generation its audit
 * log anchors (-ESTALE). After a deliberate restore, accept the store as it
 * is: unseal is allowed again and the audit log anchors the store's
 * generation. Either output may be NULL. -EINVAL when there is nothing to accept. */
COFFER_API COFFER_WUR int coffer_operator_accept_rollback(coffer *c, uint64_t *store_gen, uint64_t *anchored_gen);

typedef struct coffer_identity {
        uint32_t uid, gid, pid;
        uint32_t ngroups;
        uint32_t groups[256];
        uint32_t audit_session;   /* UINT32_MAX = none */
        char user[64];
        char exe[4096];
        char unit[256];
        char login_session[64];
        char pin[32];             /* how the daemon pinned the process */
        char exe_file[64];        /* the running file, "MAJOR:MINOR:INODE"; "" = unknown */
        uint8_t exe_verified;     /* 1 = exe, looked up by the daemon, names that file */
        uint8_t foreign_namespace; /* 1 = another user namespace than the host's */
} coffer_identity;
COFFER_API COFFER_WUR int coffer_whoami(coffer *c, coffer_identity *id);

typedef struct coffer_audit_report {
        uint64_t records;
        uint64_t segments;
        uint64_t bad_line;   /* 0 = none */
        char reason[256];
} coffer_audit_report;
/* Verify the audit log read from fd (opened by the caller), or the daemon's
 * own log when fd < 0. Returns 0 when intact, -EBADMSG with r->bad_line set. */
COFFER_API COFFER_WUR int coffer_audit_verify(coffer *c, coffer_audit_report *r, int fd);

/* Policy. */
typedef struct coffer_subject {
        const char *user;            /* NULL = none */
        int64_t uid;                 /* < 0 = none */
        const char *const *groups;   /* group names */
        size_t ngroups;
        const char *unit;            /* NULL = none */
        const char *exe;             /* NULL = none */
        int session;                 /* inside a login session */
} coffer_subject;

typedef struct coffer_explanation {
        int allow;
        char rule[4097];             /* the deciding rule as written, "" = no rule matched */
        char file[4097];
        unsigned line;
} coffer_explanation;

/* May subject (NULL: the caller, as the daemon sees it) do action on object?
 * Asking about another subject needs admin on policy:explain. */
COFFER_API COFFER_WUR int coffer_policy_explain(coffer *c, coffer_explanation *out, const char *action,
                                                const char *object, const coffer_subject *subject);
/* Make the daemon reload its policy directory; *rules gets the rule count. */
COFFER_API COFFER_WUR int coffer_policy_reload(coffer *c, uint64_t *rules);


/* ---- Leases: everything handed out with a lifetime ----
 * A lease id is 32 lowercase hex characters (128 random bits). A caller sees
 * and manages its own leases; others' need admin on lease:KIND. */
#define COFFER_LEASE_ID_LEN 32u
typedef struct coffer_lease {
        char id[COFFER_LEASE_ID_LEN + 1];
        char kind[16];               /* session | token */
        char owner[256];             /* user name, or unit:NAME for a service */
        uint32_t owner_uid;
        char object[272];            /* e.g. token:inference-api, session:sshd */
        char parent[COFFER_LEASE_ID_LEN + 1]; /* "" = none */
        uint64_t issued;             /* unix seconds */
        uint64_t expires;
        uint64_t max_expires;        /* renewals never go past this */
        int renewable;
} coffer_lease;
/* all: every principal's leases (admin); otherwise the caller's own.
 * *out is malloc'd (free()); returns the count. A reply holds at most about
 * 768 KiB of records: *total (if not NULL) gets how many leases there are. */
COFFER_API COFFER_WUR int coffer_lease_list(coffer *c, coffer_lease **out, int all, uint64_t *total);
/* New expiry = now + ttl_sec (0: the lease's original TTL), capped at max_expires. */
COFFER_API COFFER_WUR int coffer_lease_renew(coffer *c, const char *id, uint64_t ttl_sec, uint64_t *expires_out);
/* Revoke a lease and everything issued under it; *revoked gets how many. */
COFFER_API COFFER_WUR int coffer_lease_revoke(coffer *c, const char *id, uint64_t *revoked);
/* Admin: revoke every lease whose KIND/OBJECT starts with prefix
 * (e.g. "token/", "token/token:inference-api", "session/"). */
COFFER_API COFFER_WUR int coffer_lease_revoke_prefix(coffer *c, const char *prefix, uint64_t *revoked);

/* ---- Login sessions (pam_coffer; the daemon serves these to uid 0 only) ----
 * The daemon opens a session lease for user, tied to the caller's kernel audit
 * session id (set by pam_loginuid), and materializes the credentials its login
 * map offers and its policy allows into a private directory owned by user
 * (0500, files 0400). Secret values never travel to the caller, except token
 * values when want_tokens is set (for the kernel keyring). */
typedef struct coffer_session_request {
        const char *user;
        const char *service;         /* PAM service, NULL = none */
        const char *tty;             /* NULL = none */
        const char *rhost;           /* NULL = none */
        uint64_t ttl_sec;            /* 0 = the daemon's default */
        int want_tokens;
} coffer_session_request;

typedef struct coffer_session_cred {
        char env[64];                /* variable that holds the path, e.g. HF_TOKEN_PATH */
        char path[4096];             /* the file inside the session directory */
        char object[272];            /* secret:hf/token or token:inference-api */
        coffer_secret *token;        /* the token itself when want_tokens, else NULL */
} coffer_session_cred;

typedef struct coffer_session {
        char id[COFFER_LEASE_ID_LEN + 1];
        char dir[4096];
        uint64_t expires;
        size_t ncreds;
        coffer_session_cred *creds;
        size_t ndenied;              /* offered by the login map but not delivered: not allowed
                                      * by policy, or the secret does not exist */
} coffer_session;
COFFER_API COFFER_WUR int coffer_session_open(coffer *c, coffer_session **out, const coffer_session_request *req);
COFFER_API void coffer_session_free(coffer_session *s);
/* Close the session with this id (when match->user is given, only if the
 * session is that user's); with id NULL, the newest open session of
 * match->user in the caller's audit session (and match->service/tty when
 * given). Revokes everything under it and removes its directory. Returns 1
 * when a session was closed, 0 when there was none (already closed). */
COFFER_API COFFER_WUR int coffer_session_close(coffer *c, const char *id, const coffer_session_request *match);

/* ---- Tokens: JWT signed with EdDSA (Ed25519, RFC 8037) ----
 * audience: [A-Za-z0-9._-/:]{1,255}. ttl_sec 0 = the policy bound or the
 * daemon default. The token is a lease child of the caller's login session
 * when it has one. */
COFFER_API COFFER_WUR int coffer_token_issue(coffer *c, coffer_secret **token, const char *audience,
                                             uint64_t ttl_sec, uint64_t *expires_out);
typedef struct coffer_token_info {
        int valid;                   /* signature, time, audience and lease all good */
        char status[32];             /* valid | expired | not-yet-valid | revoked | bad-signature |
                                      * unknown-key | wrong-audience | malformed */
        char reason[256];
        char sub[256];
        char aud[256];
        char jti[COFFER_LEASE_ID_LEN + 1];
        char sid[COFFER_LEASE_ID_LEN + 1];   /* coffer session, "" = none */
        char kid[64];
        uint64_t iat, nbf, exp;
} coffer_token_info;
/* Returns 0 with out->valid set either way (a bad token is an answer, not an
 * error); < 0 only when the daemon could not be asked. audience NULL = any. */
COFFER_API COFFER_WUR int coffer_token_verify(coffer *c, coffer_token_info *out, const char *token,
                                              const char *audience);
/* The JWKS document (malloc'd NUL-terminated JSON; free()). */
COFFER_API COFFER_WUR int coffer_token_jwks(coffer *c, char **json);
/* Admin: start signing with a new key; the old one stays published until its
 * tokens have expired. kid receives the new key id. */
COFFER_API COFFER_WUR int coffer_token_rotate(coffer *c, char kid[64]);

/* ---- Derived keys: per principal, from the master key, never stored ----
 * bytes 16..64. The same (principal, name) always gives the same key. */
COFFER_API COFFER_WUR int coffer_key_derive(coffer *c, coffer_secret **key, const char *name, size_t bytes);

/* ---- One-time grants: sudo-less delegation of one secret ----
 * A user whom policy allows `delegate` on secret:NAME creates a grant; another
 * principal (a batch job, a scheduler's service account) redeems it. The
 * grant string is "cgr1_" followed by base64url: high entropy, shown once,
 * stored by the daemon only as a hash. */
#define COFFER_GRANT_MAX 128u
typedef struct coffer_grant_request {
        const char *secret;          /* secret name */
        unsigned uses;               /* 0 = 1 */
        uint64_t ttl_sec;            /* 0 = the daemon's default (1 h) */
        const char *for_user;        /* only this user may redeem; NULL = anyone policy lets through */
        const char *for_unit;        /* only processes in a unit matching this glob; NULL = any */
} coffer_grant_request;
/* grant receives the grant string (NUL-terminated, COFFER_GRANT_MAX bytes
 * at most), id its lease id (for `coffer lease` and revoke). */
COFFER_API COFFER_WUR int coffer_grant_create(coffer *c, char grant[COFFER_GRANT_MAX], char id[COFFER_LEASE_ID_LEN + 1],
                                              uint64_t *expires_out, const coffer_grant_request *req);
/* Redeem once: *value receives the secret, name (if not NULL) its name.
 * -EACCES when the grant is for someone else, -ENOENT when it does not exist,
 * was used up, expired or was revoked (the message says which when known). */
COFFER_API COFFER_WUR int coffer_grant_redeem(coffer *c, coffer_secret **value, char name[COFFER_NAME_MAX + 1],
                                              const char *grant);
/* Revoke by grant string or by lease id; only its creator (or an admin). */
COFFER_API COFFER_WUR int coffer_grant_revoke(coffer *c, const char *grant_or_id);

#ifdef __cplusplus
}
#endif
