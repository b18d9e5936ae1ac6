/* moelab bench: training throughput of moelab and of the PyTorch mirror on the same
 * config and thread count, in one run, with MFU against this machine's measured sgemm peak. */
#include "cli/bench_router.h"
#include "cli/commands.h"
#include "core/gemm.h"
#include "core/spawn.h"
#include "core/util.h"
#include "model/model.h"
#include "model/optim.h"
#include "train/trainer.h"
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(void) {
    printf("usage: moelab bench [--threads N] [--steps S] [--warmup-steps W] [--precision fp32|bf16] [--fine]\n"
           "                    [--balanced] [--no-mirror] [--python PATH] [--json FILE]\n"
           "       moelab bench --thread-split [--steps S] [--warmup-steps W]\n\n"
           "Trains the benchmark config (d_model 256, 4 layers, 4 heads, 8 experts, top-2, d_expert 512,\n"
           "seq 256, batch 16, byte vocab) on random tokens, in one run: moelab in fp32 and in bf16, and\n"
           "the PyTorch mirror (tests/mirror/bench_mirror.py, Debian's /usr/bin/python3) in fp32 and under\n"
           "torch.autocast(\"cpu\", torch.bfloat16), with the same thread count. Prints median tokens/s,\n"
           "MFU = FLOPs/s / the measured GEMM peak of the same precision (the fp32 and bf16 products\n"
           "moelab uses, on 2048^3; OpenBLAS's sgemm rate is printed beside them), and the ratios,\n"
           "with FLOPs/token = 6 x active parameters + 6 x layers x d_model x seq_len (causal attention).\n"
           "bf16 / fp32 is printed beside the two peaks' ratio, which bounds it: the passes between\n"
           "the products run at the same speed in both precisions.\n"
           "  --precision P   which moelab precision the JSON's moelab_tok_per_s/mfu/ratio report (default fp32)\n"
           "  --fine          also the fine-grained config (64 experts, top-8, d_expert 128: the same active\n"
           "                  parameters) in moelab, and its MFU relative to the coarse config\n"
           "  --balanced      every token's experts drawn at random (topk force_balance=1, Megatron's\n"
           "                  moe_router_force_load_balancing) in moelab and the mirror: a trained router's\n"
           "                  even load. Without it the router learns on random tokens and its load can\n"
           "                  collapse onto a few experts; each config line prints the most loaded expert\n"
           "                  over the mean (1.0: even; E/k: one expert takes every token)\n"
           "  --no-mirror     moelab only\n"
           "--thread-split times moelab alone with every split of the cores between OpenMP loops and\n"
           "the BLAS (both N, OpenMP 1 + BLAS N, OpenMP N + BLAS 1): --threads N uses both N.\n"
           "moelab bench --router NAME times a router against topk: see moelab bench --router NAME --help.\n");
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Best of several square products in the current precision, B weights-like (cast once, as
 * the model casts its weights): the machine's attainable GEMM rate with these threads. */
static double gemm_peak(void) {
    int n = 2048;
    float *a = ml_malloc((size_t)n * n * sizeof(float)), *b = ml_malloc((size_t)n * n * sizeof(float)),
          *c = ml_malloc((size_t)n * n * sizeof(float));
    for (size_t i = 0; i < (size_t)n * n; i++) a[i] = b[i] = 1e-3f * (float)(i % 13);
    gemm_cast_weights(b, (size_t)n * n);
    double best = 0.0;
    for (int r = 0; r < 6; r++) {
        double t = ml_now();
        gemm(0, 1, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        t = ml_now() - t;
        if (r > 0 && 2.0 * n * n * n / t > best) best = 2.0 * n * n * n / t;
    }
    gemm_forget_weights(b);
    free(a), free(b), free(c);
    return best;
}

/* OpenBLAS's rate on the same product, for comparison with the fp32 engine gemm uses. */
static double blas_peak(void) {
    int n = 2048;
    float *a = ml_calloc((size_t)n * n, sizeof(float)), *c = ml_malloc((size_t)n * n * sizeof(float));
    double best = 0.0;
    for (int r = 0; r < 4; r++) {
        double t = ml_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a, n, a, n, 0.0f, c, n);
        t = ml_now() - t;
        if (r > 0 && 2.0 * n * n * n / t > best) best = 2.0 * n * n * n / t;
    }
    free(a), free(c);
    return best;
}

typedef struct {
    int experts, topk, d_expert;
} BenchShape;

static const BenchShape COARSE = {8, 2, 512}, FINE = {64, 8, 128};

typedef struct {
    double tok_per_s, router_share, flops_per_tok, max_load;
    size_t total, active;
} MoelabResult;

/* The most loaded expert's pairs over the mean, in the worst MoE layer of the last forward:
 * random tokens give the router nothing to learn, and its load can collapse onto a few
 * experts within steps, which changes what the step costs. */
static double max_load(const Model *m) {
    double worst = 0.0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const MoEActs *a = &m->acts.moe[l];
        if (!m->routers[l].spec || a->rt.n_pairs == 0) continue;
        int most = 0;
        for (int e = 0; e < a->E; e++) most = a->counts[e] > most ? a->counts[e] : most;
        worst = fmax(worst, most * (double)a->E / a->rt.n_pairs);
    }
    return worst;
}

/* balanced: topk's force_balance=1, a load spread evenly whatever the router learns */
static int bench_moelab(const BenchShape *sh, int balanced, int steps, int warm, MoelabResult *res) {
    TrainConfig tc;
    config_defaults(&tc);
    ModelConfig *c = &tc.model;
    c->n_layers = 4, c->d_model = 256, c->n_heads = 4, c->seq_len = 256, c->vocab_size = 256;
    c->n_experts = sh->experts, c->top_k = sh->topk, c->d_expert = sh->d_expert;
    if (balanced) snprintf(c->router_opts, sizeof c->router_opts, "force_balance=1");
    tc.batch = 16;
    Model m;
    if (model_create(&m, c)) return -1;
    model_init_weights(&m, 1337);
    AdamW opt;
    adamw_init(&opt, m.table.total);
    int BT = tc.batch * c->seq_len;
    int *inp = ml_malloc(BT * sizeof(int)), *tgt = ml_malloc(BT * sizeof(int));
    Rng rng;
    rng_seed(&rng, 1);
    double *dt = ml_malloc(steps * sizeof(double)), *share = ml_malloc(steps * sizeof(double));
    double *load = ml_malloc(steps * sizeof(double));
    for (int s = 0; s < warm + steps; s++) {
        for (int i = 0; i < BT; i++) inp[i] = (int)rng_below(&rng, 256), tgt[i] = (int)rng_below(&rng, 256);
        double t0 = ml_now();
        model_forward(&m, inp, tgt, tc.batch, c->seq_len, ROUTE_TRAIN);
        model_zero_grad(&m);
        model_backward(&m, inp, tgt, 1.0f);
        clip_grad_norm(m.grads, m.table.total, tc.grad_clip);
        adamw_step(&opt, &m.table, m.params, m.grads, lr_at(s, warm + steps, tc.warmup, tc.lr, tc.min_lr_frac),
                   tc.beta1, tc.beta2, tc.adam_eps, tc.weight_decay);
        model_after_step(&m, s + 1, warm + steps);
        double t = ml_now() - t0;
        if (s >= warm) {
            dt[s - warm] = t;
            share[s - warm] = m.router_seconds / t;
            load[s - warm] = max_load(&m);
        }
        fprintf(stderr, "\rmoelab %s E%d k%d step %d/%d: %.3f s", precision_name(gemm_precision()), sh->experts,
                sh->topk, s + 1, warm + steps, t);
    }
    fprintf(stderr, "\n");
    params_count(&m.table, &m.cfg, m.router_rows, &res->total, &res->active);
    res->tok_per_s = BT / median(dt, steps);
    res->router_share = median(share, steps);
    res->max_load = median(load, steps);
    res->flops_per_tok = 6.0 * res->active + 6.0 * c->n_layers * c->d_model * c->seq_len;
    free(inp), free(tgt), free(dt), free(share), free(load);
    adamw_free(&opt);
    model_free(&m);
    return 0;
}

/* The mirror script sits in the source tree beside the build folder. */
static int find_mirror(char *out, size_t n) {
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        snprintf(out, n, "%s/../tests/mirror/bench_mirror.py", exe);
        if (ml_file_exists(out)) return 0;
    }
    snprintf(out, n, "tests/mirror/bench_mirror.py");
    return ml_file_exists(out) ? 0 : -1;
}

/* Tokens/s of the mirror, fp32 or under CPU autocast to bf16; -1 when it could not run. */
static double bench_mirror(const char *python, int threads, int steps, int warm, int autocast, int balanced) {
    char script[PATH_MAX + 64], nt[16], ns[16], nw[16];
    if (find_mirror(script, sizeof script)) {
        fprintf(stderr, "moelab bench: MIRROR SKIPPED: tests/mirror/bench_mirror.py not found\n");
        return -1;
    }
    snprintf(nt, sizeof nt, "%d", threads);
    snprintf(ns, sizeof ns, "%d", steps);
    snprintf(nw, sizeof nw, "%d", warm);
    /* An argument vector, never a shell line: --python is a path, not a command. */
    char *argv[11] = {(char *)python, script, "--threads", nt, "--steps", ns, "--warmup-steps", nw};
    int argc = 8;
    if (autocast) argv[argc++] = "--autocast-bf16";
    if (balanced) argv[argc++] = "--balanced";
    argv[argc] = NULL;
    fprintf(stderr, "running the PyTorch mirror: %s %s --threads %s --steps %s --warmup-steps %s%s%s\n", python, script,
            nt, ns, nw, autocast ? " --autocast-bf16" : "", balanced ? " --balanced" : "");
    int code;
    char *out = ml_spawn_capture(argv, 0, 1 << 20, &code, NULL);
    double tps = -1;
    const char *at = out ? strstr(out, "\"tok_per_s\":") : NULL;
    if (at) tps = strtod(at + 12, NULL);
    free(out);
    if (code != 0 || !(tps > 0)) {
        fprintf(stderr, "moelab bench: MIRROR FAILED (is python3-torch installed? %s)\n", python);
        return -1;
    }
    return tps;
}

/* OpenBLAS's OpenMP build sets the OpenMP count too, so the BLAS count goes first. */
static void set_split(int omp, int blas) {
    openblas_set_num_threads(blas);
    omp_set_num_threads(omp);
}

static int thread_split(int steps, int warm) {
    int n = omp_get_num_procs();
    int splits[3][2] = {{n, n}, {1, n}, {n, 1}};
    printf("%-10s %-10s %12s\n", "openmp", "blas", "tok/s");
    for (int i = 0; i < 3; i++) {
        set_split(splits[i][0], splits[i][1]);
        MoelabResult r;
        if (bench_moelab(&COARSE, 0, steps, warm, &r)) return -1;
        printf("%-10d %-10d %12.0f\n", splits[i][0], splits[i][1], r.tok_per_s);
        fflush(stdout);
    }
    return 0;
}

/* A whole number in 0..max, else -1 (refused below with the valid ranges). */
static int count_flag(const char *v, long max) {
    char *end;
    long x = strtol(v, &end, 10);
    return *v && !*end && x >= 0 && x <= max ? (int)x : -1;
}

/* Everything one run measures; -1 marks what was not measured. */
typedef struct {
    int threads, fine, balanced;
    Precision headline;
    double peak[2];           /* GEMM peak, FLOP/s, by Precision */
    double blas;              /* OpenBLAS sgemm on the same product */
    MoelabResult coarse[2];   /* by Precision */
    MoelabResult fine_r[2];
    double mirror[2];         /* fp32, autocast bf16 */
} Bench;

static double mfu(const Bench *b, const MoelabResult *r, Precision p) { return r->tok_per_s * r->flops_per_tok / b->peak[p]; }
static double best_mirror(const Bench *b) { return b->mirror[0] > b->mirror[1] ? b->mirror[0] : b->mirror[1]; }

static int run_bench(Bench *b, int steps, int warm, int mirror, const char *python) {
    for (int p = 0; p < 2; p++) {
        if (gemm_set_precision((Precision)p)) return -1;
        b->peak[p] = gemm_peak();
        if (bench_moelab(&COARSE, b->balanced, steps, warm, &b->coarse[p])) return -1;
        if (b->fine && bench_moelab(&FINE, b->balanced, steps, warm, &b->fine_r[p])) return -1;
    }
    gemm_set_precision(PREC_FP32);
    b->blas = blas_peak();
    for (int a = 0; a < 2; a++)
        b->mirror[a] = mirror ? bench_mirror(python, b->threads, steps, warm, a, b->balanced) : -1;
    return 0;
}

static void print_bench(const Bench *b) {
    const MoelabResult *c = b->coarse;
    printf("threads              %d\n", b->threads);
    printf("routing              %s\n", b->balanced ? "balanced: topk with force_balance=1 (moelab and the mirror)"
                                                     : "topk, learned on random tokens (its load may collapse)");
    printf("gemm peak            fp32 %.1f GFLOP/s (oneDNN sgemm; OpenBLAS %.1f), bf16 %.1f GFLOP/s (oneDNN matmul)\n",
           b->peak[0] / 1e9, b->blas / 1e9, b->peak[1] / 1e9);
    printf("params               %zu total, %zu active; %.1f MFLOP/token\n", c[0].total, c[0].active,
           c[0].flops_per_tok / 1e6);
    for (int p = 0; p < 2; p++)
        printf("moelab %s          %.0f tok/s  (MFU %.1f%% of the %s peak, router %.1f%% of step, max expert load "
               "%.2fx the mean)\n",
               precision_name((Precision)p), c[p].tok_per_s, 100 * mfu(b, &c[p], (Precision)p),
               precision_name((Precision)p), 100 * c[p].router_share, c[p].max_load);
    const char *mname[2] = {"pytorch fp32        ", "pytorch autocast bf16"};
    for (int a = 0; a < 2; a++) {
        if (b->mirror[a] > 0)
            printf("%s %.0f tok/s  (MFU %.1f%% of the %s peak)\n", mname[a], b->mirror[a],
                   100 * b->mirror[a] * c[0].flops_per_tok / b->peak[a], a ? "bf16" : "fp32");
        else
            printf("%s not measured\n", mname[a]);
    }
    /* the products' own ratio bounds the step's: the passes around them run at one speed */
    printf("ratio                moelab bf16 / moelab fp32 %.2fx (the peaks: %.2fx)\n", c[1].tok_per_s / c[0].tok_per_s,
           b->peak[1] / b->peak[0]);
    if (best_mirror(b) > 0)
        printf("ratio                moelab bf16 / best pytorch %.2fx, moelab fp32 / pytorch fp32 %.2fx\n",
               c[1].tok_per_s / best_mirror(b), b->mirror[0] > 0 ? c[0].tok_per_s / b->mirror[0] : -1.0);
    if (b->fine)
        for (int p = 0; p < 2; p++)
            printf("fine-grained %s    %.0f tok/s  (E64 k8 d_expert 128: MFU %.1f%%, %.2fx the coarse MFU, router %.1f%% "
                   "of step, max expert load %.2fx the mean)\n",
                   precision_name((Precision)p), b->fine_r[p].tok_per_s, 100 * mfu(b, &b->fine_r[p], (Precision)p),
                   mfu(b, &b->fine_r[p], (Precision)p) / mfu(b, &c[p], (Precision)p), 100 * b->fine_r[p].router_share,
                   b->fine_r[p].max_load);
}

/* Flat keys, so scripts/bench.sh can take medians with grep. The first keys keep their
 * meaning: the --precision moelab against the mirror in fp32. */
static int write_json(const Bench *b, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return ml_fail("cannot write %s", path);
    const MoelabResult *c = b->coarse, *h = &c[b->headline];
    double fpt = c[0].flops_per_tok;
    fprintf(f, "{\"threads\":%d,\"precision\":\"%s\",\"sgemm_peak_gflops\":%.2f,\"bf16_peak_gflops\":%.2f,"
               "\"openblas_peak_gflops\":%.2f,",
            b->threads, precision_name(b->headline), b->peak[0] / 1e9, b->peak[1] / 1e9, b->blas / 1e9);
    fprintf(f, "\"moelab_tok_per_s\":%.1f,\"mirror_tok_per_s\":%.1f,\"ratio\":%.3f,\"mfu\":%.4f,\"mirror_mfu\":%.4f,"
               "\"router_share\":%.4f,\"balanced\":%d,\"max_load\":%.3f,",
            h->tok_per_s, b->mirror[0], b->mirror[0] > 0 ? h->tok_per_s / b->mirror[0] : -1.0,
            mfu(b, h, b->headline), b->mirror[0] > 0 ? b->mirror[0] * fpt / b->peak[0] : -1.0, h->router_share, b->balanced,
            h->max_load);
    fprintf(f, "\"fp32_tok_per_s\":%.1f,\"bf16_tok_per_s\":%.1f,\"fp32_mfu\":%.4f,\"bf16_mfu\":%.4f,"
               "\"mirror_bf16_tok_per_s\":%.1f,\"bf16_over_fp32\":%.3f,\"bf16_peak_over_fp32_peak\":%.3f,"
               "\"bf16_over_best_mirror\":%.3f",
            c[0].tok_per_s, c[1].tok_per_s, mfu(b, &c[0], PREC_FP32), mfu(b, &c[1], PREC_BF16), b->mirror[1],
            c[1].tok_per_s / c[0].tok_per_s, b->peak[1] / b->peak[0],
            best_mirror(b) > 0 ? c[1].tok_per_s / best_mirror(b) : -1.0);
    if (b->fine)
        fprintf(f, ",\"fine_fp32_tok_per_s\":%.1f,\"fine_bf16_tok_per_s\":%.1f,\"fine_fp32_mfu_over_coarse\":%.3f,"
                   "\"fine_bf16_mfu_over_coarse\":%.3f,\"fine_router_share\":%.4f,\"fine_max_load\":%.3f",
                b->fine_r[0].tok_per_s, b->fine_r[1].tok_per_s,
                mfu(b, &b->fine_r[0], PREC_FP32) / mfu(b, &c[0], PREC_FP32),
                mfu(b, &b->fine_r[1], PREC_BF16) / mfu(b, &c[1], PREC_BF16), b->fine_r[b->headline].router_share,
                b->fine_r[b->headline].max_load);
    fprintf(f, "}\n");
    return fclose(f) == 0 ? 0 : ml_fail("cannot write %s", path);
}

int cmd_bench(int argc, char **argv) {
    int threads = 0, steps = 10, warm = 2, mirror = 1, split = 0, rc = 0;
    const char *python = "/usr/bin/python3", *json = NULL;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--router") == 0) return bench_router(argc, argv);
    Bench b;
    memset(&b, 0, sizeof b);
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (cli_is_help(f)) {
            usage();
            return 0;
        }
        if (strcmp(f, "--no-mirror") == 0) mirror = 0;
        else if (strcmp(f, "--thread-split") == 0) split = 1;
        else if (strcmp(f, "--fine") == 0) b.fine = 1;
        else if (strcmp(f, "--balanced") == 0) b.balanced = 1;
        else if (strcmp(f, "--precision") == 0 && v) rc = precision_parse(argv[++i], &b.headline);
        else if (strcmp(f, "--threads") == 0 && v) threads = count_flag(argv[++i], 1024);
        else if (strcmp(f, "--steps") == 0 && v) steps = count_flag(argv[++i], 100000);
        else if (strcmp(f, "--warmup-steps") == 0 && v) warm = count_flag(argv[++i], 100000);
        else if (strcmp(f, "--python") == 0 && v) python = argv[++i];
        else if (strcmp(f, "--json") == 0 && v) json = argv[++i];
        else rc = ml_fail("unknown or incomplete flag '%s'", f);
    }
    if (rc == 0 && (steps < 1 || warm < 0 || threads < 0))
        rc = ml_fail("--steps must be in 1..100000, --warmup-steps in 0..100000, --threads in 0..1024");
    if (rc == 0 && split) rc = thread_split(steps, warm);
    else if (rc == 0) {
        b.threads = set_threads(threads);
        rc = run_bench(&b, steps, warm, mirror, python);
        if (rc == 0) print_bench(&b);
        if (rc == 0 && json) rc = write_json(&b, json);
    }
    if (rc) fprintf(stderr, "moelab bench: %s\n", ml_last_error());
    return rc ? 1 : 0;
}
