/* moelab bench --router NAME: what a router costs against topk on the same model, in
 * the same process. Both models train on the same random batches, in alternating order
 * from repeat to repeat, so load from other work on the machine hits both alike; the
 * step-time ratio is taken within each repeat and the median over repeats is reported.
 * Generation (the KV-cache decode path of `moelab sample`) is timed the same way. */
#include "cli/bench_router.h"
#include "cli/commands.h"
#include "core/util.h"
#include "metrics/metrics.h"
#include "model/model.h"
#include "model/optim.h"
#include "train/trainer.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_GEN 4 /* generation variants of the router besides topk */

static void usage(void) {
    printf("usage: moelab bench --router NAME [--router-opts OPTS] [--experiment] [--repeats R] [--steps S]\n"
           "                    [--warmup-steps W] [--gen-opts 'A;B'] [--gen-passes P] [--threads N] [--json FILE]\n\n"
           "Training step time of router NAME against topk (renormalised gates) on the same model, config\n"
           "and random batches, in one process: R repeats of S pairs of steps, one step of each model back\n"
           "to back (the order alternates), so both see the same machine load. Reports the median over\n"
           "all pairs of (router step time / topk step time), each repeat's median (the range shows the\n"
           "noise), and each router's share of the step (router forward + backward time / step time).\n"
           "Then generation: the decode path of `moelab sample` (one token at a time, KV cache, the\n"
           "causal routing rule) over a whole context, for the topk model and for the trained router\n"
           "model with each option set of --gen-opts appended to its options, interleaved, P passes.\n\n"
           "  --router NAME      the router to measure (see moelab train --help)\n"
           "  --router-opts S    its options (key=value,...), as for moelab train\n"
           "  --experiment       the fine-grained shape of the MP-MoE experiment (presets/mpmoe.json: 4 layers, the first\n"
           "                     dense, d_model 128, 32 experts top-4 of width 32 + a shared expert, seq 128,\n"
           "                     batch 8, vocab 2048) instead of the benchmark config (d_model 256, 4 layers,\n"
           "                     8 experts top-2 of width 512, seq 256, batch 16, vocab 256)\n"
           "  --repeats R        interleaved repeats (default 5)\n"
           "  --steps S          pairs of timed steps per repeat (default 4)\n"
           "  --warmup-steps W   untimed steps first, which also fill router statistics (default 3)\n"
           "  --gen-opts 'A;B'   router option sets for generation, ';'-separated (default: one, empty);\n"
           "                     e.g. 'eval_select=topk;eval_select=greedy' for mpmoe\n"
           "  --gen-passes P     decode passes over the context per model (default 15; 0: no generation)\n"
           "  --threads N        threads for training (default: all cores); generation uses 1, as sample does\n"
           "  --json FILE        also write the numbers as one JSON object\n");
}

typedef struct {
    const char *router, *opts, *gen_opts, *json;
    int fine, repeats, steps, warm, passes, threads;
} Args;

static int parse_int(const char *flag, const char *v, int lo, int *out) {
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || x < lo || x > 1 << 20) return ml_fail("%s needs an integer >= %d", flag, lo);
    *out = (int)x;
    return 0;
}

static int parse_args(int argc, char **argv, Args *a, int *help) {
    *a = (Args){.opts = "", .gen_opts = "", .repeats = 5, .steps = 4, .warm = 3, .passes = 15};
    *help = 0;
    int rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (cli_is_help(f)) return *help = 1, 0;
        if (strcmp(f, "--experiment") == 0) a->fine = 1;
        else if (strcmp(f, "--router") == 0 && v) a->router = argv[++i];
        else if (strcmp(f, "--router-opts") == 0 && v) a->opts = argv[++i];
        else if (strcmp(f, "--gen-opts") == 0 && v) a->gen_opts = argv[++i];
        else if (strcmp(f, "--json") == 0 && v) a->json = argv[++i];
        else if (strcmp(f, "--repeats") == 0) rc = parse_int(f, v, 1, &a->repeats), i++;
        else if (strcmp(f, "--steps") == 0) rc = parse_int(f, v, 1, &a->steps), i++;
        else if (strcmp(f, "--warmup-steps") == 0) rc = parse_int(f, v, 0, &a->warm), i++;
        else if (strcmp(f, "--gen-passes") == 0) rc = parse_int(f, v, 0, &a->passes), i++;
        else if (strcmp(f, "--threads") == 0) rc = parse_int(f, v, 0, &a->threads), i++;
        else rc = ml_fail("unknown or incomplete flag '%s' (see moelab bench --router NAME --help)", f);
    }
    if (rc == 0 && !a->router) rc = ml_fail("--router NAME is required");
    if (rc == 0 && !router_find(a->router)) rc = ml_fail("unknown router '%s' (see moelab train --help)", a->router);
    return rc;
}

static void shape(TrainConfig *tc, int fine) {
    config_defaults(tc);
    ModelConfig *c = &tc->model;
    if (fine) {
        c->n_layers = 4, c->dense_layers = 1, c->d_model = 128, c->n_heads = 4, c->seq_len = 128, c->vocab_size = 2048;
        c->n_experts = 32, c->top_k = 4, c->d_expert = 32, c->n_shared = 1;
        tc->batch = 8;
    } else {
        c->n_layers = 4, c->d_model = 256, c->n_heads = 4, c->seq_len = 256, c->vocab_size = 256;
        c->n_experts = 8, c->top_k = 2, c->d_expert = 512;
        tc->batch = 16;
    }
}

/* "a=1" + "b=2" -> "a=1,b=2"; fails when it does not fit the config field. */
static int join_opts(char *out, size_t n, const char *a, const char *b) {
    int k = snprintf(out, n, "%s%s%s", a, *a && *b ? "," : "", b);
    return k < 0 || (size_t)k >= n ? ml_fail("router options too long: '%s' + '%s'", a, b) : 0;
}

typedef struct {
    Model m;
    AdamW opt;
    int ready;
} Trainee;

static int trainee_init(Trainee *t, const TrainConfig *tc, const char *router, const char *opts) {
    memset(t, 0, sizeof *t);
    ModelConfig c = tc->model;
    snprintf(c.router, sizeof c.router, "%s", router);
    if (join_opts(c.router_opts, sizeof c.router_opts, opts, "")) return -1;
    if (model_create(&t->m, &c)) return -1;
    model_init_weights(&t->m, 1337); /* both models start from the same weights where layouts agree */
    adamw_init(&t->opt, t->m.table.total);
    t->ready = 1;
    return 0;
}

static void trainee_free(Trainee *t) {
    if (!t->ready) return;
    adamw_free(&t->opt);
    model_free(&t->m);
    t->ready = 0;
}

/* The batch of global step s: the same random tokens for every model. */
static void batch_of(long s, int n, int V, int *inp, int *tgt) {
    Rng rng;
    rng_seed(&rng, 1000 + (uint64_t)s);
    for (int i = 0; i < n; i++) inp[i] = (int)rng_below(&rng, V), tgt[i] = (int)rng_below(&rng, V);
}

/* One optimizer step; returns its wall time, *router_s the routers' part of it. */
static double train_step(Trainee *t, const TrainConfig *tc, long s, long total, int *inp, int *tgt, double *router_s) {
    const ModelConfig *c = &t->m.cfg;
    batch_of(s, tc->batch * c->seq_len, c->vocab_size, inp, tgt);
    double t0 = ml_now();
    model_forward(&t->m, inp, tgt, tc->batch, c->seq_len, ROUTE_TRAIN);
    model_zero_grad(&t->m);
    model_backward(&t->m, inp, tgt, 1.0f);
    clip_grad_norm(t->m.grads, t->m.table.total, tc->grad_clip);
    adamw_step(&t->opt, &t->m.table, t->m.params, t->m.grads, lr_at((int)s, (int)total, tc->warmup, tc->lr, tc->min_lr_frac),
               tc->beta1, tc->beta2, tc->adam_eps, tc->weight_decay);
    model_after_step(&t->m, s + 1, total);
    double dt = ml_now() - t0;
    *router_s = t->m.router_seconds;
    return dt;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n) {
    double *w = ml_malloc(sizeof(double) * (size_t)n);
    memcpy(w, v, sizeof(double) * (size_t)n);
    qsort(w, (size_t)n, sizeof *w, cmp_double);
    double r = n % 2 ? w[n / 2] : 0.5 * (w[n / 2 - 1] + w[n / 2]);
    free(w);
    return r;
}

typedef struct {
    double step_s[2], share[2], ratio; /* [0] topk, [1] the router: medians over every timed step */
    double *ratios;                   /* [repeats]: each repeat's median pair ratio */
} StepResult;

/* Pairs of steps, one of each model back to back, so that load from other work on the
 * machine hits both alike; the order alternates from pair to pair. The ratio of a pair
 * is the router's step time over topk's; the reported ratio is the median over pairs. */
static void bench_steps(Trainee *tr, const TrainConfig *tc, const Args *a, StepResult *res) {
    int BT = tc->batch * tc->model.seq_len, n = a->repeats * a->steps;
    int *inp = ml_malloc(sizeof(int) * (size_t)BT), *tgt = ml_malloc(sizeof(int) * (size_t)BT);
    long total = a->warm + (long)n, s[2] = {0, 0};
    double rs, *t[2], *sh[2], *pr = ml_malloc(sizeof(double) * (size_t)n);
    for (int w = 0; w < 2; w++) {
        t[w] = ml_malloc(sizeof(double) * (size_t)n);
        sh[w] = ml_malloc(sizeof(double) * (size_t)n);
        for (int i = 0; i < a->warm; i++) train_step(&tr[w], tc, s[w]++, total, inp, tgt, &rs);
    }
    res->ratios = ml_malloc(sizeof(double) * (size_t)a->repeats);
    for (int r = 0; r < a->repeats; r++) {
        for (int i = r * a->steps; i < (r + 1) * a->steps; i++) {
            for (int j = 0; j < 2; j++) {
                int w = i % 2 ? 1 - j : j;
                t[w][i] = train_step(&tr[w], tc, s[w]++, total, inp, tgt, &rs);
                sh[w][i] = rs / t[w][i];
            }
            pr[i] = t[1][i] / t[0][i];
        }
        res->ratios[r] = median(pr + r * a->steps, a->steps);
        fprintf(stderr, "repeat %d/%d: topk %.4f s, %s %.4f s per step (medians), ratio %.4f\n", r + 1, a->repeats,
                median(t[0] + r * a->steps, a->steps), a->router, median(t[1] + r * a->steps, a->steps), res->ratios[r]);
    }
    for (int w = 0; w < 2; w++) {
        res->step_s[w] = median(t[w], n);
        res->share[w] = median(sh[w], n);
        free(t[w]);
        free(sh[w]);
    }
    res->ratio = median(pr, n);
    free(pr);
    free(inp);
    free(tgt);
}

/* One decode pass over the whole context, feeding back the argmax (as sample does at
 * temperature 0); returns tokens per second. */
static double decode_pass(Model *m, KVCache *kv, int T) {
    int tok = 0;
    double t0 = ml_now();
    for (int pos = 0; pos < T; pos++) {
        const float *lg = model_decode_step(m, kv, tok, pos);
        int best = 0;
        for (int v = 1; v < m->cfg.vocab_size; v++)
            if (lg[v] > lg[best]) best = v;
        tok = best;
    }
    return T / (ml_now() - t0);
}

/* The trained router model with more options: same parameters and router state. */
static int clone_with_opts(Model *out, const Model *src, const char *base_opts, const char *extra) {
    ModelConfig c = src->cfg;
    if (join_opts(c.router_opts, sizeof c.router_opts, base_opts, extra)) return -1;
    if (model_create(out, &c)) return -1;
    memcpy(out->params, src->params, sizeof(float) * src->table.total);
    if (src->router_state_len) memcpy(out->router_state, src->router_state, sizeof(double) * src->router_state_len);
    return 0;
}

typedef struct {
    int n;                         /* models: [0] topk, then one per option set */
    char label[MAX_GEN + 1][96];
    double tok_s[MAX_GEN + 1];     /* medians over passes */
    double ratio[MAX_GEN + 1];     /* median over passes of tok_s / topk's in the same pass */
} GenResult;

static int bench_generation(Trainee *tr, const Args *a, GenResult *g) {
    Model models[MAX_GEN + 1];
    const Model *mp[MAX_GEN + 1];
    char *sets = ml_strdup(a->gen_opts), *save = NULL, *tok = strtok_r(sets, ";", &save);
    int rc = 0, own = 0;
    memset(g, 0, sizeof *g);
    mp[g->n] = &tr[0].m;
    snprintf(g->label[g->n++], sizeof g->label[0], "topk");
    do { /* at least one set: the router with its own options */
        const char *extra = tok ? tok : "";
        if (g->n > MAX_GEN) {
            rc = ml_fail("--gen-opts: at most %d option sets", MAX_GEN);
            break;
        }
        if ((rc = clone_with_opts(&models[own], &tr[1].m, a->opts, extra))) break;
        mp[g->n] = &models[own++];
        snprintf(g->label[g->n++], sizeof g->label[0], "%s%s%s%s", a->router, *extra ? "[" : "", extra, *extra ? "]" : "");
    } while ((tok = strtok_r(NULL, ";", &save)));
    free(sets);
    int T = tr[0].m.cfg.seq_len;
    double *tps = rc ? NULL : ml_malloc(sizeof(double) * (size_t)g->n * a->passes);
    double *rel = rc ? NULL : ml_malloc(sizeof(double) * (size_t)a->passes);
    if (rc == 0) {
        set_threads(1); /* sample decodes on one thread */
        KVCache kv;
        kv_create(&kv, mp[0], T);
        for (int p = 0; p < a->passes; p++)
            for (int j = 0; j < g->n; j++) {
                int i = (j + p) % g->n; /* rotate who goes first */
                tps[(size_t)i * a->passes + p] = decode_pass((Model *)mp[i], &kv, T);
            }
        kv_free(&kv, mp[0]);
        for (int i = 0; i < g->n; i++) {
            g->tok_s[i] = median(tps + (size_t)i * a->passes, a->passes);
            for (int p = 0; p < a->passes; p++) rel[p] = tps[(size_t)i * a->passes + p] / tps[p];
            g->ratio[i] = median(rel, a->passes);
        }
    }
    free(tps);
    free(rel);
    for (int i = 0; i < own; i++) model_free(&models[i]);
    return rc;
}

static void print_results(const Args *a, const TrainConfig *tc, const StepResult *s, const GenResult *g, int threads) {
    const ModelConfig *c = &tc->model;
    printf("config          %s: %d layers (%d dense), d_model %d, %d experts top-%d, d_expert %d, shared %d, "
           "batch %d x %d, vocab %d; %d threads\n",
           a->fine ? "fine-grained" : "benchmark", c->n_layers, c->dense_layers, c->d_model, c->n_experts, c->top_k,
           c->d_expert, c->n_shared, tc->batch, c->seq_len, c->vocab_size, threads);
    printf("router          %s%s%s\n", a->router, *a->opts ? " --router-opts " : "", a->opts);
    printf("step time       topk %.4f s, %s %.4f s (medians of %d repeats x %d pairs of steps)\n", s->step_s[0],
           a->router, s->step_s[1], a->repeats, a->steps);
    double lo = s->ratios[0], hi = s->ratios[0];
    for (int r = 1; r < a->repeats; r++) lo = fmin(lo, s->ratios[r]), hi = fmax(hi, s->ratios[r]);
    printf("ratio           %.4f  (%s / topk: median over pairs of steps; repeats' medians %.4f..%.4f)\n", s->ratio,
           a->router, lo, hi);
    printf("router share    topk %.2f%%, %s %.2f%% of the step (difference %+.2f points)\n", 100 * s->share[0], a->router,
           100 * s->share[1], 100 * (s->share[1] - s->share[0]));
    for (int i = 0; i < g->n; i++)
        printf("generation      %-40s %8.0f tok/s  (x%.3f of topk, median of %d passes of %d tokens)\n", g->label[i],
               g->tok_s[i], g->ratio[i], a->passes, c->seq_len);
}

static int write_json(FILE *f, void *ctx) {
    const void *const *p = ctx;
    const Args *a = p[0];
    const StepResult *s = p[1];
    const GenResult *g = p[2];
    fprintf(f, "{\"router\":");
    metrics_json_string(f, a->router);
    fprintf(f, ",\"router_opts\":");
    metrics_json_string(f, a->opts);
    fprintf(f, ",\"config\":\"%s\",\"repeats\":%d,\"steps\":%d,\"topk_step_s\":%.6f,\"router_step_s\":%.6f,"
               "\"ratio\":%.5f,\"topk_router_share\":%.5f,\"router_share\":%.5f,\"ratios\":[",
            a->fine ? "fine" : "bench", a->repeats, a->steps, s->step_s[0], s->step_s[1], s->ratio, s->share[0], s->share[1]);
    for (int r = 0; r < a->repeats; r++) fprintf(f, "%s%.5f", r ? "," : "", s->ratios[r]);
    fprintf(f, "],\"generation\":[");
    for (int i = 0; i < g->n; i++) {
        fprintf(f, "%s{\"model\":", i ? "," : "");
        metrics_json_string(f, g->label[i]);
        fprintf(f, ",\"tok_per_s\":%.1f,\"ratio\":%.5f}", g->tok_s[i], g->ratio[i]);
    }
    fprintf(f, "]}\n");
    return ferror(f) ? ml_fail("write error") : 0;
}

int bench_router(int argc, char **argv) {
    Args a;
    int help, rc = parse_args(argc, argv, &a, &help);
    if (help) {
        usage();
        return 0;
    }
    TrainConfig tc;
    Trainee tr[2];
    StepResult s = {0};
    GenResult g = {0};
    memset(tr, 0, sizeof tr);
    shape(&tc, a.fine);
    int threads = set_threads(a.threads);
    if (rc == 0) rc = trainee_init(&tr[0], &tc, "topk", "");
    if (rc == 0) rc = trainee_init(&tr[1], &tc, a.router, a.opts);
    if (rc == 0) bench_steps(tr, &tc, &a, &s);
    if (rc == 0 && a.passes > 0) rc = bench_generation(tr, &a, &g);
    if (rc == 0) print_results(&a, &tc, &s, &g, threads);
    const void *ctx[] = {&a, &s, &g};
    if (rc == 0 && a.json) rc = ml_write_atomic_with(a.json, write_json, (void *)ctx);
    if (rc) fprintf(stderr, "moelab bench: %s\n", ml_last_error());
    free(s.ratios);
    trainee_free(&tr[0]);
    trainee_free(&tr[1]);
    return rc ? 1 : 0;
}
