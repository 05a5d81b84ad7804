/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer target: the input is the byte stream a client sends to cofferd.
 * Frames are taken from it the way the daemon does (header first, checked
 * before the body is looked at), and every parsed body goes through every
 * request decoder and the packed-value readers. Each body is copied into a
 * buffer of exactly its size so a read past it is an ASan report. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void read_names(const struct wire_msg *m) {
        const uint8_t *p, *s;
        size_t n, len;
        struct wire_reader r;

        if (wire_get_bytes(m, T_NAMES, &p, &n) < 0)
                return;
        wire_reader_init(&r, p, n);
        while (wire_reader_left(&r) > 0 && wire_read_lbytes(&r, &s, &len, PROTO_NAME_MAX)) {
                char name[PROTO_NAME_MAX + 1];
                memcpy(name, s, len);
                name[len] = 0;
                (void) proto_name_valid(name);
                (void) proto_prefix_valid(name);
        }
}

static void read_versions(const struct wire_msg *m) {
        const uint8_t *p;
        size_t n;
        struct wire_reader r;
        struct proto_version v;

        if (wire_get_bytes(m, T_VERSIONS, &p, &n) < 0)
                return;
        wire_reader_init(&r, p, n);
        while (wire_reader_left(&r) > 0 && proto_version_read(&r, &v))
                ;
}

static void decode_all(const struct wire_msg *m) {
        struct req_secret s;
        struct req_list l;
        struct req_seal k;
        const char *why = NULL;
        char str[WIRE_STRING_MAX + 1];
        uint64_t u;

        (void) proto_op_name(m->hdr.opcode);
        (void) proto_decode_secret(m, &s, &why);
        (void) proto_decode_list(m, &l, &why);
        (void) proto_decode_init(m, &k, &why);
        (void) proto_decode_unseal(m, &k, &why);
        read_names(m);
        read_versions(m);
        /* The reply-side fields a client reads. */
        (void) wire_get_u64(m, T_ERR_CODE, &u);
        (void) wire_get_str(m, T_ERR_MSG, str, sizeof(str));
        (void) wire_get_str(m, T_SERVER_VER, str, sizeof(str));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static struct wire_msg m; /* 1.5 kB: keep it off the fuzzer's stack */
        size_t off = 0;

        while (size - off >= WIRE_HEADER_SIZE) {
                if (wire_header_parse(&m.hdr, data + off) < 0)
                        break; /* the daemon answers and closes */
                off += WIRE_HEADER_SIZE;
                if (m.hdr.body_len > size - off)
                        break; /* waits for more bytes that never come */
                uint8_t *body = malloc(m.hdr.body_len ? m.hdr.body_len : 1);
                if (!body)
                        break;
                memcpy(body, data + off, m.hdr.body_len);
                off += m.hdr.body_len;
                int rc = wire_body_parse(&m, body, m.hdr.body_len);
                /* Decoders must be safe on whatever a parse left behind, too. */
                decode_all(&m);
                free(body);
                if (rc < 0)
                        break;
        }
        return 0;
}
