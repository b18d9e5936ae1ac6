/* MP-MoE: the greedy against an exact double-precision greedy and brute force over all
 * k-subsets, Sigma = I is top-k, float and double agree on well-separated inputs, the
 * state (counts, Sigma) follows the training forwards, sums like one process, survives a
 * checkpoint, and evaluation uses the saved Sigma. */
#include "core/util.h"
#include "io/checkpoint.h"
#include "model/model.h"
#include "routers/mpmoe.h"
#include "testlib.h"
#include <omp.h>
#include <string.h>

static Rng g_rng;

/* ---- statistics with real structure: routing of latent-cluster logits by top-k ---- */

typedef struct {
    int E, k, G;
    float *centre; /* [G, E] */
} Clusters;

static void clusters_make(Clusters *c, int E, int k, int G) {
    c->E = E, c->k = k, c->G = G;
    c->centre = ml_malloc((size_t)G * E * sizeof(float));
    for (int i = 0; i < G * E; i++) c->centre[i] = 1.5f * rng_normal(&g_rng);
}

/* One token's probabilities: a random cluster's centre plus noise, softmaxed. */
static void clusters_probs(const Clusters *c, float noise, float *p) {
    int g = (int)rng_below(&g_rng, c->G);
    float mx = -INFINITY, s = 0.0f;
    for (int e = 0; e < c->E; e++) mx = fmaxf(mx, p[e] = c->centre[g * c->E + e] + noise * rng_normal(&g_rng));
    for (int e = 0; e < c->E; e++) s += p[e] = expf(p[e] - mx);
    for (int e = 0; e < c->E; e++) p[e] /= s;
}

/* Counts of n tokens routed by top-k, then Sigma conditioned with `ridge`. */
static void clusters_sigma(const Clusters *c, int n, double ridge, double *sigma, double *eps) {
    int E = c->E, k = c->k;
    double *C = ml_calloc((size_t)E * E, sizeof(double)), *u = ml_calloc(E, sizeof(double));
    float *p = ml_malloc(E * sizeof(float));
    int *idx = ml_malloc(k * sizeof(int));
    for (int t = 0; t < n; t++) {
        clusters_probs(c, 1.0f, p);
        router_select_topk(p, E, k, idx);
        for (int i = 0; i < k; i++) {
            u[idx[i]] += 1;
            for (int j = 0; j < k; j++) C[idx[i] * E + idx[j]] += 1;
        }
    }
    mpmoe_sigma_build(C, u, n, E, ridge, sigma, eps);
    free(C), free(u), free(p), free(idx);
}

/* ---- exact objective in double ---- */

/* f(S) = p_S^T Sigma_SS^-1 p_S by Cholesky; -1 when Sigma_SS is not positive definite. */
static double f_exact(const float *p, const double *sigma, int E, const int *S, int n) {
    double L[16][16], y[16];
    for (int i = 0; i < n; i++)
        for (int j = 0; j <= i; j++) {
            double s = sigma[S[i] * E + S[j]];
            for (int m = 0; m < j; m++) s -= L[i][m] * L[j][m];
            if (i == j) {
                if (s <= 0) return -1;
                L[i][i] = sqrt(s);
            } else {
                L[i][j] = s / L[j][j];
            }
        }
    double f = 0;
    for (int i = 0; i < n; i++) {
        double s = p[S[i]];
        for (int m = 0; m < i; m++) s -= L[i][m] * y[m];
        y[i] = s / L[i][i];
        f += y[i] * y[i];
    }
    return f;
}

/* The greedy by definition: each round evaluates f(S + j) afresh for every j. margin[t]
 * is the relative gap between the best and the second-best value of round t. */
static void greedy_exact(const float *p, const double *sigma, int E, int k, int *S, double *margin) {
    for (int t = 0; t < k; t++) {
        double best = -INFINITY, second = -INFINITY;
        int bj = -1;
        for (int j = 0; j < E; j++) {
            int used = 0;
            for (int m = 0; m < t; m++) used |= S[m] == j;
            if (used) continue;
            S[t] = j;
            double f = f_exact(p, sigma, E, S, t + 1);
            if (f > best) second = best, best = f, bj = j;
            else if (f > second) second = f;
        }
        S[t] = bj;
        if (margin) margin[t] = second == -INFINITY ? INFINITY : (best - second) / fabs(best);
    }
}

static void to_float(const double *a, float *b, size_t n) {
    for (size_t i = 0; i < n; i++) b[i] = (float)a[i];
}

static int same_set(const int *a, const int *b, int k) {
    for (int i = 0; i < k; i++) {
        int found = 0;
        for (int j = 0; j < k; j++) found |= a[i] == b[j];
        if (!found) return 0;
    }
    return 1;
}

/* Every k-subset of E by its best f. */
static double best_subset(const float *p, const double *sigma, int E, int k) {
    int S[16];
    double best = -INFINITY;
    for (unsigned mask = 0; mask < (1u << E); mask++) {
        if (__builtin_popcount(mask) != k) continue;
        int n = 0;
        for (int e = 0; e < E; e++)
            if (mask >> e & 1) S[n++] = e;
        double f = f_exact(p, sigma, E, S, k);
        if (f > best) best = f;
    }
    return best;
}

/* Each round's claimed value is f of the set so far; the picks are the exact greedy's;
 * the approximation ratio to the best k-subset is printed. */
static void greedy_case(int E, int k, double ridge) {
    Clusters c;
    clusters_make(&c, E, k, 3);
    double *sd = ml_malloc((size_t)E * E * sizeof(double)), eps;
    clusters_sigma(&c, 4000, ridge, sd, &eps);
    float *sf = ml_malloc((size_t)E * E * sizeof(float)), *work = ml_malloc(mpmoe_work_len(E, k) * sizeof(float));
    to_float(sd, sf, (size_t)E * E);
    float p[16], fv[16];
    int idx[16], S[16], n = 200, same = 0, not_topk = 0;
    double worst_claim = 0, min_ratio = 1, sum_ratio = 0;
    for (int t = 0; t < n; t++) {
        clusters_probs(&c, 1.0f, p);
        mpmoe_greedy(p, sf, E, k, (float)eps, work, idx, fv);
        for (int r = 0; r < k; r++) {
            double f = f_exact(p, sd, E, idx, r + 1);
            worst_claim = fmax(worst_claim, fabs(fv[r] - f) / f);
        }
        greedy_exact(p, sd, E, k, S, NULL);
        same += same_set(idx, S, k);
        router_select_topk(p, E, k, S);
        not_topk += !same_set(idx, S, k);
        double ratio = f_exact(p, sd, E, idx, k) / best_subset(p, sd, E, k);
        CHECK(ratio <= 1 + 1e-5, "E=%d k=%d token %d: greedy above the optimum (%.8f)", E, k, t, ratio);
        min_ratio = fmin(min_ratio, ratio);
        sum_ratio += ratio;
    }
    printf("  E=%d k=%d ridge=%g: claimed f vs recomputed max rel %.2e; %d/%d sets = exact double greedy; "
           "%d differ from top-k; greedy/optimum min %.4f mean %.4f\n",
           E, k, ridge, worst_claim, same, n, not_topk, min_ratio, sum_ratio / n);
    CHECK(worst_claim < 1e-3, "claimed values differ from f(S) by %.2e", worst_claim);
    CHECK(same >= n - 2, "only %d of %d sets equal the exact greedy", same, n);
    CHECK(not_topk > 0, "the statistics never move the greedy off top-k: the test shows nothing");
    free(c.centre), free(sd), free(sf), free(work);
}

static void test_greedy_bruteforce(void) {
    greedy_case(8, 3, 0.0);
    greedy_case(10, 4, 0.0);
    greedy_case(12, 4, 0.01);
}

static void test_identity_is_topk(void) {
    int E = 16, k = 5, idx[16], ref[16];
    float *I = ml_calloc(E * E, sizeof(float)), *work = ml_malloc(mpmoe_work_len(E, k) * sizeof(float)), p[16];
    for (int e = 0; e < E; e++) I[e * E + e] = 1.0f;
    Clusters c;
    clusters_make(&c, E, k, 4);
    int bad = 0;
    for (int t = 0; t < 500; t++) {
        clusters_probs(&c, 1.0f, p);
        if (t == 0) p[3] = p[9] = p[12]; /* exact ties: lowest index first in both */
        mpmoe_greedy(p, I, E, k, 1e-12f, work, idx, NULL);
        router_select_topk(p, E, k, ref);
        for (int j = 0; j < k; j++) bad += idx[j] != ref[j];
    }
    CHECK(bad == 0, "%d picks differ from top-k (in order) under Sigma = I", bad);
    free(I), free(work), free(c.centre);
}

/* The float recursion and the exact double greedy agree wherever no round is a near tie. */
static void test_float_double(void) {
    int E = 32, k = 6, n = 1000, separated = 0, agree_sep = 0, agree = 0, S[16], idx[16];
    Clusters c;
    clusters_make(&c, E, k, 5);
    double *sd = ml_malloc((size_t)E * E * sizeof(double)), eps, margin[16];
    clusters_sigma(&c, 20000, 0.0, sd, &eps);
    float *sf = ml_malloc((size_t)E * E * sizeof(float)), *work = ml_malloc(mpmoe_work_len(E, k) * sizeof(float)), p[32];
    to_float(sd, sf, (size_t)E * E);
    for (int t = 0; t < n; t++) {
        clusters_probs(&c, 1.0f, p);
        greedy_exact(p, sd, E, k, S, margin);
        mpmoe_greedy(p, sf, E, k, (float)eps, work, idx, NULL);
        int sep = 1, same = 1;
        for (int r = 0; r < k; r++) sep &= margin[r] > 1e-3, same &= idx[r] == S[r];
        separated += sep;
        agree += same;
        agree_sep += sep && same;
    }
    printf("  E=%d k=%d: %d/%d tokens well separated (every round's margin > 1e-3), float = double on %d of them; "
           "%d/%d overall\n", E, k, separated, n, agree_sep, agree, n);
    CHECK(separated > n / 2, "too few separated tokens (%d) for the test to mean much", separated);
    CHECK(agree_sep == separated, "float and double differ on %d well-separated tokens", separated - agree_sep);
    free(c.centre), free(sd), free(sf), free(work);
}

/* ---- the router inside a model ---- */

static void tiny_model(TrainConfig *tc, const char *opts) {
    config_defaults(tc);
    ModelConfig *m = &tc->model;
    m->n_layers = 2, m->d_model = 16, m->n_heads = 2, m->seq_len = 8, m->vocab_size = 29;
    m->n_experts = 8, m->top_k = 3, m->d_expert = 8, m->n_shared = 0, m->dense_layers = 0;
    snprintf(m->router, sizeof m->router, "mpmoe");
    snprintf(m->router_opts, sizeof m->router_opts, "%s", opts);
    tc->batch = 4;
    tc->steps = 40;
}

static int make_model(Model *m, TrainConfig *tc, const char *opts) {
    tiny_model(tc, opts);
    if (model_create(m, &tc->model)) return -1;
    model_init_weights(m, 3);
    /* Peaky, varied routers so the routing has structure. */
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const ParamInfo *p = NULL;
        char name[64];
        snprintf(name, sizeof name, "layers.%d.moe.router.weight", l);
        p = params_find(&m->table, name);
        for (size_t i = 0; p && i < p->size; i++) m->params[p->offset + i] *= 20.0f;
    }
    return 0;
}

static void random_tokens(int *x, int n, int V) {
    for (int i = 0; i < n; i++) x[i] = (int)rng_below(&g_rng, V);
}

/* `steps` training forwards (no optimizer: routing statistics only), after_step after each. */
static void run_steps(Model *m, int steps, long first, long total, int seed) {
    int B = 4, T = m->cfg.seq_len, *x = ml_malloc((size_t)B * T * sizeof(int));
    Rng keep = g_rng;
    rng_seed(&g_rng, seed);
    for (int s = 0; s < steps; s++) {
        random_tokens(x, B * T, m->cfg.vocab_size);
        model_set_step(m, first + s, total);
        model_forward(m, x, NULL, B, T, ROUTE_TRAIN);
        model_after_step(m, first + s + 1, total);
    }
    g_rng = keep;
    free(x);
}

/* The routing of layer l's last forward as per-token expert sets (sorted into a mask). */
static void mask_of(const Model *m, int l, unsigned char *mask, int T) {
    const Routing *rt = &m->acts.moe[l].rt;
    memset(mask, 0, (size_t)T * m->cfg.n_experts);
    for (int i = 0; i < rt->n_pairs; i++) mask[(size_t)rt->token[i] * m->cfg.n_experts + rt->expert[i]] = 1;
}

/* Counts follow the final routing; Sigma = C/N - uu^T/N^2 conditioned; eval routes
 * by the greedy under that Sigma. */
static void test_state_and_eval(void) {
    Model m;
    TrainConfig tc;
    CHECK(make_model(&m, &tc, "warmup=0,decay=0,ridge=0.01") == 0, "model: %s", ml_last_error());
    int E = m.cfg.n_experts, k = m.cfg.top_k, B = 4, T = m.cfg.seq_len, BT = B * T;
    RouterLayer *r = &m.routers[1];
    /* one forward: pending = counts of its routing */
    int *x = ml_malloc(BT * sizeof(int));
    random_tokens(x, BT, m.cfg.vocab_size);
    model_forward(&m, x, NULL, B, T, ROUTE_TRAIN);
    unsigned char *mask = ml_malloc((size_t)BT * E);
    mask_of(&m, 1, mask, BT);
    int bad = 0;
    for (int i = 0; i < E; i++)
        for (int j = 0; j < E; j++) {
            double c = 0;
            for (int t = 0; t < BT; t++) c += mask[t * E + i] && mask[t * E + j];
            bad += r->pending[MPMOE_C(E) + i * E + j] != c;
        }
    CHECK(bad == 0 && r->pending[MPMOE_N(E)] == BT, "pending counts differ from the routing (%d entries)", bad);
    model_after_step(&m, 1, 40);
    run_steps(&m, 5, 1, 40, 11);
    /* Sigma rebuilt from the state's counts */
    double *sg = ml_malloc((size_t)E * E * sizeof(double)), eps;
    mpmoe_sigma_build(r->state + MPMOE_C(E), r->state + MPMOE_U(E), r->state[MPMOE_N(E)], E, 0.01, sg, &eps);
    CHECK(memcmp(sg, r->state + MPMOE_SIGMA(E), (size_t)E * E * sizeof(double)) == 0, "Sigma is not built from the counts");
    CHECK(r->state[MPMOE_N(E)] == 6.0 * BT, "N = %g after 6 forwards of %d tokens", r->state[MPMOE_N(E)], BT);
    /* eval: greedy under the state's Sigma, per token */
    random_tokens(x, BT, m.cfg.vocab_size);
    double pending_before = r->pending[MPMOE_N(E)];
    model_forward(&m, x, NULL, B, T, ROUTE_EVAL);
    CHECK(r->pending[MPMOE_N(E)] == pending_before, "an eval forward changed the counts");
    float *sf = ml_malloc((size_t)E * E * sizeof(float)), *work = ml_malloc(mpmoe_work_len(E, k) * sizeof(float));
    to_float(r->state + MPMOE_SIGMA(E), sf, (size_t)E * E);
    int wrong = 0, off_topk = 0, idx[8], top[8];
    const Routing *rt = &m.acts.moe[1].rt;
    for (int t = 0; t < BT; t++) {
        mpmoe_greedy(r->probs + (size_t)t * E, sf, E, k, (float)r->state[MPMOE_EPS(E)], work, idx, NULL);
        wrong += !same_set(idx, rt->expert + t * k, k);
        router_select_topk(r->probs + (size_t)t * E, E, k, top);
        off_topk += !same_set(top, rt->expert + t * k, k);
        float g = 0;
        for (int j = 0; j < k; j++) g += rt->gate[t * k + j];
        CHECK(fabsf(g - 1.0f) < 1e-5f, "token %d: gates sum to %g, not 1", t, g);
    }
    printf("  eval routing: %d of %d tokens off top-k under the learned Sigma\n", off_topk, BT);
    CHECK(wrong == 0, "%d eval tokens not routed by the greedy under the state's Sigma", wrong);
    CHECK(off_topk > 0, "no token left top-k: the eval test shows nothing");
    free(x), free(mask), free(sg), free(sf), free(work);
    model_free(&m);
}

/* Grad accumulation and several processes: the pending counts of two half batches,
 * summed, are those of the whole batch, and fold into the same state. */
static void test_pending_sums(void) {
    Model a, b;
    TrainConfig tc;
    CHECK(make_model(&a, &tc, "") == 0 && make_model(&b, &tc, "") == 0, "model: %s", ml_last_error());
    int E = a.cfg.n_experts, T = a.cfg.seq_len, *x = ml_malloc(8 * T * sizeof(int));
    random_tokens(x, 8 * T, a.cfg.vocab_size);
    model_forward(&a, x, NULL, 8, T, ROUTE_TRAIN);
    model_forward(&b, x, NULL, 4, T, ROUTE_TRAIN);
    model_forward(&b, x + 4 * T, NULL, 4, T, ROUTE_TRAIN);
    int n = a.routers[0].pending_len, diff = 0;
    for (int l = 0; l < 2; l++)
        for (int i = 0; i < n; i++) diff += a.routers[l].pending[i] != b.routers[l].pending[i];
    CHECK(diff == 0, "%d pending values differ between one batch and two halves", diff);
    model_after_step(&a, 1, 40);
    model_after_step(&b, 1, 40);
    CHECK(memcmp(a.router_state, b.router_state, a.router_state_len * sizeof(double)) == 0, "states differ");
    CHECK(a.routers[0].pending[MPMOE_N(E)] == 0, "after_step left pending counts");
    free(x);
    model_free(&a);
    model_free(&b);
}

/* decay=h halves the old counts every h steps. */
static void test_decay(void) {
    Model m;
    TrainConfig tc;
    CHECK(make_model(&m, &tc, "decay=2") == 0, "model: %s", ml_last_error());
    int E = m.cfg.n_experts, BT = 4 * m.cfg.seq_len;
    run_steps(&m, 1, 0, 40, 5);
    run_steps(&m, 2, 1, 40, 6);
    /* N after 3 steps with keep = 2^-1/2: BT (0.5 + 0.5^0.5 + 1) */
    double want = BT * (0.5 + sqrt(0.5) + 1.0), got = m.routers[0].state[MPMOE_N(E)];
    CHECK(fabs(got - want) < 1e-9 * want, "N = %.12g, want %.12g", got, want);
    model_free(&m);
}

/* Warm-up: top-k for the first floor(warmup * steps) optimizer steps (gates renormalised,
 * or not with reference=1); the greedy afterwards. */
static void test_warmup(void) {
    for (int ref = 0; ref <= 1; ref++) {
        Model m;
        TrainConfig tc;
        CHECK(make_model(&m, &tc, ref ? "reference=1,warmup=0.25" : "warmup=0.25") == 0, "model: %s", ml_last_error());
        int E = m.cfg.n_experts, k = m.cfg.top_k, B = 4, T = m.cfg.seq_len, BT = B * T, *x = ml_malloc(BT * sizeof(int));
        run_steps(&m, 9, 0, 40, 3); /* Sigma from 9 warm-up steps */
        random_tokens(x, BT, m.cfg.vocab_size);
        const RouterLayer *r = &m.routers[1];
        const Routing *rt = &m.acts.moe[1].rt;
        int phase_off[2] = {0, 0}, top[8];
        double gsum[2] = {0, 0};
        for (int ph = 0; ph < 2; ph++) {
            model_set_step(&m, ph ? 10 : 9, 40);
            model_forward(&m, x, NULL, B, T, ROUTE_TRAIN);
            for (int t = 0; t < BT; t++) {
                router_select_topk(r->probs + (size_t)t * E, E, k, top);
                phase_off[ph] += !same_set(top, rt->expert + t * k, k);
                for (int j = 0; j < k; j++) gsum[ph] += rt->gate[t * k + j] / BT;
            }
        }
        printf("  reference=%d: step 9 (warm-up) %d tokens off top-k, gate sum %.4f; step 10: %d off, gate sum %.4f\n",
               ref, phase_off[0], gsum[0], phase_off[1], gsum[1]);
        CHECK(phase_off[0] == 0, "warm-up step routed %d tokens off top-k", phase_off[0]);
        CHECK(phase_off[1] > 0, "after warm-up no token left top-k");
        CHECK(fabs(gsum[1] - 1) < 1e-5, "greedy gates not renormalised");
        CHECK(ref ? gsum[0] < 0.999 : fabs(gsum[0] - 1) < 1e-5, "warm-up gate sum %.6f with reference=%d", gsum[0], ref);
        free(x);
        model_free(&m);
    }
}

/* Same input, same routing, whatever the thread count. */
static void test_determinism(void) {
    Model m;
    TrainConfig tc;
    CHECK(make_model(&m, &tc, "warmup=0") == 0, "model: %s", ml_last_error());
    run_steps(&m, 4, 0, 40, 8);
    int E = m.cfg.n_experts, B = 4, T = m.cfg.seq_len, BT = B * T, *x = ml_malloc(BT * sizeof(int));
    random_tokens(x, BT, m.cfg.vocab_size);
    unsigned char *m1 = ml_malloc((size_t)BT * E), *m2 = ml_malloc((size_t)BT * E);
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    model_forward(&m, x, NULL, B, T, ROUTE_EVAL);
    mask_of(&m, 1, m1, BT);
    omp_set_num_threads(saved > 1 ? saved : 2);
    model_forward(&m, x, NULL, B, T, ROUTE_EVAL);
    mask_of(&m, 1, m2, BT);
    omp_set_num_threads(saved);
    CHECK(memcmp(m1, m2, (size_t)BT * E) == 0, "routing depends on the thread count");
    free(x), free(m1), free(m2);
    model_free(&m);
}

/* The state goes into model.safetensors and comes back bit for bit; the loaded model
 * evaluates with it (same routing as before the save). */
static void test_checkpoint_roundtrip(void) {
    Model m, l;
    TrainConfig tc, tl;
    CHECK(make_model(&m, &tc, "warmup=0") == 0, "model: %s", ml_last_error());
    run_steps(&m, 6, 0, 40, 9);
    AdamW opt;
    adamw_init(&opt, m.table.total);
    TrainState st;
    memset(&st, 0, sizeof st);
    st.step = 6, st.loader.B = tc.batch, st.loader.T = tc.model.seq_len;
    char dir[128];
    tl_tmp(dir, sizeof dir, "ckpt");
    CHECK(checkpoint_save(dir, &m, &tc, &opt, &st) == 0, "save: %s", ml_last_error());
    CHECK(checkpoint_load_model(dir, &l, &tl) == 0, "load: %s", ml_last_error());
    CHECK(l.router_state_len == m.router_state_len &&
              memcmp(l.router_state, m.router_state, m.router_state_len * sizeof(double)) == 0,
          "router state differs after the round trip");
    int E = m.cfg.n_experts, B = 4, T = m.cfg.seq_len, BT = B * T, *x = ml_malloc(BT * sizeof(int));
    random_tokens(x, BT, m.cfg.vocab_size);
    unsigned char *m1 = ml_malloc((size_t)BT * E), *m2 = ml_malloc((size_t)BT * E);
    model_forward(&m, x, NULL, B, T, ROUTE_EVAL);
    mask_of(&m, 1, m1, BT);
    model_forward(&l, x, NULL, B, T, ROUTE_EVAL);
    mask_of(&l, 1, m2, BT);
    CHECK(memcmp(m1, m2, (size_t)BT * E) == 0, "the loaded model routes differently");
    free(x), free(m1), free(m2);
    adamw_free(&opt);
    model_free(&m);
    model_free(&l);
}

/* load_inputs: sigma, or cooc/usage/count; missing and mis-shaped tensors named. */
static void test_load_inputs(void) {
    Model m;
    TrainConfig tc;
    CHECK(make_model(&m, &tc, "ridge=0") == 0, "model: %s", ml_last_error());
    RouterLayer *r = &m.routers[0];
    int E = r->E;
    double *sg = ml_calloc((size_t)E * E, sizeof(double)), u[8] = {0}, one = 1;
    for (int i = 0; i < E; i++) sg[i * E + i] = 0.1 * (i + 1);
    RouterTensor in[3] = {{"sigma", 2, {E, E}, sg}};
    CHECK(r->spec->load_inputs(r, in, 1) == 0, "sigma refused: %s", ml_last_error());
    CHECK(r->state[MPMOE_SIGMA(E) + 3 * E + 3] == sg[3 * E + 3], "sigma not installed");
    in[0] = (RouterTensor){"sigma", 2, {E, E - 1}, sg};
    CHECK(r->spec->load_inputs(r, in, 1) != 0 && strstr(ml_last_error(), "'sigma'"), "bad sigma shape: %s", ml_last_error());
    in[0] = (RouterTensor){"cooc", 2, {E, E}, sg};
    in[1] = (RouterTensor){"usage", 1, {E}, u};
    CHECK(r->spec->load_inputs(r, in, 2) != 0 && strstr(ml_last_error(), "'count'"), "missing count: %s", ml_last_error());
    in[2] = (RouterTensor){"count", 1, {2}, &one};
    CHECK(r->spec->load_inputs(r, in, 3) != 0 && strstr(ml_last_error(), "'count'"), "bad count: %s", ml_last_error());
    in[2] = (RouterTensor){"count", 1, {1}, &one};
    CHECK(r->spec->load_inputs(r, in, 3) == 0, "cooc/usage/count refused: %s", ml_last_error());
    CHECK(r->spec->load_inputs(r, in, 0) != 0, "no inputs accepted");
    free(sg);
    model_free(&m);
}

int main(void) {
    rng_seed(&g_rng, 2026);
    if (tl_mktmp("mpmoe")) return 1;
    RUN(test_greedy_bruteforce);
    RUN(test_identity_is_topk);
    RUN(test_float_double);
    RUN(test_state_and_eval);
    RUN(test_pending_sums);
    RUN(test_decay);
    RUN(test_warmup);
    RUN(test_determinism);
    RUN(test_checkpoint_roundtrip);
    RUN(test_load_inputs);
    tl_rm_rf(tl_tmp_dir);
    TEST_MAIN_END();
}
