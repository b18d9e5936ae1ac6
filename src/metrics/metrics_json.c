/* JSON for the metrics: fields of a training-step or evaluation line of log.jsonl,
 * and the whole `moelab analyze` document. The schema is in docs/metrics.md. */
#include "metrics/metrics.h"
#include <math.h>

/* Undefined metrics (NaN) become null: a log line stays valid JSON. */
static void num(FILE *f, double x) {
    if (isfinite(x)) fprintf(f, "%.6g", x);
    else fputs("null", f);
}

enum { SET_CHEAP = 1, SET_FULL = 2, SET_ALL = 3 };

static void fields(FILE *f, const LayerMetrics *m, int set) {
    for (int i = 0; i < N_METRIC_FIELDS; i++) {
        if (!(set & (METRIC_FIELDS[i].full ? SET_FULL : SET_CHEAP))) continue;
        fprintf(f, ",\"%s\":", METRIC_FIELDS[i].name);
        num(f, metric_value(m, i));
    }
}

static void counts(FILE *f, const char *key, const double *v, int n) {
    fprintf(f, ",\"%s\":[", key);
    for (int i = 0; i < n; i++) fprintf(f, "%s%.0f", i ? "," : "", v[i]);
    fputc(']', f);
}

/* rows x cols matrix as nested arrays, each value divided by div. */
static void matrix(FILE *f, const char *key, const double *v, int rows, int cols, double div) {
    fprintf(f, ",\"%s\":[", key);
    for (int r = 0; r < rows; r++) {
        fputs(r ? ",[" : "[", f);
        for (int c = 0; c < cols; c++) {
            if (c) fputc(',', f);
            if (div == 1.0) fprintf(f, "%.0f", v[(size_t)r * cols + c]);
            else num(f, div > 0.0 ? v[(size_t)r * cols + c] / div : NAN);
        }
        fputc(']', f);
    }
    fputc(']', f);
}

void metrics_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

void metrics_json_step(FILE *f, const Metrics *mt) {
    fields(f, &mt->mean, SET_CHEAP);
    fputs(",\"layers\":[", f);
    for (int i = 0; i < mt->n_moe; i++) {
        fprintf(f, "%s{\"layer\":%d", i ? "," : "", mt->st[i].layer);
        counts(f, "load", mt->st[i].load, mt->E);
        fields(f, &mt->m[i], SET_CHEAP);
        fputc('}', f);
    }
    fputc(']', f);
}

void metrics_json_eval(FILE *f, const Metrics *mt) {
    fields(f, &mt->mean, SET_FULL);
    fputs(",\"layers\":[", f);
    for (int i = 0; i < mt->n_moe; i++) {
        const LayerStats *s = &mt->st[i];
        fprintf(f, "%s{\"layer\":%d", i ? "," : "", s->layer);
        fields(f, &mt->m[i], SET_FULL);
        if (s->cooc) matrix(f, "cooc", s->cooc, mt->E, mt->E, s->tokens > 0 ? (double)s->tokens : 0.0);
        fputc('}', f);
    }
    fputc(']', f);
}

void metrics_json_full(FILE *f, const Metrics *mt, const char (*domains)[SHARD_NAME_LEN]) {
    fprintf(f, ",\"n_experts\":%d,\"top_k\":%d,\"batches\":%ld,\"tokens\":%ld,\"router_share\":", mt->E, mt->k,
            mt->batches, mt->n_moe ? mt->st[0].tokens : 0L);
    num(f, mt->seconds > 0.0 ? mt->router_seconds / mt->seconds : NAN);
    fields(f, &mt->mean, SET_ALL);
    fputs(",\"domains\":[", f);
    for (int d = 0; d < mt->n_domains; d++) {
        if (d) fputc(',', f);
        if (domains) metrics_json_string(f, domains[d]);
        else fprintf(f, "\"%d\"", d);
    }
    fputs("],\"layers\":[", f);
    for (int i = 0; i < mt->n_moe; i++) {
        const LayerStats *s = &mt->st[i];
        fprintf(f, "%s{\"layer\":%d,\"tokens\":%ld", i ? "," : "", s->layer, s->tokens);
        counts(f, "load", s->load, s->E);
        fields(f, &mt->m[i], SET_ALL);
        fputs(",\"experts_per_token_hist\":[", f);
        for (int n = 0; n <= s->E; n++) fprintf(f, "%s%ld", n ? "," : "", s->ept[n]);
        fputc(']', f);
        if (s->cooc) matrix(f, "cooc", s->cooc, s->E, s->E, s->tokens > 0 ? (double)s->tokens : 0.0);
        if (s->dom_tok) {
            counts(f, "domain_tokens", s->dom_tok, s->n_domains);
            matrix(f, "domain_load", s->dom_load, s->n_domains, s->E, 1.0);
        }
        fputc('}', f);
    }
    fputc(']', f);
}
