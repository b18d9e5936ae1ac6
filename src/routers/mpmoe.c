/* mpmoe: Mahalanobis-pruned routing (MP-MoE). Each token takes the k experts that
 * greedily maximise f(S) = p_S^T Sigma_SS^-1 p_S, where p is the softmax over all
 * experts and Sigma the covariance of the "expert chosen" indicators, estimated from
 * the co-occurrence counts of the final routing of every training forward. Gates are
 * the softmax restricted to the chosen set; the selection carries no gradient. Switch
 * aux loss (counts from the chosen set) and z-loss as topk. docs/mpmoe.md has the
 * options, the state layout and what reference=1 changes. */
#include "routers/mpmoe.h"
#include "core/util.h"
#include "moe/router.h"
#include "routers/extras.h"
#include "routers/shared.h"
#include <math.h>
#include <omp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

enum { SELECT_GREEDY, SELECT_TOPK };

typedef struct {
    double warmup, decay, ridge;
    int sigma_every, eval_select, reference;
    ExtraOpts ex; /* orthogonality/variance losses, aux-free bias (extras.h), off by default */
} MpmoeOpts;

static const RouterOption MPMOE_OPTIONS[] = {
    {"warmup", ROPT_FLOAT, offsetof(MpmoeOpts, warmup), 0.01, 0, 1, NULL,
     "fraction of optimizer steps routed by plain top-k before the greedy starts (the published 1%; counted in "
     "optimizer steps, so it ends with or without recompute)"},
    {"sigma_every", ROPT_INT, offsetof(MpmoeOpts, sigma_every), 1, 1, 1e9, NULL,
     "optimizer steps between rebuilds of Sigma from the counts (a rebuild is O(E^2), so every step costs nothing)"},
    {"decay", ROPT_FLOAT, offsetof(MpmoeOpts, decay), 100, 0, 1e12, NULL,
     "half-life of the counts in optimizer steps, 0 = cumulative as published (cumulative counts keep describing "
     "the early random router; a half-life keeps Sigma about the routing the model does now)"},
    {"ridge", ROPT_FLOAT, offsetof(MpmoeOpts, ridge), 0.01, 0, 1e6, NULL,
     "added to Sigma's diagonal as a fraction of its mean diagonal, and the clamp of conditional variances (Sigma "
     "is singular: without it fp32 round-off and unused experts give gains of p^2/1e-12)"},
    {"eval_select", ROPT_ENUM, offsetof(MpmoeOpts, eval_select), SELECT_GREEDY, 0, 0, "greedy|topk",
     "validation and generation rule: the greedy with the saved Sigma (what training did), or plain top-k "
     "(no inference cost)"},
    {"reference", ROPT_INT, offsetof(MpmoeOpts, reference), 0, 0, 1, NULL,
     "1 = the published code where it differs: cumulative counts, diagonal floor and Schur clamp 1e-12, no ridge, "
     "warm-up gates not renormalised"},
    EXTRA_OPTIONS(MpmoeOpts, ex, 0, 0, 0, 0),
    {0}};

typedef struct {
    MpmoeOpts o;
    Scorer sc;     /* logits, probs, their gradients, lse; counts: pairs per expert (aux loss) */
    float *sigma;  /* [E*E] float copy of the state's Sigma, refreshed every forward */
    float *work;   /* per thread mpmoe_work_len floats */
    int renorm;    /* gates of the last forward renormalised over the chosen set */
    Extras ex;
    size_t work_len;
    int threads;
} MpmoeScratch;

/* ---- Sigma and the greedy ---- */

void mpmoe_sigma_build(const double *C, const double *u, double N, int E, double ridge, double *sigma, double *eps) {
    if (N <= 0) {
        for (int i = 0; i < E; i++)
            for (int j = 0; j < E; j++) sigma[(size_t)i * E + j] = i == j;
        *eps = MPMOE_EPS_REF;
        return;
    }
    double mean_diag = 0.0;
    for (int i = 0; i < E; i++) {
        for (int j = 0; j < E; j++) sigma[(size_t)i * E + j] = C[(size_t)i * E + j] / N - u[i] * u[j] / (N * N);
        double *d = &sigma[(size_t)i * E + i];
        if (*d < 0) *d = 0; /* q(1-q) >= 0; only round-off goes below */
        mean_diag += *d / E;
    }
    double add = ridge * mean_diag;
    *eps = add > MPMOE_EPS_REF ? add : MPMOE_EPS_REF;
    for (int i = 0; i < E; i++) {
        double *d = &sigma[(size_t)i * E + i];
        *d += add;
        if (*d < MPMOE_EPS_REF) *d = MPMOE_EPS_REF;
    }
}

size_t mpmoe_work_len(int E, int k) { return (size_t)E * (k + 4); }

/* x when above lo, else lo (NaN too); unlike fmaxf it compiles to one max instruction. */
static inline float max_or_lo(float x, float lo) { return x > lo ? x : lo; }

/* Index of the largest gain, ties to the lowest index: a vectorised max, then the first
 * index holding it (one predictable branch instead of one unpredictable per expert). */
static int argmax_first(const float *g, int E) {
    float m = g[0];
#pragma omp simd reduction(max : m)
    for (int e = 1; e < E; e++) m = g[e] > m ? g[e] : m;
    int best = 0;
    while (best < E - 1 && g[best] != m) best++;
    return best;
}

/* Per candidate j the recursion keeps d_j = Sigma_jj - sum_m c_mj^2 (conditional
 * variance given S), a_j = Sigma_jS Sigma_SS^-1 p_S (p_j predicted from S) and the
 * pivoted Cholesky rows c_m. The gain of adding j is (p_j - a_j)^2 / max(d_j, eps),
 * exactly f(S + j) - f(S). d is clamped where used, as the published code clamps
 * Sigma_jj - |alpha_j|^2 afresh each round. Chosen experts get gain -1 (gains are >= 0,
 * a NaN counts as 0), so no expert is taken twice and every loop vectorises. */
void mpmoe_greedy(const float *p, const float *sigma, int E, int k, float eps, float *work, int *idx, float *fvals) {
    float *d = work, *a = work + E, *taken = work + 2 * E, *gain = work + 3 * E, *c = work + 4 * E;
    float f = 0.0f;
    for (int e = 0; e < E; e++) {
        d[e] = sigma[(size_t)e * E + e];
        a[e] = 0.0f;
        taken[e] = 0.0f;
    }
    for (int t = 0; t < k; t++) {
        for (int e = 0; e < E; e++) {
            float r = p[e] - a[e], v = max_or_lo(d[e], eps), g = max_or_lo(r * r / v, 0.0f);
            gain[e] = taken[e] != 0.0f ? -1.0f : g;
        }
        int best = argmax_first(gain, E);
        idx[t] = best;
        taken[best] = 1.0f;
        f += gain[best];
        if (fvals) fvals[t] = f;
        if (t == k - 1) break;
        float rj = 1.0f / sqrtf(max_or_lo(d[best], eps)), zt = (p[best] - a[best]) * rj;
        float *row = c + (size_t)t * E;
        const float *srow = sigma + (size_t)best * E;
        for (int e = 0; e < E; e++) row[e] = srow[e];
        for (int m = 0; m < t; m++) {
            const float *cm = c + (size_t)m * E;
            float coef = cm[best];
            for (int e = 0; e < E; e++) row[e] -= coef * cm[e];
        }
        for (int e = 0; e < E; e++) {
            row[e] *= rj;
            d[e] -= row[e] * row[e];
            a[e] += row[e] * zt;
        }
    }
}

/* ---- the router ---- */

static int mpmoe_rows(const ModelConfig *m) { return m->n_experts; }
static int mpmoe_state_len(const ModelConfig *m) {
    MpmoeOpts o; /* the extras' state follows MP-MoE's own */
    int ex = router_opts_parse("mpmoe", MPMOE_OPTIONS, m->router_opts, &o) ? 0 : extras_state_len(&o.ex, m->n_experts);
    return (int)MPMOE_STATE_LEN(m->n_experts) + ex;
}

static int mpmoe_init(RouterLayer *r) {
    MpmoeOpts o;
    if (router_opts_parse("mpmoe", MPMOE_OPTIONS, r->cfg->router_opts, &o)) return -1;
    if (o.reference) {
        o.decay = 0.0;
        o.ridge = 0.0;
    }
    if (r->state_len < (int)MPMOE_STATE_LEN(r->E) + extras_state_len(&o.ex, r->E))
        return ml_fail("router mpmoe: these options need router state the model was not made with");
    MpmoeScratch *s = ml_calloc(1, sizeof *s);
    s->o = o;
    scorer_init(&s->sc, r->E);
    s->sigma = ml_malloc((size_t)r->E * r->E * sizeof(float));
    s->work_len = mpmoe_work_len(r->E, r->k);
    r->priv = s;
    r->pending_len = (int)MPMOE_PENDING_LEN(r->E) + extras_pending_len(&o.ex, r->E);
    r->pending = ml_calloc(r->pending_len, sizeof(double));
    extras_init(&s->ex, &o.ex, r->E, r->state + MPMOE_STATE_LEN(r->E), r->pending + MPMOE_PENDING_LEN(r->E));
    r->output_loss = o.ex.ortho > 0;
    return 0;
}

static void mpmoe_free(RouterLayer *r) {
    MpmoeScratch *s = r->priv;
    free(r->pending);
    r->pending = NULL;
    if (!s) return;
    extras_free(&s->ex);
    scorer_free(&s->sc);
    free(s->sigma);
    free(s->work);
    free(s);
    r->priv = NULL;
}

static void reserve(MpmoeScratch *s, int T) {
    int threads = omp_get_max_threads(); /* may have grown since init */
    if (threads > s->threads) {
        s->work = ml_realloc(s->work, s->work_len * threads * sizeof(float));
        s->threads = threads;
    }
    scorer_reserve(&s->sc, T);
}

/* The published warm-up runs top-k for the first floor(fraction * steps) optimizer steps. */
static int in_warmup(const RouterLayer *r, const MpmoeOpts *o) {
    return r->step < (long)floor(o->warmup * (double)r->total_steps);
}

/* Greedy or top-k for this forward, and whether gates are renormalised. */
static int use_greedy(const RouterLayer *r, const MpmoeOpts *o, int *renorm) {
    *renorm = 1;
    if (r->mode != ROUTE_TRAIN) {
        if (o->eval_select == SELECT_TOPK) return 0;
        /* Validation during warm-up follows the training rule of that step; the published
         * code runs the greedy in eval mode whatever the step. */
        return o->reference || !in_warmup(r, o);
    }
    if (!in_warmup(r, o)) return 1;
    *renorm = !o->reference;
    return 0;
}

/* C += R^T R, u += R^T 1, N += T for this forward's final routing. */
static void add_counts(RouterLayer *r, const Routing *rt, int T) {
    int E = r->E, k = r->k;
    double *C = r->pending + MPMOE_C(E), *u = r->pending + MPMOE_U(E);
    for (int t = 0; t < T; t++) {
        const int *idx = rt->expert + (size_t)t * k;
        for (int i = 0; i < k; i++) {
            u[idx[i]] += 1.0;
            for (int j = 0; j < k; j++) C[(size_t)idx[i] * E + idx[j]] += 1.0;
        }
    }
    r->pending[MPMOE_N(E)] += T;
}

static void mpmoe_forward(RouterLayer *r, const float *x, const float *w, int T, Routing *rt) {
    MpmoeScratch *s = r->priv;
    int E = r->E, k = r->k;
    reserve(s, T);
    router_linear_softmax(x, w, T, r->D, E, s->sc.logits, s->sc.probs);
    routing_reserve(rt, T * k);
    rt->n_tokens = T;
    rt->n_pairs = T * k;
    int renorm, greedy = use_greedy(r, &s->o, &renorm);
    /* A state never rebuilt (eps still 0) means Sigma = I, under which the greedy is top-k.
     * init leaves the state alone, so routers re-made with other options keep it. */
    int built = r->state[MPMOE_EPS(E)] > 0;
    const double *sd = r->state + MPMOE_SIGMA(E);
    for (size_t i = 0; i < (size_t)E * E; i++) s->sigma[i] = built ? (float)sd[i] : (float)(i % (E + 1) == 0);
    float eps = built ? (float)r->state[MPMOE_EPS(E)] : (float)MPMOE_EPS_REF;
    s->renorm = renorm;
    const float *sel = extras_scores(&s->ex, s->sc.probs, T); /* biased scores select, p gates */
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const float *p = s->sc.probs + (size_t)t * E;
        int *idx = rt->expert + (size_t)t * k;
        const float *q = sel + (size_t)t * E;
        if (greedy) mpmoe_greedy(q, s->sigma, E, k, eps, s->work + s->work_len * omp_get_thread_num(), idx, NULL);
        else router_select_topk(q, E, k, idx);
        float sum = 0.0f;
        for (int j = 0; j < k; j++) sum += p[idx[j]];
        for (int j = 0; j < k; j++) {
            rt->token[(size_t)t * k + j] = t;
            rt->gate[(size_t)t * k + j] = renorm ? p[idx[j]] / sum : p[idx[j]];
        }
    }
    memset(s->sc.counts, 0, E * sizeof(int));
    for (int i = 0; i < T * k; i++) s->sc.counts[rt->expert[i]]++;
    if (r->mode == ROUTE_TRAIN) add_counts(r, rt, T);
    r->probs = s->sc.probs;
    r->n_losses = 2;
    r->losses[0] = (RouterLoss){"aux", router_switch_aux(s->sc.probs, s->sc.counts, T, E, k), r->cfg->aux_coef};
    r->losses[1] = (RouterLoss){"z", router_z_loss(s->sc.logits, T, E, s->sc.lse), r->cfg->z_coef};
    extras_forward(&s->ex, r, s->sc.probs, rt, T);
}

static void mpmoe_backward_outputs(RouterLayer *r, const Routing *rt, const float *y, const int *pos, float *dy,
                                   float scale) {
    extras_backward_outputs(&((MpmoeScratch *)r->priv)->ex, r, rt, y, pos, dy, scale);
}

static void mpmoe_backward(RouterLayer *r, const float *x, const float *w, int T, const Routing *rt, const float *dgate,
                           float scale, float *dw, float *dx) {
    MpmoeScratch *s = r->priv;
    int E = r->E, k = r->k;
    scorer_zero_grads(&s->sc, T);
    dgate = extras_dgate(&s->ex, rt, dgate, scale);
    router_prob_gates_backward(s->sc.dprobs, s->sc.probs, rt, dgate, T, E, k, s->renorm);
    router_switch_aux_backward(s->sc.dprobs, s->sc.counts, T, E, k, r->cfg->aux_coef * scale);
    extras_dscores(&s->ex, s->sc.dprobs, s->sc.probs, T, scale);
    router_softmax_backward(s->sc.dlogits, s->sc.probs, s->sc.dprobs, T, E);
    router_z_loss_backward(s->sc.dlogits, s->sc.probs, s->sc.lse, T, E, r->cfg->z_coef * scale);
    router_linear_backward(x, w, s->sc.dlogits, T, r->D, E, dw, dx);
}

/* Folds the (possibly all-reduced) counts of this step into the state, then rebuilds
 * Sigma every sigma_every steps. */
static void mpmoe_after_step(RouterLayer *r) {
    MpmoeScratch *s = r->priv;
    int E = r->E;
    double keep = s->o.decay > 0 ? pow(0.5, 1.0 / s->o.decay) : 1.0;
    int n = (int)MPMOE_PENDING_LEN(E); /* the extras' pending follows and is folded by them */
    for (int i = 0; i < n; i++) r->state[i] = keep * r->state[i] + r->pending[i];
    memset(r->pending, 0, n * sizeof(double));
    extras_after_step(&s->ex);
    if (r->step % s->o.sigma_every != 0) return;
    mpmoe_sigma_build(r->state + MPMOE_C(E), r->state + MPMOE_U(E), r->state[MPMOE_N(E)], E, s->o.ridge,
                      r->state + MPMOE_SIGMA(E), r->state + MPMOE_EPS(E));
}

static const RouterTensor *input(const RouterTensor *in, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(in[i].name, name) == 0) return &in[i];
    return NULL;
}

static int check_shape(const RouterTensor *t, const char *name, int ndim, long d0, long d1) {
    if (!t) return ml_fail("mpmoe: input tensor '%s' is missing", name);
    if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1))
        return ndim == 2 ? ml_fail("mpmoe: tensor '%s' must have shape [%ld, %ld]", name, d0, d1)
                         : ml_fail("mpmoe: tensor '%s' must have shape [%ld]", name, d0);
    return 0;
}

/* Either `sigma` [E,E] (the covariance before conditioning) or `cooc` [E,E], `usage` [E]
 * and `count` [1]; conditioned with the router's options as a rebuild would. */
static int mpmoe_load_inputs(RouterLayer *r, const RouterTensor *in, int n_in) {
    MpmoeScratch *s = r->priv;
    int E = r->E;
    double *st = r->state;
    const RouterTensor *sg = input(in, n_in, "sigma");
    if (sg) {
        if (check_shape(sg, "sigma", 2, E, E)) return -1;
        /* C = Sigma, u = 0, N = 1 builds exactly Sigma */
        memset(st, 0, MPMOE_PENDING_LEN(E) * sizeof(double));
        memcpy(st + MPMOE_C(E), sg->data, (size_t)E * E * sizeof(double));
        st[MPMOE_N(E)] = 1.0;
    } else {
        const RouterTensor *c = input(in, n_in, "cooc"), *u = input(in, n_in, "usage"), *n = input(in, n_in, "count");
        if (!c && !u && !n) return ml_fail("mpmoe: needs tensor 'sigma' [%d, %d], or 'cooc', 'usage' and 'count'", E, E);
        if (check_shape(c, "cooc", 2, E, E) || check_shape(u, "usage", 1, E, 0) || check_shape(n, "count", 1, 1, 0))
            return -1;
        if (!(n->data[0] > 0)) return ml_fail("mpmoe: tensor 'count' must be positive (got %g)", n->data[0]);
        memcpy(st + MPMOE_C(E), c->data, (size_t)E * E * sizeof(double));
        memcpy(st + MPMOE_U(E), u->data, (size_t)E * sizeof(double));
        st[MPMOE_N(E)] = n->data[0];
    }
    mpmoe_sigma_build(st + MPMOE_C(E), st + MPMOE_U(E), st[MPMOE_N(E)], E, s->o.ridge, st + MPMOE_SIGMA(E),
                      st + MPMOE_EPS(E));
    return 0;
}

const RouterSpec router_mpmoe = {
    .name = "mpmoe",
    .summary = "MP-MoE: greedy max of p_S^T Sigma_SS^-1 p_S, Sigma from co-occurrence counts; gates renormalised "
               "over the chosen set; Switch aux loss and z-loss",
    .options = MPMOE_OPTIONS,
    .param_rows = mpmoe_rows,
    .state_len = mpmoe_state_len,
    .init = mpmoe_init,
    .free = mpmoe_free,
    .forward = mpmoe_forward,
    .backward_outputs = mpmoe_backward_outputs,
    .backward = mpmoe_backward,
    .after_step = mpmoe_after_step,
    .load_inputs = mpmoe_load_inputs,
};
