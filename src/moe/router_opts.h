/* Router options: each router declares its options in a typed table, so parsing,
 * range checks, defaults and `--help` come from one place.
 *
 *   typedef struct { double warmup; int eval_select; } MyOpts;
 *   static const RouterOption MY_OPTIONS[] = {
 *       {"warmup", ROPT_FLOAT, offsetof(MyOpts, warmup), 0.01, 0, 1, NULL, "fraction of steps ..."},
 *       {"eval_select", ROPT_ENUM, offsetof(MyOpts, eval_select), 0, 0, 0, "greedy|topk", "..."},
 *       {0}};
 *
 * ROPT_INT fields are int, ROPT_FLOAT double, ROPT_ENUM int (the index of the choice). */
#ifndef MOELAB_ROUTER_OPTS_H
#define MOELAB_ROUTER_OPTS_H
#include <stddef.h>
#include <stdio.h>

typedef enum { ROPT_INT, ROPT_FLOAT, ROPT_ENUM } RouterOptType;

typedef struct {
    const char *name;
    RouterOptType type;
    size_t offset;       /* of the field in the router's options struct */
    double def, lo, hi;  /* default and inclusive range (INT, FLOAT) */
    const char *choices; /* ENUM: "a|b|c"; def is the index of the default */
    const char *help;    /* what it does, and where the default comes from */
} RouterOption;

/* Sets every default, then applies "key=value,key=value". Unknown keys, malformed
 * or out-of-range values are refused (-1 with ml_fail) naming the router and the key. */
int router_opts_parse(const char *router, const RouterOption *table, const char *opts, void *out);
/* One line per option: name, type or choices, default, range, help. */
void router_opts_print(FILE *f, const RouterOption *table, const char *indent);

#endif
