/* The routed experts over the expert-sorted rows of an MoE layer (see moe.h): one SwiGLU per
 * expert slice, forward and backward. */
#ifndef MOELAB_EXPERTS_H
#define MOELAB_EXPERTS_H
#include "model/params.h"
#include "moe/moe.h"

/* a->y[rows of e] = SwiGLU_e(a->xg[rows of e]) for every expert, keeping h and a for the backward. */
void experts_forward(MoEActs *a, const BlockParams *p);
/* a->dxg = d/dxg, expert weight grads accumulated into g, from a->dy (a->dyh when padded). */
void experts_backward(MoEActs *a, const BlockParams *p, BlockParams *g);

#endif
