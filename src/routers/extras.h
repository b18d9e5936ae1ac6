/* Composable router extras, any selecting router can take them through its options:
 *
 * - the orthogonality loss on the raw outputs of co-selected experts and the variance
 *   loss on router scores (Guo et al. 2025), each with a multiplier calibrated on the
 *   first optimizer step (10^round(log10(target / value)), the released code's rule),
 *   then frozen and kept in the router state;
 * - the aux-loss-free per-expert selection bias (DeepSeek-V3): selection uses
 *   score + bias, gates the unbiased score; after each optimizer step
 *   bias += rate * sign(mean load - load), from loads summed in `pending`.
 *
 * A router embeds ExtraOpts in its options struct, adds EXTRA_OPTIONS(...) to its
 * option table, reserves extras_state_len / extras_pending_len values after its own,
 * and calls the hooks below from forward, backward_outputs, backward and after_step. */
#ifndef MOELAB_ROUTERS_EXTRAS_H
#define MOELAB_ROUTERS_EXTRAS_H
#include "moe/router.h"
#include <stddef.h>

typedef struct {
    double ortho, var, bias_rate; /* targets (0: off) and the bias update rate (0: off) */
    double calib;                 /* fraction of training before the multipliers are measured */
    int ortho_group, var_kind;    /* 0: paper semantics; 1: the released code's */
    int ortho_norm;               /* 0: raw outputs (paper); 1: unit outputs (cos^2, scale-free) */
} ExtraOpts;

#define EXTRA_OPTIONS(S, m, d_ortho, d_var, d_bias, d_norm)                                                              \
    {"ortho", ROPT_FLOAT, offsetof(S, m.ortho), d_ortho, 0, 10, NULL,                                               \
     "orthogonality-loss target magnitude; multiplier 10^round(log10(ortho/L_o)) set on step 0, then frozen "       \
     "(0: off; 1e-3 = Guo et al. App. H.1, beta = alpha)"},                                                          \
    {"ortho_group", ROPT_ENUM, offsetof(S, m.ortho_group), 0, 0, 0, "token|expert",                                 \
     "token: each token's co-selected experts (paper eq. 6); expert: k consecutive rows of the expert-sorted "      \
     "outputs (the released code's grouping)"},                                                                      \
    {"ortho_norm", ROPT_ENUM, offsetof(S, m.ortho_norm), d_norm, 0, 0, "raw|unit",                                 \
     "raw: the paper's term on raw outputs, which grows with their squared norm; unit: on unit outputs (cos^2), "  \
     "moelab's variant for training from scratch, where step-0 outputs are tiny (orthvar's default: raw lost to "   \
     "the random router in the zoo experiment, docs/routers.md)"},                                                  \
    {"var", ROPT_FLOAT, offsetof(S, m.var), d_var, 0, 10, NULL,                                                     \
     "variance-loss target magnitude, calibrated like ortho (0: off; 1e-3 = Guo et al. code, variance_loss_weight; " \
     "orthvar's default 1e-4: from scratch 1e-3 drives every token's scores to one-hot, docs/routers.md)"},        \
    {"var_kind", ROPT_ENUM, offsetof(S, m.var_kind), 0, 0, 0, "row|column",                                         \
     "row: variance over experts of each token's dense scores (released code); column: variance over tokens of "    \
     "each expert's final gates (paper eq. 7, divided by tokens)"},                                                  \
    {"calib", ROPT_FLOAT, offsetof(S, m.calib), 0, 0, 0.9, NULL,                                                    \
     "fraction of training after which the multipliers are measured (one step) and frozen; until then both "       \
     "losses are measured, not applied (0: the first step, the released code; from scratch a later step avoids "   \
     "multipliers fitted to the tiny initial values)"},                                                              \
    {"bias_rate", ROPT_FLOAT, offsetof(S, m.bias_rate), d_bias, 0, 1, NULL,                                         \
     "aux-loss-free selection bias: bias += rate*sign(mean load - load) after each step (0: off; 1e-3 = "           \
     "DeepSeek-V3, Megatron moe_router_bias_update_rate)"}

typedef struct {
    ExtraOpts o;
    int E, T;
    double *state;   /* w_var, w_ortho, calibrated, bias[E] (NULL when nothing is on) */
    double *pending; /* var sum, var n, ortho sum, ortho n, load[E] */
    float *sel, *dense, *dgate, *colmean;
    int *gstart, *grows;
    size_t cap_te, cap_pairs, cap_tokens, cap_dgate;
} Extras;

int extras_on(const ExtraOpts *o);
int extras_state_len(const ExtraOpts *o, int E);   /* 0 when nothing is on */
int extras_pending_len(const ExtraOpts *o, int E); /* 0 when nothing is on */
void extras_init(Extras *x, const ExtraOpts *o, int E, double *state, double *pending);
void extras_free(Extras *x);
/* Selection scores: scores + bias when the bias is on (scratch), else scores itself. */
const float *extras_scores(Extras *x, const float *scores, int T);
/* After selection: loads into pending (training), the variance loss into r->losses.
 * scores [T, E] are the router's dense scores (the row variance is taken over them). */
void extras_forward(Extras *x, RouterLayer *r, const float *scores, const Routing *rt, int T);
/* The orthogonality loss: its value into r->losses, its gradient into dy. */
void extras_backward_outputs(Extras *x, RouterLayer *r, const Routing *rt, const float *y, const int *pos, float *dy,
                             float scale);
/* Row variance: dscores += its gradient. */
void extras_dscores(Extras *x, float *dscores, const float *scores, int T, float scale);
/* Column variance: dgate plus its gradient (scratch), or dgate itself when off. */
const float *extras_dgate(Extras *x, const Routing *rt, const float *dgate, float scale);
void extras_after_step(Extras *x);
/* Sets the selection bias from `bias` [E] when the bias is on (moelab route). 0, or -1 with ml_fail. */
int extras_load_bias(Extras *x, const RouterTensor *in, int n_in);
/* Multipliers in use (0 until calibrated). */
double extras_w_var(const Extras *x);
double extras_w_ortho(const Extras *x);

#endif
