/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The systemd credential responder: LoadCredential=NAME:/run/coffer/creds.sock.
 *
 * systemd (a root helper in the unit's cgroup) connects from a socket bound
 * to the abstract address "\0<random>/unit/<unit>/<credential>", shuts down
 * its write side and reads the credential until EOF. The address is only a
 * routing hint: cofferd requires peer uid 0 and that the kernel puts the
 * peer in that very unit, then maps the credential name to a secret (creds
 * map, else the secret of the same name) and asks the policy about the unit.
 * systemd cannot be told "no": a refusal writes nothing, and is audited and
 * logged loudly. */
#pragma once

#include <stddef.h>
#include <sys/types.h>

#include "proto.h"

struct cofferd;

#define CREDS_MAP_MAX 256
#define CREDS_VALUE_MAX (1024u * 1024u)   /* systemd's CREDENTIAL_SIZE_MAX */
#define CREDS_NAME_MAX 255

/* "\0RANDOM/unit/UNIT/CRED" (len bytes, not NUL-terminated) -> unit, cred.
 * 0, or -EINVAL when it is not in that form. */
int creds_parse_address(const char *addr, size_t len, char unit[static 256], char cred[static CREDS_NAME_MAX + 1]);

/* The units a process runs in, from the text of its /proc/PID/cgroup as the
 * host sees it (the unified hierarchy, else name=systemd): in *unit the
 * deepest .service or .scope of its path, in *outer the first. They differ
 * when units are nested: systemd inside a container (cgroup namespace) puts
 * its units under the container's scope, e.g.
 * .../machine-x.scope/payload/system.slice/trainer@1.service, and the
 * container's root names them as it likes; so does a service with
 * Delegate=. The caller decides whether to trust the inner name (see
 * creds_containers). 0 or -ENOENT. */
int creds_cgroup_unit(const char *text, size_t len, char unit[static 256], char outer[static 256]);

struct creds_entry {
        char cred[CREDS_NAME_MAX + 1];
        char secret[PROTO_NAME_MAX + 1];
};
struct creds_map {
        size_t n;
        struct creds_entry e[CREDS_MAP_MAX];
};
/* Lines "CREDENTIAL secret:NAME"; # comments. Every error is reported, one
 * per line, as "NAME:LINE: what". 0 or -EINVAL. */
int creds_map_parse(struct creds_map *m, const char *name, const char *text, size_t len, char *err, size_t errsz);
int creds_map_load(struct creds_map *m, const char *path, uid_t self, char *err, size_t errsz);
/* The secret for a credential: the map's, else the credential's own name
 * when that is a valid secret name; NULL if neither. */
const char *creds_map_lookup(const struct creds_map *m, const char *cred);

/* Start serving the listening socket fd. */
int creds_start(struct cofferd *d, int fd);
void creds_stop(struct cofferd *d);
/* Drop deliveries a reader has left unread for CREDS_TIMEOUT_SEC. */
void creds_sweep(struct cofferd *d);
#define CREDS_TIMEOUT_SEC 10
