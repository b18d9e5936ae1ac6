#include "moe/experts.h"
#include "core/ops.h"
#include "core/util.h"
#include <omp.h>
#include <stdlib.h>

/* With many small slices (fine-grained experts) a product per slice is too small to split
 * across threads and each parallel region costs a fork and a join: the threads take whole
 * experts instead, biggest first, each running its experts' products on one thread. Slices
 * are disjoint in rows and in weights, so any assignment gives the same result. */
static int by_expert(const MoEActs *a) {
    int nt = omp_get_max_threads();
    return nt > 1 && a->E >= 2 * nt;
}

/* Padded (bf16) slices run on all their rows, padding included: it is zeros in, zeros out. */
static void forward_one(MoEActs *a, const BlockParams *p, int e) {
    size_t off = a->offsets[e], D = a->D, F = a->F;
    const float *w_gu = p->exp_gate_up + e * 2 * F * D, *w_d = p->exp_down + e * D * F;
    if (a->padded)
        swiglu_forward_bf16(a->y + off * D, a->h + off * 2 * F, a->ah + off * F, a->xgh + off * D, w_gu, w_d,
                            a->offsets[e + 1] - a->offsets[e], (int)D, (int)F);
    else
        swiglu_forward(a->y + off * D, a->h + off * 2 * F, a->a + off * F, a->xg + off * D, w_gu, w_d, a->counts[e],
                       (int)D, (int)F);
}

static void backward_one(MoEActs *a, const BlockParams *p, BlockParams *g, int e) {
    size_t off = a->offsets[e], D = a->D, F = a->F;
    const float *w_gu = p->exp_gate_up + e * 2 * F * D, *w_d = p->exp_down + e * D * F;
    float *dw_gu = g->exp_gate_up + e * 2 * F * D, *dw_d = g->exp_down + e * D * F;
    if (a->padded)
        swiglu_backward_bf16(a->dxg + off * D, dw_gu, dw_d, a->dhh + off * 2 * F, a->da + off * F, a->dyh + off * D,
                             a->xgh + off * D, a->h + off * 2 * F, a->ah + off * F, w_gu, w_d,
                             a->offsets[e + 1] - a->offsets[e], (int)D, (int)F);
    else
        swiglu_backward(a->dxg + off * D, dw_gu, dw_d, a->dh + off * 2 * F, a->da + off * F, a->dy + off * D,
                        a->xg + off * D, a->h + off * 2 * F, a->a + off * F, w_gu, w_d, a->counts[e], (int)D, (int)F, 0);
}

typedef struct {
    int count, e;
} Load;

static int by_count_desc(const void *x, const void *y) {
    const Load *a = x, *b = y;
    return a->count != b->count ? (a->count < b->count) - (a->count > b->count) : a->e - b->e;
}

/* Experts biggest first: handed out in that order, the last ones to start are the
 * smallest, so no thread is left running one big slice while the others wait. */
static Load *largest_first(const MoEActs *a) {
    Load *order = ml_malloc((size_t)a->E * sizeof *order);
    for (int e = 0; e < a->E; e++) order[e] = (Load){a->counts[e], e};
    qsort(order, a->E, sizeof *order, by_count_desc);
    return order;
}

void experts_forward(MoEActs *a, const BlockParams *p) {
    if (!by_expert(a)) {
        for (int e = 0; e < a->E; e++) forward_one(a, p, e);
        return;
    }
    Load *order = largest_first(a);
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < a->E; i++) forward_one(a, p, order[i].e);
    free(order);
}

void experts_backward(MoEActs *a, const BlockParams *p, BlockParams *g) {
    if (!by_expert(a)) {
        for (int e = 0; e < a->E; e++) backward_one(a, p, g, e);
        return;
    }
    Load *order = largest_first(a);
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < a->E; i++) backward_one(a, p, g, order[i].e);
    free(order);
}
