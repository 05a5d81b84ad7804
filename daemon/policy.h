/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The policy engine: who may do what, from rules in *.policy files.
 * Grammar and semantics: coffer.policy(5). Deny by default; any matching deny
 * beats every allow. A loaded policy is immutable: evaluate it from one
 * thread, swap the pointer on reload, free the old one.
 *
 * Functions return 0 (or a count) or a negative errno; on failure err holds
 * "FILE:LINE:COL: what was expected" or "FILE: what is wrong with it". */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define POLICY_FILE_MAX (1024 * 1024) /* bytes per file */
#define POLICY_RULES_MAX 100000       /* rules in all files together */
#define POLICY_LINE_MAX 4096          /* characters per line, without the newline */
#define POLICY_ERR_MAX 512            /* a good size for err buffers */

enum pol_action {
        POL_READ,
        POL_LIST,
        POL_WRITE,
        POL_DELETE,
        POL_ISSUE,
        POL_DELEGATE,
        POL_ADMIN,
        POL_ACTION_COUNT,
};

/* The caller as the daemon sees it. Strings are never NULL: "" = unknown. */
struct pol_subject {
        uid_t uid;
        gid_t gid;
        const gid_t *groups; /* supplementary groups */
        size_t ngroups;
        const char *exe;     /* /proc/PID/exe path, "" if unknown */
        const char *unit;    /* systemd unit, "" if none */
        /* Not proven (the path does not name the running file, the caller is
         * in another namespace): an allow rule's exe: / unit: term does not
         * match; a deny rule's still does, on the caller's word. */
        bool exe_unverified;
        bool unit_unverified;
        bool in_login_session;
        int minute_of_day;   /* local time, 0..1439 (passed in so tests are deterministic);
                              * outside that range no time: term matches */
};

struct pol_decision {
        bool allow;
        /* The rule that decided: the first matching deny, else the first
         * matching allow, in load order (file name, then line); NULL file =
         * no rule matched ("no rule allows this"). Pointers into the policy:
         * valid while it lives. */
        const char *file;
        unsigned line;
        const char *rule;    /* the rule's text as written */
        /* Bounds of the deciding allow rule; 0 = none. */
        uint64_t max_ttl_sec;
        uint64_t max_uses;
        /* The answer could differ if the caller's exe / unit differed: the
         * deciding rule has such a term, or (for an allow) a deny rule was
         * ruled out only by its exe / unit term. Re-verify the process (pidfd)
         * before acting on it. */
        bool depends_on_exe;
        bool depends_on_unit;
};

struct policy;

int policy_new(struct policy **out);
void policy_free(struct policy *p);
static inline void policy_freep(struct policy **p) { policy_free(*p); }
#define _cleanup_policy_ __attribute__((cleanup(policy_freep)))

/* Load every *.policy file in dir, in name order; other names are ignored.
 * The directory and each file must be owned by root or daemon_uid and not
 * writable by group or others; files are opened O_NOFOLLOW and must be
 * regular. All or nothing: on error *out is untouched. No *.policy file at
 * all loads an empty policy, which denies everything (see policy_is_empty).
 * -EPERM owner/mode, -EFBIG file too large, -E2BIG too many rules,
 * -EINVAL syntax or unknown user/group, -ELOOP a symlink, -ENOENT no such
 * directory, other -errno from the file system. */
int policy_load_dir(struct policy **out, const char *dir, uid_t daemon_uid, char *err, size_t errsz);

/* Parse one file's text into p (no owner/mode checks: that is the loader's
 * job). filename is used in rules and messages. On error p is unchanged. */
int policy_parse_buffer(struct policy *p, const char *filename, const char *buf, size_t len,
                        char *err, size_t errsz);

size_t policy_rule_count(const struct policy *p);
bool policy_is_empty(const struct policy *p);

/* object (not NULL) is "KIND:NAME", e.g. "secret:hf/token", "token:inference-api",
 * "store:seal", "policy:reload", "audit:verify". Always fills *d; returns 0,
 * or -EINVAL for an action out of range (d then denies). */
int policy_eval(const struct policy *p, const struct pol_subject *s, enum pol_action a,
                const char *object, struct pol_decision *d);

/* "allowed by FILE:LINE: RULE", "denied by FILE:LINE: RULE" or
 * "denied: no rule allows this". Returns what snprintf returns. */
int policy_decision_describe(const struct pol_decision *d, char *buf, size_t n);

const char *pol_action_to_string(enum pol_action a);
/* -EINVAL if name is not one of the action names. */
int pol_action_from_string(const char *name, enum pol_action *out);

/* The glob engine used for objects, unit: and exe: (see coffer.policy(5)):
 * pattern must be one that the parser accepts. Linear-ish, no exponential
 * backtracking. Exported for tests, benchmarks and `policy explain`. */
bool policy_glob_match(const char *pattern, const char *s);
/* Whether pattern is one the parser accepts for objects and unit: terms. */
bool policy_glob_valid(const char *pattern);
