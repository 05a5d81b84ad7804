/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer target: what the systemd credential responder parses. The first
 * byte picks the peer address parser, the creds map parser or the cgroup
 * file parser. Accepted
 * addresses yield a unit and credential that re-form the same address;
 * accepted maps write back out to the same map. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "creds.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                    \
        do {                        \
                if (!(x))           \
                        abort();    \
        } while (0)

static void check_address(const char *p, size_t n) {
        char unit[256], cred[CREDS_NAME_MAX + 1], again[512];
        if (creds_parse_address(p, n, unit, cred) < 0)
                return;
        CHECK(n >= 2 && n <= 108 && p[0] == 0 && unit[0] && cred[0] && !strchr(cred, '/'));
        /* RANDOM is what lies between the NUL and "/unit/". */
        const char *u = memmem(p + 1, n - 1, "/unit/", 6);
        CHECK(u);
        size_t rl = (size_t) (u - (p + 1));
        int len = snprintf(again, sizeof(again), "%.*s/unit/%s/%s", (int) rl, p + 1, unit, cred);
        CHECK(len > 0 && (size_t) len < sizeof(again) && (size_t) len == n - 1 && memcmp(again, p + 1, n - 1) == 0);
}

static void check_map(const char *p, size_t n) {
        static struct creds_map m, m2;
        static char err[4096], text[CREDS_MAP_MAX * 600];
        int rc = creds_map_parse(&m, "fuzz", p, n, err, sizeof(err));
        CHECK(rc == 0 || (rc == -EINVAL && err[0] && m.n == 0));
        if (rc < 0)
                return;
        size_t len = 0;
        for (size_t i = 0; i < m.n; i++) {
                CHECK(proto_name_valid(m.e[i].secret));
                CHECK(strcmp(creds_map_lookup(&m, m.e[i].cred), m.e[i].secret) == 0);
                len += (size_t) snprintf(text + len, sizeof(text) - len, "%s secret:%s\n", m.e[i].cred, m.e[i].secret);
        }
        CHECK(creds_map_parse(&m2, "again", text, len, err, sizeof(err)) == 0 && m2.n == m.n);
        for (size_t i = 0; i < m.n; i++)
                CHECK(strcmp(m.e[i].cred, m2.e[i].cred) == 0 && strcmp(m.e[i].secret, m2.e[i].secret) == 0);
}

/* The units found in a cgroup file are path components ending in .service
 * or .scope; the outer one comes first. */
static void check_unit_name(const char *p, size_t n, const char *unit) {
        size_t k = strlen(unit);
        CHECK(k > 0 && k < 256 && !strchr(unit, '/') && !strchr(unit, '\n'));
        CHECK((k > 8 && strcmp(unit + k - 8, ".service") == 0) || (k > 6 && strcmp(unit + k - 6, ".scope") == 0));
        CHECK(memmem(p, n, unit, k) != NULL);
}

static void check_cgroup(const char *p, size_t n) {
        char unit[256], outer[256];
        if (creds_cgroup_unit(p, n, unit, outer) < 0)
                return;
        check_unit_name(p, n, unit);
        check_unit_name(p, n, outer);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1)
                return 0;
        char *copy = malloc(size - 1 ? size - 1 : 1); /* exact size: overreads are ASan reports */
        if (!copy)
                return 0;
        memcpy(copy, data + 1, size - 1);
        if (data[0] % 3 == 1)
                check_address(copy, size - 1);
        else if (data[0] % 3 == 2)
                check_cgroup(copy, size - 1);
        else
                check_map(copy, size - 1);
        free(copy);
        return 0;
}
