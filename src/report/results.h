/* A set of runs grouped into variants, and the results table over them: mean and
 * standard deviation over seeds of validation loss and bits per byte (overall, under the
 * inference routing rule and per domain, when logged), the routing metrics, tokens/s and
 * the router's share of step time. Written as results.csv, runs.csv and Markdown; the
 * HTML report draws the same table. */
#ifndef MOELAB_RESULTS_H
#define MOELAB_RESULTS_H
#include "report/runlog.h"
#include "report/sweep.h"

typedef struct {
    RunLog log;
    char label[LABEL_MAX];
    int seed;     /* from config.json (-1 when unknown) */
    int finished; /* the checkpoint holds the config's last step */
    unsigned long dev, ino; /* the folder's identity: a run given twice counts once */
} Run;

typedef struct {
    char label[LABEL_MAX], router[32];
    char *flags; /* the variant's own flags, "" when unknown */
    int *runs, n_runs; /* indices into RunSet.runs */
} Group;

typedef struct {
    Run *runs;
    int n_runs;
    Group *groups;
    int n_groups;
    char **domains;
    int n_domains;
    cJSON *sweep; /* sweep.json of the first sweep folder read, or NULL */
} RunSet;

/* Adds a run folder (holding log.jsonl) or a sweep folder (run folders inside it, in
 * sweep.json's order when present, else sorted). -1 (ml_fail) when path holds no run. */
int runset_add(RunSet *s, const char *path);
void runset_free(RunSet *s);
/* The runs of the set in groups by label, in first-seen order; domains collected. */
void runset_group(RunSet *s);

enum { COL_FINAL, COL_MEDIAN, COL_ANALYZE };
enum { SEC_QUALITY, SEC_DOMAIN, SEC_ROUTING, SEC_ANALYZE, SEC_SPEED };

typedef struct {
    char key[96];  /* the log or analyze.json key */
    char name[96]; /* CSV column stem */
    int kind, section;
    const char *fmt; /* printf format of one value */
} Column;

typedef struct {
    double mean, sd; /* sd over seeds (sample); NAN with one seed */
    int n;
} Stat;

typedef struct {
    Column *cols;
    int n_cols;
    double *val;      /* [n_runs][n_cols], NAN where a run lacks the value */
    Stat *cell;       /* [n_groups][n_cols] */
    Stat *delta;      /* [n_groups]: val_bpb minus the first group's, paired by seed */
    int finished_only; /* runs that are not finished are left out of the cells */
} Table;

void table_build(const RunSet *s, int finished_only, Table *t);
void table_free(Table *t);
/* "2.1234 ± 0.0012" (or the mean alone, or "–"), into buf; a "+" flag in fmt applies to
 * the mean only. */
void stat_format(const Stat *st, const char *fmt, char *buf, size_t n);

int results_write_csv(const RunSet *s, const Table *t, const char *path);
int results_write_runs_csv(const RunSet *s, const Table *t, const char *path);
/* The tables as Markdown (caller frees); header_note goes above them. */
char *results_markdown(const RunSet *s, const Table *t, const char *header_note);
/* The column's heading in tables ("val bpb", "tok/s", ...). */
const char *column_title(const Column *c);
/* Mean and sample sd of the finite values among n. */
Stat stat_of(const double *v, int n);

#endif
