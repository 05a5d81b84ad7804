/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Request handlers: one dispatcher, one short process_* function per opcode. */
#pragma once

#include <stdbool.h>

#include "peer.h"
#include "policy.h"
#include "server.h"
#include "wire.h"

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
};

/* Handle one request and leave exactly one reply frame in r->out. Returns 0,
 * or -EPROTO when the connection must be dropped after the reply. */
int ops_dispatch(struct request *r);
/* Audit a frame that was refused before dispatch (malformed, over a limit). */
int ops_audit_refused(struct cofferd *d, const struct peer *peer, uint16_t opcode, int code);
/* Build an error reply in w for request id (used for frames that never parse). */
void ops_error_frame(struct wire_writer *w, uint32_t id, int code, const char *msg);
