/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer target: the subordinate uid parser. Besides not crashing: every
 * range it keeps is non-empty and does not wrap, and each range's first and
 * last uid map to an owner (the first range holding them). */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "subuid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                    \
        do {                        \
                if (!(x))           \
                        abort();    \
        } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static char err[4096];
        struct subuid_map m;
        char *copy = malloc(size ? size : 1); /* exact size: overreads are ASan reports */
        if (!copy)
                return 0;
        memcpy(copy, data, size);
        int rc = subuid_map_parse(&m, "fuzz", copy, size, err, sizeof(err));
        free(copy);
        CHECK(rc == 0 || (rc == 1 && err[0]));
        for (size_t i = 0; i < m.n; i++) {
                const struct subuid_range *r = &m.r[i];
                CHECK(r->count >= 1 && r->start <= UINT32_MAX - r->count);
                uid_t first = subuid_owner(&m, r->start), last = subuid_owner(&m, r->start + r->count - 1);
                CHECK(first == r->owner || i > 0);
                CHECK(last == r->owner || i > 0);
        }
        subuid_map_free(&m);
        return 0;
}
