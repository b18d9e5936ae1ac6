#include "routers/extras.h"
#include "core/util.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { S_WVAR, S_WORTHO, S_CALIBRATED, S_BIAS };           /* state */
enum { P_VAR, P_VAR_N, P_ORTHO, P_ORTHO_N, P_LOAD };        /* pending */
#define ORTHO_EPS 1e-6f

int extras_on(const ExtraOpts *o) { return o->ortho > 0 || o->var > 0 || o->bias_rate > 0; }
int extras_state_len(const ExtraOpts *o, int E) { return extras_on(o) ? S_BIAS + E : 0; }
int extras_pending_len(const ExtraOpts *o, int E) { return extras_on(o) ? P_LOAD + E : 0; }

void extras_init(Extras *x, const ExtraOpts *o, int E, double *state, double *pending) {
    memset(x, 0, sizeof *x);
    x->o = *o;
    x->E = E;
    if (!extras_on(o)) return;
    x->state = state;
    x->pending = pending;
}

void extras_free(Extras *x) {
    void *bufs[] = {x->sel, x->dense, x->dgate, x->colmean, x->gstart, x->grows};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    memset(x, 0, sizeof *x);
}

double extras_w_var(const Extras *x) { return x->state && x->o.var > 0 ? x->state[S_WVAR] : 0.0; }
double extras_w_ortho(const Extras *x) { return x->state && x->o.ortho > 0 ? x->state[S_WORTHO] : 0.0; }

static void reserve_te(Extras *x, int T) {
    if ((size_t)T <= x->cap_te) return;
    size_t n = (size_t)T * x->E;
    x->sel = ml_realloc(x->sel, n * sizeof(float));
    x->dense = ml_realloc(x->dense, n * sizeof(float));
    x->cap_te = T;
}

const float *extras_scores(Extras *x, const float *scores, int T) {
    if (x->o.bias_rate <= 0) return scores;
    reserve_te(x, T);
    const double *b = x->state + S_BIAS;
    for (int t = 0; t < T; t++)
        for (int e = 0; e < x->E; e++) x->sel[(size_t)t * x->E + e] = scores[(size_t)t * x->E + e] + (float)b[e];
    return x->sel;
}

static void add_loss(RouterLayer *r, const char *name, float value, double coef) {
    if (r->n_losses < ROUTER_MAX_LOSSES) r->losses[r->n_losses++] = (RouterLoss){name, value, (float)coef};
}

/* -V, V = mean over tokens of the unbiased variance over experts of the scores. */
static double row_variance(const float *s, int T, int E) {
    if (T == 0 || E < 2) return 0.0;
    double v = 0.0;
    for (int t = 0; t < T; t++) {
        const float *p = s + (size_t)t * E;
        double m = 0.0, q = 0.0;
        for (int e = 0; e < E; e++) m += p[e];
        m /= E;
        for (int e = 0; e < E; e++) q += (p[e] - m) * (p[e] - m);
        v += q / (E - 1);
    }
    return v / T;
}

/* Dense final gates [T, E] (0 where not selected) and their column means. */
static void dense_gates(Extras *x, const Routing *rt, int T) {
    int E = x->E;
    reserve_te(x, T);
    x->colmean = ml_realloc(x->colmean, (size_t)E * sizeof(float));
    memset(x->dense, 0, (size_t)T * E * sizeof(float));
    memset(x->colmean, 0, (size_t)E * sizeof(float));
    for (int p = 0; p < rt->n_pairs; p++) x->dense[(size_t)rt->token[p] * E + rt->expert[p]] += rt->gate[p];
    for (int t = 0; t < T; t++)
        for (int e = 0; e < E; e++) x->colmean[e] += x->dense[(size_t)t * E + e] / T;
}

/* sum_e sum_t (s_te - mean_e)^2 / (E T): the paper's column variance, per token. */
static double column_variance(Extras *x, const Routing *rt, int T) {
    if (T == 0) return 0.0;
    dense_gates(x, rt, T);
    double v = 0.0;
    for (int t = 0; t < T; t++)
        for (int e = 0; e < x->E; e++) {
            double d = x->dense[(size_t)t * x->E + e] - x->colmean[e];
            v += d * d;
        }
    return v / ((double)x->E * T);
}

static int calibrating(const Extras *x, const RouterLayer *r) {
    return r->mode == ROUTE_TRAIN && !x->state[S_CALIBRATED] && r->step >= (long)floor(x->o.calib * r->total_steps);
}

void extras_forward(Extras *x, RouterLayer *r, const float *scores, const Routing *rt, int T) {
    x->T = T;
    if (!x->state) return;
    if (x->o.bias_rate > 0 && r->mode == ROUTE_TRAIN)
        for (int p = 0; p < rt->n_pairs; p++) x->pending[P_LOAD + rt->expert[p]] += 1.0;
    if (x->o.var > 0) {
        double v = x->o.var_kind == 0 ? row_variance(scores, T, x->E) : column_variance(x, rt, T);
        if (calibrating(x, r)) {
            x->pending[P_VAR] += v;
            x->pending[P_VAR_N] += 1.0;
        }
        add_loss(r, "var", (float)-v, extras_w_var(x));
    }
    /* The calibrated multipliers, logged as values (coefficient 0). */
    if (x->o.var > 0) add_loss(r, "w_var", (float)extras_w_var(x), 0.0);
    if (x->o.ortho > 0) add_loss(r, "w_ortho", (float)extras_w_ortho(x), 0.0);
}

/* Rows of the sorted output buffer in groups: a token's pairs, or k consecutive rows. */
static int build_groups(Extras *x, const Routing *rt, const int *pos, int k) {
    int P = rt->n_pairs, T = rt->n_tokens;
    if ((size_t)P > x->cap_pairs) {
        x->grows = ml_realloc(x->grows, (size_t)P * sizeof(int));
        x->cap_pairs = P;
    }
    size_t ng = x->o.ortho_group == 0 ? (size_t)T : (size_t)(k > 0 ? P / k : 0);
    if (ng + 1 > x->cap_tokens) {
        x->gstart = ml_realloc(x->gstart, (ng + 1) * sizeof(int));
        x->cap_tokens = ng + 1;
    }
    if (x->o.ortho_group == 1) {
        for (size_t g = 0; g <= ng; g++) x->gstart[g] = (int)g * k;
        for (int i = 0; i < (int)ng * k; i++) x->grows[i] = i;
        return (int)ng;
    }
    memset(x->gstart, 0, (ng + 1) * sizeof(int));
    for (int p = 0; p < P; p++) x->gstart[rt->token[p] + 1]++;
    for (int t = 0; t < T; t++) x->gstart[t + 1] += x->gstart[t];
    int *next = ml_malloc((size_t)(T ? T : 1) * sizeof(int));
    memcpy(next, x->gstart, (size_t)T * sizeof(int));
    for (int p = 0; p < P; p++) x->grows[next[rt->token[p]]++] = pos[p];
    free(next);
    return T;
}

static double dotf(const float *a, const float *b, int n) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* Per ordered pair (a, b) of one group: t = p^2 q / D^2, p = <a,b>, q = <b,b>, D = q + eps;
 * dt/da = 2pq/D^2 b, dt/db = 2pq/D^2 a + 2p^2(eps - q)/D^3 b. Mean over ordered pairs. */
void extras_backward_outputs(Extras *x, RouterLayer *r, const Routing *rt, const float *y, const int *pos, float *dy,
                             float scale) {
    if (!x->state || x->o.ortho <= 0) return;
    int D = r->D, ng = build_groups(x, rt, pos, r->k);
    double total = 0.0;
    long pairs = 0;
    for (int g = 0; g < ng; g++) {
        int n = x->gstart[g + 1] - x->gstart[g];
        pairs += (long)n * (n - 1);
    }
    double c = pairs ? extras_w_ortho(x) * scale / pairs : 0.0;
    for (int g = 0; g < ng; g++) {
        const int *rows = x->grows + x->gstart[g];
        int n = x->gstart[g + 1] - x->gstart[g];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                if (i == j) continue;
                const float *a = y + (size_t)rows[i] * D, *b = y + (size_t)rows[j] * D;
                double p = dotf(a, b, D), q = dotf(b, b, D), Dn = q + ORTHO_EPS;
                /* dt/da = aa a + ab b, dt/db = ba a + bb b */
                double aa = 0.0, ab, ba, bb;
                if (x->o.ortho_norm == 0) {
                    total += p * p * q / (Dn * Dn);
                    ab = ba = 2 * p * q / (Dn * Dn), bb = 2 * p * p * (ORTHO_EPS - q) / (Dn * Dn * Dn);
                } else { /* t = p^2 / ((|a|^2 + eps)(|b|^2 + eps)) */
                    double Da = dotf(a, a, D) + ORTHO_EPS, u = p * p / (Da * Dn);
                    total += u;
                    ab = ba = 2 * p / (Da * Dn), aa = -2 * u / Da, bb = -2 * u / Dn;
                }
                if (c == 0.0) continue;
                float *da = dy + (size_t)rows[i] * D, *db = dy + (size_t)rows[j] * D;
                for (int d = 0; d < D; d++) {
                    da[d] += (float)(c * (aa * a[d] + ab * b[d]));
                    db[d] += (float)(c * (ba * a[d] + bb * b[d]));
                }
            }
    }
    double value = pairs ? total / pairs : 0.0;
    if (calibrating(x, r) && pairs) {
        x->pending[P_ORTHO] += value;
        x->pending[P_ORTHO_N] += 1.0;
    }
    add_loss(r, "ortho", (float)value, extras_w_ortho(x));
}

void extras_dscores(Extras *x, float *dscores, const float *scores, int T, float scale) {
    double w = extras_w_var(x);
    int E = x->E;
    if (w == 0.0 || x->o.var_kind != 0 || T == 0 || E < 2) return;
    /* d(-V)/ds_te = -2 (s_te - mean_t) / ((E-1) T); the mean's own terms cancel. */
    float c = (float)(-2.0 * w * scale / ((double)(E - 1) * T));
    for (int t = 0; t < T; t++) {
        const float *s = scores + (size_t)t * E;
        float m = 0.0f;
        for (int e = 0; e < E; e++) m += s[e];
        m /= E;
        for (int e = 0; e < E; e++) dscores[(size_t)t * E + e] += c * (s[e] - m);
    }
}

const float *extras_dgate(Extras *x, const Routing *rt, const float *dgate, float scale) {
    double w = extras_w_var(x);
    int T = rt->n_tokens, P = rt->n_pairs;
    if (w == 0.0 || x->o.var_kind != 1 || T == 0) return dgate;
    dense_gates(x, rt, T);
    if ((size_t)P > x->cap_dgate || !x->dgate) {
        x->dgate = ml_realloc(x->dgate, (size_t)(P ? P : 1) * sizeof(float));
        x->cap_dgate = P;
    }
    float c = (float)(-2.0 * w * scale / ((double)x->E * T));
    for (int p = 0; p < P; p++) {
        int e = rt->expert[p];
        x->dgate[p] = dgate[p] + c * (x->dense[(size_t)rt->token[p] * x->E + e] - x->colmean[e]);
    }
    return x->dgate;
}

static double calibrate(double target, double sum, double n) {
    if (n <= 0 || !(sum > 0)) return 0.0;
    double v = sum / n;
    return pow(10.0, round(log10(target / v)));
}

void extras_after_step(Extras *x) {
    if (!x->state) return;
    double *s = x->state, *p = x->pending;
    if (!s[S_CALIBRATED] && (p[P_VAR_N] > 0 || p[P_ORTHO_N] > 0 || (x->o.var <= 0 && x->o.ortho <= 0))) {
        s[S_WVAR] = x->o.var > 0 ? calibrate(x->o.var, p[P_VAR], p[P_VAR_N]) : 0.0;
        s[S_WORTHO] = x->o.ortho > 0 ? calibrate(x->o.ortho, p[P_ORTHO], p[P_ORTHO_N]) : 0.0;
        s[S_CALIBRATED] = 1.0;
    }
    if (x->o.bias_rate > 0) {
        double sum = 0.0;
        for (int e = 0; e < x->E; e++) sum += p[P_LOAD + e];
        if (sum > 0)
            for (int e = 0; e < x->E; e++) {
                double err = sum / x->E - p[P_LOAD + e];
                s[S_BIAS + e] += x->o.bias_rate * ((err > 0) - (err < 0));
            }
    }
    memset(p, 0, (size_t)extras_pending_len(&x->o, x->E) * sizeof(double));
}

int extras_load_bias(Extras *x, const RouterTensor *in, int n_in) {
    for (int i = 0; i < n_in; i++) {
        if (strcmp(in[i].name, "bias") != 0) continue;
        if (x->o.bias_rate <= 0) return ml_fail("tensor 'bias' given, but this router has no selection bias (bias_rate=0)");
        if (in[i].ndim != 1 || in[i].shape[0] != x->E) return ml_fail("tensor 'bias' must have shape [%d]", x->E);
        memcpy(x->state + S_BIAS, in[i].data, (size_t)x->E * sizeof(double));
    }
    return 0;
}
