/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Audit: one record per request, allowed or denied, written before the reply.
 * Records go to an append-only JSON-lines file, chained with a keyed MAC, and
 * to journald. Never a secret value. If the file record cannot be written the
 * caller must fail the request. See docs/PROTOCOL.md "Audit log". */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "peer.h"

struct audit;

struct audit_event {
        const char *op;        /* e.g. "get" */
        const char *object;    /* e.g. "secret:hf/token", may be NULL */
        const char *decision;  /* "allow" or "deny" */
        const char *rule;      /* what decided, may be NULL */
        int result;            /* 0 or -errno */
        uint64_t version;      /* 0 = none */
        const struct peer *peer; /* may be NULL for daemon events */
        const char *lease;     /* lease id involved, NULL = none */
        const char *detail;    /* short context (never a secret), NULL = none */
};

/* Opens/creates path (0600, O_APPEND). Reads the last record to continue the
 * chain. Starts a sealed segment: a fresh random segment key, stored in the
 * segment's first record sealed (crypto_box_seal) to box_pk, or with no key
 * at all when box_pk is NULL (store not yet initialized). */
int audit_open(struct audit **out, const char *path, const uint8_t *box_pk);
void audit_close(struct audit *a);
/* Why audit_open refused: a phrase for the operator ("it is a symbolic link"),
 * or strerror for errors that are not a refusal. */
const char *audit_strerror(int rc);
/* Start a new segment keyed with the master-derived MAC key (after unseal/init). */
int audit_unsealed(struct audit *a, const uint8_t mac_key[static 32]);
/* Start a new sealed segment (after seal). */
int audit_sealed(struct audit *a, const uint8_t box_pk[static 32]);
int audit_record(struct audit *a, const struct audit_event *ev);
/* The store generation anchored outside the store: every record carries the
 * one last set (see store_generation_durable); audit_open takes it from the
 * log's last record, 0 for a log that has none. */
uint64_t audit_generation(const struct audit *a);
void audit_set_generation(struct audit *a, uint64_t gen);
/* Bytes free for the log on its file system (statvfs f_bavail). */
int audit_free_space(const struct audit *a, uint64_t *bytes);
/* The chain head, so a verifier can detect truncation of the live log. */
void audit_head(const struct audit *a, uint64_t *seq, uint8_t mac[static 32]);

struct audit_report {
        uint64_t records;      /* records (lines) that verified, segment starts included */
        uint64_t segments;
        uint64_t unkeyed;      /* segments written before init: hashed, not keyed */
        uint64_t unendorsed;   /* trailing records no master-keyed record vouches for
                                * (written while sealed: see docs/AUDIT.md) */
        uint64_t bad_line;     /* 1-based line of the first problem, 0 = none */
        uint64_t last_seq;
        uint8_t last_mac[32];
        char reason[256];      /* what is wrong at bad_line */
};

/* A verification in slices, so that the event loop serves others between
 * them: begin reads at most size bytes of fd (from its start); each step
 * reads at most budget bytes and returns 1 while there is more, 0 when done,
 * or -errno on a read error; end gives the result as audit_verify_fd does
 * and frees. free alone abandons it. The keys must outlive it. */
struct audit_verify;
int audit_verify_begin(struct audit_verify **out, int fd, uint64_t size, const uint8_t mac_key[static 32],
                       const uint8_t box_pk[static 32], const uint8_t box_sk[static 32]);
int audit_verify_step(struct audit_verify *av, size_t budget);
int audit_verify_end(struct audit_verify *av, struct audit_report *rep);
void audit_verify_free(struct audit_verify *av);

/* Verify a log read from fd, to its end. Returns 0 if every record verifies, -EBADMSG with
 * rep->bad_line/reason set otherwise, or another -errno on read failure. */
int audit_verify_fd(int fd, const uint8_t mac_key[static 32], const uint8_t box_pk[static 32],
                    const uint8_t box_sk[static 32], struct audit_report *rep);
