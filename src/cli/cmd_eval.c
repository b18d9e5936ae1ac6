#include "cli/commands.h"
#include "core/gemm.h"
#include "core/util.h"
#include "model/sizes.h"
#include "io/checkpoint.h"
#include "io/jsonl.h"
#include "train/evaluate.h"
#include "train/trainer.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void) {
    printf("usage: moelab eval CHECKPOINT --data DIR [--split val|train] [--batch B] [--batches N] [--mode eval|infer] [--threads N]\n"
           "                  [--precision fp32|bf16] [--router NAME] [--router-opts KEY=VALUE,...] [--json]\n\n"
           "Mean loss (nats/token) and bits per byte of CHECKPOINT (a run folder or a .safetensors file)\n"
           "on DIR/<split>.bin, overall and per domain (when the data has several). --json prints one\n"
           "object: split, mode, loss, bpb, tokens, and domains: {name: {loss, bpb, tokens}}.\n"
           "--batches 0 (default) covers the whole split; N > 0 evaluates N batches of windows spread\n"
           "evenly over it (as training's periodic evaluation does). --mode infer uses the causal per-token\n"
           "routing rule of generation; eval (default) the training rule.\n"
           "--router-opts: the router's options at evaluation (e.g. eval_select=topk), its state kept.\n"
           "--router runs the checkpoint under another router, training-free (e.g. usmoe on a topk checkpoint:\n"
           "it reuses the router weights; its calibrated state starts empty, so infer falls back to top-k),\n"
           "with --router-opts as that router's options.\n"
           "--precision bf16 rounds matmul inputs to bfloat16 (fp32 accumulation); checkpoints are fp32.\n");
}

static int parse_int(const char *flag, const char *v, int lo, int *out) {
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || x < lo || x > 1 << 30) return ml_fail("%s needs an integer >= %d", flag, lo);
    *out = (int)x;
    return 0;
}

/* One line per domain follows the overall line when the data has several domains. */
static void print_text(const char *split, const char *mode, const EvalResult *ev) {
    printf("%s (%s routing): loss %.4f | bits per byte %.4f | %ld tokens\n", split, mode, ev->loss, ev->bpb, ev->tokens);
    for (int d = 0; ev->n_domains > 1 && d < ev->n_domains; d++) {
        const EvalDomain *x = &ev->domains[d];
        if (x->tokens > 0)
            printf("  %-16s loss %.4f | bits per byte %.4f | %ld tokens\n", x->name, x->loss, x->bpb, x->tokens);
        else
            printf("  %-16s no tokens in the evaluated batches\n", x->name);
    }
}

/* "domains" maps each domain with tokens to its loss, bits per byte and token count;
 * a non-finite loss (a diverged model) is null. -1 (ml_fail) when stdout fails. */
static int print_json(const char *split, const char *mode, const EvalResult *ev) {
    fflush(stdout);
    FILE *out = jsonl_fdopen(1);
    if (!out) return -1;
    fprintf(out, "{\"split\":\"%s\",\"mode\":\"%s\",\"loss\":%.6f,\"bpb\":%.6f,\"tokens\":%ld,\"domains\":{", split, mode,
            ev->loss, ev->bpb, ev->tokens);
    int first = 1;
    for (int d = 0; d < ev->n_domains; d++) {
        const EvalDomain *x = &ev->domains[d];
        if (x->tokens == 0 || !eval_domain_name_ok(x->name)) continue;
        fprintf(out, "%s\"%s\":{\"loss\":%.6f,\"bpb\":%.6f,\"tokens\":%ld}", first ? "" : ",", x->name, x->loss, x->bpb,
                x->tokens);
        first = 0;
    }
    fprintf(out, "}}\n");
    return fclose(out) == 0 ? 0 : ml_fail("cannot write standard output: %s", strerror(errno));
}

int cmd_eval(int argc, char **argv) {
    const char *ckpt = NULL, *data = NULL, *split = "val", *mode_s = "eval", *router = NULL, *ropts = NULL;
    int batch = 8, batches = 0, threads = 0, json = 0, rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (cli_is_help(f)) {
            usage();
            return 0;
        }
        if (strcmp(f, "--json") == 0) json = 1;
        else if (strcmp(f, "--data") == 0 && v) data = argv[++i];
        else if (strcmp(f, "--split") == 0 && v) split = argv[++i];
        else if (strcmp(f, "--mode") == 0 && v) mode_s = argv[++i];
        else if (strcmp(f, "--router") == 0 && v) router = argv[++i];
        else if (strcmp(f, "--router-opts") == 0 && v) ropts = argv[++i];
        else if (strcmp(f, "--batch") == 0) rc = parse_int(f, v, 1, &batch), i++;
        else if (strcmp(f, "--batches") == 0) rc = parse_int(f, v, 0, &batches), i++;
        else if (strcmp(f, "--threads") == 0) rc = parse_int(f, v, 0, &threads), i++;
        else if (strcmp(f, "--precision") == 0 && v) rc = gemm_set_precision_name(argv[++i]);
        else if (f[0] == '-') rc = ml_fail("unknown or incomplete flag '%s' (see moelab eval --help)", f);
        else if (!ckpt) ckpt = f;
        else rc = ml_fail("unexpected argument '%s'", f);
    }
    if (rc == 0 && !ckpt) rc = ml_fail("a CHECKPOINT is required");
    if (rc == 0 && threads > 1024) rc = ml_fail("--threads must be in 0..1024 (0: all cores)");
    if (rc == 0 && !data) rc = ml_fail("--data DIR is required");
    if (rc == 0 && strcmp(split, "val") && strcmp(split, "train")) rc = ml_fail("--split must be val or train");
    if (rc == 0 && strcmp(mode_s, "eval") && strcmp(mode_s, "infer")) rc = ml_fail("--mode must be eval or infer");
    Model m;
    TrainConfig tc;
    Shard s;
    DataMeta meta;
    memset(&m, 0, sizeof m);
    memset(&s, 0, sizeof s);
    memset(&meta, 0, sizeof meta);
    set_threads(threads);
    if (rc == 0) rc = cli_load_model_and_split(ckpt, data, split, &m, &tc, &s);
    if (rc == 0 && router) rc = model_switch_router(&m, router, ropts);
    else if (rc == 0 && ropts) rc = cli_router_opts(&m, ropts);
    if (rc == 0) rc = data_meta_load(&meta, data);
    if (rc == 0) rc = sizes_check_run(&m.cfg, batch, m.cfg.seq_len, 0);
    EvalResult ev;
    if (rc == 0) rc = evaluate(&m, &s, &meta, batch, m.cfg.seq_len, batches, strcmp(mode_s, "infer") ? ROUTE_EVAL : ROUTE_INFER, &ev, NULL, NULL);
    if (rc == 0) {
        if (json) rc = print_json(split, mode_s, &ev);
        else print_text(split, mode_s, &ev);
    }
    if (rc) fprintf(stderr, "moelab eval: %s\n", ml_last_error());
    shard_free(&s);
    data_meta_free(&meta);
    if (m.params) model_free(&m);
    return rc ? 1 : 0;
}
