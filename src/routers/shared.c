#include "routers/shared.h"
#include "core/util.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

void scorer_init(Scorer *s, int E) {
    memset(s, 0, sizeof *s);
    s->E = E;
    s->counts = ml_calloc(E, sizeof(int));
}

void scorer_reserve(Scorer *s, int T) {
    if ((size_t)T <= s->cap_tokens) return;
    size_t n = (size_t)T * s->E;
    s->logits = ml_realloc(s->logits, n * sizeof(float));
    s->probs = ml_realloc(s->probs, n * sizeof(float));
    s->dprobs = ml_realloc(s->dprobs, n * sizeof(float));
    s->dlogits = ml_realloc(s->dlogits, n * sizeof(float));
    s->lse = ml_realloc(s->lse, (size_t)T * sizeof(float));
    s->cap_tokens = T;
}

void scorer_free(Scorer *s) {
    void *bufs[] = {s->logits, s->probs, s->dprobs, s->dlogits, s->lse, s->counts};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    memset(s, 0, sizeof *s);
}

void scorer_zero_grads(Scorer *s, int T) {
    memset(s->dprobs, 0, (size_t)T * s->E * sizeof(float));
    memset(s->dlogits, 0, (size_t)T * s->E * sizeof(float));
}

int router_capacity(double cf, double pairs, int E) {
    double c = ceil(cf * pairs / E - 1e-9);
    return c < 1 ? 1 : c > 1e9 ? 1000000000 : (int)c;
}

typedef struct {
    float v;
    int i;
} Ranked;

static int by_value_desc(const void *a, const void *b) {
    const Ranked *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

void router_sort_desc(int *idx, int n, const float *val) {
    Ranked *r = ml_malloc((size_t)(n ? n : 1) * sizeof *r);
    for (int j = 0; j < n; j++) r[j] = (Ranked){val[idx[j]], idx[j]};
    qsort(r, n, sizeof *r, by_value_desc);
    for (int j = 0; j < n; j++) idx[j] = r[j].i;
    free(r);
}

int router_capacity_filter(const int *token, const int *expert, const float *prio, int n, int E, int cap,
                           int by_position, unsigned char *keep) {
    (void)token; /* pair order is token order: "earliest" is the lower pair index */
    int *start = ml_calloc(E + 1, sizeof(int)), *order = ml_malloc((size_t)(n ? n : 1) * sizeof(int));
    for (int p = 0; p < n; p++) start[expert[p] + 1]++;
    for (int e = 0; e < E; e++) start[e + 1] += start[e];
    int *next = ml_malloc((size_t)E * sizeof(int));
    memcpy(next, start, E * sizeof(int));
    for (int p = 0; p < n; p++) order[next[expert[p]]++] = p;
    int dropped = 0;
    for (int e = 0; e < E; e++) {
        int *o = order + start[e], m = start[e + 1] - start[e];
        if (m > cap && !by_position) router_sort_desc(o, m, prio);
        for (int j = 0; j < m; j++) keep[o[j]] = j < cap;
        if (m > cap) dropped += m - cap;
    }
    free(start);
    free(order);
    free(next);
    return dropped;
}

unsigned long long router_hash(unsigned long long h, unsigned long long v) {
    unsigned long long z = h + 0x9E3779B97F4A7C15ull + v;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void router_draw_experts(unsigned long long seed, int E, int k, int *idx) {
    Rng g;
    rng_seed(&g, seed);
    int perm[E];
    for (int e = 0; e < E; e++) perm[e] = e;
    for (int j = 0; j < k; j++) {
        int i = j + (int)rng_below(&g, (unsigned long long)(E - j)), tmp = perm[j];
        perm[j] = perm[i];
        perm[i] = tmp;
        idx[j] = perm[j];
    }
}

double router_capacity_lower_bound(double delta, int D, int E) {
    double d2 = delta * delta;
    if (!(d2 > 0) || d2 >= 2) return 1.0;
    double er = erfc(sqrt(d2 * D / (2 - d2)));
    return er > 0 ? fmax(1.0, ceil(1.0 / (E * er))) : 1e9;
}

