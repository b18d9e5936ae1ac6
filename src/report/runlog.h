/* Reading a run folder back: log.jsonl, config.json, analyze.json and the checkpoint step.
 *
 * Everything here is tolerant: a key that a run's log does not have (an older build, a
 * router without that metric) reads as NAN or an empty series, never as an error, so
 * tables and plots show what exists and leave the rest out. */
#ifndef MOELAB_RUNLOG_H
#define MOELAB_RUNLOG_H
#include <cjson/cJSON.h>

typedef struct {
    char *dir;            /* the run folder as given */
    char *name;           /* its last path component */
    cJSON *config;        /* config.json (NULL when missing) */
    cJSON *analyze;       /* analyze.json (NULL when missing) */
    cJSON **train, **eval; /* log lines: training steps ("loss") and evaluations ("val_loss") */
    int n_train, n_eval;
    int bad_lines;        /* lines that were not JSON objects (e.g. a line being written) */
    int nonfinite;        /* lines holding a NaN or Inf: as null, or as a bare nan (not JSON) */
    long ckpt_step;       /* step of model.safetensors, -1 when there is none */
} RunLog;

/* Loads dir/log.jsonl (required) and whatever else is there. -1 with ml_fail when the
 * folder has no readable log. */
int runlog_load(RunLog *r, const char *dir);
void runlog_free(RunLog *r);

/* obj[key] as one number: a number is itself; an array of numbers (nested arrays, such
 * as per-layer values, flattened) is its mean; anything else, or a missing key, is NAN. */
double json_scalar(const cJSON *obj, const char *key);
/* Looks key up in obj, then in its child objects (depth-first, up to `depth` levels):
 * how metrics are found in an analyze.json whatever its nesting. NULL when absent. */
const cJSON *json_find(const cJSON *obj, const char *key, int depth);
/* Config value as a number (NAN when missing) and as a string (NULL). */
double runlog_cfg_num(const RunLog *r, const char *key);
const char *runlog_cfg_str(const RunLog *r, const char *key);

/* Lines of one kind holding `key`: steps and values (caller frees both). Returns the count. */
int runlog_series(const RunLog *r, int eval, const char *key, double **steps, double **vals);
/* The value a table shows for key: the last evaluation holding it, else the mean over the
 * last 10 logged training steps holding it (one step's batch is noisy). NAN when absent. */
double runlog_final(const RunLog *r, const char *key);
/* The median of key over all logged training steps (tokens/s, router share). */
double runlog_median(const RunLog *r, const char *key);
/* The last evaluation line, or NULL. */
const cJSON *runlog_last_eval(const RunLog *r);

/* "dir/name", allocated (caller frees). */
char *path_join(const char *dir, const char *name);
/* Step stored in dir/model.safetensors' metadata; -1 when there is no readable checkpoint. */
long checkpoint_step_of(const char *dir);

#endif
