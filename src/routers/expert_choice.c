/* expert_choice (Zhou et al., NeurIPS 2022): softmax scores over experts; each expert
 * takes the C tokens of the batch with its highest scores, C = ceil(cf * k * T / E)
 * (cf = 1: the compute of token-choice top-k). Gates are the scores. A token may get
 * 0..E experts; one with none passes through the residual (and shared experts). No
 * losses: balance holds by construction.
 *
 * Not causal: whether a token gets an expert depends on the other tokens of the batch,
 * later ones included. Generation (ROUTE_INFER) uses a per-token rule instead: top-k
 * of the scores (default), or every expert whose score reaches that expert's
 * threshold, the running mean of its C-th largest training score (kept in the state). */
#include "core/ops.h"
#include "core/util.h"
#include "moe/router.h"
#include "routers/shared.h"
#include <stdlib.h>
#include <string.h>

typedef struct {
    double cf, ema;
    int infer;
} EcOpts;

static const RouterOption EC_TABLE[] = {
    {"cf", ROPT_FLOAT, offsetof(EcOpts, cf), 1.0, 0.01, 64, NULL,
     "capacity factor: each expert takes ceil(cf*k*T/E) tokens of the batch (1: top-k's compute, Zhou et al.'s "
     "c = k; they mostly run c = 2 against top-2)"},
    {"infer", ROPT_ENUM, offsetof(EcOpts, infer), 0, 0, 0, "topk|threshold",
     "per-token rule of generation: top-k of the scores, or the per-expert thresholds learned in training"},
    {"ema", ROPT_FLOAT, offsetof(EcOpts, ema), 0.9, 0, 0.9999, NULL,
     "decay of the running thresholds, per optimizer step (0.9: moelab's choice)"},
    {0}};

enum { S_CALIB, S_TAU }; /* state: calibrated flag, tau[E] */

typedef struct {
    EcOpts o;
    Scorer sc;
    int *ctok, *cexp;
    float *prio;
    unsigned char *keep;
    size_t cap;
} EcPriv;

static int ec_rows(const ModelConfig *m) { return m->n_experts; }
static int ec_state_len(const ModelConfig *m) { return S_TAU + m->n_experts; }

static int ec_init(RouterLayer *r) {
    EcOpts o;
    if (router_opts_parse("expert_choice", EC_TABLE, r->cfg->router_opts, &o)) return -1;
    EcPriv *s = ml_calloc(1, sizeof *s);
    s->o = o;
    scorer_init(&s->sc, r->E);
    r->pending_len = r->E + 1; /* sum of each expert's C-th score, micro-batches */
    r->pending = ml_calloc(r->pending_len, sizeof(double));
    r->batch_level = 1;
    r->priv = s;
    return 0;
}

static void ec_free(RouterLayer *r) {
    EcPriv *s = r->priv;
    if (!s) return;
    scorer_free(&s->sc);
    free(s->ctok), free(s->cexp), free(s->prio), free(s->keep);
    free(r->pending);
    r->pending = NULL;
    free(s);
    r->priv = NULL;
}

static void reserve(EcPriv *s, int T, int E) {
    scorer_reserve(&s->sc, T);
    size_t n = (size_t)T * E;
    if (n <= s->cap) return;
    s->ctok = ml_realloc(s->ctok, n * sizeof(int));
    s->cexp = ml_realloc(s->cexp, n * sizeof(int));
    s->prio = ml_realloc(s->prio, n * sizeof(float));
    s->keep = ml_realloc(s->keep, n);
    s->cap = n;
}

/* Which (t, e) pairs are taken, into keep[t*E + e]. */
static void choose(RouterLayer *r, EcPriv *s, int T) {
    int E = r->E, k = r->k;
    const float *p = s->sc.probs;
    size_t n = (size_t)T * E;
    if (r->mode != ROUTE_INFER) {
        for (size_t i = 0; i < n; i++) s->ctok[i] = (int)(i / E), s->cexp[i] = (int)(i % E), s->prio[i] = p[i];
        int C = router_capacity(s->o.cf, (double)k * T, E);
        router_capacity_filter(s->ctok, s->cexp, s->prio, (int)n, E, C, 0, s->keep);
        if (r->mode == ROUTE_TRAIN) { /* each expert's C-th score: the cut a threshold rule imitates */
            for (int e = 0; e < E; e++) {
                float cut = 1.0f;
                for (int t = 0; t < T; t++)
                    if (s->keep[(size_t)t * E + e] && p[(size_t)t * E + e] < cut) cut = p[(size_t)t * E + e];
                r->pending[e] += cut;
            }
            r->pending[E] += 1.0;
        }
        return;
    }
    memset(s->keep, 0, n);
    const double *tau = r->state ? r->state + S_TAU : NULL;
    int idx[E];
    for (int t = 0; t < T; t++) {
        const float *pt = p + (size_t)t * E;
        if (s->o.infer == 1 && tau && r->state[S_CALIB]) {
            for (int e = 0; e < E; e++) s->keep[(size_t)t * E + e] = pt[e] >= tau[e];
        } else {
            router_select_topk(pt, E, k, idx);
            for (int j = 0; j < k; j++) s->keep[(size_t)t * E + idx[j]] = 1;
        }
    }
}

static void ec_forward(RouterLayer *r, const float *x, const float *w, int T, Routing *rt) {
    EcPriv *s = r->priv;
    int E = r->E;
    reserve(s, T, E);
    router_linear_softmax(x, w, T, r->D, E, s->sc.logits, s->sc.probs);
    choose(r, s, T);
    size_t n = (size_t)T * E, m = 0;
    for (size_t i = 0; i < n; i++) m += s->keep[i];
    routing_reserve(rt, (int)m);
    rt->n_tokens = T;
    rt->n_pairs = 0;
    for (size_t i = 0; i < n; i++) {
        if (!s->keep[i]) continue;
        int q = rt->n_pairs++;
        rt->token[q] = (int)(i / E);
        rt->expert[q] = (int)(i % E);
        rt->gate[q] = s->sc.probs[i];
    }
    r->probs = s->sc.probs;
    r->n_losses = 0;
}

static void ec_backward(RouterLayer *r, const float *x, const float *w, int T, const Routing *rt, const float *dgate,
                        float scale, float *dw, float *dx) {
    (void)scale;
    EcPriv *s = r->priv;
    int E = r->E;
    scorer_zero_grads(&s->sc, T);
    for (int q = 0; q < rt->n_pairs; q++) s->sc.dprobs[(size_t)rt->token[q] * E + rt->expert[q]] += dgate[q];
    router_softmax_backward(s->sc.dlogits, s->sc.probs, s->sc.dprobs, T, E);
    router_linear_backward(x, w, s->sc.dlogits, T, r->D, E, dw, dx);
}

static void ec_after_step(RouterLayer *r) {
    EcPriv *s = r->priv;
    int E = r->E;
    if (r->pending[E] > 0) {
        double a = r->state[S_CALIB] ? s->o.ema : 0.0;
        for (int e = 0; e < E; e++) r->state[S_TAU + e] = a * r->state[S_TAU + e] + (1 - a) * r->pending[e] / r->pending[E];
        r->state[S_CALIB] = 1.0;
    }
    memset(r->pending, 0, (size_t)r->pending_len * sizeof(double));
}

const RouterSpec router_expert_choice = {
    .name = "expert_choice",
    .summary = "each expert takes its top-C tokens of the batch (Zhou et al.); not causal: per-token rule in generation",
    .options = EC_TABLE,
    .param_rows = ec_rows,
    .state_len = ec_state_len,
    .init = ec_init,
    .free = ec_free,
    .forward = ec_forward,
    .backward = ec_backward,
    .after_step = ec_after_step,
};
