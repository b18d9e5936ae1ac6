/* `moelab report`: one self-contained HTML page about run folders and sweeps. */
#include "cli/commands.h"
#include "core/util.h"
#include "report/html.h"
#include "report/plot.h"
#include "report/results.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void) {
    printf("usage: moelab report RUNDIR_OR_SWEEPDIR... [--out FILE.html] [--title TEXT] [--all-seeds]\n\n"
           "Writes one self-contained HTML page (inline SVG charts, no scripts, no external URLs) about\n"
           "the runs: the results table (mean ± sd over seeds per variant), training and validation\n"
           "loss curves, routing metrics over training, per-layer expert-load heatmaps, co-occurrence\n"
           "matrices and domain x expert maps (from analyze.json, written by moelab analyze/compare).\n"
           "A folder is a run (it has log.jsonl) or a sweep (run folders inside, as moelab compare makes).\n"
           "Runs named <label>-s<seed> are grouped by label. Charts are drawn by gnuplot (Debian package\n"
           "gnuplot-nox; MOELAB_GNUPLOT may name another binary).\n\n"
           "  --out FILE.html   output (default: FOLDER/report.html for one folder, else report.html)\n"
           "  --title TEXT      page title (default: moelab report: FOLDER)\n"
           "  --all-seeds       per-run charts for every seed, not only each variant's first\n");
}

typedef struct {
    const char **paths;
    int n_paths, all_seeds;
    const char *out, *title;
} ReportArgs;

static int parse(ReportArgs *a, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (strcmp(f, "--all-seeds") == 0) a->all_seeds = 1;
        else if (strcmp(f, "--out") == 0 || strcmp(f, "--title") == 0) {
            if (i + 1 >= argc || !argv[i + 1][0]) return ml_fail("%s needs a value", f);
            if (f[2] == 'o') a->out = argv[++i];
            else a->title = argv[++i];
        } else if (f[0] == '-') return ml_fail("unknown flag '%s' (see moelab report --help)", f);
        else a->paths[a->n_paths++] = f;
    }
    if (!a->n_paths) return ml_fail("give at least one run or sweep folder (see moelab report --help)");
    return 0;
}

static int report(ReportArgs *a) {
    Plotter p = {0};
    RunSet set = {0};
    int rc = 0;
    for (int i = 0; i < a->n_paths && rc == 0; i++) rc = runset_add(&set, a->paths[i]);
    if (rc == 0) rc = plot_init(&p);
    char *out = NULL, *title = NULL, *html = NULL;
    Str src = {0};
    if (rc == 0) {
        runset_group(&set);
        for (int i = 0; i < a->n_paths; i++) str_printf(&src, "%s%s", i ? ", " : "", a->paths[i]);
        out = a->out ? ml_strdup(a->out) : a->n_paths == 1 ? path_join(a->paths[0], "report.html") : ml_strdup("report.html");
        size_t n = strlen(src.s) + 32;
        title = ml_malloc(n);
        snprintf(title, n, "moelab report: %s", src.s);
        ReportOptions o = {a->title ? a->title : title, src.s, a->all_seeds};
        int charts = report_html(&set, &o, &p, &html);
        rc = charts < 0 ? -1 : ml_write_file_atomic(out, html, strlen(html));
        if (rc == 0) printf("wrote %s: %d runs in %d variants, %d charts\n", out, set.n_runs, set.n_groups, charts);
        for (int i = 0; rc == 0 && i < set.n_runs; i++)
            if (set.runs[i].log.nonfinite)
                fprintf(stderr, "moelab report: warning: %s: %d log lines hold non-finite values (NaN or Inf)\n",
                        set.runs[i].log.dir, set.runs[i].log.nonfinite);
    }
    free(html);
    free(out);
    free(title);
    free(src.s);
    runset_free(&set);
    plot_free(&p);
    return rc;
}

int cmd_report(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (cli_is_help(argv[i])) {
            usage();
            return 0;
        }
    ReportArgs a = {0};
    a.paths = ml_calloc((size_t)argc, sizeof *a.paths);
    int rc = parse(&a, argc, argv);
    if (rc == 0) rc = report(&a);
    if (rc) fprintf(stderr, "moelab report: %s\n", ml_last_error());
    free(a.paths);
    return rc ? 1 : 0;
}
