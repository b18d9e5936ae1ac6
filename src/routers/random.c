/* random: the control. Each token takes k distinct experts uniformly at random, with
 * gates 1/k (cfg->renorm) or 1/E. No router parameters, no losses. The draw is a hash
 * of the token's MoE input, the layer and (in training) the step: deterministic,
 * per-token (so causal), and a resumed run draws exactly as an uninterrupted one. */
#include "core/util.h"
#include "moe/router.h"
#include "routers/shared.h"
#include <stdlib.h>
#include <string.h>

static int random_rows(const ModelConfig *m) { (void)m; return 0; }
static int random_state_len(const ModelConfig *m) { (void)m; return 0; }

static int random_init(RouterLayer *r) {
    if (router_opts_parse("random", NULL, r->cfg->router_opts, NULL)) return -1;
    r->priv = NULL;
    return 0;
}

static void random_free(RouterLayer *r) { (void)r; }

static void random_forward(RouterLayer *r, const float *x, const float *w, int T, Routing *rt) {
    (void)w;
    int E = r->E, k = r->k, D = r->D;
    routing_reserve(rt, T * k);
    rt->n_tokens = T;
    rt->n_pairs = T * k;
    float gate = r->cfg->renorm ? 1.0f / k : 1.0f / E;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        unsigned long long h = router_hash((unsigned long long)r->layer, r->mode == ROUTE_TRAIN ? (unsigned long long)r->step + 1 : 0);
        unsigned int bits;
        for (int j = 0; j < D; j++) {
            memcpy(&bits, x + (size_t)t * D + j, sizeof bits);
            h = router_hash(h, bits);
        }
        router_draw_experts(h, E, k, rt->expert + (size_t)t * k);
        for (int j = 0; j < k; j++) {
            rt->token[(size_t)t * k + j] = t;
            rt->gate[(size_t)t * k + j] = gate;
        }
    }
    r->probs = NULL;
    r->n_losses = 0;
}

static void random_backward(RouterLayer *r, const float *x, const float *w, int T, const Routing *rt, const float *dgate,
                            float scale, float *dw, float *dx) {
    (void)r, (void)x, (void)w, (void)T, (void)rt, (void)dgate, (void)scale, (void)dw, (void)dx;
}

const RouterSpec router_random = {
    .name = "random",
    .summary = "control: k uniformly random experts per token, equal gates; no parameters, no losses",
    .param_rows = random_rows,
    .state_len = random_state_len,
    .init = random_init,
    .free = random_free,
    .forward = random_forward,
    .backward = random_backward,
};
