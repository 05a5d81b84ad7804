/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Subordinate uid ranges (/etc/subuid, subuid(5)): which login uid owns the
 * uids a rootless container runs as, so that limits count them as that one
 * user. Read at start and on reload, never per connection. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SUBUID_RANGES_MAX 65536

struct subuid_range {
        uid_t owner;
        uint32_t start, count;
};

struct subuid_map {
        struct subuid_range *r;
        size_t n;
};

/* Load path (owned by root, not group/world-writable; a missing file is an
 * empty map). Lines that do not parse, or name no known user, are skipped
 * and described in err; the others are kept. 0, 1 when some were skipped,
 * or -errno with err set (the map is then empty). */
int subuid_map_load(struct subuid_map *m, const char *path, char *err, size_t errsz);
/* The same over text (name is for the error lines). */
int subuid_map_parse(struct subuid_map *m, const char *name, const char *text, size_t len, char *err, size_t errsz);
/* The owner of uid's range, or uid itself when no range holds it. */
uid_t subuid_owner(const struct subuid_map *m, uid_t uid);
void subuid_map_free(struct subuid_map *m);
