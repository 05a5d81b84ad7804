/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Policy: parse *.policy files into rules, index them, evaluate requests.
 * In this order: globs, rules, parsing, the index (rules by literal object
 * prefix and action), evaluation, the loader (owner and mode checks).
 * Grammar and semantics: coffer.policy(5). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "policy.h"
#include "util.h"

#define ALL_ACTIONS ((1u << POL_ACTION_COUNT) - 1)
#define TTL_MAX_SEC (3650ull * 24 * 3600)
#define USES_MAX 1000000000ull
#define NSS_BUF_MAX (1024 * 1024)

enum term {
        TERM_USER,
        TERM_UID,
        TERM_GROUP,
        TERM_UNIT,
        TERM_EXE,
        TERM_SESSION,
        TERM_TIME,
        TERM_TTL,
        TERM_USES,
        TERM_COUNT,
};

struct idv {
        uint32_t *v;
        size_t n;
};

struct strv {
        char **v;
        size_t n;
};

struct pol_rule {
        bool deny;
        uint8_t actions;       /* 1 << enum pol_action */
        uint32_t file;         /* index into policy.files */
        uint32_t line;
        char *text;            /* as written, without comment and outer blanks */
        char *object;          /* "KIND:GLOB", NULL = every object */
        size_t kind_len;       /* "KIND:" */
        unsigned terms;        /* 1 << enum term, for each term present */
        struct idv users, uids, groups, times; /* times: start << 16 | end, in minutes */
        struct strv user_names, group_names, units, exes;
        uint64_t ttl, uses;
};

/* Rules whose object pattern starts with the same literal text. */
struct bucket {
        const char *prefix;
        size_t len;
        ssize_t parent;                        /* longest bucket that is a proper prefix; -1 */
        struct idv rules[POL_ACTION_COUNT][2]; /* [action][deny], rule indexes ascending */
};

struct policy {
        char **files;
        size_t nfiles;
        struct pol_rule *rules;
        size_t nrules, cap;
        struct bucket *buckets;
        size_t nbuckets;
};

static const char *const action_names[POL_ACTION_COUNT] = {
        [POL_READ] = "read",     [POL_LIST] = "list",         [POL_WRITE] = "write", [POL_DELETE] = "delete",
        [POL_ISSUE] = "issue",   [POL_DELEGATE] = "delegate", [POL_ADMIN] = "admin",
};

static const char *const object_kinds[] = { "secret", "token", "store", "policy", "audit", "key", "lease" };

static void errf(char *err, size_t errsz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Errors accumulate, one a line, so that a check reports every one of them;
 * the entry points clear err first. */
static void errf(char *err, size_t errsz, const char *fmt, ...) {
        va_list ap;
        size_t used;

        if (!err || errsz == 0)
                return;
        used = strnlen(err, errsz);
        if (used > 0 && used + 1 < errsz)
                err[used++] = '\n';
        if (used + 1 >= errsz)
                return;
        va_start(ap, fmt);
        vsnprintf(err + used, errsz - used, fmt, ap);
        va_end(ap);
}

static void err_clear(char *err, size_t errsz) {
        if (err && errsz)
                err[0] = '\0';
}

/* ---- globs ---- */

static bool is_globstar(const char *seg) {
        return seg[0] == '*' && seg[1] == '*' && (seg[2] == '\0' || seg[2] == '/');
}

/* Start of the segment after the one at p; NULL after the last one. */
static const char *seg_next(const char *p) {
        const char *slash = strchr(p, '/');

        return slash ? slash + 1 : NULL;
}

/* One segment against one segment; '*' is any run of characters. Greedy with
 * a single backtrack point: O(len(p) * len(s)) at worst, never exponential. */
static bool seg_match(const char *p, size_t pn, const char *s, size_t sn) {
        size_t pi = 0, si = 0, star = SIZE_MAX, mark = 0;

        while (si < sn) {
                if (pi < pn && p[pi] == '*') {
                        star = pi++;
                        mark = si;
                } else if (pi < pn && p[pi] == s[si]) {
                        pi++;
                        si++;
                } else if (star != SIZE_MAX) {
                        pi = star + 1;
                        si = ++mark;
                } else
                        return false;
        }
        while (pi < pn && p[pi] == '*')
                pi++;
        return pi == pn;
}

/* The same algorithm one level up: segments are the characters and '**' the
 * star. Only the last '**' is ever returned to. */
bool policy_glob_match(const char *pattern, const char *s) {
        const char *p = pattern, *star_p = NULL, *star_s = NULL;
        bool have_star = false;

        for (;;) {
                if (p && is_globstar(p)) {
                        have_star = true;
                        star_p = seg_next(p);
                        star_s = s;
                        p = star_p;
                        continue;
                }
                if (!p && !s)
                        return true;
                if (p && s && seg_match(p, strcspn(p, "/"), s, strcspn(s, "/"))) {
                        p = seg_next(p);
                        s = seg_next(s);
                        continue;
                }
                if (!have_star || !star_s)
                        return false;
                star_s = seg_next(star_s);
                s = star_s;
                p = star_p;
        }
}

/* Length of the text every match starts with: up to the first '*', or when
 * that begins a '**' segment, up to before the '/' in front of it (a '**'
 * segment may match nothing, so "a" followed by "/" and "**" matches "a"). */
static size_t glob_literal_len(const char *g) {
        const char *star = strchr(g, '*');
        size_t seg;

        if (!star)
                return strlen(g);
        seg = (size_t) (star - g);
        if (seg > 0 && g[seg - 1] != '/')
                return seg;
        if (!is_globstar(star))
                return seg;
        return seg > 0 ? seg - 1 : 0;
}

/* ---- rules ---- */

static void idv_free(struct idv *v) {
        free(v->v);
        v->v = NULL;
        v->n = 0;
}

static void strv_free(struct strv *v) {
        for (size_t i = 0; i < v->n; i++)
                free(v->v[i]);
        free(v->v);
        v->v = NULL;
        v->n = 0;
}

/* Index lists can hold 100000 entries: grow by doubling. The capacity is
 * implied: 4, then the next power of two. */
static int idv_add(struct idv *v, uint32_t x) {
        if (v->n == 0 || (v->n >= 4 && (v->n & (v->n - 1)) == 0)) {
                uint32_t *n = realloc(v->v, (v->n ? v->n * 2 : 4) * sizeof(*n));

                if (!n)
                        return -ENOMEM;
                v->v = n;
        }
        v->v[v->n++] = x;
        return 0;
}

static int strv_add(struct strv *v, const char *s) {
        char **n = realloc(v->v, (v->n + 1) * sizeof(*n));

        if (!n)
                return -ENOMEM;
        v->v = n;
        n[v->n] = strdup(s);
        if (!n[v->n])
                return -ENOMEM;
        v->n++;
        return 0;
}

static void rule_clear(struct pol_rule *r) {
        free(r->text);
        free(r->object);
        idv_free(&r->users);
        idv_free(&r->uids);
        idv_free(&r->groups);
        idv_free(&r->times);
        strv_free(&r->user_names);
        strv_free(&r->group_names);
        strv_free(&r->units);
        strv_free(&r->exes);
        memset(r, 0, sizeof(*r));
}

/* ---- parsing ---- */

struct parser {
        struct policy *p;
        const char *file;
        uint32_t file_idx;
        unsigned line;
        const char *ls; /* start of the current line: columns count from here */
        char *err;
        size_t errsz;
};

static int perr(struct parser *ps, const char *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int perr(struct parser *ps, const char *at, const char *fmt, ...) {
        char msg[POLICY_ERR_MAX];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        errf(ps->err, ps->errsz, "%s:%u:%zu: %s", ps->file, ps->line, (size_t) (at - ps->ls) + 1, msg);
        return -EINVAL;
}

static bool is_blank(char c) {
        return c == ' ' || c == '\t';
}

/* Next blank-separated token, NUL-terminated in place; NULL at the end. */
static char *next_token(char **cur) {
        char *s = *cur, *t;

        while (is_blank(*s))
                s++;
        if (!*s) {
                *cur = s;
                return NULL;
        }
        t = s;
        while (*s && !is_blank(*s))
                s++;
        if (*s)
                *s++ = '\0';
        *cur = s;
        return t;
}

typedef int (*item_fn)(struct parser *ps, struct pol_rule *r, char *item);

/* Split s at commas in place and hand each item to fn: any-of lists. */
static int for_each_item(struct parser *ps, struct pol_rule *r, char *s, const char *what, item_fn fn) {
        bool first = true;

        for (;;) {
                char *comma = strchr(s, ',');
                int rc;

                if (comma)
                        *comma = '\0';
                if (!*s)
                        return perr(ps, s, first ? "expected %s" : "expected %s after ','", what);
                rc = fn(ps, r, s);
                if (rc < 0)
                        return rc;
                if (!comma)
                        return 0;
                s = comma + 1;
                first = false;
        }
}

/* Patterns: '/'-separated segments, no empty one; '*' and '**' only. */
static int check_glob(struct parser *ps, const char *g, bool absolute) {
        const char *seg = g;

        if (!*g)
                return perr(ps, g, "expected a pattern");
        if (absolute) {
                if (*g != '/')
                        return perr(ps, g, "expected an absolute path pattern starting with '/'");
                seg++;
        }
        for (;;) {
                size_t n = strcspn(seg, "/");
                const char *bad = NULL;

                if (n == 0)
                        return perr(ps, seg, "empty path segment: a pattern has no '//', no '/' at the end%s",
                                    absolute ? "" : " and none at the start");
                for (size_t i = 0; i < n && !bad; i++)
                        if (strchr("?[]{}\\#,", seg[i]))
                                bad = seg + i;
                if (bad)
                        return perr(ps, bad, "'%c' is not allowed in a pattern: only '*' (within a segment) "
                                             "and '**' (a whole segment) are special", *bad);
                bad = memmem(seg, n, "***", 3);
                if (bad)
                        return perr(ps, bad, "'***' is not a pattern: use '*' within a segment or '**' as a whole segment");
                bad = memmem(seg, n, "**", 2);
                if (bad && n != 2)
                        return perr(ps, bad, "'**' must be a whole path segment, as in a/**/b");
                if (!seg[n])
                        return 0;
                seg += n + 1;
        }
}

bool policy_glob_valid(const char *pattern) {
        /* No error text wanted: a parser with nowhere to write it. */
        struct parser ps = { .file = "", .ls = pattern };
        return check_glob(&ps, pattern, false) == 0;
}

static int action_item(struct parser *ps, struct pol_rule *r, char *item) {
        enum pol_action a;

        if (strcmp(item, "*") == 0)
                return perr(ps, item, "'*' stands for all actions and cannot be part of a list");
        if (pol_action_from_string(item, &a) < 0)
                return perr(ps, item, "expected an action: read, list, write, delete, issue, delegate, admin or *");
        r->actions |= (uint8_t) (1u << a);
        return 0;
}

static int parse_actions(struct parser *ps, struct pol_rule *r, char *tok) {
        if (strcmp(tok, "*") == 0) {
                r->actions = ALL_ACTIONS;
                return 0;
        }
        return for_each_item(ps, r, tok, "an action", action_item);
}

static int parse_object(struct parser *ps, struct pol_rule *r, char *tok) {
        const char *colon = strchr(tok, ':');
        bool known = false;
        int rc;

        if (strcmp(tok, "*") == 0)
                return 0;
        for (size_t i = 0; colon && i < ELEMENTSOF(object_kinds); i++)
                if (strlen(object_kinds[i]) == (size_t) (colon - tok) &&
                    strncmp(tok, object_kinds[i], (size_t) (colon - tok)) == 0)
                        known = true;
        if (!known)
                return perr(ps, tok, "expected an object: secret:GLOB, token:GLOB, key:GLOB, lease:GLOB, store:GLOB, "
                                     "policy:GLOB, audit:GLOB or *");
        rc = check_glob(ps, colon + 1, false);
        if (rc < 0)
                return rc;
        r->kind_len = (size_t) (colon - tok) + 1;
        r->object = strdup(tok);
        return r->object ? 0 : -ENOMEM;
}

/* getpwnam_r/getgrnam_r want a buffer of unknown size: grow on ERANGE. */
static int lookup_id(const char *name, bool group, uint32_t *id) {
        size_t size = 4096;
        int rc;

        for (;;) {
                _cleanup_free_ char *buf = malloc(size);
                struct passwd pw, *pwr = NULL;
                struct group gr, *grr = NULL;

                if (!buf)
                        return -ENOMEM;
                if (group)
                        rc = getgrnam_r(name, &gr, buf, size, &grr);
                else
                        rc = getpwnam_r(name, &pw, buf, size, &pwr);
                if (rc == ERANGE && size < NSS_BUF_MAX) {
                        size *= 2;
                        continue;
                }
                if (rc != 0)
                        return -rc;
                if (group ? !grr : !pwr)
                        return -ENOENT;
                *id = group ? (uint32_t) gr.gr_gid : (uint32_t) pw.pw_uid;
                return 0;
        }
}

static int name_item(struct parser *ps, struct pol_rule *r, char *item, bool group) {
        const char *what = group ? "group" : "user";
        bool numeric = item[strspn(item, "0123456789")] == '\0';
        uint32_t id = 0;
        int rc = lookup_id(item, group, &id);

        if (rc == -ENOENT)
                return perr(ps, item, "unknown %s '%s'%s", what, item,
                            numeric && !group ? " (for a numeric id use uid:N)" : "");
        if (rc < 0)
                return perr(ps, item, "cannot look up %s '%s': %s", what, item, strerror(-rc));
        rc = idv_add(group ? &r->groups : &r->users, id);
        return rc < 0 ? rc : strv_add(group ? &r->group_names : &r->user_names, item);
}

static int user_item(struct parser *ps, struct pol_rule *r, char *item) {
        return name_item(ps, r, item, false);
}

static int group_item(struct parser *ps, struct pol_rule *r, char *item) {
        return name_item(ps, r, item, true);
}

static int uid_item(struct parser *ps, struct pol_rule *r, char *item) {
        uint64_t v;

        if (parse_u64(item, 0, UINT32_MAX - 1, &v) < 0)
                return perr(ps, item, "expected a numeric uid (0-4294967294)");
        return idv_add(&r->uids, (uint32_t) v);
}

static int unit_item(struct parser *ps, struct pol_rule *r, char *item) {
        int rc = check_glob(ps, item, false);

        return rc < 0 ? rc : strv_add(&r->units, item);
}

static int exe_item(struct parser *ps, struct pol_rule *r, char *item) {
        int rc = check_glob(ps, item, true);

        return rc < 0 ? rc : strv_add(&r->exes, item);
}

static int session_item(struct parser *ps, struct pol_rule *r, char *item) {
        if (strcmp(item, "login") != 0)
                return perr(ps, item, "expected 'login'");
        return 0;
}

/* "HH:MM", 00:00-23:59; minutes since midnight or -1. */
static int parse_hhmm(const char *s) {
        for (int i = 0; i < 5; i++)
                if (i == 2 ? s[i] != ':' : (s[i] < '0' || s[i] > '9'))
                        return -1;
        int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
        return h < 24 && m < 60 ? h * 60 + m : -1;
}

static int time_item(struct parser *ps, struct pol_rule *r, char *item) {
        int start, end;

        if (strlen(item) != 11 || item[5] != '-')
                return perr(ps, item, "expected a time window HH:MM-HH:MM (24-hour clock, local time)");
        start = parse_hhmm(item);
        if (start < 0)
                return perr(ps, item, "expected a time of day from 00:00 to 23:59");
        end = parse_hhmm(item + 6);
        if (end < 0)
                return perr(ps, item + 6, "expected a time of day from 00:00 to 23:59");
        if (start == end)
                return perr(ps, item, "a time window must not start and end at the same minute "
                                      "(for the whole day, leave out time:)");
        return idv_add(&r->times, (uint32_t) start << 16 | (uint32_t) end);
}

static int ttl_value(struct parser *ps, struct pol_rule *r, char *v) {
        uint64_t sec;

        if (parse_duration_sec(v, &sec) < 0 || sec == 0 || sec > TTL_MAX_SEC)
                return perr(ps, v, "expected one duration from 1s to 3650d, like 30s, 5m, 1h or 7d");
        r->ttl = sec;
        return 0;
}

static int uses_value(struct parser *ps, struct pol_rule *r, char *v) {
        if (parse_u64(v, 1, USES_MAX, &r->uses) < 0)
                return perr(ps, v, "expected one whole number from 1 to 1000000000");
        return 0;
}

struct term_def {
        const char *name;
        const char *op;   /* ":" or "<=" */
        const char *what; /* for "expected ..." */
        bool list;        /* comma list (any-of) or one value */
        item_fn fn;
};

static const struct term_def term_defs[TERM_COUNT] = {
        [TERM_USER] = { "user", ":", "a user name", true, user_item },
        [TERM_UID] = { "uid", ":", "a numeric uid", true, uid_item },
        [TERM_GROUP] = { "group", ":", "a group name", true, group_item },
        [TERM_UNIT] = { "unit", ":", "a unit pattern", true, unit_item },
        [TERM_EXE] = { "exe", ":", "an executable path pattern", true, exe_item },
        [TERM_SESSION] = { "session", ":", "'login'", false, session_item },
        [TERM_TIME] = { "time", ":", "a time window HH:MM-HH:MM", true, time_item },
        [TERM_TTL] = { "ttl", "<=", "a duration", false, ttl_value },
        [TERM_USES] = { "uses", "<=", "a number", false, uses_value },
};

static int parse_term(struct parser *ps, struct pol_rule *r, char *tok) {
        size_t klen = strcspn(tok, ":<");
        const struct term_def *t = NULL;
        enum term which = TERM_COUNT;
        char *v;

        for (int i = 0; i < TERM_COUNT; i++)
                if (strlen(term_defs[i].name) == klen && strncmp(tok, term_defs[i].name, klen) == 0)
                        which = (enum term) i;
        if (which == TERM_COUNT)
                return perr(ps, tok, "unknown term '%.*s': expected user:, uid:, group:, unit:, exe:, "
                                     "session:, time:, ttl<= or uses<=", (int) klen, tok);
        t = &term_defs[which];
        if (strncmp(tok + klen, t->op, strlen(t->op)) != 0)
                return perr(ps, tok + klen, "expected '%s' after '%s'", t->op, t->name);
        if (r->terms & (1u << which))
                return perr(ps, tok, "'%s%s' appears twice in this rule: give one term with a comma list",
                            t->name, t->op);
        if (r->deny && (which == TERM_TTL || which == TERM_USES))
                return perr(ps, tok, "'%s%s' bounds what an allow rule grants; it has no meaning on a deny rule",
                            t->name, t->op);
        r->terms |= 1u << which;
        v = tok + klen + strlen(t->op);
        if (!*v)
                return perr(ps, v, "expected %s", t->what);
        return t->list ? for_each_item(ps, r, v, t->what, t->fn) : t->fn(ps, r, v);
}

static int rule_append(struct policy *p, struct pol_rule *r) {
        if (p->nrules == p->cap) {
                size_t cap = p->cap ? p->cap * 2 : 64;
                struct pol_rule *n = realloc(p->rules, cap * sizeof(*n));

                if (!n)
                        return -ENOMEM;
                p->rules = n;
                p->cap = cap;
        }
        p->rules[p->nrules++] = *r;
        memset(r, 0, sizeof(*r));
        return 0;
}

/* Comments start at a '#' at the start of a token; a '#' inside a token is an
 * error in the token, not a silent cut. */
static void strip_comment(char *l) {
        for (char *s = l; *s; s++)
                if (*s == '#' && (s == l || is_blank(s[-1]))) {
                        *s = '\0';
                        return;
                }
}

static int check_chars(struct parser *ps, const char *l) {
        for (const char *s = l; *s; s++) {
                unsigned char c = (unsigned char) *s;

                if (c == '\r')
                        return perr(ps, s, "carriage return: save the file with Unix line endings (LF)");
                if ((c < 0x20 && c != '\t') || c == 0x7f)
                        return perr(ps, s, "control character 0x%02x", c);
        }
        return 0;
}

static int parse_line_into(struct parser *ps, char *l, struct pol_rule *r) {
        char *cur = l, *tok, *end;
        int rc;

        end = l + strlen(l);
        while (end > l && is_blank(end[-1]))
                end--;
        while (is_blank(*cur))
                cur++;
        /* The whole rule as written, for explain; copied before it is cut up. */
        r->text = strndup(cur, (size_t) (end - cur));
        if (!r->text)
                return -ENOMEM;
        tok = next_token(&cur); /* not NULL: the caller skips blank lines */

        if (strcmp(tok, "allow") != 0 && strcmp(tok, "deny") != 0)
                return perr(ps, tok, "expected 'allow' or 'deny'");
        r->deny = tok[0] == 'd';
        tok = next_token(&cur);
        if (!tok)
                return perr(ps, end, "expected actions (read, list, write, delete, issue, delegate, admin or *)");
        rc = parse_actions(ps, r, tok);
        if (rc < 0)
                return rc;
        tok = next_token(&cur);
        if (!tok)
                return perr(ps, end, "expected an object (secret:GLOB, token:GLOB, store:GLOB, policy:GLOB, "
                                     "audit:GLOB or *)");
        rc = parse_object(ps, r, tok);
        if (rc < 0)
                return rc;
        while ((tok = next_token(&cur))) {
                rc = parse_term(ps, r, tok);
                if (rc < 0)
                        return rc;
        }
        return 0;
}

static int parse_line(struct parser *ps, char *l) {
        struct pol_rule r = { .file = ps->file_idx, .line = ps->line };
        const char *s;
        int rc;

        strip_comment(l);
        rc = check_chars(ps, l);
        if (rc < 0)
                return rc;
        for (s = l; is_blank(*s); s++)
                ;
        if (!*s)
                return 0;
        if (ps->p->nrules >= POLICY_RULES_MAX) {
                errf(ps->err, ps->errsz, "%s:%u: too many rules: at most %d in all policy files together",
                     ps->file, ps->line, POLICY_RULES_MAX);
                return -E2BIG;
        }
        rc = parse_line_into(ps, l, &r);
        if (rc == 0)
                rc = rule_append(ps->p, &r);
        rule_clear(&r);
        return rc;
}

static int file_add(struct policy *p, const char *name, uint32_t *idx) {
        char **n = realloc(p->files, (p->nfiles + 1) * sizeof(*n));

        if (!n)
                return -ENOMEM;
        p->files = n;
        n[p->nfiles] = strdup(name);
        if (!n[p->nfiles])
                return -ENOMEM;
        *idx = (uint32_t) p->nfiles++;
        return 0;
}

/* Parse without rebuilding the index; on error drop what this file added. */
static int parse_one(struct policy *p, const char *filename, const char *buf, size_t len, char *err, size_t errsz) {
        char line[POLICY_LINE_MAX + 1];
        struct parser ps = { .p = p, .file = filename, .ls = line, .err = err, .errsz = errsz };
        size_t nrules = p->nrules, nfiles = p->nfiles;
        const char *pos = buf, *end = buf + len;
        int rc = file_add(p, filename, &ps.file_idx);

        /* Go on after a bad line so that every error is reported; the file
         * is dropped whole if any line was bad. */
        int first = rc;
        while (rc != -ENOMEM && rc != -E2BIG && first != -ENOMEM && pos < end) {
                const char *nl = memchr(pos, '\n', (size_t) (end - pos));
                size_t n = (size_t) ((nl ? nl : end) - pos);
                const char *nul = memchr(pos, '\0', n);

                ps.line++;
                memcpy(line, pos, n < POLICY_LINE_MAX ? n : POLICY_LINE_MAX);
                if (n > POLICY_LINE_MAX)
                        rc = perr(&ps, line + POLICY_LINE_MAX, "line is longer than %d characters", POLICY_LINE_MAX);
                else if (nul)
                        rc = perr(&ps, line + (nul - pos), "NUL byte: policy files are text");
                else {
                        line[n] = '\0';
                        rc = parse_line(&ps, line);
                }
                if (first == 0)
                        first = rc;
                pos = nl ? nl + 1 : end;
        }
        rc = first;
        if (rc < 0) {
                while (p->nrules > nrules)
                        rule_clear(&p->rules[--p->nrules]);
                while (p->nfiles > nfiles)
                        free(p->files[--p->nfiles]);
        }
        return rc;
}

/* ---- the index ---- */

struct entry {
        const char *prefix;
        size_t len;
        uint32_t rule;
};

static int prefix_cmp(const char *a, size_t an, const char *b, size_t bn) {
        int c = memcmp(a, b, an < bn ? an : bn);

        return c ? c : (an > bn) - (an < bn);
}

static int entry_cmp(const void *x, const void *y) {
        const struct entry *a = x, *b = y;
        int c = prefix_cmp(a->prefix, a->len, b->prefix, b->len);

        return c ? c : (a->rule > b->rule) - (a->rule < b->rule);
}

static void buckets_free(struct policy *p) {
        for (size_t i = 0; i < p->nbuckets; i++)
                for (int a = 0; a < POL_ACTION_COUNT; a++) {
                        idv_free(&p->buckets[i].rules[a][0]);
                        idv_free(&p->buckets[i].rules[a][1]);
                }
        free(p->buckets);
        p->buckets = NULL;
        p->nbuckets = 0;
}

static bool is_prefix(const struct bucket *b, const char *s, size_t n) {
        return b->len <= n && memcmp(b->prefix, s, b->len) == 0;
}

/* Sorted prefixes; each knows its longest proper prefix among them, so all
 * prefixes of an object are one binary search and a walk up that chain. */
static int index_fill(struct policy *p) {
        _cleanup_free_ struct entry *e = calloc(p->nrules ? p->nrules : 1, sizeof(*e));
        _cleanup_free_ ssize_t *stack = calloc(p->nrules ? p->nrules : 1, sizeof(*stack));
        size_t depth = 0;

        buckets_free(p);
        if (!e || !stack)
                return -ENOMEM;
        for (size_t i = 0; i < p->nrules; i++) {
                const struct pol_rule *r = &p->rules[i];

                e[i].prefix = r->object ? r->object : "";
                e[i].len = r->object ? r->kind_len + glob_literal_len(r->object + r->kind_len) : 0;
                e[i].rule = (uint32_t) i;
        }
        qsort(e, p->nrules, sizeof(*e), entry_cmp);
        p->buckets = calloc(p->nrules ? p->nrules : 1, sizeof(*p->buckets));
        if (!p->buckets)
                return -ENOMEM;
        for (size_t i = 0; i < p->nrules; i++) {
                const struct pol_rule *r = &p->rules[e[i].rule];
                struct bucket *b = p->nbuckets > 0 ? &p->buckets[p->nbuckets - 1] : NULL;

                if (!b || prefix_cmp(b->prefix, b->len, e[i].prefix, e[i].len) != 0) {
                        b = &p->buckets[p->nbuckets];
                        b->prefix = e[i].prefix;
                        b->len = e[i].len;
                        /* Sorted order walks the prefix tree depth first: the stack is the path. */
                        while (depth > 0 && !is_prefix(&p->buckets[stack[depth - 1]], b->prefix, b->len))
                                depth--;
                        b->parent = depth > 0 ? stack[depth - 1] : -1;
                        stack[depth++] = (ssize_t) p->nbuckets++;
                }
                for (int a = 0; a < POL_ACTION_COUNT; a++)
                        if ((r->actions & (1u << a)) && idv_add(&b->rules[a][r->deny], e[i].rule) < 0)
                                return -ENOMEM;
        }
        if (p->nbuckets > 0) { /* give back what rules sharing a prefix did not need */
                struct bucket *shrunk = realloc(p->buckets, p->nbuckets * sizeof(*shrunk));

                p->buckets = shrunk ? shrunk : p->buckets;
        }
        return 0;
}

static int index_build(struct policy *p) {
        int rc = index_fill(p);

        if (rc < 0)
                buckets_free(p); /* no index denies everything, never half of it */
        return rc;
}

/* The bucket with the longest prefix of object, or -1. */
static ssize_t index_find(const struct policy *p, const char *object, size_t n) {
        size_t lo = 0, hi = p->nbuckets;
        ssize_t b;

        /* Largest bucket <= object: every prefix of object lies on its chain. */
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (prefix_cmp(p->buckets[mid].prefix, p->buckets[mid].len, object, n) <= 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        b = (ssize_t) lo - 1;
        while (b >= 0 && !is_prefix(&p->buckets[b], object, n))
                b = p->buckets[b].parent;
        return b;
}

/* ---- evaluation ---- */

static bool id_in(const struct idv *v, uint32_t id) {
        for (size_t i = 0; i < v->n; i++)
                if (v->v[i] == id)
                        return true;
        return false;
}

static bool glob_any(const struct strv *v, const char *s) {
        if (!*s)
                return false; /* unknown never matches */
        for (size_t i = 0; i < v->n; i++)
                if (policy_glob_match(v->v[i], s))
                        return true;
        return false;
}

static bool in_group(const struct pol_rule *r, const struct pol_subject *s) {
        if (id_in(&r->groups, (uint32_t) s->gid))
                return true;
        for (size_t i = 0; i < s->ngroups; i++)
                if (id_in(&r->groups, (uint32_t) s->groups[i]))
                        return true;
        return false;
}

static bool in_window(const struct idv *v, int minute) {
        if (minute < 0 || minute >= 24 * 60)
                return false;
        for (size_t i = 0; i < v->n; i++) {
                int start = (int) (v->v[i] >> 16), end = (int) (v->v[i] & 0xffff);

                if (start < end ? (minute >= start && minute < end) : (minute >= start || minute < end))
                        return true;
        }
        return false;
}

enum rule_match {
        MATCH_NO,      /* an object or strong term does not hold */
        MATCH_WEAK_NO, /* only unit: or exe: does not hold */
        MATCH_YES,
};

static bool has(const struct pol_rule *r, enum term t) {
        return r->terms & (1u << t);
}

/* unit: and exe:. In doubt a deny rule takes the caller at its word and an
 * allow rule does not. */
static bool weak_terms_hold(const struct pol_rule *r, const struct pol_subject *s) {
        if (has(r, TERM_UNIT) && (!glob_any(&r->units, s->unit) || (!r->deny && s->unit_unverified)))
                return false;
        if (has(r, TERM_EXE) && (!glob_any(&r->exes, s->exe) || (!r->deny && s->exe_unverified)))
                return false;
        return true;
}

/* The rule's object and terms; exe and unit last, so MATCH_WEAK_NO means
 * "would match with another exe or unit". */
static enum rule_match rule_match(const struct pol_rule *r, const struct pol_subject *s, const char *object) {
        if ((has(r, TERM_USER) && !id_in(&r->users, (uint32_t) s->uid)) ||
            (has(r, TERM_UID) && !id_in(&r->uids, (uint32_t) s->uid)) ||
            (has(r, TERM_GROUP) && !in_group(r, s)) || (has(r, TERM_SESSION) && !s->in_login_session) ||
            (has(r, TERM_TIME) && !in_window(&r->times, s->minute_of_day)))
                return MATCH_NO;
        if (r->object && (strncmp(object, r->object, r->kind_len) != 0 ||
                          !policy_glob_match(r->object + r->kind_len, object + r->kind_len)))
                return MATCH_NO;
        if (!weak_terms_hold(r, s))
                return MATCH_WEAK_NO;
        return MATCH_YES;
}

/* The first matching rule of one effect (lowest index over all buckets on
 * the chain), or SIZE_MAX. *weak collects TERM_EXE/TERM_UNIT bits of rules
 * that failed only on those, while no match is known. */
static size_t first_match(const struct policy *p, ssize_t b, const struct pol_subject *s, enum pol_action a,
                          bool deny, const char *object, unsigned *weak) {
        size_t best = SIZE_MAX;

        for (; b >= 0; b = p->buckets[b].parent) {
                const struct idv *v = &p->buckets[b].rules[a][deny];

                for (size_t i = 0; i < v->n && v->v[i] < best; i++) {
                        const struct pol_rule *r = &p->rules[v->v[i]];
                        enum rule_match m = rule_match(r, s, object);

                        if (m == MATCH_WEAK_NO)
                                *weak |= r->terms & (1u << TERM_EXE | 1u << TERM_UNIT);
                        if (m == MATCH_YES) {
                                best = v->v[i];
                                break;
                        }
                }
        }
        return best;
}

static void decide(const struct policy *p, size_t idx, unsigned weak, struct pol_decision *d) {
        const struct pol_rule *r = &p->rules[idx];

        d->allow = !r->deny;
        d->file = p->files[r->file];
        d->line = r->line;
        d->rule = r->text;
        d->max_ttl_sec = r->ttl;
        d->max_uses = r->uses;
        weak |= r->terms & (1u << TERM_EXE | 1u << TERM_UNIT);
        d->depends_on_exe = weak & (1u << TERM_EXE);
        d->depends_on_unit = weak & (1u << TERM_UNIT);
}

int policy_eval(const struct policy *p, const struct pol_subject *s, enum pol_action a, const char *object,
                struct pol_decision *d) {
        unsigned deny_weak = 0, allow_weak = 0;
        ssize_t b;
        size_t idx;

        memset(d, 0, sizeof(*d));
        if ((unsigned) a >= POL_ACTION_COUNT)
                return -EINVAL;
        b = index_find(p, object, strlen(object));
        idx = first_match(p, b, s, a, true, object, &deny_weak);
        if (idx != SIZE_MAX) {
                /* Denied: only the deny rule's own terms matter. */
                decide(p, idx, 0, d);
                return 0;
        }
        idx = first_match(p, b, s, a, false, object, &allow_weak);
        if (idx != SIZE_MAX) {
                decide(p, idx, deny_weak, d);
                return 0;
        }
        d->depends_on_exe = (deny_weak | allow_weak) & (1u << TERM_EXE);
        d->depends_on_unit = (deny_weak | allow_weak) & (1u << TERM_UNIT);
        return 0;
}

int policy_decision_describe(const struct pol_decision *d, char *buf, size_t n) {
        if (!d->file)
                return snprintf(buf, n, "denied: no rule allows this");
        return snprintf(buf, n, "%s by %s:%u: %s", d->allow ? "allowed" : "denied", d->file, d->line, d->rule);
}

/* ---- the policy object ---- */

int policy_new(struct policy **out) {
        *out = calloc(1, sizeof(**out));
        return *out ? 0 : -ENOMEM;
}

void policy_free(struct policy *p) {
        if (!p)
                return;
        buckets_free(p);
        for (size_t i = 0; i < p->nrules; i++)
                rule_clear(&p->rules[i]);
        free(p->rules);
        for (size_t i = 0; i < p->nfiles; i++)
                free(p->files[i]);
        free(p->files);
        free(p);
}

size_t policy_rule_count(const struct policy *p) {
        return p->nrules;
}

bool policy_is_empty(const struct policy *p) {
        return p->nrules == 0;
}

int policy_parse_buffer(struct policy *p, const char *filename, const char *buf, size_t len, char *err,
                        size_t errsz) {
        err_clear(err, errsz);
        int rc = parse_one(p, filename, buf, len, err, errsz);

        if (rc < 0)
                return rc;
        rc = index_build(p);
        if (rc < 0)
                errf(err, errsz, "%s: out of memory", filename);
        return rc;
}

const char *pol_action_to_string(enum pol_action a) {
        return (unsigned) a < POL_ACTION_COUNT ? action_names[a] : NULL;
}

int pol_action_from_string(const char *name, enum pol_action *out) {
        for (int i = 0; i < POL_ACTION_COUNT; i++)
                if (strcmp(name, action_names[i]) == 0) {
                        *out = (enum pol_action) i;
                        return 0;
                }
        return -EINVAL;
}

/* ---- the loader ---- */

static int check_owner_mode(const struct stat *st, const char *path, uid_t daemon_uid, char *err, size_t errsz) {
        if (st->st_uid != 0 && st->st_uid != daemon_uid) {
                errf(err, errsz, "%s: owned by uid %u; policy must be owned by root or the daemon's user "
                                 "(uid %u): run chown root %s",
                     path, (unsigned) st->st_uid, (unsigned) daemon_uid, path);
                return -EPERM;
        }
        if (st->st_mode & (S_IWGRP | S_IWOTH)) {
                errf(err, errsz, "%s: is writable by group or others (mode %04o); run chmod go-w %s", path,
                     (unsigned) (st->st_mode & 07777), path);
                return -EPERM;
        }
        return 0;
}

static bool is_policy_name(const char *name) {
        size_t n = strlen(name);

        return name[0] != '.' && n > strlen(".policy") && strcmp(name + n - strlen(".policy"), ".policy") == 0;
}

static int name_cmp(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* The *.policy names in the directory, sorted bytewise. */
static int list_policy_files(int dfd, struct strv *names) {
        int fd = dup(dfd);
        DIR *d;
        struct dirent *de;
        int rc = 0;

        if (fd < 0)
                return -errno;
        d = fdopendir(fd);
        if (!d) {
                rc = -errno;
                close(fd);
                return rc;
        }
        rewinddir(d);
        errno = 0;
        while (rc == 0 && (de = readdir(d)))
                if (is_policy_name(de->d_name))
                        rc = strv_add(names, de->d_name);
        if (rc == 0 && errno != 0)
                rc = -errno;
        closedir(d);
        if (rc == 0 && names->n > 0)
                qsort(names->v, names->n, sizeof(*names->v), name_cmp);
        return rc;
}

static int load_file(struct policy *p, int dfd, const char *path, const char *name, uid_t daemon_uid, char *err,
                     size_t errsz) {
        _cleanup_free_ uint8_t *buf = NULL;
        struct stat st;
        size_t len;
        int rc = read_settled_file_at(dfd, name, POLICY_FILE_MAX, &st, &buf, &len);

        if (rc == -ELOOP)
                errf(err, errsz, "%s: is a symbolic link; policy files must be regular files", path);
        else if (rc == -EINVAL)
                errf(err, errsz, "%s: not a regular file", path);
        else if (rc == -EFBIG)
                errf(err, errsz, "%s: larger than %d bytes (1 MiB), the limit for one policy file", path,
                     POLICY_FILE_MAX);
        else if (rc == -EAGAIN || rc == -ENOENT)
                errf(err, errsz, "%s: %s while it was read; write policy files under another name and "
                                 "rename them into place (see coffer.policy(5)), then reload",
                     path, rc == -ENOENT ? "was removed" : "kept changing");
        else if (rc < 0)
                errf(err, errsz, "%s: cannot read: %s", path, strerror(-rc));
        if (rc < 0)
                return rc;

        rc = check_owner_mode(&st, path, daemon_uid, err, errsz);
        return rc < 0 ? rc : parse_one(p, path, (const char *) buf, len, err, errsz);
}

int policy_load_dir(struct policy **out, const char *dir, uid_t daemon_uid, char *err, size_t errsz) {
        _cleanup_policy_ struct policy *p = NULL;
        _cleanup_(strv_free) struct strv names = { NULL, 0 };
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct stat st;
        int rc, first = 0;

        err_clear(err, errsz);
        if (dfd < 0 || fstat(dfd, &st) < 0) {
                rc = -errno;
                errf(err, errsz, "%s: cannot open the policy directory: %s", dir, strerror(-rc));
                return rc;
        }
        rc = check_owner_mode(&st, dir, daemon_uid, err, errsz);
        if (rc < 0)
                return rc;
        rc = list_policy_files(dfd, &names);
        if (rc == 0)
                rc = policy_new(&p);
        if (rc < 0) {
                errf(err, errsz, "%s: cannot read the policy directory: %s", dir, strerror(-rc));
                return rc;
        }
        for (size_t i = 0; i < names.n; i++) {
                size_t dn = strlen(dir);
                _cleanup_free_ char *path = NULL;

                if (asprintf(&path, "%s%s%s", dir, dn > 0 && dir[dn - 1] == '/' ? "" : "/", names.v[i]) < 0)
                        return -ENOMEM;
                rc = load_file(p, dfd, path, names.v[i], daemon_uid, err, errsz);
                if (rc == -ENOMEM || rc == -E2BIG)
                        return rc;
                if (first == 0)
                        first = rc; /* go on: report the other files' errors too */
        }
        if (first < 0)
                return first;
        /* A file added, removed or renamed while the files were read (a
         * deny moved from one file into a new one) would leave a policy
         * that is neither the old nor the new: refuse, the old one stays. */
        struct stat after;
        if (fstat(dfd, &after) < 0 || after.st_mtim.tv_sec != st.st_mtim.tv_sec ||
            after.st_mtim.tv_nsec != st.st_mtim.tv_nsec || after.st_ctim.tv_sec != st.st_ctim.tv_sec ||
            after.st_ctim.tv_nsec != st.st_ctim.tv_nsec) {
                errf(err, errsz, "%s: files were added, removed or renamed while the policy was read; reload again "
                                 "once the change is done", dir);
                return -EAGAIN;
        }
        rc = index_build(p);
        if (rc < 0) {
                errf(err, errsz, "%s: out of memory", dir);
                return rc;
        }
        *out = p;
        p = NULL;
        return 0;
}
