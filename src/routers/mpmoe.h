/* MP-MoE (Mahalanobis-pruned routing) pieces that tests and tools call directly.
 * docs/mpmoe.md describes the router, its options and its state. */
#ifndef MOELAB_MPMOE_H
#define MOELAB_MPMOE_H
#include <stddef.h>

/* Per-layer state, doubles: C [E*E] co-occurrence counts, u [E] usage, N token count,
 * Sigma [E*E] the conditioned covariance the greedy uses, eps its Schur clamp (0 until
 * the first rebuild: Sigma is then the identity). */
#define MPMOE_C(E) 0
#define MPMOE_U(E) ((size_t)(E) * (E))
#define MPMOE_N(E) (MPMOE_U(E) + (E))
#define MPMOE_SIGMA(E) (MPMOE_N(E) + 1)
#define MPMOE_EPS(E) (MPMOE_SIGMA(E) + (size_t)(E) * (E))
#define MPMOE_STATE_LEN(E) (MPMOE_EPS(E) + 1)
/* The additive part (C, u, N): what a training forward adds and processes sum. */
#define MPMOE_PENDING_LEN(E) (MPMOE_N(E) + 1)

/* The published code's floor of diag(Sigma) and clamp of Schur complements. */
#define MPMOE_EPS_REF 1e-12

/* Sigma = C/N - u u^T/N^2, diagonal floored; with ridge > 0, ridge * mean(diag) is added
 * to the diagonal and is also the clamp (*eps) of conditional variances, the smallest
 * value one of Sigma + ridge can take. ridge = 0 is the published conditioning
 * (floor and clamp 1e-12). N <= 0 gives the identity. */
void mpmoe_sigma_build(const double *C, const double *u, double N, int E, double ridge, double *sigma, double *eps);

/* Floats of scratch one mpmoe_greedy call needs. */
size_t mpmoe_work_len(int E, int k);
/* Greedy maximisation of f(S) = p_S^T Sigma_SS^-1 p_S over |S| = k in the pivoted
 * inverse-Cholesky form: idx[t] is round t's pick (ties to the lowest index) and, when
 * fvals is not NULL, fvals[t] the value f({idx[0..t]}) the recursion claims for it.
 * sigma [E*E] row-major with its diagonal already floored. O(E k^2). */
void mpmoe_greedy(const float *p, const float *sigma, int E, int k, float eps, float *work, int *idx, float *fvals);

#endif
