#include "cli/commands.h"
#include "core/util.h"
#include "io/checkpoint.h"
#include "io/gguf_export.h"
#include "train/evaluate.h"
#include <stdio.h>
#include <string.h>

static void usage(void) {
    printf("usage: moelab export CHECKPOINT --format gguf --out MODEL.gguf [--type f32|f16|bf16|q8_0]\n"
           "                    [--tokenizer FILE.json | --data DIR] [--approximate --data DIR]\n\n"
           "Writes the model as a GGUF file that llama.cpp runs as it is (llama-cli -m MODEL.gguf),\n"
           "with its tokenizer. The llama.cpp architecture is chosen so that it computes exactly\n"
           "our forward pass: ernie4_5-moe when gates are renormalised, deepseek when not. A model\n"
           "whose router has no exact llama.cpp form is refused, or with --approximate exported as\n"
           "top-k with the loss difference measured (see docs/export.md).\n"
           "  --format gguf      the only format\n"
           "  --out FILE         output file, written atomically\n"
           "  --type T           f32 (default), f16, bf16 or q8_0 for the weight matrices;\n"
           "                     norms and router weights stay f32\n"
           "  --tokenizer FILE   the BPE tokenizer.json the model was trained with\n"
           "  --data DIR         data folder: uses DIR/tokenizer.json (byte-level models need neither)\n"
           "  --approximate      for a router with no exact form: export per-token top-k routing over\n"
           "                     its router weights instead, after measuring on DIR/val.bin the loss\n"
           "                     of both rules; the file is labelled (moelab.approximate) and the\n"
           "                     difference printed\n");
}

static int parse_type(const char *s, GgType *t) {
    static const GgType all[] = {GG_F32, GG_F16, GG_BF16, GG_Q8_0};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(s, gguf_type_name(all[i])) == 0) {
            *t = all[i];
            return 0;
        }
    return ml_fail("--type must be f32, f16, bf16 or q8_0 (got '%s')", s);
}

/* Loss of m with the causal per-token rule on DIR/val.bin. */
static int val_loss(Model *m, const Shard *s, const DataMeta *meta, double *loss) {
    EvalResult ev;
    if (evaluate(m, s, meta, 8, m->cfg.seq_len, 0, ROUTE_INFER, &ev, NULL, NULL)) return -1;
    *loss = ev.loss;
    return 0;
}

/* The top-k stand-in for m (same weights) in *out, and the label saying what it costs. */
static int approximate(Model *m, const char *data, Model *out, char *note, size_t cap) {
    ModelConfig c;
    gguf_topk_stand_in(&m->cfg, &c);
    char path[4096];
    snprintf(path, sizeof path, "%s/val.bin", data);
    Shard s;
    DataMeta meta;
    memset(&s, 0, sizeof s);
    memset(&meta, 0, sizeof meta);
    double own = 0, topk = 0;
    int rc = model_create(out, &c);
    if (rc == 0 && out->table.total != m->table.total)
        rc = ml_fail("router %s has a parameter layout top-k cannot use", m->cfg.router);
    if (rc == 0) memcpy(out->params, m->params, m->table.total * sizeof(float));
    if (rc == 0) rc = shard_load(&s, path);
    if (rc == 0) rc = data_meta_load(&meta, data);
    if (rc == 0 && s.vocab_size != m->cfg.vocab_size)
        rc = ml_fail("%s has vocab %d but the model has %d", path, s.vocab_size, m->cfg.vocab_size);
    if (rc == 0) rc = val_loss(m, &s, &meta, &own);
    if (rc == 0) rc = val_loss(out, &s, &meta, &topk);
    if (rc == 0)
        snprintf(note, cap, "router %s exported as per-token top-k (renorm %d): loss on %s %.6f with its own rule, "
                 "%.6f with top-k (%+.6f nats/token)", m->cfg.router, c.renorm, path, own, topk, topk - own);
    shard_free(&s);
    data_meta_free(&meta);
    return rc;
}

int cmd_export(int argc, char **argv) {
    const char *ckpt = NULL, *format = NULL, *out = NULL, *tok_path = NULL, *data_dir = NULL, *v;
    GgType type = GG_F32;
    int rc = 0, missing = 0, approx = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        if (cli_is_help(argv[i])) {
            usage();
            return 0;
        }
        if ((v = cli_flag_value(argc, argv, &i, "--format", &missing))) format = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--out", &missing))) out = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--type", &missing))) rc = parse_type(v, &type);
        else if ((v = cli_flag_value(argc, argv, &i, "--tokenizer", &missing))) tok_path = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--data", &missing))) data_dir = v;
        else if (strcmp(argv[i], "--approximate") == 0) approx = 1;
        else if (missing) rc = ml_fail("%s needs a value", argv[i]);
        else if (argv[i][0] == '-') rc = ml_fail("unknown flag '%s' (see moelab export --help)", argv[i]);
        else if (!ckpt) ckpt = argv[i];
        else rc = ml_fail("unexpected argument '%s'", argv[i]);
    }
    if (rc == 0 && !ckpt) rc = ml_fail("a CHECKPOINT is required");
    if (rc == 0 && !format) rc = ml_fail("--format is required (gguf)");
    if (rc == 0 && strcmp(format, "gguf") != 0) rc = ml_fail("unknown --format '%s' (gguf is the only one)", format);
    if (rc == 0 && !out) rc = ml_fail("--out FILE is required");
    if (rc == 0 && approx && !data_dir) rc = ml_fail("--approximate needs --data DIR to measure the loss it costs");
    char data_tok[4096];
    if (rc == 0 && !tok_path && data_dir) {
        snprintf(data_tok, sizeof data_tok, "%s/tokenizer.json", data_dir);
        if (ml_file_exists(data_tok)) tok_path = data_tok;
    }
    Model m, stand_in;
    TrainConfig tc;
    memset(&m, 0, sizeof m);
    memset(&stand_in, 0, sizeof stand_in);
    Tokenizer *tok = NULL;
    GgufPlan plan;
    int fallback = 0;
    char note[4400] = "";
    if (rc == 0) rc = checkpoint_load_model(ckpt, &m, &tc);
    if (rc == 0 && tok_path) rc = tok_load(&tok, tok_path);
    Model *src = &m;
    if (rc == 0 && gguf_plan(&m, &plan) && approx) {
        rc = approximate(&m, data_dir, &stand_in, note, sizeof note);
        src = &stand_in;
    }
    if (rc == 0) rc = gguf_export(src, tok, type, out, &fallback, note[0] ? note : NULL);
    if (rc == 0) {
        gguf_plan(src, &plan);
        if (note[0]) fprintf(stderr, "moelab export: APPROXIMATE: %s\n", note);
        fprintf(stderr, "moelab export: wrote %s (llama.cpp architecture %s, %s%s)\n", out, plan.arch,
                gguf_type_name(type), fallback ? ", some narrow matrices f16" : "");
    } else {
        fprintf(stderr, "moelab export: %s\n", ml_last_error());
    }
    tok_free(tok);
    if (m.params) model_free(&m);
    if (stand_in.params) model_free(&stand_in);
    return rc ? 1 : 0;
}
