/* Routing metrics (src/metrics) on hand-made routings with known answers, then on a
 * real model: the load matches the MoE layer's dispatch counts, identical experts
 * give expert_sim 1, and the JSON the trainer and analyze write parses. */
#include "core/util.h"
#include "metrics/metrics.h"
#include "testlib.h"
#include <cjson/cJSON.h>
#include <string.h>

#define NEAR(a, b, tol) (fabs((double)(a) - (double)(b)) <= (tol))

/* A hand-made routing: token t selects sel[t][0..n[t]-1]. */
typedef struct {
    int T, E, k;
    int start[65], expert[65 * 8];
    float probs[64 * 8];
} Toy;

static void toy_init(Toy *r, int E, int k) {
    memset(r, 0, sizeof *r);
    r->E = E;
    r->k = k;
}

/* Appends a token with n experts (listed) and uniform router probabilities. */
static void toy_token(Toy *r, int n, const int *experts) {
    int t = r->T++, a = r->start[t];
    for (int i = 0; i < n; i++) r->expert[a + i] = experts[i];
    r->start[t + 1] = a + n;
    for (int e = 0; e < r->E; e++) r->probs[t * r->E + e] = 1.0f / r->E;
}

static void toy1(Toy *r, int e) { toy_token(r, 1, &e); }
static void toy2(Toy *r, int e0, int e1) { toy_token(r, 2, (int[]){e0, e1}); }

/* One layer of E experts over the toy routing; domains may be NULL. */
static LayerMetrics measure(const Toy *r, const int32_t *domains, int n_domains, const float *probs) {
    ModelConfig c = {0};
    c.n_layers = 1, c.n_experts = r->E, c.top_k = r->k;
    Metrics mt;
    metrics_init(&mt, &c, n_domains, METRICS_FULL);
    metrics_add_layer(&mt.st[0], 1, r->k, r->T, r->start, NULL, r->expert, probs, domains);
    metrics_finish(&mt);
    LayerMetrics m = mt.m[0];
    metrics_free(&mt);
    return m;
}

static void test_balanced(void) {
    Toy r;
    toy_init(&r, 4, 1);
    for (int t = 0; t < 8; t++) toy1(&r, t % 4);
    LayerMetrics m = measure(&r, NULL, 0, r.probs);
    CHECK(NEAR(m.load_cv, 0, 1e-12), "load_cv %g", m.load_cv);
    CHECK(NEAR(m.maxvio, 0, 1e-12), "maxvio %g", m.maxvio);
    CHECK(NEAR(m.dead_frac, 0, 1e-12), "dead_frac %g", m.dead_frac);
    CHECK(NEAR(m.usage_entropy, 1, 1e-12), "usage_entropy %g", m.usage_entropy);
    CHECK(NEAR(m.route_entropy, 1, 1e-6), "route_entropy of uniform probs %g", m.route_entropy);
    CHECK(NEAR(m.drop_frac, 0, 1e-12) && NEAR(m.zero_expert_frac, 0, 1e-12), "drop %g zero %g", m.drop_frac, m.zero_expert_frac);
    CHECK(NEAR(m.experts_per_token, 1, 1e-12), "experts_per_token %g", m.experts_per_token);
    CHECK(isnan(m.overlap), "top-1 has no co-selected pairs: overlap must be undefined, got %g", m.overlap);
}

static void test_collapsed(void) {
    Toy r;
    toy_init(&r, 4, 1);
    for (int t = 0; t < 8; t++) toy1(&r, 0);
    float onehot[8 * 4] = {0};
    for (int t = 0; t < 8; t++) onehot[t * 4] = 1.0f;
    LayerMetrics m = measure(&r, NULL, 0, onehot);
    CHECK(NEAR(m.load_cv, sqrt(3.0), 1e-12), "load_cv %g, want sqrt(E-1)", m.load_cv);
    CHECK(NEAR(m.maxvio, 3, 1e-12), "maxvio %g, want E-1", m.maxvio);
    CHECK(NEAR(m.dead_frac, 0.75, 1e-12), "dead_frac %g", m.dead_frac);
    CHECK(NEAR(m.usage_entropy, 0, 1e-12), "usage_entropy %g", m.usage_entropy);
    CHECK(NEAR(m.route_entropy, 0, 1e-12), "route_entropy of one-hot probs %g", m.route_entropy);
}

static void test_one_dead(void) {
    Toy r;
    toy_init(&r, 4, 1);
    for (int t = 0; t < 6; t++) toy1(&r, t % 3);
    LayerMetrics m = measure(&r, NULL, 0, NULL);
    CHECK(NEAR(m.dead_frac, 0.25, 1e-12), "dead_frac %g", m.dead_frac);
    CHECK(NEAR(m.maxvio, 1.0 / 3.0, 1e-12), "maxvio %g", m.maxvio);
    CHECK(NEAR(m.load_cv, sqrt(0.75) / 1.5, 1e-12), "load_cv %g", m.load_cv);
    CHECK(NEAR(m.usage_entropy, log(3.0) / log(4.0), 1e-12), "usage_entropy %g", m.usage_entropy);
    CHECK(isnan(m.route_entropy), "no probabilities: route_entropy must be undefined, got %g", m.route_entropy);
}

static void test_domain_pure(void) {
    Toy r;
    toy_init(&r, 4, 2);
    int32_t dom[8];
    for (int t = 0; t < 8; t++) { /* 3 tokens of domain 0 on {0,1}, 5 of domain 1 on {2,3} or {3,2} */
        dom[t] = t < 3 ? 0 : 1;
        if (t < 3) toy2(&r, 0, 1);
        else if (t % 2) toy2(&r, 2, 3);
        else toy2(&r, 3, 2);
    }
    LayerMetrics m = measure(&r, dom, 2, NULL);
    CHECK(NEAR(m.domain_mi, 1, 1e-12), "domain-pure routing: domain_mi %g, want 1", m.domain_mi);
}

static void test_domain_independent(void) {
    Toy r;
    toy_init(&r, 4, 2);
    int32_t dom[12];
    const int pairs[3][2] = {{0, 1}, {2, 3}, {0, 2}};
    for (int t = 0; t < 12; t++) { /* both domains use the same mixture of expert sets */
        dom[t] = t % 2;
        toy2(&r, pairs[(t / 2) % 3][0], pairs[(t / 2) % 3][1]);
    }
    LayerMetrics m = measure(&r, dom, 2, NULL);
    CHECK(NEAR(m.domain_mi, 0, 1e-12), "domain-independent routing: domain_mi %g, want 0", m.domain_mi);
    /* One domain: the domain entropy is 0, so the normalised MI is undefined. */
    for (int t = 0; t < 12; t++) dom[t] = 1;
    m = measure(&r, dom, 2, NULL);
    CHECK(isnan(m.domain_mi), "one domain: domain_mi %g, want undefined", m.domain_mi);
}

/* Padding tokens (domain -1) are not counted at all. */
static void test_domain_mask(void) {
    Toy r;
    toy_init(&r, 2, 1);
    int32_t dom[4] = {0, -1, 0, -1};
    for (int t = 0; t < 4; t++) toy1(&r, t % 2 ? 1 : 0);
    LayerMetrics m = measure(&r, dom, 1, NULL);
    CHECK(NEAR(m.dead_frac, 0.5, 1e-12), "padding counted: dead_frac %g", m.dead_frac);
}

static void test_cooc_overlap(void) {
    ModelConfig c = {0};
    c.n_layers = 1, c.n_experts = 3, c.top_k = 2;
    Toy r;
    toy_init(&r, 3, 2);
    toy2(&r, 0, 1), toy2(&r, 1, 0), toy2(&r, 0, 2), toy2(&r, 2, 1);
    Metrics mt;
    metrics_init(&mt, &c, 0, METRICS_FULL);
    metrics_add_layer(&mt.st[0], 1, 2, r.T, r.start, NULL, r.expert, NULL, NULL);
    metrics_finish(&mt);
    const double *cc = mt.st[0].cooc;
    CHECK(cc[0 * 3 + 1] == 2 && cc[1 * 3 + 0] == 2 && cc[0 * 3 + 2] == 1 && cc[1 * 3 + 2] == 1, "off-diagonal cooc counts");
    CHECK(cc[0] == 3 && cc[4] == 3 && cc[8] == 2, "diagonal counts tokens per expert: %g %g %g", cc[0], cc[4], cc[8]);
    /* q = (3/4, 3/4, 1/2); kappa = 2 / 2.625; overlap = 49/48 (docs/metrics.md). */
    CHECK(NEAR(mt.m[0].overlap, 49.0 / 48.0, 1e-12), "overlap %g, want 49/48", mt.m[0].overlap);
    metrics_free(&mt);

    /* Experts always in fixed pairs {0,1} / {2,3}: three times the independent rate. */
    toy_init(&r, 4, 2);
    for (int t = 0; t < 6; t++) t % 2 ? toy2(&r, 0, 1) : toy2(&r, 2, 3);
    CHECK(NEAR(measure(&r, NULL, 0, NULL).overlap, 3, 1e-12), "fixed pairs: overlap %g, want 3", measure(&r, NULL, 0, NULL).overlap);
    /* Every pair of 4 experts equally often: independent, overlap 1. */
    toy_init(&r, 4, 2);
    for (int i = 0; i < 4; i++)
        for (int j = i + 1; j < 4; j++) toy2(&r, i, j);
    CHECK(NEAR(measure(&r, NULL, 0, NULL).overlap, 1, 1e-12), "all pairs: overlap %g, want 1", measure(&r, NULL, 0, NULL).overlap);
}

/* Variable experts per token: 0, 1, 2 and 3 experts with k = 2. */
static void test_drop(void) {
    Toy r;
    toy_init(&r, 4, 2);
    toy_token(&r, 0, NULL);
    toy1(&r, 1);
    toy2(&r, 0, 1);
    toy_token(&r, 3, (int[]){0, 2, 3});
    ModelConfig c = {0};
    c.n_layers = 1, c.n_experts = 4, c.top_k = 2;
    Metrics mt;
    metrics_init(&mt, &c, 0, METRICS_CHEAP);
    metrics_add_layer(&mt.st[0], 0, 2, r.T, r.start, NULL, r.expert, NULL, NULL);
    metrics_finish(&mt);
    LayerMetrics m = mt.m[0];
    CHECK(NEAR(m.drop_frac, 3.0 / 8.0, 1e-12), "drop_frac %g, want 3/8", m.drop_frac);
    CHECK(NEAR(m.zero_expert_frac, 0.25, 1e-12), "zero_expert_frac %g", m.zero_expert_frac);
    CHECK(NEAR(m.experts_per_token, 1.5, 1e-12), "experts_per_token %g", m.experts_per_token);
    const long *h = mt.st[0].ept;
    CHECK(h[0] == 1 && h[1] == 1 && h[2] == 1 && h[3] == 1 && h[4] == 0, "histogram %ld %ld %ld %ld %ld", h[0], h[1], h[2], h[3], h[4]);
    CHECK(mt.st[0].cooc == NULL && isnan(m.overlap) && isnan(m.domain_mi), "a cheap accumulator keeps no expensive sums");
    metrics_free(&mt);
}

static void test_single_expert(void) {
    Toy r;
    toy_init(&r, 1, 1);
    for (int t = 0; t < 5; t++) toy1(&r, 0);
    float ones[5] = {1, 1, 1, 1, 1};
    LayerMetrics m = measure(&r, NULL, 0, ones);
    CHECK(NEAR(m.route_entropy, 0, 1e-12), "E=1 route_entropy %g, want 0", m.route_entropy);
    CHECK(NEAR(m.usage_entropy, 1, 1e-12), "E=1 usage_entropy %g, want 1", m.usage_entropy);
    CHECK(NEAR(m.load_cv, 0, 1e-12) && NEAR(m.maxvio, 0, 1e-12) && NEAR(m.dead_frac, 0, 1e-12), "E=1 balance");
    CHECK(isnan(m.overlap) && isnan(m.expert_sim), "E=1 overlap/expert_sim undefined");
    /* No tokens at all: everything undefined, nothing divides by zero. */
    toy_init(&r, 4, 2);
    m = measure(&r, NULL, 0, NULL);
    CHECK(isnan(m.load_cv) && isnan(m.dead_frac) && isnan(m.usage_entropy) && isnan(m.drop_frac), "empty: undefined");
}

static void test_expert_sim(void) {
    ModelConfig c = {0};
    c.n_layers = 1, c.n_experts = 3, c.top_k = 1;
    Metrics mt;
    metrics_init(&mt, &c, 0, METRICS_FULL);
    enum { N = 2, D = 4 };
    float y[3 * N * D];
    for (int e = 0; e < 3; e++) /* identical outputs (each token its own direction) */
        for (int t = 0; t < N; t++)
            for (int j = 0; j < D; j++) y[(e * N + t) * D + j] = (float)(t + 1) * (j == t ? 2.0f : 0.5f);
    metrics_add_sim(&mt.st[0], y, N, D);
    metrics_finish(&mt);
    CHECK(NEAR(mt.m[0].expert_sim, 1, 1e-12), "identical outputs: expert_sim %g", mt.m[0].expert_sim);
    metrics_reset(&mt);
    memset(y, 0, sizeof y);
    for (int e = 0; e < 3; e++) /* expert e writes axis e: pairwise orthogonal */
        for (int t = 0; t < N; t++) y[(e * N + t) * D + e] = 1.0f + t;
    metrics_add_sim(&mt.st[0], y, N, D);
    metrics_finish(&mt);
    CHECK(NEAR(mt.m[0].expert_sim, 0, 1e-12), "orthogonal outputs: expert_sim %g", mt.m[0].expert_sim);
    CHECK(mt.st[0].sim_n == N * 3, "pairs counted %ld, want %d", mt.st[0].sim_n, N * 3);
    metrics_free(&mt);
}

/* A small real model: B=2, T=8, 2 layers (first dense), 4 experts, top-2. */
/* Chosen sets against the top-n_t by p, with known answers, boundary ties included. */
static void test_selection(void) {
    Toy r;
    toy_init(&r, 4, 2);
    static const float P[6][4] = {{.4f, .3f, .2f, .1f}, {.4f, .3f, .2f, .1f}, {.1f, .2f, .3f, .4f},
                                  {.25f, .25f, .25f, .25f}, {.4f, .3f, .2f, .1f}, {.4f, .3f, .2f, .1f}};
    toy2(&r, 1, 0); /* the top 2: same set */
    toy2(&r, 0, 3); /* 3 is outside: mass .5 of the top-2's .7 */
    toy2(&r, 0, 1); /* both outside */
    toy2(&r, 2, 3); /* all tied: nothing is strictly above, so no difference */
    toy1(&r, 1);    /* n_t = 1: compared with the top 1 */
    toy_token(&r, 0, NULL); /* no experts: not counted */
    memcpy(r.probs, P, sizeof P);
    LayerMetrics m = measure(&r, NULL, 0, r.probs);
    CHECK(NEAR(m.sel_differ, 3.0 / 5, 1e-12), "sel_differ %g, want 3/5", m.sel_differ);
    CHECK(NEAR(m.sel_outside, 4.0 / 9, 1e-12), "sel_outside %g, want 4/9", m.sel_outside);
    CHECK(NEAR(m.sel_mass_abs, 2.3 / 5, 1e-6), "sel_mass_abs %g, want 0.46", m.sel_mass_abs);
    double rel = (1 + .5 / .7 + .3 / .7 + 1 + .75) / 5;
    CHECK(NEAR(m.sel_mass, rel, 1e-6), "sel_mass %g, want %g", m.sel_mass, rel);
    m = measure(&r, NULL, 0, NULL);
    CHECK(isnan(m.sel_differ) && isnan(m.sel_mass) && isnan(m.sel_outside), "no probabilities: undefined");
}

static int make_model(Model *m, int dense_layers) {
    TrainConfig tc;
    config_defaults(&tc);
    ModelConfig mc = tc.model;
    mc.n_layers = 3, mc.d_model = 16, mc.n_heads = 2, mc.seq_len = 8, mc.vocab_size = 13, mc.n_experts = 4;
    mc.top_k = 2, mc.d_expert = 8, mc.dense_layers = dense_layers;
    if (model_create(m, &mc)) return -1;
    model_init_weights(m, 3);
    return 0;
}

static void test_model_counts(void) {
    Model m;
    CHECK(make_model(&m, 1) == 0, "model_create: %s", ml_last_error());
    int inp[16];
    for (int i = 0; i < 16; i++) inp[i] = (i * 5) % 13;
    Metrics mt;
    metrics_init(&mt, &m.cfg, 0, METRICS_CHEAP);
    CHECK(mt.n_moe == 2 && mt.st[0].layer == 1 && mt.st[1].layer == 2, "MoE layers %d", mt.n_moe);
    model_forward(&m, inp, NULL, 2, 8, ROUTE_EVAL);
    metrics_add(&mt, &m, NULL);
    model_forward(&m, inp, NULL, 2, 8, ROUTE_EVAL);
    metrics_add(&mt, &m, NULL);
    metrics_finish(&mt);
    for (int i = 0; i < mt.n_moe; i++) {
        const MoEActs *a = &m.acts.moe[mt.st[i].layer];
        for (int e = 0; e < 4; e++)
            CHECK(mt.st[i].load[e] == 2.0 * a->counts[e], "layer %d expert %d: load %g, dispatch counts %d (x2 batches)",
                  mt.st[i].layer, e, mt.st[i].load[e], a->counts[e]);
        CHECK(mt.st[i].tokens == 32 && mt.m[i].experts_per_token == 2.0, "tokens %ld", mt.st[i].tokens);
        CHECK(mt.m[i].route_entropy > 0.5 && mt.m[i].route_entropy <= 1.0 + 1e-6, "route_entropy %g", mt.m[i].route_entropy);
    }
    CHECK(NEAR(mt.mean.load_cv, (mt.m[0].load_cv + mt.m[1].load_cv) / 2, 1e-12), "mean over layers");
    metrics_free(&mt);
    model_free(&m);
}

/* topk picks its own top-k: no difference, all of the top-k mass, which is the sum of
 * the k largest probabilities. */
static void test_selection_topk(void) {
    Model m;
    CHECK(make_model(&m, 1) == 0, "model_create: %s", ml_last_error());
    int inp[16];
    for (int i = 0; i < 16; i++) inp[i] = (i * 5) % 13;
    Metrics mt;
    metrics_init(&mt, &m.cfg, 0, METRICS_FULL);
    model_forward(&m, inp, NULL, 2, 8, ROUTE_TRAIN);
    metrics_add(&mt, &m, NULL);
    metrics_finish(&mt);
    for (int i = 0; i < mt.n_moe; i++) {
        const float *p = m.routers[mt.st[i].layer].probs;
        double want = 0.0;
        for (int t = 0; t < 16; t++) {
            float a = -1, b = -1; /* the two largest of 4 */
            for (int e = 0; e < 4; e++) {
                float x = p[t * 4 + e];
                if (x > a) b = a, a = x;
                else if (x > b) b = x;
            }
            want += (double)a + b;
        }
        want /= 16;
        CHECK(mt.m[i].sel_differ == 0 && mt.m[i].sel_outside == 0, "layer %d: differ %g outside %g", i, mt.m[i].sel_differ,
              mt.m[i].sel_outside);
        CHECK(NEAR(mt.m[i].sel_mass, 1, 1e-6), "layer %d: sel_mass %g", i, mt.m[i].sel_mass);
        CHECK(NEAR(mt.m[i].sel_mass_abs, want, 1e-6) && want > 0.5, "layer %d: sel_mass_abs %g, top-2 mass %g", i,
              mt.m[i].sel_mass_abs, want);
    }
    metrics_free(&mt);
    model_free(&m);
}

static void test_model_identical_experts(void) {
    Model m;
    CHECK(make_model(&m, 0) == 0, "model_create: %s", ml_last_error());
    const ModelConfig *c = &m.cfg;
    size_t gu = (size_t)2 * c->d_expert * c->d_model, dn = (size_t)c->d_model * c->d_expert;
    for (int l = 0; l < c->n_layers; l++)
        for (int e = 1; e < c->n_experts; e++) {
            memcpy(m.p.blocks[l].exp_gate_up + e * gu, m.p.blocks[l].exp_gate_up, gu * sizeof(float));
            memcpy(m.p.blocks[l].exp_down + e * dn, m.p.blocks[l].exp_down, dn * sizeof(float));
        }
    int inp[16];
    int32_t dom[16];
    for (int i = 0; i < 16; i++) inp[i] = (i * 7) % 13, dom[i] = i < 12 ? i % 2 : -1;
    Metrics mt;
    metrics_init(&mt, c, 2, METRICS_FULL);
    mt.probe_tokens = 5;
    model_forward(&m, inp, NULL, 2, 8, ROUTE_EVAL);
    metrics_add(&mt, &m, dom);
    metrics_probe(&mt, &m, dom);
    metrics_probe_flush(&mt, &m);
    metrics_finish(&mt);
    for (int i = 0; i < mt.n_moe; i++) {
        CHECK(NEAR(mt.m[i].expert_sim, 1, 1e-5), "layer %d identical experts: expert_sim %g", i, mt.m[i].expert_sim);
        CHECK(mt.st[i].sim_n == 5 * 6, "probe pairs %ld, want 5 tokens x 6 pairs", mt.st[i].sim_n);
        CHECK(mt.st[i].tokens == 12 && mt.st[i].dom_tok[0] == 6 && mt.st[i].dom_tok[1] == 6, "masked tokens");
    }
    /* Across batches: 25 x 12 probe rows, one full buffered run of METRICS_PROBE_RUN and the rest on flush. */
    metrics_reset(&mt);
    mt.probe_tokens = 100;
    for (int b = 0; b < 25; b++) metrics_probe(&mt, &m, dom);
    CHECK(mt.probe_n == 25 * 12 - METRICS_PROBE_RUN, "buffered rows %d", mt.probe_n);
    metrics_probe_flush(&mt, &m);
    metrics_finish(&mt);
    CHECK(mt.st[0].sim_n == 25 * 12 * 6 && NEAR(mt.mean.expert_sim, 1, 1e-5), "buffered probe: %ld pairs, expert_sim %g",
          mt.st[0].sim_n, mt.mean.expert_sim);
    /* Different (random) experts are far from identical. */
    model_init_weights(&m, 9);
    metrics_reset(&mt);
    model_forward(&m, inp, NULL, 2, 8, ROUTE_EVAL);
    metrics_probe(&mt, &m, dom);
    metrics_probe_flush(&mt, &m);
    metrics_finish(&mt);
    CHECK(fabs(mt.mean.expert_sim) < 0.5, "random experts: expert_sim %g", mt.mean.expert_sim);
    metrics_free(&mt);
    model_free(&m);
}

/* metrics_collect over an in-memory two-domain shard whose last batch is half padding. */
static void test_collect(void) {
    Model m;
    CHECK(make_model(&m, 1) == 0, "model_create: %s", ml_last_error());
    uint32_t toks[90];
    int64_t starts[2] = {0, 40};
    int32_t doms[2] = {0, 1};
    char names[2][SHARD_NAME_LEN] = {"a", "b"};
    for (int i = 0; i < 90; i++) toks[i] = (uint32_t)((i * 5 + i / 7) % 13);
    Shard s = {.vocab_size = 13, .n_domains = 2, .domains = names, .n_tokens = 90, .n_docs = 2,
               .doc_start = starts, .doc_domain = doms, .tokens = toks};
    long nb = (long)loader_eval_batches(&s, 2, 8), want = 0, want_b = 0;
    int32_t in[16], tg[16], dm[16];
    for (long b = 0; b < nb; b++) {
        loader_eval_batch(&s, 2, 8, b, in, tg, dm);
        for (int i = 0; i < 16; i++) want += dm[i] >= 0, want_b += dm[i] == 1;
    }
    CHECK(nb * 16 > want, "the shard should end in a partly filled batch (%ld batches, %ld tokens)", nb, want);
    Metrics mt;
    metrics_init(&mt, &m.cfg, 2, METRICS_FULL);
    CHECK(metrics_collect(&mt, &m, &s, 2, 8, 0, ROUTE_EVAL) == 0, "collect: %s", ml_last_error());
    for (int i = 0; i < mt.n_moe; i++) {
        CHECK(mt.st[i].tokens == want, "layer %d counted %ld tokens, want %ld (padding excluded)", i, mt.st[i].tokens, want);
        CHECK(mt.st[i].dom_tok[1] == want_b, "domain b tokens %g, want %ld", mt.st[i].dom_tok[1], want_b);
        CHECK(mt.st[i].sim_n > 0 && isfinite(mt.m[i].domain_mi) && isfinite(mt.m[i].overlap), "expensive metrics defined");
    }
    CHECK(mt.batches == nb && mt.probe_n == 0 && mt.seconds > 0, "batches %ld of %ld, probe rows left %d", mt.batches, nb, mt.probe_n);
    CHECK(metrics_collect(&mt, &m, &s, 2, 8, 2, ROUTE_EVAL) == 0 && mt.batches == 2 && mt.st[0].tokens == 32, "--batches 2");
    Shard tiny = s;
    tiny.n_tokens = 1;
    CHECK(metrics_collect(&mt, &m, &tiny, 2, 8, 0, ROUTE_EVAL) == -1, "a split of one token must fail");
    metrics_free(&mt);
    model_free(&m);
}

/* Writes with fn into memory and parses it as one JSON object. */
static cJSON *json_of(void (*fn)(FILE *, const Metrics *), const Metrics *mt) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    fputs("{\"step\":1", f);
    fn(f, mt);
    fputs("}", f);
    fclose(f);
    cJSON *j = cJSON_Parse(buf);
    if (!j) printf("  unparsable: %.300s\n", buf);
    free(buf);
    return j;
}

static void full_json(FILE *f, const Metrics *mt) {
    static const char names[2][SHARD_NAME_LEN] = {"web \"quoted\"", "code"};
    metrics_json_full(f, mt, names);
}

static void test_json(void) {
    Model m;
    CHECK(make_model(&m, 1) == 0, "model_create: %s", ml_last_error());
    int inp[16];
    int32_t dom[16];
    for (int i = 0; i < 16; i++) inp[i] = (i * 3) % 13, dom[i] = i % 2;
    Metrics mt;
    metrics_init(&mt, &m.cfg, 2, METRICS_FULL);
    model_forward(&m, inp, NULL, 2, 8, ROUTE_EVAL);
    metrics_add(&mt, &m, dom);
    metrics_probe(&mt, &m, dom);
    metrics_probe_flush(&mt, &m);
    metrics_finish(&mt);
    cJSON *j = json_of(metrics_json_step, &mt);
    CHECK(j != NULL, "step fields do not parse");
    const char *cheap[] = {"load_cv", "maxvio", "dead_frac", "route_entropy", "usage_entropy", "drop_frac"};
    for (size_t i = 0; j && i < sizeof cheap / sizeof cheap[0]; i++) {
        CHECK(cJSON_IsNumber(cJSON_GetObjectItem(j, cheap[i])), "step line lacks %s", cheap[i]);
        cJSON *l1 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "layers"), 1);
        CHECK(cJSON_IsNumber(cJSON_GetObjectItem(l1, cheap[i])), "step layer lacks %s", cheap[i]);
        CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(l1, "load")) == 4, "layer load array");
    }
    cJSON_Delete(j);
    j = json_of(metrics_json_eval, &mt);
    CHECK(j && cJSON_IsNumber(cJSON_GetObjectItem(j, "overlap")) && cJSON_IsNumber(cJSON_GetObjectItem(j, "expert_sim")) &&
              cJSON_IsNumber(cJSON_GetObjectItem(j, "domain_mi")),
          "eval line lacks overlap/expert_sim/domain_mi");
    CHECK(j && cJSON_GetArraySize(cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "layers"), 0), "cooc"), 2)) == 4,
          "eval layer cooc is 4x4");
    cJSON_Delete(j);
    j = json_of(full_json, &mt);
    CHECK(j != NULL, "analyze fields do not parse");
    for (int i = 0; j && i < N_METRIC_FIELDS; i++)
        CHECK(cJSON_GetObjectItem(j, METRIC_FIELDS[i].name) != NULL, "analyze lacks %s", METRIC_FIELDS[i].name);
    cJSON *l0 = j ? cJSON_GetArrayItem(cJSON_GetObjectItem(j, "layers"), 0) : NULL;
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(l0, "experts_per_token_hist")) == 5, "histogram 0..E");
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(l0, "domain_load")) == 2, "domain x expert counts");
    CHECK(j && strcmp(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "domains"), 0)->valuestring, "web \"quoted\"") == 0, "escaped names");
    cJSON_Delete(j);
    /* Undefined values are null, never nan. */
    metrics_reset(&mt);
    j = json_of(metrics_json_step, &mt);
    CHECK(j && cJSON_IsNull(cJSON_GetObjectItem(j, "load_cv")), "empty accumulator: load_cv must be null");
    cJSON_Delete(j);
    metrics_free(&mt);
    model_free(&m);
}

int main(void) {
    RUN(test_balanced);
    RUN(test_collapsed);
    RUN(test_one_dead);
    RUN(test_domain_pure);
    RUN(test_domain_independent);
    RUN(test_domain_mask);
    RUN(test_cooc_overlap);
    RUN(test_drop);
    RUN(test_single_expert);
    RUN(test_expert_sim);
    RUN(test_selection);
    RUN(test_model_counts);
    RUN(test_selection_topk);
    RUN(test_model_identical_experts);
    RUN(test_collect);
    RUN(test_json);
    TEST_MAIN_END();
}
