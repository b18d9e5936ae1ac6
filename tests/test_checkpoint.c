/* Checkpoints: exact round trip of parameters, router state, config, AdamW and loader
 * state; rejection of damaged or mismatched files; atomic overwrite. */
#include "core/util.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "testlib.h"
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>


/* Paths live in a ring of 64 buffers: enough for every path one test holds at once. */
static const char *tmp_path(const char *name) {
    static char buf[64][512];
    static int k;
    char *p = buf[k++ % 64];
    snprintf(p, 512, "%s/%s", tl_tmp_dir, name);
    return p;
}

static void tiny_config(TrainConfig *tc, int d_model) {
    config_defaults(tc);
    ModelConfig *m = &tc->model;
    m->n_layers = 3;
    m->d_model = d_model;
    m->n_heads = 2;
    m->seq_len = 8;
    m->vocab_size = 37;
    m->n_experts = 4;
    m->top_k = 2;
    m->d_expert = 8;
    m->n_shared = 1;
    m->dense_layers = 1; /* one dense block, two MoE blocks */
    tc->batch = 3;
    tc->steps = 77;
    tc->lr = 1.25e-3f;
    tc->seed = 12345678901234ull;
}

/* A model, optimizer and train state with distinct values everywhere. */
typedef struct {
    TrainConfig tc;
    Model m;
    AdamW opt;
    TrainState st;
} Fixture;

static int fixture_make(Fixture *f, int d_model, const char *router, long step) {
    memset(f, 0, sizeof *f);
    tiny_config(&f->tc, d_model);
    if (router) snprintf(f->tc.model.router, sizeof f->tc.model.router, "%s", router);
    if (model_create(&f->m, &f->tc.model)) return -1;
    model_init_weights(&f->m, 7);
    for (size_t i = 0; i < f->m.router_state_len; i++) f->m.router_state[i] = 0.5 + i * 1.0 / 3.0;
    adamw_init(&f->opt, f->m.table.total);
    for (size_t i = 0; i < f->opt.n; i++) {
        f->opt.m[i] = (float)i * 1e-3f - 0.5f;
        f->opt.v[i] = (float)i * 1e-6f + 1e-9f;
    }
    f->opt.t = step + 3;
    f->st.step = step;
    f->st.loader.B = f->tc.batch;
    f->st.loader.T = f->tc.model.seq_len;
    rng_seed(&f->st.loader.rng, 99);
    for (int i = 0; i < 5; i++) rng_next(&f->st.loader.rng);
    return 0;
}

static void fixture_free(Fixture *f) {
    model_free(&f->m);
    adamw_free(&f->opt);
}

static int save(const Fixture *f, const char *dir) { return checkpoint_save(dir, &f->m, &f->tc, &f->opt, &f->st); }

static void copy_file(const char *from, const char *to, size_t keep) {
    size_t n = 0;
    char *b = ml_read_file(from, &n);
    if (!b) { printf("  cannot read %s\n", from); return; }
    if (keep < n) n = keep;
    FILE *f = fopen(to, "wb");
    if (f) {
        if (n) fwrite(b, 1, n, f);
        fclose(f);
    }
    free(b);
}

static int config_same(const TrainConfig *a, const TrainConfig *b) {
    char *x = config_to_json(a, 0), *y = config_to_json(b, 0);
    int same = strcmp(x, y) == 0;
    free(x);
    free(y);
    return same;
}

/* Loads dir (model and state) and checks everything equals f. */
static void check_loads_as(const Fixture *f, const char *dir) {
    Model m;
    TrainConfig tc;
    if (checkpoint_load_model(dir, &m, &tc)) { CHECK(0, "load_model: %s", ml_last_error()); return; }
    CHECK(config_same(&tc, &f->tc), "config differs after reload");
    CHECK(m.table.total == f->m.table.total && m.table.n == f->m.table.n, "parameter table differs");
    CHECK(m.table.total == f->m.table.total && memcmp(m.params, f->m.params, m.table.total * sizeof(float)) == 0,
          "parameters differ");
    CHECK(m.router_state_len == f->m.router_state_len, "router state length differs");
    /* Dense blocks have no router: their slice of the flat state is never saved. */
    for (int l = 0; l < m.cfg.n_layers && m.router_state_len == f->m.router_state_len; l++) {
        const RouterLayer *a = &m.routers[l], *b = &f->m.routers[l];
        if (!a->spec) continue;
        CHECK(a->state_len == b->state_len && memcmp(a->state, b->state, a->state_len * sizeof(double)) == 0,
              "router state of layer %d differs", l);
    }
    AdamW opt = {0};
    TrainState st;
    memset(&st, 0, sizeof st);
    if (checkpoint_load_state(dir, &m, &opt, &st)) {
        CHECK(0, "load_state: %s", ml_last_error());
    } else {
        CHECK(opt.n == f->opt.n && memcmp(opt.m, f->opt.m, opt.n * sizeof(float)) == 0, "adam m differs");
        CHECK(opt.n == f->opt.n && memcmp(opt.v, f->opt.v, opt.n * sizeof(float)) == 0, "adam v differs");
        CHECK(opt.t == f->opt.t, "adam t %ld vs %ld", opt.t, f->opt.t);
        CHECK(st.step == f->st.step, "step %ld vs %ld", st.step, f->st.step);
        CHECK(memcmp(&st.loader.rng, &f->st.loader.rng, sizeof(Rng)) == 0, "data rng differs");
        CHECK(st.loader.B == f->st.loader.B && st.loader.T == f->st.loader.T, "B,T differ");
    }
    adamw_free(&opt);
    model_free(&m);
}

static void test_roundtrip(void) {
    Fixture f;
    if (fixture_make(&f, 16, NULL, 42)) { CHECK(0, "fixture: %s", ml_last_error()); return; }
    const char *dir = tmp_path("rt");
    CHECK(save(&f, dir) == 0, "save: %s", ml_last_error());
    check_loads_as(&f, dir);
    /* a file path works as well as the folder */
    Model m;
    TrainConfig tc;
    CHECK(checkpoint_load_model(tmp_path("rt/model.safetensors"), &m, &tc) == 0, "load by file: %s", ml_last_error());
    model_free(&m);
    /* the trainer's order: adamw_init first, then load_state into it */
    AdamW opt;
    adamw_init(&opt, f.m.table.total);
    TrainState st = {0};
    CHECK(checkpoint_load_state(dir, &f.m, &opt, &st) == 0 && opt.t == f.opt.t, "into initialised AdamW: %s",
          ml_last_error());
    adamw_free(&opt);
    /* the model file is plain safetensors with the parameter names, shapes and metadata */
    StFile s;
    if (st_load(&s, tmp_path("rt/model.safetensors")) == 0) {
        const StTensor *e = st_find(&s, "embed.weight");
        CHECK(e && e->ndim == 2 && e->shape[0] == 37 && e->shape[1] == 16 && !strcmp(e->dtype, "F32"), "embed.weight");
        CHECK(s.n == f.m.table.n + (f.m.router_state_len ? 2 : 0), "%d tensors", s.n);
        CHECK(st_meta(&s, "format") && !strcmp(st_meta(&s, "format"), "moelab"), "format");
        CHECK(st_meta(&s, "step") && !strcmp(st_meta(&s, "step"), "42"), "step");
        CHECK(st_meta(&s, "config") && st_meta(&s, "train_config"), "configs");
        st_free(&s);
    } else {
        CHECK(0, "st_load: %s", ml_last_error());
    }
    /* overwriting with a later step replaces both files */
    f.st.step = 43;
    f.opt.t++;
    f.m.params[0] += 1.0f;
    CHECK(save(&f, dir) == 0, "save again: %s", ml_last_error());
    check_loads_as(&f, dir);
    fixture_free(&f);
}

/* Every registered router with persistent state keeps it across a checkpoint. */
static void test_router_state(void) {
    int tested = 0;
    for (const RouterSpec *const *r = router_all(); *r; r++) {
        TrainConfig tc;
        tiny_config(&tc, 16);
        if ((*r)->state_len(&tc.model) <= 0) continue;
        Fixture f;
        if (fixture_make(&f, 16, (*r)->name, 5)) { CHECK(0, "%s: %s", (*r)->name, ml_last_error()); continue; }
        char name[64];
        snprintf(name, sizeof name, "router_%s", (*r)->name);
        const char *dir = tmp_path(name);
        CHECK(save(&f, dir) == 0, "%s: save: %s", (*r)->name, ml_last_error());
        check_loads_as(&f, dir);
        fixture_free(&f);
        tested++;
    }
    if (!tested) printf("  note: no registered router has persistent state; router state reload not exercised\n");

    /* The save side with any router: state attached by hand is written as F64 per MoE block,
     * and a model whose router declares no state refuses it on load. */
    Fixture f;
    if (fixture_make(&f, 16, NULL, 5)) { CHECK(0, "fixture: %s", ml_last_error()); return; }
    double state[2][3] = {{1.5, -2.25, 3e-300}, {4, 5, 6}};
    RouterLayer *r1 = &f.m.routers[1], *r2 = &f.m.routers[2], saved1 = *r1, saved2 = *r2;
    r1->state = state[0], r1->state_len = 3;
    r2->state = state[1], r2->state_len = 3;
    const char *dir = tmp_path("router_manual");
    CHECK(save(&f, dir) == 0, "save: %s", ml_last_error());
    *r1 = saved1;
    *r2 = saved2;
    StFile s;
    if (st_load(&s, tmp_path("router_manual/model.safetensors")) == 0) {
        double got[3];
        CHECK(st_read(&s, "layers.1.moe.router.state", "F64", 1, (int64_t[]){3}, got) == 0 &&
              memcmp(got, state[0], sizeof got) == 0, "layer 1 state: %s", ml_last_error());
        CHECK(st_read(&s, "layers.2.moe.router.state", "F64", 1, (int64_t[]){3}, got) == 0 &&
              memcmp(got, state[1], sizeof got) == 0, "layer 2 state: %s", ml_last_error());
        CHECK(st_find(&s, "layers.0.moe.router.state") == NULL, "dense block has router state");
        st_free(&s);
    } else {
        CHECK(0, "st_load: %s", ml_last_error());
    }
    if (!tested) {
        Model m;
        TrainConfig tc;
        CHECK(checkpoint_load_model(dir, &m, &tc) == -1 && strstr(ml_last_error(), "unexpected tensor 'layers.1.moe.router.state'"),
              "state for a stateless router accepted: %s", ml_last_error());
    }
    fixture_free(&f);
}

static void expect_model_reject(const char *path, const char *want, const char *label) {
    Model m;
    TrainConfig tc;
    int rc = checkpoint_load_model(path, &m, &tc);
    CHECK(rc == -1, "%s: accepted", label);
    if (rc == 0) { model_free(&m); return; }
    CHECK(strstr(ml_last_error(), want) != NULL, "%s: message '%s' lacks '%s'", label, ml_last_error(), want);
    CHECK(strstr(ml_last_error(), ".safetensors") != NULL, "%s: message does not name the file: %s", label,
          ml_last_error());
}

/* Rewrites src's model file into dir with one change: drop `drop`, swap `reshape` for a [3] tensor,
 * add an extra tensor, or set metadata key to value. */
static void rewrite_model(const char *src, const char *dir, const char *drop, const char *reshape, int extra,
                          const char *key, const char *value) {
    StFile in, out;
    if (st_load(&in, src)) { printf("  %s\n", ml_last_error()); return; }
    static const float three[3] = {1, 2, 3};
    st_init(&out);
    for (int i = 0; i < in.n; i++) {
        const StTensor *t = &in.tensors[i];
        if (drop && !strcmp(t->name, drop)) continue;
        if (reshape && !strcmp(t->name, reshape)) st_add(&out, t->name, "F32", 1, (int64_t[]){3}, three);
        else st_add(&out, t->name, t->dtype, t->ndim, t->shape, t->data);
    }
    if (extra) st_add(&out, "layers.9.extra.weight", "F32", 1, (int64_t[]){3}, three);
    for (int i = 0; i < in.n_meta; i++) st_add_meta(&out, in.meta_keys[i], in.meta_vals[i]);
    if (key) st_add_meta(&out, key, value);
    mkdir(dir, 0777);
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (st_save(&out, path)) printf("  %s\n", ml_last_error());
    st_free(&out);
    st_free(&in);
}

static void test_model_rejects(void) {
    Fixture f;
    if (fixture_make(&f, 16, NULL, 10)) { CHECK(0, "fixture: %s", ml_last_error()); return; }
    const char *dir = tmp_path("rej"), *good = tmp_path("rej/model.safetensors");
    CHECK(save(&f, dir) == 0, "save: %s", ml_last_error());
    size_t n = 0;
    char *img = ml_read_file(good, &n);
    if (!img) { CHECK(0, "read back"); fixture_free(&f); return; }
    const char *bad = tmp_path("bad.model.safetensors");
    copy_file(good, bad, n / 2);
    expect_model_reject(bad, "truncated", "truncated model file");
    img[8] = 'x'; /* the header's opening brace */
    FILE *fp = fopen(bad, "wb");
    if (fp) { fwrite(img, 1, n, fp); fclose(fp); }
    expect_model_reject(bad, "not valid JSON", "corrupted header");
    free(img);
    rewrite_model(good, tmp_path("r1"), "layers.2.moe.experts.down.weight", NULL, 0, NULL, NULL);
    expect_model_reject(tmp_path("r1"), "missing tensor 'layers.2.moe.experts.down.weight'", "missing tensor");
    rewrite_model(good, tmp_path("r2"), NULL, "layers.1.ffn_norm.weight", 0, NULL, NULL);
    expect_model_reject(tmp_path("r2"), "shape mismatch for 'layers.1.ffn_norm.weight': checkpoint has [3], model expects [16]",
                        "reshaped tensor");
    rewrite_model(good, tmp_path("r3"), NULL, NULL, 1, NULL, NULL);
    expect_model_reject(tmp_path("r3"), "unexpected tensor 'layers.9.extra.weight'", "extra tensor");
    rewrite_model(good, tmp_path("r4"), NULL, NULL, 0, "format", "pytorch");
    expect_model_reject(tmp_path("r4"), "not a moelab checkpoint", "foreign format");
    rewrite_model(good, tmp_path("r5"), NULL, NULL, 0, "train_config", "{\"d_model\": 15}");
    expect_model_reject(tmp_path("r5"), "stored config", "invalid stored config");
    expect_model_reject(tmp_path("rej/optim.safetensors"), "expected 'model'", "optim file as model");
    Model m;
    TrainConfig tc;
    CHECK(checkpoint_load_model(tmp_path("nothing-here"), &m, &tc) == -1 && strstr(ml_last_error(), "nothing-here"),
          "missing checkpoint: %s", ml_last_error());
    fixture_free(&f);
}

static void expect_state_reject(const char *dir, const Model *m, const char *want, const char *label) {
    AdamW opt = {0};
    TrainState st;
    memset(&st, 0, sizeof st);
    int rc = checkpoint_load_state(dir, m, &opt, &st);
    CHECK(rc == -1, "%s: accepted", label);
    if (rc == -1) CHECK(strstr(ml_last_error(), want) != NULL, "%s: message '%s' lacks '%s'", label, ml_last_error(), want);
    adamw_free(&opt);
}

static void test_state_rejects(void) {
    Fixture a, b;
    if (fixture_make(&a, 16, NULL, 5) || fixture_make(&b, 32, NULL, 5)) { CHECK(0, "fixture: %s", ml_last_error()); return; }
    const char *da = tmp_path("sa"), *db = tmp_path("sb"), *dm = tmp_path("smix");
    CHECK(save(&a, da) == 0 && save(&b, db) == 0, "save: %s", ml_last_error());
    /* optim state of a d_model=16 run read for a d_model=32 model */
    expect_state_reject(da, &b.m, "shape mismatch for 'adam.m'", "optim for another shape");
    /* a folder whose model file comes from a run of another shape */
    CHECK(save(&a, dm) == 0, "save: %s", ml_last_error());
    copy_file(tmp_path("sb/model.safetensors"), tmp_path("smix/model.safetensors"), (size_t)-1);
    Model m;
    TrainConfig tc;
    if (checkpoint_load_model(dm, &m, &tc) == 0) {
        expect_state_reject(dm, &m, "inconsistent", "model file of another shape");
        model_free(&m);
    } else {
        CHECK(0, "load mixed model: %s", ml_last_error());
    }
    /* a save interrupted between the two files: optim at step 6, model at step 5 */
    a.st.step = 6;
    CHECK(save(&a, db) == 0, "save: %s", ml_last_error());
    copy_file(tmp_path("sb/optim.safetensors"), tmp_path("sa/optim.safetensors"), (size_t)-1);
    expect_state_reject(da, &a.m, "inconsistent", "step mismatch");
    expect_state_reject(da, &a.m, "step 6 but the model at step 5", "step mismatch message");
    /* missing or truncated optim file */
    remove(tmp_path("sb/optim.safetensors"));
    expect_state_reject(db, &a.m, "optim.safetensors", "missing optim file");
    copy_file(tmp_path("sa/model.safetensors"), tmp_path("sb/optim.safetensors"), (size_t)-1);
    expect_state_reject(db, &a.m, "expected 'optim'", "model file as optim");
    fixture_free(&a);
    fixture_free(&b);
}

/* A save that fails, before or during the writes, keeps the previous checkpoint loadable and consistent. */
static void test_atomic_overwrite(void) {
    Fixture f;
    if (fixture_make(&f, 16, NULL, 5)) { CHECK(0, "fixture: %s", ml_last_error()); return; }
    const char *dir = tmp_path("atomic");
    CHECK(save(&f, dir) == 0, "save: %s", ml_last_error());
    Fixture next = f; /* shares buffers: only st/opt.t differ below, params restored after */
    next.st.step = 6;
    next.opt.t = 99;
    float keep = f.m.params[3];
    f.m.params[3] = 1234.0f;
    /* 1. the model file cannot be put in place (a folder blocks its staging name) */
    const char *blocker = tmp_path("atomic/model.safetensors.new");
    mkdir(blocker, 0777);
    mkdir(tmp_path("atomic/model.safetensors.new/x"), 0777);
    CHECK(save(&next, dir) == -1, "save with a blocked model file succeeded");
    rmdir(tmp_path("atomic/model.safetensors.new/x"));
    rmdir(blocker);
    CHECK(!ml_file_exists(tmp_path("atomic/optim.safetensors.new")), "staged optim file left behind");
    /* 2. the disk fills up part way (file size limit) */
    struct rlimit rl = tl_limit_file_size(4096);
    int rc = save(&next, dir);
    tl_restore_file_size(rl);
    CHECK(rc == -1, "save past the file size limit succeeded");
    CHECK(!ml_file_exists(tmp_path("atomic/optim.safetensors.new")) && !ml_file_exists(tmp_path("atomic/model.safetensors.new")),
          "staged file left behind");
    f.m.params[3] = keep;
    check_loads_as(&f, dir); /* still step 5 with the old values */
    fixture_free(&f);
}

int main(void) {
    if (tl_mktmp("ckpt")) return 1;
    RUN(test_roundtrip);
    RUN(test_router_state);
    RUN(test_model_rejects);
    RUN(test_state_rejects);
    RUN(test_atomic_overwrite);
    tl_rm_rf(tl_tmp_dir);
    TEST_MAIN_END();
}
