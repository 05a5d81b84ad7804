/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Open and close login sessions through libcoffer, as pam_coffer does, for
 * tests and benchmarks that do not go through PAM.
 *
 *   sessiontool open USER [--service S] [--tty T] [--rhost H] [--ttl SEC] [--tokens] [--hold]
 *   sessiontool close ID
 *   sessiontool close-match USER [--service S] [--tty T]
 *
 * open prints id=, dir=, expires=, denied= and one ENV=PATH line per
 * credential (never a value; with --tokens, token=ENV:LENGTH). With --hold,
 * open then waits until killed, as sshd's session process does. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "coffer.h"

int main(int argc, char **argv) {
        static const struct option opts[] = {
                { "service", required_argument, NULL, 's' }, { "tty", required_argument, NULL, 't' },
                { "rhost", required_argument, NULL, 'r' },   { "ttl", required_argument, NULL, 'l' },
                { "tokens", no_argument, NULL, 'k' },        { "hold", no_argument, NULL, 'H' },
                {},
        };
        coffer_session_request q = { 0 };
        int o;
        bool hold = false;
        while ((o = getopt_long(argc, argv, "s:t:r:l:kH", opts, NULL)) >= 0) {
                switch (o) {
                case 's': q.service = optarg; break;
                case 't': q.tty = optarg; break;
                case 'r': q.rhost = optarg; break;
                case 'l': q.ttl_sec = strtoull(optarg, NULL, 10); break;
                case 'k': q.want_tokens = 1; break;
                case 'H': hold = true; break;
                default: return 2;
                }
        }
        if (argc - optind != 2)
                return fprintf(stderr, "usage: sessiontool open|close|close-match ARG [options]\n"), 2;
        const char *cmd = argv[optind], *arg = argv[optind + 1];
        coffer *c;
        int rc = coffer_connect(&c, NULL);
        if (rc < 0)
                return fprintf(stderr, "sessiontool: %s\n", coffer_last_error()), 3;
        if (strcmp(cmd, "open") == 0) {
                coffer_session *s;
                q.user = arg;
                rc = coffer_session_open(c, &s, &q);
                if (rc == 0) {
                        printf("id=%s\ndir=%s\nexpires=%" PRIu64 "\ndenied=%zu\n", s->id, s->dir, s->expires,
                               s->ndenied);
                        for (size_t i = 0; i < s->ncreds; i++) {
                                printf("%s=%s\n", s->creds[i].env, s->creds[i].path);
                                if (s->creds[i].token)
                                        printf("token=%s:%zu\n", s->creds[i].env,
                                               coffer_secret_size(s->creds[i].token));
                        }
                        coffer_session_free(s);
                        if (hold) {
                                coffer_disconnect(c);
                                fflush(stdout);
                                for (;;)
                                        pause();
                        }
                }
        } else if (strcmp(cmd, "close") == 0 || strcmp(cmd, "close-match") == 0) {
                bool by_id = strcmp(cmd, "close") == 0;
                q.user = by_id ? NULL : arg;
                rc = coffer_session_close(c, by_id ? arg : NULL, &q);
                if (rc >= 0)
                        printf("closed=%d\n", rc);
        } else {
                rc = -EINVAL;
        }
        if (rc < 0)
                fprintf(stderr, "sessiontool: %s\n", coffer_last_error());
        coffer_disconnect(c);
        return rc < 0 ? (rc == -EACCES ? 5 : rc == -ENOENT ? 6 : rc == -ENOKEY ? 4 : 1) : 0;
}
