/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Masking engine: patterns from values, and streaming leftmost-longest
 * replacement. See mask.h for what is masked and when held bytes appear. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sodium.h>

#include "mask.h"
#include "util.h"

/* Candidate patterns of one value: 2 raw forms x (1 + 4 base64 + 6 cores +
 * 2 hex + 4 percent + 4 JSON) + the CRLF form, with room to spare. */
#define MAX_CANDS 64u

struct pattern {
        const uint8_t *p;
        size_t n;
        bool wrap;            /* may be broken across lines (base64, hex) */
};

struct mask {
        struct pattern *pats;
        size_t npats;
        void **blocks;        /* sodium_malloc'd, one per value */
        size_t nblocks;
        size_t longest;
        /* Pattern indices grouped by first byte, longest first within a group:
         * group b is order[start[b] .. start[b + 1]). */
        uint32_t *order;
        uint32_t start[257];
};

struct mask_stream {
        const struct mask *m;
        uint8_t *buf;         /* buf[0] is the first position not yet decided */
        size_t len, cap;
        size_t emitted;       /* buf[0..emitted) was shown already (released at a pause) */
};

/* ---- candidates of one value (temporary, wiped) ---- */

struct cands {
        struct secbuf v[MAX_CANDS];
        bool wrap[MAX_CANDS];
        size_t n;
        bool wrapping;        /* the encoder adding now is one that tools wrap */
};

static void cands_wipe(struct cands *c) {
        for (size_t i = 0; i < c->n; i++)
                secbuf_wipe(&c->v[i]);
        c->n = 0;
}

/* Take p (malloc'd, n bytes); drop it if too short or a duplicate. */
static int cand_take(struct cands *c, uint8_t *p, size_t n) {
        struct secbuf b = { p, n };
        bool keep = n >= MASK_MIN_LEN && c->n < MAX_CANDS;
        for (size_t i = 0; keep && i < c->n; i++)
                if (c->v[i].len == n && memcmp(c->v[i].p, p, n) == 0) {
                        c->wrap[i] = c->wrap[i] || c->wrapping;
                        keep = false;
                }
        if (!keep) {
                secbuf_wipe(&b);
                return 0;
        }
        c->wrap[c->n] = c->wrapping;
        c->v[c->n++] = b;
        return 0;
}

static int cand_copy(struct cands *c, const uint8_t *p, size_t n) {
        uint8_t *q = malloc(n ? n : 1);
        if (!q)
                return -ENOMEM;
        memcpy(q, p, n);
        return cand_take(c, q, n);
}

/* ---- encoders: each returns a malloc'd buffer and its length ---- */

struct growbuf {
        struct secbuf b;
        size_t cap;
        bool oom;
};

static void gb_put(struct growbuf *g, const char *s, size_t n) {
        if (g->oom)
                return;
        if (g->b.len + n > g->cap) {
                size_t cap = (g->b.len + n) * 2 + 16;
                uint8_t *p = malloc(cap);
                if (!p) {
                        g->oom = true;
                        return;
                }
                if (g->b.p) {
                        memcpy(p, g->b.p, g->b.len);
                        sodium_memzero(g->b.p, g->cap);
                        free(g->b.p);
                }
                g->b.p = p;
                g->cap = cap;
        }
        memcpy(g->b.p + g->b.len, s, n);
        g->b.len += n;
}

static int gb_done(struct growbuf *g, struct cands *c) {
        if (g->oom) {
                if (g->b.p)
                        sodium_memzero(g->b.p, g->cap);
                free(g->b.p);
                return -ENOMEM;
        }
        return cand_take(c, g->b.p, g->b.len);
}

static int add_base64(struct cands *c, const uint8_t *v, size_t n, int variant) {
        size_t cap = sodium_base64_ENCODED_LEN(n, variant);
        char *e = malloc(cap);
        if (!e)
                return -ENOMEM;
        sodium_bin2base64(e, cap, v, n, variant);
        return cand_take(c, (uint8_t *) e, strlen(e));
}

/* The characters of unpadded base64 that depend only on the value when it
 * starts `shift` bytes into the encoded data: skip those that mix in bits of
 * the bytes before it, and the last one if it mixes in bits of a byte after. */
static int add_base64_core(struct cands *c, const uint8_t *v, size_t n, unsigned shift, int variant) {
        size_t inlen = n + shift, cap = sodium_base64_ENCODED_LEN(inlen, variant);
        struct secbuf in = { malloc(inlen), inlen };
        char *e = malloc(cap);
        int rc = 0;
        if (!in.p || !e)
                rc = -ENOMEM;
        else {
                memset(in.p, 0, shift);
                memcpy(in.p + shift, v, n);
                sodium_bin2base64(e, cap, in.p, inlen, variant);
                size_t from = (8 * shift + 5) / 6, to = 8 * inlen / 6;
                if (to > from)
                        rc = cand_copy(c, (const uint8_t *) e + from, to - from);
                sodium_memzero(e, cap);
        }
        free(e);
        secbuf_wipe(&in);
        return rc;
}

static int add_base64_all(struct cands *c, const uint8_t *v, size_t n) {
        static const int variants[] = { sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
                                        sodium_base64_VARIANT_URLSAFE, sodium_base64_VARIANT_URLSAFE_NO_PADDING };
        int rc = 0;
        for (size_t i = 0; rc == 0 && i < ELEMENTSOF(variants); i++)
                rc = add_base64(c, v, n, variants[i]);
        for (unsigned shift = 0; rc == 0 && shift < 3; shift++) {
                rc = add_base64_core(c, v, n, shift, sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
                if (rc == 0)
                        rc = add_base64_core(c, v, n, shift, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        }
        return rc;
}

/* Lower and upper case hex (xxd -p, od, hexdump -e). */
static int add_hex(struct cands *c, const uint8_t *v, size_t n, bool upper) {
        size_t cap = 2 * n + 1;
        char *e = malloc(cap);
        if (!e)
                return -ENOMEM;
        sodium_bin2hex(e, cap, v, n);
        for (size_t i = 0; upper && i < 2 * n; i++)
                e[i] = (char) toupper((unsigned char) e[i]);
        return cand_take(c, (uint8_t *) e, 2 * n);
}

/* The encodings that tools wrap at a fixed width (base64 at 76 columns,
 * openssl at 64, xxd -p at 60): matched across line breaks. */
static int add_wrapped(struct cands *c, const uint8_t *v, size_t n) {
        c->wrapping = true;
        int rc = add_base64_all(c, v, n);
        if (rc == 0)
                rc = add_hex(c, v, n, false);
        if (rc == 0)
                rc = add_hex(c, v, n, true);
        c->wrapping = false;
        return rc;
}

enum pct { PCT_UPPER, PCT_LOWER, PCT_JS, PCT_FORM };

static bool pct_keep(uint8_t b, enum pct mode) {
        if ((b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z') || (b >= '0' && b <= '9'))
                return true;
        if (b == '-' || b == '.' || b == '_' || b == '~')
                return true;
        return mode == PCT_JS && b && strchr("!'()*", b);
}

static int add_percent(struct cands *c, const uint8_t *v, size_t n, enum pct mode) {
        const char *hex = mode == PCT_LOWER ? "0123456789abcdef" : "0123456789ABCDEF";
        struct growbuf g = { 0 };
        for (size_t i = 0; i < n; i++) {
                char e[3] = { '%', hex[v[i] >> 4], hex[v[i] & 15] };
                if (pct_keep(v[i], mode))
                        gb_put(&g, (const char *) &v[i], 1);
                else if (mode == PCT_FORM && v[i] == ' ')
                        gb_put(&g, "+", 1);
                else
                        gb_put(&g, e, 3);
        }
        return gb_done(&g, c);
}

enum { JSON_ASCII = 1, JSON_SLASH = 2, JSON_HTML = 4 };

/* Decode one UTF-8 sequence at v (n bytes left); 0 when it is not valid. */
static size_t utf8_next(const uint8_t *v, size_t n, uint32_t *cp) {
        size_t len = v[0] < 0x80             ? 1
                     : (v[0] & 0xe0) == 0xc0 ? 2
                     : (v[0] & 0xf0) == 0xe0 ? 3
                     : (v[0] & 0xf8) == 0xf0 ? 4
                                             : 0;
        static const uint32_t min[] = { 0, 0, 0x80, 0x800, 0x10000 };
        if (len == 0 || len > n)
                return 0;
        uint32_t c = len == 1 ? v[0] : v[0] & (0x7fu >> len);
        for (size_t i = 1; i < len; i++) {
                if ((v[i] & 0xc0) != 0x80)
                        return 0;
                c = c << 6 | (v[i] & 0x3f);
        }
        if (c < min[len] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
                return 0;
        *cp = c;
        return len;
}

static void json_u(struct growbuf *g, uint32_t u) {
        char e[7];
        snprintf(e, sizeof(e), "\\u%04x", (unsigned) u);
        gb_put(g, e, 6);
}

/* One character of a JSON string body; returns bytes consumed, 0 if invalid UTF-8 under JSON_ASCII. */
static size_t json_char(struct growbuf *g, const uint8_t *v, size_t n, unsigned flags) {
        static const char shortesc[] = "\b\f\n\r\t", shortname[] = "bfnrt";
        uint8_t b = v[0];
        uint32_t cp;
        size_t len;
        const char *s;
        if (b == '"' || b == '\\' || (b == '/' && (flags & JSON_SLASH))) {
                char e[2] = { '\\', (char) b };
                gb_put(g, e, 2);
        } else if (b && (s = strchr(shortesc, b))) {
                char e[2] = { '\\', shortname[s - shortesc] };
                gb_put(g, e, 2);
        } else if (b < 0x20 || ((flags & JSON_HTML) && (b == '<' || b == '>' || b == '&')))
                json_u(g, b);
        else if (b < 0x80 || !(flags & (JSON_ASCII | JSON_HTML)))
                gb_put(g, (const char *) v, 1);
        else {
                if ((len = utf8_next(v, n, &cp)) == 0)
                        return 0;
                if (!(flags & JSON_ASCII) && cp != 0x2028 && cp != 0x2029)
                        gb_put(g, (const char *) v, len); /* HTML-safe keeps other non-ASCII */
                else if (cp >= 0x10000) {
                        json_u(g, 0xd800 + ((cp - 0x10000) >> 10));
                        json_u(g, 0xdc00 + ((cp - 0x10000) & 0x3ff));
                } else
                        json_u(g, cp);
                return len;
        }
        return 1;
}

static int add_json(struct cands *c, const uint8_t *v, size_t n, unsigned flags) {
        struct growbuf g = { 0 };
        for (size_t i = 0; i < n;) {
                size_t k = json_char(&g, v + i, n - i, flags);
                if (k == 0) { /* not UTF-8: no encoder of this kind would produce it */
                        if (g.b.p)
                                sodium_memzero(g.b.p, g.cap);
                        free(g.b.p);
                        return 0;
                }
                i += k;
        }
        return gb_done(&g, c);
}

static int add_encodings(struct cands *c, const uint8_t *v, size_t n) {
        static const unsigned json_flags[] = { 0, JSON_ASCII, JSON_ASCII | JSON_SLASH, JSON_HTML };
        int rc = cand_copy(c, v, n);
        if (rc == 0)
                rc = add_wrapped(c, v, n);
        for (enum pct m = PCT_UPPER; rc == 0 && m <= PCT_FORM; m++)
                if (m != PCT_FORM || memchr(v, ' ', n))
                        rc = add_percent(c, v, n, m);
        for (size_t i = 0; rc == 0 && i < ELEMENTSOF(json_flags); i++)
                rc = add_json(c, v, n, json_flags[i]);
        return rc;
}

/* The value with each lone "\n" as "\r\n": what a pty shows of it. */
static int add_crlf(struct cands *c, const uint8_t *v, size_t n) {
        struct growbuf g = { 0 };
        if (!memchr(v, '\n', n))
                return 0;
        for (size_t i = 0; i < n; i++) {
                if (v[i] == '\n' && (i == 0 || v[i - 1] != '\r'))
                        gb_put(&g, "\r", 1);
                gb_put(&g, (const char *) &v[i], 1);
        }
        return gb_done(&g, c);
}

static bool is_space(uint8_t b) {
        return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\v' || b == '\f';
}

/* ---- the pattern table ---- */

static int by_first_then_longest(const struct mask *m, uint32_t a, uint32_t b) {
        const struct pattern *x = &m->pats[a], *y = &m->pats[b];
        if (x->p[0] != y->p[0])
                return x->p[0] < y->p[0] ? -1 : 1;
        return x->n > y->n ? -1 : x->n < y->n;
}

static int reindex(struct mask *m) {
        uint32_t *order = malloc(m->npats * sizeof(*order));
        if (!order)
                return -ENOMEM;
        /* Insertion sort: a few dozen patterns per value. */
        for (size_t i = 0; i < m->npats; i++) {
                size_t j = i;
                for (; j > 0 && by_first_then_longest(m, order[j - 1], (uint32_t) i) > 0; j--)
                        order[j] = order[j - 1];
                order[j] = (uint32_t) i;
        }
        memset(m->start, 0, sizeof(m->start));
        for (size_t i = 0; i < m->npats; i++)
                m->start[m->pats[i].p[0] + 1]++;
        for (size_t b = 1; b <= 256; b++)
                m->start[b] += m->start[b - 1];
        free(m->order);
        m->order = order;
        return 0;
}

/* Move the candidates into one guarded block and index them. */
static int commit(struct mask *m, struct cands *c) {
        size_t total = 0;
        for (size_t i = 0; i < c->n; i++)
                total += c->v[i].len;
        struct pattern *pats = realloc(m->pats, (m->npats + c->n) * sizeof(*pats));
        if (pats)
                m->pats = pats;
        void **blocks = realloc(m->blocks, (m->nblocks + 1) * sizeof(*blocks));
        if (blocks)
                m->blocks = blocks;
        uint8_t *block = pats && blocks ? sodium_malloc(total) : NULL;
        if (!block)
                return -ENOMEM;
        m->blocks[m->nblocks++] = block;
        for (size_t i = 0, off = 0; i < c->n; off += c->v[i].len, i++) {
                memcpy(block + off, c->v[i].p, c->v[i].len);
                m->pats[m->npats++] = (struct pattern){ block + off, c->v[i].len, c->wrap[i] };
                if (c->v[i].len > m->longest)
                        m->longest = c->v[i].len;
        }
        sodium_mprotect_readonly(block);
        return reindex(m);
}

int mask_new(struct mask **out) {
        *out = calloc(1, sizeof(**out));
        return *out ? 0 : -ENOMEM;
}

void mask_free(struct mask *m) {
        if (!m)
                return;
        for (size_t i = 0; i < m->nblocks; i++)
                sodium_free(m->blocks[i]); /* wipes */
        free(m->blocks);
        free(m->pats);
        free(m->order);
        free(m);
}

int mask_add_value(struct mask *m, const void *value, size_t n) {
        const uint8_t *v = value, *t = v;
        size_t tn = n;
        struct cands c = { .n = 0 };
        while (tn && is_space(t[0]))
                t++, tn--;
        while (tn && is_space(t[tn - 1]))
                tn--;
        if (tn < MASK_MIN_LEN)
                return 0;
        int rc = add_encodings(&c, v, n);
        if (rc == 0 && tn != n)
                rc = add_encodings(&c, t, tn);
        if (rc == 0)
                rc = add_crlf(&c, v, n);
        if (rc == 0)
                rc = commit(m, &c);
        size_t added = c.n;
        cands_wipe(&c);
        return rc < 0 ? rc : (int) added;
}

size_t mask_patterns(const struct mask *m) { return m->npats; }
size_t mask_longest(const struct mask *m) { return m->longest; }

/* ---- streams ---- */

enum decision { PLAIN, MATCH, WAIT };

static bool is_eol(uint8_t b) {
        return b == '\r' || b == '\n';
}

/* A line break at p: "\n", "\r\n", or "\r\r\n" (a pty's ONLCR on "\r\n").
 * Its length, or 0; *more when p ends inside one. */
static size_t line_break(const uint8_t *p, size_t avail, bool *more) {
        size_t k = 0;
        while (k < 2 && k < avail && p[k] == '\r')
                k++;
        if (k == avail) {
                *more = true;
                return 0;
        }
        return p[k] == '\n' ? k + 1 : 0;
}

/* How many bytes at p the pattern spans, 0 = no match; *more when p ends
 * inside what may still be one. A wrapped pattern may have one line break
 * between any two of its characters. */
static size_t match_at(const struct pattern *pat, const uint8_t *p, size_t avail, bool *more) {
        if (!pat->wrap) {
                if (pat->n > avail) {
                        *more = memcmp(pat->p, p, avail) == 0;
                        return 0;
                }
                return memcmp(pat->p, p, pat->n) == 0 ? pat->n : 0;
        }

        size_t i = 0, j = 0;
        bool broke = false;
        while (i < pat->n) {
                if (j == avail) {
                        *more = true;
                        return 0;
                }
                if (p[j] == pat->p[i]) {
                        i++;
                        j++;
                        broke = false;
                        continue;
                }
                size_t k = i > 0 && !broke ? line_break(p + j, avail - j, more) : 0;
                if (k == 0)
                        return 0;
                j += k;
                broke = true;
        }
        return j;
}

/* What starts at p (avail bytes known)? *full: the longest complete match, 0 = none.
 * WAIT when a longer pattern than *full could still match with more bytes. */
static enum decision decide(const struct mask *m, const uint8_t *p, size_t avail, size_t *full) {
        bool longer = false;
        *full = 0;
        for (uint32_t k = m->start[p[0]]; k < m->start[p[0] + 1]; k++) {
                bool more = false;
                size_t span = match_at(&m->pats[m->order[k]], p, avail, &more);
                longer = longer || more;
                if (span) {
                        *full = span; /* longest first: the first complete match is the longest */
                        break;
                }
        }
        return longer ? WAIT : *full ? MATCH : PLAIN;
}

/* The characters of a held suffix that can be a value's, line breaks not counted. */
static size_t held_chars(const uint8_t *p, size_t n) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
                k += !is_eol(p[i]);
        return k;
}

static int out_put(struct mask_out *o, const void *p, size_t n) {
        if (n == 0)
                return 0;
        if (o->len + n > o->cap) {
                size_t cap = (o->len + n) * 2 + 64;
                uint8_t *q = realloc(o->p, cap);
                if (!q)
                        return -ENOMEM;
                o->p = q;
                o->cap = cap;
        }
        memcpy(o->p + o->len, p, n);
        o->len += n;
        return 0;
}

void mask_out_free(struct mask_out *o) {
        if (o->p)
                sodium_memzero(o->p, o->cap);
        free(o->p);
        *o = (struct mask_out){ 0 };
}

int mask_stream_new(struct mask_stream **out, const struct mask *m) {
        *out = calloc(1, sizeof(**out));
        if (!*out)
                return -ENOMEM;
        (*out)->m = m;
        return 0;
}

void mask_stream_free(struct mask_stream *s) {
        if (!s)
                return;
        if (s->buf)
                sodium_memzero(s->buf, s->cap);
        free(s->buf);
        free(s);
}

size_t mask_stream_held(const struct mask_stream *s) {
        return s->len - s->emitted;
}

/* Show buf[from..to) minus what was shown already. */
static int emit_plain(struct mask_stream *s, struct mask_out *o, size_t from, size_t to) {
        if (from < s->emitted)
                from = s->emitted;
        if (to <= from)
                return 0;
        s->emitted = to;
        return out_put(o, s->buf + from, to - from);
}

static int emit_mask(struct mask_stream *s, struct mask_out *o, size_t end) {
        if (end <= s->emitted)
                return 0; /* shown already (cannot happen with patterns longer than a release) */
        s->emitted = end;
        return out_put(o, MASK_REPLACEMENT, sizeof(MASK_REPLACEMENT) - 1);
}

enum mode { FEED, PAUSE, FINISH };

static int process(struct mask_stream *s, struct mask_out *o, enum mode mode) {
        const struct mask *m = s->m;
        size_t i = 0, run = 0, full;
        int rc = 0;
        while (rc == 0 && i < s->len) {
                if (m->start[s->buf[i]] == m->start[s->buf[i] + 1]) {
                        i++; /* no pattern starts with this byte: part of a plain run */
                        continue;
                }
                enum decision d = decide(m, s->buf + i, s->len - i, &full);
                if (d == PLAIN) {
                        i++;
                        continue;
                }
                rc = emit_plain(s, o, run, i);
                if (rc < 0)
                        break;
                if (d == MATCH || (d == WAIT && full && mode != FEED)) {
                        rc = emit_mask(s, o, i + full);
                        run = i = i + full;
                        continue;
                }
                /* WAIT: the rest, buf[i..len), is the start of some pattern. */
                run = i;
                size_t held = held_chars(s->buf + i, s->len - i);
                if (mode == FINISH) {
                        rc = held > MASK_RELEASE_MAX ? emit_mask(s, o, s->len) : emit_plain(s, o, i, s->len);
                        run = i = s->len;
                } else if (mode == PAUSE && held <= MASK_RELEASE_MAX) {
                        rc = emit_plain(s, o, i, s->len); /* shown, still matched against */
                }
                break;
        }
        if (rc == 0 && run < i)
                rc = emit_plain(s, o, run, i);
        /* Everything before i is decided and shown: drop it. */
        size_t keep = s->len - i;
        if (i > 0) {
                memmove(s->buf, s->buf + i, keep);
                sodium_memzero(s->buf + keep, i);
        }
        s->len = keep;
        s->emitted = s->emitted > i ? s->emitted - i : 0;
        return rc;
}

int mask_stream_feed(struct mask_stream *s, struct mask_out *o, const void *p, size_t n) {
        if (n == 0)
                return 0;
        if (s->len + n > s->cap) {
                size_t cap = (s->len + n) * 2;
                uint8_t *q = malloc(cap);
                if (!q)
                        return -ENOMEM;
                if (s->buf) {
                        memcpy(q, s->buf, s->len);
                        sodium_memzero(s->buf, s->cap);
                        free(s->buf);
                }
                s->buf = q;
                s->cap = cap;
        }
        memcpy(s->buf + s->len, p, n);
        s->len += n;
        return process(s, o, FEED);
}

int mask_stream_pause(struct mask_stream *s, struct mask_out *o) {
        return process(s, o, PAUSE);
}

int mask_stream_finish(struct mask_stream *s, struct mask_out *o) {
        return process(s, o, FINISH);
}
