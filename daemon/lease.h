/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Leases: everything cofferd hands out with a lifetime. See DESIGN.md "Leases
 * and dynamic credentials".
 *
 * In memory: a hash table by id, a min-heap by expiry (one sd-event timer
 * watches its top), parent/child links for cascading revocation, and a count
 * of live leases per owner uid for the per-principal cap. In the store: one
 * row per lease, each with a MAC under a key derived from the master key, so
 * a row added or edited while cofferd was down is revoked, not believed.
 *
 * A revoked token or grant lease stays (marked revoked) until it would have
 * expired, so that `token verify`, the revocation list and a late redeem can
 * say "revoked" or "used up". */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "store.h"

enum lease_kind {
        LEASE_SESSION = 1,
        LEASE_TOKEN = 2,
        LEASE_GRANT = 3,
};

#define LEASE_ID_SIZE 16
#define LEASE_OBJECT_MAX 271
#define LEASE_OWNER_MAX 255

struct lease {
        uint8_t id[LEASE_ID_SIZE];
        uint8_t kind;              /* enum lease_kind */
        bool renewable;
        bool verified;             /* MAC checked (or written) under the current master key */
        bool data_interned;        /* data is shared (tokens: the key id), not owned */
        uint32_t owner_uid;
        uint32_t audit_session;    /* sessions: the kernel audit session; UINT32_MAX = none */
        const char *owner;         /* interned: user name or unit:NAME */
        char *object;
        char *data;                /* kind-specific text ("" = none) */
        uint64_t issued, expires, max_expires;
        uint64_t revoked;          /* 0 = live */
        struct lease *parent, *child, *next, *prev;
        uint32_t heap_idx;
};

struct lease_mgr;

/* Called for each lease as it is revoked or expires, children before their
 * parent. why: "revoked", "expired", "parent-revoked", "integrity". */
typedef void (*lease_revoke_fn)(void *ud, const struct lease *l, const char *why);

int lease_mgr_new(struct lease_mgr **out, struct store *st, lease_revoke_fn on_revoke, void *ud);
void lease_mgr_free(struct lease_mgr *m);

/* Load every lease from the store. Leases that expired while cofferd was down
 * are revoked now (their callbacks run), as are orphans whose parent is gone.
 * Returns the number of live leases or a negative errno. */
int lease_load(struct lease_mgr *m, uint64_t now);
/* Unsealed: key rows with a key derived from master; rows whose MAC does not
 * verify are revoked ("integrity"). Sealed: pass NULL. Returns how many were
 * revoked for integrity. */
int lease_set_master(struct lease_mgr *m, const uint8_t *master, uint64_t now);

/* The same in slices, so that the check (a MAC per row: ~1.5 s a million)
 * does not hold up other clients: begin derives the MAC key, each step
 * checks up to rows more rows (1: more to do, 0: all checked, < 0: error),
 * and lease_apply_check then keys the manager and revokes every lease no
 * good row vouched for. Rows written between steps are seen or not; a
 * revocation written while sealed fails its MAC and is believed. */
struct lease_check {
        int rc;
        bool done;
        struct lease_mgr *m;
        uint8_t *key;              /* the MAC key (sodium_malloc) */
        struct store_cursor cursor; /* the last row checked */
};
int lease_check_begin(struct lease_check *c, struct lease_mgr *m, const uint8_t master[static 32]);
int lease_check_step(struct lease_check *c, struct store *st, unsigned rows);
int lease_apply_check(struct lease_mgr *m, const uint8_t master[static 32], const struct lease_check *c,
                      uint64_t now);
void lease_check_free(struct lease_check *c);

struct lease_new {
        enum lease_kind kind;
        uint32_t owner_uid;
        const char *owner;
        const char *object;
        uint64_t ttl;              /* seconds */
        uint64_t max_ttl;          /* seconds, >= ttl */
        bool renewable;
        struct lease *parent;      /* NULL = none */
        uint32_t audit_session;
        const char *data;          /* NULL = "" */
};
/* -EDQUOT when owner_uid already has cap live leases (0 = no cap), -ENOKEY
 * when sealed. */
int lease_create(struct lease_mgr *m, const struct lease_new *n, unsigned cap, uint64_t now, struct lease **out);
struct lease *lease_find(struct lease_mgr *m, const uint8_t id[static LEASE_ID_SIZE]);
/* A request's transaction may roll back after leases were made in memory:
 * lease_mark before it, lease_undo after a rollback revokes what was created
 * since (their rows went with the rollback). */
void lease_mark(struct lease_mgr *m);
int lease_undo(struct lease_mgr *m, uint64_t now);
/* After a rollback, revocations made since lease_mark stay in force (they
 * were done in memory, and a session's directory is gone): write them again,
 * in a transaction of the caller's. How many, or the first error. */
int lease_redo_revocations(struct lease_mgr *m);
bool lease_revoked_since_mark(const struct lease_mgr *m);
/* The request is over: stop keeping track. */
void lease_unmark(struct lease_mgr *m);
/* new expiry = min(now + ttl, max_expires); -EPERM when not renewable, -ETIME
 * when it expired already (at or before now), revoked by the timer or not. */
int lease_renew(struct lease_mgr *m, struct lease *l, uint64_t ttl, uint64_t now);
/* Replace the kind-specific data (persisted, under the MAC). */
int lease_set_data(struct lease_mgr *m, struct lease *l, const char *data);
/* Revoke l and everything under it. Returns how many leases were revoked. */
int lease_revoke(struct lease_mgr *m, struct lease *l, const char *why, uint64_t now);
/* Revoke every live lease whose "KIND/OBJECT" starts with prefix. */
int lease_revoke_prefix(struct lease_mgr *m, const char *prefix, uint64_t now);
/* Revoke up to max leases that have expired by now; returns how many. */
int lease_expire(struct lease_mgr *m, uint64_t now, unsigned max);
/* Earliest expiry among all entries (live or kept-revoked), UINT64_MAX if none. */
uint64_t lease_next_expiry(const struct lease_mgr *m);

/* Iterate over the kept-revoked entries only (revoked tokens and grants). */
int lease_foreach_revoked(struct lease_mgr *m, int (*fn)(void *ud, struct lease *l), void *ud);
/* Iterate over the live session leases only; fn must not create or revoke. */
int lease_foreach_session(struct lease_mgr *m, int (*fn)(void *ud, struct lease *l), void *ud);
/* Iterate over all entries (live and kept-revoked). Stops at a non-zero return. */
int lease_foreach(struct lease_mgr *m, int (*fn)(void *ud, struct lease *l), void *ud);
size_t lease_count(const struct lease_mgr *m);          /* live */
unsigned lease_count_owner(const struct lease_mgr *m, uint32_t uid);
/* Revoked tokens and grants of uid still kept (they count toward the cap). */
unsigned lease_count_owner_kept(const struct lease_mgr *m, uint32_t uid);
/* A live session lease of uid bound to audit session asid, or NULL. */
struct lease *lease_session_of(struct lease_mgr *m, uint32_t asid, uint32_t uid, uint64_t now);

const char *lease_kind_name(uint8_t kind);
int lease_kind_from_name(const char *name);
void lease_id_hex(const uint8_t id[static LEASE_ID_SIZE], char out[static 33]);
int lease_id_parse(const char *hex, uint8_t id[static LEASE_ID_SIZE]);
