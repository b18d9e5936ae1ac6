/* Pieces shared by routers with a linear softmax scorer, and the pair buffer. */
#include "moe/router.h"
#include "core/ops.h"
#include "core/util.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

void routing_reserve(Routing *rt, int n_pairs) {
    if ((size_t)n_pairs <= rt->cap) return;
    size_t cap = rt->cap ? rt->cap : 256;
    while (cap < (size_t)n_pairs) cap *= 2;
    rt->token = ml_realloc(rt->token, cap * sizeof(int));
    rt->expert = ml_realloc(rt->expert, cap * sizeof(int));
    rt->gate = ml_realloc(rt->gate, cap * sizeof(float));
    rt->cap = cap;
}

void routing_free(Routing *rt) {
    free(rt->token);
    free(rt->expert);
    free(rt->gate);
    memset(rt, 0, sizeof *rt);
}

void router_linear_softmax(const float *x, const float *w, int T, int D, int E, float *logits, float *probs) {
    matmul_forward_fp32(logits, x, w, T, D, E, 0);
    softmax_rows(probs, logits, T, E);
}

void router_select_topk(const float *p, int E, int k, int *idx) {
    for (int j = 0; j < k; j++) idx[j] = -1;
    for (int e = 0; e < E; e++) {
        int j = k;
        while (j > 0 && (idx[j - 1] < 0 || p[e] > p[idx[j - 1]])) j--;
        if (j == k) continue;
        memmove(idx + j + 1, idx + j, (k - j - 1) * sizeof(int));
        idx[j] = e;
    }
}

void router_prob_gates_backward(float *dprobs, const float *probs, const Routing *rt, const float *dgate, int T, int E,
                                int k, int renorm) {
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const float *p = probs + (size_t)t * E;
        float *dp = dprobs + (size_t)t * E;
        const int *idx = rt->expert + (size_t)t * k;
        const float *g = rt->gate + (size_t)t * k, *dg = dgate + (size_t)t * k;
        if (!renorm) {
            for (int j = 0; j < k; j++) dp[idx[j]] += dg[j];
            continue;
        }
        /* g_i = p_i / S over the chosen set: dp_i = (dg_i - sum_j g_j dg_j) / S */
        float sum = 0.0f, dot = 0.0f;
        for (int j = 0; j < k; j++) {
            sum += p[idx[j]];
            dot += g[j] * dg[j];
        }
        for (int j = 0; j < k; j++) dp[idx[j]] += (dg[j] - dot) / sum;
    }
}

float router_switch_aux(const float *probs, const int *counts, int T, int E, int k) {
    if (T == 0) return 0.0f;
    /* column sums in token order (as a column loop would add them), read row by row */
    double *P = ml_calloc(E, sizeof(double)), aux = 0.0;
    for (int t = 0; t < T; t++)
        for (int e = 0; e < E; e++) P[e] += probs[(size_t)t * E + e];
    for (int e = 0; e < E; e++) aux += (double)counts[e] / ((double)T * k) * (P[e] / T);
    free(P);
    return (float)(aux * E);
}

void router_switch_aux_backward(float *dprobs, const int *counts, int T, int E, int k, float coef_scale) {
    if (T == 0) return;
    /* d/dp_te of E * sum_e f_e * mean_t p_te = E f_e / T */
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++)
        for (int e = 0; e < E; e++)
            dprobs[(size_t)t * E + e] += coef_scale * E * ((float)counts[e] / ((float)T * k)) / T;
}

float router_z_loss(const float *logits, int T, int E, float *lse) {
    if (T == 0) return 0.0f;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const float *l = logits + (size_t)t * E;
        float mx = -INFINITY;
        for (int e = 0; e < E; e++) mx = fmaxf(mx, l[e]);
        double s = 0.0;
        for (int e = 0; e < E; e++) s += exp((double)l[e] - mx);
        lse[t] = (float)(mx + log(s));
    }
    double z = 0.0; /* in token order: the same sum whatever the thread count */
    for (int t = 0; t < T; t++) z += (double)lse[t] * lse[t];
    return (float)(z / T);
}

void router_z_loss_backward(float *dlogits, const float *probs, const float *lse, int T, int E, float coef_scale) {
    /* d/dl_te of mean_t lse_t^2 = 2 lse_t p_te / T */
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++)
        for (int e = 0; e < E; e++)
            dlogits[(size_t)t * E + e] += coef_scale * 2.0f * lse[t] * probs[(size_t)t * E + e] / T;
}

void router_softmax_backward(float *dlogits, const float *probs, const float *dprobs, int T, int E) {
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const float *p = probs + (size_t)t * E, *dp = dprobs + (size_t)t * E;
        float dot = 0.0f;
        for (int e = 0; e < E; e++) dot += p[e] * dp[e];
        for (int e = 0; e < E; e++) dlogits[(size_t)t * E + e] += p[e] * (dp[e] - dot);
    }
}

void router_linear_backward(const float *x, const float *w, const float *dlogits, int T, int D, int E, float *dw, float *dx) {
    matmul_backward_fp32(dx, dw, dlogits, x, w, T, D, E);
}
