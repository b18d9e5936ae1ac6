/* Routing metrics of the MoE layers, with the names and definitions of DESIGN §4
 * (docs/metrics.md has every formula and the JSON they are written as).
 *
 * A Metrics accumulator holds plain sums per MoE layer, so it can cover one
 * training step or a whole split: metrics_reset, then metrics_add (and
 * metrics_probe) after each forward, then metrics_finish turns the sums into
 * metrics. Cheap accumulators (every logged training step) keep the load,
 * router entropy and experts-per-token counts; full ones (evaluation, analyze)
 * add co-occurrence, domain x expert counts and the expert_sim probe. */
#ifndef MOELAB_METRICS_H
#define MOELAB_METRICS_H
#include "data/shard.h"
#include "model/model.h"
#include <stdint.h>
#include <stdio.h>

enum { METRICS_CHEAP = 0, METRICS_FULL = 1 };
#define METRICS_PROBE_PER_BATCH 32 /* expert_sim probe tokens taken from each batch */
#define METRICS_PROBE_RUN 256      /* buffered probe tokens per expert run (bigger GEMMs) */

/* Sums for one MoE layer over every token added so far. */
typedef struct {
    int layer, E, n_domains;
    long tokens;        /* tokens counted (tokens with domain < 0 are skipped) */
    long pairs;         /* (token, expert) pairs among them */
    double *load;       /* [E] tokens routed to expert e */
    long *ept;          /* [E+1] tokens with n routed experts, n = 0..E */
    long short_slots;   /* sum over tokens of max(0, k - n_t) */
    double ent_sum;     /* sum over tokens of H(p_t)/log E */
    long ent_tokens;    /* tokens that had router probabilities */
    /* full accumulators only */
    double *cooc;       /* [E*E] tokens that selected both i and j; diagonal: tokens that selected i */
    double *dom_w;      /* [n_domains*E] sum over pairs of 1/n_t (for domain_mi) */
    double *dom_load;   /* [n_domains*E] pairs (the specialisation map) */
    double *dom_tok;    /* [n_domains] tokens */
    double sim_sum;     /* sum of cosines over (probe token, expert pair) */
    long sim_n;
    /* selection against the router's own top-n_t (full accumulators, tokens with probs and n_t > 0) */
    long sel_tokens, sel_differ, sel_picks, sel_outside;
    double sel_mass_sum, sel_mass_abs_sum;
    float *sel_top;     /* [E] scratch: a token's largest probabilities */
} LayerStats;

/* One layer's metrics; NaN where undefined (written as JSON null). */
typedef struct {
    int layer;
    double load_cv, maxvio, dead_frac, route_entropy, usage_entropy;
    double drop_frac, zero_expert_frac, experts_per_token;
    double overlap, expert_sim, domain_mi; /* full accumulators only */
    double sel_differ, sel_mass, sel_mass_abs, sel_outside; /* full only: chosen set vs top-n_t by p */
} LayerMetrics;

/* The scalar metrics by name: which LayerMetrics member, and whether it needs a
 * full accumulator. Shared by the JSON writers, the tests and the report. */
typedef struct {
    const char *name;
    size_t offset; /* of a double in LayerMetrics */
    int full;
} MetricField;
extern const MetricField METRIC_FIELDS[];
extern const int N_METRIC_FIELDS;
static inline double metric_value(const LayerMetrics *m, int i) {
    return *(const double *)((const char *)m + METRIC_FIELDS[i].offset);
}

typedef struct {
    int n_moe, E, k, D, n_domains, full;
    int probe_tokens;    /* expert_sim probe tokens taken from each batch (0: no probe) */
    LayerStats *st;      /* [n_moe], in block order */
    LayerMetrics *m;     /* [n_moe], set by metrics_finish */
    LayerMetrics mean;   /* mean over MoE layers of each defined value (layer = -1) */
    long batches;
    double router_seconds, seconds; /* forward time and its router part, when timed */
    int probe_n;         /* probe rows buffered, not yet run through the experts */
    float *probe_x;      /* [n_moe, METRICS_PROBE_RUN, D] their MoE inputs */
    float *scratch;      /* expert run buffers */
    size_t scratch_cap;
} Metrics;

/* n_domains: domain ids are 0..n_domains-1 (0: no domain statistics). */
void metrics_init(Metrics *mt, const ModelConfig *cfg, int n_domains, int full);
void metrics_free(Metrics *mt);
void metrics_reset(Metrics *mt);

/* Adds one layer's routing of T tokens. Token t's experts are expert[q] for q in
 * tok_start[t] .. tok_start[t+1]-1, or expert[tok_pairs[q]] when tok_pairs is given
 * (MoEActs' CSR). probs [T, E] or NULL; domains [T] or NULL (a token with domain < 0,
 * e.g. padding, is skipped). k is the nominal experts per token (for drop_frac). */
void metrics_add_layer(LayerStats *s, int full, int k, int T, const int *tok_start, const int *tok_pairs,
                       const int *expert, const float *probs, const int32_t *domains);
/* Adds the routing of the model's last forward, every MoE layer. */
void metrics_add(Metrics *mt, const Model *m, const int32_t *domains);
/* Adds cosine similarities for expert_sim: y[E, n, D] are every expert's outputs on
 * the same n tokens. Pairs of outputs with a zero norm are skipped. */
void metrics_add_sim(LayerStats *s, const float *y, int n, int D);
/* Takes up to probe_tokens tokens of the last forward (evenly spaced, skipping
 * domain < 0) as probe tokens. Their MoE inputs are buffered; every METRICS_PROBE_RUN
 * of them, every expert of every MoE layer runs on them and their similarities are
 * added. metrics_probe_flush runs what is left: call it before metrics_finish and
 * before the weights change (metrics_collect does). */
void metrics_probe(Metrics *mt, const Model *m, const int32_t *domains);
void metrics_probe_flush(Metrics *mt, const Model *m);
void metrics_finish(Metrics *mt);

/* The evaluation hook (EvalBatchFn, ctx = Metrics*): adds one batch's routing and probes.
 * After the last batch, metrics_eval_done flushes the probe and finishes the sums. */
void metrics_eval_batch(void *ctx, Model *m, const int *targets, const int *domains, double forward_seconds);
void metrics_eval_done(Metrics *mt, const Model *m);
/* The whole loop over a split: up to max_batches (0: all) consecutive batches of
 * B x T from s, forward with `mode`, metrics_add and, when full, metrics_probe.
 * Resets mt first and finishes it. Returns -1 (ml_fail) on an empty split. */
int metrics_collect(Metrics *mt, Model *m, const Shard *s, int B, int T, long max_batches, RouteMode mode);

/* JSON. Each writes fields that continue an open object: ,"key":value... */
void metrics_json_step(FILE *f, const Metrics *mt); /* the cheap metrics, for a training-step line */
void metrics_json_eval(FILE *f, const Metrics *mt); /* the expensive ones, for an evaluation line */
/* Everything, for `moelab analyze`; domain names may be NULL. */
void metrics_json_full(FILE *f, const Metrics *mt, const char (*domains)[SHARD_NAME_LEN]);
void metrics_json_string(FILE *f, const char *s);  /* a quoted, escaped JSON string */

#endif
