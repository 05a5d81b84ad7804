/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The masking engine of `coffer run --mask`: replaces secret values, and
 * their common encodings, with "***" in a stream of output.
 *
 * A mask holds the patterns: each value added brings itself, the value with
 * surrounding whitespace trimmed, with "\n" as "\r\n" (what a terminal's
 * line discipline makes of it), and, of the value and of the trimmed value:
 * base64 (standard and URL-safe, with and without padding, and the part of
 * the encoding that does not depend on what precedes or follows the value
 * when it sits at any of the three byte offsets inside a longer encoded
 * string, e.g. "Basic base64(user:VALUE)"), hex (lower and upper case),
 * URL percent-encoding (RFC 3986,
 * upper and lower case hex; encodeURIComponent; form encoding with '+') and
 * JSON string escaping (minimal, \u-escaped non-ASCII like Python, "\/" like
 * PHP, HTML-safe like Go). Base64 and hex are matched across line breaks
 * ("\n", "\r\n", or "\r\r\n" from a pty; one between any two characters), as
 * base64(1), openssl and xxd wrap them; a match spans at most 4 bytes per
 * pattern byte, so what a stream holds stays bounded. Values shorter than
 * MASK_MIN_LEN bytes are not masked: they would match everywhere.
 *
 * A stream matches leftmost-longest and emits every byte as soon as no
 * pattern can start there; only a suffix that is the beginning of some
 * pattern is held back, so a value split across two reads is still masked
 * and ordinary output (lines, prompts) is never delayed. What happens to a
 * held suffix:
 *   - feed:   held until more output decides it;
 *   - pause:  the output stopped for a moment: a full match is masked even
 *             if a longer pattern could still follow; a held suffix of at
 *             most MASK_RELEASE_MAX bytes (line breaks not counted) is
 *             shown (so echoed keystrokes and
 *             prompts are never stuck), and if the value continues after it
 *             the rest is still masked: at most MASK_RELEASE_MAX bytes of a
 *             value can be shown, and only when the job pauses inside it;
 *             a longer held suffix waits for more output;
 *   - finish: end of output: a held suffix longer than MASK_RELEASE_MAX
 *             (line breaks not counted) that is the start of a pattern is
 *             masked whole.
 *
 * Patterns live in guarded memory (sodium_malloc) and are wiped by
 * mask_free; a stream wipes its held bytes when freed.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MASK_MIN_LEN 4u
#define MASK_RELEASE_MAX 2u
#define MASK_REPLACEMENT "***"

struct mask;
struct mask_stream;

/* Output of a stream, appended to; the caller writes p[0..len) and sets len = 0. */
struct mask_out {
        uint8_t *p;
        size_t len, cap;
};
void mask_out_free(struct mask_out *o);

int mask_new(struct mask **out);
void mask_free(struct mask *m);
/* Add a value and its encodings. Returns the number of patterns added, 0 when
 * the value is too short to mask (after trimming whitespace), or -errno. */
int mask_add_value(struct mask *m, const void *value, size_t n);
size_t mask_patterns(const struct mask *m);
size_t mask_longest(const struct mask *m);

/* A stream reads the mask's patterns: add every value before creating one. */
int mask_stream_new(struct mask_stream **out, const struct mask *m);
void mask_stream_free(struct mask_stream *s);
int mask_stream_feed(struct mask_stream *s, struct mask_out *o, const void *p, size_t n);
int mask_stream_pause(struct mask_stream *s, struct mask_out *o);
int mask_stream_finish(struct mask_stream *s, struct mask_out *o);
/* Bytes received but not yet shown. */
size_t mask_stream_held(const struct mask_stream *s);
