/* topk: softmax over all experts, each token takes its k most probable experts.
 * Gates are the probabilities at the chosen experts, renormalised over them when
 * cfg->renorm (Mixtral) or left as they are (OLMoE/Qwen2-MoE without norm_topk_prob).
 * Losses: Switch load balancing (aux, 1.0 = balanced) and z-loss. */
#include "core/util.h"
#include "moe/router.h"
#include <stdlib.h>
#include <string.h>

typedef struct {
    float *logits, *probs, *lse, *dprobs, *dlogits;
    int *counts;
    size_t cap_tokens;
} TopkScratch;

static int topk_rows(const ModelConfig *m) { return m->n_experts; }
static int topk_state_len(const ModelConfig *m) { (void)m; return 0; }

static int topk_init(RouterLayer *r) {
    /* Its settings are model flags (--renorm, --aux-coef, --z-coef), shared with other routers. */
    if (router_opts_parse("topk", NULL, r->cfg->router_opts, NULL)) return -1;
    TopkScratch *s = ml_calloc(1, sizeof *s);
    s->counts = ml_calloc(r->E, sizeof(int));
    r->priv = s;
    return 0;
}

static void topk_free(RouterLayer *r) {
    TopkScratch *s = r->priv;
    if (!s) return;
    free(s->logits);
    free(s->probs);
    free(s->lse);
    free(s->dprobs);
    free(s->dlogits);
    free(s->counts);
    free(s);
    r->priv = NULL;
}

static void reserve(TopkScratch *s, int T, int E) {
    if ((size_t)T <= s->cap_tokens) return;
    size_t n = (size_t)T * E;
    s->logits = ml_realloc(s->logits, n * sizeof(float));
    s->probs = ml_realloc(s->probs, n * sizeof(float));
    s->dprobs = ml_realloc(s->dprobs, n * sizeof(float));
    s->dlogits = ml_realloc(s->dlogits, n * sizeof(float));
    s->lse = ml_realloc(s->lse, (size_t)T * sizeof(float));
    s->cap_tokens = T;
}

static void topk_forward(RouterLayer *r, const float *x, const float *w, int T, Routing *rt) {
    TopkScratch *s = r->priv;
    int E = r->E, k = r->k;
    reserve(s, T, E);
    router_linear_softmax(x, w, T, r->D, E, s->logits, s->probs);
    routing_reserve(rt, T * k);
    rt->n_tokens = T;
    rt->n_pairs = T * k;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const float *p = s->probs + (size_t)t * E;
        int *idx = rt->expert + (size_t)t * k;
        router_select_topk(p, E, k, idx);
        float sum = 0.0f;
        for (int j = 0; j < k; j++) sum += p[idx[j]];
        for (int j = 0; j < k; j++) {
            rt->token[(size_t)t * k + j] = t;
            rt->gate[(size_t)t * k + j] = r->cfg->renorm ? p[idx[j]] / sum : p[idx[j]];
        }
    }
    memset(s->counts, 0, E * sizeof(int));
    for (int i = 0; i < T * k; i++) s->counts[rt->expert[i]]++;
    r->probs = s->probs;
    r->n_losses = 2;
    r->losses[0] = (RouterLoss){"aux", router_switch_aux(s->probs, s->counts, T, E, k), r->cfg->aux_coef};
    r->losses[1] = (RouterLoss){"z", router_z_loss(s->logits, T, E, s->lse), r->cfg->z_coef};
}

static void topk_backward(RouterLayer *r, const float *x, const float *w, int T, const Routing *rt, const float *dgate,
                          float scale, float *dw, float *dx) {
    TopkScratch *s = r->priv;
    int E = r->E, k = r->k;
    memset(s->dprobs, 0, (size_t)T * E * sizeof(float));
    memset(s->dlogits, 0, (size_t)T * E * sizeof(float));
    router_prob_gates_backward(s->dprobs, s->probs, rt, dgate, T, E, k, r->cfg->renorm);
    router_switch_aux_backward(s->dprobs, s->counts, T, E, k, r->cfg->aux_coef * scale);
    router_softmax_backward(s->dlogits, s->probs, s->dprobs, T, E);
    router_z_loss_backward(s->dlogits, s->probs, s->lse, T, E, r->cfg->z_coef * scale);
    router_linear_backward(x, w, s->dlogits, T, r->D, E, dw, dx);
}

const RouterSpec router_topk = {
    .name = "topk",
    .summary = "softmax top-k, optional renormalisation; Switch aux loss and z-loss",
    .param_rows = topk_rows,
    .state_len = topk_state_len,
    .init = topk_init,
    .free = topk_free,
    .forward = topk_forward,
    .backward = topk_backward,
};
