/* Branch-free float math that compilers vectorise: libm's expf and fmaxf are calls that keep
 * the elementwise loops (SwiGLU, softmax, cross-entropy) scalar. */
#ifndef MOELAB_VMATH_H
#define MOELAB_VMATH_H
#include <stdint.h>
#include <string.h>

static inline float vmaxf(float a, float b) { return a > b ? a : b; }

/* e^x within 2 ulp of expf for x in [-87.3, 88.3] (clamped outside: e^-87.3 ~ 1e-38 stands
 * in for 0). x = n ln2 + f, |f| <= ln2/2, e^f by Cephes' degree-7 polynomial. */
static inline float vexpf(float x0) {
    /* A NaN takes the lower clamp here, so the exponent bits below stay defined, and is
     * given back at the end: a non-finite loss must stay visible to the trainer's guard. */
    float x = x0 > -87.3f ? x0 : -87.3f;
    x = x < 88.3f ? x : 88.3f;
    float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f; /* round to nearest: 1.5 * 2^23 */
    float f = x - n * 0.693359375f + n * 2.12194440e-4f;   /* ln2 in two parts: exact n * hi */
    float p = 1.9875691500e-4f;
    p = p * f + 1.3981999507e-3f;
    p = p * f + 8.3334519073e-3f;
    p = p * f + 4.1665795894e-2f;
    p = p * f + 1.6666665459e-1f;
    p = p * f + 5.0000001201e-1f;
    p = p * f * f + f + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float r = p * scale;
    return x0 == x0 ? r : x0;
}

static inline float vsigmoidf(float z) { return 1.0f / (1.0f + vexpf(-z)); }

/* Sums in 16 lanes, then the lanes in order: a single running sum is a chain of dependent
 * adds (one per 4 cycles) that no compiler may reorder; 16 independent chains vectorise.
 * The order is fixed by n alone, so results stay deterministic. */
#define VLANES 16
static inline float vlanes_total(const float *acc) {
    float s = 0.0f;
    for (int l = 0; l < VLANES; l++) s += acc[l];
    return s;
}

/* sum_j a[j] b[j] */
static inline float vdotf(const float *a, const float *b, int n) {
    float acc[VLANES] = {0};
    int j = 0;
    for (; j + VLANES <= n; j += VLANES)
        for (int l = 0; l < VLANES; l++) acc[l] += a[j + l] * b[j + l];
    for (; j < n; j++) acc[j % VLANES] += a[j] * b[j];
    return vlanes_total(acc);
}

/* sum_j a[j] b[j] c[j] */
static inline float vdot3f(const float *a, const float *b, const float *c, int n) {
    float acc[VLANES] = {0};
    int j = 0;
    for (; j + VLANES <= n; j += VLANES)
        for (int l = 0; l < VLANES; l++) acc[l] += a[j + l] * b[j + l] * c[j + l];
    for (; j < n; j++) acc[j % VLANES] += a[j] * b[j] * c[j];
    return vlanes_total(acc);
}

/* sum_j a[j] */
static inline float vsumf(const float *a, int n) {
    float acc[VLANES] = {0};
    int j = 0;
    for (; j + VLANES <= n; j += VLANES)
        for (int l = 0; l < VLANES; l++) acc[l] += a[j + l];
    for (; j < n; j++) acc[j % VLANES] += a[j];
    return vlanes_total(acc);
}

#endif
