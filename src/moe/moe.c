#include "moe/moe.h"
#include "core/gemm.h"
#include "core/ops.h"
#include "core/util.h"
#include "core/vmath.h"
#include "moe/experts.h"
#include "moe/moe_ep.h"
#include <stdlib.h>
#include <string.h>

void moe_acts_free(MoEActs *a) {
    routing_free(&a->rt);
    void *bufs[] = {a->counts, a->offsets, a->pos, a->tok_start, a->tok_pairs, a->row_pairs, a->xg, a->h, a->a, a->y,
                    a->sh_h, a->sh_a, a->sh_y, a->dy, a->dxg, a->dh, a->da, a->dgate, a->sh_dh, a->sh_da,
                    a->xgh, a->ah, a->dhh, a->dyh};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    moe_ep_free(a->ep);
    memset(a, 0, sizeof *a);
}

static void *grow(void *p, size_t n, size_t elem) { return ml_realloc(p, (n ? n : 1) * elem); }

/* Buffers grow to the largest routing seen and are kept for the backward. */
static void reserve(MoEActs *a, const ModelConfig *m, int T, int P) {
    int D = m->d_model, F = m->d_expert, Fs = m->n_shared * m->d_expert;
    if ((size_t)P > a->cap_pairs) {
        size_t n = P;
        a->pos = grow(a->pos, n, sizeof(int));
        a->tok_pairs = grow(a->tok_pairs, n, sizeof(int));
        a->row_pairs = grow(a->row_pairs, n, sizeof(int));
        a->dgate = grow(a->dgate, n, sizeof(float));
        a->cap_pairs = n;
    }
    /* the padded row count moves with the routing every step: room to spare, or each new
     * maximum would reallocate (and page-fault in) every row buffer */
    size_t need = a->offsets[a->E], R = a->padded ? need + need / 8 : need;
    if (need > a->cap_rows) {
        a->y = grow(a->y, R * D, sizeof(float));
        a->dy = grow(a->dy, R * D, sizeof(float));
        a->dxg = grow(a->dxg, R * D, sizeof(float));
        a->h = grow(a->h, R * 2 * F, sizeof(float));
        a->da = grow(a->da, R * F, sizeof(float));
        a->cap_rows = R;
    }
    if (!a->padded && need > a->cap_rows32) {
        a->xg = grow(a->xg, R * D, sizeof(float));
        a->dh = grow(a->dh, R * 2 * F, sizeof(float));
        a->a = grow(a->a, R * F, sizeof(float));
        a->cap_rows32 = R;
    }
    if (a->padded && need > a->cap_rows16) {
        a->xgh = grow(a->xgh, R * D, sizeof(uint16_t));
        a->dyh = grow(a->dyh, R * D, sizeof(uint16_t));
        a->dhh = grow(a->dhh, R * 2 * F, sizeof(uint16_t));
        a->ah = grow(a->ah, R * F, sizeof(uint16_t));
        a->cap_rows16 = R;
    }
    if ((size_t)T > a->cap_tokens) {
        size_t n = T;
        a->tok_start = grow(a->tok_start, n + 1, sizeof(int));
        if (Fs > 0) {
            a->sh_h = grow(a->sh_h, n * 2 * Fs, sizeof(float));
            a->sh_dh = grow(a->sh_dh, n * 2 * Fs, sizeof(float));
            a->sh_a = grow(a->sh_a, n * Fs, sizeof(float));
            a->sh_da = grow(a->sh_da, n * Fs, sizeof(float));
            a->sh_y = grow(a->sh_y, n * D, sizeof(float));
        }
        a->cap_tokens = n;
    }
}

/* Pairs per expert and the rows each expert owns (padded when a->padded). */
static void count_rows(MoEActs *a, int E) {
    const Routing *rt = &a->rt;
    if (!a->counts) {
        a->counts = ml_calloc(E, sizeof(int));
        a->offsets = ml_calloc(E + 1, sizeof(int));
    }
    memset(a->counts, 0, E * sizeof(int));
    for (int p = 0; p < rt->n_pairs; p++) a->counts[rt->expert[p]]++;
    a->offsets[0] = 0;
    for (int e = 0; e < E; e++) {
        int rows = a->padded ? (a->counts[e] + GEMM_ROW_BLOCK - 1) / GEMM_ROW_BLOCK * GEMM_ROW_BLOCK : a->counts[e];
        a->offsets[e + 1] = a->offsets[e] + rows;
    }
}

/* Zeroes the padding rows of a [R, width] buffer of `elem`-byte values. */
static void zero_padding(const MoEActs *a, void *buf, int width, size_t elem) {
    for (int e = 0; e < a->E; e++) {
        size_t r0 = (size_t)a->offsets[e] + a->counts[e], r1 = a->offsets[e + 1];
        if (r1 > r0) memset((char *)buf + r0 * width * elem, 0, (r1 - r0) * width * elem);
    }
}

/* Counting sorts of the pairs: by expert (rows of the expert-contiguous buffer) and
 * by token (for the combine). Both are stable in pair order, so results are deterministic. */
static void build_dispatch(MoEActs *a, int T, int E) {
    const Routing *rt = &a->rt;
    int P = rt->n_pairs;
    int *next = ml_malloc((size_t)(E > T ? E : T) * sizeof(int));
    memcpy(next, a->offsets, E * sizeof(int));
    for (int p = 0; p < P; p++) a->pos[p] = next[rt->expert[p]]++;
    for (int e = 0, at = 0; e < E; e++) next[e] = at, at += a->counts[e];
    for (int p = 0; p < P; p++) a->row_pairs[next[rt->expert[p]]++] = p;
    memset(a->tok_start, 0, (T + 1) * sizeof(int));
    for (int p = 0; p < P; p++) a->tok_start[rt->token[p] + 1]++;
    for (int t = 0; t < T; t++) a->tok_start[t + 1] += a->tok_start[t];
    memcpy(next, a->tok_start, T * sizeof(int));
    for (int p = 0; p < P; p++) a->tok_pairs[next[rt->token[p]]++] = p;
    free(next);
}

/* Asks for the rows of token t's pairs (in an expert-sorted [R, D] buffer) before they are
 * read: scattered over the buffer, each would otherwise start with a cache miss. */
static inline void prefetch_token_rows(const MoEActs *a, const float *rows, int t, int D) {
    if (t >= a->T) return;
    for (int i = a->tok_start[t]; i < a->tok_start[t + 1]; i++) {
        const char *row = (const char *)(rows + (size_t)a->pos[a->tok_pairs[i]] * D);
        for (size_t b = 0; b < D * sizeof(float); b += 64) __builtin_prefetch(row + b);
    }
}

static void scale_row(float *dst, const float *src, float g, int n) {
    for (int j = 0; j < n; j++) dst[j] = g * src[j];
}

/* dst = bf16(g * src), through a stack buffer of fp32 pieces */
static void scale_round_row(uint16_t *dst, const float *src, float g, int n) {
    float buf[256];
    for (int j0 = 0; j0 < n; j0 += 256) {
        int len = n - j0 < 256 ? n - j0 : 256;
        scale_row(buf, src + j0, g, len);
        gemm_round_row(dst + j0, buf, len);
    }
}

void moe_forward(MoEActs *a, RouterLayer *r, const BlockParams *p, const ModelConfig *m, const float *x, int T, float *out) {
    int D = m->d_model, F = m->d_expert, E = m->n_experts, Fs = m->n_shared * F;
    double t0 = ml_now();
    r->spec->forward(r, x, p->router, T, &a->rt);
    a->router_seconds = ml_now() - t0;
    a->T = T;
    a->E = E;
    a->D = D;
    a->F = F;
    int P = a->rt.n_pairs;
    /* the bf16 expert products read the weights' bf16 shadow, which model_forward makes */
    a->padded = gemm_weights_bf16(p->exp_gate_up) && gemm_weights_bf16(p->exp_down) && !moe_ep_active();
    count_rows(a, E);
    reserve(a, m, T, P);
    build_dispatch(a, T, E);
    /* the gather in row order: the expert-sorted rows are written in sequence */
    if (a->padded) {
#pragma omp parallel for schedule(static)
        for (int i = 0; i < P; i++) {
            int q = a->row_pairs[i];
            gemm_round_row(a->xgh + (size_t)a->pos[q] * D, x + (size_t)a->rt.token[q] * D, D);
        }
        zero_padding(a, a->xgh, D, sizeof(uint16_t));
    } else {
#pragma omp parallel for schedule(static)
        for (int i = 0; i < P; i++) {
            int q = a->row_pairs[i];
            memcpy(a->xg + (size_t)a->pos[q] * D, x + (size_t)a->rt.token[q] * D, D * sizeof(float));
        }
    }
    if (moe_ep_active()) moe_ep_forward(a, p);
    else experts_forward(a, p);
    if (Fs > 0) swiglu_forward(a->sh_y, a->sh_h, a->sh_a, x, p->sh_gate_up, p->sh_down, T, D, Fs);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        float *o = out + (size_t)t * D;
        if (Fs > 0) memcpy(o, a->sh_y + (size_t)t * D, D * sizeof(float));
        else memset(o, 0, D * sizeof(float));
        prefetch_token_rows(a, a->y, t + 1, D);
        for (int i = a->tok_start[t]; i < a->tok_start[t + 1]; i++) {
            int q = a->tok_pairs[i];
            float g = a->rt.gate[q];
            const float *y = a->y + (size_t)a->pos[q] * D;
            for (int j = 0; j < D; j++) o[j] += g * y[j];
        }
    }
}

void moe_backward(MoEActs *a, RouterLayer *r, const BlockParams *p, BlockParams *g, const ModelConfig *m,
                  const float *x, int T, const float *dout, float *dx, float scale) {
    int D = m->d_model, F = m->d_expert, Fs = m->n_shared * F;
    int P = a->rt.n_pairs;
    int y_loss = r->spec->backward_outputs && r->output_loss;
    /* bf16 products read dy rounded: written so at once, unless a loss on y adds into it first */
    int dy_bf16 = a->padded && !y_loss;
    /* Through the combine: each pair's output gets gate * dout; its gate gets <dout, y>.
     * In row order: y and dy stream, the rows of dout (one per token, cached) are gathered. */
#pragma omp parallel for schedule(static)
    for (int i = 0; i < P; i++) {
        int q = a->row_pairs[i];
        size_t row = (size_t)a->pos[q] * D;
        const float *d = dout + (size_t)a->rt.token[q] * D;
        if (dy_bf16) scale_round_row(a->dyh + row, d, a->rt.gate[q], D);
        else scale_row(a->dy + row, d, a->rt.gate[q], D);
        a->dgate[q] = vdotf(d, a->y + row, D);
    }
    if (y_loss) r->spec->backward_outputs(r, &a->rt, a->y, a->pos, a->dy, scale);
    if (a->padded && !dy_bf16) gemm_round(a->dyh, a->dy, (size_t)a->offsets[a->E] * D);
    if (a->padded) zero_padding(a, a->dyh, D, sizeof(uint16_t));
    /* The experts' slices cover every row of dxg and write it whole. */
    if (moe_ep_active()) moe_ep_backward(a, p, g);
    else experts_backward(a, p, g);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        float *o = dx + (size_t)t * D;
        prefetch_token_rows(a, a->dxg, t + 1, D);
        for (int i = a->tok_start[t]; i < a->tok_start[t + 1]; i++) {
            const float *d = a->dxg + (size_t)a->pos[a->tok_pairs[i]] * D;
            for (int j = 0; j < D; j++) o[j] += d[j];
        }
    }
    if (Fs > 0)
        swiglu_backward(dx, g->sh_gate_up, g->sh_down, a->sh_dh, a->sh_da, dout, x, a->sh_h, a->sh_a, p->sh_gate_up,
                        p->sh_down, T, D, Fs, 1);
    double t0 = ml_now();
    r->spec->backward(r, x, p->router, T, &a->rt, a->dgate, scale, g->router, dx);
    a->router_seconds = ml_now() - t0;
}
