#include "model/model.h"
#include "core/gemm.h"
#include "core/ops.h"
#include "core/util.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

int model_create(Model *m, const ModelConfig *cfg) {
    memset(m, 0, sizeof *m);
    if (config_validate_model(cfg)) return -1;
    m->cfg = *cfg;
    m->router = router_find(cfg->router);
    if (!m->router) {
        char names[512] = "";
        for (const RouterSpec *const *r = router_all(); *r; r++) {
            strncat(names, " ", sizeof names - strlen(names) - 1);
            strncat(names, (*r)->name, sizeof names - strlen(names) - 1);
        }
        return ml_fail("unknown router '%s' (known:%s)", cfg->router, names);
    }
    m->router_rows = m->router->param_rows(&m->cfg);
    params_layout(&m->table, &m->cfg, m->router_rows);
    m->params = ml_calloc(m->table.total, sizeof(float));
    m->grads = ml_calloc(m->table.total, sizeof(float));
    params_point(&m->p, &m->table, &m->cfg, m->params);
    params_point(&m->g, &m->table, &m->cfg, m->grads);
    int L = cfg->n_layers, per_layer = m->router->state_len(&m->cfg);
    m->router_state_len = (size_t)per_layer * L;
    m->router_state = ml_calloc(m->router_state_len ? m->router_state_len : 1, sizeof(double));
    m->routers = ml_calloc(L, sizeof *m->routers);
    for (int l = 0; l < L; l++) {
        if (!model_is_moe_layer(cfg, l)) continue;
        RouterLayer *r = &m->routers[l];
        r->spec = m->router;
        r->cfg = &m->cfg;
        r->layer = l;
        r->E = cfg->n_experts;
        r->k = cfg->top_k;
        r->D = cfg->d_model;
        r->state = m->router_state + (size_t)per_layer * l;
        r->state_len = per_layer;
        if (r->spec->init(r)) {
            model_free(m);
            return -1;
        }
    }
    return 0;
}

void model_init_weights(Model *m, unsigned long long seed) { params_init(&m->table, &m->cfg, m->params, seed); }

static void acts_free(Activations *a, int L) {
    float **lists[] = {a->x_in, a->xn1, a->rstd1, a->qkv, a->att, a->atty, a->x_mid, a->xn2, a->rstd2, a->ffn_h, a->ffn_a};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        if (!lists[i]) continue;
        for (int l = 0; l < L; l++) free(lists[i][l]);
        free(lists[i]);
    }
    if (a->moe)
        for (int l = 0; l < L; l++) moe_acts_free(&a->moe[l]);
    free(a->moe);
    float *single[] = {a->x_final, a->xn_final, a->rstd_final, a->logits, a->tok_loss, a->dres, a->dbuf,
                       a->dxn, a->dqkv, a->datt, a->dh, a->da, a->dlogits};
    for (size_t i = 0; i < sizeof single / sizeof single[0]; i++) free(single[i]);
    memset(a, 0, sizeof *a);
}

void model_free(Model *m) {
    acts_free(&m->acts, m->cfg.n_layers);
    if (m->routers)
        for (int l = 0; l < m->cfg.n_layers; l++)
            if (m->routers[l].spec && m->routers[l].spec->free) m->routers[l].spec->free(&m->routers[l]);
    free(m->routers);
    free(m->router_state);
    gemm_forget_weights(m->params);
    free(m->params);
    free(m->grads);
    params_views_free(&m->p);
    params_views_free(&m->g);
    params_free(&m->table);
    memset(m, 0, sizeof *m);
}

static float **alloc_list(int L, size_t n) {
    float **v = ml_calloc(L, sizeof(float *));
    for (int l = 0; l < L; l++) v[l] = ml_malloc(n * sizeof(float));
    return v;
}

static void acts_ensure(Model *m, int B, int T) {
    Activations *a = &m->acts;
    if (a->B == B && a->T == T) return;
    const ModelConfig *c = &m->cfg;
    int L = c->n_layers, D = c->d_model, V = c->vocab_size, NH = c->n_heads;
    acts_free(a, L);
    size_t BT = (size_t)B * T, Fd = model_dense_width(c), Fs = (size_t)c->n_shared * c->d_expert;
    size_t Fmax = Fd > Fs ? Fd : Fs;
    a->x_in = alloc_list(L, BT * D);
    a->xn1 = alloc_list(L, BT * D);
    a->rstd1 = alloc_list(L, BT);
    a->qkv = alloc_list(L, BT * 3 * D);
    a->att = alloc_list(L, (size_t)B * NH * T * T);
    a->atty = alloc_list(L, BT * D);
    a->x_mid = alloc_list(L, BT * D);
    a->xn2 = alloc_list(L, BT * D);
    a->rstd2 = alloc_list(L, BT);
    a->ffn_h = ml_calloc(L, sizeof(float *));
    a->ffn_a = ml_calloc(L, sizeof(float *));
    for (int l = 0; l < L; l++)
        if (!model_is_moe_layer(c, l)) {
            a->ffn_h[l] = ml_malloc(BT * 2 * Fd * sizeof(float));
            a->ffn_a[l] = ml_malloc(BT * Fd * sizeof(float));
        }
    a->moe = ml_calloc(L, sizeof(MoEActs));
    a->x_final = ml_malloc(BT * D * sizeof(float));
    a->xn_final = ml_malloc(BT * D * sizeof(float));
    a->rstd_final = ml_malloc(BT * sizeof(float));
    a->logits = ml_malloc(BT * V * sizeof(float));
    a->tok_loss = ml_malloc(BT * sizeof(float));
    a->dres = ml_malloc(BT * D * sizeof(float));
    a->dbuf = ml_malloc(BT * D * sizeof(float));
    a->dxn = ml_malloc(BT * D * sizeof(float));
    a->dqkv = ml_malloc(BT * 3 * D * sizeof(float));
    a->datt = ml_malloc((size_t)B * NH * T * T * sizeof(float));
    a->dh = ml_malloc(BT * 2 * (Fmax ? Fmax : 1) * sizeof(float));
    a->da = ml_malloc(BT * (Fmax ? Fmax : 1) * sizeof(float));
    a->dlogits = ml_malloc(BT * V * sizeof(float));
    a->B = B;
    a->T = T;
}

float model_forward(Model *m, const int *inputs, const int *targets, int B, int T, RouteMode mode) {
    const ModelConfig *c = &m->cfg;
    int L = c->n_layers, D = c->d_model, V = c->vocab_size, NH = c->n_heads, BT = B * T;
    acts_ensure(m, B, T);
    Activations *a = &m->acts;
    m->B = B;
    m->T = T;
    m->mode = mode;
    m->router_seconds = 0.0;
    gemm_cast_weights(m->params, m->table.total); /* bf16: once per forward, not per product */
#pragma omp parallel for schedule(static)
    for (int i = 0; i < BT; i++) memcpy(a->x_in[0] + (size_t)i * D, m->p.embed + (size_t)inputs[i] * D, D * sizeof(float));
    for (int l = 0; l < L; l++) {
        const BlockParams *p = &m->p.blocks[l];
        float *x = a->x_in[l], *next = l + 1 < L ? a->x_in[l + 1] : a->x_final;
        rmsnorm_forward(a->xn1[l], a->rstd1[l], x, p->attn_norm, BT, D, c->norm_eps);
        matmul_forward(a->qkv[l], a->xn1[l], p->wqkv, BT, D, 3 * D, 0);
        rope_apply(a->qkv[l], B, T, D, NH, c->rope_theta, 0, 0);
        attention_forward(a->atty[l], a->att[l], a->qkv[l], B, T, D, NH);
        copy_floats(a->x_mid[l], x, (size_t)BT * D);
        matmul_forward(a->x_mid[l], a->atty[l], p->wo, BT, D, D, 1);
        rmsnorm_forward(a->xn2[l], a->rstd2[l], a->x_mid[l], p->ffn_norm, BT, D, c->norm_eps);
        if (model_is_moe_layer(c, l)) {
            RouterLayer *r = &m->routers[l];
            r->mode = mode;
            moe_forward(&a->moe[l], r, p, c, a->xn2[l], BT, a->dbuf);
            m->router_seconds += a->moe[l].router_seconds;
        } else {
            swiglu_forward(a->dbuf, a->ffn_h[l], a->ffn_a[l], a->xn2[l], p->ffn_gate_up, p->ffn_down, BT, D,
                           model_dense_width(c));
        }
        add_into(next, a->x_mid[l], a->dbuf, (size_t)BT * D);
    }
    rmsnorm_forward(a->xn_final, a->rstd_final, a->x_final, m->p.norm, BT, D, c->norm_eps);
    matmul_forward(a->logits, a->xn_final, m->p.lm_head, BT, D, V, 0);
    if (!targets) return 0.0f;
    return crossentropy_forward(a->tok_loss, a->logits, targets, BT, V);
}

void model_zero_grad(Model *m) { zero_floats(m->grads, m->table.total); }

void model_backward(Model *m, const int *inputs, const int *targets, float scale) {
    const ModelConfig *c = &m->cfg;
    int L = c->n_layers, D = c->d_model, V = c->vocab_size, NH = c->n_heads, B = m->B, T = m->T, BT = B * T;
    Activations *a = &m->acts;
    size_t nD = (size_t)BT * D;
    crossentropy_backward(a->dlogits, a->logits, targets, BT, V, scale);
    zero_floats(a->dxn, nD);
    matmul_backward(a->dxn, m->g.lm_head, a->dlogits, a->xn_final, m->p.lm_head, BT, D, V);
    zero_floats(a->dres, nD);
    rmsnorm_backward(a->dres, m->g.norm, a->dxn, a->x_final, m->p.norm, a->rstd_final, BT, D);
    if (m->grads_ready) m->grads_ready(m->grads_ready_ctx, L);
    for (int l = L - 1; l >= 0; l--) {
        const BlockParams *p = &m->p.blocks[l];
        BlockParams *g = &m->g.blocks[l];
        /* dres holds dL/d(block output); the FFN branch, then the attention branch. */
        zero_floats(a->dxn, nD);
        if (model_is_moe_layer(c, l)) {
            moe_backward(&a->moe[l], &m->routers[l], p, g, c, a->xn2[l], BT, a->dres, a->dxn, scale);
            m->router_seconds += a->moe[l].router_seconds;
        } else {
            swiglu_backward(a->dxn, g->ffn_gate_up, g->ffn_down, a->dh, a->da, a->dres, a->xn2[l], a->ffn_h[l],
                            a->ffn_a[l], p->ffn_gate_up, p->ffn_down, BT, D, model_dense_width(c), 1);
        }
        rmsnorm_backward(a->dres, g->ffn_norm, a->dxn, a->x_mid[l], p->ffn_norm, a->rstd2[l], BT, D);
        zero_floats(a->dbuf, nD);
        matmul_backward(a->dbuf, g->wo, a->dres, a->atty[l], p->wo, BT, D, D);
        zero_floats(a->dqkv, 3 * nD);
        attention_backward(a->dqkv, a->datt, a->dbuf, a->qkv[l], a->att[l], B, T, D, NH);
        rope_apply(a->dqkv, B, T, D, NH, c->rope_theta, 0, 1);
        zero_floats(a->dxn, nD);
        matmul_backward(a->dxn, g->wqkv, a->dqkv, a->xn1[l], p->wqkv, BT, D, 3 * D);
        rmsnorm_backward(a->dres, g->attn_norm, a->dxn, a->x_in[l], p->attn_norm, a->rstd1[l], BT, D);
        if (m->grads_ready) m->grads_ready(m->grads_ready_ctx, l);
    }
    /* Serial: tokens repeat, and a fixed order keeps the sum deterministic. */
    for (int i = 0; i < BT; i++) {
        float *ge = m->g.embed + (size_t)inputs[i] * D;
        const float *d = a->dres + (size_t)i * D;
        for (int j = 0; j < D; j++) ge[j] += d[j];
    }
    if (m->grads_ready) m->grads_ready(m->grads_ready_ctx, -1);
}

int model_router_losses(const Model *m, const char **names, float *values, int max) {
    int n = 0, blocks = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const RouterLayer *r = &m->routers[l];
        if (!r->spec) continue;
        blocks++;
        for (int i = 0; i < r->n_losses; i++) {
            int j = 0;
            while (j < n && strcmp(names[j], r->losses[i].name) != 0) j++;
            if (j == n) {
                if (n == max) continue;
                names[n] = r->losses[i].name;
                values[n++] = 0.0f;
            }
            values[j] += r->losses[i].value;
        }
    }
    for (int j = 0; j < n; j++) values[j] /= blocks ? blocks : 1;
    return n;
}

void model_set_step(Model *m, long step, long total_steps) {
    for (int l = 0; l < m->cfg.n_layers; l++) {
        m->routers[l].step = step;
        m->routers[l].total_steps = total_steps;
    }
}

int model_batch_level(const Model *m) {
    for (int l = 0; l < m->cfg.n_layers; l++)
        if (m->routers[l].spec && m->routers[l].batch_level) return 1;
    return 0;
}

void model_after_step(Model *m, long step, long total_steps) {
    model_set_step(m, step, total_steps);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        RouterLayer *r = &m->routers[l];
        if (r->spec && r->spec->after_step) r->spec->after_step(r);
    }
}
