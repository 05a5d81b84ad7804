/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libcoffer: never logs; returns -errno and keeps a message per thread. */
#include <errno.h>
#include <sys/time.h>
#include <stdbool.h>
#include <pthread.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <sodium.h>

#include "coffer.h"
#include "proto.h"
#include "util.h"
#include "wire.h"

struct coffer {
        int fd;
        pthread_mutex_t lock;
        uint32_t next_id;
        unsigned timeout_ms;
        bool broken;       /* a timeout left a frame half-sent or half-read */
};

#define DEFAULT_TIMEOUT_MS 60000u

struct coffer_secret {
        size_t len;
        uint64_t version;
        uint8_t data[];
};

static _Thread_local char last_error[512];

static int set_error(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int set_error(int rc, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(last_error, sizeof(last_error), fmt, ap);
        va_end(ap);
        return rc;
}

COFFER_API const char *coffer_last_error(void) {
        return last_error[0] ? last_error : "no error";
}

COFFER_API size_t coffer_value_max(void) {
        return COFFER_VALUE_MAX;
}

COFFER_API const char *coffer_default_socket(void) {
        return COFFER_DEFAULT_SOCKET;
}

/* ---- connect ---- */

static bool uid_expected(uid_t uid) {
        /* Effective uid and secure_getenv: in a setuid program (su, sudo)
         * the real uid and the environment belong to the caller. */
        if (uid == 0 || uid == geteuid())
                return true;
        const char *name = secure_getenv("COFFER_DAEMON_USER");
        struct passwd pw, *res = NULL;
        char buf[1024];
        return getpwnam_r(name && *name ? name : "coffer", &pw, buf, sizeof(buf), &res) == 0 && res &&
               res->pw_uid == uid;
}

static int check_socket_path(const char *path) {
        struct stat st;
        if (stat(path, &st) < 0)
                return set_error(-errno, "cannot reach cofferd at %s: %s; is the daemon running?", path,
                                 strerror(errno));
        if (!S_ISSOCK(st.st_mode))
                return set_error(-ENOTSOCK, "%s is not a socket; check COFFER_SOCKET", path);
        if (!uid_expected(st.st_uid))
                return set_error(-EPERM, "refusing %s: owned by uid %u, not root or the daemon user; "
                                         "something else may be impersonating cofferd", path, (unsigned) st.st_uid);
        return 0;
}

COFFER_API int coffer_connect(coffer **out, const char *path) {
        return coffer_connect_timeout(out, path, DEFAULT_TIMEOUT_MS);
}

static int set_fd_timeout(int fd, unsigned ms) {
        struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
        return setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
                               setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0
                       ? -errno
                       : 0;
}

COFFER_API int coffer_connect_timeout(coffer **out, const char *path, unsigned ms) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        *out = NULL;
        last_error[0] = 0;
        if (sodium_init() < 0)
                return set_error(-EIO, "libsodium failed to initialize");
        if (!path)
                path = secure_getenv(COFFER_SOCKET_ENV);
        if (!path || !*path)
                path = COFFER_DEFAULT_SOCKET;
        if (!strcpy_bounded(sa.sun_path, sizeof(sa.sun_path), path))
                return set_error(-ENAMETOOLONG, "socket path too long: %s", path);
        int rc = check_socket_path(path);
        if (rc < 0)
                return rc;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return set_error(-errno, "socket: %s", strerror(errno));
        /* Before connect: a full listen queue (a stopped or hung daemon
         * behind a socket that systemd holds) blocks connect() itself. */
        if ((rc = set_fd_timeout(fd, ms)) < 0) {
                close(fd);
                return set_error(rc, "cannot set the timeout: %s", strerror(-rc));
        }
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                rc = -errno;
                close(fd);
                if (rc == -EAGAIN || rc == -EINPROGRESS)
                        return set_error(-ETIMEDOUT,
                                         "cofferd at %s did not accept the connection within %u ms (its queue is "
                                         "full: is it stopped or overloaded?)",
                                         path, ms);
                return set_error(rc, "cannot connect to cofferd at %s: %s; is the daemon running?", path,
                                 strerror(-rc));
        }
        struct ucred cred;
        socklen_t len = sizeof(cred);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || !uid_expected(cred.uid)) {
                close(fd);
                return set_error(-EPERM, "refusing %s: the listening process is not root or the daemon user", path);
        }
        coffer *c = calloc(1, sizeof(*c));
        if (!c) {
                close(fd);
                return set_error(-ENOMEM, "out of memory");
        }
        c->fd = fd;
        c->next_id = 1;
        c->timeout_ms = ms;
        pthread_mutex_init(&c->lock, NULL);
        *out = c;
        return 0;
}

COFFER_API void coffer_disconnect(coffer *c) {
        if (!c)
                return;
        close(c->fd);
        pthread_mutex_destroy(&c->lock);
        free(c);
}

/* ---- one request, one reply ---- */

struct reply {
        struct wire_msg msg;
        struct secbuf body;
};

static void reply_free(struct reply *r) {
        secbuf_wipe(&r->body);
}

COFFER_API int coffer_set_timeout(coffer *c, unsigned ms) {
        int rc = set_fd_timeout(c->fd, ms);
        if (rc < 0)
                return set_error(rc, "cannot set the timeout: %s", strerror(-rc));
        c->timeout_ms = ms;
        return 0;
}

static int io_error(coffer *c, const char *what) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
                c->broken = true;
                return set_error(-ETIMEDOUT, "cofferd did not answer within %u ms (is it stopped or overloaded?); "
                                             "reconnect and retry", c->timeout_ms);
        }
        return set_error(-errno, "%s cofferd failed: %s", what, strerror(errno));
}

static int send_frame(coffer *c, const struct wire_writer *w, int fd) {
        size_t off = 0;
        char cbuf[CMSG_SPACE(sizeof(int))];
        while (off < w->len) {
                struct iovec iov = { .iov_base = w->p + off, .iov_len = w->len - off };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
                if (fd >= 0 && off == 0) {
                        memset(cbuf, 0, sizeof(cbuf));
                        mh.msg_control = cbuf;
                        mh.msg_controllen = sizeof(cbuf);
                        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
                        cm->cmsg_level = SOL_SOCKET;
                        cm->cmsg_type = SCM_RIGHTS;
                        cm->cmsg_len = CMSG_LEN(sizeof(int));
                        memcpy(CMSG_DATA(cm), &fd, sizeof(int));
                }
                ssize_t n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return io_error(c, "sending to");
                off += (size_t) n;
        }
        return 0;
}

static int recv_exact(coffer *c, uint8_t *p, size_t n) {
        size_t off = 0;
        while (off < n) {
                ssize_t k = recv(c->fd, p + off, n - off, 0);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return io_error(c, "reading from");
                if (k == 0)
                        return set_error(-ECONNRESET, "cofferd closed the connection");
                off += (size_t) k;
        }
        return 0;
}

static int recv_reply(coffer *c, struct reply *r, uint16_t op, uint32_t id) {
        uint8_t hdr[WIRE_HEADER_SIZE];
        int rc = recv_exact(c, hdr, sizeof(hdr));
        if (rc < 0)
                return rc;
        if (wire_header_parse(&r->msg.hdr, hdr) < 0)
                return set_error(-EBADMSG, "malformed reply header from cofferd");
        r->body.len = r->msg.hdr.body_len;
        r->body.p = malloc(r->body.len ? r->body.len : 1);
        if (!r->body.p)
                return set_error(-ENOMEM, "out of memory");
        rc = recv_exact(c, r->body.p, r->body.len);
        if (rc < 0)
                return rc;
        if (wire_body_parse(&r->msg, r->body.p, r->body.len) < 0)
                return set_error(-EBADMSG, "malformed reply body from cofferd");
        if (r->msg.hdr.opcode == OP_ERROR) {
                uint64_t code = EIO;
                char msg[WIRE_STRING_MAX + 1] = "";
                wire_get_u64(&r->msg, T_ERR_CODE, &code);
                wire_get_str(&r->msg, T_ERR_MSG, msg, sizeof(msg));
                if (code == 0 || code > 4095)
                        code = EIO;
                return set_error(-(int) code, "%s", msg[0] ? msg : strerror((int) code));
        }
        if (r->msg.hdr.opcode != (op | PROTO_REPLY_BIT) || (id && r->msg.hdr.request_id != id))
                return set_error(-EBADMSG, "unexpected reply from cofferd");
        return 0;
}

/* req holds the fields of the body; it is framed here. */
static int call_fd(coffer *c, uint16_t op, const struct wire_writer *req, int fd, struct reply *r) {
        struct wire_writer w;
        memset(r, 0, sizeof(*r));
        last_error[0] = 0;
        if (req && req->error)
                return set_error(-E2BIG, "request too large (values are limited to 1 MiB)");
        wire_writer_init(&w);
        pthread_mutex_lock(&c->lock);
        if (c->broken) {
                pthread_mutex_unlock(&c->lock);
                wire_writer_free(&w);
                return set_error(-ECONNRESET, "this connection timed out earlier and is unusable; reconnect");
        }
        uint32_t id = c->next_id++;
        wire_frame_begin(&w, op, id);
        if (req)
                wire_write_bytes(&w, req->p, req->len);
        int rc = wire_frame_end(&w) < 0 ? set_error(-E2BIG, "request too large (values are limited to 1 MiB)")
                                        : send_frame(c, &w, fd);
        if (rc == 0)
                rc = recv_reply(c, r, op, id);
        pthread_mutex_unlock(&c->lock);
        wire_writer_free(&w);
        if (rc < 0)
                reply_free(r);
        return rc;
}

static int call(coffer *c, uint16_t op, const struct wire_writer *req, struct reply *r) {
        return call_fd(c, op, req, -1, r);
}

/* The common request: one string field and an optional u64 (sent when
 * nonzero). */
static int str_call(coffer *c, uint16_t op, uint8_t stag, const char *s, uint8_t utag, uint64_t u, struct reply *r) {
        struct wire_writer w;
        wire_writer_init(&w);
        wire_put_str(&w, stag, s);
        if (u)
                wire_put_u64(&w, utag, u);
        int rc = call(c, op, &w, r);
        wire_writer_free(&w);
        return rc;
}

/* ---- secrets ---- */

static coffer_secret *secret_new(const uint8_t *p, size_t n, uint64_t version) {
        size_t size = (sizeof(coffer_secret) + n + 15) & ~(size_t) 15;
        coffer_secret *s = sodium_malloc(size);
        if (!s)
                return NULL;
        s->len = n;
        s->version = version;
        if (n)
                memcpy(s->data, p, n);
        return s;
}

COFFER_API const uint8_t *coffer_secret_data(const coffer_secret *s) { return s->data; }
COFFER_API size_t coffer_secret_size(const coffer_secret *s) { return s->len; }
COFFER_API uint64_t coffer_secret_version(const coffer_secret *s) { return s->version; }
COFFER_API void coffer_secret_free(coffer_secret *s) {
        if (s)
                sodium_free(s); /* wipes */
}

static int name_check(const char *name) {
        if (!name || !proto_name_valid(name))
                return set_error(-EINVAL, "invalid secret name '%s': use 1-256 characters of A-Z a-z 0-9 . _ - "
                                          "in segments separated by '/', no empty, '.' or '..' segment",
                                 name ? name : "");
        return 0;
}

COFFER_API int coffer_get(coffer *c, coffer_secret **out, const char *name, uint64_t version) {
        struct reply r;
        const uint8_t *p;
        size_t n;
        uint64_t v = 0;
        *out = NULL;
        int rc = name_check(name);
        if (rc < 0)
                return rc;
        rc = str_call(c, OP_GET, T_NAME, name, T_VERSION, version, &r);
        if (rc < 0)
                return rc;
        if (wire_get_bytes(&r.msg, T_VALUE, &p, &n) < 0 || wire_get_u64(&r.msg, T_VERSION, &v) < 0)
                rc = set_error(-EBADMSG, "malformed get reply from cofferd");
        else if (!(*out = secret_new(p, n, v)))
                rc = set_error(-ENOMEM, "out of guarded memory (locked-memory limit?)");
        reply_free(&r);
        return rc;
}

COFFER_API int coffer_put(coffer *c, uint64_t *version_out, const char *name, const void *value, size_t len,
                          int64_t cas, uint64_t max_versions) {
        struct wire_writer w;
        struct reply r;
        int rc = name_check(name);
        if (rc < 0)
                return rc;
        if (len > COFFER_VALUE_MAX)
                return set_error(-E2BIG, "value is %zu bytes; the limit is 1 MiB", len);
        wire_writer_init(&w);
        wire_put_str(&w, T_NAME, name);
        wire_put_bytes(&w, T_VALUE, value, len);
        if (cas >= 0)
                wire_put_u64(&w, T_CAS, (uint64_t) cas);
        if (max_versions)
                wire_put_u64(&w, T_MAX_VERSIONS, max_versions);
        rc = call(c, OP_PUT, &w, &r);
        wire_writer_free(&w); /* wipes the value */
        if (rc < 0)
                return rc;
        uint64_t v = 0;
        if (wire_get_u64(&r.msg, T_VERSION, &v) < 0)
                rc = set_error(-EBADMSG, "malformed put reply from cofferd");
        if (version_out)
                *version_out = v;
        reply_free(&r);
        return rc;
}

COFFER_API void coffer_strv_free(char **v) {
        if (!v)
                return;
        for (char **p = v; *p; p++)
                free(*p);
        free(v);
}

static int unpack_names(const uint8_t *p, size_t n, char ***out) {
        struct wire_reader rd;
        size_t count = 0, cap = 16;
        char **v = calloc(cap + 1, sizeof(char *));
        wire_reader_init(&rd, p, n);
        while (v && wire_reader_left(&rd) > 0) {
                const uint8_t *s;
                size_t len;
                if (!wire_read_lbytes(&rd, &s, &len, PROTO_NAME_MAX) || memchr(s, 0, len)) {
                        coffer_strv_free(v);
                        return set_error(-EBADMSG, "malformed list reply from cofferd");
                }
                if (count == cap) {
                        char **nv = realloc(v, (2 * cap + 1) * sizeof(char *));
                        if (!nv)
                                break;
                        v = nv;
                        cap *= 2;
                }
                v[count] = strndup((const char *) s, len);
                if (!v[count])
                        break;
                v[++count] = NULL;
        }
        if (!v || wire_reader_left(&rd) > 0) {
                coffer_strv_free(v);
                return set_error(-ENOMEM, "out of memory");
        }
        *out = v;
        return (int) count;
}

COFFER_API int coffer_list(coffer *c, char ***names, const char *prefix) {
        struct wire_writer w;
        struct reply r;
        const uint8_t *p;
        size_t n;
        *names = NULL;
        if (prefix && *prefix && !proto_prefix_valid(prefix))
                return set_error(-EINVAL, "invalid prefix '%s'", prefix);
        wire_writer_init(&w);
        if (prefix && *prefix)
                wire_put_str(&w, T_PREFIX, prefix);
        int rc = call(c, OP_LIST, &w, &r);
        wire_writer_free(&w);
        if (rc < 0)
                return rc;
        rc = wire_get_bytes(&r.msg, T_NAMES, &p, &n) < 0 ? set_error(-EBADMSG, "malformed list reply")
                                                         : unpack_names(p, n, names);
        reply_free(&r);
        return rc;
}

COFFER_API int coffer_versions(coffer *c, coffer_version **out, const char *name) {
        struct reply r;
        const uint8_t *p;
        size_t n;
        *out = NULL;
        int rc = name_check(name);
        if (rc < 0)
                return rc;
        rc = str_call(c, OP_VERSIONS, T_NAME, name, 0, 0, &r);
        if (rc < 0)
                return rc;
        if (wire_get_bytes(&r.msg, T_VERSIONS, &p, &n) < 0) {
                reply_free(&r);
                return set_error(-EBADMSG, "malformed versions reply");
        }
        struct wire_reader rd;
        size_t count = n / 25;
        coffer_version *v = calloc(count ? count : 1, sizeof(*v));
        wire_reader_init(&rd, p, n);
        for (size_t i = 0; v && i < count; i++) {
                struct proto_version pv;
                proto_version_read(&rd, &pv);
                v[i] = (coffer_version){ pv.version, pv.created, pv.deleted, pv.destroyed };
        }
        if (!v || !wire_reader_done(&rd)) {
                rc = set_error(v ? -EBADMSG : -ENOMEM, "malformed versions reply");
                free(v);
        } else {
                *out = v;
                rc = (int) count;
        }
        reply_free(&r);
        return rc;
}

static int name_version_call(coffer *c, uint16_t op, const char *name, uint64_t version, uint64_t *version_out) {
        struct reply r;
        int rc = name_check(name);
        if (rc < 0)
                return rc;
        rc = str_call(c, op, T_NAME, name, T_VERSION, version, &r);
        if (rc == 0 && version_out)
                wire_get_u64(&r.msg, T_VERSION, version_out);
        if (rc == 0)
                reply_free(&r);
        return rc;
}

COFFER_API int coffer_delete(coffer *c, uint64_t *version_out, const char *name, uint64_t version) {
        return name_version_call(c, OP_DELETE, name, version, version_out);
}

COFFER_API int coffer_undelete(coffer *c, const char *name, uint64_t version) {
        return name_version_call(c, OP_UNDELETE, name, version, NULL);
}

COFFER_API int coffer_destroy(coffer *c, const char *name, uint64_t version) {
        return name_version_call(c, OP_DESTROY, name, version, NULL);
}

/* ---- status and operator ---- */

static void read_status(const struct wire_msg *m, coffer_status *st) {
        uint64_t v;
        memset(st, 0, sizeof(*st));
        if (wire_get_u64(m, T_INITIALIZED, &v) == 0)
                st->initialized = v != 0;
        if (wire_get_u64(m, T_SEALED, &v) == 0)
                st->sealed = v != 0;
        if (wire_get_u64(m, T_PROGRESS, &v) == 0)
                st->progress = (unsigned) v;
        if (wire_get_u64(m, T_THRESHOLD, &v) == 0)
                st->threshold = (unsigned) v;
        if (wire_get_u64(m, T_TERM, &v) == 0)
                st->term = v;
        if (wire_get_u64(m, T_REVOKED_STALE, &v) == 0)
                st->revocations_stale_since = v;
        if (wire_get_u64(m, T_JWKS_STALE, &v) == 0)
                st->jwks_stale_since = v;
        wire_get_str(m, T_METHOD, st->method, sizeof(st->method));
        wire_get_str(m, T_SERVER_VER, st->version, sizeof(st->version));
}

COFFER_API int coffer_status_get(coffer *c, coffer_status *st) {
        struct reply r;
        int rc = call(c, OP_STATUS, NULL, &r);
        if (rc < 0)
                return rc;
        read_status(&r.msg, st);
        reply_free(&r);
        return 0;
}

COFFER_API int coffer_operator_init(coffer *c, coffer_secret **shares_out, const char *method, const void *key,
                                    size_t key_len, unsigned shares, unsigned threshold) {
        struct wire_writer w;
        struct reply r;
        const uint8_t *p;
        size_t n;
        if (shares_out)
                *shares_out = NULL;
        wire_writer_init(&w);
        wire_put_str(&w, T_METHOD, method);
        if (key)
                wire_put_bytes(&w, T_KEY, key, key_len);
        if (shares) {
                wire_put_u64(&w, T_SHARES, shares);
                wire_put_u64(&w, T_THRESHOLD, threshold);
        }
        int rc = call(c, OP_INIT, &w, &r);
        wire_writer_free(&w);
        if (rc < 0)
                return rc;
        if (shares && wire_get_bytes(&r.msg, T_SHARES, &p, &n) == 0 && n == (size_t) shares * COFFER_SHARE_SIZE) {
                if (shares_out && !(*shares_out = secret_new(p, n, 0)))
                        rc = set_error(-ENOMEM, "out of guarded memory");
        } else if (shares)
                rc = set_error(-EBADMSG, "the daemon returned no shares");
        reply_free(&r);
        return rc;
}

COFFER_API int coffer_operator_unseal(coffer *c, coffer_status *st, const void *key, size_t key_len) {
        struct wire_writer w;
        struct reply r;
        wire_writer_init(&w);
        wire_put_bytes(&w, T_KEY, key, key_len);
        int rc = call(c, OP_UNSEAL, &w, &r);
        wire_writer_free(&w);
        if (rc < 0)
                return rc;
        if (st)
                read_status(&r.msg, st);
        reply_free(&r);
        return 0;
}

/* A request without fields whose reply carries (at most) one number. */
static int call_for_u64(coffer *c, uint16_t op, uint8_t tag, uint64_t *out) {
        struct reply r;
        int rc = call(c, op, NULL, &r);
        if (rc < 0)
                return rc;
        if (out)
                wire_get_u64(&r.msg, tag, out);
        reply_free(&r);
        return 0;
}

COFFER_API int coffer_operator_seal(coffer *c) {
        return call_for_u64(c, OP_SEAL, 0, NULL);
}

COFFER_API int coffer_operator_rotate(coffer *c, uint64_t *term_out) {
        return call_for_u64(c, OP_ROTATE, T_TERM, term_out);
}

COFFER_API int coffer_operator_accept_rollback(coffer *c, uint64_t *store_gen, uint64_t *anchored_gen) {
        struct reply r;
        int rc = call(c, OP_ACCEPT_ROLLBACK, NULL, &r);
        if (rc < 0)
                return rc;
        if (store_gen)
                wire_get_u64(&r.msg, T_STORE_GEN, store_gen);
        if (anchored_gen)
                wire_get_u64(&r.msg, T_ANCHOR_GEN, anchored_gen);
        reply_free(&r);
        return 0;
}

/* ---- identity and audit ---- */

COFFER_API int coffer_whoami(coffer *c, coffer_identity *id) {
        struct reply r;
        const uint8_t *p;
        size_t n;
        uint64_t v;
        int rc = call(c, OP_WHOAMI, NULL, &r);
        if (rc < 0)
                return rc;
        memset(id, 0, sizeof(*id));
        if (wire_get_u64(&r.msg, T_UID, &v) == 0) id->uid = (uint32_t) v;
        if (wire_get_u64(&r.msg, T_GID, &v) == 0) id->gid = (uint32_t) v;
        if (wire_get_u64(&r.msg, T_PID, &v) == 0) id->pid = (uint32_t) v;
        id->audit_session = UINT32_MAX;
        if (wire_get_u64(&r.msg, T_AUDIT_SESSION, &v) == 0) id->audit_session = (uint32_t) v;
        wire_get_str(&r.msg, T_USER, id->user, sizeof(id->user));
        wire_get_str(&r.msg, T_EXE, id->exe, sizeof(id->exe));
        wire_get_str(&r.msg, T_UNIT, id->unit, sizeof(id->unit));
        wire_get_str(&r.msg, T_LOGIN_SESSION, id->login_session, sizeof(id->login_session));
        wire_get_str(&r.msg, T_PIDFD_KIND, id->pin, sizeof(id->pin));
        wire_get_str(&r.msg, T_EXE_FILE, id->exe_file, sizeof(id->exe_file));
        if (wire_get_u64(&r.msg, T_EXE_VERIFIED, &v) == 0) id->exe_verified = v != 0;
        if (wire_get_u64(&r.msg, T_FOREIGN_NS, &v) == 0) id->foreign_namespace = v != 0;
        if (wire_get_bytes(&r.msg, T_GROUPS, &p, &n) == 0) {
                struct wire_reader rd;
                wire_reader_init(&rd, p, n);
                while (id->ngroups < ELEMENTSOF(id->groups) && wire_read_u32(&rd, &id->groups[id->ngroups]))
                        id->ngroups++;
        }
        reply_free(&r);
        return 0;
}

COFFER_API int coffer_audit_verify(coffer *c, coffer_audit_report *rep, int fd) {
        struct reply r;
        int rc = call_fd(c, OP_AUDIT_VERIFY, NULL, fd, &r);
        if (rc < 0)
                return rc;
        memset(rep, 0, sizeof(*rep));
        wire_get_u64(&r.msg, T_RECORDS, &rep->records);
        wire_get_u64(&r.msg, T_SEGMENTS, &rep->segments);
        wire_get_u64(&r.msg, T_BAD_LINE, &rep->bad_line);
        wire_get_str(&r.msg, T_ERR_MSG, rep->reason, sizeof(rep->reason));
        reply_free(&r);
        if (rep->bad_line)
                return set_error(-EBADMSG, "the audit log does not verify: %s", rep->reason);
        return 0;
}

/* ---- policy ---- */

static void put_subject(struct wire_writer *w, const coffer_subject *s) {
        if (s->user)
                wire_put_str(w, T_USER, s->user);
        if (s->uid >= 0)
                wire_put_u64(w, T_UID, (uint64_t) s->uid);
        if (s->unit)
                wire_put_str(w, T_UNIT, s->unit);
        if (s->exe)
                wire_put_str(w, T_EXE, s->exe);
        if (s->session)
                wire_put_u64(w, T_SESSION, 1);
        if (s->ngroups) {
                struct wire_writer g;
                wire_writer_init(&g);
                for (size_t i = 0; i < s->ngroups; i++)
                        wire_write_lbytes(&g, s->groups[i], strlen(s->groups[i]));
                wire_put_bytes(w, T_NAMES, g.p, g.len);
                wire_writer_free(&g);
        }
}

COFFER_API int coffer_policy_explain(coffer *c, coffer_explanation *out, const char *action, const char *object,
                                     const coffer_subject *subject) {
        struct wire_writer w;
        struct reply r;
        uint64_t v = 0;
        memset(out, 0, sizeof(*out));
        wire_writer_init(&w);
        wire_put_str(&w, T_ACTION, action);
        wire_put_str(&w, T_OBJECT, object);
        if (subject)
                put_subject(&w, subject);
        int rc = call(c, OP_POLICY_EXPLAIN, &w, &r);
        wire_writer_free(&w);
        if (rc < 0)
                return rc;
        if (wire_get_u64(&r.msg, T_ALLOW, &v) < 0)
                rc = set_error(-EBADMSG, "malformed explain reply from cofferd");
        out->allow = v != 0;
        wire_get_str(&r.msg, T_RULE, out->rule, sizeof(out->rule));
        wire_get_str(&r.msg, T_FILE, out->file, sizeof(out->file));
        if (wire_get_u64(&r.msg, T_LINE, &v) == 0)
                out->line = (unsigned) v;
        reply_free(&r);
        return rc;
}

COFFER_API int coffer_policy_reload(coffer *c, uint64_t *rules) {
        return call_for_u64(c, OP_POLICY_RELOAD, T_COUNT, rules);
}

/* ---- leases ---- */

static int lease_id_check(const char *id) {
        if (!id || !proto_lease_id_valid(id))
                return set_error(-EINVAL, "a lease id is 32 lowercase hex characters (see `coffer lease ls`)");
        return 0;
}

COFFER_API int coffer_lease_list(coffer *c, coffer_lease **out, int all, uint64_t *total) {
        struct wire_writer w;
        struct reply r;
        const uint8_t *p;
        size_t n;
        *out = NULL;
        wire_writer_init(&w);
        if (all)
                wire_put_u64(&w, T_ALL, 1);
        int rc = call(c, OP_LEASE_LIST, &w, &r);
        wire_writer_free(&w);
        if (rc < 0)
                return rc;
        if (wire_get_bytes(&r.msg, T_LEASES, &p, &n) < 0) {
                reply_free(&r);
                return set_error(-EBADMSG, "malformed lease list reply");
        }
        struct wire_reader rd;
        size_t count = 0, cap = 16;
        coffer_lease *v = calloc(cap, sizeof(*v));
        wire_reader_init(&rd, p, n);
        while (v && wire_reader_left(&rd) > 0) {
                struct proto_lease pl;
                if (!proto_lease_read(&rd, &pl))
                        break;
                if (count == cap) {
                        coffer_lease *nv = realloc(v, 2 * cap * sizeof(*v));
                        if (!nv) {
                                free(v);
                                v = NULL;
                                break;
                        }
                        v = nv;
                        cap *= 2;
                }
                coffer_lease *l = &v[count++];
                memset(l, 0, sizeof(*l));
                memcpy(l->id, pl.id, sizeof(l->id));
                memcpy(l->kind, pl.kind, sizeof(l->kind));
                memcpy(l->owner, pl.owner, sizeof(l->owner));
                l->owner_uid = pl.owner_uid;
                memcpy(l->object, pl.object, sizeof(l->object));
                memcpy(l->parent, pl.parent, sizeof(l->parent));
                l->issued = pl.issued;
                l->expires = pl.expires;
                l->max_expires = pl.max_expires;
                l->renewable = pl.renewable;
        }
        if (!v || !wire_reader_done(&rd)) {
                rc = set_error(v ? -EBADMSG : -ENOMEM, "malformed lease list reply");
                free(v);
        } else {
                *out = v;
                rc = count > INT32_MAX ? INT32_MAX : (int) count;
                if (total && wire_get_u64(&r.msg, T_COUNT, total) < 0)
                        *total = count;
        }
        reply_free(&r);
        return rc;
}

COFFER_API int coffer_lease_renew(coffer *c, const char *id, uint64_t ttl_sec, uint64_t *expires_out) {
        struct reply r;
        int rc = lease_id_check(id);
        if (rc < 0)
                return rc;
        rc = str_call(c, OP_LEASE_RENEW, T_LEASE_ID, id, T_TTL, ttl_sec, &r);
        if (rc < 0)
                return rc;
        if (expires_out)
                wire_get_u64(&r.msg, T_EXPIRES, expires_out);
        reply_free(&r);
        return 0;
}

static int revoke_call(coffer *c, uint8_t tag, const char *s, uint64_t *revoked) {
        struct reply r;
        int rc = str_call(c, OP_LEASE_REVOKE, tag, s, 0, 0, &r);
        if (rc < 0)
                return rc;
        if (revoked)
                wire_get_u64(&r.msg, T_COUNT, revoked);
        reply_free(&r);
        return 0;
}

COFFER_API int coffer_lease_revoke(coffer *c, const char *id, uint64_t *revoked) {
        int rc = lease_id_check(id);
        return rc < 0 ? rc : revoke_call(c, T_LEASE_ID, id, revoked);
}

COFFER_API int coffer_lease_revoke_prefix(coffer *c, const char *prefix, uint64_t *revoked) {
        if (!prefix || !*prefix)
                return set_error(-EINVAL, "give a prefix such as token/ or session/");
        return revoke_call(c, T_PREFIX, prefix, revoked);
}

/* ---- sessions ---- */

static void put_session_req(struct wire_writer *w, const coffer_session_request *q) {
        if (!q)
                return;
        if (q->user)
                wire_put_str(w, T_USER, q->user);
        if (q->service)
                wire_put_str(w, T_SERVICE, q->service);
        if (q->tty)
                wire_put_str(w, T_TTY, q->tty);
        if (q->rhost)
                wire_put_str(w, T_RHOST, q->rhost);
        if (q->ttl_sec)
                wire_put_u64(w, T_TTL, q->ttl_sec);
        if (q->want_tokens)
                wire_put_u64(w, T_WANT_TOKENS, 1);
}

COFFER_API void coffer_session_free(coffer_session *s) {
        if (!s)
                return;
        for (size_t i = 0; i < s->ncreds; i++)
                coffer_secret_free(s->creds[i].token);
        free(s->creds);
        free(s);
}

static int unpack_creds(coffer_session *s, const uint8_t *p, size_t n) {
        struct wire_reader rd;
        size_t cap = 0;
        wire_reader_init(&rd, p, n);
        while (wire_reader_left(&rd) > 0) {
                struct proto_cred pc;
                if (!proto_cred_read(&rd, &pc))
                        return -EBADMSG;
                if (s->ncreds == cap) {
                        cap = cap ? cap * 2 : 8;
                        coffer_session_cred *nc = realloc(s->creds, cap * sizeof(*nc));
                        if (!nc)
                                return -ENOMEM;
                        s->creds = nc;
                }
                coffer_session_cred *cr = &s->creds[s->ncreds++];
                memset(cr, 0, sizeof(*cr));
                memcpy(cr->env, pc.env, sizeof(cr->env));
                memcpy(cr->path, pc.path, sizeof(cr->path));
                memcpy(cr->object, pc.object, sizeof(cr->object));
                if (pc.token_len && !(cr->token = secret_new(pc.token, pc.token_len, 0)))
                        return -ENOMEM;
        }
        return wire_reader_done(&rd) ? 0 : -EBADMSG;
}

COFFER_API int coffer_session_open(coffer *c, coffer_session **out, const coffer_session_request *req) {
        struct wire_writer w;
        struct reply r;
        const uint8_t *p;
        size_t n;
        *out = NULL;
        if (!req || !req->user || !*req->user)
                return set_error(-EINVAL, "no user given for the session");
        wire_writer_init(&w);
        put_session_req(&w, req);
        int rc = call(c, OP_SESSION_OPEN, &w, &r);
        wire_writer_free(&w);
        if (rc < 0)
                return rc;
        coffer_session *s = calloc(1, sizeof(*s));
        uint64_t denied = 0;
        if (!s)
                rc = set_error(-ENOMEM, "out of memory");
        else if (wire_get_str(&r.msg, T_LEASE_ID, s->id, sizeof(s->id)) < 0 ||
                 wire_get_str(&r.msg, T_DIR, s->dir, sizeof(s->dir)) < 0 ||
                 wire_get_u64(&r.msg, T_EXPIRES, &s->expires) < 0 ||
                 wire_get_bytes(&r.msg, T_CREDS, &p, &n) < 0 || unpack_creds(s, p, n) < 0)
                rc = set_error(-EBADMSG, "malformed session reply from cofferd");
        if (s && wire_get_u64(&r.msg, T_DENIED, &denied) == 0)
                s->ndenied = (size_t) denied;
        reply_free(&r);
        if (rc < 0) {
                coffer_session_free(s);
                return rc;
        }
        *out = s;
        return 0;
}

COFFER_API int coffer_session_close(coffer *c, const char *id, const coffer_session_request *match) {
        struct wire_writer w;
        struct reply r;
        uint64_t n = 0;
        if (id && lease_id_check(id) < 0)
                return -EINVAL;
        if (!id && (!match || !match->user))
                return set_error(-EINVAL, "give a session id or the user to match");
        wire_writer_init(&w);
        if (id)
                wire_put_str(&w, T_LEASE_ID, id);
        put_session_req(&w, match);
        int rc = call(c, OP_SESSION_CLOSE, &w, &r);
        wire_writer_free(&w);
        if (rc < 0)
                return rc;
        wire_get_u64(&r.msg, T_COUNT, &n);
        reply_free(&r);
        return n > 0 ? 1 : 0;
}

/* ---- tokens ---- */

COFFER_API int coffer_token_issue(coffer *c, coffer_secret **token, const char *audience, uint64_t ttl_sec,
                                  uint64_t *expires_out) {
        struct reply r;
        const uint8_t *p;
        size_t n;
        *token = NULL;
        if (!audience || !proto_audience_valid(audience))
                return set_error(-EINVAL, PROTO_AUDIENCE_RULE);
        int rc = str_call(c, OP_TOKEN_ISSUE, T_AUDIENCE, audience, T_TTL, ttl_sec, &r);
        if (rc < 0)
                return rc;
        if (wire_get_bytes(&r.msg, T_TOKEN, &p, &n) < 0)
                rc = set_error(-EBADMSG, "malformed token reply from cofferd");
        else if (!(*token = secret_new(p, n, 0)))
                rc = set_error(-ENOMEM, "out of guarded memory (locked-memory limit?)");
        if (rc == 0 && expires_out)
                wire_get_u64(&r.msg, T_EXPIRES, expires_out);
        reply_free(&r);
        return rc;
}

COFFER_API int coffer_token_verify(coffer *c, coffer_token_info *out, const char *token, const char *audience) {
        struct wire_writer w;
        struct reply r;
        uint64_t valid = 0;
        memset(out, 0, sizeof(*out));
        if (!token || !*token)
                return set_error(-EINVAL, "no token given");
        if (audience && !proto_audience_valid(audience))
                return set_error(-EINVAL, PROTO_AUDIENCE_RULE);
        wire_writer_init(&w);
        wire_put_bytes(&w, T_TOKEN, token, strlen(token));
        if (audience)
                wire_put_str(&w, T_AUDIENCE, audience);
        int rc = call(c, OP_TOKEN_VERIFY, &w, &r);
        wire_writer_free(&w);
        if (rc < 0)
                return rc;
        if (wire_get_u64(&r.msg, T_ALLOW, &valid) < 0 || wire_get_str(&r.msg, T_STATUS, out->status,
                                                                       sizeof(out->status)) < 0)
                rc = set_error(-EBADMSG, "malformed verify reply from cofferd");
        out->valid = valid == 1;
        wire_get_str(&r.msg, T_ERR_MSG, out->reason, sizeof(out->reason));
        wire_get_str(&r.msg, T_USER, out->sub, sizeof(out->sub));
        wire_get_str(&r.msg, T_AUDIENCE, out->aud, sizeof(out->aud));
        wire_get_str(&r.msg, T_LEASE_ID, out->jti, sizeof(out->jti));
        wire_get_str(&r.msg, T_SID, out->sid, sizeof(out->sid));
        wire_get_str(&r.msg, T_KID, out->kid, sizeof(out->kid));
        wire_get_u64(&r.msg, T_CREATED, &out->iat);
        wire_get_u64(&r.msg, T_NBF, &out->nbf);
        wire_get_u64(&r.msg, T_EXPIRES, &out->exp);
        reply_free(&r);
        return rc;
}

COFFER_API int coffer_token_jwks(coffer *c, char **json) {
        struct reply r;
        const uint8_t *p;
        size_t n;
        *json = NULL;
        int rc = call(c, OP_TOKEN_JWKS, NULL, &r);
        if (rc < 0)
                return rc;
        if (wire_get_bytes(&r.msg, T_JWKS, &p, &n) < 0)
                rc = set_error(-EBADMSG, "malformed JWKS reply from cofferd");
        else if (!(*json = strndup((const char *) p, n)))
                rc = set_error(-ENOMEM, "out of memory");
        reply_free(&r);
        return rc;
}

COFFER_API int coffer_token_rotate(coffer *c, char kid[64]) {
        struct reply r;
        int rc = call(c, OP_TOKEN_ROTATE, NULL, &r);
        if (rc < 0)
                return rc;
        if (kid && wire_get_str(&r.msg, T_KID, kid, 64) < 0)
                rc = set_error(-EBADMSG, "malformed rotate reply from cofferd");
        reply_free(&r);
        return rc;
}

COFFER_API int coffer_key_derive(coffer *c, coffer_secret **key, const char *name, size_t bytes) {
        struct reply r;
        const uint8_t *p;
        size_t n;
        *key = NULL;
        int rc = name_check(name);
        if (rc < 0)
                return rc;
        if (bytes < 16 || bytes > 64)
                return set_error(-EINVAL, "a derived key is 16 to 64 bytes");
        rc = str_call(c, OP_KEY_DERIVE, T_NAME, name, T_BYTES, bytes, &r);
        if (rc < 0)
                return rc;
        if (wire_get_bytes(&r.msg, T_VALUE, &p, &n) < 0 || n != bytes)
                rc = set_error(-EBADMSG, "malformed derive reply from cofferd");
        else if (!(*key = secret_new(p, n, 0)))
                rc = set_error(-ENOMEM, "out of guarded memory (locked-memory limit?)");
        reply_free(&r);
        return rc;
}

/* ---- grants ---- */

COFFER_API int coffer_grant_create(coffer *c, char grant[COFFER_GRANT_MAX], char id[COFFER_LEASE_ID_LEN + 1],
                                   uint64_t *expires_out, const coffer_grant_request *req) {
        struct wire_writer w;
        struct reply r;
        const uint8_t *p;
        size_t n;
        grant[0] = 0;
        if (id)
                id[0] = 0;
        if (!req || name_check(req->secret) < 0)
                return set_error(-EINVAL, "give the secret to delegate (a valid secret name)");
        wire_writer_init(&w);
        wire_put_str(&w, T_NAME, req->secret);
        if (req->uses)
                wire_put_u64(&w, T_COUNT, req->uses);
        if (req->ttl_sec)
                wire_put_u64(&w, T_TTL, req->ttl_sec);
        if (req->for_user)
                wire_put_str(&w, T_USER, req->for_user);
        if (req->for_unit)
                wire_put_str(&w, T_UNIT, req->for_unit);
        int rc = call(c, OP_GRANT_CREATE, &w, &r);
        wire_writer_free(&w);
        if (rc < 0)
                return rc;
        if (wire_get_bytes(&r.msg, T_TOKEN, &p, &n) < 0 || n == 0 || n >= COFFER_GRANT_MAX)
                rc = set_error(-EBADMSG, "malformed grant reply from cofferd");
        else {
                memcpy(grant, p, n);
                grant[n] = 0;
                if (id)
                        wire_get_str(&r.msg, T_LEASE_ID, id, COFFER_LEASE_ID_LEN + 1);
                if (expires_out)
                        wire_get_u64(&r.msg, T_EXPIRES, expires_out);
        }
        reply_free(&r);
        return rc;
}

static void put_grant(struct wire_writer *w, const char *grant_or_id) {
        if (proto_lease_id_valid(grant_or_id))
                wire_put_str(w, T_LEASE_ID, grant_or_id);
        else
                wire_put_bytes(w, T_TOKEN, grant_or_id, strlen(grant_or_id));
}

COFFER_API int coffer_grant_redeem(coffer *c, coffer_secret **value, char name[COFFER_NAME_MAX + 1],
                                   const char *grant) {
        struct wire_writer w;
        struct reply r;
        const uint8_t *p;
        size_t n;
        uint64_t v = 0;
        *value = NULL;
        if (!grant || !*grant || strlen(grant) >= COFFER_GRANT_MAX)
                return set_error(-EINVAL, "give the grant string (cgr1_...)");
        wire_writer_init(&w);
        wire_put_bytes(&w, T_TOKEN, grant, strlen(grant));
        int rc = call(c, OP_GRANT_REDEEM, &w, &r);
        wire_writer_free(&w);
        if (rc < 0)
                return rc;
        if (wire_get_bytes(&r.msg, T_VALUE, &p, &n) < 0 || wire_get_u64(&r.msg, T_VERSION, &v) < 0)
                rc = set_error(-EBADMSG, "malformed redeem reply from cofferd");
        else if (!(*value = secret_new(p, n, v)))
                rc = set_error(-ENOMEM, "out of guarded memory (locked-memory limit?)");
        if (rc == 0 && name && wire_get_str(&r.msg, T_NAME, name, COFFER_NAME_MAX + 1) < 0)
                name[0] = 0;
        reply_free(&r);
        return rc;
}

COFFER_API int coffer_grant_revoke(coffer *c, const char *grant_or_id) {
        struct wire_writer w;
        struct reply r;
        if (!grant_or_id || !*grant_or_id || strlen(grant_or_id) >= COFFER_GRANT_MAX)
                return set_error(-EINVAL, "give the grant string or its id");
        wire_writer_init(&w);
        put_grant(&w, grant_or_id);
        int rc = call(c, OP_GRANT_REVOKE, &w, &r);
        wire_writer_free(&w);
        if (rc == 0)
                reply_free(&r);
        return rc;
}
