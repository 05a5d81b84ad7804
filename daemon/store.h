/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The store: SQLite in the state dir, treated as untrusted storage. Every
 * value is sealed with XChaCha20-Poly1305 under a keyring term, with associated
 * data binding it to its table, name, version and term, so a moved, swapped
 * or altered row fails to decrypt (-EBADMSG) rather than returning wrong data.
 *
 * All functions return 0 (or a positive count) or a negative errno:
 *   -ENOENT no such secret/version/meta key, -EBADMSG integrity failure,
 *   -ESTALE check-and-set mismatch, -ENOSPC disk full, -EROFS read-only,
 *   -EIO other storage failure, -EINVAL bad argument, -E2BIG too large. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keyring.h"
#include "proto.h"

#define STORE_SCHEMA_VERSION 1
#define STORE_DEFAULT_MAX_VERSIONS 10
#define STORE_DB_NAME "coffer.db"

struct store;

/* Opens (creating if needed) STATE_DIR/coffer.db in WAL mode, synchronous=FULL,
 * checks/creates the schema. A database with a newer schema version is refused. */
int store_open(struct store **out, const char *state_dir);
void store_close(struct store *s);
/* Human-readable text of the last SQLite failure (no secret data).
 * store_errmsg(NULL) says why the last store_open failed. */
const char *store_errmsg(const struct store *s);

/* Small plaintext-or-already-sealed blobs: seal config, wrapped keys, keyring. */
int store_meta_get(struct store *s, const char *key, uint8_t **val, size_t *len); /* malloc'd */
int store_meta_put(struct store *s, const char *key, const void *val, size_t len);
int store_begin(struct store *s);
/* A transaction whose loss on power failure (not on a crash) fails safe:
 * it commits without fsync (WAL, synchronous=NORMAL); the next full commit
 * or checkpoint makes it durable. For new leases and expiries only. */
int store_begin_relaxed(struct store *s);
int store_commit(struct store *s);
void store_rollback(struct store *s);

/* The generation: a counter in meta that every committed write transaction
 * bumps (0 for a store made before it existed). The daemon anchors it outside
 * the store, so an older copy of the file put back is told from the live one;
 * see docs/THREAT-MODEL.md "Rollback of the store". */
uint64_t store_generation(const struct store *s);
/* What an anchor may record now, so that no crash or power cut leaves the
 * store behind it: with committing, inside a fully synced transaction that
 * is about to commit, the generation it commits; otherwise the last
 * generation whose commit waited for fsync. */
uint64_t store_generation_durable(const struct store *s, bool committing);
/* While held, writes do not bump the generation: a store found older than
 * its anchor must not catch up by restarts alone. */
void store_hold_generation(struct store *s, bool hold);

/* Secrets. now = unix seconds (the caller's clock, so tests can fix it). */
int store_secret_put(struct store *s, const struct keyring *k, const char *name,
                     const uint8_t *val, size_t len, bool has_cas, uint64_t cas,
                     uint64_t max_versions, uint64_t now, uint64_t *version_out);
/* version 0 = the newest version, -ENOENT if that one is deleted or destroyed
 * (an older value never comes back by itself). *val is malloc'd; the caller
 * wipes and frees. */
int store_secret_get(struct store *s, const struct keyring *k, const char *name,
                     uint64_t version, uint8_t **val, size_t *len, uint64_t *version_out);
/* Names whose newest version is live, starting with prefix, sorted. */
int store_secret_list(struct store *s, const char *prefix, char ***names, size_t *n);
int store_secret_versions(struct store *s, const char *name, struct proto_version **v, size_t *n);
/* Soft-delete version (0 = newest live). */
int store_secret_delete(struct store *s, const char *name, uint64_t version, uint64_t now,
                        uint64_t *version_out);
int store_secret_undelete(struct store *s, const char *name, uint64_t version);
/* Remove the ciphertext for good; the version row stays, marked destroyed. */
int store_secret_destroy(struct store *s, const char *name, uint64_t version);
void store_strv_free(char **v, size_t n);

/* Leases (metadata only; no secret in them). mac binds every other column
 * under a key derived from the master key: see lease.c. */
struct store_lease {
        uint8_t id[16];
        const char *kind;
        const char *owner;
        uint32_t owner_uid;
        const char *object;
        bool has_parent;
        uint8_t parent[16];
        uint64_t issued, expires, max_expires;
        bool renewable;
        uint32_t audit_session;
        const char *data;
        uint64_t revoked;          /* unix seconds, 0 = live */
        uint8_t mac[32];
};
/* Insert or replace by id. */
int store_lease_put(struct store *s, const struct store_lease *l);
int store_lease_delete(struct store *s, const uint8_t id[static 16]);
/* Call cb for every row (pointers valid during the call); stops at cb's
 * first negative return. Returns the row count or a negative errno. */
int store_lease_load(struct store *s, int (*cb)(void *ud, const struct store_lease *l), void *ud);
/* The same for at most limit rows after *cursor (start from a zeroed one),
 * in id order; *cursor moves to the last row read. Returns the rows read
 * (0: no more), so a long scan can be sliced between other work. */
struct store_cursor {
        bool started;
        uint8_t id[16];
};
int store_lease_slice(struct store *s, struct store_cursor *cursor, unsigned limit,
                      int (*cb)(void *ud, const struct store_lease *l), void *ud);
