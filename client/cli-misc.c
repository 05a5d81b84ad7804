/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* coffer status/whoami/audit */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "util.h"

static bool want_json(struct cli *cli, int argc, char **argv, const char *usage, int *rc) {
        bool json = cli->json;
        *rc = 0;
        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--json") == 0)
                        json = true;
                else
                        *rc = cli_usage(usage);
        }
        return json;
}

static void json_stale(const char *name, uint64_t since) {
        if (since)
                printf(",\"%s\":%llu", name, (unsigned long long) since);
        else
                printf(",\"%s\":null", name);
}

/* A published file the daemon cannot rewrite: verifiers see old news. */
static void print_stale(const char *label, uint64_t since) {
        char when[32];
        time_t t = (time_t) since;
        struct tm tm;
        if (!since)
                return;
        if (!gmtime_r(&t, &tm) || strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
                snprintf(when, sizeof(when), "%llu", (unsigned long long) since);
        printf("%-15s STALE since %s: cofferd cannot rewrite it (see its log)\n", label, when);
}

int cmd_status(struct cli *cli, int argc, char **argv) {
        int rc;
        bool json = want_json(cli, argc, argv, "status [--json]", &rc);
        coffer *c = NULL;
        coffer_status st;
        if (rc || (rc = cli_connect(cli, &c)))
                return rc;
        rc = coffer_status_get(c, &st);
        coffer_disconnect(c);
        if (rc < 0)
                return cli_fail(rc, "status");
        if (json) {
                printf("{\"initialized\":%s,\"sealed\":%s,\"method\":\"%s\",\"progress\":%u,\"threshold\":%u,"
                       "\"term\":%llu,\"version\":\"%s\"",
                       st.initialized ? "true" : "false", st.sealed ? "true" : "false", st.method, st.progress,
                       st.threshold, (unsigned long long) st.term, st.version);
                json_stale("revocations_stale_since", st.revocations_stale_since);
                json_stale("jwks_stale_since", st.jwks_stale_since);
                printf("}\n");
                return EXIT_OK;
        }
        printf("Initialized:    %s\n", st.initialized ? "yes" : "no (run `coffer operator init`)");
        printf("Sealed:         %s\n", st.sealed ? "yes (run `coffer operator unseal`)" : "no");
        if (st.initialized)
                printf("Unseal method:  %s\n", st.method);
        if (st.sealed && st.threshold > 1)
                printf("Unseal progress: %u/%u shares\n", st.progress, st.threshold);
        if (!st.sealed)
                printf("Data-key term:  %llu\n", (unsigned long long) st.term);
        printf("Daemon version: %s\n", st.version);
        print_stale("Revocation list:", st.revocations_stale_since);
        print_stale("JWKS:", st.jwks_stale_since);
        return EXIT_OK;
}

int cmd_whoami(struct cli *cli, int argc, char **argv) {
        int rc;
        bool json = want_json(cli, argc, argv, "whoami [--json]", &rc);
        coffer *c = NULL;
        coffer_identity id;
        if (rc || (rc = cli_connect(cli, &c)))
                return rc;
        rc = coffer_whoami(c, &id);
        coffer_disconnect(c);
        if (rc < 0)
                return cli_fail(rc, "whoami");
        if (json) {
                printf("{\"uid\":%u,\"gid\":%u,\"pid\":%u,\"user\":", id.uid, id.gid, id.pid);
                json_string(stdout, id.user, strlen(id.user));
                printf(",\"groups\":[");
                for (uint32_t i = 0; i < id.ngroups; i++)
                        printf("%s%u", i ? "," : "", id.groups[i]);
                printf("],\"exe\":");
                json_string(stdout, id.exe, strlen(id.exe));
                printf(",\"exe_file\":");
                json_string(stdout, id.exe_file, strlen(id.exe_file));
                printf(",\"exe_verified\":%s,\"foreign_namespace\":%s", id.exe_verified ? "true" : "false",
                       id.foreign_namespace ? "true" : "false");
                printf(",\"unit\":");
                json_string(stdout, id.unit, strlen(id.unit));
                if (id.audit_session == UINT32_MAX)
                        printf(",\"audit_session\":null");
                else
                        printf(",\"audit_session\":%u", id.audit_session);
                printf(",\"login_session\":");
                json_string(stdout, id.login_session, strlen(id.login_session));
                printf(",\"pinned_by\":\"%s\"}\n", id.pin);
                return EXIT_OK;
        }
        printf("user:          %s (uid %u, gid %u)\ngroups:       ", id.user, id.uid, id.gid);
        for (uint32_t i = 0; i < id.ngroups; i++)
                printf(" %u", id.groups[i]);
        printf("\npid:           %u (pinned by %s)\nexe:           %s\n", id.pid, id.pin, id.exe[0] ? id.exe : "-");
        printf("exe file:      %s%s\n", id.exe_file[0] ? id.exe_file : "-",
               !id.exe_file[0] || id.exe_verified ? "" : " (not the file at that path: exe: rules do not match)");
        if (id.foreign_namespace)
                printf("namespace:     foreign (another user namespace: exe: and unit: rules do not match "
                       "unless cofferd allows it)\n");
        printf("unit:          %s\n", id.unit[0] ? id.unit : "-");
        if (id.audit_session == UINT32_MAX)
                printf("audit session: -\n");
        else
                printf("audit session: %u\n", id.audit_session);
        printf("login session: %s\n", id.login_session[0] ? id.login_session : "-");
        return EXIT_OK;
}

#define AUDIT_VERIFY_TIMEOUT_MS (15u * 60u * 1000u)

int cmd_audit(struct cli *cli, int argc, char **argv) {
        const char *usage = "audit verify [FILE]";
        if (argc < 2 || argc > 3 || strcmp(argv[1], "verify") != 0)
                return cli_usage(usage);
        int fd = -1;
        /* O_NONBLOCK: a FIFO without a writer does not hang us; the daemon
         * refuses anything but a regular file anyway. */
        if (argc == 3 && (fd = open(argv[2], O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)) < 0) {
                fprintf(stderr, "coffer: cannot open %s: %s\n", argv[2], strerror(errno));
                return EXIT_FAIL;
        }
        coffer *c = NULL;
        coffer_audit_report rep;
        int rc = cli_connect(cli, &c);
        if (rc == 0) {
                /* The daemon verifies in slices between other requests: a
                 * large log takes longer than a request usually does. */
                rc = coffer_set_timeout(c, AUDIT_VERIFY_TIMEOUT_MS);
                if (rc == 0)
                        rc = coffer_audit_verify(c, &rep, fd);
                coffer_disconnect(c);
                if (rc == 0)
                        printf("audit log intact: %llu records in %llu segments\n", (unsigned long long) rep.records,
                               (unsigned long long) rep.segments);
                rc = rc < 0 ? cli_fail(rc, "audit verify") : EXIT_OK;
        }
        if (fd >= 0)
                close(fd);
        return rc;
}
