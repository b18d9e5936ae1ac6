/* usmoe (Do, Le, Tran, "Unified Sparse MoE"): the unified score
 *   g = (1 - rate) * softmax(z) + rate * sigmoid(z) * 2/E
 * and a global budget: the c = round(k * T) highest (token, expert) pairs of the
 * routing group are taken, k fractional allowed, so a token gets 0..E experts. Gates
 * are g, not renormalised. Optional Switch aux loss on the softmax part.
 *
 * The group is the whole micro-batch (default: the leak of future tokens is diluted
 * over many sequences) or each sequence (the reference code). Either way selection is
 * not causal; generation (ROUTE_INFER) uses a per-token rule: every pair whose score
 * reaches the threshold calibrated in training (the running mean of the budget's cut),
 * or per-token top-round(k). budget=token uses per-token top-round(k) everywhere (with
 * rate=0 that is topk with unnormalised gates). Training-free use: `moelab eval
 * --router usmoe` on a topk checkpoint reuses its router weights. */
#include "core/ops.h"
#include "core/util.h"
#include "moe/router.h"
#include "routers/shared.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double rate, k, aux, ema;
    int group, budget, infer;
} UsOpts;

static const RouterOption US_TABLE[] = {
    {"rate", ROPT_FLOAT, offsetof(UsOpts, rate), 0.5, 0, 1, NULL,
     "weight of the sigmoid (expert-choice) score in the mix (0.5: the USMoE release)"},
    {"k", ROPT_FLOAT, offsetof(UsOpts, k), 0, 0, 64, NULL,
     "budget in pairs per token, fractional allowed (0: the model's top-k, the release's budget)"},
    {"group", ROPT_ENUM, offsetof(UsOpts, group), 0, 0, 0, "batch|sequence",
     "routing group of the global budget: the micro-batch (moelab default, related-routers s2.6) or each sequence "
     "(the reference code)"},
    {"budget", ROPT_ENUM, offsetof(UsOpts, budget), 0, 0, 0, "global|token",
     "global top-c over the group's pairs (USMoE), or per-token top-round(k) (the limiting case)"},
    {"infer", ROPT_ENUM, offsetof(UsOpts, infer), 0, 0, 0, "threshold|topk",
     "per-token rule of generation: the threshold calibrated in training (related-routers s2.6 (b)), or top-round(k)"},
    {"aux", ROPT_FLOAT, offsetof(UsOpts, aux), 0.01, 0, 10, NULL,
     "Switch aux-loss coefficient on the softmax part (0.01: related-routers s2.5; the paper uses none)"},
    {"ema", ROPT_FLOAT, offsetof(UsOpts, ema), 0.9, 0, 0.9999, NULL, "decay of the running threshold per optimizer step"},
    {0}};

enum { S_CALIB, S_TAU, S_LEN };

typedef struct {
    UsOpts o;
    int kk; /* per-token budget: round(k), at least 1 */
    Scorer sc; /* probs: softmax; logits; dprobs: dL/dg (dense) */
    float *sig, *g;
    int *order;
    unsigned char *keep;
    size_t cap;
} UsPriv;

static int us_rows(const ModelConfig *m) { return m->n_experts; }
static int us_state_len(const ModelConfig *m) { (void)m; return S_LEN; }

static int us_init(RouterLayer *r) {
    UsOpts o;
    if (router_opts_parse("usmoe", US_TABLE, r->cfg->router_opts, &o)) return -1;
    if (o.k == 0) o.k = r->k;
    if (o.k > r->E) return ml_fail("router usmoe: k=%g exceeds the %d experts", o.k, r->E);
    UsPriv *s = ml_calloc(1, sizeof *s);
    s->o = o;
    s->kk = (int)lround(o.k) < 1 ? 1 : (int)lround(o.k);
    scorer_init(&s->sc, r->E);
    r->pending_len = 2; /* sum of cuts, micro-batches */
    r->pending = ml_calloc(2, sizeof(double));
    r->batch_level = o.budget == 0;
    r->priv = s;
    return 0;
}

static void us_free(RouterLayer *r) {
    UsPriv *s = r->priv;
    if (!s) return;
    scorer_free(&s->sc);
    free(s->sig), free(s->g), free(s->order), free(s->keep);
    free(r->pending);
    r->pending = NULL;
    free(s);
    r->priv = NULL;
}

static void reserve(UsPriv *s, int T, int E) {
    scorer_reserve(&s->sc, T);
    size_t n = (size_t)T * E;
    if (n <= s->cap) return;
    s->sig = ml_realloc(s->sig, n * sizeof(float));
    s->g = ml_realloc(s->g, n * sizeof(float));
    s->order = ml_realloc(s->order, n * sizeof(int));
    s->keep = ml_realloc(s->keep, n);
    s->cap = n;
}

static void per_token_topk(UsPriv *s, int T, int E) {
    int idx[E];
    for (int t = 0; t < T; t++) {
        router_select_topk(s->g + (size_t)t * E, E, s->kk, idx);
        for (int j = 0; j < s->kk; j++) s->keep[(size_t)t * E + idx[j]] = 1;
    }
}

/* Global top-c of each group's pairs; returns the sum of the groups' cut scores. */
static double global_topc(RouterLayer *r, UsPriv *s, int T, int E, int *groups) {
    int Tg = s->o.group == 1 && r->cfg->seq_len > 0 && T % r->cfg->seq_len == 0 ? r->cfg->seq_len : T;
    double cuts = 0.0;
    *groups = 0;
    for (int t0 = 0; t0 < T; t0 += Tg) {
        int n = Tg * E, c = (int)lround(s->o.k * Tg);
        if (c > n) c = n;
        int *o = s->order + (size_t)t0 * E;
        for (int i = 0; i < n; i++) o[i] = t0 * E + i;
        router_sort_desc(o, n, s->g);
        for (int i = 0; i < c; i++) s->keep[o[i]] = 1;
        if (c > 0) cuts += s->g[o[c - 1]], ++*groups;
    }
    return cuts;
}

static void us_forward(RouterLayer *r, const float *x, const float *w, int T, Routing *rt) {
    UsPriv *s = r->priv;
    int E = r->E;
    size_t n = (size_t)T * E;
    reserve(s, T, E);
    router_linear_softmax(x, w, T, r->D, E, s->sc.logits, s->sc.probs);
    float a = (float)s->o.rate;
    for (size_t i = 0; i < n; i++) {
        s->sig[i] = 1.0f / (1.0f + expf(-s->sc.logits[i]));
        s->g[i] = (1.0f - a) * s->sc.probs[i] + a * s->sig[i] * 2.0f / E;
    }
    memset(s->keep, 0, n);
    int calibrated = r->state && r->state[S_CALIB];
    if (s->o.budget == 1 || (r->mode == ROUTE_INFER && (s->o.infer == 1 || !calibrated))) {
        per_token_topk(s, T, E);
    } else if (r->mode == ROUTE_INFER) {
        for (size_t i = 0; i < n; i++) s->keep[i] = s->g[i] >= r->state[S_TAU];
    } else {
        int groups;
        double cuts = global_topc(r, s, T, E, &groups);
        if (r->mode == ROUTE_TRAIN) r->pending[0] += cuts, r->pending[1] += groups;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) m += s->keep[i];
    routing_reserve(rt, (int)m);
    rt->n_tokens = T;
    rt->n_pairs = 0;
    memset(s->sc.counts, 0, E * sizeof(int));
    for (size_t i = 0; i < n; i++) {
        if (!s->keep[i]) continue;
        int q = rt->n_pairs++;
        rt->token[q] = (int)(i / E);
        rt->expert[q] = (int)(i % E);
        rt->gate[q] = s->g[i];
        s->sc.counts[i % E]++;
    }
    r->probs = s->sc.probs;
    r->n_losses = 0;
    if (s->o.aux > 0)
        r->losses[r->n_losses++] = (RouterLoss){"aux", router_switch_aux(s->sc.probs, s->sc.counts, T, E, s->kk), (float)s->o.aux};
}

/* dz = rate*(2/E)*sig(1-sig)*dg + softmax-backward((1-rate)*dg + aux) */
static void us_backward(RouterLayer *r, const float *x, const float *w, int T, const Routing *rt, const float *dgate,
                        float scale, float *dw, float *dx) {
    UsPriv *s = r->priv;
    int E = r->E;
    size_t n = (size_t)T * E;
    float a = (float)s->o.rate;
    scorer_zero_grads(&s->sc, T);
    float *dg = s->g; /* the scores are not needed any more: reuse as dL/dg */
    memset(dg, 0, n * sizeof(float));
    for (int q = 0; q < rt->n_pairs; q++) dg[(size_t)rt->token[q] * E + rt->expert[q]] += dgate[q];
    for (size_t i = 0; i < n; i++) {
        s->sc.dprobs[i] = (1.0f - a) * dg[i];
        s->sc.dlogits[i] = a * 2.0f / E * s->sig[i] * (1.0f - s->sig[i]) * dg[i];
    }
    if (s->o.aux > 0) router_switch_aux_backward(s->sc.dprobs, s->sc.counts, T, E, s->kk, (float)s->o.aux * scale);
    router_softmax_backward(s->sc.dlogits, s->sc.probs, s->sc.dprobs, T, E);
    router_linear_backward(x, w, s->sc.dlogits, T, r->D, E, dw, dx);
}

static void us_after_step(RouterLayer *r) {
    UsPriv *s = r->priv;
    if (r->pending[1] > 0) {
        double a = r->state[S_CALIB] ? s->o.ema : 0.0, cut = r->pending[0] / r->pending[1];
        r->state[S_TAU] = a * r->state[S_TAU] + (1 - a) * cut;
        r->state[S_CALIB] = 1.0;
    }
    r->pending[0] = r->pending[1] = 0.0;
}

const RouterSpec router_usmoe = {
    .name = "usmoe",
    .summary = "unified softmax/sigmoid score, global top-(k*T) over token x expert pairs (USMoE); per-token rule in generation",
    .options = US_TABLE,
    .param_rows = us_rows,
    .state_len = us_state_len,
    .init = us_init,
    .free = us_free,
    .forward = us_forward,
    .backward = us_backward,
    .after_step = us_after_step,
};
