#include "train/guard.h"
#include "core/util.h"
#include <math.h>

void guard_init(StepGuard *g, int limit) {
    g->limit = limit > 0 ? limit : 1;
    g->run = 0;
    g->skipped = 0;
    g->last_bad = -1;
}

int guard_finite(StepGuard *g, long step, float loss, float grad_norm) {
    if (isfinite(loss) && isfinite(grad_norm)) {
        g->run = 0;
        return 1;
    }
    g->run++;
    g->skipped++;
    g->last_bad = step;
    return 0;
}

int guard_check(const StepGuard *g) {
    if (g->run < g->limit) return 0;
    return ml_fail("training stopped: the loss or gradient norm was NaN or infinite in %d steps in a row "
                   "(steps %ld..%ld were skipped, not applied); the last checkpoint was not overwritten. "
                   "Lower --lr, raise --warmup, or check the data and the checkpoint (moelab info)",
                   g->run, g->last_bad - g->run + 1, g->last_bad);
}
