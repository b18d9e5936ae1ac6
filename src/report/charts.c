#include "report/charts.h"
#include "core/util.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Tableau 10: distinct, and readable for the common colour-vision deficiencies. */
static const char *const COLORS[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                     "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
const char *chart_color(int g) { return COLORS[g % 10]; }

/* Shared look: light grid, axes on the left and bottom only. */
static const char *STYLE = "set border 3 lc rgb '#555555'\nset tics nomirror textcolor rgb '#333333'\n"
                           "set grid lc rgb '#e5e5e5' lw 1\nset key below horizontal noopaque samplen 2.5 width 1\n";

/* Utilisation palette: dead (dark blue) .. fair share (pale yellow) .. overloaded (dark red). */
static const char *UTIL_PALETTE = "set palette defined (0 '#313695', 0.5 '#74add1', 1 '#ffffbf', 1.5 '#f46d43', 2 '#a50026')\n"
                                  "set cbrange [0:2]\nset cbtics 0.5\n";

/* Trailing exponential moving average over about n/40 points: per-step losses are noisy. */
static void smooth(double *v, int n) {
    int w = n / 40;
    if (w < 2) return;
    if (w > 50) w = 50;
    double a = 2.0 / (w + 1), m = v[0];
    for (int i = 0; i < n; i++) v[i] = m = a * v[i] + (1 - a) * m;
}

static int series_file(Plotter *p, Str *script, const char *name, const double *x, const double *y, int n) {
    Str d = {0};
    str_add(&d, "");
    for (int i = 0; i < n; i++) str_printf(&d, "%.8g %.8g\n", x[i], y[i]);
    int rc = plot_data(p, script, name, d.s);
    free(d.s);
    return rc;
}

/* One line per run, coloured by variant; the first seed of a variant carries its legend
 * entry. Returns the number of runs drawn; *ymax gets a top that leaves the first 10% of
 * training out when trim is set (early losses would flatten the interesting part). */
static int run_lines(Plotter *p, Str *data, Str *plot, const RunSet *s, int eval, const char *key, int do_smooth, int trim,
                     double *ymin, double *ymax) {
    int drawn = 0;
    *ymin = INFINITY;
    *ymax = -INFINITY;
    for (int g = 0; g < s->n_groups; g++)
        for (int i = 0; i < s->groups[g].n_runs; i++) {
            const Run *r = &s->runs[s->groups[g].runs[i]];
            double *x, *y;
            int n = runlog_series(&r->log, eval, key, &x, &y);
            if (n > 0) {
                if (do_smooth) smooth(y, n);
                char name[32];
                snprintf(name, sizeof name, "R%d", drawn);
                if (series_file(p, data, name, x, y, n)) {
                    free(x);
                    free(y);
                    return -1;
                }
                double xcut = trim ? x[0] + 0.1 * (x[n - 1] - x[0]) : -INFINITY;
                for (int k = 0; k < n; k++) {
                    if (y[k] < *ymin) *ymin = y[k];
                    if (x[k] >= xcut && y[k] > *ymax) *ymax = y[k];
                }
                str_printf(plot, "%s%s using 1:2 with %s lw %s lc rgb '%s' ", drawn ? ", \\\n  " : "plot ", name,
                           eval ? "linespoints pt 7 ps 0.6" : "lines", i ? "1.2 dt 2" : "1.8", chart_color(g));
                if (i == 0) {
                    str_add(plot, "title ");
                    str_gp_quote(plot, s->groups[g].label);
                } else {
                    str_add(plot, "notitle");
                }
                drawn++;
            }
            free(x);
            free(y);
        }
    return drawn;
}

static int line_chart(Plotter *p, const RunSet *s, int eval, const char *key, const char *title, const char *ylabel,
                      int do_smooth, int trim, char **svg) {
    Str data = {0}, plot = {0}, sc = {0};
    double lo, hi;
    *svg = NULL;
    int n = run_lines(p, &data, &plot, s, eval, key, do_smooth, trim, &lo, &hi);
    if (n < 0) {
        free(data.s);
        free(plot.s);
        return -1;
    }
    if (n > 0 && !(hi - lo > 1e-9 * (fabs(hi) + 1e-30)) && !trim && !eval) n = 0; /* constant: a flat line says nothing */
    if (n > 0) {
        str_add(&sc, STYLE);
        str_add(&sc, "set xlabel 'step'\nset ylabel ");
        str_gp_quote(&sc, ylabel);
        str_add(&sc, "\n");
        if (trim && isfinite(lo) && isfinite(hi) && hi > lo)
            str_printf(&sc, "set yrange [%.6g:%.6g]\n", lo - 0.03 * (hi - lo), hi + 0.03 * (hi - lo));
        str_add(&sc, data.s);
        str_add(&sc, plot.s);
        str_add(&sc, "\n");
        *svg = plot_svg(p, title, 620, 350, sc.s);
    }
    free(data.s);
    free(plot.s);
    free(sc.s);
    return n > 0 && !*svg ? -1 : 0;
}

int chart_loss(Plotter *p, const RunSet *s, int eval, char **svg) {
    if (eval) return line_chart(p, s, 1, "val_loss", "Validation loss", "val loss (nats/token)", 0, 0, svg);
    return line_chart(p, s, 0, "loss", "Training loss", "train loss (nats/token, smoothed)", 1, 1, svg);
}

int chart_metric(Plotter *p, const RunSet *s, const char *key, const char *ylabel, char **svg) {
    return line_chart(p, s, 0, key, ylabel, ylabel, 1, 0, svg);
}

int chart_domain_bars(Plotter *p, const RunSet *s, const Table *t, char **svg) {
    *svg = NULL;
    if (s->n_domains < 2 || s->n_groups < 1) return 0;
    Str sc = {0};
    str_add(&sc, STYLE);
    str_add(&sc, "set style data histogram\nset style histogram errorbars gap 1.5 lw 1\n"
                 "set style fill solid 0.85 border -1\nset boxwidth 0.9\nset ylabel 'val bits per byte'\n"
                 "set yrange [0:*]\n");
    Str data = {0};
    int rows = 0;
    for (int d = 0; d < s->n_domains; d++) {
        char key[128];
        snprintf(key, sizeof key, "val_bpb_%.100s", s->domains[d]);
        int c = 0;
        while (c < t->n_cols && strcmp(t->cols[c].name, key) != 0) c++;
        if (c == t->n_cols) continue;
        str_add(&data, "\"");
        for (const unsigned char *c = (const unsigned char *)s->domains[d]; *c; c++)
            str_add(&data, *c == '"' || *c == '\\' ? "_" : *c < 0x20 || *c == 0x7f ? " " : (char[]){(char)*c, 0});
        str_add(&data, "\"");
        for (int g = 0; g < s->n_groups; g++) {
            const Stat *st = &t->cell[(size_t)g * t->n_cols + c];
            str_printf(&data, " %.6g %.6g", isfinite(st->mean) ? st->mean : 0.0, isfinite(st->sd) ? st->sd : 0.0);
        }
        str_add(&data, "\n");
        rows++;
    }
    int rc = rows ? plot_data(p, &sc, "D", data.s) : 0;
    free(data.s);
    str_add(&sc, "plot ");
    for (int g = 0; g < s->n_groups; g++) {
        str_printf(&sc, "%sD using %d:%d%s lc rgb '%s' title ", g ? ", " : "", 2 + 2 * g, 3 + 2 * g, g ? "" : ":xtic(1)",
                   chart_color(g));
        str_gp_quote(&sc, s->groups[g].label);
    }
    str_add(&sc, "\n");
    if (rows && rc == 0) *svg = plot_svg(p, "Validation bits per byte by domain", 620, 350, sc.s);
    free(sc.s);
    return rows && !*svg ? -1 : 0;
}

/* ------------------------------------------------------------------ matrices */

static const cJSON *layers_of(const cJSON *obj) {
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(obj, "layers");
    return cJSON_IsArray(l) && cJSON_GetArraySize(l) > 0 ? l : NULL;
}

/* A numeric 2-D array (rows of equal length) into a new buffer; 0 when it is not one. */
static int matrix_of(const cJSON *j, double **m, int *rows, int *cols) {
    if (!cJSON_IsArray(j) || !cJSON_GetArraySize(j)) return 0;
    int R = cJSON_GetArraySize(j), C = cJSON_GetArraySize(cJSON_GetArrayItem(j, 0));
    if (C <= 0) return 0;
    double *v = ml_malloc(sizeof(double) * (size_t)R * (size_t)C);
    int r = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, j) {
        if (!cJSON_IsArray(row) || cJSON_GetArraySize(row) != C) break;
        int c = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, row) v[(size_t)r * C + c++] = cJSON_IsNumber(x) ? x->valuedouble : NAN;
        r++;
    }
    if (r != R) {
        free(v);
        return 0;
    }
    *m = v;
    *rows = R;
    *cols = C;
    return 1;
}

static int layer_number(const cJSON *layer, int index) {
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(layer, "layer");
    return cJSON_IsNumber(n) ? (int)n->valuedouble : index;
}

/* A matrix as a data file; NAN cells as NaN (left blank by `with image`). */
static int matrix_file(Plotter *p, Str *script, const char *name, const double *m, int rows, int cols) {
    Str d = {0}, *b = &d;
    str_add(b, "");
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < cols; c++) {
            double v = m[(size_t)r * cols + c];
            if (isfinite(v)) str_printf(b, c ? " %.5g" : "%.5g", v);
            else str_add(b, c ? " NaN" : "NaN");
        }
        str_add(b, "\n");
    }
    int rc = plot_data(p, script, name, d.s);
    free(d.s);
    return rc;
}

/* Pixel layout of a multiplot: rows x cols panels of pw x ph pixels, each with `title`
 * pixels above it and `below` under it (tick labels), `left` pixels for the y labels, a
 * strip of `bar` pixels on the right for the colour bar, `foot` pixels at the bottom. */
typedef struct {
    int rows, cols, pw, ph, title, below, left, bar, gap, foot;
} Layout;

static int layout_w(const Layout *l) { return l->left + l->cols * l->pw + (l->cols - 1) * l->gap + l->bar; }
static int layout_h(const Layout *l) { return l->rows * (l->title + l->ph + l->below) + l->foot + 6; }

/* Margins of panel i at screen coordinates, so every panel lines up. */
static void layout_panel(Str *b, const Layout *l, int i) {
    double W = layout_w(l), H = layout_h(l);
    int r = i / l->cols, c = i % l->cols;
    double x0 = l->left + c * (l->pw + l->gap), y0 = 6 + r * (l->title + l->ph + l->below) + l->title;
    str_printf(b, "set lmargin at screen %.5f\nset rmargin at screen %.5f\n", x0 / W, (x0 + l->pw) / W);
    str_printf(b, "set tmargin at screen %.5f\nset bmargin at screen %.5f\n", 1 - y0 / H, 1 - (y0 + l->ph) / H);
}

static void layout_colorbox(Str *b, const Layout *l, const char *label) {
    double W = layout_w(l), H = layout_h(l);
    double top = 6 + l->title, bottom = 6 + l->rows * (l->title + l->ph + l->below) - l->below;
    if (bottom - top > 320) bottom = top + 320; /* a long bar reads worse, not better */
    str_printf(b, "set colorbox user origin screen %.5f, screen %.5f size screen %.5f, screen %.5f\n",
               (W - l->bar + 18) / W, 1 - bottom / H, 14 / W, (bottom - top) / H);
    str_add(b, "set cblabel ");
    str_gp_quote(b, label);
    str_add(b, "\n");
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

int chart_load_heatmap(Plotter *p, const Run *r, char **svg) {
    *svg = NULL;
    const RunLog *l = &r->log;
    int L = 0, E = 0, n = 0;
    for (int i = 0; i < l->n_train; i++) {
        const cJSON *ls = layers_of(l->train[i]);
        const cJSON *load = ls ? cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ls, 0), "load") : NULL;
        if (!cJSON_IsArray(load)) continue;
        if (!n) L = cJSON_GetArraySize(ls), E = cJSON_GetArraySize(load);
        n++;
    }
    if (n < 2 || E < 1) return 0;
    int bins = n < 100 ? n : 100;
    double *u = ml_calloc((size_t)L * E * bins, sizeof(double)), *cnt = ml_calloc((size_t)L * bins, sizeof(double));
    double x0 = NAN, x1 = NAN;
    const cJSON *names = NULL;
    for (int i = 0, k = 0; i < l->n_train; i++) {
        const cJSON *ls = layers_of(l->train[i]);
        const cJSON *load0 = ls ? cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ls, 0), "load") : NULL;
        if (!cJSON_IsArray(load0)) continue;
        double step = json_scalar(l->train[i], "step");
        if (k == 0) x0 = step;
        x1 = step;
        names = ls;
        int b = (int)((long)k * bins / n);
        for (int li = 0; li < L; li++) {
            const cJSON *load = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ls, li), "load");
            if (!cJSON_IsArray(load) || cJSON_GetArraySize(load) != E) continue;
            double tot = 0;
            for (int e = 0; e < E; e++) tot += cJSON_GetArrayItem(load, e)->valuedouble;
            if (tot <= 0) continue;
            for (int e = 0; e < E; e++) u[((size_t)li * E + e) * bins + b] += cJSON_GetArrayItem(load, e)->valuedouble * E / tot;
            cnt[(size_t)li * bins + b] += 1;
        }
        k++;
    }
    Layout g = {L, 1, 700, clampi(14 * E, 56, 180), 8, 8, 80, 120, 0, 58};
    Str sc = {0};
    int bad = 0;
    double bw = (x1 - x0) / (bins > 1 ? bins - 1 : 1);
    str_add(&sc, UTIL_PALETTE);
    str_add(&sc, "set border lc rgb '#555555'\nset tics out nomirror\nunset key\nset multiplot\n");
    layout_colorbox(&sc, &g, "load / fair share");
    str_printf(&sc, "set xrange [%.6g:%.6g]\nset yrange [-0.5:%d.5]\nset ytics %d\n", x0 - bw / 2, x1 + bw / 2, E - 1, E > 8 ? 4 : 1);
    for (int li = 0; li < L; li++) {
        double *m = ml_malloc(sizeof(double) * (size_t)E * bins);
        for (int e = 0; e < E; e++)
            for (int b = 0; b < bins; b++) {
                double c = cnt[(size_t)li * bins + b];
                m[(size_t)e * bins + b] = c > 0 ? u[((size_t)li * E + e) * bins + b] / c : NAN;
            }
        char name[16];
        snprintf(name, sizeof name, "L%d", li);
        bad |= matrix_file(p, &sc, name, m, E, bins) != 0;
        free(m);
        layout_panel(&sc, &g, li);
        str_printf(&sc, "set ylabel \"layer %d\\nexpert\"\n", layer_number(cJSON_GetArrayItem(names, li), li));
        str_add(&sc, li == L - 1 ? "set format x '%g'\nset xlabel 'step'\n" : "set format x ''\nunset xlabel\n");
        if (li == 1) str_add(&sc, "unset colorbox\n");
        str_printf(&sc, "plot %s matrix using (%.6g + $1 * %.6g):2:3 with image\n", name, x0, bw);
    }
    str_add(&sc, "unset multiplot\n");
    char title[256];
    snprintf(title, sizeof title, "Expert load over training: %s", l->name);
    *svg = bad ? NULL : plot_svg(p, title, layout_w(&g), layout_h(&g), sc.s);
    free(sc.s);
    free(u);
    free(cnt);
    return *svg ? 0 : -1;
}

/* The per-layer matrices `key` of a run: from analyze.json, else the last log line that
 * has them (key "cooc" sits in evaluation lines). Returns the layers array or NULL. */
static const cJSON *matrix_layers(const Run *r, const char *key, const char **source) {
    const cJSON *ls = layers_of(r->log.analyze);
    if (ls && cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ls, 0), key)) {
        *source = "moelab analyze, validation split";
        return ls;
    }
    for (int i = r->log.n_eval - 1; i >= 0; i--) {
        ls = layers_of(r->log.eval[i]);
        if (ls && cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ls, 0), key)) {
            *source = "last evaluation in the log";
            return ls;
        }
    }
    return NULL;
}

/* Expert axis ticks: every expert up to 8, then every 4th. */
static void expert_tics(Str *b, char axis, int E) { str_printf(b, "set %ctics %d\n", axis, E > 8 ? 4 : 1); }

int chart_cooc(Plotter *p, const Run *r, char **svg) {
    *svg = NULL;
    const char *source = "";
    const cJSON *ls = matrix_layers(r, "cooc", &source);
    if (!ls) return 0;
    int L = cJSON_GetArraySize(ls);
    const cJSON *first = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ls, 0), "cooc");
    int E = cJSON_GetArraySize(first), side = clampi(50 * E, 220, 280), cols = L <= 3 ? L : L == 4 ? 2 : 3;
    Layout g = {(L + cols - 1) / cols, cols, side, side, 28, 84, 40, 140, 46, 0};
    Str sc = {0};
    int bad = 0;
    str_add(&sc, "set palette defined (0 '#ffffff', 0.5 '#9ecae1', 1 '#2171b5')\nset cbrange [0:*]\nunset key\n"
                 "set border lc rgb '#555555'\nset tics out nomirror\nset multiplot\n");
    layout_colorbox(&sc, &g, "share choosing both");
    int drawn = 0;
    for (int li = 0; li < L; li++) {
        const cJSON *layer = cJSON_GetArrayItem(ls, li);
        double *m;
        int R, C;
        if (!matrix_of(cJSON_GetObjectItemCaseSensitive(layer, "cooc"), &m, &R, &C) || R != C || R != E) continue;
        char name[16];
        snprintf(name, sizeof name, "C%d", li);
        bad |= matrix_file(p, &sc, name, m, R, C) != 0;
        free(m);
        layout_panel(&sc, &g, drawn);
        str_printf(&sc, "set title 'layer %d'\nset xrange [-0.5:%d.5]\nset yrange [%d.5:-0.5]\n", layer_number(layer, li), R - 1, R - 1);
        expert_tics(&sc, 'x', R);
        expert_tics(&sc, 'y', R);
        str_add(&sc, "set xlabel 'expert'\n");
        if (drawn) str_add(&sc, "unset colorbox\n");
        str_printf(&sc, "plot %s matrix with image", name);
        if (R <= 8) str_printf(&sc, ", %s matrix using 1:2:(sprintf('%%.2f', $3)) with labels font ',10' tc rgb '#222222'", name);
        str_add(&sc, "\n");
        drawn++;
    }
    str_add(&sc, "unset multiplot\n");
    char title[300];
    snprintf(title, sizeof title, "Expert co-occurrence: %s (%s)", r->log.name, source);
    if (drawn && !bad) *svg = plot_svg(p, title, layout_w(&g), layout_h(&g), sc.s);
    free(sc.s);
    return drawn && !*svg ? -1 : 0;
}

int chart_domain_map(Plotter *p, const Run *r, char **svg) {
    *svg = NULL;
    const cJSON *an = r->log.analyze, *names = cJSON_GetObjectItemCaseSensitive(an, "domains");
    const cJSON *ls = layers_of(an);
    int D = cJSON_IsArray(names) ? cJSON_GetArraySize(names) : 0;
    if (!ls || D < 2) return 0;
    int L = cJSON_GetArraySize(ls), longest = 4;
    const cJSON *nm;
    cJSON_ArrayForEach(nm, names) if (cJSON_IsString(nm) && (int)strlen(nm->valuestring) > longest) longest = (int)strlen(nm->valuestring);
    const cJSON *dl = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ls, 0), "domain_load");
    int E = cJSON_GetArraySize(cJSON_GetArrayItem(dl, 0)), cols = L < 2 ? L : 2;
    Layout g = {(L + cols - 1) / cols, cols, clampi(36 * E, 180, 360), clampi(24 * D, 100, 420), 28, 84, 24 + 8 * clampi(longest, 4, 24),
                130, 30, 0};
    Str sc = {0};
    int bad = 0;
    str_add(&sc, UTIL_PALETTE);
    str_add(&sc, "unset key\nset border lc rgb '#555555'\nset tics out nomirror\nset multiplot\n");
    layout_colorbox(&sc, &g, "x fair share");
    Str yt = {0}; /* domain names as y tic labels, on the first panel of each row */
    str_add(&yt, "set ytics (");
    for (int d = 0; d < D; d++) {
        nm = cJSON_GetArrayItem(names, d);
        str_add(&yt, d ? ", " : "");
        str_gp_quote(&yt, cJSON_IsString(nm) ? nm->valuestring : "?");
        str_printf(&yt, " %d", d);
    }
    str_add(&yt, ")\n");
    int drawn = 0;
    for (int li = 0; li < L; li++) {
        const cJSON *layer = cJSON_GetArrayItem(ls, li);
        double *m;
        int R, C;
        if (!matrix_of(cJSON_GetObjectItemCaseSensitive(layer, "domain_load"), &m, &R, &C) || R != D || C != E) continue;
        for (int d = 0; d < R; d++) {
            double tot = 0;
            for (int e = 0; e < C; e++) tot += m[(size_t)d * C + e];
            for (int e = 0; e < C; e++) m[(size_t)d * C + e] = tot > 0 ? m[(size_t)d * C + e] * C / tot : NAN;
        }
        char name[16];
        snprintf(name, sizeof name, "D%d", li);
        bad |= matrix_file(p, &sc, name, m, R, C) != 0;
        free(m);
        layout_panel(&sc, &g, drawn);
        str_printf(&sc, "set title 'layer %d'\nset xrange [-0.5:%d.5]\nset yrange [%d.5:-0.5]\n", layer_number(layer, li), C - 1, R - 1);
        expert_tics(&sc, 'x', C);
        str_add(&sc, "set xlabel 'expert'\n");
        str_add(&sc, drawn % g.cols ? "unset ytics\n" : yt.s);
        if (drawn) str_add(&sc, "unset colorbox\n");
        str_printf(&sc, "plot %s matrix with image\n", name);
        drawn++;
    }
    str_add(&sc, "unset multiplot\n");
    char title[300];
    snprintf(title, sizeof title, "Domain x expert specialisation: %s", r->log.name);
    if (drawn && !bad) *svg = plot_svg(p, title, layout_w(&g), layout_h(&g), sc.s);
    free(sc.s);
    free(yt.s);
    return drawn && !*svg ? -1 : 0;
}
