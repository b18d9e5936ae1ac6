/* Pieces shared by the routers in this folder: scratch for a dense [T, E] scorer,
 * top-k selection, and the per-expert capacity filter (capacity-limited top-k, the
 * expert-side step of ETR, expert choice). */
#ifndef MOELAB_ROUTERS_SHARED_H
#define MOELAB_ROUTERS_SHARED_H
#include "moe/router.h"

/* Grow-only [T, E] buffers of a dense scorer; lse [T]; counts [E]. */
typedef struct {
    float *logits, *probs, *dprobs, *dlogits, *lse;
    int *counts;
    size_t cap_tokens;
    int E;
} Scorer;
void scorer_init(Scorer *s, int E);
void scorer_reserve(Scorer *s, int T);
void scorer_free(Scorer *s);
/* Zeroes dprobs and dlogits for T tokens. */
void scorer_zero_grads(Scorer *s, int T);

/* ceil(cf * pairs / E), at least 1: the tokens one expert may take. */
int router_capacity(double cf, double pairs, int E);

/* Candidate pairs (token t_p, expert e_p, priority s_p), p = 0..n-1, with tokens in
 * non-decreasing order. Each expert keeps at most cap of its candidates: those of
 * highest priority (by_position 0; ties to the earlier pair) or the earliest
 * (by_position 1). keep[p] is set to 0/1; returns the number dropped. */
int router_capacity_filter(const int *token, const int *expert, const float *prio, int n, int E, int cap,
                           int by_position, unsigned char *keep);

/* The LocMoE / ETR capacity lower bound max(1, ceil(1 / (E erfc(sqrt(d^2 D / (2 - d^2)))))) at
 * affinity d (1 when d is 0 or not below sqrt 2; 1e9 when erfc underflows). */
double router_capacity_lower_bound(double delta, int D, int E);

/* Sorts idx[0..n) so that val[idx] is descending, ties to the lower index (stable). */
void router_sort_desc(int *idx, int n, const float *val);

/* 64-bit mix of a value into a hash (splitmix64 finaliser). */
unsigned long long router_hash(unsigned long long h, unsigned long long v);

/* k distinct experts of E, uniformly at random (a partial Fisher-Yates shuffle seeded by seed). */
void router_draw_experts(unsigned long long seed, int E, int k, int *idx);

#endif
