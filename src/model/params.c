#include "model/params.h"
#include "core/util.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void add(ParamTable *t, InitKind init, int ndim, int d0, int d1, int d2, const char *fmt, ...) {
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 32;
        t->items = ml_realloc(t->items, t->cap * sizeof *t->items);
    }
    ParamInfo *p = &t->items[t->n++];
    memset(p, 0, sizeof *p);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    p->ndim = ndim;
    p->shape[0] = d0;
    p->shape[1] = d1;
    p->shape[2] = d2;
    p->size = (size_t)d0 * (ndim > 1 ? d1 : 1) * (ndim > 2 ? d2 : 1);
    p->offset = t->total;
    p->init = init;
    p->decay = ndim >= 2;
    t->total += p->size;
}

void params_layout(ParamTable *t, const ModelConfig *m, int router_rows) {
    memset(t, 0, sizeof *t);
    int D = m->d_model, V = m->vocab_size, E = m->n_experts, F = m->d_expert;
    int Fs = m->n_shared * F, Fd = model_dense_width(m);
    add(t, INIT_NORMAL, 2, V, D, 0, "embed.weight");
    for (int l = 0; l < m->n_layers; l++) {
        add(t, INIT_ONES, 1, D, 0, 0, "layers.%d.attn_norm.weight", l);
        add(t, INIT_NORMAL, 2, 3 * D, D, 0, "layers.%d.attn.wqkv.weight", l);
        add(t, INIT_NORMAL_OUT, 2, D, D, 0, "layers.%d.attn.wo.weight", l);
        add(t, INIT_ONES, 1, D, 0, 0, "layers.%d.ffn_norm.weight", l);
        if (model_is_moe_layer(m, l)) {
            if (router_rows > 0) add(t, INIT_NORMAL, 2, router_rows, D, 0, "layers.%d.moe.router.weight", l);
            add(t, INIT_NORMAL, 3, E, 2 * F, D, "layers.%d.moe.experts.gate_up.weight", l);
            add(t, INIT_NORMAL_OUT, 3, E, D, F, "layers.%d.moe.experts.down.weight", l);
            if (Fs > 0) {
                add(t, INIT_NORMAL, 2, 2 * Fs, D, 0, "layers.%d.moe.shared.gate_up.weight", l);
                add(t, INIT_NORMAL_OUT, 2, D, Fs, 0, "layers.%d.moe.shared.down.weight", l);
            }
        } else {
            add(t, INIT_NORMAL, 2, 2 * Fd, D, 0, "layers.%d.ffn.gate_up.weight", l);
            add(t, INIT_NORMAL_OUT, 2, D, Fd, 0, "layers.%d.ffn.down.weight", l);
        }
    }
    add(t, INIT_ONES, 1, D, 0, 0, "norm.weight");
    if (!m->tie_embeddings) add(t, INIT_NORMAL, 2, V, D, 0, "lm_head.weight");
}

void params_free(ParamTable *t) {
    free(t->items);
    memset(t, 0, sizeof *t);
}

const ParamInfo *params_find(const ParamTable *t, const char *name) {
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->items[i].name, name) == 0) return &t->items[i];
    return NULL;
}

static float *at(const ParamTable *t, float *buf, const char *fmt, int l) {
    char name[MAX_PARAM_NAME];
    snprintf(name, sizeof name, fmt, l);
    const ParamInfo *p = params_find(t, name);
    return p ? buf + p->offset : NULL;
}

void params_point(ParamViews *v, const ParamTable *t, const ModelConfig *m, float *buf) {
    v->embed = at(t, buf, "embed.weight", 0);
    v->norm = at(t, buf, "norm.weight", 0);
    v->lm_head = m->tie_embeddings ? v->embed : at(t, buf, "lm_head.weight", 0);
    v->blocks = ml_calloc(m->n_layers, sizeof *v->blocks);
    for (int l = 0; l < m->n_layers; l++) {
        BlockParams *b = &v->blocks[l];
        b->attn_norm = at(t, buf, "layers.%d.attn_norm.weight", l);
        b->wqkv = at(t, buf, "layers.%d.attn.wqkv.weight", l);
        b->wo = at(t, buf, "layers.%d.attn.wo.weight", l);
        b->ffn_norm = at(t, buf, "layers.%d.ffn_norm.weight", l);
        b->router = at(t, buf, "layers.%d.moe.router.weight", l);
        b->exp_gate_up = at(t, buf, "layers.%d.moe.experts.gate_up.weight", l);
        b->exp_down = at(t, buf, "layers.%d.moe.experts.down.weight", l);
        b->sh_gate_up = at(t, buf, "layers.%d.moe.shared.gate_up.weight", l);
        b->sh_down = at(t, buf, "layers.%d.moe.shared.down.weight", l);
        b->ffn_gate_up = at(t, buf, "layers.%d.ffn.gate_up.weight", l);
        b->ffn_down = at(t, buf, "layers.%d.ffn.down.weight", l);
    }
}

void params_views_free(ParamViews *v) {
    free(v->blocks);
    v->blocks = NULL;
}

void params_init(const ParamTable *t, const ModelConfig *m, float *buf, unsigned long long seed) {
    Rng rng;
    rng_seed(&rng, seed);
    float std = 0.02f, std_out = 0.02f / sqrtf(2.0f * m->n_layers);
    for (int i = 0; i < t->n; i++) {
        const ParamInfo *p = &t->items[i];
        float *w = buf + p->offset;
        for (size_t j = 0; j < p->size; j++) {
            switch (p->init) {
            case INIT_NORMAL: w[j] = std * rng_normal(&rng); break;
            case INIT_NORMAL_OUT: w[j] = std_out * rng_normal(&rng); break;
            case INIT_ONES: w[j] = 1.0f; break;
            case INIT_ZEROS: w[j] = 0.0f; break;
            }
        }
    }
}

void params_count(const ParamTable *t, const ModelConfig *m, int router_rows, size_t *total, size_t *active) {
    *total = t->total;
    /* Active per token: everything except the routed experts a token does not use
     * and the embedding rows it does not read (the input embedding is a lookup). */
    size_t D = m->d_model, F = m->d_expert, E = m->n_experts, k = m->top_k;
    size_t n_moe = 0;
    for (int l = 0; l < m->n_layers; l++) n_moe += model_is_moe_layer(m, l);
    size_t inactive = n_moe * (E - k) * 3 * D * F;
    size_t embed = m->tie_embeddings ? 0 : (size_t)m->vocab_size * D;
    (void)router_rows;
    *active = t->total - inactive - embed;
}
