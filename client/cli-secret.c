/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* coffer put/get/ls/versions/rm/undelete/destroy */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "util.h"

struct secret_opts {
        const char *name;
        const char *file;
        uint64_t version;
        int64_t cas;
        uint64_t max_versions;
        bool json;
};

/* Options shared by the secret commands; each command says which it takes. */
static int parse_secret_opts(struct cli *cli, int argc, char **argv, const char *allowed, const char *usage,
                             struct secret_opts *o) {
        static const struct option opts[] = {
                { "file", required_argument, NULL, 'f' },         { "version", required_argument, NULL, 'v' },
                { "cas", required_argument, NULL, 'c' },          { "max-versions", required_argument, NULL, 'm' },
                { "json", no_argument, NULL, 'j' },               {},
        };
        uint64_t v;
        int c;
        *o = (struct secret_opts){ .cas = -1, .json = cli->json };
        while ((c = getopt_long(argc, argv, "f:v:c:m:j", opts, NULL)) >= 0) {
                if (c == '?' || !strchr(allowed, c))
                        return cli_usage(usage);
                switch (c) {
                case 'f': o->file = optarg; break;
                case 'v':
                        if (!cli_u64("--version", optarg, 1, UINT64_MAX, &o->version))
                                return EXIT_USAGE;
                        break;
                case 'c':
                        if (!cli_u64("--cas", optarg, 0, INT64_MAX, &v))
                                return EXIT_USAGE;
                        o->cas = (int64_t) v;
                        break;
                case 'm':
                        if (!cli_u64("--max-versions", optarg, 1, 1000, &o->max_versions))
                                return EXIT_USAGE;
                        break;
                case 'j': o->json = true; break;
                }
        }
        if (optind + 1 != argc)
                return cli_usage(usage);
        o->name = argv[optind];
        return 0;
}

/* A value typed at a terminal: one line, not echoed. */
static int read_tty_value(const char *name, struct secbuf *v) {
        struct termios old, raw;
        char line[8192];
        fprintf(stderr, "Value for %s (input hidden, end with Enter): ", name);
        bool restore = tcgetattr(STDIN_FILENO, &old) == 0;
        if (restore) {
                raw = old;
                raw.c_lflag &= ~(tcflag_t) ECHO;
                tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw);
        }
        char *ok = fgets(line, sizeof(line), stdin);
        if (restore)
                tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fputc('\n', stderr);
        if (!ok) {
                sodium_memzero(line, sizeof(line));
                return -EIO;
        }
        v->len = strcspn(line, "\r\n");
        v->p = malloc(v->len ? v->len : 1);
        if (v->p)
                memcpy(v->p, line, v->len);
        sodium_memzero(line, sizeof(line));
        return v->p ? 0 : -ENOMEM;
}

static int read_value(const struct secret_opts *o, struct secbuf *v) {
        int fd = STDIN_FILENO, rc;
        if (o->file) {
                fd = open(o->file, O_RDONLY | O_CLOEXEC);
                if (fd < 0) {
                        fprintf(stderr, "coffer: cannot open %s: %s\n", o->file, strerror(errno));
                        return EXIT_FAIL;
                }
        } else if (isatty(fd)) {
                return read_tty_value(o->name, v) < 0 ? EXIT_FAIL : 0;
        }
        rc = read_all_fd(fd, COFFER_VALUE_MAX, &v->p, &v->len);
        if (o->file)
                close(fd);
        if (rc == -EFBIG) {
                fprintf(stderr, "coffer: the value is larger than 1 MiB, the limit; store a reference to it instead\n");
                return EXIT_USAGE;
        }
        if (rc < 0) {
                fprintf(stderr, "coffer: reading the value failed: %s\n", strerror(-rc));
                return EXIT_FAIL;
        }
        return 0;
}

int cmd_put(struct cli *cli, int argc, char **argv) {
        struct secret_opts o;
        _cleanup_secbuf_ struct secbuf v = { 0 };
        coffer *c = NULL;
        uint64_t version;
        int rc = parse_secret_opts(cli, argc, argv, "fcm", "put NAME [--file FILE] [--cas N] [--max-versions N]", &o);
        if (rc == 0)
                rc = read_value(&o, &v);
        if (rc == 0)
                rc = cli_connect(cli, &c);
        if (rc)
                return rc;
        rc = coffer_put(c, &version, o.name, v.p, v.len, o.cas, o.max_versions);
        coffer_disconnect(c);
        if (rc < 0)
                return cli_fail(rc, "put");
        fprintf(stderr, "stored %s version %llu\n", o.name, (unsigned long long) version);
        return EXIT_OK;
}

static void print_value_json(const char *name, const coffer_secret *s) {
        size_t n = coffer_secret_size(s);
        size_t b64len = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
        struct secbuf b64 = { .p = malloc(b64len), .len = b64len };
        if (!b64.p)
                return;
        sodium_bin2base64((char *) b64.p, b64len, coffer_secret_data(s), n, sodium_base64_VARIANT_ORIGINAL);
        printf("{\"name\":");
        json_string(stdout, name, strlen(name));
        printf(",\"version\":%llu,\"value_base64\":\"%s\"}\n", (unsigned long long) coffer_secret_version(s),
               (char *) b64.p);
        fflush(stdout);
        secbuf_wipe(&b64);
}

int cmd_get(struct cli *cli, int argc, char **argv) {
        struct secret_opts o;
        coffer *c = NULL;
        coffer_secret *s = NULL;
        int rc = parse_secret_opts(cli, argc, argv, "vj", "get NAME [--version N] [--json]", &o);
        if (rc == 0)
                rc = cli_connect(cli, &c);
        if (rc)
                return rc;
        rc = coffer_get(c, &s, o.name, o.version);
        coffer_disconnect(c);
        if (rc < 0)
                return cli_fail(rc, "get");
        if (o.json)
                print_value_json(o.name, s);
        else if (write_all(STDOUT_FILENO, coffer_secret_data(s), coffer_secret_size(s)) < 0)
                rc = -EIO;
        coffer_secret_free(s);
        if (rc < 0) {
                fprintf(stderr, "coffer: writing the value to stdout failed\n");
                return EXIT_FAIL;
        }
        return EXIT_OK;
}

int cmd_ls(struct cli *cli, int argc, char **argv) {
        static const struct option opts[] = { { "json", no_argument, NULL, 'j' }, {} };
        bool json = cli->json;
        coffer *c = NULL;
        char **names = NULL;
        int ch;
        while ((ch = getopt_long(argc, argv, "j", opts, NULL)) >= 0) {
                if (ch != 'j')
                        return cli_usage("ls [PREFIX] [--json]");
                json = true;
        }
        if (argc - optind > 1)
                return cli_usage("ls [PREFIX] [--json]");
        int rc = cli_connect(cli, &c);
        if (rc)
                return rc;
        rc = coffer_list(c, &names, optind < argc ? argv[optind] : NULL);
        coffer_disconnect(c);
        if (rc < 0)
                return cli_fail(rc, "ls");
        if (json)
                putchar('[');
        for (int i = 0; i < rc; i++) {
                if (json) {
                        if (i)
                                putchar(',');
                        json_string(stdout, names[i], strlen(names[i]));
                } else
                        puts(names[i]);
        }
        if (json)
                puts("]");
        coffer_strv_free(names);
        return EXIT_OK;
}

static void fmt_time(char *buf, size_t n, uint64_t t) {
        time_t tt = (time_t) t;
        struct tm tm;
        if (!t || !gmtime_r(&tt, &tm) || !strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm))
                strcpy_bounded(buf, n, "-");
}

int cmd_versions(struct cli *cli, int argc, char **argv) {
        struct secret_opts o;
        coffer *c = NULL;
        coffer_version *v = NULL;
        int rc = parse_secret_opts(cli, argc, argv, "j", "versions NAME [--json]", &o);
        if (rc == 0)
                rc = cli_connect(cli, &c);
        if (rc)
                return rc;
        rc = coffer_versions(c, &v, o.name);
        coffer_disconnect(c);
        if (rc < 0)
                return cli_fail(rc, "versions");
        if (!o.json)
                printf("%-8s %-20s %-20s %s\n", "VERSION", "CREATED", "DELETED", "STATE");
        for (int i = 0; i < rc; i++) {
                const char *state = v[i].destroyed ? "destroyed" : v[i].deleted ? "deleted" : "live";
                char created[32], deleted[32];
                fmt_time(created, sizeof(created), v[i].created);
                fmt_time(deleted, sizeof(deleted), v[i].deleted);
                if (o.json)
                        printf("%s{\"version\":%llu,\"created\":%llu,\"deleted\":%llu,\"state\":\"%s\"}", i ? "," : "[",
                               (unsigned long long) v[i].version, (unsigned long long) v[i].created,
                               (unsigned long long) v[i].deleted, state);
                else
                        printf("%-8llu %-20s %-20s %s\n", (unsigned long long) v[i].version, created, deleted, state);
        }
        if (o.json)
                puts(rc ? "]" : "[]");
        free(v);
        return EXIT_OK;
}

typedef int (*version_op)(coffer *c, const char *name, uint64_t version);

static int delete_op(coffer *c, const char *name, uint64_t version) {
        uint64_t done = 0;
        int rc = coffer_delete(c, &done, name, version);
        if (rc == 0)
                fprintf(stderr, "deleted %s version %llu (undo: coffer undelete %s --version %llu)\n", name,
                        (unsigned long long) done, name, (unsigned long long) done);
        return rc;
}

static int version_cmd(struct cli *cli, int argc, char **argv, const char *usage, bool need_version, version_op op,
                       const char *what) {
        struct secret_opts o;
        coffer *c = NULL;
        int rc = parse_secret_opts(cli, argc, argv, "v", usage, &o);
        if (rc == 0 && need_version && !o.version) {
                fprintf(stderr, "coffer: %s needs --version N (see `coffer versions %s`)\n", what, o.name);
                rc = EXIT_USAGE;
        }
        if (rc == 0)
                rc = cli_connect(cli, &c);
        if (rc)
                return rc;
        rc = op(c, o.name, o.version);
        coffer_disconnect(c);
        return rc < 0 ? cli_fail(rc, what) : EXIT_OK;
}

int cmd_rm(struct cli *cli, int argc, char **argv) {
        return version_cmd(cli, argc, argv, "rm NAME [--version N]", false, delete_op, "rm");
}

int cmd_undelete(struct cli *cli, int argc, char **argv) {
        return version_cmd(cli, argc, argv, "undelete NAME --version N", true, coffer_undelete, "undelete");
}

int cmd_destroy(struct cli *cli, int argc, char **argv) {
        return version_cmd(cli, argc, argv, "destroy NAME --version N", true, coffer_destroy, "destroy");
}
