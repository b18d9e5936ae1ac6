/* Token shards and the data loader.
 *
 * A prepared data folder holds train.bin and val.bin (one shard each, same format)
 * and meta.json (tokenizer kind, vocab size, domains, byte and token counts).
 * Shard layout (little-endian):
 *   magic "MLSHARD1" (8 bytes), u32 version (1), u32 vocab_size, u32 n_domains, u32 reserved,
 *   u64 n_tokens, u64 n_docs,
 *   n_domains x 64-byte NUL-padded domain names,
 *   n_docs x (u64 start token, u32 domain id, u32 reserved),
 *   n_tokens x u32 tokens.
 * Each document's tokens are contiguous; documents are separated by the tokenizer's
 * end-of-text token, which belongs to the document it ends. */
#ifndef MOELAB_SHARD_H
#define MOELAB_SHARD_H
#include "core/util.h"
#include <stdint.h>

#define SHARD_MAGIC "MLSHARD1"
#define SHARD_VERSION 1
#define SHARD_NAME_LEN 64

typedef struct {
    int vocab_size, n_domains;
    char (*domains)[SHARD_NAME_LEN];
    int64_t n_tokens, n_docs;
    int64_t *doc_start; /* [n_docs] */
    int32_t *doc_domain;/* [n_docs] */
    uint32_t *tokens;   /* [n_tokens] */
} Shard;

typedef struct {
    int vocab_size, n_domains;
    const char *const *domains;
    int64_t n_tokens, n_docs;
    const int64_t *doc_start;
    const int32_t *doc_domain;
    const uint32_t *tokens;
} ShardView;

int shard_write(const char *path, const ShardView *v); /* atomic */
/* Reads and validates: magic, version, sizes against the file length, ids < vocab, domains < n_domains. */
int shard_load(Shard *s, const char *path);
void shard_free(Shard *s);
/* Domain of the document holding token index i. */
int shard_domain_at(const Shard *s, int64_t i);

/* Training batches: B random windows of T+1 tokens; state is the RNG (checkpointed). */
typedef struct {
    const Shard *shard;
    int B, T;
    Rng rng;
} Loader;
int loader_init(Loader *l, const Shard *s, int B, int T, uint64_t seed); /* -1 if the shard is shorter than T+1 */
void loader_next(Loader *l, int32_t *inputs, int32_t *targets);          /* [B*T] each */

/* Validation batches: the shard cut into consecutive windows of T+1 tokens (stride T),
 * batch b holds windows b*B .. b*B+B-1. Returns the number of filled rows (0 past the end);
 * unfilled rows get target -1. domains[B*T] (may be NULL) gets each target's domain. */
int loader_eval_batch(const Shard *s, int B, int T, int64_t batch, int32_t *inputs, int32_t *targets, int32_t *domains);
int64_t loader_eval_batches(const Shard *s, int B, int T);
/* For evaluating only n_batches of them: the same windows, but the n_batches*B windows are
 * spread evenly over the whole shard (row j of the selection is window
 * floor(j * n_windows / (n_batches*B))), so a partial evaluation still sees every part of
 * the shard (every domain of an interleaved one) rather than its first documents. */
int loader_eval_batch_spread(const Shard *s, int B, int T, int64_t batch, int64_t n_batches, int32_t *inputs,
                             int32_t *targets, int32_t *domains);

/* Data folder: meta.json + shards. token_bytes[v] is the byte length of token v (0 for specials),
 * used for bits per byte. Tokenizer "bytes" implies it; "bpe" reads it from the folder's
 * tokenizer.json (meta.json's "tokenizer_file"), which must have vocab_size tokens. */
typedef struct {
    char tokenizer[32];
    int vocab_size;
    int *token_bytes; /* [vocab_size] */
} DataMeta;
int data_meta_load(DataMeta *m, const char *dir);
void data_meta_free(DataMeta *m);

#endif
