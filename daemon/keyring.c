/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stddef.h>

#include "keyring.h"

const struct keyring_term *keyring_current(const struct keyring *k) {
        if (!k || k->nterms == 0)
                return NULL;
        return &k->terms[k->nterms - 1];
}

const struct keyring_term *keyring_find(const struct keyring *k, uint32_t term) {
        if (!k)
                return NULL;
        for (uint32_t i = 0; i < k->nterms; i++)
                if (k->terms[i].term == term)
                        return &k->terms[i];
        return NULL;
}
