#include "core/gemm.h"
#include "core/util.h"
#include <cblas.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX512BF16__
#include <immintrin.h>
#endif

/* Row counts (and, for products that reduce over tokens, the reduction length) change every
 * step with the routing. A primitive per exact shape would JIT a kernel (~0.5 ms) for each
 * new count, so rows are split into a multiple of BLOCK plus one zero-padded BLOCK-row tail,
 * and token reductions are zero-padded to a multiple of BLOCK: a few shapes per product. */
#define BLOCK GEMM_ROW_BLOCK
#define CACHE_SLOTS 4096

static Precision g_prec = PREC_FP32;
static dnnl_engine_t g_engine;

/* The parameter buffer and its bf16 shadow (gemm_cast_weights). */
static const float *g_w;
static uint16_t *g_wbf;
static size_t g_wn, g_wcap;

typedef struct {
    int M, N, K, ta, lda, tb, ldb, ldc, beta;
    float alpha;
    /* batched products (gemm_batched): the grid and the strides, zero for a single product;
     * bf16: operands are bf16 (always, except batched fp32) */
    int nb[2], bf16;
    long sa[2], sb[2], sc[2];
} Key;

typedef struct {
    Key key;
    int used;
    dnnl_primitive_t prim;
    dnnl_memory_desc_t src, wei, dst, scratch;
    size_t scratch_size;
} Entry;

static Entry g_cache[CACHE_SLOTS];

/* Per-thread: products also run inside parallel loops, one per thread (expert slices, fp32 attention). */
typedef struct {
    dnnl_stream_t stream;
    uint16_t *a, *b;
    float *c;
    void *scratch;
    size_t a_cap, b_cap, c_cap, scratch_cap;
    /* what a holds: bf16 of src (ld) rows_in x n_in, zero-padded to rows x cols */
    const float *a_src;
    int a_ld, a_rows, a_cols, a_rows_in, a_n_in;
    int same_a; /* set by gemm_same_a for the next product only */
} Local;
static _Thread_local Local tl;

int precision_parse(const char *name, Precision *out) {
    if (strcmp(name, "fp32") == 0) *out = PREC_FP32;
    else if (strcmp(name, "bf16") == 0) *out = PREC_BF16;
    else return ml_fail("precision '%s' is not fp32 or bf16", name);
    return 0;
}

const char *precision_name(Precision p) { return p == PREC_BF16 ? "bf16" : "fp32"; }
Precision gemm_precision(void) { return g_prec; }

/* A rows x cols matrix with strides s0, s1, behind the key's batch grid when it has one. */
static void md2(dnnl_memory_desc_t *md, const Key *k, const long *sbatch, int rows, int cols, dnnl_data_type_t dt,
                int s0, int s1) {
    int nd = k->nb[0] ? 4 : 2, st;
    if (nd == 4) {
        dnnl_dims_t dims = {k->nb[0], k->nb[1], rows, cols}, strides = {sbatch[0], sbatch[1], s0, s1};
        st = dnnl_memory_desc_init_by_strides(md, 4, dims, dt, strides);
    } else {
        dnnl_dims_t dims = {rows, cols}, strides = {s0, s1};
        st = dnnl_memory_desc_init_by_strides(md, 2, dims, dt, strides);
    }
    if (st != dnnl_success) {
        fprintf(stderr, "moelab: oneDNN rejected a %dx%d memory descriptor\n", rows, cols);
        exit(2);
    }
}

/* Builds C[M,N] (ld ldc) = alpha A B + beta C over bf16 A [M,K] and B [K,N]; A stored as
 * [K, lda] rows when ta (oneDNN reads it transposed at full speed), else as [M, lda] rows;
 * B as [N, ldb] rows when tb, else as [K, ldb] rows. Returns 0 or a dnnl status. */
static int build(Entry *e, const Key *k) {
    dnnl_data_type_t in = k->bf16 ? dnnl_bf16 : dnnl_f32;
    if (k->ta) md2(&e->src, k, k->sa, k->M, k->K, in, 1, k->lda);
    else md2(&e->src, k, k->sa, k->M, k->K, in, k->lda, 1);
    if (k->tb) md2(&e->wei, k, k->sb, k->K, k->N, in, 1, k->ldb);
    else md2(&e->wei, k, k->sb, k->K, k->N, in, k->ldb, 1);
    md2(&e->dst, k, k->sc, k->M, k->N, dnnl_f32, k->ldc, 1);
    dnnl_primitive_attr_t attr;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_attr_create(&attr);
    dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (k->alpha != 1.0f) dnnl_primitive_attr_set_output_scales(attr, 1, 0, &k->alpha);
    if (k->beta) {
        dnnl_post_ops_create(&po);
        dnnl_post_ops_append_sum(po, 1.0f);
        dnnl_primitive_attr_set_post_ops(attr, po);
    }
    dnnl_matmul_desc_t desc;
    dnnl_primitive_desc_t pd = NULL;
    int st = g_engine ? dnnl_success : dnnl_engine_create(&g_engine, dnnl_cpu, 0);
    if (st == dnnl_success) st = dnnl_matmul_desc_init(&desc, &e->src, &e->wei, NULL, &e->dst);
    if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &desc, attr, g_engine, NULL);
    if (st == dnnl_success) {
        e->scratch = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        e->scratch_size = dnnl_memory_desc_get_size(&e->scratch);
        st = dnnl_primitive_create(&e->prim, pd);
        dnnl_primitive_desc_destroy(pd);
    }
    if (po) dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    return st;
}

static unsigned key_hash(const Key *k) {
    unsigned h = 2166136261u;
    const long v[19] = {k->M,     k->N,     k->K,     k->ta,    k->lda,   k->tb,    k->ldb,
                        k->ldc,   k->beta,  (long)(k->alpha * 65536.0f),        k->nb[0], k->nb[1],
                        k->bf16,  k->sa[0], k->sa[1], k->sb[0], k->sb[1], k->sc[0], k->sc[1]};
    for (int i = 0; i < 19; i++) h = (h ^ (unsigned)v[i]) * 16777619u;
    return h;
}

static int key_eq(const Key *a, const Key *b) {
    return a->M == b->M && a->N == b->N && a->K == b->K && a->ta == b->ta && a->lda == b->lda && a->tb == b->tb &&
           a->ldb == b->ldb && a->ldc == b->ldc && a->beta == b->beta && a->alpha == b->alpha &&
           a->nb[0] == b->nb[0] && a->nb[1] == b->nb[1] && a->bf16 == b->bf16 && a->sa[0] == b->sa[0] &&
           a->sa[1] == b->sa[1] && a->sb[0] == b->sb[0] && a->sb[1] == b->sb[1] && a->sc[0] == b->sc[0] &&
           a->sc[1] == b->sc[1];
}

/* The cached primitive for k; *own is set when the cache is full and the caller must free it. */
static Entry *lookup(const Key *k, Entry *spare, int *own) {
    Entry *found = NULL;
    int st = dnnl_success;
    *own = 0;
#pragma omp critical(moelab_gemm_cache)
    {
        unsigned h = key_hash(k) % CACHE_SLOTS;
        for (int i = 0; i < CACHE_SLOTS && !found; i++) {
            Entry *e = &g_cache[(h + i) % CACHE_SLOTS];
            if (e->used && key_eq(&e->key, k)) found = e;
            else if (!e->used) {
                e->key = *k;
                if ((st = build(e, k)) == dnnl_success) e->used = 1, found = e;
                break;
            }
        }
        if (!found && st == dnnl_success) {
            spare->key = *k;
            if ((st = build(spare, k)) == dnnl_success) found = spare, *own = 1;
        }
    }
    if (!found) {
        fprintf(stderr, "moelab: oneDNN could not build a %s matmul %dx%dx%d (status %d)\n", k->bf16 ? "bf16" : "fp32",
                k->M, k->N, k->K, st);
        exit(2);
    }
    return found;
}

static void *grow(void *p, size_t *cap, size_t bytes) {
    if (bytes <= *cap) return p;
    free(p);
    *cap = bytes + bytes / 4;
    return ml_malloc(*cap);
}

static void run(const Key *k, const void *a, const void *b, float *c) {
    Entry spare, *e;
    int own;
    e = lookup(k, &spare, &own);
    if (!tl.stream && dnnl_stream_create(&tl.stream, g_engine, dnnl_stream_default_flags) != dnnl_success) {
        fprintf(stderr, "moelab: cannot create a oneDNN stream\n");
        exit(2);
    }
    tl.scratch = grow(tl.scratch, &tl.scratch_cap, e->scratch_size ? e->scratch_size : 1);
    dnnl_memory_t m[4];
    dnnl_memory_create(&m[0], &e->src, g_engine, (void *)a);
    dnnl_memory_create(&m[1], &e->wei, g_engine, (void *)b);
    dnnl_memory_create(&m[2], &e->dst, g_engine, c);
    dnnl_memory_create(&m[3], &e->scratch, g_engine, tl.scratch);
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, m[0]}, {DNNL_ARG_WEIGHTS, m[1]}, {DNNL_ARG_DST, m[2]},
                               {DNNL_ARG_SCRATCHPAD, m[3]}};
    int st = dnnl_primitive_execute(e->prim, tl.stream, 4, args);
    if (st == dnnl_success) st = dnnl_stream_wait(tl.stream);
    for (int i = 0; i < 4; i++) dnnl_memory_destroy(m[i]);
    if (own) dnnl_primitive_destroy(e->prim);
    if (st != dnnl_success) {
        fprintf(stderr, "moelab: oneDNN matmul failed (status %d)\n", st);
        exit(2);
    }
}

/* d[0..n) = bf16(s[0..n)): one instruction per 32 values where the CPU has AVX512-BF16. */
static void cast_span(uint16_t *d, const float *s, int n) {
    int j = 0;
#ifdef __AVX512BF16__
    for (; j + 32 <= n; j += 32) {
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(s + j + 16), _mm512_loadu_ps(s + j));
        _mm512_storeu_si512((void *)(d + j), (__m512i)v);
    }
#endif
    for (; j < n; j++) d[j] = bf16_round(s[j]);
}

/* dst[r, 0..cols) = bf16(src[r, 0..n)), zero past n; rows >= rows_in are zero. */
static void cast_rows(uint16_t *dst, int rows, int cols, const float *src, int rows_in, int n, int ld) {
    int par = !omp_in_parallel() && (size_t)rows * cols > 65536;
#pragma omp parallel for schedule(static) if (par)
    for (int r = 0; r < rows; r++) {
        uint16_t *d = dst + (size_t)r * cols;
        int m = r < rows_in ? n : 0;
        cast_span(d, src + (size_t)r * ld, m);
        if (m < cols) memset(d + m, 0, (size_t)(cols - m) * sizeof(uint16_t));
    }
}

/* tl.a = bf16(src rows_in x n_in, ld), zero-padded to rows x cols; skipped when it already is. */
static void cast_a(const float *src, int ld, int rows, int cols, int rows_in, int n_in) {
    int same = tl.same_a && tl.a_src == src && tl.a_ld == ld && tl.a_rows == rows && tl.a_cols == cols &&
               tl.a_rows_in == rows_in && tl.a_n_in == n_in;
    tl.same_a = 0;
    if (same) return;
    tl.a = grow(tl.a, &tl.a_cap, (size_t)rows * cols * sizeof(uint16_t));
    cast_rows(tl.a, rows, cols, src, rows_in, n_in, ld);
    tl.a_src = src, tl.a_ld = ld, tl.a_rows = rows, tl.a_cols = cols, tl.a_rows_in = rows_in, tl.a_n_in = n_in;
}

void gemm_same_a(void) { tl.same_a = g_prec == PREC_BF16; }

static const uint16_t *shadow_of(const float *p) {
    if (!g_wbf || p < g_w || p >= g_w + g_wn) return NULL;
    return g_wbf + (p - g_w);
}

static void gemm_bf16_from_fp32(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                      int ldb, float beta, float *C, int ldc) {
    /* a transposed A is a token reduction (weight gradients): its length varies */
    int Kp = ta ? (K + BLOCK - 1) / BLOCK * BLOCK : K;
    int Mm = M / BLOCK * BLOCK, tail = M - Mm, Mp = Mm + (tail ? BLOCK : 0);
    /* A as stored (op(A)^T when ta), zero-padded to Mp x Kp */
    if (ta) cast_a(A, lda, Kp, Mp, K, M);
    else cast_a(A, lda, Mp, Kp, M, K);
    const uint16_t *b = Kp == K ? shadow_of(B) : NULL;
    int ldb_eff = ldb;
    if (!b) {
        if (tb) {
            tl.b = grow(tl.b, &tl.b_cap, (size_t)N * Kp * sizeof(uint16_t));
            cast_rows(tl.b, N, Kp, B, N, K, ldb);
            ldb_eff = Kp;
        } else {
            tl.b = grow(tl.b, &tl.b_cap, (size_t)Kp * N * sizeof(uint16_t));
            cast_rows(tl.b, Kp, N, B, K, N, ldb);
            ldb_eff = N;
        }
        b = tl.b;
    }
    Key k = {Mm, N, Kp, ta, ta ? Mp : Kp, tb, ldb_eff, ldc, beta != 0.0f, alpha, .bf16 = 1};
    if (Mm > 0) run(&k, tl.a, b, C);
    if (!tail) return;
    k.M = BLOCK, k.ldc = N, k.beta = 0;
    tl.c = grow(tl.c, &tl.c_cap, (size_t)BLOCK * N * sizeof(float));
    run(&k, ta ? tl.a + Mm : tl.a + (size_t)Mm * Kp, b, tl.c);
    for (int r = 0; r < tail; r++) {
        float *dst = C + (size_t)(Mm + r) * ldc;
        const float *src = tl.c + (size_t)r * N;
        if (beta != 0.0f)
            for (int j = 0; j < N; j++) dst[j] += src[j];
        else memcpy(dst, src, (size_t)N * sizeof(float));
    }
}

/* oneDNN's sgemm, not OpenBLAS: Debian's OpenBLAS 0.3.21 runs its AVX2 (Haswell) kernels on
 * AVX-512 Zen 4, and oneDNN's AVX-512 sgemm measured 1.4-2x faster on the model's shapes
 * (`moelab bench` prints both peaks). */
void gemm_fp32(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
               float beta, float *C, int ldc) {
    tl.same_a = 0;
    if (M <= 0 || N <= 0) return;
    if (dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) != dnnl_success)
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A,
                    lda, B, ldb, beta, C, ldc);
}

void gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
          float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) {
        tl.same_a = 0;
        return;
    }
    if (g_prec == PREC_FP32 || K <= 0) {
        gemm_fp32(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    gemm_bf16_from_fp32(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_batched(const GemmBatch *g, int ta, int tb, int M, int N, int K, float alpha, const void *A, int lda,
                  const void *B, int ldb, float beta, float *C, int ldc) {
    if (g_prec == PREC_FP32 && g->n[0] == 1 && g->n[1] == 1) {
        gemm_fp32(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    tl.same_a = 0;
    if (M <= 0 || N <= 0 || g->n[0] <= 0 || g->n[1] <= 0) return;
    Key k = {M, N, K, ta, lda, tb, ldb, ldc, beta != 0.0f, alpha, {g->n[0], g->n[1]}, g_prec == PREC_BF16,
             {g->sa[0], g->sa[1]}, {g->sb[0], g->sb[1]}, {g->sc[0], g->sc[1]}};
    run(&k, A, B, C);
}

void gemm_bf16(int ta, int tb, int M, int N, int K, float alpha, const uint16_t *A, int lda, const uint16_t *B, int ldb,
               float beta, float *C, int ldc) {
    tl.same_a = 0;
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* an empty sum */
        if (beta == 0.0f)
            for (int i = 0; i < M; i++) memset(C + (size_t)i * ldc, 0, (size_t)N * sizeof(float));
        return;
    }
    Key k = {M, N, K, ta, lda, tb, ldb, ldc, beta != 0.0f, alpha, .bf16 = 1};
    run(&k, A, B, C);
}

const uint16_t *gemm_weights_bf16(const float *w) { return g_prec == PREC_BF16 ? shadow_of(w) : NULL; }

void gemm_round(uint16_t *dst, const float *src, size_t n) {
    size_t chunk = 1 << 14, nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (nchunks > 1 && !omp_in_parallel())
    for (size_t c = 0; c < nchunks; c++) {
        size_t i0 = c * chunk, len = n - i0 < chunk ? n - i0 : chunk;
        cast_span(dst + i0, src + i0, (int)len);
    }
}

void gemm_round_row(uint16_t *dst, const float *src, int n) { cast_span(dst, src, n); }

uint16_t *gemm_scratch_bf16(int slot, size_t n) {
    static _Thread_local uint16_t *buf[GEMM_SCRATCH_SLOTS];
    static _Thread_local size_t cap[GEMM_SCRATCH_SLOTS];
    buf[slot] = grow(buf[slot], &cap[slot], (n ? n : 1) * sizeof(uint16_t));
    return buf[slot];
}

void gemm_cast_weights(const float *w, size_t n) {
    if (g_prec != PREC_BF16) return;
    if (n > g_wcap) {
        free(g_wbf);
        g_wbf = ml_malloc(n * sizeof(uint16_t));
        g_wcap = n;
    }
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) g_wbf[i] = bf16_round(w[i]);
    g_w = w;
    g_wn = n;
}

void gemm_forget_weights(const float *w) {
    if (w && w == g_w) g_w = NULL, g_wn = 0;
}

/* A small bf16 product: refuses when oneDNN has no bf16 matmul for this CPU. */
static int probe_bf16(void) {
    if (!g_engine && dnnl_engine_create(&g_engine, dnnl_cpu, 0) != dnnl_success)
        return ml_fail("cannot create a oneDNN CPU engine");
    Entry e;
    Key k = {BLOCK, BLOCK, BLOCK, 0, BLOCK, 1, BLOCK, BLOCK, 0, 1.0f, .bf16 = 1};
    int st = build(&e, &k);
    if (st == dnnl_unimplemented)
        return ml_fail("--precision bf16 needs a CPU with AVX-512 (oneDNN has no bf16 matmul below it; "
                       "ONEDNN_MAX_CPU_ISA may be limiting it); use --precision fp32");
    if (st != dnnl_success) return ml_fail("oneDNN cannot build a bf16 matmul (status %d)", st);
    dnnl_primitive_destroy(e.prim);
    return 0;
}

int gemm_set_precision(Precision p) {
    if (p == PREC_BF16 && probe_bf16()) return -1;
    g_prec = p;
    return 0;
}

int gemm_set_precision_name(const char *name) {
    Precision p;
    return precision_parse(name, &p) ? -1 : gemm_set_precision(p);
}
