#include "model/sizes.h"
#include "core/util.h"
#include <unistd.h>

/* A running sum of products; `bad` sticks once anything overflows. */
typedef struct {
    uint64_t v;
    int bad;
} Acc;

static uint64_t mul(Acc *a, uint64_t x, uint64_t y) {
    uint64_t r;
    if (__builtin_mul_overflow(x, y, &r)) a->bad = 1;
    return r;
}

static void add(Acc *a, uint64_t x) {
    if (__builtin_add_overflow(a->v, x, &a->v)) a->bad = 1;
}

/* Widths the layout uses, checked before any int product is formed. */
static int widths(const ModelConfig *m, uint64_t *Fd, uint64_t *Fs) {
    if (m->d_expert > SIZES_MAX_WIDTH) return ml_fail("d-expert must be at most %d (got %d)", SIZES_MAX_WIDTH, m->d_expert);
    if (m->d_dense > SIZES_MAX_WIDTH) return ml_fail("d-dense must be at most %d (got %d)", SIZES_MAX_WIDTH, m->d_dense);
    *Fs = (uint64_t)m->n_shared * (uint64_t)m->d_expert;
    *Fd = m->d_dense > 0 ? (uint64_t)m->d_dense : ((uint64_t)m->top_k + (uint64_t)m->n_shared) * (uint64_t)m->d_expert;
    if (*Fd > SIZES_MAX_WIDTH || *Fs > SIZES_MAX_WIDTH)
        return ml_fail("the dense FFN width ((topk + shared) x d-expert = %llu) and the shared experts' width "
                       "(%llu) must be at most %d",
                       (unsigned long long)*Fd, (unsigned long long)*Fs, SIZES_MAX_WIDTH);
    return 0;
}

int sizes_params(const ModelConfig *m, uint64_t *floats) {
    uint64_t Fd = 0, Fs = 0;
    if (widths(m, &Fd, &Fs)) return -1;
    uint64_t D = (uint64_t)m->d_model, V = (uint64_t)m->vocab_size, E = (uint64_t)m->n_experts, F = (uint64_t)m->d_expert;
    Acc a = {0, 0};
    add(&a, mul(&a, V, D) * (m->tie_embeddings ? 1 : 2) + D);
    for (int l = 0; l < m->n_layers; l++) {
        add(&a, 2 * D + 4 * mul(&a, D, D));
        if (model_is_moe_layer(m, l)) {
            /* a router's rows are at most a few per expert; bound them by 2E + 2 */
            add(&a, mul(&a, 2 * E + 2, D) + 3 * mul(&a, mul(&a, E, F), D) + 3 * mul(&a, Fs, D));
        } else {
            add(&a, 3 * mul(&a, Fd, D));
        }
    }
    if (a.bad || a.v > SIZES_MAX_PARAMS)
        return ml_fail("the model would have %s%llu parameters, more than the %llu allowed", a.bad ? "over " : "",
                       a.bad ? (unsigned long long)UINT64_MAX : (unsigned long long)a.v, (unsigned long long)SIZES_MAX_PARAMS);
    *floats = a.v;
    return 0;
}

int sizes_activations(const ModelConfig *m, int B, int T, uint64_t *floats) {
    uint64_t Fd = 0, Fs = 0;
    if (B < 1 || T < 1) return ml_fail("batch (%d) and sequence length (%d) must be positive", B, T);
    if (widths(m, &Fd, &Fs)) return -1;
    uint64_t D = (uint64_t)m->d_model, V = (uint64_t)m->vocab_size, k = (uint64_t)m->top_k;
    uint64_t F = (uint64_t)m->d_expert, NH = (uint64_t)m->n_heads;
    Acc a = {0, 0};
    uint64_t BT = mul(&a, (uint64_t)B, (uint64_t)T), att = mul(&a, mul(&a, BT, (uint64_t)T), NH);
    uint64_t Fmax = Fd > Fs ? Fd : Fs;
    /* per layer: residual and norm copies, qkv, attention probabilities, the FFN or the
     * experts' hidden rows (k per token) and shared experts */
    uint64_t layer = mul(&a, BT, 9 * D + 2) + att + mul(&a, BT, 3 * Fd) + mul(&a, mul(&a, BT, k), 3 * F + 3 * D + 8) +
                     mul(&a, BT, 3 * Fs + (uint64_t)m->n_experts);
    add(&a, mul(&a, layer, (uint64_t)m->n_layers));
    /* once: final norm, logits and their gradient, backward scratch */
    add(&a, mul(&a, BT, 9 * D + 4) + mul(&a, BT, 2 * V) + att + mul(&a, BT, 3 * Fmax + 3));
    if (a.bad || mul(&a, a.v, sizeof(float)) > SIZES_MAX_BYTES || a.bad)
        return ml_fail("activations for batch %d x %d tokens would need more than %llu GiB", B, T,
                       (unsigned long long)(SIZES_MAX_BYTES >> 30));
    *floats = a.v;
    return 0;
}

int sizes_kv(const ModelConfig *m, uint64_t *floats) {
    Acc a = {0, 0};
    uint64_t v = mul(&a, mul(&a, 2 * (uint64_t)m->n_layers, (uint64_t)m->seq_len), (uint64_t)m->d_model);
    if (a.bad || v > SIZES_MAX_BYTES / sizeof(float)) return ml_fail("the KV cache would be too large");
    *floats = v;
    return 0;
}

static uint64_t g_limit;

void sizes_set_memory_limit(uint64_t bytes) { g_limit = bytes; }

static uint64_t machine_bytes(void) {
    if (g_limit) return g_limit;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : UINT64_MAX;
}

static int fits(uint64_t floats, const char *what) {
    uint64_t bytes = floats * sizeof(float), have = machine_bytes();
    if (floats > SIZES_MAX_BYTES / sizeof(float) || bytes > have)
        return ml_fail("%s would need %.1f GiB, more than this machine's %.1f GiB of memory", what,
                       (double)floats * sizeof(float) / (1 << 30), (double)have / (1 << 30));
    return 0;
}

int sizes_check_model(const ModelConfig *m) {
    uint64_t p = 0, kv = 0;
    if (sizes_params(m, &p) || sizes_kv(m, &kv)) return -1;
    return fits(2 * p + kv, "the model (parameters, gradients and KV cache)");
}

int sizes_check_run(const ModelConfig *m, int B, int T, int training) {
    uint64_t p = 0, acts = 0;
    if (sizes_params(m, &p) || sizes_activations(m, B, T, &acts)) return -1;
    return fits((training ? 4 : 2) * p + acts, training ? "training (parameters, gradients, AdamW moments, activations)"
                                                        : "evaluation (parameters and activations)");
}
