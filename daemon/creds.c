/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <stddef.h>
#include <sodium.h>

#include "config.h"
#include "creds.h"
#include "peer.h"
#include "server.h"
#include "util.h"

/* ---- serving ---- */

struct creds_conn {
        struct cofferd *d;
        int fd;
        sd_event_source *src;
        struct secbuf v;
        size_t off;
        uint64_t started;          /* monotonic µs */
        struct creds_conn *next, *prev;
};

static void conn_free(struct creds_conn *c) {
        if (!c)
                return;
        if (c->prev)
                c->prev->next = c->next;
        else if (c->d->creds_conns == c)
                c->d->creds_conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        sd_event_source_disable_unref(c->src);
        secbuf_wipe(&c->v);
        close(c->fd);
        free(c);
}

static int on_writable(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct creds_conn *c = userdata;
        (void) s;
        (void) revents;
        while (c->off < c->v.len) {
                ssize_t n = send(fd, c->v.p + c->off, c->v.len - c->off, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return 0;
                if (n < 0)
                        break; /* the reader went away: nothing to do */
                c->off += (size_t) n;
        }
        conn_free(c);
        return 0;
}

struct verdict {
        const char *decision;
        const char *rule;
        char object[PROTO_NAME_MAX + 16];
        char detail[2048];
        int result;
};

static int record(struct cofferd *d, const struct peer *p, struct verdict *v) {
        struct audit_event ev = {
                .op = "creds-load",
                .object = v->object,
                .decision = v->decision,
                .rule = v->rule,
                .result = v->result,
                .peer = p,
                .detail = v->detail,
        };
        return audit_record(d->audit, &ev);
}

static int refuse(struct verdict *v, int code, const char *rule, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static int refuse(struct verdict *v, int code, const char *rule, const char *fmt, ...) {
        size_t used = strlen(v->detail);
        va_list ap;
        va_start(ap, fmt);
        if (used + 3 < sizeof(v->detail)) {
                memcpy(v->detail + used, ": ", 3);
                vsnprintf(v->detail + used + 2, sizeof(v->detail) - used - 2, fmt, ap);
        }
        va_end(ap);
        v->decision = "deny";
        v->rule = rule;
        v->result = code;
        return code;
}

/* The unit of a (uid 0) peer from its cgroup, read while the pidfd shows it
 * is still the process that connected. */
static int peer_cgroup_unit(const struct peer *p, char out[static 256], char outer[static 256]) {
        char path[64];
        uint8_t *text = NULL;
        size_t len = 0;
        snprintf(path, sizeof(path), "/proc/%ld/cgroup", (long) p->pid);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || read_all_fd(fd, 65536, &text, &len) < 0)
                return -ESRCH;
        int rc = creds_cgroup_unit((const char *) text, len, out, outer);
        free(text);
        if (rc == 0 && peer_still_same(p) < 0)
                rc = -ESRCH;
        return rc;
}

static bool unit_listed(const char *globs, const char *unit) {
        char buf[sizeof(((struct config *) NULL)->creds_containers)], *save = NULL;
        strcpy_bounded(buf, sizeof(buf), globs);
        for (char *t = strtok_r(buf, " \t", &save); t; t = strtok_r(NULL, " \t", &save))
                if (policy_glob_match(t, unit))
                        return true;
        return false;
}

/* Decide and fetch. 0 with the value in *val, or < 0 with the verdict set. */
static int decide(struct cofferd *d, int fd, const struct peer *p, int peer_rc, struct verdict *v,
                  struct secbuf *val) {
        struct sockaddr_un sa;
        socklen_t salen = sizeof(sa);
        char unit[256], cred[CREDS_NAME_MAX + 1];
        memset(&sa, 0, sizeof(sa));
        strcpy_bounded(v->object, sizeof(v->object), "creds:unknown");
        if (getpeername(fd, (struct sockaddr *) &sa, &salen) < 0 || salen <= offsetof(struct sockaddr_un, sun_path) ||
            creds_parse_address(sa.sun_path, salen - offsetof(struct sockaddr_un, sun_path), unit, cred) < 0) {
                snprintf(v->detail, sizeof(v->detail), "peer address is not systemd's @RANDOM/unit/UNIT/CREDENTIAL");
                return refuse(v, -EPROTO, "creds:address", "not a systemd credential request");
        }
        snprintf(v->object, sizeof(v->object), "creds:%s", cred);
        snprintf(v->detail, sizeof(v->detail), "unit=%s credential=%s", unit, cred);
        if (peer_rc < 0)
                return refuse(v, -ESRCH, "creds:identity", "the connecting process could not be identified");
        if (p->uid != 0)
                return refuse(v, -EACCES, "creds:root-only", "peer uid %u is not root (only systemd asks here)",
                              (unsigned) p->uid);
        /* The name is a hint; the kernel says which unit the helper is in. */
        char real[256], outer[256];
        if (peer_cgroup_unit(p, real, outer) < 0)
                return refuse(v, -EACCES, "creds:unit-mismatch", "the connecting process is in no unit, not '%s'",
                              unit);
        if (strcmp(real, unit) != 0)
                return refuse(v, -EACCES, "creds:unit-mismatch", "the connecting process is in unit '%s', not '%s'",
                              real, unit);
        /* A unit inside another one was named by whoever runs that one (a
         * container's root, a delegated service): trusted only where the
         * admin says so. */
        if (strcmp(outer, unit) != 0) {
                snprintf(v->detail, sizeof(v->detail), "unit=%s container=%s credential=%s", unit, outer, cred);
                if (!unit_listed(d->cfg.creds_containers, outer))
                        return refuse(v, -EACCES, "creds:container",
                                      "unit '%s' runs inside '%s', whose root names its units; add '%s' (or a glob) "
                                      "to creds_containers in cofferd.conf to trust them",
                                      unit, outer, outer);
        }
        if (!d->seal.initialized || seal_is_sealed(&d->seal))
                return refuse(v, -ENOKEY, "creds:sealed", "cofferd is sealed: run `coffer operator unseal`");
        if (d->creds_map_broken)
                return refuse(v, -EIO, "creds:map", "the creds map failed to load: fix it and reload cofferd");
        const char *secret = creds_map_lookup(d->creds_map, cred);
        if (!secret)
                return refuse(v, -ENOENT, "creds:map", "no secret for this credential: map it in the creds map");
        snprintf(v->object, sizeof(v->object), "secret:%s", secret);
        /* The subject is the unit alone: not root, not the helper's exe. */
        struct pol_subject s = { .uid = (uid_t) -1, .gid = (gid_t) -1, .exe = "", .unit = unit,
                                 .minute_of_day = -1 };
        struct pol_decision dec = { 0 };
        time_t now = time(NULL);
        struct tm tm;
        if (localtime_r(&now, &tm))
                s.minute_of_day = tm.tm_hour * 60 + tm.tm_min;
        int rc = policy_eval(d->policy, &s, POL_READ, v->object, &dec);
        static char rule[300];
        if (dec.file)
                snprintf(rule, sizeof(rule), "%s:%u", dec.file, dec.line);
        else
                snprintf(rule, sizeof(rule), "no-rule");
        if (rc < 0 || !dec.allow)
                return refuse(v, -EACCES, rule, "policy does not allow read on %s for unit %s", v->object, unit);
        if (peer_recheck(p) < 0)
                return refuse(v, -ESRCH, "creds:identity", "the connecting process changed its unit");
        uint64_t ver;
        rc = store_secret_get(d->store, d->seal.kr, secret, 0, &val->p, &val->len, &ver);
        if (rc < 0)
                return refuse(v, rc, rule, "%s", rc == -ENOENT ? "no such secret" : strerror(-rc));
        if (val->len > CREDS_VALUE_MAX) {
                secbuf_wipe(val);
                return refuse(v, -E2BIG, rule, "the value is larger than systemd's 1 MiB credential limit");
        }
        v->decision = "allow";
        v->rule = rule;
        v->result = 0;
        return 0;
}

static void serve(struct cofferd *d, int fd) {
        struct peer p;
        struct verdict v = { .decision = "deny" };
        struct secbuf val = { 0 };
        int peer_rc = peer_from_socket(&p, fd);
        int rc = decide(d, fd, &p, peer_rc, &v, &val);
        /* Fail closed: no record, no credential. */
        if (record(d, &p, &v) < 0 && rc == 0) {
                secbuf_wipe(&val);
                rc = refuse(&v, -EIO, "audit", "the audit log cannot be written");
        }
        peer_release(&p);
        if (rc < 0) {
                fprintf(stderr, "cofferd: REFUSED a systemd credential (%s; rule %s): the unit receives an EMPTY "
                                "credential\n", v.detail, v.rule ? v.rule : "-");
                close(fd);
                return;
        }
        struct creds_conn *c = calloc(1, sizeof(*c));
        if (!c) {
                secbuf_wipe(&val);
                close(fd);
                return;
        }
        c->d = d;
        c->fd = fd;
        c->v = val;
        c->started = now_mono_usec();
        c->next = d->creds_conns;
        if (c->next)
                c->next->prev = c;
        d->creds_conns = c;
        if (sd_event_add_io(d->event, &c->src, fd, EPOLLOUT, on_writable, c) < 0)
                conn_free(c);
}

static int on_creds_listen(sd_event_source *s, int lfd, uint32_t revents, void *userdata) {
        struct cofferd *d = userdata;
        (void) s;
        (void) revents;
        for (int i = 0; i < 64; i++) {
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0)
                        break;
                serve(d, fd);
        }
        return 0;
}

int creds_start(struct cofferd *d, int fd) {
        return sd_event_add_io(d->event, &d->creds_src, fd, EPOLLIN, on_creds_listen, d);
}

void creds_stop(struct cofferd *d) {
        while (d->creds_conns)
                conn_free(d->creds_conns);
        d->creds_src = sd_event_source_disable_unref(d->creds_src);
}

void creds_sweep(struct cofferd *d) {
        uint64_t now = now_mono_usec(), limit = (uint64_t) CREDS_TIMEOUT_SEC * 1000000u;
        for (struct creds_conn *c = d->creds_conns, *next; c; c = next) {
                next = c->next;
                if (c->started + limit < now) {
                        fprintf(stderr, "cofferd: dropped a credential delivery the reader left unread for %d s\n",
                                CREDS_TIMEOUT_SEC);
                        conn_free(c);
                }
        }
}
