/* Size arithmetic: configs whose sizes overflow 32 or 64 bits, or would need more memory
 * than any machine has, are refused with a message by validation, by a checkpoint's
 * loader (the config in its metadata) and by the run checks, before anything is allocated. */
#include "core/util.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/model.h"
#include "model/sizes.h"
#include "testlib.h"

static void small(ModelConfig *m) {
    TrainConfig tc;
    config_defaults(&tc);
    *m = tc.model;
    m->n_layers = 2;
    m->d_model = 16;
    m->n_heads = 2;
    m->seq_len = 8;
    m->vocab_size = 64;
    m->n_experts = 4;
    m->top_k = 2;
    m->d_expert = 8;
}

static void test_small_model_passes(void) {
    ModelConfig m;
    small(&m);
    uint64_t p = 0, a = 0;
    CHECK(config_validate_model(&m) == 0, "%s", ml_last_error());
    CHECK(sizes_params(&m, &p) == 0 && p > 0, "params");
    CHECK(sizes_activations(&m, 4, 8, &a) == 0 && a > 0, "activations");
    /* the bound is an upper bound of the real layout */
    Model model;
    CHECK(model_create(&model, &m) == 0, "%s", ml_last_error());
    CHECK(model.table.total <= p, "layout %zu floats, bound %llu", model.table.total, (unsigned long long)p);
    model_free(&model);
}

/* Each case overflows an int product somewhere in the layout or needs absurd memory. */
static void test_overflowing_configs_refused(void) {
    struct { const char *what; int layers, d, heads, vocab, E, k, F, shared, d_dense, T; } cases[] = {
        {"2 x d-expert past INT_MAX", 2, 16, 2, 64, 4, 2, 1 << 30, 0, 0, 8},
        {"(topk + shared) x d-expert past INT_MAX", 2, 16, 2, 64, 4096, 4096, 1 << 20, 64, 0, 8},
        {"d-dense past the width bound", 2, 16, 2, 64, 4, 2, 8, 0, 2000000000, 8},
        {"experts x d-expert x d-model: 2^45 parameters", 8, 65536, 2, 64, 4096, 2, 1 << 20, 0, 0, 8},
        {"vocab x d-model: 2^40 parameters", 1, 65536, 2, 1 << 24, 1, 1, 8, 0, 0, 8},
        {"KV cache of 1024 layers x 65536 x 65536", 1024, 65536, 2, 64, 1, 1, 1, 0, 0, 65536},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ModelConfig m;
        small(&m);
        m.n_layers = cases[i].layers;
        m.d_model = cases[i].d;
        m.n_heads = cases[i].heads;
        m.vocab_size = cases[i].vocab;
        m.n_experts = cases[i].E;
        m.top_k = cases[i].k;
        m.d_expert = cases[i].F;
        m.n_shared = cases[i].shared;
        m.d_dense = cases[i].d_dense;
        m.seq_len = cases[i].T;
        m.dense_layers = m.d_dense ? 1 : 0;
        CHECK(config_validate_model(&m) != 0, "accepted: %s", cases[i].what);
        Model model;
        CHECK(model_create(&model, &m) != 0, "model_create accepted: %s", cases[i].what);
    }
}

static void test_run_sizes_refused(void) {
    ModelConfig m;
    small(&m);
    m.seq_len = 65536;
    m.d_model = 1024;
    m.vocab_size = 1 << 20;
    /* logits alone: 65536 x 65536 x 2^20 floats */
    CHECK(sizes_check_run(&m, 65536, 65536, 1) != 0, "a 2^52-float batch passed");
    CHECK(strstr(ml_last_error(), "GiB") != NULL, "message: %s", ml_last_error());
    CHECK(sizes_check_run(&m, 0, 8, 0) != 0, "batch 0 passed");
    TrainConfig tc;
    config_defaults(&tc);
    small(&tc.model);
    tc.batch = 1 << 30;
    CHECK(config_validate(&tc) != 0, "batch 2^30 passed validation");
    tc.batch = 4;
    tc.grad_accum = 1 << 30;
    CHECK(config_validate(&tc) != 0, "grad-accum 2^30 passed validation");
}

/* A checkpoint whose metadata config asks for a huge model: refused by the loader with a
 * message naming the file, nothing allocated for it. */
static void test_checkpoint_metadata_refused(void) {
    char path[256];
    tl_tmp(path, sizeof path, "huge.safetensors");
    StFile f;
    st_init(&f);
    float x = 0;
    st_add(&f, "embed.weight", "F32", 1, (int64_t[]){1}, &x);
    st_add_meta(&f, "format", "moelab");
    st_add_meta(&f, "version", "1");
    st_add_meta(&f, "kind", "model");
    st_add_meta(&f, "step", "1");
    st_add_meta(&f, "config", "{\"layers\":2,\"d_model\":16,\"heads\":2,\"vocab\":64,\"experts\":4,\"topk\":2,"
                              "\"d_expert\":1073741824}");
    CHECK(st_save(&f, path) == 0, "%s", ml_last_error());
    st_free(&f);
    Model m;
    TrainConfig tc;
    CHECK(checkpoint_load_model(path, &m, &tc) != 0, "a d-expert of 2^30 loaded");
    CHECK(strstr(ml_last_error(), "d-expert") != NULL, "message: %s", ml_last_error());
}

int main(void) {
    if (tl_mktmp("sizes")) return 1;
    RUN(test_small_model_passes);
    RUN(test_overflowing_configs_refused);
    RUN(test_run_sizes_refused);
    RUN(test_checkpoint_metadata_refused);
    tl_rm_rf(tl_tmp_dir);
    TEST_MAIN_END();
}
