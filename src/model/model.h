/* The MoE transformer: parameters, activations, forward and backward. */
#ifndef MOELAB_MODEL_H
#define MOELAB_MODEL_H
#include "model/config.h"
#include "model/params.h"
#include "moe/moe.h"
#include "moe/router.h"

typedef struct {
    /* per block, [L] arrays of activation buffers sized for B*T tokens */
    float **x_in;     /* [BT, D] block input (residual stream) */
    float **xn1;      /* [BT, D] attention RMSNorm output */
    float **rstd1;    /* [BT] */
    float **qkv;      /* [BT, 3D] after RoPE */
    float **att;      /* [B, NH, T, T] */
    float **atty;     /* [BT, D] attention output before wo */
    float **x_mid;    /* [BT, D] residual after attention */
    float **xn2;      /* [BT, D] FFN RMSNorm output */
    float **rstd2;    /* [BT] */
    float **ffn_h, **ffn_a; /* dense blocks: [BT, 2Fd], [BT, Fd] */
    MoEActs *moe;     /* [L], used by MoE blocks */
    float *x_final;   /* [BT, D] last residual */
    float *xn_final, *rstd_final;
    float *logits;    /* [BT, V] */
    float *tok_loss;  /* [BT] per-token CE */
    /* backward scratch */
    float *dres, *dbuf, *dxn, *dqkv, *datt, *dh, *da, *dlogits;
    int B, T;         /* sizes the buffers were made for */
} Activations;

typedef struct {
    ModelConfig cfg;
    const RouterSpec *router;
    int router_rows;
    ParamTable table;
    float *params, *grads; /* flat, table.total floats each */
    ParamViews p, g;
    RouterLayer *routers;  /* [L]; spec NULL for dense blocks */
    double *router_state;  /* all layers' persistent router state, flat */
    size_t router_state_len;
    Activations acts;
    int B, T; /* shape of the last forward */
    RouteMode mode;
    double router_seconds; /* time spent in routers during the last forward+backward */
    /* Optional: model_backward calls it as soon as the gradients of a part are final
     * (-1 embedding, 0..L-1 block, L final norm and head), so a data-parallel trainer
     * can start reducing them while the rest of the backward runs. */
    void (*grads_ready)(void *ctx, int part);
    void *grads_ready_ctx;
} Model;

/* Validates the config, lays out and allocates parameters (zeroed) and router state. */
int model_create(Model *m, const ModelConfig *cfg);
void model_init_weights(Model *m, unsigned long long seed);
void model_free(Model *m);
/* Forward over inputs [B*T]; with targets, returns the mean cross-entropy (router losses
 * excluded), else 0. Logits and per-token losses stay in m->acts. */
float model_forward(Model *m, const int *inputs, const int *targets, int B, int T, RouteMode mode);
/* Backward of the last forward (which must have had targets). Every loss, the LM loss
 * and the router losses, is multiplied by scale (1/grad_accum); grads accumulate. */
void model_backward(Model *m, const int *inputs, const int *targets, float scale);
void model_zero_grad(Model *m);
/* Mean over MoE blocks of each router loss of the last forward (unscaled). Returns count. */
int model_router_losses(const Model *m, const char **names, float *values, int max);
/* Called after each optimizer step: advances router step counters, runs after_step hooks. */
void model_after_step(Model *m, long step, long total_steps);
void model_set_step(Model *m, long step, long total_steps);
/* 1 when some MoE block's router selects at batch level (its ROUTE_INFER rule differs). */
int model_batch_level(const Model *m);
/* Rebuilds every MoE block's router as `name` with `opts`, keeping the parameters (the
 * router weight must have the same rows, or the new router none). Fresh router state. */
int model_switch_router(Model *m, const char *name, const char *opts);

/* Single-token decoding with a KV cache (generation). */
typedef struct {
    int max_T;
    float **k, **v; /* [L][max_T, D] */
    float *x, *xn, *qkv, *atty, *tmp, *att, *ffn_out, *h, *a, *logits;
    MoEActs moe;
} KVCache;
int kv_create(KVCache *c, const Model *m, int max_T);
void kv_free(KVCache *c, const Model *m);
/* Logits [V] for `token` at position pos, attending to positions 0..pos. */
const float *model_decode_step(Model *m, KVCache *c, int token, int pos);

#endif
