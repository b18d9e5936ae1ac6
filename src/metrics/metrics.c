/* Routing metrics: the sums kept per MoE layer and the metrics made from them.
 * Every formula is in docs/metrics.md; the comments here say only why. */
#include "metrics/metrics.h"
#include "core/util.h"
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define F(name, full) {#name, offsetof(LayerMetrics, name), full}
const MetricField METRIC_FIELDS[] = {
    F(load_cv, 0),       F(maxvio, 0),    F(dead_frac, 0),        F(route_entropy, 0),
    F(usage_entropy, 0), F(drop_frac, 0), F(zero_expert_frac, 0), F(experts_per_token, 0),
    F(overlap, 1),       F(expert_sim, 1), F(domain_mi, 1),
    F(sel_differ, 1),    F(sel_mass, 1),  F(sel_mass_abs, 1),     F(sel_outside, 1),
};
#undef F
const int N_METRIC_FIELDS = sizeof METRIC_FIELDS / sizeof METRIC_FIELDS[0];

static void stats_alloc(LayerStats *s, int layer, int E, int n_domains, int full) {
    memset(s, 0, sizeof *s);
    s->layer = layer;
    s->E = E;
    s->n_domains = n_domains;
    s->load = ml_calloc(E, sizeof(double));
    s->ept = ml_calloc(E + 1, sizeof(long));
    if (!full) return;
    s->cooc = ml_calloc((size_t)E * E, sizeof(double));
    s->sel_top = ml_calloc(E, sizeof(float));
    if (n_domains > 0) {
        s->dom_w = ml_calloc((size_t)n_domains * E, sizeof(double));
        s->dom_load = ml_calloc((size_t)n_domains * E, sizeof(double));
        s->dom_tok = ml_calloc(n_domains, sizeof(double));
    }
}

static void stats_free(LayerStats *s) {
    void *bufs[] = {s->load, s->ept, s->cooc, s->dom_w, s->dom_load, s->dom_tok, s->sel_top};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    memset(s, 0, sizeof *s);
}

static void stats_reset(LayerStats *s) {
    int E = s->E, nd = s->n_domains;
    memset(s->load, 0, E * sizeof(double));
    memset(s->ept, 0, (E + 1) * sizeof(long));
    if (s->cooc) memset(s->cooc, 0, (size_t)E * E * sizeof(double));
    if (s->dom_w) {
        memset(s->dom_w, 0, (size_t)nd * E * sizeof(double));
        memset(s->dom_load, 0, (size_t)nd * E * sizeof(double));
        memset(s->dom_tok, 0, nd * sizeof(double));
    }
    s->tokens = s->pairs = s->short_slots = s->ent_tokens = s->sim_n = 0;
    s->ent_sum = s->sim_sum = 0.0;
    s->sel_tokens = s->sel_differ = s->sel_picks = s->sel_outside = 0;
    s->sel_mass_sum = s->sel_mass_abs_sum = 0.0;
}

void metrics_init(Metrics *mt, const ModelConfig *cfg, int n_domains, int full) {
    memset(mt, 0, sizeof *mt);
    mt->E = cfg->n_experts;
    mt->k = cfg->top_k;
    mt->n_domains = n_domains > 0 ? n_domains : 0;
    mt->full = full;
    mt->D = cfg->d_model;
    mt->probe_tokens = METRICS_PROBE_PER_BATCH;
    for (int l = 0; l < cfg->n_layers; l++) mt->n_moe += model_is_moe_layer(cfg, l);
    mt->st = ml_calloc(mt->n_moe ? mt->n_moe : 1, sizeof(LayerStats));
    mt->m = ml_calloc(mt->n_moe ? mt->n_moe : 1, sizeof(LayerMetrics));
    for (int l = 0, i = 0; l < cfg->n_layers; l++)
        if (model_is_moe_layer(cfg, l)) stats_alloc(&mt->st[i++], l, mt->E, mt->n_domains, full);
    metrics_reset(mt);
}

void metrics_free(Metrics *mt) {
    for (int i = 0; i < mt->n_moe; i++) stats_free(&mt->st[i]);
    free(mt->st);
    free(mt->m);
    free(mt->probe_x);
    free(mt->scratch);
    memset(mt, 0, sizeof *mt);
}

void metrics_reset(Metrics *mt) {
    for (int i = 0; i < mt->n_moe; i++) stats_reset(&mt->st[i]);
    mt->batches = 0;
    mt->probe_n = 0;
    mt->router_seconds = mt->seconds = 0.0;
    metrics_finish(mt); /* so an empty accumulator reads as all-undefined, not stale */
}

/* Entropy in nats of one probability row; float logs keep the per-step cost low. */
static double row_entropy(const float *p, int E) {
    double h = 0.0;
    for (int e = 0; e < E; e++)
        if (p[e] > 0.0f) h -= (double)(p[e] * logf(p[e]));
    return h;
}

/* How token t's chosen experts compare with the n experts of largest probability,
 * n = |S_t|. A pick is outside the top n when n experts have a strictly larger p,
 * so ties at the boundary never count as a difference. top[E] is scratch. */
static void add_selection(LayerStats *s, const float *p, const int *expert, const int *pairs, int a, int n, float *top) {
    int E = s->E, outside = 0;
    double mass = 0.0, top_mass = 0.0;
    for (int i = 0; i < n; i++) {
        float pc = p[expert[pairs ? pairs[i] : a + i]];
        int above = 0;
        for (int e = 0; e < E; e++) above += p[e] > pc;
        outside += above >= n;
        mass += pc;
    }
    int m = 0; /* the n largest values, descending, by insertion */
    for (int e = 0; e < E; e++) {
        int j = m < n ? m++ : n;
        while (j > 0 && p[e] > top[j - 1]) {
            if (j < n) top[j] = top[j - 1];
            j--;
        }
        if (j < n) top[j] = p[e];
    }
    for (int i = 0; i < n; i++) top_mass += top[i];
    s->sel_tokens++;
    s->sel_picks += n;
    s->sel_outside += outside;
    s->sel_differ += outside > 0;
    s->sel_mass_abs_sum += mass;
    s->sel_mass_sum += top_mass > 0.0 ? mass / top_mass : 1.0; /* all-zero p: nothing to miss */
}

void metrics_add_layer(LayerStats *s, int full, int k, int T, const int *tok_start, const int *tok_pairs,
                       const int *expert, const float *probs, const int32_t *domains) {
    int E = s->E;
    double inv_log_e = E > 1 ? 1.0 / log((double)E) : 0.0; /* E = 1: p is one-hot, entropy 0 */
    for (int t = 0; t < T; t++) {
        int d = domains ? domains[t] : -1;
        if (domains && d < 0) continue;
        int a = tok_start[t], n = tok_start[t + 1] - a;
        const int *pairs = tok_pairs ? tok_pairs + a : NULL;
#define EXPERT(i) expert[pairs ? pairs[i] : a + (i)]
        s->tokens++;
        s->pairs += n;
        s->ept[n < E ? n : E]++;
        if (n < k) s->short_slots += k - n;
        for (int i = 0; i < n; i++) s->load[EXPERT(i)] += 1.0;
        if (probs) {
            s->ent_sum += row_entropy(probs + (size_t)t * E, E) * inv_log_e;
            s->ent_tokens++;
        }
        if (!full) continue;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) s->cooc[(size_t)EXPERT(i) * E + EXPERT(j)] += 1.0;
        if (probs && n > 0) add_selection(s, probs + (size_t)t * E, expert, pairs, a, n, s->sel_top);
        if (s->dom_w && d < s->n_domains) {
            s->dom_tok[d] += 1.0;
            for (int i = 0; i < n; i++) {
                s->dom_w[(size_t)d * E + EXPERT(i)] += 1.0 / n;
                s->dom_load[(size_t)d * E + EXPERT(i)] += 1.0;
            }
        }
#undef EXPERT
    }
}

void metrics_add(Metrics *mt, const Model *m, const int32_t *domains) {
    for (int l = 0, i = 0; l < m->cfg.n_layers; l++) {
        if (!model_is_moe_layer(&m->cfg, l)) continue;
        const MoEActs *a = &m->acts.moe[l];
        metrics_add_layer(&mt->st[i++], mt->full, mt->k, a->T, a->tok_start, a->tok_pairs, a->rt.expert,
                          m->routers[l].probs, domains);
    }
    mt->batches++;
}

/* Co-selection lift: each ordered pair's cooc over its independent expectation
 * kappa q_i q_j, averaged with weight cooc (so over co-selection events). kappa makes
 * the independent model select as many pairs per token as the data does. */
static double overlap(const LayerStats *s) {
    int E = s->E;
    if (!s->cooc || s->tokens == 0) return NAN;
    double N = (double)s->tokens, sc = 0.0, sq = 0.0, num = 0.0;
    for (int i = 0; i < E; i++)
        for (int j = 0; j < E; j++)
            if (i != j) {
                sc += s->cooc[(size_t)i * E + j] / N;
                sq += (s->cooc[(size_t)i * E + i] / N) * (s->cooc[(size_t)j * E + j] / N);
            }
    if (sc <= 0.0 || sq <= 0.0) return NAN; /* no token selected two experts */
    double kappa = sc / sq;
    for (int i = 0; i < E; i++)
        for (int j = 0; j < E; j++) {
            double c = s->cooc[(size_t)i * E + j] / N;
            if (i == j || c <= 0.0) continue;
            double qi = s->cooc[(size_t)i * E + i] / N, qj = s->cooc[(size_t)j * E + j] / N;
            num += c * c / (kappa * qi * qj);
        }
    return num / sc;
}

/* I(domain; expert) / H(domain) of the joint in which each token spreads weight 1
 * evenly over its selected experts. */
static double domain_mi(const LayerStats *s) {
    int E = s->E, nd = s->n_domains;
    if (!s->dom_w || nd == 0) return NAN;
    double W = 0.0;
    for (size_t i = 0; i < (size_t)nd * E; i++) W += s->dom_w[i];
    if (W <= 0.0) return NAN;
    double *pd = ml_calloc(nd, sizeof(double)), *pe = ml_calloc(E, sizeof(double)), h = 0.0, mi = 0.0;
    for (int d = 0; d < nd; d++)
        for (int e = 0; e < E; e++) {
            double j = s->dom_w[(size_t)d * E + e] / W;
            pd[d] += j;
            pe[e] += j;
        }
    for (int d = 0; d < nd; d++)
        if (pd[d] > 0.0) h -= pd[d] * log(pd[d]);
    for (int d = 0; d < nd; d++)
        for (int e = 0; e < E; e++) {
            double j = s->dom_w[(size_t)d * E + e] / W;
            if (j > 0.0) mi += j * log(j / (pd[d] * pe[e]));
        }
    free(pd);
    free(pe);
    if (h < 1e-12) return NAN; /* one domain: nothing to be informative about */
    double r = mi / h;
    return r < 0.0 ? 0.0 : r > 1.0 ? 1.0 : r; /* clamp rounding only */
}

static void finish_layer(const LayerStats *s, int k, LayerMetrics *o) {
    int E = s->E;
    for (int i = 0; i < N_METRIC_FIELDS; i++) *(double *)((char *)o + METRIC_FIELDS[i].offset) = NAN;
    o->layer = s->layer;
    if (s->sim_n) o->expert_sim = s->sim_sum / s->sim_n; /* the probe counts its own tokens */
    if (s->tokens == 0) return;
    double sum = 0.0, mx = 0.0, var = 0.0, h = 0.0;
    int dead = 0;
    for (int e = 0; e < E; e++) {
        sum += s->load[e];
        mx = fmax(mx, s->load[e]);
        dead += s->load[e] == 0.0;
    }
    double mean = sum / E;
    for (int e = 0; e < E; e++) var += (s->load[e] - mean) * (s->load[e] - mean);
    for (int e = 0; e < E; e++)
        if (s->load[e] > 0.0) h -= s->load[e] / sum * log(s->load[e] / sum);
    o->dead_frac = (double)dead / E;
    if (sum > 0.0) {
        o->load_cv = sqrt(var / E) / mean;
        o->maxvio = (mx - mean) / mean;
        o->usage_entropy = E > 1 ? h / log((double)E) : 1.0; /* one expert's load is uniform */
    }
    if (s->ent_tokens) o->route_entropy = s->ent_sum / s->ent_tokens;
    if (k > 0) o->drop_frac = (double)s->short_slots / ((double)s->tokens * k);
    o->zero_expert_frac = (double)s->ept[0] / s->tokens;
    o->experts_per_token = (double)s->pairs / s->tokens;
    o->overlap = overlap(s);
    o->domain_mi = domain_mi(s);
    if (s->sel_tokens) {
        o->sel_differ = (double)s->sel_differ / s->sel_tokens;
        o->sel_mass = s->sel_mass_sum / s->sel_tokens;
        o->sel_mass_abs = s->sel_mass_abs_sum / s->sel_tokens;
        o->sel_outside = (double)s->sel_outside / s->sel_picks;
    }
}

void metrics_finish(Metrics *mt) {
    for (int i = 0; i < mt->n_moe; i++) finish_layer(&mt->st[i], mt->k, &mt->m[i]);
    /* Layer means skip undefined values, so one layer without data does not hide the rest. */
    mt->mean.layer = -1;
    for (int f = 0; f < N_METRIC_FIELDS; f++) {
        double sum = 0.0;
        int n = 0;
        for (int i = 0; i < mt->n_moe; i++) {
            double v = metric_value(&mt->m[i], f);
            if (isfinite(v)) sum += v, n++;
        }
        *(double *)((char *)&mt->mean + METRIC_FIELDS[f].offset) = n ? sum / n : NAN;
    }
}
