#include "train/dist_train.h"
#include "train/trainer.h"
#include "core/util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash_bytes(uint64_t h, const void *data, size_t len) {
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* Word-wise, for parameter buffers: fast enough to run every few steps. */
static uint64_t hash_words(uint64_t h, const uint32_t *w, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ w[i]) * 0x100000001b3ull + (h >> 29);
    return h;
}

int dist_same_everywhere(const char *what, const void *data, size_t len) {
    uint64_t h = hash_bytes(0xcbf29ce484222325ull, data, len), lo, hi;
    dist_minmax_u64(h, &lo, &hi, DIST_WORLD);
    if (lo != hi) return ml_fail("the processes of this job disagree on %s: every rank must be given the same", what);
    return 0;
}

uint64_t dist_shard_hash(const Shard *s) {
    int64_t head[3] = {s->n_tokens, s->n_docs, s->vocab_size};
    uint64_t h = hash_bytes(0xcbf29ce484222325ull, head, sizeof head);
    int64_t step = s->n_tokens > (1 << 24) ? s->n_tokens / (1 << 24) : 1;
    for (int64_t i = 0; i < s->n_tokens; i += step) h = (h ^ s->tokens[i]) * 0x100000001b3ull;
    return h;
}

static size_t offset_of(const ParamTable *t, const char *fmt, int l) {
    char name[MAX_PARAM_NAME];
    snprintf(name, sizeof name, fmt, l);
    const ParamInfo *p = params_find(t, name);
    return p ? p->offset : (size_t)-1;
}

static void add_range(DistTrain *d, int *cap, size_t off, size_t n, DistGroup g) {
    if (n == 0) return;
    if (d->n_ranges == *cap) {
        *cap *= 2;
        d->ranges = ml_realloc(d->ranges, *cap * sizeof *d->ranges);
    }
    d->ranges[d->n_ranges++] = (DistRange){off, n, g};
}

/* Block l: everything is replicated except, under EP, the experts this rank does not own;
 * its own experts are reduced over its DP group. */
static void block_ranges(DistTrain *d, int *cap, const Model *m, int l) {
    const ParamTable *t = &m->table;
    size_t start = offset_of(t, "layers.%d.attn_norm.weight", l);
    size_t end = l + 1 < m->cfg.n_layers ? offset_of(t, "layers.%d.attn_norm.weight", l + 1) : offset_of(t, "norm.weight", 0);
    if (d->P == 1 || !model_is_moe_layer(&m->cfg, l)) {
        add_range(d, cap, start, end - start, DIST_WORLD);
        return;
    }
    const char *names[2] = {"layers.%d.moe.experts.gate_up.weight", "layers.%d.moe.experts.down.weight"};
    size_t at = start, per_rank_experts = m->cfg.n_experts / d->P;
    int q = dist_rank(DIST_EP);
    for (int i = 0; i < 2; i++) {
        char name[MAX_PARAM_NAME];
        snprintf(name, sizeof name, names[i], l);
        const ParamInfo *p = params_find(t, name);
        size_t off = p->offset, sz = p->size, per = sz / m->cfg.n_experts * per_rank_experts;
        add_range(d, cap, at, off - at, DIST_WORLD);
        add_range(d, cap, off + q * per, per, DIST_DP);
        at = off + sz;
    }
    add_range(d, cap, at, end - at, DIST_WORLD);
}

int dist_train_init(DistTrain *d, Model *m, int expert_parallel, int overlap, int B, int T) {
    memset(d, 0, sizeof *d);
    d->N = dist_size(DIST_WORLD);
    d->rank = dist_rank(DIST_WORLD);
    d->P = expert_parallel > 0 ? expert_parallel : 1;
    d->overlap = overlap;
    if (dist_set_expert_parallel(d->P)) return -1;
    if (d->P > 1 && m->cfg.n_experts % d->P)
        return ml_fail("--expert-parallel %d must divide the number of experts (%d)", d->P, m->cfg.n_experts);
    int L = m->cfg.n_layers, cap = 16;
    d->ranges = ml_malloc(cap * sizeof *d->ranges);
    d->part_first = ml_calloc(L + 3, sizeof(int));
    /* Part 0 is the embedding (final last: the input lookup is the backward's last step),
     * parts 1..L the blocks, part L+1 the final norm and the untied head (final first). */
    d->n_parts = L + 2;
    add_range(d, &cap, 0, (size_t)m->cfg.vocab_size * m->cfg.d_model, DIST_WORLD);
    for (int l = 0; l < L; l++) {
        d->part_first[l + 1] = d->n_ranges;
        block_ranges(d, &cap, m, l);
    }
    d->part_first[L + 1] = d->n_ranges;
    size_t norm = offset_of(&m->table, "norm.weight", 0);
    add_range(d, &cap, norm, m->table.total - norm, DIST_WORLD);
    d->part_first[L + 2] = d->n_ranges;
    d->m = m;
    d->scratch = ml_malloc((size_t)2 * B * T * sizeof(int));
    return 0;
}

void dist_train_free(DistTrain *d) {
    free(d->ranges);
    free(d->part_first);
    free(d->scratch);
    memset(d, 0, sizeof *d);
}

void dist_next_batch(DistTrain *d, Loader *l, int *inp, int *tgt, int micro, int accum) {
    int *si = d->scratch, *st = d->scratch + (size_t)l->B * l->T;
    if (micro == 0) d->comm0 = dist_comm_seconds();
    if (micro == 0)
        for (int i = 0; i < d->rank * accum; i++) loader_next(l, si, st);
    loader_next(l, inp, tgt);
    if (micro == accum - 1)
        for (int i = 0; i < (d->N - 1 - d->rank) * accum; i++) loader_next(l, si, st);
}

static void reduce_part(DistTrain *d, float *grads, int p) {
    for (int i = d->part_first[p]; i < d->part_first[p + 1]; i++)
        dist_isum_float(grads + d->ranges[i].off, d->ranges[i].n, d->ranges[i].g);
}

/* The model's backward hook: part -1 embed, 0..L-1 blocks, L head. */
static void grads_ready(void *ctx, int part) {
    DistTrain *d = ctx;
    reduce_part(d, d->m->grads, part + 1);
    dist_progress(); /* MPI moves non-blocking collectives only inside its calls */
}

void dist_before_backward(DistTrain *d, Model *m, int last_micro) {
    int on = d->N > 1 && d->overlap && last_micro;
    m->grads_ready = on ? grads_ready : NULL;
    m->grads_ready_ctx = d;
}

void dist_after_backward(DistTrain *d, Model *m) {
    m->grads_ready = NULL;
    if (d->N == 1) return;
    if (!d->overlap)
        for (int p = d->n_parts - 1; p >= 0; p--) reduce_part(d, m->grads, p);
    d->wait = dist_wait_all();
    d->wait_sum += d->wait;
    d->steps++;
    float inv = 1.0f / d->N;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < m->table.total; i++) m->grads[i] *= inv;
}

static double sumsq(const float *x, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

float dist_clip_grad_norm(DistTrain *d, Model *m, float clip) {
    if (d->P == 1) return clip_grad_norm(m->grads, m->table.total, clip);
    /* Replicated parts are the same on every rank; each rank adds the experts it owns. */
    double shared = 0.0, own = 0.0;
    for (int i = 0; i < d->n_ranges; i++) {
        double s = sumsq(m->grads + d->ranges[i].off, d->ranges[i].n);
        if (d->ranges[i].g == DIST_WORLD) shared += s;
        else own += s;
    }
    dist_sum_double(&own, 1, DIST_EP);
    float norm = (float)sqrt(shared + own);
    if (clip > 0.0f && norm > clip) {
        float c = clip / (norm + 1e-6f);
        for (size_t i = 0; i < m->table.total; i++) m->grads[i] *= c;
    }
    return norm;
}

/* A metrics accumulator's sums, packed into doubles (dir 0) or unpacked (dir 1). */
static size_t pack_stats(Metrics *mt, double *buf, int dir) {
    size_t n = 0;
#define FIELD(x, T)                                                                                                    \
    do {                                                                                                               \
        if (buf && dir == 0) buf[n] = (double)(x);                                                                     \
        if (buf && dir == 1) (x) = (T)buf[n];                                                                          \
        n++;                                                                                                           \
    } while (0)
#define ARRAY(p, len, T)                                                                                               \
    do {                                                                                                               \
        if (p)                                                                                                         \
            for (size_t j = 0; j < (size_t)(len); j++) FIELD((p)[j], T);                                               \
    } while (0)
    for (int i = 0; i < mt->n_moe; i++) {
        LayerStats *s = &mt->st[i];
        int E = s->E, nd = s->n_domains;
        FIELD(s->tokens, long);
        FIELD(s->pairs, long);
        FIELD(s->short_slots, long);
        FIELD(s->ent_tokens, long);
        FIELD(s->sim_n, long);
        FIELD(s->ent_sum, double);
        FIELD(s->sim_sum, double);
        ARRAY(s->load, E, double);
        ARRAY(s->ept, E + 1, long);
        ARRAY(s->cooc, (size_t)E * E, double);
        ARRAY(s->dom_w, (size_t)nd * E, double);
        ARRAY(s->dom_load, (size_t)nd * E, double);
        ARRAY(s->dom_tok, nd, double);
    }
    FIELD(mt->batches, long);
    FIELD(mt->router_seconds, double);
    FIELD(mt->seconds, double);
#undef FIELD
#undef ARRAY
    return n;
}

void dist_reduce_metrics(Metrics *mt) {
    int N = dist_size(DIST_WORLD);
    if (N == 1 || !mt) return;
    size_t n = pack_stats(mt, NULL, 0);
    double *buf = ml_malloc(n * sizeof(double));
    pack_stats(mt, buf, 0);
    dist_sum_double(buf, n, DIST_WORLD);
    buf[n - 2] /= N; /* times: a rank's mean, like a one-process step's */
    buf[n - 1] /= N;
    pack_stats(mt, buf, 1);
    free(buf);
}

void dist_reduce_step(DistTrain *d, float *loss, float *rl, int n, Metrics *mt) {
    if (d->N == 1) return;
    double v[1 + ROUTER_MAX_LOSSES];
    v[0] = *loss;
    for (int i = 0; i < n; i++) v[1 + i] = rl[i];
    dist_sum_double(v, 1 + n, DIST_WORLD);
    *loss = (float)(v[0] / d->N);
    for (int i = 0; i < n; i++) rl[i] = (float)(v[1 + i] / d->N);
    dist_reduce_metrics(mt);
    d->comm = dist_comm_seconds() - d->comm0;
}

void dist_reduce_pending(Model *m) {
    for (int l = 0; l < m->cfg.n_layers; l++) {
        RouterLayer *r = &m->routers[l];
        if (r->spec && r->pending && r->pending_len > 0) dist_sum_double(r->pending, r->pending_len, DIST_WORLD);
    }
}

void dist_reduce_eval(EvalResult *ev, Metrics *mt) {
    if (dist_size(DIST_WORLD) == 1) return;
    int nd = ev->n_domains;
    /* Back to sums (nats, bytes, tokens), summed, then to means again. */
    size_t n = 3 + 3 * (size_t)nd;
    double *v = ml_malloc(n * sizeof(double));
    v[0] = ev->loss * ev->tokens, v[1] = ev->bytes, v[2] = ev->tokens;
    for (int i = 0; i < nd; i++) {
        EvalDomain *e = &ev->domains[i];
        v[3 + 3 * i] = e->loss * e->tokens, v[4 + 3 * i] = e->bytes, v[5 + 3 * i] = e->tokens;
    }
    dist_sum_double(v, n, DIST_WORLD);
    ev->tokens = (long)v[2], ev->bytes = v[1];
    ev->loss = ev->tokens ? v[0] / ev->tokens : 0.0;
    ev->bpb = ev->bytes > 0 ? v[0] / (log(2.0) * ev->bytes) : 0.0;
    for (int i = 0; i < nd; i++) {
        EvalDomain *e = &ev->domains[i];
        double nats = v[3 + 3 * i];
        e->bytes = v[4 + 3 * i], e->tokens = (long)v[5 + 3 * i];
        e->loss = e->tokens ? nats / e->tokens : 0.0;
        e->bpb = e->bytes > 0 ? nats / (log(2.0) * e->bytes) : 0.0;
    }
    free(v);
    dist_reduce_metrics(mt);
}

void dist_gather_experts(DistTrain *d, Model *m, AdamW *opt) {
    if (d->P == 1) return;
    float *bufs[3] = {m->params, opt ? opt->m : NULL, opt ? opt->v : NULL};
    for (int l = 0; l < m->cfg.n_layers; l++) {
        if (!model_is_moe_layer(&m->cfg, l)) continue;
        const char *names[2] = {"layers.%d.moe.experts.gate_up.weight", "layers.%d.moe.experts.down.weight"};
        for (int i = 0; i < 2; i++) {
            char name[MAX_PARAM_NAME];
            snprintf(name, sizeof name, names[i], l);
            const ParamInfo *p = params_find(&m->table, name);
            for (int b = 0; b < 3; b++)
                if (bufs[b]) dist_allgather_float(bufs[b] + p->offset, p->size / d->P, DIST_EP);
        }
    }
}

int dist_check_params(DistTrain *d, const Model *m) {
    if (d->N == 1) return 0;
    uint64_t h[2] = {0xcbf29ce484222325ull, 0xcbf29ce484222325ull}, lo, hi;
    for (int i = 0; i < d->n_ranges; i++)
        h[d->ranges[i].g == DIST_DP] = hash_words(h[d->ranges[i].g == DIST_DP], (const uint32_t *)(m->params + d->ranges[i].off), d->ranges[i].n);
    h[0] = hash_bytes(h[0], m->router_state, m->router_state_len * sizeof(double));
    int bad = 0;
    dist_minmax_u64(h[0], &lo, &hi, DIST_WORLD);
    bad |= lo != hi;
    dist_minmax_u64(h[1], &lo, &hi, DIST_DP);
    bad = !dist_all_ok(!(bad | (lo != hi)));
    if (bad) return ml_fail("the parameters or router state differ between processes after step %ld: the ranks no longer train one model", m->routers[0].step);
    return 0;
}

int train_dist_check_args(const TrainArgs *a) {
    int P = a->expert_parallel > 0 ? a->expert_parallel : 1, N = dist_size(DIST_WORLD);
    if (P > 1 && N == 1)
        return ml_fail("--expert-parallel %d splits the experts over processes: run under mpirun -np N (N a multiple of %d)", P, P);
    if (N % P) return ml_fail("--expert-parallel %d must divide the number of processes (%d)", P, N);
    if (!a->resume && a->tc.model.n_experts % P)
        return ml_fail("--expert-parallel %d must divide the number of experts (%d)", P, a->tc.model.n_experts);
    return 0;
}

int train_dist_flag(TrainArgs *a, const char *f, const char *v, int *used) {
    *used = 0;
    if (strcmp(f, "--no-overlap") == 0) {
        a->no_overlap = 1;
        return 1;
    }
    if (strcmp(f, "--expert-parallel") != 0) return 0;
    char *end;
    long p = v ? strtol(v, &end, 10) : 0;
    if (!v || *end || p < 1 || p > 1 << 20) return ml_fail("--expert-parallel needs a number of processes >= 1");
    a->expert_parallel = (int)p;
    *used = 1;
    return 1;
}
