/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "loginmap.h"
#include "proto.h"
#include "util.h"


static bool file_name_valid(const char *s) {
        size_t i;
        if (s[0] == '.' || s[0] == 0)
                return false;
        for (i = 0; s[i]; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                      c == '_' || c == '-'))
                        return false;
        }
        return i <= LOGIN_FILE_MAX;
}

/* Split at blanks; at most max words. Returns the count, or max + 1 if more. */
static size_t split(char *s, char **w, size_t max) {
        size_t n = 0;
        for (char *save = NULL, *t = strtok_r(s, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
                if (n == max)
                        return max + 1;
                w[n++] = t;
        }
        return n;
}

static int parse_entry(struct login_entry *e, char **w, size_t n, const char **why) {
        memset(e, 0, sizeof(*e));
        if (n < 3 || n > 4)
                return *why = "expected ENV_VAR FILE OBJECT [ttl=DURATION]", -EINVAL;
        if (!proto_env_name_valid(w[0]))
                return *why = "bad variable name (use A-Z, 0-9 and _, not starting with a digit)", -EINVAL;
        if (strncmp(w[0], "COFFER_", 7) == 0)
                return *why = "variable names starting with COFFER_ are coffer's own", -EINVAL;
        if (!file_name_valid(w[1]))
                return *why = "bad file name (1-64 of A-Z a-z 0-9 . _ -, not starting with '.')", -EINVAL;
        strcpy_bounded(e->env, sizeof(e->env), w[0]);
        strcpy_bounded(e->file, sizeof(e->file), w[1]);
        if (!strcpy_bounded(e->object, sizeof(e->object), w[2]))
                return *why = "object too long", -EINVAL;
        if (strncmp(w[2], "secret:", 7) == 0 && proto_name_valid(w[2] + 7)) {
                e->kind = LOGIN_SECRET;
                e->target = e->object + 7;
        } else if (strncmp(w[2], "token:", 6) == 0 && proto_audience_valid(w[2] + 6)) {
                e->kind = LOGIN_TOKEN;
                e->target = e->object + 6;
        } else
                return *why = "object must be secret:NAME or token:AUDIENCE", -EINVAL;
        if (n == 4) {
                uint64_t t;
                if (strncmp(w[3], "ttl=", 4) != 0 || parse_duration_sec(w[3] + 4, &t) < 0 || t == 0)
                        return *why = "expected ttl=DURATION (e.g. ttl=8h)", -EINVAL;
                if (e->kind != LOGIN_TOKEN)
                        return *why = "ttl= applies to tokens only", -EINVAL;
                e->ttl = t;
        }
        return 0;
}

int login_map_parse(struct login_map *m, const char *name, const char *text, size_t len, char *err, size_t errsz) {
        int rc = 0;
        unsigned lineno = 0;
        memset(m, 0, sizeof(*m));
        if (err && errsz)
                err[0] = 0;
        for (size_t pos = 0; pos < len;) {
                const char *nl = memchr(text + pos, '\n', len - pos);
                size_t ll = nl ? (size_t) (nl - (text + pos)) : len - pos;
                char line[1024], *w[5];
                const char *why = NULL;
                lineno++;
                if (ll >= sizeof(line)) {
                        err_append(err, errsz, "%s:%u: line too long", name, lineno);
                        rc = -EINVAL;
                } else if (memchr(text + pos, 0, ll)) {
                        err_append(err, errsz, "%s:%u: NUL byte in line", name, lineno);
                        rc = -EINVAL;
                } else {
                        memcpy(line, text + pos, ll);
                        line[ll] = 0;
                        char *hash = strchr(line, '#');
                        if (hash)
                                *hash = 0;
                        if (!utf8_is_valid((const uint8_t *) line, strlen(line))) {
                                err_append(err, errsz, "%s:%u: not UTF-8", name, lineno);
                                rc = -EINVAL;
                        } else {
                                size_t n = split(line, w, 4);
                                if (n == 0) {
                                        /* blank or comment */
                                } else if (m->n == LOGIN_MAP_MAX) {
                                        err_append(err, errsz, "%s:%u: more than %d entries", name, lineno,
                                                LOGIN_MAP_MAX);
                                        rc = -EINVAL;
                                } else if (parse_entry(&m->e[m->n], w, n, &why) < 0) {
                                        err_append(err, errsz, "%s:%u: %s", name, lineno, why);
                                        rc = -EINVAL;
                                } else {
                                        for (size_t i = 0; i < m->n; i++)
                                                if (strcmp(m->e[i].env, m->e[m->n].env) == 0 ||
                                                    strcmp(m->e[i].file, m->e[m->n].file) == 0) {
                                                        err_append(err, errsz, "%s:%u: %s or %s is already used",
                                                                name, lineno, m->e[m->n].env, m->e[m->n].file);
                                                        rc = -EINVAL;
                                                }
                                        if (rc == 0)
                                                m->n++;
                                }
                        }
                }
                pos += ll + (nl ? 1 : 0);
        }
        if (rc < 0)
                m->n = 0;
        return rc;
}

int login_map_load(struct login_map *m, const char *path, uid_t self, char *err, size_t errsz) {
        uint8_t *text = NULL;
        size_t len = 0;
        memset(m, 0, sizeof(*m));
        if (!path[0])
                return 0;
        int rc = read_trusted_file(path, self, &text, &len, err, errsz);
        if (rc <= 0)
                return rc;
        rc = login_map_parse(m, path, (const char *) text, len, err, errsz);
        free(text);
        return rc;
}
