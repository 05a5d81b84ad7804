/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The coffer CLI: a table of subcommands, one file per group. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "coffer.h"

/* Exit codes (coffer(1) "EXIT STATUS"). */
enum {
        EXIT_OK = 0,
        EXIT_FAIL = 1,        /* any other failure */
        EXIT_USAGE = 2,       /* bad command line */
        EXIT_UNREACHABLE = 3, /* daemon not running or socket refused */
        EXIT_SEALED = 4,      /* sealed or not initialized */
        EXIT_DENIED = 5,      /* permission denied */
        EXIT_NOTFOUND = 6,    /* no such secret or version */
        EXIT_INTEGRITY = 7,   /* integrity or audit verification failure */
        EXIT_CONFLICT = 8,    /* check-and-set mismatch, already initialized */
};

struct cli {
        const char *socket;   /* --socket, or NULL */
        bool json;
};

struct subcommand {
        const char *name;
        int (*run)(struct cli *cli, int argc, char **argv);
        const char *usage;
};

/* Connect or print why not; returns an exit code (0 = connected). */
int cli_connect(struct cli *cli, coffer **c);
/* Print the library's error for rc and return the matching exit code. */
int cli_fail(int rc, const char *what);
int cli_usage(const char *usage);
/* Parse a u64 option value, or print which one is wrong. */
bool cli_u64(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out);
void json_string(FILE *f, const char *s, size_t n);
/* The grant string for a command, from the first of: file (a path), fd (a
 * descriptor, -1 = none), arg "-" (standard input: one line, the rest is left
 * unread), arg itself. An arg is wiped from argv at once, and a grant there
 * draws a warning: every user can read a command line. Prints why not. */
bool cli_grant_get(char out[COFFER_GRANT_MAX], char *arg, const char *file, int fd);

int cmd_put(struct cli *cli, int argc, char **argv);
int cmd_get(struct cli *cli, int argc, char **argv);
int cmd_ls(struct cli *cli, int argc, char **argv);
int cmd_versions(struct cli *cli, int argc, char **argv);
int cmd_rm(struct cli *cli, int argc, char **argv);
int cmd_undelete(struct cli *cli, int argc, char **argv);
int cmd_destroy(struct cli *cli, int argc, char **argv);
int cmd_operator(struct cli *cli, int argc, char **argv);
int cmd_status(struct cli *cli, int argc, char **argv);
int cmd_whoami(struct cli *cli, int argc, char **argv);
int cmd_audit(struct cli *cli, int argc, char **argv);
int cmd_policy(struct cli *cli, int argc, char **argv);
int cmd_lease(struct cli *cli, int argc, char **argv);
int cmd_token(struct cli *cli, int argc, char **argv);
int cmd_key(struct cli *cli, int argc, char **argv);
int cmd_grant(struct cli *cli, int argc, char **argv);
int cmd_run(struct cli *cli, int argc, char **argv);
