/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* coffer lease / token / key */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "util.h"

#define LEASE_USAGE                                                                                               \
        "lease ls [--all] [--json]\n"                                                                            \
        "       coffer lease renew ID [--ttl DURATION]\n"                                                        \
        "       coffer lease revoke ID | --prefix KIND/[OBJECT]"
#define TOKEN_USAGE                                                                                               \
        "token issue --aud AUDIENCE [--ttl DURATION]\n"                                                          \
        "       coffer token verify TOKEN|- [--aud AUDIENCE] [--json]\n"                                         \
        "       coffer token jwks | rotate"
#define KEY_USAGE "key derive NAME [--bytes N] [--raw]"

static void fmt_time(uint64_t t, char *buf, size_t n) {
        time_t tt = (time_t) t;
        struct tm tm;
        if (t == 0 || !gmtime_r(&tt, &tm) || strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                snprintf(buf, n, "-");
}

static bool parse_ttl(const char *s, uint64_t *out) {
        if (parse_duration_sec(s, out) == 0 && *out > 0)
                return true;
        fprintf(stderr, "coffer: --ttl needs a duration like 90s, 30m, 8h or 2d, not '%s'\n", s);
        return false;
}

/* ---- lease ---- */

static int lease_ls(struct cli *cli, int argc, char **argv) {
        static const struct option opts[] = { { "all", no_argument, NULL, 'a' }, { "json", no_argument, NULL, 'j' }, {} };
        bool all = false, json = cli->json;
        int o;
        while ((o = getopt_long(argc, argv, "aj", opts, NULL)) >= 0) {
                if (o == 'a')
                        all = true;
                else if (o == 'j')
                        json = true;
                else
                        return cli_usage(LEASE_USAGE);
        }
        if (optind != argc)
                return cli_usage(LEASE_USAGE);
        coffer *c;
        coffer_lease *v;
        int rc = cli_connect(cli, &c);
        if (rc)
                return rc;
        uint64_t total = 0;
        int n = coffer_lease_list(c, &v, all, &total);
        coffer_disconnect(c);
        if (n < 0)
                return cli_fail(n, "lease ls");
        char issued[32], expires[32];
        if (json)
                fputc('[', stdout);
        else if (n > 0)
                printf("%-32s  %-7s  %-16s  %-20s  %-20s  %s\n", "ID", "KIND", "OWNER", "EXPIRES", "PARENT", "OBJECT");
        for (int i = 0; i < n; i++) {
                const coffer_lease *l = &v[i];
                fmt_time(l->issued, issued, sizeof(issued));
                fmt_time(l->expires, expires, sizeof(expires));
                if (json) {
                        printf("%s{\"id\":\"%s\",\"kind\":\"%s\",\"owner\":", i ? "," : "", l->id, l->kind);
                        json_string(stdout, l->owner, strlen(l->owner));
                        printf(",\"owner_uid\":%u,\"object\":", l->owner_uid);
                        json_string(stdout, l->object, strlen(l->object));
                        printf(",\"parent\":\"%s\",\"issued\":%llu,\"expires\":%llu,\"max_expires\":%llu,"
                               "\"renewable\":%s}",
                               l->parent, (unsigned long long) l->issued, (unsigned long long) l->expires,
                               (unsigned long long) l->max_expires, l->renewable ? "true" : "false");
                } else
                        printf("%-32s  %-7s  %-16s  %-20s  %-20.20s  %s\n", l->id, l->kind, l->owner, expires,
                               l->parent[0] ? l->parent : "-", l->object);
        }
        if (json)
                fputs("]\n", stdout);
        free(v);
        if (total > (uint64_t) n)
                fprintf(stderr, "coffer: %llu more lease(s) not shown: the list is longer than one reply; "
                                "revoke by prefix or list as their owners\n", (unsigned long long) (total - (uint64_t) n));
        return EXIT_OK;
}

static int lease_renew(struct cli *cli, int argc, char **argv) {
        static const struct option opts[] = { { "ttl", required_argument, NULL, 't' }, {} };
        uint64_t ttl = 0, expires = 0;
        int o;
        while ((o = getopt_long(argc, argv, "t:", opts, NULL)) >= 0) {
                if (o != 't' || !parse_ttl(optarg, &ttl))
                        return o == 't' ? EXIT_USAGE : cli_usage(LEASE_USAGE);
        }
        if (optind != argc - 1)
                return cli_usage(LEASE_USAGE);
        coffer *c;
        int rc = cli_connect(cli, &c);
        if (rc)
                return rc;
        rc = coffer_lease_renew(c, argv[optind], ttl, &expires);
        coffer_disconnect(c);
        if (rc < 0)
                return cli_fail(rc, "lease renew");
        char buf[32];
        fmt_time(expires, buf, sizeof(buf));
        printf("%s expires %s\n", argv[optind], buf);
        return EXIT_OK;
}

static int lease_revoke(struct cli *cli, int argc, char **argv) {
        static const struct option opts[] = { { "prefix", required_argument, NULL, 'p' }, {} };
        const char *prefix = NULL;
        uint64_t n = 0;
        int o;
        while ((o = getopt_long(argc, argv, "p:", opts, NULL)) >= 0) {
                if (o != 'p')
                        return cli_usage(LEASE_USAGE);
                prefix = optarg;
        }
        if ((prefix && optind != argc) || (!prefix && optind != argc - 1))
                return cli_usage(LEASE_USAGE);
        coffer *c;
        int rc = cli_connect(cli, &c);
        if (rc)
                return rc;
        rc = prefix ? coffer_lease_revoke_prefix(c, prefix, &n) : coffer_lease_revoke(c, argv[optind], &n);
        coffer_disconnect(c);
        if (rc < 0)
                return cli_fail(rc, "lease revoke");
        printf("revoked %llu lease(s)\n", (unsigned long long) n);
        return EXIT_OK;
}

int cmd_lease(struct cli *cli, int argc, char **argv) {
        if (argc < 2)
                return cli_usage(LEASE_USAGE);
        optind = 0;
        if (strcmp(argv[1], "ls") == 0)
                return lease_ls(cli, argc - 1, argv + 1);
        if (strcmp(argv[1], "renew") == 0)
                return lease_renew(cli, argc - 1, argv + 1);
        if (strcmp(argv[1], "revoke") == 0)
                return lease_revoke(cli, argc - 1, argv + 1);
        return cli_usage(LEASE_USAGE);
}

/* ---- token ---- */

static int token_issue(struct cli *cli, int argc, char **argv) {
        static const struct option opts[] = { { "aud", required_argument, NULL, 'a' },
                                              { "ttl", required_argument, NULL, 't' }, {} };
        const char *aud = NULL;
        uint64_t ttl = 0, exp = 0;
        int o;
        while ((o = getopt_long(argc, argv, "a:t:", opts, NULL)) >= 0) {
                if (o == 'a')
                        aud = optarg;
                else if (o == 't') {
                        if (!parse_ttl(optarg, &ttl))
                                return EXIT_USAGE;
                } else
                        return cli_usage(TOKEN_USAGE);
        }
        if (!aud || optind != argc)
                return cli_usage(TOKEN_USAGE);
        coffer *c;
        coffer_secret *tok;
        int rc = cli_connect(cli, &c);
        if (rc)
                return rc;
        rc = coffer_token_issue(c, &tok, aud, ttl, &exp);
        coffer_disconnect(c);
        if (rc < 0)
                return cli_fail(rc, "token issue");
        fwrite(coffer_secret_data(tok), 1, coffer_secret_size(tok), stdout);
        fputc('\n', stdout);
        coffer_secret_free(tok);
        return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
}

/* A token from the argument, or from stdin for "-" (keeps it out of
 * ps). A bearer credential: wipe with free_arg. */
static char *token_arg(const char *arg) {
        if (strcmp(arg, "-") != 0)
                return strdup(arg);
        uint8_t *p = NULL;
        size_t len = 0;
        if (read_all_fd(STDIN_FILENO, 65536, &p, &len) < 0)
                return NULL;
        size_t n = len;
        while (n && (p[n - 1] == '\n' || p[n - 1] == '\r' || p[n - 1] == ' '))
                n--;
        char *s = strndup((const char *) p, n);
        explicit_bzero(p, len);
        free(p);
        return s;
}

static void free_arg(char *s) {
        if (s) {
                explicit_bzero(s, strlen(s));
                free(s);
        }
}

static int token_verify(struct cli *cli, int argc, char **argv) {
        static const struct option opts[] = { { "aud", required_argument, NULL, 'a' },
                                              { "json", no_argument, NULL, 'j' }, {} };
        const char *aud = NULL;
        bool json = cli->json;
        int o;
        while ((o = getopt_long(argc, argv, "a:j", opts, NULL)) >= 0) {
                if (o == 'a')
                        aud = optarg;
                else if (o == 'j')
                        json = true;
                else
                        return cli_usage(TOKEN_USAGE);
        }
        if (optind != argc - 1)
                return cli_usage(TOKEN_USAGE);
        char *tok = token_arg(argv[optind]);
        if (!tok) {
                fprintf(stderr, "coffer: cannot read the token from stdin\n");
                return EXIT_FAIL;
        }
        coffer *c;
        coffer_token_info ti;
        int rc = cli_connect(cli, &c);
        if (rc) {
                free_arg(tok);
                return rc;
        }
        rc = coffer_token_verify(c, &ti, tok, aud);
        coffer_disconnect(c);
        free_arg(tok);
        if (rc < 0)
                return cli_fail(rc, "token verify");
        char iat[32], exp[32];
        fmt_time(ti.iat, iat, sizeof(iat));
        fmt_time(ti.exp, exp, sizeof(exp));
        if (json) {
                printf("{\"valid\":%s,\"status\":\"%s\",\"reason\":", ti.valid ? "true" : "false", ti.status);
                json_string(stdout, ti.reason, strlen(ti.reason));
                fputs(",\"sub\":", stdout);
                json_string(stdout, ti.sub, strlen(ti.sub));
                fputs(",\"aud\":", stdout);
                json_string(stdout, ti.aud, strlen(ti.aud));
                printf(",\"jti\":\"%s\",\"sid\":\"%s\",\"kid\":", ti.jti, ti.sid);
                json_string(stdout, ti.kid, strlen(ti.kid));
                printf(",\"iat\":%llu,\"nbf\":%llu,\"exp\":%llu}\n", (unsigned long long) ti.iat,
                       (unsigned long long) ti.nbf, (unsigned long long) ti.exp);
        } else {
                printf("Status:   %s%s%s\n", ti.status, ti.reason[0] ? ": " : "", ti.reason);
                if (ti.sub[0] || ti.jti[0]) {
                        printf("Subject:  %s\nAudience: %s\nIssued:   %s\nExpires:  %s\nToken id: %s\n", ti.sub,
                               ti.aud, iat, exp, ti.jti);
                        if (ti.sid[0])
                                printf("Session:  %s\n", ti.sid);
                }
                if (ti.kid[0])
                        printf("Key id:   %s\n", ti.kid);
        }
        /* A bad token is the answer "no": exit like a failed integrity check. */
        return ti.valid ? EXIT_OK : EXIT_INTEGRITY;
}

static int token_simple(struct cli *cli, int argc, char **argv, bool rotate) {
        if (argc != 1)
                return cli_usage(TOKEN_USAGE);
        (void) argv;
        coffer *c;
        int rc = cli_connect(cli, &c);
        if (rc)
                return rc;
        if (rotate) {
                char kid[64];
                rc = coffer_token_rotate(c, kid);
                if (rc == 0)
                        printf("signing with key %s; the old key stays published until its tokens expire\n", kid);
        } else {
                char *json;
                rc = coffer_token_jwks(c, &json);
                if (rc == 0) {
                        fputs(json, stdout);
                        free(json);
                }
        }
        coffer_disconnect(c);
        return rc < 0 ? cli_fail(rc, rotate ? "token rotate" : "token jwks") : EXIT_OK;
}

int cmd_token(struct cli *cli, int argc, char **argv) {
        if (argc < 2)
                return cli_usage(TOKEN_USAGE);
        optind = 0;
        if (strcmp(argv[1], "issue") == 0)
                return token_issue(cli, argc - 1, argv + 1);
        if (strcmp(argv[1], "verify") == 0)
                return token_verify(cli, argc - 1, argv + 1);
        if (strcmp(argv[1], "jwks") == 0)
                return token_simple(cli, argc - 1, argv + 1, false);
        if (strcmp(argv[1], "rotate") == 0)
                return token_simple(cli, argc - 1, argv + 1, true);
        return cli_usage(TOKEN_USAGE);
}

/* ---- key ---- */

int cmd_key(struct cli *cli, int argc, char **argv) {
        static const struct option opts[] = { { "bytes", required_argument, NULL, 'b' },
                                              { "raw", no_argument, NULL, 'r' }, {} };
        uint64_t bytes = 32;
        bool raw = false;
        int o;
        if (argc < 2 || strcmp(argv[1], "derive") != 0)
                return cli_usage(KEY_USAGE);
        argc--;
        argv++;
        optind = 0;
        while ((o = getopt_long(argc, argv, "b:r", opts, NULL)) >= 0) {
                if (o == 'b') {
                        if (!cli_u64("--bytes", optarg, 16, 64, &bytes))
                                return EXIT_USAGE;
                } else if (o == 'r')
                        raw = true;
                else
                        return cli_usage(KEY_USAGE);
        }
        if (optind != argc - 1)
                return cli_usage(KEY_USAGE);
        coffer *c;
        coffer_secret *k;
        int rc = cli_connect(cli, &c);
        if (rc)
                return rc;
        rc = coffer_key_derive(c, &k, argv[optind], (size_t) bytes);
        coffer_disconnect(c);
        if (rc < 0)
                return cli_fail(rc, "key derive");
        if (raw) {
                fwrite(coffer_secret_data(k), 1, coffer_secret_size(k), stdout);
        } else {
                char hex[129];
                hex_encode(hex, coffer_secret_data(k), coffer_secret_size(k));
                puts(hex);
                explicit_bzero(hex, sizeof(hex));
        }
        coffer_secret_free(k);
        return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
}

/* ---- grant ---- */

#define GRANT_USAGE                                                                                               \
        "grant create --secret NAME [--uses N] [--ttl DURATION] [--for-user USER | --for-unit GLOB]\n"           \
        "       coffer grant redeem --grant-file PATH | --grant-fd N | -|GRANT\n"                               \
        "       coffer grant revoke ID | --grant-file PATH | --grant-fd N | -|GRANT"

static int grant_create(struct cli *cli, int argc, char **argv) {
        static const struct option opts[] = {
                { "secret", required_argument, NULL, 's' },   { "uses", required_argument, NULL, 'n' },
                { "ttl", required_argument, NULL, 't' },      { "for-user", required_argument, NULL, 'u' },
                { "for-unit", required_argument, NULL, 'U' }, { "json", no_argument, NULL, 'j' },
                {},
        };
        coffer_grant_request q = { 0 };
        uint64_t uses = 1;
        bool json = cli->json;
        int o;
        while ((o = getopt_long(argc, argv, "s:n:t:u:U:j", opts, NULL)) >= 0) {
                switch (o) {
                case 's': q.secret = optarg; break;
                case 'n':
                        if (!cli_u64("--uses", optarg, 1, 10000, &uses))
                                return EXIT_USAGE;
                        break;
                case 't':
                        if (!parse_ttl(optarg, &q.ttl_sec))
                                return EXIT_USAGE;
                        break;
                case 'u': q.for_user = optarg; break;
                case 'U': q.for_unit = optarg; break;
                case 'j': json = true; break;
                default: return cli_usage(GRANT_USAGE);
                }
        }
        if (!q.secret || optind != argc)
                return cli_usage(GRANT_USAGE);
        if (q.for_user && q.for_unit) {
                fprintf(stderr, "coffer: give --for-user or --for-unit, not both\n");
                return EXIT_USAGE;
        }
        q.uses = (unsigned) uses;
        coffer *c;
        char grant[COFFER_GRANT_MAX], id[COFFER_LEASE_ID_LEN + 1], exp[32];
        uint64_t expires = 0;
        int rc = cli_connect(cli, &c);
        if (rc)
                return rc;
        rc = coffer_grant_create(c, grant, id, &expires, &q);
        coffer_disconnect(c);
        if (rc < 0)
                return cli_fail(rc, "grant create");
        fmt_time(expires, exp, sizeof(exp));
        if (json)
                printf("{\"grant\":\"%s\",\"id\":\"%s\",\"expires\":%llu,\"uses\":%u}\n", grant, id,
                       (unsigned long long) expires, q.uses);
        else {
                puts(grant);
                fprintf(stderr, "grant %s: %u use(s) of %s until %s; revoke with `coffer grant revoke %s`\n", id,
                        q.uses, q.secret, exp, id);
        }
        explicit_bzero(grant, sizeof(grant));
        return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
}

/* The grant, or for revoke its lease id, from one of the places
 * cli_grant_get knows; the command line only when nothing else is given. */
static int grant_source(int argc, char **argv, char g[COFFER_GRANT_MAX]) {
        static const struct option opts[] = { { "grant-file", required_argument, NULL, 'G' },
                                              { "grant-fd", required_argument, NULL, 'D' }, {} };
        const char *file = NULL;
        uint64_t fd = UINT64_MAX;
        int o;
        while ((o = getopt_long(argc, argv, "", opts, NULL)) >= 0) {
                if (o == 'G')
                        file = optarg;
                else if (o != 'D')
                        return cli_usage(GRANT_USAGE);
                else if (!cli_u64("--grant-fd", optarg, 0, INT_MAX, &fd))
                        return EXIT_USAGE;
        }

        bool from_arg = !file && fd == UINT64_MAX;
        if (optind != argc - (int) from_arg || (file && fd != UINT64_MAX))
                return cli_usage(GRANT_USAGE);
        if (!cli_grant_get(g, from_arg ? argv[optind] : NULL, file, fd == UINT64_MAX ? -1 : (int) fd))
                return EXIT_USAGE;
        return 0;
}

static int grant_redeem_or_revoke(struct cli *cli, int argc, char **argv, bool redeem) {
        char g[COFFER_GRANT_MAX];
        int rc = grant_source(argc, argv, g);
        if (rc)
                return rc;

        coffer *c;
        coffer_secret *v = NULL;
        rc = cli_connect(cli, &c);
        if (rc) {
                explicit_bzero(g, sizeof(g));
                return rc;
        }
        rc = redeem ? coffer_grant_redeem(c, &v, NULL, g) : coffer_grant_revoke(c, g);
        coffer_disconnect(c);
        explicit_bzero(g, sizeof(g));
        if (rc < 0)
                return cli_fail(rc, redeem ? "grant redeem" : "grant revoke");
        if (v) {
                fwrite(coffer_secret_data(v), 1, coffer_secret_size(v), stdout);
                coffer_secret_free(v);
        } else
                puts("revoked");
        return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
}

int cmd_grant(struct cli *cli, int argc, char **argv) {
        if (argc < 2)
                return cli_usage(GRANT_USAGE);
        optind = 0;
        if (strcmp(argv[1], "create") == 0)
                return grant_create(cli, argc - 1, argv + 1);
        if (strcmp(argv[1], "redeem") == 0)
                return grant_redeem_or_revoke(cli, argc - 1, argv + 1, true);
        if (strcmp(argv[1], "revoke") == 0)
                return grant_redeem_or_revoke(cli, argc - 1, argv + 1, false);
        return cli_usage(GRANT_USAGE);
}
