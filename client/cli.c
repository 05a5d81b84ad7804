/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

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
          "run [--file NAME=SECRET]... [--env NAME=SECRET]... [--token NAME=AUDIENCE]... [--grant GRANT|-] [--mask] "
          "-- CMD [ARG]..." },
        { "grant", cmd_grant,
          "grant create --secret NAME [--uses N] [--ttl DURATION] [--for-user USER | --for-unit GLOB]\n"
          "       coffer grant redeem GRANT|-\n"
          "       coffer grant revoke GRANT|ID|-" },
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
