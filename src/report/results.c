#include "report/results.h"
#include "core/util.h"
#include "metrics/metrics.h"
#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ------------------------------------------------------------------ the run set */

/* "topk-noaux-s2" -> label "topk-noaux", seed 2; a name without the suffix is its own label. */
static void split_run_name(const char *name, char *label, int *seed) {
    const char *s = strrchr(name, '-');
    *seed = -1;
    snprintf(label, LABEL_MAX, "%s", name);
    if (!s || s == name || s[1] != 's' || !isdigit((unsigned char)s[2])) return;
    for (const char *p = s + 2; *p; p++)
        if (!isdigit((unsigned char)*p)) return;
    *seed = atoi(s + 2);
    snprintf(label, LABEL_MAX, "%.*s", (int)(s - name), name);
}

static int add_run(RunSet *s, const char *dir) {
    struct stat st;
    memset(&st, 0, sizeof st);
    if (stat(dir, &st) == 0)
        for (int i = 0; i < s->n_runs; i++)
            if (s->runs[i].dev == (unsigned long)st.st_dev && s->runs[i].ino == (unsigned long)st.st_ino) return 0;
    RunLog log;
    if (runlog_load(&log, dir)) return -1;
    s->runs = ml_realloc(s->runs, sizeof *s->runs * (size_t)(s->n_runs + 1));
    Run *r = &s->runs[s->n_runs++];
    memset(r, 0, sizeof *r);
    r->log = log;
    r->dev = (unsigned long)st.st_dev;
    r->ino = (unsigned long)st.st_ino;
    split_run_name(log.name, r->label, &r->seed);
    double seed = runlog_cfg_num(&log, "seed"), steps = runlog_cfg_num(&log, "steps");
    if (isfinite(seed)) r->seed = (int)seed;
    r->finished = isfinite(steps) && log.ckpt_step >= (long)steps;
    return 0;
}

static int is_run_dir(const char *dir) {
    char *p = path_join(dir, "log.jsonl");
    int yes = ml_file_exists(p);
    free(p);
    return yes;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Position of a run folder's label in sweep.json's run list (unknown labels go last). */
static int label_rank(const cJSON *sweep, const char *name) {
    char label[LABEL_MAX];
    int seed, i = 0;
    split_run_name(name, label, &seed);
    const cJSON *r, *runs = cJSON_GetObjectItemCaseSensitive(sweep, "runs");
    cJSON_ArrayForEach(r, runs) {
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(r, "label");
        if (cJSON_IsString(l) && strcmp(l->valuestring, label) == 0) return i;
        i++;
    }
    return 1 << 20;
}

static const cJSON *g_sort_sweep;
static int cmp_sweep_order(const void *a, const void *b) {
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    int rx = label_rank(g_sort_sweep, x), ry = label_rank(g_sort_sweep, y);
    if (rx != ry) return rx < ry ? -1 : 1;
    return strcmp(x, y);
}

static int add_sweep(RunSet *s, const char *path) {
    DIR *d = opendir(path);
    if (!d) return ml_fail("%s is not a run folder (no log.jsonl) nor a folder of runs", path);
    char **names = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *sub = path_join(path, e->d_name);
        int run = is_run_dir(sub);
        free(sub);
        if (!run) continue;
        names = ml_realloc(names, sizeof *names * (size_t)(n + 1));
        names[n++] = ml_strdup(e->d_name);
    }
    closedir(d);
    char *sp = path_join(path, "sweep.json");
    cJSON *sweep = NULL;
    if (ml_file_exists(sp)) {
        char *text = ml_read_file_max(sp, NULL, ML_READ_MAX_TEXT);
        sweep = text ? cJSON_Parse(text) : NULL;
        free(text);
    }
    free(sp);
    g_sort_sweep = sweep;
    if (n > 1) qsort(names, (size_t)n, sizeof *names, sweep ? cmp_sweep_order : cmp_str);
    int rc = n ? 0 : ml_fail("%s holds no run folders (folders with a log.jsonl)", path);
    for (int i = 0; i < n; i++) {
        char *sub = path_join(path, names[i]);
        if (rc == 0) rc = add_run(s, sub);
        free(sub);
        free(names[i]);
    }
    free(names);
    if (!s->sweep) s->sweep = sweep;
    else cJSON_Delete(sweep);
    return rc;
}

int runset_add(RunSet *s, const char *path) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return ml_fail("%s is not a folder", path);
    return is_run_dir(path) ? add_run(s, path) : add_sweep(s, path);
}

void runset_free(RunSet *s) {
    for (int i = 0; i < s->n_runs; i++) runlog_free(&s->runs[i].log);
    for (int i = 0; i < s->n_groups; i++) {
        free(s->groups[i].runs);
        free(s->groups[i].flags);
    }
    for (int i = 0; i < s->n_domains; i++) free(s->domains[i]);
    free(s->runs);
    free(s->groups);
    free(s->domains);
    cJSON_Delete(s->sweep);
    memset(s, 0, sizeof *s);
}

static void add_domain(RunSet *s, const char *d) {
    if (!*d || strcmp(d, "infer") == 0) return; /* val_bpb_infer: a routing mode, not a domain */
    for (int i = 0; i < s->n_domains; i++)
        if (strcmp(s->domains[i], d) == 0) return;
    s->domains = ml_realloc(s->domains, sizeof *s->domains * (size_t)(s->n_domains + 1));
    s->domains[s->n_domains++] = ml_strdup(d);
}

/* Config keys whose values differ between groups, as "key=value" for each group: what
 * tells the variants apart, whoever trained them. */
static void group_flags(RunSet *s) {
    static const char *const SKIP[] = {"seed", "threads", "stop_at", "router", NULL};
    for (int g = 0; g < s->n_groups; g++) s->groups[g].flags = ml_strdup("");
    const cJSON *c0 = s->n_groups ? s->runs[s->groups[0].runs[0]].log.config : NULL;
    for (const cJSON *k = c0 ? c0->child : NULL; k; k = k->next) {
        int skip = 0, differ = 0;
        for (int i = 0; SKIP[i]; i++) skip |= strcmp(k->string, SKIP[i]) == 0;
        char *v0 = cJSON_PrintUnformatted(k);
        for (int g = 1; g < s->n_groups && !skip; g++) {
            const cJSON *c = s->runs[s->groups[g].runs[0]].log.config;
            char *v = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(c, k->string));
            differ |= !v || strcmp(v, v0) != 0;
            free(v);
        }
        free(v0);
        for (int g = 0; g < s->n_groups && differ && !skip; g++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(s->runs[s->groups[g].runs[0]].log.config, k->string);
            char *txt;
            if (cJSON_IsNumber(v)) { /* 0.01, not the float's 0.00999999978 */
                txt = ml_malloc(32);
                snprintf(txt, 32, "%.6g", v->valuedouble);
            } else {
                txt = v ? cJSON_PrintUnformatted(v) : ml_strdup("?");
            }
            Group *gr = &s->groups[g];
            size_t n = strlen(gr->flags) + strlen(k->string) + strlen(txt) + 3;
            char *f = ml_malloc(n);
            snprintf(f, n, "%s%s%s=%s", gr->flags, gr->flags[0] ? " " : "", k->string, txt);
            free(gr->flags);
            free(txt);
            gr->flags = f;
        }
    }
}

void runset_group(RunSet *s) {
    for (int i = 0; i < s->n_runs; i++) {
        Run *r = &s->runs[i];
        int g = 0;
        while (g < s->n_groups && strcmp(s->groups[g].label, r->label) != 0) g++;
        if (g == s->n_groups) {
            s->groups = ml_realloc(s->groups, sizeof *s->groups * (size_t)(s->n_groups + 1));
            Group *gr = &s->groups[s->n_groups++];
            memset(gr, 0, sizeof *gr);
            snprintf(gr->label, sizeof gr->label, "%s", r->label);
            const char *router = runlog_cfg_str(&r->log, "router");
            snprintf(gr->router, sizeof gr->router, "%s", router ? router : "?");
        }
        Group *gr = &s->groups[g];
        gr->runs = ml_realloc(gr->runs, sizeof(int) * (size_t)(gr->n_runs + 1));
        gr->runs[gr->n_runs++] = i;
        /* Domains: the keys val_bpb_<domain> of the last evaluation. */
        const cJSON *ev = runlog_last_eval(&r->log);
        for (const cJSON *k = ev ? ev->child : NULL; k; k = k->next)
            if (strncmp(k->string, "val_bpb_", 8) == 0) add_domain(s, k->string + 8);
    }
    group_flags(s);
}

/* ------------------------------------------------------------------ the table */

/* Routing metrics: the router losses, then the metrics of docs/metrics.md by their shared
 * names (METRIC_FIELDS); what a log or analyze.json has of them is shown. */
static const char *const ROUTER_LOSSES[] = {"aux", "z", NULL};
/* Log keys that are not routing metrics (or are shown elsewhere). */
static const char *const NOT_METRICS[] = {"step", "loss", "lr", "grad_norm", "tok_per_s", "router_share", "val_loss", "val_bpb", NULL};

static int in_list(const char *const *list, const char *k) {
    for (int i = 0; list[i]; i++)
        if (strcmp(list[i], k) == 0) return 1;
    return 0;
}

static void add_col(Table *t, const char *key, const char *name, int kind, int section, const char *fmt) {
    for (int i = 0; i < t->n_cols; i++)
        if (strcmp(t->cols[i].name, name) == 0) return;
    t->cols = ml_realloc(t->cols, sizeof *t->cols * (size_t)(t->n_cols + 1));
    Column *c = &t->cols[t->n_cols++];
    snprintf(c->key, sizeof c->key, "%s", key);
    snprintf(c->name, sizeof c->name, "%s", name);
    c->kind = kind;
    c->section = section;
    c->fmt = fmt;
}

/* Scalar numeric keys of a log line that are not known already: router losses of
 * routers added later ("orth", "var", ...) show up without a code change here. */
static void add_other_metrics(Table *t, const cJSON *line) {
    for (const cJSON *k = line ? line->child : NULL; k; k = k->next) {
        if (!cJSON_IsNumber(k) || in_list(NOT_METRICS, k->string) || strncmp(k->string, "val_", 4) == 0) continue;
        add_col(t, k->string, k->string, COL_FINAL, SEC_ROUTING, "%.3f");
    }
}

static void candidate_columns(const RunSet *s, Table *t) {
    add_col(t, "val_loss", "val_loss", COL_FINAL, SEC_QUALITY, "%.4f");
    add_col(t, "val_bpb", "val_bpb", COL_FINAL, SEC_QUALITY, "%.4f");
    add_col(t, "val_loss_infer", "val_loss_infer", COL_FINAL, SEC_QUALITY, "%.4f");
    add_col(t, "val_bpb_infer", "val_bpb_infer", COL_FINAL, SEC_QUALITY, "%.4f");
    add_col(t, "loss", "train_loss", COL_FINAL, SEC_QUALITY, "%.4f");
    for (int pass = 0; pass < 2; pass++)
        for (int d = 0; d < s->n_domains; d++) {
            char k[96];
            snprintf(k, sizeof k, "val_%s_%.80s", pass ? "loss" : "bpb", s->domains[d]);
            add_col(t, k, k, COL_FINAL, SEC_DOMAIN, "%.4f");
        }
    for (int i = 0; ROUTER_LOSSES[i]; i++) add_col(t, ROUTER_LOSSES[i], ROUTER_LOSSES[i], COL_FINAL, SEC_ROUTING, "%.3f");
    for (int i = 0; i < N_METRIC_FIELDS; i++) add_col(t, METRIC_FIELDS[i].name, METRIC_FIELDS[i].name, COL_FINAL, SEC_ROUTING, "%.3f");
    for (int i = 0; i < s->n_runs; i++) {
        const RunLog *l = &s->runs[i].log;
        add_other_metrics(t, l->n_train ? l->train[l->n_train - 1] : NULL);
        add_other_metrics(t, runlog_last_eval(l));
    }
    for (int i = 0; i < N_METRIC_FIELDS; i++) {
        char n[96];
        snprintf(n, sizeof n, "analyze_%s", METRIC_FIELDS[i].name);
        add_col(t, METRIC_FIELDS[i].name, n, COL_ANALYZE, SEC_ANALYZE, "%.3f");
    }
    add_col(t, "tok_per_s", "tok_per_s", COL_MEDIAN, SEC_SPEED, "%.0f");
    add_col(t, "router_share", "router_share", COL_MEDIAN, SEC_SPEED, "%.3f");
}

static double run_value(const Run *r, const Column *c) {
    if (c->kind == COL_MEDIAN) return runlog_median(&r->log, c->key);
    if (c->kind == COL_FINAL) return runlog_final(&r->log, c->key);
    const cJSON *j = json_find(r->log.analyze, c->key, 3);
    if (!j) return NAN;
    cJSON *wrap = cJSON_CreateObject(); /* json_scalar reads obj[key] */
    cJSON_AddItemReferenceToObject(wrap, "v", (cJSON *)j);
    double v = json_scalar(wrap, "v");
    cJSON_Delete(wrap);
    return v;
}

Stat stat_of(const double *v, int n) {
    Stat st = {NAN, NAN, 0};
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) {
            s += v[i];
            st.n++;
        }
    if (!st.n) return st;
    st.mean = s / st.n;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) ss += (v[i] - st.mean) * (v[i] - st.mean);
    if (st.n > 1) st.sd = sqrt(ss / (st.n - 1));
    return st;
}

static int counts(const Table *t, const RunSet *s, const Run *r) {
    (void)s;
    return r->finished || !t->finished_only;
}

static void paired_deltas(const RunSet *s, Table *t, int bpb_col) {
    t->delta = ml_calloc((size_t)s->n_groups + 1, sizeof *t->delta);
    for (int g = 0; g < s->n_groups; g++) {
        const Group *gr = &s->groups[g], *base = &s->groups[0];
        double *d = ml_malloc(sizeof(double) * ((size_t)gr->n_runs + 1));
        int n = 0;
        for (int i = 0; i < gr->n_runs && bpb_col >= 0; i++) {
            int ri = gr->runs[i];
            if (!counts(t, s, &s->runs[ri])) continue;
            for (int j = 0; j < base->n_runs; j++) {
                int bj = base->runs[j];
                if (s->runs[bj].seed == s->runs[ri].seed && counts(t, s, &s->runs[bj])) {
                    d[n++] = t->val[(size_t)ri * t->n_cols + bpb_col] - t->val[(size_t)bj * t->n_cols + bpb_col];
                    break; /* one partner per run, even if a folder was given twice */
                }
            }
        }
        t->delta[g] = stat_of(d, n);
        free(d);
    }
}

void table_build(const RunSet *s, int finished_only, Table *t) {
    memset(t, 0, sizeof *t);
    t->finished_only = finished_only;
    Table all = {0};
    candidate_columns(s, &all);
    double *v = ml_malloc(sizeof(double) * ((size_t)s->n_runs * all.n_cols + 1));
    for (int i = 0; i < s->n_runs; i++)
        for (int c = 0; c < all.n_cols; c++) v[(size_t)i * all.n_cols + c] = run_value(&s->runs[i], &all.cols[c]);
    /* Keep the columns some run has a value for. */
    int *keep = ml_malloc(sizeof(int) * ((size_t)all.n_cols + 1));
    for (int c = 0; c < all.n_cols; c++) {
        int any = 0;
        for (int i = 0; i < s->n_runs; i++) any |= isfinite(v[(size_t)i * all.n_cols + c]);
        if (any) keep[t->n_cols++] = c;
    }
    t->cols = ml_malloc(sizeof *t->cols * ((size_t)t->n_cols + 1));
    t->val = ml_malloc(sizeof(double) * ((size_t)s->n_runs * t->n_cols + 1));
    for (int k = 0; k < t->n_cols; k++) {
        t->cols[k] = all.cols[keep[k]];
        for (int i = 0; i < s->n_runs; i++) t->val[(size_t)i * t->n_cols + k] = v[(size_t)i * all.n_cols + keep[k]];
    }
    free(keep);
    free(v);
    free(all.cols);
    t->cell = ml_malloc(sizeof *t->cell * ((size_t)s->n_groups * t->n_cols + 1));
    int bpb = -1;
    for (int c = 0; c < t->n_cols; c++) {
        if (strcmp(t->cols[c].name, "val_bpb") == 0) bpb = c;
        for (int g = 0; g < s->n_groups; g++) {
            const Group *gr = &s->groups[g];
            double *x = ml_malloc(sizeof(double) * ((size_t)gr->n_runs + 1));
            int n = 0;
            for (int i = 0; i < gr->n_runs; i++)
                if (counts(t, s, &s->runs[gr->runs[i]])) x[n++] = t->val[(size_t)gr->runs[i] * t->n_cols + c];
            t->cell[(size_t)g * t->n_cols + c] = stat_of(x, n);
            free(x);
        }
    }
    paired_deltas(s, t, bpb);
}

void table_free(Table *t) {
    free(t->cols);
    free(t->val);
    free(t->cell);
    free(t->delta);
    memset(t, 0, sizeof *t);
}

void stat_format(const Stat *st, const char *fmt, char *buf, size_t n) {
    if (!st->n || !isfinite(st->mean)) {
        snprintf(buf, n, "–");
        return;
    }
    int k = snprintf(buf, n, fmt, st->mean);
    if (isfinite(st->sd) && k > 0 && (size_t)k < n) {
        char f[24] = " ± ";
        size_t m = strlen(f);
        for (const char *p = fmt; *p && m < sizeof f - 1; p++)
            if (*p != '+') f[m++] = *p; /* the sd takes no sign */
        f[m] = 0;
        snprintf(buf + k, n - (size_t)k, f, st->sd);
    }
}
