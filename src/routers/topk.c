/* topk: softmax (or sigmoid) scores, each token takes its k highest experts.
 * Gates are the scores at the chosen experts, renormalised over them when
 * cfg->renorm (Mixtral) or left as they are (OLMoE/Qwen2-MoE without norm_topk_prob).
 * Losses: Switch load balancing (aux, 1.0 = balanced) and z-loss. Optional capacity
 * (cf > 0): each expert keeps at most ceil(cf*T*k/E) of the batch's pairs; the rest
 * are dropped (the residual carries them), which makes selection batch-level, so the
 * inference rule (ROUTE_INFER) is dropless. Optional extras (extras.h). */
#include "routers/topk.h"
#include "core/ops.h"
#include "core/util.h"
#include "routers/shared.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    TopkOpts o;
    int model_losses, n_losses_fwd;
    Scorer sc;
    Extras ex;
    int *idx, *slot;      /* [T*k] chosen experts; [pairs] slot t*k+j of each emitted pair */
    float *prio, *dg;     /* [T*k] */
    int *ctok;            /* [T*k] */
    unsigned char *keep;  /* [T*k] */
    size_t cap;
} TopkPriv;

static const RouterOption TOPK_TABLE[] = {TOPK_OPTIONS(0), EXTRA_OPTIONS(TopkOpts, ex, 0, 0, 0, 0), {0}};

int topk_rows(const ModelConfig *m) { return m->n_experts; }

int topk_state_len_for(const ModelConfig *m, const char *name, const RouterOption *table) {
    TopkOpts o;
    if (router_opts_parse(name, table, m->router_opts, &o)) return 0;
    return extras_state_len(&o.ex, m->n_experts);
}

int topk_setup(RouterLayer *r, const char *name, const RouterOption *table, int model_losses) {
    TopkOpts o;
    if (router_opts_parse(name, table, r->cfg->router_opts, &o)) return -1;
    if (r->state_len < extras_state_len(&o.ex, r->E))
        return ml_fail("router %s: these options need router state the model was not made with", name);
    TopkPriv *s = ml_calloc(1, sizeof *s);
    s->o = o;
    s->model_losses = model_losses && o.score == 0;
    scorer_init(&s->sc, r->E);
    r->pending_len = extras_pending_len(&o.ex, r->E);
    r->pending = r->pending_len ? ml_calloc(r->pending_len, sizeof(double)) : NULL;
    extras_init(&s->ex, &o.ex, r->E, r->state_len ? r->state : NULL, r->pending);
    r->output_loss = o.ex.ortho > 0;
    r->batch_level = o.cf > 0;
    r->priv = s;
    return 0;
}

void topk_free(RouterLayer *r) {
    TopkPriv *s = r->priv;
    if (!s) return;
    scorer_free(&s->sc);
    extras_free(&s->ex);
    void *bufs[] = {s->idx, s->slot, s->prio, s->dg, s->ctok, s->keep};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(r->pending);
    r->pending = NULL;
    free(s);
    r->priv = NULL;
}

static void reserve(TopkPriv *s, int T, int k) {
    scorer_reserve(&s->sc, T);
    size_t n = (size_t)T * k;
    if (n <= s->cap) return;
    s->idx = ml_realloc(s->idx, n * sizeof(int));
    s->slot = ml_realloc(s->slot, n * sizeof(int));
    s->ctok = ml_realloc(s->ctok, n * sizeof(int));
    s->prio = ml_realloc(s->prio, n * sizeof(float));
    s->dg = ml_realloc(s->dg, n * sizeof(float));
    s->keep = ml_realloc(s->keep, n);
    s->cap = n;
}

static void score(TopkPriv *s, const float *x, const float *w, int T, int D) {
    int E = s->sc.E;
    if (s->o.score == 0) {
        router_linear_softmax(x, w, T, D, E, s->sc.logits, s->sc.probs);
        return;
    }
    matmul_forward(s->sc.logits, x, w, T, D, E, 0);
    for (size_t i = 0; i < (size_t)T * E; i++) s->sc.probs[i] = 1.0f / (1.0f + expf(-s->sc.logits[i]));
}

void topk_forward(RouterLayer *r, const float *x, const float *w, int T, Routing *rt) {
    TopkPriv *s = r->priv;
    int E = r->E, k = r->k;
    reserve(s, T, k);
    score(s, x, w, T, r->D);
    const float *p = s->sc.probs, *sel = extras_scores(&s->ex, p, T);
    unsigned long long draw = router_hash((unsigned long long)r->layer, r->mode == ROUTE_TRAIN ? r->step + 1 : 0);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        int *idx = s->idx + (size_t)t * k;
        if (s->o.balance) router_draw_experts(router_hash(draw, (unsigned long long)t), E, k, idx);
        else router_select_topk(sel + (size_t)t * E, E, k, idx);
        float sum = 0.0f;
        for (int j = 0; j < k; j++) sum += p[(size_t)t * E + idx[j]];
        for (int j = 0; j < k; j++) {
            float g = p[(size_t)t * E + idx[j]];
            s->prio[(size_t)t * k + j] = r->cfg->renorm ? g / sum : g;
            s->ctok[(size_t)t * k + j] = t;
        }
    }
    int n = T * k;
    memset(s->keep, 1, n);
    if (s->o.cf > 0 && r->mode != ROUTE_INFER)
        router_capacity_filter(s->ctok, s->idx, s->prio, n, E, router_capacity(s->o.cf, n, E), s->o.drop, s->keep);
    routing_reserve(rt, n);
    rt->n_tokens = T;
    rt->n_pairs = 0;
    for (int i = 0; i < n; i++) {
        if (!s->keep[i]) continue;
        int q = rt->n_pairs++;
        rt->token[q] = s->ctok[i];
        rt->expert[q] = s->idx[i];
        rt->gate[q] = s->prio[i];
        s->slot[q] = i;
    }
    memset(s->sc.counts, 0, E * sizeof(int));
    for (int i = 0; i < n; i++) s->sc.counts[s->idx[i]]++;
    r->probs = s->o.score == 0 ? p : NULL;
    r->n_losses = 0;
    if (s->model_losses) {
        r->losses[r->n_losses++] = (RouterLoss){"aux", router_switch_aux(p, s->sc.counts, T, E, k), r->cfg->aux_coef};
        r->losses[r->n_losses++] = (RouterLoss){"z", router_z_loss(s->sc.logits, T, E, s->sc.lse), r->cfg->z_coef};
    }
    extras_forward(&s->ex, r, p, rt, T);
}

void topk_backward_outputs(RouterLayer *r, const Routing *rt, const float *y, const int *pos, float *dy, float scale) {
    TopkPriv *s = r->priv;
    extras_backward_outputs(&s->ex, r, rt, y, pos, dy, scale);
}

void topk_backward(RouterLayer *r, const float *x, const float *w, int T, const Routing *rt, const float *dgate,
                   float scale, float *dw, float *dx) {
    TopkPriv *s = r->priv;
    int E = r->E, k = r->k;
    const float *p = s->sc.probs;
    dgate = extras_dgate(&s->ex, rt, dgate, scale);
    memset(s->dg, 0, (size_t)T * k * sizeof(float));
    for (int q = 0; q < rt->n_pairs; q++) s->dg[s->slot[q]] = dgate[q];
    scorer_zero_grads(&s->sc, T);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        float *dp = s->sc.dprobs + (size_t)t * E;
        const int *idx = s->idx + (size_t)t * k;
        const float *g = s->prio + (size_t)t * k, *dg = s->dg + (size_t)t * k;
        if (!r->cfg->renorm) {
            for (int j = 0; j < k; j++) dp[idx[j]] += dg[j];
            continue;
        }
        /* g_i = p_i / S over the chosen set: dp_i = (dg_i - sum_j g_j dg_j) / S */
        float sum = 0.0f, dot = 0.0f;
        for (int j = 0; j < k; j++) {
            sum += p[(size_t)t * E + idx[j]];
            dot += g[j] * dg[j];
        }
        for (int j = 0; j < k; j++) dp[idx[j]] += (dg[j] - dot) / sum;
    }
    if (s->model_losses) router_switch_aux_backward(s->sc.dprobs, s->sc.counts, T, E, k, r->cfg->aux_coef * scale);
    extras_dscores(&s->ex, s->sc.dprobs, p, T, scale);
    if (s->o.score == 0) {
        router_softmax_backward(s->sc.dlogits, p, s->sc.dprobs, T, E);
    } else {
        for (size_t i = 0; i < (size_t)T * E; i++) s->sc.dlogits[i] = s->sc.dprobs[i] * p[i] * (1.0f - p[i]);
    }
    if (s->model_losses) router_z_loss_backward(s->sc.dlogits, p, s->sc.lse, T, E, r->cfg->z_coef * scale);
    router_linear_backward(x, w, s->sc.dlogits, T, r->D, E, dw, dx);
}

void topk_after_step(RouterLayer *r) {
    TopkPriv *s = r->priv;
    extras_after_step(&s->ex);
}

int topk_load_inputs(RouterLayer *r, const RouterTensor *in, int n_in) {
    return extras_load_bias(&((TopkPriv *)r->priv)->ex, in, n_in);
}

static int topk_state_len(const ModelConfig *m) { return topk_state_len_for(m, "topk", TOPK_TABLE); }
static int topk_init(RouterLayer *r) { return topk_setup(r, "topk", TOPK_TABLE, 1); }

const RouterSpec router_topk = {
    .name = "topk",
    .summary = "softmax top-k, optional renormalisation and capacity; Switch aux loss and z-loss",
    .options = TOPK_TABLE,
    .state_len = topk_state_len,
    .init = topk_init,
    TOPK_FAMILY_HOOKS,
};
