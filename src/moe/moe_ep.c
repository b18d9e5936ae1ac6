#include "moe/moe_ep.h"
#include "core/dist.h"
#include "core/ops.h"
#include "core/util.h"
#include <stdlib.h>
#include <string.h>

/* One layer's exchange: kept from the forward for the backward of the same batch. */
struct MoEEp {
    int P, Eq, me;          /* ranks, experts per rank, this rank's index in the EP group */
    int *recv_rows;         /* [P*Eq] rows rank s sends for local expert j, at s*Eq+j */
    int *sc, *sd, *rc, *rd; /* [P] float counts and displacements, send and receive side */
    int R;                  /* rows received */
    float *x, *h, *a, *y;   /* [R, D], [R, 2F], [R, F], [R, D] the received rows and what the experts made of them */
    float *dy, *dx, *dh, *da;
    size_t cap;
};

int moe_ep_active(void) { return dist_size(DIST_EP) > 1; }

void moe_ep_free(MoEEp *ep) {
    if (!ep) return;
    void *bufs[] = {ep->recv_rows, ep->sc, ep->sd, ep->rc, ep->rd, ep->x, ep->h, ep->a, ep->y, ep->dy, ep->dx, ep->dh, ep->da};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(ep);
}

static MoEEp *ep_get(MoEActs *a) {
    if (a->ep) return a->ep;
    MoEEp *ep = ml_calloc(1, sizeof *ep);
    ep->P = dist_size(DIST_EP);
    ep->me = dist_rank(DIST_EP);
    ep->Eq = a->E / ep->P;
    ep->recv_rows = ml_calloc(a->E, sizeof(int));
    int **v[] = {&ep->sc, &ep->sd, &ep->rc, &ep->rd};
    for (int i = 0; i < 4; i++) *v[i] = ml_calloc(ep->P, sizeof(int));
    a->ep = ep;
    return ep;
}

static void ep_reserve(MoEEp *ep, size_t R, int D, int F) {
    if (R <= ep->cap) return;
    size_t n = R + R / 4 + 1;
    float **rowsD[] = {&ep->x, &ep->y, &ep->dy, &ep->dx}, **rows2F[] = {&ep->h, &ep->dh}, **rowsF[] = {&ep->a, &ep->da};
    for (int i = 0; i < 4; i++) *rowsD[i] = ml_realloc(*rowsD[i], n * D * sizeof(float));
    for (int i = 0; i < 2; i++) *rows2F[i] = ml_realloc(*rows2F[i], n * 2 * F * sizeof(float));
    for (int i = 0; i < 2; i++) *rowsF[i] = ml_realloc(*rowsF[i], n * F * sizeof(float));
    ep->cap = n;
}

/* Counts first: each rank learns how many rows every other rank sends to each of its experts. */
static void exchange_counts(MoEEp *ep, const MoEActs *a) {
    int P = ep->P, Eq = ep->Eq, D = a->D;
    dist_alltoall_int(a->counts, ep->recv_rows, Eq, DIST_EP);
    int at = 0;
    for (int q = 0; q < P; q++) {
        ep->sd[q] = a->offsets[q * Eq] * D;
        ep->sc[q] = (a->offsets[(q + 1) * Eq] - a->offsets[q * Eq]) * D;
        int rows = 0;
        for (int j = 0; j < Eq; j++) rows += ep->recv_rows[q * Eq + j];
        ep->rd[q] = at * D;
        ep->rc[q] = rows * D;
        at += rows;
    }
    ep->R = at;
}

void moe_ep_forward(MoEActs *a, const BlockParams *p) {
    MoEEp *ep = ep_get(a);
    int D = a->D, F = a->F, Eq = ep->Eq;
    exchange_counts(ep, a);
    ep_reserve(ep, ep->R, D, F);
    dist_alltoallv_float(a->xg, ep->sc, ep->sd, ep->x, ep->rc, ep->rd, DIST_EP);
    /* Received rows are grouped by sender, then by expert: one GEMM chain per group. */
    size_t off = 0;
    for (int s = 0; s < ep->P; s++)
        for (int j = 0; j < Eq; j++) {
            int n = ep->recv_rows[s * Eq + j];
            size_t e = (size_t)ep->me * Eq + j;
            swiglu_forward(ep->y + off * D, ep->h + off * 2 * F, ep->a + off * F, ep->x + off * D,
                           p->exp_gate_up + e * 2 * F * D, p->exp_down + e * D * F, n, D, F);
            off += n;
        }
    dist_alltoallv_float(ep->y, ep->rc, ep->rd, a->y, ep->sc, ep->sd, DIST_EP);
}

void moe_ep_backward(MoEActs *a, const BlockParams *p, BlockParams *g) {
    MoEEp *ep = a->ep;
    int D = a->D, F = a->F, Eq = ep->Eq;
    dist_alltoallv_float(a->dy, ep->sc, ep->sd, ep->dy, ep->rc, ep->rd, DIST_EP);
    size_t off = 0;
    for (int s = 0; s < ep->P; s++)
        for (int j = 0; j < Eq; j++) {
            int n = ep->recv_rows[s * Eq + j];
            size_t e = (size_t)ep->me * Eq + j;
            swiglu_backward(ep->dx + off * D, g->exp_gate_up + e * 2 * F * D, g->exp_down + e * D * F,
                            ep->dh + off * 2 * F, ep->da + off * F, ep->dy + off * D, ep->x + off * D,
                            ep->h + off * 2 * F, ep->a + off * F, p->exp_gate_up + e * 2 * F * D,
                            p->exp_down + e * D * F, n, D, F, 0);
            off += n;
        }
    /* Every pair's row was sent to one rank and comes back whole. */
    dist_alltoallv_float(ep->dx, ep->rc, ep->rd, a->dxg, ep->sc, ep->sd, DIST_EP);
}
