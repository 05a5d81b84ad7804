/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Request handlers: one dispatcher, one short process_* function per opcode. */
#pragma once

#include <stdbool.h>

#include "peer.h"
#include "policy.h"
#include "server.h"
#include "wire.h"

/* A request answered later: its handler started work that takes long (an
 * unseal's Argon2id on the worker thread and its lease check, an audit
 * verify, both in slices that take turns with other clients).
 * ops_dispatch returns 1 and sets r->later; the connection layer fills in
 * deliver and ctx and reads no further request of that connection
 * meanwhile. deliver is called once, on the loop, with the reply (its audit
 * record already written), or with NULL when the daemon stops first. The
 * connection layer sets ctx to NULL if the connection goes away: nothing is
 * sent then. */
struct later {
        void (*deliver)(void *ctx, const struct wire_writer *reply);
        void *ctx;
};

struct request {
        struct cofferd *d;
        const struct peer *peer;
        int peer_rc;               /* < 0: identity could not be confirmed */
        const struct wire_msg *msg;
        int fd;                    /* passed with SCM_RIGHTS, -1 if none; owned by the caller */
        struct wire_writer *out;   /* reply frame, begun by the dispatcher */
        char err[512];             /* message of an error reply */
        char object[PROTO_NAME_MAX + 16];
        enum pol_action action;
        const char *rule;          /* what decided, for the audit record */
        char rule_buf[256];
        uint64_t version;
        bool in_tx;
        bool denied;               /* refused, though not with -EACCES (e.g. "not yours" as -ENOENT) */
        char lease[33];            /* lease id for the audit record, "" = none */
        char detail[640];          /* audit context, never a secret */
        struct later *later;       /* set when the reply comes later */
};

/* Handle one request and leave exactly one reply frame in r->out. Returns 0,
 * 1 when the reply comes later (r->later), or -EPROTO when the connection
 * must be dropped after the reply. */
int ops_dispatch(struct request *r);
/* The daemon stops: drop work still pending (an unseal's lease check). */
void ops_stop(struct cofferd *d);
/* Audit a frame that was refused before dispatch (malformed, over a limit). */
int ops_audit_refused(struct cofferd *d, const struct peer *peer, uint16_t opcode, int code);
/* Build an error reply in w for request id (used for frames that never parse). */
void ops_error_frame(struct wire_writer *w, uint32_t id, int code, const char *msg);

/* For the engines' handlers (session.c, token.c). */
int ops_fail(struct request *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Authorize the caller for action on object (policy, plus the daemon's uid);
 * 0 or a negative errno with the error text set. dec receives the decision
 * (for ttl/uses bounds) when not NULL. */
int ops_authorize(struct request *r, enum pol_action a, const char *object, struct pol_decision *dec);
/* Evaluate without failing the request: 1 allowed, 0 denied, < 0 error. */
int ops_decide(struct request *r, enum pol_action a, const char *object, struct pol_decision *dec);
/* Evaluate for a user (by uid/gid and their groups) in a login session. */
int ops_decide_user(struct request *r, uid_t uid, gid_t gid, const char *user, enum pol_action a,
                    const char *object, struct pol_decision *dec);
/* The same with the unit, exe and login session a subject was attested with
 * (a grant's creator, as they were when they made it). */
int ops_decide_user_as(struct request *r, uid_t uid, gid_t gid, const char *user, const char *unit, const char *exe,
                       bool in_login_session, enum pol_action a, const char *object, struct pol_decision *dec);
/* Fail with the store's error for what ("write", "read"...). */
int ops_store_fail(struct request *r, int rc, const char *what);
/* -EDQUOT for uid's lease cap, saying what it holds. who: "you", "user NAME". */
int ops_cap_fail(struct request *r, uint32_t uid, const char *who);
bool ops_is_admin(struct request *r, const char *object);
/* The caller is in another user namespace than the host's and the
 * configuration does not trust exe and unit there. */
bool ops_foreign_distrusted(const struct request *r);
