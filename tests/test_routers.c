/* Conformance of every registered router (and option variants that reach other code
 * paths): gradients of every path against finite differences, determinism, a
 * per-token inference rule, pending statistics that add across processes, the router
 * state through a checkpoint, refusal of bad options; then the limiting cases that
 * must reduce to a known router, and the extras' formulas. */
#include "core/util.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "moe/moe.h"
#include "routers/extras.h"
#include "routers/shared.h"
#include "testlib.h"
#include <cjson/cJSON.h>
#include <string.h>

static Rng g_rng;

/* Option variants beyond the defaults, each reaching a different code path. */
static const struct {
    const char *router, *opts;
} VARIANTS[] = {
    {"topk", "cf=0.6"},
    {"topk", "cf=0.6,drop=position"},
    {"topk", "score=sigmoid"},
    {"topk", "force_balance=1"},
    {"topk", "bias_rate=0.01,var=1e-3"},
    {"orthvar", "var_kind=column,ortho_group=expert"},
    {"orthvar", "ortho_norm=raw"},
    {"orthvar", "calib=0.5"},
    {"auxfree", "score=softmax"},
    {"expert_choice", "cf=0.5,infer=threshold"},
    {"usmoe", "group=sequence,infer=topk"},
    {"usmoe", "budget=token,k=1"},
    {"usmoe", "k=1.5,rate=0.2"},
    {"etr", "cf_hi=0.5,cf_lo=0.5,floor=none"},
    {"mpmoe", "ortho=1e-3,var=1e-3,var_kind=column"},
    {"mpmoe", "bias_rate=0.01,var=1e-3"},
};

/* ---- one MoE layer under a router ---- */

typedef struct {
    ModelConfig cfg;
    BlockParams p, g;
    RouterLayer r;
    MoEActs acts;
    double *state;
    float *x, *out, *rw, *dy;
    int T, rows;
} Layer;

enum { E_ = 4, D_ = 8, F_ = 5, K_ = 2, SEQ_ = 4 };

static float *randn(size_t n, float std) {
    float *v = ml_malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) v[i] = std * rng_normal(&g_rng);
    return v;
}

static int layer_make(Layer *c, const char *router, const char *opts, int T) {
    memset(c, 0, sizeof *c);
    TrainConfig tc;
    config_defaults(&tc);
    c->cfg = tc.model;
    c->cfg.d_model = D_, c->cfg.n_experts = E_, c->cfg.top_k = K_, c->cfg.d_expert = F_, c->cfg.n_shared = 1;
    c->cfg.seq_len = SEQ_, c->cfg.vocab_size = 8, c->cfg.aux_coef = 0.3f, c->cfg.z_coef = 0.05f;
    snprintf(c->cfg.router, sizeof c->cfg.router, "%s", router);
    snprintf(c->cfg.router_opts, sizeof c->cfg.router_opts, "%s", opts);
    c->T = T;
    const RouterSpec *spec = router_find(router);
    if (!spec) return ml_fail("no router %s", router);
    c->rows = spec->param_rows(&c->cfg);
    c->r = (RouterLayer){.spec = spec, .cfg = &c->cfg, .E = E_, .k = K_, .D = D_, .mode = ROUTE_TRAIN, .total_steps = 10};
    c->r.state_len = spec->state_len(&c->cfg);
    c->state = ml_calloc(c->r.state_len + 1, sizeof(double));
    c->r.state = c->state;
    c->p.router = c->rows ? randn((size_t)c->rows * D_, 1) : NULL;
    c->p.exp_gate_up = randn((size_t)E_ * 2 * F_ * D_, 0.5f), c->p.exp_down = randn((size_t)E_ * D_ * F_, 0.5f);
    c->p.sh_gate_up = randn((size_t)2 * F_ * D_, 0.5f), c->p.sh_down = randn((size_t)D_ * F_, 0.5f);
    c->g.router = ml_calloc((size_t)(c->rows ? c->rows : 1) * D_, sizeof(float));
    c->g.exp_gate_up = ml_calloc((size_t)E_ * 2 * F_ * D_, sizeof(float));
    c->g.exp_down = ml_calloc((size_t)E_ * D_ * F_, sizeof(float));
    c->g.sh_gate_up = ml_calloc((size_t)2 * F_ * D_, sizeof(float)), c->g.sh_down = ml_calloc((size_t)D_ * F_, sizeof(float));
    c->x = randn((size_t)T * D_, 1), c->rw = randn((size_t)T * D_, 1), c->out = ml_malloc((size_t)T * D_ * sizeof(float));
    c->dy = ml_malloc((size_t)T * E_ * D_ * sizeof(float));
    return spec->init(&c->r);
}

static void layer_free(Layer *c) {
    if (c->r.priv || c->r.pending) c->r.spec->free(&c->r);
    moe_acts_free(&c->acts);
    float *bufs[] = {c->p.router, c->p.exp_gate_up, c->p.exp_down, c->p.sh_gate_up, c->p.sh_down, c->g.router,
                     c->g.exp_gate_up, c->g.exp_down, c->g.sh_gate_up, c->g.sh_down, c->x, c->rw, c->out, c->dy};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(c->state);
}

static uint64_t routing_hash(const Routing *rt) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < rt->n_pairs; i++) h = (h ^ (uint64_t)(rt->token[i] * 131 + rt->expert[i])) * 0x100000001B3ull;
    return h;
}

static uint64_t g_sig;

/* <out, rw> + every router loss times its coefficient; the orthogonality loss is
 * measured in backward_outputs, called here with scale 0 so it only reports. */
static double layer_loss(Layer *c) {
    moe_forward(&c->acts, &c->r, &c->p, &c->cfg, c->x, c->T, c->out);
    g_sig = routing_hash(&c->acts.rt);
    if (c->r.spec->backward_outputs) c->r.spec->backward_outputs(&c->r, &c->acts.rt, c->acts.y, c->acts.pos, c->dy, 0.0f);
    double s = 0.0;
    for (int i = 0; i < c->T * D_; i++) s += (double)c->out[i] * c->rw[i];
    for (int i = 0; i < c->r.n_losses; i++) s += (double)c->r.losses[i].coef * c->r.losses[i].value;
    return s;
}

/* One training step's worth of statistics folded into the state (calibrations, bias). */
static void layer_step(Layer *c) {
    layer_loss(c);
    c->r.step++;
    if (c->r.spec->after_step) c->r.spec->after_step(&c->r);
}

static void layer_backward(Layer *c, float *dx) {
    layer_loss(c);
    moe_backward(&c->acts, &c->r, &c->p, &c->g, &c->cfg, c->x, c->T, c->rw, dx, 1.0f);
}

static double layer_loss_fn(void *c) { return layer_loss(c); }

/* Central differences at up to `want` entries away from a change of routing. fp32 forwards
 * and h = 1e-2 leave ~1e-4 of absolute error in fd (seen on unit-norm orthogonality terms),
 * so small entries are compared against a floor of 5e-3. */
static double fd_check(const char *name, Layer *c, float *x, const float *grad, size_t n, int want) {
    int skipped;
    return tl_fd_check(name, x, grad, n, layer_loss_fn, c, &g_sig, &g_rng, want, 1e-2f, 5e-3, &skipped);
}

static void check_gradients(const char *router, const char *opts) {
    Layer c;
    if (layer_make(&c, router, opts, 8)) { CHECK(0, "%s %s: %s", router, opts, ml_last_error()); layer_free(&c); return; }
    /* Larger expert outputs, then one step so calibrated multipliers and biases are live. */
    layer_step(&c);
    float *dx = ml_calloc((size_t)c.T * D_, sizeof(float));
    layer_backward(&c, dx);
    uint64_t s0 = g_sig;
    layer_loss(&c);
    CHECK(g_sig == s0, "%s %s: routing changed between two identical forwards", router, opts);
    /* random draws its experts from a hash of x itself: any change of x reroutes, so its
     * (expert-only) input gradient is covered by the expert weight checks below. */
    double w = strcmp(router, "random") ? fd_check("dx", &c, c.x, dx, (size_t)c.T * D_, 40) : 0.0;
    if (c.rows) w = fmax(w, fd_check("router", &c, c.p.router, c.g.router, (size_t)c.rows * D_, 24));
    w = fmax(w, fd_check("gate_up", &c, c.p.exp_gate_up, c.g.exp_gate_up, (size_t)E_ * 2 * F_ * D_, 30));
    w = fmax(w, fd_check("down", &c, c.p.exp_down, c.g.exp_down, (size_t)E_ * D_ * F_, 30));
    printf("  %-14s %-36s max rel err %.2e, losses:", router, opts[0] ? opts : "(defaults)", w);
    for (int i = 0; i < c.r.n_losses; i++) printf(" %s=%.3g (x%.3g)", c.r.losses[i].name, c.r.losses[i].value, c.r.losses[i].coef);
    printf("\n");
    free(dx);
    layer_free(&c);
}

/* Same inputs, same routing, gates and gradients, bit for bit. */
static void check_determinism(const char *router, const char *opts) {
    Layer a, b;
    rng_seed(&g_rng, 5);
    int ra = layer_make(&a, router, opts, 8);
    rng_seed(&g_rng, 5);
    int rb = layer_make(&b, router, opts, 8);
    if (ra || rb) { CHECK(0, "%s: %s", router, ml_last_error()); layer_free(&a), layer_free(&b); return; }
    layer_step(&a), layer_step(&b);
    float *da = ml_calloc((size_t)8 * D_, sizeof(float)), *db = ml_calloc((size_t)8 * D_, sizeof(float));
    layer_backward(&a, da), layer_backward(&b, db);
    CHECK(a.acts.rt.n_pairs == b.acts.rt.n_pairs && routing_hash(&a.acts.rt) == routing_hash(&b.acts.rt) &&
          memcmp(a.acts.rt.gate, b.acts.rt.gate, a.acts.rt.n_pairs * sizeof(float)) == 0, "%s %s: routing differs", router, opts);
    CHECK(memcmp(da, db, (size_t)8 * D_ * sizeof(float)) == 0 &&
          memcmp(a.g.exp_down, b.g.exp_down, (size_t)E_ * D_ * F_ * sizeof(float)) == 0, "%s %s: gradients differ", router, opts);
    free(da), free(db);
    layer_free(&a), layer_free(&b);
}

/* ROUTE_INFER routes each token on its own: the first half of a batch is routed the
 * same with or without the second half. */
static void check_infer_per_token(const char *router, const char *opts) {
    Layer c;
    if (layer_make(&c, router, opts, 8)) { CHECK(0, "%s: %s", router, ml_last_error()); layer_free(&c); return; }
    layer_step(&c);
    c.r.mode = ROUTE_INFER;
    Routing full = {0}, half = {0};
    c.r.spec->forward(&c.r, c.x, c.p.router, 8, &full);
    c.r.spec->forward(&c.r, c.x, c.p.router, 4, &half);
    int n = 0;
    while (n < full.n_pairs && full.token[n] < 4) n++;
    CHECK(n == half.n_pairs && memcmp(full.expert, half.expert, n * sizeof(int)) == 0 &&
          memcmp(full.token, half.token, n * sizeof(int)) == 0, "%s %s: inference routing depends on later tokens", router, opts);
    routing_free(&full), routing_free(&half);
    layer_free(&c);
}

/* Two processes with one micro-batch each, pending summed, equal one process with both. */
static void check_pending_adds(const char *router, const char *opts) {
    Layer one, p1, p2;
    rng_seed(&g_rng, 9);
    int rc = layer_make(&one, router, opts, 8);
    rng_seed(&g_rng, 9);
    rc |= layer_make(&p1, router, opts, 8);
    rng_seed(&g_rng, 9);
    rc |= layer_make(&p2, router, opts, 8);
    if (rc) { CHECK(0, "%s: %s", router, ml_last_error()); goto out; }
    if (!one.r.pending_len) goto out;
    float *x2 = randn((size_t)8 * D_, 1), *x1 = one.x;
    layer_loss(&one), one.x = x2, layer_loss(&one), one.x = x1;
    layer_loss(&p1);
    float *own = p2.x;
    p2.x = x2, layer_loss(&p2), p2.x = own;
    for (int i = 0; i < p1.r.pending_len; i++) p1.r.pending[i] += p2.r.pending[i];
    one.r.step++, p1.r.step++;
    one.r.spec->after_step(&one.r), p1.r.spec->after_step(&p1.r);
    double d = 0.0;
    for (int i = 0; i < one.r.state_len; i++) d = fmax(d, fabs(one.state[i] - p1.state[i]));
    CHECK(d < 1e-12, "%s %s: state after summed pending differs by %g", router, opts, d);
    free(x2);
out:
    layer_free(&one), layer_free(&p1), layer_free(&p2);
}

/* Every out-of-range numeric option and unknown choice is refused, as is an unknown key. */
static void check_refusals(const RouterSpec *spec) {
    Layer c;
    char opts[96];
    for (const RouterOption *o = spec->options; o && o->name; o++) {
        for (int side = 0; side < 2; side++) {
            if (o->type == ROPT_ENUM) snprintf(opts, sizeof opts, "%s=nonesuch", o->name);
            else snprintf(opts, sizeof opts, "%s=%.17g", o->name, side ? o->lo - 1 : o->hi * 2 + 1);
            CHECK(layer_make(&c, spec->name, opts, 4) != 0, "%s accepted %s", spec->name, opts);
            layer_free(&c);
        }
    }
    CHECK(layer_make(&c, spec->name, "nonesuch=1", 4) != 0 && strstr(ml_last_error(), "nonesuch"),
          "%s accepted an unknown key", spec->name);
    layer_free(&c);
}

static void for_each_case(void (*fn)(const char *, const char *)) {
    for (const RouterSpec *const *r = router_all(); *r; r++) fn((*r)->name, "");
    for (size_t i = 0; i < sizeof VARIANTS / sizeof VARIANTS[0]; i++) fn(VARIANTS[i].router, VARIANTS[i].opts);
}

static void test_gradients(void) { for_each_case(check_gradients); }
static void test_determinism(void) { for_each_case(check_determinism); }
static void test_infer_per_token(void) { for_each_case(check_infer_per_token); }
static void test_pending_adds(void) { for_each_case(check_pending_adds); }

static void test_bad_options(void) {
    for (const RouterSpec *const *r = router_all(); *r; r++) check_refusals(*r);
    Layer c;
    CHECK(layer_make(&c, "usmoe", "k=5", 4) != 0, "usmoe took k above E");
    layer_free(&c);
    TrainConfig tc;
    config_defaults(&tc);
    tc.model.d_model = 12, tc.model.n_experts = 8, tc.model.n_heads = 2, tc.model.vocab_size = 16;
    snprintf(tc.model.router, sizeof tc.model.router, "etr");
    Model m;
    CHECK(model_create(&m, &tc.model) != 0 && strstr(ml_last_error(), "multiple"), "etr took d_model 12 with 8 experts");
}

/* ---- the router state through a checkpoint, for every stateful router ---- */

static void test_state_checkpoint(void) {
    char dir[256];
    for (const RouterSpec *const *rs = router_all(); *rs; rs++) {
        TrainConfig tc;
        config_defaults(&tc);
        ModelConfig *mc = &tc.model;
        mc->n_layers = 2, mc->d_model = 8, mc->n_heads = 2, mc->seq_len = 4, mc->vocab_size = 11, mc->n_experts = 4;
        mc->top_k = 2, mc->d_expert = 6, tc.batch = 2;
        snprintf(mc->router, sizeof mc->router, "%s", (*rs)->name);
        if (strcmp((*rs)->name, "topk") == 0) snprintf(mc->router_opts, sizeof mc->router_opts, "bias_rate=0.01,var=1e-3");
        Model m;
        if (model_create(&m, mc)) { CHECK(0, "%s: %s", (*rs)->name, ml_last_error()); continue; }
        model_init_weights(&m, 3);
        int inp[8], tgt[8];
        for (int i = 0; i < 8; i++) inp[i] = (int)rng_below(&g_rng, 11), tgt[i] = (int)rng_below(&g_rng, 11);
        for (int s = 0; s < 3; s++) {
            model_forward(&m, inp, tgt, 2, 4, ROUTE_TRAIN);
            model_backward(&m, inp, tgt, 1.0f);
            model_after_step(&m, s + 1, 10);
        }
        AdamW opt;
        adamw_init(&opt, m.table.total);
        TrainState st;
        memset(&st, 0, sizeof st);
        st.step = 3, st.loader.B = 2, st.loader.T = 4;
        snprintf(dir, sizeof dir, "%s/%s", tl_tmp_dir, (*rs)->name);
        CHECK(checkpoint_save(dir, &m, &tc, &opt, &st) == 0, "%s: save: %s", (*rs)->name, ml_last_error());
        Model b;
        TrainConfig tb;
        if (checkpoint_load_model(dir, &b, &tb) == 0) {
            CHECK(b.router_state_len == m.router_state_len, "%s: state length", (*rs)->name);
            int same = 1;
            for (int l = 0; l < 2; l++)
                for (int i = 0; i < m.routers[l].state_len; i++) same &= m.routers[l].state[i] == b.routers[l].state[i];
            CHECK(same, "%s: router state differs after reload", (*rs)->name);
            float l1 = model_forward(&m, inp, tgt, 2, 4, ROUTE_EVAL), l2 = model_forward(&b, inp, tgt, 2, 4, ROUTE_EVAL);
            CHECK(l1 == l2, "%s: reloaded model evaluates %.9g vs %.9g", (*rs)->name, l2, l1);
            model_free(&b);
        } else {
            CHECK(0, "%s: load: %s", (*rs)->name, ml_last_error());
        }
        adamw_free(&opt);
        model_free(&m);
    }
}

/* ---- limiting cases ---- */

/* Pairs in (token, expert) order: routers may list a token's experts in any order. */
static void sort_pairs(Routing *rt) {
    for (int i = 1; i < rt->n_pairs; i++)
        for (int j = i; j > 0; j--) {
            long a = (long)rt->token[j - 1] * 1000 + rt->expert[j - 1], b = (long)rt->token[j] * 1000 + rt->expert[j];
            if (a <= b) break;
            int t = rt->token[j], e = rt->expert[j];
            float g = rt->gate[j];
            rt->token[j] = rt->token[j - 1], rt->expert[j] = rt->expert[j - 1], rt->gate[j] = rt->gate[j - 1];
            rt->token[j - 1] = t, rt->expert[j - 1] = e, rt->gate[j - 1] = g;
        }
}

/* Routing of `router opts` and `ref ref_opts` on the same layer (same seed), compared. */
static void compare_routings(const char *router, const char *opts, const char *ref, const char *ref_opts, int renorm,
                             int gates_too, RouteMode mode) {
    Layer a, b;
    rng_seed(&g_rng, 21);
    int rc = layer_make(&a, router, opts, 8);
    rng_seed(&g_rng, 21);
    rc |= layer_make(&b, ref, ref_opts, 8);
    if (rc) { CHECK(0, "%s / %s: %s", router, ref, ml_last_error()); goto out; }
    a.cfg.renorm = b.cfg.renorm = renorm;
    a.r.mode = mode, b.r.mode = ROUTE_INFER;
    Routing ra = {0}, rb = {0};
    a.r.spec->forward(&a.r, a.x, a.p.router, 8, &ra);
    b.r.spec->forward(&b.r, b.x, b.p.router, 8, &rb);
    sort_pairs(&ra), sort_pairs(&rb);
    int same = ra.n_pairs == rb.n_pairs;
    for (int i = 0; same && i < ra.n_pairs; i++) {
        same &= ra.token[i] == rb.token[i] && ra.expert[i] == rb.expert[i];
        if (gates_too) same &= fabsf(ra.gate[i] - rb.gate[i]) <= 1e-6f;
    }
    CHECK(same, "%s %s does not reduce to %s %s", router, opts, ref, ref_opts);
    routing_free(&ra), routing_free(&rb);
out:
    layer_free(&a), layer_free(&b);
}

static void test_limiting_cases(void) {
    /* USMoE, rate 0 and a per-token budget: topk with unnormalised gates. */
    compare_routings("usmoe", "rate=0,budget=token", "topk", "", 0, 1, ROUTE_TRAIN);
    /* ETR with C >= T: pure token choice, the same as its own per-token rule. */
    compare_routings("etr", "cf_hi=64,cf_lo=64", "etr", "", 1, 1, ROUTE_TRAIN);
    /* auxfree with zero bias: topk's choice (sigmoid is monotone), and topk itself with softmax scores. */
    compare_routings("auxfree", "", "topk", "", 1, 0, ROUTE_TRAIN);
    compare_routings("auxfree", "score=softmax", "topk", "", 1, 1, ROUTE_TRAIN);
    compare_routings("auxfree", "score=softmax", "topk", "", 0, 1, ROUTE_TRAIN);
    /* orthvar selects and gates as topk; expert choice with C = T gives every token every expert. */
    compare_routings("orthvar", "", "topk", "", 1, 1, ROUTE_TRAIN);
    compare_routings("usmoe", "k=4", "usmoe", "budget=token,k=4", 0, 1, ROUTE_TRAIN);
    compare_routings("expert_choice", "cf=2", "usmoe", "rate=0,k=4,budget=token", 0, 1, ROUTE_TRAIN);
    /* Capacity at cf = E/k lets every pair through. */
    compare_routings("topk", "cf=2", "topk", "", 1, 1, ROUTE_TRAIN);
}

/* ---- capacity, bias, calibration ---- */

static void test_topk_capacity(void) {
    for (int drop = 0; drop < 2; drop++) {
        Layer c;
        if (layer_make(&c, "topk", drop ? "cf=0.5,drop=position" : "cf=0.5", 16)) { CHECK(0, "%s", ml_last_error()); layer_free(&c); continue; }
        Routing rt = {0}, all = {0};
        c.r.spec->forward(&c.r, c.x, c.p.router, 16, &rt);
        c.r.mode = ROUTE_INFER; /* dropless */
        c.r.spec->forward(&c.r, c.x, c.p.router, 16, &all);
        int load[E_] = {0}, cap = router_capacity(0.5, 16 * K_, E_);
        for (int i = 0; i < rt.n_pairs; i++) load[rt.expert[i]]++;
        for (int e = 0; e < E_; e++) CHECK(load[e] <= cap, "expert %d takes %d > capacity %d", e, load[e], cap);
        CHECK(all.n_pairs == 16 * K_ && rt.n_pairs < all.n_pairs, "pairs %d of %d", rt.n_pairs, all.n_pairs);
        /* A dropped pair of a full expert ranks below every kept one, by probability or position. */
        for (int i = 0; i < all.n_pairs; i++) {
            int kept = 0, e = all.expert[i];
            for (int j = 0; j < rt.n_pairs; j++) kept |= rt.token[j] == all.token[i] && rt.expert[j] == e;
            if (kept) continue;
            for (int j = 0; j < rt.n_pairs; j++)
                if (rt.expert[j] == e)
                    CHECK(drop ? rt.token[j] < all.token[i] : rt.gate[j] >= all.gate[i], "drop=%d kept a lower pair", drop);
        }
        routing_free(&rt), routing_free(&all);
        layer_free(&c);
    }
}

/* force_balance: a router that sends every token to expert 0 still gives each expert about
 * T k / E tokens, k distinct ones per token, drawn anew each training step. */
static void test_topk_force_balance(void) {
    enum { T = 512 };
    int load[2][E_] = {{0}};
    for (int forced = 0; forced < 2; forced++) {
        Layer c;
        if (layer_make(&c, "topk", forced ? "force_balance=1" : "", T)) {
            CHECK(0, "%s", ml_last_error());
            layer_free(&c);
            continue;
        }
        for (int j = 0; j < D_; j++) c.p.router[j] = 0.0f; /* row 0: expert 0's score */
        for (int t = 0; t < T; t++) c.x[(size_t)t * D_] = 1.0f;
        c.p.router[0] = 100.0f;
        Routing rt = {0}, next = {0};
        c.r.spec->forward(&c.r, c.x, c.p.router, T, &rt);
        for (int i = 0; i < rt.n_pairs; i++) load[forced][rt.expert[i]]++;
        for (int t = 0; t < T && forced; t++) {
            const int *e = rt.expert + (size_t)t * K_;
            CHECK(e[0] != e[1], "token %d takes expert %d twice", t, e[0]);
        }
        c.r.step++;
        c.r.spec->forward(&c.r, c.x, c.p.router, T, &next);
        CHECK(forced == (memcmp(rt.expert, next.expert, (size_t)T * K_ * sizeof(int)) != 0),
              "force_balance=%d: the next step's routing %s", forced, forced ? "repeats" : "changed");
        routing_free(&rt), routing_free(&next);
        layer_free(&c);
    }
    CHECK(load[0][0] == T, "without force_balance expert 0 takes %d of %d tokens", load[0][0], T);
    for (int e = 0; e < E_; e++)
        CHECK(abs(load[1][e] - T * K_ / E_) < T * K_ / E_ / 5, "force_balance: expert %d takes %d, mean %d", e,
              load[1][e], T * K_ / E_);
}

static void test_auxfree_bias(void) {
    Layer c;
    if (layer_make(&c, "auxfree", "bias_rate=0.25", 8)) { CHECK(0, "%s", ml_last_error()); layer_free(&c); return; }
    layer_loss(&c);
    int load[E_] = {0};
    for (int i = 0; i < c.acts.rt.n_pairs; i++) load[c.acts.rt.expert[i]]++;
    c.r.spec->after_step(&c.r);
    const double *bias = c.state + c.r.state_len - E_;
    for (int e = 0; e < E_; e++) {
        double want = load[e] < 8 * K_ / E_ ? 0.25 : load[e] > 8 * K_ / E_ ? -0.25 : 0.0;
        CHECK(bias[e] == want, "expert %d load %d bias %g, want %g", e, load[e], bias[e], want);
    }
    /* moelab route hands the bias in as a tensor; a large bias takes every token. */
    double b[E_] = {0, 0, 9, 0};
    RouterTensor in = {.name = "bias", .ndim = 1, .shape = {E_, 0}, .data = b}, bad = {.name = "bias", .ndim = 1, .shape = {3, 0}, .data = b};
    CHECK(c.r.spec->load_inputs(&c.r, &in, 1) == 0 && c.r.spec->load_inputs(&c.r, &bad, 1) != 0, "load_inputs");
    layer_loss(&c);
    int took = 0;
    for (int i = 0; i < c.acts.rt.n_pairs; i++) took += c.acts.rt.expert[i] == 2;
    CHECK(took == 8, "expert 2 took %d of 8 tokens under bias 9", took);
    layer_free(&c);
}

/* Calibrated once on the first step to powers of ten, then frozen. */
static void test_orthvar_calibration(void) {
    Layer c;
    if (layer_make(&c, "orthvar", "", 8)) { CHECK(0, "%s", ml_last_error()); layer_free(&c); return; }
    layer_step(&c);
    double w_var = c.state[0], w_ortho = c.state[1];
    CHECK(w_var > 0 && fabs(log10(w_var) - round(log10(w_var))) < 1e-9, "w_var %g", w_var);
    CHECK(w_ortho > 0 && fabs(log10(w_ortho) - round(log10(w_ortho))) < 1e-9, "w_ortho %g", w_ortho);
    for (int i = 0; i < 3; i++) c.x[i] *= 3.0f;
    layer_step(&c);
    CHECK(c.state[0] == w_var && c.state[1] == w_ortho, "multipliers changed after step 0");
    layer_loss(&c);
    double var = NAN, ortho = NAN;
    for (int i = 0; i < c.r.n_losses; i++) {
        if (!strcmp(c.r.losses[i].name, "var")) var = c.r.losses[i].value * c.r.losses[i].coef;
        if (!strcmp(c.r.losses[i].name, "ortho")) ortho = c.r.losses[i].value * c.r.losses[i].coef;
    }
    CHECK(var < 0 && ortho > 0, "scaled var %g, ortho %g", var, ortho);
    layer_free(&c);
    /* calib=0.5 of 10 steps: nothing measured or applied before step 5, then calibrated. */
    if (layer_make(&c, "orthvar", "calib=0.5", 8)) { CHECK(0, "%s", ml_last_error()); layer_free(&c); return; }
    for (int s = 0; s < 5; s++) layer_step(&c);
    CHECK(c.state[2] == 0 && c.state[0] == 0, "calibrated before step 5");
    layer_step(&c);
    CHECK(c.state[2] == 1 && c.state[0] > 0, "not calibrated at step 5");
    layer_free(&c);
}

/* For two co-selected outputs a, b the per-token mean over both orders is
 * 0.5 p^2 (|a|^2 + |b|^2) q_a q_b / ((q_a+eps)^2 (q_b+eps)^2) ~ 0.5 p^2 (1/|a|^2 + 1/|b|^2). */
static void test_ortho_pair_formula(void) {
    ExtraOpts o = {.ortho = 1e-3};
    double state[3 + E_] = {0, 1, 1}, pending[4 + E_] = {0};
    Extras x;
    extras_init(&x, &o, E_, state, pending);
    int T = 3, tok[6] = {0, 0, 1, 1, 2, 2}, ex[6] = {0, 1, 2, 3, 1, 3}, pos[6] = {0, 1, 2, 3, 4, 5};
    float gate[6] = {0}, *y = randn(6 * D_, 1), *dy = ml_calloc(6 * D_, sizeof(float));
    Routing rt = {.n_tokens = T, .n_pairs = 6, .token = tok, .expert = ex, .gate = gate};
    RouterLayer r = {.D = D_, .k = 2, .mode = ROUTE_EVAL};
    extras_backward_outputs(&x, &r, &rt, y, pos, dy, 1.0f);
    double want = 0.0;
    for (int t = 0; t < T; t++) {
        const float *a = y + (size_t)2 * t * D_, *b = a + D_;
        double p = 0, qa = 0, qb = 0;
        for (int d = 0; d < D_; d++) p += (double)a[d] * b[d], qa += (double)a[d] * a[d], qb += (double)b[d] * b[d];
        want += 0.5 * p * p * (1 / qa + 1 / qb) / T;
    }
    CHECK(r.n_losses == 1 && fabs(r.losses[0].value - want) < 1e-4 * want, "ortho %g vs %g", r.losses[0].value, want);
    free(y), free(dy);
    extras_free(&x);
}

static void test_capacity_bound(void) {
    /* related-routers s3.3: D = 4096, E = 8: 1/(E erfc) is about 2.3 at 0.03 and about 92 at 0.05. */
    CHECK(router_capacity_lower_bound(0.03, 4096, 8) == 3.0, "bound at 0.03: %g", router_capacity_lower_bound(0.03, 4096, 8));
    double b = router_capacity_lower_bound(0.05, 4096, 8);
    CHECK(b >= 90 && b <= 95, "bound at 0.05: %g", b);
    CHECK(router_capacity_lower_bound(0.0, 4096, 8) == 1.0, "bound at 0");
}


/* ---- parity with the PyTorch mirror (tests/mirror/routers_mirror.py) ---- */

static int read_f32(const StFile *f, const char *prefix, const char *name, float *dst, int ndim, const int64_t *shape) {
    char full[96];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    if (st_read(f, full, "F32", ndim, shape, dst) == 0) return 0;
    CHECK(0, "%s", ml_last_error());
    return -1;
}

static double g_worst;

static void report(const char *what, const char *label, const float *a, const float *b, size_t n, double tol) {
    double ab, rel;
    tl_maxdiff(a, b, n, 1e-2, &ab, &rel);
    g_worst = fmax(g_worst, rel);
    CHECK(rel < tol, "%s %s: max rel diff %.3g (abs %.3g)", label, what, rel, ab);
}

static void parity_case(const StFile *f, int i, const cJSON *c) {
    const char *router = cJSON_GetObjectItem(c, "router")->valuestring, *opts = cJSON_GetObjectItem(c, "opts")->valuestring;
    char pre[16], label[96];
    snprintf(pre, sizeof pre, "c%d.", i);
    snprintf(label, sizeof label, "%s %s", router, opts[0] ? opts : "(defaults)");
    Layer L;
    if (layer_make(&L, router, opts, 8)) { CHECK(0, "%s: %s", label, ml_last_error()); layer_free(&L); return; }
    L.cfg.renorm = cJSON_GetObjectItem(c, "renorm")->valueint;
    int64_t sx[2] = {8, D_}, sr[2] = {E_, D_}, sgu[3] = {E_, 2 * F_, D_}, sd[3] = {E_, D_, F_}, ssgu[2] = {2 * F_, D_},
            ssd[2] = {D_, F_};
    float *ref_dx = ml_malloc(8 * D_ * sizeof(float)), *ref_dr = ml_malloc(E_ * D_ * sizeof(float)), *ref_out = ml_malloc(8 * D_ * sizeof(float));
    float *ref_dgu = ml_malloc(sizeof(float) * E_ * 2 * F_ * D_), *ref_dd = ml_malloc(sizeof(float) * E_ * D_ * F_);
    float *wr = ml_malloc(E_ * D_ * sizeof(float));
    g_worst = 0.0;
    int rc = read_f32(f, pre, "x", L.x, 2, sx) | read_f32(f, pre, "rw", L.rw, 2, sx) | read_f32(f, pre, "router", wr, 2, sr) |
             read_f32(f, pre, "gate_up", L.p.exp_gate_up, 3, sgu) | read_f32(f, pre, "down", L.p.exp_down, 3, sd) |
             read_f32(f, pre, "sh_gate_up", L.p.sh_gate_up, 2, ssgu) | read_f32(f, pre, "sh_down", L.p.sh_down, 2, ssd) |
             read_f32(f, pre, "out", ref_out, 2, sx) | read_f32(f, pre, "grad.x", ref_dx, 2, sx) |
             read_f32(f, pre, "grad.router", ref_dr, 2, sr) | read_f32(f, pre, "grad.gate_up", ref_dgu, 3, sgu) |
             read_f32(f, pre, "grad.down", ref_dd, 3, sd);
    if (L.rows) memcpy(L.p.router, wr, E_ * D_ * sizeof(float));
    char name[96];
    snprintf(name, sizeof name, "%sstate", pre);
    const StTensor *st = st_find(f, name);
    if (L.r.state_len) {
        CHECK(st && st->shape[0] == L.r.state_len, "%s: state of %d values expected", label, L.r.state_len);
        if (st && st->shape[0] == L.r.state_len) memcpy(L.state, st->data, L.r.state_len * sizeof(double));
    }
    snprintf(name, sizeof name, "%spairs.token", pre);
    const StTensor *pt = st_find(f, name);
    if (rc || !pt) goto out;
    int n = (int)pt->shape[0], *tok = ml_malloc((n + 1) * sizeof(int)), *ex = ml_malloc((n + 1) * sizeof(int));
    float *gate = ml_malloc((n + 1) * sizeof(float)), *dx = ml_calloc(8 * D_, sizeof(float));
    snprintf(name, sizeof name, "%spairs.expert", pre);
    st_read(f, name, "I32", 1, (int64_t[]){n}, ex);
    snprintf(name, sizeof name, "%spairs.gate", pre);
    st_read(f, name, "F32", 1, (int64_t[]){n}, gate);
    memcpy(tok, pt->data, n * sizeof(int));
    layer_backward(&L, dx);
    Routing rt = L.acts.rt; /* a copy to sort; the layer keeps its own order */
    rt.token = ml_malloc((rt.n_pairs + 1) * sizeof(int)), rt.expert = ml_malloc((rt.n_pairs + 1) * sizeof(int));
    rt.gate = ml_malloc((rt.n_pairs + 1) * sizeof(float));
    memcpy(rt.token, L.acts.rt.token, rt.n_pairs * sizeof(int)), memcpy(rt.expert, L.acts.rt.expert, rt.n_pairs * sizeof(int));
    memcpy(rt.gate, L.acts.rt.gate, rt.n_pairs * sizeof(float));
    sort_pairs(&rt);
    CHECK(rt.n_pairs == n && !memcmp(rt.token, tok, n * sizeof(int)) && !memcmp(rt.expert, ex, n * sizeof(int)),
          "%s: selection differs (%d pairs vs %d)", label, rt.n_pairs, n);
    if (rt.n_pairs == n) report("gates", label, rt.gate, gate, n, 1e-4);
    report("output", label, L.out, ref_out, 8 * D_, 1e-4);
    const cJSON *ls = cJSON_GetObjectItem(c, "losses");
    for (const cJSON *it = ls ? ls->child : NULL; it; it = it->next) {
        int found = 0;
        for (int j = 0; j < L.r.n_losses && !found; j++)
            if (!strcmp(L.r.losses[j].name, it->string)) {
                found = 1;
                double want = it->valuedouble, got = L.r.losses[j].value;
                CHECK(fabs(got - want) <= 1e-4 * fmax(1.0, fabs(want)), "%s: loss %s %.7g vs %.7g", label, it->string, got, want);
            }
        CHECK(found, "%s: no loss %s", label, it->string);
    }
    report("dx", label, dx, ref_dx, 8 * D_, 1e-3);
    if (L.rows) report("d router", label, L.g.router, ref_dr, E_ * D_, 1e-3);
    report("d gate_up", label, L.g.exp_gate_up, ref_dgu, (size_t)E_ * 2 * F_ * D_, 1e-3);
    report("d down", label, L.g.exp_down, ref_dd, (size_t)E_ * D_ * F_, 1e-3);
    printf("  %-44s %2d pairs as the mirror; gates, output, losses, gradients max rel diff %.1e\n", label, n, g_worst);
    routing_free(&rt);
    free(tok), free(ex), free(gate), free(dx);
out:
    free(ref_dx), free(ref_dr), free(ref_out), free(ref_dgu), free(ref_dd), free(wr);
    layer_free(&L);
}

static void test_mirror_parity(void) {
    const char *path = "tests/fixtures/routers.safetensors";
    StFile f;
    if (st_load(&f, path)) { CHECK(0, "%s (regenerate: %s tests/mirror/routers_mirror.py --out tests/fixtures)", ml_last_error(), "/usr/bin/python3"); return; }
    cJSON *cases = cJSON_Parse(st_meta(&f, "cases") ? st_meta(&f, "cases") : "");
    CHECK(cJSON_IsArray(cases) && cJSON_GetArraySize(cases) > 0, "%s: no cases", path);
    int i = 0;
    for (const cJSON *c = cases ? cases->child : NULL; c; c = c->next) parity_case(&f, i++, c);
    cJSON_Delete(cases);
    st_free(&f);
}

int main(void) {
    rng_seed(&g_rng, 7);
    if (tl_mktmp("routers")) return 1;
    RUN(test_gradients);
    RUN(test_determinism);
    RUN(test_infer_per_token);
    RUN(test_pending_adds);
    RUN(test_bad_options);
    RUN(test_state_checkpoint);
    RUN(test_limiting_cases);
    RUN(test_topk_capacity);
    RUN(test_topk_force_balance);
    RUN(test_auxfree_bias);
    RUN(test_orthvar_calibration);
    RUN(test_ortho_pair_formula);
    RUN(test_capacity_bound);
    RUN(test_mirror_parity);
    tl_rm_rf(tl_tmp_dir);
    TEST_MAIN_END();
}
