#include "moe/router_opts.h"
#include "core/util.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int choice_index(const char *choices, const char *value) {
    size_t n = strlen(value);
    int i = 0;
    for (const char *c = choices; *c; i++) {
        const char *bar = strchr(c, '|');
        size_t len = bar ? (size_t)(bar - c) : strlen(c);
        if (len == n && strncmp(c, value, n) == 0) return i;
        if (!bar) break;
        c = bar + 1;
    }
    return -1;
}

static void set_default(const RouterOption *o, char *base) {
    if (o->type == ROPT_FLOAT) *(double *)(base + o->offset) = o->def;
    else *(int *)(base + o->offset) = (int)o->def;
}

static int set_value(const char *router, const RouterOption *o, const char *value, char *base) {
    if (o->type == ROPT_ENUM) {
        int i = choice_index(o->choices, value);
        if (i < 0) return ml_fail("router %s: option %s must be one of %s, not '%s'", router, o->name, o->choices, value);
        *(int *)(base + o->offset) = i;
        return 0;
    }
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    if (errno || *end || end == value || !isfinite(v))
        return ml_fail("router %s: option %s needs a number, not '%s'", router, o->name, value);
    if (o->type == ROPT_INT && v != floor(v))
        return ml_fail("router %s: option %s needs an integer, not '%s'", router, o->name, value);
    if (v < o->lo || v > o->hi)
        return ml_fail("router %s: option %s=%s is out of range [%g, %g]", router, o->name, value, o->lo, o->hi);
    if (o->type == ROPT_FLOAT) *(double *)(base + o->offset) = v;
    else *(int *)(base + o->offset) = (int)v;
    return 0;
}

static int apply(const char *router, const RouterOption *table, char *key, char *base) {
    char *eq = strchr(key, '=');
    if (!eq || eq == key || !eq[1]) return ml_fail("router %s: option '%s' is not key=value", router, key);
    *eq = 0;
    for (const RouterOption *o = table; o && o->name; o++)
        if (strcmp(o->name, key) == 0) return set_value(router, o, eq + 1, base);
    char known[512] = "";
    for (const RouterOption *o = table; o && o->name; o++)
        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", known[0] ? ", " : "", o->name);
    return ml_fail("router %s has no option '%s' (options: %s)", router, key, known[0] ? known : "none");
}

int router_opts_parse(const char *router, const RouterOption *table, const char *opts, void *out) {
    char *base = out;
    for (const RouterOption *o = table; o && o->name; o++) set_default(o, base);
    if (!opts || !*opts) return 0;
    char *copy = ml_strdup(opts), *save = NULL;
    int rc = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok && rc == 0; tok = strtok_r(NULL, ",", &save))
        rc = apply(router, table, tok, base);
    free(copy);
    return rc;
}

void router_opts_print(FILE *f, const RouterOption *table, const char *indent) {
    for (const RouterOption *o = table; o && o->name; o++) {
        char kind[96];
        if (o->type == ROPT_ENUM) {
            char def[32] = "";
            const char *c = o->choices;
            for (int i = 0; i < (int)o->def && c; i++) c = strchr(c, '|') ? strchr(c, '|') + 1 : NULL;
            if (c) snprintf(def, sizeof def, "%.*s", (int)(strchr(c, '|') ? strchr(c, '|') - c : (long)strlen(c)), c);
            snprintf(kind, sizeof kind, "%s, default %s", o->choices, def);
        } else {
            snprintf(kind, sizeof kind, "%s in [%g, %g], default %g", o->type == ROPT_INT ? "int" : "float", o->lo, o->hi,
                     o->def);
        }
        fprintf(f, "%s%-14s %s: %s\n", indent, o->name, kind, o->help);
    }
}
