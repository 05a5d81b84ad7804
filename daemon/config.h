/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* cofferd configuration: defaults, then the config file, then the command line. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct config {
        char socket[108];
        char state_dir[PATH_MAX];
        char audit_log[PATH_MAX];      /* "" = STATE_DIR/audit.log */
        char policy_dir[PATH_MAX];
        unsigned max_connections;
        unsigned max_connections_per_uid; /* per principal: a uid, or the owner of its subuids */
        unsigned root_reserved_connections; /* the last of max_connections are for uid 0 only */
        unsigned max_buffered_per_uid_mib;  /* buffer memory one principal may pin */
        unsigned max_buffered_mib;          /* ... and all connections together */
        char subuid_file[PATH_MAX];         /* subordinate uid ranges; "" = none */
        unsigned idle_timeout_sec;     /* no complete frame for this long: close */
        /* Runtime files; "" = next to the socket (RUNTIME/sessions, RUNTIME/jwks.json,
         * RUNTIME/revoked.json). */
        char session_dir[PATH_MAX];
        char jwks_path[PATH_MAX];
        char revocation_list[PATH_MAX];
        char login_map[PATH_MAX];      /* what a login session gets; "" = nothing */
        char creds_socket[108];        /* systemd LoadCredential= socket; "" = RUNTIME/creds.sock, "none" = off */
        char creds_map[PATH_MAX];      /* credential name -> secret; "" = same names */
        /* Host units (globs, blank-separated) whose nested units the creds
         * socket trusts: systemd in a container, e.g. "machine-*.scope". */
        char creds_containers[1024];
        /* exe: and unit: rules may match callers in another user
         * namespace than the host's (containers, unshare -Urm). */
        bool allow_foreign_namespaces;
        char token_issuer[256];        /* "" = coffer@HOSTNAME */
        unsigned session_ttl_sec;      /* default and maximum session lease */
        unsigned token_ttl_sec;        /* default token lifetime */
        unsigned token_max_ttl_sec;    /* no token lives longer, whatever policy says */
        unsigned max_leases_per_uid;   /* live leases one uid may hold; 0 = no cap */
        unsigned session_check_sec;    /* how often ended login sessions are looked for; 0 = never */
        unsigned publish_interval_sec; /* jwks.json and revoked.json are rewritten at least this often */
        unsigned audit_verify_max_mb;  /* the largest file `coffer audit verify` takes */
        /* What one uid can make the audit log grow by (budget.h): requests a
         * second and at once (0: no limit), and free space at which a warning
         * is logged and below which only root and the daemon's uid are served. */
        unsigned audit_rate_per_uid;
        unsigned audit_burst;
        unsigned audit_warn_free_mb;
        unsigned audit_reserve_mb;
};

void config_defaults(struct config *c);
/* Parse FILE into c (over what is there). A missing file is fine only when
 * !required. Refuses a file not owned by root or the daemon's uid, or
 * writable by group or others. On error, *err says where and what. */
int config_load(struct config *c, const char *path, bool required, char *err, size_t errsz);
/* Refuse a path (file or directory) that group or others may write, or that is
 * owned by someone other than root or uid. */
int check_owner_mode(const char *path, uid_t uid, char *err, size_t errsz);
/* The same for a file already opened (no window between check and read). */
int check_owner_mode_fd(int fd, const char *path, uid_t uid, char *err, size_t errsz);
/* Append a line to an error text that collects every problem found. */
void err_append(char *err, size_t errsz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Read a small file that must be owned by root or self and not group/world-
 * writable (checked on the opened file). 1 with *text malloc'd, 0 when it
 * does not exist, or a negative errno with err set. */
int read_trusted_file(const char *path, uid_t self, uint8_t **text, size_t *len, char *err, size_t errsz);
/* Lines of blank-separated words; '#' starts a comment. For each line with
 * words, fn gets them (n = maxw + 1 when there are more than maxw; only the
 * first maxw are in w) and returns 0, or < 0 with why set. Every problem is
 * reported as "NAME:LINE: why" in err. 0, or -EINVAL if any line failed. */
typedef int (*line_fn)(void *ud, char **w, size_t n, char *why, size_t whysz);
int parse_word_lines(const char *name, const char *text, size_t len, size_t maxw, line_fn fn, void *ud, char *err,
                     size_t errsz);
/* The same over a trusted file (read_trusted_file); "" or a missing file:
 * no lines, 0. */
int parse_word_file(const char *path, uid_t self, size_t maxw, line_fn fn, void *ud, char *err, size_t errsz);
