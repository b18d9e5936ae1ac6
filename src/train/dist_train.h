/* Training over several processes (core/dist.h): data parallel, optionally expert parallel.
 *
 * N ranks train one model. Every rank draws the same global sequence of micro-batches
 * and keeps its own: rank r takes micro-batches r*A .. r*A+A-1 of each step's N*A, so N
 * processes with grad-accum A see exactly the data of one process with grad-accum N*A,
 * and the loader state (checkpointed) is the same on every rank. Gradients are summed in
 * buckets, one per block, started as soon as the backward has finished the block, and
 * divided by N; every rank then steps the same AdamW. With expert parallelism P, the
 * experts of each MoE layer are split over the P ranks of an EP group (moe/moe_ep.c);
 * an expert's gradient, already summed over the tokens of the whole EP group, is summed
 * over the DP group only, and expert weights and moments are gathered before a
 * checkpoint or an evaluation, so neither depends on the layout.
 *
 * With one process every function reduces to what the single-process trainer does. */
#ifndef MOELAB_DIST_TRAIN_H
#define MOELAB_DIST_TRAIN_H
#include "core/dist.h"
#include "data/shard.h"
#include "metrics/metrics.h"
#include "model/model.h"
#include "model/optim.h"
#include "train/evaluate.h"

typedef struct {
    size_t off, n;
    DistGroup g; /* WORLD: replicated everywhere; DP: this rank's experts */
} DistRange;

typedef struct {
    int N, P, rank;    /* ranks, expert-parallel width, world rank */
    int overlap;       /* start the reductions during the backward (0: all after it) */
    DistRange *ranges; /* every reduced range, grouped by part (embed, blocks, head) */
    int *part_first;   /* [L+3] ranges of part p: part_first[p] .. part_first[p+1]-1 */
    int n_parts, n_ranges;
    Model *m;
    int *scratch;      /* a micro-batch of other ranks, drawn to keep the loader in step */
    double wait;       /* seconds waited for reductions after the backward, this step */
    double comm, comm0; /* seconds inside communication this step (waits included); at its start */
    double wait_sum;
    long steps;
} DistTrain;

/* Lays out the buckets of m; expert_parallel = P (1: data parallel only). */
int dist_train_init(DistTrain *d, Model *m, int expert_parallel, int overlap, int B, int T);
void dist_train_free(DistTrain *d);
/* 0 when every rank holds the same bytes (a hash of them), else -1 (ml_fail) naming `what`. */
int dist_same_everywhere(const char *what, const void *data, size_t len);
/* A cheap hash of a shard (sizes and a strided sample of the tokens). */
uint64_t dist_shard_hash(const Shard *s);

/* This rank's micro-batch `micro` of `accum`. */
void dist_next_batch(DistTrain *d, Loader *l, int *inp, int *tgt, int micro, int accum);
/* Before each micro-batch's backward: on the last one, blocks are reduced as they finish. */
void dist_before_backward(DistTrain *d, Model *m, int last_micro);
/* Completes the reductions and averages the gradients over the ranks. */
void dist_after_backward(DistTrain *d, Model *m);
/* Global gradient norm and clipping (the expert parts live on different ranks under EP). */
float dist_clip_grad_norm(DistTrain *d, Model *m, float clip);
/* Means of the step's loss and router losses over the ranks; sums of the routing metrics. */
void dist_reduce_step(DistTrain *d, float *loss, float *router_losses, int n, Metrics *mt);
/* Sums the routers' pending statistics over all ranks (before model_after_step). */
void dist_reduce_pending(Model *m);
/* Sums an evaluation's tokens, bytes and losses and its metric sums over the ranks. */
void dist_reduce_eval(EvalResult *ev, Metrics *mt);
/* Sums a metrics accumulator over the ranks (times are averaged). */
void dist_reduce_metrics(Metrics *mt);
/* Expert weights (and moments, when opt is given) of every rank, gathered everywhere. */
void dist_gather_experts(DistTrain *d, Model *m, AdamW *opt);
/* -1 (ml_fail) when the parameters or router state differ between ranks that should agree. */
int dist_check_params(DistTrain *d, const Model *m);

#endif
