/* Checkpoints: RUNDIR/model.safetensors (parameters, router state, config in the
 * metadata: what PyTorch/HF read) and RUNDIR/optim.safetensors (AdamW moments, step,
 * data-loader state), each written atomically and stamped with the same step. */
#ifndef MOELAB_CHECKPOINT_H
#define MOELAB_CHECKPOINT_H
#include "data/shard.h"
#include "model/config.h"
#include "model/model.h"
#include "model/optim.h"

typedef struct {
    long step;     /* optimizer steps completed */
    Loader loader; /* data order state (its Rng) */
} TrainState;

int checkpoint_save(const char *rundir, const Model *m, const TrainConfig *tc, const AdamW *opt, const TrainState *st);
/* path: a .safetensors file or a run folder. Creates the model from the stored config. */
int checkpoint_load_model(const char *path, Model *m, TrainConfig *tc);
/* Restores AdamW and the train state; checks sizes and that both files carry the same step. */
int checkpoint_load_state(const char *rundir, const Model *m, AdamW *opt, TrainState *st);

#endif
