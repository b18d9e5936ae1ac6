/* The report's charts, drawn from run logs and analyze.json through gnuplot.
 *
 * Each returns 0 and sets *svg (caller frees), or 0 with *svg NULL when the runs have
 * nothing to draw (a log without per-layer load, a run not analysed, a single-domain
 * corpus), or -1 (ml_fail) when gnuplot fails. */
#ifndef MOELAB_CHARTS_H
#define MOELAB_CHARTS_H
#include "report/plot.h"
#include "report/results.h"

/* The colour of group g; seeds of one variant share it. */
const char *chart_color(int g);

/* Loss against step for every run: eval 0, training loss (smoothed); 1, validation loss. */
int chart_loss(Plotter *p, const RunSet *s, int eval, char **svg);
/* A scalar metric of the training log against step for every run (smoothed). */
int chart_metric(Plotter *p, const RunSet *s, const char *key, const char *ylabel, char **svg);
/* Validation bits per byte by domain, one bar per variant (mean, sd over seeds as error bars). */
int chart_domain_bars(Plotter *p, const RunSet *s, const Table *t, char **svg);

/* Per-layer expert utilisation over training (load x E / total: 1 = fair share), from
 * the per-step "layers"[i]."load" arrays of the training log. */
int chart_load_heatmap(Plotter *p, const Run *r, char **svg);
/* Per-layer co-occurrence matrices cooc[i][j] (share of tokens that selected both i and j),
 * from analyze.json, else from the last evaluation in the log. */
int chart_cooc(Plotter *p, const Run *r, char **svg);
/* Per-layer domain x expert maps: each domain's share of routed pairs per expert, x E
 * (1 = no preference), from analyze.json (two or more domains). */
int chart_domain_map(Plotter *p, const Run *r, char **svg);

#endif
