/* BPE training. The text is reduced to distinct chunks ("words") with counts; the loop
 * then keeps a count per adjacent pair and, for each pair, a list of the words that
 * may hold it, so each merge only rewrites the words that contain the merged pair and
 * only adjusts the counts of pairs next to it. A max-heap with lazy deletion gives the
 * most frequent pair (ties: lowest left id, then lowest right id). */
#include "core/util.h"
#include "data/tokenizer_impl.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longer chunks are counted in pieces of this size, so a megabyte of spaces does not
 * become one word that every merge has to walk. */
#define TRAIN_MAX_WORD 256

struct TokTrainer {
    BytesMap chunks; /* chunk bytes -> count */
    uint64_t bytes;
};

TokTrainer *tok_trainer_new(void) {
    TokTrainer *tr = ml_calloc(1, sizeof *tr);
    bm_init(&tr->chunks, 1 << 16);
    return tr;
}

void tok_trainer_free(TokTrainer *tr) {
    if (!tr) return;
    bm_free(&tr->chunks);
    free(tr);
}

void tok_trainer_add(TokTrainer *tr, const void *bytes, size_t len) {
    const uint8_t *s = bytes;
    tr->bytes += len;
    for (size_t i = 0; i < len;) {
        size_t e = tok_chunk_end(s, len, i);
        for (size_t p = i; p < e; p += TRAIN_MAX_WORD) {
            size_t n = e - p < TRAIN_MAX_WORD ? e - p : TRAIN_MAX_WORD;
            if (n < 2) continue; /* a single byte has no pair to learn from */
            int created;
            (*bm_put(&tr->chunks, s + p, n, bm_hash(s + p, n), &created))++;
        }
        i = e;
    }
}

typedef struct {
    int64_t cnt;
    uint64_t key;
} HeapEnt;

typedef struct {
    /* words: symbols in sym[w_off[w] .. + w_len[w]), each occurring w_cnt[w] times */
    int32_t *sym;
    uint64_t *w_off;
    int32_t *w_len, *w_stamp;
    int64_t *w_cnt;
    int64_t n_words;
    /* pairs: key -> index; count, head of the word list, key, last stamp pushed */
    U64Map pair_idx;
    int64_t *p_cnt;
    uint64_t *p_key;
    uint32_t *p_head, *p_stamp;
    size_t n_pairs, p_cap;
    /* word-list nodes (a word may appear more than once, and stay after losing the pair) */
    uint32_t *nd_word, *nd_next;
    size_t n_nodes, nd_cap;
    HeapEnt *heap;
    size_t n_heap, heap_cap;
    uint32_t *touched; /* pairs whose count rose in this step */
    size_t n_touched, touched_cap;
    uint32_t it;       /* step counter, for stamps */
    /* tokens so far */
    uint8_t *data;
    size_t data_len, data_cap;
    uint64_t *off;
    uint8_t *special;
    int n_tok;
    BytesMap tok_by_bytes;
    int32_t *merges;
    int n_merges;
    U64Map merged; /* pair key -> rank */
} Train;

#define NONE UINT32_MAX

static int heap_better(const HeapEnt *x, const HeapEnt *y) {
    return x->cnt > y->cnt || (x->cnt == y->cnt && x->key < y->key);
}

static void heap_push(Train *st, int64_t cnt, uint64_t key) {
    if (st->n_heap == st->heap_cap) {
        st->heap_cap = st->heap_cap ? 2 * st->heap_cap : 1024;
        st->heap = ml_realloc(st->heap, st->heap_cap * sizeof *st->heap);
    }
    HeapEnt v = {cnt, key};
    size_t i = st->n_heap++;
    while (i > 0 && heap_better(&v, &st->heap[(i - 1) / 2])) st->heap[i] = st->heap[(i - 1) / 2], i = (i - 1) / 2;
    st->heap[i] = v;
}

static HeapEnt heap_pop(Train *st) {
    HeapEnt top = st->heap[0], v = st->heap[--st->n_heap];
    size_t i = 0, n = st->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_better(&st->heap[c + 1], &st->heap[c])) c++;
        if (!heap_better(&st->heap[c], &v)) break;
        st->heap[i] = st->heap[c], i = c;
    }
    if (n) st->heap[i] = v;
    return top;
}

/* Entries are not removed when a count drops; a popped entry is checked against the live
 * count and re-queued at its true count. Rises always push, so the true best is found. */
static int pop_best(Train *st, uint64_t *key, uint32_t *idx) {
    while (st->n_heap) {
        HeapEnt e = heap_pop(st);
        uint32_t p = (uint32_t)*u64_find(&st->pair_idx, e.key);
        int64_t cur = st->p_cnt[p];
        if (cur == e.cnt && cur > 0) {
            *key = e.key, *idx = p;
            return 1;
        }
        if (cur > 0 && cur < e.cnt) heap_push(st, cur, e.key);
    }
    return 0;
}

static void grow_u32(uint32_t **a, size_t cap) { *a = ml_realloc(*a, cap * sizeof **a); }

static uint32_t pair_index(Train *st, uint32_t x, uint32_t y) {
    int created;
    int32_t *v = u64_put(&st->pair_idx, pair_key(x, y), &created);
    if (!created) return (uint32_t)*v;
    if (st->n_pairs == st->p_cap) {
        st->p_cap = st->p_cap ? 2 * st->p_cap : 1 << 16;
        st->p_cnt = ml_realloc(st->p_cnt, st->p_cap * sizeof *st->p_cnt);
        st->p_key = ml_realloc(st->p_key, st->p_cap * sizeof *st->p_key);
        grow_u32(&st->p_head, st->p_cap);
        grow_u32(&st->p_stamp, st->p_cap);
    }
    if (st->n_pairs >= INT32_MAX) {
        fprintf(stderr, "moelab: too many distinct pairs for the BPE trainer\n");
        exit(2);
    }
    uint32_t p = (uint32_t)st->n_pairs++;
    *v = (int32_t)p;
    st->p_cnt[p] = 0;
    st->p_key[p] = pair_key(x, y);
    st->p_head[p] = NONE;
    st->p_stamp[p] = NONE;
    return p;
}

/* Adds delta occurrences of (x, y); on a rise, notes that word w holds the pair. */
static void add_pair(Train *st, uint32_t x, uint32_t y, int64_t delta, uint32_t w) {
    uint32_t p = pair_index(st, x, y);
    st->p_cnt[p] += delta;
    if (delta <= 0) return;
    if (st->p_head[p] == NONE || st->nd_word[st->p_head[p]] != w) {
        if (st->n_nodes == st->nd_cap) {
            st->nd_cap = st->nd_cap ? 2 * st->nd_cap : 1 << 20;
            grow_u32(&st->nd_word, st->nd_cap);
            grow_u32(&st->nd_next, st->nd_cap);
        }
        if (st->n_nodes >= NONE - 1) {
            fprintf(stderr, "moelab: too much text for the BPE trainer (use less, e.g. --max-bytes)\n");
            exit(2);
        }
        st->nd_word[st->n_nodes] = w;
        st->nd_next[st->n_nodes] = st->p_head[p];
        st->p_head[p] = (uint32_t)st->n_nodes++;
    }
    if (st->p_stamp[p] != st->it) {
        st->p_stamp[p] = st->it;
        ml_reserve((void **)&st->touched, &st->touched_cap, (st->n_touched + 1) * sizeof *st->touched);
        st->touched[st->n_touched++] = p;
    }
}

/* Replaces each (a, b) in word w by c, left to right, moving the neighbours' counts. */
static void merge_word(Train *st, uint32_t w, int32_t a, int32_t b, int32_t c) {
    int32_t *s = st->sym + st->w_off[w];
    int32_t n = st->w_len[w], out = 0;
    int64_t k = st->w_cnt[w];
    for (int32_t i = 0; i < n;) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
            add_pair(st, (uint32_t)a, (uint32_t)b, -k, w);
            if (out > 0) {
                add_pair(st, (uint32_t)s[out - 1], (uint32_t)a, -k, w);
                add_pair(st, (uint32_t)s[out - 1], (uint32_t)c, k, w);
            }
            if (i + 2 < n) {
                add_pair(st, (uint32_t)b, (uint32_t)s[i + 2], -k, w);
                add_pair(st, (uint32_t)c, (uint32_t)s[i + 2], k, w);
            }
            s[out++] = c;
            i += 2;
        } else {
            s[out++] = s[i++];
        }
    }
    st->w_len[w] = out;
}

static void push_touched(Train *st) {
    for (size_t i = 0; i < st->n_touched; i++) {
        uint32_t p = st->touched[i];
        if (st->p_cnt[p] > 0) heap_push(st, st->p_cnt[p], st->p_key[p]);
    }
    st->n_touched = 0;
}

static void add_token(Train *st, const uint8_t *s, size_t n, int special) {
    ml_reserve((void **)&st->data, &st->data_cap, st->data_len + n);
    memcpy(st->data + st->data_len, s, n);
    st->data_len += n;
    st->off = ml_realloc(st->off, sizeof(uint64_t) * (st->n_tok + 2));
    st->special = ml_realloc(st->special, st->n_tok + 1);
    st->special[st->n_tok] = (uint8_t)special;
    st->off[st->n_tok + 1] = st->data_len;
    if (!special) {
        int created;
        *bm_put(&st->tok_by_bytes, s, n, bm_hash(s, n), &created) = (uint64_t)st->n_tok;
    }
    st->n_tok++;
}

/* The token for bytes(a) + bytes(b): an existing one with those bytes (two merges may
 * spell the same string) or a new id. */
static int32_t merged_token(Train *st, int32_t a, int32_t b) {
    size_t la = st->off[a + 1] - st->off[a], lb = st->off[b + 1] - st->off[b];
    uint8_t *j = ml_malloc(la + lb);
    memcpy(j, st->data + st->off[a], la);
    memcpy(j + la, st->data + st->off[b], lb);
    uint64_t *v = bm_find(&st->tok_by_bytes, j, la + lb, bm_hash(j, la + lb));
    int32_t c = v ? (int32_t)*v : st->n_tok;
    if (!v) add_token(st, j, la + lb, 0);
    free(j);
    return c;
}

static void init_words(Train *st, TokTrainer *tr) {
    const BytesMap *m = &tr->chunks;
    size_t total = 0;
    for (size_t i = 0; i < m->cap; i++) total += m->slots[i].h ? m->slots[i].len : 0;
    st->sym = ml_malloc(sizeof(int32_t) * (total + 1));
    st->w_off = ml_malloc(sizeof(uint64_t) * (m->n + 1));
    st->w_len = ml_malloc(sizeof(int32_t) * (m->n + 1));
    st->w_cnt = ml_malloc(sizeof(int64_t) * (m->n + 1));
    st->w_stamp = ml_malloc(sizeof(int32_t) * (m->n + 1));
    uint64_t pos = 0;
    for (size_t i = 0; i < m->cap; i++) {
        const BmSlot *sl = &m->slots[i];
        if (!sl->h) continue;
        int64_t w = st->n_words++;
        const uint8_t *s = bm_key(m, sl);
        for (uint32_t k = 0; k < sl->len; k++) st->sym[pos + k] = s[k];
        st->w_off[w] = pos;
        st->w_len[w] = (int32_t)sl->len;
        st->w_cnt[w] = (int64_t)sl->val;
        st->w_stamp[w] = -1;
        pos += sl->len;
    }
    u64_init(&st->pair_idx, 1 << 16);
    for (int64_t w = 0; w < st->n_words; w++) {
        const int32_t *s = st->sym + st->w_off[w];
        for (int32_t i = 0; i + 1 < st->w_len[w]; i++)
            add_pair(st, (uint32_t)s[i], (uint32_t)s[i + 1], st->w_cnt[w], (uint32_t)w);
    }
    push_touched(st);
}

static void train_free(Train *st) {
    free(st->sym), free(st->w_off), free(st->w_len), free(st->w_cnt), free(st->w_stamp);
    u64_free(&st->pair_idx);
    free(st->p_cnt), free(st->p_key), free(st->p_head), free(st->p_stamp);
    free(st->nd_word), free(st->nd_next), free(st->heap), free(st->touched);
    free(st->data), free(st->off), free(st->special), free(st->merges);
    bm_free(&st->tok_by_bytes);
    u64_free(&st->merged);
}

/* One step: merge the best pair everywhere. A pair merged before can come back when two
 * merges spell the same token; it is then applied again without a new merge rule. */
static void merge_step(Train *st, uint64_t key, uint32_t p) {
    int32_t a = (int32_t)(key >> 32), b = (int32_t)(uint32_t)key, c;
    int created;
    int32_t *rank = u64_put(&st->merged, key, &created);
    if (created) {
        c = merged_token(st, a, b);
        *rank = st->n_merges;
        st->merges = ml_realloc(st->merges, sizeof(int32_t) * 3 * (st->n_merges + 1));
        st->merges[3 * st->n_merges] = a, st->merges[3 * st->n_merges + 1] = b, st->merges[3 * st->n_merges + 2] = c;
        st->n_merges++;
    } else {
        c = st->merges[3 * *rank + 2];
    }
    st->it++;
    for (uint32_t nd = st->p_head[p]; nd != NONE; nd = st->nd_next[nd]) {
        uint32_t w = st->nd_word[nd];
        if (st->w_stamp[w] == (int32_t)st->it) continue;
        st->w_stamp[w] = (int32_t)st->it;
        merge_word(st, w, a, b, c);
    }
    st->p_head[p] = NONE; /* the pair is gone from every word */
    push_touched(st);
}

int tok_trainer_finish(TokTrainer *tr, int vocab_size, int verbose, Tokenizer **out) {
    *out = NULL;
    if (vocab_size < TOK_MIN_VOCAB || vocab_size > TOK_MAX_VOCAB)
        return ml_fail("vocab size %d must be in [%d, %d] (256 bytes + end-of-text + at least one merge)", vocab_size,
                       TOK_MIN_VOCAB, TOK_MAX_VOCAB);
    double t0 = ml_now();
    Train st;
    memset(&st, 0, sizeof st);
    bm_init(&st.tok_by_bytes, 2 * (size_t)vocab_size);
    u64_init(&st.merged, 2 * (size_t)vocab_size);
    st.off = ml_calloc(1, sizeof(uint64_t));
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        add_token(&st, &c, 1, 0);
    }
    add_token(&st, (const uint8_t *)TOK_EOT_TEXT, strlen(TOK_EOT_TEXT), 1);
    init_words(&st, tr);
    if (verbose)
        fprintf(stderr, "bpe: %.1f MB of text, %lld distinct chunks, %zu distinct pairs (%.1fs)\n", tr->bytes / 1e6,
                (long long)st.n_words, st.n_pairs, ml_now() - t0);
    bm_free(&tr->chunks); /* the words hold everything now */
    bm_init(&tr->chunks, 16);
    tr->bytes = 0;
    int next_report = 257 + (vocab_size - 257) / 10;
    uint64_t key;
    uint32_t p;
    while (st.n_tok < vocab_size && pop_best(&st, &key, &p)) {
        int64_t cnt = st.p_cnt[p];
        merge_step(&st, key, p);
        if (verbose && st.n_tok >= next_report) {
            fprintf(stderr, "bpe: vocab %d/%d, last pair count %lld (%.1fs)\n", st.n_tok, vocab_size, (long long)cnt,
                    ml_now() - t0);
            next_report += (vocab_size - 257) / 10 + 1;
        }
    }
    int rc = tok_build(out, st.n_tok, st.data, st.off, st.special, 256, st.merges, st.n_merges);
    train_free(&st);
    return rc;
}

int tok_train(Tokenizer **out, const void *const *bufs, const size_t *lens, int n_bufs, int vocab_size) {
    TokTrainer *tr = tok_trainer_new();
    for (int i = 0; i < n_bufs; i++) tok_trainer_add(tr, bufs[i], lens[i]);
    int rc = tok_trainer_finish(tr, vocab_size, 0, out);
    tok_trainer_free(tr);
    return rc;
}
