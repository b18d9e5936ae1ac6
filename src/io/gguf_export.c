/* moelab model -> GGUF for llama.cpp. Two llama.cpp architectures cover our configs:
 * ernie4_5-moe renormalises the top-k gates, deepseek (V1) does not; both take leading
 * dense blocks, shared experts and a missing output head (tied embeddings). Both rotate
 * interleaved pairs in RoPE where we rotate halves, so q and k rows are permuted. */
#include "io/gguf_export.h"
#include "core/util.h"
#include "data/tokenizer_impl.h"
#include <stdlib.h>
#include <string.h>

/* ---- inference rules of the routers that export ---- */

/* The value of `key` in a "key=value,key=value" option string (copied into out), or NULL. */
static const char *opt_value(const char *opts, const char *key, char *out, size_t cap) {
    size_t kl = strlen(key);
    for (const char *s = opts; s && *s;) {
        const char *end = strchr(s, ',');
        size_t n = end ? (size_t)(end - s) : strlen(s);
        if (n > kl && strncmp(s, key, kl) == 0 && s[kl] == '=') {
            snprintf(out, cap, "%.*s", (int)(n - kl - 1), s + kl + 1);
            return out;
        }
        s = end ? end + 1 : NULL;
    }
    return NULL;
}

/* topk: softmax over all experts, k largest, gates renormalised when cfg.renorm. */
static int topk_rule(const Model *m, GgufPlan *p) {
    p->renorm = m->cfg.renorm;
    return 0;
}

/* mpmoe: at inference with eval_select=topk it picks the top-k set, and its gates are the
 * softmax restricted to that set, i.e. renormalised top-k whatever cfg.renorm says. The
 * greedy Mahalanobis selection depends on the co-selection covariance: no llama.cpp form. */
static int mpmoe_rule(const Model *m, GgufPlan *p) {
    char v[32];
    if (!opt_value(m->cfg.router_opts, "eval_select", v, sizeof v) || strcmp(v, "topk") != 0)
        return ml_fail("router mpmoe selects experts by its greedy covariance rule at inference, which no llama.cpp "
                       "architecture computes; train it with --router-opts eval_select=topk to export exactly, or "
                       "use --approximate to export top-k routing and measure the loss it costs");
    p->renorm = 1;
    return 0;
}

static const struct {
    const char *router;
    int (*rule)(const Model *m, GgufPlan *p);
} ROUTER_RULES[] = {
    {"topk", topk_rule},
    {"mpmoe", mpmoe_rule},
};

int gguf_plan(const Model *m, GgufPlan *p) {
    const ModelConfig *c = &m->cfg;
    memset(p, 0, sizeof *p);
    int (*rule)(const Model *, GgufPlan *) = NULL;
    for (size_t i = 0; i < sizeof ROUTER_RULES / sizeof ROUTER_RULES[0]; i++)
        if (strcmp(ROUTER_RULES[i].router, c->router) == 0) rule = ROUTER_RULES[i].rule;
    if (!rule)
        return ml_fail("router %s has no exact llama.cpp form (its inference rule is not softmax top-k); "
                       "export is refused rather than writing a model that runs differently (--approximate "
                       "exports top-k routing and measures the loss it costs)", c->router);
    if (c->dense_layers < c->n_layers && m->router_rows != c->n_experts)
        return ml_fail("router %s scores with %d rows, not one per expert (%d)", c->router, m->router_rows, c->n_experts);
    if (rule(m, p)) return -1;
    p->arch = p->renorm ? "ernie4_5-moe" : "deepseek";
    p->zero_shared = !p->renorm && c->n_shared == 0;
    return 0;
}

/* ---- tensors ---- */

typedef struct {
    GgufWriter *w;
    GgType type;
    int n_fallback;
    float *buf; /* scratch for re-laid-out tensors */
    size_t cap;
} Ctx;

static float *scratch(Ctx *x, size_t n) {
    size_t bytes = n * sizeof(float);
    ml_reserve((void **)&x->buf, &x->cap, bytes);
    return x->buf;
}

/* Matrices take the export type; vectors (norms) and router weights stay f32. */
static int add(Ctx *x, const char *name, int nd, int64_t n0, int64_t n1, int64_t n2, const float *src, int keep_f32) {
    int64_t ne[3] = {n0, n1, n2};
    GgType t = keep_f32 || nd == 1 ? GG_F32 : x->type;
    if (t == GG_Q8_0 && n0 % GG_QK8_0) {
        t = GG_F16;
        x->n_fallback++;
    }
    return gguf_add_tensor(x->w, name, nd, ne, t, src);
}

static int addl(Ctx *x, const char *fmt, int l, int nd, int64_t n0, int64_t n1, int64_t n2, const float *src, int keep_f32) {
    char name[96];
    snprintf(name, sizeof name, fmt, l);
    return add(x, name, nd, n0, n1, n2, src, keep_f32);
}

/* Rows of one projection (q or k, [D, D]) reordered so that llama.cpp's pairwise RoPE
 * rotates what our rotate-half RoPE rotates: row (h, 2i + j) <- row (h, j*hd/2 + i). */
static void permute_rope(const float *src, float *dst, int D, int NH) {
    int hd = D / NH, half = hd / 2;
    for (int h = 0; h < NH; h++)
        for (int r = 0; r < hd; r++) {
            int from = h * hd + (r % 2) * half + r / 2;
            memcpy(dst + (size_t)(h * hd + r) * D, src + (size_t)from * D, sizeof(float) * D);
        }
}

static int add_attention(Ctx *x, const BlockParams *b, int l, int D, int NH) {
    float *t = scratch(x, (size_t)D * D);
    size_t DD = (size_t)D * D;
    permute_rope(b->wqkv, t, D, NH);
    if (addl(x, "blk.%d.attn_q.weight", l, 2, D, D, 0, t, 0)) return -1;
    permute_rope(b->wqkv + DD, t, D, NH);
    if (addl(x, "blk.%d.attn_k.weight", l, 2, D, D, 0, t, 0)) return -1;
    if (addl(x, "blk.%d.attn_v.weight", l, 2, D, D, 0, b->wqkv + 2 * DD, 0)) return -1;
    return addl(x, "blk.%d.attn_output.weight", l, 2, D, D, 0, b->wo, 0);
}

/* A SwiGLU [2F, D] gate_up + [D, F] down as llama.cpp's separate gate, up and down. */
static int add_swiglu(Ctx *x, const char *gate, const char *up, const char *down, int l, int D, int F,
                      const float *gu, const float *dn) {
    size_t half = (size_t)F * D;
    return addl(x, gate, l, 2, D, F, 0, gu, 0) || addl(x, up, l, 2, D, F, 0, gu + half, 0) ||
           addl(x, down, l, 2, F, D, 0, dn, 0) ? -1 : 0;
}

static int add_experts(Ctx *x, const BlockParams *b, int l, int D, int E, int F) {
    size_t half = (size_t)F * D;
    float *t = scratch(x, (size_t)E * half);
    for (int part = 0; part < 2; part++) { /* gate rows 0..F-1, up rows F..2F-1 of each expert */
        for (int e = 0; e < E; e++) memcpy(t + e * half, b->exp_gate_up + (2 * e + part) * half, sizeof(float) * half);
        if (addl(x, part ? "blk.%d.ffn_up_exps.weight" : "blk.%d.ffn_gate_exps.weight", l, 3, D, F, E, t, 0)) return -1;
    }
    return addl(x, "blk.%d.ffn_down_exps.weight", l, 3, F, D, E, b->exp_down, 0);
}

static int add_block(Ctx *x, const Model *m, const GgufPlan *p, int l) {
    const ModelConfig *c = &m->cfg;
    const BlockParams *b = &m->p.blocks[l];
    int D = c->d_model, E = c->n_experts, F = c->d_expert, Fs = c->n_shared * F;
    if (addl(x, "blk.%d.attn_norm.weight", l, 1, D, 0, 0, b->attn_norm, 1) || add_attention(x, b, l, D, c->n_heads) ||
        addl(x, "blk.%d.ffn_norm.weight", l, 1, D, 0, 0, b->ffn_norm, 1))
        return -1;
    if (!model_is_moe_layer(c, l))
        return add_swiglu(x, "blk.%d.ffn_gate.weight", "blk.%d.ffn_up.weight", "blk.%d.ffn_down.weight", l, D,
                          model_dense_width(c), b->ffn_gate_up, b->ffn_down);
    if (addl(x, "blk.%d.ffn_gate_inp.weight", l, 2, D, E, 0, b->router, 1) || add_experts(x, b, l, D, E, F)) return -1;
    if (Fs > 0)
        return add_swiglu(x, "blk.%d.ffn_gate_shexp.weight", "blk.%d.ffn_up_shexp.weight", "blk.%d.ffn_down_shexp.weight",
                          l, D, Fs, b->sh_gate_up, b->sh_down);
    if (!p->zero_shared) return 0;
    /* An all-zero SwiGLU adds exactly 0 to every output. */
    float *z = ml_calloc((size_t)2 * F * D, sizeof(float));
    int rc = add_swiglu(x, "blk.%d.ffn_gate_shexp.weight", "blk.%d.ffn_up_shexp.weight", "blk.%d.ffn_down_shexp.weight",
                        l, D, F, z, z);
    free(z);
    return rc;
}

/* ---- metadata ---- */

static void add_hparams(GgufWriter *w, const Model *m, const GgufPlan *p, GgType type) {
    const ModelConfig *c = &m->cfg;
    char key[96];
#define KEY(s) (snprintf(key, sizeof key, "%s." s, p->arch), key)
    gguf_kv_str(w, "general.architecture", p->arch);
    gguf_kv_str(w, "general.name", "moelab");
    gguf_kv_u32(w, "general.alignment", GGUF_ALIGN);
    /* llama_ftype: all f32, mostly f16, mostly q8_0, mostly bf16 */
    gguf_kv_u32(w, "general.file_type", type == GG_F32 ? 0 : type == GG_F16 ? 1 : type == GG_Q8_0 ? 7 : 32);
    gguf_kv_u32(w, KEY("context_length"), (uint32_t)c->seq_len);
    gguf_kv_u32(w, KEY("embedding_length"), (uint32_t)c->d_model);
    gguf_kv_u32(w, KEY("block_count"), (uint32_t)c->n_layers);
    gguf_kv_u32(w, KEY("feed_forward_length"), (uint32_t)model_dense_width(c));
    gguf_kv_u32(w, KEY("attention.head_count"), (uint32_t)c->n_heads);
    gguf_kv_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->n_heads);
    gguf_kv_f32(w, KEY("attention.layer_norm_rms_epsilon"), c->norm_eps);
    gguf_kv_f32(w, KEY("rope.freq_base"), c->rope_theta);
    gguf_kv_u32(w, KEY("rope.dimension_count"), (uint32_t)(c->d_model / c->n_heads));
    gguf_kv_u32(w, KEY("expert_count"), (uint32_t)c->n_experts);
    gguf_kv_u32(w, KEY("expert_used_count"), (uint32_t)c->top_k);
    gguf_kv_u32(w, KEY("expert_feed_forward_length"), (uint32_t)c->d_expert);
    gguf_kv_u32(w, KEY("leading_dense_block_count"), (uint32_t)c->dense_layers);
    if (p->renorm) {
        gguf_kv_u32(w, KEY("expert_shared_feed_forward_length"), (uint32_t)(c->n_shared * c->d_expert));
        gguf_kv_u32(w, KEY("interleave_moe_layer_step"), 1);
    } else {
        gguf_kv_u32(w, KEY("expert_shared_count"), (uint32_t)(p->zero_shared ? 1 : c->n_shared));
    }
#undef KEY
    char *cfg = config_to_json(&(TrainConfig){.model = *c}, 1);
    gguf_kv_str(w, "moelab.config", cfg);
    free(cfg);
}

/* GPT-2's byte-level BPE: token texts through the byte-to-unicode map, merges as
 * "left right" in rank order, the gpt-2 pre-tokenizer, end-of-text as eos and eot. */
static size_t mapped(const uint8_t *s, size_t n, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = tok_byte_to_cp(s[i]);
        if (cp < 0x80) out[k++] = (char)cp;
        else {
            out[k++] = (char)(0xc0 | cp >> 6);
            out[k++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    return k;
}

static void add_tokenizer(GgufWriter *w, const Tokenizer *t, int V) {
    int eot = t ? t->eot_id : 256, n_merges = t ? t->n_merges : 0;
    char **text = ml_calloc((size_t)V + n_merges, sizeof(char *));
    size_t *len = ml_calloc((size_t)V + n_merges, sizeof(size_t));
    int32_t *type = ml_malloc(sizeof(int32_t) * V);
    for (int id = 0; id < V; id++) {
        uint8_t byte = (uint8_t)id;
        size_t n = 1;
        const uint8_t *s = t ? t->tok_data + t->tok_off[id] : &byte;
        if (t) n = t->tok_off[id + 1] - t->tok_off[id];
        int special = t ? t->special[id] : id == eot;
        if (!t && special) s = (const uint8_t *)"<|endoftext|>", n = 13;
        text[id] = ml_malloc(2 * n + 1);
        len[id] = special ? (memcpy(text[id], s, n), n) : mapped(s, n, text[id]);
        type[id] = special ? 3 : 1; /* control : normal */
    }
    for (int r = 0; r < n_merges; r++) {
        const int32_t *mg = t->merges + 3 * r;
        size_t la = t->tok_off[mg[0] + 1] - t->tok_off[mg[0]], lb = t->tok_off[mg[1] + 1] - t->tok_off[mg[1]];
        char *s = text[V + r] = ml_malloc(2 * (la + lb) + 2);
        size_t k = mapped(t->tok_data + t->tok_off[mg[0]], la, s);
        s[k++] = ' ';
        len[V + r] = k + mapped(t->tok_data + t->tok_off[mg[1]], lb, s + k);
    }
    gguf_kv_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_kv_str(w, "tokenizer.ggml.pre", "gpt-2");
    gguf_kv_str_arr(w, "tokenizer.ggml.tokens", (const char *const *)text, len, V);
    gguf_kv_i32_arr(w, "tokenizer.ggml.token_type", type, V);
    gguf_kv_str_arr(w, "tokenizer.ggml.merges", (const char *const *)(text + V), len + V, n_merges);
    gguf_kv_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)eot);
    gguf_kv_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eot);
    gguf_kv_u32(w, "tokenizer.ggml.eot_token_id", (uint32_t)eot);
    gguf_kv_bool(w, "tokenizer.ggml.add_bos_token", 0);
    gguf_kv_bool(w, "tokenizer.ggml.add_eos_token", 0);
    for (int i = 0; i < V + n_merges; i++) free(text[i]);
    free(text);
    free(len);
    free(type);
}

void gguf_topk_stand_in(const ModelConfig *c, ModelConfig *out) {
    *out = *c;
    snprintf(out->router, sizeof out->router, "topk");
    out->router_opts[0] = 0;
    /* mpmoe's gates are the softmax restricted to the chosen set: renormalised */
    if (strcmp(c->router, "mpmoe") == 0) out->renorm = 1;
}

int gguf_export(const Model *m, Tokenizer *tok, GgType type, const char *path, int *n_fallback, const char *note) {
    const ModelConfig *c = &m->cfg;
    GgufPlan plan;
    if (gguf_plan(m, &plan)) return -1;
    if (tok && tok_vocab_size(tok) != c->vocab_size)
        return ml_fail("the tokenizer has %d tokens but the model has vocab %d", tok_vocab_size(tok), c->vocab_size);
    if (!tok && c->vocab_size != 257)
        return ml_fail("vocab %d is not byte-level (257): the model's tokenizer is needed", c->vocab_size);
    GgufWriter w;
    gguf_init(&w);
    add_hparams(&w, m, &plan, type);
    if (note) gguf_kv_str(&w, "moelab.approximate", note);
    add_tokenizer(&w, tok, c->vocab_size);
    Ctx x = {.w = &w, .type = type};
    int D = c->d_model, V = c->vocab_size;
    int rc = add(&x, "token_embd.weight", 2, D, V, 0, m->p.embed, 0);
    for (int l = 0; l < c->n_layers && rc == 0; l++) rc = add_block(&x, m, &plan, l);
    if (rc == 0) rc = add(&x, "output_norm.weight", 1, D, 0, 0, m->p.norm, 1);
    if (rc == 0 && !c->tie_embeddings) rc = add(&x, "output.weight", 2, D, V, 0, m->p.lm_head, 0);
    if (rc == 0) rc = gguf_save(&w, path);
    if (n_fallback) *n_fallback = x.n_fallback;
    free(x.buf);
    gguf_free(&w);
    return rc;
}
