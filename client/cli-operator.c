/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* coffer operator init/unseal/seal/rotate/accept-rollback */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"
#include "util.h"

#define KEYFILE_SIZE 32
#define SECRET_LINE_MAX 4096

/* Read an existing keyfile, or create one with fresh random bytes. */
static int load_keyfile(const char *path, bool create, struct secbuf *key) {
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 && errno == ENOENT && create) {
                uint8_t k[KEYFILE_SIZE];
                fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400);
                if (fd < 0) {
                        fprintf(stderr, "coffer: cannot create keyfile %s: %s\n", path, strerror(errno));
                        return EXIT_FAIL;
                }
                randombytes_buf(k, sizeof(k));
                int rc = write_all(fd, k, sizeof(k));
                sodium_memzero(k, sizeof(k));
                close(fd);
                if (rc < 0) {
                        unlink(path);
                        fprintf(stderr, "coffer: writing keyfile %s failed\n", path);
                        return EXIT_FAIL;
                }
                fprintf(stderr, "created keyfile %s (development and tests only: whoever reads it can unseal)\n",
                        path);
                fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        }
        if (fd < 0) {
                fprintf(stderr, "coffer: cannot open keyfile %s: %s\n", path, strerror(errno));
                return EXIT_FAIL;
        }
        struct stat st;
        if (fstat(fd, &st) == 0 && (st.st_mode & 077))
                fprintf(stderr, "coffer: warning: keyfile %s is accessible to group or others (chmod 0400 it)\n",
                        path);
        int rc = read_all_fd(fd, 4096, &key->p, &key->len);
        close(fd);
        if (rc < 0 || key->len < KEYFILE_SIZE) {
                fprintf(stderr, "coffer: keyfile %s must hold 32 to 4096 bytes\n", path);
                return EXIT_FAIL;
        }
        return 0;
}

/* One line from stdin, not echoed when it is a terminal. */
static int read_secret_line(const char *prompt, struct secbuf *out) {
        char line[SECRET_LINE_MAX];
        struct termios old, raw;
        bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
        if (tty) {
                fputs(prompt, stderr);
                raw = old;
                raw.c_lflag &= ~(tcflag_t) ECHO;
                tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw);
        }
        char *ok = fgets(line, sizeof(line), stdin);
        if (tty) {
                tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
                fputc('\n', stderr);
        }
        size_t n = ok ? strcspn(line, "\r\n") : 0;
        if (n == 0) {
                sodium_memzero(line, sizeof(line));
                fprintf(stderr, "coffer: nothing read from stdin\n");
                return EXIT_USAGE;
        }
        out->p = malloc(n);
        if (out->p)
                memcpy(out->p, line, n);
        out->len = n;
        sodium_memzero(line, sizeof(line));
        return out->p ? 0 : EXIT_FAIL;
}

static int read_passphrase_new(struct secbuf *pass) {
        int rc = read_secret_line("New passphrase: ", pass);
        if (rc || !isatty(STDIN_FILENO))
                return rc;
        _cleanup_secbuf_ struct secbuf again = { 0 };
        rc = read_secret_line("Repeat passphrase: ", &again);
        if (rc == 0 && (again.len != pass->len || sodium_memcmp(again.p, pass->p, pass->len) != 0)) {
                fprintf(stderr, "coffer: the passphrases differ\n");
                rc = EXIT_USAGE;
        }
        return rc;
}

static void print_shares(const coffer_secret *s, unsigned n, unsigned k) {
        char hex[2 * COFFER_SHARE_SIZE + 1];
        fprintf(stderr, "Unseal shares (any %u of %u unseal the store). They are shown once: give each to a "
                        "different operator now.\n", k, n);
        for (unsigned i = 0; i < n; i++) {
                hex_encode(hex, coffer_secret_data(s) + i * COFFER_SHARE_SIZE, COFFER_SHARE_SIZE);
                printf("%s\n", hex);
        }
        sodium_memzero(hex, sizeof(hex));
        fflush(stdout);
}

static const char init_usage[] = "operator init (--keyfile FILE | --passphrase | --shares N --threshold K)";

static int op_init(struct cli *cli, int argc, char **argv) {
        static const struct option opts[] = {
                { "keyfile", required_argument, NULL, 'k' }, { "passphrase", no_argument, NULL, 'p' },
                { "shares", required_argument, NULL, 'n' },  { "threshold", required_argument, NULL, 't' },
                {},
        };
        const char *keyfile = NULL;
        bool pass = false;
        uint64_t n = 0, k = 0;
        int ch;
        while ((ch = getopt_long(argc, argv, "k:pn:t:", opts, NULL)) >= 0) {
                switch (ch) {
                case 'k': keyfile = optarg; break;
                case 'p': pass = true; break;
                case 'n': if (!cli_u64("--shares", optarg, 2, 255, &n)) return EXIT_USAGE; break;
                case 't': if (!cli_u64("--threshold", optarg, 2, 255, &k)) return EXIT_USAGE; break;
                default: return cli_usage(init_usage);
                }
        }
        if (optind != argc || (!!keyfile + pass + !!(n || k)) != 1 || (n || k) != (n && k) || k > n)
                return cli_usage(init_usage);
        _cleanup_secbuf_ struct secbuf key = { 0 };
        int rc = keyfile ? load_keyfile(keyfile, true, &key) : pass ? read_passphrase_new(&key) : 0;
        coffer *c = NULL;
        coffer_secret *shares = NULL;
        if (rc || (rc = cli_connect(cli, &c)))
                return rc;
        const char *method = keyfile ? "keyfile" : pass ? "passphrase" : "shamir";
        rc = coffer_operator_init(c, &shares, method, key.p, key.len, (unsigned) n, (unsigned) k);
        coffer_disconnect(c);
        if (rc < 0)
                return cli_fail(rc, "init");
        if (shares)
                print_shares(shares, (unsigned) n, (unsigned) k);
        coffer_secret_free(shares);
        fprintf(stderr, "initialized with %s; the store is unsealed\n", method);
        return EXIT_OK;
}

static int unseal_key(coffer *c, const char *keyfile, struct secbuf *key) {
        coffer_status st;
        if (keyfile)
                return load_keyfile(keyfile, false, key);
        int rc = coffer_status_get(c, &st);
        if (rc < 0)
                return cli_fail(rc, "unseal");
        if (strcmp(st.method, "shamir") != 0)
                return read_secret_line(strcmp(st.method, "keyfile") == 0 ? "Keyfile content: " : "Passphrase: ", key);
        _cleanup_secbuf_ struct secbuf line = { 0 };
        rc = read_secret_line("Unseal share: ", &line);
        if (rc)
                return rc;
        key->p = malloc(COFFER_SHARE_SIZE);
        key->len = COFFER_SHARE_SIZE;
        if (!key->p || hex_decode(key->p, COFFER_SHARE_SIZE, (const char *) line.p, line.len) < 0) {
                fprintf(stderr, "coffer: a share is %u hex digits, as printed by `coffer operator init`\n",
                        2 * COFFER_SHARE_SIZE);
                return EXIT_USAGE;
        }
        return 0;
}

static int op_unseal(struct cli *cli, int argc, char **argv) {
        static const struct option opts[] = { { "keyfile", required_argument, NULL, 'k' }, {} };
        const char *keyfile = NULL;
        int ch;
        while ((ch = getopt_long(argc, argv, "k:", opts, NULL)) >= 0) {
                if (ch != 'k')
                        return cli_usage("operator unseal [--keyfile FILE]");
                keyfile = optarg;
        }
        if (optind != argc)
                return cli_usage("operator unseal [--keyfile FILE]");
        coffer *c = NULL;
        coffer_status st;
        _cleanup_secbuf_ struct secbuf key = { 0 };
        int rc = cli_connect(cli, &c);
        if (rc == 0 && (rc = unseal_key(c, keyfile, &key)) == 0) {
                rc = coffer_operator_unseal(c, &st, key.p, key.len);
                rc = rc < 0 ? cli_fail(rc, "unseal") : 0;
        }
        coffer_disconnect(c);
        if (rc)
                return rc;
        if (st.sealed)
                printf("share accepted: %u/%u; submit another share with `coffer operator unseal`\n", st.progress,
                       st.threshold);
        else
                printf("unsealed\n");
        return EXIT_OK;
}

static int op_simple(struct cli *cli, int argc, char **argv, bool rotate) {
        coffer *c = NULL;
        uint64_t term = 0;
        if (argc != 1)
                return cli_usage(rotate ? "operator rotate" : "operator seal");
        int rc = cli_connect(cli, &c);
        if (rc)
                return rc;
        rc = rotate ? coffer_operator_rotate(c, &term) : coffer_operator_seal(c);
        coffer_disconnect(c);
        if (rc < 0)
                return cli_fail(rc, rotate ? "rotate" : "seal");
        if (rotate)
                printf("new data-key term %llu; new values use it, old values stay readable\n", (unsigned long long) term);
        else
                printf("sealed; every key is wiped from memory. Unseal with `coffer operator unseal`\n");
        return EXIT_OK;
}

static int op_accept_rollback(struct cli *cli, int argc) {
        coffer *c = NULL;
        uint64_t have = 0, anchored = 0;
        if (argc != 1)
                return cli_usage("operator accept-rollback");
        int rc = cli_connect(cli, &c);
        if (rc)
                return rc;
        rc = coffer_operator_accept_rollback(c, &have, &anchored);
        coffer_disconnect(c);
        if (rc < 0)
                return cli_fail(rc, "accept-rollback");
        printf("rollback accepted: the store at generation %llu replaces the audit log's generation %llu; unseal it "
               "with `coffer operator unseal`\n", (unsigned long long) have, (unsigned long long) anchored);
        return EXIT_OK;
}

int cmd_operator(struct cli *cli, int argc, char **argv) {
        const char *usage = "operator init|unseal|seal|rotate|accept-rollback ...";
        if (argc < 2)
                return cli_usage(usage);
        const char *verb = argv[1];
        optind = 0;
        if (strcmp(verb, "init") == 0)
                return op_init(cli, argc - 1, argv + 1);
        if (strcmp(verb, "unseal") == 0)
                return op_unseal(cli, argc - 1, argv + 1);
        if (strcmp(verb, "seal") == 0)
                return op_simple(cli, argc - 1, argv + 1, false);
        if (strcmp(verb, "rotate") == 0)
                return op_simple(cli, argc - 1, argv + 1, true);
        if (strcmp(verb, "accept-rollback") == 0)
                return op_accept_rollback(cli, argc - 1);
        return cli_usage(usage);
}
