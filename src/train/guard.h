/* Non-finite training steps. A step whose loss or gradient norm is NaN or infinite is not
 * applied (the parameters and AdamW moments stay as they were); after `limit` such steps
 * in a row training stops with an error, before anything non-finite can be saved. */
#ifndef MOELAB_GUARD_H
#define MOELAB_GUARD_H

typedef struct {
    int limit;    /* bad steps in a row that stop training */
    int run;      /* bad steps in a row so far */
    long skipped; /* bad steps in all */
    long last_bad;
} StepGuard;

void guard_init(StepGuard *g, int limit);
/* Records step `step` (1-based); 1 when it is finite and may be applied, 0 when it must
 * be skipped. */
int guard_finite(StepGuard *g, long step, float loss, float grad_norm);
/* -1 (ml_fail, naming the steps) once `limit` bad steps came in a row, else 0. */
int guard_check(const StepGuard *g);

#endif
