#include "core/ops.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "core/gemm.h"
#include "core/vmath.h"
#include "core/util.h"

static void matmul_fwd(int fp32, float *out, const float *inp, const float *w, int n, int in, int outd, int accumulate) {
    if (n <= 0) return;
    (fp32 ? gemm_fp32 : gemm)(0, 1, n, outd, in, 1.0f, inp, in, w, in, accumulate ? 1.0f : 0.0f, out, outd);
}

static void matmul_bwd(int fp32, float *dinp, float *dw, const float *dout, const float *inp, const float *w, int n,
                       int in, int outd) {
    if (n <= 0) return;
    void (*mm)(int, int, int, int, int, float, const float *, int, const float *, int, float, float *, int) =
        fp32 ? gemm_fp32 : gemm;
    if (dinp) mm(0, 0, n, in, outd, 1.0f, dout, outd, w, in, 1.0f, dinp, in);
    if (dinp && dw) gemm_same_a();
    if (dw) mm(1, 0, outd, in, n, 1.0f, dout, outd, inp, in, 1.0f, dw, in);
}

void matmul_forward(float *out, const float *inp, const float *w, int n, int in, int outd, int accumulate) {
    matmul_fwd(0, out, inp, w, n, in, outd, accumulate);
}

void matmul_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w, int n, int in, int outd) {
    matmul_bwd(0, dinp, dw, dout, inp, w, n, in, outd);
}

void matmul_forward_fp32(float *out, const float *inp, const float *w, int n, int in, int outd, int accumulate) {
    matmul_fwd(1, out, inp, w, n, in, outd, accumulate);
}

void matmul_backward_fp32(float *dinp, float *dw, const float *dout, const float *inp, const float *w, int n, int in,
                          int outd) {
    matmul_bwd(1, dinp, dw, dout, inp, w, n, in, outd);
}

void rmsnorm_forward(float *y, float *rstd, const float *x, const float *w, int n, int d, float eps) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * d;
        float *yi = y + (size_t)i * d;
        float r = 1.0f / sqrtf(vdotf(xi, xi, d) / d + eps);
        rstd[i] = r;
        for (int j = 0; j < d; j++) yi[j] = xi[j] * r * w[j];
    }
}

void rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd, int n, int d) {
    /* dx = r*(w*dy) - r^3/d * x * sum(w*dy*x); dw = sum_rows dy*x*r.
     * dw is reduced per thread in fixed row blocks so the sum order depends only on the thread count. */
    int nt = omp_get_max_threads();
    float *part = ml_calloc((size_t)nt * d, sizeof(float));
#pragma omp parallel num_threads(nt)
    {
        int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        float *pw = part + (size_t)tid * d;
        int lo = (int)((long)n * tid / nth), hi = (int)((long)n * (tid + 1) / nth);
        for (int i = lo; i < hi; i++) {
            const float *xi = x + (size_t)i * d, *dyi = dy + (size_t)i * d;
            float *dxi = dx + (size_t)i * d;
            float r = rstd[i], c = r * r * r * vdot3f(w, dyi, xi, d) / d;
            for (int j = 0; j < d; j++) {
                dxi[j] += r * w[j] * dyi[j] - c * xi[j];
                pw[j] += dyi[j] * xi[j] * r;
            }
        }
    }
    for (int t = 0; t < nt; t++)
        for (int j = 0; j < d; j++) dw[j] += part[(size_t)t * d + j];
    free(part);
}

/* cos/sin per (position, frequency), kept while T, head size, theta and pos0 stay the same:
 * training and evaluation reuse one table for every layer, forward and backward. Called from
 * serial code only. Angles in double: p*f in float would err by ~p*1e-7 radians, visible at
 * 1e-5 parity. Row t holds half cosines then half sines, so the rotation loop reads both
 * with unit stride and vectorises. */
static const float *rope_table(int T, int hd, float theta, int pos0) {
    static float *cs;
    static int kT = -1, khd, kpos0;
    static float ktheta;
    int half = hd / 2;
    if (kT == T && khd == hd && ktheta == theta && kpos0 == pos0) return cs;
    free(cs);
    cs = ml_malloc((size_t)T * half * 2 * sizeof(float));
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            double ang = (double)(pos0 + t) * pow((double)theta, -2.0 * i / hd);
            cs[(size_t)t * 2 * half + i] = (float)cos(ang);
            cs[(size_t)t * 2 * half + half + i] = (float)sin(ang);
        }
    kT = T, khd = hd, ktheta = theta, kpos0 = pos0;
    return cs;
}

void rope_apply(float *qkv, int B, int T, int D, int NH, float theta, int pos0, int inverse) {
    int hd = D / NH, half = hd / 2;
    const float *cs = rope_table(T, hd, theta, pos0);
    float sign = inverse ? -1.0f : 1.0f;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < B * T; r++) {
        const float *co = cs + (size_t)(r % T) * 2 * half, *si = co + half;
        for (int part = 0; part < 2; part++) { /* q, then k */
            float *base = qkv + (size_t)r * 3 * D + part * D;
            for (int h = 0; h < NH; h++) {
                float *v = base + h * hd;
                for (int i = 0; i < half; i++) {
                    float a = v[i], b = v[i + half], s = sign * si[i];
                    v[i] = a * co[i] - b * s;
                    v[i + half] = b * co[i] + a * s;
                }
            }
        }
    }
}

/* Causal: row block [i0, i1) of the scores needs keys 0..i1-1 only, so the products run per
 * block of 64 query rows over the keys up to the block's end (with T = 256, 10/16 of the full
 * square). Entries above the diagonal are stored as zeros.
 * fp32: a thread takes one (batch, head) at a time, whose score block stays in its cache
 * between the products and the softmax. bf16: oneDNN's per-call cost and the rounding of
 * operands per call made that 25% slower than fp32, so there each product is one call over
 * every batch and head (a GemmBatch grid), q, k, v and dout are rounded once per layer, and
 * the softmax loops write the bf16 P and dS the products read. */
#define ATT_TILE 64

/* One group of (batch, head) pairs: all of them (bf16) or one (fp32). */
typedef struct {
    int B, T, D, NH, hd, ld, bf, nb, nh; /* nb x nh: the group's grid */
    size_t es;                           /* bytes per operand element: 4 (fp32) or 2 (bf16) */
    size_t tok, qk, sc;                  /* element offsets of the group: out/dout rows, qkv rows, scores */
} AttGroup;

/* One group runs on the calling thread, outside any parallel region, so that oneDNN and
 * the softmax loops get every thread (inside even a one-thread region they get one). */
static int att_groups(int B, int NH) { return gemm_precision() == PREC_BF16 ? 1 : B * NH; }

static AttGroup att_group(int B, int T, int D, int NH, int g) {
    AttGroup s = {B, T, D, NH, D / NH, 3 * D, gemm_precision() == PREC_BF16, B, NH, 0, 0, 0, 0};
    s.es = s.bf ? sizeof(uint16_t) : sizeof(float);
    if (!s.bf) {
        int b = g / NH, h = g % NH;
        s.nb = s.nh = 1;
        s.tok = (size_t)b * T * D + (size_t)h * s.hd;
        s.qk = (size_t)b * T * s.ld + (size_t)h * s.hd;
        s.sc = (size_t)g * T * T;
    }
    return s;
}

/* The grid of a product whose operands are token rows (ld ldx) or score rows (ldx 0). */
static GemmBatch grid(const AttGroup *s, int lda, int ldb, int ldc) {
    long tt = (long)s->T * s->T;
    GemmBatch g = {{s->nb, s->nh}, {0, 0}, {0, 0}, {0, 0}};
    long *st[3] = {g.sa, g.sb, g.sc};
    int ld[3] = {lda, ldb, ldc};
    for (int i = 0; i < 3; i++) {
        st[i][0] = ld[i] ? (long)s->T * ld[i] : (long)s->NH * tt;
        st[i][1] = ld[i] ? s->hd : tt;
    }
    return g;
}

/* Operand element `off` of a buffer in the precision's type. */
static const void *at(const void *base, const AttGroup *s, size_t off) { return (const char *)base + off * s->es; }

/* x [n] as an operand: x itself in fp32, its bf16 rounding (in slot's scratch) in bf16. */
static const void *operand(int slot, const float *x, size_t n) {
    if (gemm_precision() != PREC_BF16) return x;
    uint16_t *h = gemm_scratch_bf16(slot, n);
    gemm_round(h, x, n);
    return h;
}

/* Row r of the group's block [i0, i1): causal softmax in place over the scores S (the
 * group's first); ph, when bf16, gets the row rounded up to i1 for the P V product. */
static inline void softmax_fwd_row(const AttGroup *s, float *S, uint16_t *ph, int i0, int i1, int r) {
    int m = i1 - i0, i = i0 + r % m, T = s->T;
    size_t off = (size_t)(r / m) * T * T + (size_t)i * T;
    float *row = S + off, mx = -INFINITY;
    for (int j = 0; j <= i; j++) mx = vmaxf(mx, row[j]);
    for (int j = 0; j <= i; j++) row[j] = vexpf(row[j] - mx);
    float inv = 1.0f / vsumf(row, i + 1);
    for (int j = 0; j <= i; j++) row[j] *= inv;
    for (int j = i + 1; j < T; j++) row[j] = 0.0f;
    if (ph) gemm_round_row(ph + s->sc + off, row, i1);
}

/* Softmax backward of row r, scaled: dS = P (dP - sum_j P dP) * scale, in place over dP;
 * in bf16 dsh and ph get dS and P rounded, up to i1, for the products that follow. */
static inline void softmax_bwd_row(const AttGroup *s, const float *P, float *dP, uint16_t *ph, uint16_t *dsh,
                                   float scale, int i0, int i1, int r) {
    int m = i1 - i0, i = i0 + r % m, T = s->T;
    size_t off = (size_t)(r / m) * T * T + (size_t)i * T;
    const float *p = P + off;
    float *d = dP + off, dot = vdotf(p, d, i + 1);
    for (int j = 0; j <= i; j++) d[j] = p[j] * (d[j] - dot) * scale;
    for (int j = i + 1; j < i1; j++) d[j] = 0.0f; /* read by the block's products */
    if (dsh) gemm_round_row(dsh + s->sc + off, d, i1), gemm_round_row(ph + s->sc + off, p, i1);
}

static void attention_forward_group(const AttGroup *sp, float *out, float *att, const void *qkv_op, uint16_t *ph) {
    AttGroup s = *sp;
    int T = s.T, D = s.D;
    float scale = 1.0f / sqrtf((float)s.hd);
    const void *q = at(qkv_op, &s, s.qk), *k = at(q, &s, D), *v = at(q, &s, 2 * D);
    float *S = att + s.sc;
    GemmBatch qk = grid(&s, s.ld, s.ld, 0), pv = grid(&s, 0, s.ld, D);
    for (int i0 = 0; i0 < T; i0 += ATT_TILE) {
        int i1 = i0 + ATT_TILE < T ? i0 + ATT_TILE : T, m = i1 - i0;
        gemm_batched(&qk, 0, 1, m, i1, s.hd, scale, at(q, &s, (size_t)i0 * s.ld), s.ld, k, s.ld, 0.0f,
                     S + (size_t)i0 * T, T);
        int rows = s.nb * s.nh * m;
        if (rows > m) {
#pragma omp parallel for schedule(static)
            for (int r = 0; r < rows; r++) softmax_fwd_row(&s, S, ph, i0, i1, r);
        } else {
            for (int r = 0; r < rows; r++) softmax_fwd_row(&s, S, ph, i0, i1, r);
        }
        const void *P = ph ? (const void *)(ph + s.sc) : S;
        gemm_batched(&pv, 0, 0, m, s.hd, i1, 1.0f, at(P, &s, (size_t)i0 * T), T, v, s.ld, 0.0f,
                     out + s.tok + (size_t)i0 * D, D);
    }
}

void attention_forward(float *out, float *att, const float *qkv, int B, int T, int D, int NH) {
    const void *qkv_op = operand(0, qkv, (size_t)B * T * 3 * D);
    uint16_t *ph = gemm_precision() == PREC_BF16 ? gemm_scratch_bf16(1, (size_t)B * NH * T * T) : NULL;
    int groups = att_groups(B, NH);
    if (groups == 1) {
        AttGroup s = att_group(B, T, D, NH, 0);
        attention_forward_group(&s, out, att, qkv_op, ph);
        return;
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (int gi = 0; gi < groups; gi++) {
        AttGroup s = att_group(B, T, D, NH, gi);
        attention_forward_group(&s, out, att, qkv_op, ph);
    }
}

/* ph and dsh: bf16 P and dS, rounded by the softmax backward loop (NULL in fp32) */
static void attention_backward_group(const AttGroup *sp, float *dqkv, float *datt, const void *dout_op,
                                     const void *qkv_op, const float *att, uint16_t *ph, uint16_t *dsh) {
    AttGroup s = *sp;
    int T = s.T, D = s.D, bf = s.bf;
    float scale = 1.0f / sqrtf((float)s.hd);
    const void *q = at(qkv_op, &s, s.qk), *k = at(q, &s, D), *v = at(q, &s, 2 * D), *dO = at(dout_op, &s, s.tok);
    const float *P = att + s.sc;
    float *dP = datt + s.sc, *dq = dqkv + s.qk, *dk = dq + D, *dv = dq + 2 * D;
    const void *Pop = bf ? (const void *)(ph + s.sc) : P, *dS = bf ? (const void *)(dsh + s.sc) : dP;
    GemmBatch dpg = grid(&s, D, s.ld, 0), dvg = grid(&s, 0, D, s.ld), dqg = grid(&s, 0, s.ld, s.ld);
    for (int i0 = 0; i0 < T; i0 += ATT_TILE) {
        int i1 = i0 + ATT_TILE < T ? i0 + ATT_TILE : T, m = i1 - i0;
        size_t blk = (size_t)i0 * T;
        /* dP = dO V^T */
        gemm_batched(&dpg, 0, 1, m, i1, s.hd, 1.0f, at(dO, &s, (size_t)i0 * D), D, v, s.ld, 0.0f, dP + blk, T);
        int rows = s.nb * s.nh * m;
        if (rows > m) {
#pragma omp parallel for schedule(static)
            for (int r = 0; r < rows; r++) softmax_bwd_row(&s, P, dP, ph, dsh, scale, i0, i1, r);
        } else {
            for (int r = 0; r < rows; r++) softmax_bwd_row(&s, P, dP, ph, dsh, scale, i0, i1, r);
        }
        /* dV += P^T dO ; dQ += dS K ; dK += dS^T Q */
        gemm_batched(&dvg, 1, 0, i1, s.hd, m, 1.0f, at(Pop, &s, blk), T, at(dO, &s, (size_t)i0 * D), D, 1.0f, dv,
                     s.ld);
        gemm_batched(&dqg, 0, 0, m, s.hd, i1, 1.0f, at(dS, &s, blk), T, k, s.ld, 1.0f, dq + (size_t)i0 * s.ld,
                     s.ld);
        gemm_batched(&dqg, 1, 0, i1, s.hd, m, 1.0f, at(dS, &s, blk), T, at(q, &s, (size_t)i0 * s.ld), s.ld, 1.0f,
                     dk, s.ld);
    }
}

void attention_backward(float *dqkv, float *datt, const float *dout, const float *qkv, const float *att,
                        int B, int T, int D, int NH) {
    int bf = gemm_precision() == PREC_BF16;
    const void *qkv_op = operand(0, qkv, (size_t)B * T * 3 * D), *dout_op = operand(2, dout, (size_t)B * T * D);
    uint16_t *ph = bf ? gemm_scratch_bf16(1, (size_t)B * NH * T * T) : NULL;
    uint16_t *dsh = bf ? gemm_scratch_bf16(3, (size_t)B * NH * T * T) : NULL;
    int groups = att_groups(B, NH);
    if (groups == 1) {
        AttGroup s = att_group(B, T, D, NH, 0);
        attention_backward_group(&s, dqkv, datt, dout_op, qkv_op, att, ph, dsh);
        return;
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (int gi = 0; gi < groups; gi++) {
        AttGroup s = att_group(B, T, D, NH, gi);
        attention_backward_group(&s, dqkv, datt, dout_op, qkv_op, att, ph, dsh);
    }
}

/* a = silu(g) u over n entries of a row's gate and up halves */
static inline void swiglu_span(float *a, const float *g, const float *u, int n) {
    for (int j = 0; j < n; j++) a[j] = g[j] * vsigmoidf(g[j]) * u[j];
}

/* its backward: dg, du from da */
static inline void swiglu_span_backward(float *dg, float *du, const float *g, const float *u, const float *da, int n) {
    for (int j = 0; j < n; j++) {
        float s = vsigmoidf(g[j]);
        dg[j] = da[j] * u[j] * s * (1.0f + g[j] * (1.0f - s));
        du[j] = da[j] * g[j] * s;
    }
}

void swiglu_forward(float *y, float *h, float *a, const float *x, const float *w_gu, const float *w_d, int n, int D, int F) {
    if (n <= 0) return;
    matmul_forward(h, x, w_gu, n, D, 2 * F, 0);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const float *hi = h + (size_t)i * 2 * F;
        swiglu_span(a + (size_t)i * F, hi, hi + F, F);
    }
    matmul_forward(y, a, w_d, n, F, D, 0);
}

void swiglu_backward(float *dx, float *dw_gu, float *dw_d, float *dh, float *da, const float *dy, const float *x,
                     const float *h, const float *a, const float *w_gu, const float *w_d, int n, int D, int F,
                     int accumulate) {
    if (n <= 0) return;
    /* da = dy W_d ; dW_d += dy^T a */
    gemm(0, 0, n, F, D, 1.0f, dy, D, w_d, F, 0.0f, da, F);
    gemm_same_a();
    matmul_backward(NULL, dw_d, dy, a, w_d, n, F, D);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const float *hi = h + (size_t)i * 2 * F;
        float *dhi = dh + (size_t)i * 2 * F;
        swiglu_span_backward(dhi, dhi + F, hi, hi + F, da + (size_t)i * F, F);
    }
    /* dx (+)= dh W_gu ; dW_gu += dh^T x */
    gemm(0, 0, n, D, 2 * F, 1.0f, dh, 2 * F, w_gu, D, accumulate ? 1.0f : 0.0f, dx, D);
    gemm_same_a();
    matmul_backward(NULL, dw_gu, dh, x, w_gu, n, D, 2 * F);
}

/* The bf16 variants compute a row in fp32 pieces of this many values, then round them. */
#define SPAN 256

void swiglu_forward_bf16(float *y, float *h, uint16_t *a, const uint16_t *x, const float *w_gu, const float *w_d,
                         int n, int D, int F) {
    if (n <= 0) return;
    gemm_bf16(0, 1, n, 2 * F, D, 1.0f, x, D, gemm_weights_bf16(w_gu), D, 0.0f, h, 2 * F);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const float *hi = h + (size_t)i * 2 * F;
        float buf[SPAN];
        for (int j = 0; j < F; j += SPAN) {
            int len = F - j < SPAN ? F - j : SPAN;
            swiglu_span(buf, hi + j, hi + F + j, len);
            gemm_round_row(a + (size_t)i * F + j, buf, len);
        }
    }
    gemm_bf16(0, 1, n, D, F, 1.0f, a, F, gemm_weights_bf16(w_d), F, 0.0f, y, D);
}

void swiglu_backward_bf16(float *dx, float *dw_gu, float *dw_d, uint16_t *dh, float *da, const uint16_t *dyh,
                          const uint16_t *x, const float *h, const uint16_t *a, const float *w_gu, const float *w_d,
                          int n, int D, int F) {
    if (n <= 0) return;
    /* da = dy W_d ; dW_d += dy^T a */
    gemm_bf16(0, 0, n, F, D, 1.0f, dyh, D, gemm_weights_bf16(w_d), F, 0.0f, da, F);
    gemm_bf16(1, 0, D, F, n, 1.0f, dyh, D, a, F, 1.0f, dw_d, F);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const float *hi = h + (size_t)i * 2 * F, *dai = da + (size_t)i * F;
        uint16_t *dhi = dh + (size_t)i * 2 * F;
        float bg[SPAN], bu[SPAN];
        for (int j = 0; j < F; j += SPAN) {
            int len = F - j < SPAN ? F - j : SPAN;
            swiglu_span_backward(bg, bu, hi + j, hi + F + j, dai + j, len);
            gemm_round_row(dhi + j, bg, len);
            gemm_round_row(dhi + F + j, bu, len);
        }
    }
    /* dx = dh W_gu ; dW_gu += dh^T x */
    gemm_bf16(0, 0, n, D, 2 * F, 1.0f, dh, 2 * F, gemm_weights_bf16(w_gu), D, 0.0f, dx, D);
    gemm_bf16(1, 0, 2 * F, D, n, 1.0f, dh, 2 * F, x, D, 1.0f, dw_gu, D);
}

float crossentropy_forward(float *losses, const float *logits, const int *targets, int n, int V) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        if (targets[i] < 0) {
            losses[i] = 0.0f;
            continue;
        }
        const float *l = logits + (size_t)i * V;
        float mx = -INFINITY;
        for (int j = 0; j < V; j++) mx = vmaxf(mx, l[j]);
        double s = 0.0;
        for (int j = 0; j < V; j++) s += vexpf(l[j] - mx);
        losses[i] = (float)(mx + log(s) - l[targets[i]]);
    }
    /* Serial sum: an OpenMP float reduction combines in a run-dependent order. */
    double total = 0.0;
    int valid = 0;
    for (int i = 0; i < n; i++)
        if (targets[i] >= 0) {
            total += losses[i];
            valid++;
        }
    return valid ? (float)(total / valid) : 0.0f;
}

void crossentropy_backward(float *dlogits, const float *logits, const int *targets, int n, int V, float scale) {
    int valid = 0;
    for (int i = 0; i < n; i++) valid += targets[i] >= 0;
    float c = valid ? scale / valid : 0.0f;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        float *d = dlogits + (size_t)i * V;
        if (targets[i] < 0) {
            memset(d, 0, sizeof(float) * V);
            continue;
        }
        const float *l = logits + (size_t)i * V;
        float mx = -INFINITY, s = 0.0f;
        for (int j = 0; j < V; j++) mx = vmaxf(mx, l[j]);
        for (int j = 0; j < V; j++) d[j] = vexpf(l[j] - mx);
        for (int j = 0; j < V; j++) s += d[j];
        float inv = c / s;
        for (int j = 0; j < V; j++) d[j] *= inv;
        d[targets[i]] -= c;
    }
}

void softmax_rows(float *out, const float *in, int n, int d) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const float *x = in + (size_t)i * d;
        float *y = out + (size_t)i * d, mx = -INFINITY, s = 0.0f;
        for (int j = 0; j < d; j++) mx = vmaxf(mx, x[j]);
        for (int j = 0; j < d; j++) y[j] = vexpf(x[j] - mx);
        for (int j = 0; j < d; j++) s += y[j];
        float inv = 1.0f / s;
        for (int j = 0; j < d; j++) y[j] *= inv;
    }
}

void add_inplace(float *y, const float *x, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

void add_into(float *y, const float *a, const float *b, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void zero_floats(float *y, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) y[i] = 0.0f;
}

void copy_floats(float *y, const float *x, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) y[i] = x[i];
}
