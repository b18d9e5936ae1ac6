/* auxfree (DeepSeek-V3's auxiliary-loss-free balancing): top-k on score + a per-expert
 * bias; gates use the unbiased score (renormalised over the chosen experts when
 * cfg->renorm). After each optimizer step bias += rate * sign(mean load - load), with
 * the loads of every micro-batch (and process) of the step summed in `pending`. The
 * bias lives in the router state, so checkpoints carry it. No aux or z-loss. */
#include "routers/topk.h"

static const RouterOption AUXFREE_TABLE[] = {TOPK_OPTIONS(1), EXTRA_OPTIONS(TopkOpts, ex, 0, 0, 1e-3, 0), {0}};

static int auxfree_state_len(const ModelConfig *m) { return topk_state_len_for(m, "auxfree", AUXFREE_TABLE); }
static int auxfree_init(RouterLayer *r) { return topk_setup(r, "auxfree", AUXFREE_TABLE, 0); }

const RouterSpec router_auxfree = {
    .name = "auxfree",
    .summary = "top-k on sigmoid score + per-expert bias updated by the sign of the load error; no aux loss (DeepSeek-V3)",
    .options = AUXFREE_TABLE,
    .state_len = auxfree_state_len,
    .init = auxfree_init,
    TOPK_FAMILY_HOOKS,
};
