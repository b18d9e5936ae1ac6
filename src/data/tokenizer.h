/* Byte-level BPE tokenizer: training, encoding, decoding, and the Hugging Face
 * `tokenizer.json` file format (see docs/tokenizer.md).
 *
 * Ids: a tokenizer trained here has ids 0..255 = the single bytes 0..255, id 256 =
 * the end-of-text token "<|endoftext|>", and ids 257.. = merged tokens in merge order,
 * so a vocab-257 tokenizer is exactly moelab's byte-level scheme. A file trained
 * elsewhere may number its tokens differently; only tok_byte_id() says which id a byte has.
 *
 * Errors: functions returning int give 0 on success and -1 after ml_fail().
 * Threads: a Tokenizer is read-only after load/train except for the encode cache,
 * so tok_encode() must not run on the same Tokenizer from two threads at once
 * (load one per thread, or use a lock); everything else is safe to share. */
#ifndef MOELAB_TOKENIZER_H
#define MOELAB_TOKENIZER_H
#include <stddef.h>
#include <stdint.h>

#define TOK_EOT_TEXT "<|endoftext|>"
#define TOK_DEFAULT_VOCAB 4096
#define TOK_MIN_VOCAB 258 /* 256 bytes + end-of-text + at least one merge */

typedef struct Tokenizer Tokenizer;

/* Growable outputs; zero-initialise, append with the calls below, free(x.ids) / free(x.data). */
typedef struct {
    uint32_t *ids;
    size_t n, cap;
} TokIds;
typedef struct {
    uint8_t *data;
    size_t len, cap;
} TokBytes;

void tok_ids_push(TokIds *v, uint32_t id); /* appends one id */

/* ---- file ---- */
/* Reads and validates a tokenizer.json (byte-level BPE). */
int tok_load(Tokenizer **out, const char *path);
/* Same, from JSON text in memory (`what` names it in error messages). */
int tok_load_json(Tokenizer **out, const char *json, size_t len, const char *what);
/* Writes tokenizer.json atomically (a reader never sees a half-written file). */
int tok_save(const Tokenizer *t, const char *path);
/* The JSON text tok_save writes; caller frees. */
char *tok_to_json(const Tokenizer *t);
void tok_free(Tokenizer *t);

/* ---- training ---- */
/* Streaming trainer: add any number of texts (each is pre-tokenised on its own, so no
 * token spans two texts), then finish. Only chunk counts are kept, not the texts. */
typedef struct TokTrainer TokTrainer;
TokTrainer *tok_trainer_new(void);
void tok_trainer_add(TokTrainer *tr, const void *bytes, size_t len);
/* Learns merges until the vocab (bytes + end-of-text + merged tokens) reaches vocab_size,
 * or no pair is left (then the vocab is smaller; see tok_vocab_size). Deterministic:
 * the most frequent pair wins, ties go to the lowest (left id, right id).
 * verbose > 0 prints progress to stderr. Fails when vocab_size < TOK_MIN_VOCAB.
 * Uses up the counts (tr is left empty, to save memory); free tr with tok_trainer_free. */
int tok_trainer_finish(TokTrainer *tr, int vocab_size, int verbose, Tokenizer **out);
void tok_trainer_free(TokTrainer *tr);
/* One-call form over in-memory buffers. */
int tok_train(Tokenizer **out, const void *const *bufs, const size_t *lens, int n_bufs, int vocab_size);

/* ---- use ---- */
/* Appends the ids of bytes[0..len) to *out. Any byte sequence encodes (invalid UTF-8 and
 * NULs included) and decodes back exactly. The text "<|endoftext|>" is encoded as plain
 * text, never as the end-of-text id: callers append tok_eot_id() themselves. */
void tok_encode(Tokenizer *t, const void *bytes, size_t len, TokIds *out);
/* Appends the bytes of ids[0..n) to *out. Special tokens add their text when
 * keep_special, else nothing. Fails (appending nothing) on an id >= vocab size. */
int tok_decode(const Tokenizer *t, const uint32_t *ids, size_t n, int keep_special, TokBytes *out);

int tok_vocab_size(const Tokenizer *t);
int tok_eot_id(const Tokenizer *t);
int tok_n_merges(const Tokenizer *t);
/* Byte length of token id (0 for special tokens and ids out of range); for bits per byte. */
int tok_token_bytes(const Tokenizer *t, int id);
/* The token's bytes (a special token's text), length in *len; NULL if out of range. */
const uint8_t *tok_token(const Tokenizer *t, int id, size_t *len);
int tok_is_special(const Tokenizer *t, int id);
int tok_byte_id(const Tokenizer *t, uint8_t byte);

/* Pre-tokenisation: end offset of the chunk that starts at s[i] (i < len). Merges never
 * cross chunk ends. The rule is in docs/tokenizer.md. */
size_t tok_chunk_end(const uint8_t *s, size_t len, size_t i);

#endif
