#include "train/evaluate.h"
#include "core/util.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

int evaluate(Model *m, const Shard *s, const DataMeta *meta, int B, int T, long max_batches, RouteMode mode, EvalResult *out) {
    long n = (long)loader_eval_batches(s, B, T);
    if (n == 0) return ml_fail("the split holds fewer than 2 tokens: nothing to evaluate");
    int spread = max_batches > 0 && max_batches < n; /* a partial evaluation samples the whole split */
    if (spread) n = max_batches;
    int *inp = ml_malloc((size_t)B * T * sizeof(int)), *tgt = ml_malloc((size_t)B * T * sizeof(int));
    int *dom = ml_malloc((size_t)B * T * sizeof(int));
    double nats = 0.0, bytes = 0.0;
    long tokens = 0;
    int nd = s->n_domains < EVAL_MAX_DOMAINS ? s->n_domains : EVAL_MAX_DOMAINS;
    double dnats[EVAL_MAX_DOMAINS] = {0};
    memset(out->domains, 0, sizeof out->domains);
    for (long b = 0; b < n; b++) {
        if (spread) loader_eval_batch_spread(s, B, T, b, n, inp, tgt, dom);
        else loader_eval_batch(s, B, T, b, inp, tgt, dom);
        model_forward(m, inp, tgt, B, T, mode);
        for (int i = 0; i < B * T; i++) {
            if (tgt[i] < 0) continue;
            nats += m->acts.tok_loss[i];
            bytes += meta->token_bytes[tgt[i]];
            tokens++;
            if (dom[i] >= 0 && dom[i] < nd) {
                EvalDomain *d = &out->domains[dom[i]];
                dnats[dom[i]] += m->acts.tok_loss[i];
                d->bytes += meta->token_bytes[tgt[i]];
                d->tokens++;
            }
        }
    }
    free(inp);
    free(tgt);
    free(dom);
    out->n_domains = nd;
    for (int d = 0; d < nd; d++) {
        EvalDomain *e = &out->domains[d];
        e->name = s->domains[d];
        e->loss = e->tokens ? dnats[d] / e->tokens : 0.0;
        e->bpb = e->bytes > 0 ? dnats[d] / (log(2.0) * e->bytes) : 0.0;
    }
    out->loss = tokens ? nats / tokens : 0.0;
    out->bytes = bytes;
    out->tokens = tokens;
    out->bpb = bytes > 0 ? nats / (log(2.0) * bytes) : 0.0;
    return 0;
}

int eval_domain_name_ok(const char *name) {
    if (!name || !name[0]) return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
            return 0;
    return 1;
}
