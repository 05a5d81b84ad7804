/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The seal: the master key, the methods that unwrap it, and the keyring it
 * wraps. Sealed, only status and unseal are served. See DESIGN.md "Keys and
 * the seal" and docs/PROTOCOL.md. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "keyring.h"
#include "proto.h"
#include "store.h"

struct seal {
        bool initialized;
        char method[16];           /* keyfile | passphrase | shamir */
        unsigned shares;           /* shamir n */
        unsigned threshold;        /* shamir k; 1 otherwise */
        struct keyring *kr;        /* non-NULL iff unsealed (sodium_malloc) */
        uint8_t *master;           /* 32 bytes, non-NULL iff unsealed (sodium_malloc) */
        uint8_t *pending;          /* shamir shares so far (sodium_malloc) */
        unsigned npending;
        bool has_audit_pk;
        uint8_t audit_pk[32];
        unsigned seals;            /* times sealed: an unseal begun before a seal must not finish */
};

static inline bool seal_is_sealed(const struct seal *s) { return s->kr == NULL; }

/* Read the seal configuration from the store. */
int seal_load(struct seal *s, struct store *st);
/* Initialize a new store and leave it unsealed. For shamir, *shares receives
 * n * PROTO_SHARE_SIZE bytes in sodium_malloc memory (caller sodium_free's). */
int seal_init(struct seal *s, struct store *st, const struct req_seal *r, uint8_t **shares);
/* Submit a keyfile, passphrase or share. 0 = unsealed; 1 = share accepted,
 * more needed; -EKEYREJECTED = wrong key (shamir progress is reset). */
int seal_unseal(struct seal *s, struct store *st, const uint8_t *key, size_t len, const char **why);
/* The same in three steps, so that the slow one (Argon2id) runs off the
 * event loop: begin reads what it needs from the store (and takes a Shamir
 * share: 1 = more needed, no unwrap made; 0 with *u NULL = already
 * unsealed); run touches only u (any thread); finish opens the keyring and
 * installs the master key. seal_unwrap_master is the key once run has
 * succeeded (for the lease check), NULL otherwise. */
struct seal_unwrap;
int seal_unwrap_begin(struct seal *s, struct store *st, const uint8_t *key, size_t len, struct seal_unwrap **u,
                      const char **why);
void seal_unwrap_run(struct seal_unwrap *u);
const uint8_t *seal_unwrap_master(const struct seal_unwrap *u);
int seal_unwrap_finish(struct seal *s, struct store *st, struct seal_unwrap *u, const char **why);
void seal_unwrap_free(struct seal_unwrap *u);
/* Wipe every key now. */
void seal_seal(struct seal *s);
/* Add a data-key term; new values use it, old values stay readable. */
int seal_rotate(struct seal *s, struct store *st, uint32_t *term);
void seal_free(struct seal *s);
