#include "report/runlog.h"
#include "core/util.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = ml_malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static cJSON *read_json(const char *dir, const char *name) {
    char *p = path_join(dir, name);
    cJSON *j = NULL;
    if (ml_file_exists(p)) {
        char *text = ml_read_file_max(p, NULL, ML_READ_MAX_TEXT);
        j = text ? cJSON_Parse(text) : NULL;
        free(text);
        if (j && !cJSON_IsObject(j)) {
            cJSON_Delete(j);
            j = NULL;
        }
    }
    free(p);
    return j;
}

static void push(cJSON ***arr, int *n, cJSON *item) {
    *arr = ml_realloc(*arr, sizeof **arr * (size_t)(*n + 1));
    (*arr)[(*n)++] = item;
}

/* A non-finite number is logged as null. Only the losses and the gradient norm count as a
 * divergence: a routing metric a router does not define (route_entropy without router
 * probabilities, the selection metrics before any) is null on every line of a healthy run. */
static int has_null_number(const cJSON *j) {
    static const char *const always_defined[] = {"loss", "grad_norm", "val_loss", "val_bpb"};
    for (size_t i = 0; i < sizeof always_defined / sizeof always_defined[0]; i++)
        if (cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, always_defined[i]))) return 1;
    return 0;
}

int runlog_load(RunLog *r, const char *dir) {
    memset(r, 0, sizeof *r);
    char *p = path_join(dir, "log.jsonl");
    size_t len;
    char *text = ml_file_exists(p) ? ml_read_file_max(p, &len, ML_READ_MAX_TEXT) : NULL;
    if (!text) {
        ml_fail("%s has no readable log.jsonl (not a run folder?)", dir);
        free(p);
        return -1;
    }
    free(p);
    r->dir = ml_strdup(dir);
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/') dl--;
    const char *base = dir + dl;
    while (base > dir && base[-1] != '/') base--;
    r->name = ml_malloc((size_t)(dir + dl - base) + 1);
    memcpy(r->name, base, (size_t)(dir + dl - base));
    r->name[dir + dl - base] = 0;
    for (char *line = text, *next; *line; line = next) {
        char *nl = strchr(line, '\n');
        next = nl ? nl + 1 : line + strlen(line);
        if (nl) *nl = 0;
        if (!*line) continue;
        cJSON *j = cJSON_Parse(line);
        r->nonfinite += j ? has_null_number(j) : strstr(line, "nan") != NULL || strstr(line, "inf") != NULL;
        if (!j || !cJSON_IsObject(j) || !cJSON_GetObjectItemCaseSensitive(j, "step")) {
            cJSON_Delete(j);
            r->bad_lines++;
        } else if (cJSON_GetObjectItemCaseSensitive(j, "val_loss")) push(&r->eval, &r->n_eval, j);
        else if (cJSON_GetObjectItemCaseSensitive(j, "loss")) push(&r->train, &r->n_train, j);
        else cJSON_Delete(j);
    }
    free(text);
    r->config = read_json(dir, "config.json");
    r->analyze = read_json(dir, "analyze.json");
    r->ckpt_step = checkpoint_step_of(dir);
    return 0;
}

void runlog_free(RunLog *r) {
    for (int i = 0; i < r->n_train; i++) cJSON_Delete(r->train[i]);
    for (int i = 0; i < r->n_eval; i++) cJSON_Delete(r->eval[i]);
    free(r->train);
    free(r->eval);
    cJSON_Delete(r->config);
    cJSON_Delete(r->analyze);
    free(r->dir);
    free(r->name);
    memset(r, 0, sizeof *r);
}

static void sum_numbers(const cJSON *j, double *sum, long *n) {
    if (cJSON_IsNumber(j)) {
        *sum += j->valuedouble;
        (*n)++;
    } else if (cJSON_IsArray(j)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, j) sum_numbers(e, sum, n);
    }
}

double json_scalar(const cJSON *obj, const char *key) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsNumber(j)) return j->valuedouble;
    if (!cJSON_IsArray(j)) return NAN;
    double s = 0;
    long n = 0;
    sum_numbers(j, &s, &n);
    return n ? s / (double)n : NAN;
}

const cJSON *json_find(const cJSON *obj, const char *key, int depth) {
    if (!cJSON_IsObject(obj)) return NULL;
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (j || depth <= 0) return j;
    for (const cJSON *c = obj->child; c; c = c->next)
        if ((j = json_find(c, key, depth - 1))) return j;
    return NULL;
}

double runlog_cfg_num(const RunLog *r, const char *key) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(r->config, key);
    return cJSON_IsNumber(j) ? j->valuedouble : NAN;
}

const char *runlog_cfg_str(const RunLog *r, const char *key) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(r->config, key);
    return cJSON_IsString(j) ? j->valuestring : NULL;
}

int runlog_series(const RunLog *r, int eval, const char *key, double **steps, double **vals) {
    cJSON **lines = eval ? r->eval : r->train;
    int n = eval ? r->n_eval : r->n_train, k = 0;
    *steps = ml_malloc(sizeof(double) * (size_t)(n + 1));
    *vals = ml_malloc(sizeof(double) * (size_t)(n + 1));
    for (int i = 0; i < n; i++) {
        double v = json_scalar(lines[i], key);
        if (!isfinite(v)) continue;
        (*steps)[k] = json_scalar(lines[i], "step");
        (*vals)[k++] = v;
    }
    return k;
}

double runlog_final(const RunLog *r, const char *key) {
    for (int i = r->n_eval - 1; i >= 0; i--) {
        double v = json_scalar(r->eval[i], key);
        if (isfinite(v)) return v;
    }
    double s = 0;
    int n = 0;
    for (int i = r->n_train - 1; i >= 0 && n < 10; i--) {
        double v = json_scalar(r->train[i], key);
        if (isfinite(v)) {
            s += v;
            n++;
        }
    }
    return n ? s / n : NAN;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double runlog_median(const RunLog *r, const char *key) {
    double *steps, *vals;
    int n = runlog_series(r, 0, key, &steps, &vals);
    double m = NAN;
    if (n > 0) {
        qsort(vals, (size_t)n, sizeof *vals, cmp_double);
        m = n % 2 ? vals[n / 2] : 0.5 * (vals[n / 2 - 1] + vals[n / 2]);
    }
    free(steps);
    free(vals);
    return m;
}

const cJSON *runlog_last_eval(const RunLog *r) { return r->n_eval ? r->eval[r->n_eval - 1] : NULL; }

/* Reads only the safetensors header: 8-byte little-endian length, then JSON. */
long checkpoint_step_of(const char *dir) {
    char *p = path_join(dir, "model.safetensors");
    FILE *f = ml_file_exists(p) ? ml_fopen_regular(p, NULL) : NULL;
    free(p);
    if (!f) return -1;
    unsigned char b[8];
    uint64_t hlen = 0;
    long step = -1;
    if (fread(b, 1, 8, f) == 8) {
        for (int i = 0; i < 8; i++) hlen |= (uint64_t)b[i] << (8 * i);
        char *h = hlen > 0 && hlen < (64u << 20) ? ml_malloc((size_t)hlen) : NULL;
        cJSON *root = h && fread(h, 1, (size_t)hlen, f) == hlen ? cJSON_ParseWithLength(h, (size_t)hlen) : NULL;
        const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(meta, "step");
        if (cJSON_IsString(s)) {
            char *end;
            long v = strtol(s->valuestring, &end, 10);
            if (*s->valuestring && !*end && v >= 0) step = v;
        }
        cJSON_Delete(root);
        free(h);
    }
    fclose(f);
    return step;
}
