/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Policy evaluation speed.
 *
 *   policy-bench [SECONDS]      (default 1 per measurement)
 *
 * Builds 10,000 rules shaped like a real site: per-user secret trees,
 * team globs by group, service units, a few executables, time windows and
 * denies overlapping the allows; then evaluates a fixed mix of requests
 * (own secrets, other users' secrets, team secrets, services, tokens, admin,
 * misses) in a loop. Prints:
 *   bench policy-load rules=10000 ms=N
 *   bench policy-eval rules=10000 ns_per_eval=N
 *   bench policy-glob-worst ns_per_eval=N       ('*a*a*a*a*a*a*b' vs 4096 'a')
 *   bench policy-globstar-worst ns_per_eval=N   ('**' segments vs 2048 segments)
 * Exits 1 if a pathological glob takes over 10 ms, which only exponential
 * backtracking would. Users and groups: only ones every Debian has. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "util.h"

#define NRULES 10000
#define NREQ 1024
#define WORST_LEN 4096
#define WORST_BOUND_NS 10000000.0

static const char *const groups[] = { "adm", "users", "sys", "bin", "daemon" };

/* Appends one rule; the buffer is sized for NRULES lines of < 160 bytes. */
static void add(char **pos, size_t *left, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void add(char **pos, size_t *left, const char *fmt, ...) {
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(*pos, *left, fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t) n >= *left)
                abort();
        *pos += n;
        *left -= (size_t) n;
}

static char *build_rules(void) {
        size_t size = (size_t) NRULES * 160, left = size;
        char *buf = malloc(size), *pos = buf;
        int n = 0;

        if (!buf)
                abort();
        add(&pos, &left, "allow * * uid:0\n");
        add(&pos, &left, "allow list secret:** group:adm time:08:00-20:00\n");
        add(&pos, &left, "deny * secret:**/revoked\n");
        add(&pos, &left, "allow issue token:inference-* group:users ttl<=1h\n");
        n = 4;
        for (int u = 0; u < 6000; u++, n++)
                add(&pos, &left, "allow read,list,write,delete secret:users/u%d/** uid:%d\n", 10000 + u, 10000 + u);
        for (int t = 0; t < 1500; t++, n++)
                add(&pos, &left, "allow read,list secret:teams/t%d/* group:%s\n", t, groups[t % 5]);
        for (int t = 0; t < 500; t++, n++)
                add(&pos, &left, "deny read secret:teams/t%d/prod/* group:users session:login\n", t);
        for (int s = 0; s < 1000; s++, n++)
                add(&pos, &left, "allow read secret:svc/s%d/* unit:svc%d@*.service,svc%d.service\n", s, s, s);
        for (int e = 0; e < 500; e++, n++)
                add(&pos, &left, "allow read secret:tools/t%d exe:/opt/t%d/bin/* uid:%d\n", e, e, 20000 + e);
        for (int d = 0; n < NRULES; d++, n++)
                add(&pos, &left, "deny write,delete secret:users/u%d/locked/** uid:%d\n", 10000 + d, 10000 + d);
        return buf;
}

struct req {
        struct pol_subject s;
        enum pol_action a;
        char object[96];
};

static gid_t req_groups[NREQ][2];

static void make_requests(struct req *r) {
        for (int i = 0; i < NREQ; i++) {
                int u = (i * 7919) % 6000, t = (i * 104729) % 1500;

                r[i].s = (struct pol_subject) { .uid = 10000 + u, .gid = 100, .exe = "/usr/bin/python3",
                                                .unit = "", .in_login_session = i % 2, .minute_of_day = i % 1440 };
                req_groups[i][0] = 4 + (i % 3);
                req_groups[i][1] = 100;
                r[i].s.groups = req_groups[i];
                r[i].s.ngroups = 2;
                r[i].a = POL_READ;
                switch (i % 8) {
                case 0: /* own secret */
                        snprintf(r[i].object, sizeof(r[i].object), "secret:users/u%d/hf/token", 10000 + u);
                        break;
                case 1: /* someone else's */
                        snprintf(r[i].object, sizeof(r[i].object), "secret:users/u%d/ssh", 10000 + (u + 1) % 6000);
                        break;
                case 2: /* team secret */
                        snprintf(r[i].object, sizeof(r[i].object), "secret:teams/t%d/wandb", t);
                        break;
                case 3: /* team prod secret, denied in sessions */
                        snprintf(r[i].object, sizeof(r[i].object), "secret:teams/t%d/prod/db", t % 500);
                        break;
                case 4: /* a service */
                        r[i].s.uid = 998;
                        r[i].s.unit = "svc42@3.service";
                        snprintf(r[i].object, sizeof(r[i].object), "secret:svc/s%d/key", 42 + i % 2);
                        break;
                case 5: /* a token */
                        r[i].a = POL_ISSUE;
                        snprintf(r[i].object, sizeof(r[i].object), "token:inference-api");
                        break;
                case 6: /* a write to a locked path */
                        r[i].a = POL_WRITE;
                        snprintf(r[i].object, sizeof(r[i].object), "secret:users/u%d/locked/x", 10000 + u);
                        break;
                default: /* admin, and a miss */
                        r[i].a = i % 16 == 7 ? POL_ADMIN : POL_READ;
                        snprintf(r[i].object, sizeof(r[i].object), i % 16 == 7 ? "store:seal" : "secret:nowhere/%d", i);
                        break;
                }
        }
}

/* ns per evaluation of the requests, cycled for about `seconds`. */
static double time_evals(const struct policy *p, const struct req *r, size_t nreq, double seconds, unsigned *allows) {
        uint64_t start = now_mono_usec(), elapsed;
        size_t count = 0;

        *allows = 0;
        do {
                for (size_t i = 0; i < nreq; i++) {
                        struct pol_decision d;

                        policy_eval(p, &r[i].s, r[i].a, r[i].object, &d);
                        *allows += d.allow;
                }
                count += nreq;
                elapsed = now_mono_usec() - start;
        } while (elapsed < seconds * 1e6);
        return elapsed * 1000.0 / (double) count;
}

/* A rule no input here matches, against an object built to make a
 * backtracking matcher explode. */
static int bench_worst(const char *rule, const char *object, const char *name, double seconds) {
        _cleanup_policy_ struct policy *p = NULL;
        const struct pol_subject s = { .uid = 1, .gid = 1, .exe = "", .unit = "" };
        char err[POLICY_ERR_MAX];
        uint64_t start, elapsed;
        size_t count = 0;
        double ns;
        int rc = policy_new(&p);

        if (rc == 0)
                rc = policy_parse_buffer(p, "worst.policy", rule, strlen(rule), err, sizeof(err));
        if (rc < 0) {
                fprintf(stderr, "policy-bench: %s\n", err);
                return 1;
        }
        start = now_mono_usec();
        do {
                struct pol_decision d;

                policy_eval(p, &s, POL_READ, object, &d);
                if (d.allow)
                        abort();
                count++;
                elapsed = now_mono_usec() - start;
        } while (elapsed < seconds * 1e6 / 4);
        ns = elapsed * 1000.0 / (double) count;
        printf("bench %s ns_per_eval=%.0f\n", name, ns);
        if (ns > WORST_BOUND_NS) {
                fprintf(stderr, "policy-bench: %s took %.0f ns per evaluation: backtracking out of bounds\n", name, ns);
                return 1;
        }
        return 0;
}

int main(int argc, char **argv) {
        _cleanup_policy_ struct policy *p = NULL;
        _cleanup_free_ char *rules = build_rules();
        _cleanup_free_ struct req *reqs = calloc(NREQ, sizeof(*reqs));
        _cleanup_free_ char *worst = malloc(WORST_LEN * 2 + 16);
        char err[POLICY_ERR_MAX];
        double seconds = argc > 1 ? atof(argv[1]) : 1.0;
        unsigned allows;
        uint64_t t0;
        double ns;
        int rc;

        if (!reqs || !worst || seconds <= 0) {
                fprintf(stderr, "usage: %s [SECONDS]\n", argv[0]);
                return 2;
        }
        t0 = now_mono_usec();
        rc = policy_new(&p);
        if (rc == 0)
                rc = policy_parse_buffer(p, "bench.policy", rules, strlen(rules), err, sizeof(err));
        if (rc < 0) {
                fprintf(stderr, "policy-bench: %s\n", rc == -ENOMEM ? "out of memory" : err);
                return 1;
        }
        printf("bench policy-load rules=%zu ms=%.1f\n", policy_rule_count(p), (now_mono_usec() - t0) / 1000.0);
        make_requests(reqs);
        time_evals(p, reqs, NREQ, seconds / 10, &allows); /* warm up */
        time_evals(p, reqs, NREQ, 0, &allows); /* one round: how many are allowed */
        fprintf(stderr, "# %u of %d requests in the mix are allowed\n", allows, NREQ);
        ns = time_evals(p, reqs, NREQ, seconds, &allows);
        printf("bench policy-eval rules=%zu ns_per_eval=%.0f\n", policy_rule_count(p), ns);

        strcpy(worst, "secret:");
        memset(worst + 7, 'a', WORST_LEN);
        worst[7 + WORST_LEN] = '\0';
        rc = bench_worst("allow read secret:*a*a*a*a*a*a*b uid:1\n", worst, "policy-glob-worst", seconds);
        strcpy(worst, "secret:a");
        for (int i = 1; i < WORST_LEN / 2; i++)
                strcpy(worst + 6 + 2 * i, "/a"); /* a/a/.../a: 2048 segments */
        rc |= bench_worst("allow read secret:**/a/**/a/**/a/**/a/**/b uid:1\n", worst, "policy-globstar-worst", seconds);
        return rc;
}
