/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Who is calling: identity built from what the kernel says about a socket peer.
 * See docs/THREAT-MODEL.md for what each attribute is worth. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/sysmacros.h>
#include <sys/types.h>

#define PEER_GROUPS_MAX 256

enum peer_pin {
        PEER_PIN_PEERPIDFD = 1, /* SO_PEERPIDFD: the exact process that connected */
        PEER_PIN_PIDFD_OPEN = 2, /* pidfd_open(pid) checked against the connect time */
};

struct peer {
        uid_t uid;
        gid_t gid;
        pid_t pid;
        uint32_t ngroups;
        gid_t groups[PEER_GROUPS_MAX];
        int pidfd;                 /* -1 if none */
        enum peer_pin pin;
        uint64_t start_time;       /* /proc/PID/stat field 22, clock ticks since boot */
        char exe[4096];            /* "" if unreadable */
        /* The running file (stat of /proc/PID/exe, captured at connect):
         * what the re-check compares, whatever path it is seen under. */
        bool exe_known;
        dev_t exe_dev;
        ino_t exe_ino;
        /* exe, looked up as the daemon sees the file system, is that file. */
        bool exe_verified;
        /* Another user namespace than the host's (PID 1's), or not
         * known: exe and unit mean what that namespace makes them mean. */
        bool foreign_ns;
        char unit[256];            /* systemd unit, "" if none */
        uint32_t audit_session;    /* /proc/PID/sessionid; UINT32_MAX = unset */
        char login_session[64];    /* sd_pid_get_session, "" if none */
        char user[64];             /* name of uid, or the number */
        /* The outermost user namespace the peer is in below the daemon's:
         * its owner (the uid that made it, in the daemon's namespace) and
         * its inode. userns_owner is (uid_t) -1 when the peer is in the
         * daemon's own namespace or it could not be read. */
        uid_t userns_owner;
        uint64_t userns_ino;
        uint64_t principal;        /* whom limits count it for: its uid, or the user owning its subordinate
                                    * uid or user namespace (set by the connection layer; 0 = its uid);
                                    * PEER_KEY_* below for the others */
};

/* Fill *p from the connected socket fd. Returns 0, or -ESRCH when the peer
 * process cannot be confirmed to be the one that connected. */
int peer_from_socket(struct peer *p, int fd);
/* Re-check that the pinned process is still alive and the same one. */
int peer_still_same(const struct peer *p);
/* The same process, still running the same file (device and inode) in the
 * same unit: for decisions that depend on exe or unit. -ESRCH otherwise. */
int peer_recheck(const struct peer *p);
void peer_release(struct peer *p);
/* Principals that are not a uid: a user namespace root made (its inode),
 * and a uid counted on its own (unidentified, or in root's subordinate
 * range), never as root. Namespace inodes and uids are 32-bit. */
#define PEER_KEY_USERNS (1ull << 32)
#define PEER_KEY_APART (2ull << 32)
#define PEER_EXE_FILE_MAX 64
/* "MAJOR:MINOR:INODE" of the running file, "" if unknown; returns buf (n > 0). */
static inline const char *peer_exe_file(const struct peer *p, char *buf, size_t n) {
        buf[0] = 0;
        if (p->exe_known)
                snprintf(buf, n, "%u:%u:%llu", major(p->exe_dev), minor(p->exe_dev), (unsigned long long) p->exe_ino);
        return buf;
}
bool peer_in_group(const struct peer *p, gid_t gid);
