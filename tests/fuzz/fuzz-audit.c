/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer target for the audit log. Two kinds of input:
 *  - anything not starting with 0x01 is a log file an attacker wrote: the
 *    verifier must not crash, hang or read out of bounds, and its report must
 *    be consistent (a failure names a line and a printable reason);
 *  - 0x01 FLAGS POS[3] XOR, then chunks separated by NUL: each chunk's first
 *    byte picks an action (record, unsealed, sealed) and the rest is used for
 *    every string field of the record. The log written from them must verify,
 *    and after changing any one byte it must not.
 * Keys are fixed so that inputs reproduce. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <sodium.h>

#include "audit.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                 \
        do {                     \
                if (!(x))        \
                        abort(); \
        } while (0)

#define WRITER 0x01
#define MAX_CHUNKS 64

static uint8_t mac_key[32], pk[32], sk[32];
static char path[64];

static void init(void) {
        static const uint8_t seed[32];
        char dir[] = "/tmp/fuzz-audit-XXXXXX";
        CHECK(sodium_init() >= 0);
        crypto_box_seed_keypair(pk, sk, seed);
        memset(mac_key, 0x5a, sizeof(mac_key));
        CHECK(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/audit.log", dir);
        setenv("COFFER_AUDIT_NO_JOURNAL", "1", 1);
}

static int verify(int fd, struct audit_report *rep) {
        int rc = audit_verify_fd(fd, mac_key, pk, sk, rep);
        CHECK(rc == 0 || rc == -EBADMSG);
        if (rc == 0) {
                CHECK(rep->bad_line == 0 && rep->reason[0] == 0);
                return 0;
        }
        CHECK(rep->bad_line > 0 && rep->reason[0]);
        CHECK(memchr(rep->reason, 0, sizeof(rep->reason)));
        for (const char *p = rep->reason; *p; p++)
                CHECK(*p >= 0x20 && *p < 0x7f);
        return rc;
}

static void verify_bytes(const uint8_t *data, size_t size) {
        struct audit_report rep;
        int fd = memfd_create("audit", MFD_CLOEXEC);
        CHECK(fd >= 0 && write_all(fd, data, size) == 0);
        if (verify(fd, &rep) == 0)
                CHECK(rep.records <= size / 2);
        close(fd);
}

static void one_chunk(struct audit *a, const uint8_t *c, size_t n, uint64_t *expect) {
        char s[512];
        size_t len = n - 1 < sizeof(s) - 1 ? n - 1 : sizeof(s) - 1;
        memcpy(s, c + 1, len);
        s[len] = 0;
        switch (c[0] % 4) {
        case 2:
                CHECK(audit_unsealed(a, mac_key) == 0);
                break;
        case 3:
                CHECK(audit_sealed(a, pk) == 0);
                break;
        default: {
                struct peer p = { .uid = c[0], .pid = (pid_t) n, .pidfd = -1, .audit_session = UINT32_MAX };
                strcpy_bounded(p.exe, sizeof(p.exe), s);
                strcpy_bounded(p.user, sizeof(p.user), s);
                strcpy_bounded(p.unit, sizeof(p.unit), s);
                strcpy_bounded(p.login_session, sizeof(p.login_session), s);
                struct audit_event ev = { .op = s, .object = s, .decision = s, .rule = s,
                                          .result = -(int) (c[0] % 140), .version = n, .peer = c[0] & 4 ? &p : NULL };
                CHECK(audit_record(a, &ev) == 0);
        }
        }
        (*expect)++;
}

static void writer(const uint8_t *data, size_t size) {
        struct audit *a;
        struct audit_report rep;
        uint64_t expect = 1, seq;
        uint8_t head[32];
        if (size < 6)
                return;
        uint8_t flags = data[1], xor = data[5] ? data[5] : 1;
        size_t pos = (size_t) data[2] << 16 | (size_t) data[3] << 8 | data[4];
        unlink(path);
        CHECK(audit_open(&a, path, flags & 1 ? pk : NULL) == 0);
        const uint8_t *p = data + 6, *end = data + size;
        for (int i = 0; i < MAX_CHUNKS && p < end; i++) {
                const uint8_t *nul = memchr(p, 0, (size_t) (end - p));
                size_t n = (size_t) ((nul ? nul : end) - p);
                if (n > 0)
                        one_chunk(a, p, n, &expect);
                p += n + 1;
        }
        audit_head(a, &seq, head);
        audit_close(a);

        int fd = open(path, O_RDWR | O_CLOEXEC);
        CHECK(fd >= 0);
        CHECK(verify(fd, &rep) == 0);
        CHECK(rep.records == expect && rep.last_seq == seq && memcmp(rep.last_mac, head, 32) == 0);
        off_t fsize = lseek(fd, 0, SEEK_END);
        if ((flags & 2) && fsize > 0) {
                uint8_t b;
                pos %= (size_t) fsize;
                CHECK(pread(fd, &b, 1, (off_t) pos) == 1);
                b ^= xor;
                CHECK(pwrite(fd, &b, 1, (off_t) pos) == 1);
                CHECK(verify(fd, &rep) == -EBADMSG); /* every byte is covered */
        }
        close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static bool ready;
        if (!ready) {
                init();
                ready = true;
        }
        if (size > 0 && data[0] == WRITER)
                writer(data, size);
        else
                verify_bytes(data, size);
        return 0;
}
