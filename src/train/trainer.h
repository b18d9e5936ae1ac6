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
    /* under mpirun: experts split over this many ranks (1: data parallel only), and
     * whether gradient reductions start during the backward (train_dist_flag) */
    int expert_parallel, no_overlap;
} TrainArgs;

int train_run(TrainArgs *a);
/* Parses the flags of training over several processes (--expert-parallel P, --no-overlap):
 * 1 when f is one (*used: values consumed), 0 when not, -1 (ml_fail) on a bad value. */
int train_dist_flag(TrainArgs *a, const char *f, const char *v, int *used);
/* Checks those flags against the processes (and, for a new run, the experts) before anything is written. */
int train_dist_check_args(const TrainArgs *a);
/* Sets OpenMP and OpenBLAS to n threads (0: all cores); returns the count used. */
int set_threads(int n);

#endif
