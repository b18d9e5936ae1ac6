/* Token-by-token decoding with a KV cache, for generation. Routing uses the causal
 * per-token rule (ROUTE_INFER): a token never sees the tokens after it. */
#include "core/gemm.h"
#include "core/ops.h"
#include "core/util.h"
#include "model/model.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

int kv_create(KVCache *c, const Model *m, int max_T) {
    memset(c, 0, sizeof *c);
    const ModelConfig *cfg = &m->cfg;
    if (max_T < 1 || max_T > cfg->seq_len) return ml_fail("KV cache length %d outside 1..seq_len (%d)", max_T, cfg->seq_len);
    int L = cfg->n_layers, D = cfg->d_model;
    size_t Fd = model_dense_width(cfg), Fs = (size_t)cfg->n_shared * cfg->d_expert, F = Fd > Fs ? Fd : Fs;
    c->max_T = max_T;
    c->k = ml_calloc(L, sizeof(float *));
    c->v = ml_calloc(L, sizeof(float *));
    for (int l = 0; l < L; l++) {
        c->k[l] = ml_calloc((size_t)max_T * D, sizeof(float));
        c->v[l] = ml_calloc((size_t)max_T * D, sizeof(float));
    }
    c->x = ml_malloc(D * sizeof(float));
    c->xn = ml_malloc(D * sizeof(float));
    c->qkv = ml_malloc(3 * D * sizeof(float));
    c->atty = ml_malloc(D * sizeof(float));
    c->tmp = ml_malloc(D * sizeof(float));
    c->att = ml_malloc((size_t)max_T * sizeof(float));
    c->ffn_out = ml_malloc(D * sizeof(float));
    c->h = ml_malloc(2 * (F ? F : 1) * sizeof(float));
    c->a = ml_malloc((F ? F : 1) * sizeof(float));
    c->logits = ml_malloc(cfg->vocab_size * sizeof(float));
    return 0;
}

void kv_free(KVCache *c, const Model *m) {
    for (int l = 0; l < m->cfg.n_layers && c->k; l++) {
        free(c->k[l]);
        free(c->v[l]);
    }
    free(c->k);
    free(c->v);
    float *bufs[] = {c->x, c->xn, c->qkv, c->atty, c->tmp, c->att, c->ffn_out, c->h, c->a, c->logits};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    moe_acts_free(&c->moe);
    memset(c, 0, sizeof *c);
}

/* One query row against cached keys/values 0..pos, all heads. */
static void attend_cached(KVCache *c, int l, int pos, int D, int NH) {
    int hd = D / NH;
    float scale = 1.0f / sqrtf((float)hd);
    for (int h = 0; h < NH; h++) {
        const float *q = c->qkv + h * hd;
        float mx = -INFINITY, sum = 0.0f;
        for (int j = 0; j <= pos; j++) {
            const float *k = c->k[l] + (size_t)j * D + h * hd;
            float s = 0.0f;
            for (int i = 0; i < hd; i++) s += q[i] * k[i];
            c->att[j] = s * scale;
            mx = fmaxf(mx, c->att[j]);
        }
        for (int j = 0; j <= pos; j++) sum += (c->att[j] = expf(c->att[j] - mx));
        float *o = c->atty + h * hd;
        memset(o, 0, hd * sizeof(float));
        for (int j = 0; j <= pos; j++) {
            const float *v = c->v[l] + (size_t)j * D + h * hd;
            float p = c->att[j] / sum;
            for (int i = 0; i < hd; i++) o[i] += p * v[i];
        }
    }
}

const float *model_decode_step(Model *m, KVCache *c, int token, int pos) {
    const ModelConfig *cfg = &m->cfg;
    int L = cfg->n_layers, D = cfg->d_model, NH = cfg->n_heads;
    float rstd;
    if (pos == 0) gemm_cast_weights(m->params, m->table.total); /* bf16: once per sequence */
    memcpy(c->x, m->p.embed + (size_t)token * D, D * sizeof(float));
    for (int l = 0; l < L; l++) {
        const BlockParams *p = &m->p.blocks[l];
        rmsnorm_forward(c->xn, &rstd, c->x, p->attn_norm, 1, D, cfg->norm_eps);
        matmul_forward(c->qkv, c->xn, p->wqkv, 1, D, 3 * D, 0);
        rope_apply(c->qkv, 1, 1, D, NH, cfg->rope_theta, pos, 0);
        memcpy(c->k[l] + (size_t)pos * D, c->qkv + D, D * sizeof(float));
        memcpy(c->v[l] + (size_t)pos * D, c->qkv + 2 * D, D * sizeof(float));
        attend_cached(c, l, pos, D, NH);
        matmul_forward(c->x, c->atty, p->wo, 1, D, D, 1);
        rmsnorm_forward(c->xn, &rstd, c->x, p->ffn_norm, 1, D, cfg->norm_eps);
        if (model_is_moe_layer(cfg, l)) {
            RouterLayer *r = &m->routers[l];
            r->mode = ROUTE_INFER;
            moe_forward(&c->moe, r, p, cfg, c->xn, 1, c->ffn_out);
        } else {
            swiglu_forward(c->ffn_out, c->h, c->a, c->xn, p->ffn_gate_up, p->ffn_down, 1, D, model_dense_width(cfg));
        }
        add_inplace(c->x, c->ffn_out, D);
    }
    rmsnorm_forward(c->xn, &rstd, c->x, m->p.norm, 1, D, cfg->norm_eps);
    matmul_forward(c->logits, c->xn, m->p.lm_head, 1, D, cfg->vocab_size, 0);
    return c->logits;
}
