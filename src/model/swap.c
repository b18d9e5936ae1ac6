/* Running a trained model under another router (training-free routing, e.g. USMoE on
 * a topk checkpoint): the parameters stay, the routers are rebuilt. */
#include "core/util.h"
#include "model/model.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int model_switch_router(Model *m, const char *name, const char *opts) {
    const RouterSpec *spec = router_find(name);
    if (!spec) return ml_fail("unknown router '%s'", name);
    ModelConfig cfg = m->cfg;
    snprintf(cfg.router, sizeof cfg.router, "%s", name);
    if (snprintf(cfg.router_opts, sizeof cfg.router_opts, "%s", opts ? opts : "") >= (int)sizeof cfg.router_opts)
        return ml_fail("--router-opts is too long");
    int rows = spec->param_rows(&cfg);
    if (rows != 0 && rows != m->router_rows)
        return ml_fail("router %s needs %d router weight rows, the checkpoint has %d", name, rows, m->router_rows);
    int L = cfg.n_layers, per_layer = spec->state_len(&cfg);
    RouterLayer *routers = ml_calloc(L, sizeof *routers);
    double *state = ml_calloc(per_layer ? (size_t)per_layer * L : 1, sizeof(double));
    /* The new routers point at m->cfg, so it takes the new values first; restored on failure. */
    ModelConfig old = m->cfg;
    m->cfg = cfg;
    for (int l = 0; l < L; l++) {
        if (!m->routers[l].spec) continue;
        RouterLayer *r = &routers[l];
        *r = (RouterLayer){.spec = spec, .cfg = &m->cfg, .layer = l, .E = cfg.n_experts, .k = cfg.top_k,
                           .D = cfg.d_model, .state = state + (size_t)per_layer * l, .state_len = per_layer};
        if (spec->init(r) == 0) continue;
        for (int j = 0; j < l; j++)
            if (routers[j].spec) spec->free(&routers[j]);
        free(routers);
        free(state);
        m->cfg = old;
        return -1;
    }
    for (int l = 0; l < L; l++)
        if (m->routers[l].spec && m->routers[l].spec->free) m->routers[l].spec->free(&m->routers[l]);
    free(m->routers);
    free(m->router_state);
    m->routers = routers;
    m->router_state = state;
    m->router_state_len = (size_t)per_layer * L;
    m->router = spec;
    return 0;
}
