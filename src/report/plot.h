/* Charts through gnuplot (Debian's gnuplot-nox): each chart is a script run as a child
 * process with `set terminal svg`, and the SVG read back, ready to inline in an HTML page.
 * Data never sits in the script: each series is a file of its own in the temporary folder,
 * named by the script through a fixed path, and the only text from run folders in a
 * script is single-quoted strings without control characters (gnuplot expands nothing
 * inside single quotes, and without a newline a string cannot end the command). */
#ifndef MOELAB_PLOT_H
#define MOELAB_PLOT_H
#include <stddef.h>

typedef struct {
    char *gnuplot; /* its path */
    char *tmpdir;  /* scripts and SVGs, removed by plot_free */
    int n;         /* charts drawn: the per-chart id prefix */
    int n_data;    /* data files written */
} Plotter;

/* Finds gnuplot ($MOELAB_GNUPLOT, else on PATH); -1 with a message naming the package to
 * install when there is none. */
int plot_init(Plotter *p);
void plot_free(Plotter *p);

/* Draws one chart: `script` is gnuplot commands after the terminal and output lines.
 * Returns the <svg> element (caller frees): XML prolog dropped, <title> set to `title`,
 * ids prefixed so several charts can share a page. NULL (ml_fail) when gnuplot fails. */
char *plot_svg(Plotter *p, const char *title, int width, int height, const char *script);

/* A growing string, for scripts and pages. */
typedef struct {
    char *s;
    size_t len, cap;
} Str;

/* Writes `data` (whitespace-separated columns) to a new file in the temporary folder and
 * appends `var = '<its path>'` to the script, so the script plots `var`. -1 (ml_fail) when
 * the file cannot be written. */
int plot_data(Plotter *p, Str *script, const char *var, const char *data);
void str_printf(Str *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void str_add(Str *b, const char *s);
/* s as a gnuplot single-quoted string ('' for a quote; control characters such as a
 * newline, which would end the command, become spaces), appended. */
void str_gp_quote(Str *b, const char *s);
/* s with &, <, >, " escaped for HTML, appended. */
void str_html(Str *b, const char *s);
/* Takes the text out (never NULL; caller frees) and empties b. */
char *str_take(Str *b);

#endif
