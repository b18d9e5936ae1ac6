#include "report/plot.h"
#include "core/util.h"
#include "report/proc.h"
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void str_printf(Str *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    ml_reserve((void **)&b->s, &b->cap, b->len + (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void str_add(Str *b, const char *s) {
    size_t n = strlen(s);
    ml_reserve((void **)&b->s, &b->cap, b->len + n + 1);
    memcpy(b->s + b->len, s, n + 1);
    b->len += n;
}

void str_gp_quote(Str *b, const char *s) {
    str_add(b, "'");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        str_add(b, *p == '\'' ? "''" : *p < 0x20 || *p == 0x7f ? " " : (char[]){(char)*p, 0});
    str_add(b, "'");
}

void str_html(Str *b, const char *s) {
    for (const char *p = s; *p; p++) {
        switch (*p) {
        case '&': str_add(b, "&amp;"); break;
        case '<': str_add(b, "&lt;"); break;
        case '>': str_add(b, "&gt;"); break;
        case '"': str_add(b, "&quot;"); break;
        default: str_add(b, (char[]){*p, 0});
        }
    }
}

char *str_take(Str *b) {
    char *s = b->s ? b->s : ml_strdup("");
    memset(b, 0, sizeof *b);
    return s;
}

int plot_init(Plotter *p) {
    memset(p, 0, sizeof *p);
    const char *env = getenv("MOELAB_GNUPLOT");
    if (env && *env) p->gnuplot = access(env, X_OK) == 0 ? ml_strdup(env) : NULL;
    else p->gnuplot = proc_which("gnuplot");
    if (!p->gnuplot)
        return ml_fail("gnuplot is not installed (it draws the charts): install Debian's gnuplot-nox "
                       "(sudo apt-get install gnuplot-nox)%s",
                       env && *env ? "; MOELAB_GNUPLOT names no executable" : "");
    char tmpl[] = "/tmp/moelab-report.XXXXXX";
    if (!mkdtemp(tmpl)) {
        free(p->gnuplot);
        p->gnuplot = NULL;
        return ml_fail("cannot make a temporary folder for the charts");
    }
    p->tmpdir = ml_strdup(tmpl);
    return 0;
}

static void remove_file(const Plotter *p, int i, const char *ext) {
    char path[512];
    snprintf(path, sizeof path, "%s/c%d.%s", p->tmpdir, i, ext);
    unlink(path);
}

int plot_data(Plotter *p, Str *script, const char *var, const char *data) {
    char path[512];
    snprintf(path, sizeof path, "%s/c%d.dat", p->tmpdir, p->n_data++);
    if (ml_write_file_atomic(path, data, strlen(data))) return -1;
    str_printf(script, "%s = ", var);
    str_gp_quote(script, path);
    str_add(script, "\n");
    return 0;
}

void plot_free(Plotter *p) {
    for (int i = 0; p->tmpdir && i < p->n; i++) {
        remove_file(p, i, "gp");
        remove_file(p, i, "svg");
        remove_file(p, i, "log");
    }
    for (int i = 0; p->tmpdir && i < p->n_data; i++) remove_file(p, i, "dat");
    if (p->tmpdir) rmdir(p->tmpdir);
    free(p->tmpdir);
    free(p->gnuplot);
    memset(p, 0, sizeof *p);
}

/* Every id and reference to one gets the chart's prefix: gnuplot names its point
 * symbols and filters the same in every file, and ids must be unique in a page. */
static char *prefix_ids(const char *svg, int chart) {
    static const char *const PATS[] = {"id='", "id=\"", "href='#", "href=\"#", "url(#", NULL};
    Str out = {0};
    char pre[32];
    snprintf(pre, sizeof pre, "c%d-", chart);
    for (const char *p = svg; *p;) {
        int hit = 0;
        for (int i = 0; PATS[i] && !hit; i++) {
            size_t n = strlen(PATS[i]);
            if (strncmp(p, PATS[i], n) == 0) {
                char buf[16];
                memcpy(buf, p, n);
                buf[n] = 0;
                str_add(&out, buf);
                str_add(&out, pre);
                p += n;
                hit = 1;
            }
        }
        if (!hit) {
            const char *next = p + 1;
            while (*next && *next != 'i' && *next != 'h' && *next != 'u') next++;
            size_t n = (size_t)(next - p);
            ml_reserve((void **)&out.s, &out.cap, out.len + n + 1);
            memcpy(out.s + out.len, p, n);
            out.len += n;
            out.s[out.len] = 0;
            p = next;
        }
    }
    return str_take(&out);
}

/* Drops the XML prolog, names the chart in <title>, prefixes ids. */
static char *clean_svg(const char *raw, const char *title, int chart) {
    const char *start = strstr(raw, "<svg");
    if (!start) return NULL;
    Str b = {0};
    const char *t = strstr(start, "<title>"), *te = t ? strstr(t, "</title>") : NULL;
    if (t && te) {
        str_printf(&b, "%.*s<title>", (int)(t - start), start);
        str_html(&b, title);
        str_add(&b, te);
    } else {
        str_add(&b, start);
    }
    char *body = str_take(&b);
    char *out = prefix_ids(body, chart);
    free(body);
    return out;
}

static char *first_lines(const char *text, int n) {
    Str b = {0};
    for (const char *p = text; *p && n > 0; n--) {
        const char *nl = strchr(p, '\n');
        size_t k = nl ? (size_t)(nl - p) : strlen(p);
        str_printf(&b, "%s%.*s", b.len ? " | " : "", (int)k, p);
        p += k + (nl != NULL);
    }
    return str_take(&b);
}

char *plot_svg(Plotter *p, const char *title, int width, int height, const char *script) {
    int id = p->n++;
    char gp[512], svg[512], log[512];
    snprintf(gp, sizeof gp, "%s/c%d.gp", p->tmpdir, id);
    snprintf(svg, sizeof svg, "%s/c%d.svg", p->tmpdir, id);
    snprintf(log, sizeof log, "%s/c%d.log", p->tmpdir, id);
    Str s = {0};
    str_printf(&s, "set terminal svg size %d,%d dynamic noenhanced font 'sans-serif,12' background rgb 'white'\n", width, height);
    str_add(&s, "set output ");
    str_gp_quote(&s, svg);
    str_printf(&s, "\n%s\nunset output\n", script);
    int rc = ml_write_file_atomic(gp, s.s, s.len);
    free(s.s);
    if (rc) return NULL;
    char *argv[] = {p->gnuplot, gp, NULL};
    int code = proc_run(p->gnuplot, argv, log);
    char *errs = ml_file_exists(log) ? ml_read_file(log, NULL) : NULL;
    char *raw = code == 0 && ml_file_exists(svg) ? ml_read_file(svg, NULL) : NULL;
    char *out = raw ? clean_svg(raw, title, id) : NULL;
    if (!out) {
        char *why = first_lines(errs ? errs : "", 4);
        ml_fail("gnuplot failed drawing '%s' (exit %d)%s%s", title, code, *why ? ": " : "", why);
        free(why);
    }
    free(errs);
    free(raw);
    return out;
}
