/* The MoE layer: router -> dispatch (histogram, prefix sum, gather into an
 * expert-contiguous buffer) -> one SwiGLU GEMM chain per expert slice -> weighted
 * scatter-add, plus the optional always-on shared expert. Backward mirrors it. */
#ifndef MOELAB_MOE_H
#define MOELAB_MOE_H
#include "model/config.h"
#include "model/params.h"
#include "moe/router.h"
#include <stddef.h>
#include <stdint.h>

typedef struct MoEEp MoEEp; /* expert-parallel exchange state (moe_ep.c) */

typedef struct {
    Routing rt;      /* router output, pair order */
    int T, E, D, F;
    int *counts;     /* [E] pairs per expert: the load the metrics report */
    int *offsets;    /* [E+1] expert e owns sorted rows offsets[e]..offsets[e+1]-1 (R = offsets[E] rows; */
                     /* counts[e] of them are pairs, the rest padding) */
    int *pos;        /* [n_pairs] sorted row of pair p */
    int *tok_start;  /* [T+1] CSR: pairs of token t are tok_pairs[tok_start[t]..tok_start[t+1]-1] */
    int *tok_pairs;
    int *row_pairs;  /* [n_pairs] the pairs in row order (padding skipped): passes over y, dy stream */
    float *xg, *h, *a, *y;  /* sorted rows: [R, D], [R, 2F], [R, F], [R, D] expert outputs before gating */
    /* bf16 precision (one process): each expert's rows are padded with zero rows to a multiple
     * of GEMM_ROW_BLOCK, so its products take the block as it is, and the operands that are
     * only ever multiplied are written in bf16 by their producers instead of xg, a, dh */
    int padded;
    uint16_t *xgh, *ah, *dhh, *dyh; /* [R, D], [R, F], [R, 2F], [R, D] */
    float *sh_h, *sh_a, *sh_y; /* shared expert: [T, 2Fs], [T, Fs], [T, D] */
    /* backward scratch */
    float *dy, *dxg, *dh, *da, *dgate, *sh_dh, *sh_da;
    size_t cap_pairs, cap_tokens, cap_rows, cap_rows32, cap_rows16;
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
