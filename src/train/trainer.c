#include "train/trainer.h"
#include "core/gemm.h"
#include "core/util.h"
#include "io/checkpoint.h"
#include "metrics/metrics.h"
#include "model/model.h"
#include "model/optim.h"
#include "model/sizes.h"
#include "io/jsonl.h"
#include "train/dist_train.h"
#include "train/evaluate.h"
#include "train/guard.h"
#include "train/runlock.h"
#include <cblas.h>
#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int set_threads(int n) {
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
    return n;
}

typedef struct {
    TrainConfig tc;
    Model model;
    AdamW opt;
    TrainState st;
    Shard train, val;
    DataMeta meta;
    FILE *log;
    StepGuard guard; /* non-finite steps */
    int lock, made_dir, created; /* run folder lock; this start made the folder / wrote its files */
    Metrics mt; /* routing metrics of the step being logged (cheap ones only) */
    char path[4096];
    DistTrain dist;
    int writer; /* the one process that writes the run folder (rank 0) */
} Run;

static const char *run_path(Run *r, const char *dir, const char *name) {
    snprintf(r->path, sizeof r->path, "%s/%s", dir, name);
    return r->path;
}

static int load_data(Run *r, const char *dir) {
    if (data_meta_load(&r->meta, dir)) return -1;
    if (shard_load(&r->train, run_path(r, dir, "train.bin"))) return -1;
    if (shard_load(&r->val, run_path(r, dir, "val.bin"))) return -1;
    if (r->train.vocab_size != r->meta.vocab_size || r->val.vocab_size != r->meta.vocab_size)
        return ml_fail("%s: shards and meta.json disagree on the vocabulary size", dir);
    return 0;
}

/* A resumed run keeps its stored config; flags given again may change only how the
 * run proceeds (steps, logging, threads...), never the model's shape. */
static int resume_config(Run *r, TrainArgs *a) {
    TrainConfig saved;
    if (checkpoint_load_model(a->out_dir, &r->model, &saved)) return -1;
    TrainConfig merged = saved;
    merged.stop_at = 0; /* a stop applies to the invocation that asked for it */
    for (int i = 0; i < a->n_flags; i++)
        if (config_apply_flag(&merged, a->flags[i], a->values[i]) < 0) return -1;
    char *x = config_to_json(&saved, 1), *y = config_to_json(&merged, 1);
    int same = strcmp(x, y) == 0;
    free(x);
    free(y);
    if (!same) return ml_fail("--resume: the model flags given differ from the checkpoint in %s (shape mismatch); drop them or use a new --out", a->out_dir);
    r->tc = merged;
    return config_validate(&r->tc);
}

/* keep_through_step -2: a process that does not write the run folder logs nowhere. */
static int open_log(Run *r, const char *out, long keep_through_step) {
    const char *path = keep_through_step == -2 ? "/dev/null" : run_path(r, out, "log.jsonl");
    if (keep_through_step >= 0 && ml_file_exists(path)) {
        /* Drop lines written after the checkpoint, so the resumed log reads as one run. */
        size_t len;
        char *text = ml_read_file(path, &len);
        if (!text) return -1;
        size_t keep = 0;
        for (char *line = text; *line;) {
            char *nl = strchr(line, '\n');
            size_t n = nl ? (size_t)(nl - line + 1) : strlen(line);
            long step = -1;
            const char *s = strstr(line, "\"step\":");
            if (s) step = strtol(s + 7, NULL, 10);
            if (step > keep_through_step || !nl) break;
            keep += n;
            line += n;
        }
        int rc = ml_write_file_atomic(path, text, keep);
        free(text);
        if (rc) return -1;
    }
    r->log = jsonl_open(path); /* non-finite numbers become null; write errors surface */
    return r->log ? 0 : -1;
}

static void log_eval(Run *r, long step, const EvalResult *ev, const EvalResult *ev_infer, const Metrics *mt) {
    fprintf(r->log, "{\"step\":%ld,\"val_loss\":%.6f,\"val_bpb\":%.6f", step, ev->loss, ev->bpb);
    if (ev_infer) fprintf(r->log, ",\"val_loss_infer\":%.6f,\"val_bpb_infer\":%.6f", ev_infer->loss, ev_infer->bpb);
    /* Per-domain quality, when the data has several domains; a domain with no tokens in
     * the evaluated batches is left out rather than logged as 0. */
    for (int d = 0; ev->n_domains > 1 && d < ev->n_domains; d++)
        if (ev->domains[d].tokens > 0 && eval_domain_name_ok(ev->domains[d].name))
            fprintf(r->log, ",\"val_loss_%s\":%.6f,\"val_bpb_%s\":%.6f", ev->domains[d].name, ev->domains[d].loss,
                    ev->domains[d].name, ev->domains[d].bpb);
    if (mt) metrics_json_eval(r->log, mt); /* overlap, expert_sim, domain_mi, cooc per layer */
    fprintf(r->log, "}\n");
    fflush(r->log);
}

static int run_eval(Run *r, long step, int quiet) {
    EvalResult ev;
    /* The expensive routing metrics come from the same validation forward passes. */
    Metrics mt;
    metrics_init(&mt, &r->model.cfg, r->val.n_domains, METRICS_FULL);
    dist_gather_experts(&r->dist, &r->model, NULL); /* the probe runs every expert */
    int rc = evaluate_part(&r->model, &r->val, &r->meta, r->tc.batch, r->model.cfg.seq_len, r->tc.eval_batches, ROUTE_EVAL,
                           r->dist.rank, r->dist.N, &ev, mt.n_moe ? metrics_eval_batch : NULL, &mt);
    if (rc == 0 && mt.n_moe) metrics_probe_flush(&mt, &r->model);
    if (rc == 0) dist_reduce_eval(&ev, mt.n_moe ? &mt : NULL);
    if (rc == 0 && mt.n_moe) metrics_finish(&mt);
    /* A batch-level router's generation rule differs from its training rule: report both. */
    EvalResult ev_infer;
    int infer = rc == 0 && model_batch_level(&r->model);
    if (infer)
        rc = evaluate_part(&r->model, &r->val, &r->meta, r->tc.batch, r->model.cfg.seq_len, r->tc.eval_batches,
                           ROUTE_INFER, r->dist.rank, r->dist.N, &ev_infer, NULL, NULL);
    if (infer && rc == 0) dist_reduce_eval(&ev_infer, NULL);
    if (rc == 0) log_eval(r, step, &ev, infer ? &ev_infer : NULL, mt.n_moe ? &mt : NULL);
    metrics_free(&mt);
    if (rc) return -1;
    if (infer && !quiet) fprintf(stderr, "\nstep %ld | val_loss (per-token inference rule) %.4f\n", step, ev_infer.loss);
    if (!quiet) {
        fprintf(stderr, "\nstep %ld | val_loss %.4f | val_bpb %.4f\n", step, ev.loss, ev.bpb);
        for (int d = 0; ev.n_domains > 1 && d < ev.n_domains; d++)
            if (ev.domains[d].tokens > 0)
                fprintf(stderr, "    %-14s val_loss %.4f | val_bpb %.4f\n", ev.domains[d].name, ev.domains[d].loss, ev.domains[d].bpb);
    }
    return 0;
}

static void format_eta(char *buf, size_t n, double s) {
    if (s < 0 || s > 1e7) snprintf(buf, n, "?");
    else if (s >= 3600) snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
    else snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
}

/* On a terminal the line is redrawn every step; into a file, at most every 5 s. */
static void progress(const Run *r, long step, long last, float loss, float lr, double tps, double eta) {
    static double last_print = -1e9;
    if (!isatty(2) && step != last && ml_now() - last_print < 5.0) return;
    last_print = ml_now();
    char e[32];
    format_eta(e, sizeof e, eta);
    fprintf(stderr, "%sstep %ld/%ld | loss %.4f | lr %.2e | %.0f tok/s | ETA %s%s", isatty(2) ? "\r" : "", step, last,
            loss, lr, tps, e, isatty(2) ? "   " : "\n");
    (void)r;
}

/* One optimizer step over grad_accum micro-batches. Returns the mean LM loss. */
/* mt (NULL when the step is not logged) gets the routing of every micro-batch. */
static float train_step(Run *r, int *inp, int *tgt, float lr, float *grad_norm, float *rl, const char **rn, int *n_rl, Metrics *mt) {
    TrainConfig *tc = &r->tc;
    Model *m = &r->model;
    int B = tc->batch, T = m->cfg.seq_len;
    float loss = 0.0f, vals[ROUTER_MAX_LOSSES];
    *n_rl = 0;
    model_zero_grad(m);
    for (int micro = 0; micro < tc->grad_accum; micro++) {
        dist_next_batch(&r->dist, &r->st.loader, inp, tgt, micro, tc->grad_accum);
        loss += model_forward(m, inp, tgt, B, T, ROUTE_TRAIN) / tc->grad_accum;
        if (mt) metrics_add(mt, m, NULL);
        dist_before_backward(&r->dist, m, micro == tc->grad_accum - 1);
        model_backward(m, inp, tgt, 1.0f / tc->grad_accum);
        if (mt) mt->router_seconds += m->router_seconds; /* forward + backward, every micro-batch */
        int n = model_router_losses(m, rn, vals, ROUTER_MAX_LOSSES);
        if (micro == 0) memset(rl, 0, sizeof(float) * ROUTER_MAX_LOSSES);
        for (int i = 0; i < n; i++) rl[i] += vals[i] / tc->grad_accum;
        *n_rl = n;
    }
    dist_after_backward(&r->dist, m);
    dist_reduce_step(&r->dist, &loss, rl, *n_rl, mt); /* the guard below then decides alike on every rank */
    *grad_norm = dist_clip_grad_norm(&r->dist, m, tc->grad_clip);
    if (guard_finite(&r->guard, r->st.step + 1, loss, *grad_norm))
        adamw_step(&r->opt, &m->table, m->params, m->grads, lr, tc->beta1, tc->beta2, tc->adam_eps, tc->weight_decay);
    return loss;
}

/* Every rank calls it (expert weights are gathered first); one writes. */
static int save(Run *r, const char *out) {
    dist_gather_experts(&r->dist, &r->model, &r->opt);
    int rc = r->writer ? checkpoint_save(out, &r->model, &r->tc, &r->opt, &r->st) : 0;
    if (!dist_all_ok(rc == 0) && rc == 0) rc = ml_fail("the process writing the checkpoint failed (see its message)");
    return rc;
}

static int setup(Run *r, TrainArgs *a) {
    if (load_data(r, a->data_dir)) return -1;
    /* Found now, not after the whole run: every evaluation needs a validation batch. */
    if (loader_eval_batches(&r->val, 1, 1) == 0)
        return ml_fail("%s/val.bin: the validation split is empty; prepare more text or a larger --val-frac", a->data_dir);
    if (a->resume) {
        if (r->writer && ((r->lock = runlock_acquire(a->out_dir)) < 0 || checkpoint_recover(a->out_dir))) return -1;
        if (resume_config(r, a)) return -1;
        if (r->model.cfg.vocab_size != r->meta.vocab_size)
            return ml_fail("--resume: checkpoint vocab %d but data vocab %d (shape mismatch)", r->model.cfg.vocab_size, r->meta.vocab_size);
        adamw_init(&r->opt, r->model.table.total);
        if (checkpoint_load_state(a->out_dir, &r->model, &r->opt, &r->st)) return -1;
        Rng saved = r->st.loader.rng;
        if (loader_init(&r->st.loader, &r->train, r->tc.batch, r->model.cfg.seq_len, 0)) return -1;
        r->st.loader.rng = saved;
        return open_log(r, a->out_dir, r->writer ? r->st.step : -2);
    }
    r->tc = a->tc;
    if (r->tc.model.vocab_size == 0) r->tc.model.vocab_size = r->meta.vocab_size;
    if (r->tc.model.vocab_size != r->meta.vocab_size)
        return ml_fail("--vocab %d differs from the data's vocabulary (%d)", r->tc.model.vocab_size, r->meta.vocab_size);
    if (config_validate(&r->tc) || sizes_check_run(&r->tc.model, r->tc.batch, r->tc.model.seq_len, 1)) return -1;
    if (r->writer) { /* the other processes of an MPI job only read the folder */
        r->made_dir = !ml_file_exists(a->out_dir);
        if (ml_mkdir_p(a->out_dir) || (r->lock = runlock_acquire(a->out_dir)) < 0 || checkpoint_recover(a->out_dir))
            return -1;
    }
    if (r->writer && ml_file_exists(run_path(r, a->out_dir, "model.safetensors")))
        return ml_fail("%s already holds a checkpoint: continue it with --resume, or choose another --out", a->out_dir);
    static const char *const left[] = {"log.jsonl", "optim.safetensors", "config.json"};
    for (int i = 0; i < 3; i++)
        if (r->writer && ml_file_exists(run_path(r, a->out_dir, left[i])))
            return ml_fail("%s already holds %s from an earlier run without a checkpoint: remove it, or choose another --out", a->out_dir, left[i]);
    /* The model first: a bad router name must not leave an empty run folder behind. */
    if (model_create(&r->model, &r->tc.model)) return -1;
    model_init_weights(&r->model, r->tc.seed);
    adamw_init(&r->opt, r->model.table.total);
    r->st.step = 0;
    if (loader_init(&r->st.loader, &r->train, r->tc.batch, r->tc.model.seq_len, r->tc.seed ^ 0x5EEDDA7Aull)) return -1;
    char *cfg = config_to_json(&r->tc, 0);
    r->created = r->writer;
    int rc = r->writer ? ml_write_file_atomic(run_path(r, a->out_dir, "config.json"), cfg, strlen(cfg)) : 0;
    free(cfg);
    if (rc) return -1;
    return open_log(r, a->out_dir, r->writer ? -1 : -2);
}

static void teardown(Run *r) {
    if (r->log) fclose(r->log);
    dist_train_free(&r->dist);
    metrics_free(&r->mt);
    model_free(&r->model);
    adamw_free(&r->opt);
    shard_free(&r->train);
    shard_free(&r->val);
    data_meta_free(&r->meta);
}

static int loop(Run *r, TrainArgs *a) {
    TrainConfig *tc = &r->tc;
    Model *m = &r->model;
    long last = tc->stop_at > 0 && tc->stop_at < tc->steps ? tc->stop_at : tc->steps;
    int B = tc->batch, T = m->cfg.seq_len;
    int *inp = ml_malloc((size_t)B * T * sizeof(int)), *tgt = ml_malloc((size_t)B * T * sizeof(int));
    double t_start = ml_now(), tokens_done = 0;
    long first = r->st.step;
    int rc = 0;
    model_set_step(m, r->st.step, tc->steps);
    metrics_init(&r->mt, &m->cfg, 0, METRICS_CHEAP);
    guard_init(&r->guard, tc->bad_steps);
    while (r->st.step < last && rc == 0) {
        long s = r->st.step;
        float lr = lr_at((int)s, tc->steps, tc->warmup, tc->lr, tc->min_lr_frac), gn, rl[ROUTER_MAX_LOSSES];
        const char *rn[ROUTER_MAX_LOSSES];
        int n_rl;
        double t0 = ml_now();
        int logged = (s + 1) % tc->log_every == 0 || s + 1 == last;
        float loss = train_step(r, inp, tgt, lr, &gn, rl, rn, &n_rl, logged ? &r->mt : NULL);
        double dt = ml_now() - t0;
        r->st.step = s + 1;
        dist_reduce_pending(m); /* global router statistics, before after_step folds them in */
        model_after_step(m, r->st.step, tc->steps);
        double tok = (double)B * T * tc->grad_accum * r->dist.N;
        tokens_done += tok;
        if (r->st.step % tc->log_every == 0 || r->st.step == last) {
            fprintf(r->log, "{\"step\":%ld,\"loss\":%.6f,\"lr\":%.6e,\"grad_norm\":%.6f,\"tok_per_s\":%.1f", r->st.step, loss, lr, gn, tok / dt);
            for (int i = 0; i < n_rl; i++) fprintf(r->log, ",\"%s\":%.6f", rn[i], rl[i]);
            fprintf(r->log, ",\"router_share\":%.4f", r->mt.router_seconds / dt);
            if (r->dist.N > 1) fprintf(r->log, ",\"ranks\":%d,\"comm\":%.6f,\"comm_wait\":%.6f", r->dist.N, r->dist.comm, r->dist.wait);
            metrics_finish(&r->mt);
            metrics_json_step(r->log, &r->mt); /* load per expert and layer, load_cv, maxvio, entropies... */
            metrics_reset(&r->mt);
            fprintf(r->log, "}\n");
            fflush(r->log);
        }
        if (fflush(r->log) != 0 || ferror(r->log)) rc = ml_fail("%s/log.jsonl: write failed: %s", a->out_dir, strerror(errno));
        if (rc == 0) rc = guard_check(&r->guard);
        if (rc) break;
        double elapsed = ml_now() - t_start, rate = tokens_done / elapsed;
        if (!a->quiet) progress(r, r->st.step, last, loss, lr, rate, (last - r->st.step) * tok / rate);
        if (logged) rc = dist_check_params(&r->dist, m);
        if (rc == 0 && tc->eval_every > 0 && r->st.step % tc->eval_every == 0 && r->st.step != last) rc = run_eval(r, r->st.step, a->quiet);
        if (rc == 0 && tc->ckpt_every > 0 && r->st.step % tc->ckpt_every == 0 && r->st.step != last) rc = save(r, a->out_dir);
    }
    if (rc == 0 && r->st.step > first) rc = run_eval(r, r->st.step, a->quiet);
    if (rc == 0) rc = save(r, a->out_dir);
    if (rc == 0 && !a->quiet) fprintf(stderr, "saved %s/model.safetensors at step %ld\n", a->out_dir, r->st.step);
    free(inp);
    free(tgt);
    return rc;
}

/* After every rank's setup: all go on or all stop, with the same model, data and layout. */
static int train_dist_setup(Run *r, TrainArgs *a, int rc) {
    if (!dist_all_ok(rc == 0)) return rc ? rc : ml_fail("another process of this job failed to start (see its message)");
    if (dist_train_init(&r->dist, &r->model, a->expert_parallel, !a->no_overlap, r->tc.batch, r->model.cfg.seq_len)) return -1;
    char *cfg = config_to_json(&r->tc, 0);
    rc = dist_same_everywhere("the config", cfg, strlen(cfg));
    free(cfg);
    struct {
        uint64_t train, val;
        long step;
        Rng rng;
        int resume, ep, overlap;
    } same;
    memset(&same, 0, sizeof same); /* padding too: the bytes are hashed */
    same.train = dist_shard_hash(&r->train), same.val = dist_shard_hash(&r->val), same.step = r->st.step;
    same.rng = r->st.loader.rng, same.resume = a->resume, same.ep = a->expert_parallel, same.overlap = a->no_overlap;
    if (rc == 0) rc = dist_same_everywhere("the data or the checkpoint (--data, --resume, --expert-parallel)", &same, sizeof same);
    if (rc == 0) rc = dist_same_everywhere("--out", a->out_dir, strlen(a->out_dir));
    return rc;
}

int train_run(TrainArgs *a) {
    Run *r = ml_calloc(1, sizeof *r);
    r->lock = -1;
    set_threads(a->tc.threads);
    r->writer = dist_rank(DIST_WORLD) == 0;
    if (!r->writer) a->quiet = 1;
    int rc = train_dist_check_args(a);
    if (rc == 0) rc = train_dist_setup(r, a, setup(r, a));
    if (rc == 0) {
        set_threads(r->tc.threads);
        rc = gemm_set_precision_name(r->tc.precision);
        if (rc == 0) rc = loop(r, a);
    }
    teardown(r);
    char ckpt[4096];
    snprintf(ckpt, sizeof ckpt, "%s/model.safetensors", a->out_dir);
    runlock_end(a->out_dir, r->lock, rc != 0 && !a->resume && !ml_file_exists(ckpt), r->made_dir, r->created);
    free(r);
    return rc;
}
