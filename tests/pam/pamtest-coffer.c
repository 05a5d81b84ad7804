/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Drives real libpam (under pam_wrapper) through libpamtest for t-pam.sh.
 *
 *   pamtest-coffer [--tty TTY] [--rhost HOST] SERVICE USER STEP...
 *
 * The steps run in order on one PAM handle:
 *   newkeyring      join a fresh anonymous session keyring (isolates the test)
 *   open=CODE       pam_open_session must return CODE (PAM_SUCCESS, PAM_IGNORE, ... or a number)
 *   close=CODE      pam_close_session must return CODE
 *   env=FILE        write pam_getenvlist() to FILE, one NAME=VALUE a line
 *   putenv=NAME=VAL set NAME in the PAM environment (as an application that
 *                   kept the session's environment would)
 *   unsetenv=NAME   remove NAME from the PAM environment
 *   keyring=NAME    the session keyring holds "coffer:NAME", owned by USER with
 *                   user view|read|search; USER (a forked child with USER's
 *                   ids) can read it, and it equals the file named by $NAME in
 *                   the PAM environment. Nothing of the value is printed.
 *   nokey=NAME      "coffer:NAME" is gone or revoked
 * Exit 0 when every step went as expected, 1 at the first that did not, 2 on
 * a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <linux/keyctl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpamtest.h>
#include <security/pam_appl.h>

#define KEY_USR_VIEW 0x00010000u
#define KEY_USR_READ 0x00020000u
#define KEY_USR_SEARCH 0x00080000u

static const struct {
        const char *name;
        int code;
} codes[] = {
        { "PAM_SUCCESS", PAM_SUCCESS },       { "PAM_IGNORE", PAM_IGNORE },
        { "PAM_SESSION_ERR", PAM_SESSION_ERR }, { "PAM_USER_UNKNOWN", PAM_USER_UNKNOWN },
        { "PAM_PERM_DENIED", PAM_PERM_DENIED }, { "PAM_SYSTEM_ERR", PAM_SYSTEM_ERR },
        { "PAM_BUF_ERR", PAM_BUF_ERR },
};

static int code_of(const char *s) {
        for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
                if (strcmp(s, codes[i].name) == 0)
                        return codes[i].code;
        char *end;
        long v = strtol(s, &end, 10);
        return *s && !*end && v >= 0 && v < 64 ? (int) v : -1;
}

static const char *name_of(int code) {
        for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
                if (codes[i].code == code)
                        return codes[i].name;
        return "another code";
}

/* libpamtest ends the handle itself when a case fails before KEEPHANDLE. */
static int handle_ended;

static int run_op(pam_handle_t *ph, enum pamtest_ops op, const char *want) {
        int code = code_of(want);
        if (code < 0) {
                fprintf(stderr, "unknown PAM code %s\n", want);
                return 2;
        }
        struct pam_testcase tests[] = {
                pam_test(op, code),
                pam_test(PAMTEST_KEEPHANDLE, 0),
        };
        enum pamtest_err perr = run_pamtest(NULL, NULL, NULL, tests, ph);
        if (perr == PAMTEST_ERR_OK)
                return 0;
        handle_ended = 1;
        fprintf(stderr, "%s returned %s (%d: %s), wanted %s: %s\n",
                op == PAMTEST_OPEN_SESSION ? "pam_open_session" : "pam_close_session", name_of(tests[0].op_rv),
                tests[0].op_rv, pam_strerror(ph, tests[0].op_rv), want, pamtest_strerror(perr));
        return 1;
}

static int write_env(pam_handle_t *ph, const char *file) {
        char **env = pam_getenvlist(ph);
        FILE *f = fopen(file, "w");
        if (!f || !env) {
                fprintf(stderr, "cannot write %s\n", file);
                return 1;
        }
        for (char **e = env; *e; e++) {
                fprintf(f, "%s\n", *e);
                free(*e);
        }
        free(env);
        return fclose(f) == 0 ? 0 : 1;
}

static long key_find(const char *name) {
        char desc[512];
        snprintf(desc, sizeof(desc), "coffer:%s", name);
        return syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, "user", desc, 0);
}

/* Read all of a key or a file into buf; -1 when it does not fit or fails. */
static long key_read(long key, char *buf, size_t size) {
        long n = syscall(SYS_keyctl, KEYCTL_READ, key, buf, size);
        return n >= 0 && (size_t) n <= size ? n : -1;
}

static long file_read(const char *path, char *buf, size_t size) {
        FILE *f = fopen(path, "r");
        if (!f)
                return -1;
        size_t n = fread(buf, 1, size, f);
        int more = fgetc(f) != EOF;
        fclose(f);
        return more ? -1 : (long) n;
}

/* As the user (own uid, gid, groups; same session keyring): the key and the
 * file both read, and hold the same bytes. */
static int child_compare(const struct passwd *pw, long key, const char *path) {
        static char a[65536], b[65536];
        if (setgroups(0, NULL) < 0 || setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) < 0 ||
            setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0)
                return 3;
        long na = key_read(key, a, sizeof(a));
        if (na < 0)
                return 4;
        long nb = file_read(path, b, sizeof(b));
        if (nb < 0)
                return 5;
        int same = na == nb && memcmp(a, b, (size_t) na) == 0;
        memset(a, 0, sizeof(a));
        memset(b, 0, sizeof(b));
        return same ? 0 : 6;
}

static int check_key(pam_handle_t *ph, const char *user, const char *name) {
        static const char *why[] = { [3] = "cannot become the user", [4] = "the user cannot read the key",
                                     [5] = "the user cannot read the file", [6] = "key and file differ" };
        struct passwd *pw = getpwnam(user);
        const char *path = pam_getenv(ph, name);
        long key = key_find(name);
        char desc[512];
        unsigned uid, gid, perm;

        if (!pw || !path || key < 0) {
                fprintf(stderr, "keyring=%s: %s\n", name, !pw ? "no such user" : !path ? "not in the PAM environment"
                                                                                     : "no such key");
                return 1;
        }
        long n = syscall(SYS_keyctl, KEYCTL_DESCRIBE, key, desc, sizeof(desc));
        if (n <= 0 || (size_t) n > sizeof(desc) || sscanf(desc, "user;%u;%u;%x;", &uid, &gid, &perm) != 3) {
                fprintf(stderr, "keyring=%s: cannot describe the key\n", name);
                return 1;
        }
        unsigned want = KEY_USR_VIEW | KEY_USR_READ | KEY_USR_SEARCH;
        if (uid != pw->pw_uid || (perm & want) != want) {
                fprintf(stderr, "keyring=%s: owner %u (want %u), permissions %08x (want user %08x)\n", name, uid,
                        (unsigned) pw->pw_uid, perm, want);
                return 1;
        }
        pid_t pid = fork();
        if (pid == 0)
                _exit(child_compare(pw, key, path));
        int st = 0;
        if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                int rc = pid > 0 && WIFEXITED(st) ? WEXITSTATUS(st) : 0;
                fprintf(stderr, "keyring=%s: %s\n", name, rc >= 3 && rc <= 6 ? why[rc] : "the check failed");
                return 1;
        }
        return 0;
}

static int check_nokey(const char *name) {
        char c;
        long key = key_find(name);
        if (key < 0 || (syscall(SYS_keyctl, KEYCTL_READ, key, &c, 1) < 0 && errno == EKEYREVOKED))
                return 0;
        fprintf(stderr, "nokey=%s: the key is still readable\n", name);
        return 1;
}

static int run_step(pam_handle_t *ph, const char *user, const char *step) {
        const char *eq = strchr(step, '=');
        const char *v = eq ? eq + 1 : "";
        size_t klen = eq ? (size_t) (eq - step) : strlen(step);

#define IS(k) (klen == strlen(k) && strncmp(step, k, klen) == 0)
        if (IS("newkeyring"))
                return syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL) < 0 ? 1 : 0;
        if (IS("open"))
                return run_op(ph, PAMTEST_OPEN_SESSION, v);
        if (IS("close"))
                return run_op(ph, PAMTEST_CLOSE_SESSION, v);
        if (IS("env"))
                return write_env(ph, v);
        if (IS("putenv"))
                return pam_putenv(ph, v) == PAM_SUCCESS ? 0 : 1;
        if (IS("unsetenv"))
                return pam_putenv(ph, v) == PAM_SUCCESS ? 0 : 1;
        if (IS("keyring"))
                return check_key(ph, user, v);
        if (IS("nokey"))
                return check_nokey(v);
#undef IS
        fprintf(stderr, "unknown step %s\n", step);
        return 2;
}

static int conv(int n, const struct pam_message **msg, struct pam_response **resp, void *data) {
        return PAM_CONV_ERR;   /* a session module has nothing to ask */
}

int main(int argc, char **argv) {
        static const struct option opts[] = {
                { "tty", required_argument, NULL, 't' },
                { "rhost", required_argument, NULL, 'r' },
                {},
        };
        const char *tty = NULL, *rhost = NULL;
        int c;

        while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                if (c == 't')
                        tty = optarg;
                else if (c == 'r')
                        rhost = optarg;
                else
                        return 2;
        }
        if (argc - optind < 3) {
                fprintf(stderr, "usage: pamtest-coffer [--tty TTY] [--rhost HOST] SERVICE USER STEP...\n");
                return 2;
        }
        const char *service = argv[optind], *user = argv[optind + 1];
        struct pam_conv pc = { conv, NULL };
        pam_handle_t *ph = NULL;
        int rc = pam_start(service, user, &pc, &ph);
        if (rc != PAM_SUCCESS) {
                fprintf(stderr, "pam_start: %s\n", pam_strerror(ph, rc));
                return 1;
        }
        if ((tty && pam_set_item(ph, PAM_TTY, tty) != PAM_SUCCESS) ||
            (rhost && pam_set_item(ph, PAM_RHOST, rhost) != PAM_SUCCESS)) {
                fprintf(stderr, "pam_set_item failed\n");
                return 1;
        }
        rc = 0;
        for (int i = optind + 2; i < argc && rc == 0; i++)
                rc = run_step(ph, user, argv[i]);
        if (!handle_ended)
                pam_end(ph, rc == 0 ? PAM_SUCCESS : PAM_SYSTEM_ERR);
        return rc;
}
