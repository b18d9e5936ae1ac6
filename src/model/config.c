#include "model/config.h"
#include "model/sizes.h"
#include "core/util.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef enum { F_INT, F_FLOAT, F_STR, F_U64 } FieldType;
typedef struct {
    const char *flag; /* without the leading "--" */
    FieldType type;
    size_t offset; /* into TrainConfig */
    size_t size;   /* string capacity */
    int model;     /* 1: part of the model config saved in checkpoints */
    const char *help;
} Field;

#define MF(name, type, field, help) {name, type, offsetof(TrainConfig, model.field), sizeof(((TrainConfig *)0)->model.field), 1, help}
#define TF(name, type, field, help) {name, type, offsetof(TrainConfig, field), sizeof(((TrainConfig *)0)->field), 0, help}

static const Field FIELDS[] = {
    MF("layers", F_INT, n_layers, "transformer blocks"),
    MF("d-model", F_INT, d_model, "residual width"),
    MF("heads", F_INT, n_heads, "attention heads (must divide d-model)"),
    MF("seq-len", F_INT, seq_len, "context length in tokens"),
    MF("vocab", F_INT, vocab_size, "vocabulary size (set from the data when 0)"),
    MF("experts", F_INT, n_experts, "routed experts E per MoE layer (E=1, k=1 is dense)"),
    MF("topk", F_INT, top_k, "experts per token k"),
    MF("d-expert", F_INT, d_expert, "hidden width of each SwiGLU expert"),
    MF("shared", F_INT, n_shared, "shared experts, always on"),
    MF("dense-layers", F_INT, dense_layers, "first N blocks use a dense FFN"),
    MF("d-dense", F_INT, d_dense, "dense FFN width (0: same active size as an MoE layer)"),
    MF("tie-embeddings", F_INT, tie_embeddings, "1: output head shares the embedding"),
    MF("rope-theta", F_FLOAT, rope_theta, "RoPE base"),
    MF("norm-eps", F_FLOAT, norm_eps, "RMSNorm epsilon"),
    MF("router", F_STR, router, "router name (see `moelab train --help`)"),
    MF("aux-coef", F_FLOAT, aux_coef, "load-balancing aux loss coefficient"),
    MF("z-coef", F_FLOAT, z_coef, "router z-loss coefficient"),
    MF("renorm", F_INT, renorm, "1: renormalise gates over the selected experts"),
    MF("router-opts", F_STR, router_opts, "router-specific options key=value,..."),
    TF("batch", F_INT, batch, "sequences per micro-batch"),
    TF("grad-accum", F_INT, grad_accum, "micro-batches per optimizer step"),
    TF("steps", F_INT, steps, "optimizer steps (also the LR schedule length)"),
    TF("warmup", F_INT, warmup, "linear LR warmup steps"),
    TF("stop-at", F_INT, stop_at, "stop (with a checkpoint) after this step; 0: run all steps"),
    TF("eval-every", F_INT, eval_every, "evaluate on the validation split every N steps (0: only at the end)"),
    TF("eval-batches", F_INT, eval_batches, "validation batches per evaluation"),
    TF("ckpt-every", F_INT, ckpt_every, "checkpoint every N steps (0: only at the end)"),
    TF("log-every", F_INT, log_every, "log a training step every N steps"),
    TF("threads", F_INT, threads, "threads for OpenMP and BLAS (0: all cores)"),
    TF("lr", F_FLOAT, lr, "peak learning rate"),
    TF("min-lr-frac", F_FLOAT, min_lr_frac, "final LR as a fraction of the peak (cosine)"),
    TF("weight-decay", F_FLOAT, weight_decay, "AdamW weight decay (matrices only)"),
    TF("beta1", F_FLOAT, beta1, "AdamW beta1"),
    TF("beta2", F_FLOAT, beta2, "AdamW beta2"),
    TF("adam-eps", F_FLOAT, adam_eps, "AdamW epsilon"),
    TF("grad-clip", F_FLOAT, grad_clip, "global gradient-norm clip (0: off)"),
    TF("bad-steps", F_INT, bad_steps, "steps with a non-finite loss or gradient are skipped; this many in a row stop training"),
    TF("seed", F_U64, seed, "random seed for init and data order"),
    TF("precision", F_STR, precision, "matmul inputs: fp32, or bf16 (fp32 accumulation, weights and optimizer)"),
};
#define N_FIELDS (sizeof FIELDS / sizeof FIELDS[0])

void config_defaults(TrainConfig *c) {
    memset(c, 0, sizeof *c);
    ModelConfig *m = &c->model;
    m->n_layers = 4;
    m->d_model = 128;
    m->n_heads = 4;
    m->seq_len = 128;
    m->vocab_size = 0;
    m->n_experts = 8;
    m->top_k = 2;
    m->d_expert = 256;
    m->n_shared = 0;
    m->dense_layers = 0;
    m->d_dense = 0;
    m->tie_embeddings = 0;
    m->rope_theta = 10000.0f;
    m->norm_eps = 1e-5f;
    strcpy(m->router, "topk");
    m->aux_coef = 0.01f;
    m->z_coef = 0.001f;
    m->renorm = 1;
    c->batch = 8;
    c->grad_accum = 1;
    c->steps = 200;
    c->warmup = 20;
    c->eval_every = 100;
    c->eval_batches = 8;
    c->ckpt_every = 0;
    c->log_every = 1;
    c->threads = 0;
    c->lr = 3e-3f;
    c->min_lr_frac = 0.1f;
    c->weight_decay = 0.1f;
    c->beta1 = 0.9f;
    c->beta2 = 0.95f;
    c->adam_eps = 1e-8f;
    c->grad_clip = 1.0f;
    c->seed = 1337;
    c->bad_steps = 3;
    strcpy(c->precision, "fp32");
}

static const Field *find_field(const char *name) {
    char norm[64];
    size_t n = strlen(name);
    if (n >= sizeof norm) return NULL;
    for (size_t i = 0; i <= n; i++) norm[i] = name[i] == '_' ? '-' : name[i];
    for (size_t i = 0; i < N_FIELDS; i++)
        if (strcmp(FIELDS[i].flag, norm) == 0) return &FIELDS[i];
    return NULL;
}

static int set_field(TrainConfig *c, const Field *f, const char *value) {
    char *base = (char *)c + f->offset, *end = NULL;
    errno = 0;
    switch (f->type) {
    case F_INT: {
        long v = strtol(value, &end, 10);
        if (!*value || *end || errno || v < -2147483647L || v > 2147483647L)
            return ml_fail("--%s: '%s' is not an integer", f->flag, value);
        *(int *)base = (int)v;
        return 0;
    }
    case F_U64: {
        if (*value == '-') return ml_fail("--%s: '%s' is not a non-negative integer", f->flag, value);
        unsigned long long v = strtoull(value, &end, 10);
        if (!*value || *end || errno) return ml_fail("--%s: '%s' is not a non-negative integer", f->flag, value);
        *(uint64_t *)base = (uint64_t)v;
        return 0;
    }
    case F_FLOAT: {
        float v = strtof(value, &end);
        if (!*value || *end || errno || !isfinite(v)) return ml_fail("--%s: '%s' is not a number", f->flag, value);
        *(float *)base = v;
        return 0;
    }
    case F_STR:
        if (strlen(value) >= f->size) return ml_fail("--%s: value too long", f->flag);
        strcpy(base, value);
        return 0;
    }
    return -1;
}

int config_apply_flag(TrainConfig *c, const char *flag, const char *value) {
    if (strncmp(flag, "--", 2) != 0) return 0;
    const Field *f = find_field(flag + 2);
    if (!f) return 0;
    if (!value) return ml_fail("%s needs a value", flag);
    return set_field(c, f, value) == 0 ? 1 : -1;
}

int config_apply_json_text(TrainConfig *c, const char *text) {
    /* require_null_terminated: text after the object is an error, not silently ignored */
    cJSON *root = cJSON_ParseWithOpts(text, NULL, 1);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return ml_fail("config is not a JSON object");
    }
    int rc = 0;
    for (cJSON *it = root->child; it && rc == 0; it = it->next) {
        const Field *f = find_field(it->string);
        if (!f) {
            rc = ml_fail("unknown config key '%s'", it->string);
            break;
        }
        char buf[320];
        if (cJSON_IsString(it)) snprintf(buf, sizeof buf, "%s", it->valuestring);
        else if (cJSON_IsBool(it)) snprintf(buf, sizeof buf, "%d", cJSON_IsTrue(it));
        else if (cJSON_IsNumber(it) && f->type == F_FLOAT) snprintf(buf, sizeof buf, "%.9g", it->valuedouble);
        else if (cJSON_IsNumber(it)) {
            if (it->valuedouble != floor(it->valuedouble)) {
                rc = ml_fail("config key '%s' must be an integer", it->string);
                break;
            }
            snprintf(buf, sizeof buf, "%.0f", it->valuedouble);
        } else {
            rc = ml_fail("config key '%s' has an unsupported type", it->string);
            break;
        }
        rc = set_field(c, f, buf);
    }
    cJSON_Delete(root);
    return rc;
}

int config_load_json(TrainConfig *c, const char *path) {
    char *text = ml_read_file_max(path, NULL, ML_READ_MAX_TEXT);
    if (!text) return -1;
    int rc = config_apply_json_text(c, text);
    free(text);
    if (rc) return ml_fail("%s: %s", path, ml_last_error());
    return 0;
}

int model_dense_width(const ModelConfig *m) {
    return m->d_dense > 0 ? m->d_dense : (m->top_k + m->n_shared) * m->d_expert;
}

int model_is_moe_layer(const ModelConfig *m, int layer) { return layer >= m->dense_layers; }

int config_validate_model(const ModelConfig *m) {
    if (m->n_layers < 1 || m->n_layers > 1024) return ml_fail("layers must be in 1..1024 (got %d)", m->n_layers);
    if (m->d_model < 2 || m->d_model > 65536) return ml_fail("d-model must be in 2..65536 (got %d)", m->d_model);
    if (m->n_heads < 1 || m->d_model % m->n_heads) return ml_fail("heads (%d) must divide d-model (%d)", m->n_heads, m->d_model);
    if ((m->d_model / m->n_heads) % 2) return ml_fail("head size d-model/heads (%d) must be even for RoPE", m->d_model / m->n_heads);
    if (m->seq_len < 1 || m->seq_len > 65536) return ml_fail("seq-len must be in 1..65536 (got %d)", m->seq_len);
    if (m->vocab_size < 2 || m->vocab_size > (1 << 24)) return ml_fail("vocab must be in 2..16777216 (got %d)", m->vocab_size);
    if (m->n_experts < 1 || m->n_experts > 4096) return ml_fail("experts must be in 1..4096 (got %d)", m->n_experts);
    if (m->top_k < 1 || m->top_k > m->n_experts) return ml_fail("topk must be in 1..experts (got k=%d, E=%d)", m->top_k, m->n_experts);
    if (m->d_expert < 1) return ml_fail("d-expert must be positive (got %d)", m->d_expert);
    if (m->n_shared < 0 || m->n_shared > 64) return ml_fail("shared must be in 0..64 (got %d)", m->n_shared);
    if (m->dense_layers < 0 || m->dense_layers > m->n_layers) return ml_fail("dense-layers must be in 0..layers (got %d)", m->dense_layers);
    if (m->d_dense < 0) return ml_fail("d-dense must be >= 0 (got %d)", m->d_dense);
    if (m->tie_embeddings != 0 && m->tie_embeddings != 1) return ml_fail("tie-embeddings must be 0 or 1");
    if (m->renorm != 0 && m->renorm != 1) return ml_fail("renorm must be 0 or 1");
    if (!(m->rope_theta > 1.0f)) return ml_fail("rope-theta must be > 1");
    if (!(m->norm_eps > 0.0f)) return ml_fail("norm-eps must be > 0");
    if (m->aux_coef < 0 || m->z_coef < 0) return ml_fail("aux-coef and z-coef must be >= 0");
    return sizes_check_model(m);
}

int config_validate(const TrainConfig *c) {
    if (config_validate_model(&c->model)) return -1;
    if (c->batch < 1 || c->batch > 65536) return ml_fail("batch must be in 1..65536 (got %d)", c->batch);
    if (c->grad_accum < 1 || c->grad_accum > 65536) return ml_fail("grad-accum must be in 1..65536 (got %d)", c->grad_accum);
    if (c->steps < 1) return ml_fail("steps must be >= 1 (got %d)", c->steps);
    if (c->warmup < 0 || c->stop_at < 0 || c->eval_every < 0 || c->ckpt_every < 0) return ml_fail("warmup, stop-at, eval-every and ckpt-every must be >= 0");
    if (c->eval_batches < 1) return ml_fail("eval-batches must be >= 1");
    if (c->log_every < 1) return ml_fail("log-every must be >= 1");
    if (c->threads < 0 || c->threads > 1024) return ml_fail("threads must be in 0..1024");
    if (!(c->lr > 0)) return ml_fail("lr must be > 0");
    if (c->min_lr_frac < 0 || c->min_lr_frac > 1) return ml_fail("min-lr-frac must be in [0,1]");
    if (c->weight_decay < 0) return ml_fail("weight-decay must be >= 0");
    if (c->beta1 < 0 || c->beta1 >= 1 || c->beta2 < 0 || c->beta2 >= 1) return ml_fail("beta1 and beta2 must be in [0,1)");
    if (!(c->adam_eps > 0)) return ml_fail("adam-eps must be > 0");
    if (c->grad_clip < 0) return ml_fail("grad-clip must be >= 0");
    if (c->bad_steps < 1 || c->bad_steps > 1000000) return ml_fail("bad-steps must be in 1..1000000");
    if (strcmp(c->precision, "fp32") != 0 && strcmp(c->precision, "bf16") != 0)
        return ml_fail("precision must be fp32 or bf16 (got '%s')", c->precision);
    return 0;
}

char *config_to_json(const TrainConfig *c, int model_only) {
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; i < N_FIELDS; i++) {
        const Field *f = &FIELDS[i];
        if (model_only && !f->model) continue;
        const char *base = (const char *)c + f->offset;
        char key[64];
        size_t n = strlen(f->flag);
        for (size_t j = 0; j <= n; j++) key[j] = f->flag[j] == '-' ? '_' : f->flag[j];
        switch (f->type) {
        case F_INT: cJSON_AddNumberToObject(o, key, *(const int *)base); break;
        case F_FLOAT: {
            /* Shortest text that reads back to the same float keeps configs exact. */
            char buf[32];
            snprintf(buf, sizeof buf, "%.9g", *(const float *)base);
            cJSON_AddRawToObject(o, key, buf);
            break;
        }
        case F_U64: {
            char buf[32];
            snprintf(buf, sizeof buf, "%llu", (unsigned long long)*(const uint64_t *)base);
            cJSON_AddRawToObject(o, key, buf);
            break;
        }
        case F_STR: cJSON_AddStringToObject(o, key, base); break;
        }
    }
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    if (!s) {
        fprintf(stderr, "moelab: out of memory printing config\n");
        exit(2);
    }
    return s;
}

const char *config_flags_help(void) {
    static char buf[8192];
    if (buf[0]) return buf;
    size_t n = 0;
    for (size_t i = 0; i < N_FIELDS && n < sizeof buf - 128; i++)
        n += snprintf(buf + n, sizeof buf - n, "  --%-16s %s\n", FIELDS[i].flag, FIELDS[i].help);
    return buf;
}
