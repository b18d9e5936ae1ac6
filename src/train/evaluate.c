#include "train/evaluate.h"
#include "core/util.h"
#include <math.h>
#include <stdlib.h>

int evaluate(Model *m, const Shard *s, const DataMeta *meta, int B, int T, long max_batches, RouteMode mode, EvalResult *out) {
    long n = (long)loader_eval_batches(s, B, T);
    if (n == 0) return ml_fail("the split holds fewer than 2 tokens: nothing to evaluate");
    if (max_batches > 0 && max_batches < n) n = max_batches;
    int *inp = ml_malloc((size_t)B * T * sizeof(int)), *tgt = ml_malloc((size_t)B * T * sizeof(int));
    double nats = 0.0, bytes = 0.0;
    long tokens = 0;
    for (long b = 0; b < n; b++) {
        loader_eval_batch(s, B, T, b, inp, tgt, NULL);
        model_forward(m, inp, tgt, B, T, mode);
        for (int i = 0; i < B * T; i++) {
            if (tgt[i] < 0) continue;
            nats += m->acts.tok_loss[i];
            bytes += meta->token_bytes[tgt[i]];
            tokens++;
        }
    }
    free(inp);
    free(tgt);
    out->loss = tokens ? nats / tokens : 0.0;
    out->bytes = bytes;
    out->tokens = tokens;
    out->bpb = bytes > 0 ? nats / (log(2.0) * bytes) : 0.0;
    return 0;
}
