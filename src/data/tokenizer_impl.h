/* Internals shared by tokenizer.c (encode/decode), tokenizer_json.c (file format) and
 * bpe_train.c (training). Not part of the public API; tests may use it. */
#ifndef MOELAB_TOKENIZER_IMPL_H
#define MOELAB_TOKENIZER_IMPL_H
#include "data/tokenizer.h"
#include <stddef.h>
#include <stdint.h>

#define TOK_MAX_VOCAB (1 << 24)   /* ids must fit shards and a merge key half */
#define TOK_CACHE_MAX_CHUNK 256   /* longer chunks are encoded without the cache */
#define TOK_CACHE_MAX_ENTRIES (1u << 18) /* per Tokenizer: about 20 MB at most */

/* Open-addressing map from a byte string to a u64 value; keys are copied into an arena.
 * Slot h == 0 means empty (real hashes are forced non-zero). */
typedef struct {
    uint64_t h, off, val;
    uint32_t len;
} BmSlot;
typedef struct {
    BmSlot *slots;
    size_t cap, n; /* cap is a power of two */
    uint8_t *arena;
    size_t arena_len, arena_cap;
} BytesMap;
uint64_t bm_hash(const uint8_t *s, size_t n);
void bm_init(BytesMap *m, size_t cap);
void bm_free(BytesMap *m);
void bm_clear(BytesMap *m);
/* Pointer to the value, or NULL; valid until the next bm_put. */
uint64_t *bm_find(const BytesMap *m, const uint8_t *s, size_t n, uint64_t h);
/* Finds or inserts (value 0, *created = 1). */
uint64_t *bm_put(BytesMap *m, const uint8_t *s, size_t n, uint64_t h, int *created);
static inline const uint8_t *bm_key(const BytesMap *m, const BmSlot *s) { return m->arena + s->off; }

/* Open-addressing map from a u64 key (never UINT64_MAX) to an int32 value. */
typedef struct {
    uint64_t *keys;
    int32_t *vals;
    size_t cap, n;
} U64Map;
void u64_init(U64Map *m, size_t cap);
void u64_free(U64Map *m);
int32_t *u64_find(const U64Map *m, uint64_t key);
int32_t *u64_put(U64Map *m, uint64_t key, int *created); /* new value is -1 */
static inline uint64_t pair_key(uint32_t a, uint32_t b) { return (uint64_t)a << 32 | b; }

struct Tokenizer {
    int vocab_size, eot_id, n_merges;
    uint8_t *tok_data;   /* token bytes, concatenated */
    uint64_t *tok_off;   /* [vocab_size + 1]: token id is tok_data[tok_off[id] .. tok_off[id+1]) */
    uint8_t *special;    /* [vocab_size]: 1 for added special tokens (their text is in tok_data) */
    int32_t byte_id[256];
    int32_t *merges;     /* [n_merges * 3]: left, right, result; index = rank */
    U64Map merge_rank;   /* pair_key(left, right) -> rank */
    /* Encode cache: chunk bytes -> (offset into cache_ids << 16 | count). */
    BytesMap cache;
    uint32_t *cache_ids;
    size_t cache_n, cache_cap;
    /* BPE scratch, grown as needed. */
    int32_t *scr_a, *scr_b, *scr_c;
    uint64_t *scr_heap;
    size_t scr_cap;
};

/* Builds a tokenizer from its parts (all copied): token bytes per id, special flags,
 * the end-of-text id and the merges in rank order. Checks that every byte has a token
 * and that merges are unique and consistent; fails with ml_fail otherwise. */
int tok_build(Tokenizer **out, int vocab_size, const uint8_t *tok_data, const uint64_t *tok_off,
              const uint8_t *special, int eot_id, const int32_t *merges, int n_merges);

/* BPE of one chunk without the cache, appending ids. method 0: by size, 1: array scan
 * (O(n^2)), 2: heap (O(n log n)). Both apply the lowest-ranked, then leftmost, pair first. */
void tok_bpe_chunk(Tokenizer *t, const uint8_t *s, size_t n, TokIds *out, int method);

/* GPT-2's byte <-> unicode mapping: every byte gets a printable code point. */
uint32_t tok_byte_to_cp(uint8_t b);
int tok_cp_to_byte(uint32_t cp); /* -1 when cp is not one of the 256 */

#endif
