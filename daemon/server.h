/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The event loop: one sd-event loop, non-blocking connections, frames in and
 * out, limits so that one client cannot starve the others. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-event.h>

#include "audit.h"
#include "config.h"
#include "lease.h"
#include "policy.h"
#include "seal.h"
#include "store.h"
#include "subuid.h"

struct conn;

struct peer;
struct opener;
struct unseal_job;
struct pending;

/* Who limits count against: a uid, the owner of a range of subordinate uids
 * or of the user namespaces a peer is in, or one namespace made by root. */
struct principal {
        uint64_t key;
        unsigned n;        /* live connections */
        size_t pinned;     /* bytes of its connections' input and output buffers */
};

struct cofferd {
        struct config cfg;
        char config_path[4096];
        bool config_required;
        char audit_path[4096];
        struct policy *policy;     /* never NULL: an empty policy denies everything */
        uid_t self_uid;
        sd_event *event;
        int listen_fd;
        sd_event_source *listen_src;
        sd_event_source *sweep_src;
        struct store *store;
        struct seal seal;
        struct audit *audit;
        struct budget *budget;     /* what each uid may still make it write */
        struct conn *conns_head;   /* least recently active first */
        struct conn *conns_tail;
        unsigned nconns;
        struct principal *principals;
        unsigned nprincipals;
        size_t pinned;             /* buffer bytes of all connections */
        unsigned starved;          /* connections not read until buffer memory is freed */
        struct subuid_map subuids;
        struct worker *worker;     /* slow work off the loop (worker.h); NULL = none, do it inline */
        struct unseal_job *unsealing; /* the unseal running (ops.c), NULL = none */
        struct pending *pending;   /* requests answered later (ops.c) */
        uint64_t requests;
        /* Leases and the engines built on them. */
        struct lease_mgr *leases;
        sd_event_source *lease_src;        /* CLOCK_REALTIME: the earliest expiry */
        uint64_t lease_armed;              /* the expiry lease_src is set for; 0 = not yet */
        sd_event_source *session_check_src;
        struct opener **openers;           /* processes that opened login sessions */
        size_t nopeners;
        unsigned session_quick;            /* quick checks left after an opener exited */
        char (*rm_pending)[33];            /* session directories still being removed */
        size_t nrm_pending;
        sd_event_source *rm_src;
        struct login_map *login;           /* NULL = nothing is delivered at login */
        struct tokens *tokens;
        char runtime_dir[4096];            /* default home of the runtime files */
        char session_dir[4096];
        char jwks_path[4096];
        char revocation_path[4096];
        bool revlist_dirty;                /* a token was revoked: rewrite the list (cleared once written) */
        struct {
                unsigned count;            /* leases expired in the current backlog */
                uint64_t start, longest;   /* monotonic µs */
        } expiry_run;
        /* The systemd credential responder (creds.c). */
        char creds_path[108];              /* "" = not served */
        int creds_fd;                      /* -1 = none */
        sd_event_source *creds_src;
        struct creds_conn *creds_conns;
        struct creds_map *creds_map;       /* NULL = names map to secrets of the same name */
        unsigned maps_from_args;           /* 1: --login-map, 2: --creds-map (kept over reloads) */
        bool creds_map_broken;             /* the creds map never loaded: serve no credential */
        /* The store is older than the generation the audit log anchors: no
         * unseal until `coffer operator accept-rollback`. */
        bool rollback_held;
};

/* Watch the process that opened a login session (pam_coffer runs in sshd's
 * session process): when it exits, sessions are checked for an end within a
 * second or so, not at the next sweep. One watch per process, at most
 * OPENERS_MAX; past that, the sweep alone. */
void server_watch_opener(struct cofferd *d, const struct peer *p);
#define OPENERS_MAX 4096

/* One line to the daemon's log (stderr: the journal under systemd). */
void server_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int server_start(struct cofferd *d);
/* The store became unsealed (audit chain on the master key, leases checked,
 * token keys derived) or sealed (keys wiped, a new sealed audit segment).
 * check: the lease rows checked off the loop; NULL = check them now. */
struct lease_check;
int server_unsealed(struct cofferd *d, const struct lease_check *check);
int server_sealed(struct cofferd *d);
/* At start: is the store older than the generation the audit log anchors
 * (restored from an older copy)? Then hold it: logged, audited, no unseal. */
void server_check_rollback(struct cofferd *d);
/* Why unseal is refused (a held rollback), or NULL. */
const char *server_rollback_refusal(const struct cofferd *d, char *buf, size_t n);
/* Let the audit records anchor the store's generation (not while held);
 * committing: the request's transaction is about to commit. */
void server_anchor(struct cofferd *d, bool committing);
/* Re-arm the lease timer after leases changed; write the revocation list if
 * it changed (tokens_refresh). Called after every request. */
void server_leases_changed(struct cofferd *d);
void server_stop(struct cofferd *d);
/* Re-read the configuration and the policy (SIGHUP); the old ones stay on error. */
void server_reload(struct cofferd *d);
/* (Re)load the login map; on error the old one stays. */
int server_load_login_map(struct cofferd *d);
int server_load_creds_map(struct cofferd *d);
/* Load the policy dir; on success replace the policy in force. Returns the
 * rule count or -errno with err set (file:line:col). An empty policy is
 * refused (-ENODATA) unless allow_empty: a reload must not silently turn
 * into deny-all. */
int server_load_policy(struct cofferd *d, bool allow_empty, char *err, size_t errsz);
