/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The keyring: data keys with terms, wrapped by the master key. Values are
 * encrypted with the newest term. Lives in sodium_malloc memory. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define KEYRING_KEY_SIZE 32
#define KEYRING_TERMS_MAX 1024

struct keyring_term {
        uint32_t term;
        uint64_t created;
        uint8_t key[KEYRING_KEY_SIZE];
};

struct keyring {
        uint32_t nterms;
        uint8_t audit_mac_key[32];    /* keys the audit chain while unsealed */
        uint8_t audit_box_sk[32];     /* opens sealed-segment audit keys */
        uint8_t audit_box_pk[32];
        struct keyring_term terms[KEYRING_TERMS_MAX];
};

/* Newest term, or NULL when empty. */
const struct keyring_term *keyring_current(const struct keyring *k);
const struct keyring_term *keyring_find(const struct keyring *k, uint32_t term);
