/* GGUF writer; the layout is in gguf.h. Metadata, tensor infos and data are built in
 * three growing buffers, so a failure part way leaves no file at all. */
#include "io/gguf.h"
#include "core/util.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { KV_U32 = 4, KV_I32 = 5, KV_F32 = 6, KV_BOOL = 7, KV_STR = 8, KV_ARR = 9 };

void gguf_init(GgufWriter *w) { memset(w, 0, sizeof *w); }

void gguf_free(GgufWriter *w) {
    free(w->kv);
    free(w->info);
    free(w->data);
    gguf_init(w);
}

static void put(uint8_t **buf, size_t *len, size_t *cap, const void *p, size_t n) {
    ml_reserve((void **)buf, cap, *len + n);
    memcpy(*buf + *len, p, n);
    *len += n;
}
static void kv_put(GgufWriter *w, const void *p, size_t n) { put(&w->kv, &w->kv_len, &w->kv_cap, p, n); }
static void info_put(GgufWriter *w, const void *p, size_t n) { put(&w->info, &w->info_len, &w->info_cap, p, n); }

static void kv_u32v(GgufWriter *w, uint32_t v) { kv_put(w, &v, 4); }
static void kv_u64v(GgufWriter *w, uint64_t v) { kv_put(w, &v, 8); }
static void kv_strv(GgufWriter *w, const char *s, size_t n) {
    kv_u64v(w, n);
    kv_put(w, s, n);
}
static void kv_key(GgufWriter *w, const char *key, uint32_t type) {
    kv_strv(w, key, strlen(key));
    kv_u32v(w, type);
    w->n_kv++;
}

void gguf_kv_u32(GgufWriter *w, const char *key, uint32_t v) {
    kv_key(w, key, KV_U32);
    kv_u32v(w, v);
}
void gguf_kv_f32(GgufWriter *w, const char *key, float v) {
    kv_key(w, key, KV_F32);
    kv_put(w, &v, 4);
}
void gguf_kv_bool(GgufWriter *w, const char *key, int v) {
    uint8_t b = v != 0;
    kv_key(w, key, KV_BOOL);
    kv_put(w, &b, 1);
}
void gguf_kv_str(GgufWriter *w, const char *key, const char *v) {
    kv_key(w, key, KV_STR);
    kv_strv(w, v, strlen(v));
}
void gguf_kv_str_arr(GgufWriter *w, const char *key, const char *const *s, const size_t *len, size_t n) {
    kv_key(w, key, KV_ARR);
    kv_u32v(w, KV_STR);
    kv_u64v(w, n);
    for (size_t i = 0; i < n; i++) kv_strv(w, s[i], len[i]);
}
void gguf_kv_i32_arr(GgufWriter *w, const char *key, const int32_t *v, size_t n) {
    kv_key(w, key, KV_ARR);
    kv_u32v(w, KV_I32);
    kv_u64v(w, n);
    kv_put(w, v, n * 4);
}
void gguf_kv_f32_arr(GgufWriter *w, const char *key, const float *v, size_t n) {
    kv_key(w, key, KV_ARR);
    kv_u32v(w, KV_F32);
    kv_u64v(w, n);
    kv_put(w, v, n * 4);
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t gguf_f32_to_f16(float f) {
    uint32_t x = f32_bits(f), sign = (x >> 16) & 0x8000, a = x & 0x7fffffff;
    if (a > 0x7f800000) return (uint16_t)(sign | 0x7e00);  /* NaN */
    if (a >= 0x47800000) return (uint16_t)(sign | 0x7c00); /* 2^16 and up: infinity */
    if (a >= 0x38800000) {                                 /* normal half (>= 2^-14) */
        uint32_t r = a - (112u << 23);                     /* exponent bias 127 -> 15 */
        r += 0xfff + ((r >> 13) & 1);                      /* round to nearest even; may carry to inf */
        return (uint16_t)(sign | (r >> 13));
    }
    /* subnormal half: the value in units of 2^-24, rounded to nearest even */
    int shift = 126 - (int)(a >> 23);
    if (shift > 24) return (uint16_t)sign;
    uint32_t m = (a & 0x7fffff) | 0x800000, q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return (uint16_t)(sign | q);
}

float gguf_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0x1f) return bits_f32(sign | 0x7f800000 | (m << 13));
    if (e == 0) { /* zero or subnormal: m * 2^-24 */
        float v = (float)m * 0x1p-24f;
        return sign ? -v : v;
    }
    return bits_f32(sign | ((e + 112) << 23) | (m << 13));
}

uint16_t gguf_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 64); /* keep NaN quiet */
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

float gguf_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

void gguf_q8_0_block(const float *x, uint8_t *out) {
    float amax = 0.0f;
    for (int j = 0; j < GG_QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    uint16_t dh = gguf_f32_to_f16(d);
    memcpy(out, &dh, 2);
    for (int j = 0; j < GG_QK8_0; j++) out[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
}

size_t gguf_type_size(GgType t, size_t n) {
    switch (t) {
    case GG_F32: return 4 * n;
    case GG_F16:
    case GG_BF16: return 2 * n;
    case GG_Q8_0: return n / GG_QK8_0 * (2 + GG_QK8_0);
    }
    return 0;
}

const char *gguf_type_name(GgType t) {
    switch (t) {
    case GG_F32: return "f32";
    case GG_F16: return "f16";
    case GG_BF16: return "bf16";
    case GG_Q8_0: return "q8_0";
    }
    return "?";
}

static void convert(GgType type, const float *src, size_t n, uint8_t *dst) {
    if (type == GG_F32) {
        memcpy(dst, src, n * 4);
    } else if (type == GG_Q8_0) {
        for (size_t i = 0; i < n; i += GG_QK8_0) gguf_q8_0_block(src + i, dst + i / GG_QK8_0 * (2 + GG_QK8_0));
    } else {
        for (size_t i = 0; i < n; i++) {
            uint16_t h = type == GG_F16 ? gguf_f32_to_f16(src[i]) : gguf_f32_to_bf16(src[i]);
            memcpy(dst + 2 * i, &h, 2);
        }
    }
}

int gguf_add_tensor(GgufWriter *w, const char *name, int n_dims, const int64_t *ne, GgType type, const float *src) {
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS) return ml_fail("tensor %s: %d dimensions", name, n_dims);
    size_t n = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] < 1) return ml_fail("tensor %s: dimension %d is %lld", name, d, (long long)ne[d]);
        n *= (size_t)ne[d];
    }
    if (type == GG_Q8_0 && ne[0] % GG_QK8_0)
        return ml_fail("tensor %s: q8_0 needs rows of a multiple of %d values, not %lld", name, GG_QK8_0, (long long)ne[0]);
    size_t off = (w->data_len + GGUF_ALIGN - 1) / GGUF_ALIGN * GGUF_ALIGN, bytes = gguf_type_size(type, n);
    ml_reserve((void **)&w->data, &w->data_cap, off + bytes);
    memset(w->data + w->data_len, 0, off - w->data_len);
    convert(type, src, n, w->data + off);
    w->data_len = off + bytes;
    uint64_t len = strlen(name), dims = (uint64_t)n_dims, offset = off;
    uint32_t nd = (uint32_t)n_dims, ty = (uint32_t)type;
    info_put(w, &len, 8);
    info_put(w, name, len);
    info_put(w, &nd, 4);
    for (int d = 0; d < n_dims; d++) {
        dims = (uint64_t)ne[d];
        info_put(w, &dims, 8);
    }
    info_put(w, &ty, 4);
    info_put(w, &offset, 8);
    w->n_tensors++;
    return 0;
}

static int write_all(FILE *f, const void *p, size_t n) { return n == 0 || fwrite(p, 1, n, f) == n ? 0 : -1; }

static int save_fn(FILE *f, void *ctx) {
    const GgufWriter *w = ctx;
    uint32_t version = 3;
    static const uint8_t zeros[GGUF_ALIGN];
    size_t head = 4 + 4 + 8 + 8 + w->kv_len + w->info_len, pad = (GGUF_ALIGN - head % GGUF_ALIGN) % GGUF_ALIGN;
    if (write_all(f, "GGUF", 4) || write_all(f, &version, 4) || write_all(f, &w->n_tensors, 8) ||
        write_all(f, &w->n_kv, 8) || write_all(f, w->kv, w->kv_len) || write_all(f, w->info, w->info_len) ||
        write_all(f, zeros, pad) || write_all(f, w->data, w->data_len))
        return ml_fail("write failed");
    return 0;
}

int gguf_save(const GgufWriter *w, const char *path) { return ml_write_atomic_with(path, save_fn, (void *)w); }
