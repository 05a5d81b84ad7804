/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "subuid.h"
#include "util.h"

static int owner_of(const char *name, uid_t *owner) {
        uint64_t v;
        if (parse_u64(name, 0, UINT32_MAX - 1, &v) == 0) {
                *owner = (uid_t) v;
                return 0;
        }
        struct passwd pw, *res = NULL;
        char buf[1024];
        if (getpwnam_r(name, &pw, buf, sizeof(buf), &res) != 0 || !res)
                return -ENOENT;
        *owner = res->pw_uid;
        return 0;
}

/* One line, "NAME_OR_UID:START:COUNT". */
static int parse_range(void *ud, char **w, size_t n, char *why, size_t whysz) {
        struct subuid_map *m = ud;
        char *start = strchr(w[0], ':'), *count = start ? strchr(start + 1, ':') : NULL;
        uint64_t s, c;
        struct subuid_range r;

        if (n != 1 || !count)
                return snprintf(why, whysz, "expected NAME:START:COUNT"), -EINVAL;
        *start++ = 0;
        *count++ = 0;
        if (parse_u64(start, 0, UINT32_MAX - 1, &s) < 0 || parse_u64(count, 1, UINT32_MAX - s, &c) < 0)
                return snprintf(why, whysz, "bad START or COUNT"), -EINVAL;
        if (owner_of(w[0], &r.owner) < 0)
                return snprintf(why, whysz, "no such user '%s'; line ignored", w[0]), -ENOENT;

        if (m->n == SUBUID_RANGES_MAX)
                return snprintf(why, whysz, "more than %u ranges; the rest are ignored", SUBUID_RANGES_MAX), -E2BIG;
        if (m->n % 64 == 0) {
                struct subuid_range *v = realloc(m->r, (m->n + 64) * sizeof(*v));
                if (!v)
                        return snprintf(why, whysz, "out of memory"), -ENOMEM;
                m->r = v;
        }
        r.start = (uint32_t) s;
        r.count = (uint32_t) c;
        m->r[m->n++] = r;
        return 0;
}

int subuid_map_parse(struct subuid_map *m, const char *name, const char *text, size_t len, char *err, size_t errsz) {
        *m = (struct subuid_map){ 0 };
        int rc = parse_word_lines(name, text, len, 1, parse_range, m, err, errsz);
        return rc == -EINVAL ? 1 : rc; /* some lines were bad: the good ones are kept */
}

int subuid_map_load(struct subuid_map *m, const char *path, char *err, size_t errsz) {
        *m = (struct subuid_map){ 0 };
        if (!path[0])
                return 0;
        uint8_t *text = NULL;
        size_t len = 0;
        int rc = read_trusted_file(path, 0, &text, &len, err, errsz);
        if (rc > 0)
                rc = subuid_map_parse(m, path, (const char *) text, len, err, errsz);
        free(text);
        if (rc < 0)
                subuid_map_free(m);
        return rc;
}

uid_t subuid_owner(const struct subuid_map *m, uid_t uid) {
        for (size_t i = 0; i < m->n; i++)
                if (uid >= m->r[i].start && uid - m->r[i].start < m->r[i].count)
                        return m->r[i].owner;
        return uid;
}

void subuid_map_free(struct subuid_map *m) {
        free(m->r);
        *m = (struct subuid_map){ 0 };
}
