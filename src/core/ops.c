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
 * 1e-5 parity. */
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
            cs[((size_t)t * half + i) * 2] = (float)cos(ang);
            cs[((size_t)t * half + i) * 2 + 1] = (float)sin(ang);
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
        const float *c = cs + (size_t)(r % T) * half * 2;
        for (int part = 0; part < 2; part++) { /* q, then k */
            float *base = qkv + (size_t)r * 3 * D + part * D;
            for (int h = 0; h < NH; h++) {
                float *v = base + h * hd;
                for (int i = 0; i < half; i++) {
                    float co = c[2 * i], si = sign * c[2 * i + 1];
                    float a = v[i], b = v[i + half];
                    v[i] = a * co - b * si;
                    v[i + half] = b * co + a * si;
                }
            }
        }
    }
}

/* Causal: row block [i0, i1) of the scores needs keys 0..i1-1 only, so in fp32 the products
 * run per block of 64 query rows over the keys up to the block's end (with T = 256, 10/16 of
 * the full square: attention 20% faster). In bf16 each product also rounds its operands and
 * pays oneDNN's per-call cost, which at these sizes outweighs the skipped work (measured 25%
 * slower tiled), so there the block is all of T. Entries above the diagonal are stored as zeros. */
static int attention_tile(int T) { return gemm_precision() == PREC_BF16 ? T : 64; }

void attention_forward(float *out, float *att, const float *qkv, int B, int T, int D, int NH) {
    int hd = D / NH, ld = 3 * D, tile = attention_tile(T);
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel for schedule(dynamic, 1)
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH;
        const float *q = qkv + (size_t)b * T * ld + h * hd, *k = q + D, *v = q + 2 * D;
        float *P = att + (size_t)bh * T * T, *o = out + (size_t)b * T * D + h * hd;
        for (int i0 = 0; i0 < T; i0 += tile) {
            int i1 = i0 + tile < T ? i0 + tile : T, m = i1 - i0;
            gemm(0, 1, m, i1, hd, scale, q + (size_t)i0 * ld, ld, k, ld, 0.0f, P + (size_t)i0 * T, T);
            for (int i = i0; i < i1; i++) {
                float *row = P + (size_t)i * T, mx = -INFINITY;
                for (int j = 0; j <= i; j++) mx = vmaxf(mx, row[j]);
                for (int j = 0; j <= i; j++) row[j] = vexpf(row[j] - mx);
                float inv = 1.0f / vsumf(row, i + 1);
                for (int j = 0; j <= i; j++) row[j] *= inv;
                for (int j = i + 1; j < T; j++) row[j] = 0.0f;
            }
            gemm(0, 0, m, hd, i1, 1.0f, P + (size_t)i0 * T, T, v, ld, 0.0f, o + (size_t)i0 * D, D);
        }
    }
}

void attention_backward(float *dqkv, float *datt, const float *dout, const float *qkv, const float *att,
                        int B, int T, int D, int NH) {
    int hd = D / NH, ld = 3 * D, tile = attention_tile(T);
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel for schedule(dynamic, 1)
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH;
        size_t off = (size_t)b * T * ld + h * hd;
        const float *q = qkv + off, *k = q + D, *v = q + 2 * D;
        float *dq = dqkv + off, *dk = dq + D, *dv = dq + 2 * D;
        const float *P = att + (size_t)bh * T * T, *dO = dout + (size_t)b * T * D + h * hd;
        float *dP = datt + (size_t)bh * T * T;
        for (int i0 = 0; i0 < T; i0 += tile) {
            int i1 = i0 + tile < T ? i0 + tile : T, m = i1 - i0;
            const float *Pb = P + (size_t)i0 * T, *dOb = dO + (size_t)i0 * D;
            float *dPb = dP + (size_t)i0 * T;
            /* dP = dO V^T ; dV += P^T dO */
            gemm(0, 1, m, i1, hd, 1.0f, dOb, D, v, ld, 0.0f, dPb, T);
            gemm(1, 0, i1, hd, m, 1.0f, Pb, T, dOb, D, 1.0f, dv, ld);
            /* softmax backward, scaled: dS = P (dP - sum_j P dP) * scale */
            for (int i = i0; i < i1; i++) {
                const float *p = P + (size_t)i * T;
                float *d = dP + (size_t)i * T, dot = vdotf(p, d, i + 1);
                for (int j = 0; j <= i; j++) d[j] = p[j] * (d[j] - dot) * scale;
                for (int j = i + 1; j < i1; j++) d[j] = 0.0f; /* read by the block's products below */
            }
            /* dQ += dS K ; dK += dS^T Q */
            gemm(0, 0, m, hd, i1, 1.0f, dPb, T, k, ld, 1.0f, dq + (size_t)i0 * ld, ld);
            gemm(1, 0, i1, hd, m, 1.0f, dPb, T, q + (size_t)i0 * ld, ld, 1.0f, dk, ld);
        }
    }
}

static inline float sigmoidf(float z) { return 1.0f / (1.0f + vexpf(-z)); }

void swiglu_forward(float *y, float *h, float *a, const float *x, const float *w_gu, const float *w_d, int n, int D, int F) {
    if (n <= 0) return;
    matmul_forward(h, x, w_gu, n, D, 2 * F, 0);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const float *hi = h + (size_t)i * 2 * F;
        float *ai = a + (size_t)i * F;
        for (int j = 0; j < F; j++) {
            float g = hi[j];
            ai[j] = g * sigmoidf(g) * hi[F + j];
        }
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
        const float *hi = h + (size_t)i * 2 * F, *dai = da + (size_t)i * F;
        float *dhi = dh + (size_t)i * 2 * F;
        for (int j = 0; j < F; j++) {
            float g = hi[j], u = hi[F + j], s = sigmoidf(g);
            dhi[j] = dai[j] * u * s * (1.0f + g * (1.0f - s));
            dhi[F + j] = dai[j] * g * s;
        }
    }
    /* dx (+)= dh W_gu ; dW_gu += dh^T x */
    gemm(0, 0, n, D, 2 * F, 1.0f, dh, 2 * F, w_gu, D, accumulate ? 1.0f : 0.0f, dx, D);
    gemm_same_a();
    matmul_backward(NULL, dw_gu, dh, x, w_gu, n, D, 2 * F);
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
