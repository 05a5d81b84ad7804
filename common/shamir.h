/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Shamir secret sharing over GF(2^8), byte-wise, k-of-n. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define SHAMIR_SECRET_SIZE 32
#define SHAMIR_SHARE_SIZE  (1 + SHAMIR_SECRET_SIZE) /* x coordinate, then y bytes */

/* Split secret into n shares (share i has x = i+1), any k of which recover it.
 * 2 <= k <= n <= 255. shares must hold n * SHAMIR_SHARE_SIZE bytes.
 * Random coefficients come from randombytes_buf and are wiped. Returns 0 or -EINVAL. */
int shamir_split(uint8_t *shares, const uint8_t secret[static SHAMIR_SECRET_SIZE],
                 unsigned n, unsigned k);

/* Recover the secret from k shares (k * SHAMIR_SHARE_SIZE bytes). Rejects
 * x = 0 and duplicate x with -EINVAL. Constant-time in the share values. */
int shamir_combine(uint8_t secret[static SHAMIR_SECRET_SIZE], const uint8_t *shares, unsigned k);
