#include "cli/commands.h"
#include "core/dist.h"
#include "core/util.h"
#include "moe/router.h"
#include "train/trainer.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void) {
    printf("usage: moelab train --data DIR --out RUNDIR [--steps N] [--seed S] [--resume] [--config FILE.json] [FLAGS]\n\n"
           "Trains on DIR/train.bin, evaluates on DIR/val.bin, writes RUNDIR/log.jsonl,\n"
           "RUNDIR/model.safetensors and RUNDIR/optim.safetensors. --resume continues RUNDIR exactly.\n"
           "--config takes a JSON object with the same keys as the flags; flags given after it win.\n\n"
           "  --data DIR          prepared data folder (moelab prepare)\n"
           "  --out RUNDIR        run folder\n"
           "  --resume            continue the checkpoint in RUNDIR\n"
           "  --config FILE       JSON config\n"
           "  --quiet             no progress line\n\n"
           "Under mpirun (mpirun -np N moelab train ...) N processes train one model: each takes\n"
           "its share of every global batch (N x batch x grad-accum). Rank 0 writes RUNDIR.\n"
           "  --expert-parallel P split each MoE layer's experts over groups of P processes\n"
           "  --no-overlap        reduce gradients after the backward, not during it (to measure)\n%s\nrouters:\n",
           config_flags_help());
    for (const RouterSpec *const *r = router_all(); *r; r++) {
        printf("  %-16s %s\n", (*r)->name, (*r)->summary);
        router_opts_print(stdout, (*r)->options, "      --router-opts ");
    }
}

int cmd_train(int argc, char **argv) {
    TrainArgs a;
    memset(&a, 0, sizeof a);
    config_defaults(&a.tc);
    a.flags = ml_calloc(argc, sizeof(char *));
    a.values = ml_calloc(argc, sizeof(char *));
    int rc = 0, r_dist, used;
    /* --config first, so explicit flags override it wherever they appear. */
    for (int i = 1; i < argc && rc == 0; i++)
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) rc = ml_fail("--config needs a file");
            else rc = config_load_json(&a.tc, argv[++i]);
        }
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (cli_is_help(f)) {
            usage();
            free(a.flags);
            free(a.values);
            return 0;
        }
        if (strcmp(f, "--resume") == 0) a.resume = 1;
        else if (strcmp(f, "--quiet") == 0) a.quiet = 1;
        else if (strcmp(f, "--config") == 0) i++;
        else if (rc == 0 && (r_dist = train_dist_flag(&a, f, v, &used)) != 0) {
            if (r_dist < 0) rc = -1;
            i += used;
        }
        else if (strcmp(f, "--data") == 0 || strcmp(f, "--out") == 0) {
            if (!v) rc = ml_fail("%s needs a value", f);
            else if (f[2] == 'd') a.data_dir = v;
            else a.out_dir = v;
            i++;
        } else {
            int r = config_apply_flag(&a.tc, f, v);
            if (r == 0) rc = ml_fail("unknown flag '%s' (see moelab train --help)", f);
            else if (r < 0) rc = -1;
            else {
                a.flags[a.n_flags] = f;
                a.values[a.n_flags++] = v;
                i++;
            }
        }
    }
    /* Checked here, before train_run hands the count to OpenMP and the BLAS. */
    if (rc == 0 && (a.tc.threads < 0 || a.tc.threads > 1024)) rc = ml_fail("--threads must be in 0..1024 (0: all cores)");
    if (rc == 0 && !a.data_dir) rc = ml_fail("--data DIR is required");
    if (rc == 0 && !a.out_dir) rc = ml_fail("--out RUNDIR is required");
    if (rc == 0) rc = dist_init(&argc, &argv);
    if (rc == 0) rc = train_run(&a);
    if (rc) fprintf(stderr, "moelab train: %s\n", ml_last_error());
    free(a.flags);
    free(a.values);
    dist_finalize(rc != 0);
    return rc ? 1 : 0;
}
