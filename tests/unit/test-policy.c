/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for daemon/policy.c: one test per behaviour. Parsing goes
 * through policy_parse_buffer with the file name "t.policy"; loader tests
 * build a directory with mkdtemp and accept files owned by the test's uid
 * (daemon_uid = getuid()). Only users and groups every Debian has are used:
 * root(0), daemon(1), bin(2), sys(3), nobody(65534); groups adm(4), users(100). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "policy.h"
#include "util.h"

#define NOBODY 65534

/* ---- helpers ---- */

static struct policy *parse_ok(const char *text) {
        struct policy *p = NULL;
        char err[POLICY_ERR_MAX] = "";

        assert_int_equal(policy_new(&p), 0);
        if (policy_parse_buffer(p, "t.policy", text, strlen(text), err, sizeof(err)) < 0)
                fail_msg("unexpected parse error: %s", err);
        return p;
}

/* The error must start with want_at ("t.policy:L:C: ") and contain want_msg. */
static void expect_error(const char *text, const char *want_at, const char *want_msg) {
        _cleanup_policy_ struct policy *p = NULL;
        char err[POLICY_ERR_MAX] = "";

        assert_int_equal(policy_new(&p), 0);
        assert_int_equal(policy_parse_buffer(p, "t.policy", text, strlen(text), err, sizeof(err)), -EINVAL);
        if (strncmp(err, want_at, strlen(want_at)) != 0 || !strstr(err, want_msg))
                fail_msg("for %s\n  got:  %s\n  want: %s...%s", text, err, want_at, want_msg);
        assert_int_equal(policy_rule_count(p), 0);
}

static struct pol_subject subj(uid_t uid, gid_t gid) {
        return (struct pol_subject) { .uid = uid, .gid = gid, .exe = "", .unit = "", .minute_of_day = 600 };
}

static struct pol_decision eval(const struct policy *p, const struct pol_subject *s, enum pol_action a,
                                const char *object) {
        struct pol_decision d;

        assert_int_equal(policy_eval(p, s, a, object, &d), 0);
        return d;
}

static bool allowed(const struct policy *p, const struct pol_subject *s, enum pol_action a, const char *object) {
        return eval(p, s, a, object).allow;
}

/* ---- grammar: each element parses ---- */

static void test_parse_issue_example(void **state) {
        /* The issue's example, with users and groups that exist everywhere. */
        _cleanup_policy_ struct policy *p = parse_ok(
                "# effect  actions      object               subjects and conditions (all must hold)\n"
                "allow     read         secret:hf/*          group:users\n"
                "allow     read,list    secret:datasets/*    user:daemon,bin session:login\n"
                "deny      read         secret:prod/*        group:adm\n"
                "allow     read         secret:db/train-ro   unit:trainer@*.service\n"
                "allow     read         secret:ops/*         exe:/usr/bin/python3* user:sys\n"
                "allow     read         secret:night/*       group:users time:20:00-06:00\n"
                "allow     delegate     secret:hf/*          group:users uses<=1 ttl<=24h\n"
                "allow     issue        token:inference-api  group:users ttl<=1h\n"
                "allow     admin        *                    group:root\n");

        assert_int_equal(policy_rule_count(p), 9);
        assert_false(policy_is_empty(p));
}

static void test_parse_actions(void **state) {
        _cleanup_policy_ struct policy *p =
                parse_ok("allow read,list,write,delete,issue,delegate,admin secret:a uid:1\n"
                         "allow * secret:b uid:2\n");
        struct pol_subject s1 = subj(1, 1), s2 = subj(2, 2);

        for (int a = 0; a < POL_ACTION_COUNT; a++) {
                assert_true(allowed(p, &s1, (enum pol_action) a, "secret:a"));
                assert_false(allowed(p, &s1, (enum pol_action) a, "secret:b"));
                assert_true(allowed(p, &s2, (enum pol_action) a, "secret:b"));
        }
}

static void test_parse_objects(void **state) {
        _cleanup_policy_ struct policy *p = parse_ok("allow read secret:s uid:1\n"
                                                     "allow read token:t uid:1\n"
                                                     "allow read store:seal uid:1\n"
                                                     "allow read policy:reload uid:1\n"
                                                     "allow read audit:verify uid:1\n"
                                                     "allow read * uid:2\n");
        struct pol_subject s1 = subj(1, 1), s2 = subj(2, 2);

        assert_true(allowed(p, &s1, POL_READ, "secret:s"));
        assert_true(allowed(p, &s1, POL_READ, "token:t"));
        assert_true(allowed(p, &s1, POL_READ, "store:seal"));
        assert_true(allowed(p, &s1, POL_READ, "policy:reload"));
        assert_true(allowed(p, &s1, POL_READ, "audit:verify"));
        assert_false(allowed(p, &s1, POL_READ, "token:s"));   /* kinds are distinct */
        assert_false(allowed(p, &s1, POL_READ, "secret:t"));
        assert_true(allowed(p, &s2, POL_READ, "anything:at/all"));
        assert_true(allowed(p, &s2, POL_READ, "no-kind"));
}

static void test_parse_terms(void **state) {
        _cleanup_policy_ struct policy *p = parse_ok(
                "allow read secret:all user:root,daemon uid:0,1,1000 group:root,adm unit:a.service,b@*.service "
                "exe:/usr/bin/x,/opt/** session:login time:09:00-17:00,20:00-06:00 ttl<=5m uses<=3\n");
        struct pol_subject s = subj(1, 4);
        struct pol_decision d;

        s.unit = "b@7.service";
        s.exe = "/opt/tool/bin/t";
        s.in_login_session = true;
        s.minute_of_day = 21 * 60;
        d = eval(p, &s, POL_READ, "secret:all");
        assert_true(d.allow);
        assert_int_equal(d.max_ttl_sec, 300);
        assert_int_equal(d.max_uses, 3);
        assert_true(d.depends_on_exe);
        assert_true(d.depends_on_unit);
}

static void test_parse_durations(void **state) {
        _cleanup_policy_ struct policy *p = parse_ok("allow read secret:a uid:1 ttl<=30s\n"
                                                     "allow read secret:b uid:1 ttl<=5m\n"
                                                     "allow read secret:c uid:1 ttl<=1h\n"
                                                     "allow read secret:d uid:1 ttl<=7d\n"
                                                     "allow read secret:e uid:1 ttl<=90\n");
        struct pol_subject s = subj(1, 1);

        assert_int_equal(eval(p, &s, POL_READ, "secret:a").max_ttl_sec, 30);
        assert_int_equal(eval(p, &s, POL_READ, "secret:b").max_ttl_sec, 300);
        assert_int_equal(eval(p, &s, POL_READ, "secret:c").max_ttl_sec, 3600);
        assert_int_equal(eval(p, &s, POL_READ, "secret:d").max_ttl_sec, 7 * 86400);
        assert_int_equal(eval(p, &s, POL_READ, "secret:e").max_ttl_sec, 90);
}

static void test_parse_comments_blanks_tabs(void **state) {
        _cleanup_policy_ struct policy *p = parse_ok("\n   \n# only a comment\n\t# indented comment\n"
                                                     "allow\tread \t secret:a\tuid:1   # trailing comment\n"
                                                     "allow read secret:b uid:1 #\n"
                                                     "allow read secret:c uid:1"); /* no final newline */
        struct pol_subject s = subj(1, 1);
        struct pol_decision d;

        assert_int_equal(policy_rule_count(p), 3);
        d = eval(p, &s, POL_READ, "secret:a");
        assert_true(d.allow);
        assert_int_equal(d.line, 5);
        assert_string_equal(d.rule, "allow\tread \t secret:a\tuid:1");
        assert_true(allowed(p, &s, POL_READ, "secret:c"));
}

static void test_parse_rule_without_terms(void **state) {
        _cleanup_policy_ struct policy *p = parse_ok("allow list secret:public/**\n");
        struct pol_subject s = subj(NOBODY, NOBODY);

        assert_true(allowed(p, &s, POL_LIST, "secret:public/x/y"));
        assert_false(allowed(p, &s, POL_READ, "secret:public/x/y"));
}

/* ---- grammar: errors say where ---- */

static void test_err_effect(void **state) {
        expect_error("permit read secret:a\n", "t.policy:1:1: ", "expected 'allow' or 'deny'");
        expect_error("  Allow read secret:a\n", "t.policy:1:3: ", "expected 'allow' or 'deny'");
}

static void test_err_missing_columns(void **state) {
        expect_error("allow\n", "t.policy:1:6: ", "expected actions");
        expect_error("allow read   \n", "t.policy:1:11: ", "expected an object");
}

static void test_err_action(void **state) {
        expect_error("allow read,frob secret:a\n", "t.policy:1:12: ", "expected an action");
        expect_error("allow read,* secret:a\n", "t.policy:1:12: ", "cannot be part of a list");
}

static void test_err_trailing_comma(void **state) {
        expect_error("allow read, secret:a\n", "t.policy:1:12: ", "expected an action after ','");
        expect_error("allow ,read secret:a\n", "t.policy:1:7: ", "expected an action");
        expect_error("allow read secret:a user:root,\n", "t.policy:1:31: ", "expected a user name after ','");
        expect_error("allow read secret:a group:adm,,users\n", "t.policy:1:31: ", "expected a group name after ','");
}

static void test_err_object(void **state) {
        expect_error("allow read file:/etc/passwd\n", "t.policy:1:12: ", "expected an object");
        expect_error("allow read secret\n", "t.policy:1:12: ", "expected an object");
        expect_error("allow read secret:\n", "t.policy:1:19: ", "expected a pattern");
}

static void test_err_glob_empty_segment(void **state) {
        expect_error("allow read secret:a//b\n", "t.policy:1:21: ", "empty path segment");
        expect_error("allow read secret:a/\n", "t.policy:1:21: ", "empty path segment");
        expect_error("allow read secret:/a\n", "t.policy:1:19: ", "empty path segment");
        expect_error("allow read secret:a uid:1 exe:/usr//bin\n", "t.policy:1:36: ", "empty path segment");
}

static void test_err_glob_stars(void **state) {
        expect_error("allow read secret:a/***\n", "t.policy:1:21: ", "'***' is not a pattern");
        expect_error("allow read secret:a/b**\n", "t.policy:1:22: ", "'**' must be a whole path segment");
        expect_error("allow read secret:**x/b\n", "t.policy:1:19: ", "'**' must be a whole path segment");
}

static void test_err_glob_metachars(void **state) {
        expect_error("allow read secret:a?\n", "t.policy:1:20: ", "'?' is not allowed");
        expect_error("allow read secret:a/[ab]\n", "t.policy:1:21: ", "'[' is not allowed");
        expect_error("allow read secret:a{b,c}\n", "t.policy:1:20: ", "'{' is not allowed");
        expect_error("allow read secret:a#b\n", "t.policy:1:20: ", "'#' is not allowed");
        expect_error("allow read secret:a uid:1 unit:a?.service\n", "t.policy:1:33: ", "'?' is not allowed");
}

static void test_err_exe_relative(void **state) {
        expect_error("allow read secret:a exe:python3\n", "t.policy:1:25: ", "absolute path");
        expect_error("allow read secret:a exe:/usr/bin/x,bash\n", "t.policy:1:36: ", "absolute path");
}

static void test_err_unknown_term(void **state) {
        expect_error("allow read secret:a color:red\n", "t.policy:1:21: ", "unknown term 'color'");
        expect_error("allow read secret:a users:root\n", "t.policy:1:21: ", "unknown term 'users'");
        expect_error("allow read secret:a root\n", "t.policy:1:21: ", "unknown term 'root'");
}

static void test_err_term_operator(void **state) {
        expect_error("allow read secret:a ttl:5m\n", "t.policy:1:24: ", "expected '<=' after 'ttl'");
        expect_error("allow read secret:a user<=root\n", "t.policy:1:25: ", "expected ':' after 'user'");
        expect_error("allow read secret:a user:\n", "t.policy:1:26: ", "expected a user name");
}

static void test_err_duplicate_term(void **state) {
        expect_error("allow read secret:a user:root user:bin\n", "t.policy:1:31: ", "'user:' appears twice");
        expect_error("allow read secret:a ttl<=1h uid:1 ttl<=2h\n", "t.policy:1:35: ", "'ttl<=' appears twice");
}

static void test_err_unknown_user_group(void **state) {
        expect_error("allow read secret:a user:root,no-such-user-zq\n", "t.policy:1:31: ",
                     "unknown user 'no-such-user-zq'");
        expect_error("allow read secret:a user:1000\n", "t.policy:1:26: ", "use uid:N");
        expect_error("allow read secret:a group:no-such-group-zq\n", "t.policy:1:27: ",
                     "unknown group 'no-such-group-zq'");
}

static void test_err_uid(void **state) {
        expect_error("allow read secret:a uid:12x\n", "t.policy:1:25: ", "expected a numeric uid");
        expect_error("allow read secret:a uid:0,-1\n", "t.policy:1:27: ", "expected a numeric uid");
        expect_error("allow read secret:a uid:4294967295\n", "t.policy:1:25: ", "expected a numeric uid");
}

static void test_err_time(void **state) {
        expect_error("allow read secret:a time:9:00-17:00\n", "t.policy:1:26: ", "expected a time window");
        expect_error("allow read secret:a time:25:00-06:00\n", "t.policy:1:26: ", "00:00 to 23:59");
        expect_error("allow read secret:a time:09:00-17:60\n", "t.policy:1:32: ", "00:00 to 23:59");
        expect_error("allow read secret:a time:09:00-09:00\n", "t.policy:1:26: ", "same minute");
        expect_error("allow read secret:a time:09:00-17:00,\n", "t.policy:1:38: ", "after ','");
}

static void test_err_session(void **state) {
        expect_error("allow read secret:a session:ssh\n", "t.policy:1:29: ", "expected 'login'");
}

static void test_err_ttl_uses(void **state) {
        expect_error("allow read secret:a ttl<=5x\n", "t.policy:1:26: ", "expected one duration");
        expect_error("allow read secret:a ttl<=0\n", "t.policy:1:26: ", "expected one duration");
        expect_error("allow read secret:a ttl<=1h,2h\n", "t.policy:1:26: ", "expected one duration");
        expect_error("allow read secret:a uses<=0\n", "t.policy:1:27: ", "expected one whole number");
        expect_error("deny read secret:a ttl<=1h\n", "t.policy:1:20: ", "no meaning on a deny rule");
        expect_error("deny read secret:a uses<=1\n", "t.policy:1:20: ", "no meaning on a deny rule");
}

static void test_err_reports_line(void **state) {
        expect_error("# ok\nallow read secret:a\n\n  allow read secret:b  bogus\n", "t.policy:4:24: ",
                     "unknown term 'bogus'");
}

static void test_err_long_line(void **state) {
        _cleanup_free_ char *text = malloc(5000 + 64);
        size_t off;

        assert_non_null(text);
        strcpy(text, "allow read secret:ok\nallow read secret:");
        off = strlen(text);
        memset(text + off, 'a', 5000);
        strcpy(text + off + 5000, "\n");
        expect_error(text, "t.policy:2:4097: ", "longer than 4096 characters");
}

static void test_err_line_at_limit_ok(void **state) {
        char text[POLICY_LINE_MAX + 2];
        _cleanup_policy_ struct policy *p = NULL;

        memset(text, 'a', POLICY_LINE_MAX);
        memcpy(text, "allow read secret:", 18);
        text[POLICY_LINE_MAX] = '\n';
        text[POLICY_LINE_MAX + 1] = '\0';
        p = parse_ok(text);
        assert_int_equal(policy_rule_count(p), 1);
}

static void test_err_control_chars(void **state) {
        static const char nul[] = "allow read secret:a\0b\n";
        _cleanup_policy_ struct policy *p = NULL;
        char err[POLICY_ERR_MAX] = "";

        expect_error("allow read secret:a\r\n", "t.policy:1:20: ", "Unix line endings");
        expect_error("allow read\vsecret:a\n", "t.policy:1:11: ", "control character 0x0b");
        assert_int_equal(policy_new(&p), 0);
        assert_int_equal(policy_parse_buffer(p, "t.policy", nul, sizeof(nul) - 1, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "t.policy:1:20: NUL byte"));
}

static void test_err_leaves_policy_unchanged(void **state) {
        _cleanup_policy_ struct policy *p = parse_ok("allow read secret:a uid:1\n");
        struct pol_subject s = subj(1, 1);
        char err[POLICY_ERR_MAX];
        static const char bad[] = "allow read secret:b uid:1\nallow read secret:c bogus:1\n";

        assert_int_equal(policy_parse_buffer(p, "u.policy", bad, strlen(bad), err, sizeof(err)), -EINVAL);
        assert_int_equal(policy_rule_count(p), 1);
        assert_true(allowed(p, &s, POL_READ, "secret:a"));
        assert_false(allowed(p, &s, POL_READ, "secret:b"));
}

/* ---- loader ---- */

struct dirfx {
        char dir[64];
};

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        return remove(path);
}

static int dir_setup(void **state) {
        struct dirfx *f = calloc(1, sizeof(*f));

        if (!f)
                return -1;
        strcpy(f->dir, "/tmp/test-policy-XXXXXX");
        if (!mkdtemp(f->dir) || chmod(f->dir, 0755) < 0)
                return -1;
        *state = f;
        return 0;
}

static int dir_teardown(void **state) {
        struct dirfx *f = *state;

        nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
        free(f);
        return 0;
}

static void put_file(const struct dirfx *f, const char *name, const char *text, mode_t mode) {
        char path[256];
        int fd;

        snprintf(path, sizeof(path), "%s/%s", f->dir, name);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write_all(fd, text, strlen(text)), 0);
        assert_int_equal(fchmod(fd, mode), 0);
        close(fd);
}

static int load(const struct dirfx *f, struct policy **p, char *err, size_t errsz) {
        return policy_load_dir(p, f->dir, getuid(), err, errsz);
}

static void test_load_dir_in_name_order(void **state) {
        struct dirfx *f = *state;
        _cleanup_policy_ struct policy *p = NULL;
        char err[POLICY_ERR_MAX] = "";
        struct pol_subject s = subj(1, 1);
        struct pol_decision d;

        put_file(f, "20-b.policy", "allow read secret:x uid:1\n", 0644);
        put_file(f, "10-a.policy", "\nallow read secret:x uid:1 ttl<=1h\n", 0600);
        put_file(f, "README", "this is not policy\n", 0644);
        put_file(f, "30.policy.bak", "garbage\n", 0644);
        put_file(f, ".hidden.policy", "garbage\n", 0644);
        put_file(f, ".policy", "garbage\n", 0644);
        assert_int_equal(load(f, &p, err, sizeof(err)), 0);
        assert_int_equal(policy_rule_count(p), 2);
        d = eval(p, &s, POL_READ, "secret:x");
        assert_true(d.allow);
        assert_non_null(strstr(d.file, "/10-a.policy"));
        assert_int_equal(strncmp(d.file, f->dir, strlen(f->dir)), 0);
        assert_int_equal(d.line, 2);
        assert_int_equal(d.max_ttl_sec, 3600);
}

static void test_load_world_writable(void **state) {
        struct dirfx *f = *state;
        struct policy *p = NULL;
        char err[POLICY_ERR_MAX] = "", want[256];

        put_file(f, "10-a.policy", "allow * * uid:0\n", 0666);
        assert_int_equal(load(f, &p, err, sizeof(err)), -EPERM);
        assert_null(p);
        snprintf(want, sizeof(want),
                 "%s/10-a.policy: is writable by group or others (mode 0666); run chmod go-w %s/10-a.policy",
                 f->dir, f->dir);
        assert_string_equal(err, want);
}

static void test_load_group_writable(void **state) {
        struct dirfx *f = *state;
        struct policy *p = NULL;
        char err[POLICY_ERR_MAX] = "";

        put_file(f, "10-a.policy", "allow * * uid:0\n", 0664);
        assert_int_equal(load(f, &p, err, sizeof(err)), -EPERM);
        assert_non_null(strstr(err, "(mode 0664)"));
}

static void test_load_dir_writable(void **state) {
        struct dirfx *f = *state;
        struct policy *p = NULL;
        char err[POLICY_ERR_MAX] = "";

        put_file(f, "10-a.policy", "allow * * uid:0\n", 0644);
        assert_int_equal(chmod(f->dir, 0777), 0);
        assert_int_equal(load(f, &p, err, sizeof(err)), -EPERM);
        assert_null(p);
        assert_int_equal(strncmp(err, f->dir, strlen(f->dir)), 0);
        assert_non_null(strstr(err, "is writable by group or others (mode 0777)"));
}

static void test_load_wrong_owner(void **state) {
        struct dirfx *f = *state;
        struct policy *p = NULL;
        char err[POLICY_ERR_MAX] = "", path[128];

        if (geteuid() != 0)
                skip();
        put_file(f, "10-a.policy", "allow * * uid:0\n", 0644);
        snprintf(path, sizeof(path), "%s/10-a.policy", f->dir);
        assert_int_equal(chown(path, NOBODY, NOBODY), 0);
        assert_int_equal(policy_load_dir(&p, f->dir, 0, err, sizeof(err)), -EPERM);
        assert_null(p);
        assert_non_null(strstr(err, "10-a.policy: owned by uid 65534"));
        /* The daemon's own uid is accepted as owner. */
        assert_int_equal(policy_load_dir(&p, f->dir, NOBODY, err, sizeof(err)), 0);
        policy_free(p);
        /* And the directory is checked too. */
        assert_int_equal(chown(path, 0, 0), 0);
        assert_int_equal(chown(f->dir, NOBODY, NOBODY), 0);
        p = NULL;
        assert_int_equal(policy_load_dir(&p, f->dir, 0, err, sizeof(err)), -EPERM);
        assert_non_null(strstr(err, "owned by uid 65534"));
}

static void test_load_symlink_refused(void **state) {
        struct dirfx *f = *state;
        struct policy *p = NULL;
        char err[POLICY_ERR_MAX] = "", link[128];

        put_file(f, "real.txt", "allow * * uid:0\n", 0644);
        snprintf(link, sizeof(link), "%s/10-a.policy", f->dir);
        assert_int_equal(symlink("real.txt", link), 0);
        assert_int_equal(load(f, &p, err, sizeof(err)), -ELOOP);
        assert_null(p);
        assert_non_null(strstr(err, "10-a.policy: is a symbolic link"));
}

static void test_load_not_regular(void **state) {
        struct dirfx *f = *state;
        struct policy *p = NULL;
        char err[POLICY_ERR_MAX] = "", path[128];

        snprintf(path, sizeof(path), "%s/10-a.policy", f->dir);
        assert_int_equal(mkfifo(path, 0644), 0);
        assert_int_equal(load(f, &p, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "10-a.policy: not a regular file"));
}

static void test_load_empty_dir_denies(void **state) {
        struct dirfx *f = *state;
        _cleanup_policy_ struct policy *p = NULL;
        char err[POLICY_ERR_MAX] = "";
        struct pol_subject root = subj(0, 0);
        struct pol_decision d;

        put_file(f, "README", "no policy here\n", 0644);
        assert_int_equal(load(f, &p, err, sizeof(err)), 0);
        assert_non_null(p);
        assert_true(policy_is_empty(p));
        assert_int_equal(policy_rule_count(p), 0);
        d = eval(p, &root, POL_ADMIN, "store:seal");
        assert_false(d.allow);
        assert_null(d.file);
}

static void test_load_missing_dir(void **state) {
        struct dirfx *f = *state;
        struct policy *p = NULL;
        char err[POLICY_ERR_MAX] = "", path[128];

        snprintf(path, sizeof(path), "%s/nope", f->dir);
        assert_int_equal(policy_load_dir(&p, path, getuid(), err, sizeof(err)), -ENOENT);
        assert_null(p);
        assert_non_null(strstr(err, "/nope: cannot open the policy directory"));
}

static void test_load_all_or_nothing(void **state) {
        struct dirfx *f = *state;
        struct policy *old = parse_ok("allow read secret:old uid:1\n");
        struct policy *p = old;
        char err[POLICY_ERR_MAX] = "", want[128];
        struct pol_subject s = subj(1, 1);

        put_file(f, "10-good.policy", "allow read secret:new uid:1\n", 0644);
        put_file(f, "20-bad.policy", "allow read secret:x uid:1\n\nallow read secret:y bogus:1\n", 0644);
        assert_int_equal(load(f, &p, err, sizeof(err)), -EINVAL);
        assert_ptr_equal(p, old); /* the old policy stays in force */
        snprintf(want, sizeof(want), "%s/20-bad.policy:3:21: unknown term 'bogus'", f->dir);
        assert_int_equal(strncmp(err, want, strlen(want)), 0);
        assert_true(allowed(p, &s, POL_READ, "secret:old"));
        assert_false(allowed(p, &s, POL_READ, "secret:new"));
        policy_free(old);
}

static void test_load_huge_file(void **state) {
        struct dirfx *f = *state;
        struct policy *p = NULL;
        char err[POLICY_ERR_MAX] = "";
        size_t n = POLICY_FILE_MAX + 1;
        _cleanup_free_ char *text = malloc(n + 1);

        assert_non_null(text);
        memset(text, '\n', n);
        text[n] = '\0';
        put_file(f, "10-a.policy", "allow * * uid:0\n", 0644);
        put_file(f, "50-huge.policy", text, 0644);
        assert_int_equal(load(f, &p, err, sizeof(err)), -EFBIG);
        assert_null(p);
        assert_non_null(strstr(err, "50-huge.policy: larger than 1048576 bytes"));
        /* Exactly the limit is fine. */
        text[n - 1] = '\0';
        put_file(f, "50-huge.policy", text, 0644);
        assert_int_equal(load(f, &p, err, sizeof(err)), 0);
        policy_free(p);
}

static void test_load_too_many_rules(void **state) {
        struct dirfx *f = *state;
        struct policy *p = NULL;
        char err[POLICY_ERR_MAX] = "";
        static const char rule[] = "allow * *\n";
        size_t half = POLICY_RULES_MAX / 2, len = sizeof(rule) - 1;
        _cleanup_free_ char *text = malloc((half + 1) * len + 1);

        assert_non_null(text);
        for (size_t i = 0; i < half; i++)
                memcpy(text + i * len, rule, len);
        text[half * len] = '\0';
        put_file(f, "10-a.policy", text, 0644);
        put_file(f, "20-b.policy", text, 0644);
        assert_int_equal(load(f, &p, err, sizeof(err)), 0);
        assert_int_equal(policy_rule_count(p), POLICY_RULES_MAX);
        policy_free(p);
        p = NULL;
        memcpy(text + half * len, rule, len + 1);
        put_file(f, "20-b.policy", text, 0644);
        assert_int_equal(load(f, &p, err, sizeof(err)), -E2BIG);
        assert_null(p);
        assert_non_null(strstr(err, "20-b.policy:50001: too many rules"));
}

/* ---- evaluation ---- */

static void test_default_deny(void **state) {
        _cleanup_policy_ struct policy *p = parse_ok("allow read secret:a uid:1\n");
        struct pol_subject s = subj(2, 2);
        struct pol_decision d = eval(p, &s, POL_READ, "secret:a");
        char text[128];

        assert_false(d.allow);
        assert_null(d.file);
        policy_decision_describe(&d, text, sizeof(text));
        assert_string_equal(text, "denied: no rule allows this");
}

static void test_deny_beats_allow(void **state) {
        /* The deny comes after two allows, one of them broader: it still wins. */
        _cleanup_policy_ struct policy *p = parse_ok("allow * * uid:1\n"
                                                     "allow read secret:prod/db uid:1\n"
                                                     "deny read secret:prod/* group:adm\n");
        struct pol_subject s = subj(1, 4), other = subj(1, 1);
        struct pol_decision d = eval(p, &s, POL_READ, "secret:prod/db");
        char text[128];

        assert_false(d.allow);
        assert_int_equal(d.line, 3);
        assert_string_equal(d.rule, "deny read secret:prod/* group:adm");
        policy_decision_describe(&d, text, sizeof(text));
        assert_string_equal(text, "denied by t.policy:3: deny read secret:prod/* group:adm");
        assert_true(allowed(p, &other, POL_READ, "secret:prod/db"));
        assert_true(allowed(p, &s, POL_WRITE, "secret:prod/db"));
}

static void test_first_allow_decides(void **state) {
        _cleanup_policy_ struct policy *p = parse_ok("allow read secret:** uid:1 ttl<=1h\n"
                                                     "allow read secret:a uid:1 ttl<=5m uses<=2\n");
        struct pol_subject s = subj(1, 1);
        struct pol_decision d = eval(p, &s, POL_READ, "secret:a");
        char text[128];

        assert_true(d.allow);
        assert_string_equal(d.file, "t.policy");
        assert_int_equal(d.line, 1);
        assert_int_equal(d.max_ttl_sec, 3600);
        assert_int_equal(d.max_uses, 0);
        policy_decision_describe(&d, text, sizeof(text));
        assert_string_equal(text, "allowed by t.policy:1: allow read secret:** uid:1 ttl<=1h");
}

static void test_glob_star_vs_globstar(void **state) {
        _cleanup_policy_ struct policy *p = parse_ok("allow read secret:hf/* uid:1\n"
                                                     "allow read secret:ml/** uid:1\n"
                                                     "allow read secret:users/*/ssh uid:1\n"
                                                     "allow read secret:**/token uid:1\n");
        struct pol_subject s = subj(1, 1);

        assert_true(allowed(p, &s, POL_READ, "secret:hf/token"));
        assert_false(allowed(p, &s, POL_READ, "secret:hf/a/b"));
        assert_false(allowed(p, &s, POL_READ, "secret:hf"));
        assert_true(allowed(p, &s, POL_READ, "secret:ml"));
        assert_true(allowed(p, &s, POL_READ, "secret:ml/a"));
        assert_true(allowed(p, &s, POL_READ, "secret:ml/a/b/c"));
        assert_false(allowed(p, &s, POL_READ, "secret:mlx/a"));
        assert_true(allowed(p, &s, POL_READ, "secret:users/alice/ssh"));
        assert_false(allowed(p, &s, POL_READ, "secret:users/alice/x/ssh"));
        assert_true(allowed(p, &s, POL_READ, "secret:token"));
        assert_true(allowed(p, &s, POL_READ, "secret:a/b/c/token"));
        assert_false(allowed(p, &s, POL_READ, "secret:a/b/c/tokens"));
}

static void test_glob_engine(void **state) {
        assert_true(policy_glob_match("a*b", "ab"));
        assert_true(policy_glob_match("a*b", "axxxb"));
        assert_false(policy_glob_match("a*b", "axx/b"));
        assert_true(policy_glob_match("*", ""));
        assert_true(policy_glob_match("**", "x/y/z"));
        assert_true(policy_glob_match("a/**/b", "a/b"));
        assert_true(policy_glob_match("a/**/b", "a/x/y/b"));
        assert_false(policy_glob_match("a/**/b", "a/x/y/c"));
        assert_true(policy_glob_match("a/**/b/**/c", "a/b/b/x/c"));
        assert_true(policy_glob_match("**/*.service", "x/y.service"));
        assert_true(policy_glob_match("*a*a*b", "aaaaab"));
        assert_false(policy_glob_match("*a*a*b", "aaaaaa"));
        assert_true(policy_glob_match("/usr/bin/python3*", "/usr/bin/python3.11"));
        assert_false(policy_glob_match("/usr/bin/python3*", "/usr/bin/python3/x"));
        assert_true(policy_glob_match("/**", "/usr/bin/x"));
        assert_false(policy_glob_match("abc", "ab"));
        assert_false(policy_glob_match("ab", "abc"));
}

static void test_group_supplementary(void **state) {
        _cleanup_policy_ struct policy *p = parse_ok("allow read secret:ml/* group:users,adm\n");
        gid_t groups[] = { 27, 100 };
        struct pol_subject prim = subj(1000, 4), supp = subj(1000, 1000), none = subj(1000, 1000);

        supp.groups = groups;
        supp.ngroups = 2;
        assert_true(allowed(p, &prim, POL_READ, "secret:ml/x"));
        assert_true(allowed(p, &supp, POL_READ, "secret:ml/x"));
        assert_false(allowed(p, &none, POL_READ, "secret:ml/x"));
}

static void test_user_and_uid(void **state) {
        _cleanup_policy_ struct policy *p = parse_ok("allow read secret:u user:daemon,bin\n"
                                                     "allow read secret:n uid:1000,1001\n"
                                                     "allow read secret:both user:root uid:0 group:root\n");
        struct pol_subject daemon_ = subj(1, 1), u1001 = subj(1001, 1001), root = subj(0, 0), rootish = subj(0, 4);

        assert_true(allowed(p, &daemon_, POL_READ, "secret:u"));
        assert_false(allowed(p, &u1001, POL_READ, "secret:u"));
        assert_true(allowed(p, &u1001, POL_READ, "secret:n"));
        assert_true(allowed(p, &root, POL_READ, "secret:both"));
        assert_false(allowed(p, &rootish, POL_READ, "secret:both")); /* all terms must hold */
}

static void test_session_login(void **state) {
        _cleanup_policy_ struct policy *p = parse_ok("allow read secret:a uid:1000 session:login\n");
        struct pol_subject s = subj(1000, 1000);

        assert_false(allowed(p, &s, POL_READ, "secret:a"));
        s.in_login_session = true;
        assert_true(allowed(p, &s, POL_READ, "secret:a"));
}

static void test_time_window(void **state) {
        _cleanup_policy_ struct policy *p = parse_ok("allow read secret:day uid:1 time:09:00-17:00\n");
        struct pol_subject s = subj(1, 1);
        int in[] = { 9 * 60, 12 * 60, 17 * 60 - 1 }, out[] = { 0, 9 * 60 - 1, 17 * 60, 23 * 60 + 59, -1, 1440 };

        for (size_t i = 0; i < ELEMENTSOF(in); i++) {
                s.minute_of_day = in[i];
                assert_true(allowed(p, &s, POL_READ, "secret:day"));
        }
        for (size_t i = 0; i < ELEMENTSOF(out); i++) {
                s.minute_of_day = out[i];
                assert_false(allowed(p, &s, POL_READ, "secret:day"));
        }
}

static void test_time_window_wraps_midnight(void **state) {
        _cleanup_policy_ struct policy *p = parse_ok("allow read secret:night uid:1 time:20:00-06:00,12:00-12:30\n");
        struct pol_subject s = subj(1, 1);
        int in[] = { 20 * 60, 23 * 60 + 59, 0, 5 * 60 + 59, 12 * 60 + 15 },
            out[] = { 6 * 60, 12 * 60 + 30, 19 * 60 + 59, 11 * 60 };

        for (size_t i = 0; i < ELEMENTSOF(in); i++) {
                s.minute_of_day = in[i];
                assert_true(allowed(p, &s, POL_READ, "secret:night"));
        }
        for (size_t i = 0; i < ELEMENTSOF(out); i++) {
                s.minute_of_day = out[i];
                assert_false(allowed(p, &s, POL_READ, "secret:night"));
        }
}

static void test_exe_unit_unknown_never_match(void **state) {
        _cleanup_policy_ struct policy *p = parse_ok("allow read secret:e exe:/** uid:1\n"
                                                     "allow read secret:u unit:* uid:1\n");
        struct pol_subject s = subj(1, 1);
        struct pol_decision d;

        d = eval(p, &s, POL_READ, "secret:e");
        assert_false(d.allow);
        assert_true(d.depends_on_exe);
        s.exe = "/usr/bin/true";
        assert_true(allowed(p, &s, POL_READ, "secret:e"));
        d = eval(p, &s, POL_READ, "secret:u");
        assert_false(d.allow);
        assert_true(d.depends_on_unit);
        s.unit = "cron.service";
        assert_true(allowed(p, &s, POL_READ, "secret:u"));
}

/* An exe or unit the daemon could not prove (the path names another file,
 * another namespace) grants nothing, but a deny rule still takes it. */
static void test_exe_unit_unverified(void **state) {
        _cleanup_policy_ struct policy *p = parse_ok("allow read secret:e/* exe:/usr/bin/true uid:1\n"
                                                     "allow read secret:u/* unit:cron.service uid:1\n"
                                                     "deny read secret:e/no exe:/usr/bin/true\n"
                                                     "deny read secret:u/no unit:cron.service\n"
                                                     "allow read secret:*/no uid:1\n");
        struct pol_subject s = subj(1, 1);
        struct pol_decision d;

        s.exe = "/usr/bin/true";
        s.unit = "cron.service";
        assert_true(allowed(p, &s, POL_READ, "secret:e/a"));
        assert_true(allowed(p, &s, POL_READ, "secret:u/a"));

        s.exe_unverified = true;
        d = eval(p, &s, POL_READ, "secret:e/a");
        assert_false(d.allow);
        assert_null(d.file);
        assert_true(d.depends_on_exe);
        assert_true(allowed(p, &s, POL_READ, "secret:u/a"));
        d = eval(p, &s, POL_READ, "secret:e/no");
        assert_false(d.allow);
        assert_non_null(d.file);

        s.exe_unverified = false;
        s.unit_unverified = true;
        assert_true(allowed(p, &s, POL_READ, "secret:e/a"));
        d = eval(p, &s, POL_READ, "secret:u/a");
        assert_false(d.allow);
        assert_true(d.depends_on_unit);
        d = eval(p, &s, POL_READ, "secret:u/no");
        assert_false(d.allow);
        assert_non_null(d.file);
}

static void test_exe_unit_globs(void **state) {
        _cleanup_policy_ struct policy *p =
                parse_ok("allow read secret:ops/* exe:/usr/bin/python3* uid:1\n"
                         "allow read secret:db/train-ro unit:trainer@*.service\n");
        struct pol_subject s = subj(1, 1);

        s.exe = "/usr/bin/python3.11";
        assert_true(allowed(p, &s, POL_READ, "secret:ops/k"));
        s.exe = "/usr/local/bin/python3.11";
        assert_false(allowed(p, &s, POL_READ, "secret:ops/k"));
        s.unit = "trainer@7.service";
        assert_true(allowed(p, &s, POL_READ, "secret:db/train-ro"));
        s.unit = "trainer.service";
        assert_false(allowed(p, &s, POL_READ, "secret:db/train-ro"));
}

static void test_depends_flags(void **state) {
        _cleanup_policy_ struct policy *p = parse_ok("deny read secret:a/* exe:/usr/bin/curl uid:1\n"
                                                     "allow read secret:a/* uid:1\n"
                                                     "allow read secret:b uid:1\n"
                                                     "deny read secret:b unit:x.service uid:2\n");
        struct pol_subject s = subj(1, 1);
        struct pol_decision d;

        /* Allowed only because the exe is not curl: re-verify the exe. */
        s.exe = "/usr/bin/python3";
        d = eval(p, &s, POL_READ, "secret:a/k");
        assert_true(d.allow);
        assert_true(d.depends_on_exe);
        assert_false(d.depends_on_unit);
        /* Denied by the exe rule. */
        s.exe = "/usr/bin/curl";
        d = eval(p, &s, POL_READ, "secret:a/k");
        assert_false(d.allow);
        assert_true(d.depends_on_exe);
        /* The unit deny applies to uid 2 only: nothing depends on the unit. */
        d = eval(p, &s, POL_READ, "secret:b");
        assert_true(d.allow);
        assert_false(d.depends_on_exe);
        assert_false(d.depends_on_unit);
}

static void test_actions_are_separate(void **state) {
        _cleanup_policy_ struct policy *p = parse_ok("allow read,list secret:a/** uid:1\n");
        struct pol_subject s = subj(1, 1);
        struct pol_decision d;
        enum pol_action a;

        assert_true(allowed(p, &s, POL_LIST, "secret:a/x"));
        assert_false(allowed(p, &s, POL_WRITE, "secret:a/x"));
        assert_false(allowed(p, &s, POL_DELETE, "secret:a/x"));
        assert_int_equal(policy_eval(p, &s, POL_ACTION_COUNT, "secret:a/x", &d), -EINVAL);
        assert_false(d.allow);
        assert_int_equal(pol_action_from_string("delegate", &a), 0);
        assert_int_equal(a, POL_DELEGATE);
        assert_int_equal(pol_action_from_string("sudo", &a), -EINVAL);
        assert_string_equal(pol_action_to_string(POL_ADMIN), "admin");
}

static void test_index_prefix_overlap(void **state) {
        /* Many rules sharing prefixes: the index must find every one that applies. */
        _cleanup_policy_ struct policy *p = parse_ok("allow read secret:a uid:1\n"
                                                     "allow read secret:ab uid:2\n"
                                                     "allow read secret:a/** uid:3\n"
                                                     "allow read secret:a/b* uid:4\n"
                                                     "allow read secret:** uid:5\n"
                                                     "allow read * uid:6\n"
                                                     "allow read secret:ab/c uid:7\n"
                                                     "allow read secret:a*/c uid:8\n");
        struct { uid_t uid; const char *object; bool want; } cases[] = {
                { 1, "secret:a", true },      { 1, "secret:ab", false },   { 2, "secret:ab", true },
                { 2, "secret:a", false },     { 3, "secret:a", true },     { 3, "secret:a/b/c", true },
                { 3, "secret:ab", false },    { 4, "secret:a/bcd", true }, { 4, "secret:a/x", false },
                { 5, "secret:zz/y", true },   { 5, "token:x", false },     { 6, "token:x", true },
                { 7, "secret:ab/c", true },   { 7, "secret:ab/cd", false }, { 8, "secret:ab/c", true },
                { 8, "secret:a/c", true },    { 8, "secret:b/c", false },  { 1, "secret:", false },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct pol_subject s = subj(cases[i].uid, cases[i].uid);

                if (allowed(p, &s, POL_READ, cases[i].object) != cases[i].want)
                        fail_msg("uid %u %s: want %d", (unsigned) cases[i].uid, cases[i].object, cases[i].want);
        }
}

static uint64_t mono_msec(void) {
        return now_mono_usec() / 1000;
}

/* A file just written may be in the middle of an in-place rewrite: it is
 * read only once it has been left alone for FILE_QUIET_MSEC. */
static void test_load_waits_until_quiet(void **state) {
        struct dirfx *f = *state;
        _cleanup_policy_ struct policy *p = NULL;
        char err[POLICY_ERR_MAX] = "";

        put_file(f, "10-a.policy", "allow read secret:x uid:1\n", 0644);
        uint64_t t0 = mono_msec();
        assert_int_equal(load(f, &p, err, sizeof(err)), 0);
        assert_true(mono_msec() - t0 >= FILE_QUIET_MSEC - 20); /* the file's ctime is coarse */
        assert_int_equal(policy_rule_count(p), 1);
}

/* Read in the middle of an in-place rewrite (truncated, first half written,
 * the rest 50 ms later): the load waits for the writer, and reads it whole. */
static void test_load_during_rewrite_reads_whole(void **state) {
        struct dirfx *f = *state;
        _cleanup_policy_ struct policy *p = NULL;
        char err[POLICY_ERR_MAX] = "", path[256], go;
        const char *head = "allow read secret:x uid:1\n", *tail = "deny read secret:x uid:1\n";
        int sync[2];

        snprintf(path, sizeof(path), "%s/10-a.policy", f->dir);
        put_file(f, "10-a.policy", "# old\n", 0644);
        assert_int_equal(pipe(sync), 0);
        pid_t child = fork();
        assert_true(child >= 0);
        if (child == 0) {
                int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
                if (fd < 0 || write_all(fd, head, strlen(head)) < 0 || write(sync[1], "h", 1) != 1)
                        _exit(1);
                usleep(50000);
                _exit(write_all(fd, tail, strlen(tail)) < 0);
        }
        close(sync[1]);
        assert_int_equal(read(sync[0], &go, 1), 1); /* the first half is there */
        close(sync[0]);
        int rc = load(f, &p, err, sizeof(err)), ws = 0;
        waitpid(child, &ws, 0);
        assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
        assert_int_equal(rc, 0);
        assert_int_equal(policy_rule_count(p), 2); /* the deny is there */
}

#define T(fn) cmocka_unit_test(fn)
#define D(fn) cmocka_unit_test_setup_teardown(fn, dir_setup, dir_teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                T(test_parse_issue_example),
                T(test_parse_actions),
                T(test_parse_objects),
                T(test_parse_terms),
                T(test_parse_durations),
                T(test_parse_comments_blanks_tabs),
                T(test_parse_rule_without_terms),
                T(test_err_effect),
                T(test_err_missing_columns),
                T(test_err_action),
                T(test_err_trailing_comma),
                T(test_err_object),
                T(test_err_glob_empty_segment),
                T(test_err_glob_stars),
                T(test_err_glob_metachars),
                T(test_err_exe_relative),
                T(test_err_unknown_term),
                T(test_err_term_operator),
                T(test_err_duplicate_term),
                T(test_err_unknown_user_group),
                T(test_err_uid),
                T(test_err_time),
                T(test_err_session),
                T(test_err_ttl_uses),
                T(test_err_reports_line),
                T(test_err_long_line),
                T(test_err_line_at_limit_ok),
                T(test_err_control_chars),
                T(test_err_leaves_policy_unchanged),
                D(test_load_dir_in_name_order),
                D(test_load_world_writable),
                D(test_load_group_writable),
                D(test_load_dir_writable),
                D(test_load_wrong_owner),
                D(test_load_symlink_refused),
                D(test_load_not_regular),
                D(test_load_empty_dir_denies),
                D(test_load_missing_dir),
                D(test_load_all_or_nothing),
                D(test_load_huge_file),
                D(test_load_too_many_rules),
                D(test_load_waits_until_quiet),
                D(test_load_during_rewrite_reads_whole),
                T(test_default_deny),
                T(test_deny_beats_allow),
                T(test_first_allow_decides),
                T(test_glob_star_vs_globstar),
                T(test_glob_engine),
                T(test_group_supplementary),
                T(test_user_and_uid),
                T(test_session_login),
                T(test_time_window),
                T(test_time_window_wraps_midnight),
                T(test_exe_unit_unknown_never_match),
                T(test_exe_unit_unverified),
                T(test_exe_unit_globs),
                T(test_depends_flags),
                T(test_actions_are_separate),
                T(test_index_prefix_overlap),
        };

        return cmocka_run_group_tests_name("policy", tests, NULL, NULL);
}
