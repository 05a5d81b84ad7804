/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Peer identity from the kernel. The process is pinned with a pidfd
 * (SO_PEERPIDFD where the kernel has it, else pidfd_open checked against the
 * connect time), /proc is read through a directory fd opened while the pidfd
 * says the process is alive, and the pidfd is checked again after the reads:
 * a PID cannot be reused while its process still runs, so the reads were of
 * the caller and no other process.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/nsfs.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-login.h>

#include "peer.h"
#include "util.h"

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

static int pidfd_open_compat(pid_t pid) {
        return (int) syscall(SYS_pidfd_open, pid, 0);
}

/* Exited processes make their pidfd readable. */
static bool pidfd_alive(int pidfd) {
        struct pollfd p = { .fd = pidfd, .events = POLLIN };
        return poll(&p, 1, 0) == 0;
}

static int read_small(int dirfd, const char *name, char *buf, size_t size) {
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        ssize_t n = read(fd, buf, size - 1);
        if (n < 0)
                return -errno;
        buf[n] = 0;
        return 0;
}

/* Field 22 of /proc/PID/stat; the comm field may hold spaces and ')' so
 * parse from the last ')'. */
static int read_start_time(int dirfd, uint64_t *start) {
        char buf[1024];
        int rc = read_small(dirfd, "stat", buf, sizeof(buf));
        if (rc < 0)
                return rc;
        char *p = strrchr(buf, ')');
        if (!p)
                return -EBADMSG;
        unsigned long long v = 0;
        /* After ')' come fields 3..; start time is field 22, the 20th of those. */
        if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
                   &v) != 1)
                return -EBADMSG;
        *start = v;
        return 0;
}

static uint64_t boottime_ticks(void) {
        struct timespec ts;
        clock_gettime(CLOCK_BOOTTIME, &ts);
        long hz = sysconf(_SC_CLK_TCK);
        return (uint64_t) ts.tv_sec * (uint64_t) hz + (uint64_t) ts.tv_nsec / (1000000000ull / (uint64_t) hz);
}

/* COFFERD_PEER_PIN=pidfd_open: use the fallback of kernels before 6.5 even
 * where SO_PEERPIDFD exists (to test it). */
static bool use_peerpidfd(void) {
        static int use = -1;
        if (use < 0) {
                const char *e = getenv("COFFERD_PEER_PIN");
                use = !(e && strcmp(e, "pidfd_open") == 0);
        }
        return use;
}

/* Whether uid is the process's real, effective, saved or filesystem uid. */
static bool proc_has_uid(int dirfd, uid_t uid) {
        char buf[4096];
        unsigned long v[4];
        if (read_small(dirfd, "status", buf, sizeof(buf)) < 0)
                return false;
        const char *u = strstr(buf, "\nUid:");
        if (!u || sscanf(u + 5, "%lu %lu %lu %lu", &v[0], &v[1], &v[2], &v[3]) != 4)
                return false;
        for (int i = 0; i < 4; i++)
                if (v[i] == (unsigned long) uid)
                        return true;
        return false;
}

static int pin_process(struct peer *p, int fd) {
        socklen_t len = sizeof(p->pidfd);
        if (use_peerpidfd() && getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &p->pidfd, &len) == 0 && p->pidfd >= 0) {
                p->pin = PEER_PIN_PEERPIDFD;
                return 0;
        }
        if (use_peerpidfd() && errno != ENOPROTOOPT && errno != EINVAL)
                return -errno;
        p->pidfd = pidfd_open_compat(p->pid);
        if (p->pidfd < 0)
                return -ESRCH;
        p->pin = PEER_PIN_PIDFD_OPEN;
        return 0;
}

static void read_user(struct peer *p) {
        struct passwd pw, *res = NULL;
        char buf[1024];
        if (getpwuid_r(p->uid, &pw, buf, sizeof(buf), &res) == 0 && res)
                strcpy_bounded(p->user, sizeof(p->user), res->pw_name);
        else
                snprintf(p->user, sizeof(p->user), "%u", (unsigned) p->uid);
}

/* Device and inode only, from what the kernel has cached: a FUSE file
 * system is not asked (its server could stall the daemon). */
static bool file_id(int dirfd, const char *path, dev_t *dev, ino_t *ino) {
        struct statx stx;
        if (statx(dirfd, path, AT_STATX_DONT_SYNC, STATX_INO, &stx) < 0 || !(stx.stx_mask & STATX_INO))
                return false;
        *dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
        *ino = (ino_t) stx.stx_ino;
        return true;
}

/* The running file, as the kernel holds it for the process: the magic link
 * resolves to that file, not to whatever its path names now. */
static void read_exe_file(struct peer *p, int dirfd) {
        p->exe_known = file_id(dirfd, "exe", &p->exe_dev, &p->exe_ino);
}

/* /proc/PID/exe shows the path in the process's mount namespace, where a
 * user can mount their own program over a root-owned path: the path names
 * the running file only if, looked up here, it leads to that file. */
static bool exe_path_verified(const struct peer *p) {
        dev_t dev;
        ino_t ino;
        return p->exe_known && p->exe[0] == '/' && file_id(AT_FDCWD, p->exe, &dev, &ino) && dev == p->exe_dev &&
               ino == p->exe_ino;
}

struct ns_ids {
        dev_t dev[2];
        ino_t ino[2];
};

static bool read_ns(int dirfd, struct ns_ids *n) {
        static const char *const names[2] = { "ns/mnt", "ns/user" };
        for (int i = 0; i < 2; i++)
                if (!file_id(dirfd, names[i], &n->dev[i], &n->ino[i]))
                        return false;
        return true;
}

/* The namespaces policy paths and units mean something in: the host's, as
 * PID 1 has them (cofferd.service gives the daemon private mounts), or the
 * daemon's own where PID 1's cannot be read. Read once. */
static const struct ns_ids *host_ns(void) {
        static struct ns_ids host;
        static int state; /* 0 not read yet, 1 read, -1 unreadable */
        if (state == 0) {
                _cleanup_close_ int init = open("/proc/1", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                _cleanup_close_ int self = open("/proc/self", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

                state = (init >= 0 && read_ns(init, &host)) || (self >= 0 && read_ns(self, &host)) ? 1 : -1;
        }
        return state > 0 ? &host : NULL;
}

/* Unreadable namespaces count as foreign: in doubt, exe and unit mean nothing. */
static bool in_foreign_ns(int dirfd) {
        const struct ns_ids *host = host_ns();
        struct ns_ids ns;
        if (!host || !read_ns(dirfd, &ns))
                return true;
        /* Only another user namespace: a mount namespace of its own takes
         * root to make (PrivateTmp=, ProtectSystem= give every hardened
         * service one), and a path bind-mounted in it already fails
         * exe_verified, the daemon looking the path up itself. */
        return ns.dev[1] != host->dev[1] || ns.ino[1] != host->ino[1];
}

static void read_unit(struct peer *p) {
        char *s = NULL;
        if (sd_pid_get_unit(p->pid, &s) >= 0)
                strcpy_bounded(p->unit, sizeof(p->unit), s);
        free(s);
}

static void read_proc(struct peer *p, int dirfd) {
        char buf[64];
        read_exe_file(p, dirfd);
        ssize_t n = readlinkat(dirfd, "exe", p->exe, sizeof(p->exe) - 1);
        p->exe[n > 0 ? n : 0] = 0;
        p->exe_verified = exe_path_verified(p);
        p->foreign_ns = in_foreign_ns(dirfd);
        p->audit_session = UINT32_MAX;
        if (read_small(dirfd, "sessionid", buf, sizeof(buf)) == 0) {
                uint64_t v;
                if (parse_u64(buf, 0, UINT32_MAX, &v) == 0)
                        p->audit_session = (uint32_t) v;
        }
        read_unit(p);
        char *s = NULL;
        if (sd_pid_get_session(p->pid, &s) >= 0)
                strcpy_bounded(p->login_session, sizeof(p->login_session), s);
        free(s);
}

#define USERNS_DEPTH_MAX 33 /* the kernel nests at most 32 */

static bool same_inode(const struct stat *a, const struct stat *b) {
        return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* Walk from the peer's user namespace up to the child of ours: its owner is
 * the unprivileged user behind every uid mapped in it (rootless containers
 * with subordinate uids), however deep the nesting. */
static void read_userns(struct peer *p, int dirfd) {
        struct stat self, st;
        p->userns_owner = (uid_t) -1;
        if (stat("/proc/self/ns/user", &self) < 0)
                return;
        _cleanup_close_ int ns = openat(dirfd, "ns/user", O_RDONLY | O_CLOEXEC);
        if (ns < 0 || fstat(ns, &st) < 0 || same_inode(&st, &self))
                return;
        for (int depth = 0; depth < USERNS_DEPTH_MAX; depth++) {
                _cleanup_close_ int parent = ioctl(ns, NS_GET_PARENT);
                struct stat pst;
                if (parent < 0 || fstat(parent, &pst) < 0)
                        return; /* not below ours: count it by its uid */
                if (same_inode(&pst, &self)) {
                        uid_t owner;
                        if (ioctl(ns, NS_GET_OWNER_UID, &owner) < 0)
                                return;
                        p->userns_owner = owner;
                        p->userns_ino = (uint64_t) st.st_ino;
                        return;
                }
                close(ns);
                ns = parent;
                parent = -1;
                st = pst;
        }
}

static int read_groups(struct peer *p, int fd) {
        socklen_t len = sizeof(p->groups);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, p->groups, &len) < 0)
                return -errno; /* ERANGE: more than PEER_GROUPS_MAX groups */
        p->ngroups = len / sizeof(gid_t);
        return 0;
}

int peer_from_socket(struct peer *p, int fd) {
        struct ucred cred;
        socklen_t len = sizeof(cred);
        char path[64];
        int rc;

        memset(p, 0, sizeof(*p));
        p->pidfd = -1;
        p->userns_owner = (uid_t) -1;
        uint64_t accepted = boottime_ticks();
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return -errno;
        p->uid = cred.uid;
        p->gid = cred.gid;
        p->pid = cred.pid;
        read_user(p);
        rc = read_groups(p, fd);
        if (rc < 0)
                return rc;
        if (p->pid <= 0)
                return -ESRCH;
        rc = pin_process(p, fd);
        if (rc < 0)
                return rc;

        snprintf(path, sizeof(path), "/proc/%d", (int) p->pid);
        _cleanup_close_ int dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0 || !pidfd_alive(p->pidfd))
                return -ESRCH;
        rc = read_start_time(dirfd, &p->start_time);
        if (rc < 0)
                return -ESRCH;
        /* pidfd_open may have caught a process that reused the PID after the
         * caller exited. One that started after the accept certainly did; one
         * that started between connect() and the accept (a busy daemon) is
         * caught if it runs as another user than the one that connected. */
        if (p->pin == PEER_PIN_PIDFD_OPEN && (p->start_time > accepted || !proc_has_uid(dirfd, cred.uid)))
                return -ESRCH;
        read_proc(p, dirfd);
        read_userns(p, dirfd);
        return peer_still_same(p);
}

int peer_still_same(const struct peer *p) {
        char path[64];
        uint64_t st;
        if (p->pidfd < 0 || !pidfd_alive(p->pidfd))
                return -ESRCH;
        snprintf(path, sizeof(path), "/proc/%d", (int) p->pid);
        _cleanup_close_ int dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0 || read_start_time(dirfd, &st) < 0 || st != p->start_time || !pidfd_alive(p->pidfd))
                return -ESRCH;
        return 0;
}

int peer_recheck(const struct peer *p) {
        struct peer now = { .pid = p->pid };
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d", (int) p->pid);
        _cleanup_close_ int dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0 || peer_still_same(p) < 0)
                return -ESRCH;
        /* The file, not its path: the same path can name another file. */
        read_exe_file(&now, dirfd);
        read_unit(&now);
        if (now.exe_known != p->exe_known || now.exe_dev != p->exe_dev || now.exe_ino != p->exe_ino ||
            strcmp(now.unit, p->unit) != 0)
                return -ESRCH;
        /* Alive after the reads: they were of this process. */
        return peer_still_same(p);
}

void peer_release(struct peer *p) {
        if (p->pidfd >= 0)
                close(p->pidfd);
        p->pidfd = -1;
}

bool peer_in_group(const struct peer *p, gid_t gid) {
        if (p->gid == gid)
                return true;
        for (uint32_t i = 0; i < p->ngroups; i++)
                if (p->groups[i] == gid)
                        return true;
        return false;
}
