/* Model and training configuration: defaults, command-line flags, JSON, validation. */
#ifndef MOELAB_CONFIG_H
#define MOELAB_CONFIG_H
#include <stdint.h>

typedef struct {
    int n_layers, d_model, n_heads, seq_len, vocab_size;
    int n_experts, top_k, d_expert;
    int n_shared;       /* shared experts, always on; together one SwiGLU of width n_shared*d_expert */
    int dense_layers;   /* the first N blocks use a dense SwiGLU FFN instead of an MoE layer */
    int d_dense;        /* width of those dense FFNs (0: k*d_expert + n_shared*d_expert, same active size) */
    int tie_embeddings; /* output head shares the token embedding */
    float rope_theta, norm_eps;
    /* router */
    char router[32];
    float aux_coef;  /* Switch load-balancing loss coefficient */
    float z_coef;    /* router z-loss coefficient */
    int renorm;      /* renormalise gate weights over the selected experts */
    char router_opts[256]; /* router-specific "key=value,key=value" options */
} ModelConfig;

typedef struct {
    ModelConfig model;
    int batch, grad_accum, steps, warmup, stop_at;
    int eval_every, eval_batches, ckpt_every, log_every, threads;
    float lr, min_lr_frac, weight_decay, beta1, beta2, adam_eps, grad_clip;
    uint64_t seed;
    int bad_steps; /* non-finite steps in a row that are skipped before training stops */
    char precision[8]; /* matmul inputs: "fp32" or "bf16" (core/gemm.h); not part of the model */
} TrainConfig;

void config_defaults(TrainConfig *c);
/* Applies one flag ("--d-model") with its value. Returns 1 if the flag is a config
 * flag, 0 if it is not, -1 (ml_fail) on a bad value. */
int config_apply_flag(TrainConfig *c, const char *flag, const char *value);
/* Applies every key of a JSON object; keys are flag names with '-' or '_'. */
int config_load_json(TrainConfig *c, const char *path);
int config_apply_json_text(TrainConfig *c, const char *text);
/* Rejects inconsistent values (k > E, heads not dividing d_model, ...). */
int config_validate_model(const ModelConfig *m);
int config_validate(const TrainConfig *c);
/* JSON text of the whole config (caller frees); model_only omits training keys. */
char *config_to_json(const TrainConfig *c, int model_only);
/* Usage text for the config flags. */
const char *config_flags_help(void);
int model_dense_width(const ModelConfig *m);
int model_is_moe_layer(const ModelConfig *m, int layer);

#endif
