/* Validation: mean loss and bits per byte of a model on a shard. */
#ifndef MOELAB_EVALUATE_H
#define MOELAB_EVALUATE_H
#include "data/shard.h"
#include "model/model.h"

typedef struct {
    double loss;   /* mean nats per predicted token */
    double bpb;    /* bits per byte of the predicted text */
    long tokens;   /* predicted tokens */
    double bytes;
} EvalResult;

/* Evaluates on up to max_batches consecutive validation batches of B x T (0: the whole shard). */
int evaluate(Model *m, const Shard *s, const DataMeta *meta, int B, int T, long max_batches, RouteMode mode, EvalResult *out);

#endif
