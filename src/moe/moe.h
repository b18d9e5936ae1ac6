/* The MoE layer: router -> dispatch (histogram, prefix sum, gather into an
 * expert-contiguous buffer) -> one SwiGLU GEMM chain per expert slice -> weighted
 * scatter-add, plus the optional always-on shared expert. Backward mirrors it. */
#ifndef MOELAB_MOE_H
#define MOELAB_MOE_H
#include "model/config.h"
#include "model/params.h"
#include "moe/router.h"
#include <stddef.h>

typedef struct MoEEp MoEEp; /* expert-parallel exchange state (moe_ep.c) */

typedef struct {
    Routing rt;      /* router output, pair order */
    int T, E, D, F;
    int *counts;     /* [E] pairs per expert: the load the metrics report */
    int *offsets;    /* [E+1] prefix sum: expert e owns sorted rows offsets[e]..offsets[e+1]-1 */
    int *pos;        /* [n_pairs] sorted row of pair p */
    int *tok_start;  /* [T+1] CSR: pairs of token t are tok_pairs[tok_start[t]..tok_start[t+1]-1] */
    int *tok_pairs;
    float *xg, *h, *a, *y;  /* sorted rows: [P, D], [P, 2F], [P, F], [P, D] expert outputs before gating */
    float *sh_h, *sh_a, *sh_y; /* shared expert: [T, 2Fs], [T, Fs], [T, D] */
    /* backward scratch */
    float *dy, *dxg, *dh, *da, *dgate, *sh_dh, *sh_da;
    size_t cap_pairs, cap_tokens;
    double router_seconds; /* router time of the last moe_forward or moe_backward call */
    MoEEp *ep;             /* NULL unless the experts are split over processes */
} MoEActs;

void moe_acts_free(MoEActs *a);
/* out[T, D] = sum_p gate_p * Expert_{e_p}(x_{t_p}) + Shared(x). */
void moe_forward(MoEActs *a, RouterLayer *r, const BlockParams *p, const ModelConfig *m, const float *x, int T, float *out);
/* Accumulates parameter grads into g and input grads into dx. */
void moe_backward(MoEActs *a, RouterLayer *r, const BlockParams *p, BlockParams *g, const ModelConfig *m,
                  const float *x, int T, const float *dout, float *dx, float scale);

#endif
