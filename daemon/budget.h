/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What one principal can make the daemon write to its audit log. Every
 * request is recorded before its reply, so a flood of requests is a flood of
 * records: each uid has a rate (a GCRA token bucket, audit_rate_per_uid and
 * audit_burst), and near a full file system (audit_reserve_mb) only the
 * exempt callers (root, which pam_coffer runs as, and the daemon's own uid)
 * are served, so that the space left is theirs. A refused request gets its
 * error reply but no record of its own: it did nothing. The refusals are
 * counted and written as one summary record per uid per second. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "audit.h"
#include "config.h"

struct budget;

int budget_new(struct budget **out);
void budget_free(struct budget *b);
/* May a request of uid be served (and recorded) now? 0: yes; -EAGAIN: over
 * its rate; -ENOSPC: the audit log's file system is below the reserve. A
 * refusal is counted for the summary, and why set to what the caller is
 * told. The free space is looked up at most once a second. */
int budget_take(struct budget *b, const struct config *cfg, struct audit *a, uint64_t key, bool exempt,
                uint64_t now_usec, char *why, size_t whysz);
/* Once a second: the summaries of the refusals (kept for the next tick if
 * the log cannot be written), the free-space warning, and uids whose bucket
 * is full again forgotten. */
void budget_tick(struct budget *b, const struct config *cfg, struct audit *a, uint64_t now_usec);
