/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The store: SQLite in the state dir, treated as untrusted storage.
 *
 * Layout:
 *   meta(key, value)                  small blobs; schema_version lives here,
 *                                     and generation: a counter bumped in
 *                                     every committed write transaction, so a
 *                                     copy of the file restored later is seen
 *                                     to be older than the anchor the daemon
 *                                     keeps outside it (the audit log)
 *   secrets(name, current, max_versions)
 *                                     one row per name; current is the highest
 *                                     version ever written, so versions are
 *                                     never reused, even after destroy
 *   secret_versions(name, version, term, nonce, ciphertext, created, deleted,
 *                   destroyed)        one row per version; ciphertext is NULL
 *                                     once destroyed
 *
 * A value is XChaCha20-Poly1305(value, key of term, nonce, ad) with
 *   ad = "coffer-v1" || "secret_versions" || 0 || name || 0 || version u64 BE || term u32 BE
 * so a row that is altered, or copied to another name, version or term, does
 * not open. Only ciphertext ever reaches SQLite.
 *
 * Single-threaded: one connection, statements prepared once at open.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "store.h"
#include "util.h"
#include "wire.h"

#define AD_FORMAT "coffer-v1"
#define VERSIONS_TABLE "secret_versions"
/* format || table || NUL || name || NUL || version || term */
#define AD_MAX (sizeof(AD_FORMAT) - 1 + sizeof(VERSIONS_TABLE) + PROTO_NAME_MAX + 1 + 8 + 4)
#define NONCE_SIZE crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_SIZE crypto_aead_xchacha20poly1305_ietf_ABYTES
/* Waiting longer would stall the event loop; only an admin's sqlite3 shell
 * can hold the lock. */
#define BUSY_TIMEOUT_MS 2000
/* Caps what a hostile row can make us allocate. */
#define ROW_LIMIT (4 * 1024 * 1024)

#define STR_(x) #x
#define STR(x) STR_(x)

enum {
        Q_BEGIN,
        Q_COMMIT,
        Q_ROLLBACK,
        Q_SAVEPOINT,
        Q_RELEASE,
        Q_ROLLBACK_TO,
        Q_META_GET,
        Q_META_PUT,
        Q_GEN_PUT,
        Q_HEAD_GET,
        Q_HEAD_PUT,
        Q_VER_INSERT,
        Q_VER_PRUNE,
        Q_GET_LATEST,
        Q_GET_NEWEST,
        Q_GET_VERSION,
        Q_LIST,
        Q_VERSIONS,
        Q_DELETE,
        Q_UNDELETE,
        Q_DESTROY,
        Q_LEASE_PUT,
        Q_LEASE_DEL,
        Q_LEASE_LOAD,
        Q_LEASE_SLICE,
        Q_COUNT,
};

#define ROW_COLUMNS "version, term, nonce, ciphertext, deleted, destroyed"

static const char *const query_sql[Q_COUNT] = {
        [Q_BEGIN] = "BEGIN IMMEDIATE",
        [Q_COMMIT] = "COMMIT",
        [Q_ROLLBACK] = "ROLLBACK",
        [Q_SAVEPOINT] = "SAVEPOINT w",
        [Q_RELEASE] = "RELEASE w",
        [Q_ROLLBACK_TO] = "ROLLBACK TO w",
        [Q_META_GET] = "SELECT value FROM meta WHERE key = ?1",
        [Q_META_PUT] = "INSERT INTO meta(key, value) VALUES (?1, ?2) "
                       "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [Q_GEN_PUT] = "UPDATE meta SET value = ?1 WHERE key = 'generation'",
        [Q_HEAD_GET] = "SELECT current, max_versions FROM secrets WHERE name = ?1",
        [Q_HEAD_PUT] = "INSERT INTO secrets(name, current, max_versions) VALUES (?1, ?2, ?3) "
                       "ON CONFLICT(name) DO UPDATE SET current = excluded.current, "
                       "max_versions = excluded.max_versions",
        [Q_VER_INSERT] = "INSERT INTO secret_versions(name, version, term, nonce, ciphertext, created) "
                         "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        [Q_VER_PRUNE] = "DELETE FROM secret_versions WHERE name = ?1 AND version <= ?2",
        [Q_GET_LATEST] = "SELECT " ROW_COLUMNS " FROM secret_versions "
                         "WHERE name = ?1 AND deleted = 0 AND destroyed = 0 ORDER BY version DESC LIMIT 1",
        /* A read without a version gets the newest version or nothing: after
         * `rm`, an older value must not quietly come back. */
        [Q_GET_NEWEST] = "SELECT " ROW_COLUMNS " FROM secret_versions WHERE name = ?1 ORDER BY version DESC LIMIT 1",
        [Q_GET_VERSION] = "SELECT " ROW_COLUMNS " FROM secret_versions WHERE name = ?1 AND version = ?2",
        /* substr, not LIKE: LIKE treats % and _ as wildcards and folds case. */
        [Q_LIST] = "SELECT name FROM secrets WHERE name >= ?1 AND substr(name, 1, length(?1)) = ?1 "
                   "AND EXISTS (SELECT 1 FROM secret_versions v WHERE v.name = secrets.name "
                   "AND v.deleted = 0 AND v.destroyed = 0 AND v.version = "
                   "(SELECT max(version) FROM secret_versions m WHERE m.name = secrets.name)) ORDER BY name",
        [Q_VERSIONS] = "SELECT version, created, deleted, destroyed FROM secret_versions "
                       "WHERE name = ?1 ORDER BY version",
        /* Deleting again keeps the first deletion time. */
        [Q_DELETE] = "UPDATE secret_versions SET deleted = CASE deleted WHEN 0 THEN ?3 ELSE deleted END "
                     "WHERE name = ?1 AND version = ?2",
        [Q_UNDELETE] = "UPDATE secret_versions SET deleted = 0 WHERE name = ?1 AND version = ?2 AND destroyed = 0",
        [Q_DESTROY] = "UPDATE secret_versions SET ciphertext = NULL, destroyed = 1 WHERE name = ?1 AND version = ?2",
        [Q_LEASE_PUT] = "INSERT OR REPLACE INTO leases(id, kind, owner, owner_uid, object, parent, issued, expires, "
                        "max_expires, renewable, audit_session, data, revoked, mac) "
                        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        [Q_LEASE_DEL] = "DELETE FROM leases WHERE id = ?1",
        [Q_LEASE_LOAD] = "SELECT id, kind, owner, owner_uid, object, parent, issued, expires, max_expires, "
                         "renewable, audit_session, data, revoked, mac FROM leases",
        [Q_LEASE_SLICE] = "SELECT id, kind, owner, owner_uid, object, parent, issued, expires, max_expires, "
                          "renewable, audit_session, data, revoked, mac FROM leases WHERE id > ?1 "
                          "ORDER BY id LIMIT ?2",
};

/* Leases came after schema version 1 was released; the table is added to
 * stores that lack it (the schema version stays: older daemons ignore it). */
static const char lease_schema_sql[] =
        "CREATE TABLE IF NOT EXISTS leases("
        " id BLOB PRIMARY KEY CHECK (length(id) = 16),"
        " kind TEXT NOT NULL,"
        " owner TEXT NOT NULL,"
        " owner_uid INTEGER NOT NULL,"
        " object TEXT NOT NULL,"
        " parent BLOB,"
        " issued INTEGER NOT NULL,"
        " expires INTEGER NOT NULL,"
        " max_expires INTEGER NOT NULL,"
        " renewable INTEGER NOT NULL,"
        " audit_session INTEGER NOT NULL,"
        " data TEXT NOT NULL,"
        " revoked INTEGER NOT NULL DEFAULT 0,"
        " mac BLOB NOT NULL) WITHOUT ROWID;";

static const char schema_sql[] =
        "CREATE TABLE meta(key TEXT PRIMARY KEY, value BLOB NOT NULL);"
        "CREATE TABLE secrets("
        " name TEXT PRIMARY KEY,"
        " current INTEGER NOT NULL CHECK (current >= 0),"
        " max_versions INTEGER NOT NULL CHECK (max_versions >= 1));"
        "CREATE TABLE " VERSIONS_TABLE "("
        " name TEXT NOT NULL REFERENCES secrets(name),"
        " version INTEGER NOT NULL CHECK (version >= 1),"
        " term INTEGER NOT NULL,"
        " nonce BLOB NOT NULL,"
        " ciphertext BLOB,"
        " created INTEGER NOT NULL,"
        " deleted INTEGER NOT NULL DEFAULT 0,"
        " destroyed INTEGER NOT NULL DEFAULT 0 CHECK (destroyed IN (0, 1)),"
        " PRIMARY KEY (name, version));"
        "INSERT INTO meta(key, value) VALUES ('schema_version', " STR(STORE_SCHEMA_VERSION) ");";

/* Stores made before the generation counter start theirs at 0, as does a new
 * store; an audit log without an anchor anchors 0. */
static const char generation_sql[] = "INSERT OR IGNORE INTO meta(key, value) VALUES ('generation', 0);";

struct store {
        sqlite3 *db;
        sqlite3_stmt *q[Q_COUNT];
        char *dir;
        bool in_tx;      /* inside store_begin .. store_commit/rollback */
        bool scrub_wal;  /* a destroy is pending: checkpoint after commit */
        bool relaxed;    /* this transaction commits with synchronous=NORMAL */
        bool bumped;     /* this transaction has set the next generation */
        bool gen_held;   /* writes do not count: see store_hold_generation */
        uint64_t gen;    /* the last committed generation */
        uint64_t durable; /* the last generation committed with fsync */
        char errmsg[256];
};

/* Why the last store_open failed; the caller has no store to ask. */
static char open_errmsg[256];

/* One row of secret_versions, pointing into the statement's column memory. */
struct row {
        uint64_t version;
        uint32_t term;
        const uint8_t *nonce;
        const uint8_t *ct;
        size_t ct_len;
        bool deleted;
        bool destroyed;
};

/* ---- errors ---- */

__attribute__((format(printf, 3, 4)))
static int fail(struct store *s, int rc, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->errmsg, sizeof(s->errmsg), fmt, ap);
        va_end(ap);
        return rc;
}

/* CANTOPEN is how SQLite reports that it could not create the -wal/-shm
 * files, which on a writable file means the directory is read-only. */
static int cantopen_errno(const struct store *s) {
        if (s->dir && faccessat(AT_FDCWD, s->dir, W_OK, AT_EACCESS) < 0)
                return -EROFS;
        return -EIO;
}

/* SQLite reports some ENOSPC and EROFS conditions (fsync, truncate, WAL
 * growth) as plain I/O errors; the errno tells them apart. */
/* The errno behind an I/O error. sqlite3_system_errno() can be 0 when the
 * failing write was to the WAL; then ask the WAL file, then the database. */
static int last_os_errno(const struct store *s) {
        int e = s->db ? sqlite3_system_errno(s->db) : 0;
        sqlite3_file *f = NULL;
        if (e == 0 && s->db && sqlite3_file_control(s->db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &f) == SQLITE_OK &&
            f && f->pMethods)
                f->pMethods->xFileControl(f, SQLITE_FCNTL_LAST_ERRNO, &e);
        if (e == 0 && s->db)
                sqlite3_file_control(s->db, "main", SQLITE_FCNTL_LAST_ERRNO, &e);
        return e;
}

static int ioerr_errno(const struct store *s) {
        switch (last_os_errno(s)) {
        case ENOSPC:
        case EDQUOT:
                return -ENOSPC;
        case EROFS:
                return -EROFS;
        default:
                return -EIO;
        }
}

static int errno_of(const struct store *s, int code) {
        switch (code & 0xff) {
        case SQLITE_IOERR:
                return ioerr_errno(s);
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_READONLY:
                return -EROFS;
        case SQLITE_CANTOPEN:
                return cantopen_errno(s);
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB:
                return -EBADMSG;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_TOOBIG:
                return -E2BIG;
        default:
                return -EIO;
        }
}

/* SQLite's message names tables and constraints, never bound values. */
static int sqerr(struct store *s, int code) {
        return fail(s, errno_of(s, code), "%s", s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(code));
}

/* ---- statements ---- */

static void resetp(sqlite3_stmt **q) {
        if (*q) {
                sqlite3_reset(*q);
                sqlite3_clear_bindings(*q);
        }
}
#define _cleanup_reset_ _cleanup_(resetp)

/* 1 = a row is ready, 0 = done, < 0 = error. */
static int step(struct store *s, sqlite3_stmt *q) {
        int r = sqlite3_step(q);
        if (r == SQLITE_ROW)
                return 1;
        if (r == SQLITE_DONE)
                return 0;
        return sqerr(s, r);
}

/* Run a statement that returns no rows. */
static int run(struct store *s, sqlite3_stmt *q) {
        int r = step(s, q);
        sqlite3_reset(q);
        sqlite3_clear_bindings(q);
        if (r > 0)
                return fail(s, -EIO, "statement unexpectedly returned rows");
        return r;
}

/* Binding fails only on out-of-memory or a too-large value. */
static int bind_name(struct store *s, sqlite3_stmt *q, const char *name) {
        if (sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC) != SQLITE_OK)
                return sqerr(s, sqlite3_errcode(s->db));
        return 0;
}

static int bind_i64(struct store *s, sqlite3_stmt *q, int i, uint64_t v) {
        if (sqlite3_bind_int64(q, i, (sqlite3_int64) v) != SQLITE_OK)
                return sqerr(s, sqlite3_errcode(s->db));
        return 0;
}

static int bind_blob(struct store *s, sqlite3_stmt *q, int i, const void *p, size_t n) {
        /* A NULL pointer would bind SQL NULL, not an empty blob. */
        int r = p ? sqlite3_bind_blob64(q, i, p, n, SQLITE_STATIC) : sqlite3_bind_zeroblob(q, i, 0);
        if (r != SQLITE_OK)
                return sqerr(s, r);
        return 0;
}

/* ---- transactions ---- */

/* SQLite may roll a whole transaction back by itself (disk full, I/O error);
 * then there is nothing left to roll back. */
static bool tx_active(const struct store *s) {
        return !sqlite3_get_autocommit(s->db);
}

/* Last resort for destroyed ciphertext still sitting in old WAL frames. */
static void after_commit(struct store *s) {
        if (!s->scrub_wal)
                return;
        s->scrub_wal = false;
        (void) sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
}

/* A write runs in its own transaction, or, inside store_begin, in a savepoint,
 * so a failing write never leaves half of itself behind. */
static int bump(struct store *s);

static int write_begin(struct store *s) {
        int rc = run(s, s->q[s->in_tx ? Q_SAVEPOINT : Q_BEGIN]);
        if (rc < 0 || s->in_tx)
                return rc;
        rc = bump(s);
        if (rc < 0) {
                (void) run(s, s->q[Q_ROLLBACK]);
                s->bumped = false;
        }
        return rc;
}

/* A transaction committed: its generation is the store's (and durable, when
 * the commit waited for fsync). */
static void gen_committed(struct store *s, bool synced) {
        if (s->bumped)
                s->gen++;
        if (synced)
                s->durable = s->gen;
        s->bumped = false;
}

static int write_end(struct store *s, int rc) {
        if (rc >= 0) {
                int r = run(s, s->q[s->in_tx ? Q_RELEASE : Q_COMMIT]);
                if (r == 0) {
                        if (!s->in_tx) {
                                gen_committed(s, true);
                                after_commit(s);
                        }
                        return rc;
                }
                rc = r;
        }
        if (s->in_tx && tx_active(s)) {
                (void) run(s, s->q[Q_ROLLBACK_TO]);
                (void) run(s, s->q[Q_RELEASE]);
        } else if (!s->in_tx && tx_active(s)) {
                (void) run(s, s->q[Q_ROLLBACK]);
                s->scrub_wal = false;
        }
        if (!s->in_tx)
                s->bumped = false;
        return rc;
}

int store_begin(struct store *s) {
        if (!s)
                return -EINVAL;
        if (s->in_tx)
                return fail(s, -EINVAL, "a transaction is already open");
        int rc = run(s, s->q[Q_BEGIN]);
        if (rc == 0)
                rc = bump(s);
        if (rc < 0 && tx_active(s))
                (void) run(s, s->q[Q_ROLLBACK]);
        if (rc == 0)
                s->in_tx = true;
        else
                s->bumped = false;
        return rc;
}

static int exec(struct store *s, const char *sql);

int store_begin_relaxed(struct store *s) {
        if (!s)
                return -EINVAL;
        int rc = exec(s, "PRAGMA synchronous=NORMAL");
        if (rc == 0)
                rc = store_begin(s);
        if (rc == 0)
                s->relaxed = true;
        else
                (void) exec(s, "PRAGMA synchronous=FULL");
        return rc;
}

static void end_relaxed(struct store *s) {
        if (s->relaxed) {
                s->relaxed = false;
                (void) exec(s, "PRAGMA synchronous=FULL");
        }
}

int store_commit(struct store *s) {
        if (!s)
                return -EINVAL;
        if (!s->in_tx)
                return fail(s, -EINVAL, "no transaction is open");
        bool synced = !s->relaxed;
        int rc = run(s, s->q[Q_COMMIT]);
        end_relaxed(s);
        if (rc < 0 && tx_active(s))
                (void) run(s, s->q[Q_ROLLBACK]);
        s->in_tx = false;
        if (rc == 0) {
                gen_committed(s, synced);
                after_commit(s);
        }
        s->bumped = false;
        s->scrub_wal = false;
        return rc;
}

void store_rollback(struct store *s) {
        if (!s || !s->in_tx)
                return;
        if (tx_active(s))
                (void) run(s, s->q[Q_ROLLBACK]);
        end_relaxed(s);
        s->in_tx = false;
        s->bumped = false;
        s->scrub_wal = false;
}

/* ---- generation ---- */

/* One UPDATE in the transaction's own commit: no extra fsync. */
static int bump(struct store *s) {
        if (s->gen_held)
                return 0;
        if (s->gen >= INT64_MAX)
                return fail(s, -EOVERFLOW, "the store's generation counter has run out");
        sqlite3_stmt *q = s->q[Q_GEN_PUT];
        int rc = bind_i64(s, q, 1, s->gen + 1);
        if (rc < 0) {
                resetp(&q);
                return rc;
        }
        rc = run(s, q);
        if (rc == 0 && sqlite3_changes(s->db) != 1)
                rc = fail(s, -EBADMSG, "the store has no generation row; it is damaged");
        if (rc == 0)
                s->bumped = true;
        return rc;
}

uint64_t store_generation(const struct store *s) {
        return s->gen;
}

uint64_t store_generation_durable(const struct store *s, bool committing) {
        if (committing && s->in_tx && s->bumped && !s->relaxed)
                return s->gen + 1;
        return s->durable;
}

void store_hold_generation(struct store *s, bool hold) {
        s->gen_held = hold;
}

/* ---- open ---- */

/* Create the file ourselves so it is 0600 from the first byte, whatever the
 * umask; tighten an existing file that is readable by others. */
static int create_file(struct store *s, const char *path) {
        _cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
        struct stat st;
        if (fd < 0)
                return fail(s, -errno, "cannot open %s: %s", path, strerror(errno));
        if (fstat(fd, &st) < 0)
                return fail(s, -errno, "cannot stat %s: %s", path, strerror(errno));
        if (!S_ISREG(st.st_mode))
                return fail(s, -EINVAL, "%s is not a regular file", path);
        if ((st.st_mode & 07777) != 0600 && fchmod(fd, 0600) < 0)
                return fail(s, -errno, "cannot make %s mode 0600: %s", path, strerror(errno));
        return 0;
}

/* The file is untrusted: no extensions, no functions with side effects from
 * the schema, no triggers or views an attacker could have planted. */
static int harden(struct store *s) {
        static const int off[] = {
                SQLITE_DBCONFIG_ENABLE_TRIGGER,
                SQLITE_DBCONFIG_ENABLE_VIEW,
                SQLITE_DBCONFIG_TRUSTED_SCHEMA,
                SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION,
        };
        for (size_t i = 0; i < ELEMENTSOF(off); i++)
                if (sqlite3_db_config(s->db, off[i], 0, (int *) NULL) != SQLITE_OK)
                        return sqerr(s, sqlite3_errcode(s->db));
        if (sqlite3_db_config(s->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *) NULL) != SQLITE_OK)
                return sqerr(s, sqlite3_errcode(s->db));
        sqlite3_limit(s->db, SQLITE_LIMIT_LENGTH, ROW_LIMIT);
        sqlite3_extended_result_codes(s->db, 1);
        return 0;
}

static int exec(struct store *s, const char *sql) {
        int r = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
        return r == SQLITE_OK ? 0 : sqerr(s, r);
}

/* Run a one-off query returning one row of integers. */
static int query_i64(struct store *s, const char *sql, int64_t *out, int ncol) {
        sqlite3_stmt *q = NULL;
        int r = sqlite3_prepare_v2(s->db, sql, -1, &q, NULL);
        if (r != SQLITE_OK)
                return sqerr(s, r);
        r = step(s, q);
        for (int i = 0; r > 0 && i < ncol; i++) {
                if (sqlite3_column_type(q, i) != SQLITE_INTEGER)
                        r = fail(s, -EBADMSG, "the store's schema is damaged: expected an integer");
                else
                        out[i] = sqlite3_column_int64(q, i);
        }
        sqlite3_finalize(q);
        if (r == 0)
                return fail(s, -ENOENT, "no row");
        return r < 0 ? r : 0;
}

static int set_pragmas(struct store *s) {
        sqlite3_stmt *q = NULL;
        /* cofferd is the store's only user: an exclusive lock keeps other
         * processes out while it runs, saves two fcntl() per read, and keeps
         * the WAL index in heap memory instead of a -shm file. */
        int r = exec(s, "PRAGMA locking_mode=EXCLUSIVE;");
        if (r < 0)
                return r;
        r = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &q, NULL);
        if (r != SQLITE_OK)
                return sqerr(s, r);
        r = step(s, q);
        if (r > 0 && sqlite3_stricmp((const char *) sqlite3_column_text(q, 0), "wal") != 0)
                r = fail(s, -EIO, "cannot switch the store to WAL mode");
        sqlite3_finalize(q);
        if (r < 0)
                return r;
        return exec(s, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA secure_delete=ON;"
                       "PRAGMA cache_size=-16384; PRAGMA mmap_size=0; PRAGMA cell_size_check=ON;");
}

static int check_schema(struct store *s) {
        int64_t v[2];
        int rc = query_i64(s, "SELECT (SELECT count(*) FROM sqlite_master), "
                              "EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta')", v, 2);
        if (rc < 0)
                return rc;
        if (v[0] == 0) {
                rc = exec(s, schema_sql);
                return rc < 0 ? rc : exec(s, lease_schema_sql);
        }
        if (!v[1])
                return fail(s, -EBADMSG, "%s is not a coffer store (it has tables but no meta table)", STORE_DB_NAME);
        rc = query_i64(s, "SELECT value FROM meta WHERE key = 'schema_version'", v, 1);
        if (rc == -ENOENT)
                return fail(s, -EBADMSG, "the store has no schema_version; it is damaged");
        if (rc < 0)
                return rc;
        if (v[0] > STORE_SCHEMA_VERSION)
                return fail(s, -EPROTONOSUPPORT,
                            "the store has schema version %lld, newer than this coffer knows (%d): "
                            "run a newer cofferd, or restore a backup made by this version",
                            (long long) v[0], STORE_SCHEMA_VERSION);
        if (v[0] < 1)
                return fail(s, -EBADMSG, "the store has an invalid schema_version %lld", (long long) v[0]);
        return exec(s, lease_schema_sql);
}

static int load_generation(struct store *s) {
        int64_t v;
        int rc = exec(s, generation_sql);
        if (rc == 0)
                rc = query_i64(s, "SELECT value FROM meta WHERE key = 'generation'", &v, 1);
        if (rc == 0 && v < 0)
                rc = fail(s, -EBADMSG, "the store's generation is negative; it is damaged");
        if (rc < 0)
                return rc;
        s->gen = s->durable = (uint64_t) v;
        return 0;
}

/* Check or create the schema in one transaction, so a crash cannot leave a
 * half-created store. */
static int setup_schema(struct store *s) {
        int rc = exec(s, "BEGIN IMMEDIATE");
        if (rc < 0)
                return rc;
        rc = check_schema(s);
        if (rc == 0)
                rc = load_generation(s);
        if (rc == 0)
                rc = exec(s, "COMMIT");
        if (rc < 0 && tx_active(s))
                (void) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
}

static int prepare_all(struct store *s) {
        for (size_t i = 0; i < Q_COUNT; i++) {
                int r = sqlite3_prepare_v3(s->db, query_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->q[i], NULL);
                if (r != SQLITE_OK)
                        return fail(s, r == SQLITE_ERROR ? -EBADMSG : errno_of(s, r),
                                    "the store's schema does not match: %s", sqlite3_errmsg(s->db));
        }
        return 0;
}

static int open_db(struct store *s, const char *path) {
        int r = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW,
                                NULL);
        if (r != SQLITE_OK)
                return sqerr(s, r);
        if (sqlite3_db_readonly(s->db, "main") == 1)
                return fail(s, -EROFS, "%s can only be opened read-only", path);
        int rc = harden(s);
        if (rc == 0 && sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS) != SQLITE_OK)
                rc = sqerr(s, sqlite3_errcode(s->db));
        if (rc == 0)
                rc = set_pragmas(s);
        if (rc == 0)
                rc = setup_schema(s);
        if (rc == 0)
                rc = prepare_all(s);
        if (rc == -EROFS) {
                char why[sizeof(s->errmsg)];
                snprintf(why, sizeof(why), "%s", s->errmsg);
                fail(s, rc, "the state directory %s is read-only (%s); make it writable for cofferd", s->dir, why);
        }
        return rc;
}

int store_open(struct store **out, const char *state_dir) {
        _cleanup_free_ char *path = NULL;
        if (!out || !state_dir || !*state_dir)
                return -EINVAL;
        *out = NULL;
        struct store *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        int rc = -ENOMEM;
        s->dir = strdup(state_dir);
        if (s->dir && asprintf(&path, "%s/%s", state_dir, STORE_DB_NAME) < 0)
                path = NULL;
        if (path)
                rc = create_file(s, path);
        if (rc == 0)
                rc = open_db(s, path);
        if (rc < 0) {
                snprintf(open_errmsg, sizeof(open_errmsg), "%s", s->errmsg[0] ? s->errmsg : strerror(-rc));
                store_close(s);
                return rc;
        }
        *out = s;
        return 0;
}

void store_close(struct store *s) {
        if (!s)
                return;
        if (s->db)
                store_rollback(s);
        for (size_t i = 0; i < Q_COUNT; i++)
                sqlite3_finalize(s->q[i]);
        sqlite3_close(s->db);
        free(s->dir);
        free(s);
}

const char *store_errmsg(const struct store *s) {
        if (!s)
                return open_errmsg;
        return s->errmsg[0] ? s->errmsg : "no error";
}

/* ---- meta ---- */

static bool key_ok(const char *key) {
        return key && *key && strnlen(key, WIRE_STRING_MAX + 1) <= WIRE_STRING_MAX;
}

int store_meta_get(struct store *s, const char *key, uint8_t **val, size_t *len) {
        if (!s || !key_ok(key) || !val || !len)
                return -EINVAL;
        *val = NULL;
        *len = 0;
        _cleanup_reset_ sqlite3_stmt *q = s->q[Q_META_GET];
        int rc = bind_name(s, q, key);
        if (rc == 0)
                rc = step(s, q);
        if (rc == 0)
                return fail(s, -ENOENT, "no meta key %s", key);
        if (rc < 0)
                return rc;
        const void *p = sqlite3_column_blob(q, 0);
        size_t n = (size_t) sqlite3_column_bytes(q, 0);
        uint8_t *v = malloc(n ? n : 1);
        if (!v)
                return -ENOMEM;
        if (n)
                memcpy(v, p, n);
        *val = v;
        *len = n;
        return 0;
}

/* One statement, so atomic on its own; inside store_begin it joins that
 * transaction. */
int store_meta_put(struct store *s, const char *key, const void *val, size_t len) {
        if (!s || !key_ok(key) || (!val && len))
                return -EINVAL;
        if (strcmp(key, "schema_version") == 0 || strcmp(key, "generation") == 0)
                return fail(s, -EINVAL, "%s is managed by the store", key);
        sqlite3_stmt *q = s->q[Q_META_PUT];
        int rc = bind_name(s, q, key);
        if (rc == 0)
                rc = bind_blob(s, q, 2, val ? val : "", len);
        if (rc < 0) {
                resetp(&q);
                return rc;
        }
        return run(s, q);
}

/* ---- sealing values ---- */

static bool name_ok(const char *name) {
        size_t n = name ? strnlen(name, PROTO_NAME_MAX + 1) : 0;
        return n >= 1 && n <= PROTO_NAME_MAX;
}

static size_t build_ad(uint8_t ad[static AD_MAX], const char *name, uint64_t version, uint32_t term) {
        size_t n = 0, nl = strlen(name);
        memcpy(ad, AD_FORMAT, sizeof(AD_FORMAT) - 1);
        n += sizeof(AD_FORMAT) - 1;
        memcpy(ad + n, VERSIONS_TABLE, sizeof(VERSIONS_TABLE)); /* with its NUL */
        n += sizeof(VERSIONS_TABLE);
        memcpy(ad + n, name, nl + 1);
        n += nl + 1;
        for (int i = 7; i >= 0; i--)
                ad[n++] = (uint8_t) (version >> (8 * i));
        for (int i = 3; i >= 0; i--)
                ad[n++] = (uint8_t) (term >> (8 * i));
        return n;
}

/* Decrypt a row into a fresh malloc'd buffer. */
static int open_row(struct store *s, const struct keyring *k, const char *name, const struct row *r,
                    uint8_t **val, size_t *len) {
        const struct keyring_term *t = keyring_find(k, r->term);
        if (!t)
                return fail(s, -EBADMSG, "the value is sealed under key term %u, which the keyring does not have",
                            r->term);
        uint8_t ad[AD_MAX];
        size_t adlen = build_ad(ad, name, r->version, r->term);
        size_t n = r->ct_len - TAG_SIZE;
        uint8_t *p = malloc(n ? n : 1);
        if (!p)
                return -ENOMEM;
        if (crypto_aead_xchacha20poly1305_ietf_decrypt(p, NULL, NULL, r->ct, r->ct_len, ad, adlen, r->nonce,
                                                       t->key) != 0) {
                sodium_memzero(p, n);
                free(p);
                return fail(s, -EBADMSG, "version %llu does not authenticate: the row was altered or moved",
                            (unsigned long long) r->version);
        }
        *val = p;
        *len = n;
        return 0;
}

/* Read and sanity-check the current row; every field is untrusted. */
static int read_row(struct store *s, sqlite3_stmt *q, struct row *r) {
        sqlite3_int64 version = sqlite3_column_int64(q, 0), term = sqlite3_column_int64(q, 1);
        r->deleted = sqlite3_column_int64(q, 4) != 0;
        r->destroyed = sqlite3_column_int64(q, 5) != 0;
        if (version < 1 || term < 0 || term > UINT32_MAX)
                return fail(s, -EBADMSG, "a version row has an invalid version or term");
        r->version = (uint64_t) version;
        r->term = (uint32_t) term;
        if (r->deleted || r->destroyed)
                return 0;
        r->nonce = sqlite3_column_blob(q, 2);
        size_t nonce_len = (size_t) sqlite3_column_bytes(q, 2);
        r->ct = sqlite3_column_blob(q, 3);
        r->ct_len = (size_t) sqlite3_column_bytes(q, 3);
        if (!r->nonce || nonce_len != NONCE_SIZE || !r->ct || r->ct_len < TAG_SIZE ||
            r->ct_len > WIRE_VALUE_MAX + TAG_SIZE)
                return fail(s, -EBADMSG, "version %llu has a malformed nonce or ciphertext",
                            (unsigned long long) r->version);
        return 0;
}

/* ---- secrets ---- */

struct head {
        uint64_t current;
        uint64_t max_versions;
};

static int head_get(struct store *s, const char *name, struct head *h) {
        _cleanup_reset_ sqlite3_stmt *q = s->q[Q_HEAD_GET];
        *h = (struct head) { .current = 0, .max_versions = STORE_DEFAULT_MAX_VERSIONS };
        int rc = bind_name(s, q, name);
        if (rc == 0)
                rc = step(s, q);
        if (rc <= 0)
                return rc;
        sqlite3_int64 cur = sqlite3_column_int64(q, 0), max = sqlite3_column_int64(q, 1);
        if (cur < 0 || max < 1)
                return fail(s, -EBADMSG, "the secret's version counter is damaged");
        h->current = (uint64_t) cur;
        h->max_versions = (uint64_t) max;
        return 0;
}

static int head_put(struct store *s, const char *name, const struct head *h) {
        sqlite3_stmt *q = s->q[Q_HEAD_PUT];
        int rc = bind_name(s, q, name);
        if (rc == 0)
                rc = bind_i64(s, q, 2, h->current);
        if (rc == 0)
                rc = bind_i64(s, q, 3, h->max_versions);
        if (rc < 0) {
                resetp(&q);
                return rc;
        }
        return run(s, q);
}

static int version_insert(struct store *s, const struct keyring_term *t, const char *name, uint64_t version,
                          const uint8_t *val, size_t len, uint64_t now) {
        uint8_t nonce[NONCE_SIZE], ad[AD_MAX];
        size_t adlen = build_ad(ad, name, version, t->term);
        /* Declared before q: q is reset (dropping its pointer to ct) first. */
        _cleanup_free_ uint8_t *ct = malloc(len + TAG_SIZE);
        if (!ct)
                return -ENOMEM;
        randombytes_buf(nonce, sizeof(nonce));
        crypto_aead_xchacha20poly1305_ietf_encrypt(ct, NULL, val ? val : (const uint8_t *) "", len, ad, adlen,
                                                   NULL, nonce, t->key);
        _cleanup_reset_ sqlite3_stmt *q = s->q[Q_VER_INSERT];
        int rc = bind_name(s, q, name);
        if (rc == 0)
                rc = bind_i64(s, q, 2, version);
        if (rc == 0)
                rc = bind_i64(s, q, 3, t->term);
        if (rc == 0)
                rc = bind_blob(s, q, 4, nonce, sizeof(nonce));
        if (rc == 0)
                rc = bind_blob(s, q, 5, ct, len + TAG_SIZE);
        if (rc == 0)
                rc = bind_i64(s, q, 6, now);
        if (rc == 0)
                rc = step(s, q);
        return rc > 0 ? fail(s, -EIO, "insert returned rows") : rc;
}

/* Keep the newest max_versions versions; versions are dense below current
 * except for what earlier pruning removed, so this is a range delete. */
static int prune(struct store *s, const char *name, const struct head *h) {
        if (h->current <= h->max_versions)
                return 0;
        sqlite3_stmt *q = s->q[Q_VER_PRUNE];
        int rc = bind_name(s, q, name);
        if (rc == 0)
                rc = bind_i64(s, q, 2, h->current - h->max_versions);
        if (rc < 0) {
                resetp(&q);
                return rc;
        }
        return run(s, q);
}

static int put_locked(struct store *s, const struct keyring_term *t, const char *name, const uint8_t *val,
                      size_t len, bool has_cas, uint64_t cas, uint64_t max_versions, uint64_t now,
                      uint64_t *version_out) {
        struct head h;
        int rc = head_get(s, name, &h);
        if (rc < 0)
                return rc;
        if (has_cas && h.current != cas)
                return fail(s, -ESTALE, "check-and-set: the current version is %llu, not %llu",
                            (unsigned long long) h.current, (unsigned long long) cas);
        if (h.current >= INT64_MAX)
                return fail(s, -EOVERFLOW, "the secret has run out of version numbers");
        h.current++;
        if (max_versions)
                h.max_versions = max_versions;
        rc = head_put(s, name, &h);
        if (rc == 0)
                rc = version_insert(s, t, name, h.current, val, len, now);
        if (rc == 0)
                rc = prune(s, name, &h);
        if (rc == 0)
                *version_out = h.current;
        return rc;
}

int store_secret_put(struct store *s, const struct keyring *k, const char *name, const uint8_t *val, size_t len,
                     bool has_cas, uint64_t cas, uint64_t max_versions, uint64_t now, uint64_t *version_out) {
        if (!s || !name_ok(name) || (!val && len) || !version_out)
                return -EINVAL;
        if (len > WIRE_VALUE_MAX)
                return fail(s, -E2BIG, "the value is larger than %u bytes", WIRE_VALUE_MAX);
        if (max_versions > INT64_MAX)
                return fail(s, -EINVAL, "max_versions is too large");
        const struct keyring_term *t = keyring_current(k);
        if (!t)
                return fail(s, -EINVAL, "no data key: the keyring is empty");
        int rc = write_begin(s);
        if (rc < 0)
                return rc;
        return write_end(s, put_locked(s, t, name, val, len, has_cas, cas, max_versions, now, version_out));
}

/* Look up version (0 = newest live) and leave q on its row. */
static int find_row(struct store *s, sqlite3_stmt *q, const char *name, uint64_t version, struct row *r) {
        if (version > INT64_MAX)
                return fail(s, -ENOENT, "no such version");
        int rc = bind_name(s, q, name);
        if (rc == 0 && version)
                rc = bind_i64(s, q, 2, version);
        if (rc == 0)
                rc = step(s, q);
        if (rc == 0)
                return fail(s, -ENOENT, version ? "no such secret or version" : "no such secret");
        if (rc < 0)
                return rc;
        return read_row(s, q, r);
}

int store_secret_get(struct store *s, const struct keyring *k, const char *name, uint64_t version, uint8_t **val,
                     size_t *len, uint64_t *version_out) {
        if (!s || !name_ok(name) || !val || !len)
                return -EINVAL;
        *val = NULL;
        *len = 0;
        _cleanup_reset_ sqlite3_stmt *q = s->q[version ? Q_GET_VERSION : Q_GET_NEWEST];
        struct row r;
        int rc = find_row(s, q, name, version, &r);
        if (rc < 0)
                return rc;
        if (r.destroyed)
                return fail(s, -ENOENT, "version %llu was destroyed", (unsigned long long) r.version);
        if (r.deleted)
                return fail(s, -ENOENT, "version %llu is deleted (undelete restores it)",
                            (unsigned long long) r.version);
        rc = open_row(s, k, name, &r, val, len);
        if (rc == 0 && version_out)
                *version_out = r.version;
        return rc;
}

void store_strv_free(char **v, size_t n) {
        if (!v)
                return;
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
}

/* p, grown if needed to hold n + 1 elements; NULL when out of memory (p is
 * then still valid). */
static void *grow(void *p, size_t *cap, size_t n, size_t size) {
        if (n < *cap)
                return p;
        size_t c = *cap ? *cap * 2 : 16;
        void *np = reallocarray(p, c, size);
        if (np)
                *cap = c;
        return np;
}

static int list_rows(struct store *s, sqlite3_stmt *q, char ***names, size_t *n) {
        size_t cap = 0;
        int rc;
        while ((rc = step(s, q)) > 0) {
                const char *name = (const char *) sqlite3_column_text(q, 0);
                if (!name)
                        return fail(s, -EBADMSG, "a secret has no name");
                char **np = grow(*names, &cap, *n, sizeof(char *));
                if (!np)
                        return -ENOMEM;
                *names = np;
                if (!(np[*n] = strdup(name)))
                        return -ENOMEM;
                (*n)++;
        }
        return rc;
}

int store_secret_list(struct store *s, const char *prefix, char ***names, size_t *n) {
        if (!s || !names || !n)
                return -EINVAL;
        *names = NULL;
        *n = 0;
        if (!prefix)
                prefix = "";
        if (strnlen(prefix, PROTO_NAME_MAX + 2) > PROTO_NAME_MAX + 1)
                return fail(s, -EINVAL, "the prefix is too long");
        _cleanup_reset_ sqlite3_stmt *q = s->q[Q_LIST];
        int rc = bind_name(s, q, prefix);
        if (rc == 0)
                rc = list_rows(s, q, names, n);
        if (rc < 0) {
                store_strv_free(*names, *n);
                *names = NULL;
                *n = 0;
        }
        return rc;
}

static int version_rows(struct store *s, sqlite3_stmt *q, struct proto_version **v, size_t *n) {
        size_t cap = 0;
        int rc;
        while ((rc = step(s, q)) > 0) {
                struct proto_version *np = grow(*v, &cap, *n, sizeof(*np));
                if (!np)
                        return -ENOMEM;
                *v = np;
                np[(*n)++] = (struct proto_version) {
                        .version = (uint64_t) sqlite3_column_int64(q, 0),
                        .created = (uint64_t) sqlite3_column_int64(q, 1),
                        .deleted = (uint64_t) sqlite3_column_int64(q, 2),
                        .destroyed = sqlite3_column_int64(q, 3) != 0,
                };
        }
        return rc;
}

int store_secret_versions(struct store *s, const char *name, struct proto_version **v, size_t *n) {
        if (!s || !name_ok(name) || !v || !n)
                return -EINVAL;
        *v = NULL;
        *n = 0;
        _cleanup_reset_ sqlite3_stmt *q = s->q[Q_VERSIONS];
        int rc = bind_name(s, q, name);
        if (rc == 0)
                rc = version_rows(s, q, v, n);
        if (rc == 0 && *n == 0)
                rc = fail(s, -ENOENT, "no such secret");
        if (rc < 0) {
                free(*v);
                *v = NULL;
                *n = 0;
        }
        return rc;
}

/* Run an UPDATE on (name, version); -ENOENT when it touched no row. */
static int update_version(struct store *s, int which, const char *name, uint64_t version, bool has_now,
                          uint64_t now, const char *missing) {
        if (version == 0 || version > INT64_MAX)
                return fail(s, version ? -ENOENT : -EINVAL, "%s", version ? missing : "give a version");
        sqlite3_stmt *q = s->q[which];
        int rc = bind_name(s, q, name);
        if (rc == 0)
                rc = bind_i64(s, q, 2, version);
        if (rc == 0 && has_now)
                rc = bind_i64(s, q, 3, now ? now : 1); /* 0 would mean live */
        if (rc < 0) {
                resetp(&q);
                return rc;
        }
        rc = run(s, q);
        if (rc == 0 && sqlite3_changes(s->db) == 0)
                return fail(s, -ENOENT, "%s", missing);
        return rc;
}

static int newest_live(struct store *s, const char *name, uint64_t *version) {
        _cleanup_reset_ sqlite3_stmt *q = s->q[Q_GET_LATEST];
        struct row r;
        int rc = find_row(s, q, name, 0, &r);
        if (rc == 0)
                *version = r.version;
        return rc;
}

static int delete_locked(struct store *s, const char *name, uint64_t version, uint64_t now,
                         uint64_t *version_out) {
        int rc = version ? 0 : newest_live(s, name, &version);
        if (rc == 0)
                rc = update_version(s, Q_DELETE, name, version, true, now, "no such secret or version");
        if (rc == 0 && version_out)
                *version_out = version;
        return rc;
}

int store_secret_delete(struct store *s, const char *name, uint64_t version, uint64_t now, uint64_t *version_out) {
        if (!s || !name_ok(name))
                return -EINVAL;
        int rc = write_begin(s);
        if (rc < 0)
                return rc;
        return write_end(s, delete_locked(s, name, version, now, version_out));
}

int store_secret_undelete(struct store *s, const char *name, uint64_t version) {
        if (!s || !name_ok(name))
                return -EINVAL;
        return update_version(s, Q_UNDELETE, name, version, false, 0,
                              "no such version, or it was destroyed and cannot be restored");
}

int store_secret_destroy(struct store *s, const char *name, uint64_t version) {
        if (!s || !name_ok(name))
                return -EINVAL;
        int rc = update_version(s, Q_DESTROY, name, version, false, 0, "no such secret or version");
        if (rc < 0)
                return rc;
        /* secure_delete zeroes the old cell in the database file; old WAL
         * frames holding the ciphertext go at the next truncating checkpoint. */
        s->scrub_wal = true;
        if (!s->in_tx)
                after_commit(s);
        return 0;
}

/* ---- leases ---- */

/* Run a bound one-statement write in its own transaction or savepoint;
 * bound is the result of binding (< 0: give up). */
static int run_write(struct store *s, sqlite3_stmt *q, int bound) {
        if (bound < 0) {
                resetp(&q);
                return bound;
        }
        int rc = write_begin(s);
        if (rc == 0)
                rc = run(s, q);
        else
                resetp(&q);
        return write_end(s, rc);
}

int store_lease_put(struct store *s, const struct store_lease *l) {
        if (!s || !l || !l->kind || !l->owner || !l->object || !l->data)
                return -EINVAL;
        sqlite3_stmt *q = s->q[Q_LEASE_PUT];
        int rc = bind_blob(s, q, 1, l->id, 16);
        if (rc == 0 && sqlite3_bind_text(q, 2, l->kind, -1, SQLITE_STATIC) != SQLITE_OK)
                rc = sqerr(s, sqlite3_errcode(s->db));
        if (rc == 0 && sqlite3_bind_text(q, 3, l->owner, -1, SQLITE_STATIC) != SQLITE_OK)
                rc = sqerr(s, sqlite3_errcode(s->db));
        if (rc == 0)
                rc = bind_i64(s, q, 4, l->owner_uid);
        if (rc == 0 && sqlite3_bind_text(q, 5, l->object, -1, SQLITE_STATIC) != SQLITE_OK)
                rc = sqerr(s, sqlite3_errcode(s->db));
        if (rc == 0 && l->has_parent)
                rc = bind_blob(s, q, 6, l->parent, 16);
        if (rc == 0)
                rc = bind_i64(s, q, 7, l->issued);
        if (rc == 0)
                rc = bind_i64(s, q, 8, l->expires);
        if (rc == 0)
                rc = bind_i64(s, q, 9, l->max_expires);
        if (rc == 0)
                rc = bind_i64(s, q, 10, l->renewable);
        if (rc == 0)
                rc = bind_i64(s, q, 11, l->audit_session);
        if (rc == 0 && sqlite3_bind_text(q, 12, l->data, -1, SQLITE_STATIC) != SQLITE_OK)
                rc = sqerr(s, sqlite3_errcode(s->db));
        if (rc == 0)
                rc = bind_i64(s, q, 13, l->revoked);
        if (rc == 0)
                rc = bind_blob(s, q, 14, l->mac, sizeof(l->mac));
        return run_write(s, q, rc);
}

int store_lease_delete(struct store *s, const uint8_t id[static 16]) {
        if (!s)
                return -EINVAL;
        sqlite3_stmt *q = s->q[Q_LEASE_DEL];
        return run_write(s, q, bind_blob(s, q, 1, id, 16));
}

static const char *col_text(sqlite3_stmt *q, int i) {
        const unsigned char *t = sqlite3_column_type(q, i) == SQLITE_TEXT ? sqlite3_column_text(q, i) : NULL;
        return t ? (const char *) t : NULL;
}

/* cursor: when not NULL, set to the id of each row read. */
static int lease_scan(struct store *s, sqlite3_stmt *q, struct store_cursor *cursor,
                      int (*cb)(void *ud, const struct store_lease *l), void *ud) {
        size_t n = 0;
        int rc;
        while ((rc = step(s, q)) > 0) {
                struct store_lease l = { 0 };
                const void *id = sqlite3_column_blob(q, 0), *parent = sqlite3_column_blob(q, 5),
                           *mac = sqlite3_column_blob(q, 13);
                l.kind = col_text(q, 1);
                l.owner = col_text(q, 2);
                l.object = col_text(q, 4);
                l.data = col_text(q, 11);
                if (!id || sqlite3_column_bytes(q, 0) != 16 || !l.kind || !l.owner || !l.object || !l.data ||
                    !mac || sqlite3_column_bytes(q, 13) != (int) sizeof(l.mac) ||
                    (parent && sqlite3_column_bytes(q, 5) != 16))
                        return fail(s, -EBADMSG, "the leases table has a malformed row");
                memcpy(l.id, id, 16);
                if (parent) {
                        memcpy(l.parent, parent, 16);
                        l.has_parent = true;
                }
                memcpy(l.mac, mac, sizeof(l.mac));
                l.owner_uid = (uint32_t) sqlite3_column_int64(q, 3);
                l.issued = (uint64_t) sqlite3_column_int64(q, 6);
                l.expires = (uint64_t) sqlite3_column_int64(q, 7);
                l.max_expires = (uint64_t) sqlite3_column_int64(q, 8);
                l.renewable = sqlite3_column_int64(q, 9) != 0;
                l.audit_session = (uint32_t) sqlite3_column_int64(q, 10);
                l.revoked = (uint64_t) sqlite3_column_int64(q, 12);
                if (cursor) {
                        memcpy(cursor->id, l.id, sizeof(cursor->id));
                        cursor->started = true;
                }
                rc = cb(ud, &l);
                if (rc < 0)
                        return rc;
                n++;
        }
        return rc < 0 ? rc : (int) (n > INT32_MAX ? INT32_MAX : n);
}

int store_lease_load(struct store *s, int (*cb)(void *ud, const struct store_lease *l), void *ud) {
        if (!s || !cb)
                return -EINVAL;
        _cleanup_reset_ sqlite3_stmt *q = s->q[Q_LEASE_LOAD];
        return lease_scan(s, q, NULL, cb, ud);
}

int store_lease_slice(struct store *s, struct store_cursor *cursor, unsigned limit,
                      int (*cb)(void *ud, const struct store_lease *l), void *ud) {
        if (!s || !cursor || !cb)
                return -EINVAL;
        _cleanup_reset_ sqlite3_stmt *q = s->q[Q_LEASE_SLICE];
        /* An empty blob sorts before every id. */
        if (sqlite3_bind_blob(q, 1, cursor->id, cursor->started ? (int) sizeof(cursor->id) : 0, SQLITE_TRANSIENT) !=
                    SQLITE_OK ||
            sqlite3_bind_int64(q, 2, limit) != SQLITE_OK)
                return sqerr(s, sqlite3_errcode(s->db));
        return lease_scan(s, q, cursor, cb, ud);
}
