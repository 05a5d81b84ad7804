/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for daemon/store.c. Each test gets a fresh state dir and a
 * keyring with term 1. Tampering goes through a second, raw sqlite3
 * connection while the store is closed. Values are compared with memcmp,
 * never assert_memory_equal, so a failure prints no secret bytes. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <sodium.h>
#include <sqlite3.h>

#include "store.h"
#include "util.h"

#define NOBODY 65534

struct fx {
        char dir[64];
        char db[96];
        struct store *s;
        struct keyring *k;
};

static void add_term(struct keyring *k, uint32_t term) {
        struct keyring_term *t = &k->terms[k->nterms++];
        t->term = term;
        t->created = 1000 + term;
        randombytes_buf(t->key, sizeof(t->key));
}

static int setup(void **state) {
        struct fx *f = calloc(1, sizeof(*f));
        if (!f)
                return -1;
        strcpy(f->dir, "/tmp/test-store-XXXXXX");
        if (!mkdtemp(f->dir))
                return -1;
        snprintf(f->db, sizeof(f->db), "%s/%s", f->dir, STORE_DB_NAME);
        f->k = sodium_malloc(sizeof(*f->k));
        if (!f->k)
                return -1;
        sodium_memzero(f->k, sizeof(*f->k));
        add_term(f->k, 1);
        if (store_open(&f->s, f->dir) < 0)
                return -1;
        *state = f;
        return 0;
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        return remove(path);
}

static int teardown(void **state) {
        struct fx *f = *state;
        store_close(f->s);
        sodium_free(f->k);
        chmod(f->dir, 0700);
        nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
        free(f);
        return 0;
}

static void reopen(struct fx *f) {
        store_close(f->s);
        f->s = NULL;
        assert_int_equal(store_open(&f->s, f->dir), 0);
}

/* Close the store and run SQL on its file through a raw connection. */
static void raw_exec(struct fx *f, const char *sql) {
        sqlite3 *db = NULL;
        store_close(f->s);
        f->s = NULL;
        assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
        int r = sqlite3_exec(db, sql, NULL, NULL, NULL);
        if (r != SQLITE_OK)
                fail_msg("raw sql failed: %s", sqlite3_errmsg(db));
        assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* The same, then open the store again. */
static void raw_sql(struct fx *f, const char *sql) {
        raw_exec(f, sql);
        assert_int_equal(store_open(&f->s, f->dir), 0);
}

/* The store holds an exclusive lock while open: close it, read, reopen. */
static long long raw_int(struct fx *f, const char *sql) {
        sqlite3 *db = NULL;
        sqlite3_stmt *q = NULL;
        bool was_open = f->s != NULL;
        store_close(f->s);
        f->s = NULL;
        assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(q), SQLITE_ROW);
        long long v = sqlite3_column_int64(q, 0);
        sqlite3_finalize(q);
        sqlite3_close(db);
        if (was_open)
                assert_int_equal(store_open(&f->s, f->dir), 0);
        return v;
}

static uint64_t put(struct fx *f, const char *name, const char *val) {
        uint64_t v = 0;
        assert_int_equal(store_secret_put(f->s, f->k, name, (const uint8_t *) val, strlen(val), false, 0, 0, 100, &v),
                         0);
        return v;
}

/* get and compare; returns the store's rc so callers can expect errors. */
static int get_is(struct fx *f, const char *name, uint64_t version, const char *want, uint64_t want_version) {
        uint8_t *val = NULL;
        size_t len = 0;
        uint64_t got_version = 0;
        int rc = store_secret_get(f->s, f->k, name, version, &val, &len, &got_version);
        if (rc < 0) {
                assert_null(val);
                return rc;
        }
        assert_true(len == strlen(want) && memcmp(val, want, len) == 0);
        assert_int_equal(got_version, want_version);
        sodium_memzero(val, len);
        free(val);
        return 0;
}

/* ---- open ---- */

/* While cofferd has the store open, no other process can read or write it. */
static void test_exclusive_while_open(void **state) {
        struct fx *f = *state;
        sqlite3 *db = NULL;
        put(f, "app/db", "hunter2");
        assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
        int r = sqlite3_exec(db, "SELECT count(*) FROM secret_versions", NULL, NULL, NULL);
        assert_int_equal(r & 0xff, SQLITE_BUSY);
        sqlite3_close(db);
        assert_int_equal(get_is(f, "app/db", 0, "hunter2", 1), 0);
}

static void test_reopen_keeps_data(void **state) {
        struct fx *f = *state;
        assert_int_equal(put(f, "app/db", "hunter2"), 1);
        assert_int_equal(store_meta_put(f->s, "seal.method", "keyfile", 7), 0);
        reopen(f);
        assert_int_equal(get_is(f, "app/db", 0, "hunter2", 1), 0);
        uint8_t *m = NULL;
        size_t n = 0;
        assert_int_equal(store_meta_get(f->s, "seal.method", &m, &n), 0);
        assert_true(n == 7 && memcmp(m, "keyfile", 7) == 0);
        free(m);
}

static void assert_mode_0600(const char *path) {
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
}

static void test_db_mode_0600(void **state) {
        struct fx *f = *state;
        char path[128];
        store_close(f->s);
        f->s = NULL;
        assert_int_equal(unlink(f->db), 0);
        mode_t old = umask(0);
        assert_int_equal(store_open(&f->s, f->dir), 0);
        put(f, "a", "b"); /* make SQLite create -wal */
        umask(old);
        assert_mode_0600(f->db);
        snprintf(path, sizeof(path), "%s-wal", f->db);
        assert_mode_0600(path);
        /* Exclusive locking keeps the WAL index in memory: no -shm file. */
        snprintf(path, sizeof(path), "%s-shm", f->db);
        assert_int_equal(access(path, F_OK), -1);
        /* An existing file readable by others is tightened. */
        store_close(f->s);
        f->s = NULL;
        assert_int_equal(chmod(f->db, 0644), 0);
        assert_int_equal(store_open(&f->s, f->dir), 0);
        assert_mode_0600(f->db);
}

static void test_newer_schema_refused(void **state) {
        struct fx *f = *state;
        struct store *s2 = NULL;
        raw_exec(f, "UPDATE meta SET value = 2 WHERE key = 'schema_version'");
        assert_int_equal(store_open(&s2, f->dir), -EPROTONOSUPPORT);
        assert_null(s2);
        assert_non_null(strstr(store_errmsg(NULL), "newer"));
        /* A missing schema_version is damage, not "new". */
        raw_exec(f, "DELETE FROM meta WHERE key = 'schema_version'");
        assert_int_equal(store_open(&s2, f->dir), -EBADMSG);
        assert_null(s2);
}

static void test_foreign_db_refused(void **state) {
        struct fx *f = *state;
        struct store *s2 = NULL;
        raw_exec(f, "DROP TABLE secret_versions; DROP TABLE secrets; DROP TABLE meta; CREATE TABLE x(y)");
        assert_int_equal(store_open(&s2, f->dir), -EBADMSG);
        assert_non_null(strstr(store_errmsg(NULL), "not a coffer store"));
        /* Not a database at all. */
        raw_exec(f, "DROP TABLE x");
        int fd = open(f->db, O_WRONLY | O_TRUNC);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "this is not sqlite, just some text padding it out", 49), 49);
        close(fd);
        char wal[128];
        snprintf(wal, sizeof(wal), "%s-wal", f->db);
        unlink(wal);
        assert_int_equal(store_open(&s2, f->dir), -EBADMSG);
}

/* ---- put/get ---- */

static void test_roundtrip_binary(void **state) {
        struct fx *f = *state;
        const uint8_t bin[] = { 0, 1, 0, 0xff, 'x', 0 };
        uint8_t *val = NULL;
        size_t len = 0;
        uint64_t v = 0;
        assert_int_equal(store_secret_put(f->s, f->k, "bin", bin, sizeof(bin), false, 0, 0, 5, &v), 0);
        assert_int_equal(v, 1);
        assert_int_equal(store_secret_get(f->s, f->k, "bin", 0, &val, &len, &v), 0);
        assert_true(len == sizeof(bin) && memcmp(val, bin, len) == 0);
        free(val);
        /* Empty values are values too. */
        assert_int_equal(store_secret_put(f->s, f->k, "empty", (const uint8_t *) "", 0, false, 0, 0, 5, &v), 0);
        assert_int_equal(get_is(f, "empty", 0, "", 1), 0);
}

static void test_roundtrip_1mib(void **state) {
        struct fx *f = *state;
        size_t n = WIRE_VALUE_MAX;
        uint8_t *big = malloc(n + 1), *val = NULL;
        size_t len = 0;
        uint64_t v = 0;
        assert_non_null(big);
        randombytes_buf(big, n + 1);
        assert_int_equal(store_secret_put(f->s, f->k, "big", big, n, false, 0, 0, 5, &v), 0);
        assert_int_equal(store_secret_get(f->s, f->k, "big", 0, &val, &len, &v), 0);
        assert_true(len == n && memcmp(val, big, n) == 0);
        free(val);
        assert_int_equal(store_secret_put(f->s, f->k, "big", big, n + 1, false, 0, 0, 5, &v), -E2BIG);
        free(big);
}

static void test_versions_increment(void **state) {
        struct fx *f = *state;
        struct proto_version *pv = NULL;
        size_t n = 0;
        assert_int_equal(put(f, "s", "one"), 1);
        assert_int_equal(put(f, "s", "two"), 2);
        assert_int_equal(put(f, "s", "three"), 3);
        assert_int_equal(put(f, "t", "other"), 1);
        assert_int_equal(get_is(f, "s", 0, "three", 3), 0);
        assert_int_equal(store_secret_versions(f->s, "s", &pv, &n), 0);
        assert_int_equal(n, 3);
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(pv[i].version, i + 1);
                assert_int_equal(pv[i].created, 100);
                assert_int_equal(pv[i].deleted, 0);
                assert_false(pv[i].destroyed);
        }
        free(pv);
        assert_int_equal(store_secret_versions(f->s, "nope", &pv, &n), -ENOENT);
        assert_int_equal(get_is(f, "nope", 0, "", 0), -ENOENT);
}

static void test_get_specific_version(void **state) {
        struct fx *f = *state;
        put(f, "s", "one");
        put(f, "s", "two");
        assert_int_equal(get_is(f, "s", 1, "one", 1), 0);
        assert_int_equal(get_is(f, "s", 2, "two", 2), 0);
        assert_int_equal(get_is(f, "s", 3, "", 0), -ENOENT);
        assert_int_equal(get_is(f, "s", UINT64_MAX, "", 0), -ENOENT);
}

static void test_cas(void **state) {
        struct fx *f = *state;
        const uint8_t *x = (const uint8_t *) "x";
        uint64_t v = 0;
        assert_int_equal(store_secret_put(f->s, f->k, "c", x, 1, true, 0, 0, 1, &v), 0); /* must not exist: ok */
        assert_int_equal(v, 1);
        assert_int_equal(store_secret_put(f->s, f->k, "c", x, 1, true, 0, 0, 1, &v), -ESTALE);
        assert_int_equal(store_secret_put(f->s, f->k, "c", x, 1, true, 5, 0, 1, &v), -ESTALE);
        assert_int_equal(store_secret_put(f->s, f->k, "c", x, 1, true, UINT64_MAX, 0, 1, &v), -ESTALE);
        assert_int_equal(store_secret_put(f->s, f->k, "c", x, 1, true, 1, 0, 1, &v), 0);
        assert_int_equal(v, 2);
        /* The failed attempts wrote nothing. */
        assert_int_equal(raw_int(f, "SELECT count(*) FROM secret_versions WHERE name = 'c'"), 2);
        assert_int_equal(raw_int(f, "SELECT current FROM secrets WHERE name = 'c'"), 2);
}

static void test_max_versions_pruning(void **state) {
        struct fx *f = *state;
        const uint8_t *x = (const uint8_t *) "x";
        struct proto_version *pv = NULL;
        size_t n = 0;
        uint64_t v = 0;
        assert_int_equal(store_secret_put(f->s, f->k, "m", x, 1, false, 0, 3, 1, &v), 0);
        for (int i = 0; i < 4; i++)
                assert_int_equal(store_secret_put(f->s, f->k, "m", x, 1, false, 0, 0, 1, &v), 0); /* keeps 3 */
        assert_int_equal(v, 5);
        assert_int_equal(store_secret_versions(f->s, "m", &pv, &n), 0);
        assert_int_equal(n, 3);
        assert_int_equal(pv[0].version, 3);
        assert_int_equal(pv[2].version, 5);
        free(pv);
        assert_int_equal(store_secret_get(f->s, f->k, "m", 2, &(uint8_t *) { NULL }, &(size_t) { 0 }, &v), -ENOENT);
        /* Lowering the limit prunes at once; numbers are not reused. */
        assert_int_equal(store_secret_put(f->s, f->k, "m", x, 1, false, 0, 1, 1, &v), 0);
        assert_int_equal(v, 6);
        assert_int_equal(store_secret_versions(f->s, "m", &pv, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(pv[0].version, 6);
        free(pv);
        /* The default is STORE_DEFAULT_MAX_VERSIONS. */
        for (int i = 0; i < STORE_DEFAULT_MAX_VERSIONS + 2; i++)
                put(f, "d", "x");
        assert_int_equal(store_secret_versions(f->s, "d", &pv, &n), 0);
        assert_int_equal(n, STORE_DEFAULT_MAX_VERSIONS);
        free(pv);
}

/* ---- list ---- */

static void expect_list(struct fx *f, const char *prefix, const char *const *want, size_t nwant) {
        char **names = NULL;
        size_t n = 0;
        assert_int_equal(store_secret_list(f->s, prefix, &names, &n), 0);
        assert_int_equal(n, nwant);
        for (size_t i = 0; i < n; i++)
                assert_string_equal(names[i], want[i]);
        store_strv_free(names, n);
}

static void test_list_prefix(void **state) {
        struct fx *f = *state;
        const char *all[] = { "App/z", "a%c", "aXb", "a_b", "app/api", "app/db", "apx", "other" };
        for (size_t i = 0; i < ELEMENTSOF(all); i++)
                put(f, all[i], "v");
        put(f, "gone", "v");
        assert_int_equal(store_secret_delete(f->s, "gone", 0, 7, NULL), 0);
        expect_list(f, "", all, ELEMENTSOF(all));
        expect_list(f, NULL, all, ELEMENTSOF(all));
        expect_list(f, "app/", (const char *[]) { "app/api", "app/db" }, 2);
        expect_list(f, "a_", (const char *[]) { "a_b" }, 1);   /* _ is no wildcard */
        expect_list(f, "a%", (const char *[]) { "a%c" }, 1);   /* nor is % */
        expect_list(f, "%", NULL, 0);
        expect_list(f, "APP/", NULL, 0);                      /* case matters */
        expect_list(f, "other/", NULL, 0);
        expect_list(f, "gone", NULL, 0);
}

/* ---- delete, undelete, destroy ---- */

static void test_delete_undelete(void **state) {
        struct fx *f = *state;
        struct proto_version *pv = NULL;
        size_t n = 0;
        uint64_t v = 0;
        put(f, "s", "one");
        put(f, "s", "two");
        put(f, "s", "three");
        assert_int_equal(store_secret_delete(f->s, "s", 0, 50, &v), 0);
        assert_int_equal(v, 3);
        /* The newest version is deleted: no value without a version, and no
         * quiet fallback to an older one. */
        assert_int_equal(get_is(f, "s", 0, "", 0), -ENOENT);
        assert_non_null(strstr(store_errmsg(f->s), "deleted"));
        expect_list(f, "", NULL, 0);
        assert_int_equal(get_is(f, "s", 2, "two", 2), 0);
        assert_int_equal(get_is(f, "s", 3, "", 0), -ENOENT);
        assert_non_null(strstr(store_errmsg(f->s), "deleted"));
        assert_int_equal(store_secret_versions(f->s, "s", &pv, &n), 0);
        assert_int_equal(pv[2].deleted, 50);
        free(pv);
        assert_int_equal(store_secret_undelete(f->s, "s", 3), 0);
        assert_int_equal(get_is(f, "s", 0, "three", 3), 0);
        assert_int_equal(store_secret_delete(f->s, "s", 1, 60, &v), 0);
        assert_int_equal(v, 1);
        assert_int_equal(get_is(f, "s", 1, "", 0), -ENOENT);
        assert_int_equal(store_secret_delete(f->s, "s", 9, 60, &v), -ENOENT);
        assert_int_equal(store_secret_delete(f->s, "nope", 0, 60, &v), -ENOENT);
        assert_int_equal(store_secret_undelete(f->s, "s", 9), -ENOENT);
        assert_int_equal(store_secret_undelete(f->s, "s", 0), -EINVAL);
        /* Delete every live version: nothing to get, not listed. */
        assert_int_equal(store_secret_delete(f->s, "s", 0, 70, &v), 0);
        assert_int_equal(store_secret_delete(f->s, "s", 0, 70, &v), 0);
        assert_int_equal(v, 2);
        assert_int_equal(store_secret_delete(f->s, "s", 0, 70, &v), -ENOENT);
        assert_int_equal(get_is(f, "s", 0, "", 0), -ENOENT);
        expect_list(f, "", NULL, 0);
        /* A new write continues the numbering. */
        assert_int_equal(put(f, "s", "four"), 4);
}

static void test_destroy(void **state) {
        struct fx *f = *state;
        struct proto_version *pv = NULL;
        size_t n = 0;
        put(f, "s", "one");
        put(f, "s", "two");
        assert_int_equal(store_secret_destroy(f->s, "s", 2), 0);
        assert_int_equal(get_is(f, "s", 2, "", 0), -ENOENT);
        assert_non_null(strstr(store_errmsg(f->s), "destroyed"));
        assert_int_equal(get_is(f, "s", 0, "", 0), -ENOENT);
        assert_int_equal(get_is(f, "s", 1, "one", 1), 0);
        /* Undelete cannot bring it back. */
        assert_int_equal(store_secret_undelete(f->s, "s", 2), -ENOENT);
        assert_int_equal(get_is(f, "s", 2, "", 0), -ENOENT);
        assert_int_equal(store_secret_versions(f->s, "s", &pv, &n), 0);
        assert_int_equal(n, 2);
        assert_true(pv[1].destroyed);
        assert_false(pv[0].destroyed);
        free(pv);
        assert_int_equal(store_secret_destroy(f->s, "s", 9), -ENOENT);
        assert_int_equal(store_secret_destroy(f->s, "nope", 1), -ENOENT);
        assert_int_equal(put(f, "s", "three"), 3);
        assert_int_equal(raw_int(f, "SELECT count(*) FROM secret_versions WHERE ciphertext IS NULL"), 1);
        assert_int_equal(raw_int(f, "SELECT destroyed FROM secret_versions WHERE name = 's' AND version = 2"), 1);
        /* Destroying after a delete works, and undelete still refuses. */
        assert_int_equal(store_secret_delete(f->s, "s", 1, 5, NULL), 0);
        assert_int_equal(store_secret_destroy(f->s, "s", 1), 0);
        assert_int_equal(store_secret_undelete(f->s, "s", 1), -ENOENT);
        assert_int_equal(get_is(f, "s", 1, "", 0), -ENOENT);
        assert_int_equal(get_is(f, "s", 0, "three", 3), 0);
}

/* ---- tampering: every case must fail closed ---- */

static void expect_badmsg(struct fx *f, const char *name, uint64_t version) {
        uint8_t *val = (uint8_t *) 1;
        size_t len = 1;
        assert_int_equal(store_secret_get(f->s, f->k, name, version, &val, &len, NULL), -EBADMSG);
        assert_null(val);
        assert_int_equal(len, 0);
}

/* Flip one bit of one ciphertext byte through a raw connection. */
static void flip_ct_byte(struct fx *f, const char *name, size_t off) {
        sqlite3 *db = NULL;
        sqlite3_stmt *q = NULL;
        store_close(f->s);
        f->s = NULL;
        assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, "SELECT ciphertext FROM secret_versions WHERE name = ?1", -1, &q,
                                            NULL), SQLITE_OK);
        sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(q), SQLITE_ROW);
        size_t n = (size_t) sqlite3_column_bytes(q, 0);
        uint8_t *ct = malloc(n);
        assert_true(ct && off < n);
        memcpy(ct, sqlite3_column_blob(q, 0), n);
        sqlite3_finalize(q);
        ct[off] ^= 1;
        assert_int_equal(sqlite3_prepare_v2(db, "UPDATE secret_versions SET ciphertext = ?2 WHERE name = ?1", -1, &q,
                                            NULL), SQLITE_OK);
        sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_blob(q, 2, ct, (int) n, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(q), SQLITE_DONE);
        sqlite3_finalize(q);
        free(ct);
        assert_int_equal(sqlite3_close(db), SQLITE_OK);
        assert_int_equal(store_open(&f->s, f->dir), 0);
}

static void test_tamper_altered_ct(void **state) {
        struct fx *f = *state;
        put(f, "s", "secret value");
        put(f, "t", "secret value");
        flip_ct_byte(f, "s", 3);                                  /* in the encrypted value */
        flip_ct_byte(f, "t", strlen("secret value") + 2);         /* in the tag */
        expect_badmsg(f, "s", 0);
        expect_badmsg(f, "s", 1);
        expect_badmsg(f, "t", 1);
}

static void test_tamper_truncated_or_malformed(void **state) {
        struct fx *f = *state;
        put(f, "a", "secret value");
        put(f, "b", "secret value");
        put(f, "c", "secret value");
        raw_sql(f, "UPDATE secret_versions SET ciphertext = substr(ciphertext, 1, 20) WHERE name = 'a';"
                   "UPDATE secret_versions SET nonce = x'00' WHERE name = 'b';"
                   "UPDATE secret_versions SET ciphertext = NULL WHERE name = 'c';");
        expect_badmsg(f, "a", 0);
        expect_badmsg(f, "b", 0);
        expect_badmsg(f, "c", 0);
}

static void test_tamper_moved_to_other_name(void **state) {
        struct fx *f = *state;
        put(f, "a", "for a only");
        put(f, "b", "for b");
        raw_sql(f, "UPDATE secret_versions SET (term, nonce, ciphertext) = "
                   "(SELECT term, nonce, ciphertext FROM secret_versions WHERE name = 'a' AND version = 1) "
                   "WHERE name = 'b' AND version = 1");
        expect_badmsg(f, "b", 1);
        assert_int_equal(get_is(f, "a", 1, "for a only", 1), 0);
        /* Renaming the row itself is caught too. */
        raw_sql(f, "PRAGMA foreign_keys = OFF; UPDATE secret_versions SET name = 'b', version = 2 WHERE name = 'a'");
        expect_badmsg(f, "b", 2);
}

static void test_tamper_moved_to_other_version(void **state) {
        struct fx *f = *state;
        put(f, "s", "old");
        put(f, "s", "new");
        raw_sql(f, "UPDATE secret_versions SET (term, nonce, ciphertext) = "
                   "(SELECT term, nonce, ciphertext FROM secret_versions WHERE name = 's' AND version = 1) "
                   "WHERE name = 's' AND version = 2");
        expect_badmsg(f, "s", 2);
        expect_badmsg(f, "s", 0);
        assert_int_equal(get_is(f, "s", 1, "old", 1), 0);
}

static void test_tamper_unknown_term(void **state) {
        struct fx *f = *state;
        put(f, "s", "v");
        put(f, "t", "v");
        raw_sql(f, "UPDATE secret_versions SET term = 99 WHERE name = 's';"
                   "UPDATE secret_versions SET term = 4294967296 WHERE name = 't'");
        expect_badmsg(f, "s", 0);
        expect_badmsg(f, "t", 0);
        /* A row relabelled with a term the keyring has still fails. */
        add_term(f->k, 2);
        raw_sql(f, "UPDATE secret_versions SET term = 2 WHERE name = 's'");
        expect_badmsg(f, "s", 0);
}

/* ---- read-only state dir ---- */

/* As root, permissions do not stop writes, so the child drops to nobody
 * after the files are handed to it; the dir is then read-only to it. */
static int open_readonly_child(struct fx *f) {
        if (geteuid() == 0 && (setgroups(0, NULL) < 0 || setresgid(NOBODY, NOBODY, NOBODY) < 0 ||
                               setresuid(NOBODY, NOBODY, NOBODY) < 0))
                return 77;
        struct store *s = NULL;
        int rc = store_open(&s, f->dir);
        if (rc == 0) {
                uint64_t v;
                rc = store_secret_put(s, f->k, "s", (const uint8_t *) "x", 1, false, 0, 0, 1, &v);
                store_close(s);
                return rc == 0 ? 1 : 100 + -rc;
        }
        return -rc;
}

static void chown_tree(struct fx *f, uid_t uid) {
        char path[128];
        const char *sfx[] = { "", "-wal", "-shm" };
        assert_int_equal(chown(f->dir, uid, uid), 0);
        for (size_t i = 0; i < ELEMENTSOF(sfx); i++) {
                snprintf(path, sizeof(path), "%s%s", f->db, sfx[i]);
                if (chown(path, uid, uid) < 0)
                        assert_int_equal(errno, ENOENT);
        }
}

static void test_readonly_dir(void **state) {
        struct fx *f = *state;
        put(f, "s", "kept");
        store_close(f->s);
        f->s = NULL;
        if (geteuid() == 0)
                chown_tree(f, NOBODY);
        assert_int_equal(chmod(f->dir, 0500), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                _exit(open_readonly_child(f));
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(chmod(f->dir, 0700), 0);
        if (geteuid() == 0)
                chown_tree(f, 0);
        if (WEXITSTATUS(status) == 77)
                skip();
        /* Refused at open with EROFS (or, at worst, at the write). */
        assert_true(WEXITSTATUS(status) == EROFS || WEXITSTATUS(status) == 100 + EROFS);
        assert_int_equal(store_open(&f->s, f->dir), 0);
        assert_int_equal(get_is(f, "s", 0, "kept", 1), 0);
        assert_int_equal(put(f, "s", "next"), 2);
}

/* ---- failing writes leave nothing behind ---- */

static void test_failed_write_rolls_back(void **state) {
        struct fx *f = *state;
        uint64_t v = 0;
        put(f, "s", "one");
        /* Plant a row where version 2 will go, so the insert fails after the
         * version counter was already bumped. */
        raw_sql(f, "PRAGMA foreign_keys = OFF; INSERT INTO secret_versions(name, version, term, nonce, ciphertext, "
                   "created) VALUES ('s', 2, 1, zeroblob(24), zeroblob(16), 0)");
        assert_int_equal(store_secret_put(f->s, f->k, "s", (const uint8_t *) "x", 1, false, 0, 0, 1, &v), -EIO);
        assert_non_null(strstr(store_errmsg(f->s), "UNIQUE"));
        assert_int_equal(raw_int(f, "SELECT current FROM secrets WHERE name = 's'"), 1);
        /* Inside an explicit transaction only the failed write is undone. */
        assert_int_equal(store_begin(f->s), 0);
        assert_int_equal(store_meta_put(f->s, "a", "1", 1), 0);
        assert_int_equal(store_secret_put(f->s, f->k, "s", (const uint8_t *) "x", 1, false, 0, 0, 1, &v), -EIO);
        assert_int_equal(store_commit(f->s), 0);
        assert_int_equal(raw_int(f, "SELECT count(*) FROM meta WHERE key = 'a'"), 1);
        assert_int_equal(raw_int(f, "SELECT current FROM secrets WHERE name = 's'"), 1);
        assert_int_equal(get_is(f, "s", 1, "one", 1), 0);
}

/* A write that runs out of file space fails cleanly, and the store still
 * opens with the old data. RLIMIT_FSIZE stands in for a full disk (a real
 * one needs a mount); SQLite sees EFBIG there, which stays -EIO, while a real
 * ENOSPC is -ENOSPC. */
static int write_big_child(struct fx *f) {
        struct rlimit rl = { .rlim_cur = 256 * 1024, .rlim_max = 256 * 1024 };
        uint64_t v;
        uint8_t *big = calloc(1, WIRE_VALUE_MAX);
        signal(SIGXFSZ, SIG_IGN);
        if (!big || setrlimit(RLIMIT_FSIZE, &rl) < 0)
                return 77;
        int rc = store_secret_put(f->s, f->k, "s", big, WIRE_VALUE_MAX, false, 0, 0, 1, &v);
        return rc < 0 ? -rc : 0;
}

static void test_disk_full(void **state) {
        struct fx *f = *state;
        put(f, "s", "kept");
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                _exit(write_big_child(f));
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) == 77)
                skip();
        assert_true(WEXITSTATUS(status) == ENOSPC || WEXITSTATUS(status) == EIO);
        reopen(f);
        assert_int_equal(get_is(f, "s", 0, "kept", 1), 0);
        assert_int_equal(put(f, "s", "next"), 2);
}

/* ---- keyring rotation ---- */

static void test_rotation(void **state) {
        struct fx *f = *state;
        put(f, "old", "written under term 1");
        add_term(f->k, 2);
        assert_int_equal(get_is(f, "old", 0, "written under term 1", 1), 0);
        put(f, "new", "written under term 2");
        put(f, "old", "rewritten");
        assert_int_equal(get_is(f, "new", 0, "written under term 2", 1), 0);
        assert_int_equal(get_is(f, "old", 1, "written under term 1", 1), 0);
        assert_int_equal(raw_int(f, "SELECT term FROM secret_versions WHERE name = 'new'"), 2);
        assert_int_equal(raw_int(f, "SELECT term FROM secret_versions WHERE name = 'old' AND version = 2"), 2);
        assert_int_equal(raw_int(f, "SELECT term FROM secret_versions WHERE name = 'old' AND version = 1"), 1);
        /* Every write has its own nonce. */
        assert_int_equal(raw_int(f, "SELECT count(DISTINCT nonce) FROM secret_versions"), 3);
        /* An empty keyring cannot write. */
        uint64_t v;
        f->k->nterms = 0;
        assert_int_equal(store_secret_put(f->s, f->k, "x", (const uint8_t *) "x", 1, false, 0, 0, 1, &v), -EINVAL);
}

/* ---- meta and explicit transactions ---- */

static void test_meta(void **state) {
        struct fx *f = *state;
        uint8_t *m = NULL;
        size_t n = 9;
        assert_int_equal(store_meta_get(f->s, "nope", &m, &n), -ENOENT);
        assert_null(m);
        assert_int_equal(store_meta_put(f->s, "empty", NULL, 0), 0);
        assert_int_equal(store_meta_get(f->s, "empty", &m, &n), 0);
        assert_int_equal(n, 0);
        free(m);
        assert_int_equal(store_meta_put(f->s, "k", "\0a\0", 3), 0);
        assert_int_equal(store_meta_put(f->s, "k", "\0b\0", 3), 0);
        assert_int_equal(store_meta_get(f->s, "k", &m, &n), 0);
        assert_true(n == 3 && memcmp(m, "\0b\0", 3) == 0);
        free(m);
        assert_int_equal(store_meta_put(f->s, "schema_version", "9", 1), -EINVAL);
}

static void test_transactions(void **state) {
        struct fx *f = *state;
        uint8_t *m = NULL;
        size_t n = 0;
        uint64_t v = 0;
        /* Rolled back: nothing stays. */
        assert_int_equal(store_begin(f->s), 0);
        assert_int_equal(store_begin(f->s), -EINVAL);
        assert_int_equal(store_meta_put(f->s, "a", "1", 1), 0);
        put(f, "s", "v");
        store_rollback(f->s);
        assert_int_equal(store_meta_get(f->s, "a", &m, &n), -ENOENT);
        assert_int_equal(get_is(f, "s", 0, "", 0), -ENOENT);
        /* Committed: all stays; a failing write inside leaves only itself out. */
        assert_int_equal(store_begin(f->s), 0);
        assert_int_equal(store_meta_put(f->s, "a", "1", 1), 0);
        assert_int_equal(store_meta_put(f->s, "b", "2", 1), 0);
        put(f, "s", "v");
        assert_int_equal(store_secret_put(f->s, f->k, "s", (const uint8_t *) "w", 1, true, 7, 0, 1, &v), -ESTALE);
        assert_int_equal(store_secret_destroy(f->s, "s", 5), -ENOENT);
        assert_int_equal(store_commit(f->s), 0);
        assert_int_equal(store_commit(f->s), -EINVAL);
        reopen(f);
        assert_int_equal(store_meta_get(f->s, "b", &m, &n), 0);
        assert_true(n == 1 && m[0] == '2');
        free(m);
        assert_int_equal(get_is(f, "s", 0, "v", 1), 0);
        assert_int_equal(raw_int(f, "SELECT current FROM secrets WHERE name = 's'"), 1);
        /* Destroy inside a transaction. */
        assert_int_equal(store_begin(f->s), 0);
        assert_int_equal(store_secret_destroy(f->s, "s", 1), 0);
        assert_int_equal(store_commit(f->s), 0);
        assert_int_equal(get_is(f, "s", 1, "", 0), -ENOENT);
}

static void test_bad_args(void **state) {
        struct fx *f = *state;
        char longname[PROTO_NAME_MAX + 2];
        uint64_t v;
        memset(longname, 'a', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = '\0';
        assert_int_equal(store_secret_put(f->s, f->k, longname, (const uint8_t *) "x", 1, false, 0, 0, 1, &v),
                         -EINVAL);
        assert_int_equal(store_secret_put(f->s, f->k, "", (const uint8_t *) "x", 1, false, 0, 0, 1, &v), -EINVAL);
        assert_int_equal(store_secret_put(f->s, f->k, "x", NULL, 1, false, 0, 0, 1, &v), -EINVAL);
        longname[PROTO_NAME_MAX] = '\0';
        assert_int_equal(store_secret_put(f->s, f->k, longname, (const uint8_t *) "x", 1, false, 0, 0, 1, &v), 0);
        assert_int_equal(store_open(&(struct store *) { NULL }, ""), -EINVAL);
}

/* Every committed write transaction counts once, a rolled-back one not at
 * all, and the count survives a reopen: it is what an anchor outside the
 * store compares with. */
static void test_generation_counts_commits(void **state) {
        struct fx *f = *state;
        uint64_t g0 = store_generation(f->s);
        put(f, "gen/a", "1");
        assert_int_equal(store_generation(f->s), g0 + 1);
        assert_int_equal(store_begin(f->s), 0);
        put(f, "gen/a", "2");
        put(f, "gen/b", "3");
        assert_int_equal(store_generation_durable(f->s, true), g0 + 2);
        assert_int_equal(store_generation_durable(f->s, false), g0 + 1);
        assert_int_equal(store_commit(f->s), 0);
        assert_int_equal(store_generation(f->s), g0 + 2);
        assert_int_equal(store_begin(f->s), 0);
        put(f, "gen/c", "4");
        store_rollback(f->s);
        assert_int_equal(store_generation(f->s), g0 + 2);
        reopen(f);
        assert_int_equal(store_generation(f->s), g0 + 2);
        assert_int_equal(raw_int(f, "SELECT value FROM meta WHERE key = 'generation'"), (long long) (g0 + 2));
        assert_int_equal(store_meta_put(f->s, "generation", "9", 1), -EINVAL);
}

/* A relaxed commit (no fsync) can be lost to a power cut: until a full
 * commit follows, an anchor may only record the generation before it. */
static void test_generation_durable(void **state) {
        struct fx *f = *state;
        uint64_t g0 = store_generation(f->s);
        assert_int_equal(store_begin_relaxed(f->s), 0);
        put(f, "gen/r", "1");
        assert_int_equal(store_generation_durable(f->s, true), g0);
        assert_int_equal(store_commit(f->s), 0);
        assert_int_equal(store_generation(f->s), g0 + 1);
        assert_int_equal(store_generation_durable(f->s, false), g0);
        put(f, "gen/r", "2");
        assert_int_equal(store_generation_durable(f->s, false), g0 + 2);
}

/* Held, writes do not count: a rolled-back store cannot catch up with its
 * anchor by restarts that write (lease expiry at start). */
static void test_generation_held(void **state) {
        struct fx *f = *state;
        uint64_t g0 = store_generation(f->s);
        store_hold_generation(f->s, true);
        put(f, "gen/h", "1");
        assert_int_equal(store_begin(f->s), 0);
        put(f, "gen/h", "2");
        assert_int_equal(store_commit(f->s), 0);
        assert_int_equal(store_generation(f->s), g0);
        store_hold_generation(f->s, false);
        put(f, "gen/h", "3");
        assert_int_equal(store_generation(f->s), g0 + 1);
}

/* A store made before the counter gets one, starting at 0; a damaged one is
 * refused rather than read as 0. */
static void test_generation_migration(void **state) {
        struct fx *f = *state;
        put(f, "gen/m", "1");
        raw_sql(f, "DELETE FROM meta WHERE key = 'generation'");
        assert_int_equal(store_generation(f->s), 0);
        put(f, "gen/m", "2");
        assert_int_equal(store_generation(f->s), 1);
        assert_int_equal(get_is(f, "gen/m", 0, "2", 2), 0);
        raw_exec(f, "UPDATE meta SET value = 'x' WHERE key = 'generation'");
        assert_int_equal(store_open(&f->s, f->dir), -EBADMSG);
        raw_exec(f, "UPDATE meta SET value = -1 WHERE key = 'generation'");
        assert_int_equal(store_open(&f->s, f->dir), -EBADMSG);
        raw_sql(f, "UPDATE meta SET value = 7 WHERE key = 'generation'");
        assert_int_equal(store_generation(f->s), 7);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                T(test_reopen_keeps_data),
                T(test_exclusive_while_open),
                T(test_db_mode_0600),
                T(test_newer_schema_refused),
                T(test_foreign_db_refused),
                T(test_roundtrip_binary),
                T(test_roundtrip_1mib),
                T(test_versions_increment),
                T(test_get_specific_version),
                T(test_cas),
                T(test_max_versions_pruning),
                T(test_list_prefix),
                T(test_delete_undelete),
                T(test_destroy),
                T(test_tamper_altered_ct),
                T(test_tamper_truncated_or_malformed),
                T(test_tamper_moved_to_other_name),
                T(test_tamper_moved_to_other_version),
                T(test_tamper_unknown_term),
                T(test_readonly_dir),
                T(test_failed_write_rolls_back),
                T(test_disk_full),
                T(test_rotation),
                T(test_meta),
                T(test_transactions),
                T(test_bad_args),
                T(test_generation_counts_commits),
                T(test_generation_durable),
                T(test_generation_held),
                T(test_generation_migration),
        };
        if (sodium_init() < 0)
                return 1;
        return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
