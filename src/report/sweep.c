#include "report/sweep.h"
#include "core/util.h"
#include "moe/router.h"
#include "report/proc.h"
#include "report/runlog.h"
#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void flaglist_add(FlagList *l, const char *flag, const char *value) {
    l->flag = ml_realloc(l->flag, sizeof(char *) * (size_t)(l->n + 1));
    l->value = ml_realloc(l->value, sizeof(char *) * (size_t)(l->n + 1));
    l->flag[l->n] = ml_strdup(flag);
    l->value[l->n++] = ml_strdup(value);
}

void flaglist_free(FlagList *l) {
    for (int i = 0; i < l->n; i++) {
        free(l->flag[i]);
        free(l->value[i]);
    }
    free(l->flag);
    free(l->value);
    memset(l, 0, sizeof *l);
}

char *flaglist_str(const FlagList *l) {
    size_t n = 1;
    for (int i = 0; i < l->n; i++) n += strlen(l->flag[i]) + strlen(l->value[i]) + 2;
    char *s = ml_malloc(n);
    s[0] = 0;
    for (int i = 0; i < l->n; i++) {
        if (i) strcat(s, " ");
        strcat(s, l->flag[i]);
        if (l->value[i][0]) {
            strcat(s, " ");
            strcat(s, l->value[i]);
        }
    }
    return s;
}

void sweep_init(Sweep *s) {
    memset(s, 0, sizeof *s);
    s->first_seed = 1;
}

static void clear_specs(Sweep *s) {
    for (int i = 0; i < s->n_specs; i++) flaglist_free(&s->specs[i].flags);
    free(s->specs);
    s->specs = NULL;
    s->n_specs = 0;
}

void sweep_free(Sweep *s) {
    clear_specs(s);
    flaglist_free(&s->base);
}

/* The sweep sets these itself for every run: neither base nor spec flags may. */
static int sweep_owned(const char *flag) {
    static const char *const OWNED[] = {"--seed", "--threads", "--stop-at", "--router", NULL};
    for (int i = 0; OWNED[i]; i++)
        if (strcmp(flag, OWNED[i]) == 0) return 1;
    return 0;
}

/* The token budget: a base flag may set it (for every run), a spec flag may not. */
static int budget_flag(const char *flag) {
    static const char *const BUDGET[] = {"--steps", "--batch", "--grad-accum", "--seq-len", NULL};
    for (int i = 0; BUDGET[i]; i++)
        if (strcmp(flag, BUDGET[i]) == 0) return 1;
    return 0;
}

/* Normalises "--d_model" to "--d-model" so flags compare equal however they are written. */
static void norm_flag(const char *in, char *out, size_t n) {
    snprintf(out, n, "%s", in);
    for (char *p = out + 2; *p; p++)
        if (*p == '_') *p = '-';
}

/* Validates flag=value against a scratch config. 1: config flag, 0: not one, -1: bad value. */
static int check_flag(const char *flag, const char *value) {
    TrainConfig tc;
    config_defaults(&tc);
    return config_apply_flag(&tc, flag, value);
}

int sweep_add_base_flag(Sweep *s, const char *flag, const char *value) {
    char f[64];
    if (strncmp(flag, "--", 2) != 0 || strlen(flag) >= sizeof f) return 0;
    norm_flag(flag, f, sizeof f);
    int r = check_flag(f, value);
    if (r <= 0) return r;
    if (strcmp(f, "--router") == 0) return ml_fail("--router: name the routers in --runs or --variants");
    if (sweep_owned(f)) return ml_fail("%s is set by the sweep itself, not in the shared config", f);
    flaglist_add(&s->base, f, value);
    return 1;
}

static int valid_label(const char *l) {
    if (!*l || strlen(l) >= LABEL_MAX) return 0;
    for (const char *p = l; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("._+-", *p)) return 0;
    return *l != '.' && *l != '-';
}

static int add_spec(Sweep *s, const char *label, const char *router) {
    if (!valid_label(label))
        return ml_fail("bad run label '%s': use 1-%d letters, digits, '.', '_', '+' or '-'", label, LABEL_MAX - 1);
    for (int i = 0; i < s->n_specs; i++)
        if (strcmp(s->specs[i].label, label) == 0) return ml_fail("run label '%s' is given twice", label);
    if (!router_find(router)) {
        char names[512] = "";
        for (const RouterSpec *const *r = router_all(); *r; r++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", names[0] ? ", " : "", (*r)->name);
        return ml_fail("run '%s': unknown router '%s' (known: %s)", label, router, names);
    }
    s->specs = ml_realloc(s->specs, sizeof *s->specs * (size_t)(s->n_specs + 1));
    RunSpec *r = &s->specs[s->n_specs++];
    memset(r, 0, sizeof *r);
    snprintf(r->label, sizeof r->label, "%s", label);
    snprintf(r->router, sizeof r->router, "%s", router);
    return 0;
}

static int add_spec_flag(RunSpec *r, const char *flag, const char *value) {
    char f[64];
    if (strncmp(flag, "--", 2) != 0 || strlen(flag) >= sizeof f)
        return ml_fail("run '%s': '%s' is not a --flag", r->label, flag);
    norm_flag(flag, f, sizeof f);
    if (sweep_owned(f)) return ml_fail("run '%s': %s is set by the sweep itself", r->label, f);
    if (budget_flag(f)) return ml_fail("run '%s': %s would change the token budget, which every run shares", r->label, f);
    int rc = check_flag(f, value);
    if (rc == 0) return ml_fail("run '%s': unknown flag '%s' (see moelab train --help)", r->label, f);
    if (rc < 0) return ml_fail("run '%s': %s", r->label, ml_last_error());
    flaglist_add(&r->flags, f, value);
    return 0;
}

/* "--a 1 --b=2" -> pairs. */
static int parse_spec_flags(RunSpec *r, char *text) {
    char *save = NULL;
    for (char *tok = strtok_r(text, " \t\n", &save); tok; tok = strtok_r(NULL, " \t\n", &save)) {
        char *eq = strncmp(tok, "--", 2) == 0 ? strchr(tok, '=') : NULL, *value;
        if (eq) {
            *eq = 0;
            value = eq + 1;
        } else if (!(value = strtok_r(NULL, " \t\n", &save))) {
            return ml_fail("run '%s': %s needs a value", r->label, tok);
        }
        if (add_spec_flag(r, tok, value)) return -1;
    }
    return 0;
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
    return s;
}

static int parse_one_run(Sweep *s, char *item) {
    char *c1 = strchr(item, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c1) return ml_fail("run spec '%s' is not label:router[:flags]", item);
    *c1 = 0;
    if (c2) *c2 = 0;
    if (add_spec(s, trim(item), trim(c1 + 1))) return -1;
    return c2 ? parse_spec_flags(&s->specs[s->n_specs - 1], c2 + 1) : 0;
}

int sweep_parse_runs(Sweep *s, const char *text) {
    clear_specs(s);
    char *copy = ml_strdup(text), *save = NULL;
    int rc = 0;
    for (char *item = strtok_r(copy, ";", &save); item && rc == 0; item = strtok_r(NULL, ";", &save))
        if (*trim(item)) rc = parse_one_run(s, trim(item));
    free(copy);
    if (rc == 0 && s->n_specs == 0) rc = ml_fail("--runs names no run");
    return rc;
}

static const struct {
    const char *name, *router, *flags, *help;
} VARIANTS[] = {
    {"topk", "topk", "--renorm 1 --aux-coef 0.01", "softmax top-k, renormalised gates, Switch aux loss 0.01"},
    {"topk-norenorm", "topk", "--renorm 0 --aux-coef 0.01", "as topk, gates not renormalised"},
    {"topk-noaux", "topk", "--renorm 1 --aux-coef 0", "as topk, no load-balancing loss"},
    {"topk-noz", "topk", "--renorm 1 --aux-coef 0.01 --z-coef 0", "as topk, no z-loss"},
};
#define N_VARIANTS (sizeof VARIANTS / sizeof VARIANTS[0])

const char *sweep_variants_help(void) {
    static char buf[1024];
    size_t n = 0;
    for (size_t i = 0; i < N_VARIANTS; i++)
        n += snprintf(buf + n, sizeof buf - n, "  %-16s %s\n", VARIANTS[i].name, VARIANTS[i].help);
    snprintf(buf + n, sizeof buf - n, "  %-16s any router by name, with its defaults\n", "ROUTER");
    return buf;
}

int sweep_parse_variants(Sweep *s, const char *names) {
    clear_specs(s);
    char *copy = ml_strdup(names), *save = NULL;
    int rc = 0;
    for (char *n = strtok_r(copy, ",", &save); n && rc == 0; n = strtok_r(NULL, ",", &save)) {
        n = trim(n);
        if (!*n) continue;
        size_t v = 0;
        while (v < N_VARIANTS && strcmp(VARIANTS[v].name, n) != 0) v++;
        if (v == N_VARIANTS && !router_find(n)) {
            rc = ml_fail("unknown variant '%s' (built in: topk, topk-norenorm, topk-noaux, topk-noz; or a router name)", n);
        } else if (v == N_VARIANTS) {
            rc = add_spec(s, n, n);
        } else if ((rc = add_spec(s, n, VARIANTS[v].router)) == 0) {
            char *f = ml_strdup(VARIANTS[v].flags);
            rc = parse_spec_flags(&s->specs[s->n_specs - 1], f);
            free(f);
        }
    }
    free(copy);
    if (rc == 0 && s->n_specs == 0) rc = ml_fail("--variants names no variant");
    return rc;
}

/* A JSON scalar as flag text: integers without a decimal point, floats exactly. */
static int json_flag_value(const cJSON *v, char *buf, size_t n) {
    if (cJSON_IsString(v)) snprintf(buf, n, "%s", v->valuestring);
    else if (cJSON_IsBool(v)) snprintf(buf, n, "%d", cJSON_IsTrue(v));
    else if (cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && fabs(v->valuedouble) < 1e15)
        snprintf(buf, n, "%.0f", v->valuedouble);
    else if (cJSON_IsNumber(v)) snprintf(buf, n, "%.9g", v->valuedouble);
    else return -1;
    return 0;
}

/* {"key": value, ...} -> "--key value" pairs through add(). */
static int json_object_flags(const cJSON *obj, const char *what, int (*add)(void *, const char *, const char *), void *ctx) {
    if (!cJSON_IsObject(obj)) return ml_fail("%s must be a JSON object", what);
    for (const cJSON *it = obj->child; it; it = it->next) {
        char flag[80], value[320];
        snprintf(flag, sizeof flag, "--%s", it->string);
        if (json_flag_value(it, value, sizeof value)) return ml_fail("%s: '%s' must be a number or a string", what, it->string);
        if (add(ctx, flag, value)) return -1;
    }
    return 0;
}

static int add_base_cb(void *ctx, const char *f, const char *v) {
    int r = sweep_add_base_flag(ctx, f, v);
    return r == 0 ? ml_fail("preset config: unknown key '%s'", f + 2) : r < 0 ? -1 : 0;
}

static int add_spec_cb(void *ctx, const char *f, const char *v) { return add_spec_flag(ctx, f, v); }

static int preset_runs(Sweep *s, const cJSON *runs) {
    if (!cJSON_IsArray(runs)) return ml_fail("\"runs\" must be an array");
    clear_specs(s);
    const cJSON *r;
    cJSON_ArrayForEach(r, runs) {
        if (cJSON_IsString(r)) {
            char *item = ml_strdup(r->valuestring);
            int rc = parse_one_run(s, item);
            free(item);
            if (rc) return -1;
            continue;
        }
        const cJSON *label = cJSON_GetObjectItemCaseSensitive(r, "label");
        const cJSON *router = cJSON_GetObjectItemCaseSensitive(r, "router");
        if (!cJSON_IsString(label) || !cJSON_IsString(router))
            return ml_fail("each entry of \"runs\" needs \"label\" and \"router\" strings (or is a \"label:router:flags\" string)");
        if (add_spec(s, label->valuestring, router->valuestring)) return -1;
        const cJSON *flags = cJSON_GetObjectItemCaseSensitive(r, "flags");
        if (flags && json_object_flags(flags, "run flags", add_spec_cb, &s->specs[s->n_specs - 1])) return -1;
    }
    if (s->n_specs == 0) return ml_fail("\"runs\" is empty");
    return 0;
}

static int preset_int(const cJSON *root, const char *key, int lo, int hi, int *out) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!j) return 0;
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble) || j->valuedouble < lo || j->valuedouble > hi)
        return ml_fail("\"%s\" must be an integer in %d..%d", key, lo, hi);
    *out = (int)j->valuedouble;
    return 0;
}

static int apply_preset(Sweep *s, const cJSON *root) {
    static const char *const KEYS[] = {"description", "seeds", "first_seed", "jobs", "threads", "config", "runs", "variants", NULL};
    for (const cJSON *it = root->child; it; it = it->next) {
        int known = 0;
        for (int i = 0; KEYS[i]; i++) known |= strcmp(it->string, KEYS[i]) == 0;
        if (!known) return ml_fail("unknown key \"%s\" (known: description, seeds, first_seed, jobs, threads, config, runs, variants)", it->string);
    }
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "description");
    if (cJSON_IsString(d)) snprintf(s->description, sizeof s->description, "%s", d->valuestring);
    if (preset_int(root, "seeds", 1, 1000, &s->seeds) || preset_int(root, "first_seed", 0, 1000000000, &s->first_seed) ||
        preset_int(root, "jobs", 1, 1024, &s->jobs) || preset_int(root, "threads", 0, 1024, &s->threads))
        return -1;
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(root, "config");
    if (cfg && json_object_flags(cfg, "\"config\"", add_base_cb, s)) return -1;
    const cJSON *runs = cJSON_GetObjectItemCaseSensitive(root, "runs");
    const cJSON *vars = cJSON_GetObjectItemCaseSensitive(root, "variants");
    if (runs && vars) return ml_fail("give \"runs\" or \"variants\", not both");
    if (runs) return preset_runs(s, runs);
    if (vars) {
        if (!cJSON_IsArray(vars)) return ml_fail("\"variants\" must be an array of names");
        char names[2048] = "";
        const cJSON *v;
        cJSON_ArrayForEach(v, vars) {
            if (!cJSON_IsString(v)) return ml_fail("\"variants\" must be an array of names");
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s,", v->valuestring);
        }
        return sweep_parse_variants(s, names);
    }
    return 0;
}

/* Folders searched for a preset name, in order. */
static int preset_dirs(char dirs[][4096], int max) {
    int n = 0;
    const char *env = getenv("MOELAB_PRESETS");
    if (env && *env) snprintf(dirs[n++], 4096, "%s", env);
    snprintf(dirs[n++], 4096, "presets");
    const char *exe = proc_self_exe();
    if (exe && n < max) {
        char d[4096];
        snprintf(d, sizeof d, "%s", exe);
        char *slash = strrchr(d, '/');
        if (slash) {
            *slash = 0;
            snprintf(dirs[n++], 4096, "%.4000s/../presets", d);
        }
    }
    return n;
}

const char *sweep_preset_names(void) {
    static char names[1024];
    char dirs[3][4096];
    int nd = preset_dirs(dirs, 3);
    names[0] = 0;
    for (int i = 0; i < nd && !names[0]; i++) {
        DIR *d = opendir(dirs[i]);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            size_t l = strlen(e->d_name);
            if (l > 5 && strcmp(e->d_name + l - 5, ".json") == 0)
                snprintf(names + strlen(names), sizeof names - strlen(names), "%s%.*s", names[0] ? ", " : "", (int)(l - 5), e->d_name);
        }
        if (d) closedir(d);
    }
    return names;
}

int sweep_load_preset(Sweep *s, const char *name) {
    char path[4096] = "";
    size_t l = strlen(name);
    if (strchr(name, '/') || (l > 5 && strcmp(name + l - 5, ".json") == 0)) {
        snprintf(path, sizeof path, "%s", name);
    } else {
        char dirs[3][4096];
        int nd = preset_dirs(dirs, 3);
        for (int i = 0; i < nd && !path[0]; i++) {
            snprintf(path, sizeof path, "%.4000s/%.80s.json", dirs[i], name);
            if (!ml_file_exists(path)) path[0] = 0;
        }
        if (!path[0]) {
            const char *known = sweep_preset_names();
            return ml_fail("unknown preset '%s' (known: %s; or give a FILE.json)", name, *known ? known : "none found");
        }
    }
    char *text = ml_read_file_max(path, NULL, ML_READ_MAX_TEXT);
    if (!text) return -1;
    cJSON *root = cJSON_Parse(text);
    free(text);
    int rc = root && cJSON_IsObject(root) ? apply_preset(s, root) : ml_fail("not a JSON object");
    cJSON_Delete(root);
    if (rc) return ml_fail("preset %s: %s", path, ml_last_error());
    return 0;
}

void sweep_run_flags(const Sweep *s, int spec, int seed, int threads, FlagList *out) {
    const RunSpec *r = &s->specs[spec];
    char buf[32];
    memset(out, 0, sizeof *out);
    for (int i = 0; i < s->base.n; i++) flaglist_add(out, s->base.flag[i], s->base.value[i]);
    flaglist_add(out, "--router", r->router);
    for (int i = 0; i < r->flags.n; i++) flaglist_add(out, r->flags.flag[i], r->flags.value[i]);
    snprintf(buf, sizeof buf, "%d", seed);
    flaglist_add(out, "--seed", buf);
    snprintf(buf, sizeof buf, "%d", threads);
    flaglist_add(out, "--threads", buf);
}

int sweep_run_config(const Sweep *s, int spec, int seed, int threads, int vocab, TrainConfig *tc) {
    FlagList f;
    sweep_run_flags(s, spec, seed, threads, &f);
    config_defaults(tc);
    tc->model.vocab_size = vocab;
    int rc = 0;
    for (int i = 0; i < f.n && rc == 0; i++)
        if (config_apply_flag(tc, f.flag[i], f.value[i]) != 1) rc = -1;
    flaglist_free(&f);
    if (rc == 0) rc = config_validate(tc);
    if (rc) return ml_fail("run '%s': %s", s->specs[spec].label, ml_last_error());
    return 0;
}

void sweep_run_name(const Sweep *s, int spec, int seed, char *buf, size_t n) {
    snprintf(buf, n, "%s-s%d", s->specs[spec].label, seed);
}

int sweep_check_config(const TrainConfig *planned, const char *run_dir) {
    char *path = path_join(run_dir, "config.json");
    char *text = ml_read_file_max(path, NULL, ML_READ_MAX_TEXT);
    if (!text) {
        free(path);
        return -1;
    }
    TrainConfig have;
    config_defaults(&have);
    int rc = config_apply_json_text(&have, text);
    free(text);
    if (rc) rc = ml_fail("%s: %s", path, ml_last_error());
    free(path);
    if (rc) return -1;
    TrainConfig want = *planned;
    have.threads = want.threads;
    have.stop_at = want.stop_at;
    char *a = config_to_json(&have, 0), *b = config_to_json(&want, 0);
    cJSON *ja = cJSON_Parse(a), *jb = cJSON_Parse(b);
    char diff[1024] = "";
    for (const cJSON *x = jb ? jb->child : NULL; x; x = x->next) {
        const cJSON *y = cJSON_GetObjectItemCaseSensitive(ja, x->string);
        char *px = cJSON_PrintUnformatted(x), *py = y ? cJSON_PrintUnformatted(y) : ml_strdup("missing");
        if (strcmp(px, py) != 0)
            snprintf(diff + strlen(diff), sizeof diff - strlen(diff), "%s%s %s there, %s planned", diff[0] ? "; " : "",
                     x->string, py, px);
        free(px);
        free(py);
    }
    cJSON_Delete(ja);
    cJSON_Delete(jb);
    free(a);
    free(b);
    if (diff[0]) return ml_fail("%s was trained with a different config (%s): use another --out or remove that folder", run_dir, diff);
    return 0;
}
