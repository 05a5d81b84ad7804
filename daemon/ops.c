/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "budget.h"
#include "engines.h"
#include "ops.h"
#include "proto.h"
#include "token.h"
#include "util.h"
#include "worker.h"

enum {
        NEED_INIT = 1 << 0,     /* store must be initialized */
        NEED_UNSEALED = 1 << 1, /* ... and unsealed */
        AUTH_FIXED = 1 << 2,    /* authorized on the table's fixed object before the handler runs;
                                 * secret operations authorize on their name once it is decoded */
        WRITES = 1 << 3,        /* changes the store: runs in a transaction with its audit record */
        TAKES_FD = 1 << 4,      /* may carry a file descriptor */
        RELAXED = 1 << 5,       /* WRITES that only create leases: losing them to a power cut fails safe
                                 * (the credential stops working), so they commit without fsync */
};

struct op {
        uint16_t code;
        unsigned flags;
        enum pol_action action;
        const char *object;
        int (*handler)(struct request *r);
};

static int fail(struct request *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct request *r, int code, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err, sizeof(r->err), fmt, ap);
        va_end(ap);
        return code;
}

int ops_fail(struct request *r, int code, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err, sizeof(r->err), fmt, ap);
        va_end(ap);
        return code;
}

static void set_object(struct request *r, const char *kind, const char *name) {
        if (name)
                snprintf(r->object, sizeof(r->object), "%s:%s", kind, name);
        else
                strcpy_bounded(r->object, sizeof(r->object), kind);
}

/* ---- authorization: policy, plus the daemon's own uid ---- */

static int minute_of_day(void) {
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        return tm.tm_hour * 60 + tm.tm_min;
}

/* In another namespace exe and unit are what its owner made them (a user
 * can mount their own program over any path; a container's root names its
 * units): they prove nothing unless the admin says they do. */
bool ops_foreign_distrusted(const struct request *r) {
        return r->peer->foreign_ns && !r->d->cfg.allow_foreign_namespaces;
}

static void subject_of(const struct request *r, struct pol_subject *s) {
        const struct peer *p = r->peer;
        *s = (struct pol_subject){
                .uid = p->uid,
                .gid = p->gid,
                .groups = p->groups,
                .ngroups = p->ngroups,
                .exe = p->exe,
                .unit = p->unit,
                .exe_unverified = !p->exe_verified || ops_foreign_distrusted(r),
                .unit_unverified = ops_foreign_distrusted(r),
                .minute_of_day = minute_of_day(),
        };
}

/* Inside an open coffer login session: the kernel audit session id of the
 * process is one a session lease of this uid was opened for. */
static bool in_session(struct request *r) {
        return lease_session_of(r->d->leases, r->peer->audit_session, r->peer->uid, now_unix()) != NULL;
}

/* Evaluate for the caller; 1 = allowed, 0 = denied, -ESRCH = the process
 * changed under a rule that depends on exe or unit. */
static int decide(struct request *r, enum pol_action a, const char *object, struct pol_decision *dec) {
        struct pol_subject s;
        if (r->peer->uid == r->d->self_uid) {
                /* The daemon's operator can never be locked out by a policy. */
                *dec = (struct pol_decision){ .allow = true, .rule = "builtin:daemon-uid" };
                return 1;
        }
        subject_of(r, &s);
        s.in_login_session = in_session(r);
        int rc = policy_eval(r->d->policy, &s, a, object, dec);
        if (rc < 0)
                return rc;
        /* exe and unit can change by exec after connect: check again now. */
        if (dec->allow && (dec->depends_on_exe || dec->depends_on_unit) && peer_recheck(r->peer) < 0)
                return -ESRCH;
        return dec->allow ? 1 : 0;
}

int ops_decide(struct request *r, enum pol_action a, const char *object, struct pol_decision *dec) {
        return decide(r, a, object, dec);
}

int ops_decide_user_as(struct request *r, uid_t uid, gid_t gid, const char *user, const char *unit, const char *exe,
                       bool in_login_session, enum pol_action a, const char *object, struct pol_decision *dec) {
        gid_t groups[PEER_GROUPS_MAX];
        int n = PEER_GROUPS_MAX;
        if (getgrouplist(user, gid, groups, &n) < 0)
                n = 0;
        struct pol_subject s = { .uid = uid, .gid = gid, .groups = groups, .ngroups = (size_t) n, .exe = exe,
                                 .unit = unit, .in_login_session = in_login_session,
                                 .minute_of_day = minute_of_day() };
        int rc = policy_eval(r->d->policy, &s, a, object, dec);
        return rc < 0 ? rc : dec->allow ? 1 : 0;
}

int ops_decide_user(struct request *r, uid_t uid, gid_t gid, const char *user, enum pol_action a,
                    const char *object, struct pol_decision *dec) {
        return ops_decide_user_as(r, uid, gid, user, "", "", true, a, object, dec);
}

bool ops_is_admin(struct request *r, const char *object) {
        struct pol_decision dec = { 0 };
        return decide(r, POL_ADMIN, object, &dec) > 0;
}

/* Why exe: / unit: rules did not match, when they might have. */
static const char *unproven_hint(const struct request *r, const struct pol_decision *dec) {
        if (dec->file || (!dec->depends_on_exe && !dec->depends_on_unit))
                return "";
        if (ops_foreign_distrusted(r))
                return " (your process runs in another user namespace than the host's, where exe: and unit: "
                       "rules do not match; run it outside that namespace, or ask the admin about "
                       "allow_foreign_namespaces in cofferd(8))";
        if (dec->depends_on_exe && !r->peer->exe_verified)
                return " (exe: rules do not match your process: the file at its path, as cofferd sees it, is not the "
                       "one it runs)";
        return "";
}

int ops_authorize(struct request *r, enum pol_action a, const char *object, struct pol_decision *out) {
        struct pol_decision dec = { 0 };
        int rc = decide(r, a, object, &dec);
        if (out)
                *out = dec;
        if (dec.file)
                snprintf(r->rule_buf, sizeof(r->rule_buf), "%s:%u", dec.file, dec.line);
        else
                strcpy_bounded(r->rule_buf, sizeof(r->rule_buf), dec.rule ? dec.rule : "no-rule");
        r->rule = r->rule_buf;
        if (rc == -ESRCH)
                return fail(r, -ESRCH, "your process changed its executable or unit since it connected; reconnect");
        if (rc < 0)
                return fail(r, rc, "policy evaluation failed: %s", strerror(-rc));
        if (rc == 0)
                return fail(r, -EACCES, "permission denied: %s on %s is not allowed; run `coffer policy explain %s %s` "
                                        "to see why%s", pol_action_to_string(a), object, pol_action_to_string(a), object,
                            unproven_hint(r, &dec));
        return 0;
}

/* ---- operator ---- */

static int put_status(struct request *r) {
        const struct seal *s = &r->d->seal;
        const struct keyring_term *t = keyring_current(s->kr);
        wire_put_u64(r->out, T_INITIALIZED, s->initialized);
        wire_put_u64(r->out, T_SEALED, seal_is_sealed(s));
        wire_put_u64(r->out, T_PROGRESS, s->npending);
        wire_put_u64(r->out, T_THRESHOLD, s->threshold);
        wire_put_str(r->out, T_METHOD, s->method);
        wire_put_str(r->out, T_SERVER_VER, COFFER_VERSION);
        wire_put_u64(r->out, T_TERM, t ? t->term : 0);
        tokens_put_status(r->d, r->out);
        wire_put_u64(r->out, T_STORE_GEN, store_generation(r->d->store));
        wire_put_u64(r->out, T_ANCHOR_GEN, audit_generation(r->d->audit));
        return 0;
}

static int process_status(struct request *r) {
        set_object(r, "store", "status");
        return put_status(r);
}

static int start_unsealed_audit(struct request *r) {
        int rc = server_unsealed(r->d, NULL);
        return rc < 0 ? fail(r, rc, "cannot start the audit log's unsealed segment: %s", strerror(-rc)) : 0;
}

static int process_init(struct request *r) {
        struct req_seal q;
        const char *why = NULL;
        uint8_t *shares = NULL;
        int rc = proto_decode_init(r->msg, &q, &why);
        if (rc < 0)
                return fail(r, rc, "%s", why);
        if (r->d->seal.initialized)
                return fail(r, -EEXIST, "the store is already initialized; to unseal it run `coffer operator unseal`");
        rc = seal_init(&r->d->seal, r->d->store, &q, &shares);
        if (rc < 0)
                return fail(r, rc, "initializing the store failed: %s (%s)", strerror(-rc), store_errmsg(r->d->store));
        if (shares) {
                wire_put_bytes(r->out, T_SHARES, shares, q.shares * PROTO_SHARE_SIZE);
                sodium_free(shares);
        }
        rc = start_unsealed_audit(r);
        return rc < 0 ? rc : put_status(r);
}

/* ---- requests answered later ----
 * A handler whose work takes long (an unseal, an audit verify) keeps a copy
 * of its request in a struct pending and returns -EINPROGRESS; the work then
 * runs in slices on the loop (a timer due at once, so the slices take turns
 * with other clients: worker.h) or on the worker thread, and ends in
 * pending_answer: the audit record, then the reply, handed to the
 * connection layer through struct later. */
struct pending {
        struct later later;        /* where the reply goes (the connection layer's) */
        struct request r;          /* a copy: the connection's frame is gone */
        struct peer peer;          /* a copy, without the pidfd */
        struct wire_msg msg;       /* the header only */
        struct wire_writer out;
        sd_event_source *slice;    /* the slices, when they run on the loop */
        void (*free)(struct pending *p);
        struct pending *next;      /* in d->pending */
};

static void conclude(struct request *r, uint16_t code, int rc);

static void pending_begin(struct pending *p, struct request *r, void (*free_fn)(struct pending *p)) {
        p->peer = *r->peer;
        p->peer.pidfd = -1;
        p->msg.hdr = r->msg->hdr;
        p->r = *r;
        p->r.peer = &p->peer;
        p->r.msg = &p->msg;
        p->r.out = &p->out;
        p->r.fd = -1;
        if (r->rule == r->rule_buf)
                p->r.rule = p->r.rule_buf;
        p->free = free_fn;
        wire_writer_init(&p->out);
        wire_frame_begin(&p->out, p->msg.hdr.opcode | PROTO_REPLY_BIT, p->msg.hdr.request_id);
        p->next = r->d->pending;
        r->d->pending = p;
        r->later = &p->later;
}

/* Hand the reply over (NULL: none, the daemon stops) and free the job. */
static void pending_end(struct pending *p, bool answer) {
        struct pending **pp = &p->r.d->pending;
        while (*pp && *pp != p)
                pp = &(*pp)->next;
        if (*pp)
                *pp = p->next;
        if (p->later.ctx)
                p->later.deliver(p->later.ctx, answer ? &p->out : NULL);
        p->slice = sd_event_source_disable_unref(p->slice);
        wire_writer_free(&p->out);
        p->free(p);
}

static void pending_answer(struct pending *p, int rc) {
        conclude(&p->r, p->msg.hdr.opcode, rc);
        pending_end(p, true);
}

void ops_stop(struct cofferd *d) {
        /* A job on the worker thread ends with worker_free; the rest here. */
        struct pending **pp = &d->pending;
        while (*pp) {
                if ((*pp)->slice)
                        pending_end(*pp, false);
                else
                        pp = &(*pp)->next;
        }
}

/* An unseal runs its slow parts off the event loop: Argon2id on the worker
 * thread, then the MAC check of the stored leases in slices, taking turns
 * with other clients' requests. The store stays sealed until
 * both are done and the result is installed. */
#define UNSEAL_CHECK_SLICE 4096 /* lease rows a slice: a few ms */

struct unseal_job {
        struct pending p;          /* first: the request, answered when done */
        struct work w;
        struct seal_unwrap *u;
        struct lease_check check;
        unsigned seals;            /* seal.seals at the start */
        uint64_t started;          /* monotonic µs */
};

static void unseal_job_run(struct work *w) {
        struct unseal_job *j = (struct unseal_job *) ((char *) w - offsetof(struct unseal_job, w));
        seal_unwrap_run(j->u);
}

static int unseal_finish(struct request *r, struct seal_unwrap *u, const struct lease_check *check) {
        const char *why = NULL;
        bool was_sealed = seal_is_sealed(&r->d->seal);
        int rc = seal_unwrap_finish(&r->d->seal, r->d->store, u, &why);
        if (rc < 0)
                return why ? fail(r, rc, "%s", why) : fail(r, rc, "unseal failed: %s", strerror(-rc));
        if (was_sealed && !seal_is_sealed(&r->d->seal)) {
                rc = server_unsealed(r->d, check);
                if (rc < 0)
                        return fail(r, rc, "cannot start the audit log's unsealed segment: %s", strerror(-rc));
        }
        return put_status(r);
}

/* A deliberate restore: the store as it is becomes the anchored history. The
 * record of this request is the first to carry the store's generation. */
static int process_accept_rollback(struct request *r) {
        struct cofferd *d = r->d;
        unsigned long long have = store_generation(d->store), anchored = audit_generation(d->audit);
        if (!d->rollback_held)
                return fail(r, -EINVAL,
                            "there is no rollback to accept: the store (generation %llu) is not older than the "
                            "audit log's anchor (generation %llu)", have, anchored);
        d->rollback_held = false;
        store_hold_generation(d->store, false);
        snprintf(r->detail, sizeof(r->detail), "store generation %llu replaces anchored %llu", have, anchored);
        server_log("cofferd: store rollback accepted by uid %u: generation %llu replaces anchored %llu; unseal "
                   "is allowed again", (unsigned) r->peer->uid, have, anchored);
        wire_put_u64(r->out, T_STORE_GEN, have);
        wire_put_u64(r->out, T_ANCHOR_GEN, anchored);
        return 0;
}


static void unseal_job_free(struct pending *p) {
        struct unseal_job *j = (struct unseal_job *) p;
        if (p->r.d->unsealing == j)
                p->r.d->unsealing = NULL;
        seal_unwrap_free(j->u);
        lease_check_free(&j->check);
        free(j);
}

/* Audit the unseal's outcome and answer it. */
static void unseal_answer(struct unseal_job *j, int rc) {
        struct request *r = &j->p.r;
        if (rc == 0 && j->seals != r->d->seal.seals)
                rc = fail(r, -ECANCELED, "the store was sealed while this unseal ran; unseal again");
        if (rc == 0)
                rc = unseal_finish(r, j->u, seal_unwrap_master(j->u) ? &j->check : NULL);
        if (rc == 0 && !seal_is_sealed(&r->d->seal))
                server_log("cofferd: unsealed (%s) in %.0f ms", r->d->seal.method,
                           (double) (now_mono_usec() - j->started) / 1000.0);
        /* Done before its reply goes: a request pipelined behind it is not
         * refused as "already running". */
        r->d->unsealing = NULL;
        pending_answer(&j->p, rc);
}

static int on_unseal_check(sd_event_source *s, uint64_t usec, void *userdata) {
        struct unseal_job *j = userdata;
        struct request *r = &j->p.r;
        (void) usec;
        int rc = j->seals != r->d->seal.seals ? 0 : lease_check_step(&j->check, r->d->store, UNSEAL_CHECK_SLICE);
        if (rc > 0 && (rc = slice_again(s)) == 0)
                return 0; /* more next time round */
        if (rc < 0)
                rc = fail(r, rc, "checking the stored leases failed: %s (%s)", strerror(-rc),
                          store_errmsg(r->d->store));
        unseal_answer(j, rc);
        return 0;
}

static void unseal_job_done(struct work *w, bool cancelled) {
        struct unseal_job *j = (struct unseal_job *) ((char *) w - offsetof(struct unseal_job, w));
        struct request *r = &j->p.r;
        const uint8_t *master = seal_unwrap_master(j->u);
        if (cancelled) {
                pending_end(&j->p, false);
                return;
        }
        /* A wrong key, or sealed meanwhile: answer now. */
        if (!master || j->seals != r->d->seal.seals) {
                unseal_answer(j, 0);
                return;
        }
        int rc = lease_check_begin(&j->check, r->d->leases, master);
        if (rc == 0)
                rc = slice_start(r->d->event, &j->p.slice, on_unseal_check, j);
        if (rc < 0)
                unseal_answer(j, fail(r, rc, "cannot check the stored leases: %s", strerror(-rc)));
}

static int unseal_later(struct request *r, struct seal_unwrap *u) {
        struct unseal_job *j = calloc(1, sizeof(*j));
        if (!j) {
                seal_unwrap_free(u);
                return fail(r, -ENOMEM, "out of memory");
        }
        j->w = (struct work){ .run = unseal_job_run, .done = unseal_job_done };
        j->u = u;
        j->seals = r->d->seal.seals;
        j->started = now_mono_usec();
        int rc = worker_submit(r->d->worker, &j->w);
        if (rc < 0) {
                seal_unwrap_free(u);
                free(j);
                return fail(r, rc, "cannot start the unseal: %s", strerror(-rc));
        }
        pending_begin(&j->p, r, unseal_job_free);
        r->d->unsealing = j;
        server_log("cofferd: unseal (%s) started off the event loop: deriving the key, then checking the stored "
                   "leases; other requests are served meanwhile", r->d->seal.method);
        return -EINPROGRESS;
}

static int process_unseal(struct request *r) {
        struct req_seal q;
        const char *why = NULL;
        struct seal_unwrap *u = NULL;
        int rc = proto_decode_unseal(r->msg, &q, &why);
        if (rc < 0)
                return fail(r, rc, "%s", why);
        char held[512];
        if (server_rollback_refusal(r->d, held, sizeof(held)))
                return fail(r, -ESTALE, "%s", held);
        if (r->d->unsealing)
                return fail(r, -EBUSY, "an unseal is already running; wait for its answer and check `coffer status`");
        rc = seal_unwrap_begin(&r->d->seal, r->d->store, q.key, q.key_len, &u, &why);
        if (rc < 0)
                return why ? fail(r, rc, "%s", why) : fail(r, rc, "unseal failed: %s", strerror(-rc));
        if (!u)
                return put_status(r); /* a share taken, more needed; or unsealed already */
        if (r->d->worker)
                return unseal_later(r, u);
        /* No event loop (unit tests): all at once. */
        seal_unwrap_run(u);
        rc = unseal_finish(r, u, NULL);
        seal_unwrap_free(u);
        return rc;
}

static int process_seal(struct request *r) {
        bool was_unsealed = !seal_is_sealed(&r->d->seal);
        /* Sealed already, this still stops an unseal that is running from
         * taking effect, and drops Shamir shares submitted so far. */
        seal_seal(&r->d->seal);
        if (was_unsealed) {
                int rc = server_sealed(r->d);
                if (rc < 0)
                        return fail(r, rc, "sealed, but the audit log's sealed segment failed: %s", strerror(-rc));
        }
        return put_status(r);
}

static int process_rotate(struct request *r) {
        uint32_t term;
        int rc = seal_rotate(&r->d->seal, r->d->store, &term);
        if (rc < 0)
                return fail(r, rc, "rotation failed: %s (%s)", strerror(-rc), store_errmsg(r->d->store));
        r->version = term;
        return put_status(r);
}

/* ---- secrets ---- */

/* A revocation is not taken back with a rolled-back transaction: it is in
 * force in memory (and a session's directory is gone), and a restart must
 * not bring the lease back. Written again on its own, failing safe. */
static void redo_revocations(struct request *r) {
        if (!lease_revoked_since_mark(r->d->leases))
                return;
        int rc = store_begin(r->d->store);
        int n = rc < 0 ? rc : lease_redo_revocations(r->d->leases);
        if (rc == 0)
                rc = n < 0 ? (store_rollback(r->d->store), n) : store_commit(r->d->store);
        if (rc < 0)
                server_log("cofferd: REVOCATIONS NOT SAVED after a failed request: %s; they hold until cofferd "
                           "restarts, when the leases come back: revoke them again once the store is writable",
                           strerror(-rc));
        else if (n > 0)
                server_log("cofferd: %d revocation(s) of a request that failed (%s) were kept and saved; the audit "
                           "log may not have them", n, r->err[0] ? r->err : "audit log");
}

int ops_cap_fail(struct request *r, uint32_t uid, const char *who) {
        unsigned live = lease_count_owner(r->d->leases, uid), kept = lease_count_owner_kept(r->d->leases, uid);
        const char *s = strcmp(who, "you") == 0 ? "" : "s";
        if (live >= r->d->cfg.max_leases_per_uid)
                return ops_fail(r, -EDQUOT,
                                "%s already hold%s %u live leases (max_leases_per_uid); end sessions, revoke tokens "
                                "or grants, or wait for some to expire",
                                who, s, live);
        return ops_fail(r, -EDQUOT,
                        "%s already hold%s %u revoked tokens or grants, kept until they would have expired "
                        "(max_leases_per_uid counts them apart from the %u live ones); wait for some to expire",
                        who, s, kept, live);
}

int ops_store_fail(struct request *r, int rc, const char *what) {
        switch (rc) {
        case -ENOENT:
                return fail(r, rc, "%s: %s", r->object, store_errmsg(r->d->store));
        case -EBADMSG:
                return fail(r, rc, "%s: integrity check failed: the stored value was altered or moved; "
                                   "restore the store from a backup", r->object);
        case -ESTALE:
                return fail(r, rc, "%s: check-and-set failed: the current version is not the one given; "
                                   "read it again and retry", r->object);
        case -ENOSPC:
                return fail(r, rc, "%s failed: the state directory's disk is full; free space and retry "
                                   "(nothing was written)", what);
        case -EROFS:
                return fail(r, rc, "%s failed: the state directory is read-only; nothing was written", what);
        default:
                return fail(r, rc, "%s failed: %s (%s)", what, strerror(-rc), store_errmsg(r->d->store));
        }
}

static int decode_secret(struct request *r, struct req_secret *q) {
        const char *why = NULL;
        int rc = proto_decode_secret(r->msg, q, &why);
        if (rc < 0)
                return fail(r, rc, "%s", why);
        set_object(r, "secret", q->name);
        return ops_authorize(r, r->action, r->object, NULL);
}

static int process_put(struct request *r) {
        struct req_secret q;
        int rc = decode_secret(r, &q);
        if (rc < 0)
                return rc;
        if (!q.value)
                return fail(r, -EINVAL, "no value given");
        rc = store_secret_put(r->d->store, r->d->seal.kr, q.name, q.value, q.value_len, q.has_cas, q.cas,
                              q.max_versions, now_unix(), &r->version);
        if (rc < 0)
                return ops_store_fail(r, rc, "write");
        wire_put_u64(r->out, T_VERSION, r->version);
        return 0;
}

static int process_get(struct request *r) {
        struct req_secret q;
        _cleanup_secbuf_ struct secbuf v = { 0 };
        int rc = decode_secret(r, &q);
        if (rc < 0)
                return rc;
        rc = store_secret_get(r->d->store, r->d->seal.kr, q.name, q.version, &v.p, &v.len, &r->version);
        if (rc < 0)
                return ops_store_fail(r, rc, "read");
        wire_put_u64(r->out, T_VERSION, r->version);
        wire_put_bytes(r->out, T_VALUE, v.p, v.len);
        return 0;
}

static int process_list(struct request *r) {
        struct req_list q;
        const char *why = NULL;
        char **names = NULL;
        size_t n = 0;
        int rc = proto_decode_list(r->msg, &q, &why);
        if (rc < 0)
                return fail(r, rc, "%s", why);
        set_object(r, "secret", q.prefix[0] ? q.prefix : "*");
        rc = store_secret_list(r->d->store, q.prefix, &names, &n);
        if (rc < 0)
                return ops_store_fail(r, rc, "list");
        struct wire_writer w;
        struct pol_decision dec;
        char object[PROTO_NAME_MAX + 16];
        wire_writer_init(&w);
        /* Only the names the caller may list: the others are not revealed. */
        for (size_t i = 0; i < n; i++) {
                snprintf(object, sizeof(object), "secret:%s", names[i]);
                if (decide(r, POL_LIST, object, &dec) > 0)
                        wire_write_lbytes(&w, names[i], strlen(names[i]));
        }
        r->rule = "filtered";
        wire_put_bytes(r->out, T_NAMES, w.p, w.len);
        rc = w.error ? fail(r, -E2BIG, "the list is too long for one reply; give a longer prefix") : 0;
        wire_writer_free(&w);
        store_strv_free(names, n);
        return rc;
}

static int process_versions(struct request *r) {
        struct req_secret q;
        struct proto_version *v = NULL;
        size_t n = 0;
        int rc = decode_secret(r, &q);
        if (rc < 0)
                return rc;
        rc = store_secret_versions(r->d->store, q.name, &v, &n);
        if (rc < 0)
                return ops_store_fail(r, rc, "versions");
        struct wire_writer w;
        wire_writer_init(&w);
        for (size_t i = 0; i < n; i++)
                proto_version_write(&w, &v[i]);
        wire_put_bytes(r->out, T_VERSIONS, w.p, w.len);
        wire_writer_free(&w);
        free(v);
        return 0;
}

static int process_delete(struct request *r) {
        struct req_secret q;
        int rc = decode_secret(r, &q);
        if (rc < 0)
                return rc;
        rc = store_secret_delete(r->d->store, q.name, q.version, now_unix(), &r->version);
        if (rc < 0)
                return ops_store_fail(r, rc, "delete");
        wire_put_u64(r->out, T_VERSION, r->version);
        return 0;
}

static int need_version(struct request *r, struct req_secret *q) {
        int rc = decode_secret(r, q);
        if (rc == 0 && q->version == 0)
                rc = fail(r, -EINVAL, "give the version (--version N); see `coffer versions %s`", q->name);
        r->version = q->version;
        return rc;
}

static int process_undelete(struct request *r) {
        struct req_secret q;
        int rc = need_version(r, &q);
        if (rc == 0 && (rc = store_secret_undelete(r->d->store, q.name, q.version)) < 0)
                return ops_store_fail(r, rc, "undelete");
        return rc;
}

static int process_destroy(struct request *r) {
        struct req_secret q;
        int rc = need_version(r, &q);
        if (rc == 0 && (rc = store_secret_destroy(r->d->store, q.name, q.version)) < 0)
                return ops_store_fail(r, rc, "destroy");
        return rc;
}

/* ---- identity, audit ---- */

static int process_whoami(struct request *r) {
        const struct peer *p = r->peer;
        struct wire_writer g;
        char file[PEER_EXE_FILE_MAX];
        set_object(r, "identity", "self");
        wire_writer_init(&g);
        for (uint32_t i = 0; i < p->ngroups; i++)
                wire_write_u32(&g, p->groups[i]);
        wire_put_u64(r->out, T_UID, p->uid);
        wire_put_u64(r->out, T_GID, p->gid);
        wire_put_bytes(r->out, T_GROUPS, g.p, g.len);
        wire_put_u64(r->out, T_PID, (uint64_t) p->pid);
        wire_put_str(r->out, T_USER, p->user);
        wire_put_str(r->out, T_EXE, p->exe);
        wire_put_str(r->out, T_UNIT, p->unit);
        wire_put_str(r->out, T_EXE_FILE, peer_exe_file(p, file, sizeof(file)));
        wire_put_u64(r->out, T_EXE_VERIFIED, p->exe_verified);
        wire_put_u64(r->out, T_FOREIGN_NS, p->foreign_ns);
        wire_put_u64(r->out, T_AUDIT_SESSION, p->audit_session);
        wire_put_str(r->out, T_LOGIN_SESSION, p->login_session);
        wire_put_str(r->out, T_PIDFD_KIND, p->pin == PEER_PIN_PEERPIDFD ? "SO_PEERPIDFD" : "pidfd_open");
        wire_writer_free(&g);
        return 0;
}

/* A verification in slices (server.c runs them between other requests):
 * what its reply and audit record need once it is done. */
#define VERIFY_SLICE (1u << 20) /* bytes per slice: a millisecond or two */

struct verify_job {
        struct pending p;          /* first: the request, answered when done */
        unsigned seals;            /* seal.seals at the start: a seal ends it (it holds audit keys) */
        int fd;
        struct audit_verify *av;
        bool is_live;
        uint64_t head_seq;         /* the live log's chain head when it began */
        uint8_t head_mac[32];
};

static void verify_job_free(struct pending *p) {
        struct verify_job *v = (struct verify_job *) p;
        audit_verify_free(v->av);
        if (v->fd >= 0)
                close(v->fd);
        free(v);
}

static int verify_result(struct request *r, struct verify_job *v, int rc, struct audit_report *rep);

static int on_verify_slice(sd_event_source *s, uint64_t usec, void *userdata) {
        struct verify_job *v = userdata;
        struct audit_report rep = { 0 };
        (void) usec;
        /* Nobody waits for it any more: stop, on the record. */
        int rc = !v->p.later.ctx ? -ECONNABORTED
                 : v->seals != v->p.r.d->seal.seals ? -ECANCELED
                                                     : audit_verify_step(v->av, VERIFY_SLICE);
        if (rc > 0 && (rc = slice_again(s)) == 0)
                return 0;
        if (rc == 0)
                rc = audit_verify_end(v->av, &rep);
        else
                audit_verify_free(v->av);
        v->av = NULL;
        if (rc == -ECONNABORTED)
                rc = fail(&v->p.r, rc, "the client went away before the verification ended");
        else if (rc == -ECANCELED)
                rc = fail(&v->p.r, rc, "the store was sealed during the verification (its keys are wiped); unseal "
                                       "and verify again");
        else
                rc = verify_result(&v->p.r, v, rc, &rep);
        pending_answer(&v->p, rc);
        return 0;
}


/* Only a regular file has an end: a pipe, a socket or /dev/zero would hold
 * the loop forever. */
static int verify_check_file(struct request *r, int fd, struct stat *st) {
        uint64_t max = (uint64_t) r->d->cfg.audit_verify_max_mb << 20;
        if (fstat(fd, st) < 0)
                return fail(r, -errno, "cannot stat the audit log to verify: %s", strerror(errno));
        if (!S_ISREG(st->st_mode))
                return fail(r, -EINVAL, "the audit log to verify is not a regular file (a pipe, socket or device); "
                                        "pass a copy of the log as a file");
        if ((uint64_t) st->st_size > max)
                return fail(r, -EFBIG, "the audit log to verify is %llu MiB, more than audit_verify_max_mb (%u) "
                                       "allows; verify it with a larger limit set in cofferd.conf",
                            (unsigned long long) (st->st_size >> 20), r->d->cfg.audit_verify_max_mb);
        return 0;
}

static int verify_open(struct request *r) {
        bool passed = r->fd >= 0;
        int fd = passed ? fcntl(r->fd, F_DUPFD_CLOEXEC, 3) : open(r->d->audit_path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return fail(r, -errno, "cannot open the audit log %s: %s", passed ? "passed" : r->d->audit_path,
                            strerror(errno));
        return fd;
}

static int process_audit_verify(struct request *r) {
        const struct keyring *kr = r->d->seal.kr;
        struct stat st, live;
        _cleanup_close_ int fd = verify_open(r);
        if (fd < 0)
                return fd;
        int rc = verify_check_file(r, fd, &st);
        if (rc < 0)
                return rc;

        struct verify_job *v = calloc(1, sizeof(*v));
        if (!v)
                return fail(r, -ENOMEM, "out of memory");
        v->fd = -1;
        v->seals = r->d->seal.seals;
        /* The live log grows while it is verified: up to its size now, and
         * against the chain head that goes with that size. */
        v->is_live = stat(r->d->audit_path, &live) == 0 && st.st_dev == live.st_dev && st.st_ino == live.st_ino;
        audit_head(r->d->audit, &v->head_seq, v->head_mac);
        rc = audit_verify_begin(&v->av, fd, (uint64_t) st.st_size, kr->audit_mac_key, kr->audit_box_pk,
                                kr->audit_box_sk);
        if (rc == 0)
                rc = slice_start(r->d->event, &v->p.slice, on_verify_slice, v);
        if (rc < 0) {
                v->p.slice = sd_event_source_disable_unref(v->p.slice);
                verify_job_free(&v->p);
                return fail(r, rc, "cannot verify the audit log: %s", strerror(-rc));
        }
        v->fd = fd;
        fd = -1; /* the slices own it now */
        pending_begin(&v->p, r, verify_job_free);
        return -EINPROGRESS;
}

static int verify_result(struct request *r, struct verify_job *v, int rc, struct audit_report *rep) {
        bool moved = rep->last_seq != v->head_seq || sodium_memcmp(rep->last_mac, v->head_mac, 32) != 0;
        if (rc == 0 && v->is_live && moved) {
                rc = -EBADMSG;
                rep->bad_line = rep->records + 1;
                snprintf(rep->reason, sizeof(rep->reason),
                         "the log ends at record %llu but the daemon has written %llu (truncated?)",
                         (unsigned long long) rep->last_seq, (unsigned long long) v->head_seq);
        }
        if (rc < 0 && rc != -EBADMSG)
                return fail(r, rc, "reading the audit log failed: %s", strerror(-rc));
        wire_put_u64(r->out, T_RECORDS, rep->records);
        wire_put_u64(r->out, T_SEGMENTS, rep->segments);
        wire_put_u64(r->out, T_BAD_LINE, rep->bad_line);
        wire_put_str(r->out, T_ERR_MSG, rep->reason);
        return 0;
}

/* ---- policy ---- */

static int process_policy_reload(struct request *r) {
        char err[512] = "";
        int rc = server_load_policy(r->d, false, err, sizeof(err));
        if (rc < 0) {
                /* A refused policy is a bad argument, whatever the cause. */
                fail(r, -EINVAL, "the new policy was rejected, the old one stays in force: %s", err);
                return -EINVAL;
        }
        wire_put_u64(r->out, T_COUNT, (uint64_t) rc);
        return 0;
}

static int add_named_groups(struct request *r, const struct req_explain *q, gid_t *groups, int *n, int max) {
        struct wire_reader rd;
        char buf[4096], name[256];
        wire_reader_init(&rd, q->groups, q->groups_len);
        while (wire_reader_left(&rd) > 0 && *n < max) {
                const uint8_t *p;
                size_t len;
                struct group gr, *grr = NULL;
                if (!wire_read_lbytes(&rd, &p, &len, sizeof(name) - 1))
                        return fail(r, -EINVAL, "malformed group list");
                memcpy(name, p, len);
                name[len] = 0;
                if (getgrnam_r(name, &gr, buf, sizeof(buf), &grr) != 0 || !grr)
                        return fail(r, -EINVAL, "unknown group '%s'", name);
                groups[(*n)++] = grr->gr_gid;
        }
        return 0;
}

/* The subject an admin asks about: a user (with their groups), a uid, extra
 * groups, a unit, an exe, a login session. */
static int explain_subject(struct request *r, const struct req_explain *q, struct pol_subject *s, gid_t *groups,
                           int max) {
        struct passwd pw, *pwr = NULL;
        char buf[4096];
        int n = 0;
        *s = (struct pol_subject){ .uid = (uid_t) -1, .gid = (gid_t) -1, .exe = q->exe, .unit = q->unit,
                                   .in_login_session = q->session, .minute_of_day = minute_of_day() };
        if (q->user[0]) {
                if (getpwnam_r(q->user, &pw, buf, sizeof(buf), &pwr) != 0 || !pwr)
                        return fail(r, -EINVAL, "unknown user '%s'", q->user);
                s->uid = pwr->pw_uid;
                s->gid = pwr->pw_gid;
                n = max;
                if (getgrouplist(pwr->pw_name, pwr->pw_gid, groups, &n) < 0)
                        n = 0;
        }
        if (q->has_uid)
                s->uid = (uid_t) q->uid;
        int rc = add_named_groups(r, q, groups, &n, max);
        s->groups = groups;
        s->ngroups = (size_t) n;
        return rc;
}

static int process_policy_explain(struct request *r) {
        struct req_explain q;
        struct pol_decision dec = { 0 };
        struct pol_subject s;
        enum pol_action a;
        const char *why = NULL;
        gid_t groups[PEER_GROUPS_MAX];
        int rc = proto_decode_explain(r->msg, &q, &why);
        if (rc < 0)
                return fail(r, rc, "%s", why);
        if (pol_action_from_string(q.action, &a) < 0)
                return fail(r, -EINVAL, "unknown action '%s': use read, list, write, delete, issue, delegate or admin",
                            q.action);
        set_object(r, "policy:explain", NULL);
        if (!q.has_subject) {
                /* For the caller, as the daemon sees them. */
                rc = decide(r, a, q.object, &dec);
                if (rc < 0 && rc != -ESRCH)
                        return fail(r, rc, "policy evaluation failed: %s", strerror(-rc));
        } else {
                /* Asking about others reveals policy: that is for admins. */
                rc = ops_authorize(r, POL_ADMIN, "policy:explain", NULL);
                if (rc == 0)
                        rc = explain_subject(r, &q, &s, groups, PEER_GROUPS_MAX);
                if (rc == 0)
                        rc = policy_eval(r->d->policy, &s, a, q.object, &dec);
                if (rc < 0)
                        return r->err[0] ? rc : fail(r, rc, "policy evaluation failed: %s", strerror(-rc));
        }
        wire_put_u64(r->out, T_ALLOW, dec.allow);
        wire_put_str(r->out, T_RULE, dec.rule ? dec.rule : "");
        wire_put_str(r->out, T_FILE, dec.file ? dec.file : "");
        wire_put_u64(r->out, T_LINE, dec.line);
        return 0;
}

static const struct op ops[] = {
        { OP_STATUS, 0, 0, NULL, process_status },
        { OP_WHOAMI, 0, 0, NULL, process_whoami },
        { OP_POLICY_EXPLAIN, 0, 0, NULL, process_policy_explain },
        { OP_INIT, AUTH_FIXED, POL_ADMIN, "store:init", process_init },
        { OP_UNSEAL, NEED_INIT | AUTH_FIXED, POL_ADMIN, "store:unseal", process_unseal },
        { OP_SEAL, NEED_INIT | AUTH_FIXED, POL_ADMIN, "store:seal", process_seal },
        { OP_ACCEPT_ROLLBACK, NEED_INIT | AUTH_FIXED, POL_ADMIN, "store:accept-rollback", process_accept_rollback },
        { OP_ROTATE, NEED_UNSEALED | AUTH_FIXED | WRITES, POL_ADMIN, "store:rotate", process_rotate },
        { OP_POLICY_RELOAD, AUTH_FIXED, POL_ADMIN, "policy:reload", process_policy_reload },
        { OP_AUDIT_VERIFY, NEED_UNSEALED | AUTH_FIXED | TAKES_FD, POL_ADMIN, "audit:verify", process_audit_verify },
        { OP_PUT, NEED_UNSEALED | WRITES, POL_WRITE, NULL, process_put },
        { OP_GET, NEED_UNSEALED, POL_READ, NULL, process_get },
        { OP_VERSIONS, NEED_UNSEALED, POL_READ, NULL, process_versions },
        { OP_LIST, NEED_UNSEALED, POL_LIST, NULL, process_list },
        { OP_DELETE, NEED_UNSEALED | WRITES, POL_DELETE, NULL, process_delete },
        { OP_UNDELETE, NEED_UNSEALED | WRITES, POL_DELETE, NULL, process_undelete },
        { OP_DESTROY, NEED_UNSEALED | WRITES, POL_DELETE, NULL, process_destroy },
        /* Leases and engines (session.c, token.c): they authorize themselves. */
        { OP_LEASE_LIST, NEED_UNSEALED, 0, NULL, process_lease_list },
        { OP_LEASE_RENEW, NEED_UNSEALED | WRITES, 0, NULL, process_lease_renew },
        { OP_LEASE_REVOKE, NEED_UNSEALED | WRITES, 0, NULL, process_lease_revoke },
        { OP_SESSION_OPEN, NEED_UNSEALED | WRITES | RELAXED, 0, NULL, process_session_open },
        { OP_SESSION_CLOSE, NEED_UNSEALED | WRITES, 0, NULL, process_session_close },
        { OP_TOKEN_ISSUE, NEED_UNSEALED | WRITES | RELAXED, POL_ISSUE, NULL, process_token_issue },
        { OP_TOKEN_VERIFY, NEED_UNSEALED, 0, NULL, process_token_verify },
        { OP_TOKEN_JWKS, NEED_UNSEALED, 0, NULL, process_token_jwks },
        { OP_TOKEN_ROTATE, NEED_UNSEALED | AUTH_FIXED | WRITES, POL_ADMIN, "store:token-rotate",
          process_token_rotate },
        { OP_KEY_DERIVE, NEED_UNSEALED, POL_ISSUE, NULL, process_key_derive },
        { OP_GRANT_CREATE, NEED_UNSEALED | WRITES | RELAXED, POL_DELEGATE, NULL, process_grant_create },
        { OP_GRANT_REDEEM, NEED_UNSEALED | WRITES, POL_READ, NULL, process_grant_redeem },
        { OP_GRANT_REVOKE, NEED_UNSEALED | WRITES, 0, NULL, process_grant_revoke },
};

static const struct op *op_find(uint16_t code) {
        for (size_t i = 0; i < ELEMENTSOF(ops); i++)
                if (ops[i].code == code)
                        return &ops[i];
        return NULL;
}

static int gate(struct request *r, const struct op *o) {
        const struct seal *s = &r->d->seal;
        r->action = o->action;
        if (r->peer_rc < 0)
                return fail(r, -ESRCH, "the calling process could not be identified (it exited or was replaced "
                                       "while connecting); retry from a running process");
        if (o->flags & AUTH_FIXED) {
                set_object(r, o->object, NULL);
                int rc = ops_authorize(r, o->action, o->object, NULL);
                if (rc < 0)
                        return rc;
        }
        if ((o->flags & (NEED_INIT | NEED_UNSEALED)) && !s->initialized)
                return fail(r, -ENODATA, "the store is not initialized: run `coffer operator init`");
        if ((o->flags & NEED_UNSEALED) && seal_is_sealed(s))
                return fail(r, -ENOKEY, "sealed: run `coffer operator unseal`");
        return 0;
}

void ops_error_frame(struct wire_writer *w, uint32_t id, int code, const char *msg) {
        wire_writer_reset(w);
        wire_frame_begin(w, OP_ERROR, id);
        wire_put_u64(w, T_ERR_CODE, (uint64_t) (code < 0 ? -code : code));
        wire_put_str(w, T_ERR_MSG, msg && *msg ? msg : strerror(code < 0 ? -code : code));
        wire_frame_end(w);
}

/* The reply: the handler's frame, or the error; arc is its audit record's
 * result, and no reply goes out without that record. */
static void finish_reply(struct request *r, uint32_t id, int rc, int arc) {
        if (arc < 0) {
                rc = arc;
                snprintf(r->err, sizeof(r->err), "the audit log cannot be written (%s); request refused",
                         strerror(-arc));
        }
        if (rc < 0)
                ops_error_frame(r->out, id, rc, r->err);
        else if (wire_frame_end(r->out) < 0)
                ops_error_frame(r->out, id, -E2BIG, "reply too large");
}

static int audit_request(struct request *r, uint16_t code, int rc) {
        struct audit_event ev = {
                .op = proto_op_name(code),
                .object = r->object[0] ? r->object : NULL,
                .decision = rc == -EACCES || r->denied ? "deny" : "allow",
                .rule = r->rule,
                .result = rc,
                .version = r->version,
                .peer = r->peer,
                .lease = r->lease[0] ? r->lease : NULL,
                .detail = r->detail[0] ? r->detail : NULL,
        };
        server_anchor(r->d, r->in_tx && rc == 0);
        return audit_record(r->d->audit, &ev);
}

/* Root (pam_coffer) and the daemon's own uid are never refused for it. */
/* Charged to the principal the connection is counted for: a user's
 * subordinate uids share the user's budget. */
static int take_budget(struct cofferd *d, const struct peer *p, char *why, size_t whysz) {
        bool exempt = p->uid == 0 || p->uid == d->self_uid;
        uint64_t key = p->principal ? p->principal : p->uid;
        return budget_take(d->budget, &d->cfg, d->audit, key, exempt, now_mono_usec(), why, whysz);
}

int ops_audit_refused(struct cofferd *d, const struct peer *peer, uint16_t opcode, int code) {
        char why[256];
        if (take_budget(d, peer, why, sizeof(why)) < 0)
                return 0; /* counted for the uid's summary record */
        struct audit_event ev = {
                .op = "protocol-error",
                .object = proto_op_name(opcode),
                .decision = "deny",
                .rule = "protocol",
                .result = code,
                .peer = peer,
        };
        return audit_record(d->audit, &ev);
}

static int run(struct request *r, const struct op *o) {
        int rc = gate(r, o);
        if (rc < 0)
                return rc;
        if (!(o->flags & WRITES))
                return o->handler(r);
        rc = (o->flags & RELAXED) ? store_begin_relaxed(r->d->store) : store_begin(r->d->store);
        if (rc < 0)
                return ops_store_fail(r, rc, "write");
        r->in_tx = true;
        lease_mark(r->d->leases);
        return o->handler(r);
}

int ops_dispatch(struct request *r) {
        uint16_t code = r->msg->hdr.opcode;
        const struct op *o = op_find(code);
        int rc;
        wire_writer_reset(r->out);
        wire_frame_begin(r->out, code | PROTO_REPLY_BIT, r->msg->hdr.request_id);
        /* Over its audit budget: refused before it does or records anything. */
        if ((rc = take_budget(r->d, r->peer, r->err, sizeof(r->err))) < 0) {
                ops_error_frame(r->out, r->msg->hdr.request_id, rc, r->err);
                return 0;
        }
        if (!o)
                rc = fail(r, -EOPNOTSUPP, "unknown opcode %u: this daemon (coffer %s) speaks protocol %u",
                          (unsigned) code, COFFER_VERSION, WIRE_VERSION);
        else if (r->fd >= 0 && !(o->flags & TAKES_FD))
                rc = fail(r, -EBADF, "%s takes no file descriptor", proto_op_name(code));
        else
                rc = run(r, o);
        if (rc == -EINPROGRESS && r->later)
                return 1; /* audited and answered when the work is done */
        conclude(r, code, rc);
        return 0;
}

/* Audit, commit or roll back, and finish the reply frame in r->out. */
static void conclude(struct request *r, uint16_t code, int rc) {
        /* The record comes before the reply; a write is committed only once
         * its record is written. */
        int arc = audit_request(r, code, rc);
        if (r->in_tx && (arc < 0 || rc < 0)) {
                store_rollback(r->d->store);
                redo_revocations(r);
                /* Leases made in memory went with the rows: revoke them. */
                lease_undo(r->d->leases, now_unix());
        } else if (r->in_tx && (rc = store_commit(r->d->store)) < 0) {
                redo_revocations(r);
                lease_undo(r->d->leases, now_unix());
                ops_store_fail(r, rc, "commit");
                r->rule = "commit-failed";
                arc = audit_request(r, code, rc);
        }
        r->in_tx = false;
        lease_unmark(r->d->leases);
        server_leases_changed(r->d);
        finish_reply(r, r->msg->hdr.request_id, rc, arc);
}

