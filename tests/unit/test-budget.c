/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for daemon/budget.c: the rate and burst per uid, the callers
 * that are never refused, the disk reserve, and the one summary record per
 * uid that stands for the refused requests. Time is passed in, not read. */
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

#include "audit.h"
#include "budget.h"
#include "config.h"

#define T0 1000000000ull /* µs */
#define SEC 1000000ull

struct fx {
        char dir[64];
        char path[96];
        struct audit *a;
        struct budget *b;
        struct config cfg;
        char why[256];
};

static int setup(void **state) {
        struct fx *f = calloc(1, sizeof(*f));
        if (!f || sodium_init() < 0)
                return -1;
        strcpy(f->dir, "/tmp/coffer-budget-XXXXXX");
        if (!mkdtemp(f->dir))
                return -1;
        snprintf(f->path, sizeof(f->path), "%s/audit.log", f->dir);
        if (audit_open(&f->a, f->path, NULL) < 0 || budget_new(&f->b) < 0)
                return -1;
        config_defaults(&f->cfg);
        f->cfg.audit_rate_per_uid = 10;
        f->cfg.audit_burst = 3;
        f->cfg.audit_reserve_mb = 0;
        f->cfg.audit_warn_free_mb = 0;
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fx *f = *state;
        budget_free(f->b);
        audit_close(f->a);
        unlink(f->path);
        rmdir(f->dir);
        free(f);
        return 0;
}

static int take(struct fx *f, uid_t uid, bool exempt, uint64_t now) {
        f->why[0] = 0;
        return budget_take(f->b, &f->cfg, f->a, uid, exempt, now, f->why, sizeof(f->why));
}

/* Lines of the log that contain needle. */
static int count_lines(struct fx *f, const char *needle) {
        char line[8192];
        int n = 0;
        FILE *fp = fopen(f->path, "r");
        assert_non_null(fp);
        while (fgets(line, sizeof(line), fp))
                n += strstr(line, needle) != NULL;
        fclose(fp);
        return n;
}

static void test_burst_then_rate(void **state) {
        struct fx *f = *state;
        for (int i = 0; i < 3; i++)
                assert_int_equal(take(f, 1000, false, T0), 0);
        assert_int_equal(take(f, 1000, false, T0), -EAGAIN);
        assert_non_null(strstr(f->why, "too many requests from uid 1000"));
        assert_non_null(strstr(f->why, "retry"));
        /* One interval (1/10 s) later, one more; not two. */
        assert_int_equal(take(f, 1000, false, T0 + SEC / 10), 0);
        assert_int_equal(take(f, 1000, false, T0 + SEC / 10), -EAGAIN);
        /* Another uid has its own bucket. */
        assert_int_equal(take(f, 1001, false, T0), 0);
        /* Idle long enough, the whole burst again. */
        for (int i = 0; i < 3; i++)
                assert_int_equal(take(f, 1000, false, T0 + 10 * SEC), 0);
        assert_int_equal(take(f, 1000, false, T0 + 10 * SEC), -EAGAIN);
}

static void test_exempt_never_refused(void **state) {
        struct fx *f = *state;
        for (int i = 0; i < 1000; i++)
                assert_int_equal(take(f, 0, true, T0), 0);
        f->cfg.audit_reserve_mb = 1u << 30; /* far more than any disk has free */
        assert_int_equal(take(f, 0, true, T0 + 2 * SEC), 0);
        assert_int_equal(count_lines(f, "requests-refused"), 0);
}

static void test_no_limit(void **state) {
        struct fx *f = *state;
        f->cfg.audit_rate_per_uid = 0;
        for (int i = 0; i < 1000; i++)
                assert_int_equal(take(f, 1000, false, T0), 0);
}

static void test_reserve(void **state) {
        struct fx *f = *state;
        f->cfg.audit_reserve_mb = 1u << 30;
        assert_int_equal(take(f, 1000, false, T0), -ENOSPC);
        assert_non_null(strstr(f->why, "nearly full"));
        assert_non_null(strstr(f->why, "audit_reserve_mb"));
        budget_tick(f->b, &f->cfg, f->a, T0 + SEC);
        assert_int_equal(count_lines(f, "\"rule\":\"audit_reserve_mb\",\"result\":\"ENOSPC\""), 1);
        assert_int_equal(count_lines(f, "refused=1 over-rate=0 low-disk=1"), 1);
        /* The reserve off: served again (the free space is looked at again
         * after a second). */
        f->cfg.audit_reserve_mb = 0;
        assert_int_equal(take(f, 1000, false, T0 + 3 * SEC), 0);
}

static void test_one_summary_per_uid(void **state) {
        struct fx *f = *state;
        for (int i = 0; i < 3; i++)
                assert_int_equal(take(f, 1000, false, T0), 0);
        for (int i = 0; i < 5; i++)
                assert_int_equal(take(f, 1000, false, T0), -EAGAIN);
        assert_int_equal(take(f, 1001, false, T0), 0);
        assert_int_equal(count_lines(f, "requests-refused"), 0); /* nothing per refused request */
        budget_tick(f->b, &f->cfg, f->a, T0 + SEC / 100);
        assert_int_equal(count_lines(f, "requests-refused"), 1);
        assert_int_equal(count_lines(f, "\"object\":\"uid:1000\""), 1);
        assert_int_equal(count_lines(f, "refused=5 over-rate=5 low-disk=0"), 1);
        assert_int_equal(count_lines(f, "\"rule\":\"audit_rate_per_uid\",\"result\":\"EAGAIN\""), 1);
        /* Told once: the next tick has nothing to add. */
        budget_tick(f->b, &f->cfg, f->a, T0 + 2 * SEC);
        assert_int_equal(count_lines(f, "requests-refused"), 1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
                T(test_burst_then_rate),
                T(test_exempt_never_refused),
                T(test_no_limit),
                T(test_reserve),
                T(test_one_summary_per_uid),
#undef T
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
