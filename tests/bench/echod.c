/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * echod: the physical floor for a coffer round trip.
 *
 * A single-threaded Unix-socket server that answers every complete frame with
 * the same bytes, opcode |= PROTO_REPLY_BIT. No parsing beyond the header, no
 * allocation per request: the benchmark divides coffer's figures by these.
 *
 *   echod [--sd-event] SOCKETPATH        runs until SIGTERM or SIGINT
 *
 * The default loop is raw level-triggered epoll: per round trip it costs
 * read + send and a share of one epoll_wait. --sd-event runs the same
 * connection code on sd-event, cofferd's loop, which re-polls (epoll_wait
 * with timeout 0) before every dispatch; on a small host that alone halves
 * many-client throughput, so it is the like-for-like figure, not the floor.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "proto.h"
#include "wire.h"

#define CONN_BUF_INITIAL (16u * 1024u)
#define EPOLL_BATCH      256

struct server;

/* One client. buf[0, len) is what arrived; buf[0, ready) is whole frames,
 * already marked as replies; buf[0, sent) of those is written back. */
struct conn {
        struct server *srv;
        struct conn *prev, *next;
        sd_event_source *src; /* sd-event backend only */
        int fd;
        uint32_t events;      /* EPOLLIN while reading, EPOLLOUT while backed up */
        uint8_t *buf;
        size_t cap, len, ready, sent;
};

struct server {
        bool use_sd_event;
        int lfd;
        int epfd, sigfd;      /* epoll backend */
        sd_event *loop;       /* sd-event backend */
        sd_event_source *listen_src;
        struct conn *conns;
        bool accept_paused;   /* out of fds: wait for a client to leave */
};

/* epoll data.ptr for the two fds that are not clients. */
static char listen_tag, signal_tag;

/* ---- the connection: identical on both loops ---- */

/* Reply = request with the reply bit set in the big-endian opcode at header
 * offset 6 (see the header layout in wire.h). */
static void frame_mark_reply(uint8_t *hdr) {
        hdr[6] |= (uint8_t)(PROTO_REPLY_BIT >> 8);
}

static int conn_reserve(struct conn *c, size_t need) {
        if (need <= c->cap)
                return 0;
        size_t cap = c->cap;
        while (cap < need)
                cap *= 2;
        uint8_t *p = realloc(c->buf, cap);
        if (!p)
                return -ENOMEM;
        c->buf = p;
        c->cap = cap;
        return 0;
}

/* Mark every whole frame after ->ready as a reply and make room for the next
 * one, so the buffer always has space to read into. -EBADMSG for a header
 * that is not coffer's. */
static int conn_scan(struct conn *c) {
        while (c->len - c->ready >= WIRE_HEADER_SIZE) {
                struct wire_header h;
                uint8_t *hdr = c->buf + c->ready;
                if (wire_header_parse(&h, hdr) < 0 || h.body_len > WIRE_BODY_MAX)
                        return -EBADMSG;
                size_t frame = WIRE_HEADER_SIZE + (size_t)h.body_len;
                if (c->len - c->ready < frame)
                        return conn_reserve(c, c->ready + frame);
                frame_mark_reply(hdr);
                c->ready += frame;
        }
        return conn_reserve(c, c->ready + WIRE_HEADER_SIZE);
}

/* One read per wake-up: both loops are level-triggered, so anything left in
 * the socket wakes us again without an extra read that returns EAGAIN. */
static int conn_read(struct conn *c) {
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n < 0)
                return (errno == EAGAIN || errno == EINTR) ? 0 : -errno;
        if (n == 0)
                return -ECONNRESET;
        c->len += (size_t)n;
        return conn_scan(c);
}

/* Write back what is ready. 1 when all of it went, 0 on a full socket. */
static int conn_flush(struct conn *c) {
        while (c->sent < c->ready) {
                ssize_t n = send(c->fd, c->buf + c->sent, c->ready - c->sent, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        return -errno;
                }
                c->sent += (size_t)n;
        }
        memmove(c->buf, c->buf + c->ready, c->len - c->ready);
        c->len -= c->ready;
        c->ready = c->sent = 0;
        return 1;
}

static int conn_watch(struct conn *c, uint32_t events) {
        if (events == c->events)
                return 0;
        c->events = events;
        if (c->srv->use_sd_event)
                return sd_event_source_set_io_events(c->src, events);
        struct epoll_event ev = { .events = events, .data.ptr = c };
        return epoll_ctl(c->srv->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0 ? -errno : 0;
}

static int accept_enable(struct server *s, bool on) {
        if (s->use_sd_event)
                return sd_event_source_set_enabled(s->listen_src, on ? SD_EVENT_ON : SD_EVENT_OFF);
        struct epoll_event ev = { .events = on ? EPOLLIN : 0, .data.ptr = &listen_tag };
        return epoll_ctl(s->epfd, EPOLL_CTL_MOD, s->lfd, &ev) < 0 ? -errno : 0;
}

static void conn_free(struct conn *c) {
        struct server *s = c->srv;
        if (c->prev)
                c->prev->next = c->next;
        else
                s->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        sd_event_source_disable_unref(c->src);
        close(c->fd); /* also leaves the epoll set */
        free(c->buf);
        free(c);
        if (s->accept_paused && accept_enable(s, true) >= 0)
                s->accept_paused = false;
}

/* Once replies back up, stop reading until the client drains them. */
static void conn_event(struct conn *c, uint32_t revents) {
        int r = 0;

        if (revents & EPOLLIN)
                r = conn_read(c);
        else if (revents & (EPOLLERR | EPOLLHUP))
                r = -ECONNRESET;
        if (r >= 0)
                r = conn_flush(c);
        if (r >= 0)
                r = conn_watch(c, r ? EPOLLIN : EPOLLOUT);
        if (r == -EBADMSG)
                fprintf(stderr, "echod: dropping a client that sent a malformed frame header\n");
        if (r < 0)
                conn_free(c);
}

static int on_sd_conn(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        conn_event(userdata, revents);
        return 0;
}

static int conn_new(struct server *s, int fd) {
        struct conn *c = calloc(1, sizeof *c);
        int r;

        if (!c) {
                close(fd);
                return -ENOMEM;
        }
        *c = (struct conn){ .srv = s, .fd = fd, .events = EPOLLIN, .cap = CONN_BUF_INITIAL, .next = s->conns };
        if (s->conns)
                s->conns->prev = c;
        s->conns = c;
        c->buf = malloc(c->cap);
        if (!c->buf)
                r = -ENOMEM;
        else if (s->use_sd_event)
                r = sd_event_add_io(s->loop, &c->src, fd, EPOLLIN, on_sd_conn, c);
        else {
                struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
                r = epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
        }
        if (r < 0)
                conn_free(c);
        return r;
}

static void server_accept(struct server *s) {
        for (;;) {
                int cfd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        if ((errno == EMFILE || errno == ENFILE) && s->conns) {
                                /* Level-triggered: pause rather than spin until a client leaves. */
                                fprintf(stderr, "echod: out of file descriptors, pausing accept\n");
                                s->accept_paused = accept_enable(s, false) >= 0;
                        } else if (errno != EAGAIN) {
                                fprintf(stderr, "echod: accept: %s\n", strerror(errno));
                        }
                        return;
                }
                int r = conn_new(s, cfd);
                if (r < 0)
                        fprintf(stderr, "echod: cannot serve a client: %s\n", strerror(-r));
        }
}

/* ---- the loops ---- */

static int run_epoll(struct server *s, const sigset_t *stop) {
        struct epoll_event evs[EPOLL_BATCH];

        s->epfd = epoll_create1(EPOLL_CLOEXEC);
        s->sigfd = signalfd(-1, stop, SFD_NONBLOCK | SFD_CLOEXEC);
        if (s->epfd < 0 || s->sigfd < 0)
                return -errno;
        struct epoll_event lev = { .events = EPOLLIN, .data.ptr = &listen_tag };
        struct epoll_event sev = { .events = EPOLLIN, .data.ptr = &signal_tag };
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->lfd, &lev) < 0 ||
            epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->sigfd, &sev) < 0)
                return -errno;
        for (;;) {
                int n = epoll_wait(s->epfd, evs, EPOLL_BATCH, -1);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                for (int i = 0; i < n; i++) {
                        if (evs[i].data.ptr == &signal_tag)
                                return 0;
                        if (evs[i].data.ptr == &listen_tag)
                                server_accept(s);
                        else
                                conn_event(evs[i].data.ptr, evs[i].events);
                }
        }
}

static int on_sd_listen(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        server_accept(userdata);
        return 0;
}

static int run_sd_event(struct server *s, const sigset_t *stop) {
        int r = sd_event_new(&s->loop);
        if (r < 0)
                return r;
        /* A NULL handler makes the signal end the loop. */
        for (int sig = 1; sig < NSIG && r >= 0; sig++)
                if (sigismember(stop, sig) == 1)
                        r = sd_event_add_signal(s->loop, NULL, sig, NULL, NULL);
        if (r >= 0)
                r = sd_event_add_io(s->loop, &s->listen_src, s->lfd, EPOLLIN, on_sd_listen, s);
        if (r >= 0)
                r = sd_event_loop(s->loop);
        return r;
}

static int server_run(struct server *s) {
        sigset_t stop;
        int r;

        sigemptyset(&stop);
        sigaddset(&stop, SIGTERM);
        sigaddset(&stop, SIGINT);
        if (sigprocmask(SIG_BLOCK, &stop, NULL) < 0)
                return -errno;
        r = s->use_sd_event ? run_sd_event(s, &stop) : run_epoll(s, &stop);
        while (s->conns)
                conn_free(s->conns);
        sd_event_source_disable_unref(s->listen_src);
        sd_event_unref(s->loop);
        if (s->epfd >= 0)
                close(s->epfd);
        if (s->sigfd >= 0)
                close(s->sigfd);
        return r;
}

/* ---- setup ---- */

static int listen_unix(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct stat st;

        if (strlen(path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path));
        /* Replace a stale socket, never anything else. */
        if (lstat(path, &st) == 0) {
                if (!S_ISSOCK(st.st_mode))
                        return -EEXIST;
                if (unlink(path) < 0)
                        return -errno;
        }
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        mode_t old = umask(0077); /* socket mode 0600 */
        int r = bind(fd, (struct sockaddr *)&sa, sizeof sa);
        umask(old);
        if (r < 0 || listen(fd, SOMAXCONN) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

/* Many clients: use every descriptor the hard limit allows. */
static void raise_fd_limit(void) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                (void)setrlimit(RLIMIT_NOFILE, &rl);
        }
}

int main(int argc, char *argv[]) {
        struct server s = { .lfd = -1, .epfd = -1, .sigfd = -1 };
        const char *path = argv[argc - 1];

        if (argc == 3 && strcmp(argv[1], "--sd-event") == 0)
                s.use_sd_event = true;
        else if (argc != 2)
                path = NULL;
        if (!path || path[0] == '-') {
                fprintf(stderr, "usage: echod [--sd-event] SOCKETPATH\n");
                return 2;
        }
        raise_fd_limit();
        s.lfd = listen_unix(path);
        if (s.lfd < 0) {
                fprintf(stderr, "echod: cannot listen on %s: %s\n", path,
                        s.lfd == -EEXIST ? "path exists and is not a socket" : strerror(-s.lfd));
                return 1;
        }
        int r = server_run(&s);
        close(s.lfd);
        unlink(path);
        if (r < 0) {
                fprintf(stderr, "echod: event loop: %s\n", strerror(-r));
                return 1;
        }
        return 0;
}
