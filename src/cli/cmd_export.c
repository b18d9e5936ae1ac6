#include "cli/commands.h"
#include "core/util.h"
#include "io/checkpoint.h"
#include "io/gguf_export.h"
#include <stdio.h>
#include <string.h>

static void usage(void) {
    printf("usage: moelab export CHECKPOINT --format gguf --out MODEL.gguf [--type f32|f16|bf16|q8_0]\n"
           "                    [--tokenizer FILE.json | --data DIR]\n\n"
           "Writes the model as a GGUF file that llama.cpp runs as it is (llama-cli -m MODEL.gguf),\n"
           "with its tokenizer. The llama.cpp architecture is chosen so that it computes exactly\n"
           "our forward pass: ernie4_5-moe when gates are renormalised, deepseek when not. A model\n"
           "whose router has no exact llama.cpp form is refused (see docs/export.md).\n"
           "  --format gguf      the only format\n"
           "  --out FILE         output file, written atomically\n"
           "  --type T           f32 (default), f16, bf16 or q8_0 for the weight matrices;\n"
           "                     norms and router weights stay f32\n"
           "  --tokenizer FILE   the BPE tokenizer.json the model was trained with\n"
           "  --data DIR         data folder: uses DIR/tokenizer.json (byte-level models need neither)\n");
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

int cmd_export(int argc, char **argv) {
    const char *ckpt = NULL, *format = NULL, *out = NULL, *tok_path = NULL, *data_dir = NULL, *v;
    GgType type = GG_F32;
    int rc = 0, missing = 0;
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
        else if (missing) rc = ml_fail("%s needs a value", argv[i]);
        else if (argv[i][0] == '-') rc = ml_fail("unknown flag '%s' (see moelab export --help)", argv[i]);
        else if (!ckpt) ckpt = argv[i];
        else rc = ml_fail("unexpected argument '%s'", argv[i]);
    }
    if (rc == 0 && !ckpt) rc = ml_fail("a CHECKPOINT is required");
    if (rc == 0 && !format) rc = ml_fail("--format is required (gguf)");
    if (rc == 0 && strcmp(format, "gguf") != 0) rc = ml_fail("unknown --format '%s' (gguf is the only one)", format);
    if (rc == 0 && !out) rc = ml_fail("--out FILE is required");
    char data_tok[4096];
    if (rc == 0 && !tok_path && data_dir) {
        snprintf(data_tok, sizeof data_tok, "%s/tokenizer.json", data_dir);
        if (ml_file_exists(data_tok)) tok_path = data_tok;
    }
    Model m;
    TrainConfig tc;
    memset(&m, 0, sizeof m);
    Tokenizer *tok = NULL;
    int fallback = 0;
    if (rc == 0) rc = checkpoint_load_model(ckpt, &m, &tc);
    if (rc == 0 && tok_path) rc = tok_load(&tok, tok_path);
    if (rc == 0) rc = gguf_export(&m, tok, type, out, &fallback);
    if (rc == 0) {
        GgufPlan plan;
        gguf_plan(&m, &plan);
        fprintf(stderr, "moelab export: wrote %s (llama.cpp architecture %s, %s%s)\n", out, plan.arch,
                gguf_type_name(type), fallback ? ", some narrow matrices f16" : "");
    } else {
        fprintf(stderr, "moelab export: %s\n", ml_last_error());
    }
    tok_free(tok);
    if (m.params) model_free(&m);
    return rc ? 1 : 0;
}
