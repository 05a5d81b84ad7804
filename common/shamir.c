/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Shamir secret sharing over GF(2^8) with the AES polynomial x^8+x^4+x^3+x+1.
 * All field arithmetic is branch-free and table-free so that timing does not
 * depend on secret bytes; only the (public) x coordinates are branched on. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sodium.h>

#include "shamir.h"

#define SHAMIR_MAX_SHARES 255

/* Russian-peasant multiply; masks instead of branches, reduction by 0x1b. */
static uint8_t gf_mul(uint8_t a, uint8_t b) {
        uint8_t r = 0;

        for (unsigned i = 0; i < 8; i++) {
                r ^= (uint8_t) -(b & 1) & a;
                b >>= 1;
                a = (uint8_t) ((a << 1) ^ ((uint8_t) -(a >> 7) & 0x1b));
        }
        return r;
}

/* a^254 = a^-1 for a != 0 (and 0 for 0): fixed chain, no branches on a. */
static uint8_t gf_inv(uint8_t a) {
        uint8_t r = a;

        for (unsigned i = 0; i < 6; i++)        /* a^3, a^7, ..., a^127 */
                r = gf_mul(gf_mul(r, r), a);
        return gf_mul(r, r);                    /* a^254 */
}

/* Horner evaluation of coef[0] + coef[1] x + ... + coef[k-1] x^(k-1);
 * coef[j] is the j-th coefficient for this byte, stride apart. */
static uint8_t poly_eval(const uint8_t *coef, size_t stride, unsigned k, uint8_t x) {
        uint8_t y = 0;

        for (unsigned j = k; j-- > 0;)
                y = gf_mul(y, x) ^ coef[j * stride];
        return y;
}

int shamir_split(uint8_t *shares, const uint8_t secret[static SHAMIR_SECRET_SIZE],
                 unsigned n, unsigned k) {
        /* coef[j * SIZE + b]: coefficient of x^j for secret byte b; j = 0 is the secret. */
        uint8_t coef[SHAMIR_MAX_SHARES * SHAMIR_SECRET_SIZE];

        if (!shares || !secret || k < 2 || k > n || n > SHAMIR_MAX_SHARES)
                return -EINVAL;

        memcpy(coef, secret, SHAMIR_SECRET_SIZE);
        randombytes_buf(coef + SHAMIR_SECRET_SIZE, (size_t) (k - 1) * SHAMIR_SECRET_SIZE);

        for (unsigned i = 0; i < n; i++) {
                uint8_t *share = shares + (size_t) i * SHAMIR_SHARE_SIZE;
                uint8_t x = (uint8_t) (i + 1);

                share[0] = x;
                for (size_t b = 0; b < SHAMIR_SECRET_SIZE; b++)
                        share[1 + b] = poly_eval(coef + b, SHAMIR_SECRET_SIZE, k, x);
        }

        sodium_memzero(coef, sizeof(coef));
        return 0;
}

/* x coordinates are not secret, so validating them may branch. */
static bool xs_valid(const uint8_t *shares, unsigned k) {
        bool seen[256] = { false };

        for (unsigned i = 0; i < k; i++) {
                uint8_t x = shares[(size_t) i * SHAMIR_SHARE_SIZE];

                if (x == 0 || seen[x])
                        return false;
                seen[x] = true;
        }
        return true;
}

/* Lagrange basis at 0: l_i = prod_{j!=i} x_j / (x_j - x_i); minus is xor. */
static uint8_t lagrange_at_zero(const uint8_t *shares, unsigned k, unsigned i) {
        uint8_t xi = shares[(size_t) i * SHAMIR_SHARE_SIZE];
        uint8_t num = 1, den = 1;

        for (unsigned j = 0; j < k; j++) {
                uint8_t xj = shares[(size_t) j * SHAMIR_SHARE_SIZE];

                if (j == i)
                        continue;
                num = gf_mul(num, xj);
                den = gf_mul(den, xj ^ xi);
        }
        return gf_mul(num, gf_inv(den));
}

int shamir_combine(uint8_t secret[static SHAMIR_SECRET_SIZE], const uint8_t *shares, unsigned k) {
        uint8_t acc[SHAMIR_SECRET_SIZE] = { 0 };

        if (!secret || !shares || k < 2 || k > SHAMIR_MAX_SHARES || !xs_valid(shares, k))
                return -EINVAL;

        for (unsigned i = 0; i < k; i++) {
                const uint8_t *y = shares + (size_t) i * SHAMIR_SHARE_SIZE + 1;
                uint8_t l = lagrange_at_zero(shares, k, i);

                for (size_t b = 0; b < SHAMIR_SECRET_SIZE; b++)
                        acc[b] ^= gf_mul(y[b], l);
        }

        memcpy(secret, acc, SHAMIR_SECRET_SIZE);
        sodium_memzero(acc, sizeof(acc));
        return 0;
}
