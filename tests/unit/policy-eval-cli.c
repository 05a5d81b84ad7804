/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Test driver: load a policy directory (files owned by the caller are
 * accepted) and evaluate one case per input line, for t-policy-matrix.sh.
 *
 *   policy-eval-cli DIR < cases.tsv
 *
 * Input, tab-separated: UID GID GROUPS EXE UNIT SESSION MINUTE ACTION OBJECT
 * (GROUPS comma-separated, "-" for none; EXE/UNIT "-" for unknown/none;
 * SESSION 0/1). Output, one line per case, tab-separated:
 * allow|deny FILE:LINE|- TTL USES DEPENDS_ON_EXE DEPENDS_ON_UNIT
 * (FILE is the file's base name). Exit 1 on a load or input error. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy.h"
#include "util.h"

#define MAX_FIELDS 9
#define MAX_GROUPS 64

static const char *dash_empty(const char *s) {
        return strcmp(s, "-") == 0 ? "" : s;
}

static int parse_groups(char *s, gid_t *groups, size_t *n) {
        *n = 0;
        if (strcmp(s, "-") == 0)
                return 0;
        for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
                uint64_t v;

                if (*n == MAX_GROUPS || parse_u64(tok, 0, UINT32_MAX, &v) < 0)
                        return -EINVAL;
                groups[(*n)++] = (gid_t) v;
        }
        return 0;
}

static int eval_line(const struct policy *p, char *line, unsigned lineno) {
        char *f[MAX_FIELDS];
        gid_t groups[MAX_GROUPS];
        struct pol_subject s = { 0 };
        struct pol_decision d;
        enum pol_action a;
        uint64_t uid, gid, minute;
        size_t n = 0;
        char *save = NULL;
        const char *base;

        for (char *tok = strtok_r(line, "\t", &save); tok && n < MAX_FIELDS; tok = strtok_r(NULL, "\t", &save))
                f[n++] = tok;
        if (n != MAX_FIELDS || parse_u64(f[0], 0, UINT32_MAX, &uid) < 0 ||
            parse_u64(f[1], 0, UINT32_MAX, &gid) < 0 || parse_groups(f[2], groups, &s.ngroups) < 0 ||
            parse_u64(f[6], 0, 100000, &minute) < 0 || pol_action_from_string(f[7], &a) < 0) {
                fprintf(stderr, "line %u: bad case\n", lineno);
                return -EINVAL;
        }
        s.uid = (uid_t) uid;
        s.gid = (gid_t) gid;
        s.groups = groups;
        s.exe = dash_empty(f[3]);
        s.unit = dash_empty(f[4]);
        s.in_login_session = strcmp(f[5], "1") == 0;
        s.minute_of_day = (int) minute;
        policy_eval(p, &s, a, f[8], &d);
        base = d.file ? strrchr(d.file, '/') : NULL;
        base = base ? base + 1 : d.file;
        if (d.file)
                printf("%s\t%s:%u", d.allow ? "allow" : "deny", base, d.line);
        else
                printf("deny\t-");
        printf("\t%llu\t%llu\t%d\t%d\n", (unsigned long long) d.max_ttl_sec, (unsigned long long) d.max_uses,
               d.depends_on_exe, d.depends_on_unit);
        return 0;
}

int main(int argc, char **argv) {
        _cleanup_policy_ struct policy *p = NULL;
        char err[POLICY_ERR_MAX];
        char *line = NULL;
        size_t cap = 0;
        unsigned lineno = 0;
        int rc = 0;

        if (argc != 2) {
                fprintf(stderr, "usage: %s DIR < cases.tsv\n", argv[0]);
                return 2;
        }
        if (policy_load_dir(&p, argv[1], geteuid(), err, sizeof(err)) < 0) {
                fprintf(stderr, "%s\n", err);
                return 1;
        }
        while (rc == 0 && getline(&line, &cap, stdin) > 0) {
                lineno++;
                line[strcspn(line, "\n")] = '\0';
                rc = eval_line(p, line, lineno);
        }
        free(line);
        return rc < 0 ? 1 : 0;
}
