/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Connections. Each one reads into its own buffer, answers the complete
 * frames in it, and writes replies without blocking. Limits keep one client
 * from starving the others: a frame's size is capped before allocation,
 * connections are capped in total (the last ones kept for root) and per
 * principal (a uid with its subordinate uids and user namespaces), so are the
 * buffers a principal pins, a connection that has not completed a frame
 * within idle_timeout is closed (slow senders included), and a connection
 * whose replies pile up unread stops being read and run until they drain.
 * Every request that runs gets its reply, EOF from the client included.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "budget.h"
#include "creds.h"
#include "loginmap.h"
#include "ops.h"
#include "peer.h"
#include "server.h"
#include "session.h"
#include "token.h"
#include "util.h"
#include "worker.h"

#define READ_CHUNK 65536u
/* A connection's requests wait while this much of its output is unsent; the
 * buffer holds one largest reply beyond it, so no executed request loses its
 * reply. */
#define OUT_HIGH_WATER (256u * 1024u)
#define OUT_LIMIT (OUT_HIGH_WATER + WIRE_HEADER_SIZE + WIRE_BODY_MAX)
#define ACCEPT_BATCH 64

struct conn {
        struct cofferd *d;
        int fd;
        sd_event_source *src;
        struct peer peer;
        int peer_rc;
        uint8_t *in;          /* received, not yet consumed */
        size_t in_len, in_cap;
        int in_fd;            /* fd received with SCM_RIGHTS, -1 if none */
        struct wire_writer out;
        size_t out_off;
        uint64_t last_active; /* monotonic usec of accept or last complete frame */
        bool closing;         /* drop after the pending reply is written */
        bool eof;             /* the client shut down its side: answer, flush, close */
        uint64_t key;         /* its principal */
        size_t pinned;        /* in_cap + out.cap, as counted in the principal */
        bool starved;         /* not read until its principal's buffers shrink */
        struct later *later;  /* a request whose reply comes later: read no other meanwhile */
        struct conn *prev, *next;
};

void server_log(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}

/* ---- bookkeeping: LRU list and per-uid counts ---- */

static void list_unlink(struct cofferd *d, struct conn *c) {
        if (c->prev)
                c->prev->next = c->next;
        else
                d->conns_head = c->next;
        if (c->next)
                c->next->prev = c->prev;
        else
                d->conns_tail = c->prev;
        c->prev = c->next = NULL;
}

static void list_append(struct cofferd *d, struct conn *c) {
        c->prev = d->conns_tail;
        c->next = NULL;
        if (d->conns_tail)
                d->conns_tail->next = c;
        else
                d->conns_head = c;
        d->conns_tail = c;
}

static struct principal *principal_slot(struct cofferd *d, uint64_t key, bool create) {
        for (unsigned i = 0; i < d->nprincipals; i++)
                if (d->principals[i].key == key)
                        return &d->principals[i];
        if (!create)
                return NULL;
        struct principal *u = realloc(d->principals, (d->nprincipals + 1) * sizeof(*u));
        if (!u)
                return NULL;
        d->principals = u;
        u[d->nprincipals] = (struct principal){ .key = key };
        return &u[d->nprincipals++];
}

static void principal_release(struct cofferd *d, uint64_t key) {
        struct principal *u = principal_slot(d, key, false);
        if (u && --u->n == 0)
                *u = d->principals[--d->nprincipals];
}


/* Subordinate uids count as their owner: a user with 65,536 of them is still
 * one user. A user namespace made by root (a container manager) is one
 * principal of its own, not root. */
static uint64_t principal_key(const struct cofferd *d, const struct peer *p, int peer_rc) {
        if (peer_rc == 0 && p->userns_owner != (uid_t) -1)
                return p->userns_owner != 0 ? p->userns_owner : PEER_KEY_USERNS | p->userns_ino;
        /* Root's key is root's alone: a uid of root's subordinate range (a
         * container's, its namespace unread: the peer exited) counts apart,
         * so it cannot take root's slots and buffer share. */
        uint64_t owner = subuid_owner(&d->subuids, p->uid);
        return owner == 0 && p->uid != 0 ? PEER_KEY_APART | p->uid : owner;
}

/* ---- buffer memory: what one principal, and all, may pin ---- */

static bool conn_is_root(const struct conn *c) {
        return c->peer.uid == 0 && c->key == 0;
}

/* Whether c's input may grow by n bytes. Root is held only to its own
 * share, so others filling the total cannot stall pam_coffer. */
static bool room_for(struct conn *c, size_t n) {
        struct cofferd *d = c->d;
        struct principal *u = principal_slot(d, c->key, false);
        size_t mine = (size_t) d->cfg.max_buffered_per_uid_mib << 20, all = (size_t) d->cfg.max_buffered_mib << 20;
        if (u && u->pinned + n > mine)
                return false;
        return conn_is_root(c) || d->pinned + n <= all;
}

static void conn_update_events(struct conn *c);

/* Memory was given back: let the connections that waited for it read again
 * (those still without room wait again). */
static void wake_starved(struct cofferd *d) {
        for (struct conn *c = d->conns_head; c && d->starved; c = c->next)
                if (c->starved) {
                        c->starved = false;
                        d->starved--;
                        conn_update_events(c);
                }
}

/* Count c's buffers as they are now. */
static void conn_account(struct conn *c, size_t now) {
        struct cofferd *d = c->d;
        if (now == c->pinned)
                return;
        struct principal *u = principal_slot(d, c->key, false);
        bool freed = now < c->pinned;
        if (u)
                u->pinned = u->pinned - c->pinned + now;
        d->pinned = d->pinned - c->pinned + now;
        c->pinned = now;
        if (freed && d->starved)
                wake_starved(d);
}

static void conn_free(struct conn *c) {
        struct cofferd *d = c->d;
        if (c->starved)
                d->starved--;
        c->starved = false;
        conn_account(c, 0);
        if (c->later)
                c->later->ctx = NULL; /* the reply has nowhere to go */
        list_unlink(d, c);
        principal_release(d, c->key);
        d->nconns--;
        sd_event_source_disable_unref(c->src);
        close(c->fd);
        if (c->in_fd >= 0)
                close(c->in_fd);
        peer_release(&c->peer);
        if (c->in) {
                sodium_memzero(c->in, c->in_cap);
                free(c->in);
        }
        wire_writer_free(&c->out);
        free(c);
        if (d->listen_src)
                sd_event_source_set_enabled(d->listen_src, SD_EVENT_ON);
}

/* ---- output ---- */

/* All written: a large buffer is given back rather than kept pinned. */
static void out_drained(struct conn *c) {
        if (c->out.cap > 4096) {
                wire_writer_free(&c->out);
                wire_writer_init(&c->out);
                c->out.limit = OUT_LIMIT;
        } else
                wire_writer_reset(&c->out);
        c->out_off = 0;
}

static int conn_flush(struct conn *c) {
        while (c->out_off < c->out.len) {
                ssize_t n = send(c->fd, c->out.p + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        return -errno;
                }
                c->out_off += (size_t) n;
        }
        if (c->out_off == c->out.len) {
                out_drained(c);
                if (c->closing)
                        return -ECONNRESET;
        }
        return 0;
}

static size_t conn_pending(const struct conn *c) {
        return c->out.len - c->out_off;
}

static void conn_update_events(struct conn *c) {
        uint32_t ev = 0;
        size_t pending = conn_pending(c);
        if (pending)
                ev |= EPOLLOUT;
        if (!c->closing && !c->eof && !c->starved && !c->later && pending < OUT_HIGH_WATER)
                ev |= EPOLLIN;
        sd_event_source_set_io_events(c->src, ev);
}

/* Move the unsent bytes to the front, so the limit counts only them. */
static void out_compact(struct conn *c) {
        if (c->out_off == 0)
                return;
        size_t pending = conn_pending(c);
        memmove(c->out.p, c->out.p + c->out_off, pending);
        sodium_memzero(c->out.p + pending, c->out.len - pending);
        c->out.len = pending;
        c->out_off = 0;
}

/* Append one reply frame to the output buffer. conn_process stops below
 * OUT_HIGH_WATER, so a reply always fits; failing here is out of memory. */
static void conn_queue(struct conn *c, const struct wire_writer *frame) {
        out_compact(c);
        if (!wire_write_bytes(&c->out, frame->p, frame->len)) {
                server_log("cofferd: cannot buffer a %zu-byte reply for pid %d: out of memory; closing", frame->len,
                        (int) c->peer.pid);
                c->closing = true;
        }
}

static void conn_reject(struct conn *c, uint32_t id, uint16_t op, int code, const char *msg) {
        struct wire_writer w;
        ops_audit_refused(c->d, &c->peer, op, code);
        wire_writer_init(&w);
        ops_error_frame(&w, id, code, msg);
        conn_queue(c, &w);
        wire_writer_free(&w);
        c->closing = true;
}

/* ---- input ---- */

/* Room for need bytes, rounded to a page, not doubled: what a connection
 * holds is what it counts against its principal. */
static int in_reserve(struct conn *c, size_t need) {
        if (need <= c->in_cap)
                return 0;
        size_t cap = (need + 4095) & ~(size_t) 4095;
        uint8_t *p = malloc(cap);
        if (!p)
                return -ENOMEM;
        if (c->in) {
                memcpy(p, c->in, c->in_len);
                sodium_memzero(c->in, c->in_cap);
                free(c->in);
        }
        c->in = p;
        c->in_cap = cap;
        return 0;
}

static void take_fds(struct conn *c, struct msghdr *mh) {
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
                if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                        continue;
                size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                int *fds = (int *) CMSG_DATA(cm);
                for (size_t i = 0; i < n; i++) {
                        if (c->in_fd < 0)
                                c->in_fd = fds[i];
                        else
                                close(fds[i]); /* one fd per frame, at most */
                }
        }
}

/* The room the next read needs: the rest of a frame whose header is in
 * (at once, so a large frame is one allocation), else a chunk. */
static size_t in_need(const struct conn *c) {
        struct wire_header h;
        size_t need = c->in_len + READ_CHUNK;
        if (c->in_len >= WIRE_HEADER_SIZE && wire_header_parse(&h, c->in) == 0 &&
            WIRE_HEADER_SIZE + (size_t) h.body_len > need)
                need = WIRE_HEADER_SIZE + (size_t) h.body_len;
        return need;
}

/* All consumed: give the buffer back rather than keep it pinned (an idle
 * connection holds nothing against its principal's share). No wipe:
 * conn_consume wiped every byte received. */
static void in_release(struct conn *c) {
        if (c->in_len || !c->in)
                return;
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
}

static ssize_t conn_recv(struct conn *c) {
        char cbuf[CMSG_SPACE(sizeof(int) * 4)];
        size_t need = in_need(c);
        if (need > c->in_cap && !room_for(c, need - c->in_cap)) {
                /* The frame waits in the socket until the principal's other
                 * connections give memory back (or idle_timeout ends them). */
                c->starved = true;
                c->d->starved++;
                return 0;
        }
        if (in_reserve(c, need) < 0)
                return -ENOMEM;
        struct iovec iov = { .iov_base = c->in + c->in_len, .iov_len = c->in_cap - c->in_len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
        ssize_t n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0)
                return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        take_fds(c, &mh);
        if (n == 0)
                c->eof = true; /* what came before is still answered */
        c->in_len += (size_t) n;
        return n;
}

static void conn_consume(struct conn *c, size_t n) {
        memmove(c->in, c->in + n, c->in_len - n);
        sodium_memzero(c->in + c->in_len - n, n); /* bodies may hold secret values */
        c->in_len -= n;
}

static void conn_process(struct conn *c);
static int conn_pump(struct conn *c);
static void conn_update_events(struct conn *c);

/* The reply of a request that waited; then the requests read meanwhile. */
static void conn_deliver(void *ctx, const struct wire_writer *reply) {
        struct conn *c = ctx;
        c->later = NULL;
        if (!reply)
                return;
        conn_queue(c, reply);
        if (conn_pump(c) < 0) {
                conn_free(c);
                return;
        }
        conn_account(c, c->in_cap + c->out.cap);
        conn_update_events(c);
}
static void handle_frame(struct conn *c, const struct wire_header *h, const uint8_t *body) {
        struct wire_msg msg = { .hdr = *h };
        struct wire_writer reply;
        struct request r = {
                .d = c->d, .peer = &c->peer, .peer_rc = c->peer_rc, .msg = &msg, .fd = c->in_fd, .out = &reply,
        };
        wire_writer_init(&reply);
        int rc = wire_body_parse(&msg, body, h->body_len);
        if (rc < 0) {
                conn_reject(c, h->request_id, h->opcode, -EPROTO, "malformed frame body: bad field, duplicate tag or trailing "
                                                       "bytes; closing the connection");
        } else if (ops_dispatch(&r) == 1) {
                r.later->deliver = conn_deliver;
                r.later->ctx = c;
                c->later = r.later;        } else {
                conn_queue(c, &reply);
        }
        wire_writer_free(&reply);
        if (c->in_fd >= 0)
                close(c->in_fd);
        c->in_fd = -1;
        c->d->requests++;
}

/* Answer the complete frames in the buffer, in order, while the unsent
 * output stays under OUT_HIGH_WATER and no earlier request waits for its
 * reply; the rest wait there, unexecuted. */
static void conn_process(struct conn *c) {
        while (!c->closing && !c->later && c->in_len >= WIRE_HEADER_SIZE && conn_pending(c) < OUT_HIGH_WATER) {
                struct wire_header h;
                int rc = wire_header_parse(&h, c->in);
                if (rc < 0) {
                        conn_reject(c, 0, 0, -EPROTO,
                                    rc == -EMSGSIZE ? "frame larger than the 1 MiB value limit allows; closing"
                                    : rc == -EPROTONOSUPPORT ? "unsupported protocol version; closing"
                                                             : "not a coffer frame (bad magic); closing");
                        return;
                }
                if (c->in_len < WIRE_HEADER_SIZE + h.body_len)
                        return;
                handle_frame(c, &h, c->in + WIRE_HEADER_SIZE);
                conn_consume(c, WIRE_HEADER_SIZE + h.body_len);
                c->last_active = now_mono_usec();
                list_unlink(c->d, c);
                list_append(c->d, c);
        }
}

static bool frame_complete(const struct conn *c) {
        struct wire_header h;
        if (c->in_len < WIRE_HEADER_SIZE)
                return false;
        return wire_header_parse(&h, c->in) < 0 || c->in_len >= WIRE_HEADER_SIZE + h.body_len;
}

/* Answer and write until the input has no complete frame or the client
 * stops reading. After the client's EOF, the connection closes once every
 * complete frame is answered and written. */
static int conn_pump(struct conn *c) {
        for (;;) {
                conn_process(c);
                in_release(c);
                /* A request waiting for its reply holds the rest back, and
                 * the connection open. */
                bool more = frame_complete(c) && !c->closing && !c->later;
                if (c->eof && !more && !c->later)
                        c->closing = true;
                int rc = conn_flush(c);
                if (rc < 0)
                        return rc;
                if (!more || conn_pending(c) >= OUT_HIGH_WATER)
                        return 0;
        }
}

static int on_conn(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct conn *c = userdata;
        int rc = 0;
        if (revents & EPOLLIN) {
                ssize_t n = conn_recv(c);
                if (n < 0)
                        rc = (int) n;
        }
        /* A hang-up with nothing to read is the client gone both ways. */
        if ((revents & (EPOLLHUP | EPOLLERR)) && !(revents & EPOLLIN))
                c->eof = true;
        /* Gone both ways while its reply is worked on: nobody can read it,
         * and the hang-up would wake the loop again and again. */
        if (rc == 0 && (revents & (EPOLLHUP | EPOLLERR)) && c->later)
                rc = -ECONNRESET;
        if (rc == 0)
                rc = conn_pump(c);
        if (rc < 0) {
                conn_free(c);
                return 0;
        }
        conn_account(c, c->in_cap + c->out.cap);
        conn_update_events(c);
        return 0;
}

/* ---- accept ---- */

static void refuse_early(int fd, const char *msg) {
        struct wire_writer w;
        wire_writer_init(&w);
        ops_error_frame(&w, 0, -EUSERS, msg);
        (void) !send(fd, w.p, w.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        wire_writer_free(&w);
        close(fd);
}

/* NULL when c may stay, else why not. The last root_reserved_connections
 * are kept for root in the daemon's own namespace (pam_coffer), so a flood of
 * users cannot lock out logins. */
static const char *conn_admit(struct cofferd *d, const struct conn *c) {
        bool root = conn_is_root(c);
        unsigned max = d->cfg.max_connections, reserve = d->cfg.root_reserved_connections;
        if (reserve >= max)
                reserve = max - 1;
        if (d->nconns >= max || (!root && d->nconns >= max - reserve))
                return "too many connections to cofferd; retry later";

        struct principal *u = principal_slot(d, c->key, false);
        if (u && u->n >= d->cfg.max_connections_per_uid)
                return c->key == c->peer.uid ? "too many connections from your uid; close some and retry"
                                             : "too many connections from your uid with its subordinate uids "
                                               "and user namespaces; close some and retry";
        return NULL;
}

static void conn_new(struct cofferd *d, int fd) {
        struct ucred cred;
        socklen_t len = sizeof(cred);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
                close(fd);
                return;
        }
        if (d->nconns >= d->cfg.max_connections) {
                refuse_early(fd, "too many connections to cofferd; retry later");
                return;
        }
        struct conn *c = calloc(1, sizeof(*c));
        if (!c) {
                close(fd);
                return;
        }
        c->peer_rc = peer_from_socket(&c->peer, fd);
        c->peer.uid = cred.uid; /* the count is kept under the SO_PEERCRED uid */
        c->key = principal_key(d, &c->peer, c->peer_rc);
        c->peer.principal = c->key; /* the audit budget counts the same principal */

        const char *why = conn_admit(d, c);
        struct principal *u = why ? NULL : principal_slot(d, c->key, true);
        if (!u) {
                peer_release(&c->peer);
                free(c);
                if (why)
                        refuse_early(fd, why);
                else
                        close(fd);
                return;
        }
        c->d = d;
        c->fd = fd;
        c->in_fd = -1;
        wire_writer_init(&c->out);
        c->out.limit = OUT_LIMIT;
        u->n++;
        d->nconns++;
        c->last_active = now_mono_usec();
        list_append(d, c);
        if (sd_event_add_io(d->event, &c->src, fd, EPOLLIN, on_conn, c) < 0)
                conn_free(c);
}

static int on_listen(sd_event_source *s, int lfd, uint32_t revents, void *userdata) {
        struct cofferd *d = userdata;
        for (int i = 0; i < ACCEPT_BATCH; i++) {
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                        /* Out of fds: stop accepting until a connection closes. */
                        if (errno == EMFILE || errno == ENFILE)
                                sd_event_source_set_enabled(s, SD_EVENT_OFF);
                        break;
                }
                conn_new(d, fd);
        }
        return 0;
}

/* ---- idle sweep ---- */

static int on_sweep(sd_event_source *s, uint64_t usec, void *userdata) {
        struct cofferd *d = userdata;
        uint64_t now = now_mono_usec(), idle = (uint64_t) d->cfg.idle_timeout_sec * 1000000u;
        for (unsigned n = d->nconns; n > 0 && d->conns_head && d->conns_head->last_active + idle < now; n--) {
                struct conn *c = d->conns_head;
                if (!c->later) {
                        conn_free(c);
                        continue;
                }
                /* Waiting for the daemon is not idleness. */
                c->last_active = now;
                list_unlink(d, c);
                list_append(d, c);
        }
        tokens_refresh(d);
        creds_sweep(d);
        budget_tick(d->budget, &d->cfg, d->audit, now);
        sd_event_source_set_time_relative(s, 1000000);
        sd_event_source_set_enabled(s, SD_EVENT_ONESHOT); /* a fired timer is off until re-enabled */
        return 0;
}

/* ---- the store's generation and its anchor ---- */

void server_anchor(struct cofferd *d, bool committing) {
        if (!d->rollback_held)
                audit_set_generation(d->audit, store_generation_durable(d->store, committing));
}

/* An uninitialized store holds nothing to roll back; init anchors anew. */
void server_check_rollback(struct cofferd *d) {
        uint64_t have = store_generation(d->store), anchored = audit_generation(d->audit);
        if (!d->seal.initialized || have >= anchored)
                return;
        d->rollback_held = true;
        store_hold_generation(d->store, true);
        server_log("cofferd: STORE ROLLED BACK: %s/%s is at generation %llu, but the audit log %s anchors generation "
                   "%llu: an older copy of the store was put back. Unseal is refused; if the restore was deliberate, "
                   "run `coffer operator accept-rollback`",
                   d->cfg.state_dir, STORE_DB_NAME, (unsigned long long) have, d->audit_path,
                   (unsigned long long) anchored);
        char detail[96];
        snprintf(detail, sizeof(detail), "store generation %llu, anchored %llu", (unsigned long long) have,
                 (unsigned long long) anchored);
        struct audit_event ev = { .op = "store-rollback", .object = "store", .decision = "deny",
                                  .rule = "generation", .result = -ESTALE, .detail = detail };
        if (audit_record(d->audit, &ev) < 0)
                server_log("cofferd: the audit record of the store rollback could not be written");
}

const char *server_rollback_refusal(const struct cofferd *d, char *buf, size_t n) {
        if (!d->rollback_held)
                return NULL;
        snprintf(buf, n,
                 "the store was rolled back: it is at generation %llu, but the audit log anchors generation %llu "
                 "(an older copy of %s was put back); unsealing it would bring back rotated values, used grants "
                 "and revoked tokens. If the restore was deliberate run `coffer operator accept-rollback`, then "
                 "unseal; otherwise put the current store back",
                 (unsigned long long) store_generation(d->store), (unsigned long long) audit_generation(d->audit),
                 STORE_DB_NAME);
        return buf;
}

/* ---- audit segments ---- */

int server_unsealed(struct cofferd *d, const struct lease_check *check) {
        server_anchor(d, false);
        int rc = audit_unsealed(d->audit, d->seal.kr->audit_mac_key);
        if (rc < 0)
                return rc;
        /* Rows edited while the daemon was down fail their MAC now. */
        int bad = check ? lease_apply_check(d->leases, d->seal.master, check, now_unix())
                        : lease_set_master(d->leases, d->seal.master, now_unix());
        if (bad > 0)
                server_log("cofferd: %d lease(s) in the store failed their integrity check and were revoked", bad);
        rc = tokens_unsealed(d);
        if (rc < 0)
                server_log("cofferd: token keys unavailable: %s", strerror(-rc));
        server_leases_changed(d);
        return 0;
}

int server_sealed(struct cofferd *d) {
        lease_set_master(d->leases, NULL, 0);
        tokens_sealed(d);
        server_anchor(d, false);
        if (!d->seal.has_audit_pk)
                return 0;
        return audit_sealed(d->audit, d->seal.audit_pk);
}

/* ---- lease expiry and ended sessions ---- */

#define EXPIRE_BATCH 512 /* per loop iteration: clients are served in between */

static int on_lease_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct cofferd *d = userdata;
        (void) s;
        (void) usec;
        /* An expiry lost to a power cut is redone at the next start. */
        uint64_t t0 = now_mono_usec();
        int n = 0, rc = store_begin_relaxed(d->store);
        if (rc == 0) {
                rc = n = lease_expire(d->leases, now_unix(), EXPIRE_BATCH);
                if (rc < 0) {
                        store_rollback(d->store);
                        server_log("cofferd: lease expiry failed: %s (%s); retrying", strerror(-rc),
                                store_errmsg(d->store));
                } else if ((rc = store_commit(d->store)) < 0)
                        server_log("cofferd: lease expiry commit failed: %s", strerror(-rc));
        }
        /* A large expiry runs in batches between which clients are served;
         * when a backlog of at least one full batch is done, say how long it took. */
        uint64_t t1 = now_mono_usec();
        if (n > 0) {
                if (!d->expiry_run.count)
                        d->expiry_run.start = t0;
                d->expiry_run.count += (unsigned) n;
                if (t1 - t0 > d->expiry_run.longest)
                        d->expiry_run.longest = t1 - t0;
        }
        if (n < EXPIRE_BATCH && d->expiry_run.count) {
                if (d->expiry_run.count >= EXPIRE_BATCH)
                        server_log("cofferd: %u lease(s) expired in %.1f ms (longest batch %.1f ms)",
                                d->expiry_run.count, (double) (t1 - d->expiry_run.start) / 1000.0,
                                (double) d->expiry_run.longest / 1000.0);
                d->expiry_run.count = 0;
                d->expiry_run.longest = 0;
        }
        server_leases_changed(d);
        return 0;
}

void server_leases_changed(struct cofferd *d) {
        tokens_refresh(d);
        if (!d->lease_src)
                return;
        /* Called after every request: touch the timer only when the earliest
         * expiry moved (or the timer fired and is off). */
        uint64_t next = lease_next_expiry(d->leases);
        int on = SD_EVENT_OFF;
        (void) sd_event_source_get_enabled(d->lease_src, &on);
        if (next == d->lease_armed && (next == UINT64_MAX || on != SD_EVENT_OFF))
                return;
        d->lease_armed = next;
        if (next == UINT64_MAX) {
                sd_event_source_set_enabled(d->lease_src, SD_EVENT_OFF);
                return;
        }
        /* Seconds resolution: fire at the second, or right away if late. */
        uint64_t at = next > UINT64_MAX / 1000000u ? UINT64_MAX - 1 : next * 1000000u;
        sd_event_source_set_time(d->lease_src, at);
        sd_event_source_set_enabled(d->lease_src, SD_EVENT_ONESHOT);
}

static int arm_session_check(struct cofferd *d);
static int arm_session_check_in(struct cofferd *d, uint64_t us);

static int on_session_check(sd_event_source *s, uint64_t usec, void *userdata) {
        struct cofferd *d = userdata;
        (void) s;
        (void) usec;
        int n = session_check_ended(d);
        if (n > 0)
                server_log("cofferd: %d lease(s) revoked: their login sessions ended without close_session", n);
        server_leases_changed(d);
        /* After an opener exited, its session's other processes (the shell,
         * sshd's user child) take a moment to go: look again soon. */
        if (d->session_quick > 0 && d->cfg.session_check_sec > 1) {
                d->session_quick--;
                arm_session_check_in(d, 1000000u);
        } else {
                d->session_quick = 0;
                arm_session_check(d);
        }
        return 0;
}

/* (Re)arm the ended-session sweep for the configured interval; 0 = off. */
static int arm_session_check(struct cofferd *d) {
        return arm_session_check_in(d, (uint64_t) d->cfg.session_check_sec * 1000000u);
}

static int arm_session_check_in(struct cofferd *d, uint64_t us) {
        if (!d->event)
                return 0;
        if (us == 0)
                return d->session_check_src ? sd_event_source_set_enabled(d->session_check_src, SD_EVENT_OFF) : 0;
        if (!d->session_check_src)
                return sd_event_add_time_relative(d->event, &d->session_check_src, CLOCK_MONOTONIC, us, 100000,
                                                  on_session_check, d);
        int rc = sd_event_source_set_time_relative(d->session_check_src, us);
        return rc < 0 ? rc : sd_event_source_set_enabled(d->session_check_src, SD_EVENT_ONESHOT);
}

struct opener {
        struct cofferd *d;
        sd_event_source *src;      /* owns the pidfd */
        pid_t pid;
        uint64_t start_time;
};

static void opener_drop(struct cofferd *d, size_t i) {
        struct opener *o = d->openers[i];
        sd_event_source_disable_unref(o->src);
        free(o);
        d->openers[i] = d->openers[--d->nopeners];
}

static int on_opener_exit(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct opener *o = userdata;
        struct cofferd *d = o->d;
        (void) s;
        (void) fd;
        (void) revents;
        for (size_t i = 0; i < d->nopeners; i++)
                if (d->openers[i] == o) {
                        opener_drop(d, i);
                        break;
                }
        if (d->cfg.session_check_sec == 0)
                return 0;
        d->session_quick = 5;
        /* Sooner, never later: a stream of exits must not keep pushing the
         * check back. */
        uint64_t now = 0, at = UINT64_MAX;
        int on = SD_EVENT_OFF;
        if (d->session_check_src) {
                sd_event_source_get_enabled(d->session_check_src, &on);
                sd_event_source_get_time(d->session_check_src, &at);
        }
        sd_event_now(d->event, CLOCK_MONOTONIC, &now);
        if (on == SD_EVENT_OFF || at > now + 250000u)
                arm_session_check_in(d, 250000u);
        return 0;
}

void server_watch_opener(struct cofferd *d, const struct peer *p) {
        if (!d->event || d->cfg.session_check_sec == 0 || p->pidfd < 0)
                return;
        for (size_t i = 0; i < d->nopeners; i++)
                if (d->openers[i]->pid == p->pid && d->openers[i]->start_time == p->start_time)
                        return;
        if (d->nopeners == OPENERS_MAX)
                return;
        if (d->nopeners % 64 == 0) {
                struct opener **v = realloc(d->openers, (d->nopeners + 64) * sizeof(*v));
                if (!v)
                        return;
                d->openers = v;
        }
        struct opener *o = calloc(1, sizeof(*o));
        int fd = fcntl(p->pidfd, F_DUPFD_CLOEXEC, 3);
        if (!o || fd < 0 || sd_event_add_io(d->event, &o->src, fd, EPOLLIN, on_opener_exit, o) < 0) {
                if (fd >= 0)
                        close(fd);
                free(o);
                return;
        }
        sd_event_source_set_io_fd_own(o->src, true);
        o->d = d;
        o->pid = p->pid;
        o->start_time = p->start_time;
        d->openers[d->nopeners++] = o;
}

static void openers_free(struct cofferd *d) {
        while (d->nopeners)
                opener_drop(d, d->nopeners - 1);
        free(d->openers);
        d->openers = NULL;
}

/* ---- lifecycle ---- */

int server_load_policy(struct cofferd *d, bool allow_empty, char *err, size_t errsz) {
        struct policy *p = NULL;
        int rc = policy_load_dir(&p, d->cfg.policy_dir, d->self_uid, err, errsz);
        if (rc < 0)
                return rc;
        if (policy_is_empty(p) && !allow_empty) {
                policy_free(p);
                snprintf(err, errsz, "%s holds no policy rules; refusing to replace the policy in force with "
                                     "deny-all (add rules, or a file with `deny * *` to mean it)",
                         d->cfg.policy_dir);
                return -ENODATA;
        }
        policy_free(d->policy);
        d->policy = p;
        return (int) policy_rule_count(p);
}

int server_load_creds_map(struct cofferd *d) {
        char err[2048] = "";
        struct creds_map *m = malloc(sizeof(*m));
        if (!m)
                return -ENOMEM;
        int rc = creds_map_load(m, d->cfg.creds_map, d->self_uid, err, sizeof(err));
        if (rc < 0) {
                /* No map at start is not "no mapping": refuse every credential
                 * until it is fixed, rather than guess. */
                server_log("cofferd: CREDS MAP NOT LOADED, %s: %s", d->creds_map ? "the old one stays in force"
                                                                              : "no credential is served until it is fixed and reloaded",
                        err);
                if (!d->creds_map)
                        d->creds_map_broken = true;
                free(m);
                return rc;
        }
        free(d->creds_map);
        d->creds_map = m;
        d->creds_map_broken = false;
        return 0;
}

int server_load_login_map(struct cofferd *d) {
        char err[2048] = "";
        struct login_map *m = malloc(sizeof(*m));
        if (!m)
                return -ENOMEM;
        int rc = login_map_load(m, d->cfg.login_map, d->self_uid, err, sizeof(err));
        if (rc < 0) {
                server_log("cofferd: LOGIN MAP NOT LOADED, %s: %s", d->login ? "the old one stays in force"
                                                                           : "login sessions get no credentials",
                        err);
                free(m);
                return rc;
        }
        free(d->login);
        d->login = m;
        if (m->n)
                server_log("cofferd: login map: %zu credential(s) offered to login sessions, from %s", m->n,
                        d->cfg.login_map);
        return 0;
}

/* (Re)load the subordinate uid ranges; on error the old ones stay. */
static void server_load_subuids(struct cofferd *d) {
        char err[2048] = "";
        struct subuid_map m;
        int rc = subuid_map_load(&m, d->cfg.subuid_file, err, sizeof(err));
        if (rc < 0) {
                server_log("cofferd: subordinate uids NOT LOADED, %s: %s",
                        d->subuids.n ? "the old ranges stay in force" : "each is counted as its own uid", err);
                return;
        }
        if (rc > 0)
                server_log("cofferd: subordinate uids: lines ignored: %s", err);
        subuid_map_free(&d->subuids);
        d->subuids = m;
}

void server_reload(struct cofferd *d) {
        struct config c = d->cfg;
        char err[512] = "";
        if (d->config_path[0] && config_load(&c, d->config_path, d->config_required, err, sizeof(err)) < 0) {
                server_log("cofferd: reload failed, keeping the old configuration and policy: %s", err);
                return;
        }
        /* Paths cannot change under a running daemon. */
        memcpy(c.socket, d->cfg.socket, sizeof(c.socket));
        memcpy(c.state_dir, d->cfg.state_dir, sizeof(c.state_dir));
        memcpy(c.audit_log, d->cfg.audit_log, sizeof(c.audit_log));
        memcpy(c.policy_dir, d->cfg.policy_dir, sizeof(c.policy_dir));
        if (d->maps_from_args & 1)
                memcpy(c.login_map, d->cfg.login_map, sizeof(c.login_map));
        if (d->maps_from_args & 2)
                memcpy(c.creds_map, d->cfg.creds_map, sizeof(c.creds_map));
        d->cfg = c;
        server_load_subuids(d);
        server_load_login_map(d);
        server_load_creds_map(d);
        arm_session_check(d);
        int rc = server_load_policy(d, false, err, sizeof(err));
        if (rc < 0)
                server_log("cofferd: configuration reloaded; policy NOT reloaded, the old one stays in force: %s", err);
        else
                server_log("cofferd: configuration reloaded; policy reloaded: %d rules from %s", rc, d->cfg.policy_dir);
}

int server_start(struct cofferd *d) {
        server_load_subuids(d);
        int rc = sd_event_add_io(d->event, &d->listen_src, d->listen_fd, EPOLLIN, on_listen, d);
        if (rc < 0)
                return rc;
        if ((rc = worker_new(&d->worker, d->event)) < 0)
                return rc;
        rc = sd_event_add_time(d->event, &d->lease_src, CLOCK_REALTIME, UINT64_MAX, 10000, on_lease_timer, d);
        if (rc < 0)
                return rc;
        if ((rc = arm_session_check(d)) < 0)
                return rc;
        server_leases_changed(d);
        session_rm_arm(d);
        if (d->creds_fd >= 0 && (rc = creds_start(d, d->creds_fd)) < 0)
                return rc;
        return sd_event_add_time_relative(d->event, &d->sweep_src, CLOCK_MONOTONIC, 1000000, 100000, on_sweep, d);
}

void server_stop(struct cofferd *d) {
        while (d->conns_head)
                conn_free(d->conns_head);
        ops_stop(d);
        worker_free(d->worker); /* waits for a running unseal, which then answers no one */
        d->worker = NULL;
        d->listen_src = sd_event_source_disable_unref(d->listen_src);
        d->sweep_src = sd_event_source_disable_unref(d->sweep_src);
        d->lease_src = sd_event_source_disable_unref(d->lease_src);
        d->session_check_src = sd_event_source_disable_unref(d->session_check_src);
        openers_free(d);
        session_rm_free(d);
        creds_stop(d);
        free(d->principals);
        d->principals = NULL;
        d->nprincipals = 0;
        subuid_map_free(&d->subuids);
}
