/* Validation: mean loss and bits per byte of a model on a shard. */
#ifndef MOELAB_EVALUATE_H
#define MOELAB_EVALUATE_H
#include "data/shard.h"
#include "model/model.h"

#define EVAL_MAX_DOMAINS 64

/* One domain's share of an evaluation (targets are attributed to their document's domain). */
typedef struct {
    const char *name; /* points into the shard's domain table */
    double loss, bpb, bytes;
    long tokens;
} EvalDomain;

typedef struct {
    double loss;   /* mean nats per predicted token */
    double bpb;    /* bits per byte of the predicted text */
    long tokens;   /* predicted tokens */
    double bytes;
    int n_domains; /* the shard's domains (first EVAL_MAX_DOMAINS), including ones with no tokens */
    EvalDomain domains[EVAL_MAX_DOMAINS];
} EvalResult;

/* 1 when a domain name can be used as is in a JSON key such as "val_loss_<name>"
 * (letters, digits, '-', '_', '.'; prepare only makes such names). */
int eval_domain_name_ok(const char *name);

/* Called after the forward of each evaluation batch: targets and domains are [B*T]
 * (padding has target -1), the activations of the batch are in m->acts. */
typedef void (*EvalBatchFn)(void *ctx, Model *m, const int *targets, const int *domains, double forward_seconds);

/* The one loop over evaluation batches: max_batches batches of B x T (0: the whole shard);
 * fewer than the shard holds are windows spread evenly over it (loader_eval_batch_spread).
 * with_loss = 0 runs the forward without targets. */
int eval_each_batch(Model *m, const Shard *s, int B, int T, long max_batches, RouteMode mode, int with_loss,
                    EvalBatchFn fn, void *ctx);

/* Loss and bits per byte, overall and per domain. `also` (may be NULL) sees every batch
 * too, so routing metrics come from the same forward passes. */
int evaluate(Model *m, const Shard *s, const DataMeta *meta, int B, int T, long max_batches, RouteMode mode,
             EvalResult *out, EvalBatchFn also, void *also_ctx);
/* The same over part `part` of `parts` (batches part, part+parts, ...), for splitting an
 * evaluation over processes; results are this part's alone (dist_reduce_eval sums them). */
int eval_each_batch_part(Model *m, const Shard *s, int B, int T, long max_batches, RouteMode mode, int with_loss,
                         int part, int parts, EvalBatchFn fn, void *ctx);
int evaluate_part(Model *m, const Shard *s, const DataMeta *meta, int B, int T, long max_batches, RouteMode mode,
                  int part, int parts, EvalResult *out, EvalBatchFn also, void *also_ctx);

#endif
