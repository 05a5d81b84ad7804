/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * rawclient: send exact bytes to cofferd and print what comes back.
 *
 *   rawclient SOCKET [ITEM]... [--read-timeout MS] [--replies N] [--trickle MS] [--shutdown]
 *
 * ITEMs are appended to the send buffer in order:
 *   --hex HEX          raw bytes
 *   --file F           the bytes of F
 *   --stdin            the bytes of stdin
 *   --frame OPCODE     a well-formed frame (opcode decimal or 0x hex); the
 *                      options below apply to the last --frame:
 *     --field TAG:TYPE:VALUE   TYPE u64 (decimal), str (text), strhex (a
 *                              string field given in hex: NULs, bad UTF-8),
 *                              hex (bytes field given in hex), fill (a bytes
 *                              field of VALUE 'x' bytes), tN (type code N,
 *                              value in hex: wrong types and sizes)
 *     --raw HEX                bytes appended to the body (trailing garbage)
 *     --id N  --magic HEX  --proto-version N  --body-len N   header overrides
 *
 * With no ITEM nothing is sent. --trickle sends one byte at a time with MS
 * between bytes; --shutdown half-closes after sending. Replies are read while
 * sending (as a pipelining client must) and printed after. Every reply frame
 * is printed as
 *
 *   reply op=0xNNNN id=N code=N msg=TEXT [value_len=N]
 *
 * followed by `eof` when the daemon closed the connection, `timeout` when
 * nothing arrived for --read-timeout MS (default 3000), or `reset` on a
 * connection reset. With --replies N, reading stops after N replies: `eof`
 * if the daemon closes within 200 ms after the last, else `open`. `sent=N` reports how many bytes went out (less than asked
 * when the daemon closed first). Exit status 0 unless a local error (usage,
 * connect failure, malformed reply: exit 1 and a message on stderr).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"
#include "util.h"
#include "wire.h"

#define SEND_MAX (64u * 1024u * 1024u)

struct frame {
        size_t start;        /* offset of the header in the send buffer */
        bool has_body_len;   /* --body-len given: do not patch */
};

static int usage(void) {
        fputs("usage: rawclient SOCKET [--hex HEX | --file F | --stdin | --frame OPCODE [--field TAG:TYPE:VALUE]... "
              "[--raw HEX] [--id N] [--magic HEX] [--proto-version N] [--body-len N]]... "
              "[--read-timeout MS] [--replies N] [--trickle MS] [--shutdown]\n",
              stderr);
        return 1;
}

static int die(const char *what, const char *arg) {
        fprintf(stderr, "rawclient: %s%s%s\n", what, arg ? ": " : "", arg ? arg : "");
        return 1;
}

static bool parse_num(const char *s, uint64_t max, uint64_t *out) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 0);
        if (errno || end == s || *end || v > max)
                return false;
        *out = v;
        return true;
}

/* Append the bytes a hex string denotes. */
static bool put_hex(struct wire_writer *w, const char *hex) {
        size_t n = strlen(hex);
        if (n % 2)
                return false;
        uint8_t *b = malloc(n / 2 + 1);
        bool ok = b && hex_decode(b, n / 2, hex, n) == 0 && wire_write_bytes(w, b, n / 2);
        free(b);
        return ok;
}

static bool put_fd(struct wire_writer *w, int fd) {
        uint8_t *p = NULL;
        size_t n = 0;
        if (read_all_fd(fd, SEND_MAX, &p, &n) < 0)
                return false;
        bool ok = wire_write_bytes(w, p, n);
        free(p);
        return ok;
}

static bool put_file(struct wire_writer *w, const char *path) {
        FILE *f = fopen(path, "rb");
        if (!f)
                return false;
        bool ok = put_fd(w, fileno(f));
        fclose(f);
        return ok;
}

/* One field header plus value, with any type code and length. */
static bool put_field(struct wire_writer *w, uint8_t tag, uint8_t type, const void *p, size_t n) {
        return wire_write_u8(w, tag) && wire_write_u8(w, type) && wire_write_lbytes(w, p, n);
}

static bool put_fill(struct wire_writer *w, uint8_t tag, uint64_t n) {
        if (n > SEND_MAX)
                return false;
        uint8_t *p = malloc(n ? n : 1);
        if (!p)
                return false;
        memset(p, 'x', n);
        bool ok = put_field(w, tag, WIRE_BYTES, p, n);
        free(p);
        return ok;
}

/* A field whose value is given in hex, under any type code. */
static bool put_hex_field(struct wire_writer *w, uint8_t tag, uint8_t type, const char *hex) {
        struct wire_writer v;
        wire_writer_init(&v);
        v.limit = SEND_MAX;
        bool ok = put_hex(&v, hex) && put_field(w, tag, type, v.p, v.len);
        wire_writer_free(&v);
        return ok;
}

static bool add_field(struct wire_writer *w, const char *spec) {
        char *s = strdup(spec), *type, *value;
        uint64_t tag, v;
        bool ok = false;
        if (!s)
                return false;
        type = strchr(s, ':');
        value = type ? strchr(type + 1, ':') : NULL;
        if (!type || !value)
                goto out;
        *type++ = 0;
        *value++ = 0;
        if (!parse_num(s, 255, &tag))
                goto out;
        if (strcmp(type, "u64") == 0)
                ok = parse_num(value, UINT64_MAX, &v) && wire_write_u8(w, (uint8_t) tag) &&
                     wire_write_u8(w, WIRE_U64) && wire_write_u32(w, 8) && wire_write_u64(w, v);
        else if (strcmp(type, "str") == 0)
                ok = put_field(w, (uint8_t) tag, WIRE_STRING, value, strlen(value));
        else if (strcmp(type, "strhex") == 0)
                ok = put_hex_field(w, (uint8_t) tag, WIRE_STRING, value);
        else if (strcmp(type, "hex") == 0)
                ok = put_hex_field(w, (uint8_t) tag, WIRE_BYTES, value);
        else if (strcmp(type, "fill") == 0)
                ok = parse_num(value, SEND_MAX, &v) && put_fill(w, (uint8_t) tag, v);
        else if (type[0] == 't' && parse_num(type + 1, 255, &v))
                ok = put_hex_field(w, (uint8_t) tag, (uint8_t) v, value);
out:
        free(s);
        return ok;
}

static void patch_u32(struct wire_writer *w, size_t off, uint32_t v) {
        for (size_t i = 0; i < 4; i++)
                w->p[off + i] = (uint8_t) (v >> (8 * (3 - i)));
}

static void patch_u16(struct wire_writer *w, size_t off, uint16_t v) {
        w->p[off] = (uint8_t) (v >> 8);
        w->p[off + 1] = (uint8_t) v;
}

static void frame_finish(struct wire_writer *w, struct frame *f) {
        if (f->start == SIZE_MAX || f->has_body_len)
                return;
        patch_u32(w, f->start + 12, (uint32_t) (w->len - f->start - WIRE_HEADER_SIZE));
}

/* Header overrides for the current frame. */
static bool frame_override(struct wire_writer *w, struct frame *f, const char *opt, const char *arg) {
        uint64_t v;
        if (f->start == SIZE_MAX)
                return false;
        if (strcmp(opt, "--id") == 0 && parse_num(arg, UINT32_MAX, &v))
                patch_u32(w, f->start + 8, (uint32_t) v);
        else if (strcmp(opt, "--magic") == 0 && parse_num(arg, UINT32_MAX, &v))
                patch_u32(w, f->start, (uint32_t) v);
        else if (strcmp(opt, "--proto-version") == 0 && parse_num(arg, UINT16_MAX, &v))
                patch_u16(w, f->start + 4, (uint16_t) v);
        else if (strcmp(opt, "--body-len") == 0 && parse_num(arg, UINT32_MAX, &v)) {
                patch_u32(w, f->start + 12, (uint32_t) v);
                f->has_body_len = true;
        } else
                return false;
        return true;
}

static int connect_to(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (!strcpy_bounded(sa.sun_path, sizeof(sa.sun_path), path))
                return -ENAMETOOLONG;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                int rc = -errno;
                close(fd);
                return rc;
        }
        return fd;
}

static void sleep_ms(unsigned ms) {
        struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* What arrived while sending: replies are read as they come, or a daemon
 * that stops reading until its replies are read (back-pressure) and a
 * client that only writes would wait on each other. */
struct early {
        struct wire_writer buf;
        const char *end;     /* "eof" or "reset" once the daemon closed, else NULL */
};

static void recv_early(int fd, struct early *e) {
        uint8_t chunk[65536];
        ssize_t k = recv(fd, chunk, sizeof(chunk), MSG_DONTWAIT);
        if (k < 0 && (errno == EINTR || errno == EAGAIN))
                return;
        if (k <= 0)
                e->end = k == 0 ? "eof" : errno == ECONNRESET ? "reset" : "error";
        else if (!wire_write_bytes(&e->buf, chunk, (size_t) k))
                e->end = "error";
}

/* Returns the number of bytes sent; stops early when the daemon closed. */
static size_t send_all(int fd, const uint8_t *p, size_t n, unsigned trickle_ms, struct early *e) {
        size_t off = 0;
        while (off < n) {
                struct pollfd pf = { .fd = fd, .events = POLLOUT | (e->end ? 0 : POLLIN) };
                if (!trickle_ms && poll(&pf, 1, -1) < 0)
                        continue;
                if (pf.revents & POLLIN)
                        recv_early(fd, e);
                if (!trickle_ms && !(pf.revents & (POLLOUT | POLLERR | POLLHUP)))
                        continue;
                size_t chunk = trickle_ms ? 1 : n - off;
                ssize_t k = send(fd, p + off, chunk, MSG_NOSIGNAL | (trickle_ms ? 0 : MSG_DONTWAIT));
                if (k < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (k < 0)
                        break;
                off += (size_t) k;
                if (trickle_ms && off < n)
                        sleep_ms(trickle_ms);
        }
        return off;
}

static void print_msg(const char *s) {
        for (; *s; s++)
                putchar(*s == '\n' || *s == '\r' ? ' ' : *s);
}

/* Print every whole frame in buf; returns bytes consumed or -1 on a bad reply. */
static ssize_t print_frames(const uint8_t *buf, size_t len, uint64_t *count) {
        size_t off = 0;
        static struct wire_msg m;
        while (len - off >= WIRE_HEADER_SIZE) {
                if (wire_header_parse(&m.hdr, buf + off) < 0) {
                        fprintf(stderr, "rawclient: malformed reply header\n");
                        return -1;
                }
                if (len - off - WIRE_HEADER_SIZE < m.hdr.body_len)
                        break;
                if (wire_body_parse(&m, buf + off + WIRE_HEADER_SIZE, m.hdr.body_len) < 0) {
                        fprintf(stderr, "rawclient: malformed reply body (op 0x%04x)\n", m.hdr.opcode);
                        return -1;
                }
                uint64_t code = 0;
                char msg[WIRE_STRING_MAX + 1] = "";
                const uint8_t *v;
                size_t vlen;
                wire_get_u64(&m, T_ERR_CODE, &code);
                wire_get_str(&m, T_ERR_MSG, msg, sizeof(msg));
                printf("reply op=0x%04x id=%u code=%llu msg=", m.hdr.opcode, m.hdr.request_id,
                       (unsigned long long) code);
                print_msg(msg);
                if (wire_get_bytes(&m, T_VALUE, &v, &vlen) == 0)
                        printf(" value_len=%zu", vlen);
                putchar('\n');
                fflush(stdout);
                off += WIRE_HEADER_SIZE + m.hdr.body_len;
                (*count)++;
        }
        return (ssize_t) off;
}

#define GRACE_MS 200

/* Read and print replies until EOF, reset, timeout_ms of silence, or (when
 * want > 0) want replies and a short grace for the close; first those that
 * came while sending. */
static int read_replies(int fd, unsigned timeout_ms, uint64_t want, const struct early *e) {
        size_t cap = WIRE_HEADER_SIZE + WIRE_BODY_MAX + 65536, len = 0;
        uint64_t got = 0;
        uint8_t *buf = malloc(cap);
        int rc = 0;
        if (!buf)
                return die("out of memory", NULL);
        ssize_t done = print_frames(e->buf.p, e->buf.len, &got);
        if (done < 0) {
                free(buf);
                return 1;
        }
        len = e->buf.len - (size_t) done;
        if (len > cap) {
                free(buf);
                return die("malformed reply: a frame larger than the protocol allows", NULL);
        }
        if (len)
                memcpy(buf, e->buf.p + done, len);
        if (e->end) {
                if (len)
                        printf("partial %zu\n", len);
                puts(e->end);
                free(buf);
                return 0;
        }
        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                bool enough = want && got >= want;
                int n = poll(&p, 1, enough ? GRACE_MS : (int) timeout_ms);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n == 0) {
                        puts(enough ? "open" : "timeout");
                        break;
                }
                ssize_t k = recv(fd, buf + len, cap - len, 0);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        puts(errno == ECONNRESET ? "reset" : "error");
                        break;
                }
                if (k == 0) {
                        if (len)
                                printf("partial %zu\n", len);
                        puts("eof");
                        break;
                }
                len += (size_t) k;
                ssize_t used = print_frames(buf, len, &got);
                if (used < 0) {
                        rc = 1;
                        break;
                }
                memmove(buf, buf + used, len - (size_t) used);
                len -= (size_t) used;
        }
        free(buf);
        return rc;
}

int main(int argc, char **argv) {
        struct wire_writer w;
        struct frame f = { .start = SIZE_MAX };
        uint64_t timeout_ms = 3000, trickle_ms = 0, want = 0, v;
        bool do_shutdown = false;
        if (argc < 2 || argv[1][0] == '-')
                return usage();
        wire_writer_init(&w);
        w.limit = SEND_MAX;
        for (int i = 2; i < argc; i++) {
                const char *opt = argv[i], *arg = i + 1 < argc ? argv[i + 1] : NULL;
                if (strcmp(opt, "--stdin") == 0) {
                        if (!put_fd(&w, STDIN_FILENO))
                                return die("cannot read stdin", NULL);
                        continue;
                }
                if (strcmp(opt, "--shutdown") == 0) {
                        do_shutdown = true;
                        continue;
                }
                if (!arg)
                        return usage();
                i++;
                bool ok;
                if (strcmp(opt, "--hex") == 0)
                        ok = put_hex(&w, arg);
                else if (strcmp(opt, "--file") == 0)
                        ok = put_file(&w, arg);
                else if (strcmp(opt, "--frame") == 0) {
                        frame_finish(&w, &f);
                        f = (struct frame){ .start = w.len };
                        ok = parse_num(arg, UINT16_MAX, &v) && wire_frame_begin(&w, (uint16_t) v, 1);
                } else if (strcmp(opt, "--field") == 0)
                        ok = f.start != SIZE_MAX && add_field(&w, arg);
                else if (strcmp(opt, "--raw") == 0)
                        ok = f.start != SIZE_MAX && put_hex(&w, arg);
                else if (strcmp(opt, "--read-timeout") == 0)
                        ok = parse_num(arg, 600000, &timeout_ms);
                else if (strcmp(opt, "--replies") == 0)
                        ok = parse_num(arg, 1000000, &want);
                else if (strcmp(opt, "--trickle") == 0)
                        ok = parse_num(arg, 60000, &trickle_ms);
                else
                        ok = frame_override(&w, &f, opt, arg);
                if (!ok || w.error)
                        return die("bad option or value", opt);
        }
        frame_finish(&w, &f);

        int fd = connect_to(argv[1]);
        if (fd < 0)
                return die(strerror(-fd), argv[1]);
        struct early e = { .end = NULL };
        wire_writer_init(&e.buf);
        e.buf.limit = SEND_MAX;
        size_t sent = send_all(fd, w.p, w.len, (unsigned) trickle_ms, &e);
        if (w.len)
                printf("sent=%zu\n", sent);
        fflush(stdout);
        if (do_shutdown)
                shutdown(fd, SHUT_WR);
        int rc = read_replies(fd, (unsigned) timeout_ms, want, &e);
        close(fd);
        wire_writer_free(&e.buf);
        wire_writer_free(&w);
        return rc;
}
