/* AdamW, global-norm clipping and the warmup + cosine schedule. */
#ifndef MOELAB_OPTIM_H
#define MOELAB_OPTIM_H
#include "model/params.h"

typedef struct {
    float *m, *v; /* first and second moments, parameter layout */
    size_t n;
    long t;       /* updates done */
} AdamW;

void adamw_init(AdamW *o, size_t n);
void adamw_free(AdamW *o);
/* One update; decay applies to tensors whose ParamInfo.decay is set. */
void adamw_step(AdamW *o, const ParamTable *t, float *params, const float *grads, float lr, float beta1,
                float beta2, float eps, float weight_decay);
/* Global L2 norm of grads; when clip > 0 and the norm exceeds it, scales grads by clip/(norm+1e-6). */
float clip_grad_norm(float *grads, size_t n, float clip);
/* LR at 0-based step: linear warmup over `warmup` steps, then cosine to lr*min_frac at `steps`. */
float lr_at(int step, int steps, int warmup, float lr, float min_frac);

#endif
