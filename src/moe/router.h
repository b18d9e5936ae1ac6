/* The router interface. One router per file in src/routers/, listed once in registry.c.
 *
 * A router turns the normalised MoE input of T tokens into (token, expert, gate)
 * pairs. The number of pairs per token is free (0..E): token-choice routers emit k
 * per token, expert-choice and capacity-limited routers emit more for some tokens
 * and none for others. Scoring may be learned (a [rows, D] weight in the parameter
 * buffer) or fixed (rows = 0). A router owns its auxiliary losses: it reports their
 * unscaled values and adds their gradients itself, into the router logits (backward)
 * or into the expert outputs (backward_outputs). Persistent non-parameter state
 * (counts, biases, calibrated multipliers) lives in `state` and is checkpointed. */
#ifndef MOELAB_ROUTER_H
#define MOELAB_ROUTER_H
#include "model/config.h"
#include "moe/router_opts.h"
#include <stddef.h>

typedef enum {
    ROUTE_TRAIN, /* training forward: batch-level selection, statistics update */
    ROUTE_EVAL,  /* validation with the training rule, no state update */
    ROUTE_INFER  /* causal per-token rule, as used in generation */
} RouteMode;

typedef struct {
    int n_tokens, n_pairs;
    int *token, *expert; /* [n_pairs] */
    float *gate;         /* [n_pairs] weight of the expert output */
    size_t cap;          /* allocated pairs */
} Routing;
void routing_reserve(Routing *rt, int n_pairs);
void routing_free(Routing *rt);

#define ROUTER_MAX_LOSSES 6
typedef struct {
    const char *name; /* e.g. "aux", "z" */
    float value;      /* unscaled: for "aux", 1.0 means balanced */
    float coef;       /* weight in the training loss */
} RouterLoss;

/* A named input tensor handed to a router outside training (`moelab route`), as doubles. */
typedef struct {
    const char *name;
    int ndim;
    long shape[2];
    const double *data;
} RouterTensor;

typedef struct RouterSpec RouterSpec;
typedef struct {
    const RouterSpec *spec;
    const ModelConfig *cfg;
    int layer, E, k, D;
    RouteMode mode;
    long step, total_steps; /* optimizer step, for warm-ups and anneals */
    double *state;          /* persistent state, state_len values (checkpointed) */
    int state_len;
    /* Additive statistics of the training forwards since the last optimizer step
     * (co-occurrence counts, expert loads), pending_len values owned by the router, or
     * NULL. The trainer may sum them across processes before after_step folds them
     * into state, so several processes train as one process with grad accumulation:
     * anything that must be global goes here, not straight into state. */
    double *pending;
    int pending_len;
    void *priv;             /* router scratch */
    int batch_level;        /* set by init: training selection depends on other tokens of the
                               batch (ROUTE_INFER then differs and is evaluated too) */
    int output_loss;        /* set by init: a loss on the expert outputs is on, so the MoE
                               layer calls backward_outputs (and keeps dy in fp32 for it) */
    const float *probs;     /* [T, E] router probabilities of the last forward, or NULL */
    int n_losses;
    RouterLoss losses[ROUTER_MAX_LOSSES];
} RouterLayer;

struct RouterSpec {
    const char *name, *summary;
    const RouterOption *options; /* its --router-opts, {0}-terminated, or NULL for none */
    int (*param_rows)(const ModelConfig *m); /* rows of the learned weight; 0 = fixed scoring */
    int (*state_len)(const ModelConfig *m);  /* persistent doubles per layer */
    /* Parses cfg->router_opts, allocates priv (and pending); -1 with ml_fail. Leaves state
     * as it is: it may hold a loaded checkpoint's, and eval/sample/analyze --router-opts
     * re-make routers (free, init) on a loaded model. */
    int (*init)(RouterLayer *r);
    void (*free)(RouterLayer *r);
    /* x [T, D], w [rows, D] or NULL. Fills rt and r->losses. */
    void (*forward)(RouterLayer *r, const float *x, const float *w, int T, Routing *rt);
    /* Optional, called when r->output_loss is set. y: expert outputs before gating, pair p at
     * y + pos[p]*D; adds loss gradients into dy (same layout). */
    void (*backward_outputs)(RouterLayer *r, const Routing *rt, const float *y, const int *pos, float *dy, float scale);
    /* dgate [n_pairs]: dL/dgate. Adds its own loss gradients (times scale). Accumulates dw and dx. */
    void (*backward)(RouterLayer *r, const float *x, const float *w, int T, const Routing *rt, const float *dgate,
                     float scale, float *dw, float *dx);
    void (*after_step)(RouterLayer *r); /* optional, after each optimizer step */
    /* Optional, for routers whose selection depends on state (counts, a covariance,
     * biases): sets that state from named tensors read from a file, so `moelab route`
     * can apply the router to dumped logits. Every router with a learned linear scorer
     * (param_rows == E) runs under `route` through forward() with an identity weight;
     * this entry only supplies its state. Refuses (-1 with ml_fail) a missing or
     * mis-shaped tensor naming it; ignores names it does not use. */
    int (*load_inputs)(RouterLayer *r, const RouterTensor *in, int n_in);
};

const RouterSpec *router_find(const char *name);
/* NULL-terminated list of every router. */
const RouterSpec *const *router_all(void);

/* Shared helpers for routers with a linear softmax scorer. */
/* logits[T,E] = x w^T; probs = softmax(logits) */
void router_linear_softmax(const float *x, const float *w, int T, int D, int E, float *logits, float *probs);
/* The k largest entries of p[E] in descending order; ties go to the lower index. */
void router_select_topk(const float *p, int E, int k, int *idx);
/* Gates that are the probabilities at each token's k chosen experts (pairs t*k..t*k+k-1),
 * renormalised over them or not: adds dL/dprobs for dgate into dprobs. */
void router_prob_gates_backward(float *dprobs, const float *probs, const Routing *rt, const float *dgate, int T, int E,
                                int k, int renorm);
/* Switch aux loss: E * sum_e f_e P_e with f_e = count_e/(T k), P_e = mean prob. Returns the unscaled value. */
float router_switch_aux(const float *probs, const int *counts, int T, int E, int k);
/* Adds coef*scale * d(aux)/d(probs) into dprobs. */
void router_switch_aux_backward(float *dprobs, const int *counts, int T, int E, int k, float coef_scale);
/* z-loss: mean_t logsumexp(logits_t)^2; lse[T] is filled for the backward. */
float router_z_loss(const float *logits, int T, int E, float *lse);
/* Adds coef*scale * d(z)/d(logits) into dlogits. */
void router_z_loss_backward(float *dlogits, const float *probs, const float *lse, int T, int E, float coef_scale);
/* dlogits += softmax backward of dprobs (rows of length E). */
void router_softmax_backward(float *dlogits, const float *probs, const float *dprobs, int T, int E);
/* dw += dlogits^T x, dx += dlogits w. */
void router_linear_backward(const float *x, const float *w, const float *dlogits, int T, int D, int E, float *dw, float *dx);

#endif
