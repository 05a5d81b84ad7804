/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * loadgen: closed-loop load for cofferd and for echod, through one code path.
 *
 *   loadgen --socket PATH --clients C --seconds T --mode get|echo|lib-get|token|status
 *           [--name NAME] [--audience AUD] [--ttl SEC] [--label LABEL]
 *           [--max-ops N] [--warmup-ms MS] [--max]
 *
 * Each of C threads owns one connection and does blocking round trips.
 * get and echo: build an OP_GET frame for NAME with the wire writer, send it,
 * read one whole reply. Only the check of the reply differs (get: a GET reply
 * with a T_VALUE; echo: the request's own body back), so the coffer/echo
 * ratio is the daemon's cost.
 * lib-get and token go through libcoffer as an application would:
 * coffer_get(NAME), or coffer_token_issue(AUD, TTL) with the token freed at
 * once; lib-get is the baseline that token is compared with, since both pay
 * the same client-side cost (guarded memory for every reply).
 * status: OP_STATUS round trips (answered sealed or not: for latency while
 * the daemon unseals).
 * Latencies go to a per-thread histogram (1 us buckets, no locks). Prints one
 * line (max_us only with --max):
 *
 *   bench LABEL clients=C ops_per_s=X p50_us=Y p99_us=Z [max_us=M]
 *
 * and exits non-zero, without that line, if any request failed.
 *
 * SIGUSR1 ends the measured window early (--seconds is then an upper bound),
 * for a window whose end is known only when it comes.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "coffer.h"
#include "proto.h"
#include "util.h"
#include "wire.h"

#define CLIENTS_MAX     4096
#define SECONDS_MAX     86400.0
#define RBUF_INITIAL    (64u * 1024u)
#define HIST_FINE       65536u /* 1 us buckets: 0 .. 65.535 ms */
#define HIST_COARSE     65536u /* 1 ms buckets: up to 65.5 s, last one open */

enum mode { MODE_GET, MODE_ECHO, MODE_LIB_GET, MODE_TOKEN, MODE_STATUS };
enum phase { PHASE_WARMUP, PHASE_MEASURE, PHASE_STOP };

struct opts {
        const char *socket;
        const char *name;
        const char *label;
        const char *audience;
        uint64_t ttl;
        bool show_max;
        enum mode mode;
        unsigned clients;
        double seconds;
        uint64_t max_ops;    /* total; 0 = bounded by time only */
        uint64_t warmup_ms;
};

struct hist {
        uint32_t fine[HIST_FINE];
        uint32_t coarse[HIST_COARSE];
};

struct worker {
        const struct opts *o;
        pthread_t thread;
        int fd;
        coffer *c;           /* lib-get and token modes */
        uint64_t quota;      /* measured ops to do; 0 = unlimited */
        struct wire_writer req;
        uint8_t *rbuf;
        size_t rcap;
        struct hist *h;
        /* results */
        uint64_t ops;
        uint64_t errors;     /* error replies; the thread carries on */
        bool fatal;          /* broken connection or protocol: the thread stopped */
        uint64_t last_ns;    /* completion time of the last measured op */
        uint64_t max_ns;     /* slowest measured op */
        char first_error[160];
};

static _Atomic int phase = PHASE_WARMUP;
static _Atomic unsigned running;
static pthread_barrier_t start_barrier;

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void hist_add(struct hist *h, uint64_t ns) {
        uint64_t us = (ns + 500) / 1000;
        if (us < HIST_FINE)
                h->fine[us]++;
        else
                h->coarse[us / 1000 < HIST_COARSE ? us / 1000 : HIST_COARSE - 1]++;
}

/* Smallest latency (us) at or below which a fraction q of the samples lie. */
static uint64_t hist_quantile(const uint64_t *fine, const uint64_t *coarse, uint64_t total, double q) {
        uint64_t want = (uint64_t)(q * (double)total + 0.999999), seen = 0;
        if (want == 0)
                want = 1;
        for (size_t i = 0; i < HIST_FINE; i++)
                if ((seen += fine[i]) >= want)
                        return i;
        for (size_t i = 0; i < HIST_COARSE; i++)
                if ((seen += coarse[i]) >= want)
                        return i * 1000 + 500;
        return (uint64_t)HIST_COARSE * 1000;
}

static void worker_fail(struct worker *w, bool fatal, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void worker_fail(struct worker *w, bool fatal, const char *fmt, ...) {
        va_list ap;
        if (fatal)
                w->fatal = true;
        else
                w->errors++;
        if (w->first_error[0])
                return;
        va_start(ap, fmt);
        vsnprintf(w->first_error, sizeof w->first_error, fmt, ap);
        va_end(ap);
}

static int send_all(int fd, const uint8_t *p, size_t n) {
        while (n > 0) {
                ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                p += k;
                n -= (size_t)k;
        }
        return 0;
}

/* Read until [have, need) is filled; more than one frame is a protocol error. */
static int recv_until(struct worker *w, size_t *have, size_t need) {
        while (*have < need) {
                ssize_t k = recv(w->fd, w->rbuf + *have, w->rcap - *have, 0);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        return -ECONNRESET;
                *have += (size_t)k;
        }
        return 0;
}

/* One whole reply frame into w->rbuf. */
static int recv_frame(struct worker *w, struct wire_header *h) {
        size_t have = 0;
        int r = recv_until(w, &have, WIRE_HEADER_SIZE);
        if (r < 0)
                return r;
        r = wire_header_parse(h, w->rbuf);
        if (r < 0)
                return r;
        if (h->body_len > WIRE_BODY_MAX)
                return -EMSGSIZE;
        size_t need = WIRE_HEADER_SIZE + (size_t)h->body_len;
        if (need > w->rcap) {
                uint8_t *p = realloc(w->rbuf, need);
                if (!p)
                        return -ENOMEM;
                w->rbuf = p;
                w->rcap = need;
        }
        r = recv_until(w, &have, need);
        if (r < 0)
                return r;
        return have == need ? 0 : -EPROTO;
}

static void describe_error_reply(struct worker *w, const struct wire_msg *m) {
        uint64_t code = 0;
        char msg[128] = "";
        (void)wire_get_u64(m, T_ERR_CODE, &code);
        (void)wire_get_str(m, T_ERR_MSG, msg, sizeof msg);
        worker_fail(w, false, "server refused GET: %s (%s)",
                    code > 0 && code < 4096 ? strerror((int)code) : "unknown error", msg);
}

/* The only mode-dependent step. Reply header already matched the request. */
static void check_reply(struct worker *w, const struct wire_msg *m, const uint8_t *body, size_t len) {
        const uint8_t *req_body = w->req.p + WIRE_HEADER_SIZE;
        size_t req_len = w->req.len - WIRE_HEADER_SIZE;
        const uint8_t *v;
        size_t vlen;

        uint64_t sealed;

        if (w->o->mode == MODE_ECHO) {
                if (len != req_len || memcmp(body, req_body, len) != 0)
                        worker_fail(w, false, "echo reply differs from the request");
        } else if (w->o->mode == MODE_STATUS) {
                if (wire_get_u64(m, T_SEALED, &sealed) < 0)
                        worker_fail(w, false, "STATUS reply has no T_SEALED field");
        } else if (wire_get_bytes(m, T_VALUE, &v, &vlen) < 0) {
                worker_fail(w, false, "GET reply has no T_VALUE bytes field");
        }
}

/* One round trip. false when the connection can no longer be trusted. */
static bool round_trip(struct worker *w, uint32_t id) {
        struct wire_header h;
        struct wire_msg m;
        int r;

        uint16_t op = w->o->mode == MODE_STATUS ? OP_STATUS : OP_GET;

        wire_writer_reset(&w->req);
        if (!wire_frame_begin(&w->req, op, id) || (op == OP_GET && !wire_put_str(&w->req, T_NAME, w->o->name)) ||
            wire_frame_end(&w->req) < 0) {
                worker_fail(w, true, "cannot build the GET frame");
                return false;
        }
        r = send_all(w->fd, w->req.p, w->req.len);
        if (r >= 0)
                r = recv_frame(w, &h);
        if (r < 0) {
                worker_fail(w, true, "round trip failed: %s", strerror(-r));
                return false;
        }
        if (h.request_id != id) {
                worker_fail(w, true, "reply for request %u, expected %u", h.request_id, id);
                return false;
        }
        const uint8_t *body = w->rbuf + WIRE_HEADER_SIZE;
        if (wire_body_parse(&m, body, h.body_len) < 0) {
                worker_fail(w, false, "reply body does not parse");
        } else if (h.opcode == OP_ERROR) {
                describe_error_reply(w, &m);
        } else if (h.opcode != (op | PROTO_REPLY_BIT)) {
                worker_fail(w, false, "reply opcode 0x%04x, expected 0x%04x", h.opcode,
                            (unsigned)(op | PROTO_REPLY_BIT));
        } else {
                check_reply(w, &m, body, h.body_len);
        }
        return true;
}

static bool is_lib_mode(enum mode m) {
        return m == MODE_LIB_GET || m == MODE_TOKEN;
}

/* One libcoffer call. A timeout or a broken connection stops the thread. */
static bool lib_round_trip(struct worker *w) {
        coffer_secret *s = NULL;
        uint64_t expires = 0;
        int r;

        if (w->o->mode == MODE_TOKEN)
                r = coffer_token_issue(w->c, &s, w->o->audience, w->o->ttl, &expires);
        else
                r = coffer_get(w->c, &s, w->o->name, 0);
        coffer_secret_free(s);
        if (r == -ETIMEDOUT || r == -EPIPE || r == -ECONNRESET || r == -EPROTO) {
                worker_fail(w, true, "%s: %s", w->o->mode == MODE_TOKEN ? "token issue" : "get", coffer_last_error());
                return false;
        }
        if (r < 0)
                worker_fail(w, false, "server refused %s: %s (%s)", w->o->mode == MODE_TOKEN ? "token issue" : "get",
                            strerror(-r), coffer_last_error());
        return true;
}

static void *worker_main(void *arg) {
        struct worker *w = arg;

        pthread_barrier_wait(&start_barrier);
        for (uint32_t id = 1;; id++) {
                if (atomic_load_explicit(&phase, memory_order_acquire) == PHASE_STOP)
                        break;
                uint64_t t0 = now_ns();
                if (!(is_lib_mode(w->o->mode) ? lib_round_trip(w) : round_trip(w, id)))
                        break;
                uint64_t t1 = now_ns();
                /* Counted only if it finished inside the measured window. */
                if (atomic_load_explicit(&phase, memory_order_acquire) != PHASE_MEASURE)
                        continue;
                hist_add(w->h, t1 - t0);
                w->last_ns = t1;
                if (t1 - t0 > w->max_ns)
                        w->max_ns = t1 - t0;
                if (++w->ops == w->quota)
                        break;
        }
        atomic_fetch_sub(&running, 1);
        return NULL;
}

static int connect_unix(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path));
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

static int lib_connect(struct worker *w) {
        int r = coffer_connect(&w->c, w->o->socket);
        if (r < 0)
                fprintf(stderr, "loadgen: %s\n", coffer_last_error());
        return r; /* libcoffer's own 60 s timeout: a stall that long fails the run */
}

static int worker_init(struct worker *w, const struct opts *o, unsigned i) {
        w->o = o;
        w->fd = -1;
        wire_writer_init(&w->req);
        if (o->max_ops)
                w->quota = o->max_ops / o->clients + (i < o->max_ops % o->clients);
        w->rcap = RBUF_INITIAL;
        w->rbuf = malloc(w->rcap);
        w->h = calloc(1, sizeof *w->h); /* untouched pages stay unmapped */
        if (!w->rbuf || !w->h)
                return -ENOMEM;
        if (is_lib_mode(o->mode))
                return lib_connect(w);
        w->fd = connect_unix(o->socket);
        return w->fd < 0 ? w->fd : 0;
}

static void worker_done(struct worker *w) {
        if (w->fd >= 0)
                close(w->fd);
        if (w->c)
                coffer_disconnect(w->c);
        wire_writer_free(&w->req);
        if (w->rbuf)
                sodium_memzero(w->rbuf, w->rcap); /* held a secret value */
        free(w->rbuf);
        free(w->h);
}

static void sleep_ns(uint64_t ns) {
        struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000u), .tv_nsec = (long)(ns % 1000000000u) };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* Sleep up to ns; true when SIGUSR1 (blocked in every thread) came. */
static bool wait_tick(const sigset_t *stop, uint64_t ns) {
        struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000u), .tv_nsec = (long)(ns % 1000000000u) };
        return sigtimedwait(stop, NULL, &ts) == SIGUSR1;
}

/* Warm up, then measure until the time is up, every quota is done, or SIGUSR1. */
static uint64_t drive(const struct opts *o, const sigset_t *stop) {
        pthread_barrier_wait(&start_barrier);
        sleep_ns(o->warmup_ms * 1000000u);
        uint64_t start = now_ns();
        atomic_store_explicit(&phase, PHASE_MEASURE, memory_order_release);
        uint64_t deadline = start + (uint64_t)(o->seconds * 1e9);
        for (uint64_t t = start; t < deadline && atomic_load(&running) > 0; t = now_ns()) {
                uint64_t left = deadline - t;
                if (wait_tick(stop, left < 10000000u ? left : 10000000u))
                        break;
        }
        atomic_store_explicit(&phase, PHASE_STOP, memory_order_release);
        return start;
}

static int report(const struct opts *o, struct worker *ws, uint64_t start) {
        uint64_t *fine = calloc(HIST_FINE, sizeof *fine), *coarse = calloc(HIST_COARSE, sizeof *coarse);
        uint64_t ops = 0, errors = 0, end = start, max_ns = 0;
        unsigned broken = 0;
        const char *first = NULL;

        if (!fine || !coarse) {
                free(fine);
                free(coarse);
                fprintf(stderr, "loadgen: out of memory\n");
                return 1;
        }
        for (unsigned i = 0; i < o->clients; i++) {
                struct worker *w = &ws[i];
                for (size_t b = 0; b < HIST_FINE; b++)
                        fine[b] += w->h->fine[b];
                for (size_t b = 0; b < HIST_COARSE; b++)
                        coarse[b] += w->h->coarse[b];
                ops += w->ops;
                errors += w->errors;
                broken += w->fatal;
                if (w->last_ns > end)
                        end = w->last_ns;
                if (w->max_ns > max_ns)
                        max_ns = w->max_ns;
                if (!first && w->first_error[0])
                        first = w->first_error;
        }
        int ret = 0;
        if (errors || broken || ops == 0) {
                fprintf(stderr, "loadgen: %s: FAILED: %" PRIu64 " error replies, %u of %u connections broken, %" PRIu64 " ops measured; first: %s\n",
                        o->label, errors, broken, o->clients, ops, first ? first : "no request completed in the measured window");
                ret = 1;
        } else {
                printf("bench %s clients=%u ops_per_s=%.0f p50_us=%" PRIu64 " p99_us=%" PRIu64, o->label,
                       o->clients, (double)ops * 1e9 / (double)(end - start),
                       hist_quantile(fine, coarse, ops, 0.50), hist_quantile(fine, coarse, ops, 0.99));
                if (o->show_max)
                        printf(" max_us=%" PRIu64, (max_ns + 500) / 1000);
                printf("\n");
        }
        free(fine);
        free(coarse);
        return ret;
}

static int run(const struct opts *o) {
        struct worker *ws = calloc(o->clients, sizeof *ws);
        sigset_t stop;
        unsigned started = 0;
        int ret = 1;

        /* Blocked before any thread starts, so only drive() takes it. */
        sigemptyset(&stop);
        sigaddset(&stop, SIGUSR1);
        pthread_sigmask(SIG_BLOCK, &stop, NULL);
        if (!ws || pthread_barrier_init(&start_barrier, NULL, o->clients + 1) != 0) {
                fprintf(stderr, "loadgen: out of memory\n");
                free(ws);
                return 1;
        }
        for (unsigned i = 0; i < o->clients; i++)
                ws[i].fd = -1;
        for (unsigned i = 0; i < o->clients; i++) {
                int r = worker_init(&ws[i], o, i);
                if (r < 0) {
                        fprintf(stderr, "loadgen: client %u: cannot connect to %s: %s\n", i, o->socket, strerror(-r));
                        goto out;
                }
        }
        atomic_store(&running, o->clients);
        for (; started < o->clients; started++)
                if (pthread_create(&ws[started].thread, NULL, worker_main, &ws[started]) != 0) {
                        fprintf(stderr, "loadgen: cannot start thread %u\n", started);
                        /* Threads already waiting on the barrier would hang: give up hard. */
                        _exit(1);
                }
        uint64_t start = drive(o, &stop);
        for (unsigned i = 0; i < started; i++)
                pthread_join(ws[i].thread, NULL);
        ret = report(o, ws, start);
out:
        for (unsigned i = 0; i < o->clients; i++)
                worker_done(&ws[i]);
        pthread_barrier_destroy(&start_barrier);
        free(ws);
        return ret;
}

static bool parse_seconds(const char *s, double *out) {
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (errno || end == s || *end || !(v > 0.0 && v <= SECONDS_MAX))
                return false;
        *out = v;
        return true;
}

static bool parse_mode(const char *s, enum mode *out) {
        static const struct { const char *name; enum mode mode; } modes[] = {
                { "get", MODE_GET }, { "echo", MODE_ECHO }, { "lib-get", MODE_LIB_GET }, { "token", MODE_TOKEN },
                { "status", MODE_STATUS },
        };
        for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
                if (strcmp(s, modes[i].name) == 0) {
                        *out = modes[i].mode;
                        return true;
                }
        return false;
}

static void usage(FILE *f) {
        fprintf(f, "usage: loadgen --socket PATH --clients C --seconds T --mode get|echo|lib-get|token|status\n"
                   "               [--name NAME] [--audience AUD] [--ttl SEC] [--label LABEL]\n"
                   "               [--max-ops N] [--warmup-ms MS] [--max]\n");
}

static int parse_opts(int argc, char *argv[], struct opts *o) {
        static const struct option longopts[] = {
                { "socket", required_argument, NULL, 's' }, { "clients", required_argument, NULL, 'c' },
                { "seconds", required_argument, NULL, 't' }, { "mode", required_argument, NULL, 'm' },
                { "name", required_argument, NULL, 'n' },    { "label", required_argument, NULL, 'l' },
                { "max-ops", required_argument, NULL, 'o' }, { "warmup-ms", required_argument, NULL, 'w' },
                { "audience", required_argument, NULL, 'a' }, { "ttl", required_argument, NULL, 'T' },
                { "max", no_argument, NULL, 'M' },
                { "help", no_argument, NULL, 'h' },          { 0 }
        };
        uint64_t v;
        bool have_mode = false, have_warmup = false, have_seconds = false;
        int c;

        *o = (struct opts){ .name = "bench/small", .audience = "bench-api", .ttl = 300, .clients = 1, .seconds = 5.0,
                            .warmup_ms = 500 };
        while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
                switch (c) {
                case 's': o->socket = optarg; break;
                case 'n': o->name = optarg; break;
                case 'l': o->label = optarg; break;
                case 'c':
                        if (parse_u64(optarg, 1, CLIENTS_MAX, &v) < 0)
                                return fprintf(stderr, "loadgen: --clients must be 1..%u: %s\n", CLIENTS_MAX, optarg), -EINVAL;
                        o->clients = (unsigned)v;
                        break;
                case 't':
                        if (!parse_seconds(optarg, &o->seconds))
                                return fprintf(stderr, "loadgen: --seconds must be in (0, %.0f]: %s\n", SECONDS_MAX, optarg), -EINVAL;
                        have_seconds = true;
                        break;
                case 'm':
                        if (!parse_mode(optarg, &o->mode))
                                return fprintf(stderr, "loadgen: --mode must be get, echo, lib-get or token: %s\n", optarg), -EINVAL;
                        have_mode = true;
                        break;
                case 'a': o->audience = optarg; break;
                case 'T':
                        if (parse_u64(optarg, 1, 366u * 86400u, &o->ttl) < 0)
                                return fprintf(stderr, "loadgen: --ttl must be 1..31622400 seconds: %s\n", optarg), -EINVAL;
                        break;
                case 'M': o->show_max = true; break;
                case 'o':
                        if (parse_u64(optarg, 1, UINT64_MAX, &o->max_ops) < 0)
                                return fprintf(stderr, "loadgen: --max-ops must be a positive integer: %s\n", optarg), -EINVAL;
                        break;
                case 'w':
                        if (parse_u64(optarg, 0, 600000, &o->warmup_ms) < 0)
                                return fprintf(stderr, "loadgen: --warmup-ms must be 0..600000: %s\n", optarg), -EINVAL;
                        have_warmup = true;
                        break;
                case 'h': usage(stdout); exit(0);
                default: usage(stderr); return -EINVAL;
                }
        }
        if (optind < argc || !o->socket || !have_mode) {
                usage(stderr);
                return -EINVAL;
        }
        if (!proto_name_valid(o->name))
                return fprintf(stderr, "loadgen: --name is not a valid secret name: %s\n", o->name), -EINVAL;
        if (!proto_audience_valid(o->audience))
                return fprintf(stderr, "loadgen: --audience is not a valid audience: %s\n", o->audience), -EINVAL;
        if (o->max_ops && o->max_ops < o->clients)
                return fprintf(stderr, "loadgen: --max-ops must be at least --clients\n"), -EINVAL;
        /* A quick check by count: no warm-up, no time limit unless asked. */
        if (o->max_ops && !have_warmup)
                o->warmup_ms = 0;
        if (o->max_ops && !have_seconds)
                o->seconds = SECONDS_MAX;
        if (!o->label) {
                static const char *const labels[] = { [MODE_GET] = "coffer-get", [MODE_ECHO] = "echo",
                                                      [MODE_LIB_GET] = "coffer-lib-get", [MODE_TOKEN] = "token-issue" };
                o->label = labels[o->mode];
        }
        return 0;
}

int main(int argc, char *argv[]) {
        struct opts o;

        if (parse_opts(argc, argv, &o) < 0)
                return 2;
        if (sodium_init() < 0) {
                fprintf(stderr, "loadgen: libsodium failed to initialize\n");
                return 1;
        }
        return run(&o);
}
