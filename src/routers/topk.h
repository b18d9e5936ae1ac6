/* The token-choice top-k core, shared by the routers that are top-k plus options:
 * topk itself, orthvar (+ orthogonality and variance losses) and auxfree (sigmoid
 * scores + selection bias, no aux loss). Each declares its own option table over
 * TopkOpts (TOPK_OPTIONS + EXTRA_OPTIONS with its defaults) and calls topk_setup. */
#ifndef MOELAB_ROUTERS_TOPK_H
#define MOELAB_ROUTERS_TOPK_H
#include "moe/router.h"
#include "routers/extras.h"

typedef struct {
    double cf;  /* capacity factor, 0 = dropless */
    int drop;   /* 0: drop the lowest-probability pairs of a full expert, 1: the latest tokens */
    int score;  /* 0: softmax, 1: sigmoid */
    int balance; /* 1: experts drawn at random, not the top k (a benchmarking hook) */
    ExtraOpts ex;
} TopkOpts;

#define TOPK_OPTIONS(d_score)                                                                                         \
    {"cf", ROPT_FLOAT, offsetof(TopkOpts, cf), 0, 0, 64, NULL,                                                        \
     "capacity factor: an expert takes at most ceil(cf*T*k/E) of a batch's T tokens (0: dropless, the default; "     \
     "Megatron moe_expert_capacity_factor)"},                                                                        \
    {"drop", ROPT_ENUM, offsetof(TopkOpts, drop), 0, 0, 0, "prob|position",                                           \
     "which pairs a full expert drops: lowest probability, or latest tokens (Megatron moe_token_drop_policy, "       \
     "default probs)"},                                                                                              \
    {"score", ROPT_ENUM, offsetof(TopkOpts, score), d_score, 0, 0, "softmax|sigmoid",                                 \
     "router score: softmax over experts, or per-expert sigmoid (DeepSeek-V3; no aux or z-loss then)"},             \
    {"force_balance", ROPT_INT, offsetof(TopkOpts, balance), 0, 0, 1, NULL,                                         \
     "1: each token takes k experts drawn at random, gated by its scores there: a balanced load for speed "         \
     "measurements whatever the router learns (Megatron moe_router_force_load_balancing); not for models to keep"}

/* Parses opts with `table`, allocates the scratch. model_losses: apply the model's
 * aux and z-loss coefficients (softmax scores only). */
int topk_setup(RouterLayer *r, const char *name, const RouterOption *table, int model_losses);
/* Router state length for a config parsed with `table` (0 on a parse error: init reports it). */
int topk_state_len_for(const ModelConfig *m, const char *name, const RouterOption *table);
int topk_rows(const ModelConfig *m);
void topk_free(RouterLayer *r);
void topk_forward(RouterLayer *r, const float *x, const float *w, int T, Routing *rt);
void topk_backward_outputs(RouterLayer *r, const Routing *rt, const float *y, const int *pos, float *dy, float scale);
void topk_backward(RouterLayer *r, const float *x, const float *w, int T, const Routing *rt, const float *dgate,
                   float scale, float *dw, float *dx);
void topk_after_step(RouterLayer *r);
/* `bias` [E]: the aux-free selection bias, for moelab route. */
int topk_load_inputs(RouterLayer *r, const RouterTensor *in, int n_in);

/* The hooks every router of the top-k family shares: a member's RouterSpec lists its name,
 * summary, option table, state_len and init, then TOPK_FAMILY_HOOKS. */
#define TOPK_FAMILY_HOOKS                                                                            \
    .param_rows = topk_rows, .free = topk_free, .forward = topk_forward,                             \
    .backward_outputs = topk_backward_outputs, .backward = topk_backward, .after_step = topk_after_step, \
    .load_inputs = topk_load_inputs

#endif
