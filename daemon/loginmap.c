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

static int add_line(void *ud, char **w, size_t n, char *why, size_t whysz) {
        struct login_map *m = ud;
        const char *phrase = NULL;
        if (m->n == LOGIN_MAP_MAX)
                return snprintf(why, whysz, "more than %d entries", LOGIN_MAP_MAX), -EINVAL;
        struct login_entry *e = &m->e[m->n];
        if (parse_entry(e, w, n, &phrase) < 0)
                return snprintf(why, whysz, "%s", phrase), -EINVAL;
        for (size_t i = 0; i < m->n; i++)
                if (strcmp(m->e[i].env, e->env) == 0 || strcmp(m->e[i].file, e->file) == 0)
                        return snprintf(why, whysz, "%s or %s is already used", e->env, e->file), -EINVAL;
        m->n++;
        return 0;
}

int login_map_parse(struct login_map *m, const char *name, const char *text, size_t len, char *err, size_t errsz) {
        memset(m, 0, sizeof(*m));
        int rc = parse_word_lines(name, text, len, 4, add_line, m, err, errsz);
        if (rc < 0)
                m->n = 0;
        return rc;
}

int login_map_load(struct login_map *m, const char *path, uid_t self, char *err, size_t errsz) {
        memset(m, 0, sizeof(*m));
        if (err && errsz)
                err[0] = 0;
        int rc = parse_word_file(path, self, 4, add_line, m, err, errsz);
        if (rc < 0)
                m->n = 0;
        return rc;
}
