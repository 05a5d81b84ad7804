/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * crowd: many bad neighbours and one good client.
 *
 *   crowd SOCKET --idle N --garbage M --seconds S [--name SECRET] [--pace-ms MS] [--euid-base U]
 *         [--partial P] [--unread U --unread-get SECRET]
 *
 * Opens N idle connections that never send a byte (reconnecting any the
 * daemon closes, and counting them), and M threads that send garbage in a
 * loop: random bytes, truncated headers, oversized length headers, and
 * frames whose body never finishes, reconnecting whenever dropped. Meanwhile
 * one well-behaved client (libcoffer: coffer_connect + coffer_get of SECRET,
 * then coffer_disconnect) runs every --pace-ms (default 5) and measures.
 * Without --name there is no good client and crowd only holds connections.
 * With --euid-base U, idle connection i is first opened with effective uid
 * U + i (in a user namespace: as many subordinate uids), reconnects as the
 * caller. With --partial P, P more connections each send a frame header
 * announcing the largest body and then all of that body but its last byte,
 * as fast as the daemon takes it, and hold it (memory pinned by one uid).
 * With --unread U, U more connections each ask for SECRET once and never
 * read the reply (replies pinned by one uid).
 *
 * Prints one line:
 *   served=K failed=F max_latency_ms=X idle=N idle_closed=C garbage_conns=G
 * and exits 0 iff the good client succeeded every time it tried and was
 * served at least once per 100 ms of the run (and every idle connection
 * could be opened). Failures are described on stderr.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "coffer.h"
#include "proto.h"
#include "util.h"
#include "wire.h"

#define IDLE_MAX 100000u
#define GARBAGE_MAX 256u

struct opts {
        const char *socket;
        const char *name;
        unsigned idle;
        unsigned garbage;
        unsigned seconds;
        unsigned pace_ms;
        long euid_base;      /* -1 = connect as the caller */
        unsigned partial;
        unsigned unread;
        const char *unread_get;
};

static struct opts o = { .pace_ms = 5, .euid_base = -1 };
static atomic_bool stop;
static atomic_ulong garbage_conns;

static int usage(void) {
        fputs("usage: crowd SOCKET --idle N --garbage M --seconds S [--name SECRET] [--pace-ms MS] [--euid-base U] "
              "[--partial P] [--unread U --unread-get SECRET]\n",
              stderr);
        return 2;
}

static uint64_t now_ms(void) {
        return now_mono_usec() / 1000u;
}

static void sleep_ms(unsigned ms) {
        struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static int connect_raw(void) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        strcpy_bounded(sa.sun_path, sizeof(sa.sun_path), o.socket);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                int rc = -errno;
                close(fd);
                return rc;
        }
        return fd;
}

/* A connection, retried for a while: the accept backlog may be full. */
static int connect_retry(void) {
        for (int i = 0; i < 200; i++) {
                int fd = connect_raw();
                if (fd >= 0 || (fd != -EAGAIN && fd != -ECONNREFUSED && fd != -EINTR))
                        return fd;
                sleep_ms(10);
        }
        return -ETIMEDOUT;
}

static bool raise_nofile(rlim_t need) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return false;
        if (rl.rlim_cur >= need)
                return true;
        if (rl.rlim_max < need) /* raising the hard limit works for root only */
                return setrlimit(RLIMIT_NOFILE, &(struct rlimit){ need, need }) == 0;
        rl.rlim_cur = need;
        return setrlimit(RLIMIT_NOFILE, &rl) == 0;
}

/* ---- garbage senders ---- */

static void header(uint8_t out[static WIRE_HEADER_SIZE], uint32_t magic, uint16_t op, uint32_t body_len) {
        struct wire_writer w;
        wire_writer_init(&w);
        wire_write_u32(&w, magic);
        wire_write_u16(&w, WIRE_VERSION);
        wire_write_u16(&w, op);
        wire_write_u32(&w, 1);
        wire_write_u32(&w, body_len);
        memcpy(out, w.p, WIRE_HEADER_SIZE);
        wire_writer_free(&w);
}

/* Send one kind of garbage on fd; the daemon may close at any point. */
static void send_garbage(int fd, unsigned kind) {
        uint8_t buf[8192];
        size_t n = 0;
        switch (kind) {
        case 0: /* random bytes: bad magic, almost surely */
                n = 1 + randombytes_uniform(sizeof(buf));
                randombytes_buf(buf, n);
                break;
        case 1: /* a truncated header, then EOF */
                header(buf, WIRE_MAGIC, OP_STATUS, 0);
                n = 1 + randombytes_uniform(WIRE_HEADER_SIZE - 1);
                break;
        case 2: /* a length far past the cap */
                header(buf, WIRE_MAGIC, OP_PUT, UINT32_MAX - randombytes_uniform(1000));
                n = WIRE_HEADER_SIZE;
                break;
        case 3: /* a big frame whose body never finishes */
                header(buf, WIRE_MAGIC, OP_PUT, WIRE_BODY_MAX);
                randombytes_buf(buf + WIRE_HEADER_SIZE, sizeof(buf) - WIRE_HEADER_SIZE);
                n = sizeof(buf);
                break;
        default: /* a valid header, then a body of random fields */
                n = WIRE_HEADER_SIZE + 64;
                header(buf, WIRE_MAGIC, (uint16_t) randombytes_uniform(64), 64);
                randombytes_buf(buf + WIRE_HEADER_SIZE, 64);
                break;
        }
        (void) !send(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* Drain what the daemon answers for a moment, so its replies do not pile up. */
static void drain(int fd, unsigned ms) {
        uint8_t buf[4096];
        struct pollfd p = { .fd = fd, .events = POLLIN };
        while (poll(&p, 1, (int) ms) > 0 && recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
                ;
}

static void *garbage_thread(void *arg) {
        (void) arg;
        while (!atomic_load(&stop)) {
                int fd = connect_raw();
                if (fd < 0) {
                        sleep_ms(5);
                        continue;
                }
                atomic_fetch_add(&garbage_conns, 1);
                unsigned kind = randombytes_uniform(5);
                for (int i = 0; i < 4 && !atomic_load(&stop); i++) {
                        send_garbage(fd, kind);
                        drain(fd, 2);
                }
                close(fd);
        }
        return NULL;
}

/* ---- idle connections ---- */

struct idle {
        struct pollfd *fds;
        unsigned n;
        unsigned long closed;
        bool ok;
};

static void *idle_thread(void *arg) {
        struct idle *I = arg;
        uint8_t buf[4096];
        while (!atomic_load(&stop)) {
                int n = poll(I->fds, I->n, 100);
                if (n <= 0)
                        continue;
                for (unsigned i = 0; i < I->n; i++) {
                        if (!I->fds[i].revents)
                                continue;
                        ssize_t k = recv(I->fds[i].fd, buf, sizeof(buf), MSG_DONTWAIT);
                        if (k > 0 || (k < 0 && errno == EAGAIN))
                                continue; /* an error frame before the close */
                        close(I->fds[i].fd);
                        I->closed++;
                        I->fds[i].fd = connect_retry();
                        if (I->fds[i].fd < 0)
                                I->fds[i].fd = -1; /* poll ignores it */
                }
        }
        return NULL;
}

static bool idle_open(struct idle *I) {
        I->fds = calloc(I->n ? I->n : 1, sizeof(*I->fds));
        if (!I->fds)
                return false;
        for (unsigned i = 0; i < I->n; i++) {
                if (o.euid_base >= 0 && seteuid((uid_t) (o.euid_base + i)) < 0) {
                        fprintf(stderr, "crowd: seteuid(%lu): %s\n", (unsigned long) o.euid_base + i, strerror(errno));
                        return false;
                }
                int fd = connect_retry();
                if (o.euid_base >= 0 && seteuid(0) < 0) {
                        fprintf(stderr, "crowd: seteuid(0): %s\n", strerror(errno));
                        return false;
                }
                if (fd < 0) {
                        fprintf(stderr, "crowd: idle connection %u of %u failed: %s\n", i + 1, I->n, strerror(-fd));
                        for (unsigned j = 0; j < i; j++)
                                close(I->fds[j].fd);
                        I->n = 0;
                        return false;
                }
                I->fds[i] = (struct pollfd){ .fd = fd, .events = POLLIN | POLLRDHUP };
        }
        return true;
}

/* ---- nearly complete large frames ---- */

struct partial {
        int fd;
        size_t off;          /* bytes of the frame sent */
};

static void *partial_thread(void *arg) {
        struct partial *P = arg;
        size_t len = WIRE_HEADER_SIZE + WIRE_BODY_MAX - 1;
        uint8_t *frame = calloc(1, len);
        if (!frame)
                return NULL;
        header(frame, WIRE_MAGIC, OP_PUT, WIRE_BODY_MAX);
        while (!atomic_load(&stop)) {
                bool busy = false;
                for (unsigned i = 0; i < o.partial; i++) {
                        if (P[i].fd < 0 || P[i].off == len)
                                continue;
                        ssize_t k = send(P[i].fd, frame + P[i].off, len - P[i].off, MSG_NOSIGNAL | MSG_DONTWAIT);
                        if (k > 0) {
                                P[i].off += (size_t) k;
                                busy = true;
                        }
                }
                if (!busy)
                        sleep_ms(10);
        }
        free(frame);
        return NULL;
}

static bool partial_open(struct partial *P) {
        for (unsigned i = 0; i < o.partial; i++) {
                P[i].fd = connect_retry();
                if (P[i].fd < 0) {
                        fprintf(stderr, "crowd: partial connection %u of %u failed: %s\n", i + 1, o.partial,
                                strerror(-P[i].fd));
                        return false;
                }
        }
        return true;
}

/* Connections that ask for a secret and never read the answer. */
static bool unread_open(int *fds) {
        struct wire_writer w;
        wire_writer_init(&w);
        bool ok = wire_frame_begin(&w, OP_GET, 1) && wire_put_str(&w, T_NAME, o.unread_get) && wire_frame_end(&w) == 0;
        for (unsigned i = 0; ok && i < o.unread; i++) {
                fds[i] = connect_retry();
                ok = fds[i] >= 0 && send(fds[i], w.p, w.len, MSG_NOSIGNAL) == (ssize_t) w.len;
                if (!ok)
                        fprintf(stderr, "crowd: unread connection %u of %u failed\n", i + 1, o.unread);
        }
        wire_writer_free(&w);
        return ok;
}

/* ---- the good client ---- */

struct good {
        unsigned long served, failed;
        uint64_t max_latency_ms;
};

static int good_once(void) {
        coffer *c = NULL;
        coffer_secret *s = NULL;
        int rc = coffer_connect(&c, o.socket);
        if (rc == 0) {
                rc = coffer_get(c, &s, o.name, 0);
                coffer_secret_free(s);
                coffer_disconnect(c);
        }
        return rc;
}

static void good_run(struct good *g, uint64_t end) {
        while (now_ms() < end) {
                uint64_t t0 = now_ms();
                int rc = good_once();
                uint64_t dt = now_ms() - t0;
                if (dt > g->max_latency_ms)
                        g->max_latency_ms = dt;
                if (rc < 0) {
                        if (g->failed++ < 5)
                                fprintf(stderr, "crowd: good client failed: %s\n", coffer_last_error());
                } else
                        g->served++;
                sleep_ms(o.pace_ms);
        }
}

static bool parse_args(int argc, char **argv) {
        uint64_t v;
        if (argc < 2 || argv[1][0] == '-')
                return false;
        o.socket = argv[1];
        for (int i = 2; i + 1 < argc; i += 2) {
                const char *k = argv[i], *a = argv[i + 1];
                if (strcmp(k, "--name") == 0) {
                        o.name = a;
                        continue;
                }
                if (strcmp(k, "--unread-get") == 0) {
                        o.unread_get = a;
                        continue;
                }
                if (parse_u64(a, 0, IDLE_MAX, &v) < 0)
                        return false;
                if (strcmp(k, "--idle") == 0)
                        o.idle = (unsigned) v;
                else if (strcmp(k, "--garbage") == 0 && v <= GARBAGE_MAX)
                        o.garbage = (unsigned) v;
                else if (strcmp(k, "--seconds") == 0 && v >= 1 && v <= 3600)
                        o.seconds = (unsigned) v;
                else if (strcmp(k, "--pace-ms") == 0 && v <= 1000)
                        o.pace_ms = (unsigned) v;
                else if (strcmp(k, "--euid-base") == 0 && v >= 1)
                        o.euid_base = (long) v;
                else if (strcmp(k, "--partial") == 0 && v <= 4096)
                        o.partial = (unsigned) v;
                else if (strcmp(k, "--unread") == 0 && v <= 4096)
                        o.unread = (unsigned) v;
                else
                        return false;
        }
        return (argc % 2) == 0 && o.seconds > 0 && (!o.unread || o.unread_get);
}

int main(int argc, char **argv) {
        pthread_t gt[GARBAGE_MAX], it, pt;
        struct idle I = { 0 };
        struct good g = { 0 };
        if (!parse_args(argc, argv))
                return usage();
        if (sodium_init() < 0)
                return 1;
        if (!raise_nofile((rlim_t) o.idle + o.garbage + o.partial + 64)) {
                fprintf(stderr, "crowd: cannot raise RLIMIT_NOFILE to %u\n", o.idle + o.garbage + 64);
                return 1;
        }
        I.n = o.idle;
        I.ok = idle_open(&I);
        if (I.ok) /* lets a test wait until the idle connections are in */
                fprintf(stderr, "crowd: %u idle connections open\n", I.n);
        pthread_create(&it, NULL, idle_thread, &I);
        struct partial *P = calloc(o.partial ? o.partial : 1, sizeof(*P));
        bool partial_ok = P && partial_open(P);
        if (partial_ok && o.partial)
                fprintf(stderr, "crowd: %u partial frames started\n", o.partial);
        if (partial_ok)
                pthread_create(&pt, NULL, partial_thread, P);
        int *U = malloc((o.unread ? o.unread : 1) * sizeof(*U));
        for (unsigned i = 0; U && i < o.unread; i++)
                U[i] = -1;
        bool unread_ok = U && (!o.unread || unread_open(U));
        if (unread_ok && o.unread)
                fprintf(stderr, "crowd: %u unread requests sent\n", o.unread);
        for (unsigned i = 0; i < o.garbage; i++)
                pthread_create(&gt[i], NULL, garbage_thread, NULL);

        uint64_t start = now_ms(), end = start + (uint64_t) o.seconds * 1000u;
        if (o.name)
                good_run(&g, end);
        else
                while (now_ms() < end)
                        sleep_ms(50);
        uint64_t elapsed = now_ms() - start;

        atomic_store(&stop, true);
        for (unsigned i = 0; i < o.garbage; i++)
                pthread_join(gt[i], NULL);
        pthread_join(it, NULL);
        size_t partial_sent = 0;
        if (partial_ok) {
                pthread_join(pt, NULL);
                for (unsigned i = 0; i < o.partial; i++)
                        partial_sent += P[i].off;
        }
        for (unsigned i = 0; P && i < o.partial; i++)
                if (P[i].fd >= 0)
                        close(P[i].fd);
        free(P);
        for (unsigned i = 0; U && i < o.unread; i++)
                if (U[i] >= 0)
                        close(U[i]);
        free(U);
        for (unsigned i = 0; i < I.n; i++)
                if (I.fds[i].fd >= 0)
                        close(I.fds[i].fd);
        free(I.fds);

        printf("served=%lu failed=%lu max_latency_ms=%llu idle=%u idle_closed=%lu garbage_conns=%lu partial_sent=%zu\n",
               g.served, g.failed, (unsigned long long) g.max_latency_ms, I.n, I.closed, atomic_load(&garbage_conns),
               partial_sent);
        bool enough = !o.name || g.served >= elapsed / 100;
        if (!enough)
                fprintf(stderr, "crowd: only %lu requests served in %llu ms (want one per 100 ms)\n", g.served,
                        (unsigned long long) elapsed);
        return I.ok && partial_ok && unread_ok && g.failed == 0 && enough ? 0 : 1;
}
