/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "util.h"

static const struct subcommand commands[] = {
        { "status", cmd_status, "status [--json]" },
        { "whoami", cmd_whoami, "whoami [--json]" },
        { "put", cmd_put, "put NAME [--file FILE] [--cas N] [--max-versions N]   (value from stdin or FILE)" },
        { "get", cmd_get, "get NAME [--version N] [--json]" },
        { "ls", cmd_ls, "ls [PREFIX] [--json]" },
        { "versions", cmd_versions, "versions NAME [--json]" },
        { "rm", cmd_rm, "rm NAME [--version N]" },
        { "undelete", cmd_undelete, "undelete NAME --version N" },
        { "destroy", cmd_destroy, "destroy NAME --version N" },
        { "operator", cmd_operator,
          "operator init (--keyfile FILE | --passphrase | --shares N --threshold K)\n"
          "       coffer operator unseal [--keyfile FILE]   (passphrase or share from stdin)\n"
          "       coffer operator seal | rotate | accept-rollback" },
        { "audit", cmd_audit, "audit verify [FILE]" },
        { "policy", cmd_policy,
          "policy check [DIR]\n"
          "       coffer policy explain ACTION OBJECT [--user U] [--uid N] [--group G]... [--unit U] [--exe PATH] "
          "[--session] [--json]\n"
          "       coffer policy reload" },
        { "lease", cmd_lease,
          "lease ls [--all] [--json]\n"
          "       coffer lease renew ID [--ttl DURATION]\n"
          "       coffer lease revoke ID | --prefix KIND/[OBJECT]" },
        { "token", cmd_token,
          "token issue --aud AUDIENCE [--ttl DURATION]\n"
          "       coffer token verify TOKEN|- [--aud AUDIENCE] [--json]\n"
          "       coffer token jwks | rotate" },
        { "key", cmd_key, "key derive NAME [--bytes N] [--raw]" },
        { "run", cmd_run,
          "run [--file NAME=SECRET]... [--env NAME=SECRET]... [--token NAME=AUDIENCE]... "
          "[--grant-file PATH | --grant-fd N | --grant -|GRANT] [--mask] -- CMD [ARG]..." },
        { "grant", cmd_grant,
          "grant create --secret NAME [--uses N] [--ttl DURATION] [--for-user USER | --for-unit GLOB]\n"
          "       coffer grant redeem --grant-file PATH | --grant-fd N | -|GRANT\n"
          "       coffer grant revoke ID | --grant-file PATH | --grant-fd N | -|GRANT" },
};

static void help(FILE *f) {
        fputs("Usage: coffer [--socket PATH] [--json] COMMAND ...\n\nCommands:\n", f);
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                fprintf(f, "  coffer %s\n", commands[i].usage);
        fputs("\nThe socket is --socket, $COFFER_SOCKET or " COFFER_DEFAULT_SOCKET ". See coffer(1).\n", f);
}

int cli_usage(const char *usage) {
        fprintf(stderr, "usage: coffer %s\n", usage);
        return EXIT_USAGE;
}

int cli_fail(int rc, const char *what) {
        fprintf(stderr, "coffer: %s: %s\n", what, coffer_last_error());
        switch (-rc) {
        case ECONNREFUSED:
        case ENOTSOCK:
        case ECONNRESET:
        case EPERM:
                return EXIT_UNREACHABLE;
        case ENOKEY:
        case ENODATA:
                return EXIT_SEALED;
        case EACCES:
                return EXIT_DENIED;
        case ENOENT:
                return EXIT_NOTFOUND;
        case EBADMSG:
        case EKEYREJECTED:
                return EXIT_INTEGRITY;
        case ESTALE:
        case EEXIST:
                return EXIT_CONFLICT;
        default:
                return EXIT_FAIL;
        }
}

int cli_connect(struct cli *cli, coffer **c) {
        int rc = coffer_connect(c, cli->socket);
        if (rc < 0) {
                fprintf(stderr, "coffer: %s\n", coffer_last_error());
                return EXIT_UNREACHABLE;
        }
        return 0;
}

bool cli_u64(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out) {
        if (parse_u64(s, min, max, out) == 0)
                return true;
        fprintf(stderr, "coffer: %s needs a whole number from %llu to %llu, not '%s'\n", opt, (unsigned long long) min,
                (unsigned long long) max, s);
        return false;
}

void json_string(FILE *f, const char *s, size_t n) {
        fputc('"', f);
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) s[i];
                if (c == '"' || c == '\\')
                        fprintf(f, "\\%c", c);
                else if (c < 0x20 || c == 0x7f)
                        fprintf(f, "\\u%04x", c);
                else
                        fputc(c, f);
        }
        fputc('"', f);
}

/* One line from fd, read a byte at a time so that what follows is left to
 * the next reader (a job's standard input); trailing CR and spaces dropped. */
static int grant_line(int fd, char buf[COFFER_GRANT_MAX]) {
        size_t n = 0;
        char ch;

        for (;;) {
                ssize_t k = read(fd, &ch, 1);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0 || ch == '\n')
                        break;
                if (n == COFFER_GRANT_MAX - 1)
                        return -EMSGSIZE;
                buf[n++] = ch;
        }
        while (n && (buf[n - 1] == '\r' || buf[n - 1] == ' '))
                n--;
        buf[n] = 0;
        return n ? 0 : -ENODATA;
}

/* A grant file readable by every user is as public as a command line. */
static int grant_file(const char *path, char buf[COFFER_GRANT_MAX]) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        struct stat st;

        if (fd < 0 || fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode))
                return -EINVAL;
        if (st.st_mode & S_IROTH) {
                fprintf(stderr, "coffer: %s is readable by every user (mode %04o), who could redeem the grant "
                                "before you; make it private (chmod o-r) and ask for a new grant if others may have "
                                "read it\n", path, (unsigned) (st.st_mode & 07777));
                return -EPERM;
        }
        return grant_line(fd, buf);
}

static int grant_arg(char *arg, char buf[COFFER_GRANT_MAX]) {
        size_t n = strlen(arg);
        int rc = n == 0 ? -ENODATA : n >= COFFER_GRANT_MAX ? -EMSGSIZE : 0;

        if (rc == 0)
                memcpy(buf, arg, n + 1);
        if (strncmp(arg, "cgr1_", 5) == 0)
                fprintf(stderr, "coffer: warning: a grant on the command line can be read by every user of this "
                                "host (ps, /proc/PID/cmdline) until coffer wipes it; pass it with --grant-file "
                                "PATH, --grant-fd N or - (standard input) instead\n");
        explicit_bzero(arg, n);
        return rc;
}

bool cli_grant_get(char out[COFFER_GRANT_MAX], char *arg, const char *file, int fd) {
        char fdname[32];
        const char *from = file;
        int rc;

        snprintf(fdname, sizeof(fdname), "descriptor %d", fd);
        if (file) {
                rc = grant_file(file, out);
        } else if (fd >= 0) {
                from = fdname;
                rc = grant_line(fd, out);
        } else if (strcmp(arg, "-") == 0) {
                from = "standard input";
                rc = grant_line(STDIN_FILENO, out);
        } else {
                from = "the command line";
                rc = grant_arg(arg, out);
        }
        if (rc == 0)
                return true;

        explicit_bzero(out, COFFER_GRANT_MAX);
        if (rc == -ENODATA)
                fprintf(stderr, "coffer: no grant in %s: give the grant string (cgr1_...) on its first line\n", from);
        else if (rc == -EMSGSIZE)
                fprintf(stderr, "coffer: what %s holds is longer than a grant string (cgr1_..., under %u bytes)\n",
                        from, COFFER_GRANT_MAX);
        else if (rc == -EINVAL)
                fprintf(stderr, "coffer: %s is not a file or a pipe; give the file that holds the grant\n", from);
        else if (rc != -EPERM)
                fprintf(stderr, "coffer: cannot read the grant from %s: %s\n", from, strerror(-rc));
        return false;
}

int main(int argc, char **argv) {
        static const struct option opts[] = {
                { "socket", required_argument, NULL, 's' }, { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },         { "version", no_argument, NULL, 'V' },
                {},
        };
        struct cli cli = { 0 };
        int c;
        signal(SIGPIPE, SIG_IGN);
        /* '+': stop at the subcommand; its options are its own. */
        while ((c = getopt_long(argc, argv, "+s:jhV", opts, NULL)) >= 0) {
                switch (c) {
                case 's': cli.socket = optarg; break;
                case 'j': cli.json = true; break;
                case 'h': help(stdout); return EXIT_OK;
                case 'V': puts("coffer " COFFER_VERSION); return EXIT_OK;
                default: help(stderr); return EXIT_USAGE;
                }
        }
        if (optind >= argc) {
                help(stderr);
                return EXIT_USAGE;
        }
        const char *name = argv[optind];
        if (strcmp(name, "help") == 0) {
                help(stdout);
                return EXIT_OK;
        }
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (strcmp(commands[i].name, name) == 0) {
                        int sub_argc = argc - optind;
                        char **sub_argv = argv + optind;
                        optind = 0; /* reset getopt for the subcommand */
                        return commands[i].run(&cli, sub_argc, sub_argv);
                }
        fprintf(stderr, "coffer: unknown command '%s'; run `coffer help`\n", name);
        return EXIT_USAGE;
}
