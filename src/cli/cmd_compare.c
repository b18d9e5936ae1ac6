/* `moelab compare`: trains routers x seeds on the same data, config and token budget,
 * each run a child `moelab train` of this same binary (/proc/self/exe), J at a time with the threads split
 * between them; then tabulates the runs (results.csv, runs.csv, results.md). Running it
 * again continues a half-finished sweep: finished runs are skipped, unfinished ones
 * resumed from their last checkpoint. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "cli/commands.h"
#include "core/util.h"
#include "report/proc.h"
#include "report/results.h"
#include "report/sweep.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(void) {
    printf("usage: moelab compare --data DIR --out SWEEPDIR (--preset NAME|FILE.json | --runs SPECS | --variants LIST)\n"
           "                      [--seeds N] [--seed S] [--steps N] [--jobs J] [--threads T] [--stop-at N]\n"
           "                      [--no-analyze] [--dry-run] [TRAIN CONFIG FLAGS]\n\n"
           "Trains every run spec with seeds S..S+N-1 on the same data, config and token budget, each\n"
           "as a child `moelab train` writing SWEEPDIR/<label>-s<seed>/ (its output in train.log there),\n"
           "then runs `moelab analyze` on each checkpoint (when available) and writes SWEEPDIR/results.csv\n"
           "(per variant: mean and sd over seeds), runs.csv (per run) and results.md, also printed.\n"
           "Run the same command again to continue: finished runs are skipped, unfinished ones resumed\n"
           "(moelab train --resume); a run folder trained with a different config is an error.\n\n"
           "  --data DIR         prepared data folder (moelab prepare)\n"
           "  --out SWEEPDIR     sweep folder\n"
           "  --preset NAME      quick (~10 min on 2 cores, byte-level data), full (hours), or a FILE.json;\n"
           "                     flags given beside it override it. Presets found: %s\n"
           "  --runs SPECS       \"label:router:flags;...\", e.g. \"a:topk:--renorm 1;b:topk:--renorm 0\"\n"
           "  --variants LIST    comma-separated names:\n%s"
           "  --seeds N          seeds per variant (default 2)\n"
           "  --seed S           first seed (default 1); the same seeds for every variant, so runs pair up\n"
           "  --steps N          optimizer steps of every run (also --batch, --seq-len, --grad-accum)\n"
           "  --jobs J           runs side by side (default 1)\n"
           "  --threads T        threads for the whole sweep, split between the jobs (default: all cores)\n"
           "  --stop-at N        stop every run after step N (with a checkpoint); run again to go on\n"
           "  --no-analyze       skip moelab analyze on the checkpoints\n"
           "  --dry-run          print what would run, run nothing\n"
           "Any other `moelab train` config flag (--layers, --d-model, --lr, ...) applies to every run.\n"
           "A spec's flags may not set --seed, --threads, --stop-at, --router or the token budget.\n",
           *sweep_preset_names() ? sweep_preset_names() : "none", sweep_variants_help());
}

enum { ST_FRESH, ST_RESUME, ST_DONE, ST_STOPPED };

typedef struct {
    char name[LABEL_MAX + 16];
    char *dir;
    int spec, seed, state;
    long step; /* checkpoint step (-1: none) */
    TrainConfig tc;
    int failed;
    pid_t pid;
    int phase; /* 0: training, 1: analysing */
    double t0;
} Job;

typedef struct {
    const char *data, *out;
    Sweep sw;
    int stop_at, analyze, dry_run, jobs, per_job, cores;
    Job *jobs_v;
    int n_jobs;
    int retryable; /* failed trainings that ended by a signal or out of memory: a rerun may succeed */
    int analyze_threads_flag; /* analyze --help mentions --threads */
    double max_load;          /* highest 1-minute load average seen while runs trained */
} Compare;

/* The 1-minute load average: other work on the machine makes tokens/s incomparable. */
static double loadavg(void) {
    double l = 0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f && fscanf(f, "%lf", &l) != 1) l = 0;
    if (f) fclose(f);
    return l;
}

static int parse_int(const char *flag, const char *v, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || errno || x < lo || x > hi) return ml_fail("%s needs an integer in %d..%d", flag, lo, hi);
    *out = (int)x;
    return 0;
}

static int parse_args(Compare *c, int argc, char **argv) {
    int rc = 0, seeds = 0, seed0 = -1, jobs = 0, threads = -1;
    const char *runs = NULL, *variants = NULL;
    /* The preset first, wherever it is, so the flags beside it win. */
    for (int i = 1; i < argc && rc == 0; i++)
        if (strcmp(argv[i], "--preset") == 0) {
            if (i + 1 >= argc) rc = ml_fail("--preset needs a name or a file");
            else rc = sweep_load_preset(&c->sw, argv[++i]);
        }
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(f, "--no-analyze") == 0) c->analyze = 0;
        else if (strcmp(f, "--dry-run") == 0) c->dry_run = 1;
        else if (strcmp(f, "--preset") == 0) i++;
        else if (f[0] != '-') rc = ml_fail("unexpected argument '%s'", f);
        else if (!v) rc = ml_fail("%s needs a value", f);
        else if (strcmp(f, "--data") == 0) c->data = argv[++i];
        else if (strcmp(f, "--out") == 0) c->out = argv[++i];
        else if (strcmp(f, "--runs") == 0) runs = argv[++i];
        else if (strcmp(f, "--variants") == 0) variants = argv[++i];
        else if (strcmp(f, "--seeds") == 0) rc = parse_int(f, argv[++i], 1, 1000, &seeds);
        else if (strcmp(f, "--seed") == 0) rc = parse_int(f, argv[++i], 0, 1000000000, &seed0);
        else if (strcmp(f, "--jobs") == 0) rc = parse_int(f, argv[++i], 1, 1024, &jobs);
        else if (strcmp(f, "--threads") == 0) rc = parse_int(f, argv[++i], 0, 1024, &threads);
        else if (strcmp(f, "--stop-at") == 0) rc = parse_int(f, argv[++i], 0, INT_MAX, &c->stop_at);
        else {
            int r = sweep_add_base_flag(&c->sw, f, v);
            if (r == 0) rc = ml_fail("unknown flag '%s' (see moelab compare --help)", f);
            else if (r < 0) rc = -1;
            else i++;
        }
    }
    if (rc) return -1;
    if (runs && variants) return ml_fail("give --runs or --variants, not both");
    if (runs && sweep_parse_runs(&c->sw, runs)) return -1;
    if (variants && sweep_parse_variants(&c->sw, variants)) return -1;
    if (!c->data) return ml_fail("--data DIR is required");
    if (!c->out) return ml_fail("--out SWEEPDIR is required");
    if (!c->sw.n_specs) return ml_fail("nothing to compare: give --preset, --runs or --variants");
    if (seeds) c->sw.seeds = seeds;
    if (!c->sw.seeds) c->sw.seeds = 2;
    if (seed0 >= 0) c->sw.first_seed = seed0;
    if (jobs) c->sw.jobs = jobs;
    if (!c->sw.jobs) c->sw.jobs = 1;
    if (threads >= 0) c->sw.threads = threads;
    return 0;
}

/* The vocabulary size and domain names of the data folder. */
static int read_data_meta(const char *data, int *vocab, cJSON **domains) {
    char *p = path_join(data, "meta.json");
    char *text = ml_file_exists(p) ? ml_read_file(p, NULL) : NULL;
    if (!text) ml_fail("%s has no meta.json: prepare it with moelab prepare", data);
    free(p);
    if (!text) return -1;
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "vocab_size");
    int rc = cJSON_IsNumber(v) && v->valuedouble >= 2 ? 0 : ml_fail("%s/meta.json: missing or bad vocab_size", data);
    if (rc == 0) {
        *vocab = (int)v->valuedouble;
        *domains = cJSON_DetachItemFromObjectCaseSensitive(root, "domains");
    }
    cJSON_Delete(root);
    return rc;
}

/* Decides what each run needs, checking every existing run folder before anything runs. */
static int plan(Compare *c, int vocab) {
    c->cores = c->sw.threads > 0 ? c->sw.threads : proc_cores();
    c->jobs = c->sw.jobs;
    if (c->jobs > c->cores) {
        fprintf(stderr, "moelab compare: --jobs %d is more than the %d threads; running %d at a time\n", c->jobs, c->cores, c->cores);
        c->jobs = c->cores;
    }
    c->per_job = c->cores / c->jobs;
    c->n_jobs = c->sw.n_specs * c->sw.seeds;
    c->jobs_v = ml_calloc((size_t)c->n_jobs, sizeof *c->jobs_v);
    for (int s = 0, k = 0; s < c->sw.n_specs; s++)
        for (int i = 0; i < c->sw.seeds; i++, k++) {
            Job *j = &c->jobs_v[k];
            j->spec = s;
            j->seed = c->sw.first_seed + i;
            sweep_run_name(&c->sw, s, j->seed, j->name, sizeof j->name);
            j->dir = path_join(c->out, j->name);
            if (sweep_run_config(&c->sw, s, j->seed, c->per_job, vocab, &j->tc)) return -1;
            j->step = checkpoint_step_of(j->dir);
            char *cfg = path_join(j->dir, "config.json");
            int has_cfg = ml_file_exists(cfg);
            free(cfg);
            if ((has_cfg || j->step >= 0) && sweep_check_config(&j->tc, j->dir)) return -1;
            long target = c->stop_at > 0 && c->stop_at < j->tc.steps ? c->stop_at : j->tc.steps;
            j->state = j->step >= j->tc.steps ? ST_DONE : j->step >= target ? ST_STOPPED : j->step >= 0 ? ST_RESUME : ST_FRESH;
        }
    return 0;
}

static cJSON *machine_json(const Compare *c) {
    char model[256] = "unknown CPU", line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0 && strchr(line, ':')) {
            snprintf(model, sizeof model, "%s", strchr(line, ':') + 2);
            model[strcspn(model, "\n")] = 0;
            break;
        }
    if (f) fclose(f);
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "cpu", model);
    cJSON_AddNumberToObject(m, "cores", proc_cores());
    cJSON_AddNumberToObject(m, "jobs", c->jobs);
    cJSON_AddNumberToObject(m, "threads_per_run", c->per_job);
    return m;
}

/* sweep.json: the plan, for `moelab report` and for a later call to check --data against. */
static int write_sweep_json(const Compare *c, cJSON *domains) {
    char real[PATH_MAX];
    const char *data = realpath(c->data, real) ? real : c->data;
    char *path = path_join(c->out, "sweep.json");
    if (ml_file_exists(path)) {
        char *old = ml_read_file(path, NULL);
        cJSON *o = old ? cJSON_Parse(old) : NULL;
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(o, "data");
        int same = !cJSON_IsString(d) || strcmp(d->valuestring, data) == 0;
        if (!same) ml_fail("%s was run on the data in %s, not %s: use another --out", c->out, d->valuestring, data);
        cJSON_Delete(o);
        free(old);
        if (!same) {
            free(path);
            return -1;
        }
    }
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "format", "moelab-sweep");
    cJSON_AddNumberToObject(root, "version", 1);
    cJSON_AddStringToObject(root, "description", c->sw.description);
    cJSON_AddStringToObject(root, "data", data);
    cJSON_AddItemToObject(root, "domains", domains ? cJSON_Duplicate(domains, 1) : cJSON_CreateArray());
    cJSON_AddNumberToObject(root, "first_seed", c->sw.first_seed);
    cJSON_AddNumberToObject(root, "seeds", c->sw.seeds);
    char *base = flaglist_str(&c->sw.base);
    cJSON_AddStringToObject(root, "config_flags", base);
    free(base);
    cJSON *runs = cJSON_AddArrayToObject(root, "runs");
    for (int s = 0; s < c->sw.n_specs; s++) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "label", c->sw.specs[s].label);
        cJSON_AddStringToObject(r, "router", c->sw.specs[s].router);
        char *f = flaglist_str(&c->sw.specs[s].flags);
        cJSON_AddStringToObject(r, "flags", f);
        free(f);
        cJSON_AddItemToArray(runs, r);
    }
    cJSON_AddItemToObject(root, "machine", machine_json(c));
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    int rc = ml_write_file_atomic(path, text, strlen(text));
    free(text);
    free(path);
    return rc;
}

/* argv for a child of this binary: "moelab", then the words; NULL-terminated (caller frees the array). */
static char **child_argv(const FlagList *words) {
    char **v = ml_calloc((size_t)words->n * 2 + 2, sizeof *v);
    int k = 0;
    v[k++] = "moelab";
    for (int i = 0; i < words->n; i++) {
        v[k++] = words->flag[i];
        if (words->value[i][0]) v[k++] = words->value[i];
    }
    return v;
}

/* The command words of a run's training: fresh with every flag, or --resume. */
static void train_words(const Compare *c, const Job *j, FlagList *w) {
    char buf[32];
    memset(w, 0, sizeof *w);
    flaglist_add(w, "train", "");
    flaglist_add(w, "--data", c->data);
    flaglist_add(w, "--out", j->dir);
    if (j->state == ST_RESUME) {
        flaglist_add(w, "--resume", "");
        snprintf(buf, sizeof buf, "%d", c->per_job);
        flaglist_add(w, "--threads", buf);
    } else {
        FlagList f;
        sweep_run_flags(&c->sw, j->spec, j->seed, c->per_job, &f);
        for (int i = 0; i < f.n; i++) flaglist_add(w, f.flag[i], f.value[i]);
        flaglist_free(&f);
    }
    if (c->stop_at > 0) {
        snprintf(buf, sizeof buf, "%d", c->stop_at);
        flaglist_add(w, "--stop-at", buf);
    }
}

static void analyze_words(const Compare *c, const Job *j, FlagList *w) {
    memset(w, 0, sizeof *w);
    flaglist_add(w, "analyze", "");
    flaglist_add(w, j->dir, "");
    flaglist_add(w, "--data", c->data);
    char *out = path_join(j->dir, "analyze.json");
    flaglist_add(w, "--out", out);
    free(out);
    if (c->analyze_threads_flag) {
        char buf[32];
        snprintf(buf, sizeof buf, "%d", c->per_job);
        flaglist_add(w, "--threads", buf);
    }
}

/* Appends the command line to the run's log, then starts it there. */
static pid_t start(const Job *j, const FlagList *w, const char *logname) {
    char *log = path_join(j->dir, logname);
    FILE *f = fopen(log, "a");
    if (f) {
        char *cmd = flaglist_str(w);
        fprintf(f, "== moelab %s\n", cmd);
        free(cmd);
        fclose(f);
    }
    char **argv = child_argv(w);
    pid_t pid = proc_spawn(PROC_SELF, argv, log);
    free(argv);
    free(log);
    return pid;
}

/* A fresh run starts clean: what an attempt that never completed a checkpoint left goes
 * (an optimizer file alone is half of a save that was cut short). */
static void clear_partial(const Job *j) {
    const char *names[] = {"log.jsonl", "config.json", "analyze.json", "optim.safetensors"};
    for (int i = 0; i < 4; i++) {
        char *p = path_join(j->dir, names[i]);
        unlink(p);
        free(p);
    }
}

/* analyze is available when `moelab analyze --help` succeeds; note whether it takes --threads. */
static int probe_analyze(Compare *c) {
    char tmp[] = "/tmp/moelab-analyze-help.XXXXXX";
    int fd = mkstemp(tmp);
    if (fd < 0) return 0;
    close(fd);
    char *argv[] = {"moelab", "analyze", "--help", NULL};
    int ok = proc_run(PROC_SELF, argv, tmp) == 0;
    char *text = ml_read_file(tmp, NULL);
    c->analyze_threads_flag = text && strstr(text, "--threads") != NULL;
    free(text);
    unlink(tmp);
    return ok;
}

static void print_plan(const Compare *c) {
    for (int k = 0; k < c->n_jobs; k++) {
        const Job *j = &c->jobs_v[k];
        static const char *const S[] = {"train", "resume", "finished", "stopped"};
        FlagList w;
        train_words(c, j, &w);
        char *cmd = flaglist_str(&w);
        fprintf(stderr, "  %-24s %-8s moelab %s\n", j->name, S[j->state], j->state <= ST_RESUME ? cmd : "");
        free(cmd);
        flaglist_free(&w);
    }
}

/* The last n lines of a file to stderr, indented: why a child failed. */
static void print_tail(const char *path, int n) {
    size_t len;
    char *text = ml_read_file(path, &len);
    if (!text) return;
    const char *p = text + len;
    for (int lines = 0; p > text && lines <= n; p--)
        if (p[-1] == '\n' && p != text + len) lines++;
    for (const char *l = p; *l;) {
        const char *nl = strchr(l, '\n');
        int k = nl ? (int)(nl - l) : (int)strlen(l);
        if (k) fprintf(stderr, "    %.*s\n", k, l);
        l += k + (nl != NULL);
    }
    free(text);
}

static int needs_analyze(const Compare *c, const Job *j) {
    if (!c->analyze || j->state != ST_DONE || j->failed) return 0;
    char *p = path_join(j->dir, "analyze.json");
    int have = ml_file_exists(p);
    free(p);
    return !have;
}

static void log_result(const Job *j) {
    RunLog l;
    double bpb = 0;
    if (runlog_load(&l, j->dir) == 0) {
        bpb = runlog_final(&l, "val_bpb");
        runlog_free(&l);
    }
    fprintf(stderr, "moelab compare: %s: trained to step %ld in %.1f s (val_bpb %.4f)\n", j->name, j->step,
            ml_now() - j->t0, bpb);
}

/* Starts the next thing job j needs (training, then analysis); 0 when it needs nothing. */
static int start_next(Compare *c, Job *j, int *started) {
    FlagList w;
    if (j->phase == 0 && (j->state == ST_FRESH || j->state == ST_RESUME)) {
        if (ml_mkdir_p(j->dir)) return -1;
        if (j->state == ST_FRESH) clear_partial(j);
        fprintf(stderr, "moelab compare: [%d] %s: %s\n", ++*started, j->name,
                j->state == ST_FRESH ? "training" : "resuming from its checkpoint");
        train_words(c, j, &w);
        j->pid = start(j, &w, "train.log");
    } else if (needs_analyze(c, j) && j->phase <= 1) {
        j->phase = 1;
        analyze_words(c, j, &w);
        j->pid = start(j, &w, "analyze.log");
    } else {
        return 0;
    }
    flaglist_free(&w);
    j->t0 = ml_now();
    return j->pid < 0 ? -1 : 1;
}

/* A child ended: record it, and chain the job's next phase. Returns 1 when the job's slot
 * is busy again. */
static int child_ended(Compare *c, Job *j, int code, int *failures, int *started) {
    j->pid = 0;
    if (j->phase == 1) {
        j->phase = 2;
        if (code != 0) fprintf(stderr, "moelab compare: %s: moelab analyze failed (exit %d), see %s/analyze.log\n", j->name, code, j->dir);
        return 0;
    }
    j->step = checkpoint_step_of(j->dir);
    double l = loadavg();
    if (l > c->max_load) c->max_load = l;
    if (code != 0) {
        j->failed = 1;
        (*failures)++;
        c->retryable += code == 2 || code >= 128;
        char *log = path_join(j->dir, "train.log");
        fprintf(stderr, "moelab compare: %s: moelab train failed (exit %d); the end of %s:\n", j->name, code, log);
        print_tail(log, 6);
        free(log);
        return 0;
    }
    j->state = j->step >= j->tc.steps ? ST_DONE : ST_STOPPED;
    log_result(j);
    j->phase = 1;
    int r = start_next(c, j, started);
    return r > 0;
}

static int run_all(Compare *c) {
    int running = 0, next = 0, failures = 0, started = 0;
    for (;;) {
        while (running < c->jobs && next < c->n_jobs) {
            int r = start_next(c, &c->jobs_v[next++], &started);
            if (r < 0) {
                fprintf(stderr, "moelab compare: %s\n", ml_last_error());
                failures++;
            }
            running += r > 0;
        }
        if (!running) break;
        int code;
        pid_t pid = proc_wait(-1, &code);
        if (pid < 0) break;
        for (int k = 0; k < c->n_jobs; k++)
            if (c->jobs_v[k].pid == pid) running -= !child_ended(c, &c->jobs_v[k], code, &failures, &started);
    }
    return failures;
}

/* Tabulates the sweep's planned runs: results.csv, runs.csv, results.md; prints the Markdown. */
static int write_results(const Compare *c, double wall) {
    RunSet set = {0};
    int rc = 0, finished = 0;
    for (int k = 0; k < c->n_jobs && rc == 0; k++) {
        char *log = path_join(c->jobs_v[k].dir, "log.jsonl");
        if (ml_file_exists(log)) rc = runset_add(&set, c->jobs_v[k].dir);
        free(log);
    }
    if (rc == 0 && set.n_runs == 0) rc = ml_fail("no run has a log yet");
    if (rc) {
        runset_free(&set);
        return -1;
    }
    runset_group(&set);
    Table t;
    table_build(&set, 1, &t);
    for (int i = 0; i < set.n_runs; i++) finished += set.runs[i].finished;
    const TrainConfig *tc = &c->jobs_v[0].tc;
    char note[1536];
    snprintf(note, sizeof note,
             "Sweep `%s` on `%s`: %d of %d runs finished. Every run: %d layers, d_model %d, %d experts (top-%d, d_expert %d, "
             "%d shared), %d steps x %d x %d tokens = %.3g M tokens. %d run(s) at a time, %d thread(s) each, on a %d-core machine "
             "(speeds compare within this table only). Wall time of this call: %.0f s.",
             c->out, c->data, finished, c->n_jobs, tc->model.n_layers, tc->model.d_model, tc->model.n_experts, tc->model.top_k,
             tc->model.d_expert, tc->model.n_shared, tc->steps, tc->batch * tc->grad_accum, tc->model.seq_len,
             (double)tc->steps * tc->batch * tc->grad_accum * tc->model.seq_len / 1e6, c->jobs, c->per_job, proc_cores(), wall);
    if (c->max_load > c->cores + 1.0) {
        size_t k = strlen(note);
        snprintf(note + k, sizeof note - k,
                 "\n\n**Warning:** the machine was busy with other work during the sweep (1-minute load average up to "
                 "%.1f on %d cores): tokens/s and router share are not comparable between runs.",
                 c->max_load, proc_cores());
        fprintf(stderr, "moelab compare: warning: the machine was busy with other work (load average up to %.1f on %d cores); "
                        "speeds are not comparable\n", c->max_load, proc_cores());
    }
    char *md = results_markdown(&set, &t, note);
    char *csv = path_join(c->out, "results.csv"), *runs = path_join(c->out, "runs.csv"), *mdp = path_join(c->out, "results.md");
    rc = results_write_csv(&set, &t, csv);
    if (rc == 0) rc = results_write_runs_csv(&set, &t, runs);
    if (rc == 0) rc = ml_write_file_atomic(mdp, md, strlen(md));
    if (rc == 0) printf("%s\nwrote %s, %s and %s\n", md, csv, runs, mdp);
    free(csv);
    free(runs);
    free(mdp);
    free(md);
    table_free(&t);
    runset_free(&set);
    return rc;
}

static int compare(Compare *c) {
    double t0 = ml_now();
    int vocab;
    cJSON *domains = NULL;
    if (read_data_meta(c->data, &vocab, &domains)) return -1;
    int rc = plan(c, vocab);
    if (rc == 0 && !c->dry_run) rc = ml_mkdir_p(c->out);
    if (rc == 0 && !c->dry_run) rc = write_sweep_json(c, domains);
    cJSON_Delete(domains);
    if (rc) return -1;
    int todo = 0, done = 0;
    for (int k = 0; k < c->n_jobs; k++) {
        todo += c->jobs_v[k].state <= ST_RESUME;
        done += c->jobs_v[k].state == ST_DONE;
    }
    fprintf(stderr, "moelab compare: %d runs (%d variants x %d seeds), %d at a time with %d thread(s) each: %d finished, %d to train\n",
            c->n_jobs, c->sw.n_specs, c->sw.seeds, c->jobs, c->per_job, done, todo);
    if (c->dry_run) {
        print_plan(c);
        return 0;
    }
    if (c->analyze && !probe_analyze(c)) {
        c->analyze = 0;
        fprintf(stderr, "moelab compare: moelab analyze is not available in this build; routing metrics come from the logs only\n");
    }
    int failures = run_all(c);
    rc = write_results(c, ml_now() - t0);
    int unfinished = 0;
    for (int k = 0; k < c->n_jobs; k++) unfinished += c->jobs_v[k].state != ST_DONE;
    if (rc) fprintf(stderr, "moelab compare: no results table: %s\n", ml_last_error());
    if (unfinished && !failures)
        fprintf(stderr, "moelab compare: %d of %d runs are not finished (--stop-at); run the same command without it to continue\n",
                unfinished, c->n_jobs);
    /* Exit 1 is a refusal (bad input, a diverged run, a held folder): the same command
     * would fail the same way, so rerunning is suggested only for killed or out-of-memory runs. */
    if (failures && c->retryable)
        return ml_fail("%d run(s) failed, %d of them killed or out of memory: run the same command again to retry "
                       "them (finished runs are kept)", failures, c->retryable);
    if (failures) return ml_fail("%d run(s) failed: see the messages above; rerunning will not help until the cause is fixed",
                                 failures);
    fprintf(stderr, "moelab compare: wall time %.0f s\n", ml_now() - t0);
    return rc;
}

int cmd_compare(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (cli_is_help(argv[i])) {
            usage();
            return 0;
        }
    Compare c;
    memset(&c, 0, sizeof c);
    c.analyze = 1;
    sweep_init(&c.sw);
    int rc = parse_args(&c, argc, argv);
    if (rc == 0) rc = compare(&c);
    if (rc) fprintf(stderr, "moelab compare: %s\n", ml_last_error());
    for (int k = 0; k < c.n_jobs; k++) free(c.jobs_v[k].dir);
    free(c.jobs_v);
    sweep_free(&c.sw);
    return rc ? 1 : 0;
}
