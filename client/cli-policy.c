/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* coffer policy check/explain/reload */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "policy.h"
#include "util.h"

#define GROUPS_MAX 64

/* Count the *.policy files the loader would read. */
static unsigned count_files(const char *dir) {
        DIR *d = opendir(dir);
        unsigned n = 0;
        for (struct dirent *e; d && (e = readdir(d));) {
                size_t len = strlen(e->d_name);
                n += len > 7 && strcmp(e->d_name + len - 7, ".policy") == 0;
        }
        if (d)
                closedir(d);
        return n;
}

/* Validate locally, as the daemon would load it. Files must belong to root
 * or the daemon's user ($COFFER_DAEMON_USER, default coffer). */
static int policy_check(int argc, char **argv) {
        const char *dir = argc > 2 ? argv[2] : COFFER_DEFAULT_POLICY_DIR;
        const char *user = getenv("COFFER_DAEMON_USER");
        struct passwd pw, *res = NULL;
        char buf[1024], err[16384];
        struct policy *p = NULL;
        if (argc > 3)
                return cli_usage("policy check [DIR]");
        uid_t daemon_uid = getpwnam_r(user && *user ? user : "coffer", &pw, buf, sizeof(buf), &res) == 0 && res
                                   ? res->pw_uid
                                   : 0;
        int rc = policy_load_dir(&p, dir, daemon_uid, err, sizeof(err));
        if (rc < 0) {
                fprintf(stderr, "%s\n", err);
                return EXIT_FAIL;
        }
        size_t n = policy_rule_count(p);
        policy_free(p);
        if (n == 0) {
                fprintf(stderr, "%s: no policy rules (%u files): cofferd would refuse it on reload, and at start "
                                "deny everything to every uid but its own\n", dir, count_files(dir));
                return EXIT_FAIL;
        }
        printf("ok: %zu rules in %u files\n", n, count_files(dir));
        return EXIT_OK;
}

static const char explain_usage[] =
        "policy explain ACTION OBJECT [--user U] [--uid N] [--group G]... [--unit U] [--exe PATH] [--session] [--json]";

static int parse_explain(int argc, char **argv, coffer_subject *s, const char **groups, bool *json) {
        static const struct option opts[] = {
                { "user", required_argument, NULL, 'u' }, { "uid", required_argument, NULL, 'i' },
                { "group", required_argument, NULL, 'g' }, { "unit", required_argument, NULL, 'n' },
                { "exe", required_argument, NULL, 'e' },  { "session", no_argument, NULL, 's' },
                { "json", no_argument, NULL, 'j' },       {},
        };
        uint64_t uid;
        int c;
        *s = (coffer_subject){ .uid = -1, .groups = groups };
        while ((c = getopt_long(argc, argv, "u:i:g:n:e:sj", opts, NULL)) >= 0) {
                switch (c) {
                case 'u': s->user = optarg; break;
                case 'i':
                        if (!cli_u64("--uid", optarg, 0, UINT32_MAX - 1, &uid))
                                return EXIT_USAGE;
                        s->uid = (int64_t) uid;
                        break;
                case 'g':
                        if (s->ngroups == GROUPS_MAX)
                                return cli_usage(explain_usage);
                        groups[s->ngroups++] = optarg;
                        break;
                case 'n': s->unit = optarg; break;
                case 'e': s->exe = optarg; break;
                case 's': s->session = 1; break;
                case 'j': *json = true; break;
                default: return cli_usage(explain_usage);
                }
        }
        return argc - optind == 2 ? 0 : cli_usage(explain_usage);
}

static int policy_explain(struct cli *cli, int argc, char **argv) {
        const char *groups[GROUPS_MAX];
        coffer_subject s;
        coffer_explanation e;
        bool json = cli->json;
        coffer *c = NULL;
        int rc = parse_explain(argc, argv, &s, groups, &json);
        if (rc || (rc = cli_connect(cli, &c)))
                return rc;
        bool about_me = !s.user && s.uid < 0 && !s.ngroups && !s.unit && !s.exe && !s.session;
        const char *action = argv[optind], *object = argv[optind + 1];
        rc = coffer_policy_explain(c, &e, action, object, about_me ? NULL : &s);
        coffer_disconnect(c);
        if (rc == -EINVAL) {
                cli_fail(rc, "policy explain");
                return EXIT_USAGE;
        }
        if (rc < 0)
                return cli_fail(rc, "policy explain");
        if (json) {
                printf("{\"allow\":%s,\"file\":", e.allow ? "true" : "false");
                json_string(stdout, e.file, strlen(e.file));
                printf(",\"line\":%u,\"rule\":", e.line);
                json_string(stdout, e.rule, strlen(e.rule));
                printf("}\n");
        } else if (e.file[0])
                printf("%s: %s by %s:%u: %s\n", e.allow ? "allow" : "deny", e.allow ? "allowed" : "denied", e.file,
                       e.line, e.rule);
        else if (e.allow)
                printf("allow: allowed by %s\n", e.rule);
        else
                printf("deny: no rule allows this\n");
        return e.allow ? EXIT_OK : EXIT_DENIED;
}

static int policy_reload(struct cli *cli, int argc) {
        coffer *c = NULL;
        uint64_t n = 0;
        if (argc != 2)
                return cli_usage("policy reload");
        int rc = cli_connect(cli, &c);
        if (rc)
                return rc;
        rc = coffer_policy_reload(c, &n);
        coffer_disconnect(c);
        if (rc == -EINVAL) {
                cli_fail(rc, "policy reload");
                return EXIT_FAIL;
        }
        if (rc < 0)
                return cli_fail(rc, "policy reload");
        printf("policy reloaded: %llu rules\n", (unsigned long long) n);
        return EXIT_OK;
}

int cmd_policy(struct cli *cli, int argc, char **argv) {
        if (argc >= 2 && strcmp(argv[1], "check") == 0)
                return policy_check(argc, argv);
        if (argc >= 2 && strcmp(argv[1], "explain") == 0) {
                optind = 0;
                return policy_explain(cli, argc - 1, argv + 1);
        }
        if (argc >= 2 && strcmp(argv[1], "reload") == 0)
                return policy_reload(cli, argc);
        return cli_usage("policy check [DIR] | explain ACTION OBJECT [...] | reload");
}
