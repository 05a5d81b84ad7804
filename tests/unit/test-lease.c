/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The lease manager on a real store: indexes (hash with backward-shift
 * deletion, expiry heap), cascading revocation, caps, persistence, expiry at
 * load, and the MAC check of stored rows. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>
#include <sqlite3.h>

#include "lease.h"
#include "store.h"

struct fx {
        char dir[64];
        struct store *st;
        struct lease_mgr *m;
        uint8_t master[32];
        unsigned revoked;
        char last_why[32];
        uint8_t last_kind;
};

static void on_revoke(void *ud, const struct lease *l, const char *why) {
        struct fx *f = ud;
        f->revoked++;
        f->last_kind = l->kind;
        snprintf(f->last_why, sizeof(f->last_why), "%s", why);
}

static void open_mgr(struct fx *f, uint64_t now) {
        assert_int_equal(store_open(&f->st, f->dir), 0);
        assert_int_equal(lease_mgr_new(&f->m, f->st, on_revoke, f), 0);
        assert_true(lease_load(f->m, now) >= 0);
}

static void close_mgr(struct fx *f) {
        lease_mgr_free(f->m);
        store_close(f->st);
        f->m = NULL;
        f->st = NULL;
}

static int setup(void **state) {
        struct fx *f = calloc(1, sizeof(*f));
        snprintf(f->dir, sizeof(f->dir), "/tmp/coffer-lease-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        randombytes_buf(f->master, sizeof(f->master));
        open_mgr(f, 1000);
        assert_int_equal(lease_set_master(f->m, f->master, 1000), 0);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fx *f = *state;
        char cmd[128];
        close_mgr(f);
        snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
        assert_int_equal(system(cmd), 0);
        free(f);
        return 0;
}

static struct lease *mk(struct fx *f, enum lease_kind k, uint32_t uid, uint64_t ttl, struct lease *parent,
                        uint64_t now) {
        struct lease *l = NULL;
        struct lease_new n = { .kind = k, .owner_uid = uid, .owner = "alice", .object = "token:x", .ttl = ttl,
                               .max_ttl = ttl * 2, .renewable = k == LEASE_SESSION, .parent = parent,
                               .audit_session = k == LEASE_SESSION ? 42 : UINT32_MAX };
        assert_int_equal(lease_create(f->m, &n, 0, now, &l), 0);
        return l;
}

static void test_hash_and_heap(void **state) {
        struct fx *f = *state;
        enum { N = 5000 };
        static uint8_t ids[N][LEASE_ID_SIZE];
        assert_int_equal(store_begin(f->st), 0);
        for (int i = 0; i < N; i++) {
                struct lease *l = mk(f, LEASE_TOKEN, 1000 + (uint32_t) (i % 7), 10 + (uint64_t) ((i * 7919) % 997),
                                     NULL, 1000);
                memcpy(ids[i], l->id, LEASE_ID_SIZE);
        }
        assert_int_equal(store_commit(f->st), 0);
        assert_int_equal(lease_count(f->m), N);
        /* Delete every third; all others stay findable (backward-shift deletion). */
        assert_int_equal(store_begin(f->st), 0);
        for (int i = 0; i < N; i += 3)
                assert_int_equal(lease_revoke(f->m, lease_find(f->m, ids[i]), "revoked", 1000), 1);
        assert_int_equal(store_commit(f->st), 0);
        for (int i = 0; i < N; i++) {
                struct lease *l = lease_find(f->m, ids[i]);
                if (i % 3 == 0)
                        assert_true(l == NULL || l->revoked);
                else
                        assert_non_null(l);
        }
        /* Expiry comes out in order. */
        uint64_t prev = 0;
        while (lease_next_expiry(f->m) != UINT64_MAX) {
                uint64_t t = lease_next_expiry(f->m);
                assert_true(t >= prev);
                prev = t;
                assert_int_equal(store_begin(f->st), 0);
                assert_true(lease_expire(f->m, t, 1) >= 0);
                assert_int_equal(store_commit(f->st), 0);
        }
        assert_int_equal(lease_count(f->m), 0);
}

static void test_cascade(void **state) {
        struct fx *f = *state;
        struct lease *s = mk(f, LEASE_SESSION, 1000, 3600, NULL, 1000);
        struct lease *t1 = mk(f, LEASE_TOKEN, 1000, 600, s, 1000);
        struct lease *t2 = mk(f, LEASE_TOKEN, 1000, 7200 * 10, s, 1000);
        assert_ptr_equal(t1->parent, s);
        /* A child never outlives its parent's maximum. */
        assert_true(t2->expires <= s->max_expires);
        assert_ptr_equal(lease_session_of(f->m, 42, 1000, 1001), s);
        assert_null(lease_session_of(f->m, 42, 1001, 1001));
        assert_null(lease_session_of(f->m, 43, 1000, 1001));
        /* past its expiry, before the timer has revoked it: not a session */
        assert_null(lease_session_of(f->m, 42, 1000, s->expires));
        f->revoked = 0;
        assert_int_equal(lease_revoke(f->m, s, "closed", 1100), 3);
        assert_int_equal(f->revoked, 3);
        assert_int_equal(f->last_kind, LEASE_SESSION); /* the parent goes last */
        assert_null(lease_session_of(f->m, 42, 1000, 1001));
        assert_int_equal(lease_count(f->m), 0);
}

/* The session index by audit session id: many sessions, several per id,
 * found after arbitrary removals; never a revoked one. */
static void test_session_index(void **state) {
        struct fx *f = *state;
        enum { N = 300 };
        static struct lease *s[N];
        for (unsigned i = 0; i < N; i++) {
                /* ids out of order, three sessions (three users) per id */
                struct lease_new n = { .kind = LEASE_SESSION, .owner_uid = 2000 + i % 3, .owner = "u",
                                       .object = "session:sshd", .ttl = 3600, .max_ttl = 3600, .renewable = true,
                                       .audit_session = (i / 3 * 7919u) % 1000u };
                assert_int_equal(lease_create(f->m, &n, 0, 1000, &s[i]), 0);
        }
        for (unsigned i = 0; i < N; i++)
                assert_ptr_equal(lease_session_of(f->m, s[i]->audit_session, s[i]->owner_uid, 1001), s[i]);
        /* revoke every other one */
        for (unsigned i = 0; i < N; i += 2)
                assert_true(lease_revoke(f->m, s[i], "test", 1001) > 0);
        for (unsigned i = 0; i < N; i++) {
                uint32_t asid = (i / 3 * 7919u) % 1000u, uid = 2000 + i % 3;
                if (i % 2)
                        assert_ptr_equal(lease_session_of(f->m, asid, uid, 1001), s[i]);
                else
                        assert_null(lease_session_of(f->m, asid, uid, 1001));
        }
        assert_null(lease_session_of(f->m, 1000, 2000, 1001));
        assert_null(lease_session_of(f->m, UINT32_MAX, 2000, 1001));
}

static void test_revoked_token_kept_until_expiry(void **state) {
        struct fx *f = *state;
        struct lease *t = mk(f, LEASE_TOKEN, 1000, 600, NULL, 1000);
        uint8_t id[LEASE_ID_SIZE];
        memcpy(id, t->id, sizeof(id));
        assert_int_equal(lease_revoke(f->m, t, "revoked", 1100), 1);
        t = lease_find(f->m, id);
        assert_non_null(t);
        assert_int_equal(t->revoked, 1100);
        assert_int_equal(lease_count(f->m), 0);
        assert_int_equal(lease_revoke(f->m, t, "revoked", 1100), 0); /* twice: nothing */
        assert_int_equal(store_begin(f->st), 0);
        assert_true(lease_expire(f->m, 1600, 100) >= 1);
        assert_int_equal(store_commit(f->st), 0);
        assert_null(lease_find(f->m, id));
}

static void test_cap_and_renew(void **state) {
        struct fx *f = *state;
        struct lease *l = NULL;
        struct lease_new n = { .kind = LEASE_TOKEN, .owner_uid = 7, .owner = "bob", .object = "token:y", .ttl = 10,
                               .max_ttl = 10 };
        for (int i = 0; i < 3; i++)
                assert_int_equal(lease_create(f->m, &n, 3, 1000, &l), 0);
        assert_int_equal(lease_create(f->m, &n, 3, 1000, &l), -EDQUOT);
        assert_int_equal(lease_count_owner(f->m, 7), 3);
        assert_int_equal(lease_renew(f->m, l, 5, 1002), -EPERM);
        /* Revoked tokens are kept until they expire and count apart: revoking
         * does not make room for ever more of them. */
        assert_int_equal(lease_revoke(f->m, l, "test", 1001), 1);
        assert_int_equal(lease_count_owner(f->m, 7), 2);
        assert_int_equal(lease_count_owner_kept(f->m, 7), 1);
        assert_int_equal(lease_create(f->m, &n, 3, 1001, &l), 0);
        assert_int_equal(lease_revoke(f->m, l, "test", 1001), 1);
        assert_int_equal(lease_create(f->m, &n, 3, 1001, &l), 0);
        assert_int_equal(lease_revoke(f->m, l, "test", 1001), 1);
        assert_int_equal(lease_count_owner_kept(f->m, 7), 3);
        assert_int_equal(lease_create(f->m, &n, 3, 1001, &l), -EDQUOT);
        /* once they expire, they are gone and so is the count */
        assert_true(lease_expire(f->m, 1011, 100) > 0);
        assert_int_equal(lease_count_owner_kept(f->m, 7), 0);
        assert_int_equal(lease_count_owner(f->m, 7), 0);
        assert_int_equal(lease_create(f->m, &n, 3, 1011, &l), 0);

        struct lease *s = mk(f, LEASE_SESSION, 8, 100, NULL, 1000); /* max 200 */
        assert_int_equal(lease_renew(f->m, s, 50, 1090), 0);
        assert_int_equal(s->expires, 1140);
        assert_int_equal(lease_renew(f->m, s, 5000, 1090), 0);
        assert_int_equal(s->expires, s->max_expires);
        assert_int_equal(lease_renew(f->m, s, UINT64_MAX - 10, 1090), 0);
        assert_int_equal(s->expires, s->max_expires);
        /* Past its expiry but not yet swept by the timer: over, not renewable. */
        struct lease *late = mk(f, LEASE_SESSION, 9, 100, NULL, 1000); /* expires 1100 */
        assert_int_equal(lease_renew(f->m, late, 50, 1099), 0);
        assert_int_equal(late->expires, 1149);
        assert_int_equal(lease_renew(f->m, late, 50, 1149), -ETIME);
        assert_int_equal(lease_renew(f->m, late, 50, 1180), -ETIME);
        assert_int_equal(late->expires, 1149);
        assert_false(late->revoked);
        n.ttl = 0;
        assert_int_equal(lease_create(f->m, &n, 0, 1000, &l), -EINVAL);
}

static void test_persist_and_expire_at_load(void **state) {
        struct fx *f = *state;
        struct lease *s = mk(f, LEASE_SESSION, 1000, 100, NULL, 1000);
        mk(f, LEASE_TOKEN, 1000, 50, s, 1000);
        struct lease *keep = mk(f, LEASE_TOKEN, 1001, 5000, NULL, 1000);
        uint8_t kid[LEASE_ID_SIZE];
        memcpy(kid, keep->id, sizeof(kid));
        close_mgr(f);
        f->revoked = 0;
        open_mgr(f, 2000); /* the session (and its token) expired while "down" */
        assert_int_equal(f->revoked, 2);
        assert_int_equal(lease_count(f->m), 1);
        struct lease *l = lease_find(f->m, kid);
        assert_non_null(l);
        assert_false(l->verified); /* not until unseal */
        assert_int_equal(lease_set_master(f->m, f->master, 2000), 0);
        assert_true(l->verified);
}

/* Close the manager and edit l's row behind its back: SET clause. */
static void tamper_row(struct fx *f, const struct lease *l, const char *set) {
        char hex[33], path[128], sql[256];
        lease_id_hex(l->id, hex);
        close_mgr(f);
        sqlite3 *db;
        snprintf(path, sizeof(path), "%s/coffer.db", f->dir);
        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        snprintf(sql, sizeof(sql), "UPDATE leases SET %s WHERE id = x'%s'", set, hex);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
}

static void test_tampered_row_revoked(void **state) {
        struct fx *f = *state;
        struct lease *l = mk(f, LEASE_SESSION, 1000, 100, NULL, 1000);
        tamper_row(f, l, "owner_uid = 0");
        open_mgr(f, 1001);
        f->revoked = 0;
        assert_int_equal(lease_set_master(f->m, f->master, 1001), 1);
        assert_string_equal(f->last_why, "integrity");
        assert_int_equal(lease_count(f->m), 0);
}

/* An id stored as text sorts before every blob: a check that walks the
 * table by id from an empty blob never sees that row, and must not take
 * the lease loaded from it for verified. */
static void test_row_the_check_skips_revoked(void **state) {
        struct fx *f = *state;
        struct lease *l = mk(f, LEASE_SESSION, 1000, 100, NULL, 1000);
        mk(f, LEASE_TOKEN, 1000, 100, NULL, 1000);
        tamper_row(f, l, "owner_uid = 0, id = 'AAAAAAAAAAAAAAAA'");
        open_mgr(f, 1001);
        f->revoked = 0;
        assert_int_equal(lease_set_master(f->m, f->master, 1001), 1);
        assert_string_equal(f->last_why, "integrity");
        assert_int_equal(lease_count(f->m), 1);
}

static void test_wrong_master_revokes_all(void **state) {
        struct fx *f = *state;
        mk(f, LEASE_TOKEN, 1000, 100, NULL, 1000);
        mk(f, LEASE_TOKEN, 1000, 100, NULL, 1000);
        close_mgr(f);
        open_mgr(f, 1001);
        uint8_t other[32];
        randombytes_buf(other, sizeof(other));
        assert_int_equal(lease_set_master(f->m, other, 1001), 2);
}

static void test_ids(void **state) {
        (void) state;
        uint8_t id[LEASE_ID_SIZE], back[LEASE_ID_SIZE];
        char hex[33];
        randombytes_buf(id, sizeof(id));
        lease_id_hex(id, hex);
        assert_int_equal(strlen(hex), 32);
        assert_int_equal(lease_id_parse(hex, back), 0);
        assert_memory_equal(id, back, sizeof(id));
        assert_int_equal(lease_id_parse("ABCDEF00000000000000000000000000", back), -EINVAL);
        assert_int_equal(lease_id_parse("abc", back), -EINVAL);
        assert_int_equal(lease_id_parse(NULL, back), -EINVAL);
        assert_int_equal(lease_kind_from_name("session"), LEASE_SESSION);
        assert_int_equal(lease_kind_from_name("bogus"), -EINVAL);
}

int main(void) {
        if (sodium_init() < 0)
                return 1;
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_hash_and_heap, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cascade, setup, teardown),
                cmocka_unit_test_setup_teardown(test_session_index, setup, teardown),
                cmocka_unit_test_setup_teardown(test_revoked_token_kept_until_expiry, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cap_and_renew, setup, teardown),
                cmocka_unit_test_setup_teardown(test_persist_and_expire_at_load, setup, teardown),
                cmocka_unit_test_setup_teardown(test_tampered_row_revoked, setup, teardown),
                cmocka_unit_test_setup_teardown(test_row_the_check_skips_revoked, setup, teardown),
                cmocka_unit_test_setup_teardown(test_wrong_master_revokes_all, setup, teardown),
                cmocka_unit_test(test_ids),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
