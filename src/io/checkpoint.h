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

/* Creates rundir if needed. Both files are written in full, then committed together
 * (io/commit.h): a failed or killed save leaves the previous pair or the new one. */
int checkpoint_save(const char *rundir, const Model *m, const TrainConfig *tc, const AdamW *opt, const TrainState *st);
/* path: a .safetensors file or a run folder. Creates the model from the stored config
 * (tc gets the full stored training config); every tensor must match it exactly. */
int checkpoint_load_model(const char *path, Model *m, TrainConfig *tc);
/* Restores AdamW and the train state; checks sizes and that both files carry the same step.
 * opt is either zeroed (it is then allocated) or adamw_init-ed for m's size. st gets step,
 * loader B, T and rng; st->loader.shard is left as it was (re-attach it, e.g. loader_init). */
int checkpoint_load_state(const char *rundir, const Model *m, AdamW *opt, TrainState *st);
/* Finishes a committed save that a kill interrupted, or removes the staged and temporary
 * files of an uncommitted one; for the process that owns rundir, before it trains on. */
int checkpoint_recover(const char *rundir);
/* Parameter and router-state values of m that are NaN or infinite (a diverged run's
 * checkpoint): the commands that use a model say so when this is not 0. */
size_t checkpoint_nonfinite(const Model *m);

#endif
