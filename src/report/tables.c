/* The results table written out: results.csv (one row per variant), runs.csv (one row
 * per run) and Markdown (results.md, and what `moelab compare` prints). */
#include "core/util.h"
#include "report/plot.h"
#include "report/results.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *column_title(const Column *c) {
    static const struct {
        const char *name, *title;
    } T[] = {
        {"val_loss", "val loss"},
        {"val_bpb", "val bpb"},
        {"val_loss_infer", "val loss (infer rule)"},
        {"val_bpb_infer", "val bpb (infer rule)"},
        {"train_loss", "train loss (last 10 steps)"},
        {"aux", "aux (1 = balanced)"},
        {"z", "z-loss"},
        {"tok_per_s", "tok/s"},
        {"router_share", "router share of step"},
    };
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++)
        if (strcmp(T[i].name, c->name) == 0) return T[i].title;
    if (c->section == SEC_DOMAIN) { /* "val_bpb_<domain>" -> "<domain> bpb" */
        static char buf[128];
        int bpb = strncmp(c->name, "val_bpb_", 8) == 0;
        snprintf(buf, sizeof buf, "%s %s", c->name + (bpb ? 8 : 9), bpb ? "bpb" : "loss");
        return buf;
    }
    return c->name;
}

static void csv_field(Str *b, const char *s) {
    if (!strpbrk(s, ",\"\n")) {
        str_printf(b, "%s", s);
        return;
    }
    str_printf(b, "\"");
    for (const char *p = s; *p; p++) str_printf(b, *p == '"' ? "\"\"" : "%c", *p);
    str_printf(b, "\"");
}

static void csv_num(Str *b, double v) {
    if (isfinite(v)) str_printf(b, ",%.6g", v);
    else str_printf(b, ",");
}

static int finished_runs(const RunSet *s, const Group *g) {
    int n = 0;
    for (int i = 0; i < g->n_runs; i++) n += s->runs[g->runs[i]].finished;
    return n;
}

int results_write_csv(const RunSet *s, const Table *t, const char *path) {
    Str b = {0};
    str_printf(&b, "variant,router,flags,seeds");
    for (int c = 0; c < t->n_cols; c++) str_printf(&b, ",%s_mean,%s_sd", t->cols[c].name, t->cols[c].name);
    str_printf(&b, ",d_val_bpb_mean,d_val_bpb_sd\n");
    for (int g = 0; g < s->n_groups; g++) {
        const Group *gr = &s->groups[g];
        csv_field(&b, gr->label);
        str_printf(&b, ",");
        csv_field(&b, gr->router);
        str_printf(&b, ",");
        csv_field(&b, gr->flags);
        str_printf(&b, ",%d", t->finished_only ? finished_runs(s, gr) : gr->n_runs);
        for (int c = 0; c < t->n_cols; c++) {
            const Stat *st = &t->cell[(size_t)g * t->n_cols + c];
            csv_num(&b, st->mean);
            csv_num(&b, st->sd);
        }
        csv_num(&b, t->delta[g].mean);
        csv_num(&b, t->delta[g].sd);
        str_printf(&b, "\n");
    }
    int rc = ml_write_file_atomic(path, b.s, b.len);
    free(b.s);
    return rc;
}

int results_write_runs_csv(const RunSet *s, const Table *t, const char *path) {
    Str b = {0};
    str_printf(&b, "run,variant,seed,finished,step");
    for (int c = 0; c < t->n_cols; c++) str_printf(&b, ",%s", t->cols[c].name);
    str_printf(&b, "\n");
    for (int i = 0; i < s->n_runs; i++) {
        const Run *r = &s->runs[i];
        csv_field(&b, r->log.name);
        str_printf(&b, ",");
        csv_field(&b, r->label);
        str_printf(&b, ",%d,%d,%ld", r->seed, r->finished, r->log.ckpt_step);
        for (int c = 0; c < t->n_cols; c++) csv_num(&b, t->val[(size_t)i * t->n_cols + c]);
        str_printf(&b, "\n");
    }
    int rc = ml_write_file_atomic(path, b.s, b.len);
    free(b.s);
    return rc;
}

/* Markdown cell text: '|' would end the cell. */
static void md_text(Str *b, const char *s) {
    for (const char *p = s; *p; p++) str_printf(b, *p == '|' ? "\\|" : "%c", *p);
}

static int section_cols(const Table *t, int section) {
    int n = 0;
    for (int c = 0; c < t->n_cols; c++) n += t->cols[c].section == section;
    return n;
}

static void md_header(Str *b, const Table *t, int section, const char *lead, const char *extra) {
    str_printf(b, "| variant%s", lead);
    for (int c = 0; c < t->n_cols; c++)
        if (t->cols[c].section == section) {
            str_printf(b, " | ");
            md_text(b, column_title(&t->cols[c]));
        }
    str_printf(b, "%s |\n|:---", extra);
    int n = section_cols(t, section), text_cols = 0;
    for (const char *p = lead; *p; p++) n += *p == '|';
    for (const char *p = extra; *p; p++) n += *p == '|';
    if (strstr(lead, "flags")) text_cols = 2; /* router, flags */
    for (int i = 0; i < n; i++) str_printf(b, i < text_cols ? "|:---" : "|---:");
    str_printf(b, "|\n");
}

static void md_cells(Str *b, const Table *t, int g, int section) {
    for (int c = 0; c < t->n_cols; c++)
        if (t->cols[c].section == section) {
            char cell[96];
            stat_format(&t->cell[(size_t)g * t->n_cols + c], t->cols[c].fmt, cell, sizeof cell);
            str_printf(b, " | %s", cell);
        }
}

static int col_index(const Table *t, const char *name) {
    for (int c = 0; c < t->n_cols; c++)
        if (strcmp(t->cols[c].name, name) == 0) return c;
    return -1;
}

static void md_quality(Str *b, const RunSet *s, const Table *t) {
    char extra[128];
    snprintf(extra, sizeof extra, " | Δ bpb vs %s (paired by seed)", s->n_groups ? s->groups[0].label : "?");
    str_printf(b, "### Quality (validation; mean ± sd over seeds)\n\n");
    md_header(b, t, SEC_QUALITY, " | router | flags | seeds", extra);
    for (int g = 0; g < s->n_groups; g++) {
        const Group *gr = &s->groups[g];
        str_printf(b, "| ");
        md_text(b, gr->label);
        str_printf(b, " | %s | ", gr->router);
        md_text(b, gr->flags[0] ? gr->flags : "–");
        str_printf(b, " | %d", t->finished_only ? finished_runs(s, gr) : gr->n_runs);
        md_cells(b, t, g, SEC_QUALITY);
        char d[96];
        if (g == 0) snprintf(d, sizeof d, "(baseline)");
        else stat_format(&t->delta[g], "%+.4f", d, sizeof d);
        str_printf(b, " | %s |\n", d);
    }
}

static void md_section(Str *b, const RunSet *s, const Table *t, int section, const char *title) {
    if (!section_cols(t, section)) return;
    str_printf(b, "\n### %s\n\n", title);
    int speed = section == SEC_SPEED, tps = col_index(t, "tok_per_s");
    md_header(b, t, section, "", speed && tps >= 0 ? " | tok/s vs first" : "");
    for (int g = 0; g < s->n_groups; g++) {
        str_printf(b, "| ");
        md_text(b, s->groups[g].label);
        md_cells(b, t, g, section);
        if (speed && tps >= 0) {
            double a = t->cell[(size_t)g * t->n_cols + tps].mean, z = t->cell[tps].mean;
            if (isfinite(a) && isfinite(z) && z > 0) str_printf(b, " | %.2fx", a / z);
            else str_printf(b, " | –");
        }
        str_printf(b, " |\n");
    }
}

char *results_markdown(const RunSet *s, const Table *t, const char *header_note) {
    Str b = {0};
    str_printf(&b, "## Results\n\n");
    if (header_note && *header_note) str_printf(&b, "%s\n\n", header_note);
    md_quality(&b, s, t);
    md_section(&b, s, t, SEC_DOMAIN, "Validation by domain (bits per byte and loss)");
    md_section(&b, s, t, SEC_ROUTING, "Routing in training (the last evaluation, else the mean of the last 10 logged steps)");
    md_section(&b, s, t, SEC_ANALYZE, "Routing of the final checkpoint on the validation split (moelab analyze)");
    md_section(&b, s, t, SEC_SPEED, "Speed (median over logged steps)");
    return str_take(&b);
}
