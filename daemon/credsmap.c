/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What the credential responder parses: systemd's peer address and the creds
 * map. Apart from the serving code so that it can be fuzzed alone. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "creds.h"
#include "util.h"

/* ---- parsing ---- */

static bool unit_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '@' || c == '.' ||
               c == '_' || c == '-' || c == ':' || c == '\\';
}

/* systemd's credential names: printable, no '/', not "." or "..". */
static bool cred_name_ok(const char *s, size_t n) {
        if (n == 0 || n > CREDS_NAME_MAX || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) s[i] <= 0x20 || (unsigned char) s[i] >= 0x7f || s[i] == '/')
                        return false;
        return true;
}

int creds_parse_address(const char *addr, size_t len, char unit[static 256], char cred[static CREDS_NAME_MAX + 1]) {
        /* \0 RANDOM /unit/ UNIT / CRED, no longer than sun_path */
        if (len < 2 || len > sizeof(((struct sockaddr_un *) NULL)->sun_path) || addr[0] != 0)
                return -EINVAL;
        const char *p = addr + 1, *end = addr + len;
        const char *u = memmem(p, (size_t) (end - p), "/unit/", 6);
        if (!u || u == p)
                return -EINVAL;
        for (const char *q = p; q < u; q++)
                if (*q == '/' || *q == 0)
                        return -EINVAL;
        u += 6;
        const char *slash = memchr(u, '/', (size_t) (end - u));
        if (!slash || slash == u || (size_t) (slash - u) > 255)
                return -EINVAL;
        for (const char *q = u; q < slash; q++)
                if (!unit_char(*q))
                        return -EINVAL;
        const char *c = slash + 1;
        size_t cn = (size_t) (end - c);
        if (!cred_name_ok(c, cn))
                return -EINVAL;
        memcpy(unit, u, (size_t) (slash - u));
        unit[slash - u] = 0;
        memcpy(cred, c, cn);
        cred[cn] = 0;
        return 0;
}


static bool mapped(const struct creds_map *m, const char *cred) {
        for (size_t i = 0; i < m->n; i++)
                if (strcmp(m->e[i].cred, cred) == 0)
                        return true;
        return false;
}

static int add_line(void *ud, char **w, size_t n, char *why, size_t whysz) {
        struct creds_map *m = ud;
        if (n != 2)
                return snprintf(why, whysz, "expected CREDENTIAL secret:NAME"), -EINVAL;
        if (!cred_name_ok(w[0], strlen(w[0])))
                return snprintf(why, whysz, "bad credential name (printable, no '/', at most %d bytes)",
                                CREDS_NAME_MAX), -EINVAL;
        if (strncmp(w[1], "secret:", 7) != 0 || !proto_name_valid(w[1] + 7))
                return snprintf(why, whysz, "expected secret:NAME with a valid secret name"), -EINVAL;
        if (m->n == CREDS_MAP_MAX)
                return snprintf(why, whysz, "more than %d entries", CREDS_MAP_MAX), -EINVAL;
        if (mapped(m, w[0]))
                return snprintf(why, whysz, "%s is mapped twice", w[0]), -EINVAL;
        strcpy_bounded(m->e[m->n].cred, sizeof(m->e[m->n].cred), w[0]);
        strcpy_bounded(m->e[m->n].secret, sizeof(m->e[m->n].secret), w[1] + 7);
        m->n++;
        return 0;
}

int creds_map_parse(struct creds_map *m, const char *name, const char *text, size_t len, char *err, size_t errsz) {
        memset(m, 0, sizeof(*m));
        int rc = parse_word_lines(name, text, len, 2, add_line, m, err, errsz);
        if (rc < 0)
                m->n = 0;
        return rc;
}

int creds_map_load(struct creds_map *m, const char *path, uid_t self, char *err, size_t errsz) {
        memset(m, 0, sizeof(*m));
        if (err && errsz)
                err[0] = 0;
        int rc = parse_word_file(path, self, 2, add_line, m, err, errsz);
        if (rc < 0)
                m->n = 0;
        return rc;
}

const char *creds_map_lookup(const struct creds_map *m, const char *cred) {
        for (size_t i = 0; m && i < m->n; i++)
                if (strcmp(m->e[i].cred, cred) == 0)
                        return m->e[i].secret;
        return proto_name_valid(cred) ? cred : NULL;
}


static bool ends_with(const char *s, size_t n, const char *suffix) {
        size_t k = strlen(suffix);
        return n > k && memcmp(s + n - k, suffix, k) == 0;
}

/* The deepest and the first unit in one cgroup path. */
static int units_of_path(const char *p, size_t n, char unit[static 256], char outer[static 256]) {
        int rc = -ENOENT;
        for (size_t i = 0; i < n;) {
                while (i < n && p[i] == '/')
                        i++;
                size_t j = i;
                while (j < n && p[j] != '/')
                        j++;
                const char *c = p + i;
                size_t cn = j - i;
                bool name_ok = cn > 0 && cn < 256;
                for (size_t k = 0; name_ok && k < cn; k++)
                        name_ok = unit_char(c[k]);
                if (name_ok && (ends_with(c, cn, ".service") || ends_with(c, cn, ".scope"))) {
                        memcpy(unit, c, cn);
                        unit[cn] = 0;
                        if (rc < 0)
                                memcpy(outer, unit, cn + 1);
                        rc = 0;
                }
                i = j;
        }
        return rc;
}

int creds_cgroup_unit(const char *text, size_t len, char unit[static 256], char outer[static 256]) {
        const char *v1 = NULL;
        size_t v1n = 0;
        unit[0] = outer[0] = 0;
        for (size_t pos = 0; pos < len;) {
                const char *nl = memchr(text + pos, '\n', len - pos);
                size_t ll = nl ? (size_t) (nl - (text + pos)) : len - pos;
                const char *line = text + pos;
                pos += ll + (nl ? 1 : 0);
                if (ll >= 3 && memcmp(line, "0::", 3) == 0)
                        return units_of_path(line + 3, ll - 3, unit, outer);
                const char *m = memmem(line, ll, ":name=systemd:", 14);
                if (m) {
                        v1 = m + 14;
                        v1n = ll - (size_t) (v1 - line);
                }
        }
        return v1 ? units_of_path(v1, v1n, unit, outer) : -ENOENT;
}
