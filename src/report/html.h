/* The HTML report: one self-contained page (inline CSS and SVG, no scripts, no external
 * URLs) with the results table, loss curves, routing-metric curves, expert-load heatmaps,
 * co-occurrence matrices and domain x expert maps of a set of runs. */
#ifndef MOELAB_HTML_H
#define MOELAB_HTML_H
#include "report/plot.h"
#include "report/results.h"

typedef struct {
    const char *title;   /* page title */
    const char *sources; /* the folders given, for the header */
    int all_seeds;       /* per-run charts for every seed, not only each variant's first */
} ReportOptions;

/* Builds the page into *html (caller frees). Returns the number of charts drawn, or -1
 * (ml_fail) when gnuplot fails. */
int report_html(const RunSet *s, const ReportOptions *o, Plotter *p, char **html);

#endif
