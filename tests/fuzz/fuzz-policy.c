/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer target: the policy parser. Any input must parse or fail with a
 * "FILE:LINE..." message, never crash or leak; a policy that parses is
 * evaluated for a few fixed subjects, and parsing the same text into a
 * policy that already holds rules must add exactly as many rules. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                    \
        do {                        \
                if (!(x))           \
                        abort();    \
        } while (0)

static const char *const objects[] = {
        "secret:hf/token", "secret:a/b/c/d", "secret:", "token:inference-api", "store:seal", "*", "",
};

static void evaluate(const struct policy *p) {
        static const gid_t groups[] = { 4, 100 };
        struct pol_subject subjects[] = {
                { .uid = 0, .gid = 0, .exe = "", .unit = "", .minute_of_day = 0 },
                { .uid = 1000, .gid = 1000, .groups = groups, .ngroups = 2, .exe = "/usr/bin/python3.11",
                  .unit = "trainer@1.service", .in_login_session = true, .minute_of_day = 1439 },
                { .uid = 2, .gid = 2, .exe = "/a/b", .unit = "x", .minute_of_day = -1 },
        };
        char text[256];

        for (size_t i = 0; i < sizeof(subjects) / sizeof(subjects[0]); i++)
                for (int a = 0; a < POL_ACTION_COUNT; a++)
                        for (size_t o = 0; o < sizeof(objects) / sizeof(objects[0]); o++) {
                                struct pol_decision d;

                                CHECK(policy_eval(p, &subjects[i], (enum pol_action) a, objects[o], &d) == 0);
                                CHECK(!d.allow || d.file);
                                policy_decision_describe(&d, text, sizeof(text));
                        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct policy *p = NULL;
        char err[POLICY_ERR_MAX];
        size_t n;

        if (size > POLICY_FILE_MAX)
                return 0;
        CHECK(policy_new(&p) == 0);
        if (policy_parse_buffer(p, "f.policy", (const char *) data, size, err, sizeof(err)) < 0) {
                CHECK(strncmp(err, "f.policy:", 9) == 0);
                CHECK(policy_rule_count(p) == 0);
                policy_free(p);
                return 0;
        }
        evaluate(p);
        n = policy_rule_count(p);
        CHECK(policy_parse_buffer(p, "g.policy", (const char *) data, size, err, sizeof(err)) == 0);
        CHECK(policy_rule_count(p) == 2 * n);
        evaluate(p);
        policy_free(p);
        return 0;
}
