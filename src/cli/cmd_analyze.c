/* `moelab analyze`: every routing metric of a checkpoint on a data split, as JSON
 * (docs/metrics.md has the schema) and a per-layer table. */
#include "cli/commands.h"
#include "core/util.h"
#include "model/sizes.h"
#include "io/checkpoint.h"
#include "metrics/metrics.h"
#include "train/trainer.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void) {
    printf("usage: moelab analyze CHECKPOINT --data DIR [--split val|train] [--batch B] [--batches N]\n"
           "                      [--mode eval|infer] [--probe-tokens N] [--threads N] [--out FILE.json]\n\n"
           "Routing metrics of CHECKPOINT (a run folder or a .safetensors file) on DIR/<split>.bin, per\n"
           "MoE layer: expert load, load_cv, maxvio, dead_frac, route_entropy, usage_entropy, drop_frac,\n"
           "experts-per-token histogram, co-occurrence (cooc, overlap), expert_sim on probe tokens,\n"
           "domain_mi and the domain x expert counts, and how the chosen experts compare with the router's\n"
           "own top-k by probability (sel_differ, sel_mass, sel_mass_abs, sel_outside). Definitions: docs/metrics.md.\n\n"
           "  --split S          val (default) or train\n"
           "  --batch B          sequences per batch (default 8)\n"
           "  --batches N        batches to cover (default 0: the whole split)\n"
           "  --mode M           eval (default: the training routing rule) or infer (causal per-token rule)\n"
           "  --router-opts O    the router's options at evaluation (e.g. mpmoe eval_select=topk)\n"
           "  --probe-tokens N   tokens of each batch that every expert runs on, for expert_sim (default %d, 0: off)\n"
           "  --threads N        threads (default: all cores)\n"
           "  --out FILE         write the JSON there (atomically) and print a table; default: JSON on stdout\n",
           METRICS_PROBE_PER_BATCH);
}

static int parse_int(const char *flag, const char *v, int lo, int *out) {
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || x < lo || x > 1 << 30) return ml_fail("%s needs an integer >= %d", flag, lo);
    *out = (int)x;
    return 0;
}

typedef struct {
    const char *ckpt, *data, *split, *mode, *out, *ropts;
    int batch, batches, probe, threads;
} AnalyzeArgs;

typedef struct {
    const AnalyzeArgs *a;
    const Model *m;
    const Shard *s;
    const Metrics *mt;
} Doc;

static int write_doc(FILE *f, void *ctx) {
    const Doc *d = ctx;
    fputs("{\"checkpoint\":", f);
    metrics_json_string(f, d->a->ckpt);
    fputs(",\"data\":", f);
    metrics_json_string(f, d->a->data);
    fprintf(f, ",\"split\":\"%s\",\"mode\":\"%s\",\"router\":", d->a->split, d->a->mode);
    metrics_json_string(f, d->m->cfg.router);
    fprintf(f, ",\"n_layers\":%d,\"batch\":%d,\"seq_len\":%d,\"probe_tokens\":%d", d->m->cfg.n_layers, d->a->batch,
            d->m->cfg.seq_len, d->a->probe);
    metrics_json_full(f, d->mt, (const char (*)[SHARD_NAME_LEN])d->s->domains);
    fputs("}\n", f);
    return ferror(f) ? ml_fail("write error") : 0;
}

static void cell(double v) {
    if (isfinite(v)) printf(" %9.4f", v);
    else printf(" %9s", "-");
}

static void print_table(const Metrics *mt) {
    static const char *cols[] = {"load_cv", "maxvio", "dead_frac", "route_entropy", "usage_entropy", "drop_frac",
                                 "overlap", "expert_sim", "domain_mi", "sel_differ", "sel_mass", "sel_outside"};
    static const char *heads[] = {"load_cv", "maxvio", "dead", "route_H", "usage_H", "drop", "overlap", "exp_sim", "dom_mi",
                                  "sel_diff", "sel_mass", "sel_out"};
    int n = sizeof cols / sizeof cols[0];
    printf("layer");
    for (int c = 0; c < n; c++) printf(" %9s", heads[c]);
    printf("\n");
    for (int i = 0; i <= mt->n_moe; i++) {
        const LayerMetrics *lm = i < mt->n_moe ? &mt->m[i] : &mt->mean;
        if (i < mt->n_moe) printf("%5d", lm->layer);
        else printf(" mean");
        for (int c = 0; c < n; c++)
            for (int f = 0; f < N_METRIC_FIELDS; f++)
                if (strcmp(METRIC_FIELDS[f].name, cols[c]) == 0) cell(metric_value(lm, f));
        printf("\n");
    }
}

static int parse_args(int argc, char **argv, AnalyzeArgs *a, int *help) {
    *a = (AnalyzeArgs){.split = "val", .mode = "eval", .batch = 8, .probe = METRICS_PROBE_PER_BATCH};
    *help = 0;
    int rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (cli_is_help(f)) return *help = 1, 0;
        if (strcmp(f, "--data") == 0 && v) a->data = argv[++i];
        else if (strcmp(f, "--split") == 0 && v) a->split = argv[++i];
        else if (strcmp(f, "--mode") == 0 && v) a->mode = argv[++i];
        else if (strcmp(f, "--router-opts") == 0 && v) a->ropts = argv[++i];
        else if (strcmp(f, "--out") == 0 && v) a->out = argv[++i];
        else if (strcmp(f, "--batch") == 0) rc = parse_int(f, v, 1, &a->batch), i++;
        else if (strcmp(f, "--batches") == 0) rc = parse_int(f, v, 0, &a->batches), i++;
        else if (strcmp(f, "--probe-tokens") == 0) rc = parse_int(f, v, 0, &a->probe), i++;
        else if (strcmp(f, "--threads") == 0) rc = parse_int(f, v, 0, &a->threads), i++;
        else if (f[0] == '-') rc = ml_fail("unknown or incomplete flag '%s' (see moelab analyze --help)", f);
        else if (!a->ckpt) a->ckpt = f;
        else rc = ml_fail("unexpected argument '%s'", f);
    }
    if (rc == 0 && a->threads > 1024) rc = ml_fail("--threads must be in 0..1024 (0: all cores)");
    if (rc == 0 && !a->ckpt) rc = ml_fail("a CHECKPOINT is required");
    if (rc == 0 && !a->data) rc = ml_fail("--data DIR is required");
    if (rc == 0 && strcmp(a->split, "val") && strcmp(a->split, "train")) rc = ml_fail("--split must be val or train (got '%s')", a->split);
    if (rc == 0 && strcmp(a->mode, "eval") && strcmp(a->mode, "infer")) rc = ml_fail("--mode must be eval or infer (got '%s')", a->mode);
    return rc;
}

int cmd_analyze(int argc, char **argv) {
    AnalyzeArgs a;
    int help, rc = parse_args(argc, argv, &a, &help);
    if (help) {
        usage();
        return 0;
    }
    Model m;
    TrainConfig tc;
    Shard s;
    Metrics mt;
    memset(&m, 0, sizeof m);
    memset(&s, 0, sizeof s);
    memset(&mt, 0, sizeof mt);
    set_threads(a.threads);
    if (rc == 0) rc = cli_load_model_and_split(a.ckpt, a.data, a.split, &m, &tc, &s);
    if (rc == 0) rc = sizes_check_run(&m.cfg, a.batch, m.cfg.seq_len, 0);
    if (rc == 0 && a.ropts) rc = cli_router_opts(&m, a.ropts);
    if (rc == 0) {
        metrics_init(&mt, &m.cfg, s.n_domains, METRICS_FULL);
        mt.probe_tokens = a.probe;
        if (mt.n_moe == 0) rc = ml_fail("the model has no MoE layer (all %d are dense): nothing to analyse", m.cfg.n_layers);
    }
    if (rc == 0) rc = metrics_collect(&mt, &m, &s, a.batch, m.cfg.seq_len, a.batches, strcmp(a.mode, "infer") ? ROUTE_EVAL : ROUTE_INFER);
    Doc doc = {&a, &m, &s, &mt};
    if (rc == 0 && a.out) rc = ml_write_atomic_with(a.out, write_doc, &doc);
    if (rc == 0 && a.out) {
        printf("%s split, %ld batches, %ld tokens, %s routing -> %s\n", a.split, mt.batches, mt.st[0].tokens, a.mode, a.out);
        print_table(&mt);
    }
    if (rc == 0 && !a.out) rc = write_doc(stdout, &doc);
    if (rc) fprintf(stderr, "moelab analyze: %s\n", ml_last_error());
    metrics_free(&mt);
    shard_free(&s);
    if (m.params) model_free(&m);
    return rc ? 1 : 0;
}
