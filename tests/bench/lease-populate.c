/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lease-populate: fill a stopped cofferd's store with token leases through
 * the daemon's own lease code, so every row carries the MAC a real daemon
 * would have written (the master key comes from the keyfile, as `coffer
 * operator unseal --keyfile` would give it).
 *
 *   lease-populate --state-dir DIR --keyfile FILE --count N
 *                  (--ttl SEC | --expire-at UNIX) [--uids U] [--audiences A]
 *                  [--batch B]
 *   lease-populate --state-dir DIR --rows
 *
 * Leases are LEASE_TOKEN, owned by U distinct principals (uid 200000 + k,
 * owner "bench-user-k") for audiences token:aud-0 .. token:aud-(A-1), not
 * renewable, with no per-uid cap. They are committed B at a time (default
 * 100,000) in one store transaction each. Prints
 *
 *   bench lease-populate leases=N ms=T inserts_per_s=X
 *
 * --rows prints the store's lease rows instead, and how many of them have
 * expired by now: `rows=N expired=E`. The daemon must be stopped either
 * way: the store is opened in SQLite's exclusive locking mode.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "lease.h"
#include "seal.h"
#include "store.h"
#include "util.h"

#define KEYFILE_MAX 4096
#define COUNT_MAX 100000000ull
/* Stands in for the signing key id a real token lease carries (43 chars). */
#define KID_PLACEHOLDER "bench-populate-kid-0000000000000000000000000"

struct opts {
        const char *state_dir;
        const char *keyfile;
        uint64_t count;
        uint64_t ttl;           /* 0 = from expire_at */
        uint64_t expire_at;
        uint64_t uids;
        uint64_t audiences;
        uint64_t batch;
        bool rows;
};

static uint64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

static void on_revoke_noop(void *ud, const struct lease *l, const char *why) {
        (void) ud;
        (void) l;
        (void) why;
}

/* The keyfile's bytes in guarded memory; the caller sodium_free's them. */
static int read_keyfile(const char *path, uint8_t **key, size_t *len) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        uint8_t *k = sodium_malloc(KEYFILE_MAX + 1);
        if (!k)
                return -ENOMEM;
        size_t n = 0;
        for (;;) {
                ssize_t r = read(fd, k + n, KEYFILE_MAX + 1 - n);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0) {
                        int e = -errno;
                        sodium_free(k);
                        return e;
                }
                if (r == 0 || (n += (size_t) r) > KEYFILE_MAX)
                        break;
        }
        if (n < 32 || n > KEYFILE_MAX) {
                sodium_free(k);
                return -EINVAL;
        }
        *key = k;
        *len = n;
        return 0;
}

static int unseal(struct seal *s, struct store *st, const char *keyfile) {
        uint8_t *key = NULL;
        size_t len = 0;
        const char *why = "";
        int rc = seal_load(s, st);
        if (rc < 0) {
                fprintf(stderr, "lease-populate: cannot read the seal configuration: %s\n", strerror(-rc));
                return rc;
        }
        rc = read_keyfile(keyfile, &key, &len);
        if (rc < 0) {
                fprintf(stderr, "lease-populate: keyfile %s: %s\n", keyfile,
                        rc == -EINVAL ? "must hold 32 to 4096 bytes" : strerror(-rc));
                return rc;
        }
        rc = seal_unseal(s, st, key, len, &why);
        sodium_free(key);
        if (rc < 0)
                fprintf(stderr, "lease-populate: cannot unseal: %s\n", why && *why ? why : strerror(-rc));
        return rc;
}

static int create_batch(struct lease_mgr *m, struct store *st, const struct opts *o, uint64_t first, uint64_t n) {
        char owner[64], object[64];
        int rc = store_begin(st);
        if (rc < 0)
                return rc;
        for (uint64_t i = first; i < first + n && rc == 0; i++) {
                uint64_t k = i % o->uids, now = now_unix();
                struct lease *l;
                snprintf(owner, sizeof owner, "bench-user-%" PRIu64, k);
                snprintf(object, sizeof object, "token:aud-%" PRIu64, i % o->audiences);
                uint64_t ttl = o->ttl ? o->ttl : o->expire_at - now;
                struct lease_new ln = {
                        .kind = LEASE_TOKEN,
                        .owner_uid = (uint32_t) (200000 + k),
                        .owner = owner,
                        .object = object,
                        .ttl = ttl,
                        .max_ttl = ttl,
                        .audit_session = UINT32_MAX,
                        .data = KID_PLACEHOLDER,
                };
                if (!o->ttl && o->expire_at <= now)
                        rc = -ETIME;
                else
                        rc = lease_create(m, &ln, 0, now, &l);
        }
        if (rc < 0) {
                store_rollback(st);
                return rc;
        }
        return store_commit(st);
}

static int populate(struct store *st, const struct opts *o) {
        struct seal s;
        struct lease_mgr *m = NULL;
        int rc = unseal(&s, st, o->keyfile);
        if (rc < 0) {
                seal_free(&s);
                return rc;
        }
        rc = lease_mgr_new(&m, st, on_revoke_noop, NULL);
        if (rc == 0)
                rc = lease_set_master(m, s.master, now_unix());
        if (rc < 0) {
                fprintf(stderr, "lease-populate: cannot set up the lease manager: %s\n", strerror(-rc));
                goto out;
        }
        uint64_t t0 = now_ms();
        for (uint64_t done = 0; done < o->count && rc >= 0; done += o->batch) {
                uint64_t n = o->count - done < o->batch ? o->count - done : o->batch;
                rc = create_batch(m, st, o, done, n);
                if (rc < 0)
                        fprintf(stderr, "lease-populate: creating leases %" PRIu64 "..%" PRIu64 " failed: %s (%s)\n",
                                done, done + n, rc == -ETIME ? "--expire-at has passed" : strerror(-rc),
                                store_errmsg(st));
        }
        uint64_t ms = now_ms() - t0;
        if (rc >= 0)
                printf("bench lease-populate leases=%" PRIu64 " ms=%" PRIu64 " inserts_per_s=%.0f\n", o->count, ms,
                       (double) o->count * 1000.0 / (double) (ms ? ms : 1));
out:
        lease_mgr_free(m);
        seal_free(&s);
        return rc;
}

struct row_count {
        uint64_t rows, expired, now;
};

static int count_row(void *ud, const struct store_lease *l) {
        struct row_count *c = ud;
        c->rows++;
        c->expired += l->expires <= c->now;
        return 0;
}

static int count_rows(struct store *st) {
        struct row_count c = { .now = now_unix() };
        int rc = store_lease_load(st, count_row, &c);
        if (rc < 0) {
                fprintf(stderr, "lease-populate: cannot read the leases: %s (%s)\n", strerror(-rc), store_errmsg(st));
                return rc;
        }
        printf("rows=%" PRIu64 " expired=%" PRIu64 "\n", c.rows, c.expired);
        return 0;
}

static void usage(FILE *f) {
        fprintf(f, "usage: lease-populate --state-dir DIR --keyfile FILE --count N (--ttl SEC | --expire-at UNIX)\n"
                   "                      [--uids U] [--audiences A] [--batch B]\n"
                   "       lease-populate --state-dir DIR --rows\n");
}

static int parse_num(const char *opt, const char *v, uint64_t min, uint64_t max, uint64_t *out) {
        if (parse_u64(v, min, max, out) == 0)
                return 0;
        fprintf(stderr, "lease-populate: %s must be %" PRIu64 "..%" PRIu64 ": %s\n", opt, min, max, v);
        return -EINVAL;
}

static int parse_opts(int argc, char *argv[], struct opts *o) {
        static const struct option longopts[] = {
                { "state-dir", required_argument, NULL, 'd' }, { "keyfile", required_argument, NULL, 'k' },
                { "count", required_argument, NULL, 'n' },     { "ttl", required_argument, NULL, 't' },
                { "expire-at", required_argument, NULL, 'e' }, { "uids", required_argument, NULL, 'u' },
                { "audiences", required_argument, NULL, 'a' }, { "batch", required_argument, NULL, 'b' },
                { "rows", no_argument, NULL, 'r' },            { "help", no_argument, NULL, 'h' },
                { 0 }
        };
        int c, rc = 0;
        *o = (struct opts){ .uids = 1000, .audiences = 100, .batch = 100000 };
        while (rc == 0 && (c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
                switch (c) {
                case 'd': o->state_dir = optarg; break;
                case 'k': o->keyfile = optarg; break;
                case 'n': rc = parse_num("--count", optarg, 1, COUNT_MAX, &o->count); break;
                case 't': rc = parse_num("--ttl", optarg, 1, 366u * 86400u, &o->ttl); break;
                case 'e': rc = parse_num("--expire-at", optarg, 1, UINT32_MAX, &o->expire_at); break;
                case 'u': rc = parse_num("--uids", optarg, 1, 1000000, &o->uids); break;
                case 'a': rc = parse_num("--audiences", optarg, 1, 1000000, &o->audiences); break;
                case 'b': rc = parse_num("--batch", optarg, 1, COUNT_MAX, &o->batch); break;
                case 'r': o->rows = true; break;
                case 'h': usage(stdout); exit(0);
                default: usage(stderr); return -EINVAL;
                }
        }
        if (rc < 0)
                return rc;
        if (optind < argc || !o->state_dir ||
            (!o->rows && (!o->keyfile || !o->count || !o->ttl == !o->expire_at))) {
                usage(stderr);
                return -EINVAL;
        }
        return 0;
}

int main(int argc, char *argv[]) {
        struct opts o;
        struct store *st = NULL;

        if (parse_opts(argc, argv, &o) < 0)
                return 2;
        if (sodium_init() < 0) {
                fprintf(stderr, "lease-populate: libsodium failed to initialize\n");
                return 1;
        }
        int rc = store_open(&st, o.state_dir);
        if (rc < 0) {
                fprintf(stderr, "lease-populate: cannot open the store in %s: %s (%s); is cofferd still running?\n",
                        o.state_dir, strerror(-rc), store_errmsg(st));
                return 1;
        }
        rc = o.rows ? count_rows(st) : populate(st, &o);
        store_close(st);
        return rc < 0 ? 1 : 0;
}
