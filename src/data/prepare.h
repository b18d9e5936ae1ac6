/* Data preparation: text -> DIR/train.bin, DIR/val.bin, DIR/meta.json (+ DIR/tokenizer.json).
 *
 * Inputs are either plain files and folders (one domain, "default", cut into paragraph
 * groups of at least PREPARE_MIN_DOC_BYTES) or a corpus manifest (manifest.h: named
 * domains, each cut into documents its own way). Then, in this order:
 *   1. exact duplicate documents are dropped (the first occurrence stays);
 *   2. a domain over its byte cap keeps a seeded random subset of its documents
 *      (documents taken in order of a seeded hash of their text until the cap);
 *   3. a document goes to validation when a seeded hash of its text falls under val_frac,
 *      so a document lands in the same split whatever the other documents are;
 *   4. each split interleaves the domains in proportion to their bytes (a domain's
 *      documents in the order of a seeded hash of their text), so any prefix of the
 *      validation shard, which is what periodic evaluation reads, holds every domain;
 *   5. documents are tokenised (bytes, a given tokenizer.json, or a BPE tokenizer trained
 *      on the training split only) and each ends with the end-of-text token.
 * Every document keeps its domain id in the shards. */
#ifndef MOELAB_PREPARE_H
#define MOELAB_PREPARE_H
#include "data/manifest.h"
#include <stddef.h>
#include <stdint.h>

#define PREPARE_MIN_DOC_BYTES 4096
#define PREPARE_EOT 256
#define PREPARE_VOCAB 257
#define PREPARE_DEFAULT_VAL_FRAC 0.05
#define PREPARE_DEFAULT_SEED 1234

typedef struct {
    const char *out_dir;
    const char *const *inputs; /* plain files and folders (when no manifest) */
    int n_inputs;
    double val_frac; /* in (0, 1) */
    uint64_t seed;   /* split, cap and order seed */
    const char *manifest;  /* a corpus manifest instead of inputs */
    const char *tokenizer; /* use (and copy) this tokenizer.json */
    int vocab;             /* > 0: train a BPE tokenizer of this size on the training split */
    int cap_set;           /* cap_bytes overrides every domain's cap (0: no cap) */
    int64_t cap_bytes;
    int verbose;           /* progress lines on stderr */
} PrepareOptions;

typedef struct {
    char name[MANIFEST_NAME_MAX + 1];
    int files;
    int64_t found_docs, found_bytes; /* before de-duplication and the cap */
    int64_t duplicates;              /* documents dropped as exact copies */
    int64_t cap_bytes;               /* 0: none */
    int64_t docs[2], bytes[2], tokens[2]; /* [0] train, [1] val; tokens include end-of-text */
} PrepareDomainStats;

typedef struct {
    int n_files; /* regular files read */
    int64_t docs[2], tokens[2], bytes[2]; /* [0] train, [1] val */
    char tokenizer[16];                   /* "bytes" or "bpe" */
    int vocab_size;
    int n_domains;
    PrepareDomainStats dom[MANIFEST_MAX_DOMAINS];
} PrepareStats;

/* Does the whole preparation. Every input is read before anything is written, and the
 * outputs are staged then renamed, so a failure leaves no new output files. */
int prepare_data(const PrepareOptions *o, PrepareStats *st);
int prepare_bytes(const PrepareOptions *o, PrepareStats *st); /* the same; kept for older callers */

/* Cuts buf into documents: ends[i] is the end offset of document i (the last is len).
 * Cuts fall at the start of a line that follows a blank line, once the current document
 * holds at least min_bytes. Returns the document count (0 when buf has no
 * non-whitespace byte); *ends is allocated and owned by the caller. */
int64_t prepare_split_docs(const char *buf, size_t len, size_t min_bytes, size_t **ends);

/* 1 when a document with this text belongs to validation under (val_frac, seed). */
int prepare_is_val(const char *text, size_t len, uint64_t seed, double val_frac);

#endif
