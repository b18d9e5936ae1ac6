/* Shared by the libFuzzer harnesses: the loaders read files, so each input is written to
 * a file in a private scratch folder (on /dev/shm when there is one: no disk traffic). */
#ifndef MOELAB_FUZZ_COMMON_H
#define MOELAB_FUZZ_COMMON_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fz_dir[128];

static inline const char *fz_scratch(void) {
    if (fz_dir[0]) return fz_dir;
    snprintf(fz_dir, sizeof fz_dir, "%s/moelab-fuzz-XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(fz_dir)) abort();
    return fz_dir;
}

/* Writes data to path (in the scratch folder: see fz_path). */
static inline void fz_write(const char *path, const uint8_t *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    if (fclose(f) != 0) abort();
}

static inline void fz_path(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/%s", fz_scratch(), name); }

/* A NUL-terminated copy, for the loaders that take text. */
static inline char *fz_text(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) abort();
    memcpy(s, data, size);
    s[size] = 0;
    return s;
}

/* Splits an input at the first occurrence of sep: the harnesses that need two files
 * (a checkpoint's model and optimizer, a folder's meta.json and tokenizer.json). */
static inline void fz_split(const uint8_t *data, size_t size, const char *sep, size_t *first, const uint8_t **rest, size_t *rest_len) {
    size_t n = strlen(sep);
    for (size_t i = 0; i + n <= size; i++)
        if (memcmp(data + i, sep, n) == 0) {
            *first = i;
            *rest = data + i + n;
            *rest_len = size - i - n;
            return;
        }
    *first = size;
    *rest = data + size;
    *rest_len = 0;
}

#endif
