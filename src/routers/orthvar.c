/* orthvar (Guo et al., "Advancing Expert Specialization for Better MoE", 2025): top-k
 * routing plus an orthogonality loss on the outputs of each token's co-selected experts
 * (gradient into the expert outputs) and a variance loss on the router scores (gradient
 * into the router logits), on top of the Switch aux and z losses. Both multipliers are
 * calibrated on the first optimizer step to bring each loss to its target magnitude,
 * then frozen and saved in the router state (extras.c). The defaults are for training
 * from scratch (unit outputs, variance target 1e-4); the paper's targets, made for a
 * pretrained router, are var=1e-3,ortho_norm=raw and collapse routing from scratch. */
#include "routers/topk.h"

static const RouterOption ORTHVAR_TABLE[] = {TOPK_OPTIONS(0), EXTRA_OPTIONS(TopkOpts, ex, 1e-3, 1e-4, 0, 1), {0}};

static int orthvar_state_len(const ModelConfig *m) { return topk_state_len_for(m, "orthvar", ORTHVAR_TABLE); }
static int orthvar_init(RouterLayer *r) { return topk_setup(r, "orthvar", ORTHVAR_TABLE, 1); }

const RouterSpec router_orthvar = {
    .name = "orthvar",
    .summary = "top-k + orthogonality loss on co-selected expert outputs + variance loss on scores (Guo et al.)",
    .options = ORTHVAR_TABLE,
    .state_len = orthvar_state_len,
    .init = orthvar_init,
    TOPK_FAMILY_HOOKS,
};
