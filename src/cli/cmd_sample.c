#include "cli/commands.h"
#include "core/gemm.h"
#include "core/util.h"
#include "data/tokenizer.h"
#include "io/checkpoint.h"
#include "train/trainer.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BYTE_VOCAB 257 /* bytes 0..255 and end-of-text */
#define EOT 256

static void usage(void) {
    printf("usage: moelab sample CHECKPOINT [--prompt TEXT] [--tokens N] [--temperature T] [--top-p P] [--seed S]\n"
           "                    [--tokenizer FILE.json | --data DIR] [--precision fp32|bf16]\n\n"
           "Generates text with a KV cache, routing each token by the causal per-token rule.\n"
           "Byte-level models (vocab 257) need no tokenizer; BPE models need the tokenizer.json\n"
           "they were trained with, given directly or as the data folder that holds it.\n"
           "  --prompt TEXT      start of the text (default: start of a document)\n"
           "  --tokens N         tokens to generate (default 200, at most seq_len minus the prompt)\n"
           "  --temperature T    0 is greedy (default 0.8)\n"
           "  --top-p P          nucleus sampling mass in (0,1] (default 0.95)\n"
           "  --seed S           sampling seed (default 1)\n"
           "  --router-opts O    the router's options for generation (e.g. mpmoe eval_select=topk)\n"
           "  --tokenizer FILE   BPE tokenizer (tokenizer.json) to encode the prompt and decode tokens\n"
           "  --data DIR         data folder: uses DIR/tokenizer.json when it exists\n"
           "  --precision P      fp32 (default) or bf16: matmul inputs rounded to bfloat16, fp32 accumulation\n");
}

typedef struct {
    int id;
    float p;
} Cand;

static int by_prob(const void *a, const void *b) {
    float x = ((const Cand *)a)->p, y = ((const Cand *)b)->p;
    if (x != y) return x < y ? 1 : -1;
    return ((const Cand *)a)->id - ((const Cand *)b)->id;
}

/* Temperature, then the smallest set of most probable tokens whose mass reaches top_p. */
static int sample_token(const float *logits, int V, float temp, float top_p, Rng *rng, Cand *c) {
    if (temp <= 0.0f) {
        int best = 0;
        for (int i = 1; i < V; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }
    float mx = -INFINITY, sum = 0.0f;
    for (int i = 0; i < V; i++) mx = fmaxf(mx, logits[i]);
    for (int i = 0; i < V; i++) {
        c[i].id = i;
        sum += (c[i].p = expf((logits[i] - mx) / temp));
    }
    qsort(c, V, sizeof *c, by_prob);
    float keep = 0.0f;
    int n = 0;
    while (n < V && keep < top_p * sum) keep += c[n++].p;
    float r = rng_uniform(rng) * keep;
    for (int i = 0; i < n; i++) {
        r -= c[i].p;
        if (r <= 0.0f) return c[i].id;
    }
    return c[n - 1].id;
}

static int parse_num(const char *flag, const char *v, double lo, double hi, double *out) {
    char *end;
    double x = v ? strtod(v, &end) : 0;
    if (!v || !*v || *end || !(x >= lo && x <= hi)) return ml_fail("%s needs a number in [%g, %g]", flag, lo, hi);
    *out = x;
    return 0;
}

int cmd_sample(int argc, char **argv) {
    const char *ckpt = NULL, *prompt = "", *tok_path = NULL, *data_dir = NULL, *ropts = NULL;
    double n_tok = 200, temp = 0.8, top_p = 0.95, seed = 1;
    int rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (cli_is_help(f)) {
            usage();
            return 0;
        }
        if (strcmp(f, "--prompt") == 0 && v) prompt = argv[++i];
        else if (strcmp(f, "--tokenizer") == 0 && v) tok_path = argv[++i];
        else if (strcmp(f, "--data") == 0 && v) data_dir = argv[++i];
        else if (strcmp(f, "--router-opts") == 0 && v) ropts = argv[++i];
        else if (strcmp(f, "--tokens") == 0) rc = parse_num(f, v, 1, 1 << 20, &n_tok), i++;
        else if (strcmp(f, "--temperature") == 0) rc = parse_num(f, v, 0, 100, &temp), i++;
        else if (strcmp(f, "--top-p") == 0) rc = parse_num(f, v, 1e-6, 1, &top_p), i++;
        else if (strcmp(f, "--seed") == 0) rc = parse_num(f, v, 0, 1e15, &seed), i++;
        else if (strcmp(f, "--precision") == 0 && v) rc = gemm_set_precision_name(argv[++i]);
        else if (f[0] == '-') rc = ml_fail("unknown or incomplete flag '%s' (see moelab sample --help)", f);
        else if (!ckpt) ckpt = f;
        else rc = ml_fail("unexpected argument '%s'", f);
    }
    if (rc == 0 && !ckpt) rc = ml_fail("a CHECKPOINT is required");
    Model m;
    TrainConfig tc;
    memset(&m, 0, sizeof m);
    set_threads(1); /* one token at a time: threads only add synchronisation */
    if (rc == 0) rc = checkpoint_load_model(ckpt, &m, &tc);
    if (rc == 0) cli_warn_nonfinite(ckpt, &m);
    if (rc == 0 && ropts) rc = cli_router_opts(&m, ropts);
    char data_tok[4096];
    if (!tok_path && data_dir) {
        snprintf(data_tok, sizeof data_tok, "%s/tokenizer.json", data_dir);
        if (ml_file_exists(data_tok)) tok_path = data_tok;
    }
    Tokenizer *tok = NULL;
    if (rc == 0 && tok_path) rc = tok_load(&tok, tok_path);
    if (rc == 0 && tok && tok_vocab_size(tok) != m.cfg.vocab_size)
        rc = ml_fail("%s has %d tokens but the model has vocab %d", tok_path, tok_vocab_size(tok), m.cfg.vocab_size);
    if (rc == 0 && !tok && m.cfg.vocab_size != BYTE_VOCAB)
        rc = ml_fail("this model has vocab %d, not the byte-level %d: give its tokenizer with --tokenizer FILE.json "
                     "or --data DIR", m.cfg.vocab_size, BYTE_VOCAB);
    /* The prompt as token ids: bytes for byte-level models, BPE ids otherwise. */
    int plen = (int)strlen(prompt), T = m.cfg.seq_len, eot = tok ? tok_eot_id(tok) : EOT;
    TokIds pids = {0};
    if (tok) tok_encode(tok, prompt, (size_t)plen, &pids);
    else
        for (int i = 0; i < plen; i++) tok_ids_push(&pids, (unsigned char)prompt[i]);
    if (rc == 0 && (int)pids.n + 1 >= T)
        rc = ml_fail("the prompt (%zu tokens) does not fit the context (%d tokens)", pids.n, T);
    if (rc) {
        fprintf(stderr, "moelab sample: %s\n", ml_last_error());
        if (m.params) model_free(&m);
        tok_free(tok);
        free(pids.ids);
        return 1;
    }
    KVCache kv;
    kv_create(&kv, &m, T);
    Rng rng;
    rng_seed(&rng, (uint64_t)seed);
    Cand *cand = ml_malloc(sizeof(Cand) * m.cfg.vocab_size);
    /* The context starts with end-of-text, as every document follows one in training. */
    int pos = 0, id = eot;
    const float *logits = model_decode_step(&m, &kv, id, pos++);
    for (size_t i = 0; i < pids.n; i++) logits = model_decode_step(&m, &kv, (int)pids.ids[i], pos++);
    fwrite(prompt, 1, plen, stdout);
    for (int i = 0; i < (int)n_tok && pos < T; i++) {
        id = sample_token(logits, m.cfg.vocab_size, (float)temp, (float)top_p, &rng, cand);
        if (id == eot) break;
        if (tok) {
            size_t n;
            const uint8_t *b = tok_is_special(tok, id) ? NULL : tok_token(tok, id, &n);
            if (b) fwrite(b, 1, n, stdout);
        } else {
            putchar(id);
        }
        logits = model_decode_step(&m, &kv, id, pos++);
    }
    putchar('\n');
    free(cand);
    free(pids.ids);
    tok_free(tok);
    kv_free(&kv, &m);
    model_free(&m);
    return 0;
}
