/* Loading shared by the commands that run a checkpoint over a data split. */
#include "cli/commands.h"
#include "core/util.h"
#include "io/checkpoint.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_load_model_and_split(const char *ckpt, const char *data, const char *split, Model *m, TrainConfig *tc, Shard *s) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s.bin", data, split) >= (int)sizeof path) return ml_fail("path too long: %s", data);
    if (checkpoint_load_model(ckpt, m, tc)) return -1;
    cli_warn_nonfinite(ckpt, m);
    if (shard_load(s, path)) return -1;
    if (s->vocab_size != m->cfg.vocab_size)
        return ml_fail("%s has vocab %d but the model has %d", path, s->vocab_size, m->cfg.vocab_size);
    /* Bits per byte use meta.json's token lengths: they must describe these shards. */
    DataMeta meta;
    if (data_meta_load(&meta, data)) return -1;
    int vocab = meta.vocab_size;
    data_meta_free(&meta);
    if (vocab != s->vocab_size)
        return ml_fail("%s: meta.json has vocab %d but %s has %d: the folder mixes two prepared data sets", data, vocab,
                       path, s->vocab_size);
    return 0;
}

void cli_warn_nonfinite(const char *ckpt, const Model *m) {
    size_t bad = checkpoint_nonfinite(m);
    if (bad)
        fprintf(stderr, "moelab: warning: %s holds %zu non-finite parameter values (NaN or Inf): the run diverged, "
                        "and what this model computes is meaningless\n", ckpt, bad);
}

int cli_router_opts(Model *m, const char *opts) {
    if (strlen(opts) >= sizeof m->cfg.router_opts) return ml_fail("--router-opts is too long");
    snprintf(m->cfg.router_opts, sizeof m->cfg.router_opts, "%s", opts);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        RouterLayer *r = &m->routers[l];
        if (!r->spec) continue;
        /* init resets the state (mpmoe: Sigma = I): keep what the checkpoint holds. */
        double *saved = ml_malloc((r->state_len ? r->state_len : 1) * sizeof(double));
        memcpy(saved, r->state, r->state_len * sizeof(double));
        if (r->spec->free) r->spec->free(r);
        int rc = r->spec->init(r);
        memcpy(r->state, saved, r->state_len * sizeof(double));
        free(saved);
        if (rc) return -1;
    }
    return 0;
}
