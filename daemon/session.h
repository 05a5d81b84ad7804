/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Login sessions: directories, the end of a session, the revoke hook. */
#pragma once

#include "lease.h"

struct cofferd;

/* Create the session directory root if needed and check it; warns when it is
 * not in memory (tmpfs/ramfs). */
int session_root_prepare(struct cofferd *d);
/* Remove SESSION_DIR/HEX and everything in it. */
int session_dir_remove(struct cofferd *d, const char *hex);
/* lease_revoke_fn: a session's directory goes with it; a revoked token
 * marks the revocation list for rewriting. ud is the daemon. */
void engines_on_revoke(void *ud, const struct lease *l, const char *why);
/* Revoke sessions whose kernel audit session has no process left. Returns
 * how many leases were revoked. */
int session_check_ended(struct cofferd *d);
