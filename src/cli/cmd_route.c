/* moelab route: one router's selection applied to router logits dumped elsewhere, for
 * inspection and for checking other implementations against moelab's.
 *
 * Any router with a learned linear scorer over the E experts (param_rows == E) runs
 * through its own forward(): the logits are the router input and the weight is the
 * identity, so logits = x I^T exactly. Router state (counts, covariances, biases) comes
 * from the other tensors of the input file through the router's load_inputs entry. */
#include "cli/commands.h"
#include "core/util.h"
#include "io/safetensors.h"
#include "moe/router.h"
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void) {
    printf("usage: moelab route --router NAME --topk K --in IN.safetensors --out OUT.safetensors\n"
           "                    [--router-opts KEY=VALUE,...] [--renorm 0|1] [--mode eval|infer]\n\n"
           "Applies a router's selection to router logits from a file and writes which experts\n"
           "each token takes and with what gate.\n\n"
           "IN holds `logits` [T, E] (float32; or `probs` [T, E], rows of probabilities) and\n"
           "whatever state the router needs, as float32 or float64:\n"
           "  mpmoe: `sigma` [E, E] (the covariance before conditioning), or `cooc` [E, E],\n"
           "         `usage` [E] and `count` [1] (co-occurrence counts of routed tokens);\n"
           "         Sigma is conditioned with the router's options as in training.\n"
           "OUT gets `mask` [T, E] uint8 (1 = chosen) and `gates` [T, E] float32 (0 where not\n"
           "chosen), with router, topk and options in the metadata.\n\n"
           "  --mode eval    the validation rule (default); infer: the generation rule\n"
           "  --renorm 0|1   gates renormalised over the chosen set (routers that read it; default 1)\n\n"
           "routers:\n");
    for (const RouterSpec *const *r = router_all(); *r; r++) {
        printf("  %-16s %s\n", (*r)->name, (*r)->summary);
        router_opts_print(stdout, (*r)->options, "      --router-opts ");
    }
}

typedef struct {
    const char *router, *in, *out, *opts, *mode;
    int topk, renorm;
} RouteArgs;

static int parse_int(const char *flag, const char *v, int lo, int hi, int *out) {
    char *end;
    long x = strtol(v, &end, 10);
    if (*v == 0 || *end || x < lo || x > hi) return ml_fail("%s needs an integer in %d..%d, not '%s'", flag, lo, hi, v);
    *out = (int)x;
    return 0;
}

static int parse_args(int argc, char **argv, RouteArgs *a, int *help) {
    *a = (RouteArgs){.opts = "", .mode = "eval", .topk = 0, .renorm = 1};
    for (int i = 1; i < argc; i++) {
        int missing = 0;
        const char *v;
        if (cli_is_help(argv[i])) return *help = 1, 0;
        if ((v = cli_flag_value(argc, argv, &i, "--router", &missing))) a->router = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--router-opts", &missing))) a->opts = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--in", &missing))) a->in = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--out", &missing))) a->out = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--mode", &missing))) a->mode = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--topk", &missing))) {
            if (parse_int("--topk", v, 1, 4096, &a->topk)) return -1;
        } else if ((v = cli_flag_value(argc, argv, &i, "--renorm", &missing))) {
            if (parse_int("--renorm", v, 0, 1, &a->renorm)) return -1;
        } else if (missing) return ml_fail("%s needs a value", argv[i]);
        else return ml_fail("unknown argument '%s' (see moelab route --help)", argv[i]);
    }
    if (!a->router) return ml_fail("--router NAME is required (see moelab route --help)");
    if (!a->topk) return ml_fail("--topk K is required");
    if (!a->in || !a->out) return ml_fail("--in and --out are required");
    if (strcmp(a->mode, "eval") && strcmp(a->mode, "infer")) return ml_fail("--mode must be eval or infer, not '%s'", a->mode);
    if (strlen(a->opts) >= sizeof(((ModelConfig *)0)->router_opts)) return ml_fail("--router-opts is too long");
    return 0;
}

static size_t numel(const StTensor *t) {
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n;
}

/* Element i of a float or integer tensor as a double (the file image need not be aligned). */
static double value_at(const StTensor *t, size_t i) {
    const char *b = (const char *)t->data;
    if (strcmp(t->dtype, "F32") == 0) {
        float v;
        memcpy(&v, b + i * 4, 4);
        return v;
    }
    if (strcmp(t->dtype, "F64") == 0) {
        double v;
        memcpy(&v, b + i * 8, 8);
        return v;
    }
    if (strcmp(t->dtype, "I64") == 0) {
        int64_t v;
        memcpy(&v, b + i * 8, 8);
        return (double)v;
    }
    int32_t v;
    memcpy(&v, b + i * 4, 4);
    return v;
}

static int numeric(const StTensor *t) {
    return !strcmp(t->dtype, "F32") || !strcmp(t->dtype, "F64") || !strcmp(t->dtype, "I32") || !strcmp(t->dtype, "I64");
}

/* logits [T, E] from `logits`, or log of `probs`. */
static float *read_logits(const StFile *f, const char *path, int *T, int *E) {
    const StTensor *t = st_find(f, "logits");
    int from_probs = 0;
    if (!t) t = st_find(f, "probs"), from_probs = 1;
    if (!t) return ml_fail("%s: no tensor 'logits' (or 'probs') [T, E]", path), NULL;
    const char *name = from_probs ? "probs" : "logits";
    if (t->ndim != 2 || t->shape[0] < 1 || t->shape[1] < 1 || t->shape[0] > (1 << 28) || t->shape[1] > 4096)
        return ml_fail("%s: tensor '%s' must have shape [T, E] with T >= 1 and 1 <= E <= 4096", path, name), NULL;
    if (strcmp(t->dtype, "F32") && strcmp(t->dtype, "F64"))
        return ml_fail("%s: tensor '%s' must be float32 (or float64), not %s", path, name, t->dtype), NULL;
    *T = (int)t->shape[0], *E = (int)t->shape[1];
    size_t n = numel(t);
    float *l = ml_malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        double v = value_at(t, i);
        if (!isfinite(v) || (from_probs && (v < 0 || v > 1))) {
            free(l);
            return ml_fail("%s: tensor '%s' has %s %g at [%zu, %zu]", path, name,
                           from_probs ? "a value outside [0, 1]:" : "a non-finite value", v, i / *E, i % *E), NULL;
        }
        /* softmax(log p) = p for rows of probabilities; FLT_MIN keeps zeros finite */
        l[i] = from_probs ? logf(fmaxf((float)v, FLT_MIN)) : (float)v;
    }
    return l;
}

/* Every other numeric tensor of at most two dimensions, as doubles, for load_inputs. */
static int collect_inputs(const StFile *f, RouterTensor **out, double ***bufs) {
    int n = 0;
    *out = ml_calloc(f->n + 1, sizeof **out);
    *bufs = ml_calloc(f->n + 1, sizeof **bufs);
    for (int i = 0; i < f->n; i++) {
        const StTensor *t = &f->tensors[i];
        if (!numeric(t) || t->ndim > 2 || !strcmp(t->name, "logits") || !strcmp(t->name, "probs")) continue;
        size_t m = numel(t);
        double *d = ml_malloc((m ? m : 1) * sizeof(double));
        for (size_t j = 0; j < m; j++) d[j] = value_at(t, j);
        RouterTensor *r = &(*out)[n];
        r->name = t->name, r->ndim = t->ndim, r->data = d;
        for (int k = 0; k < t->ndim; k++) r->shape[k] = (long)t->shape[k];
        if (t->ndim == 0) r->ndim = 1, r->shape[0] = 1; /* a scalar is a [1] */
        (*bufs)[n++] = d;
    }
    return n;
}

/* Runs the router on logits [T, E]; fills mask and gates. */
static int apply_router(const RouteArgs *a, const RouterSpec *spec, const StFile *f, const float *logits, int T, int E,
                        unsigned char *mask, float *gates) {
    TrainConfig tc;
    config_defaults(&tc);
    ModelConfig cfg = tc.model;
    cfg.n_experts = E, cfg.top_k = a->topk, cfg.d_model = E, cfg.renorm = a->renorm;
    snprintf(cfg.router, sizeof cfg.router, "%s", spec->name);
    snprintf(cfg.router_opts, sizeof cfg.router_opts, "%s", a->opts);
    if (a->topk > E) return ml_fail("--topk %d is more than the %d experts of the logits", a->topk, E);
    if (spec->param_rows(&cfg) != E)
        return ml_fail("router %s does not score experts with a linear layer over the logits; route cannot run it", spec->name);
    RouterLayer r;
    memset(&r, 0, sizeof r);
    r.spec = spec, r.cfg = &cfg, r.E = E, r.k = a->topk, r.D = E;
    r.mode = strcmp(a->mode, "infer") ? ROUTE_EVAL : ROUTE_INFER;
    r.state_len = spec->state_len(&cfg);
    r.state = ml_calloc(r.state_len + 1, sizeof(double));
    int rc = spec->init(&r);
    RouterTensor *in = NULL;
    double **bufs = NULL;
    int n_in = collect_inputs(f, &in, &bufs);
    if (rc == 0 && spec->load_inputs) rc = spec->load_inputs(&r, in, n_in);
    if (rc == 0) {
        float *w = ml_calloc((size_t)E * E, sizeof(float));
        for (int e = 0; e < E; e++) w[(size_t)e * E + e] = 1.0f;
        Routing rt;
        memset(&rt, 0, sizeof rt);
        spec->forward(&r, logits, w, T, &rt);
        for (int p = 0; p < rt.n_pairs; p++) {
            size_t at = (size_t)rt.token[p] * E + rt.expert[p];
            mask[at] = 1;
            gates[at] += rt.gate[p];
        }
        routing_free(&rt);
        free(w);
    }
    if (r.priv || r.pending) spec->free(&r);
    for (int i = 0; i < n_in; i++) free(bufs[i]);
    free(bufs);
    free(in);
    free(r.state);
    return rc;
}

int cmd_route(int argc, char **argv) {
    RouteArgs a;
    int help = 0;
    if (parse_args(argc, argv, &a, &help)) {
        fprintf(stderr, "moelab route: %s\n", ml_last_error());
        return 1;
    }
    if (help) {
        usage();
        return 0;
    }
    const RouterSpec *spec = router_find(a.router);
    if (!spec) {
        fprintf(stderr, "moelab route: unknown router '%s' (moelab route --help lists them)\n", a.router);
        return 1;
    }
    StFile f;
    if (st_load(&f, a.in)) {
        fprintf(stderr, "moelab route: %s\n", ml_last_error());
        return 1;
    }
    int T = 0, E = 0, rc = -1;
    float *logits = read_logits(&f, a.in, &T, &E), *gates = NULL;
    unsigned char *mask = NULL;
    if (logits) {
        mask = ml_calloc((size_t)T * E, 1);
        gates = ml_calloc((size_t)T * E, sizeof(float));
        rc = apply_router(&a, spec, &f, logits, T, E, mask, gates);
    }
    if (rc == 0) {
        StFile o;
        char k[16];
        st_init(&o);
        st_add(&o, "mask", "U8", 2, (int64_t[]){T, E}, mask);
        st_add(&o, "gates", "F32", 2, (int64_t[]){T, E}, gates);
        snprintf(k, sizeof k, "%d", a.topk);
        st_add_meta(&o, "router", spec->name);
        st_add_meta(&o, "topk", k);
        st_add_meta(&o, "router_opts", a.opts);
        st_add_meta(&o, "mode", a.mode);
        rc = st_save(&o, a.out);
        st_free(&o);
    }
    if (rc) fprintf(stderr, "moelab route: %s\n", ml_last_error());
    free(logits);
    free(mask);
    free(gates);
    st_free(&f);
    return rc ? 1 : 0;
}
