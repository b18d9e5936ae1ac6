/* Expert parallelism for the MoE layer: the E experts are split over the P ranks of an
 * EP group (core/dist.h), rank q owning experts q*E/P .. (q+1)*E/P-1. The dispatch
 * buffer is already expert-contiguous, so the rows for rank q are one slice of it:
 * counts per expert go first (MPI_Alltoall), then the rows (MPI_Alltoallv); the owner
 * runs its experts over the rows of every sender and sends the outputs back the same way.
 * The backward mirrors it: output gradients go to the owners, which accumulate their
 * experts' weight gradients and return the input gradients. */
#ifndef MOELAB_MOE_EP_H
#define MOELAB_MOE_EP_H
#include "moe/moe.h"

/* 1 when the experts of MoE layers are split over several processes. */
int moe_ep_active(void);
/* a->xg (rows sorted by expert, a->counts, a->offsets) -> a->y. */
void moe_ep_forward(MoEActs *a, const BlockParams *p);
/* a->dy -> a->dxg (accumulated), expert weight gradients into g (owned experts only). */
void moe_ep_backward(MoEActs *a, const BlockParams *p, BlockParams *g);
void moe_ep_free(MoEEp *ep);

#endif
