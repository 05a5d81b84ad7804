/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for daemon/audit.c: the file format, the MAC chain, and what
 * verification finds when a copy of the log is edited, cut, reordered or
 * forged. Each test gets a fresh temporary directory and fresh keys. Lines
 * are tampered with by plain byte surgery on the file. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <cmocka.h>
#include <sodium.h>

#include "audit.h"
#include "util.h"

#define MAXLINES 256

struct fx {
        char dir[64];
        char path[96];
        uint8_t mac_key[32], box_pk[32], box_sk[32];
        struct peer peer;
        /* the file split into lines, newlines kept */
        char *line[MAXLINES];
        size_t nlines;
};

static int setup(void **state) {
        struct fx *f = calloc(1, sizeof(*f));
        if (!f)
                return -1;
        strcpy(f->dir, "/tmp/test-audit-XXXXXX");
        if (!mkdtemp(f->dir))
                return -1;
        snprintf(f->path, sizeof(f->path), "%s/audit.log", f->dir);
        randombytes_buf(f->mac_key, sizeof(f->mac_key));
        crypto_box_keypair(f->box_pk, f->box_sk);
        f->peer = (struct peer){ .uid = 1000, .gid = 1000, .pid = 4242, .pidfd = -1, .audit_session = 7,
                                 .exe_known = true, .exe_dev = makedev(8, 1), .exe_ino = 4711, .exe_verified = true };
        strcpy(f->peer.user, "alice");
        strcpy(f->peer.exe, "/usr/bin/python3");
        strcpy(f->peer.unit, "session-7.scope");
        strcpy(f->peer.login_session, "7");
        *state = f;
        return 0;
}

static void free_lines(struct fx *f) {
        for (size_t i = 0; i < f->nlines; i++)
                free(f->line[i]);
        f->nlines = 0;
}

static int teardown(void **state) {
        struct fx *f = *state;
        char cmd[128];
        free_lines(f);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
        if (system(cmd) != 0)
                return -1;
        free(f);
        return 0;
}

/* ---- helpers ---- */

static struct audit_event event(struct fx *f, const char *op, const char *object) {
        return (struct audit_event){ .op = op, .object = object, .decision = "allow", .rule = "test",
                                     .result = 0, .version = 1, .peer = &f->peer };
}

static void record(struct fx *f, struct audit *a, int n) {
        for (int i = 0; i < n; i++) {
                struct audit_event ev = event(f, "get", "secret:hf/token");
                assert_int_equal(audit_record(a, &ev), 0);
        }
}

/* A log with a sealed segment start and n records. */
static void make_log(struct fx *f, int n) {
        struct audit *a;
        assert_int_equal(audit_open(&a, f->path, f->box_pk), 0);
        record(f, a, n);
        audit_close(a);
}

static void load(struct fx *f) {
        FILE *fp = fopen(f->path, "r");
        char *l = NULL;
        size_t cap = 0;
        ssize_t n;
        assert_non_null(fp);
        free_lines(f);
        while ((n = getline(&l, &cap, fp)) > 0) {
                assert_true(f->nlines < MAXLINES);
                f->line[f->nlines] = malloc((size_t) n + 1);
                assert_non_null(f->line[f->nlines]);
                memcpy(f->line[f->nlines++], l, (size_t) n + 1);
        }
        free(l);
        fclose(fp);
}

static void store(struct fx *f) {
        FILE *fp = fopen(f->path, "w");
        assert_non_null(fp);
        for (size_t i = 0; i < f->nlines; i++)
                fputs(f->line[i], fp);
        assert_int_equal(fclose(fp), 0);
}

static int verify_keys(struct fx *f, const uint8_t *mac_key, const uint8_t *pk, const uint8_t *sk,
                       struct audit_report *rep) {
        int fd = open(f->path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        int rc = audit_verify_fd(fd, mac_key, pk, sk, rep);
        close(fd);
        return rc;
}

static int verify(struct fx *f, struct audit_report *rep) {
        return verify_keys(f, f->mac_key, f->box_pk, f->box_sk, rep);
}

static void assert_bad(struct fx *f, uint64_t line, const char *why) {
        struct audit_report rep;
        assert_int_equal(verify(f, &rep), -EBADMSG);
        if (rep.bad_line != line || !strstr(rep.reason, why))
                fail_msg("want line %llu (%s), got line %llu: %s", (unsigned long long) line, why,
                         (unsigned long long) rep.bad_line, rep.reason);
}

/* The MAC hex at the end of a line (with or without its newline). */
static void line_mac(const char *line, char hex[65]) {
        size_t n = strcspn(line, "\n");
        assert_true(n > 66);
        memcpy(hex, line + n - 66, 64);
        hex[64] = 0;
}

/* A record as the writer makes it, MACed under key (NULL: unkeyed). */
static char *forge(uint64_t seq, const char *body, const char *prev_hex, const uint8_t *key) {
        char *l = malloc(4096), hex[65];
        uint8_t mac[32];
        assert_non_null(l);
        int n = snprintf(l, 4096, "{\"seq\":%llu,\"time\":\"2024-01-01T00:00:00.000000Z\",%s,\"prev\":\"%s\"",
                         (unsigned long long) seq, body, prev_hex);
        crypto_generichash(mac, 32, (const uint8_t *) l, (size_t) n, key, key ? 32 : 0);
        hex_encode(hex, mac, 32);
        snprintf(l + n, 4096 - (size_t) n, ",\"mac\":\"%s\"}\n", hex);
        return l;
}

static void append_line(struct fx *f, char *l) {
        assert_true(f->nlines < MAXLINES);
        f->line[f->nlines++] = l;
}

static bool file_contains(struct fx *f, const char *needle) {
        load(f);
        for (size_t i = 0; i < f->nlines; i++)
                if (strstr(f->line[i], needle))
                        return true;
        return false;
}

/* ---- writing and verifying ---- */

static void test_write_then_verify(void **state) {
        struct fx *f = *state;
        struct audit *a;
        struct audit_report rep;
        uint64_t seq;
        uint8_t head[32];
        assert_int_equal(audit_open(&a, f->path, f->box_pk), 0);
        record(f, a, 10);
        audit_head(a, &seq, head);
        audit_close(a);
        assert_int_equal(verify(f, &rep), 0);
        assert_int_equal(rep.records, 11);
        assert_int_equal(rep.segments, 1);
        assert_int_equal(rep.unkeyed, 0);
        assert_int_equal(rep.bad_line, 0);
        assert_int_equal(rep.last_seq, 11);
        assert_int_equal(seq, 11);
        assert_true(memcmp(rep.last_mac, head, 32) == 0);
        assert_int_equal(rep.unendorsed, 11); /* no master segment yet */
}

static void test_file_is_0600(void **state) {
        struct fx *f = *state;
        struct stat st;
        mode_t old = umask(0);
        make_log(f, 1);
        umask(old);
        assert_int_equal(stat(f->path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
}

static void test_record_fields(void **state) {
        struct fx *f = *state;
        struct audit *a;
        struct audit_event ev = event(f, "get", "secret:x");
        assert_int_equal(audit_open(&a, f->path, f->box_pk), 0);
        ev.decision = "deny";
        ev.result = -ENOENT;
        ev.version = 42;
        assert_int_equal(audit_record(a, &ev), 0);
        ev.peer = NULL;
        ev.result = -EACCES;
        ev.object = NULL;
        ev.rule = NULL;
        assert_int_equal(audit_record(a, &ev), 0);
        audit_close(a);
        load(f);
        assert_int_equal(f->nlines, 3);
        assert_non_null(strstr(f->line[0], "\"event\":\"segment\",\"gen\":0,\"mode\":\"sealed\",\"cause\":\"start\",\"key\":\""));
        assert_non_null(strstr(f->line[1], "\"seq\":2,\"time\":\""));
        assert_non_null(strstr(f->line[1], "\"event\":\"request\",\"gen\":0,\"op\":\"get\",\"object\":\"secret:x\","
                                           "\"decision\":\"deny\",\"rule\":\"test\",\"result\":\"ENOENT\","
                                           "\"version\":42,\"uid\":1000,\"gid\":1000,\"pid\":4242,\"user\":\"alice\","
                                           "\"exe\":\"/usr/bin/python3\",\"exe_file\":\"8:1:4711\",\"unit\":\"session-7.scope\","
                                           "\"audit_session\":7,\"login_session\":\"7\",\"prev\":\""));
        assert_non_null(strstr(f->line[2], "\"object\":null,\"decision\":\"deny\",\"rule\":null,"
                                           "\"result\":\"EACCES\",\"version\":42,\"prev\":"));
        /* RFC 3339 UTC with microseconds */
        const char *t = strstr(f->line[1], "\"time\":\"") + 8;
        assert_int_equal(strcspn(t, "\""), strlen("2024-01-01T00:00:00.000000Z"));
        assert_int_equal(t[26], 'Z');
        assert_int_equal(t[19], '.');
}

/* The anchor: every record carries the store generation last set, and a
 * reopened log continues from its last record's; a log written before
 * generations anchors 0, and a record whose gen is not a number is refused
 * (it was edited: the anchor cannot be trusted). */
static void test_generation_anchor(void **state) {
        struct fx *f = *state;
        struct audit *a;
        struct audit_report rep;
        struct audit_event ev = event(f, "put", "secret:x");
        make_log(f, 1);
        assert_int_equal(audit_open(&a, f->path, f->box_pk), 0);
        assert_int_equal(audit_generation(a), 0);
        audit_set_generation(a, 41);
        assert_int_equal(audit_record(a, &ev), 0);
        audit_set_generation(a, 42);
        assert_int_equal(audit_record(a, &ev), 0);
        audit_close(a);
        load(f);
        assert_non_null(strstr(f->line[f->nlines - 1], "\"event\":\"request\",\"gen\":42,"));
        assert_int_equal(audit_open(&a, f->path, f->box_pk), 0);
        assert_int_equal(audit_generation(a), 42);
        audit_close(a);
        load(f);
        assert_non_null(strstr(f->line[f->nlines - 1], "\"event\":\"segment\",\"gen\":42,"));
        assert_int_equal(verify(f, &rep), 0);

        /* The last record as an older daemon wrote it: no gen at all. */
        char *g = strstr(f->line[f->nlines - 1], ",\"gen\":42");
        memmove(g, g + strlen(",\"gen\":42"), strlen(g + strlen(",\"gen\":42")) + 1);
        store(f);
        assert_int_equal(audit_open(&a, f->path, f->box_pk), 0);
        assert_int_equal(audit_generation(a), 0);
        audit_close(a);

        load(f);
        char *line = f->line[f->nlines - 1], *edited = NULL;
        g = strstr(line, "\"gen\":0,");
        assert_non_null(g);
        *g = '\0';
        assert_true(asprintf(&edited, "%s\"gen\":\"0\"%s", line, g + strlen("\"gen\":0")) > 0);
        free(line);
        f->line[f->nlines - 1] = edited;
        store(f);
        assert_int_equal(audit_open(&a, f->path, f->box_pk), -EBADMSG);
}

/* Every literal the writer emits must parse: found by the fuzzer as
 * "audit_session":nul when the session was unset. */
static void test_unset_peer_fields(void **state) {
        struct fx *f = *state;
        struct audit *a;
        struct audit_report rep;
        struct audit_event ev = event(f, "get", NULL);
        f->peer.audit_session = UINT32_MAX;
        f->peer.unit[0] = f->peer.login_session[0] = f->peer.exe[0] = 0;
        f->peer.exe_known = f->peer.exe_verified = false;
        f->peer.foreign_ns = true;
        ev.version = 0;
        ev.rule = NULL;
        assert_int_equal(audit_open(&a, f->path, f->box_pk), 0);
        assert_int_equal(audit_record(a, &ev), 0);
        audit_close(a);
        assert_true(file_contains(f, "\"object\":null,\"decision\":\"allow\",\"rule\":null,\"result\":\"ok\","
                                     "\"version\":null,\"uid\":1000,\"gid\":1000,\"pid\":4242,\"user\":\"alice\","
                                     "\"exe\":\"\",\"exe_file\":\"\",\"exe_unverified\":true,\"foreign_ns\":true,"
                                     "\"unit\":\"\",\"audit_session\":null,\"login_session\":\"\",\"prev\":\""));
        assert_int_equal(verify(f, &rep), 0);
        assert_int_equal(rep.records, 2);
}

static void test_unsealed_segments_verify(void **state) {
        struct fx *f = *state;
        struct audit *a;
        struct audit_report rep;
        assert_int_equal(audit_open(&a, f->path, f->box_pk), 0);
        record(f, a, 3);
        assert_int_equal(audit_unsealed(a, f->mac_key), 0);
        record(f, a, 3);
        assert_int_equal(audit_sealed(a, f->box_pk), 0);
        record(f, a, 2);
        audit_close(a);
        assert_int_equal(verify(f, &rep), 0);
        assert_int_equal(rep.records, 11);
        assert_int_equal(rep.segments, 3);
        assert_int_equal(rep.unendorsed, 3);
        assert_true(file_contains(f, "\"mode\":\"master\",\"cause\":\"unsealed\",\"prev\""));
}

static void test_wrong_box_key(void **state) {
        struct fx *f = *state;
        struct audit_report rep;
        uint8_t pk[32], sk[32];
        make_log(f, 3);
        crypto_box_keypair(pk, sk);
        assert_int_equal(verify_keys(f, f->mac_key, pk, sk, &rep), -EBADMSG);
        assert_int_equal(rep.bad_line, 1);
        assert_non_null(strstr(rep.reason, "cannot be opened with this store's audit key"));
        assert_int_equal(rep.records, 0);
}

static void test_wrong_mac_key(void **state) {
        struct fx *f = *state;
        struct audit *a;
        struct audit_report rep;
        uint8_t other[32];
        assert_int_equal(audit_open(&a, f->path, f->box_pk), 0);
        assert_int_equal(audit_unsealed(a, f->mac_key), 0);
        record(f, a, 1);
        audit_close(a);
        randombytes_buf(other, sizeof(other));
        assert_int_equal(verify_keys(f, other, f->box_pk, f->box_sk, &rep), -EBADMSG);
        assert_int_equal(rep.bad_line, 2);
        assert_non_null(strstr(rep.reason, "MAC mismatch"));
}

/* ---- tampering ---- */

static void test_edit_one_byte(void **state) {
        struct fx *f = *state;
        make_log(f, 8);
        load(f);
        char *p = strstr(f->line[4], "hf/token");
        assert_non_null(p);
        p[0] = 'H';
        store(f);
        assert_bad(f, 5, "line 5: MAC mismatch (record edited?)");
}

static void test_edit_seq_and_prev_fields(void **state) {
        struct fx *f = *state;
        make_log(f, 8);
        load(f);
        char *p = strstr(f->line[3], "\"seq\":4,");
        assert_non_null(p);
        p[6] = '9'; /* seq 4 -> 9 */
        store(f);
        assert_bad(f, 4, "sequence 9 follows 3");
}

static void test_flip_mac(void **state) {
        struct fx *f = *state;
        make_log(f, 8);
        load(f);
        size_t n = strlen(f->line[6]);
        f->line[6][n - 4] = f->line[6][n - 4] == '0' ? '1' : '0';
        store(f);
        assert_bad(f, 7, "MAC mismatch");
}

static void test_delete_middle_line(void **state) {
        struct fx *f = *state;
        make_log(f, 8);
        load(f);
        free(f->line[4]);
        memmove(&f->line[4], &f->line[5], (f->nlines - 5) * sizeof(char *));
        f->nlines--;
        store(f);
        assert_bad(f, 5, "line 5: sequence 6 follows 4 (records deleted?)");
}

static void test_delete_first_line(void **state) {
        struct fx *f = *state;
        make_log(f, 3);
        load(f);
        free(f->line[0]);
        memmove(&f->line[0], &f->line[1], (f->nlines - 1) * sizeof(char *));
        f->nlines--;
        store(f);
        assert_bad(f, 1, "sequence 2 follows 0");
}

static void test_swap_two_lines(void **state) {
        struct fx *f = *state;
        make_log(f, 8);
        load(f);
        char *t = f->line[3];
        f->line[3] = f->line[4];
        f->line[4] = t;
        store(f);
        assert_bad(f, 4, "line 4: sequence 5 follows 3");
}

static void test_duplicate_line(void **state) {
        struct fx *f = *state;
        make_log(f, 8);
        load(f);
        append_line(f, strdup(f->line[f->nlines - 1]));
        store(f);
        assert_bad(f, 10, "sequence 9 follows 9 (records reordered or duplicated?)");
}

/* Renumbering keeps seq consistent but not prev. */
static void test_insert_with_right_seq(void **state) {
        struct fx *f = *state;
        char prev[65];
        make_log(f, 3);
        load(f);
        line_mac(f->line[0], prev); /* chains to line 1, not line 3 */
        append_line(f, forge(5, "\"event\":\"request\",\"op\":\"get\"", prev, NULL));
        store(f);
        assert_bad(f, 5, "prev does not match line 4");
}

static void test_truncated_last_line(void **state) {
        struct fx *f = *state;
        struct audit_report rep;
        make_log(f, 5);
        load(f);
        f->line[5][strlen(f->line[5]) / 2] = 0;
        store(f);
        assert_int_equal(verify(f, &rep), -EBADMSG);
        assert_int_equal(rep.bad_line, 6);
        assert_non_null(strstr(rep.reason, "line 6: truncated record at the end of the log"));
        assert_int_equal(rep.records, 5);
        assert_int_equal(rep.last_seq, 5);
}

static void test_missing_final_newline_only(void **state) {
        struct fx *f = *state;
        struct audit_report rep;
        make_log(f, 2);
        load(f);
        f->line[2][strlen(f->line[2]) - 1] = 0;
        store(f);
        assert_int_equal(verify(f, &rep), 0); /* the record itself is whole */
        assert_int_equal(rep.records, 3);
}

static void test_forged_record_random_key(void **state) {
        struct fx *f = *state;
        uint8_t key[32];
        char prev[65];
        make_log(f, 4);
        load(f);
        randombytes_buf(key, sizeof(key));
        line_mac(f->line[4], prev);
        append_line(f, forge(6, "\"event\":\"request\",\"op\":\"get\",\"decision\":\"allow\"", prev, key));
        store(f);
        assert_bad(f, 6, "line 6: MAC mismatch (record edited?)");
}

/* Anyone who has the store's audit public key can start a sealed segment of
 * their own at the end of the log: verify cannot tell it from the daemon's
 * (docs/AUDIT.md), but it is counted as unendorsed, it does not match the
 * live chain head, and the daemon's next record exposes it. */
static void test_forged_sealed_tail(void **state) {
        struct fx *f = *state;
        struct audit *a;
        struct audit_report rep;
        uint8_t key[32], boxed[crypto_box_SEALBYTES + 32], head[32];
        char b64[sodium_base64_ENCODED_LEN(sizeof(boxed), sodium_base64_VARIANT_ORIGINAL)], body[512], prev[65];
        uint64_t seq;
        assert_int_equal(audit_open(&a, f->path, f->box_pk), 0);
        assert_int_equal(audit_unsealed(a, f->mac_key), 0);
        record(f, a, 2);
        audit_head(a, &seq, head);
        load(f);
        randombytes_buf(key, sizeof(key));
        crypto_box_seal(boxed, key, 32, f->box_pk);
        sodium_bin2base64(b64, sizeof(b64), boxed, sizeof(boxed), sodium_base64_VARIANT_ORIGINAL);
        snprintf(body, sizeof(body), "\"event\":\"segment\",\"mode\":\"sealed\",\"cause\":\"start\",\"key\":\"%s\"", b64);
        line_mac(f->line[3], prev);
        append_line(f, forge(5, body, prev, key));
        line_mac(f->line[4], prev);
        append_line(f, forge(6, "\"event\":\"request\",\"op\":\"get\"", prev, key));
        store(f);
        assert_int_equal(verify(f, &rep), 0);
        assert_int_equal(rep.unendorsed, 2);
        assert_int_equal(rep.last_seq, 6);
        assert_false(rep.last_seq == seq && memcmp(rep.last_mac, head, 32) == 0);
        /* store() rewrote the file: the daemon's fd still appends to it */
        record(f, a, 1);
        audit_close(a);
        assert_bad(f, 7, "sequence 5 follows 6");
}

static void test_overlong_line(void **state) {
        struct fx *f = *state;
        size_t n = 70000;
        make_log(f, 3);
        load(f);
        char *l = malloc(n + 2);
        assert_non_null(l);
        memset(l, 'x', n);
        l[n] = '\n';
        l[n + 1] = 0;
        free(f->line[2]);
        f->line[2] = l;
        store(f);
        assert_bad(f, 3, "line 3: longer than 64 KiB");
}

static void test_garbage_lines(void **state) {
        struct fx *f = *state;
        static const char *bad[] = {
                "\n", "{}\n", "not json\n", "{\"seq\":1}\n", "\"\n", "{\"seq\":01,\"prev\":\"\"}\n",
                "{\"seq\":1,\"seq\":1,\"prev\":\"00\",\"mac\":\"0000000000000000000000000000000000000000000000000000000000000000\"}\n",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                struct audit_report rep;
                free_lines(f);
                append_line(f, strdup(bad[i]));
                store(f);
                assert_int_equal(verify(f, &rep), -EBADMSG);
                assert_int_equal(rep.bad_line, 1);
                assert_non_null(strstr(rep.reason, "line 1: "));
        }
}

static void test_empty_log_verifies(void **state) {
        struct fx *f = *state;
        struct audit_report rep;
        store(f);
        assert_int_equal(verify(f, &rep), 0);
        assert_int_equal(rep.records, 0);
        assert_int_equal(rep.last_seq, 0);
}

static void test_verify_from_pipe(void **state) {
        struct fx *f = *state;
        struct audit_report rep;
        int p[2];
        make_log(f, 5);
        load(f);
        assert_int_equal(pipe(p), 0);
        for (size_t i = 0; i < f->nlines; i++)
                assert_int_equal(write_all(p[1], f->line[i], strlen(f->line[i])), 0);
        close(p[1]);
        assert_int_equal(audit_verify_fd(p[0], f->mac_key, f->box_pk, f->box_sk, &rep), 0);
        close(p[0]);
        assert_int_equal(rep.records, 6);
}

/* ---- reopening ---- */

static void test_reopen_continues_chain(void **state) {
        struct fx *f = *state;
        struct audit *a;
        struct audit_report rep;
        uint64_t seq;
        uint8_t head[32];
        make_log(f, 3);
        assert_int_equal(audit_open(&a, f->path, f->box_pk), 0);
        audit_head(a, &seq, head);
        assert_int_equal(seq, 5);
        record(f, a, 2);
        audit_close(a);
        assert_int_equal(verify(f, &rep), 0);
        assert_int_equal(rep.records, 7);
        assert_int_equal(rep.segments, 2);
        assert_int_equal(rep.last_seq, 7);
}

static void test_torn_tail_then_reopen(void **state) {
        struct fx *f = *state;
        struct audit *a;
        struct audit_report rep;
        uint64_t seq;
        uint8_t head[32];
        make_log(f, 3);
        load(f);
        f->line[3][40] = 0; /* a crash in the middle of record 4 */
        store(f);
        assert_int_equal(audit_open(&a, f->path, f->box_pk), 0);
        audit_head(a, &seq, head);
        assert_int_equal(seq, 4); /* record 3 is the last whole one; the segment start is 4 */
        record(f, a, 2);
        audit_close(a);
        load(f);
        assert_int_equal(f->nlines, 7);
        assert_int_equal(verify(f, &rep), -EBADMSG);
        assert_int_equal(rep.bad_line, 4);
        assert_non_null(strstr(rep.reason, "line 4: not a whole audit record"));
        assert_non_null(strstr(rep.reason, "the 3 records after it verify"));
        assert_int_equal(rep.records, 6);
        assert_int_equal(rep.last_seq, 6);
}

static void test_torn_first_record_reopens(void **state) {
        struct fx *f = *state;
        struct audit *a;
        append_line(f, strdup("{\"seq\":1,\"ti"));
        store(f);
        assert_int_equal(audit_open(&a, f->path, f->box_pk), 0);
        audit_close(a);
        assert_bad(f, 1, "not a whole audit record");
}

static void test_refuses_foreign_file(void **state) {
        struct fx *f = *state;
        struct audit *a = NULL;
        append_line(f, strdup("root:x:0:0:root:/root:/bin/bash\n"));
        store(f);
        int rc = audit_open(&a, f->path, f->box_pk);
        assert_int_equal(rc, -EBADMSG);
        assert_null(a);
        assert_non_null(strstr(audit_strerror(rc), "move it aside"));
        load(f);
        assert_int_equal(f->nlines, 1); /* untouched */
}

static void test_second_writer_refused(void **state) {
        struct fx *f = *state;
        struct audit *a, *b = NULL;
        assert_int_equal(audit_open(&a, f->path, f->box_pk), 0);
        assert_int_equal(audit_open(&b, f->path, f->box_pk), -EBUSY);
        audit_close(a);
        assert_int_equal(audit_open(&b, f->path, f->box_pk), 0);
        audit_close(b);
}

/* ---- segments without a key (before init) ---- */

static void test_unkeyed_then_keyed(void **state) {
        struct fx *f = *state;
        struct audit *a;
        struct audit_report rep;
        assert_int_equal(audit_open(&a, f->path, NULL), 0);
        record(f, a, 3);
        assert_int_equal(audit_unsealed(a, f->mac_key), 0);
        record(f, a, 2);
        audit_close(a);
        assert_true(file_contains(f, "\"mode\":\"sealed\",\"cause\":\"start\",\"key\":null,\"prev\""));
        assert_int_equal(verify(f, &rep), 0);
        assert_int_equal(rep.unkeyed, 1);
        assert_int_equal(rep.segments, 2);
        assert_int_equal(rep.records, 7);
        assert_int_equal(rep.unendorsed, 0);
}

static void test_unkeyed_edit_detected(void **state) {
        struct fx *f = *state;
        struct audit *a;
        assert_int_equal(audit_open(&a, f->path, NULL), 0);
        record(f, a, 3);
        assert_int_equal(audit_unsealed(a, f->mac_key), 0);
        record(f, a, 1);
        audit_close(a);
        load(f);
        char *p = strstr(f->line[2], "hf/token");
        p[0] = 'H';
        store(f);
        assert_bad(f, 3, "MAC mismatch");
}

/* Unkeyed records are only hashed, so a forger can recompute them all; the
 * first keyed record pins the last hash and exposes the rewrite. */
static void test_unkeyed_rewrite_caught_by_keyed_segment(void **state) {
        struct fx *f = *state;
        struct audit *a;
        char prev[65];
        assert_int_equal(audit_open(&a, f->path, NULL), 0);
        record(f, a, 3);
        assert_int_equal(audit_unsealed(a, f->mac_key), 0);
        audit_close(a);
        load(f);
        line_mac(f->line[1], prev);
        free(f->line[2]);
        f->line[2] = forge(3, "\"event\":\"request\",\"op\":\"forged\"", prev, NULL);
        line_mac(f->line[2], prev);
        free(f->line[3]);
        f->line[3] = forge(4, "\"event\":\"request\",\"op\":\"forged\"", prev, NULL);
        store(f);
        assert_bad(f, 5, "prev does not match line 4");
}

static void test_unkeyed_after_keyed_refused(void **state) {
        struct fx *f = *state;
        struct audit *a;
        make_log(f, 2);
        assert_int_equal(audit_open(&a, f->path, NULL), 0);
        record(f, a, 1);
        audit_close(a);
        assert_bad(f, 4, "an unkeyed segment after keyed ones");
}

/* ---- hostile field values ---- */

/* Decode one JSON string value (after the opening quote) back to bytes,
 * \udcXX meaning the raw byte XX. Returns its length. */
static size_t json_unescape(const char *s, char *out, size_t cap) {
        size_t n = 0;
        while (*s && *s != '"') {
                unsigned cp;
                assert_true(n + 4 < cap);
                if (*s != '\\') {
                        assert_true((unsigned char) *s >= 0x20 && (unsigned char) *s < 0x7f);
                        out[n++] = *s++;
                        continue;
                }
                s++;
                if (*s != 'u') {
                        assert_true(*s == '"' || *s == '\\');
                        out[n++] = *s++;
                        continue;
                }
                assert_int_equal(sscanf(s + 1, "%4x", &cp), 1);
                s += 5;
                if (cp >= 0xd800 && cp < 0xdc00) {
                        unsigned lo;
                        assert_true(s[0] == '\\' && s[1] == 'u');
                        assert_int_equal(sscanf(s + 2, "%4x", &lo), 1);
                        s += 6;
                        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                } else if (cp >= 0xdc00 && cp < 0xe000) {
                        out[n++] = (char) (cp & 0xff);
                        continue;
                }
                if (cp < 0x80)
                        out[n++] = (char) cp;
                else if (cp < 0x800) {
                        out[n++] = (char) (0xc0 | cp >> 6);
                        out[n++] = (char) (0x80 | (cp & 0x3f));
                } else if (cp < 0x10000) {
                        out[n++] = (char) (0xe0 | cp >> 12);
                        out[n++] = (char) (0x80 | (cp >> 6 & 0x3f));
                        out[n++] = (char) (0x80 | (cp & 0x3f));
                } else {
                        out[n++] = (char) (0xf0 | cp >> 18);
                        out[n++] = (char) (0x80 | (cp >> 12 & 0x3f));
                        out[n++] = (char) (0x80 | (cp >> 6 & 0x3f));
                        out[n++] = (char) (0x80 | (cp & 0x3f));
                }
        }
        assert_int_equal(*s, '"');
        return n;
}

static void test_hostile_strings(void **state) {
        struct fx *f = *state;
        static const char *names[] = {
                "a\"b", "back\\slash", "new\nline", "cr\rlf", "tab\t", "nul-ish \x01\x1f\x7f",
                "x\",\"mac\":\"0000000000000000000000000000000000000000000000000000000000000000\"}\n{\"seq\":99",
                "bad utf8 \xff\xfe\xc0\xaf", "surrogate \xed\xa0\x80", "cut \xe2\x82", "euro \xe2\x82\xac",
                "emoji \xf0\x9f\x94\x91", "c1 \xc2\x9b[31m", "bidi \xe2\x80\xae", "esc \x1b[2J",
                "\",\"decision\":\"allow", "\\u0022",
        };
        struct audit *a;
        struct audit_report rep;
        char want[64], got[4096];
        assert_int_equal(audit_open(&a, f->path, f->box_pk), 0);
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                struct audit_event ev = event(f, names[i], names[i]);
                ev.rule = names[i];
                ev.decision = "deny";
                strcpy_bounded(f->peer.exe, sizeof(f->peer.exe), names[i]);
                strcpy_bounded(f->peer.user, sizeof(f->peer.user), names[i]);
                assert_int_equal(audit_record(a, &ev), 0);
        }
        audit_close(a);
        assert_int_equal(verify(f, &rep), 0);
        assert_int_equal(rep.records, ELEMENTSOF(names) + 1);
        load(f);
        assert_int_equal(f->nlines, ELEMENTSOF(names) + 1);
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                const char *l = f->line[i + 1];
                for (const char *p = l; *p != '\n'; p++)
                        assert_true(*p >= 0x20 && *p < 0x7f); /* printable ASCII only */
                assert_non_null(strstr(l, "\"decision\":\"deny\""));
                assert_int_equal(strstr(l, "\"decision\":\"allow\""), NULL);
                snprintf(want, sizeof(want), "\"seq\":%zu,", i + 2);
                assert_true(strncmp(l + 1, want + 0, strlen(want)) == 0);
                /* the value decodes back to exactly the caller's bytes */
                const char *v = strstr(l, "\"object\":\"") + 10;
                size_t n = json_unescape(v, got, sizeof(got));
                assert_int_equal(n, strlen(names[i]));
                assert_true(memcmp(got, names[i], n) == 0);
        }
}

static void test_long_values_truncated(void **state) {
        struct fx *f = *state;
        struct audit *a;
        struct audit_report rep;
        size_t n = 100000;
        char *big = malloc(n + 1);
        assert_non_null(big);
        memset(big, '\xff', n); /* worst case: every byte escapes to six */
        big[n] = 0;
        memset(f->peer.exe, '\xff', sizeof(f->peer.exe)); /* not even terminated */
        memset(f->peer.user, '"', sizeof(f->peer.user));
        memset(f->peer.unit, '\x01', sizeof(f->peer.unit));
        memset(f->peer.login_session, '\\', sizeof(f->peer.login_session));
        assert_int_equal(audit_open(&a, f->path, f->box_pk), 0);
        struct audit_event ev = event(f, big, big);
        ev.rule = big;
        ev.decision = big;
        assert_int_equal(audit_record(a, &ev), 0);
        audit_close(a);
        free(big);
        assert_int_equal(verify(f, &rep), 0);
        assert_true(file_contains(f, ",\"truncated\":true,\"prev\":\""));
        /* The escaped output is what is bounded: four 1 KiB fields, seven of
         * 256 bytes and the fixed part, where the input would escape to 60 KiB. */
        assert_true(strlen(f->line[1]) <= 4 * 1024 + 7 * 256 + 1024);
        /* each cut value ends with the marker, never inside an escape */
        assert_non_null(strstr(f->line[1], "\\udcff...\",\"decision\""));
        assert_non_null(strstr(f->line[1], "\\u0001...\",\"audit_session\""));
}

/* ---- refusing the file ---- */

static void test_refuses_symlink(void **state) {
        struct fx *f = *state;
        struct audit *a = NULL;
        char target[128];
        snprintf(target, sizeof(target), "%s/real.log", f->dir);
        assert_int_equal(close(open(target, O_CREAT | O_WRONLY, 0600)), 0);
        assert_int_equal(symlink(target, f->path), 0);
        int rc = audit_open(&a, f->path, f->box_pk);
        assert_int_equal(rc, -ELOOP);
        assert_null(a);
        assert_non_null(strstr(audit_strerror(rc), "symbolic link"));
        unlink(f->path);
        assert_int_equal(symlink("/nonexistent/dangling", f->path), 0); /* no creating through it either */
        assert_int_equal(audit_open(&a, f->path, f->box_pk), -ELOOP);
}

static void test_refuses_group_or_other_writable(void **state) {
        struct fx *f = *state;
        struct audit *a = NULL;
        make_log(f, 1);
        assert_int_equal(chmod(f->path, 0620), 0);
        int rc = audit_open(&a, f->path, f->box_pk);
        assert_int_equal(rc, -EPERM);
        assert_non_null(strstr(audit_strerror(rc), "writable by group or others"));
        assert_int_equal(chmod(f->path, 0602), 0);
        assert_int_equal(audit_open(&a, f->path, f->box_pk), -EPERM);
        assert_int_equal(chmod(f->path, 0640), 0); /* readable is the admin's choice */
        assert_int_equal(audit_open(&a, f->path, f->box_pk), 0);
        audit_close(a);
}

static void test_refuses_non_regular(void **state) {
        struct fx *f = *state;
        struct audit *a = NULL;
        assert_int_equal(mkdir(f->path, 0700), 0);
        int rc = audit_open(&a, f->path, f->box_pk);
        assert_int_equal(rc, -EINVAL);
        assert_non_null(strstr(audit_strerror(rc), "not a regular file"));
        assert_int_equal(rmdir(f->path), 0);
        assert_int_equal(mkfifo(f->path, 0600), 0); /* must not hang waiting for a reader */
        assert_int_equal(audit_open(&a, f->path, f->box_pk), -EINVAL);
        assert_null(a);
}

/* ---- failing to write: the caller must be told, the log must stay whole ---- */

static void limit_file_size(rlim_t n) {
        struct rlimit r;
        assert_int_equal(getrlimit(RLIMIT_FSIZE, &r), 0);
        r.rlim_cur = n;
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &r), 0);
}

static off_t file_size(struct fx *f) {
        struct stat st;
        assert_int_equal(stat(f->path, &st), 0);
        return st.st_size;
}

static void test_write_failure_reported(void **state) {
        struct fx *f = *state;
        struct audit *a;
        struct audit_report rep;
        struct rlimit saved;
        assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
        assert_int_equal(audit_open(&a, f->path, f->box_pk), 0);
        record(f, a, 2);
        off_t size = file_size(f);
        struct audit_event ev = event(f, "put", "secret:x");
        limit_file_size((rlim_t) size + 100); /* room for part of a record: a short write */
        int rc = audit_record(a, &ev);
        assert_true(rc == -EIO || rc == -EFBIG);
        assert_int_equal(file_size(f), size); /* the partial line was cut off again */
        limit_file_size((rlim_t) size); /* no room at all */
        assert_int_equal(audit_record(a, &ev), -EFBIG);
        assert_int_equal(audit_unsealed(a, f->mac_key), -EFBIG); /* a failed switch keeps the old key */
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
        record(f, a, 2);
        audit_close(a);
        assert_int_equal(verify(f, &rep), 0);
        assert_int_equal(rep.records, 5);
        assert_int_equal(rep.segments, 1);
}

static void test_journal_enabled_does_not_fail(void **state) {
        struct fx *f = *state;
        struct audit *a;
        struct audit_report rep;
        struct audit_event ev = event(f, "get", "secret:j");
        unsetenv("COFFER_AUDIT_NO_JOURNAL"); /* journald may or may not be there */
        assert_int_equal(audit_open(&a, f->path, f->box_pk), 0);
        setenv("COFFER_AUDIT_NO_JOURNAL", "1", 1);
        ev.decision = "deny";
        ev.result = -EACCES;
        assert_int_equal(audit_record(a, &ev), 0);
        ev.peer = NULL;
        ev.op = NULL;
        ev.decision = NULL;
        assert_int_equal(audit_record(a, &ev), 0);
        audit_close(a);
        assert_int_equal(verify(f, &rep), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
                T(test_write_then_verify),
                T(test_file_is_0600),
                T(test_record_fields),
                T(test_unset_peer_fields),
                T(test_generation_anchor),
                T(test_unsealed_segments_verify),
                T(test_wrong_box_key),
                T(test_wrong_mac_key),
                T(test_edit_one_byte),
                T(test_edit_seq_and_prev_fields),
                T(test_flip_mac),
                T(test_delete_middle_line),
                T(test_delete_first_line),
                T(test_swap_two_lines),
                T(test_duplicate_line),
                T(test_insert_with_right_seq),
                T(test_truncated_last_line),
                T(test_missing_final_newline_only),
                T(test_forged_record_random_key),
                T(test_forged_sealed_tail),
                T(test_overlong_line),
                T(test_garbage_lines),
                T(test_empty_log_verifies),
                T(test_verify_from_pipe),
                T(test_reopen_continues_chain),
                T(test_torn_tail_then_reopen),
                T(test_torn_first_record_reopens),
                T(test_refuses_foreign_file),
                T(test_second_writer_refused),
                T(test_unkeyed_then_keyed),
                T(test_unkeyed_edit_detected),
                T(test_unkeyed_rewrite_caught_by_keyed_segment),
                T(test_unkeyed_after_keyed_refused),
                T(test_hostile_strings),
                T(test_long_values_truncated),
                T(test_refuses_symlink),
                T(test_refuses_group_or_other_writable),
                T(test_refuses_non_regular),
                T(test_write_failure_reported),
                T(test_journal_enabled_does_not_fail),
#undef T
        };
        if (sodium_init() < 0)
                return 1;
        /* Writing past RLIMIT_FSIZE must fail the write, not kill the test. */
        signal(SIGXFSZ, SIG_IGN);
        setenv("COFFER_AUDIT_NO_JOURNAL", "1", 1);
        umask(022);
        return cmocka_run_group_tests_name("audit", tests, NULL, NULL);
}
