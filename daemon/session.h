/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Login sessions: directories, the end of a session, the revoke hook. */
#pragma once

#include <stdint.h>

#include "lease.h"

struct cofferd;

/* Create the session directory root if needed and check it; warns when it is
 * not in memory (tmpfs/ramfs). */
int session_root_prepare(struct cofferd *d);
/* Remove SESSION_DIR/HEX and everything in it: a first slice now, the rest
 * (a directory its user filled) in slices between requests. */
int session_dir_remove(struct cofferd *d, const char *hex);
/* Start the pending removals (once the event loop exists); free them. */
void session_rm_arm(struct cofferd *d);
void session_rm_free(struct cofferd *d);
/* Remove what is in the session directory root without an open session
 * (left by a daemon stopped while removing); how many. */
int session_dirs_orphaned(struct cofferd *d);
/* lease_revoke_fn: a session's directory goes with it; a revoked token
 * marks the revocation list for rewriting. ud is the daemon. */
void engines_on_revoke(void *ud, const struct lease *l, const char *why);
/* Revoke sessions whose kernel audit session has no process left. Returns
 * how many leases were revoked. */
int session_check_ended(struct cofferd *d);
/* The kernel's boot id ("" if unreadable). */
void boot_id(char out[static 40]);
/* KEY=NUMBER from a lease's data lines, or dflt. */
uint64_t lease_data_u64(const char *data, const char *key, uint64_t dflt);
/* Revoke session leases opened in an earlier boot. */
int session_revoke_other_boots(struct cofferd *d);
