#include "model/optim.h"
#include "core/util.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

void adamw_init(AdamW *o, size_t n) {
    o->m = ml_calloc(n, sizeof(float));
    o->v = ml_calloc(n, sizeof(float));
    o->n = n;
    o->t = 0;
}

void adamw_free(AdamW *o) {
    free(o->m);
    free(o->v);
    memset(o, 0, sizeof *o);
}

void adamw_step(AdamW *o, const ParamTable *t, float *params, const float *grads, float lr, float beta1,
                float beta2, float eps, float weight_decay) {
    o->t++;
    float bc1 = 1.0f - powf(beta1, (float)o->t), bc2 = 1.0f - powf(beta2, (float)o->t);
    for (int k = 0; k < t->n; k++) {
        const ParamInfo *p = &t->items[k];
        float decay = p->decay ? lr * weight_decay : 0.0f;
        size_t lo = p->offset, hi = p->offset + p->size;
#pragma omp parallel for schedule(static)
        for (size_t i = lo; i < hi; i++) {
            float g = grads[i];
            float m = o->m[i] = beta1 * o->m[i] + (1.0f - beta1) * g;
            float v = o->v[i] = beta2 * o->v[i] + (1.0f - beta2) * g * g;
            float w = params[i] * (1.0f - decay);
            params[i] = w - lr * (m / bc1) / (sqrtf(v / bc2) + eps);
        }
    }
}

float clip_grad_norm(float *grads, size_t n, float clip) {
    /* Fixed blocks summed in order: the norm must not depend on thread timing. */
    enum { BLOCK = 1 << 16 };
    size_t nb = (n + BLOCK - 1) / BLOCK;
    double *part = ml_calloc(nb ? nb : 1, sizeof(double));
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < nb; b++) {
        size_t hi = (b + 1) * BLOCK < n ? (b + 1) * BLOCK : n;
        /* 8 running sums: one would be a chain of dependent adds; the order stays fixed */
        double acc[8] = {0}, s = 0.0;
        size_t i = b * BLOCK;
        for (; i + 8 <= hi; i += 8)
            for (int l = 0; l < 8; l++) acc[l] += (double)grads[i + l] * grads[i + l];
        for (; i < hi; i++) acc[0] += (double)grads[i] * grads[i];
        for (int l = 0; l < 8; l++) s += acc[l];
        part[b] = s;
    }
    double total = 0.0;
    for (size_t b = 0; b < nb; b++) total += part[b];
    free(part);
    float norm = (float)sqrt(total);
    if (clip > 0.0f && norm > clip) {
        float c = clip / (norm + 1e-6f);
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) grads[i] *= c;
    }
    return norm;
}

float lr_at(int step, int steps, int warmup, float lr, float min_frac) {
    if (step < warmup) return lr * (float)(step + 1) / (float)warmup;
    float lo = lr * min_frac;
    int span = steps - warmup > 1 ? steps - warmup : 1;
    double progress = (double)(step - warmup) / span;
    if (progress > 1.0) progress = 1.0;
    return lo + (float)((lr - lo) * 0.5 * (1.0 + cos(3.14159265358979323846 * progress)));
}
