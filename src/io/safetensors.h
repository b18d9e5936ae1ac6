/* safetensors: an 8-byte little-endian header length, a JSON header mapping tensor
 * names to {dtype, shape, data_offsets} plus "__metadata__" (string -> string),
 * then the raw little-endian tensor bytes. PyTorch and HF read it directly. */
#ifndef MOELAB_SAFETENSORS_H
#define MOELAB_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8

typedef struct {
    char *name;
    char dtype[8]; /* "F32", "F64", "I32", "I64", "U8", ... */
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t nbytes;
    const void *data; /* writer: caller's memory (must outlive the save); reader: into the file image */
} StTensor;

typedef struct {
    StTensor *tensors;
    int n, cap;
    char **meta_keys, **meta_vals;
    int n_meta, meta_cap;
    void *image; /* reader: the whole file */
    size_t image_len;
} StFile;

/* Writing: add tensors and metadata in order, then save atomically (temp file + rename). */
void st_init(StFile *f);
void st_add(StFile *f, const char *name, const char *dtype, int ndim, const int64_t *shape, const void *data);
void st_add_meta(StFile *f, const char *key, const char *value);
int st_save(const StFile *f, const char *path);

/* Reading: loads and validates the whole file (header JSON, dtypes, shapes against byte
 * sizes, offsets inside the data and non-overlapping). Returns -1 with ml_fail on any defect. */
int st_load(StFile *f, const char *path);
const StTensor *st_find(const StFile *f, const char *name);
const char *st_meta(const StFile *f, const char *key);
/* Copies a tensor into dst after checking dtype and exact shape; -1 with ml_fail naming the tensor. */
int st_read(const StFile *f, const char *name, const char *dtype, int ndim, const int64_t *shape, void *dst);
void st_free(StFile *f);

#endif
