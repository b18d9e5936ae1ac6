/* Byte-level BPE: pre-tokenisation, encoding (cached per chunk), decoding, and the
 * hash maps the trainer and the file reader share. */
#include "data/tokenizer_impl.h"
#include "core/util.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---------------- hash maps ---------------- */

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* Eight bytes per step: chunks are short, so this is dominated by the tail. */
uint64_t bm_hash(const uint8_t *s, size_t n) {
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (n * 0x100000001b3ULL);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, s + i, 8);
        h = (h ^ v) * 0x9e3779b97f4a7c15ULL;
        h ^= h >> 29;
    }
    uint64_t v = 0;
    for (size_t k = 0; i < n; i++, k++) v |= (uint64_t)s[i] << (8 * k);
    h = mix64(h ^ v);
    return h ? h : 1;
}

void bm_init(BytesMap *m, size_t cap) {
    memset(m, 0, sizeof *m);
    m->cap = 16;
    while (m->cap < cap) m->cap <<= 1;
    m->slots = ml_calloc(m->cap, sizeof *m->slots);
}

void bm_free(BytesMap *m) {
    free(m->slots);
    free(m->arena);
    memset(m, 0, sizeof *m);
}

void bm_clear(BytesMap *m) {
    memset(m->slots, 0, m->cap * sizeof *m->slots);
    m->n = 0;
    m->arena_len = 0;
}

uint64_t *bm_find(const BytesMap *m, const uint8_t *s, size_t n, uint64_t h) {
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        BmSlot *sl = &m->slots[i];
        if (sl->h == 0) return NULL;
        if (sl->h == h && sl->len == n && memcmp(m->arena + sl->off, s, n) == 0) return &sl->val;
    }
}

static void bm_grow(BytesMap *m) {
    BmSlot *old = m->slots;
    size_t old_cap = m->cap;
    m->cap *= 2;
    m->slots = ml_calloc(m->cap, sizeof *m->slots);
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].h == 0) continue;
        size_t j = old[i].h & (m->cap - 1);
        while (m->slots[j].h) j = (j + 1) & (m->cap - 1);
        m->slots[j] = old[i];
    }
    free(old);
}

uint64_t *bm_put(BytesMap *m, const uint8_t *s, size_t n, uint64_t h, int *created) {
    *created = 0;
    uint64_t *v = bm_find(m, s, n, h);
    if (v) return v;
    if ((m->n + 1) * 2 > m->cap) bm_grow(m);
    size_t mask = m->cap - 1, i = h & mask;
    while (m->slots[i].h) i = (i + 1) & mask;
    ml_reserve((void **)&m->arena, &m->arena_cap, m->arena_len + n + 1);
    memcpy(m->arena + m->arena_len, s, n);
    m->slots[i] = (BmSlot){.h = h, .off = m->arena_len, .val = 0, .len = (uint32_t)n};
    m->arena_len += n;
    m->n++;
    *created = 1;
    return &m->slots[i].val;
}

void u64_init(U64Map *m, size_t cap) {
    m->cap = 16;
    while (m->cap < cap) m->cap <<= 1;
    m->n = 0;
    m->keys = ml_malloc(m->cap * sizeof *m->keys);
    memset(m->keys, 0xff, m->cap * sizeof *m->keys);
    m->vals = ml_malloc(m->cap * sizeof *m->vals);
}

void u64_free(U64Map *m) {
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

int32_t *u64_find(const U64Map *m, uint64_t key) {
    size_t mask = m->cap - 1;
    for (size_t i = mix64(key) & mask;; i = (i + 1) & mask) {
        if (m->keys[i] == key) return &m->vals[i];
        if (m->keys[i] == UINT64_MAX) return NULL;
    }
}

static void u64_grow(U64Map *m) {
    U64Map big;
    u64_init(&big, m->cap * 2);
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i] == UINT64_MAX) continue;
        size_t j = mix64(m->keys[i]) & (big.cap - 1);
        while (big.keys[j] != UINT64_MAX) j = (j + 1) & (big.cap - 1);
        big.keys[j] = m->keys[i];
        big.vals[j] = m->vals[i];
    }
    big.n = m->n;
    u64_free(m);
    *m = big;
}

int32_t *u64_put(U64Map *m, uint64_t key, int *created) {
    int32_t *v = u64_find(m, key);
    *created = 0;
    if (v) return v;
    if ((m->n + 1) * 2 > m->cap) u64_grow(m);
    size_t mask = m->cap - 1, i = mix64(key) & mask;
    while (m->keys[i] != UINT64_MAX) i = (i + 1) & mask;
    m->keys[i] = key;
    m->vals[i] = -1;
    m->n++;
    *created = 1;
    return &m->vals[i];
}

/* ---------------- byte <-> unicode (GPT-2) ---------------- */

/* Printable Latin-1 bytes keep their code point; the other 68 bytes (controls, space,
 * DEL, NBSP, soft hyphen) take U+0100.. in byte order, so every token is visible text. */
static int byte_is_printable(int b) { return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae; }

uint32_t tok_byte_to_cp(uint8_t b) {
    if (byte_is_printable(b)) return b;
    uint32_t k = 0;
    for (int c = 0; c < b; c++) k += !byte_is_printable(c);
    return 256 + k;
}

int tok_cp_to_byte(uint32_t cp) {
    if (cp < 256) return byte_is_printable((int)cp) ? (int)cp : -1;
    uint32_t k = 256;
    for (int c = 0; c < 256; c++)
        if (!byte_is_printable(c) && k++ == cp) return c;
    return -1;
}

/* ---------------- pre-tokenisation ---------------- */

enum { L, D, S, O }; /* letter, digit, whitespace, other */

/* Bytes >= 0x80 count as letters so a UTF-8 word stays one chunk. A table, because
 * pre-tokenisation looks at every byte of the text. */
static const uint8_t BYTE_CLASS[256] = {
    O, O, O, O, O, O, O, O, O, S, S, S, S, S, O, O, /* \t \n \v \f \r */
    O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O,
    S, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, /* space */
    D, D, D, D, D, D, D, D, D, D, O, O, O, O, O, O, /* 0-9 */
    O, L, L, L, L, L, L, L, L, L, L, L, L, L, L, L, /* A-Z */
    L, L, L, L, L, L, L, L, L, L, L, O, O, O, O, O,
    O, L, L, L, L, L, L, L, L, L, L, L, L, L, L, L, /* a-z */
    L, L, L, L, L, L, L, L, L, L, L, O, O, O, O, O,
    L, L, L, L, L, L, L, L, L, L, L, L, L, L, L, L, /* 0x80-0xff */
    L, L, L, L, L, L, L, L, L, L, L, L, L, L, L, L,
    L, L, L, L, L, L, L, L, L, L, L, L, L, L, L, L,
    L, L, L, L, L, L, L, L, L, L, L, L, L, L, L, L,
    L, L, L, L, L, L, L, L, L, L, L, L, L, L, L, L,
    L, L, L, L, L, L, L, L, L, L, L, L, L, L, L, L,
    L, L, L, L, L, L, L, L, L, L, L, L, L, L, L, L,
    L, L, L, L, L, L, L, L, L, L, L, L, L, L, L, L,
};

/* GPT-2's pattern 's|'t|'re|'ve|'m|'ll|'d| ?L+| ?N+| ?[^\sLN]+|\s+(?!\S)|\s+ on bytes. */
size_t tok_chunk_end(const uint8_t *s, size_t len, size_t i) {
    uint8_t c = s[i];
    if (c == '\'' && i + 1 < len) {
        uint8_t d = s[i + 1];
        if (d == 's' || d == 't' || d == 'm' || d == 'd') return i + 2;
        if (i + 2 < len && ((d == 'r' && s[i + 2] == 'e') || (d == 'v' && s[i + 2] == 'e') || (d == 'l' && s[i + 2] == 'l')))
            return i + 3;
    }
    size_t j = i;
    if (c == ' ' && i + 1 < len && BYTE_CLASS[s[i + 1]] != S) j = i + 1;
    int k = BYTE_CLASS[s[j]];
    size_t e = j + 1;
    if (k != S) {
        while (e < len && BYTE_CLASS[s[e]] == k) e++;
        return e;
    }
    while (e < len && BYTE_CLASS[s[e]] == S) e++;
    /* A run followed by text leaves its last byte to start the next chunk (the lookahead). */
    if (e < len && e - i >= 2) return e - 1;
    return e;
}

/* ---------------- construction ---------------- */

/* Every byte has a token; each merge joins two byte-level tokens into the token that is
 * their concatenation, and no pair is merged twice. Also fills merge_rank. */
static int check_merges(Tokenizer *t) {
    const uint64_t *off = t->tok_off;
    for (int b = 0; b < 256; b++)
        if (t->byte_id[b] < 0) return ml_fail("byte 0x%02x has no token", b);
    for (int r = 0; r < t->n_merges; r++) {
        const int32_t *m = t->merges + 3 * r;
        for (int k = 0; k < 3; k++)
            if (m[k] < 0 || m[k] >= t->vocab_size || t->special[m[k]])
                return ml_fail("merge %d uses id %d, which is not a byte-level token", r, m[k]);
        uint64_t la = off[m[0] + 1] - off[m[0]], lb = off[m[1] + 1] - off[m[1]];
        const uint8_t *c = t->tok_data + off[m[2]];
        if (off[m[2] + 1] - off[m[2]] != la + lb || memcmp(c, t->tok_data + off[m[0]], la) != 0 ||
            memcmp(c + la, t->tok_data + off[m[1]], lb) != 0)
            return ml_fail("merge %d: token %d is not tokens %d + %d joined", r, m[2], m[0], m[1]);
        int created;
        int32_t *v = u64_put(&t->merge_rank, pair_key((uint32_t)m[0], (uint32_t)m[1]), &created);
        if (!created) return ml_fail("merge %d repeats merge %d", r, *v);
        *v = r;
    }
    return 0;
}

int tok_build(Tokenizer **out, int V, const uint8_t *tok_data, const uint64_t *tok_off, const uint8_t *special,
              int eot_id, const int32_t *merges, int n_merges) {
    *out = NULL;
    if (V < 257 || V > TOK_MAX_VOCAB) return ml_fail("vocab size %d is outside [257, %d]", V, TOK_MAX_VOCAB);
    if (eot_id < 0 || eot_id >= V || !special[eot_id]) return ml_fail("no end-of-text token");
    Tokenizer *t = ml_calloc(1, sizeof *t);
    t->vocab_size = V;
    t->eot_id = eot_id;
    t->tok_off = ml_malloc(sizeof(uint64_t) * (V + 1));
    memcpy(t->tok_off, tok_off, sizeof(uint64_t) * (V + 1));
    t->tok_data = ml_malloc(tok_off[V] + 1);
    memcpy(t->tok_data, tok_data, tok_off[V]);
    t->special = ml_malloc(V);
    memcpy(t->special, special, V);
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    for (int id = 0; id < V; id++)
        if (!special[id] && tok_off[id + 1] - tok_off[id] == 1) t->byte_id[tok_data[tok_off[id]]] = id;
    t->n_merges = n_merges;
    t->merges = ml_malloc(sizeof(int32_t) * 3 * (size_t)(n_merges ? n_merges : 1));
    if (n_merges) memcpy(t->merges, merges, sizeof(int32_t) * 3 * n_merges);
    u64_init(&t->merge_rank, 2 * (size_t)n_merges + 16);
    bm_init(&t->cache, 1 << 12);
    if (check_merges(t) != 0) {
        tok_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

void tok_free(Tokenizer *t) {
    if (!t) return;
    free(t->tok_data);
    free(t->tok_off);
    free(t->special);
    free(t->merges);
    u64_free(&t->merge_rank);
    bm_free(&t->cache);
    free(t->cache_ids);
    free(t->scr_a);
    free(t->scr_b);
    free(t->scr_c);
    free(t->scr_heap);
    free(t);
}

/* ---------------- encoding ---------------- */

void tok_ids_push(TokIds *v, uint32_t id) {
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 256;
        v->ids = ml_realloc(v->ids, v->cap * sizeof *v->ids);
    }
    v->ids[v->n++] = id;
}

static inline int32_t rank_of(const Tokenizer *t, int32_t a, int32_t b) {
    const int32_t *r = u64_find(&t->merge_rank, pair_key((uint32_t)a, (uint32_t)b));
    return r ? *r : INT32_MAX;
}

static void scratch(Tokenizer *t, size_t n) {
    if (n <= t->scr_cap) return;
    size_t c = t->scr_cap ? t->scr_cap : 64;
    while (c < n) c *= 2;
    t->scr_a = ml_realloc(t->scr_a, c * sizeof *t->scr_a);
    t->scr_b = ml_realloc(t->scr_b, c * sizeof *t->scr_b);
    t->scr_c = ml_realloc(t->scr_c, c * sizeof *t->scr_c);
    t->scr_heap = ml_realloc(t->scr_heap, 4 * c * sizeof *t->scr_heap);
    t->scr_cap = c;
}

/* Short chunks: symbols and pair ranks in arrays, one scan per merge. */
static void bpe_scan(Tokenizer *t, const uint8_t *s, size_t n, TokIds *out) {
    int32_t *sym = t->scr_a, *rk = t->scr_b;
    size_t m = n;
    for (size_t i = 0; i < n; i++) sym[i] = t->byte_id[s[i]];
    for (size_t i = 0; i + 1 < m; i++) rk[i] = rank_of(t, sym[i], sym[i + 1]);
    for (;;) {
        int32_t best = INT32_MAX;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < m; i++)
            if (rk[i] < best) best = rk[i], bi = i;
        if (best == INT32_MAX) break;
        sym[bi] = t->merges[3 * best + 2];
        memmove(sym + bi + 1, sym + bi + 2, (m - bi - 2) * sizeof *sym);
        if (bi + 3 <= m) memmove(rk + bi + 1, rk + bi + 2, (m - bi - 3) * sizeof *rk);
        m--;
        if (bi + 1 < m) rk[bi] = rank_of(t, sym[bi], sym[bi + 1]);
        if (bi > 0) rk[bi - 1] = rank_of(t, sym[bi - 1], sym[bi]);
    }
    for (size_t i = 0; i < m; i++) tok_ids_push(out, (uint32_t)sym[i]);
}

/* Min-heap of (rank << 32 | position): lowest rank first, then leftmost. */
static void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0 && h[(i - 1) / 2] > v) h[i] = h[(i - 1) / 2], i = (i - 1) / 2;
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], v = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1] < h[c]) c++;
        if (h[c] >= v) break;
        h[i] = h[c], i = c;
    }
    h[i] = v;
    return top;
}

static void heap_pair(const Tokenizer *t, uint64_t *h, size_t *hn, const int32_t *sym, int32_t p, int32_t q) {
    int32_t r = rank_of(t, sym[p], sym[q]);
    if (r != INT32_MAX) heap_push(h, hn, (uint64_t)r << 32 | (uint32_t)p);
}

/* Long chunks (e.g. a run of spaces): a linked list of symbols and a heap of pairs, so a
 * megabyte of one byte is not quadratic. Same order of merges as bpe_scan. */
static void bpe_heap(Tokenizer *t, const uint8_t *s, size_t n, TokIds *out) {
    int32_t *sym = t->scr_a, *nxt = t->scr_b, *prv = t->scr_c;
    uint64_t *h = t->scr_heap;
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        sym[i] = t->byte_id[s[i]];
        nxt[i] = i + 1 < n ? (int32_t)i + 1 : -1;
        prv[i] = (int32_t)i - 1;
    }
    for (size_t i = 0; i + 1 < n; i++) heap_pair(t, h, &hn, sym, (int32_t)i, (int32_t)i + 1);
    while (hn) {
        uint64_t top = heap_pop(h, &hn);
        int32_t r = (int32_t)(top >> 32), p = (int32_t)(uint32_t)top;
        int32_t q = nxt[p];
        /* Stale entries: p was absorbed (sym -1) or its pair changed since the push. */
        if (sym[p] < 0 || q < 0 || rank_of(t, sym[p], sym[q]) != r) continue;
        sym[p] = t->merges[3 * r + 2];
        sym[q] = -1;
        nxt[p] = nxt[q];
        if (nxt[q] >= 0) prv[nxt[q]] = p;
        if (prv[p] >= 0) heap_pair(t, h, &hn, sym, prv[p], p);
        if (nxt[p] >= 0) heap_pair(t, h, &hn, sym, p, nxt[p]);
    }
    for (int32_t i = 0; i >= 0; i = nxt[i]) tok_ids_push(out, (uint32_t)sym[i]);
}

void tok_bpe_chunk(Tokenizer *t, const uint8_t *s, size_t n, TokIds *out, int method) {
    if (n == 0) return;
    scratch(t, n);
    if (method == 1 || (method == 0 && n <= 64)) bpe_scan(t, s, n, out);
    else bpe_heap(t, s, n, out);
}

static void encode_chunk(Tokenizer *t, const uint8_t *s, size_t n, TokIds *out) {
    if (n == 1) {
        tok_ids_push(out, (uint32_t)t->byte_id[s[0]]);
        return;
    }
    if (n > TOK_CACHE_MAX_CHUNK) {
        tok_bpe_chunk(t, s, n, out, 0);
        return;
    }
    uint64_t h = bm_hash(s, n), *v = bm_find(&t->cache, s, n, h);
    if (v) {
        size_t off = *v >> 16, cnt = *v & 0xffff;
        if (out->n + cnt > out->cap) {
            while (out->n + cnt > out->cap) out->cap = out->cap ? 2 * out->cap : 256;
            out->ids = ml_realloc(out->ids, out->cap * sizeof *out->ids);
        }
        memcpy(out->ids + out->n, t->cache_ids + off, cnt * sizeof *out->ids);
        out->n += cnt;
        return;
    }
    size_t start = out->n;
    tok_bpe_chunk(t, s, n, out, 0);
    size_t cnt = out->n - start;
    if (t->cache.n >= TOK_CACHE_MAX_ENTRIES) { /* bounded memory: start over */
        bm_clear(&t->cache);
        t->cache_n = 0;
    }
    if (t->cache_n + cnt > t->cache_cap) {
        t->cache_cap = t->cache_cap ? 2 * t->cache_cap : 4096;
        t->cache_ids = ml_realloc(t->cache_ids, t->cache_cap * sizeof *t->cache_ids);
    }
    memcpy(t->cache_ids + t->cache_n, out->ids + start, cnt * sizeof *out->ids);
    int created;
    *bm_put(&t->cache, s, n, h, &created) = (uint64_t)t->cache_n << 16 | cnt;
    t->cache_n += cnt;
}

void tok_encode(Tokenizer *t, const void *bytes, size_t len, TokIds *out) {
    const uint8_t *s = bytes;
    for (size_t i = 0; i < len;) {
        size_t e = tok_chunk_end(s, len, i);
        encode_chunk(t, s + i, e - i, out);
        i = e;
    }
}

/* ---------------- decoding and queries ---------------- */

int tok_decode(const Tokenizer *t, const uint32_t *ids, size_t n, int keep_special, TokBytes *out) {
    size_t add = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= (uint32_t)t->vocab_size)
            return ml_fail("token id %u is out of range (vocab size %d)", ids[i], t->vocab_size);
        if (keep_special || !t->special[ids[i]]) add += t->tok_off[ids[i] + 1] - t->tok_off[ids[i]];
    }
    ml_reserve((void **)&out->data, &out->cap, out->len + add + 1);
    for (size_t i = 0; i < n; i++) {
        if (!keep_special && t->special[ids[i]]) continue;
        size_t l = t->tok_off[ids[i] + 1] - t->tok_off[ids[i]];
        memcpy(out->data + out->len, t->tok_data + t->tok_off[ids[i]], l);
        out->len += l;
    }
    return 0;
}

int tok_vocab_size(const Tokenizer *t) { return t->vocab_size; }
int tok_eot_id(const Tokenizer *t) { return t->eot_id; }
int tok_n_merges(const Tokenizer *t) { return t->n_merges; }
int tok_byte_id(const Tokenizer *t, uint8_t byte) { return t->byte_id[byte]; }

int tok_is_special(const Tokenizer *t, int id) { return id >= 0 && id < t->vocab_size && t->special[id]; }

int tok_token_bytes(const Tokenizer *t, int id) {
    if (id < 0 || id >= t->vocab_size || t->special[id]) return 0;
    return (int)(t->tok_off[id + 1] - t->tok_off[id]);
}

const uint8_t *tok_token(const Tokenizer *t, int id, size_t *len) {
    if (id < 0 || id >= t->vocab_size) return NULL;
    *len = t->tok_off[id + 1] - t->tok_off[id];
    return t->tok_data + t->tok_off[id];
}
