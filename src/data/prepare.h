/* Byte-level data preparation: text files and folders -> DIR/train.bin, DIR/val.bin, DIR/meta.json.
 *
 * Tokens are raw bytes (0..255) plus the end-of-text token 256 closing every document
 * (vocab_size 257). Each file is cut at blank lines into documents of at least
 * PREPARE_MIN_DOC_BYTES bytes (a file's last document may be shorter); a document goes
 * to validation when a hash of (its index, the seed) falls under val_frac. */
#ifndef MOELAB_PREPARE_H
#define MOELAB_PREPARE_H
#include <stddef.h>
#include <stdint.h>

#define PREPARE_MIN_DOC_BYTES 4096
#define PREPARE_EOT 256
#define PREPARE_VOCAB 257
#define PREPARE_DEFAULT_VAL_FRAC 0.05
#define PREPARE_DEFAULT_SEED 1234

typedef struct {
    const char *out_dir;
    const char *const *inputs; /* files and folders; folders are walked recursively in sorted order */
    int n_inputs;
    double val_frac; /* in (0, 1) */
    uint64_t seed;   /* split seed */
} PrepareOptions;

typedef struct {
    int n_files; /* regular files read */
    int64_t docs[2], tokens[2], bytes[2]; /* [0] train, [1] val */
} PrepareStats;

/* Does the whole preparation. Every input is read before anything is written, and the
 * outputs are staged then renamed, so a failure leaves no new output files. */
int prepare_bytes(const PrepareOptions *o, PrepareStats *st);

/* Cuts buf into documents: ends[i] is the end offset of document i (the last is len).
 * Cuts fall at the start of a line that follows a blank line, once the current document
 * holds at least min_bytes. Returns the document count (0 when buf has no
 * non-whitespace byte); *ends is allocated and owned by the caller. */
int64_t prepare_split_docs(const char *buf, size_t len, size_t min_bytes, size_t **ends);

/* 1 when document `index` belongs to validation under (val_frac, seed). */
int prepare_is_val(int64_t index, uint64_t seed, double val_frac);

#endif
