/* Checked allocation, error reporting and small file helpers shared by every module. */
#ifndef MOELAB_UTIL_H
#define MOELAB_UTIL_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Library functions report failure by returning -1 after ml_fail() has recorded
 * a message; the CLI prints ml_last_error() and exits non-zero. */
int ml_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *ml_last_error(void);

/* Allocation failure is not recoverable for a trainer: these print and exit(2). */
void *ml_malloc(size_t n);
void *ml_calloc(size_t count, size_t size);
void *ml_realloc(void *p, size_t n);
char *ml_strdup(const char *s);
/* Grow-only buffer: ensures *buf holds at least n bytes, keeping contents. */
void ml_reserve(void **buf, size_t *cap, size_t n);

/* Opens path for reading only if it is a regular file (a FIFO, a device or a folder is
 * refused without blocking on it); *size gets its length. Returns the fd, or -1 (ml_fail). */
int ml_open_regular(const char *path, uint64_t *size);
/* The same as a stdio stream. */
FILE *ml_fopen_regular(const char *path, uint64_t *size);
/* Reads a whole regular file of at most `max` bytes (the length it has when opened, so a
 * file that keeps growing is read up to that point); returns NULL (with ml_fail) when
 * missing, not a regular file, larger than max or unreadable. */
char *ml_read_file_max(const char *path, size_t *len, uint64_t max);
/* ml_read_file_max with ML_READ_MAX: every file a loader reads whole. */
#define ML_READ_MAX ((uint64_t)1 << 36)
/* JSON and other text files (configs, manifests, meta.json, tokenizer.json, logs). */
#define ML_READ_MAX_TEXT ((uint64_t)1 << 30)
char *ml_read_file(const char *path, size_t *len);
/* Writes `len` bytes to `path` atomically: temp file in the same folder, fsync, rename.
 * A reader never sees a half-written file; on failure the old file stays. */
int ml_write_file_atomic(const char *path, const void *data, size_t len);
/* Atomic write through a callback that streams into the temp FILE. */
int ml_write_atomic_with(const char *path, int (*write_fn)(FILE *f, void *ctx), void *ctx);
int ml_mkdir_p(const char *path);
int ml_file_exists(const char *path);

double ml_now(void); /* monotonic seconds */

/* Deterministic RNG (splitmix64 seeding + xoshiro256**), state is plain data so it checkpoints. */
typedef struct { uint64_t s[4]; } Rng;
void rng_seed(Rng *r, uint64_t seed);
uint64_t rng_next(Rng *r);
float rng_uniform(Rng *r);            /* [0,1) */
float rng_normal(Rng *r);             /* N(0,1) */
uint64_t rng_below(Rng *r, uint64_t n); /* uniform in [0,n) */

#endif
