/* etr (Expert-Token Resonance, arXiv 2406.00023, after LocMoE 2401.13920): no router
 * parameters. The affinity of token t to expert e is the cosine between x_t and the
 * indicator of e's block of d_model/E coordinates (GrAP, grouped average pooling):
 *   delta_te = sum_{j in G_e} x_tj / (|x_t| sqrt(D/E)).
 * Token choice: each token takes its top-l experts by affinity. Expert choice on top:
 * an expert keeps at most C of the tokens that chose it, those of highest affinity;
 * C = max(C_floor, ceil(cf * l * T / E)), cf annealed from cf_hi (token-choice regime)
 * to cf_lo (expert-choice regime) between two fractions of training, C_floor the
 * papers' capacity lower bound 1/(E erfc(sqrt(d^2 D/(2 - d^2)))) at the running mean
 * affinity d of the chosen experts. Gates: softmax over experts of the group means
 * x_t[G_e] / tau, the only differentiable path; Switch aux loss on them (model flag).
 * The expert-side step sees the whole batch, so generation (ROUTE_INFER) uses the
 * token-choice step alone. The capacity factor in use is logged as "cf". */
#include "core/ops.h"
#include "core/util.h"
#include "moe/router.h"
#include "routers/shared.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int l, floor;
    double cf_hi, cf_lo, start, end, tau, ema;
} EtrOpts;

static const RouterOption ETR_TABLE[] = {
    {"l", ROPT_INT, offsetof(EtrOpts, l), 0, 0, 64, NULL,
     "experts per token in the token-choice step (0: the model's top-k, so compute matches the other routers; the "
     "paper runs every method top-1)"},
    {"cf_hi", ROPT_FLOAT, offsetof(EtrOpts, cf_hi), 1.1, 0.01, 64, NULL,
     "capacity factor before the anneal (1.1: the paper's baseline capacity)"},
    {"cf_lo", ROPT_FLOAT, offsetof(EtrOpts, cf_lo), 0.66, 0.01, 64, NULL,
     "capacity factor after the anneal (0.66 = 0.6 x 1.1: the paper's ~40% fewer tokens per expert)"},
    {"start", ROPT_FLOAT, offsetof(EtrOpts, start), 0.1, 0, 1, NULL, "fraction of training where the anneal starts (related-routers s3.3)"},
    {"end", ROPT_FLOAT, offsetof(EtrOpts, end), 0.3, 0, 1, NULL, "fraction of training where it ends (related-routers s3.3)"},
    {"floor", ROPT_ENUM, offsetof(EtrOpts, floor), 0, 0, 0, "bound|none",
     "capacity floor: the LocMoE/ETR lower bound at the running affinity, or none"},
    {"tau", ROPT_FLOAT, offsetof(EtrOpts, tau), 1.0, 0.01, 100, NULL, "gate softmax temperature (1: related-routers s3.1)"},
    {"ema", ROPT_FLOAT, offsetof(EtrOpts, ema), 0.9, 0, 0.9999, NULL, "decay of the running affinity per optimizer step"},
    {0}};

enum { S_CALIB, S_DELTA, S_CF, S_LEN }; /* S_CF: the factor of the last training step, for evaluation */

typedef struct {
    EtrOpts o;
    Scorer sc; /* logits: group means / tau; probs: gates; counts: token-choice loads */
    float *delta;
    int *idx, *ctok;
    unsigned char *keep;
    size_t cap;
    double cf_used;
} EtrPriv;

static int etr_rows(const ModelConfig *m) { (void)m; return 0; }
static int etr_state_len(const ModelConfig *m) { (void)m; return S_LEN; }

static int etr_init(RouterLayer *r) {
    EtrOpts o;
    if (router_opts_parse("etr", ETR_TABLE, r->cfg->router_opts, &o)) return -1;
    if (r->D % r->E) return ml_fail("router etr: d_model %d must be a multiple of the %d experts (GrAP groups)", r->D, r->E);
    if (o.l == 0) o.l = r->k;
    if (o.l > r->E) return ml_fail("router etr: l=%d exceeds the %d experts", o.l, r->E);
    if (o.end < o.start) return ml_fail("router etr: end=%g is before start=%g", o.end, o.start);
    EtrPriv *s = ml_calloc(1, sizeof *s);
    s->o = o;
    scorer_init(&s->sc, r->E);
    r->pending_len = 2; /* sum of chosen affinities, their count */
    r->pending = ml_calloc(2, sizeof(double));
    r->batch_level = 1;
    r->priv = s;
    return 0;
}

static void etr_free(RouterLayer *r) {
    EtrPriv *s = r->priv;
    if (!s) return;
    scorer_free(&s->sc);
    free(s->delta), free(s->idx), free(s->ctok), free(s->keep);
    free(r->pending);
    r->pending = NULL;
    free(s);
    r->priv = NULL;
}

static void reserve(EtrPriv *s, int T, int E, int l) {
    scorer_reserve(&s->sc, T);
    if ((size_t)T <= s->cap) return;
    s->delta = ml_realloc(s->delta, (size_t)T * E * sizeof(float));
    s->idx = ml_realloc(s->idx, (size_t)T * l * sizeof(int));
    s->ctok = ml_realloc(s->ctok, (size_t)T * l * sizeof(int));
    s->keep = ml_realloc(s->keep, (size_t)T * l);
    s->cap = T;
}

static double capacity_factor(const RouterLayer *r, const EtrOpts *o) {
    if (r->total_steps <= 0) return o->cf_hi;
    double f = (double)r->step / r->total_steps;
    if (f <= o->start) return o->cf_hi;
    if (f >= o->end) return o->cf_lo;
    return o->cf_hi + (o->cf_lo - o->cf_hi) * (f - o->start) / (o->end - o->start);
}

static void etr_forward(RouterLayer *r, const float *x, const float *w, int T, Routing *rt) {
    (void)w;
    EtrPriv *s = r->priv;
    int E = r->E, D = r->D, G = D / E, l = s->o.l;
    reserve(s, T, E, l);
    for (int t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * D;
        double nx = 0.0;
        for (int j = 0; j < D; j++) nx += (double)xt[j] * xt[j];
        nx = sqrt(nx) + 1e-6;
        for (int e = 0; e < E; e++) {
            double sum = 0.0;
            for (int j = 0; j < G; j++) sum += xt[e * G + j];
            s->delta[(size_t)t * E + e] = (float)(sum / (nx * sqrt((double)G)));
            s->sc.logits[(size_t)t * E + e] = (float)(sum / G / s->o.tau);
        }
        router_select_topk(s->delta + (size_t)t * E, E, l, s->idx + (size_t)t * l);
        for (int j = 0; j < l; j++) s->ctok[(size_t)t * l + j] = t;
    }
    softmax_rows(s->sc.probs, s->sc.logits, T, E);
    int n = T * l;
    memset(s->keep, 1, n);
    s->cf_used = 0.0;
    if (r->mode != ROUTE_INFER) {
        double cf = capacity_factor(r, &s->o), floor_ = 1.0;
        if (r->state && r->mode == ROUTE_TRAIN) r->state[S_CF] = cf;
        else if (r->state && r->state[S_CALIB]) cf = r->state[S_CF];
        if (s->o.floor == 0 && r->state && r->state[S_CALIB]) floor_ = router_capacity_lower_bound(r->state[S_DELTA], D, E);
        int C = router_capacity(cf, n, E);
        if (floor_ > C) C = floor_ > T ? T : (int)floor_;
        s->cf_used = (double)C * E / n;
        float *prio = s->sc.dprobs; /* scratch until the backward: affinity of each candidate */
        for (int i = 0; i < n; i++) prio[i] = s->delta[(size_t)s->ctok[i] * E + s->idx[i]];
        router_capacity_filter(s->ctok, s->idx, prio, n, E, C, 0, s->keep);
        if (r->mode == ROUTE_TRAIN) {
            for (int i = 0; i < n; i++) r->pending[0] += prio[i];
            r->pending[1] += n;
        }
    }
    routing_reserve(rt, n);
    rt->n_tokens = T;
    rt->n_pairs = 0;
    memset(s->sc.counts, 0, E * sizeof(int));
    for (int i = 0; i < n; i++) {
        s->sc.counts[s->idx[i]]++;
        if (!s->keep[i]) continue;
        int q = rt->n_pairs++;
        rt->token[q] = s->ctok[i];
        rt->expert[q] = s->idx[i];
        rt->gate[q] = s->sc.probs[(size_t)s->ctok[i] * E + s->idx[i]];
    }
    r->probs = s->sc.probs;
    r->n_losses = 0;
    r->losses[r->n_losses++] = (RouterLoss){"aux", router_switch_aux(s->sc.probs, s->sc.counts, T, E, l), r->cfg->aux_coef};
    if (r->mode != ROUTE_INFER) r->losses[r->n_losses++] = (RouterLoss){"cf", (float)s->cf_used, 0.0f};
}

/* Gates are softmax(u / tau), u_te = mean of x_t over G_e: dx_t[G_e] += du_te / (tau G). */
static void etr_backward(RouterLayer *r, const float *x, const float *w, int T, const Routing *rt, const float *dgate,
                         float scale, float *dw, float *dx) {
    (void)x, (void)w, (void)dw;
    EtrPriv *s = r->priv;
    int E = r->E, D = r->D, G = D / E;
    scorer_zero_grads(&s->sc, T);
    for (int q = 0; q < rt->n_pairs; q++) s->sc.dprobs[(size_t)rt->token[q] * E + rt->expert[q]] += dgate[q];
    router_switch_aux_backward(s->sc.dprobs, s->sc.counts, T, E, s->o.l, r->cfg->aux_coef * scale);
    router_softmax_backward(s->sc.dlogits, s->sc.probs, s->sc.dprobs, T, E);
    float c = (float)(1.0 / (s->o.tau * G));
    for (int t = 0; t < T; t++)
        for (int e = 0; e < E; e++) {
            float du = s->sc.dlogits[(size_t)t * E + e] * c;
            for (int j = 0; j < G; j++) dx[(size_t)t * D + e * G + j] += du;
        }
}

static void etr_after_step(RouterLayer *r) {
    EtrPriv *s = r->priv;
    if (r->pending[1] > 0) {
        double a = r->state[S_CALIB] ? s->o.ema : 0.0;
        r->state[S_DELTA] = a * r->state[S_DELTA] + (1 - a) * r->pending[0] / r->pending[1];
        r->state[S_CALIB] = 1.0;
    }
    r->pending[0] = r->pending[1] = 0.0;
}

const RouterSpec router_etr = {
    .name = "etr",
    .summary = "GrAP affinity (no router weights), token choice then expert-side capacity, annealed (ETR / LocMoE+)",
    .options = ETR_TABLE,
    .param_rows = etr_rows,
    .state_len = etr_state_len,
    .init = etr_init,
    .free = etr_free,
    .forward = etr_forward,
    .backward = etr_backward,
    .after_step = etr_after_step,
};
