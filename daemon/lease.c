/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "lease.h"
#include "util.h"

#define DEPTH_MAX 4   /* session -> token is 2; anything deeper in the store is forged */

struct owner_count {
        uint32_t uid;
        unsigned n;      /* live */
        unsigned kept;   /* revoked tokens and grants kept until they expire */
        bool used;
};

struct lease_mgr {
        struct store *st;
        lease_revoke_fn on_revoke;
        void *ud;
        uint8_t hash_key[crypto_shorthash_KEYBYTES];
        struct lease **tab;        /* open addressing, linear probing, power-of-two size */
        size_t cap, used;
        struct lease **heap;       /* min-heap by expires */
        size_t hn, hcap;
        size_t live;
        struct owner_count *owners;   /* open addressing by uid */
        size_t nowners, cowners;
        struct lease *revoked_head;   /* kept-revoked leases, linked through next/prev */
        struct lease **sessions;   /* live session leases, by audit session id */
        size_t nsessions, csessions;
        char **names;              /* interned owner strings (open addressing) */
        size_t ncap, nused;
        bool have_key;
        uint8_t *mac_key;          /* sodium_malloc, 32 bytes */
        uint8_t (*created)[LEASE_ID_SIZE]; /* since lease_mark: undone by lease_undo */
        size_t ncreated, ccreated;
        uint8_t (*revoked)[LEASE_ID_SIZE]; /* since lease_mark: written again by lease_redo_revocations */
        size_t nrevoked, crevoked;
        bool revoked_lost;                  /* one did not fit the list */
        bool marked;                        /* between lease_mark and lease_unmark */
};

void lease_mark(struct lease_mgr *m) {
        m->ncreated = 0;
        m->nrevoked = 0;
        m->revoked_lost = false;
        m->marked = true;
}

void lease_unmark(struct lease_mgr *m) {
        m->marked = false;
        m->ncreated = 0;
        m->nrevoked = 0;
}

static int id_push(uint8_t (**v)[LEASE_ID_SIZE], size_t *n, size_t *cap, const uint8_t *id) {
        if (*n == *cap) {
                size_t k = *cap ? *cap * 2 : 16;
                void *p = realloc(*v, k * LEASE_ID_SIZE);
                if (!p)
                        return -ENOMEM;
                *v = p;
                *cap = k;
        }
        memcpy((*v)[(*n)++], id, LEASE_ID_SIZE);
        return 0;
}

static int persist(struct lease_mgr *m, struct lease *l);

bool lease_revoked_since_mark(const struct lease_mgr *m) {
        return m->nrevoked > 0 || m->revoked_lost;
}

int lease_redo_revocations(struct lease_mgr *m) {
        int n = 0, err = m->revoked_lost ? -ENOMEM : 0;
        for (size_t i = 0; i < m->nrevoked; i++) {
                struct lease *l = lease_find(m, m->revoked[i]);
                /* Kept (a token, a grant): its row says revoked; else no row. */
                int rc = l ? (l->revoked ? persist(m, l) : 0) : store_lease_delete(m->st, m->revoked[i]);
                if (rc < 0 && err == 0)
                        err = rc;
                n += rc == 0;
        }
        m->nrevoked = 0;
        return err < 0 ? err : n;
}

int lease_undo(struct lease_mgr *m, uint64_t now) {
        int n = 0;
        while (m->ncreated > 0) {
                struct lease *l = lease_find(m, m->created[--m->ncreated]);
                if (l && !l->revoked) {
                        int k = lease_revoke(m, l, "rolled-back", now);
                        n += k > 0 ? k : 0;
                }
        }
        return n;
}

static void note_created(struct lease_mgr *m, const uint8_t *id) {
        /* best effort: a lease not undone lives until it expires */
        if (m->marked)
                (void) id_push(&m->created, &m->ncreated, &m->ccreated, id);
}

const char *lease_kind_name(uint8_t kind) {
        switch (kind) {
        case LEASE_SESSION: return "session";
        case LEASE_TOKEN: return "token";
        case LEASE_GRANT: return "grant";
        default: return "unknown";
        }
}

int lease_kind_from_name(const char *name) {
        if (strcmp(name, "session") == 0)
                return LEASE_SESSION;
        if (strcmp(name, "token") == 0)
                return LEASE_TOKEN;
        if (strcmp(name, "grant") == 0)
                return LEASE_GRANT;
        return -EINVAL;
}

void lease_id_hex(const uint8_t id[static LEASE_ID_SIZE], char out[static 33]) {
        static const char hex[] = "0123456789abcdef";
        for (size_t i = 0; i < LEASE_ID_SIZE; i++) {
                out[2 * i] = hex[id[i] >> 4];
                out[2 * i + 1] = hex[id[i] & 15];
        }
        out[32] = 0;
}

static int hexval(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        return -1;
}

int lease_id_parse(const char *hex, uint8_t id[static LEASE_ID_SIZE]) {
        if (!hex || strlen(hex) != 2 * LEASE_ID_SIZE)
                return -EINVAL;
        for (size_t i = 0; i < LEASE_ID_SIZE; i++) {
                int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
                if (hi < 0 || lo < 0)
                        return -EINVAL;
                id[i] = (uint8_t) (hi << 4 | lo);
        }
        return 0;
}

/* ---- hash table by id ---- */

static size_t slot_of(const struct lease_mgr *m, const uint8_t *id) {
        uint8_t h[crypto_shorthash_BYTES];
        uint64_t v;
        crypto_shorthash(h, id, LEASE_ID_SIZE, m->hash_key);
        memcpy(&v, h, sizeof(v));
        return (size_t) v & (m->cap - 1);
}

static int tab_grow(struct lease_mgr *m) {
        size_t ncap = m->cap ? m->cap * 2 : 1024;
        struct lease **old = m->tab;
        size_t ocap = m->cap;
        m->tab = calloc(ncap, sizeof(*m->tab));
        if (!m->tab) {
                m->tab = old;
                return -ENOMEM;
        }
        m->cap = ncap;
        for (size_t i = 0; i < ocap; i++) {
                if (!old[i])
                        continue;
                size_t j = slot_of(m, old[i]->id);
                while (m->tab[j])
                        j = (j + 1) & (m->cap - 1);
                m->tab[j] = old[i];
        }
        free(old);
        return 0;
}

static int tab_insert(struct lease_mgr *m, struct lease *l) {
        if ((m->used + 1) * 4 > m->cap * 3) {
                int rc = tab_grow(m);
                if (rc < 0)
                        return rc;
        }
        size_t j = slot_of(m, l->id);
        while (m->tab[j]) {
                /* Ids are not secrets (a token carries its own): plain memcmp. */
                if (memcmp(m->tab[j]->id, l->id, LEASE_ID_SIZE) == 0)
                        return -EEXIST;
                j = (j + 1) & (m->cap - 1);
        }
        m->tab[j] = l;
        m->used++;
        return 0;
}

struct lease *lease_find(struct lease_mgr *m, const uint8_t id[static LEASE_ID_SIZE]) {
        if (!m->cap)
                return NULL;
        for (size_t j = slot_of(m, id); m->tab[j]; j = (j + 1) & (m->cap - 1))
                if (memcmp(m->tab[j]->id, id, LEASE_ID_SIZE) == 0)
                        return m->tab[j];
        return NULL;
}

/* Backward-shift deletion keeps probe chains intact without tombstones. */
static void tab_remove(struct lease_mgr *m, struct lease *l) {
        size_t mask = m->cap - 1, i = slot_of(m, l->id);
        while (m->tab[i] != l) {
                if (!m->tab[i])
                        return;
                i = (i + 1) & mask;
        }
        m->tab[i] = NULL;
        m->used--;
        for (size_t j = (i + 1) & mask; m->tab[j]; j = (j + 1) & mask) {
                size_t home = slot_of(m, m->tab[j]->id);
                /* Move j to the hole at i if its home is not in (i, j]. */
                bool between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
                if (!between) {
                        m->tab[i] = m->tab[j];
                        m->tab[j] = NULL;
                        i = j;
                }
        }
}

/* ---- heap by expiry ---- */

static void heap_set(struct lease_mgr *m, size_t i, struct lease *l) {
        m->heap[i] = l;
        l->heap_idx = (uint32_t) i;
}

static void heap_up(struct lease_mgr *m, size_t i) {
        struct lease *l = m->heap[i];
        while (i > 0) {
                size_t p = (i - 1) / 2;
                if (m->heap[p]->expires <= l->expires)
                        break;
                heap_set(m, i, m->heap[p]);
                i = p;
        }
        heap_set(m, i, l);
}

static void heap_down(struct lease_mgr *m, size_t i) {
        struct lease *l = m->heap[i];
        for (;;) {
                size_t c = 2 * i + 1;
                if (c >= m->hn)
                        break;
                if (c + 1 < m->hn && m->heap[c + 1]->expires < m->heap[c]->expires)
                        c++;
                if (m->heap[c]->expires >= l->expires)
                        break;
                heap_set(m, i, m->heap[c]);
                i = c;
        }
        heap_set(m, i, l);
}

static int heap_push(struct lease_mgr *m, struct lease *l) {
        if (m->hn == m->hcap) {
                size_t ncap = m->hcap ? m->hcap * 2 : 1024;
                struct lease **h = realloc(m->heap, ncap * sizeof(*h));
                if (!h)
                        return -ENOMEM;
                m->heap = h;
                m->hcap = ncap;
        }
        heap_set(m, m->hn++, l);
        heap_up(m, m->hn - 1);
        return 0;
}

static void heap_remove(struct lease_mgr *m, struct lease *l) {
        size_t i = l->heap_idx;
        if (i >= m->hn || m->heap[i] != l)
                return;
        struct lease *last = m->heap[--m->hn];
        if (last == l)
                return;
        heap_set(m, i, last);
        heap_up(m, i);
        heap_down(m, last->heap_idx);
}

static void heap_update(struct lease_mgr *m, struct lease *l) {
        heap_up(m, l->heap_idx);
        heap_down(m, l->heap_idx);
}

uint64_t lease_next_expiry(const struct lease_mgr *m) {
        return m->hn ? m->heap[0]->expires : UINT64_MAX;
}

/* ---- owners, interned names, sessions ---- */

static size_t uid_slot(uint32_t uid, size_t cap) {
        return (size_t) ((uid * 2654435761u) ^ (uid >> 16)) & (cap - 1);
}

static struct owner_count *owner_slot(struct lease_mgr *m, uint32_t uid, bool create) {
        if (m->cowners) {
                for (size_t j = uid_slot(uid, m->cowners); m->owners[j].used; j = (j + 1) & (m->cowners - 1))
                        if (m->owners[j].uid == uid)
                                return &m->owners[j];
        }
        if (!create)
                return NULL;
        if ((m->nowners + 1) * 2 > m->cowners) {
                size_t ncap = m->cowners ? m->cowners * 2 : 64;
                struct owner_count *n = calloc(ncap, sizeof(*n)), *old = m->owners;
                if (!n)
                        return NULL;
                for (size_t i = 0; i < m->cowners; i++)
                        if (old[i].used) {
                                size_t j = uid_slot(old[i].uid, ncap);
                                while (n[j].used)
                                        j = (j + 1) & (ncap - 1);
                                n[j] = old[i];
                        }
                free(old);
                m->owners = n;
                m->cowners = ncap;
        }
        size_t j = uid_slot(uid, m->cowners);
        while (m->owners[j].used)
                j = (j + 1) & (m->cowners - 1);
        m->owners[j] = (struct owner_count){ .uid = uid, .used = true };
        m->nowners++;
        return &m->owners[j];
}

unsigned lease_count_owner(const struct lease_mgr *m, uint32_t uid) {
        struct owner_count *o = owner_slot((struct lease_mgr *) m, uid, false);
        return o ? o->n : 0;
}

unsigned lease_count_owner_kept(const struct lease_mgr *m, uint32_t uid) {
        struct owner_count *o = owner_slot((struct lease_mgr *) m, uid, false);
        return o ? o->kept : 0;
}

static void count_kept(struct lease_mgr *m, const struct lease *l, int delta) {
        struct owner_count *o = owner_slot(m, l->owner_uid, delta > 0);
        if (o)
                o->kept = (unsigned) ((int) o->kept + delta);
}

size_t lease_count(const struct lease_mgr *m) {
        return m->live;
}

static size_t str_slot(const struct lease_mgr *m, const char *s) {
        uint8_t h[crypto_shorthash_BYTES];
        uint64_t v;
        crypto_shorthash(h, (const uint8_t *) s, strlen(s), m->hash_key);
        memcpy(&v, h, sizeof(v));
        return (size_t) v & (m->ncap - 1);
}

static const char *intern(struct lease_mgr *m, const char *s) {
        if ((m->nused + 1) * 2 > m->ncap) {
                size_t ncap = m->ncap ? m->ncap * 2 : 64, ocap = m->ncap;
                char **old = m->names, **nn = calloc(ncap, sizeof(*nn));
                if (!nn)
                        return NULL;
                m->names = nn;
                m->ncap = ncap;
                for (size_t i = 0; i < ocap; i++)
                        if (old[i]) {
                                size_t j = str_slot(m, old[i]);
                                while (m->names[j])
                                        j = (j + 1) & (m->ncap - 1);
                                m->names[j] = old[i];
                        }
                free(old);
        }
        size_t j = str_slot(m, s);
        for (; m->names[j]; j = (j + 1) & (m->ncap - 1))
                if (strcmp(m->names[j], s) == 0)
                        return m->names[j];
        m->names[j] = strdup(s);
        if (m->names[j])
                m->nused++;
        return m->names[j];
}

/* The first index in m->sessions whose audit session id is >= asid. */
static size_t session_lower(const struct lease_mgr *m, uint32_t asid) {
        size_t lo = 0, hi = m->nsessions;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (m->sessions[mid]->audit_session < asid)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

static int session_add(struct lease_mgr *m, struct lease *l) {
        if (m->nsessions == m->csessions) {
                size_t n = m->csessions ? m->csessions * 2 : 64;
                struct lease **s = realloc(m->sessions, n * sizeof(*s));
                if (!s)
                        return -ENOMEM;
                m->sessions = s;
                m->csessions = n;
        }
        size_t i = session_lower(m, l->audit_session);
        memmove(m->sessions + i + 1, m->sessions + i, (m->nsessions - i) * sizeof(*m->sessions));
        m->sessions[i] = l;
        m->nsessions++;
        return 0;
}

static void session_remove(struct lease_mgr *m, struct lease *l) {
        for (size_t i = session_lower(m, l->audit_session); i < m->nsessions; i++)
                if (m->sessions[i] == l) {
                        memmove(m->sessions + i, m->sessions + i + 1, (m->nsessions - i - 1) * sizeof(*m->sessions));
                        m->nsessions--;
                        return;
                }
}

struct lease *lease_session_of(struct lease_mgr *m, uint32_t asid, uint32_t uid, uint64_t now) {
        /* Expiry runs in batches: a session past its time may not be revoked yet. */
        if (asid == UINT32_MAX)
                return NULL;
        for (size_t i = session_lower(m, asid); i < m->nsessions && m->sessions[i]->audit_session == asid; i++) {
                struct lease *l = m->sessions[i];
                if (l->owner_uid == uid && l->verified && !l->revoked && l->expires > now)
                        return l;
        }
        return NULL;
}

/* ---- MAC and persistence ---- */

static void mac_u64(crypto_generichash_state *h, uint64_t v) {
        uint8_t b[8];
        for (int i = 0; i < 8; i++)
                b[i] = (uint8_t) (v >> (8 * i));
        crypto_generichash_update(h, b, sizeof(b));
}

static void mac_str(crypto_generichash_state *h, const char *s) {
        mac_u64(h, strlen(s));
        crypto_generichash_update(h, (const uint8_t *) s, strlen(s));
}

static void row_mac(const uint8_t key[static 32], const struct store_lease *r, uint8_t out[static 32]) {
        crypto_generichash_state h;
        static const uint8_t none[LEASE_ID_SIZE];
        crypto_generichash_init(&h, key, 32, 32);
        crypto_generichash_update(&h, (const uint8_t *) "coffer-lease-v1", 15);
        crypto_generichash_update(&h, r->id, LEASE_ID_SIZE);
        mac_str(&h, r->kind);
        mac_str(&h, r->owner);
        mac_u64(&h, r->owner_uid);
        mac_str(&h, r->object);
        crypto_generichash_update(&h, r->has_parent ? r->parent : none, LEASE_ID_SIZE);
        mac_u64(&h, r->issued);
        mac_u64(&h, r->expires);
        mac_u64(&h, r->max_expires);
        mac_u64(&h, r->renewable);
        mac_u64(&h, r->audit_session);
        mac_str(&h, r->data);
        mac_u64(&h, r->revoked);
        crypto_generichash_final(&h, out, 32);
        sodium_memzero(&h, sizeof(h));
}

static void lease_mac(const struct lease_mgr *m, const struct store_lease *r, uint8_t out[static 32]) {
        row_mac(m->mac_key, r, out);
}

static void to_row(const struct lease *l, struct store_lease *r) {
        *r = (struct store_lease){
                .kind = lease_kind_name(l->kind),
                .owner = l->owner,
                .owner_uid = l->owner_uid,
                .object = l->object,
                .has_parent = l->parent != NULL,
                .issued = l->issued,
                .expires = l->expires,
                .max_expires = l->max_expires,
                .renewable = l->renewable,
                .audit_session = l->audit_session,
                .data = l->data,
                .revoked = l->revoked,
        };
        memcpy(r->id, l->id, LEASE_ID_SIZE);
        if (l->parent)
                memcpy(r->parent, l->parent->id, LEASE_ID_SIZE);
}

static int persist(struct lease_mgr *m, struct lease *l) {
        struct store_lease r;
        to_row(l, &r);
        if (m->have_key)
                lease_mac(m, &r, r.mac);
        l->verified = m->have_key;
        return store_lease_put(m->st, &r);
}

/* ---- create, link, unlink ---- */

static void lease_free(struct lease *l) {
        if (!l)
                return;
        free(l->object);
        if (!l->data_interned)
                free(l->data);
        free(l);
}

static void link_child(struct lease *parent, struct lease *l) {
        l->parent = parent;
        l->next = parent->child;
        l->prev = NULL;
        if (parent->child)
                parent->child->prev = l;
        parent->child = l;
}

static void unlink_child(struct lease *l) {
        if (!l->parent)
                return;
        if (l->prev)
                l->prev->next = l->next;
        else
                l->parent->child = l->next;
        if (l->next)
                l->next->prev = l->prev;
        l->parent = l->next = l->prev = NULL;
}

/* Kept-revoked leases (tokens, grants) have no parent or children left: their
 * sibling links chain them in the revoked list instead. */
static void revoked_link(struct lease_mgr *m, struct lease *l) {
        l->prev = NULL;
        l->next = m->revoked_head;
        if (l->next)
                l->next->prev = l;
        m->revoked_head = l;
}

static void revoked_unlink(struct lease_mgr *m, struct lease *l) {
        if (l->prev)
                l->prev->next = l->next;
        else if (m->revoked_head == l)
                m->revoked_head = l->next;
        if (l->next)
                l->next->prev = l->prev;
        l->next = l->prev = NULL;
}

int lease_foreach_revoked(struct lease_mgr *m, int (*fn)(void *ud, struct lease *l), void *ud) {
        for (struct lease *l = m->revoked_head; l; l = l->next) {
                int rc = fn(ud, l);
                if (rc)
                        return rc;
        }
        return 0;
}

static void count_live(struct lease_mgr *m, const struct lease *l, int delta) {
        struct owner_count *o = owner_slot(m, l->owner_uid, delta > 0);
        if (o)
                o->n = (unsigned) ((int) o->n + delta);
        m->live = (size_t) ((ssize_t) m->live + delta);
}

/* Put a fully built lease into the indexes. */
static int index_add(struct lease_mgr *m, struct lease *l) {
        int rc = tab_insert(m, l);
        if (rc < 0)
                return rc;
        rc = heap_push(m, l);
        if (rc == 0 && l->kind == LEASE_SESSION && !l->revoked)
                rc = session_add(m, l);
        if (rc < 0) {
                heap_remove(m, l);
                tab_remove(m, l);
                return rc;
        }
        if (!l->revoked)
                count_live(m, l, +1);
        else
                count_kept(m, l, +1);
        return 0;
}

static void index_remove(struct lease_mgr *m, struct lease *l) {
        heap_remove(m, l);
        tab_remove(m, l);
        if (!l->revoked) {
                count_live(m, l, -1);
                if (l->kind == LEASE_SESSION)
                        session_remove(m, l);
        } else {
                count_kept(m, l, -1);
        }
}

int lease_create(struct lease_mgr *m, const struct lease_new *n, unsigned cap, uint64_t now, struct lease **out) {
        if (!m->have_key)
                return -ENOKEY;
        if (!n->owner || !n->object || strlen(n->owner) > LEASE_OWNER_MAX || strlen(n->object) > LEASE_OBJECT_MAX ||
            n->ttl == 0 || n->max_ttl < n->ttl)
                return -EINVAL;
        /* Revoked tokens and grants stay until they would have expired (so
         * that they verify as revoked): they have a cap of their own, or
         * issue-and-revoke would grow the table without bound. */
        if (cap && (lease_count_owner(m, n->owner_uid) >= cap || lease_count_owner_kept(m, n->owner_uid) >= cap))
                return -EDQUOT;
        struct lease *l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        do
                randombytes_buf(l->id, LEASE_ID_SIZE);
        while (lease_find(m, l->id));
        l->kind = (uint8_t) n->kind;
        l->owner_uid = n->owner_uid;
        l->owner = intern(m, n->owner);
        l->object = strdup(n->object);
        /* A token's data is its key id, shared by thousands: interned. */
        l->data_interned = n->kind == LEASE_TOKEN;
        l->data = l->data_interned ? (char *) intern(m, n->data ? n->data : "") : strdup(n->data ? n->data : "");
        l->issued = now;
        l->expires = now + n->ttl;
        l->max_expires = now + n->max_ttl;
        l->renewable = n->renewable;
        l->audit_session = n->audit_session;
        if (!l->owner || !l->object || !l->data) {
                lease_free(l);
                return -ENOMEM;
        }
        if (n->parent) {
                /* A child never outlives its parent. */
                if (l->max_expires > n->parent->max_expires)
                        l->max_expires = n->parent->max_expires;
                if (l->expires > l->max_expires)
                        l->expires = l->max_expires;
                l->parent = n->parent;
        }
        int rc = persist(m, l);
        if (rc == 0)
                rc = index_add(m, l);
        if (rc < 0) {
                lease_free(l);
                return rc;
        }
        l->parent = NULL;
        if (n->parent)
                link_child(n->parent, l);
        note_created(m, l->id);
        *out = l;
        return 0;
}

int lease_renew(struct lease_mgr *m, struct lease *l, uint64_t ttl, uint64_t now) {
        if (l->revoked)
                return -ENOENT;
        if (!l->renewable)
                return -EPERM;
        /* Expiry runs in batches: a lease past its time may not be revoked
         * yet, but it is over and renewing must not bring it back. */
        if (l->expires <= now)
                return -ETIME;
        if (!m->have_key)
                return -ENOKEY;
        uint64_t old = l->expires, e = ttl > UINT64_MAX - now ? UINT64_MAX : now + ttl;
        if (e > l->max_expires)
                e = l->max_expires;
        l->expires = e;
        int rc = persist(m, l);
        if (rc < 0) {
                l->expires = old;
                return rc;
        }
        heap_update(m, l);
        return 0;
}

int lease_set_data(struct lease_mgr *m, struct lease *l, const char *data) {
        if (!m->have_key)
                return -ENOKEY;
        char *n = strdup(data), *old = l->data;
        bool was_interned = l->data_interned;
        if (!n)
                return -ENOMEM;
        l->data = n;
        l->data_interned = false;
        int rc = persist(m, l);
        if (rc < 0) {
                l->data = old;
                l->data_interned = was_interned;
                free(n);
                return rc;
        }
        if (!was_interned)
                free(old);
        return 0;
}

/* Revoke one lease (its children are already gone). Token and grant leases
 * stay, marked revoked, until they would have expired; others go at once. */
static int revoke_one(struct lease_mgr *m, struct lease *l, const char *why, uint64_t now, bool expired) {
        int rc = 0;
        if (m->marked && id_push(&m->revoked, &m->nrevoked, &m->crevoked, l->id) < 0)
                m->revoked_lost = true;
        if (m->on_revoke && !l->revoked)
                m->on_revoke(m->ud, l, why);
        unlink_child(l);
        if (!l->revoked && (l->kind == LEASE_TOKEN || l->kind == LEASE_GRANT) && !expired && l->expires > now) {
                count_live(m, l, -1);
                count_kept(m, l, +1);
                l->revoked = now;
                revoked_link(m, l);
                rc = persist(m, l);
                return rc;
        }
        rc = store_lease_delete(m->st, l->id);
        index_remove(m, l);
        lease_free(l);
        return rc;
}

static int revoke_tree(struct lease_mgr *m, struct lease *l, const char *why, uint64_t now, bool expired,
                       unsigned depth, int *err) {
        int n = 0;
        while (l->child) {
                /* Children of an expired lease are revoked, not expired: they
                 * had time left. */
                n += depth < DEPTH_MAX ? revoke_tree(m, l->child, "parent-revoked", now, false, depth + 1, err)
                                       : (unlink_child(l->child), 0);
        }
        bool was_live = !l->revoked;
        int rc = revoke_one(m, l, why, now, expired);
        if (rc < 0 && *err == 0)
                *err = rc;
        return n + (was_live ? 1 : 0);
}

int lease_revoke(struct lease_mgr *m, struct lease *l, const char *why, uint64_t now) {
        int err = 0;
        if (l->revoked)
                return 0;
        int n = revoke_tree(m, l, why, now, false, 0, &err);
        return err < 0 ? err : n;
}

static bool prefix_matches(const struct lease *l, const char *prefix) {
        const char *k = lease_kind_name(l->kind);
        size_t kn = strlen(k), pn = strlen(prefix);
        if (pn <= kn)
                return strncmp(k, prefix, pn) == 0;
        return strncmp(k, prefix, kn) == 0 && prefix[kn] == '/' &&
               strncmp(l->object, prefix + kn + 1, pn - kn - 1) == 0;
}

int lease_revoke_prefix(struct lease_mgr *m, const char *prefix, uint64_t now) {
        int total = 0, err = 0;
        /* Collect first: revoking changes the table. */
        size_t n = 0;
        uint8_t(*ids)[LEASE_ID_SIZE] = malloc((m->live ? m->live : 1) * LEASE_ID_SIZE);
        if (!ids)
                return -ENOMEM;
        for (size_t i = 0; i < m->cap; i++) {
                struct lease *l = m->tab[i];
                if (l && !l->revoked && prefix_matches(l, prefix) && n < m->live)
                        memcpy(ids[n++], l->id, LEASE_ID_SIZE);
        }
        for (size_t i = 0; i < n; i++) {
                struct lease *l = lease_find(m, ids[i]);
                if (l && !l->revoked)
                        total += revoke_tree(m, l, "revoked", now, false, 0, &err);
        }
        free(ids);
        return err < 0 ? err : total;
}

int lease_expire(struct lease_mgr *m, uint64_t now, unsigned max) {
        int n = 0, err = 0;
        while (m->hn && m->heap[0]->expires <= now && (unsigned) n < max) {
                struct lease *l = m->heap[0];
                if (l->revoked) {
                        /* Its token has expired: nothing to list any more. */
                        int rc = store_lease_delete(m->st, l->id);
                        if (rc < 0 && err == 0)
                                err = rc;
                        revoked_unlink(m, l);
                        index_remove(m, l);
                        lease_free(l);
                        n++;
                        continue;
                }
                n += revoke_tree(m, l, "expired", now, true, 0, &err);
        }
        return err < 0 ? err : n;
}

int lease_foreach_session(struct lease_mgr *m, int (*fn)(void *ud, struct lease *l), void *ud) {
        for (size_t i = 0; i < m->nsessions; i++) {
                int rc = fn(ud, m->sessions[i]);
                if (rc)
                        return rc;
        }
        return 0;
}

int lease_foreach(struct lease_mgr *m, int (*fn)(void *ud, struct lease *l), void *ud) {
        for (size_t i = 0; i < m->cap; i++)
                if (m->tab[i]) {
                        int rc = fn(ud, m->tab[i]);
                        if (rc)
                                return rc;
                }
        return 0;
}

/* ---- load, keys ---- */

struct pending_parent {
        struct lease *l;
        uint8_t parent[LEASE_ID_SIZE];
};

struct load_ctx {
        struct lease_mgr *m;
        struct pending_parent *pp;
        size_t npp, cpp;
        int err;
};

static int load_row(void *ud, const struct store_lease *r) {
        struct load_ctx *c = ud;
        struct lease_mgr *m = c->m;
        int kind = lease_kind_from_name(r->kind);
        struct lease *l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        memcpy(l->id, r->id, LEASE_ID_SIZE);
        /* An unknown kind is kept as a session-less token so that it expires
         * and is removed rather than breaking the load. */
        l->kind = (uint8_t) (kind > 0 ? kind : LEASE_TOKEN);
        l->owner_uid = r->owner_uid;
        l->owner = intern(m, r->owner);
        l->object = strndup(r->object, LEASE_OBJECT_MAX);
        l->data_interned = l->kind == LEASE_TOKEN;
        l->data = l->data_interned ? (char *) intern(m, r->data) : strndup(r->data, 8192);
        l->issued = r->issued;
        l->expires = r->expires;
        l->max_expires = r->max_expires;
        l->renewable = r->renewable;
        l->audit_session = r->audit_session;
        l->revoked = r->revoked;
        if (!l->owner || !l->object || !l->data) {
                lease_free(l);
                return -ENOMEM;
        }
        if (m->have_key) {
                uint8_t mac[32];
                lease_mac(m, r, mac);
                l->verified = sodium_memcmp(mac, r->mac, 32) == 0 && kind > 0;
        }
        int rc = index_add(m, l);
        if (rc == -EEXIST) {
                lease_free(l);
                return 0;
        }
        if (rc < 0) {
                lease_free(l);
                return rc;
        }
        if (l->revoked) {
                revoked_link(m, l);
        } else if (r->has_parent) {
                if (c->npp == c->cpp) {
                        size_t n = c->cpp ? c->cpp * 2 : 256;
                        struct pending_parent *p = realloc(c->pp, n * sizeof(*p));
                        if (!p)
                                return -ENOMEM;
                        c->pp = p;
                        c->cpp = n;
                }
                c->pp[c->npp].l = l;
                memcpy(c->pp[c->npp++].parent, r->parent, LEASE_ID_SIZE);
        }
        return 0;
}

static unsigned depth_of(const struct lease *l) {
        unsigned d = 0;
        for (; l->parent && d <= DEPTH_MAX; l = l->parent)
                d++;
        return d;
}

int lease_load(struct lease_mgr *m, uint64_t now) {
        struct load_ctx c = { .m = m };
        int rc = store_lease_load(m->st, load_row, &c);
        if (rc >= 0) {
                /* Link children to parents; an orphan (parent gone) or a chain
                 * deeper than any cofferd writes is revoked. */
                for (size_t i = 0; i < c.npp; i++) {
                        struct lease *p = lease_find(m, c.pp[i].parent);
                        if (p && p != c.pp[i].l && depth_of(p) < DEPTH_MAX - 1)
                                link_child(p, c.pp[i].l);
                        else
                                c.pp[i].l->expires = 0, heap_update(m, c.pp[i].l);
                }
        }
        free(c.pp);
        if (rc < 0)
                return rc;
        rc = store_begin(m->st);
        if (rc < 0)
                return rc;
        while ((rc = lease_expire(m, now, UINT32_MAX)) > 0)
                ;
        if (rc < 0) {
                store_rollback(m->st);
                return rc;
        }
        rc = store_commit(m->st);
        return rc < 0 ? rc : (int) (m->live > INT32_MAX ? INT32_MAX : m->live);
}

/* ---- the MAC check at unseal ---- */

static void derive_mac_key(uint8_t key[static 32], const uint8_t master[static 32]) {
        crypto_kdf_derive_from_key(key, 32, 1, "leasemac", master);
}

/* A row whose MAC holds vouches for the lease loaded from it; nothing else
 * does: a lease whose row the check never saw (an id the slices skip, a row
 * gone meanwhile) stays unverified and is revoked. */
static int check_row(void *ud, const struct store_lease *r) {
        struct lease_check *c = ud;
        uint8_t mac[32];
        row_mac(c->key, r, mac);
        if (sodium_memcmp(mac, r->mac, 32) != 0 || lease_kind_from_name(r->kind) <= 0)
                return 0;
        struct lease *l = lease_find(c->m, r->id);
        if (l)
                l->verified = true;
        return 0;
}

int lease_check_begin(struct lease_check *c, struct lease_mgr *m, const uint8_t master[static 32]) {
        *c = (struct lease_check){ .m = m };
        if (!(c->key = sodium_malloc(32)))
                return -ENOMEM;
        derive_mac_key(c->key, master);
        for (size_t i = 0; i < m->cap; i++)
                if (m->tab[i])
                        m->tab[i]->verified = false;
        return 0;
}

int lease_check_step(struct lease_check *c, struct store *st, unsigned rows) {
        if (c->rc < 0 || c->done)
                return c->rc;
        int n = store_lease_slice(st, &c->cursor, rows, check_row, c);
        if (n < 0)
                return c->rc = n;
        c->done = (unsigned) n < rows;
        return !c->done;
}

void lease_check_free(struct lease_check *c) {
        if (c->key)
                sodium_free(c->key);
        *c = (struct lease_check){ 0 };
}

int lease_apply_check(struct lease_mgr *m, const uint8_t master[static 32], const struct lease_check *c,
                      uint64_t now) {
        if (c->rc < 0 || !c->done)
                return c->rc < 0 ? c->rc : -EINPROGRESS;
        derive_mac_key(m->mac_key, master);
        m->have_key = true;
        /* The unverified ones first, by id: revoking changes the table. */
        uint8_t (*bad)[LEASE_ID_SIZE] = NULL;
        size_t nbad = 0, cbad = 0;
        for (size_t i = 0; i < m->cap; i++) {
                struct lease *l = m->tab[i];
                if (!l || l->verified)
                        continue;
                if (nbad == cbad) {
                        size_t n = cbad ? cbad * 2 : 16;
                        void *p = realloc(bad, n * LEASE_ID_SIZE);
                        if (!p) {
                                free(bad);
                                return -ENOMEM;
                        }
                        bad = p;
                        cbad = n;
                }
                memcpy(bad[nbad++], l->id, LEASE_ID_SIZE);
        }
        int err = 0, total = 0;
        for (size_t i = 0; i < nbad; i++) {
                struct lease *l = lease_find(m, bad[i]);
                if (!l || l->verified)
                        continue;
                if (l->revoked) {
                        /* Revoked while sealed (no key to MAC it then):
                         * believing a revocation is safe. */
                        (void) persist(m, l);
                        continue;
                }
                total += revoke_tree(m, l, "integrity", now, false, 0, &err);
        }
        free(bad);
        return err < 0 ? err : total;
}

int lease_set_master(struct lease_mgr *m, const uint8_t *master, uint64_t now) {
        if (!master) {
                m->have_key = false;
                sodium_memzero(m->mac_key, 32);
                return 0;
        }
        struct lease_check c;
        int rc = lease_check_begin(&c, m, master);
        while (rc == 0 && (rc = lease_check_step(&c, m->st, 65536)) > 0)
                rc = 0;
        if (rc == 0)
                rc = lease_apply_check(m, master, &c, now);
        lease_check_free(&c);
        return rc;
}

int lease_mgr_new(struct lease_mgr **out, struct store *st, lease_revoke_fn on_revoke, void *ud) {
        struct lease_mgr *m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->mac_key = sodium_malloc(32);
        if (!m->mac_key) {
                free(m);
                return -ENOMEM;
        }
        m->st = st;
        m->on_revoke = on_revoke;
        m->ud = ud;
        crypto_shorthash_keygen(m->hash_key);
        *out = m;
        return 0;
}

void lease_mgr_free(struct lease_mgr *m) {
        if (!m)
                return;
        for (size_t i = 0; i < m->cap; i++)
                lease_free(m->tab[i]);
        for (size_t i = 0; i < m->ncap; i++)
                free(m->names[i]);
        free(m->tab);
        free(m->heap);
        free(m->owners);
        free(m->sessions);
        free(m->names);
        free(m->created);
        free(m->revoked);
        sodium_free(m->mac_key);
        free(m);
}
