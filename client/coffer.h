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
COFFER_API void coffer_disconnect(coffer *c);
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

#ifdef __cplusplus
}
#endif
