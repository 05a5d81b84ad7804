/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Master key and keyring. Layout in the store's meta table:
 *   seal.method     "keyfile" | "passphrase" | "shamir"
 *   seal.salt       32 random bytes (keyfile: BLAKE2b key; passphrase: first 16 are the Argon2id salt)
 *   seal.kdf        passphrase only: opslimit u64 BE, memlimit u64 BE
 *   seal.wrapped    keyfile/passphrase: nonce || XChaCha20-Poly1305(master, KEK, ad "coffer-v1/master/<method>")
 *   seal.shamir     shamir only: n u64 BE, k u64 BE
 *   keyring         nonce || XChaCha20-Poly1305(serialized keyring, master, ad "coffer-v1/keyring")
 *   audit.pk        public key that sealed-mode audit segment keys are sealed to
 * With shamir the master key itself is split; a wrong reconstruction is caught
 * by the keyring's authentication tag.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "seal.h"
#include "shamir.h"
#include "util.h"
#include "wire.h"

#define MASTER_SIZE 32
#define AEAD_NONCE crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define AEAD_TAG crypto_aead_xchacha20poly1305_ietf_ABYTES
#define KEYRING_AD "coffer-v1/keyring"

static void master_free(uint8_t **m) {
        if (*m)
                sodium_free(*m);
        *m = NULL;
}
#define _cleanup_master_ _cleanup_(master_free)

static uint8_t *master_new(void) {
        return sodium_malloc(MASTER_SIZE);
}

static int aead_seal(struct wire_writer *out, const uint8_t *m, size_t mlen, const char *ad, const uint8_t *key) {
        uint8_t nonce[AEAD_NONCE];
        randombytes_buf(nonce, sizeof(nonce));
        size_t off = out->len;
        if (!wire_write_bytes(out, nonce, sizeof(nonce)) || !wire_write_bytes(out, m, mlen) ||
            !wire_write_bytes(out, nonce, AEAD_TAG))
                return -ENOMEM;
        unsigned long long clen;
        crypto_aead_xchacha20poly1305_ietf_encrypt(out->p + off + AEAD_NONCE, &clen, m, mlen, (const uint8_t *) ad,
                                                   strlen(ad), NULL, nonce, key);
        return 0;
}

/* Decrypt into out (which must hold clen - NONCE - TAG bytes). */
static int aead_open(uint8_t *out, const uint8_t *c, size_t clen, const char *ad, const uint8_t *key) {
        if (clen < AEAD_NONCE + AEAD_TAG)
                return -EBADMSG;
        if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, NULL, NULL, c + AEAD_NONCE, clen - AEAD_NONCE,
                                                       (const uint8_t *) ad, strlen(ad), c, key) != 0)
                return -EKEYREJECTED;
        return 0;
}

/* ---- keyring (de)serialization ---- */

static int keyring_store(struct store *st, const struct keyring *kr, const uint8_t *master) {
        struct wire_writer plain, sealed;
        wire_writer_init(&plain);
        wire_writer_init(&sealed);
        wire_write_u32(&plain, kr->nterms);
        for (uint32_t i = 0; i < kr->nterms; i++) {
                wire_write_u32(&plain, kr->terms[i].term);
                wire_write_u64(&plain, kr->terms[i].created);
                wire_write_bytes(&plain, kr->terms[i].key, KEYRING_KEY_SIZE);
        }
        wire_write_bytes(&plain, kr->audit_mac_key, 32);
        wire_write_bytes(&plain, kr->audit_box_sk, 32);
        wire_write_bytes(&plain, kr->audit_box_pk, 32);
        int rc = plain.error ? -ENOMEM : aead_seal(&sealed, plain.p, plain.len, KEYRING_AD, master);
        if (rc == 0)
                rc = store_meta_put(st, "keyring", sealed.p, sealed.len);
        wire_writer_free(&plain);
        wire_writer_free(&sealed);
        return rc;
}

static int keyring_parse(struct keyring *kr, const uint8_t *p, size_t n) {
        struct wire_reader r;
        const uint8_t *b;
        wire_reader_init(&r, p, n);
        if (!wire_read_u32(&r, &kr->nterms) || kr->nterms == 0 || kr->nterms > KEYRING_TERMS_MAX)
                return -EBADMSG;
        for (uint32_t i = 0; i < kr->nterms; i++) {
                struct keyring_term *t = &kr->terms[i];
                if (!wire_read_u32(&r, &t->term) || !wire_read_u64(&r, &t->created) ||
                    !wire_read_bytes(&r, &b, KEYRING_KEY_SIZE))
                        return -EBADMSG;
                memcpy(t->key, b, KEYRING_KEY_SIZE);
        }
        if (!wire_read_bytes(&r, &b, 32))
                return -EBADMSG;
        memcpy(kr->audit_mac_key, b, 32);
        if (!wire_read_bytes(&r, &b, 32))
                return -EBADMSG;
        memcpy(kr->audit_box_sk, b, 32);
        if (!wire_read_bytes(&r, &b, 32))
                return -EBADMSG;
        memcpy(kr->audit_box_pk, b, 32);
        return wire_reader_done(&r) ? 0 : -EBADMSG;
}

/* Open the stored keyring with a candidate master key. */
static int keyring_load(struct keyring **out, struct store *st, const uint8_t *master) {
        _cleanup_free_ uint8_t *blob = NULL;
        size_t n;
        int rc = store_meta_get(st, "keyring", &blob, &n);
        if (rc < 0)
                return rc == -ENOENT ? -EBADMSG : rc;
        if (n < AEAD_NONCE + AEAD_TAG)
                return -EBADMSG;
        struct secbuf plain = { .p = malloc(n), .len = n };
        if (!plain.p)
                return -ENOMEM;
        struct keyring *kr = sodium_malloc(sizeof(*kr));
        if (!kr) {
                secbuf_wipe(&plain);
                return -ENOMEM;
        }
        sodium_memzero(kr, sizeof(*kr));
        rc = aead_open(plain.p, blob, n, KEYRING_AD, master);
        if (rc == 0)
                rc = keyring_parse(kr, plain.p, n - AEAD_NONCE - AEAD_TAG);
        secbuf_wipe(&plain);
        if (rc < 0) {
                sodium_free(kr);
                return rc;
        }
        *out = kr;
        return 0;
}

/* ---- key-encryption keys ---- */

static int meta_exact(struct store *st, const char *key, uint8_t *out, size_t n) {
        _cleanup_free_ uint8_t *v = NULL;
        size_t len;
        int rc = store_meta_get(st, key, &v, &len);
        if (rc < 0)
                return rc;
        if (len != n)
                return -EBADMSG;
        memcpy(out, v, n);
        return 0;
}

static void put_be64(uint8_t *p, uint64_t v) {
        for (int i = 0; i < 8; i++)
                p[i] = (uint8_t) (v >> (56 - 8 * i));
}

static uint64_t get_be64(const uint8_t *p) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
                v = (v << 8) | p[i];
        return v;
}

/* What turns a keyfile or passphrase into the key-encryption key, read from
 * the store on the loop so that the derivation can run anywhere. */
struct kek_params {
        bool passphrase;
        uint8_t salt[32];
        uint64_t ops, mem;
};

static int kek_params_load(struct kek_params *p, struct store *st, const char *method) {
        *p = (struct kek_params){ .passphrase = strcmp(method, "keyfile") != 0 };
        int rc = meta_exact(st, "seal.salt", p->salt, sizeof(p->salt));
        if (rc < 0 || !p->passphrase)
                return rc;
        uint8_t kdf[16];
        rc = meta_exact(st, "seal.kdf", kdf, sizeof(kdf));
        if (rc < 0)
                return rc;
        p->ops = get_be64(kdf);
        p->mem = get_be64(kdf + 8);
        if (p->ops < crypto_pwhash_OPSLIMIT_MIN || p->mem < crypto_pwhash_MEMLIMIT_MIN || p->mem > (1ull << 32))
                return -EBADMSG;
        return 0;
}

/* Argon2id for a passphrase: the slow step (~0.7 s at MODERATE). */
static int kek_derive(uint8_t kek[static 32], const struct kek_params *p, const uint8_t *key, size_t len) {
        if (!p->passphrase) {
                if (len < PROTO_KEYFILE_MIN)
                        return -EKEYREJECTED;
                return crypto_generichash(kek, 32, key, len, p->salt, sizeof(p->salt)) == 0 ? 0 : -EIO;
        }
        if (crypto_pwhash(kek, 32, (const char *) key, len, p->salt, p->ops, (size_t) p->mem,
                          crypto_pwhash_ALG_ARGON2ID13) != 0)
                return -ENOMEM;
        return 0;
}

static int derive_kek(uint8_t kek[static 32], struct store *st, const char *method, const uint8_t *key,
                      size_t len) {
        struct kek_params p;
        int rc = kek_params_load(&p, st, method);
        return rc < 0 ? rc : kek_derive(kek, &p, key, len);
}

static void wrap_ad(char *ad, size_t n, const char *method) {
        strcpy_bounded(ad, n, "coffer-v1/master/");
        strcat(ad, method);
}

/* ---- load / init ---- */

int seal_load(struct seal *s, struct store *st) {
        _cleanup_free_ uint8_t *v = NULL;
        size_t n;
        memset(s, 0, sizeof(*s));
        s->threshold = 1;
        if (meta_exact(st, "audit.pk", s->audit_pk, 32) == 0)
                s->has_audit_pk = true;
        int rc = store_meta_get(st, "seal.method", &v, &n);
        if (rc == -ENOENT)
                return 0;
        if (rc < 0)
                return rc;
        if (n >= sizeof(s->method))
                return -EBADMSG;
        memcpy(s->method, v, n);
        s->method[n] = 0;
        if (strcmp(s->method, "shamir") == 0) {
                uint8_t kn[16];
                rc = meta_exact(st, "seal.shamir", kn, sizeof(kn));
                if (rc < 0)
                        return rc;
                s->shares = (unsigned) get_be64(kn);
                s->threshold = (unsigned) get_be64(kn + 8);
                if (s->threshold < 2 || s->threshold > s->shares || s->shares > PROTO_SHAMIR_MAX)
                        return -EBADMSG;
        } else if (strcmp(s->method, "keyfile") != 0 && strcmp(s->method, "passphrase") != 0)
                return -EBADMSG;
        s->initialized = true;
        return 0;
}

static struct keyring *keyring_new(void) {
        struct keyring *kr = sodium_malloc(sizeof(*kr));
        if (!kr)
                return NULL;
        sodium_memzero(kr, sizeof(*kr));
        kr->nterms = 1;
        kr->terms[0].term = 1;
        kr->terms[0].created = now_unix();
        randombytes_buf(kr->terms[0].key, KEYRING_KEY_SIZE);
        randombytes_buf(kr->audit_mac_key, 32);
        crypto_box_keypair(kr->audit_box_pk, kr->audit_box_sk);
        return kr;
}

static int write_method(struct seal *s, struct store *st, const struct req_seal *r, const uint8_t *master,
                        uint8_t **shares) {
        int rc;
        if (strcmp(r->method, "shamir") == 0) {
                uint8_t kn[16];
                put_be64(kn, r->shares);
                put_be64(kn + 8, r->threshold);
                *shares = sodium_malloc(r->shares * PROTO_SHARE_SIZE);
                if (!*shares)
                        return -ENOMEM;
                rc = shamir_split(*shares, master, (unsigned) r->shares, (unsigned) r->threshold);
                return rc < 0 ? rc : store_meta_put(st, "seal.shamir", kn, sizeof(kn));
        }
        uint8_t salt[32];
        randombytes_buf(salt, sizeof(salt));
        rc = store_meta_put(st, "seal.salt", salt, sizeof(salt));
        if (rc == 0 && strcmp(r->method, "passphrase") == 0) {
                uint8_t kdf[16];
                put_be64(kdf, crypto_pwhash_OPSLIMIT_MODERATE);
                put_be64(kdf + 8, crypto_pwhash_MEMLIMIT_MODERATE);
                rc = store_meta_put(st, "seal.kdf", kdf, sizeof(kdf));
        }
        if (rc < 0)
                return rc;
        uint8_t kek[32];
        char ad[64];
        struct wire_writer w;
        wire_writer_init(&w);
        wrap_ad(ad, sizeof(ad), r->method);
        rc = derive_kek(kek, st, r->method, r->key, r->key_len);
        if (rc == 0)
                rc = aead_seal(&w, master, MASTER_SIZE, ad, kek);
        if (rc == 0)
                rc = store_meta_put(st, "seal.wrapped", w.p, w.len);
        sodium_memzero(kek, sizeof(kek));
        wire_writer_free(&w);
        return rc;
}

int seal_init(struct seal *s, struct store *st, const struct req_seal *r, uint8_t **shares) {
        _cleanup_master_ uint8_t *master = master_new();
        struct keyring *kr = keyring_new();
        int rc = (master && kr) ? 0 : -ENOMEM;
        *shares = NULL;
        if (s->initialized)
                rc = -EEXIST;
        if (rc == 0) {
                randombytes_buf(master, MASTER_SIZE);
                rc = store_begin(st);
        }
        if (rc == 0) {
                rc = store_meta_put(st, "seal.method", r->method, strlen(r->method));
                if (rc == 0)
                        rc = write_method(s, st, r, master, shares);
                if (rc == 0)
                        rc = keyring_store(st, kr, master);
                if (rc == 0)
                        rc = store_meta_put(st, "audit.pk", kr->audit_box_pk, 32);
                rc = rc == 0 ? store_commit(st) : (store_rollback(st), rc);
        }
        if (rc == 0)
                rc = seal_load(s, st);
        if (rc < 0) {
                if (kr)
                        sodium_free(kr);
                if (*shares)
                        sodium_free(*shares);
                *shares = NULL;
                return rc;
        }
        s->kr = kr;
        s->master = master;
        master = NULL;
        return 0;
}

/* ---- unseal ---- */

struct seal_unwrap {
        char method[16];
        struct kek_params kek;
        uint8_t wrapped[AEAD_NONCE + MASTER_SIZE + AEAD_TAG];
        uint8_t *key;              /* keyfile or passphrase (sodium_malloc), NULL for shamir */
        size_t key_len;
        uint8_t *master;           /* sodium_malloc */
        int rc;
};

void seal_unwrap_free(struct seal_unwrap *u) {
        if (!u)
                return;
        if (u->key)
                sodium_free(u->key);
        master_free(&u->master);
        sodium_memzero(u, sizeof(*u));
        free(u);
}

const uint8_t *seal_unwrap_master(const struct seal_unwrap *u) {
        return u->rc == 0 ? u->master : NULL;
}

static int prepare_wrapped(struct seal *s, struct store *st, const uint8_t *key, size_t len,
                           struct seal_unwrap *u) {
        _cleanup_free_ uint8_t *w = NULL;
        size_t wlen;
        int rc = store_meta_get(st, "seal.wrapped", &w, &wlen);
        if (rc < 0)
                return rc;
        if (wlen != sizeof(u->wrapped))
                return -EBADMSG;
        memcpy(u->wrapped, w, wlen);
        rc = kek_params_load(&u->kek, st, s->method);
        if (rc < 0)
                return rc;
        u->key = sodium_malloc(len ? len : 1);
        if (!u->key)
                return -ENOMEM;
        memcpy(u->key, key, len);
        u->key_len = len;
        return 0;
}

void seal_unwrap_run(struct seal_unwrap *u) {
        if (u->rc < 0 || !u->key)
                return; /* shamir: the master key is already combined */
        uint8_t kek[32];
        char ad[64];
        wrap_ad(ad, sizeof(ad), u->method);
        u->rc = kek_derive(kek, &u->kek, u->key, u->key_len);
        if (u->rc == 0)
                u->rc = aead_open(u->master, u->wrapped, sizeof(u->wrapped), ad, kek);
        sodium_memzero(kek, sizeof(kek));
        sodium_free(u->key);
        u->key = NULL;
}

static void pending_reset(struct seal *s) {
        if (s->pending)
                sodium_free(s->pending);
        s->pending = NULL;
        s->npending = 0;
}

/* 1: share taken, more needed; 0: u->master holds the combined key. */
static int take_share(struct seal *s, const uint8_t *share, size_t len, struct seal_unwrap *u, const char **why) {
        if (len != PROTO_SHARE_SIZE || share[0] == 0 || share[0] > s->shares) {
                *why = "not a share of this store: a share is 33 bytes (66 hex digits) with an index from 1 to n";
                return -EINVAL;
        }
        if (!s->pending && !(s->pending = sodium_malloc((size_t) s->threshold * PROTO_SHARE_SIZE)))
                return -ENOMEM;
        for (unsigned i = 0; i < s->npending; i++)
                if (s->pending[i * PROTO_SHARE_SIZE] == share[0]) {
                        *why = "this share was already submitted; submit a different one";
                        return -EEXIST;
                }
        memcpy(s->pending + s->npending++ * PROTO_SHARE_SIZE, share, PROTO_SHARE_SIZE);
        if (s->npending < s->threshold)
                return 1;
        int rc = shamir_combine(u->master, s->pending, s->threshold);
        pending_reset(s);
        return rc;
}

int seal_unwrap_begin(struct seal *s, struct store *st, const uint8_t *key, size_t len, struct seal_unwrap **out,
                      const char **why) {
        *out = NULL;
        if (!s->initialized) {
                *why = "the store is not initialized: run `coffer operator init`";
                return -ENODATA;
        }
        if (s->kr)
                return 0;
        struct seal_unwrap *u = calloc(1, sizeof(*u));
        if (!u || !(u->master = master_new())) {
                free(u);
                return -ENOMEM;
        }
        strcpy_bounded(u->method, sizeof(u->method), s->method);
        int rc = strcmp(s->method, "shamir") == 0 ? take_share(s, key, len, u, why)
                                                  : prepare_wrapped(s, st, key, len, u);
        if (rc != 0) {
                seal_unwrap_free(u);
                return rc;
        }
        *out = u;
        return 0;
}

int seal_unwrap_finish(struct seal *s, struct store *st, struct seal_unwrap *u, const char **why) {
        int rc = u->rc;
        if (rc == 0 && s->kr)
                return 0; /* unsealed meanwhile (by the systemd credential at start) */
        if (rc == 0)
                rc = keyring_load(&s->kr, st, u->master);
        if (rc == 0) {
                s->master = u->master;
                u->master = NULL;
                return 0;
        }
        if (rc == -EKEYREJECTED)
                *why = strcmp(u->method, "shamir") == 0
                               ? "the shares do not reconstruct this store's master key; progress reset, start again"
                       : strcmp(u->method, "keyfile") == 0 ? "wrong keyfile: it does not open this store's master key"
                                                           : "wrong passphrase";
        return rc;
}

int seal_unseal(struct seal *s, struct store *st, const uint8_t *key, size_t len, const char **why) {
        struct seal_unwrap *u = NULL;
        int rc = seal_unwrap_begin(s, st, key, len, &u, why);
        if (rc != 0 || !u)
                return rc;
        seal_unwrap_run(u);
        rc = seal_unwrap_finish(s, st, u, why);
        seal_unwrap_free(u);
        return rc;
}

void seal_seal(struct seal *s) {
        s->seals++;
        if (s->kr)
                sodium_free(s->kr); /* sodium_free wipes */
        s->kr = NULL;
        master_free(&s->master);
        pending_reset(s);
}

int seal_rotate(struct seal *s, struct store *st, uint32_t *term) {
        struct keyring *kr = s->kr;
        if (!kr)
                return -ENOKEY;
        if (kr->nterms >= KEYRING_TERMS_MAX)
                return -ENOSPC;
        struct keyring_term *t = &kr->terms[kr->nterms];
        t->term = keyring_current(kr)->term + 1;
        t->created = now_unix();
        randombytes_buf(t->key, KEYRING_KEY_SIZE);
        kr->nterms++;
        int rc = keyring_store(st, kr, s->master);
        if (rc < 0) {
                kr->nterms--;
                sodium_memzero(t, sizeof(*t));
                return rc;
        }
        *term = t->term;
        return 0;
}

void seal_free(struct seal *s) {
        seal_seal(s);
}
