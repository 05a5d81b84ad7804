/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer target: the first byte picks a decoder, the rest is a body.
 * Besides not crashing, it checks two round trips: every body that parses
 * re-encodes (with the writer) to a body that parses to the same fields, and
 * every request that decodes re-encodes to one that decodes the same. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                    \
        do {                        \
                if (!(x))           \
                        abort();    \
        } while (0)

enum pick { PICK_SECRET, PICK_LIST, PICK_INIT, PICK_UNSEAL, PICK_VERSIONS, PICK_NAMES, PICK_LEASES, PICK_CREDS,
            PICK_COUNT };

static bool field_equal(const struct wire_field *a, const struct wire_field *b) {
        if (a->type != b->type)
                return false;
        if (a->type == 0)
                return true;
        if (a->type == WIRE_U64)
                return a->u64 == b->u64 && a->len == 8 && b->len == 8;
        return a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

/* Re-encode every field of m in tag order; the result must parse to the same. */
static void roundtrip_body(const struct wire_msg *m, size_t body_len) {
        static struct wire_msg again;
        struct wire_writer w;

        wire_writer_init(&w);
        for (unsigned t = 1; t < WIRE_TAG_MAX; t++) {
                const struct wire_field *f = &m->f[t];
                char s[WIRE_STRING_MAX + 1];
                switch (f->type) {
                case 0:
                        break;
                case WIRE_U64:
                        CHECK(wire_put_u64(&w, (uint8_t) t, f->u64));
                        break;
                case WIRE_STRING:
                        CHECK(wire_get_str(m, (uint8_t) t, s, sizeof(s)) == 0);
                        CHECK(strlen(s) == f->len);
                        CHECK(wire_put_str(&w, (uint8_t) t, s));
                        break;
                case WIRE_BYTES:
                        CHECK(wire_put_bytes(&w, (uint8_t) t, f->p, f->len));
                        break;
                default:
                        abort();
                }
        }
        CHECK(!w.error);
        CHECK(w.len == body_len); /* same fields, maybe another order */
        CHECK(wire_body_parse(&again, w.p, w.len) == 0);
        for (unsigned t = 0; t < WIRE_TAG_MAX; t++)
                CHECK(field_equal(&m->f[t], &again.f[t]));
        wire_writer_free(&w);
}

static void put_secret(struct wire_writer *w, const struct req_secret *r) {
        wire_put_str(w, T_NAME, r->name);
        if (r->version)
                wire_put_u64(w, T_VERSION, r->version);
        if (r->has_cas)
                wire_put_u64(w, T_CAS, r->cas);
        if (r->max_versions)
                wire_put_u64(w, T_MAX_VERSIONS, r->max_versions);
        if (r->value)
                wire_put_bytes(w, T_VALUE, r->value, r->value_len);
}

static void check_secret(const struct wire_msg *m) {
        static struct wire_msg m2;
        struct req_secret a, b;
        const char *why = NULL;
        struct wire_writer w;
        int rc = proto_decode_secret(m, &a, &why);

        CHECK(rc == 0 || (rc < 0 && why));
        if (rc < 0)
                return;
        CHECK(proto_name_valid(a.name));
        CHECK(a.max_versions <= 1000 && a.value_len <= WIRE_VALUE_MAX);
        wire_writer_init(&w);
        put_secret(&w, &a);
        CHECK(!w.error);
        CHECK(wire_body_parse(&m2, w.p, w.len) == 0);
        CHECK(proto_decode_secret(&m2, &b, &why) == 0);
        CHECK(strcmp(a.name, b.name) == 0 && a.version == b.version && a.has_cas == b.has_cas &&
              a.cas == b.cas && a.max_versions == b.max_versions && a.value_len == b.value_len &&
              !a.value == !b.value && (a.value_len == 0 || memcmp(a.value, b.value, a.value_len) == 0));
        wire_writer_free(&w);
}

static void check_list(const struct wire_msg *m) {
        static struct wire_msg m2;
        struct req_list a, b;
        const char *why = NULL;
        struct wire_writer w;
        int rc = proto_decode_list(m, &a, &why);

        CHECK(rc == 0 || (rc < 0 && why));
        if (rc < 0)
                return;
        CHECK(proto_prefix_valid(a.prefix));
        wire_writer_init(&w);
        if (a.prefix[0])
                wire_put_str(&w, T_PREFIX, a.prefix);
        CHECK(!w.error);
        CHECK(wire_body_parse(&m2, w.p, w.len) == 0);
        CHECK(proto_decode_list(&m2, &b, &why) == 0);
        CHECK(strcmp(a.prefix, b.prefix) == 0);
        wire_writer_free(&w);
}

static void put_seal(struct wire_writer *w, const struct req_seal *r, bool init) {
        if (init)
                wire_put_str(w, T_METHOD, r->method);
        if (init && strcmp(r->method, "shamir") == 0) {
                wire_put_u64(w, T_SHARES, r->shares);
                wire_put_u64(w, T_THRESHOLD, r->threshold);
        }
        if (r->key)
                wire_put_bytes(w, T_KEY, r->key, r->key_len);
}

static void check_seal(const struct wire_msg *m, bool init) {
        static struct wire_msg m2;
        struct req_seal a, b;
        const char *why = NULL;
        struct wire_writer w;
        int rc = init ? proto_decode_init(m, &a, &why) : proto_decode_unseal(m, &a, &why);

        CHECK(rc == 0 || (rc < 0 && why));
        if (rc < 0)
                return;
        CHECK(a.key_len <= PROTO_KEY_MAX);
        if (strcmp(a.method, "shamir") == 0)
                CHECK(a.threshold >= 2 && a.threshold <= a.shares && a.shares <= PROTO_SHAMIR_MAX);
        if (strcmp(a.method, "keyfile") == 0)
                CHECK(a.key_len >= PROTO_KEYFILE_MIN);
        wire_writer_init(&w);
        put_seal(&w, &a, init);
        CHECK(!w.error);
        CHECK(wire_body_parse(&m2, w.p, w.len) == 0);
        CHECK((init ? proto_decode_init(&m2, &b, &why) : proto_decode_unseal(&m2, &b, &why)) == 0);
        CHECK(strcmp(a.method, b.method) == 0 && a.shares == b.shares && a.threshold == b.threshold &&
              a.key_len == b.key_len && !a.key == !b.key &&
              (a.key_len == 0 || memcmp(a.key, b.key, a.key_len) == 0));
        wire_writer_free(&w);
}

/* Packed records: whatever reads completely must write back byte for byte. */
static void check_versions(const uint8_t *p, size_t n) {
        struct wire_reader r;
        struct wire_writer w;
        struct proto_version v;

        wire_reader_init(&r, p, n);
        wire_writer_init(&w);
        while (wire_reader_left(&r) > 0 && proto_version_read(&r, &v)) {
                CHECK(wire_reader_left(&r) % 25 == n % 25);
                CHECK(proto_version_write(&w, &v));
        }
        if (wire_reader_done(&r))
                CHECK(w.len == n && (n == 0 || memcmp(w.p, p, n) == 0));
        else
                CHECK(r.error);
        wire_writer_free(&w);
}

static void check_names(const uint8_t *p, size_t n) {
        struct wire_reader r;
        struct wire_writer w;
        const uint8_t *s;
        size_t len;

        wire_reader_init(&r, p, n);
        wire_writer_init(&w);
        while (wire_reader_left(&r) > 0 && wire_read_lbytes(&r, &s, &len, PROTO_NAME_MAX)) {
                char name[PROTO_NAME_MAX + 1];
                CHECK(len <= PROTO_NAME_MAX);
                memcpy(name, s, len);
                name[len] = 0;
                (void) proto_name_valid(name);
                CHECK(wire_write_lbytes(&w, s, len));
        }
        if (wire_reader_done(&r))
                CHECK(w.len == n && (n == 0 || memcmp(w.p, p, n) == 0));
        else
                CHECK(r.error);
        wire_writer_free(&w);
}

/* Lease records (lease list replies): read, write back, read again equal. */
static void check_leases(const uint8_t *p, size_t n) {
        struct wire_reader r;
        struct wire_writer w;
        struct proto_lease l;

        wire_reader_init(&r, p, n);
        wire_writer_init(&w);
        while (wire_reader_left(&r) > 0 && proto_lease_read(&r, &l)) {
                CHECK(strlen(l.id) < sizeof(l.id) && strlen(l.object) < sizeof(l.object));
                CHECK(proto_lease_write(&w, &l));
        }
        if (wire_reader_done(&r))
                CHECK(w.len == n && (n == 0 || memcmp(w.p, p, n) == 0));
        else
                CHECK(r.error);
        wire_writer_free(&w);
}

/* Session credential records (session open replies). */
static void check_creds(const uint8_t *p, size_t n) {
        struct wire_reader r;
        struct wire_writer w;
        struct proto_cred c;

        wire_reader_init(&r, p, n);
        wire_writer_init(&w);
        while (wire_reader_left(&r) > 0 && proto_cred_read(&r, &c)) {
                CHECK(c.token_len <= 65536 && strlen(c.path) < sizeof(c.path));
                CHECK(proto_cred_write(&w, &c));
        }
        if (wire_reader_done(&r))
                CHECK(w.len == n && (n == 0 || memcmp(w.p, p, n) == 0));
        else
                CHECK(r.error);
        wire_writer_free(&w);
}

/* The packed value from its field when the body parses, else the raw body. */
static void packed(const struct wire_msg *m, bool parsed, uint8_t tag, const uint8_t *body, size_t len,
                   const uint8_t **p, size_t *n) {
        if (!parsed || wire_get_bytes(m, tag, p, n) < 0) {
                *p = body;
                *n = len;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static struct wire_msg m;
        const uint8_t *p;
        size_t n;

        if (size < 1)
                return 0;
        enum pick pick = (enum pick) (data[0] % PICK_COUNT);
        size_t len = size - 1;
        uint8_t *body = malloc(len ? len : 1); /* exact size: overreads are ASan reports */
        if (!body)
                return 0;
        memcpy(body, data + 1, len);

        bool parsed = wire_body_parse(&m, body, len) == 0;
        if (parsed)
                roundtrip_body(&m, len);
        switch (pick) {
        case PICK_SECRET:
                if (parsed)
                        check_secret(&m);
                break;
        case PICK_LIST:
                if (parsed)
                        check_list(&m);
                break;
        case PICK_INIT:
        case PICK_UNSEAL:
                if (parsed)
                        check_seal(&m, pick == PICK_INIT);
                break;
        case PICK_VERSIONS:
                packed(&m, parsed, T_VERSIONS, body, len, &p, &n);
                check_versions(p, n);
                break;
        case PICK_NAMES:
                packed(&m, parsed, T_NAMES, body, len, &p, &n);
                check_names(p, n);
                break;
        case PICK_LEASES:
                packed(&m, parsed, T_LEASES, body, len, &p, &n);
                check_leases(p, n);
                break;
        case PICK_CREDS:
                packed(&m, parsed, T_CREDS, body, len, &p, &n);
                check_creds(p, n);
                break;
        case PICK_COUNT:
                break;
        }
        free(body);
        return 0;
}
