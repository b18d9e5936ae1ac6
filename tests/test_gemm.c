/* The gemm entry point: fp32 is oneDNN's sgemm; bf16 equals a double-precision product of the
 * bf16-rounded inputs (fp32 accumulation: ~1e-6 relative), for every transpose, row counts
 * off the 32-row blocking, strided operands, alpha, beta = 1, shadow weights, and calls
 * from inside a parallel region. Also: bf16 rounding is round-to-nearest-even. */
#include "testlib.h"
#include "core/gemm.h"
#include "core/util.h"
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>

static int have_bf16;

static void fill(float *x, size_t n, Rng *r) {
    for (size_t i = 0; i < n; i++) x[i] = rng_normal(r);
}

/* Reference: C = alpha op(A) op(B) + beta C in double, inputs rounded as `prec` rounds them. */
static void reference(Precision prec, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) {
                float a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                float b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                if (prec == PREC_BF16) a = bf16_to_float(bf16_round(a)), b = bf16_to_float(bf16_round(b));
                s += (double)a * b;
            }
            C[(size_t)i * ldc + j] = (float)(alpha * s + (beta != 0 ? C[(size_t)i * ldc + j] : 0.0));
        }
}

/* One product in `prec` against the reference; ld* are padded past the logical widths. */
static void check_one(Precision prec, int ta, int tb, int M, int N, int K, float alpha, float beta, int weights) {
    Rng r;
    rng_seed(&r, (uint64_t)(M * 131 + N * 17 + K + ta * 7 + tb * 3));
    int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
    size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * ldc;
    float *A = ml_malloc(na * sizeof(float)), *B = ml_malloc(nb * sizeof(float));
    float *C = ml_malloc(nc * sizeof(float)), *R = ml_malloc(nc * sizeof(float));
    fill(A, na, &r), fill(B, nb, &r), fill(C, nc, &r);
    memcpy(R, C, nc * sizeof(float));
    if (weights) gemm_cast_weights(B, nb);
    gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    reference(prec, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, R, ldc);
    double ma, mr;
    tl_maxdiff(C, R, nc, sqrt((double)K), &ma, &mr);
    CHECK(mr < 2e-5, "%s ta %d tb %d M %d N %d K %d alpha %g beta %g weights %d: max_rel %.3e", precision_name(prec),
          ta, tb, M, N, K, alpha, beta, weights, mr);
    if (weights) gemm_forget_weights(B);
    free(A), free(B), free(C), free(R);
}

static void sweep(Precision prec) {
    int shapes[][3] = {{1, 8, 16}, {5, 24, 40}, {32, 32, 32}, {45, 64, 48}, {70, 33, 77}, {128, 96, 64}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int t = 0; t < 4; t++) {
            int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            check_one(prec, t & 1, t >> 1, M, N, K, 1.0f, 0.0f, 0);
            check_one(prec, t & 1, t >> 1, M, N, K, 0.125f + 0.3f * t, 1.0f, 0);
            check_one(prec, t & 1, t >> 1, M, N, K, 1.0f, 1.0f, 1);
        }
}

static void test_fp32_is_sgemm(void) {
    CHECK(gemm_set_precision(PREC_FP32) == 0, "fp32: %s", ml_last_error());
    sweep(PREC_FP32);
    /* bit-identical to the fp32 engine called directly */
    int M = 37, N = 29, K = 53;
    Rng r;
    rng_seed(&r, 5);
    float *A = ml_malloc(M * K * sizeof(float)), *B = ml_malloc(N * K * sizeof(float));
    float *C = ml_malloc(M * N * sizeof(float)), *R = ml_malloc(M * N * sizeof(float));
    fill(A, (size_t)M * K, &r), fill(B, (size_t)N * K, &r);
    gemm(0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
    dnnl_sgemm('N', 'T', M, N, K, 1.0f, A, K, B, K, 0.0f, R, N);
    CHECK(memcmp(C, R, (size_t)M * N * sizeof(float)) == 0, "fp32 gemm differs from dnnl_sgemm");
    free(A), free(B), free(C), free(R);
}

static void test_bf16_products(void) {
    if (!have_bf16) {
        printf("SKIP test_bf16_products: %s\n", ml_last_error());
        return;
    }
    CHECK(gemm_set_precision(PREC_BF16) == 0, "bf16: %s", ml_last_error());
    sweep(PREC_BF16);
    gemm_set_precision(PREC_FP32);
}

/* Experts run one product per thread: per-thread scratch and the shared cache. */
static void test_bf16_in_parallel(void) {
    if (!have_bf16) {
        printf("SKIP test_bf16_in_parallel: no bf16 matmul here\n");
        return;
    }
    gemm_set_precision(PREC_BF16);
    int n = 16, M = 40, N = 24, K = 36, bad = 0;
    float *A = ml_malloc((size_t)n * M * K * sizeof(float)), *B = ml_malloc((size_t)n * N * K * sizeof(float));
    float *C = ml_calloc((size_t)n * M * N, sizeof(float)), *R = ml_calloc((size_t)n * M * N, sizeof(float));
    Rng r;
    rng_seed(&r, 9);
    fill(A, (size_t)n * M * K, &r), fill(B, (size_t)n * N * K, &r);
#pragma omp parallel for schedule(dynamic, 1) num_threads(4)
    for (int i = 0; i < n; i++)
        gemm(0, 1, M, N, K, 0.5f, A + (size_t)i * M * K, K, B + (size_t)i * N * K, K, 0.0f, C + (size_t)i * M * N, N);
    for (int i = 0; i < n; i++) {
        reference(PREC_BF16, 0, 1, M, N, K, 0.5f, A + (size_t)i * M * K, K, B + (size_t)i * N * K, K, 0.0f,
                  R + (size_t)i * M * N, N);
        double ma, mr;
        tl_maxdiff(C + (size_t)i * M * N, R + (size_t)i * M * N, (size_t)M * N, 6.0, &ma, &mr);
        bad += mr > 2e-5;
    }
    CHECK(bad == 0, "%d of %d products made in parallel differ", bad, n);
    gemm_set_precision(PREC_FP32);
    free(A), free(B), free(C), free(R);
}

/* A backward pair, dX = dY W then dW = dY^T X: with gemm_same_a the second product reuses the
 * first one's bf16 copy of dY, and must give what it gives alone; n off the 32-row blocking.
 * A declared "same" A of another shape is rounded anew, not read from the stale copy. */
static void test_bf16_same_a(void) {
    if (!have_bf16) {
        printf("SKIP test_bf16_same_a: no bf16 matmul here\n");
        return;
    }
    gemm_set_precision(PREC_BF16);
    int n = 45, in = 48, out = 64;
    Rng r;
    rng_seed(&r, 11);
    float *dy = ml_malloc((size_t)n * out * sizeof(float)), *w = ml_malloc((size_t)out * in * sizeof(float));
    float *x = ml_malloc((size_t)n * in * sizeof(float));
    float *dx = ml_calloc((size_t)n * in, sizeof(float)), *dw = ml_calloc((size_t)out * in, sizeof(float));
    float *dw_ref = ml_calloc((size_t)out * in, sizeof(float)), *dx2 = ml_calloc((size_t)n * in, sizeof(float));
    float *dx2_ref = ml_calloc((size_t)n * in, sizeof(float));
    fill(dy, (size_t)n * out, &r), fill(w, (size_t)out * in, &r), fill(x, (size_t)n * in, &r);
    gemm(1, 0, out, in, n, 1.0f, dy, out, x, in, 0.0f, dw_ref, in);
    gemm(0, 0, n, in, out, 1.0f, dy, out, w, in, 0.0f, dx, in);
    gemm_same_a();
    gemm(1, 0, out, in, n, 1.0f, dy, out, x, in, 0.0f, dw, in);
    CHECK(memcmp(dw, dw_ref, (size_t)out * in * sizeof(float)) == 0, "dW with the reused bf16 dY differs");
    /* the first 32 columns of dy, declared the same: another layout, so cast again */
    gemm(0, 0, n, in, 32, 1.0f, dy, out, w, in, 0.0f, dx2_ref, in);
    gemm(0, 0, n, in, out, 1.0f, dy, out, w, in, 0.0f, dx2, in);
    gemm_same_a();
    gemm(0, 0, n, in, 32, 1.0f, dy, out, w, in, 0.0f, dx2, in);
    CHECK(memcmp(dx2, dx2_ref, (size_t)n * in * sizeof(float)) == 0, "a same-A call of another shape read a stale copy");
    gemm_set_precision(PREC_FP32);
    free(dy), free(w), free(x), free(dx), free(dw), free(dw_ref), free(dx2), free(dx2_ref);
}

/* gemm_batched over a 3 x 2 grid laid out as the attention lays out batches and heads (items
 * side by side within rows, grids of rows behind them), every transpose, alpha and beta = 1:
 * each item equals the reference product of its slices; in bf16 the operands are passed rounded. */
static void batched_case(Precision prec, int ta, int tb) {
    int n0 = 3, n1 = 2, M = 40, N = 24, K = 36;
    int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
    int lda = n1 * ac + 3, ldb = n1 * bc + 1, ldc = n1 * N + 2;
    long sa0 = (long)ar * lda, sb0 = (long)br * ldb, sc0 = (long)M * ldc;
    size_t na = (size_t)n0 * sa0, nb = (size_t)n0 * sb0, nc = (size_t)n0 * sc0;
    float *A = ml_malloc(na * sizeof(float)), *B = ml_malloc(nb * sizeof(float));
    float *C = ml_malloc(nc * sizeof(float)), *R = ml_malloc(nc * sizeof(float));
    uint16_t *Ah = ml_malloc(na * sizeof(uint16_t)), *Bh = ml_malloc(nb * sizeof(uint16_t));
    Rng r;
    rng_seed(&r, 13 + ta * 2 + tb);
    fill(A, na, &r), fill(B, nb, &r), fill(C, nc, &r);
    memcpy(R, C, nc * sizeof(float));
    gemm_round(Ah, A, na), gemm_round(Bh, B, nb);
    GemmBatch g = {{n0, n1}, {sa0, ac}, {sb0, bc}, {sc0, N}};
    int bf = prec == PREC_BF16;
    gemm_batched(&g, ta, tb, M, N, K, 0.75f, bf ? (const void *)Ah : A, lda, bf ? (const void *)Bh : B, ldb, 1.0f, C, ldc);
    int bad = 0;
    for (int i = 0; i < n0; i++)
        for (int j = 0; j < n1; j++) {
            size_t oa = i * sa0 + j * ac, ob = i * sb0 + j * bc, oc = i * sc0 + (size_t)j * N;
            reference(prec, ta, tb, M, N, K, 0.75f, A + oa, lda, B + ob, ldb, 1.0f, R + oc, ldc);
            double worst = 0;
            for (int m = 0; m < M; m++) {
                double ma, mr;
                tl_maxdiff(C + oc + (size_t)m * ldc, R + oc + (size_t)m * ldc, N, 6.0, &ma, &mr);
                worst = mr > worst ? mr : worst;
            }
            bad += worst > 2e-5;
        }
    CHECK(bad == 0, "%s ta %d tb %d: %d of %d grid items differ", precision_name(prec), ta, tb, bad, n0 * n1);
    free(A), free(B), free(C), free(R), free(Ah), free(Bh);
}

static void test_batched(void) {
    for (int t = 0; t < 4; t++) batched_case(PREC_FP32, t & 1, t >> 1);
    if (!have_bf16) {
        printf("SKIP test_batched in bf16: no bf16 matmul here\n");
        return;
    }
    gemm_set_precision(PREC_BF16);
    for (int t = 0; t < 4; t++) batched_case(PREC_BF16, t & 1, t >> 1);
    gemm_set_precision(PREC_FP32);
}

static void test_bf16_rounding(void) {
    /* 1 + 2^-8 is halfway between bf16 1 and 1 + 2^-7: ties go to even (1) */
    CHECK(bf16_round(1.0f + 1.0f / 256) == 0x3f80, "tie rounds to even: %04x", bf16_round(1.0f + 1.0f / 256));
    CHECK(bf16_round(1.0f + 3.0f / 256) == 0x3f82, "tie rounds to even: %04x", bf16_round(1.0f + 3.0f / 256));
    CHECK(bf16_round(1.0f + 1.0f / 200) == 0x3f81, "above the tie rounds up: %04x", bf16_round(1.0f + 1.0f / 200));
    CHECK(bf16_round(-2.0f) == 0xc000, "-2: %04x", bf16_round(-2.0f));
    CHECK(bf16_to_float(bf16_round(INFINITY)) == INFINITY, "inf stays inf");
    CHECK(isnan(bf16_to_float(bf16_round(NAN))), "NaN stays NaN");
    Precision p;
    CHECK(precision_parse("bf16", &p) == 0 && p == PREC_BF16, "parse bf16");
    CHECK(precision_parse("fp16", &p) != 0, "fp16 is refused");
}

int main(void) {
    have_bf16 = gemm_set_precision(PREC_BF16) == 0;
    gemm_set_precision(PREC_FP32);
    if (!have_bf16) printf("SKIP: bf16 products not checked on this CPU: %s\n", ml_last_error());
    RUN(test_bf16_rounding);
    RUN(test_fp32_is_sgemm);
    RUN(test_bf16_products);
    RUN(test_bf16_in_parallel);
    RUN(test_bf16_same_a);
    RUN(test_batched);
    TEST_MAIN_END();
}
