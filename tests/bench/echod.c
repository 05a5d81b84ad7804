/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * echod: the physical floor for a coffer round trip.
 *
 * A single-threaded Unix-socket server on the same event loop as cofferd
 * (sd-event, level-triggered epoll underneath) that answers every complete
 * frame with the same bytes, opcode |= PROTO_REPLY_BIT. No parsing beyond the
 * header, no allocation per request: the benchmark divides coffer's figures
 * by these.
 *
 *   echod SOCKETPATH        runs until SIGTERM or SIGINT
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "proto.h"
#include "util.h"
#include "wire.h"

#define CONN_BUF_INITIAL (16u * 1024u)
#define FRAME_MAX        (WIRE_HEADER_SIZE + WIRE_BODY_MAX)

struct server;

/* One client. buf[0, len) is what arrived; buf[0, ready) is whole frames,
 * already marked as replies; buf[0, sent) of those is written back. */
struct conn {
        struct server *srv;
        struct conn *prev, *next;
        sd_event_source *src;
        int fd;
        uint8_t *buf;
        size_t cap, len, ready, sent;
};

struct server {
        sd_event *loop;
        sd_event_source *listen_src;
        struct conn *conns;
        bool accept_paused; /* out of fds: wait for a close */
};

static void conn_free(struct conn *c) {
        if (!c)
                return;
        struct server *s = c->srv;
        if (c->prev)
                c->prev->next = c->next;
        else
                s->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        sd_event_source_disable_unref(c->src);
        if (c->fd >= 0)
                close(c->fd);
        free(c->buf);
        free(c);
        if (s->accept_paused && sd_event_source_set_enabled(s->listen_src, SD_EVENT_ON) >= 0)
                s->accept_paused = false;
}

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

/* Mark every whole frame after ->ready as a reply; make room for the next
 * one. -EBADMSG for a header that is not coffer's. */
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

/* One read per wake-up: the loop is level-triggered, so anything left in the
 * socket wakes us again, and a request/response client costs exactly
 * epoll_wait + read + send per round trip. */
static int conn_read(struct conn *c) {
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n < 0)
                return (errno == EAGAIN || errno == EINTR) ? 0 : -errno;
        if (n == 0)
                return -ECONNRESET;
        c->len += (size_t)n;
        return conn_scan(c);
}

static int on_conn(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        struct conn *c = userdata;
        int r = 0;

        if (revents & EPOLLIN)
                r = conn_read(c);
        else if (revents & (EPOLLERR | EPOLLHUP))
                r = -ECONNRESET;
        if (r >= 0)
                r = conn_flush(c);
        /* Once replies back up, stop reading until the client drains them. */
        if (r >= 0)
                r = sd_event_source_set_io_events(src, r ? EPOLLIN : EPOLLOUT);
        if (r == -EBADMSG)
                fprintf(stderr, "echod: dropping a client that sent a malformed frame header\n");
        if (r < 0)
                conn_free(c);
        return 0;
}

static int conn_new(struct server *s, int fd) {
        struct conn *c = calloc(1, sizeof *c);
        if (!c) {
                close(fd);
                return -ENOMEM;
        }
        c->srv = s;
        c->fd = fd;
        c->cap = CONN_BUF_INITIAL;
        c->buf = malloc(c->cap);
        c->next = s->conns;
        if (s->conns)
                s->conns->prev = c;
        s->conns = c;
        if (!c->buf) {
                conn_free(c);
                return -ENOMEM;
        }
        int r = sd_event_add_io(s->loop, &c->src, fd, EPOLLIN, on_conn, c);
        if (r < 0)
                conn_free(c);
        return r;
}

static int on_listen(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        struct server *s = userdata;

        for (;;) {
                int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        if ((errno == EMFILE || errno == ENFILE) && s->conns) {
                                /* Level-triggered: resume when a client leaves, not spin. */
                                fprintf(stderr, "echod: out of file descriptors, pausing accept\n");
                                if (sd_event_source_set_enabled(src, SD_EVENT_OFF) >= 0)
                                        s->accept_paused = true;
                        } else if (errno != EAGAIN) {
                                fprintf(stderr, "echod: accept: %s\n", strerror(errno));
                        }
                        return 0;
                }
                int r = conn_new(s, cfd);
                if (r < 0)
                        fprintf(stderr, "echod: cannot serve a client: %s\n", strerror(-r));
        }
}

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

static int server_run(struct server *s, int lfd) {
        sigset_t ss;
        int r;

        sigemptyset(&ss);
        sigaddset(&ss, SIGTERM);
        sigaddset(&ss, SIGINT);
        if (sigprocmask(SIG_BLOCK, &ss, NULL) < 0)
                return -errno;
        r = sd_event_default(&s->loop);
        if (r < 0)
                return r;
        /* A NULL handler makes the signal end the loop. */
        r = sd_event_add_signal(s->loop, NULL, SIGTERM, NULL, NULL);
        if (r >= 0)
                r = sd_event_add_signal(s->loop, NULL, SIGINT, NULL, NULL);
        if (r >= 0)
                r = sd_event_add_io(s->loop, &s->listen_src, lfd, EPOLLIN, on_listen, s);
        if (r >= 0)
                r = sd_event_loop(s->loop);
        while (s->conns)
                conn_free(s->conns);
        sd_event_source_disable_unref(s->listen_src);
        s->loop = sd_event_unref(s->loop);
        return r;
}

int main(int argc, char *argv[]) {
        struct server s = { 0 };

        if (argc != 2 || argv[1][0] == '-') {
                fprintf(stderr, "usage: echod SOCKETPATH\n");
                return 2;
        }
        raise_fd_limit();
        int lfd = listen_unix(argv[1]);
        if (lfd < 0) {
                fprintf(stderr, "echod: cannot listen on %s: %s\n", argv[1],
                        lfd == -EEXIST ? "path exists and is not a socket" : strerror(-lfd));
                return 1;
        }
        int r = server_run(&s, lfd);
        close(lfd);
        unlink(argv[1]);
        if (r < 0) {
                fprintf(stderr, "echod: event loop: %s\n", strerror(-r));
                return 1;
        }
        return 0;
}
