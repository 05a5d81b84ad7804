/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * pam_coffer: one coffer session per login.
 *
 * open_session asks cofferd (as root) to open a session lease for the user in
 * this process's audit session; the daemon writes the credentials into a
 * private directory and we export where they are. close_session revokes it.
 * Secret values never pass through here, except tokens for the kernel keyring
 * when `keyring` is set. Logs go to pam_syslog only, and never hold a value.
 */
#include <errno.h>
#include <linux/keyctl.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <syslog.h>
#include <unistd.h>

#include <security/pam_ext.h>
#include <security/pam_modules.h>

#include "coffer.h"
#include "util.h"

#define DATA_NAME "pam_coffer_session"
#define ENV_DIR "COFFER_SESSION_DIR"
#define ENV_ID "COFFER_SESSION_ID"

/* Key permissions (keyutils.h has them; we do not link libkeyutils). */
#define KEY_POS_ALL 0x3f000000u
#define KEY_USR_VIEW 0x00010000u
#define KEY_USR_READ 0x00020000u
#define KEY_USR_SEARCH 0x00080000u

struct options {
        const char *socket;     /* NULL: the built-in default, never $COFFER_SOCKET */
        bool fail_closed;
        bool debug;
        bool keyring;
        uint64_t ttl_sec;       /* 0: the daemon's default */
        unsigned timeout_ms;    /* a hung daemon must not hang logins */
};

struct login {
        const char *user;
        const char *service;
        const char *tty;
        const char *rhost;
        uid_t uid;
};

/* What close_session needs from open_session in the same handle. */
struct session_data {
        char id[COFFER_LEASE_ID_LEN + 1];
        size_t nkeys;
        long keys[];            /* serials we added to the session keyring */
};

static const char *arg_value(const char *arg, const char *key) {
        size_t n = strlen(key);
        return strncmp(arg, key, n) == 0 ? arg + n : NULL;
}

/* Defaults, then argv. Unknown or malformed arguments are logged and ignored;
 * a malformed fail= means fail=closed (when in doubt, refuse). */
static void parse_args(pam_handle_t *pamh, struct options *o, int argc, const char **argv) {
        *o = (struct options) { .socket = NULL, .timeout_ms = 10000 };
        for (int i = 0; i < argc; i++) {
                const char *a = argv[i], *v;
                uint64_t ttl;

                if (strcmp(a, "debug") == 0)
                        o->debug = true;
                else if (strcmp(a, "keyring") == 0)
                        o->keyring = true;
                else if ((v = arg_value(a, "fail="))) {
                        o->fail_closed = strcmp(v, "open") != 0;
                        if (strcmp(v, "open") != 0 && strcmp(v, "closed") != 0)
                                pam_syslog(pamh, LOG_WARNING, "fail=%s is neither open nor closed; using fail=closed",
                                           v);
                } else if ((v = arg_value(a, "socket="))) {
                        if (v[0] == '/')
                                o->socket = v;
                        else
                                pam_syslog(pamh, LOG_WARNING, "ignoring socket=%s: not an absolute path", v);
                } else if ((v = arg_value(a, "ttl="))) {
                        if (parse_duration_sec(v, &ttl) == 0 && ttl > 0)
                                o->ttl_sec = ttl;
                        else
                                pam_syslog(pamh, LOG_WARNING,
                                           "ignoring ttl=%s: not a duration like 8h, 30m or 3600; "
                                           "using the daemon's default", v);
                } else if ((v = arg_value(a, "timeout="))) {
                        if (parse_duration_sec(v, &ttl) == 0 && ttl > 0 && ttl <= 3600)
                                o->timeout_ms = (unsigned) ttl * 1000u;
                        else
                                pam_syslog(pamh, LOG_WARNING, "ignoring timeout=%s: not a duration from 1s to 1h", v);
                } else
                        pam_syslog(pamh, LOG_WARNING, "ignoring unknown argument \"%s\"", a);
        }
}

static const char *socket_path(const struct options *o) {
        return o->socket ? o->socket : coffer_default_socket();
}

static const char *item_string(pam_handle_t *pamh, int type) {
        const void *v = NULL;
        if (pam_get_item(pamh, type, &v) != PAM_SUCCESS || !v || !*(const char *) v)
                return NULL;
        return v;
}

/* -ESRCH when there is no such user. */
static int lookup_uid(const char *user, uid_t *uid) {
        struct passwd pw, *res = NULL;
        long max = sysconf(_SC_GETPW_R_SIZE_MAX);
        size_t size = max > 0 ? (size_t) max : 16384;
        int r;

        for (;;) {
                _cleanup_free_ char *buf = malloc(size);
                if (!buf)
                        return -ENOMEM;
                r = getpwnam_r(user, &pw, buf, size, &res);
                if (r == ERANGE && size < 1024 * 1024) {
                        size *= 2;
                        continue;
                }
                if (r == 0 && res) {
                        *uid = res->pw_uid;
                        return 0;
                }
                return r == 0 || r == ENOENT || r == ESRCH ? -ESRCH : -r;
        }
}

static int get_login(pam_handle_t *pamh, struct login *l) {
        *l = (struct login) { .user = NULL };
        if (pam_get_user(pamh, &l->user, NULL) != PAM_SUCCESS || !l->user || !*l->user)
                return -ESRCH;
        l->service = item_string(pamh, PAM_SERVICE);
        l->tty = item_string(pamh, PAM_TTY);
        l->rhost = item_string(pamh, PAM_RHOST);
        return lookup_uid(l->user, &l->uid);
}

static coffer_session_request request_of(const struct login *l, const struct options *o) {
        return (coffer_session_request) {
                .user = l->user,
                .service = l->service,
                .tty = l->tty,
                .rhost = l->rhost,
                .ttl_sec = o->ttl_sec,
                .want_tokens = o->keyring,
        };
}

static bool id_valid(const char *id) {
        if (!id || strlen(id) != COFFER_LEASE_ID_LEN)
                return false;
        return strspn(id, "0123456789abcdef") == COFFER_LEASE_ID_LEN;
}

static bool env_name_valid(const char *name) {
        if (!name[0] || (name[0] >= '0' && name[0] <= '9'))
                return false;
        if (strncmp(name, "COFFER_SESSION_", 15) == 0)
                return false;   /* ours; a login map must not shadow them */
        return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") == strlen(name);
}

/* The daemon puts each credential directly in the session directory. */
static bool path_inside(const char *path, const char *dir) {
        size_t n = strlen(dir);
        if (n == 0 || strncmp(path, dir, n) != 0 || path[n] != '/')
                return false;
        const char *file = path + n + 1;
        return *file && !strchr(file, '/') && strcmp(file, ".") != 0 && strcmp(file, "..") != 0;
}

static int putenv_pair(pam_handle_t *pamh, const char *name, const char *value) {
        _cleanup_free_ char *kv = NULL;
        if (asprintf(&kv, "%s=%s", name, value) < 0)
                return -ENOMEM;
        int r = pam_putenv(pamh, kv);
        return r == PAM_SUCCESS ? 0 : r == PAM_BUF_ERR ? -ENOMEM : -EINVAL;
}

/* COFFER_SESSION_DIR, COFFER_SESSION_ID and one NAME=path per credential. A
 * credential that does not look like the daemon's own work is skipped. */
static int export_session(pam_handle_t *pamh, const coffer_session *s) {
        int r = putenv_pair(pamh, ENV_DIR, s->dir);
        if (r >= 0)
                r = putenv_pair(pamh, ENV_ID, s->id);
        for (size_t i = 0; r >= 0 && i < s->ncreds; i++) {
                const coffer_session_cred *cr = &s->creds[i];
                if (!env_name_valid(cr->env) || !path_inside(cr->path, s->dir)) {
                        pam_syslog(pamh, LOG_WARNING, "not exporting %s for %s: bad variable name or path",
                                   cr->env, cr->object);
                        continue;
                }
                r = putenv_pair(pamh, cr->env, cr->path);
        }
        return r;
}

/* Undo export_session: the login must not point at a session it does not have. */
static void unexport_session(pam_handle_t *pamh, const coffer_session *s) {
        (void) pam_putenv(pamh, ENV_DIR);
        (void) pam_putenv(pamh, ENV_ID);
        for (size_t i = 0; i < s->ncreds; i++)
                if (env_name_valid(s->creds[i].env))
                        (void) pam_putenv(pamh, s->creds[i].env);
}

/* The user reads the key by uid as well as by possession (through the session
 * keyring), so a process that joined another keyring still finds it. */
static long keyring_add_one(pam_handle_t *pamh, const coffer_session_cred *cr, uid_t uid) {
        char desc[8 + sizeof(cr->object)];
        snprintf(desc, sizeof(desc), "coffer:%s", cr->env[0] ? cr->env : cr->object);
        long k = syscall(SYS_add_key, "user", desc, coffer_secret_data(cr->token), coffer_secret_size(cr->token),
                         KEY_SPEC_SESSION_KEYRING);
        if (k < 0) {
                pam_syslog(pamh, LOG_WARNING, "cannot add %s to the session keyring: %m", desc);
                return -1;
        }
        if (syscall(SYS_keyctl, KEYCTL_SETPERM, k, KEY_POS_ALL | KEY_USR_VIEW | KEY_USR_READ | KEY_USR_SEARCH) < 0 ||
            syscall(SYS_keyctl, KEYCTL_CHOWN, k, uid, (gid_t) -1) < 0)
                pam_syslog(pamh, LOG_WARNING, "%s is in the session keyring but not owned by uid %u: %m", desc,
                           (unsigned) uid);
        return k;
}

static void keyring_add(pam_handle_t *pamh, const coffer_session *s, uid_t uid, struct session_data *d) {
        for (size_t i = 0; i < s->ncreds; i++) {
                if (!s->creds[i].token)
                        continue;
                long k = keyring_add_one(pamh, &s->creds[i], uid);
                if (k >= 0)
                        d->keys[d->nkeys++] = k;
        }
}

/* The daemon revokes the tokens; the local copies go too. */
static void keyring_revoke(struct session_data *d) {
        for (size_t i = 0; i < d->nkeys; i++)
                (void) syscall(SYS_keyctl, KEYCTL_REVOKE, d->keys[i]);
        d->nkeys = 0;
}

static void session_data_free(pam_handle_t *pamh, void *data, int error_status) {
        free(data);
}

/* An outage (daemon down or sealed) and any other failure both cost the login
 * only with fail=closed; the log says which and what to do. */
static int failure_to_pam(pam_handle_t *pamh, const struct options *o, const char *user, bool opening,
                          bool outage) {
        int prio = !outage || o->fail_closed ? LOG_ERR : LOG_WARNING;
        const char *then = !opening        ? "cofferd ends it when its lease expires or its login is gone"
                           : o->fail_closed ? "session refused"
                                            : "login continues without coffer credentials";
        pam_syslog(pamh, prio, "cannot %s the coffer session of %s: %s (fail=%s: %s)", opening ? "open" : "close",
                   user, coffer_last_error(), o->fail_closed ? "closed" : "open", then);
        return o->fail_closed ? PAM_SESSION_ERR : PAM_IGNORE;
}

/* The daemon is down (no socket: -ENOENT when connecting), sealed or hung:
 * what fail= decides about. */
static bool outage(int r) {
        return r == -ECONNREFUSED || r == -ENOKEY || r == -ETIMEDOUT;
}

/* Connect with the module's timeout; on failure, the PAM answer in *ret. */
static int connect_daemon(pam_handle_t *pamh, const struct options *o, const char *user, bool opening, coffer **c,
                          int *ret) {
        int r = coffer_connect_timeout(c, socket_path(o), o->timeout_ms);
        if (r < 0)
                *ret = failure_to_pam(pamh, o, user, opening, outage(r) || r == -ENOENT);
        return r;
}

static int login_to_pam(pam_handle_t *pamh, const struct options *o, const struct login *l, int r) {
        if (r == -ESRCH) {
                pam_syslog(pamh, LOG_ERR, "unknown user \"%s\"", l->user ? l->user : "");
                return PAM_USER_UNKNOWN;
        }
        pam_syslog(pamh, LOG_ERR, "cannot look up user \"%s\": %s", l->user, strerror(-r));
        return o->fail_closed ? PAM_SESSION_ERR : PAM_IGNORE;
}

/* Record the session in the handle (for close) and, with `keyring`, put the
 * tokens into the session keyring. */
static int remember_session(pam_handle_t *pamh, const struct options *o, const struct login *l,
                            const coffer_session *s) {
        struct session_data *d = calloc(1, sizeof(*d) + s->ncreds * sizeof(d->keys[0]));
        if (!d)
                return -ENOMEM;
        memcpy(d->id, s->id, sizeof(d->id));
        if (o->keyring)
                keyring_add(pamh, s, l->uid, d);
        if (pam_set_data(pamh, DATA_NAME, d, session_data_free) != PAM_SUCCESS) {
                keyring_revoke(d);
                free(d);
                return -ENOMEM;
        }
        return 0;
}

PAM_EXTERN int pam_sm_open_session(pam_handle_t *pamh, int flags, int argc, const char **argv) {
        struct options o;
        struct login l;
        coffer *c = NULL;
        coffer_session *s = NULL;
        int ret, r;

        parse_args(pamh, &o, argc, argv);
        r = get_login(pamh, &l);
        if (r < 0)
                return login_to_pam(pamh, &o, &l, r);
        coffer_session_request req = request_of(&l, &o);
        if (o.debug)
                pam_syslog(pamh, LOG_DEBUG, "opening a coffer session for %s (service %s, tty %s, rhost %s) at %s",
                           l.user, l.service ? l.service : "-", l.tty ? l.tty : "-", l.rhost ? l.rhost : "-",
                           socket_path(&o));

        if (connect_daemon(pamh, &o, l.user, true, &c, &ret) < 0)
                goto out;
        r = coffer_session_open(c, &s, &req);
        if (r < 0) {
                ret = failure_to_pam(pamh, &o, l.user, true, outage(r));
                goto out;
        }
        r = export_session(pamh, s);
        if (r >= 0)
                r = remember_session(pamh, &o, &l, s);
        if (r < 0) {
                /* The login would not know its session: take it back. */
                pam_syslog(pamh, LOG_ERR, "cannot export coffer session %s: %s", s->id, strerror(-r));
                unexport_session(pamh, s);
                if (coffer_session_close(c, s->id, &req) < 0)
                        pam_syslog(pamh, LOG_WARNING, "coffer session %s stays open until it expires: %s", s->id,
                                   coffer_last_error());
                ret = o.fail_closed ? PAM_SESSION_ERR : PAM_IGNORE;
                goto out;
        }
        pam_syslog(pamh, LOG_INFO, "coffer session %s opened for %s: %zu credential(s) in %s", s->id, l.user,
                   s->ncreds, s->dir);
        if (o.debug && s->ndenied > 0)
                pam_syslog(pamh, LOG_DEBUG, "%zu login map entr%s not delivered to %s (not allowed, or no such "
                           "secret)", s->ndenied, s->ndenied == 1 ? "y" : "ies", l.user);
        ret = PAM_SUCCESS;
out:
        coffer_session_free(s);
        coffer_disconnect(c);
        return ret;
}

/* The id from open_session in this handle, else from the environment the
 * application kept, else NULL: the daemon then closes by user, service, tty. */
static const char *session_id(pam_handle_t *pamh, struct session_data **data) {
        const void *d = NULL;
        *data = NULL;
        if (pam_get_data(pamh, DATA_NAME, &d) == PAM_SUCCESS && d) {
                *data = (struct session_data *) d;
                return (*data)->id;
        }
        const char *id = pam_getenv(pamh, ENV_ID);
        if (id && !id_valid(id)) {
                pam_syslog(pamh, LOG_WARNING, "ignoring malformed %s; closing by user, service and tty", ENV_ID);
                return NULL;
        }
        return id;
}

/* How a session found without an id is described in the log. */
static const char *match_text(const struct login *l, char *buf, size_t size) {
        snprintf(buf, size, "of this login (service %s, tty %s)", l->service ? l->service : "-", l->tty ? l->tty : "-");
        return buf;
}

PAM_EXTERN int pam_sm_close_session(pam_handle_t *pamh, int flags, int argc, const char **argv) {
        struct options o;
        struct login l;
        struct session_data *data;
        coffer *c = NULL;
        char m[300];
        int ret, r;

        parse_args(pamh, &o, argc, argv);
        r = get_login(pamh, &l);
        if (r < 0)
                return login_to_pam(pamh, &o, &l, r);
        coffer_session_request req = request_of(&l, &o);
        req.want_tokens = 0;
        const char *id = session_id(pamh, &data);
        if (data)
                keyring_revoke(data);

        if (connect_daemon(pamh, &o, l.user, false, &c, &ret) < 0)
                goto out;
        r = coffer_session_close(c, id, &req);
        if (r < 0 && r != -ENOENT) {
                ret = failure_to_pam(pamh, &o, l.user, false, outage(r));
                goto out;
        }
        if (r > 0)
                pam_syslog(pamh, LOG_INFO, "coffer session %s closed for %s", id ? id : match_text(&l, m, sizeof(m)),
                           l.user);
        else if (o.debug)
                pam_syslog(pamh, LOG_DEBUG, "no open coffer session %s for %s (already closed)",
                           id ? id : match_text(&l, m, sizeof(m)), l.user);
        ret = PAM_SUCCESS;
out:
        coffer_disconnect(c);
        return ret;
}
