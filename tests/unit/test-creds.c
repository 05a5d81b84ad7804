/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for daemon/credsmap.c: systemd's peer address, the units of a
 * /proc/PID/cgroup text (inner and outer, containers and delegation), and
 * the creds map. Every refusal is a case of its own. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "creds.h"

/* An address as systemd's helper binds it: "\0RANDOM/unit/UNIT/CRED". */
static size_t addr(char *buf, size_t n, const char *random, const char *unit, const char *cred) {
        int len = snprintf(buf + 1, n - 1, "%s/unit/%s/%s", random, unit, cred);
        buf[0] = 0;
        return (size_t) len + 1;
}

static void test_address_ok(void **state) {
        (void) state;
        char a[256], unit[256], cred[CREDS_NAME_MAX + 1];
        size_t n = addr(a, sizeof(a), "f00dfeedcafe", "trainer@1.service", "hf-token");
        assert_int_equal(creds_parse_address(a, n, unit, cred), 0);
        assert_string_equal(unit, "trainer@1.service");
        assert_string_equal(cred, "hf-token");
        /* systemd's escaped instance names and credential names with dots */
        n = addr(a, sizeof(a), "1", "job@a\\x2db.service", "db.password");
        assert_int_equal(creds_parse_address(a, n, unit, cred), 0);
        assert_string_equal(unit, "job@a\\x2db.service");
        assert_string_equal(cred, "db.password");
}

static void test_address_refused(void **state) {
        (void) state;
        char a[512], unit[256], cred[CREDS_NAME_MAX + 1];
        size_t n;

        /* not abstract (a path), or too short */
        n = addr(a, sizeof(a), "r", "x.service", "c");
        a[0] = '/';
        assert_int_equal(creds_parse_address(a, n, unit, cred), -EINVAL);
        assert_int_equal(creds_parse_address("\0", 1, unit, cred), -EINVAL);
        assert_int_equal(creds_parse_address("", 0, unit, cred), -EINVAL);
        /* a well-formed address but for one part */
        static const struct {
                const char *random, *unit, *cred, *why;
        } bad[] = {
                { "", "x.service", "c", "no random part" },
                { "a/b", "x.service", "c", "a '/' in the random part" },
                { "r", "", "c", "an empty unit" },
                { "r", "x y.service", "c", "a character systemd never puts in a unit name" },
                { "r", "x.service", "", "an empty credential" },
                { "r", "x.service", ".", "credential '.'" },
                { "r", "x.service", "..", "credential '..'" },
                { "r", "x.service", "a/b", "a '/' in the credential" },
                { "r", "x.service", "a\tb", "a control byte in the credential" },
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                n = addr(a, sizeof(a), bad[i].random, bad[i].unit, bad[i].cred);
                if (creds_parse_address(a, n, unit, cred) != -EINVAL)
                        fail_msg("accepted: %s", bad[i].why);
        }
        /* no "/unit/" */
        a[0] = 0;
        memcpy(a + 1, "rnd/units/x.service/c", 21);
        assert_int_equal(creds_parse_address(a, 22, unit, cred), -EINVAL);
        /* a NUL inside the random part */
        n = addr(a, sizeof(a), "rr", "x.service", "c");
        a[2] = 0;
        assert_int_equal(creds_parse_address(a, n, unit, cred), -EINVAL);
        /* longer than sun_path: no socket has such an address */
        char longcred[200];
        memset(longcred, 'c', sizeof(longcred) - 1);
        longcred[sizeof(longcred) - 1] = 0;
        n = addr(a, sizeof(a), "r", "x.service", longcred);
        assert_true(n > 108);
        assert_int_equal(creds_parse_address(a, n, unit, cred), -EINVAL);
}

static int units(const char *text, char unit[static 256], char outer[static 256]) {
        return creds_cgroup_unit(text, strlen(text), unit, outer);
}

static void test_cgroup_host_unit(void **state) {
        (void) state;
        char unit[256], outer[256];
        assert_int_equal(units("0::/system.slice/system-trainer.slice/trainer@1.service\n", unit, outer), 0);
        assert_string_equal(unit, "trainer@1.service");
        assert_string_equal(outer, "trainer@1.service");
        /* a scope, no trailing newline */
        assert_int_equal(units("0::/system.slice/run-r1.scope", unit, outer), 0);
        assert_string_equal(unit, "run-r1.scope");
        assert_string_equal(outer, "run-r1.scope");
        /* cgroup v1: the name=systemd line */
        assert_int_equal(units("4:memory:/x\n1:name=systemd:/system.slice/db.service\n", unit, outer), 0);
        assert_string_equal(unit, "db.service");
        /* the unified line wins over name=systemd */
        assert_int_equal(units("1:name=systemd:/system.slice/a.service\n0::/system.slice/b.service\n", unit, outer),
                         0);
        assert_string_equal(unit, "b.service");
}

static void test_cgroup_nested(void **state) {
        (void) state;
        char unit[256], outer[256];
        /* systemd in a container, as the host sees it */
        assert_int_equal(units("0::/machine.slice/machine-box.scope/payload/system.slice/system-trainer.slice/"
                               "trainer@1.service\n",
                               unit, outer),
                         0);
        assert_string_equal(unit, "trainer@1.service");
        assert_string_equal(outer, "machine-box.scope");
        /* a service with Delegate= naming its own sub-cgroup */
        assert_int_equal(units("0::/system.slice/runner.service/job/trainer@1.service\n", unit, outer), 0);
        assert_string_equal(unit, "trainer@1.service");
        assert_string_equal(outer, "runner.service");
        /* a user's units, under the user's manager */
        assert_int_equal(units("0::/user.slice/user-1000.slice/user@1000.service/app.slice/x.service\n", unit, outer),
                         0);
        assert_string_equal(unit, "x.service");
        assert_string_equal(outer, "user@1000.service");
}

static void test_cgroup_no_unit(void **state) {
        (void) state;
        char unit[256], outer[256];
        assert_int_equal(units("0::/\n", unit, outer), -ENOENT);
        assert_int_equal(units("0::/system.slice\n", unit, outer), -ENOENT);
        assert_int_equal(units("", unit, outer), -ENOENT);
        assert_int_equal(units("4:memory:/system.slice/a.service\n", unit, outer), -ENOENT);
        /* ".service" alone, a name with a character no unit has */
        assert_int_equal(units("0::/.service\n", unit, outer), -ENOENT);
        assert_int_equal(units("0::/a b.service\n", unit, outer), -ENOENT);
        /* a component of 256 bytes or more is no unit name */
        char text[400] = "0::/";
        memset(text + 4, 'a', 300);
        strcpy(text + 304, ".service\n");
        assert_int_equal(units(text, unit, outer), -ENOENT);
        assert_string_equal(unit, "");
        assert_string_equal(outer, "");
}

static void test_map(void **state) {
        (void) state;
        static struct creds_map m;
        char err[1024];
        const char *text = "# credential  secret\n"
                           "hf-token secret:hf/token   # the trainer's\n"
                           "\n"
                           "db.password\tsecret:db/pw\n";
        assert_int_equal(creds_map_parse(&m, "m", text, strlen(text), err, sizeof(err)), 0);
        assert_int_equal(m.n, 2);
        assert_string_equal(creds_map_lookup(&m, "hf-token"), "hf/token");
        assert_string_equal(creds_map_lookup(&m, "db.password"), "db/pw");
        /* not in the map: the secret of the same name, if that is one */
        assert_string_equal(creds_map_lookup(&m, "plain"), "plain");
        assert_null(creds_map_lookup(&m, "a:b"));
        assert_string_equal(creds_map_lookup(NULL, "plain"), "plain");
}

static void test_map_refused(void **state) {
        (void) state;
        static struct creds_map m;
        char err[2048];
        const char *text = "ok secret:a\n"
                           "one-word\n"
                           "x secret:b extra\n"
                           "y notsecret:b\n"
                           "z secret:../b\n"
                           "a/b secret:c\n"
                           "ok secret:d\n";
        assert_int_equal(creds_map_parse(&m, "m", text, strlen(text), err, sizeof(err)), -EINVAL);
        assert_int_equal(m.n, 0);
        assert_non_null(strstr(err, "m:2: expected CREDENTIAL secret:NAME"));
        assert_non_null(strstr(err, "m:3: expected CREDENTIAL secret:NAME"));
        assert_non_null(strstr(err, "m:4: expected secret:NAME"));
        assert_non_null(strstr(err, "m:5: expected secret:NAME"));
        assert_non_null(strstr(err, "m:6: bad credential name"));
        assert_non_null(strstr(err, "m:7: ok is mapped twice"));
        assert_null(strstr(err, "m:1:"));
        /* a NUL byte, and a line too long */
        assert_int_equal(creds_map_parse(&m, "m", "a secret:b\0c\n", 13, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "m:1: NUL byte in line"));
        static char big[2100];
        memset(big, 'a', sizeof(big) - 1);
        assert_int_equal(creds_map_parse(&m, "m", big, strlen(big), err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "m:1: line too long"));
        /* more entries than the map holds */
        static char many[CREDS_MAP_MAX * 32 + 64];
        size_t len = 0;
        for (int i = 0; i <= CREDS_MAP_MAX; i++)
                len += (size_t) snprintf(many + len, sizeof(many) - len, "c%d secret:s%d\n", i, i);
        assert_int_equal(creds_map_parse(&m, "m", many, len, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "more than 256 entries"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_address_ok),      cmocka_unit_test(test_address_refused),
                cmocka_unit_test(test_cgroup_host_unit), cmocka_unit_test(test_cgroup_nested),
                cmocka_unit_test(test_cgroup_no_unit),  cmocka_unit_test(test_map),
                cmocka_unit_test(test_map_refused),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
