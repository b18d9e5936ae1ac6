/* GGUF (version 3), the file format of llama.cpp: "GGUF", version, tensor and key counts,
 * typed key/value metadata, tensor infos (name, dims innermost first, ggml type, offset),
 * then the tensor data, each tensor aligned to general.alignment (32) bytes.
 * This is a writer: build the file in memory (metadata, then tensors from fp32 data
 * converted to the asked type), then save it atomically. */
#ifndef MOELAB_GGUF_H
#define MOELAB_GGUF_H
#include <stddef.h>
#include <stdint.h>

#define GGUF_ALIGN 32
#define GGUF_MAX_DIMS 4

/* ggml tensor types this writer produces (their numbers in ggml.h). */
typedef enum { GG_F32 = 0, GG_F16 = 1, GG_Q8_0 = 8, GG_BF16 = 30 } GgType;
#define GG_QK8_0 32 /* Q8_0 block: one f16 scale then 32 int8 */

typedef struct {
    uint8_t *kv; /* serialised key/value pairs */
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    uint8_t *info; /* serialised tensor infos */
    size_t info_len, info_cap;
    uint8_t *data; /* tensor data, each tensor padded to GGUF_ALIGN */
    size_t data_len, data_cap;
    uint64_t n_tensors;
} GgufWriter;

void gguf_init(GgufWriter *w);
void gguf_free(GgufWriter *w);
void gguf_kv_u32(GgufWriter *w, const char *key, uint32_t v);
void gguf_kv_f32(GgufWriter *w, const char *key, float v);
void gguf_kv_bool(GgufWriter *w, const char *key, int v);
void gguf_kv_str(GgufWriter *w, const char *key, const char *v);
/* Arrays: strings given as (bytes, length) pairs so tokens may hold any byte. */
void gguf_kv_str_arr(GgufWriter *w, const char *key, const char *const *s, const size_t *len, size_t n);
void gguf_kv_i32_arr(GgufWriter *w, const char *key, const int32_t *v, size_t n);
void gguf_kv_f32_arr(GgufWriter *w, const char *key, const float *v, size_t n);
/* Adds a tensor of ne[0] x ne[1] x ... (ne[0] innermost, contiguous) from fp32 src,
 * stored as `type`. Q8_0 needs ne[0] % 32 == 0 (-1 with ml_fail otherwise). */
int gguf_add_tensor(GgufWriter *w, const char *name, int n_dims, const int64_t *ne, GgType type, const float *src);
int gguf_save(const GgufWriter *w, const char *path);

/* Conversions as ggml does them (round to nearest even; NaN stays NaN). */
uint16_t gguf_f32_to_f16(float f);
float gguf_f16_to_f32(uint16_t h);
uint16_t gguf_f32_to_bf16(float f);
float gguf_bf16_to_f32(uint16_t h);
/* One Q8_0 block: 34 bytes from 32 floats (scale = max|x|/127, q = round(x/scale)). */
void gguf_q8_0_block(const float *x, uint8_t *out);
/* Bytes of n values (n a multiple of 32 for Q8_0). */
size_t gguf_type_size(GgType t, size_t n);
const char *gguf_type_name(GgType t);

#endif
