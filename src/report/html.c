#include "report/html.h"
#include "core/util.h"
#include "report/charts.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *CSS =
    ":root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#f6f8fa;--accent:#4e79a7}\n"
    "*{box-sizing:border-box}\n"
    "body{margin:0;font:15px/1.5 system-ui,-apple-system,'Segoe UI','DejaVu Sans',sans-serif;color:var(--fg);background:#fff}\n"
    "header{background:linear-gradient(90deg,#23395b,#4e79a7);color:#fff;padding:22px 32px}\n"
    "header h1{margin:0 0 4px;font-size:24px;font-weight:650}\n"
    "header p{margin:2px 0;opacity:.9;font-size:14px}\n"
    "nav{position:sticky;top:0;z-index:1;background:#fff;border-bottom:1px solid var(--line);padding:8px 32px;font-size:14px}\n"
    "nav a{color:var(--accent);text-decoration:none;margin-right:18px;white-space:nowrap}\n"
    "main{max-width:1180px;margin:0 auto;padding:8px 32px 40px}\n"
    "h2{font-size:20px;margin:34px 0 8px;padding-bottom:4px;border-bottom:2px solid var(--line)}\n"
    "h3{font-size:16px;margin:22px 0 6px}\n"
    "p.note{color:var(--muted);font-size:13.5px;margin:4px 0 10px}\n"
    ".scroll{overflow-x:auto}\n"
    "table{border-collapse:collapse;font-size:13.5px;margin:6px 0 14px}\n"
    "th,td{padding:5px 10px;border-bottom:1px solid var(--line);white-space:nowrap}\n"
    "th{background:var(--bg);text-align:right;font-weight:600;white-space:normal;vertical-align:bottom;min-width:64px}\n"
    "td{text-align:right;font-variant-numeric:tabular-nums}\n"
    "th.t,td.t{text-align:left}\n"
    "tbody tr:hover{background:#f0f5fb}\n"
    "td.best{font-weight:700;color:#1a5e20}\n"
    ".sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}\n"
    "code{font-size:12.5px;background:var(--bg);padding:1px 4px;border-radius:4px}\n"
    ".grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:14px}\n"
    "figure.chart{margin:10px 0;padding:10px 12px 6px;border:1px solid var(--line);border-radius:8px;background:#fff}\n"
    "figure.chart figcaption{font-weight:600;font-size:14.5px;margin-bottom:4px}\n"
    "figure.chart svg{display:block;width:100%;height:auto}\n"
    "figure.chart svg image{image-rendering:pixelated}\n"
    "span.sd{color:var(--muted);font-size:12px}\n"
    ".pair{display:flex;flex-wrap:wrap;column-gap:40px;align-items:flex-start}\n"
    ".pair>div{min-width:0;max-width:100%}\n"
    "footer{color:var(--muted);font-size:12.5px;text-align:center;padding:20px}\n";

/* max_w: 0 fills the column; -1 at most the chart's own width (matrices read badly blown up). */
static void figure(Str *b, const char *kind, const char *caption, const char *svg, int max_w) {
    static const char VB[] = "viewBox=\"0 0 ";
    const char *vb = strstr(svg, VB);
    if (max_w < 0) max_w = vb ? atoi(vb + strlen(VB)) + 26 : 0;
    str_printf(b, "<figure class=\"chart\" data-chart=\"%s\"%s", kind, max_w ? " style=\"max-width:" : "");
    if (max_w) str_printf(b, "%dpx\"", max_w);
    str_add(b, "><figcaption>");
    str_html(b, caption);
    str_add(b, "</figcaption>\n");
    str_add(b, svg);
    str_add(b, "</figure>\n");
}

static void note(Str *b, const char *text) {
    str_add(b, "<p class=\"note\">");
    str_html(b, text);
    str_add(b, "</p>\n");
}

/* ------------------------------------------------------------------ tables */

static int section_cols(const Table *t, int sec) {
    int n = 0;
    for (int c = 0; c < t->n_cols; c++) n += t->cols[c].section == sec;
    return n;
}

static int col_index(const Table *t, const char *name) {
    for (int c = 0; c < t->n_cols; c++)
        if (strcmp(t->cols[c].name, name) == 0) return c;
    return -1;
}

/* The group with the lowest mean in column c (quality columns: lower is better). */
static int best_group(const RunSet *s, const Table *t, int c) {
    int best = -1;
    for (int g = 0; g < s->n_groups && s->n_groups > 1; g++) {
        double v = t->cell[(size_t)g * t->n_cols + c].mean;
        if (isfinite(v) && (best < 0 || v < t->cell[(size_t)best * t->n_cols + c].mean)) best = g;
    }
    return best;
}

/* A table cell: the mean, then the sd in a muted span. */
static void stat_cell(Str *b, const Stat *st, const char *fmt, int best) {
    char cell[96];
    stat_format(st, fmt, cell, sizeof cell);
    char *pm = strstr(cell, " ± ");
    str_printf(b, "<td%s>", best ? " class=\"best\"" : "");
    if (pm) {
        *pm = 0;
        str_printf(b, "%s<span class=\"sd\"> ± %s</span></td>", cell, pm + strlen(" ± "));
    } else {
        str_printf(b, "%s</td>", cell);
    }
}

static void variant_cell(Str *b, const RunSet *s, int g) {
    str_printf(b, "<td class=\"t\"><span class=\"sw\" style=\"background:%s\"></span>", chart_color(g));
    str_html(b, s->groups[g].label);
    str_add(b, "</td>");
}

static int seeds_counted(const RunSet *s, const Table *t, const Group *g) {
    int n = 0;
    for (int i = 0; i < g->n_runs; i++) n += s->runs[g->runs[i]].finished || !t->finished_only;
    return n;
}

static void html_table_turned(Str *b, const RunSet *s, const Table *t, int sec, const char *title);

static void html_table(Str *b, const RunSet *s, const Table *t, int sec, const char *title) {
    if (!section_cols(t, sec)) return;
    if ((sec == SEC_ROUTING || sec == SEC_ANALYZE) && section_cols(t, sec) > 6 && s->n_groups <= 6) {
        html_table_turned(b, s, t, sec, title);
        return;
    }
    int quality = sec == SEC_QUALITY, speed = sec == SEC_SPEED, tps = col_index(t, "tok_per_s");
    str_printf(b, "<div><h3>%s</h3>\n<div class=\"scroll\"><table data-table=\"%d\"><thead><tr><th class=\"t\">variant</th>", title, sec);
    if (quality) str_add(b, "<th class=\"t\">router</th><th class=\"t\">flags</th><th>seeds</th>");
    for (int c = 0; c < t->n_cols; c++)
        if (t->cols[c].section == sec) {
            const char *h = column_title(&t->cols[c]);
            str_add(b, "<th>");
            str_html(b, sec == SEC_ANALYZE && strncmp(h, "analyze_", 8) == 0 ? h + 8 : h);
            str_add(b, "</th>");
        }
    if (quality) {
        str_add(b, "<th>Δ bpb vs ");
        str_html(b, s->groups[0].label);
        str_add(b, "</th>");
    }
    if (speed && tps >= 0) str_add(b, "<th>tok/s vs first</th>");
    str_add(b, "</tr></thead>\n<tbody>\n");
    for (int g = 0; g < s->n_groups; g++) {
        const Group *gr = &s->groups[g];
        str_add(b, "<tr>");
        variant_cell(b, s, g);
        if (quality) {
            str_add(b, "<td class=\"t\">");
            str_html(b, gr->router);
            str_add(b, "</td><td class=\"t\"><code>");
            str_html(b, gr->flags[0] ? gr->flags : "–");
            str_printf(b, "</code></td><td>%d</td>", seeds_counted(s, t, gr));
        }
        for (int c = 0; c < t->n_cols; c++) {
            if (t->cols[c].section != sec) continue;
            int best = (sec == SEC_QUALITY || sec == SEC_DOMAIN) && best_group(s, t, c) == g;
            stat_cell(b, &t->cell[(size_t)g * t->n_cols + c], t->cols[c].fmt, best);
        }
        if (quality && g) stat_cell(b, &t->delta[g], "%+.4f", 0);
        else if (quality) str_add(b, "<td>baseline</td>");
        if (speed && tps >= 0) {
            double a = t->cell[(size_t)g * t->n_cols + tps].mean, z = t->cell[tps].mean;
            if (isfinite(a) && isfinite(z) && z > 0) str_printf(b, "<td>%.2fx</td>", a / z);
            else str_add(b, "<td>–</td>");
        }
        str_add(b, "</tr>\n");
    }
    str_add(b, "</tbody></table></div></div>\n");
}

/* A wide section (many metrics, few variants) reads better turned: one row per metric. */
static void html_table_turned(Str *b, const RunSet *s, const Table *t, int sec, const char *title) {
    str_printf(b, "<div><h3>%s</h3>\n<div class=\"scroll\"><table data-table=\"%d\"><thead><tr><th class=\"t\">metric</th>",
               title, sec);
    for (int g = 0; g < s->n_groups; g++) {
        str_printf(b, "<th><span class=\"sw\" style=\"background:%s\"></span>", chart_color(g));
        str_html(b, s->groups[g].label);
        str_add(b, "</th>");
    }
    str_add(b, "</tr></thead>\n<tbody>\n");
    for (int c = 0; c < t->n_cols; c++) {
        if (t->cols[c].section != sec) continue;
        const char *h = column_title(&t->cols[c]);
        str_add(b, "<tr><td class=\"t\">");
        str_html(b, sec == SEC_ANALYZE && strncmp(h, "analyze_", 8) == 0 ? h + 8 : h);
        str_add(b, "</td>");
        for (int g = 0; g < s->n_groups; g++) stat_cell(b, &t->cell[(size_t)g * t->n_cols + c], t->cols[c].fmt, 0);
        str_add(b, "</tr>\n");
    }
    str_add(b, "</tbody></table></div></div>\n");
}

static void runs_table(Str *b, const RunSet *s) {
    str_add(b, "<div class=\"scroll\"><table><thead><tr><th class=\"t\">run</th><th class=\"t\">variant</th><th>seed</th>"
               "<th>checkpoint step</th><th>steps</th><th class=\"t\">state</th><th>val bpb</th><th class=\"t\">folder</th>"
               "</tr></thead><tbody>\n");
    for (int g = 0; g < s->n_groups; g++)
        for (int i = 0; i < s->groups[g].n_runs; i++) {
            const Run *r = &s->runs[s->groups[g].runs[i]];
            double steps = runlog_cfg_num(&r->log, "steps"), bpb = runlog_final(&r->log, "val_bpb");
            str_add(b, "<tr><td class=\"t\">");
            str_html(b, r->log.name);
            str_add(b, "</td>");
            variant_cell(b, s, g);
            str_printf(b, "<td>%d</td><td>%ld</td><td>%.0f</td><td class=\"t\">%s</td>", r->seed, r->log.ckpt_step, steps,
                       r->finished ? "finished" : r->log.ckpt_step >= 0 ? "stopped (resumable)" : "no checkpoint");
            if (isfinite(bpb)) str_printf(b, "<td>%.4f</td>", bpb);
            else str_add(b, "<td>–</td>");
            str_add(b, "<td class=\"t\"><code>");
            str_html(b, r->log.dir);
            str_add(b, "</code></td></tr>\n");
        }
    str_add(b, "</tbody></table></div>\n");
}

/* ------------------------------------------------------------------ sections */

static int results_section(Str *b, const RunSet *s, const Table *t) {
    str_add(b, "<section id=\"results\"><h2>Results</h2>\n");
    int unfinished = 0;
    for (int i = 0; i < s->n_runs; i++) unfinished += !s->runs[i].finished;
    note(b, "Mean ± standard deviation over seeds; Δ bpb is each run's validation bits per byte minus the first "
            "variant's with the same seed. Bold: the lowest mean. Routing in training: the last evaluation for "
            "overlap, expert_sim, domain_mi and the sel_* selection metrics (chosen experts against the router's "
            "own top-k), else the mean of the last 10 logged steps. Speeds compare runs "
            "made on the same machine with the same threads only.");
    if (unfinished) {
        char msg[160];
        snprintf(msg, sizeof msg, "%d of %d runs are not finished: their columns use their latest evaluation.", unfinished, s->n_runs);
        note(b, msg);
    }
    for (int i = 0; i < s->n_runs; i++)
        if (s->runs[i].log.nonfinite) {
            char msg[400];
            snprintf(msg, sizeof msg, "Warning: run %.200s has %d log lines with non-finite values (NaN or Inf): the "
                     "training diverged there; those values are missing from the tables and charts.",
                     s->runs[i].log.name, s->runs[i].log.nonfinite);
            note(b, msg);
        }
    html_table(b, s, t, SEC_QUALITY, "Quality (validation)");
    html_table(b, s, t, SEC_DOMAIN, "Validation by domain");
    str_add(b, "<div class=\"pair\">\n"); /* the two routing tables side by side when they fit */
    html_table(b, s, t, SEC_ROUTING, "Routing in training");
    html_table(b, s, t, SEC_ANALYZE, "Final checkpoint, validation split (moelab analyze)");
    str_add(b, "</div>\n");
    html_table(b, s, t, SEC_SPEED, "Speed (median over logged steps)");
    str_add(b, "</section>\n");
    return 0;
}

static int curves_section(Str *b, const RunSet *s, const Table *t, Plotter *p, int *charts) {
    char *svg;
    str_add(b, "<section id=\"curves\"><h2>Loss curves</h2>\n");
    note(b, "One line per run, coloured by variant; the first seed solid, the others dashed. Training loss is "
            "an exponential moving average of the logged steps, its axis cut above the early steps.");
    str_add(b, "<div class=\"grid\">\n");
    if (chart_loss(p, s, 0, &svg)) return -1;
    if (svg) figure(b, "loss-train", "Training loss", svg, 0), (*charts)++;
    free(svg);
    if (chart_loss(p, s, 1, &svg)) return -1;
    int have_val = svg != NULL;
    if (svg) figure(b, "loss-val", "Validation loss", svg, 0), (*charts)++;
    free(svg);
    if (chart_domain_bars(p, s, t, &svg)) return -1;
    if (svg) figure(b, "domain-bpb", "Validation bits per byte by domain", svg, 0), (*charts)++;
    free(svg);
    str_add(b, "</div>\n");
    if (!have_val) note(b, "No evaluations in these logs yet.");
    str_add(b, "</section>\n");
    return 0;
}

static int routing_section(Str *b, const RunSet *s, Plotter *p, int *charts) {
    static const struct {
        const char *key, *label;
    } M[] = {{"aux", "aux loss (1 = balanced)"},  {"load_cv", "load_cv (std/mean of expert load)"},
             {"maxvio", "maxvio ((max - mean)/mean load)"}, {"dead_frac", "dead_frac (experts with no tokens)"},
             {"usage_entropy", "usage_entropy (1 = uniform use)"}, {"route_entropy", "route_entropy (1 = unsure router)"},
             {"drop_frac", "drop_frac (dropped pairs)"}, {"router_share", "router share of step time"}};
    str_add(b, "<section id=\"routing\"><h2>Routing over training</h2>\n<div class=\"grid\">\n");
    int n = 0;
    for (size_t i = 0; i < sizeof M / sizeof M[0]; i++) {
        char *svg;
        if (chart_metric(p, s, M[i].key, M[i].key, &svg)) return -1;
        if (svg) figure(b, M[i].key, M[i].label, svg, 0), n++;
        free(svg);
    }
    str_add(b, "</div>\n");
    if (!n) note(b, "These logs hold no routing metrics.");
    *charts += n;
    str_add(b, "</section>\n");
    return 0;
}

typedef int (*RunChart)(Plotter *, const Run *, char **);

/* One chart per variant (its first seed), or per run with all_seeds. */
static int per_run_section(Str *b, const RunSet *s, Plotter *p, const ReportOptions *o, const char *id, const char *title,
                           const char *intro, const char *none, RunChart fn, int max_w, int *charts) {
    str_printf(b, "<section id=\"%s\"><h2>%s</h2>\n", id, title);
    note(b, intro);
    int n = 0;
    for (int g = 0; g < s->n_groups; g++)
        for (int i = 0; i < s->groups[g].n_runs && (i == 0 || o->all_seeds); i++) {
            const Run *r = &s->runs[s->groups[g].runs[i]];
            char *svg;
            if (fn(p, r, &svg)) return -1;
            if (!svg) continue;
            char cap[200];
            snprintf(cap, sizeof cap, "%s — %s", s->groups[g].label, r->log.name);
            figure(b, id, cap, svg, max_w);
            free(svg);
            n++;
        }
    if (!n) note(b, none);
    *charts += n;
    str_add(b, "</section>\n");
    return 0;
}

static void header(Str *b, const RunSet *s, const ReportOptions *o) {
    char when[64];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M", localtime(&now));
    str_add(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
               "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>");
    str_html(b, o->title);
    str_printf(b, "</title>\n<style>\n%s</style>\n</head><body>\n<header><h1>", CSS);
    str_html(b, o->title);
    str_printf(b, "</h1>\n<p>%d run%s in %d variant%s · ", s->n_runs, s->n_runs == 1 ? "" : "s", s->n_groups,
               s->n_groups == 1 ? "" : "s");
    str_html(b, o->sources);
    str_printf(b, " · generated %s</p>\n", when);
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(s->sweep, "description");
    if (cJSON_IsString(d) && *d->valuestring) {
        str_add(b, "<p>");
        str_html(b, d->valuestring);
        str_add(b, "</p>\n");
    }
    str_add(b, "</header>\n<nav><a href=\"#results\">Results</a><a href=\"#curves\">Loss curves</a>"
               "<a href=\"#routing\">Routing over training</a><a href=\"#load\">Expert load</a>"
               "<a href=\"#cooc\">Co-occurrence</a><a href=\"#domains\">Domains</a><a href=\"#runs\">Runs</a></nav>\n<main>\n");
}

int report_html(const RunSet *s, const ReportOptions *o, Plotter *p, char **html) {
    Str b = {0};
    Table t;
    int charts = 0, rc = 0;
    table_build(s, 0, &t);
    header(&b, s, o);
    results_section(&b, s, &t);
    if (rc == 0) rc = curves_section(&b, s, &t, p, &charts);
    if (rc == 0) rc = routing_section(&b, s, p, &charts);
    if (rc == 0)
        rc = per_run_section(&b, s, p, o, "load", "Expert load over training",
                             "Each expert's share of the routed tokens per logged step, as a multiple of the fair share "
                             "(1, pale yellow); dark blue: starved or dead, red: overloaded. One row of cells per expert, one panel per MoE layer.",
                             "No per-layer load arrays in these logs (they come with the routing metrics).", chart_load_heatmap, 0,
                             &charts);
    if (rc == 0)
        rc = per_run_section(&b, s, p, o, "cooc", "Expert co-occurrence",
                             "cooc[i][j]: the share of tokens that selected both experts i and j (the diagonal: the share that "
                             "selected i), per MoE layer.",
                             "No co-occurrence matrices: run moelab analyze on the checkpoints, or log evaluations with the routing metrics.",
                             chart_cooc, -1, &charts);
    if (rc == 0)
        rc = per_run_section(&b, s, p, o, "domains", "Domain × expert specialisation",
                             "For each source domain of the validation text, the share of its routed (token, expert) pairs that "
                             "went to each expert, as a multiple of the fair share: a row far from 1 is a domain with experts of its own.",
                             "No domain x expert maps: they need moelab analyze output (analyze.json) on data with two or more domains.",
                             chart_domain_map, -1, &charts);
    if (rc == 0) {
        str_add(&b, "<section id=\"runs\"><h2>Runs</h2>\n");
        runs_table(&b, s);
        str_add(&b, "</section>\n</main>\n<footer>moelab report · charts drawn with gnuplot · self-contained: no scripts, no external resources</footer>\n</body></html>\n");
    }
    table_free(&t);
    if (rc) {
        free(b.s);
        return -1;
    }
    *html = str_take(&b);
    return charts;
}
