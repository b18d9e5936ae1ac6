/* Selection cost per token: the MP-MoE greedy against top-k on the same probabilities,
 * one thread, medians of 15 interleaved repetitions. Sigma comes from the top-k routing
 * of the same clustered tokens (real structure: a non-identity Sigma). Built and run by
 * scripts/benchmarks/mpmoe_greedy.sh. */
#include "core/util.h"
#include "moe/router.h"
#include "routers/mpmoe.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void run(int E, int k, int T) {
    Rng g;
    rng_seed(&g, 1);
    float *p = ml_malloc(sizeof(float) * T * E), *S = ml_malloc(sizeof(float) * E * E);
    float *w = ml_malloc(mpmoe_work_len(E, k) * sizeof(float));
    int *idx = ml_malloc(k * sizeof(int));
    for (int t = 0; t < T; t++) {
        float m = 0;
        for (int e = 0; e < E; e++) m += p[t * E + e] = expf(1.5f * rng_normal(&g) + (e % 5 == t % 5 ? 2.0f : 0.0f));
        for (int e = 0; e < E; e++) p[t * E + e] /= m;
    }
    double *C = ml_calloc(E * E, sizeof(double)), *u = ml_calloc(E, sizeof(double)), *Sd = ml_malloc(sizeof(double) * E * E), eps;
    for (int t = 0; t < T; t++) {
        router_select_topk(p + t * E, E, k, idx);
        for (int i = 0; i < k; i++) {
            u[idx[i]]++;
            for (int j = 0; j < k; j++) C[idx[i] * E + idx[j]]++;
        }
    }
    mpmoe_sigma_build(C, u, T, E, 0.01, Sd, &eps);
    for (int i = 0; i < E * E; i++) S[i] = (float)Sd[i];
    double gr[15], tk[15];
    for (int r = 0; r < 15; r++) {
        double t0 = ml_now();
        for (int t = 0; t < T; t++) mpmoe_greedy(p + t * E, S, E, k, (float)eps, w, idx, NULL);
        double t1 = ml_now();
        for (int t = 0; t < T; t++) router_select_topk(p + t * E, E, k, idx);
        double t2 = ml_now();
        gr[r] = (t1 - t0) / T * 1e9, tk[r] = (t2 - t1) / T * 1e9;
    }
    qsort(gr, 15, sizeof(double), cmp);
    qsort(tk, 15, sizeof(double), cmp);
    printf("E=%-3d k=%-2d greedy %8.1f ns/token  topk %8.1f ns/token  ratio %.2f\n", E, k, gr[7], tk[7], gr[7] / tk[7]);
    free(p), free(S), free(w), free(idx), free(C), free(u), free(Sd);
}

int main(void) {
    int cases[][2] = {{8, 2}, {16, 4}, {32, 4}, {64, 8}};
    for (int i = 0; i < 4; i++) run(cases[i][0], cases[i][1], 4096);
    return 0;
}
