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

/* Evaluates on max_batches validation batches of B x T (0: the whole shard); fewer than
 * the shard holds are windows spread evenly over it (loader_eval_batch_spread). */
int evaluate(Model *m, const Shard *s, const DataMeta *meta, int B, int T, long max_batches, RouteMode mode, EvalResult *out);

#endif
