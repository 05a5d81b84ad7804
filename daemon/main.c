/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* cofferd: privileges and setup, then the event loop. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <sodium.h>
#include <systemd/sd-daemon.h>

#include "budget.h"
#include "server.h"
#include "session.h"
#include "token.h"
#include "util.h"

#define CREDENTIAL_NAME "coffer.unseal"

static int die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int die(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        fputs("cofferd: ", stderr);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        sd_notifyf(0, "STATUS=Failed to start");
        return 1;
}

static void usage(void) {
        puts("Usage: cofferd [--config FILE] [--state-dir DIR] [--socket PATH] [--audit-log FILE] [--policy-dir DIR]\n"
             "               [--session-dir DIR] [--login-map FILE] [--jwks FILE] [--revocation-list FILE]\n"
             "               [--creds-socket PATH|none] [--creds-map FILE]\n"
             "Runs the coffer daemon in the foreground. See cofferd(8).");
}

struct args {
        const char *config, *state_dir, *socket, *audit_log, *policy_dir;
        const char *session_dir, *login_map, *jwks, *revocations, *creds_socket, *creds_map;
};

static int parse_args(int argc, char **argv, struct args *a) {
        static const struct option opts[] = {
                { "config", required_argument, NULL, 'c' },  { "state-dir", required_argument, NULL, 'd' },
                { "socket", required_argument, NULL, 's' },  { "audit-log", required_argument, NULL, 'a' },
                { "policy-dir", required_argument, NULL, 'p' }, { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { "session-dir", required_argument, NULL, 'S' }, { "login-map", required_argument, NULL, 'L' },
                { "jwks", required_argument, NULL, 'J' }, { "revocation-list", required_argument, NULL, 'R' },
                { "creds-socket", required_argument, NULL, 'C' }, { "creds-map", required_argument, NULL, 'M' },
                {},
        };
        int c;
        while ((c = getopt_long(argc, argv, "c:d:s:a:p:hV", opts, NULL)) >= 0) {
                switch (c) {
                case 'c': a->config = optarg; break;
                case 'd': a->state_dir = optarg; break;
                case 's': a->socket = optarg; break;
                case 'a': a->audit_log = optarg; break;
                case 'p': a->policy_dir = optarg; break;
                case 'S': a->session_dir = optarg; break;
                case 'L': a->login_map = optarg; break;
                case 'J': a->jwks = optarg; break;
                case 'R': a->revocations = optarg; break;
                case 'C': a->creds_socket = optarg; break;
                case 'M': a->creds_map = optarg; break;
                case 'h': usage(); return 0;
                case 'V': puts("cofferd " COFFER_VERSION); return 0;
                default: return -EINVAL;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "cofferd: unexpected argument '%s'\n", argv[optind]);
                return -EINVAL;
        }
        return 1;
}

/* Memory holds unencrypted keys: no core dumps, no ptrace by same-uid peers. */
static int harden_process(void) {
        struct rlimit rl = { 0, 0 };
        umask(077);
        if (setrlimit(RLIMIT_CORE, &rl) < 0 || prctl(PR_SET_DUMPABLE, 0) < 0)
                return -errno;
        signal(SIGPIPE, SIG_IGN);
        /* Room for thousands of connections. */
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max > 65536 ? 65536 : rl.rlim_max;
                setrlimit(RLIMIT_NOFILE, &rl);
        }
        return 0;
}

/* Close every fd but stdio and the ones systemd passed us. */
static void sanitize_fds(int nlisten) {
        int first = 3 + (nlisten > 0 ? nlisten : 0);
        close_range((unsigned) first, ~0u, 0);
}

static int prepare_state_dir(struct cofferd *d) {
        char err[512];
        if (mkdir(d->cfg.state_dir, 0700) < 0 && errno != EEXIST)
                return die("cannot create state directory %s: %s", d->cfg.state_dir, strerror(errno));
        if (check_owner_mode(d->cfg.state_dir, d->self_uid, err, sizeof(err)) < 0)
                return die("refusing state directory: %s", err);

        /* Nothing in it is readable without the key, but its names are
         * metadata (store, journal, audit log sizes and times). */
        struct stat st;
        if (lstat(d->cfg.state_dir, &st) < 0)
                return die("cannot stat state directory %s: %s", d->cfg.state_dir, strerror(errno));
        if (!S_ISDIR(st.st_mode))
                return die("refusing state directory: %s is not a directory", d->cfg.state_dir);
        if (st.st_mode & 077)
                return die("refusing state directory: %s is open to group or others (mode %04o); it must be "
                           "0700: run chmod 0700 %s",
                           d->cfg.state_dir, (unsigned) (st.st_mode & 07777), d->cfg.state_dir);
        return 0;
}

static int passed_socket(int fd, const char *name) {
        if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0)
                return die("the socket systemd passed as '%s' is not a listening AF_UNIX stream socket", name);
        /* Inherited sockets are blocking; the accept loops must not be. */
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
                return die("cannot make the passed socket non-blocking: %s", strerror(errno));
        return 0;
}

static int bind_socket(const char *path, mode_t mode, int *out) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (!strcpy_bounded(sa.sun_path, sizeof(sa.sun_path), path))
                return die("socket path too long: %s", path);
        char dir[sizeof(sa.sun_path)];
        strcpy_bounded(dir, sizeof(dir), path);
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir) {
                *slash = 0;
                /* Made here, it must be 0755 whatever the umask: users reach
                 * the socket, their session directories and jwks.json in it. */
                if (mkdir(dir, 0755) == 0) {
                        if (chmod(dir, 0755) < 0)
                                return die("chmod %s: %s", dir, strerror(errno));
                } else if (errno != EEXIST)
                        return die("cannot create %s: %s", dir, strerror(errno));
        }
        struct stat st;
        if (lstat(sa.sun_path, &st) == 0) {
                if (!S_ISSOCK(st.st_mode))
                        return die("%s exists and is not a socket; remove it or choose another path", sa.sun_path);
                unlink(sa.sun_path);
        }
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, 4096) < 0)
                return die("cannot listen on %s: %s", sa.sun_path, strerror(errno));
        if (chmod(sa.sun_path, mode) < 0)
                return die("chmod %s: %s", sa.sun_path, strerror(errno));
        *out = fd;
        return 0;
}

/* With socket activation, the fd named "creds" is the credential socket and
 * the other one the API socket; without, both are made here. */
static int make_listener(struct cofferd *d, int nlisten, char **names) {
        if (nlisten > 0) {
                for (int i = 0; i < nlisten; i++) {
                        int fd = SD_LISTEN_FDS_START + i;
                        const char *name = names && names[i] ? names[i] : "unknown";
                        if (passed_socket(fd, name))
                                return 1;
                        if (strcmp(name, "creds") == 0)
                                d->creds_fd = fd;
                        else if (d->listen_fd < 0)
                                d->listen_fd = fd;
                        else
                                return die("systemd passed more than one API socket (name them 'coffer' and "
                                           "'creds' with FileDescriptorName=)");
                }
                if (d->listen_fd < 0)
                        return die("systemd passed no API socket, only the credential socket");
                return 0;
        }
        /* Anyone may connect to the API socket; what they get is decided from
         * their peer credentials. Only root (systemd) asks for credentials. */
        if (bind_socket(d->cfg.socket, 0666, &d->listen_fd))
                return 1;
        if (d->creds_path[0] && bind_socket(d->creds_path, 0600, &d->creds_fd))
                return 1;
        return 0;
}

/* systemd's LoadCredential[Encrypted]=coffer.unseal: unseal at start. */
static void unseal_from_credential(struct cofferd *d) {
        const char *dir = getenv("CREDENTIALS_DIRECTORY");
        char path[4096];
        if (!dir || !d->seal.initialized)
                return;
        snprintf(path, sizeof(path), "%s/%s", dir, CREDENTIAL_NAME);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return;
        _cleanup_secbuf_ struct secbuf key = { 0 };
        char held[512];
        const char *why = server_rollback_refusal(d, held, sizeof(held));
        int rc = why ? -ESTALE : read_all_fd(fd, PROTO_KEY_MAX, &key.p, &key.len);
        if (rc == 0)
                rc = seal_unseal(&d->seal, d->store, key.p, key.len, &why);
        if (rc == 0 && !seal_is_sealed(&d->seal))
                rc = server_unsealed(d, NULL);
        if (rc == 0)
                fprintf(stderr, "cofferd: unsealed from credential %s\n", CREDENTIAL_NAME);
        else
                fprintf(stderr, "cofferd: credential %s did not unseal the store: %s\n", CREDENTIAL_NAME,
                        why ? why : strerror(-rc));
}

/* Keep only what the running daemon needs: CAP_SYS_PTRACE to read other
 * users' /proc/PID/exe, CAP_IPC_LOCK to lock key pages, CAP_CHOWN to hand a
 * login session's directory to its user and take it back at the end. */
static const cap_value_t keep[] = { CAP_SYS_PTRACE, CAP_IPC_LOCK, CAP_CHOWN };

static bool kept(cap_value_t c) {
        for (size_t i = 0; i < ELEMENTSOF(keep); i++)
                if (keep[i] == c)
                        return true;
        return false;
}

static int drop_capabilities(void) {
        if (geteuid() != 0)
                return 0;
        for (cap_value_t c = 0; c <= CAP_LAST_CAP; c++) {
                if (!kept(c) && cap_drop_bound(c) < 0 && errno != EINVAL)
                        return -errno;
        }
        cap_t caps = cap_init();
        if (!caps)
                return -ENOMEM;
        int rc = cap_set_flag(caps, CAP_PERMITTED, ELEMENTSOF(keep), keep, CAP_SET) ||
                         cap_set_flag(caps, CAP_EFFECTIVE, ELEMENTSOF(keep), keep, CAP_SET) ||
                 cap_set_proc(caps) ? -errno : 0;
        cap_free(caps);
        return rc;
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        struct cofferd *d = userdata;
        if (si->ssi_signo == SIGHUP) {
                server_reload(d);
                return 0;
        }
        sd_notify(0, "STOPPING=1");
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

static int setup_signals(struct cofferd *d) {
        sigset_t ss;
        sigemptyset(&ss);
        sigaddset(&ss, SIGTERM);
        sigaddset(&ss, SIGINT);
        sigaddset(&ss, SIGHUP);
        sigprocmask(SIG_BLOCK, &ss, NULL);
        int rc = sd_event_add_signal(d->event, NULL, SIGTERM, on_signal, d);
        if (rc >= 0)
                rc = sd_event_add_signal(d->event, NULL, SIGINT, on_signal, d);
        if (rc >= 0)
                rc = sd_event_add_signal(d->event, NULL, SIGHUP, on_signal, d);
        return rc;
}

/* The command line wins, then the configuration, then RUNTIME/NAME. */
static int runtime_path(char out[static 4096], const char *arg, const char *cfg, const char *runtime,
                        const char *name) {
        if (arg)
                return strcpy_bounded(out, 4096, arg) ? 0 : -1;
        if (cfg[0])
                return strcpy_bounded(out, 4096, cfg) ? 0 : -1;
        return snprintf(out, 4096, "%s/%s", runtime, name) < 4096 ? 0 : -1;
}

static int load_config(struct cofferd *d, const struct args *a) {
        char err[512];
        config_defaults(&d->cfg);
        strcpy_bounded(d->config_path, sizeof(d->config_path), a->config ? a->config : COFFER_DEFAULT_CONFIG);
        d->config_required = a->config != NULL;
        if (config_load(&d->cfg, d->config_path, d->config_required, err, sizeof(err)) < 0)
                return die("bad configuration: %s", err);
        if (a->state_dir && !strcpy_bounded(d->cfg.state_dir, sizeof(d->cfg.state_dir), a->state_dir))
                return die("--state-dir too long");
        if (a->socket && !strcpy_bounded(d->cfg.socket, sizeof(d->cfg.socket), a->socket))
                return die("--socket too long (at most 107 bytes)");
        if (a->audit_log && !strcpy_bounded(d->cfg.audit_log, sizeof(d->cfg.audit_log), a->audit_log))
                return die("--audit-log too long");
        if (a->policy_dir && !strcpy_bounded(d->cfg.policy_dir, sizeof(d->cfg.policy_dir), a->policy_dir))
                return die("--policy-dir too long");
        if (a->login_map && !strcpy_bounded(d->cfg.login_map, sizeof(d->cfg.login_map), a->login_map))
                return die("--login-map too long");
        if (a->creds_map && !strcpy_bounded(d->cfg.creds_map, sizeof(d->cfg.creds_map), a->creds_map))
                return die("--creds-map too long");
        d->maps_from_args = (a->login_map ? 1 : 0) | (a->creds_map ? 2 : 0);
        /* Runtime files live next to the socket unless placed elsewhere. */
        strcpy_bounded(d->runtime_dir, sizeof(d->runtime_dir), d->cfg.socket);
        char *slash = strrchr(d->runtime_dir, '/');
        if (slash && slash != d->runtime_dir)
                *slash = 0;
        else
                strcpy_bounded(d->runtime_dir, sizeof(d->runtime_dir), ".");
        if (runtime_path(d->session_dir, a->session_dir, d->cfg.session_dir, d->runtime_dir, "sessions") ||
            runtime_path(d->jwks_path, a->jwks, d->cfg.jwks_path, d->runtime_dir, "jwks.json") ||
            runtime_path(d->revocation_path, a->revocations, d->cfg.revocation_list, d->runtime_dir,
                         "revoked.json"))
                return die("a runtime path is too long");
        const char *cs = a->creds_socket ? a->creds_socket : d->cfg.creds_socket;
        if (strcmp(cs, "none") == 0)
                d->creds_path[0] = 0;
        else if (cs[0] ? !strcpy_bounded(d->creds_path, sizeof(d->creds_path), cs)
                       : snprintf(d->creds_path, sizeof(d->creds_path), "%s/creds.sock", d->runtime_dir) >=
                                 (int) sizeof(d->creds_path))
                return die("the credential socket path is too long (at most 107 bytes)");
        if (d->cfg.audit_log[0])
                strcpy_bounded(d->audit_path, sizeof(d->audit_path), d->cfg.audit_log);
        else if (snprintf(d->audit_path, sizeof(d->audit_path), "%.4000s/audit.log", d->cfg.state_dir) < 0)
                return die("bad state directory");
        return 0;
}

static int open_leases(struct cofferd *d) {
        if (lease_mgr_new(&d->leases, d->store, engines_on_revoke, d) < 0 ||
            tokens_new(&d->tokens, d->jwks_path, d->revocation_path) < 0)
                return die("out of memory");
        if (session_root_prepare(d) < 0)
                return die("cannot use the session directory %s; fix it or set session_dir", d->session_dir);
        tokens_check_placement(d);
        int rc = lease_load(d->leases, now_unix());
        if (rc < 0)
                return die("cannot load the leases from the store: %s (%s)", strerror(-rc), store_errmsg(d->store));
        fprintf(stderr, "cofferd: %d live lease(s) loaded\n", rc);
        rc = session_revoke_other_boots(d);
        if (rc > 0)
                fprintf(stderr, "cofferd: %d lease(s) of login sessions from an earlier boot revoked\n", rc);
        rc = session_dirs_orphaned(d);
        if (rc > 0)
                fprintf(stderr, "cofferd: %d session director%s without an open session removed\n", rc,
                        rc == 1 ? "y" : "ies");
        server_load_login_map(d);
        server_load_creds_map(d);
        return 0;
}

static int open_store(struct cofferd *d) {
        int rc = store_open(&d->store, d->cfg.state_dir);
        if (rc < 0)
                return die("cannot open the store in %s: %s (%s)", d->cfg.state_dir, strerror(-rc),
                           store_errmsg(d->store));
        rc = seal_load(&d->seal, d->store);
        if (rc < 0)
                return die("the store's seal configuration is damaged: %s", strerror(-rc));
        rc = audit_open(&d->audit, d->audit_path, d->seal.has_audit_pk ? d->seal.audit_pk : NULL);
        if (rc < 0)
                return die("cannot open the audit log %s: %s", d->audit_path, audit_strerror(rc));
        /* Before anything writes to the store. */
        server_check_rollback(d);
        if (budget_new(&d->budget) < 0)
                return die("out of memory");
        return 0;
}

/* No policy is never an accident: without one, everything but the daemon's
 * own uid is denied, and the log says so. */
static int load_policy(struct cofferd *d) {
        char err[512] = "";
        int rc = server_load_policy(d, true, err, sizeof(err));
        if (rc < 0) {
                if (policy_new(&d->policy) < 0)
                        return die("out of memory");
                fprintf(stderr, "cofferd: POLICY NOT LOADED, denying everything to every uid but %u until it is "
                                "fixed and reloaded: %s\n", (unsigned) d->self_uid, err);
        } else if (rc == 0)
                fprintf(stderr, "cofferd: no policy rules in %s: denying everything to every uid but %u\n",
                        d->cfg.policy_dir, (unsigned) d->self_uid);
        else
                fprintf(stderr, "cofferd: policy loaded: %d rules from %s\n", rc, d->cfg.policy_dir);
        return 0;
}

static int run(struct cofferd *d) {
        int rc = sd_event_default(&d->event);
        if (rc < 0 || setup_signals(d) < 0 || server_start(d) < 0)
                return die("cannot set up the event loop: %s", strerror(rc < 0 ? -rc : EIO));
        sd_notifyf(0, "READY=1\nSTATUS=%s; listening on %s",
                   !d->seal.initialized ? "not initialized" : seal_is_sealed(&d->seal) ? "sealed" : "unsealed",
                   d->cfg.socket);
        fprintf(stderr, "cofferd %s: listening on %s (state %s)\n", COFFER_VERSION, d->cfg.socket, d->cfg.state_dir);
        rc = sd_event_loop(d->event);
        server_stop(d);
        d->event = sd_event_unref(d->event);
        return rc < 0 ? die("event loop failed: %s", strerror(-rc)) : 0;
}

int main(int argc, char **argv) {
        struct args a = { 0 };
        static struct cofferd d = { .listen_fd = -1, .creds_fd = -1 };
        int rc = parse_args(argc, argv, &a);
        if (rc <= 0)
                return rc < 0 ? 2 : 0;
        char **names = NULL;
        int nlisten = sd_listen_fds_with_names(1, &names);
        sanitize_fds(nlisten);
        if (harden_process() < 0 || sodium_init() < 0)
                return die("cannot harden the process or initialize libsodium");
        d.self_uid = geteuid();
        if (load_config(&d, &a) || load_policy(&d) || prepare_state_dir(&d) || open_store(&d) ||
            make_listener(&d, nlisten, names) || open_leases(&d))
                return 1;
        unseal_from_credential(&d);
        if ((rc = drop_capabilities()) < 0)
                return die("cannot drop capabilities: %s", strerror(-rc));
        rc = run(&d);
        lease_mgr_free(d.leases);
        tokens_free(d.tokens);
        free(d.login);
        seal_free(&d.seal);
        budget_free(d.budget);
        audit_close(d.audit);
        store_close(d.store);
        policy_free(d.policy);
        if (nlisten <= 0 && d.listen_fd >= 0)
                unlink(d.cfg.socket);
        if (nlisten <= 0 && d.creds_fd >= 0)
                unlink(d.creds_path);
        free(d.creds_map);
        for (int i = 0; names && i < (nlisten > 0 ? nlisten : 0); i++)
                free(names[i]);
        free(names);
        return rc;
}
