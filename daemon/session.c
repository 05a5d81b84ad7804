/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Leases as the caller sees them, and login sessions: the session lease,
 * its private directory of credentials, and its end (close, expiry, or the
 * kernel audit session going away). */
#include <dirent.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <linux/magic.h>
#include <sodium.h>

#include "engines.h"
#include "loginmap.h"
#include "session.h"
#include "token.h"
#include "util.h"

#define RM_DEPTH_MAX 64


/* This boot: audit session ids start over at boot, so a session lease from
 * an earlier boot must not vouch for a process of this one. */
void boot_id(char out[static 40]) {
        _cleanup_close_ int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
        ssize_t n = fd < 0 ? -1 : read(fd, out, 39);
        if (n <= 0)
                n = 0;
        while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
                n--;
        out[n] = 0;
}

uint64_t lease_data_u64(const char *data, const char *key, uint64_t dflt) {
        size_t k = strlen(key);
        for (const char *p = data; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
                uint64_t v;
                char num[24];
                if (strncmp(p, key, k) != 0 || p[k] != '=')
                        continue;
                size_t n = strcspn(p + k + 1, "\n");
                if (n == 0 || n >= sizeof(num))
                        return dflt;
                memcpy(num, p + k + 1, n);
                num[n] = 0;
                return parse_u64(num, 0, UINT64_MAX, &v) == 0 ? v : dflt;
        }
        return dflt;
}

/* ---- the session directory ---- */

int session_root_prepare(struct cofferd *d) {
        struct statfs sf;
        char err[512];
        /* Users must be able to reach their own directory inside, but not
         * list the others' ids. */
        if (mkdir(d->session_dir, 0711) < 0 && errno != EEXIST)
                return -errno;
        struct stat st;
        if (lstat(d->session_dir, &st) < 0)
                return -errno;
        if (!S_ISDIR(st.st_mode)) {
                server_log("cofferd: the session directory %s is not a directory", d->session_dir);
                return -ENOTDIR;
        }
        if (st.st_uid == d->self_uid && (st.st_mode & 0777) != 0711 && chmod(d->session_dir, 0711) < 0)
                return -errno;
        if (check_owner_mode(d->session_dir, d->self_uid, err, sizeof(err)) < 0) {
                server_log("cofferd: refusing the session directory: %s", err);
                return -EPERM;
        }
        if (statfs(d->session_dir, &sf) == 0 && sf.f_type != TMPFS_MAGIC && sf.f_type != RAMFS_MAGIC)
                server_log("cofferd: WARNING: the session directory %s is not on tmpfs or ramfs: login credentials "
                        "would be written to disk; point session_dir at memory (e.g. /run/coffer/sessions)",
                        d->session_dir);
        return 0;
}

/* Removal runs in slices: the directory is the user's (they may chmod u+w
 * it and fill it), and one event loop serves everybody. Each slice does at
 * most RM_SLICE file system operations; what is left waits in
 * d->rm_pending for the next slice, at idle priority. */
#define RM_SLICE 1024

struct rm_ctx {
        uid_t uid;
        gid_t gid;
        int top;          /* the session directory: where too-deep subtrees are moved */
        unsigned budget;
};

/* Remove name (under parent) and everything in it; -EAGAIN when the slice
 * ran out first. Directories the user may have made theirs are taken back
 * by fd (O_PATH, never by name), so that a swapped entry cannot redirect the
 * chown. A subtree deeper than RM_DEPTH_MAX is moved up to the top and
 * removed from there, so no depth leaves anything behind. */
static int rm_tree(struct rm_ctx *c, int parent, const char *name, unsigned depth) {
        if (c->budget == 0)
                return -EAGAIN;
        c->budget--;
        _cleanup_close_ int p = openat(parent, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (p < 0) {
                if (errno == ENOTDIR || errno == ELOOP)
                        return unlinkat(parent, name, 0) < 0 && errno != ENOENT ? -errno : 0;
                return errno == ENOENT ? 0 : -errno;
        }
        if (fchownat(p, "", c->uid, c->gid, AT_EMPTY_PATH) < 0)
                return -errno;
        char self[64];
        snprintf(self, sizeof(self), "/proc/self/fd/%d", p);
        if (chmod(self, 0700) < 0)
                return -errno;
        if (depth > RM_DEPTH_MAX) {
                /* Ours now, so it may be moved (its ".." changes). */
                struct stat st;
                char up[64];
                if (fstat(p, &st) < 0)
                        return -errno;
                /* Never onto an entry of the user's: a name that is taken is
                 * tried again with another suffix. */
                for (unsigned k = 0; k < 16; k++) {
                        snprintf(up, sizeof(up), ".deep-%llx-%u", (unsigned long long) st.st_ino, k);
                        if (renameat2(parent, name, c->top, up, RENAME_NOREPLACE) == 0)
                                return -EAGAIN;
                        if (errno != EEXIST)
                                return -errno;
                }
                return -EEXIST;
        }
        _cleanup_close_ int fd = openat(p, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        DIR *dir = fdopendir(fd);
        if (!dir)
                return -errno;
        fd = -1;
        int rc = 0;
        struct dirent *de;
        while (rc != -EAGAIN && (de = readdir(dir))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                int r;
                if (de->d_type == DT_DIR || de->d_type == DT_UNKNOWN)
                        r = rm_tree(c, dirfd(dir), de->d_name, depth + 1);
                else if (c->budget == 0)
                        r = -EAGAIN;
                else {
                        c->budget--;
                        r = unlinkat(dirfd(dir), de->d_name, 0) < 0 && errno != ENOENT ? -errno : 0;
                }
                if (r == -EAGAIN || (r < 0 && rc == 0))
                        rc = r;
        }
        closedir(dir);
        if (rc == -EAGAIN)
                return rc;
        if (unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT && rc == 0)
                rc = -errno;
        return rc;
}

/* One slice of SESSION_DIR/HEX's removal: 0 when it is gone, -EAGAIN when
 * more is left, or an error. The directory itself is taken back first, so
 * the user cannot reach what is left. */
static int rm_slice(struct cofferd *d, const char *hex) {
        _cleanup_close_ int root = open(d->session_dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (root < 0)
                return errno == ENOENT ? 0 : -errno;
        _cleanup_close_ int top = openat(root, hex, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (top < 0)
                return errno == ENOENT ? 0 : rm_tree(&(struct rm_ctx){ d->self_uid, getegid(), -1, 1 }, root, hex, 0);
        struct rm_ctx c = { .uid = d->self_uid, .gid = getegid(), .top = top, .budget = RM_SLICE };
        return rm_tree(&c, root, hex, 0);
}

static int on_rm_pending(sd_event_source *s, void *userdata) {
        struct cofferd *d = userdata;
        while (d->nrm_pending > 0) {
                const char *hex = d->rm_pending[0];
                int rc = rm_slice(d, hex);
                if (rc == -EAGAIN)
                        return 0; /* the next slice after the clients */
                if (rc < 0)
                        server_log("cofferd: could not remove the session directory %s/%s: %s; remove it by hand",
                                   d->session_dir, hex, strerror(-rc));
                memmove(d->rm_pending, d->rm_pending + 1, (d->nrm_pending - 1) * sizeof(*d->rm_pending));
                d->nrm_pending--;
        }
        return sd_event_source_set_enabled(s, SD_EVENT_OFF);
}

void session_rm_arm(struct cofferd *d) {
        if (!d->event || d->nrm_pending == 0)
                return;
        if (!d->rm_src) {
                if (sd_event_add_defer(d->event, &d->rm_src, on_rm_pending, d) < 0)
                        return;
                sd_event_source_set_priority(d->rm_src, SD_EVENT_PRIORITY_IDLE);
        }
        sd_event_source_set_enabled(d->rm_src, SD_EVENT_ON);
}

void session_rm_free(struct cofferd *d) {
        d->rm_src = sd_event_source_disable_unref(d->rm_src);
        free(d->rm_pending);
        d->rm_pending = NULL;
        d->nrm_pending = 0;
}

int session_dir_remove(struct cofferd *d, const char *hex) {
        int rc = rm_slice(d, hex);
        if (rc == -EAGAIN) {
                void *v = realloc(d->rm_pending, (d->nrm_pending + 1) * sizeof(*d->rm_pending));
                if (!v)
                        return -ENOMEM;
                d->rm_pending = v;
                strcpy_bounded(d->rm_pending[d->nrm_pending++], sizeof(*d->rm_pending), hex);
                session_rm_arm(d);
                return 0;
        }
        if (rc < 0)
                server_log("cofferd: could not remove the session directory %s/%s: %s", d->session_dir, hex,
                           strerror(-rc));
        return rc;
}

int session_dirs_orphaned(struct cofferd *d) {
        DIR *dir = opendir(d->session_dir);
        int n = 0;
        if (!dir)
                return errno == ENOENT ? 0 : -errno;
        struct dirent *de;
        while ((de = readdir(dir))) {
                uint8_t id[LEASE_ID_SIZE];
                struct stat st;
                /* Only what cofferd makes there: directories named by a lease id. */
                if (lease_id_parse(de->d_name, id) < 0 || fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                    !S_ISDIR(st.st_mode))
                        continue;
                const struct lease *l = lease_find(d->leases, id);
                if (l && l->kind == LEASE_SESSION && !l->revoked)
                        continue;
                char name[sizeof(*d->rm_pending)];
                if (!strcpy_bounded(name, sizeof(name), de->d_name))
                        continue;
                session_dir_remove(d, name);
                n++;
        }
        closedir(dir);
        return n;
}

/* Make SESSION_DIR/HEX, 0700 for now; it is handed over when complete. */
static int session_dir_create(struct cofferd *d, const char *hex, int *out) {
        _cleanup_close_ int root = open(d->session_dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (root < 0)
                return -errno;
        if (mkdirat(root, hex, 0700) < 0)
                return -errno;
        int fd = openat(root, hex, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        *out = fd;
        return 0;
}

static int write_cred(int dfd, const char *file, const void *p, size_t n, uid_t uid, gid_t gid) {
        _cleanup_close_ int fd = openat(dfd, file, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0400);
        if (fd < 0)
                return -errno;
        int rc = write_all(fd, p, n);
        /* Mode first: once the file is the user's, only they may chmod it. */
        if (rc == 0 && (fchmod(fd, 0400) < 0 || fchown(fd, uid, gid) < 0))
                rc = -errno;
        return rc;
}

/* ---- what happens when a lease ends ---- */

void engines_on_revoke(void *ud, const struct lease *l, const char *why) {
        struct cofferd *d = ud;
        char hex[33];
        lease_id_hex(l->id, hex);
        if (l->kind == LEASE_SESSION) {
                session_dir_remove(d, hex);
                struct audit_event ev = {
                        .op = "session-end",
                        .object = l->object,
                        .decision = "allow",
                        .rule = why,
                        .result = 0,
                        .lease = hex,
                        .detail = l->owner,
                };
                (void) audit_record(d->audit, &ev);
        } else if (l->kind == LEASE_TOKEN && strcmp(why, "expired") != 0) {
                /* Only a token revoked with time left is listed. */
                d->revlist_dirty = true;
        }
}

/* Sessions whose kernel audit session has no process left have ended even if
 * close_session never ran (sshd killed). */
static int cmp_u32(const void *a, const void *b) {
        uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
        return x < y ? -1 : x > y;
}

static int live_audit_sessions(uint32_t **out, size_t *n, size_t *readable) {
        DIR *proc = opendir("/proc");
        size_t cap = 256;
        uint32_t *v = malloc(cap * sizeof(*v));
        pid_t self = getpid();
        *n = 0;
        *readable = 0;
        if (!proc || !v) {
                if (proc)
                        closedir(proc);
                free(v);
                return -ENOMEM;
        }
        struct dirent *de;
        while ((de = readdir(proc))) {
                char path[300], buf[16];
                uint64_t pid;
                if (parse_u64(de->d_name, 1, INT32_MAX, &pid) < 0 || (pid_t) pid == self)
                        continue;
                snprintf(path, sizeof(path), "/proc/%s/sessionid", de->d_name);
                _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
                ssize_t k = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
                uint64_t sid;
                if (k <= 0)
                        continue;
                buf[k] = 0;
                if (parse_u64(buf, 0, UINT32_MAX, &sid) < 0)
                        continue;
                (*readable)++;
                if (sid == UINT32_MAX)
                        continue;
                if (*n == cap) {
                        uint32_t *nv = realloc(v, 2 * cap * sizeof(*v));
                        if (!nv) {
                                /* A partial list would end live sessions. */
                                closedir(proc);
                                free(v);
                                return -ENOMEM;
                        }
                        v = nv;
                        cap *= 2;
                }
                v[(*n)++] = (uint32_t) sid;
        }
        closedir(proc);
        qsort(v, *n, sizeof(*v), cmp_u32);
        *out = v;
        return 0;
}

/* A growable list of lease ids: revoking while iterating would change the
 * table, so the ids are collected first. */
struct idlist {
        uint8_t (*ids)[LEASE_ID_SIZE];
        size_t n, cap;
};

static int idlist_push(struct idlist *v, const uint8_t *id) {
        if (v->n == v->cap) {
                size_t k = v->cap ? v->cap * 2 : 16;
                void *p = realloc(v->ids, k * LEASE_ID_SIZE);
                if (!p)
                        return -ENOMEM;
                v->ids = p;
                v->cap = k;
        }
        memcpy(v->ids[v->n++], id, LEASE_ID_SIZE);
        return 0;
}

/* Revoke every lease in v (one transaction); returns how many were revoked. */
static int idlist_revoke(struct cofferd *d, struct idlist *v, const char *why) {
        int n = 0, rc = 0;
        if (v->n && (rc = store_begin(d->store)) == 0) {
                for (size_t i = 0; i < v->n; i++) {
                        struct lease *l = lease_find(d->leases, v->ids[i]);
                        int k = l ? lease_revoke(d->leases, l, why, now_unix()) : 0;
                        n += k > 0 ? k : 0;
                }
                rc = store_commit(d->store);
        }
        free(v->ids);
        *v = (struct idlist){ 0 };
        return rc < 0 ? rc : n;
}

struct ended_ctx {
        const uint32_t *live;
        size_t nlive;
        struct idlist v;
};

static int collect_ended(void *ud, struct lease *l) {
        struct ended_ctx *c = ud;
        if (l->kind != LEASE_SESSION || l->revoked || l->audit_session == UINT32_MAX)
                return 0;
        if (bsearch(&l->audit_session, c->live, c->nlive, sizeof(uint32_t), cmp_u32))
                return 0;
        return idlist_push(&c->v, l->id);
}

int session_check_ended(struct cofferd *d) {
        struct ended_ctx c = { 0 };
        uint32_t *live = NULL;
        size_t readable = 0;
        int rc = live_audit_sessions(&live, &c.nlive, &readable);
        if (rc < 0)
                return rc;
        c.live = live;
        /* No audit session readable at all (hidepid without CAP_SYS_PTRACE,
         * a broken /proc): end nothing rather than everything. */
        if (readable == 0) {
                free(live);
                return 0;
        }
        rc = lease_foreach_session(d->leases, collect_ended, &c);
        free(live);
        if (rc < 0) {
                free(c.v.ids);
                return rc;
        }
        return idlist_revoke(d, &c.v, "session-ended");
}

struct boot_ctx {
        char boot[40];
        struct idlist v;
};

static int collect_other_boot(void *ud, struct lease *l) {
        struct boot_ctx *c = ud;
        if (l->kind != LEASE_SESSION || l->revoked)
                return 0;
        const char *b = strstr(l->data, "\nboot=");
        if (b && strncmp(b + 6, c->boot, strlen(c->boot)) == 0 && (b[6 + strlen(c->boot)] == 0 ||
                                                                   b[6 + strlen(c->boot)] == '\n'))
                return 0;
        return idlist_push(&c->v, l->id);
}

int session_revoke_other_boots(struct cofferd *d) {
        struct boot_ctx c = { 0 };
        boot_id(c.boot);
        if (!c.boot[0])
                return 0;
        int rc = lease_foreach_session(d->leases, collect_other_boot, &c);
        if (rc < 0) {
                free(c.v.ids);
                return rc;
        }
        return idlist_revoke(d, &c.v, "rebooted");
}

/* ---- lease requests ---- */

static void lease_to_proto(const struct lease *l, struct proto_lease *p) {
        memset(p, 0, sizeof(*p));
        lease_id_hex(l->id, p->id);
        strcpy_bounded(p->kind, sizeof(p->kind), lease_kind_name(l->kind));
        strcpy_bounded(p->owner, sizeof(p->owner), l->owner);
        p->owner_uid = l->owner_uid;
        strcpy_bounded(p->object, sizeof(p->object), l->object);
        if (l->parent)
                lease_id_hex(l->parent->id, p->parent);
        p->issued = l->issued;
        p->expires = l->expires;
        p->max_expires = l->max_expires;
        p->renewable = l->renewable;
}

struct list_ctx {
        struct wire_writer w;
        bool all;
        uint32_t uid;
        uint64_t total, shown;
};

#define LIST_REPLY_MAX (768u * 1024u)

static int list_one(void *ud, struct lease *l) {
        struct list_ctx *c = ud;
        struct proto_lease p;
        if (l->revoked || (!c->all && l->owner_uid != c->uid))
                return 0;
        c->total++;
        if (c->w.len > LIST_REPLY_MAX)
                return 0;
        lease_to_proto(l, &p);
        if (proto_lease_write(&c->w, &p))
                c->shown++;
        return 0;
}

int process_lease_list(struct request *r) {
        uint64_t all = 0;
        if (wire_get_u64(r->msg, T_ALL, &all) == -EBADMSG || all > 1)
                return ops_fail(r, -EINVAL, "malformed 'all' field");
        snprintf(r->object, sizeof(r->object), "lease:%s", all ? "all" : "own");
        if (all) {
                int rc = ops_authorize(r, POL_ADMIN, "lease:all", NULL);
                if (rc < 0)
                        return rc;
        } else
                r->rule = "builtin:own-leases";
        struct list_ctx c = { .all = all != 0, .uid = r->peer->uid };
        wire_writer_init(&c.w);
        lease_foreach(r->d->leases, list_one, &c);
        wire_put_bytes(r->out, T_LEASES, c.w.p, c.w.len);
        wire_put_u64(r->out, T_COUNT, c.total);
        int rc = c.w.error ? ops_fail(r, -ENOMEM, "out of memory listing leases") : 0;
        wire_writer_free(&c.w);
        return rc;
}

/* The lease named by T_LEASE_ID, if the caller may manage it: its owner, or
 * an admin of lease:KIND. Unknown and not-yours look the same. */
static int lease_of_request(struct request *r, struct lease **out) {
        char hex[40];
        uint8_t id[LEASE_ID_SIZE];
        int rc = wire_get_str(r->msg, T_LEASE_ID, hex, sizeof(hex));
        if (rc < 0 || lease_id_parse(hex, id) < 0)
                return ops_fail(r, -EINVAL, "give a lease id (32 hex characters, as `coffer lease ls` shows)");
        strcpy_bounded(r->lease, sizeof(r->lease), hex);
        struct lease *l = lease_find(r->d->leases, id);
        if (l && l->revoked)
                l = NULL;
        snprintf(r->object, sizeof(r->object), "lease:%s", l ? lease_kind_name(l->kind) : "unknown");
        if (l && l->owner_uid == r->peer->uid) {
                r->rule = "builtin:own-lease";
        } else if (l && ops_is_admin(r, r->object)) {
                r->rule = "admin";
        } else {
                r->rule = "builtin:own-lease";
                r->denied = l != NULL;
                return ops_fail(r, -ENOENT, "no lease %s of yours; `coffer lease ls` lists them", hex);
        }
        *out = l;
        return 0;
}

int process_lease_renew(struct request *r) {
        struct lease *l;
        uint64_t ttl = 0;
        int rc = lease_of_request(r, &l);
        if (rc < 0)
                return rc;
        if (wire_get_u64(r->msg, T_TTL, &ttl) == -EBADMSG)
                return ops_fail(r, -EINVAL, "malformed ttl");
        if (ttl == 0)
                ttl = lease_data_u64(l->data, "ttl", l->expires > l->issued ? l->expires - l->issued : 1);
        rc = lease_renew(r->d->leases, l, ttl, now_unix());
        if (rc == -EPERM)
                return ops_fail(r, -EOPNOTSUPP, "lease %s (%s) is not renewable: its lifetime was fixed when it was "
                                                "issued (a token carries its expiry); issue a new one",
                                r->lease, lease_kind_name(l->kind));
        if (rc == -ETIME)
                return ops_fail(r, -ENOENT, "lease %s (%s) has expired and cannot be renewed; open a new one",
                                r->lease, lease_kind_name(l->kind));
        if (rc < 0)
                return ops_store_fail(r, rc, "renew");
        wire_put_u64(r->out, T_EXPIRES, l->expires);
        return 0;
}

static bool prefix_valid(const char *p) {
        const char *slash = strchr(p, '/');
        char kind[16];
        size_t kn = slash ? (size_t) (slash - p) : strlen(p);
        if (kn == 0 || kn >= sizeof(kind))
                return false;
        memcpy(kind, p, kn);
        kind[kn] = 0;
        return lease_kind_from_name(kind) > 0 && utf8_is_valid((const uint8_t *) p, strlen(p));
}

int process_lease_revoke(struct request *r) {
        char prefix[300];
        int rc = wire_get_str(r->msg, T_PREFIX, prefix, sizeof(prefix));
        if (rc == 0) {
                if (!prefix_valid(prefix))
                        return ops_fail(r, -EINVAL, "a prefix is KIND/... with KIND session, token or grant, e.g. "
                                                    "token/token:inference-api");
                snprintf(r->object, sizeof(r->object), "lease:all");
                snprintf(r->detail, sizeof(r->detail), "prefix=%s", prefix);
                rc = ops_authorize(r, POL_ADMIN, "lease:all", NULL);
                if (rc < 0)
                        return rc;
                rc = lease_revoke_prefix(r->d->leases, prefix, now_unix());
        } else if (rc == -EBADMSG) {
                return ops_fail(r, -EINVAL, "malformed prefix");
        } else {
                struct lease *l;
                rc = lease_of_request(r, &l);
                if (rc < 0)
                        return rc;
                rc = lease_revoke(r->d->leases, l, "revoked", now_unix());
        }
        if (rc < 0)
                return ops_store_fail(r, rc, "revoke");
        r->version = (uint64_t) rc;
        wire_put_u64(r->out, T_COUNT, (uint64_t) rc);
        return 0;
}

/* ---- login sessions ---- */

struct session_req {
        char user[64];
        char service[128];
        char tty[128];
        char rhost[256];
        uint64_t ttl;
        bool want_tokens;
};

static bool printable(const char *s) {
        for (; *s; s++)
                if ((unsigned char) *s < 0x20 || *s == 0x7f)
                        return false;
        return true;
}

static int decode_session(struct request *r, struct session_req *q, bool need_user) {
        uint64_t wt = 0;
        memset(q, 0, sizeof(*q));
        int rc = wire_get_str(r->msg, T_USER, q->user, sizeof(q->user));
        if ((rc < 0 && (need_user || rc != -ENOENT)) || (rc == 0 && !q->user[0]))
                return ops_fail(r, -EINVAL, "give the user name (at most 63 bytes)");
        if ((rc = wire_get_str(r->msg, T_SERVICE, q->service, sizeof(q->service))) < 0 && rc != -ENOENT)
                return ops_fail(r, -EINVAL, "malformed or too long service (at most 127 bytes)");
        if ((rc = wire_get_str(r->msg, T_TTY, q->tty, sizeof(q->tty))) < 0 && rc != -ENOENT)
                return ops_fail(r, -EINVAL, "malformed or too long tty (at most 127 bytes)");
        if ((rc = wire_get_str(r->msg, T_RHOST, q->rhost, sizeof(q->rhost))) < 0 && rc != -ENOENT)
                return ops_fail(r, -EINVAL, "malformed or too long remote host (at most 255 bytes)");
        if (!printable(q->user) || !printable(q->service) || !printable(q->tty) || !printable(q->rhost))
                return ops_fail(r, -EINVAL, "control characters in user, service, tty or remote host");
        if (wire_get_u64(r->msg, T_TTL, &q->ttl) == -EBADMSG ||
            wire_get_u64(r->msg, T_WANT_TOKENS, &wt) == -EBADMSG || wt > 1)
                return ops_fail(r, -EINVAL, "malformed ttl or want-tokens field");
        q->want_tokens = wt == 1;
        return 0;
}

static int need_root(struct request *r, const char *what) {
        snprintf(r->object, sizeof(r->object), "session:%s", what);
        r->rule = "builtin:root-only";
        if (r->peer->uid != 0)
                return ops_fail(r, -EACCES, "permission denied: only root (pam_coffer) may %s login sessions; "
                                            "to end your own, use `coffer lease revoke ID`", what);
        return 0;
}

/* Deliver one login-map entry into dfd. 1 delivered, 0 not allowed or
 * missing, < 0 failure. */
static int deliver(struct request *r, const struct login_entry *e, const struct passwd *pw, struct lease *session,
                   int dfd, struct wire_writer *creds, bool want_tokens, const char *dir) {
        struct pol_decision dec = { 0 };
        enum pol_action a = e->kind == LOGIN_SECRET ? POL_READ : POL_ISSUE;
        int rc = ops_decide_user(r, pw->pw_uid, pw->pw_gid, pw->pw_name, a, e->object, &dec);
        if (rc <= 0)
                return rc;
        struct proto_cred c = { 0 };
        strcpy_bounded(c.env, sizeof(c.env), e->env);
        snprintf(c.path, sizeof(c.path), "%.4000s/%.64s", dir, e->file);
        strcpy_bounded(c.object, sizeof(c.object), e->object);
        if (e->kind == LOGIN_SECRET) {
                _cleanup_secbuf_ struct secbuf v = { 0 };
                uint64_t ver;
                rc = store_secret_get(r->d->store, r->d->seal.kr, e->target, 0, &v.p, &v.len, &ver);
                if (rc == -ENOENT)
                        return 0;
                if (rc < 0)
                        return rc;
                rc = write_cred(dfd, e->file, v.p, v.len, pw->pw_uid, pw->pw_gid);
                if (rc < 0)
                        return rc;
                return proto_cred_write(creds, &c) ? 1 : -ENOMEM;
        }
        char tok[JWT_MAX + 1];
        uint64_t ttl = e->ttl ? e->ttl : r->d->cfg.token_ttl_sec;
        if (dec.max_ttl_sec && ttl > dec.max_ttl_sec)
                ttl = dec.max_ttl_sec;
        if (ttl > r->d->cfg.token_max_ttl_sec)
                ttl = r->d->cfg.token_max_ttl_sec;
        struct token_subject s = { .uid = pw->pw_uid, .sub = pw->pw_name, .unit = "" };
        struct lease *tl;
        rc = token_mint(r->d, &s, e->target, ttl, session, tok, sizeof(tok), &tl);
        if (rc < 0)
                return rc;
        rc = write_cred(dfd, e->file, tok, strlen(tok), pw->pw_uid, pw->pw_gid);
        if (rc == 0 && want_tokens) {
                c.token = (const uint8_t *) tok;
                c.token_len = strlen(tok);
        }
        if (rc == 0 && !proto_cred_write(creds, &c))
                rc = -ENOMEM;
        sodium_memzero(tok, sizeof(tok));
        return rc < 0 ? rc : 1;
}

int process_session_open(struct request *r) {
        struct session_req q;
        int rc = need_root(r, "open");
        if (rc == 0)
                rc = decode_session(r, &q, true);
        if (rc < 0)
                return rc;
        snprintf(r->object, sizeof(r->object), "session:%s", q.user);
        struct passwd pw, *pwr = NULL;
        char buf[4096];
        if (getpwnam_r(q.user, &pw, buf, sizeof(buf), &pwr) != 0 || !pwr)
                return ops_fail(r, -ENOENT, "unknown user '%s'", q.user);
        struct config *cfg = &r->d->cfg;
        uint64_t ttl = q.ttl ? q.ttl : cfg->session_ttl_sec;
        if (ttl > cfg->session_ttl_sec)
                ttl = cfg->session_ttl_sec;
        char data[700], object[200];
        char boot[40];
        boot_id(boot);
        snprintf(data, sizeof(data), "service=%s\ntty=%s\nrhost=%s\nttl=%llu\nboot=%s", q.service, q.tty, q.rhost,
                 (unsigned long long) ttl, boot);
        snprintf(object, sizeof(object), "session:%s", q.service[0] ? q.service : "login");
        struct lease_new n = {
                .kind = LEASE_SESSION,
                .owner_uid = pw.pw_uid,
                .owner = pw.pw_name,
                .object = object,
                .ttl = ttl,
                .max_ttl = cfg->session_ttl_sec,
                .renewable = true,
                .audit_session = r->peer->audit_session,
                .data = data,
        };
        struct lease *l;
        rc = lease_create(r->d->leases, &n, cfg->max_leases_per_uid, now_unix(), &l);
        if (rc == -EDQUOT) {
                char who[80];
                snprintf(who, sizeof(who), "user %.63s", q.user);
                return ops_cap_fail(r, pw.pw_uid, who);
        }
        if (rc < 0)
                return ops_store_fail(r, rc, "session open");
        char hex[33], dir[4096];
        lease_id_hex(l->id, hex);
        strcpy_bounded(r->lease, sizeof(r->lease), hex);
        snprintf(dir, sizeof(dir), "%.4000s/%s", r->d->session_dir, hex);
        _cleanup_close_ int dfd = -1;
        struct wire_writer creds;
        unsigned delivered = 0, denied = 0;
        wire_writer_init(&creds);
        rc = session_dir_create(r->d, hex, &dfd);
        for (size_t i = 0; rc == 0 && r->d->login && i < r->d->login->n; i++) {
                int k = deliver(r, &r->d->login->e[i], &pw, l, dfd, &creds, q.want_tokens, dir);
                if (k < 0)
                        rc = k;
                else if (k == 0)
                        denied++;
                else
                        delivered++;
        }
        /* Complete: hand the directory to the user, read-only. */
        if (rc == 0 && (fchmod(dfd, 0500) < 0 || fchown(dfd, pw.pw_uid, pw.pw_gid) < 0))
                rc = -errno;
        if (rc < 0) {
                wire_writer_free(&creds);
                lease_revoke(r->d->leases, l, "open-failed", now_unix());
                return ops_fail(r, rc, "could not set up the session directory %s: %s", dir, strerror(-rc));
        }
        snprintf(r->detail, sizeof(r->detail), "user=%.63s service=%.100s tty=%.100s rhost=%.200s delivered=%u not-allowed=%u",
                 q.user, q.service, q.tty, q.rhost, delivered, denied);
        r->rule = "builtin:root-only";
        wire_put_str(r->out, T_LEASE_ID, hex);
        wire_put_str(r->out, T_DIR, dir);
        wire_put_u64(r->out, T_EXPIRES, l->expires);
        wire_put_bytes(r->out, T_CREDS, creds.p, creds.len);
        wire_put_u64(r->out, T_DENIED, denied);
        wire_writer_free(&creds); /* wipes token bytes */
        server_watch_opener(r->d, r->peer);
        return 0;
}

static bool data_has(const char *data, const char *key, const char *want) {
        if (!want[0])
                return true;
        char pat[300];
        snprintf(pat, sizeof(pat), "%s=%s\n", key, want);
        size_t n = strlen(pat);
        /* The data is "service=..\ntty=..\nrhost=..": match whole lines. */
        for (const char *p = data; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
                if (strncmp(p, pat, n - 1) == 0 && (p[n - 1] == '\n' || p[n - 1] == 0))
                        return true;
        }
        return false;
}

struct match_ctx {
        uid_t uid;
        uint32_t asid;
        const struct session_req *q;
        struct lease *best;
};

static int match_one(void *ud, struct lease *l) {
        struct match_ctx *c = ud;
        if (l->kind != LEASE_SESSION || l->revoked || l->owner_uid != c->uid || l->audit_session != c->asid)
                return 0;
        if (!data_has(l->data, "service", c->q->service) || !data_has(l->data, "tty", c->q->tty))
                return 0;
        if (!c->best || l->issued >= c->best->issued)
                c->best = l;
        return 0;
}

int process_session_close(struct request *r) {
        struct session_req q;
        int rc = need_root(r, "close");
        if (rc == 0)
                rc = decode_session(r, &q, false);
        if (rc < 0)
                return rc;
        char hex[40];
        struct lease *l = NULL;
        struct passwd pw, *pwr = NULL;
        char buf[4096];
        if (q.user[0] && (getpwnam_r(q.user, &pw, buf, sizeof(buf), &pwr) != 0 || !pwr))
                return ops_fail(r, -ENOENT, "unknown user '%s'", q.user);
        rc = wire_get_str(r->msg, T_LEASE_ID, hex, sizeof(hex));
        if (rc == 0) {
                uint8_t id[LEASE_ID_SIZE];
                if (lease_id_parse(hex, id) < 0)
                        return ops_fail(r, -EINVAL, "malformed session id");
                strcpy_bounded(r->lease, sizeof(r->lease), hex);
                l = lease_find(r->d->leases, id);
                /* A session id from the PAM environment is only a hint: it
                 * must be a session of the user being closed. */
                if (l && (l->kind != LEASE_SESSION || l->revoked || (pwr && l->owner_uid != pw.pw_uid)))
                        l = NULL;
        } else if (pwr) {
                struct match_ctx c = { .uid = pw.pw_uid, .asid = r->peer->audit_session, .q = &q };
                lease_foreach(r->d->leases, match_one, &c);
                l = c.best;
                if (l)
                        lease_id_hex(l->id, r->lease);
        } else
                return ops_fail(r, -EINVAL, "give the session id, or the user whose session to close");
        snprintf(r->object, sizeof(r->object), "session:%s", l ? l->owner : q.user[0] ? q.user : "unknown");
        int n = l ? lease_revoke(r->d->leases, l, "closed", now_unix()) : 0;
        if (n < 0)
                return ops_store_fail(r, n, "session close");
        snprintf(r->detail, sizeof(r->detail), "%s", n ? "closed" : "no such open session (already closed?)");
        wire_put_u64(r->out, T_COUNT, (uint64_t) n);
        return 0;
}
