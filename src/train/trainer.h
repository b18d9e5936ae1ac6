/* The training loop: data, model, AdamW, schedule, evaluation, logs and checkpoints. */
#ifndef MOELAB_TRAINER_H
#define MOELAB_TRAINER_H
#include "model/config.h"

typedef struct {
    TrainConfig tc;
    const char *data_dir, *out_dir;
    int resume;
    /* flags given on the command line ("--d-model"...), re-applied over a resumed config */
    const char **flags, **values;
    int n_flags;
    int quiet; /* no progress line */
} TrainArgs;

int train_run(TrainArgs *a);
/* Sets OpenMP and OpenBLAS to n threads (0: all cores); returns the count used. */
int set_threads(int n);

#endif
