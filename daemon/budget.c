/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "peer.h"
#include "server.h"

#define SUMMARIES_MAX 16         /* principals a second with a summary record of their own */
#define UIDS_MAX 65536          /* uids with a bucket not yet full, or refusals not yet summarized */
#define SPACE_CHECK_USEC 900000u  /* a little under the sweep's second */
#define WARN_EVERY_USEC (60u * 1000000u)
#define MIB (1024u * 1024u)

struct bucket {
        uint64_t key;           /* the principal: a uid, owning its subordinate uids (server.c) */
        uint64_t tat;           /* GCRA: when the bucket is full again (µs, monotonic) */
        uint64_t over_rate;     /* refusals not yet summarized */
        uint64_t low_disk;
};

struct budget {
        struct bucket *v;
        size_t n, cap;
        uint64_t overflow;      /* refusals of uids that found the table full */
        uint64_t checked;       /* when the free space was last looked up */
        uint64_t free_bytes;    /* UINT64_MAX: unknown */
        uint64_t warned;        /* when the last warning went out; 0 = never */
};

int budget_new(struct budget **out) {
        struct budget *b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        b->free_bytes = UINT64_MAX;
        *out = b;
        return 0;
}

void budget_free(struct budget *b) {
        if (!b)
                return;
        free(b->v);
        free(b);
}

static struct bucket *bucket_of(struct budget *b, uint64_t key, uint64_t now) {
        for (size_t i = 0; i < b->n; i++)
                if (b->v[i].key == key)
                        return &b->v[i];
        if (b->n == b->cap) {
                size_t cap = b->cap ? 2 * b->cap : 64;
                struct bucket *v = cap <= UIDS_MAX ? realloc(b->v, cap * sizeof(*v)) : NULL;
                if (!v)
                        return NULL;
                b->v = v;
                b->cap = cap;
        }
        b->v[b->n] = (struct bucket){ .key = key, .tat = now };
        return &b->v[b->n++];
}

/* GCRA: each request moves tat one interval on; a request is allowed while
 * tat is at most burst - 1 intervals ahead of now. */
static bool bucket_take(struct bucket *k, const struct config *cfg, uint64_t now) {
        uint64_t step = 1000000u / cfg->audit_rate_per_uid;
        uint64_t tolerance = step * (cfg->audit_burst - 1);
        uint64_t tat = k->tat > now ? k->tat : now;
        if (tat > now + tolerance)
                return false;
        k->tat = tat + step;
        return true;
}

static void refresh_space(struct budget *b, struct audit *a, uint64_t now) {
        if (b->checked && now - b->checked < SPACE_CHECK_USEC)
                return;
        b->checked = now;
        if (audit_free_space(a, &b->free_bytes) < 0)
                b->free_bytes = UINT64_MAX; /* unknown: the write itself still fails closed */
}

static bool below_reserve(const struct budget *b, const struct config *cfg) {
        return cfg->audit_reserve_mb && b->free_bytes != UINT64_MAX &&
               b->free_bytes < (uint64_t) cfg->audit_reserve_mb * MIB;
}

/* uid N, or a user namespace root made (no owner to charge). */
static void principal_name(char *buf, size_t n, uint64_t key) {
        snprintf(buf, n, "%s%llu", key & PEER_KEY_USERNS ? "userns:" : "", (unsigned long long) (key & 0xffffffffu));
}

int budget_take(struct budget *b, const struct config *cfg, struct audit *a, uint64_t key, bool exempt,
                uint64_t now_usec, char *why, size_t whysz) {
        if (exempt)
                return 0;
        refresh_space(b, a, now_usec);
        bool low = below_reserve(b, cfg);
        if (!low && cfg->audit_rate_per_uid == 0)
                return 0;
        struct bucket *k = bucket_of(b, key, now_usec);
        if (!k) {
                b->overflow++;
                snprintf(why, whysz, "too many users are making requests at once; retry in a moment");
                return -EAGAIN;
        }
        if (low) {
                k->low_disk++;
                snprintf(why, whysz,
                         "the audit log's file system is nearly full (%llu MiB free; audit_reserve_mb keeps %u "
                         "MiB for root); requests are refused until space is freed: tell the administrator",
                         (unsigned long long) (b->free_bytes / MIB), cfg->audit_reserve_mb);
                return -ENOSPC;
        }
        if (bucket_take(k, cfg, now_usec))
                return 0;
        k->over_rate++;
        char who[32];
        principal_name(who, sizeof(who), key);
        snprintf(why, whysz, "too many requests from uid %s, with its subordinate uids (audit_rate_per_uid is %u a "
                             "second, audit_burst %u); retry in a moment", who, cfg->audit_rate_per_uid, cfg->audit_burst);
        return -EAGAIN;
}

/* One record for what a uid had refused since the last one. */
static int summarize(struct audit *a, const char *who, uint64_t over_rate, uint64_t low_disk) {
        char object[32], detail[96];
        snprintf(object, sizeof(object), "uid:%s", who);
        snprintf(detail, sizeof(detail), "refused=%llu over-rate=%llu low-disk=%llu",
                 (unsigned long long) (over_rate + low_disk), (unsigned long long) over_rate,
                 (unsigned long long) low_disk);
        struct audit_event ev = {
                .op = "requests-refused",
                .object = object,
                .decision = "deny",
                .rule = over_rate ? "audit_rate_per_uid" : "audit_reserve_mb",
                .result = over_rate ? -EAGAIN : -ENOSPC,
                .detail = detail,
        };
        return audit_record(a, &ev);
}

static void summarize_all(struct budget *b, struct audit *a, uint64_t now) {
        char who[32];
        /* The summaries are bounded too: a few principals get one of their
         * own a second, the rest one together. */
        unsigned own = SUMMARIES_MAX;
        for (size_t i = 0; i < b->n;) {
                struct bucket *k = &b->v[i];
                principal_name(who, sizeof(who), k->key);
                if (k->over_rate || k->low_disk) {
                        if (own == 0) {
                                b->overflow += k->over_rate + k->low_disk;
                                k->over_rate = k->low_disk = 0;
                        } else if (summarize(a, who, k->over_rate, k->low_disk) == 0) {
                                k->over_rate = k->low_disk = 0;
                                own--;
                        }
                }
                /* Full again and nothing to tell: forget it. */
                if (k->tat <= now && !k->over_rate && !k->low_disk)
                        *k = b->v[--b->n];
                else
                        i++;
        }
        if (b->overflow && summarize(a, "*", b->overflow, 0) == 0)
                b->overflow = 0;
}

static void warn_space(struct budget *b, const struct config *cfg, uint64_t now) {
        if (!cfg->audit_warn_free_mb || b->free_bytes == UINT64_MAX ||
            b->free_bytes >= (uint64_t) cfg->audit_warn_free_mb * MIB)
                return;
        if (b->warned && now - b->warned < WARN_EVERY_USEC)
                return;
        b->warned = now;
        /* "<4>": journald takes it as priority warning. */
        server_log("<4>cofferd: the audit log's file system has %llu MiB free (audit_warn_free_mb %u); %s",
                   (unsigned long long) (b->free_bytes / MIB), cfg->audit_warn_free_mb,
                   below_reserve(b, cfg) ? "BELOW THE RESERVE: only root and cofferd's own uid are served; free space"
                                         : "free space before it reaches audit_reserve_mb, when users are refused");
}

void budget_tick(struct budget *b, const struct config *cfg, struct audit *a, uint64_t now_usec) {
        refresh_space(b, a, now_usec);
        summarize_all(b, a, now_usec);
        warn_space(b, cfg, now_usec);
}
