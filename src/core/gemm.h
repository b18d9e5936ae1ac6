/* The matrix products of moelab. In fp32 they are oneDNN's sgemm; in bf16 the inputs are
 * rounded to bfloat16 and multiplied by oneDNN matmul primitives (cached per shape) with
 * fp32 accumulation and an fp32 result. gemm() takes fp32 operands and rounds them itself;
 * gemm_bf16 and gemm_batched take operands their producers already wrote in bf16.
 * Everything else stays fp32. */
#ifndef MOELAB_GEMM_H
#define MOELAB_GEMM_H
#include <stddef.h>
#include <stdint.h>

typedef enum { PREC_FP32 = 0, PREC_BF16 = 1 } Precision;

/* "fp32" or "bf16"; -1 (ml_fail) otherwise. */
int precision_parse(const char *name, Precision *out);
const char *precision_name(Precision p);
/* Process-wide. bf16 fails (ml_fail, nothing changed) when oneDNN has no bf16 matmul for
 * this CPU (below AVX-512); on AVX-512 without native bf16 oneDNN emulates it. */
int gemm_set_precision(Precision p);
Precision gemm_precision(void);
/* precision_parse + gemm_set_precision. */
int gemm_set_precision_name(const char *name);

/* Row-major C[M,N] = alpha op(A) op(B) + beta C, as cblas_sgemm; op(X) = X^T when tX.
 * beta is 0 or 1. Safe to call from inside an OpenMP parallel region. */
void gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
          float beta, float *C, int ldc);

/* bf16: the next gemm on this thread takes the same A, unchanged since this thread's last
 * gemm (the backward pairs dX = dY W, dW = dY^T X): the bf16 copy made then is reused when
 * its padded layout fits, instead of rounding A again. Any other product clears it. */
void gemm_same_a(void);

/* A grid of n[0] x n[1] products of one shape: product (i, j) reads A + i sa[0] + j sa[1]
 * (elements), B + i sb[0] + j sb[1] and writes C + i sc[0] + j sc[1]. One oneDNN call runs
 * the whole grid on all threads (attention: every batch and head at once). */
typedef struct {
    int n[2];
    long sa[2], sb[2], sc[2];
} GemmBatch;
/* As gemm, over the grid. A and B hold fp32 values (float) in fp32 precision and values
 * already rounded to bf16 (uint16_t, gemm_round) in bf16 precision. Not inside a parallel
 * region, except a 1 x 1 grid in fp32, which is gemm_fp32. */
void gemm_batched(const GemmBatch *g, int ta, int tb, int M, int N, int K, float alpha, const void *A, int lda,
                  const void *B, int ldb, float beta, float *C, int ldc);
/* One product of operands already rounded to bf16, as they are: no rounding, no padding.
 * oneDNN builds a kernel per shape: callers whose row counts vary round them up to a
 * multiple of GEMM_ROW_BLOCK (zero rows) so that only a few shapes occur. */
#define GEMM_ROW_BLOCK 32
void gemm_bf16(int ta, int tb, int M, int N, int K, float alpha, const uint16_t *A, int lda, const uint16_t *B, int ldb,
               float beta, float *C, int ldc);
/* The bf16 shadow of parameters w (gemm_cast_weights) in bf16 precision; NULL otherwise. */
const uint16_t *gemm_weights_bf16(const float *w);
/* dst[0..n) = bf16(src[0..n)), round to nearest even; gemm_round runs on all threads. */
void gemm_round(uint16_t *dst, const float *src, size_t n);
void gemm_round_row(uint16_t *dst, const float *src, int n);
/* A per-thread bf16 buffer of at least n values, kept between calls (slot < GEMM_SCRATCH_SLOTS). */
#define GEMM_SCRATCH_SLOTS 4
uint16_t *gemm_scratch_bf16(int slot, size_t n);

/* Always fp32 (cblas_sgemm), whatever the precision. */
void gemm_fp32(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
               float beta, float *C, int ldc);

/* bf16: rounds w[0..n) once into a shadow copy that every later gemm whose B lies in w
 * reads instead of rounding B again. Call again whenever w changes (each forward). */
void gemm_cast_weights(const float *w, size_t n);
/* Drops the shadow of w (before w is freed, so a later buffer at its address is not mistaken for it). */
void gemm_forget_weights(const float *w);

/* Round to nearest even, the rounding PyTorch's .to(torch.bfloat16) uses. */
static inline uint16_t bf16_round(float f) {
    union { float f; uint32_t u; } v = {f};
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40); /* quiet NaN */
    return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}
static inline float bf16_to_float(uint16_t h) {
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}

#endif
