/* Parity with the PyTorch mirror: every tests/fixtures/parity_*.safetensors (written by
 * tests/mirror/make_fixtures.py from a float64 reference) is replayed through the C model:
 * logits and losses, routing per MoE block, router losses, every parameter gradient, and
 * a 10-step AdamW trajectory on one batch. One line per compared tensor gives its max
 * absolute and relative difference.
 *
 * The fixture directory is argv[1], else $MOELAB_FIXTURES, else tests/fixtures. */
#include "testlib.h"
#include "core/gemm.h"
#include "core/util.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/model.h"
#include "model/optim.h"
#include <dirent.h>
#include <stdint.h>
#include <string.h>

/* Tolerances. The floor of a relative difference is a fraction of the reference's max |value|:
 * entries far below the tensor's scale are compared in absolute terms against that scale. */
typedef struct {
    double logit, logit_floor, scalar, gate, grad, grad_floor, traj, norm;
} Tolerances;
static const Tolerances TOL_FP32 = {1e-5, 1e-1, 1e-5, 1e-5, 1e-4, 1e-2, 1e-4, 1e-3};
/* bf16 fixtures (config "precision": "bf16"): the reference rounds the same products' inputs
 * to bf16 but accumulates in float64. Now and then fp32 accumulation puts a value on the other
 * side of a bf16 rounding boundary (one bf16 ulp, 2^-8, on that input), and ten AdamW steps
 * amplify that: measured worst cases are ~2e-7 (logits), 4e-5 (gradients), 4e-4 (trajectory
 * loss), 6e-3 (trajectory grad norm). The same model in fp32 misses these references by ~2e-2
 * (fp32_misses), ten times the widest forward tolerance here. */
static const Tolerances TOL_BF16 = {1e-4, 1e-1, 1e-4, 1e-4, 1e-3, 1e-2, 2e-3, 2e-2};
static Tolerances tol;
#define LOGIT_TOL tol.logit
#define LOGIT_FLOOR tol.logit_floor
#define SCALAR_TOL tol.scalar
#define GATE_TOL tol.gate
#define GRAD_TOL tol.grad
#define GRAD_FLOOR tol.grad_floor
#define TRAJ_TOL tol.traj
#define NORM_TOL tol.norm

typedef struct {
    char path[1024], name[256];
    StFile st;
    TrainConfig tc;
    Model m;
    int loaded, model_ok, forward_ok, bf16, skip;
    int B, T, BT, V;
    int *inputs, *targets;
    float *init_params; /* the fixture's initial parameters in table layout */
} Fixture;

static Fixture fx;

/* ---------------------------------------------------------------------------------- */

static size_t numel(const StTensor *t) {
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n;
}

/* Copy of a tensor as floats (memcpy: the file image need not be aligned). NULL + a failed
 * check when missing, of another dtype, or not of `want` elements (want 0: any). */
static float *get_f32(const char *name, size_t want, size_t *n_out) {
    const StTensor *t = st_find(&fx.st, name);
    CHECK(t != NULL, "%s: tensor '%s' missing", fx.name, name);
    if (!t) return NULL;
    CHECK(strcmp(t->dtype, "F32") == 0, "%s: '%s' has dtype %s, want F32", fx.name, name, t->dtype);
    if (strcmp(t->dtype, "F32") != 0) return NULL;
    size_t n = numel(t);
    CHECK(want == 0 || n == want, "%s: '%s' has %zu elements, want %zu", fx.name, name, n, want);
    if (want != 0 && n != want) return NULL;
    float *buf = ml_malloc((n ? n : 1) * sizeof(float));
    memcpy(buf, t->data, n * sizeof(float));
    if (n_out) *n_out = n;
    return buf;
}

static int *get_i32(const char *name, size_t want) {
    const StTensor *t = st_find(&fx.st, name);
    CHECK(t != NULL, "%s: tensor '%s' missing", fx.name, name);
    if (!t) return NULL;
    CHECK(strcmp(t->dtype, "I32") == 0, "%s: '%s' has dtype %s, want I32", fx.name, name, t->dtype);
    CHECK(numel(t) == want, "%s: '%s' has %zu elements, want %zu", fx.name, name, numel(t), want);
    if (strcmp(t->dtype, "I32") != 0 || numel(t) != want) return NULL;
    int *buf = ml_malloc((want ? want : 1) * sizeof(int));
    memcpy(buf, t->data, want * sizeof(int));
    return buf;
}

static double max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i]));
    return m;
}

/* Compares got against ref; prints "name max_abs max_rel"; checks max_rel <= tol where the
 * relative difference uses max(|got|, |ref|, floor_frac * max|ref|). Returns max_rel. */
static double compare(const char *what, const float *got, const float *ref, size_t n, double floor_frac, double tol) {
    double floor_ = floor_frac * max_abs(ref, n);
    if (floor_ < 1e-30) floor_ = 1e-30;
    double ma, mr;
    tl_maxdiff(got, ref, n, floor_, &ma, &mr);
    printf("  %-48s max_abs %.3e  max_rel %.3e  (n=%zu, max|ref| %.3e)\n", what, ma, mr, n, max_abs(ref, n));
    CHECK(mr <= tol, "%s: %s differs: max_rel %.3e > %.1e (max_abs %.3e)", fx.name, what, mr, tol, ma);
    return mr;
}

static double compare_scalar(const char *what, double got, double ref, double tol) {
    float g = (float)got, r = (float)ref;
    return compare(what, &g, &r, 1, 0.0, tol);
}

/* ---------------------------------------------------------------------------------- */

/* bf16 fixtures only: the model in fp32 must miss the bf16 reference by far more than the
 * bf16 tolerance, or the bf16 checks above would not show that the products ran in bf16. */
static void test_fp32_misses_bf16(void) {
    if (!fx.bf16) return;
    CHECK(fx.model_ok && fx.inputs && fx.targets, "%s: fixture not loaded", fx.name);
    if (!fx.model_ok || !fx.inputs || !fx.targets) return;
    gemm_set_precision(PREC_FP32);
    memcpy(fx.m.params, fx.init_params, fx.m.table.total * sizeof(float));
    model_forward(&fx.m, fx.inputs, fx.targets, fx.B, fx.T, ROUTE_TRAIN);
    float *ref = get_f32("logits", (size_t)fx.BT * fx.V, NULL);
    if (ref) {
        double floor_ = tol.logit_floor * max_abs(ref, (size_t)fx.BT * fx.V), ma, mr;
        tl_maxdiff(fx.m.acts.logits, ref, (size_t)fx.BT * fx.V, floor_, &ma, &mr);
        printf("  %-48s max_rel %.3e (bf16 tolerance %.1e)\n", "fp32 logits vs the bf16 reference", mr, tol.logit);
        CHECK(mr > 10 * tol.logit, "%s: fp32 logits are within %.3e of the bf16 reference", fx.name, mr);
    }
    free(ref);
}

static void fixture_close(void) {
    gemm_set_precision(PREC_FP32);
    if (fx.model_ok) model_free(&fx.m);
    if (fx.loaded) st_free(&fx.st);
    free(fx.inputs);
    free(fx.targets);
    free(fx.init_params);
    memset(&fx, 0, sizeof fx);
}

static void copy_initial_params(void) {
    memcpy(fx.m.params, fx.init_params, fx.m.table.total * sizeof(float));
}

/* Routers with state (MP-MoE counts and Sigma): the fixture's `<prefix>layers.<l>` F64
 * tensors in the router's layout. install: into the model, with no pending statistics;
 * else compare the model's state with them. Returns the number of layers seen. */
static int router_state(const char *prefix, int install) {
    int n = 0;
    for (int l = 0; l < fx.m.cfg.n_layers; l++) {
        RouterLayer *r = &fx.m.routers[l];
        char name[64];
        snprintf(name, sizeof name, "%slayers.%d", prefix, l);
        if (!r->spec || r->state_len == 0 || !st_find(&fx.st, name)) continue;
        double *buf = ml_malloc(r->state_len * sizeof(double));
        if (st_read(&fx.st, name, "F64", 1, (int64_t[]){r->state_len}, buf) != 0) {
            CHECK(0, "%s: %s", fx.name, ml_last_error());
        } else if (install) {
            memcpy(r->state, buf, r->state_len * sizeof(double));
            if (r->pending) memset(r->pending, 0, r->pending_len * sizeof(double));
        } else {
            double worst = 0;
            for (int i = 0; i < r->state_len; i++) worst = fmax(worst, fabs(r->state[i] - buf[i]) / fmax(fabs(buf[i]), 1e-3));
            printf("  %-48s max_rel %.3e\n", name, worst);
            CHECK(worst <= 1e-6, "%s: %s differs by %.3e", fx.name, name, worst);
        }
        free(buf);
        n++;
    }
    return n;
}

/* Loads the file, builds config and model, installs the parameters and the batch. */
static void test_load(void) {
    if (st_load(&fx.st, fx.path) != 0) {
        CHECK(0, "%s: st_load: %s", fx.path, ml_last_error());
        return;
    }
    fx.loaded = 1;
    const char *cfg = st_meta(&fx.st, "config");
    CHECK(cfg != NULL, "%s: no 'config' metadata", fx.name);
    if (!cfg) return;
    config_defaults(&fx.tc);
    if (config_apply_json_text(&fx.tc, cfg) != 0) {
        CHECK(0, "%s: config: %s", fx.name, ml_last_error());
        return;
    }
    if (config_validate(&fx.tc) != 0) {
        CHECK(0, "%s: config_validate: %s", fx.name, ml_last_error());
        return;
    }
    fx.bf16 = strcmp(fx.tc.precision, "bf16") == 0;
    tol = fx.bf16 ? TOL_BF16 : TOL_FP32;
    if (gemm_set_precision(fx.bf16 ? PREC_BF16 : PREC_FP32) != 0) {
        printf("SKIP %s: bf16 not available on this CPU: %s\n", fx.name, ml_last_error());
        fx.skip = 1;
        return;
    }
    const ModelConfig *mc = &fx.tc.model;
    printf("  config: layers %d d_model %d heads %d seq %d vocab %d experts %d topk %d d_expert %d shared %d "
           "dense_layers %d d_dense %d tie %d renorm %d router %s aux %.3g z %.3g | batch %d steps %d warmup %d lr %.3g\n",
           mc->n_layers, mc->d_model, mc->n_heads, mc->seq_len, mc->vocab_size, mc->n_experts, mc->top_k,
           mc->d_expert, mc->n_shared, mc->dense_layers, mc->d_dense, mc->tie_embeddings, mc->renorm, mc->router,
           mc->aux_coef, mc->z_coef, fx.tc.batch, fx.tc.steps, fx.tc.warmup, fx.tc.lr);
    if (model_create(&fx.m, mc) != 0) {
        CHECK(0, "%s: model_create: %s", fx.name, ml_last_error());
        return;
    }
    fx.model_ok = 1;
    fx.B = fx.tc.batch;
    fx.T = mc->seq_len;
    fx.BT = fx.B * fx.T;
    fx.V = mc->vocab_size;

    /* every table entry has a param.<name> of the same shape, and nothing else is there */
    fx.init_params = ml_calloc(fx.m.table.total ? fx.m.table.total : 1, sizeof(float));
    int found = 0;
    for (int i = 0; i < fx.m.table.n; i++) {
        const ParamInfo *p = &fx.m.table.items[i];
        char key[MAX_PARAM_NAME + 16];
        snprintf(key, sizeof key, "param.%s", p->name);
        const StTensor *t = st_find(&fx.st, key);
        CHECK(t != NULL, "%s: fixture lacks '%s'", fx.name, key);
        if (!t) continue;
        int same = t->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
        CHECK(same, "%s: '%s' shape differs from the parameter table", fx.name, key);
        if (!same) continue;
        /* params_find is the lookup the rest of the suite relies on */
        const ParamInfo *q = params_find(&fx.m.table, p->name);
        CHECK(q == p, "%s: params_find('%s') does not return its table entry", fx.name, p->name);
        int64_t shape[3] = {p->shape[0], p->shape[1], p->shape[2]};
        if (st_read(&fx.st, key, "F32", p->ndim, shape, fx.init_params + p->offset) != 0)
            CHECK(0, "%s: st_read %s: %s", fx.name, key, ml_last_error());
        found++;
    }
    int in_file = 0;
    for (int i = 0; i < fx.st.n; i++) in_file += strncmp(fx.st.tensors[i].name, "param.", 6) == 0;
    CHECK(in_file == fx.m.table.n, "%s: %d param.* tensors in the file, %d in the table", fx.name, in_file,
          fx.m.table.n);
    CHECK(found == fx.m.table.n, "%s: installed %d of %d parameters", fx.name, found, fx.m.table.n);
    copy_initial_params();
    int with_state = router_state("state.", 1);
    if (with_state) printf("  router state of %d MoE blocks installed\n", with_state);

    fx.inputs = get_i32("inputs", (size_t)fx.BT);
    fx.targets = get_i32("targets", (size_t)fx.BT);
    if (fx.inputs && fx.targets) {
        const StTensor *t = st_find(&fx.st, "inputs");
        CHECK(t->ndim == 2 && t->shape[0] == fx.B && t->shape[1] == fx.T, "%s: inputs are not [B, T]", fx.name);
    }
    printf("  %d parameter tensors, %zu floats, batch %dx%d\n", fx.m.table.n, fx.m.table.total, fx.B, fx.T);
}

static int ready(void) {
    return fx.model_ok && fx.inputs && fx.targets && fx.init_params;
}

static int moe_block_count(void) {
    int n = 0;
    for (int l = 0; l < fx.m.cfg.n_layers; l++) n += model_is_moe_layer(&fx.m.cfg, l);
    return n;
}

static const RouterLoss *router_loss(const RouterLayer *r, const char *name) {
    for (int i = 0; i < r->n_losses; i++)
        if (r->losses[i].name && strcmp(r->losses[i].name, name) == 0) return &r->losses[i];
    return NULL;
}

/* Forward: logits, CE, per-block aux and z, total loss. */
static void test_forward(void) {
    CHECK(ready(), "%s: fixture not loaded", fx.name);
    if (!ready()) return;
    copy_initial_params();
    float loss = model_forward(&fx.m, fx.inputs, fx.targets, fx.B, fx.T, ROUTE_TRAIN);
    fx.forward_ok = 1;
    float *ref = get_f32("logits", (size_t)fx.BT * fx.V, NULL);
    if (ref) compare("logits", fx.m.acts.logits, ref, (size_t)fx.BT * fx.V, LOGIT_FLOOR, LOGIT_TOL);
    free(ref);
    float *ref_loss = get_f32("loss", 1, NULL);
    if (ref_loss) compare_scalar("loss (cross-entropy)", loss, ref_loss[0], SCALAR_TOL);
    free(ref_loss);

    int nm = moe_block_count();
    if (nm == 0) return;
    float *ref_aux = get_f32("aux", (size_t)nm, NULL), *ref_z = get_f32("z", (size_t)nm, NULL);
    float *ref_total = get_f32("total_loss", 1, NULL);
    double total = loss, mean_aux = 0, mean_z = 0;
    for (int l = 0, j = 0; l < fx.m.cfg.n_layers; l++) {
        if (!model_is_moe_layer(&fx.m.cfg, l)) continue;
        const RouterLayer *r = &fx.m.routers[l];
        const RouterLoss *aux = router_loss(r, "aux"), *z = router_loss(r, "z");
        CHECK(aux && z, "%s: block %d router reports no aux/z loss (%d losses)", fx.name, l, r->n_losses);
        char what[64];
        if (aux && ref_aux) {
            snprintf(what, sizeof what, "aux[layer %d]", l);
            compare_scalar(what, aux->value, ref_aux[j], SCALAR_TOL);
            CHECK(fabsf(aux->coef - fx.m.cfg.aux_coef) <= 1e-7f, "%s: aux coef %g, config %g", fx.name, aux->coef,
                  fx.m.cfg.aux_coef);
        }
        if (z && ref_z) {
            snprintf(what, sizeof what, "z[layer %d]", l);
            compare_scalar(what, z->value, ref_z[j], SCALAR_TOL);
            CHECK(fabsf(z->coef - fx.m.cfg.z_coef) <= 1e-7f, "%s: z coef %g, config %g", fx.name, z->coef,
                  fx.m.cfg.z_coef);
        }
        for (int i = 0; i < r->n_losses; i++) total += (double)r->losses[i].coef * r->losses[i].value;
        if (ref_aux) mean_aux += ref_aux[j] / nm;
        if (ref_z) mean_z += ref_z[j] / nm;
        j++;
    }
    if (ref_total) compare_scalar("total_loss (CE + coef * router losses)", total, ref_total[0], SCALAR_TOL);
    /* model_router_losses reports the means over MoE blocks */
    const char *names[ROUTER_MAX_LOSSES];
    float values[ROUTER_MAX_LOSSES];
    int n = model_router_losses(&fx.m, names, values, ROUTER_MAX_LOSSES);
    int seen = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(names[i], "aux") == 0 && ref_aux) seen++, compare_scalar("model_router_losses aux (mean)", values[i], mean_aux, SCALAR_TOL);
        if (strcmp(names[i], "z") == 0 && ref_z) seen++, compare_scalar("model_router_losses z (mean)", values[i], mean_z, SCALAR_TOL);
    }
    CHECK(seen == 2, "%s: model_router_losses returned %d losses without aux and z", fx.name, n);
    free(ref_aux);
    free(ref_z);
    free(ref_total);
}

/* Routing of the forward above: per token, the set of (expert, gate) pairs. */
static void test_routing(void) {
    CHECK(fx.forward_ok, "%s: no forward", fx.name);
    if (!fx.forward_ok) return;
    int k = fx.m.cfg.top_k, BT = fx.BT;
    for (int l = 0; l < fx.m.cfg.n_layers; l++) {
        if (!model_is_moe_layer(&fx.m.cfg, l)) continue;
        char name[64];
        snprintf(name, sizeof name, "route.%d.expert", l);
        int *ref_e = get_i32(name, (size_t)BT * k);
        snprintf(name, sizeof name, "route.%d.gate", l);
        float *ref_g = get_f32(name, (size_t)BT * k, NULL);
        const Routing *rt = &fx.m.acts.moe[l].rt;
        CHECK(rt->n_tokens == BT, "%s: layer %d routing has %d tokens, want %d", fx.name, l, rt->n_tokens, BT);
        CHECK(rt->n_pairs == BT * k, "%s: layer %d routing has %d pairs, want %d", fx.name, l, rt->n_pairs, BT * k);
        if (!ref_e || !ref_g || rt->n_pairs != BT * k) {
            free(ref_e);
            free(ref_g);
            continue;
        }
        /* bucket the pairs by token, sort each token's by expert */
        int *cnt = ml_calloc(BT, sizeof(int)), *ge = ml_malloc((size_t)BT * k * sizeof(int));
        float *gg = ml_malloc((size_t)BT * k * sizeof(float));
        int bad_pair = 0;
        for (int p = 0; p < rt->n_pairs; p++) {
            int t = rt->token[p];
            if (t < 0 || t >= BT || cnt[t] >= k) {
                bad_pair++;
                continue;
            }
            ge[t * k + cnt[t]] = rt->expert[p];
            gg[t * k + cnt[t]] = rt->gate[p];
            cnt[t]++;
        }
        CHECK(bad_pair == 0, "%s: layer %d: %d pairs with a bad token or more than k per token", fx.name, l, bad_pair);
        int wrong_tokens = 0, first_wrong = -1;
        for (int t = 0; t < BT; t++) {
            int *e = ge + t * k;
            float *g = gg + t * k;
            for (int i = 1; i < cnt[t]; i++) /* insertion sort by expert */
                for (int j = i; j > 0 && e[j - 1] > e[j]; j--) {
                    int te = e[j]; e[j] = e[j - 1]; e[j - 1] = te;
                    float tg = g[j]; g[j] = g[j - 1]; g[j - 1] = tg;
                }
            int same = cnt[t] == k;
            for (int i = 0; same && i < k; i++) same = e[i] == ref_e[t * k + i];
            if (!same) {
                if (first_wrong < 0) first_wrong = t;
                wrong_tokens++;
                for (int i = 0; i < k; i++) g[i] = ref_g[t * k + i]; /* leave out of the gate diff */
            }
        }
        if (first_wrong >= 0) {
            int t = first_wrong;
            printf("  layer %d token %d: C experts", l, t);
            for (int i = 0; i < cnt[t]; i++) printf(" %d", ge[t * k + i]);
            printf(", reference");
            for (int i = 0; i < k; i++) printf(" %d", ref_e[t * k + i]);
            printf("\n");
        }
        snprintf(name, sizeof name, "route.%d.expert", l);
        printf("  %-48s %d of %d tokens with a different expert set\n", name, wrong_tokens, BT);
        CHECK(wrong_tokens == 0, "%s: layer %d: %d tokens routed differently", fx.name, l, wrong_tokens);
        snprintf(name, sizeof name, "route.%d.gate", l);
        compare(name, gg, ref_g, (size_t)BT * k, 0.0, GATE_TOL);
        free(cnt);
        free(ge);
        free(gg);
        free(ref_e);
        free(ref_g);
    }
}

/* Gradients of the total loss at the initial parameters. */
static void test_backward(void) {
    CHECK(fx.forward_ok, "%s: no forward", fx.name);
    if (!fx.forward_ok) return;
    model_zero_grad(&fx.m);
    model_backward(&fx.m, fx.inputs, fx.targets, 1.0f);
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < fx.m.table.n; i++) {
        const ParamInfo *p = &fx.m.table.items[i];
        char key[MAX_PARAM_NAME + 16];
        snprintf(key, sizeof key, "grad.%s", p->name);
        float *ref = get_f32(key, p->size, NULL);
        if (!ref) continue;
        double r = compare(key, fx.m.grads + p->offset, ref, p->size, GRAD_FLOOR, GRAD_TOL);
        if (r > worst) worst = r, worst_name = p->name;
        free(ref);
    }
    printf("  worst gradient: %s max_rel %.3e\n", worst_name, worst);
}

/* Ten AdamW steps on the fixture's batch, exactly as the mirror: forward, zero grad,
 * backward, clip, lr_at, adamw_step, model_after_step. */
static void test_trajectory(void) {
    CHECK(ready(), "%s: fixture not loaded", fx.name);
    if (!ready()) return;
    size_t n = 0;
    float *ref_loss = get_f32("traj.loss", 0, &n);
    float *ref_norm = get_f32("traj.grad_norm", n, NULL);
    if (!ref_loss || !ref_norm || n == 0) {
        free(ref_loss);
        free(ref_norm);
        return;
    }
    copy_initial_params();
    router_state("state.", 1); /* the forwards above added statistics */
    model_set_step(&fx.m, 0, fx.tc.steps);
    AdamW opt;
    adamw_init(&opt, fx.m.table.total);
    float *loss = ml_calloc(n, sizeof(float)), *norm = ml_calloc(n, sizeof(float));
    const TrainConfig *c = &fx.tc;
    for (int s = 0; s < (int)n; s++) {
        loss[s] = model_forward(&fx.m, fx.inputs, fx.targets, fx.B, fx.T, ROUTE_TRAIN);
        model_zero_grad(&fx.m);
        model_backward(&fx.m, fx.inputs, fx.targets, 1.0f);
        norm[s] = clip_grad_norm(fx.m.grads, fx.m.table.total, c->grad_clip);
        float lr = lr_at(s, c->steps, c->warmup, c->lr, c->min_lr_frac);
        adamw_step(&opt, &fx.m.table, fx.m.params, fx.m.grads, lr, c->beta1, c->beta2, c->adam_eps, c->weight_decay);
        model_after_step(&fx.m, s + 1, c->steps);
        printf("    step %d: lr %.6f loss %.6f (ref %.6f) grad_norm %.6f (ref %.6f)\n", s, lr, loss[s], ref_loss[s],
               norm[s], ref_norm[s]);
    }
    compare("traj.loss", loss, ref_loss, n, 0.0, TRAJ_TOL);
    router_state("traj.state.", 0);
    compare("traj.grad_norm", norm, ref_norm, n, 0.0, NORM_TOL);
    adamw_free(&opt);
    free(loss);
    free(norm);
    free(ref_loss);
    free(ref_norm);
}

/* ---------------------------------------------------------------------------------- */

static void run_named(const char *name, void (*fn)(void)) {
    if (fx.skip) {
        printf("SKIP %s (bf16 unavailable)\n", name);
        return;
    }
    int before = tl_failed_checks;
    fn();
    if (tl_failed_checks == before) {
        tl_passed++;
        printf("PASS %s\n", name);
    } else {
        tl_failed++;
        printf("FAIL %s\n", name);
    }
    fflush(stdout);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static const char *fixture_dir;
static char **fixture_files;
static int n_fixtures;

static void find_fixtures(void) {
    DIR *d = opendir(fixture_dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            size_t len = strlen(e->d_name), sl = strlen(".safetensors");
            if (strncmp(e->d_name, "parity_", 7) != 0 || len <= sl || strcmp(e->d_name + len - sl, ".safetensors") != 0)
                continue;
            fixture_files = ml_realloc(fixture_files, (n_fixtures + 1) * sizeof *fixture_files);
            fixture_files[n_fixtures++] = ml_strdup(e->d_name);
        }
        closedir(d);
    }
    if (n_fixtures > 1) qsort(fixture_files, n_fixtures, sizeof *fixture_files, cmp_str);
}

static void test_fixtures_present(void) {
    CHECK(n_fixtures > 0, "no parity_*.safetensors in %s (run `make fixtures` from the repository root)",
          fixture_dir);
    for (int i = 0; i < n_fixtures; i++) printf("  %s/%s\n", fixture_dir, fixture_files[i]);
}

int main(int argc, char **argv) {
    fixture_dir = argc > 1 ? argv[1] : getenv("MOELAB_FIXTURES");
    if (!fixture_dir || !*fixture_dir) fixture_dir = "tests/fixtures";
    find_fixtures();
    RUN(test_fixtures_present);
    for (int i = 0; i < n_fixtures; i++) {
        memset(&fx, 0, sizeof fx);
        snprintf(fx.path, sizeof fx.path, "%s/%s", fixture_dir, fixture_files[i]);
        snprintf(fx.name, sizeof fx.name, "%.*s", (int)(strlen(fixture_files[i]) - strlen(".safetensors")),
                 fixture_files[i]);
        char name[320];
        printf("# %s\n", fx.path);
        snprintf(name, sizeof name, "%s.load", fx.name);
        run_named(name, test_load);
        snprintf(name, sizeof name, "%s.forward", fx.name);
        run_named(name, test_forward);
        snprintf(name, sizeof name, "%s.routing", fx.name);
        run_named(name, test_routing);
        snprintf(name, sizeof name, "%s.backward", fx.name);
        run_named(name, test_backward);
        snprintf(name, sizeof name, "%s.trajectory", fx.name);
        run_named(name, test_trajectory);
        if (fx.bf16) {
            snprintf(name, sizeof name, "%s.fp32_misses", fx.name);
            run_named(name, test_fp32_misses_bf16);
        }
        fixture_close();
        free(fixture_files[i]);
    }
    free(fixture_files);
    TEST_MAIN_END();
}
