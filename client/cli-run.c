/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * coffer run: start a job with secrets as files in a private in-memory
 * directory (or, when asked, as environment variables), optionally masking
 * them in its output, and remove them when the job ends.
 *
 * Order of work: check the command line (a grant on it is copied and wiped
 * there); redeem the grant, before anything else: a grant string on a command
 * line was readable by every user from our exec until the wipe, and whoever
 * redeems it first has it; create the directory (tmpfs or ramfs only) and a
 * watcher process; ask the daemon for the rest; disconnect; write the files;
 * wipe every value but the mask's own copy; start the job; supervise it.
 *
 * The directory goes away when the job exits or is killed, when coffer run
 * is told to stop (SIGTERM, SIGINT, SIGHUP, SIGQUIT: forwarded to the job,
 * which is waited for), and when coffer run itself is SIGKILLed: a watcher
 * process, started before anything is fetched, holds the read end of a pipe
 * whose only write end is ours; when it reads end-of-file (we closed it, or
 * the kernel did because we died) it removes the directory's files and the
 * directory if it is still the same inode. The watcher leaves our process
 * group and session and ignores the usual termination signals, so a ^C or
 * a group kill does not take it down with us. A kill of both (SIGKILL to the
 * whole cgroup, as systemd and Slurm do at the end) leaves the directory;
 * the next coffer run of the same user sweeps it: we and the watcher hold a
 * shared flock on the directory (one open file description, inherited by the
 * fork), so a directory whose exclusive lock can be taken has nobody alive
 * to remove it.
 *
 * The job sees none of our descriptors: the daemon connection is closed
 * before it starts, and every descriptor above 2 is closed in the child
 * before exec (as sudo does), including any coffer run inherited.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <linux/magic.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"
#include "mask.h"
#include "proto.h"
#include "util.h"

#define RUN_USAGE                                                                                                 \
        "run [--file NAME=SECRET]... [--env NAME=SECRET]... [--token NAME=AUDIENCE]... "                    \
        "[--grant-file PATH | --grant-fd N | --grant -|GRANT] [--mask] -- CMD [ARG]..."
#define SECRETS_DIR_ENV "COFFER_SECRETS_DIR"
#define RUN_DIR_PREFIX "coffer-run."  /* then mkdtemp's six characters */
#define RUN_DIR_TRIES 3      /* attempts at a directory that a concurrent sweep took */
#define PAUSE_MS 50          /* output quiet this long: show what is held (mask.h, "pause") */
#define DRAIN_IDLE_MS 100    /* after the job exits, stop reading its output once quiet this long, */
#define DRAIN_MAX_MS 2000    /* or this long after: what it left running may hold the pipe forever */
#define READ_CHUNK 65536

enum item_kind { ITEM_FILE, ITEM_ENV, ITEM_TOKEN, ITEM_GRANT };

struct item {
        enum item_kind kind;
        char *name;           /* file or variable name; a grant's is known once redeemed */
        const char *ref;      /* secret name, audience; NULL for the grant */
        coffer_secret *value;
};

struct run {
        struct item *items;
        size_t nitems;
        struct secbuf grant;  /* the grant string (a bearer credential until redeemed) */
        bool mask;
        char **cmd;
        char dir[PATH_MAX];   /* "" = no directory */
        int dirfd;
        pid_t watcher;
        int watcher_fd;
};

static void items_free(struct run *r) {
        for (size_t i = 0; i < r->nitems; i++) {
                coffer_secret_free(r->items[i].value);
                r->items[i].value = NULL;
        }
}

/* ---- the command line ---- */

static bool valid_file_name(const char *s) {
        size_t n = strlen(s);
        return n > 0 && n <= NAME_MAX && s[0] != '.' &&
               strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

static bool valid_env_name(const char *s) {
        size_t n = strlen(s);
        return n > 0 && n <= 255 && !(s[0] >= '0' && s[0] <= '9') &&
               strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") == n &&
               strcmp(s, SECRETS_DIR_ENV) != 0;
}

static bool name_taken(const struct run *r, const char *name, bool env) {
        for (size_t i = 0; i < r->nitems; i++)
                if (r->items[i].name && (r->items[i].kind == ITEM_ENV) == env && strcmp(r->items[i].name, name) == 0)
                        return true;
        return false;
}

static struct item *item_new(struct run *r, enum item_kind kind) {
        struct item *v = realloc(r->items, (r->nitems + 1) * sizeof(*v));
        if (!v)
                return NULL;
        r->items = v;
        v[r->nitems] = (struct item){ .kind = kind };
        return &v[r->nitems++];
}

/* --file/--env NAME=SECRET, --token NAME=AUDIENCE. */
static bool parse_spec(struct run *r, enum item_kind kind, const char *opt, const char *arg) {
        const char *eq = strchr(arg, '='), *ref = eq ? eq + 1 : "";
        bool env = kind == ITEM_ENV;
        if (kind != ITEM_TOKEN && strncmp(ref, "secret:", 7) == 0)
                ref += 7;
        _cleanup_free_ char *name = eq ? strndup(arg, (size_t) (eq - arg)) : NULL;
        if (!eq || !name || !(env ? valid_env_name(name) : valid_file_name(name))) {
                fprintf(stderr, "coffer: %s needs NAME=%s where NAME is %s, not '%s'\n", opt,
                        kind == ITEM_TOKEN ? "AUDIENCE" : "SECRET",
                        env ? "a variable name ([A-Za-z_][A-Za-z0-9_]*, not " SECRETS_DIR_ENV ")"
                            : "a file name of A-Z a-z 0-9 . _ - not starting with '.'",
                        arg);
                return false;
        }
        if (kind == ITEM_TOKEN ? !proto_audience_valid(ref) : !proto_name_valid(ref)) {
                fprintf(stderr, "coffer: %s %s: '%s' is not a valid %s\n", opt, name, ref,
                        kind == ITEM_TOKEN ? "audience (" PROTO_AUDIENCE_RULE ")" : "secret name");
                return false;
        }
        if (name_taken(r, name, env)) {
                fprintf(stderr, "coffer: %s %s: the name is given twice\n", opt, name);
                return false;
        }
        struct item *it = item_new(r, kind);
        if (!it)
                return false;
        it->name = name;
        it->ref = ref;
        name = NULL;
        return true;
}

/* --grant GRANT|-, --grant-file PATH, --grant-fd N (arg, file, fd: one of
 * them). A grant on the command line is copied and wiped from argv here,
 * before any other work; the others never were on it. */
static bool parse_grant(struct run *r, char *arg, const char *file, int fd) {
        char g[COFFER_GRANT_MAX];

        if (r->grant.p) {
                if (arg)
                        explicit_bzero(arg, strlen(arg));
                fprintf(stderr, "coffer: give one grant: --grant, --grant-file or --grant-fd, once\n");
                return false;
        }
        bool ok = cli_grant_get(g, arg, file, fd);
        if (fd > STDERR_FILENO)
                close(fd); /* the job gets none of ours anyway */
        if (!ok)
                return false;

        size_t n = strlen(g);
        r->grant.p = malloc(n + 1);
        if (r->grant.p) {
                memcpy(r->grant.p, g, n + 1);
                r->grant.len = n + 1;
        }
        explicit_bzero(g, sizeof(g));
        if (!r->grant.p)
                fprintf(stderr, "coffer: out of memory\n");
        return r->grant.p != NULL;
}

static bool parse_grant_fd(struct run *r, const char *arg) {
        uint64_t fd;
        if (!cli_u64("--grant-fd", arg, 0, INT_MAX, &fd))
                return false;
        if (fcntl((int) fd, F_GETFD) < 0) {
                fprintf(stderr, "coffer: --grant-fd %d: no such open descriptor; open it for coffer, e.g. "
                                "--grant-fd 3 3<FILE\n", (int) fd);
                return false;
        }
        return parse_grant(r, NULL, NULL, (int) fd);
}

static int parse_args(struct run *r, int argc, char **argv) {
        static const struct option opts[] = {
                { "file", required_argument, NULL, 'f' },  { "env", required_argument, NULL, 'e' },
                { "token", required_argument, NULL, 't' }, { "grant", required_argument, NULL, 'g' },
                { "grant-file", required_argument, NULL, 'G' }, { "grant-fd", required_argument, NULL, 'D' },
                { "mask", no_argument, NULL, 'm' },        {},
        };
        int o;
        optind = 0;
        /* '+': the command's own options are not ours. */
        while ((o = getopt_long(argc, argv, "+f:e:t:g:m", opts, NULL)) >= 0) {
                bool ok = true;
                switch (o) {
                case 'f': ok = parse_spec(r, ITEM_FILE, "--file", optarg); break;
                case 'e': ok = parse_spec(r, ITEM_ENV, "--env", optarg); break;
                case 't': ok = parse_spec(r, ITEM_TOKEN, "--token", optarg); break;
                case 'g': ok = parse_grant(r, optarg, NULL, -1); break;
                case 'G': ok = parse_grant(r, NULL, optarg, -1); break;
                case 'D': ok = parse_grant_fd(r, optarg); break;
                case 'm': r->mask = true; break;
                default: return cli_usage(RUN_USAGE);
                }
                if (!ok)
                        return EXIT_USAGE;
        }
        if (optind >= argc)
                return cli_usage(RUN_USAGE);
        r->cmd = argv + optind;
        if (r->grant.p && !item_new(r, ITEM_GRANT))
                return EXIT_FAIL;
        return 0;
}

static bool needs_dir(const struct run *r) {
        for (size_t i = 0; i < r->nitems; i++)
                if (r->items[i].kind != ITEM_ENV)
                        return true;
        return false;
}

/* ---- the directory ---- */

/* A tmpfs or ramfs directory that is ours, or shared with the sticky bit. */
static bool in_memory_dir(const char *path) {
        struct statfs sf;
        struct stat st;
        if (!path || path[0] != '/' || statfs(path, &sf) < 0 || stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
                return false;
        if ((unsigned long) sf.f_type != TMPFS_MAGIC && (unsigned long) sf.f_type != RAMFS_MAGIC)
                return false;
        return st.st_uid == geteuid() || (st.st_mode & S_ISVTX);
}

/* Whether fd is still the directory at parentfd/name: not removed, not replaced. */
static bool still_named(int fd, int parentfd, const char *name) {
        struct stat a, b;
        return fstat(fd, &a) == 0 && fstatat(parentfd, name, &b, AT_SYMLINK_NOFOLLOW) == 0 && a.st_dev == b.st_dev &&
               a.st_ino == b.st_ino;
}

/* Remove everything in dirfd: our files, and whatever the job added (the
 * directory is the job's to write in), never following a symlink. */
static void dir_empty(int dirfd, unsigned depth) {
        int fd = dup(dirfd);
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        struct dirent *e;
        if (!d) {
                if (fd >= 0)
                        close(fd);
                return;
        }
        rewinddir(d);
        while ((e = readdir(d))) {
                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                        continue;
                if (unlinkat(dirfd, e->d_name, 0) == 0 || errno != EISDIR || depth >= 16)
                        continue;
                int sub = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub >= 0) {
                        dir_empty(sub, depth + 1);
                        close(sub);
                }
                unlinkat(dirfd, e->d_name, AT_REMOVEDIR);
        }
        closedir(d);
}

/* Remove what is in dirfd, then the directory if parentfd/name still names
 * it. 0 when it is gone (or no longer under that name), else -errno. */
static int dir_remove(int dirfd, int parentfd, const char *name) {
        for (int tries = 0; tries < 3; tries++) {
                dir_empty(dirfd, 0);
                if (!still_named(dirfd, parentfd, name))
                        return 0;
                if (unlinkat(parentfd, name, AT_REMOVEDIR) == 0)
                        return 0;
                if (errno != ENOTEMPTY)
                        return -errno;
        }
        return -ENOTEMPTY;
}

/* "coffer-run." and six characters of mkdtemp's: a name we may have made. */
static bool run_dir_name(const char *s) {
        size_t n = strlen(RUN_DIR_PREFIX);
        return strncmp(s, RUN_DIR_PREFIX, n) == 0 && strlen(s + n) == 6 &&
               strspn(s + n, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") == 6;
}

/* Remove basefd/name if it is a directory of ours that nobody holds locked:
 * its coffer run and watcher are both dead. 0 when removed or not one to
 * remove (another user's, a symlink, a file, a live run's), else -errno. */
static int sweep_one(int basefd, const char *name) {
        struct stat a, b;
        if (fstatat(basefd, name, &a, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(a.st_mode) || a.st_uid != geteuid())
                return 0;
        int fd = openat(basefd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT || errno == ENOTDIR || errno == ELOOP ? 0 : -errno;
        int rc = fstat(fd, &b) < 0 ? -errno : 0;
        if (rc == 0 && S_ISDIR(b.st_mode) && b.st_uid == geteuid()) {
                if (flock(fd, LOCK_EX | LOCK_NB) < 0)
                        rc = errno == EWOULDBLOCK ? 0 : -errno;
                else if (still_named(fd, basefd, name))
                        rc = dir_remove(fd, basefd, name);
        }
        close(fd); /* and the lock with it: nobody else has this descriptor */
        return rc;
}

/* Remove the directories that runs killed with their watcher left in base.
 * Never fatal: at most one line about the first one that stays. */
static void dir_sweep(const char *base) {
        DIR *d = opendir(base);
        struct dirent *e;
        bool told = false;
        if (!d)
                return;
        while ((e = readdir(d))) {
                int rc = run_dir_name(e->d_name) ? sweep_one(dirfd(d), e->d_name) : 0;
                if (rc < 0 && !told) {
                        fprintf(stderr,
                                "coffer: %s/%s may be left behind by a killed coffer run and cannot be removed: %s; "
                                "remove it (rm -rf) if no job of yours uses it\n",
                                base, e->d_name, strerror(-rc));
                        told = true;
                }
        }
        closedir(d);
}

/* Create our directory and take a shared lock on it: the mark of a live run
 * (the watcher inherits it). -ESTALE when a concurrent sweep removed it. */
static int dir_make(struct run *r, const char *base) {
        if ((size_t) snprintf(r->dir, sizeof(r->dir), "%s/" RUN_DIR_PREFIX "XXXXXX", base) >= sizeof(r->dir))
                return -ENAMETOOLONG;
        if (!mkdtemp(r->dir))
                return -errno;
        r->dirfd = open(r->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int rc = r->dirfd >= 0 && fchmod(r->dirfd, 0700) == 0 && flock(r->dirfd, LOCK_SH | LOCK_NB) == 0 ? 0 : -errno;
        /* A sweep holding it (EWOULDBLOCK) removes it; ENOENT: it did already. */
        bool gone = rc == -ENOENT || rc == -EWOULDBLOCK || (rc == 0 && !still_named(r->dirfd, AT_FDCWD, r->dir));
        if (rc == 0 && !gone)
                return 0;
        if (r->dirfd >= 0)
                close(r->dirfd);
        r->dirfd = -1;
        if (!gone)
                rmdir(r->dir);
        r->dir[0] = 0;
        return gone ? -ESTALE : rc;
}

/* Where the directory will be: known before the grant is redeemed, so that
 * a host without one refuses with the grant still unused. */
static const char *dir_base(void) {
        const char *xdg = getenv("XDG_RUNTIME_DIR");
        if (in_memory_dir(xdg))
                return xdg;
        if (in_memory_dir("/dev/shm"))
                return "/dev/shm";
        fprintf(stderr,
                "coffer: no in-memory file system for the secret files: $XDG_RUNTIME_DIR is %s, and /dev/shm "
                "is not a tmpfs; coffer run does not write secrets to disk. Log in through pam_systemd (it "
                "sets XDG_RUNTIME_DIR) or mount a tmpfs on /dev/shm.\n",
                xdg && *xdg ? "not a tmpfs or ramfs directory of yours" : "not set");
        return NULL;
}

static int dir_create(struct run *r, const char *base) {
        dir_sweep(base);
        int rc = -ESTALE;
        for (int tries = 0; tries < RUN_DIR_TRIES && rc == -ESTALE; tries++)
                rc = dir_make(r, base);
        if (rc == -ESTALE)
                fprintf(stderr, "coffer: the directory for the secret files was removed from %s as it was made, %d "
                                "times; is something else cleaning %s?\n", base, RUN_DIR_TRIES, base);
        else if (rc < 0)
                fprintf(stderr, "coffer: cannot create a directory in %s: %s\n", base, strerror(-rc));
        return rc < 0 ? EXIT_FAIL : 0;
}

static void dir_cleanup(struct run *r) {
        if (!r->dir[0])
                return;
        dir_remove(r->dirfd, AT_FDCWD, r->dir);
        close(r->dirfd);
        r->dirfd = -1;
        r->dir[0] = 0;
}

/* ---- descriptors ---- */

static void close_range_from(unsigned lo, unsigned hi) {
        if (lo > hi || close_range(lo, hi, 0) == 0)
                return;
        struct rlimit rl;
        unsigned max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (unsigned) rl.rlim_cur : 65536;
        for (unsigned fd = lo; fd <= hi && fd < max; fd++)
                close((int) fd);
}

/* Close every descriptor above 2 except keep[] (ascending). */
static void close_fds_except(const int *keep, size_t n) {
        unsigned lo = 3;
        for (size_t i = 0; i < n; i++) {
                if (keep[i] > 0)
                        close_range_from(lo, (unsigned) keep[i] - 1);
                lo = (unsigned) keep[i] + 1;
        }
        close_range_from(lo, ~0u);
}

/* Make sure 0, 1 and 2 are open, so that nothing of ours lands on them. */
static void sanitize_stdio(void) {
        for (int fd = 0; fd < 3; fd++)
                if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
                        int n = open("/dev/null", O_RDWR);
                        if (n >= 0 && n != fd) {
                                dup2(n, fd);
                                close(n);
                        }
                }
}

/* ---- the watcher ---- */

static _Noreturn void watcher_main(struct run *r, int rfd) {
        static const int ignore[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGUSR1, SIGUSR2, SIGTSTP };
        char b;
        secbuf_wipe(&r->grant); /* our copies of it, and of its value */
        items_free(r);
        setsid();
        for (size_t i = 0; i < ELEMENTSOF(ignore); i++)
                signal(ignore[i], SIG_IGN);
        prctl(PR_SET_NAME, (unsigned long) "coffer-run-rm", 0, 0, 0);
        if (chdir("/") < 0) {
                /* nothing to hold on to anyway */
        }
        int null = open("/dev/null", O_RDWR);
        for (int fd = 0; null >= 0 && fd < 3; fd++)
                dup2(null, fd);
        int keep[2] = { rfd < r->dirfd ? rfd : r->dirfd, rfd < r->dirfd ? r->dirfd : rfd };
        close_fds_except(keep, 2);
        while (read(rfd, &b, 1) < 0 && errno == EINTR)
                ;
        dir_remove(r->dirfd, AT_FDCWD, r->dir);
        _exit(0);
}

static int watcher_start(struct run *r) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        pid_t pid = fork();
        if (pid < 0) {
                int e = -errno;
                close(p[0]);
                close(p[1]);
                return e;
        }
        if (pid == 0)
                watcher_main(r, p[0]);
        close(p[0]);
        r->watcher = pid;
        r->watcher_fd = p[1];
        return 0;
}

static void watcher_stop(struct run *r) {
        if (r->watcher_fd >= 0)
                close(r->watcher_fd);
        r->watcher_fd = -1;
        if (r->watcher > 0)
                while (waitpid(r->watcher, NULL, 0) < 0 && errno == EINTR)
                        ;
        r->watcher = 0;
}

/* ---- asking the daemon ---- */

static int fetch_one(coffer *c, struct item *it) {
        uint64_t expires;
        if (it->kind == ITEM_TOKEN)
                return coffer_token_issue(c, &it->value, it->ref, 0, &expires);
        return coffer_get(c, &it->value, it->ref, 0);
}

/* The file a grant's value goes to: the last segment of the secret's name. */
static int grant_file(struct run *r, struct item *it, const char *secret) {
        const char *base = strrchr(secret, '/');
        base = base ? base + 1 : secret;
        while (*base == '.')
                base++;
        if (!valid_file_name(base))
                base = "grant";
        if (name_taken(r, base, false)) {
                fprintf(stderr, "coffer: the grant (now used) is for secret %s, and its file name %s is taken by "
                                "another --file or --token; rename that one\n", secret, base);
                return EXIT_USAGE;
        }
        it->name = strdup(base);
        if (!it->name)
                return EXIT_FAIL;
        fprintf(stderr, "coffer: grant redeemed: secret %s is in $" SECRETS_DIR_ENV "/%s\n", secret, base);
        return 0;
}

static struct item *grant_item(struct run *r) {
        for (size_t i = 0; i < r->nitems; i++)
                if (r->items[i].kind == ITEM_GRANT)
                        return &r->items[i];
        return NULL;
}

/* The grant before anything else (see the top of this file): one that
 * fails to redeem fails the run with nothing else fetched. */
static int redeem_grant(coffer *c, struct run *r) {
        char name[COFFER_NAME_MAX + 1] = "";
        struct item *it = grant_item(r);
        if (!it)
                return 0;

        int e = coffer_grant_redeem(c, &it->value, name, (const char *) r->grant.p);
        secbuf_wipe(&r->grant);
        if (e < 0)
                return cli_fail(e, "grant redeem");
        return grant_file(r, it, name);
}

static int fetch(coffer *c, struct run *r) {
        char what[COFFER_NAME_MAX + 32];
        int rc = 0;
        /* Reads first; then what cannot be taken back: tokens (leases). */
        static const enum item_kind order[] = { ITEM_FILE, ITEM_TOKEN };
        for (size_t i = 0; i < ELEMENTSOF(order) * r->nitems && rc == 0; i++) {
                struct item *it = &r->items[i % r->nitems];
                enum item_kind k = it->kind == ITEM_ENV ? ITEM_FILE : it->kind;
                if (k != order[i / r->nitems])
                        continue;
                int e = fetch_one(c, it);
                if (e < 0) {
                        snprintf(what, sizeof(what), "%s %s", it->kind == ITEM_TOKEN ? "token issue" : "get", it->ref);
                        rc = cli_fail(e, what);
                }
        }
        return rc;
}

/* ---- files, environment, mask ---- */

static int write_files(const struct run *r) {
        for (size_t i = 0; i < r->nitems; i++) {
                const struct item *it = &r->items[i];
                if (it->kind == ITEM_ENV)
                        continue;
                int fd = openat(r->dirfd, it->name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0400);
                int rc = fd < 0 || fchmod(fd, 0400) < 0 ? -errno
                                                         : write_all(fd, coffer_secret_data(it->value),
                                                                     coffer_secret_size(it->value));
                if (fd >= 0 && close(fd) < 0 && rc == 0)
                        rc = -errno;
                if (rc < 0) {
                        fprintf(stderr, "coffer: cannot write %s/%s: %s\n", r->dir, it->name, strerror(-rc));
                        return EXIT_FAIL;
                }
        }
        return 0;
}

struct env {
        char **envp;
        char *block;          /* sodium_malloc'd: NAME=VALUE strings */
};

static void env_free(struct env *e) {
        free(e->envp);
        sodium_free(e->block);
        *e = (struct env){ 0 };
}

/* Is environ entry s set by us (so left out of the inherited ones)? */
static bool env_ours(const struct run *r, const char *s) {
        size_t n = strcspn(s, "=");
        if (r->dir[0] && n == strlen(SECRETS_DIR_ENV) && memcmp(s, SECRETS_DIR_ENV, n) == 0)
                return true;
        for (size_t i = 0; i < r->nitems; i++)
                if (r->items[i].kind == ITEM_ENV && strlen(r->items[i].name) == n &&
                    memcmp(s, r->items[i].name, n) == 0)
                        return true;
        return false;
}

static char *env_put(char *w, const char *name, const void *value, size_t n) {
        size_t k = strlen(name);
        memcpy(w, name, k);
        w[k] = '=';
        memcpy(w + k + 1, value, n);
        w[k + 1 + n] = 0;
        return w + k + n + 2;
}

static int env_build(const struct run *r, struct env *e) {
        size_t nenv = 0, nours = 1, total = sizeof(SECRETS_DIR_ENV) + strlen(r->dir) + 1;
        for (char **p = environ; *p; p++)
                nenv++;
        for (size_t i = 0; i < r->nitems; i++) {
                const struct item *it = &r->items[i];
                if (it->kind != ITEM_ENV)
                        continue;
                if (memchr(coffer_secret_data(it->value), 0, coffer_secret_size(it->value))) {
                        fprintf(stderr, "coffer: secret %s holds a NUL byte, which an environment variable cannot "
                                        "carry; use --file\n", it->ref);
                        return EXIT_USAGE;
                }
                total += strlen(it->name) + coffer_secret_size(it->value) + 2;
                nours++;
        }
        e->envp = calloc(nenv + nours + 1, sizeof(char *));
        e->block = sodium_malloc(total);
        if (!e->envp || !e->block) {
                fprintf(stderr, "coffer: out of memory\n");
                return EXIT_FAIL;
        }
        size_t k = 0;
        for (char **p = environ; *p; p++)
                if (!env_ours(r, *p))
                        e->envp[k++] = *p;
        char *w = e->block;
        if (r->dir[0]) {
                e->envp[k++] = w;
                w = env_put(w, SECRETS_DIR_ENV, r->dir, strlen(r->dir));
        }
        for (size_t i = 0; i < r->nitems; i++)
                if (r->items[i].kind == ITEM_ENV) {
                        e->envp[k++] = w;
                        w = env_put(w, r->items[i].name, coffer_secret_data(r->items[i].value),
                                    coffer_secret_size(r->items[i].value));
                }
        return 0;
}

static int mask_build(const struct run *r, struct mask **out) {
        char shorts[1024] = "";
        int rc = mask_new(out);
        for (size_t i = 0; i < r->nitems && rc >= 0; i++) {
                const struct item *it = &r->items[i];
                const uint8_t *v = coffer_secret_data(it->value);
                size_t n = coffer_secret_size(it->value), blank = 0;
                rc = mask_add_value(*out, v, n);
                while (blank < n && v[blank] && strchr(" \t\r\n\v\f", v[blank]))
                        blank++;
                if (rc == 0 && blank < n) {
                        size_t len = strlen(shorts);
                        snprintf(shorts + len, sizeof(shorts) - len, "%s%s", len ? ", " : "", it->name);
                }
        }
        if (rc < 0) {
                fprintf(stderr, "coffer: cannot set up --mask: %s\n", strerror(-rc));
                return EXIT_FAIL;
        }
        if (shorts[0])
                fprintf(stderr, "coffer: --mask cannot hide values shorter than %u bytes (%s): they may appear in the "
                                "output\n", MASK_MIN_LEN, shorts);
        return 0;
}

/* ---- the job's output ---- */

struct stream {
        int fd;               /* pipe read end or pty master; -1 when done */
        int dst;              /* our 1 or 2 */
        bool pty;
        bool dirty;           /* bytes held since the last pause */
        bool discard;         /* our side is gone (EPIPE), or masking failed: drop output */
        uint64_t last;        /* when bytes last arrived (usec) */
        struct mask_stream *ms;
        struct mask_out out;
};

struct sup {
        pid_t job;
        int sfd;
        bool own_session;     /* the job leads a session: on our pty, or without a terminal */
        bool no_tty;          /* ... without one (pipes): our terminal's signals go to its group */
        bool exited;
        int status;
        uint64_t exited_at, last_io;
        struct stream st[2];  /* st[0] is the pty master when there is a pty */
        size_t nst;
        int in_fd;            /* our stdin, copied to the pty; -1 = none */
        uint8_t in[4096];
        size_t in_len, in_off;
        bool raw;
        struct termios saved;
};

static int write_out(int fd, const uint8_t *p, size_t n) {
        while (n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0 && errno == EAGAIN) {
                        struct pollfd pf = { .fd = fd, .events = POLLOUT };
                        poll(&pf, 1, -1);
                        continue;
                }
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return -errno;
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

static void stream_flush(struct stream *st) {
        if (st->out.len && !st->discard && write_out(st->dst, st->out.p, st->out.len) < 0) {
                st->discard = true;
                if (!st->pty && st->fd >= 0) { /* like a pipeline: the job gets SIGPIPE next */
                        close(st->fd);
                        st->fd = -1;
                }
        }
        st->out.len = 0;
}

static void stream_fail(struct stream *st, int rc) {
        if (!st->discard)
                fprintf(stderr, "coffer: masking the job's output failed (%s); the rest is dropped\n", strerror(-rc));
        st->discard = true;
}

static void stream_end(struct stream *st) {
        int rc = mask_stream_finish(st->ms, &st->out);
        if (rc < 0)
                stream_fail(st, rc);
        stream_flush(st);
        if (st->fd >= 0)
                close(st->fd);
        st->fd = -1;
        st->dirty = false;
}

static void stream_read(struct sup *s, struct stream *st) {
        static uint8_t buf[READ_CHUNK];
        ssize_t n = read(st->fd, buf, sizeof(buf));
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (n <= 0) { /* EOF, or EIO from a pty master once the job's side is closed */
                stream_end(st);
                return;
        }
        s->last_io = st->last = now_mono_usec();
        int rc = mask_stream_feed(st->ms, &st->out, buf, (size_t) n);
        sodium_memzero(buf, (size_t) n);
        if (rc < 0)
                stream_fail(st, rc);
        stream_flush(st);
        st->dirty = mask_stream_held(st->ms) > 0;
}

static void stream_pause(struct stream *st) {
        int rc = mask_stream_pause(st->ms, &st->out);
        if (rc < 0)
                stream_fail(st, rc);
        stream_flush(st);
        st->dirty = false;
}

static void set_raw(struct sup *s, bool on) {
        if (s->in_fd < 0 || s->raw == on)
                return;
        if (on) {
                struct termios t = s->saved;
                cfmakeraw(&t);
                if (tcsetattr(STDIN_FILENO, TCSADRAIN, &t) == 0)
                        s->raw = true;
        } else {
                tcsetattr(STDIN_FILENO, TCSADRAIN, &s->saved);
                s->raw = false;
        }
}

/* The pty master while it is open, else -1. */
static int pty_fd(const struct sup *s) {
        return s->nst > 0 && s->st[0].pty ? s->st[0].fd : -1;
}

static void copy_winsize(const struct sup *s) {
        struct winsize ws;
        if (pty_fd(s) >= 0 && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0)
                ioctl(pty_fd(s), TIOCSWINSZ, &ws);
}

/* ---- starting the job ---- */

struct child_io {
        int in, out, err;     /* what becomes the job's 0, 1, 2; -1 = ours */
        int slave;            /* pty slave, -1 = none */
};

static int pipe_stream(struct sup *s, int dst, int *child_end) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        s->st[s->nst++] = (struct stream){ .fd = p[0], .dst = dst };
        *child_end = p[1];
        return 0;
}

/* With --mask: a pty when our stdout is a terminal (stdin too, if it is a
 * terminal and we are in its foreground), pipes otherwise. With pipes the
 * job gets a session of its own and no controlling terminal, so what it
 * writes to /dev/tty cannot pass by the mask: the open fails (ENXIO). */
static int io_setup(struct sup *s, struct child_io *io) {
        *io = (struct child_io){ -1, -1, -1, -1 };
        if (!isatty(STDOUT_FILENO)) {
                s->own_session = true;
                s->no_tty = true;
                int rc = pipe_stream(s, STDOUT_FILENO, &io->out);
                return rc < 0 ? rc : pipe_stream(s, STDERR_FILENO, &io->err);
        }
        struct termios t;
        struct winsize ws;
        bool have_t = tcgetattr(isatty(STDIN_FILENO) ? STDIN_FILENO : STDOUT_FILENO, &t) == 0;
        bool have_ws = ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0;
        int master;
        if (openpty(&master, &io->slave, NULL, have_t ? &t : NULL, have_ws ? &ws : NULL) < 0)
                return -errno;
        fcntl(master, F_SETFD, FD_CLOEXEC);
        fcntl(io->slave, F_SETFD, FD_CLOEXEC);
        fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
        s->own_session = true;
        s->st[s->nst++] = (struct stream){ .fd = master, .dst = STDOUT_FILENO, .pty = true };
        io->out = io->slave;
        if (isatty(STDIN_FILENO) && tcgetpgrp(STDIN_FILENO) == getpgrp() && tcgetattr(STDIN_FILENO, &s->saved) == 0) {
                io->in = io->slave;
                s->in_fd = STDIN_FILENO;
        }
        if (isatty(STDERR_FILENO)) {
                io->err = io->slave;
                return 0;
        }
        return pipe_stream(s, STDERR_FILENO, &io->err);
}

static _Noreturn void child_exec(const struct run *r, const struct child_io *io, char **envp, const sigset_t *oldmask,
                                 struct mask *m, bool no_tty) {
        if (io->slave >= 0 && (setsid() < 0 || ioctl(io->slave, TIOCSCTTY, 0) < 0))
                _exit(126);
        if (no_tty && setsid() < 0)
                _exit(126);
        if ((io->in >= 0 && dup2(io->in, STDIN_FILENO) < 0) || (io->out >= 0 && dup2(io->out, STDOUT_FILENO) < 0) ||
            (io->err >= 0 && dup2(io->err, STDERR_FILENO) < 0))
                _exit(126);
        close_fds_except(NULL, 0);
        mask_free(m);                 /* this copy: exec would drop it anyway */
        signal(SIGPIPE, SIG_DFL);     /* cli.c ignores it for us, not for the job */
        sigprocmask(SIG_SETMASK, oldmask, NULL);
        execvpe(r->cmd[0], r->cmd, envp);
        int e = errno;
        dprintf(STDERR_FILENO, "coffer: cannot run %s: %s\n", r->cmd[0], strerror(e));
        _exit(e == ENOENT ? 127 : 126);
}

/* ---- supervising ---- */

static void on_signal(struct sup *s, struct run *r, const struct signalfd_siginfo *si) {
        int sig = (int) si->ssi_signo, st;
        if (sig == SIGCHLD) {
                if (!s->exited && waitpid(s->job, &st, WNOHANG) == s->job) {
                        s->exited = true;
                        s->status = st;
                        s->exited_at = s->last_io = now_mono_usec();
                        dir_cleanup(r); /* at once, before the output is drained */
                }
                return;
        }
        if (sig == SIGWINCH) {
                copy_winsize(s);
                return;
        }
        /* A signal from our terminal reached the job too when it shares our
         * process group; one the job sent to its group is not sent back. */
        if (s->exited || (si->ssi_code == SI_KERNEL && !s->own_session) || (pid_t) si->ssi_pid == s->job)
                return;
        /* Without a terminal of its own, the job's group gets what ours sent (^C), as a terminal would. */
        kill(si->ssi_code == SI_KERNEL && s->no_tty ? -s->job : s->job, sig);
}

static bool streams_open(const struct sup *s) {
        for (size_t i = 0; i < s->nst; i++)
                if (s->st[i].fd >= 0)
                        return true;
        return false;
}

static uint64_t drain_end(const struct sup *s) {
        uint64_t idle = s->last_io + DRAIN_IDLE_MS * 1000, max = s->exited_at + DRAIN_MAX_MS * 1000;
        return idle < max ? idle : max;
}

/* How long poll may sleep: until a dirty stream's pause, or the drain's end. */
static int poll_timeout(const struct sup *s, uint64_t now) {
        uint64_t due = UINT64_MAX;
        for (size_t i = 0; i < s->nst; i++)
                if (s->st[i].fd >= 0 && s->st[i].dirty && s->st[i].last + PAUSE_MS * 1000 < due)
                        due = s->st[i].last + PAUSE_MS * 1000;
        if (s->exited && drain_end(s) < due)
                due = drain_end(s);
        if (due == UINT64_MAX)
                return -1;
        return due <= now ? 0 : (int) ((due - now + 999) / 1000);
}

static void on_timeout(struct sup *s, uint64_t now) {
        for (size_t i = 0; i < s->nst; i++)
                if (s->st[i].fd >= 0 && s->st[i].dirty && now >= s->st[i].last + PAUSE_MS * 1000)
                        stream_pause(&s->st[i]);
}

static void copy_input(struct sup *s, short in_ev, short out_ev) {
        if (in_ev & (POLLIN | POLLHUP | POLLERR)) {
                ssize_t n = read(s->in_fd, s->in, sizeof(s->in));
                if (n > 0) {
                        s->in_len = (size_t) n;
                        s->in_off = 0;
                } else if (n == 0 || (errno != EAGAIN && errno != EINTR))
                        s->in_fd = -1; /* stop reading; the terminal mode is restored at the end */
        }
        if (out_ev & POLLOUT) {
                ssize_t n = write(pty_fd(s), s->in + s->in_off, s->in_len - s->in_off);
                if (n > 0 && (s->in_off += (size_t) n) == s->in_len)
                        s->in_len = s->in_off = 0;
                else if (n < 0 && errno != EAGAIN && errno != EINTR)
                        s->in_len = s->in_off = 0;
        }
}

static int supervise(struct sup *s, struct run *r) {
        for (;;) {
                uint64_t now = now_mono_usec();
                if (s->exited && (!streams_open(s) || now >= drain_end(s)))
                        break;
                struct pollfd pf[5];
                size_t n = 0, in_i = SIZE_MAX, out_i = SIZE_MAX, st_i[2] = { SIZE_MAX, SIZE_MAX };
                pf[n++] = (struct pollfd){ .fd = s->sfd, .events = POLLIN };
                for (size_t i = 0; i < s->nst; i++)
                        if (s->st[i].fd >= 0) {
                                st_i[i] = n;
                                pf[n++] = (struct pollfd){ .fd = s->st[i].fd, .events = POLLIN };
                        }
                if (s->in_fd >= 0 && s->in_len == 0 && !s->exited) {
                        in_i = n;
                        pf[n++] = (struct pollfd){ .fd = s->in_fd, .events = POLLIN };
                }
                if (s->in_len > 0 && pty_fd(s) >= 0) {
                        out_i = n;
                        pf[n++] = (struct pollfd){ .fd = pty_fd(s), .events = POLLOUT };
                }
                int k = poll(pf, n, poll_timeout(s, now));
                if (k < 0 && errno != EINTR)
                        return -errno;
                now = now_mono_usec();
                if (k <= 0) {
                        on_timeout(s, now);
                        continue;
                }
                if (pf[0].revents & POLLIN) {
                        struct signalfd_siginfo si;
                        while (read(s->sfd, &si, sizeof(si)) == sizeof(si))
                                on_signal(s, r, &si);
                }
                for (size_t i = 0; i < s->nst; i++)
                        if (st_i[i] != SIZE_MAX && s->st[i].fd >= 0 && pf[st_i[i]].revents)
                                stream_read(s, &s->st[i]);
                if (in_i != SIZE_MAX || out_i != SIZE_MAX)
                        copy_input(s, in_i != SIZE_MAX ? pf[in_i].revents : 0,
                                   out_i != SIZE_MAX ? pf[out_i].revents : 0);
                on_timeout(s, now);
        }
        for (size_t i = 0; i < s->nst; i++)
                if (s->st[i].fd >= 0)
                        stream_end(&s->st[i]);
        return 0;
}

static const int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };

static int signals_block(sigset_t *oldmask) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGCHLD);
        sigaddset(&set, SIGWINCH);
        for (size_t i = 0; i < ELEMENTSOF(forwarded); i++)
                sigaddset(&set, forwarded[i]);
        if (sigprocmask(SIG_BLOCK, &set, oldmask) < 0)
                return -errno;
        int fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
        return fd < 0 ? -errno : fd;
}

/* The job's status as ours: its exit code, or the same signal. */
static int pass_status(int status) {
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        int sig = WTERMSIG(status);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, sig);
        fflush(NULL);
        signal(sig, SIG_DFL);
        sigprocmask(SIG_UNBLOCK, &set, NULL);
        kill(getpid(), sig); /* not dumpable (cmd_run): no core of ours */
        return 128 + sig;    /* a signal whose default is to be ignored */
}

static void close_child_ends(const struct child_io *io) {
        int fds[] = { io->in, io->out, io->err, io->slave };
        for (size_t i = 0; i < ELEMENTSOF(fds); i++) {
                bool seen = fds[i] < 0;
                for (size_t j = 0; j < i && !seen; j++)
                        seen = fds[j] == fds[i];
                if (!seen)
                        close(fds[i]);
        }
}

/* Everything the job's start needs from us: pty or pipes, mask streams, signals. */
static int start_setup(struct sup *s, struct child_io *io, const struct run *r, const struct mask *m,
                       sigset_t *oldmask) {
        int rc = r->mask ? io_setup(s, io) : 0;
        for (size_t i = 0; rc == 0 && i < s->nst; i++)
                rc = mask_stream_new(&s->st[i].ms, m);
        if (rc == 0 && (s->sfd = signals_block(oldmask)) < 0)
                rc = s->sfd;
        if (rc < 0)
                fprintf(stderr, "coffer: cannot set up the job's %s: %s\n",
                        s->sfd < 0 && rc == s->sfd ? "signals" : "output", strerror(-rc));
        return rc;
}

/* Start the job and watch it; returns its status through *status. */
static int run_job(struct run *r, struct mask *m, struct env *e, int *status) {
        struct sup s = { .sfd = -1, .in_fd = -1 };
        struct child_io io = { -1, -1, -1, -1 };
        sigset_t oldmask;
        int rc = start_setup(&s, &io, r, m, &oldmask);
        if (rc == 0 && (s.job = fork()) < 0) {
                rc = -errno;
                fprintf(stderr, "coffer: cannot start the job: %s\n", strerror(-rc));
        }
        if (rc == 0 && s.job == 0)
                child_exec(r, &io, e->envp, &oldmask, m, s.no_tty);
        close_child_ends(&io);
        env_free(e); /* the job has its copy */
        if (rc == 0) {
                set_raw(&s, true);
                rc = supervise(&s, r);
                if (rc < 0) {
                        fprintf(stderr, "coffer: supervising the job failed: %s; killing it\n", strerror(-rc));
                        kill(s.job, SIGKILL);
                }
                while (!s.exited && waitpid(s.job, &s.status, 0) < 0 && errno == EINTR)
                        ;
                *status = s.status;
        }
        set_raw(&s, false);
        for (size_t i = 0; i < s.nst; i++) {
                if (s.st[i].fd >= 0)
                        close(s.st[i].fd);
                mask_stream_free(s.st[i].ms);
                mask_out_free(&s.st[i].out);
        }
        if (s.sfd >= 0)
                close(s.sfd);
        return rc;
}

/* Connect, redeem the grant, make the directory and its watcher, fetch the rest. */
static int deliver(struct cli *cli, struct run *r) {
        const char *base = NULL;
        coffer *c = NULL;
        int rc = 0;

        if (needs_dir(r) && !(base = dir_base()))
                return EXIT_FAIL;
        if (r->nitems && (rc = cli_connect(cli, &c)) != 0)
                return rc;
        rc = redeem_grant(c, r);
        if (rc == 0 && base)
                rc = dir_create(r, base);
        if (rc == 0 && r->dir[0] && (rc = watcher_start(r)) < 0) {
                fprintf(stderr, "coffer: cannot start the process that removes %s: %s\n", r->dir, strerror(-rc));
                rc = EXIT_FAIL;
        }
        if (rc == 0)
                rc = fetch(c, r);
        coffer_disconnect(c);
        return rc;
}

static int prepare(struct cli *cli, struct run *r, struct mask **m, struct env *e) {
        int rc = deliver(cli, r);
        if (rc == 0 && r->dir[0])
                rc = write_files(r);
        if (rc == 0 && r->mask)
                rc = mask_build(r, m);
        if (rc == 0)
                rc = env_build(r, e);

        const struct item *g = grant_item(r);
        if (rc != 0 && g && g->name)
                fprintf(stderr, "coffer: the grant was redeemed first and is used up; ask its creator for a new one\n");
        return rc;
}

int cmd_run(struct cli *cli, int argc, char **argv) {
        struct run r = { .dirfd = -1, .watcher_fd = -1 };
        struct mask *m = NULL;
        struct env e = { 0 };
        int status = 0;
        /* We hold secrets (the mask's copy, for the whole run): no core dumps,
         * no ptrace by other processes of the same user. */
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        sanitize_stdio();
        if (sodium_init() < 0) { /* coffer_connect does it too, but we may not connect */
                fprintf(stderr, "coffer: libsodium failed to initialize\n");
                return EXIT_FAIL;
        }
        int rc = parse_args(&r, argc, argv);
        if (rc == 0)
                rc = prepare(cli, &r, &m, &e);
        items_free(&r); /* every value is wiped before the job starts */
        bool ran = rc == 0 && run_job(&r, m, &e, &status) == 0;
        if (rc == 0 && !ran)
                rc = EXIT_FAIL;
        env_free(&e);
        dir_cleanup(&r);
        watcher_stop(&r);
        mask_free(m);
        secbuf_wipe(&r.grant);
        for (size_t i = 0; i < r.nitems; i++)
                free(r.items[i].name);
        free(r.items);
        return ran ? pass_status(status) : rc;
}
