#include "train/evaluate.h"
#include "core/util.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

int eval_each_batch(Model *m, const Shard *s, int B, int T, long max_batches, RouteMode mode, int with_loss,
                    EvalBatchFn fn, void *ctx) {
    return eval_each_batch_part(m, s, B, T, max_batches, mode, with_loss, 0, 1, fn, ctx);
}

int eval_each_batch_part(Model *m, const Shard *s, int B, int T, long max_batches, RouteMode mode, int with_loss,
                         int part, int parts, EvalBatchFn fn, void *ctx) {
    long n = (long)loader_eval_batches(s, B, T);
    if (n == 0) return ml_fail("the split holds fewer than 2 tokens: nothing to evaluate");
    int spread = max_batches > 0 && max_batches < n; /* a partial evaluation samples the whole split */
    if (spread) n = max_batches;
    int *inp = ml_malloc((size_t)B * T * sizeof(int)), *tgt = ml_malloc((size_t)B * T * sizeof(int));
    int *dom = ml_malloc((size_t)B * T * sizeof(int));
    /* Every part runs the same number of forwards (an expert-parallel forward needs all
     * ranks): a part short of batches repeats the last one without counting it. */
    long per_part = (n + parts - 1) / parts;
    for (long i = 0; i < per_part; i++) {
        long b = part + i * parts, counted = b < n;
        if (!counted) b = n - 1;
        if (spread) loader_eval_batch_spread(s, B, T, b, n, inp, tgt, dom);
        else loader_eval_batch(s, B, T, b, inp, tgt, dom);
        double t0 = ml_now();
        model_forward(m, inp, with_loss ? tgt : NULL, B, T, mode);
        if (counted) fn(ctx, m, tgt, dom, ml_now() - t0);
    }
    free(inp);
    free(tgt);
    free(dom);
    return 0;
}

typedef struct {
    const DataMeta *meta;
    EvalResult *out;
    int nd;
    double nats, dnats[EVAL_MAX_DOMAINS];
    EvalBatchFn also;
    void *also_ctx;
} LossSums;

static void add_losses(void *ctx, Model *m, const int *tgt, const int *dom, double seconds) {
    LossSums *a = ctx;
    const int *token_bytes = a->meta->token_bytes;
    for (int i = 0; i < m->B * m->T; i++) {
        if (tgt[i] < 0) continue;
        float loss = m->acts.tok_loss[i];
        a->nats += loss;
        a->out->bytes += token_bytes[tgt[i]];
        a->out->tokens++;
        if (dom[i] >= 0 && dom[i] < a->nd) {
            EvalDomain *d = &a->out->domains[dom[i]];
            a->dnats[dom[i]] += loss;
            d->bytes += token_bytes[tgt[i]];
            d->tokens++;
        }
    }
    if (a->also) a->also(a->also_ctx, m, tgt, dom, seconds);
}

int evaluate(Model *m, const Shard *s, const DataMeta *meta, int B, int T, long max_batches, RouteMode mode,
             EvalResult *out, EvalBatchFn also, void *also_ctx) {
    return evaluate_part(m, s, meta, B, T, max_batches, mode, 0, 1, out, also, also_ctx);
}

int evaluate_part(Model *m, const Shard *s, const DataMeta *meta, int B, int T, long max_batches, RouteMode mode,
                  int part, int parts, EvalResult *out, EvalBatchFn also, void *also_ctx) {
    memset(out, 0, sizeof *out);
    LossSums a = {.meta = meta, .out = out, .also = also, .also_ctx = also_ctx};
    a.nd = s->n_domains < EVAL_MAX_DOMAINS ? s->n_domains : EVAL_MAX_DOMAINS;
    if (eval_each_batch_part(m, s, B, T, max_batches, mode, 1, part, parts, add_losses, &a)) return -1;
    out->n_domains = a.nd;
    for (int d = 0; d < a.nd; d++) {
        EvalDomain *e = &out->domains[d];
        e->name = s->domains[d];
        e->loss = e->tokens ? a.dnats[d] / e->tokens : 0.0;
        e->bpb = e->bytes > 0 ? a.dnats[d] / (log(2.0) * e->bytes) : 0.0;
    }
    out->loss = out->tokens ? a.nats / out->tokens : 0.0;
    out->bpb = out->bytes > 0 ? a.nats / (log(2.0) * out->bytes) : 0.0;
    return 0;
}

int eval_domain_name_ok(const char *name) {
    if (!name || !name[0]) return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
            return 0;
    return 1;
}
