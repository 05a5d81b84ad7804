/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer target: the login map parser. Besides not crashing: every entry
 * it accepts is valid on its own terms, and writing the accepted entries back
 * out parses to the same map. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loginmap.h"
#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                    \
        do {                        \
                if (!(x))           \
                        abort();    \
        } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static struct login_map m, again;
        static char err[4096], text[LOGIN_MAP_MAX * 512];
        char *copy = malloc(size ? size : 1); /* exact size: overreads are ASan reports */
        if (!copy)
                return 0;
        memcpy(copy, data, size);
        int rc = login_map_parse(&m, "fuzz", copy, size, err, sizeof(err));
        free(copy);
        CHECK(rc == 0 || (rc == -EINVAL && err[0] && m.n == 0));
        if (rc < 0)
                return 0;
        size_t len = 0;
        for (size_t i = 0; i < m.n; i++) {
                const struct login_entry *e = &m.e[i];
                CHECK(proto_env_name_valid(e->env));
                CHECK(e->kind == LOGIN_SECRET ? proto_name_valid(e->target) : proto_audience_valid(e->target));
                CHECK(e->kind == LOGIN_TOKEN || e->ttl == 0);
                len += (size_t) snprintf(text + len, sizeof(text) - len, "%s %s %s", e->env, e->file, e->object);
                if (e->ttl)
                        len += (size_t) snprintf(text + len, sizeof(text) - len, " ttl=%llu",
                                                 (unsigned long long) e->ttl);
                text[len++] = '\n';
        }
        CHECK(login_map_parse(&again, "again", text, len, err, sizeof(err)) == 0);
        CHECK(again.n == m.n);
        for (size_t i = 0; i < m.n; i++)
                CHECK(strcmp(m.e[i].env, again.e[i].env) == 0 && strcmp(m.e[i].file, again.e[i].file) == 0 &&
                      strcmp(m.e[i].object, again.e[i].object) == 0 && m.e[i].ttl == again.e[i].ttl);
        return 0;
}
