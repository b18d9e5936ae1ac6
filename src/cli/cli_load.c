/* Loading shared by the commands that run a checkpoint over a data split. */
#include "cli/commands.h"
#include "core/util.h"
#include "io/checkpoint.h"
#include <stdio.h>
#include <string.h>

int cli_load_model_and_split(const char *ckpt, const char *data, const char *split, Model *m, TrainConfig *tc, Shard *s) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s.bin", data, split) >= (int)sizeof path) return ml_fail("path too long: %s", data);
    if (checkpoint_load_model(ckpt, m, tc)) return -1;
    if (shard_load(s, path)) return -1;
    if (s->vocab_size != m->cfg.vocab_size)
        return ml_fail("%s has vocab %d but the model has %d", path, s->vocab_size, m->cfg.vocab_size);
    return 0;
}

int cli_router_opts(Model *m, const char *opts) {
    if (strlen(opts) >= sizeof m->cfg.router_opts) return ml_fail("--router-opts is too long");
    snprintf(m->cfg.router_opts, sizeof m->cfg.router_opts, "%s", opts);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        RouterLayer *r = &m->routers[l];
        if (!r->spec) continue;
        if (r->spec->free) r->spec->free(r);
        if (r->spec->init(r)) return -1;
    }
    return 0;
}
