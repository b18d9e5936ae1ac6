/* The parameter table: every named tensor of the model carved out of one flat buffer.
 * Gradients and AdamW moments use the same layout, so the optimizer is one flat loop. */
#ifndef MOELAB_PARAMS_H
#define MOELAB_PARAMS_H
#include "model/config.h"
#include <stddef.h>

#define MAX_PARAM_NAME 96
typedef enum { INIT_NORMAL, INIT_NORMAL_OUT, INIT_ONES, INIT_ZEROS } InitKind;

typedef struct {
    char name[MAX_PARAM_NAME];
    int ndim;
    int shape[3];
    size_t offset, size; /* in floats */
    InitKind init;
    int decay; /* AdamW weight decay applies (matrices) */
} ParamInfo;

typedef struct {
    ParamInfo *items;
    int n, cap;
    size_t total; /* floats */
} ParamTable;

/* Per-block views into the flat buffer (params or grads: same offsets). */
typedef struct {
    float *attn_norm;  /* [D] */
    float *wqkv;       /* [3D, D] rows: q then k then v */
    float *wo;         /* [D, D] */
    float *ffn_norm;   /* [D] */
    /* MoE block */
    float *router;     /* [router_rows, D] or NULL for fixed scoring */
    float *exp_gate_up;/* [E, 2F, D] rows 0..F-1 gate, F..2F-1 up */
    float *exp_down;   /* [E, D, F] */
    float *sh_gate_up; /* [2Fs, D], Fs = n_shared*F, NULL when no shared expert */
    float *sh_down;    /* [D, Fs] */
    /* dense block */
    float *ffn_gate_up;/* [2Fd, D] */
    float *ffn_down;   /* [D, Fd] */
} BlockParams;

typedef struct {
    float *embed;   /* [V, D] */
    float *norm;    /* [D] */
    float *lm_head; /* [V, D], == embed when tied */
    BlockParams *blocks; /* [L] */
} ParamViews;

/* Builds the table for a config. router_rows is the learned router's row count (0: fixed scoring). */
void params_layout(ParamTable *t, const ModelConfig *m, int router_rows);
void params_free(ParamTable *t);
const ParamInfo *params_find(const ParamTable *t, const char *name);
/* Points views at `buf` (params or grads) using the table's offsets. */
void params_point(ParamViews *v, const ParamTable *t, const ModelConfig *m, float *buf);
void params_views_free(ParamViews *v);
/* Deterministic init from the seed: N(0, 0.02), output projections scaled by 1/sqrt(2L), norms 1. */
void params_init(const ParamTable *t, const ModelConfig *m, float *buf, unsigned long long seed);
/* Total and active (per token) parameter counts. */
void params_count(const ParamTable *t, const ModelConfig *m, int router_rows, size_t *total, size_t *active);

#endif
