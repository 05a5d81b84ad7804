/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The token engine: JWTs signed with Ed25519 keys derived from the master key
 * (never stored), their JWKS, and the revocation list. And derived keys. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "jwt.h"
#include "lease.h"

struct cofferd;
struct tokens;

/* The paths are kept (not copied): they live as long as the daemon. */
int tokens_new(struct tokens **out, const char *jwks_path, const char *revocation_path);
void tokens_free(struct tokens *t);
/* Derive the signing keys (creating the first one in a new store) and
 * publish the JWKS. */
int tokens_unsealed(struct cofferd *d);
/* Write jwks.json and revoked.json when they changed (a retired key's time
 * is up, d->revlist_dirty), are older than publish_interval, or a write
 * failed and its retry is due. Cheap; call often (after every request and
 * from the 1 s sweep). */
void tokens_refresh(struct cofferd *d);
/* Status fields: since when each file is stale, only while it is. */
struct wire_writer;
void tokens_put_status(const struct cofferd *d, struct wire_writer *w);
/* Warn when a published file shares the session directories' file system. */
void tokens_check_placement(const struct cofferd *d);
/* Wipe the signing keys. */
void tokens_sealed(struct cofferd *d);

struct token_subject {
        uint32_t uid;
        const char *sub;           /* user name, or the unit for a service */
        const char *unit;          /* "" = none */
};
/* Sign a token for aud living ttl seconds (bounded by parent), under a new
 * token lease (child of parent when given). out gets the JWT. */
int token_mint(struct cofferd *d, const struct token_subject *s, const char *aud, uint64_t ttl,
               struct lease *parent, char *out, size_t outsz, struct lease **lease_out);
