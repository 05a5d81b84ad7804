/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Request handlers of the lease-based engines: leases and login sessions
 * (session.c), tokens and derived keys (token.c), grants (grant.c). */
#pragma once

#include "ops.h"

int process_lease_list(struct request *r);
int process_lease_renew(struct request *r);
int process_lease_revoke(struct request *r);
int process_session_open(struct request *r);
int process_session_close(struct request *r);
int process_token_issue(struct request *r);
int process_token_verify(struct request *r);
int process_token_jwks(struct request *r);
int process_token_rotate(struct request *r);
int process_key_derive(struct request *r);
int process_grant_create(struct request *r);
int process_grant_redeem(struct request *r);
int process_grant_revoke(struct request *r);
