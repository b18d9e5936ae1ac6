/* Checkpoints as two safetensors files in a run folder.
 *
 * model.safetensors: every parameter by its ParamTable name (F32), each stateful
 *   router's persistent state as "layers.<l>.moe.router.state" (F64), and metadata
 *   format=moelab, version, kind=model, step, config (model keys), train_config (all keys).
 * optim.safetensors: AdamW "adam.m" and "adam.v" (F32 [n]), metadata format, version,
 *   kind=optim, step, adam_t, data_rng_0..3 (the loader's xoshiro state, hex), B, T
 *   and the same model config, so files from two different runs are not mixed.
 *
 * Both files are first written completely (each atomically) under a ".new" name, then
 * committed together (io/commit.h): a kill at any instant leaves the old pair or the new
 * one, for readers at once and on disk after the next writer's checkpoint_recover. A
 * crash that somehow left files of different steps is still refused by
 * checkpoint_load_state. */
#include "io/checkpoint.h"
#include "core/commit.h"
#include "core/util.h"
#include "io/safetensors.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CKPT_FORMAT "moelab"
#define CKPT_VERSION "1"
#define MODEL_FILE "model.safetensors"
#define OPTIM_FILE "optim.safetensors"

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = ml_malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* dir/name as a reader must open it (io/commit.h). */
static char *resolved(const char *dir, const char *name) {
    char *p = join(dir, name), buf[4096];
    char *r = ml_strdup(commit_resolve(p, buf, sizeof buf));
    free(p);
    return r;
}

/* Prefixes the current error with `where`; ml_fail must not read the buffer it writes. */
static int fail_in(const char *where, const char *what) {
    char why[1024];
    snprintf(why, sizeof why, "%s", ml_last_error());
    return ml_fail("%s: %s%s", where, what, why);
}

static int parse_long(const char *s, long *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0) return -1;
    *out = v;
    return 0;
}

static int parse_hex64(const char *s, uint64_t *out) {
    if (!s || !*s || strlen(s) > 16) return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 16);
    if (errno || *end) return -1;
    *out = (uint64_t)v;
    return 0;
}

/* The model-only config JSON of m (identical text in both files of one save). */
static char *model_config_json(const Model *m, const TrainConfig *tc) {
    TrainConfig c = *tc;
    c.model = m->cfg; /* the file describes the model as built */
    return config_to_json(&c, 1);
}

static void router_state_name(char *buf, size_t n, int layer) { snprintf(buf, n, "layers.%d.moe.router.state", layer); }

static int has_router_state(const Model *m, int l) {
    return m->routers && m->routers[l].spec && m->routers[l].state_len > 0;
}

/* ---- save ---- */

static void add_common_meta(StFile *f, const char *kind, long step, const char *cfg) {
    char buf[32];
    snprintf(buf, sizeof buf, "%ld", step);
    st_add_meta(f, "format", CKPT_FORMAT);
    st_add_meta(f, "version", CKPT_VERSION);
    st_add_meta(f, "kind", kind);
    st_add_meta(f, "step", buf);
    st_add_meta(f, "config", cfg);
}

static void build_model_file(StFile *f, const Model *m, const TrainConfig *tc, long step, const char *cfg,
                             char (*names)[64]) {
    for (int i = 0; i < m->table.n; i++) {
        const ParamInfo *p = &m->table.items[i];
        int64_t shape[3] = {p->shape[0], p->shape[1], p->shape[2]};
        st_add(f, p->name, "F32", p->ndim, shape, m->params + p->offset);
    }
    for (int l = 0; l < m->cfg.n_layers; l++) {
        if (!has_router_state(m, l)) continue;
        router_state_name(names[l], sizeof names[l], l);
        st_add(f, names[l], "F64", 1, (int64_t[]){m->routers[l].state_len}, m->routers[l].state);
    }
    add_common_meta(f, "model", step, cfg);
    TrainConfig c = *tc;
    c.model = m->cfg;
    char *all = config_to_json(&c, 0);
    st_add_meta(f, "train_config", all);
    free(all);
}

static void build_optim_file(StFile *f, const AdamW *opt, const TrainState *st, const char *cfg) {
    char buf[32], key[24];
    st_add(f, "adam.m", "F32", 1, (int64_t[]){(int64_t)opt->n}, opt->m);
    st_add(f, "adam.v", "F32", 1, (int64_t[]){(int64_t)opt->n}, opt->v);
    add_common_meta(f, "optim", st->step, cfg);
    snprintf(buf, sizeof buf, "%ld", opt->t);
    st_add_meta(f, "adam_t", buf);
    for (int i = 0; i < 4; i++) {
        snprintf(key, sizeof key, "data_rng_%d", i);
        snprintf(buf, sizeof buf, "%016" PRIx64, st->loader.rng.s[i]);
        st_add_meta(f, key, buf);
    }
    snprintf(buf, sizeof buf, "%d", st->loader.B);
    st_add_meta(f, "B", buf);
    snprintf(buf, sizeof buf, "%d", st->loader.T);
    st_add_meta(f, "T", buf);
}

static const char *const PAIR[] = {OPTIM_FILE, MODEL_FILE};

int checkpoint_recover(const char *rundir) { return commit_recover(rundir, PAIR, 2); }

int checkpoint_save(const char *rundir, const Model *m, const TrainConfig *tc, const AdamW *opt, const TrainState *st) {
    if (opt->n != m->table.total)
        return ml_fail("%s: cannot save: optimizer holds %zu values but the model has %zu parameters", rundir, opt->n,
                       m->table.total);
    if (ml_mkdir_p(rundir) || checkpoint_recover(rundir)) return -1;
    char *cfg = model_config_json(m, tc);
    char (*names)[64] = ml_calloc((size_t)m->cfg.n_layers, sizeof *names);
    StFile mf, of;
    st_init(&mf);
    st_init(&of);
    build_model_file(&mf, m, tc, st->step, cfg, names);
    build_optim_file(&of, opt, st, cfg);
    char model_new[4096], optim_new[4096];
    int rc = commit_staged_path(model_new, sizeof model_new, rundir, MODEL_FILE) ||
                     commit_staged_path(optim_new, sizeof optim_new, rundir, OPTIM_FILE)
                 ? -1
                 : 0;
    if (rc == 0) rc = st_save(&of, optim_new);
    if (rc == 0) commit_fault_point();
    if (rc == 0) rc = st_save(&mf, model_new);
    if (rc == 0) commit_fault_point();
    /* Both files complete: one commit installs the pair (see io/commit.h). */
    CommitEntry pair[2] = {{OPTIM_FILE, 1}, {MODEL_FILE, 1}};
    if (rc == 0) rc = commit_publish(rundir, pair, 2);
    if (rc != 0) checkpoint_recover(rundir); /* drops the staged files, or finishes a committed pair */
    st_free(&mf);
    st_free(&of);
    free(names);
    free(cfg);
    return rc;
}

/* ---- load ---- */

static int check_format(const StFile *f, const char *path, const char *kind) {
    const char *fmt = st_meta(f, "format"), *ver = st_meta(f, "version"), *k = st_meta(f, "kind");
    if (!fmt || strcmp(fmt, CKPT_FORMAT) != 0)
        return ml_fail("%s: not a moelab checkpoint (metadata format is '%s', expected '%s')", path, fmt ? fmt : "(none)",
                       CKPT_FORMAT);
    if (!ver || strcmp(ver, CKPT_VERSION) != 0)
        return ml_fail("%s: unsupported checkpoint version '%s' (this build reads %s)", path, ver ? ver : "(none)",
                       CKPT_VERSION);
    if (!k || strcmp(k, kind) != 0)
        return ml_fail("%s: metadata kind is '%s', expected '%s'", path, k ? k : "(none)", kind);
    return 0;
}

/* The stored config: defaults, then the full training config if saved, else the model keys. */
static int read_config(const StFile *f, const char *path, TrainConfig *tc) {
    config_defaults(tc);
    const char *js = st_meta(f, "train_config");
    if (!js) js = st_meta(f, "config");
    if (!js) return ml_fail("%s: no config in the metadata", path);
    if (config_apply_json_text(tc, js) || config_validate(tc)) return fail_in(path, "stored config: ");
    return 0;
}

static int is_router_state_name(const Model *m, const char *name) {
    char buf[64];
    for (int l = 0; l < m->cfg.n_layers; l++) {
        if (!has_router_state(m, l)) continue;
        router_state_name(buf, sizeof buf, l);
        if (strcmp(buf, name) == 0) return 1;
    }
    return 0;
}

static int read_tensors(const StFile *f, const char *path, Model *m) {
    for (int i = 0; i < m->table.n; i++) {
        const ParamInfo *p = &m->table.items[i];
        int64_t shape[3] = {p->shape[0], p->shape[1], p->shape[2]};
        if (st_read(f, p->name, "F32", p->ndim, shape, m->params + p->offset)) return fail_in(path, "");
    }
    char name[64];
    for (int l = 0; l < m->cfg.n_layers; l++) {
        if (!has_router_state(m, l)) continue;
        router_state_name(name, sizeof name, l);
        if (st_read(f, name, "F64", 1, (int64_t[]){m->routers[l].state_len}, m->routers[l].state))
            return fail_in(path, "");
    }
    /* Anything else means the file and the stored config disagree. */
    for (int i = 0; i < f->n; i++) {
        const char *n = f->tensors[i].name;
        if (!params_find(&m->table, n) && !is_router_state_name(m, n))
            return ml_fail("%s: unexpected tensor '%s' (not part of the model its config describes)", path, n);
    }
    return 0;
}

/* A folder means RUNDIR/model.safetensors, or the staged one of a committed save. */
static char *model_path(const char *path) {
    struct stat s;
    if (!(stat(path, &s) == 0 && S_ISDIR(s.st_mode))) return ml_strdup(path);
    return resolved(path, MODEL_FILE);
}

int checkpoint_load_model(const char *path, Model *m, TrainConfig *tc) {
    memset(m, 0, sizeof *m);
    char *file = model_path(path);
    StFile f;
    TrainConfig c;
    int rc = st_load(&f, file);
    if (rc) {
        free(file);
        return -1;
    }
    rc = check_format(&f, file, "model");
    if (rc == 0) rc = read_config(&f, file, &c);
    if (rc == 0 && model_create(m, &c.model)) rc = fail_in(file, "");
    if (rc == 0 && read_tensors(&f, file, m)) {
        model_free(m);
        memset(m, 0, sizeof *m);
        rc = -1;
    }
    if (rc == 0) *tc = c;
    st_free(&f);
    free(file);
    return rc;
}

/* Only the header of model.safetensors is needed to cross-check the step and config;
 * the weights were already validated by checkpoint_load_model. */
static int read_model_header(const char *path, StFile *f) {
    FILE *fp = ml_fopen_regular(path, NULL);
    if (!fp) return -1;
    unsigned char len8[8];
    uint64_t hlen = 0;
    int rc = fread(len8, 1, 8, fp) == 8 ? 0 : ml_fail("%s: truncated: shorter than the 8-byte header length", path);
    for (int i = 0; i < 8 && rc == 0; i++) hlen |= (uint64_t)len8[i] << (8 * i);
    if (rc == 0 && hlen > (100u << 20)) rc = ml_fail("%s: header length %" PRIu64 " is implausibly large", path, hlen);
    char *h = rc ? NULL : ml_malloc((size_t)hlen + 1);
    if (rc == 0 && fread(h, 1, (size_t)hlen, fp) != hlen) rc = ml_fail("%s: truncated inside the header", path);
    fclose(fp);
    st_init(f);
    cJSON *root = rc ? NULL : cJSON_ParseWithLength(h, (size_t)hlen);
    if (rc == 0 && !cJSON_IsObject(root)) rc = ml_fail("%s: header is not a JSON object", path);
    const cJSON *meta = rc ? NULL : cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    for (const cJSON *it = meta ? meta->child : NULL; it; it = it->next)
        if (cJSON_IsString(it)) st_add_meta(f, it->string, it->valuestring);
    cJSON_Delete(root);
    free(h);
    if (rc) st_free(f);
    return rc;
}

/* Step, Adam t, loader state from the optim metadata, after checking it matches the model file. */
static int read_state_meta(const StFile *f, const StFile *mh, const char *optim, const char *model, long *adam_t,
                           TrainState *st) {
    long step, mstep, B, T;
    if (parse_long(st_meta(f, "step"), &step)) return ml_fail("%s: missing or bad 'step' metadata", optim);
    if (parse_long(st_meta(mh, "step"), &mstep)) return ml_fail("%s: missing or bad 'step' metadata", model);
    if (step != mstep)
        return ml_fail("%s: checkpoint is inconsistent: optimizer state is at step %ld but the model at step %ld "
                       "(a save was interrupted?)", optim, step, mstep);
    const char *c1 = st_meta(f, "config"), *c2 = st_meta(mh, "config");
    if (!c1 || !c2 || strcmp(c1, c2) != 0)
        return ml_fail("%s: checkpoint is inconsistent: optimizer state and %s were saved for different model configs",
                       optim, model);
    if (parse_long(st_meta(f, "adam_t"), adam_t)) return ml_fail("%s: missing or bad 'adam_t' metadata", optim);
    if (parse_long(st_meta(f, "B"), &B) || parse_long(st_meta(f, "T"), &T) || B > 1 << 30 || T > 1 << 30)
        return ml_fail("%s: missing or bad 'B'/'T' metadata", optim);
    for (int i = 0; i < 4; i++) {
        char key[24];
        snprintf(key, sizeof key, "data_rng_%d", i);
        if (parse_hex64(st_meta(f, key), &st->loader.rng.s[i]))
            return ml_fail("%s: missing or bad '%s' metadata", optim, key);
    }
    st->step = step;
    st->loader.B = (int)B;
    st->loader.T = (int)T;
    return 0;
}

/* Restores opt and st from the loaded optim file f; nothing is changed on a metadata error. */
static int restore_state(const StFile *f, const char *optim, const char *model, const Model *m, AdamW *opt,
                         TrainState *st) {
    StFile mh;
    if (read_model_header(model, &mh)) return -1;
    long adam_t = 0;
    TrainState s = *st; /* keeps the caller's shard pointer */
    int rc = read_state_meta(f, &mh, optim, model, &adam_t, &s);
    st_free(&mh);
    if (rc) return -1;
    size_t n = m->table.total;
    if (opt->m && opt->n != n)
        return ml_fail("checkpoint_load_state: optimizer sized for %zu values, model has %zu", opt->n, n);
    if (!opt->m) adamw_init(opt, n);
    /* The sizes follow the model: a file for another shape fails here, naming the tensor. */
    if (st_read(f, "adam.m", "F32", 1, (int64_t[]){(int64_t)n}, opt->m) ||
        st_read(f, "adam.v", "F32", 1, (int64_t[]){(int64_t)n}, opt->v))
        return fail_in(optim, "");
    /* AdamW divides by sqrt(v): a negative or non-finite moment can only come from a
     * damaged or forged file, and would turn every later step into NaN. */
    for (size_t i = 0; i < n; i++)
        if (!isfinite(opt->m[i]) || !isfinite(opt->v[i]) || opt->v[i] < 0)
            return ml_fail("%s: impossible optimizer state at index %zu (m=%g, v=%g; second moments must be finite "
                           "and >= 0): the file is damaged", optim, i, opt->m[i], opt->v[i]);
    opt->t = adam_t;
    *st = s;
    return 0;
}

size_t checkpoint_nonfinite(const Model *m) {
    size_t bad = 0;
    for (size_t i = 0; i < m->table.total; i++) bad += !isfinite(m->params[i]);
    for (size_t i = 0; i < m->router_state_len; i++) bad += !isfinite(m->router_state[i]);
    return bad;
}

int checkpoint_load_state(const char *rundir, const Model *m, AdamW *opt, TrainState *st) {
    char *optim = resolved(rundir, OPTIM_FILE), *model = resolved(rundir, MODEL_FILE);
    StFile f;
    int rc = st_load(&f, optim);
    if (rc == 0) {
        rc = check_format(&f, optim, "optim");
        if (rc == 0) rc = restore_state(&f, optim, model, m, opt, st);
        st_free(&f);
    }
    free(optim);
    free(model);
    return rc;
}
