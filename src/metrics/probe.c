/* The expert_sim probe (every expert run on the same tokens) and the loop that
 * collects every metric over a data split. */
#include "core/ops.h"
#include "core/util.h"
#include "metrics/metrics.h"
#include "train/evaluate.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

void metrics_add_sim(LayerStats *s, const float *y, int n, int D) {
    int E = s->E;
    if (E < 2 || n <= 0) return;
    double *norm = ml_malloc((size_t)E * n * sizeof(double)), *tok_sum = ml_calloc(n, sizeof(double));
    long *tok_cnt = ml_calloc(n, sizeof(long));
#pragma omp parallel for schedule(static)
    for (int r = 0; r < E * n; r++) {
        const float *v = y + (size_t)r * D;
        double ss = 0.0;
        for (int j = 0; j < D; j++) ss += (double)v[j] * v[j];
        norm[r] = sqrt(ss);
    }
    /* Per-token partial sums, added in token order afterwards: the result does not
     * depend on the thread count. */
#pragma omp parallel for schedule(static)
    for (int t = 0; t < n; t++)
        for (int a = 0; a < E; a++)
            for (int b = a + 1; b < E; b++) {
                double na = norm[(size_t)a * n + t], nb = norm[(size_t)b * n + t];
                if (na <= 0.0 || nb <= 0.0) continue; /* a zero output has no direction */
                const float *ya = y + ((size_t)a * n + t) * D, *yb = y + ((size_t)b * n + t) * D;
                double dot = 0.0;
                for (int j = 0; j < D; j++) dot += (double)ya[j] * yb[j];
                tok_sum[t] += dot / (na * nb);
                tok_cnt[t]++;
            }
    for (int t = 0; t < n; t++) {
        s->sim_sum += tok_sum[t];
        s->sim_n += tok_cnt[t];
    }
    free(norm);
    free(tok_sum);
    free(tok_cnt);
}

/* Indices of up to `want` tokens spread evenly over those with domain >= 0. */
static int pick_tokens(int BT, const int32_t *domains, int want, int *idx) {
    int *valid = ml_malloc((size_t)BT * sizeof(int)), nv = 0;
    for (int t = 0; t < BT; t++)
        if (!domains || domains[t] >= 0) valid[nv++] = t;
    int n = want < nv ? want : nv;
    for (int i = 0; i < n; i++) idx[i] = valid[(long)i * nv / n];
    free(valid);
    return n;
}

/* Every expert of every MoE layer on the buffered rows. Runs of METRICS_PROBE_RUN
 * rows rather than one per batch: small GEMMs are several times slower per row. */
void metrics_probe_flush(Metrics *mt, const Model *m) {
    const ModelConfig *c = &m->cfg;
    int n = mt->probe_n, D = c->d_model, F = c->d_expert, E = c->n_experts;
    if (n == 0) return;
    size_t nh = (size_t)n * 2 * F, na = (size_t)n * F, ny = (size_t)E * n * D;
    void *buf = mt->scratch;
    ml_reserve(&buf, &mt->scratch_cap, (nh + na + ny) * sizeof(float));
    mt->scratch = buf;
    float *h = mt->scratch, *a = h + nh, *y = a + na;
    for (int l = 0, i = 0; l < c->n_layers; l++) {
        if (!model_is_moe_layer(c, l)) continue;
        const BlockParams *p = &m->p.blocks[l];
        const float *x = mt->probe_x + (size_t)i * METRICS_PROBE_RUN * D;
        for (int e = 0; e < E; e++)
            swiglu_forward(y + (size_t)e * n * D, h, a, x, p->exp_gate_up + (size_t)e * 2 * F * D,
                           p->exp_down + (size_t)e * D * F, n, D, F);
        metrics_add_sim(&mt->st[i++], y, n, D);
    }
    mt->probe_n = 0;
}

void metrics_probe(Metrics *mt, const Model *m, const int32_t *domains) {
    const ModelConfig *c = &m->cfg;
    int BT = m->B * m->T, D = c->d_model;
    if (!mt->full || mt->probe_tokens <= 0 || c->n_experts < 2 || BT <= 0 || mt->n_moe == 0) return;
    if (!mt->probe_x) mt->probe_x = ml_malloc((size_t)mt->n_moe * METRICS_PROBE_RUN * D * sizeof(float));
    int *idx = ml_malloc((size_t)(mt->probe_tokens < BT ? mt->probe_tokens : BT) * sizeof(int));
    int n = pick_tokens(BT, domains, mt->probe_tokens, idx);
    for (int r = 0; r < n; r++) {
        for (int l = 0, i = 0; l < c->n_layers; l++) /* the token's MoE input in every layer */
            if (model_is_moe_layer(c, l))
                memcpy(mt->probe_x + ((size_t)i++ * METRICS_PROBE_RUN + mt->probe_n) * D,
                       m->acts.xn2[l] + (size_t)idx[r] * D, D * sizeof(float));
        if (++mt->probe_n == METRICS_PROBE_RUN) metrics_probe_flush(mt, m);
    }
    free(idx);
}

void metrics_eval_batch(void *ctx, Model *m, const int *targets, const int *domains, double forward_seconds) {
    Metrics *mt = ctx;
    (void)targets;
    mt->seconds += forward_seconds;
    mt->router_seconds += m->router_seconds;
    metrics_add(mt, m, domains);
    metrics_probe(mt, m, domains);
}

void metrics_eval_done(Metrics *mt, const Model *m) {
    metrics_probe_flush(mt, m);
    metrics_finish(mt);
}

int metrics_collect(Metrics *mt, Model *m, const Shard *s, int B, int T, long max_batches, RouteMode mode) {
    metrics_reset(mt);
    if (eval_each_batch(m, s, B, T, max_batches, mode, 0, metrics_eval_batch, mt)) return -1;
    metrics_eval_done(mt, m);
    return 0;
}
