/* moelab bench: training throughput of moelab and of the PyTorch mirror on the same
 * config and thread count, in one run, with MFU against this machine's measured sgemm peak. */
#include "cli/bench_router.h"
#include "cli/commands.h"
#include "core/spawn.h"
#include "core/util.h"
#include "model/model.h"
#include "model/optim.h"
#include "train/trainer.h"
#include <cblas.h>
#include <limits.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(void) {
    printf("usage: moelab bench [--threads N] [--steps S] [--warmup-steps W] [--no-mirror] [--python PATH] [--json FILE]\n"
           "       moelab bench --thread-split [--steps S] [--warmup-steps W]\n\n"
           "Trains the benchmark config (d_model 256, 4 layers, 4 heads, 8 experts, top-2, d_expert 512,\n"
           "seq 256, batch 16, byte vocab) on random tokens in moelab and in the PyTorch mirror\n"
           "(tests/mirror/bench_mirror.py, run with Debian's /usr/bin/python3), with the same thread count.\n"
           "Prints median tokens/s of both, their ratio, and MFU = FLOPs/s / measured cblas_sgemm peak,\n"
           "with FLOPs/token = 6 x active parameters + 6 x layers x d_model x seq_len (causal attention).\n"
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

/* Best of several square sgemms: the machine's attainable fp32 GEMM rate with these threads. */
static double sgemm_peak(void) {
    int n = 2048;
    float *a = ml_malloc((size_t)n * n * sizeof(float)), *b = ml_malloc((size_t)n * n * sizeof(float)),
          *c = ml_malloc((size_t)n * n * sizeof(float));
    for (size_t i = 0; i < (size_t)n * n; i++) a[i] = b[i] = 1e-3f * (float)(i % 13);
    double best = 0.0;
    for (int r = 0; r < 6; r++) {
        double t = ml_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        t = ml_now() - t;
        if (r > 0 && 2.0 * n * n * n / t > best) best = 2.0 * n * n * n / t;
    }
    free(a), free(b), free(c);
    return best;
}

typedef struct {
    double tok_per_s, router_share, flops_per_tok;
    size_t total, active;
} MoelabResult;

static int bench_moelab(int steps, int warm, MoelabResult *res) {
    TrainConfig tc;
    config_defaults(&tc);
    ModelConfig *c = &tc.model;
    c->n_layers = 4, c->d_model = 256, c->n_heads = 4, c->seq_len = 256, c->vocab_size = 256;
    c->n_experts = 8, c->top_k = 2, c->d_expert = 512;
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
        }
        fprintf(stderr, "\rmoelab step %d/%d: %.3f s", s + 1, warm + steps, t);
    }
    fprintf(stderr, "\n");
    params_count(&m.table, &m.cfg, m.router_rows, &res->total, &res->active);
    res->tok_per_s = BT / median(dt, steps);
    res->router_share = median(share, steps);
    res->flops_per_tok = 6.0 * res->active + 6.0 * c->n_layers * c->d_model * c->seq_len;
    free(inp), free(tgt), free(dt), free(share);
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

static double bench_mirror(const char *python, int threads, int steps, int warm) {
    char script[PATH_MAX + 64], nt[16], ns[16], nw[16];
    if (find_mirror(script, sizeof script)) {
        fprintf(stderr, "moelab bench: MIRROR SKIPPED: tests/mirror/bench_mirror.py not found\n");
        return -1;
    }
    snprintf(nt, sizeof nt, "%d", threads);
    snprintf(ns, sizeof ns, "%d", steps);
    snprintf(nw, sizeof nw, "%d", warm);
    /* An argument vector, never a shell line: --python is a path, not a command. */
    char *argv[] = {(char *)python, script, "--threads", nt, "--steps", ns, "--warmup-steps", nw, NULL};
    fprintf(stderr, "running the PyTorch mirror: %s %s --threads %s --steps %s --warmup-steps %s\n", python, script, nt,
            ns, nw);
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
        if (bench_moelab(steps, warm, &r)) return -1;
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

int cmd_bench(int argc, char **argv) {
    int threads = 0, steps = 10, warm = 2, mirror = 1, split = 0;
    const char *python = "/usr/bin/python3", *json = NULL;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--router") == 0) return bench_router(argc, argv);
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (cli_is_help(f)) {
            usage();
            return 0;
        }
        if (strcmp(f, "--no-mirror") == 0) mirror = 0;
        else if (strcmp(f, "--thread-split") == 0) split = 1;
        else if (strcmp(f, "--threads") == 0 && v) threads = count_flag(argv[++i], 1024);
        else if (strcmp(f, "--steps") == 0 && v) steps = count_flag(argv[++i], 100000);
        else if (strcmp(f, "--warmup-steps") == 0 && v) warm = count_flag(argv[++i], 100000);
        else if (strcmp(f, "--python") == 0 && v) python = argv[++i];
        else if (strcmp(f, "--json") == 0 && v) json = argv[++i];
        else {
            fprintf(stderr, "moelab bench: unknown or incomplete flag '%s'\n", f);
            return 1;
        }
    }
    if (steps < 1 || warm < 0 || threads < 0) {
        fprintf(stderr, "moelab bench: --steps must be in 1..100000, --warmup-steps in 0..100000, --threads in 0..1024\n");
        return 1;
    }
    if (split) {
        if (thread_split(steps, warm) == 0) return 0;
        fprintf(stderr, "moelab bench: %s\n", ml_last_error());
        return 1;
    }
    threads = set_threads(threads);
    double peak = sgemm_peak();
    MoelabResult r;
    if (bench_moelab(steps, warm, &r)) {
        fprintf(stderr, "moelab bench: %s\n", ml_last_error());
        return 1;
    }
    double mirror_tps = mirror ? bench_mirror(python, threads, steps, warm) : -1;
    double mfu = r.tok_per_s * r.flops_per_tok / peak;
    printf("threads            %d\n", threads);
    printf("sgemm peak         %.1f GFLOP/s\n", peak / 1e9);
    printf("params             %zu total, %zu active; %.1f MFLOP/token\n", r.total, r.active, r.flops_per_tok / 1e6);
    printf("moelab             %.0f tok/s  (MFU %.1f%%, router %.1f%% of step)\n", r.tok_per_s, 100 * mfu, 100 * r.router_share);
    if (mirror_tps > 0) {
        printf("pytorch mirror     %.0f tok/s  (MFU %.1f%%)\n", mirror_tps, 100 * mirror_tps * r.flops_per_tok / peak);
        printf("ratio              %.2fx  (moelab / mirror)\n", r.tok_per_s / mirror_tps);
    } else {
        printf("pytorch mirror     not measured\n");
    }
    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) {
            fprintf(stderr, "moelab bench: cannot write %s\n", json);
            return 1;
        }
        fprintf(f, "{\"threads\":%d,\"sgemm_peak_gflops\":%.2f,\"moelab_tok_per_s\":%.1f,\"mirror_tok_per_s\":%.1f,\"ratio\":%.3f,\"mfu\":%.4f,\"mirror_mfu\":%.4f,\"router_share\":%.4f}\n",
                threads, peak / 1e9, r.tok_per_s, mirror_tps, mirror_tps > 0 ? r.tok_per_s / mirror_tps : -1.0, mfu,
                mirror_tps > 0 ? mirror_tps * r.flops_per_tok / peak : -1.0, r.router_share);
        fclose(f);
    }
    return 0;
}
