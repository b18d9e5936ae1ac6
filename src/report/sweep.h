/* What `moelab compare` trains: run specs (a label, a router and flag overrides),
 * presets, and the training config of each (spec, seed) run of a sweep.
 *
 * A spec string is "label:router:flags", several joined by ';', e.g.
 *   "topk:topk:--renorm 1 --aux-coef 0.01;topk-norenorm:topk:--renorm 0"
 * Flags are train config flags ("--key value" or "--key=value"). They may not touch what
 * the sweep itself fixes for every run: seed, threads, stop-at and the token budget
 * (steps, batch, grad-accum, seq-len). */
#ifndef MOELAB_SWEEP_H
#define MOELAB_SWEEP_H
#include "model/config.h"
#include <stddef.h>

typedef struct {
    int n;
    char **flag, **value; /* "--renorm", "0" */
} FlagList;

void flaglist_add(FlagList *l, const char *flag, const char *value);
void flaglist_free(FlagList *l);
/* Space-joined "--flag value ..." (caller frees). */
char *flaglist_str(const FlagList *l);

#define LABEL_MAX 48

typedef struct {
    char label[LABEL_MAX];
    char router[32];
    FlagList flags;
} RunSpec;

typedef struct {
    char description[512];
    FlagList base;  /* config flags for every run: the preset's, then the command line's */
    RunSpec *specs;
    int n_specs;
    int seeds, first_seed, jobs, threads; /* threads: for the whole sweep (0: all cores) */
} Sweep;

void sweep_init(Sweep *s);
void sweep_free(Sweep *s);
/* Replaces the sweep's specs with those parsed from a spec string. */
int sweep_parse_runs(Sweep *s, const char *text);
/* Replaces the specs with named variants, comma-separated: a built-in name (topk,
 * topk-norenorm, topk-noaux, topk-noz) or any registered router with its defaults. */
int sweep_parse_variants(Sweep *s, const char *names);
/* Loads a preset: a name looked up in the presets folders, or a .json path. */
int sweep_load_preset(Sweep *s, const char *name_or_path);
/* Checks a base config flag (not a sweep-managed one) and appends it. 1: appended,
 * 0: not a config flag, -1: bad (ml_fail). */
int sweep_add_base_flag(Sweep *s, const char *flag, const char *value);
/* Help text listing the built-in variants. */
const char *sweep_variants_help(void);
/* Comma-separated names of the presets found, or "" (static buffer). */
const char *sweep_preset_names(void);

/* The full config of run (spec, seed): defaults, base flags, the spec's router and flags,
 * seed, threads and vocab; validated. */
int sweep_run_config(const Sweep *s, int spec, int seed, int threads, int vocab, TrainConfig *tc);
/* The flags a child `moelab train` gets for that run, in the same order (caller frees
 * with flaglist_free). */
void sweep_run_flags(const Sweep *s, int spec, int seed, int threads, FlagList *out);
/* The run folder name "<label>-s<seed>". */
void sweep_run_name(const Sweep *s, int spec, int seed, char *buf, size_t n);
/* Compares a planned config with a run folder's config.json, ignoring threads and
 * stop-at. 0: same; -1 (ml_fail naming the keys that differ) otherwise. */
int sweep_check_config(const TrainConfig *planned, const char *run_dir);

#endif
