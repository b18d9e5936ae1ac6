#include "cli/commands.h"
#include "core/util.h"
#include "io/checkpoint.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void) {
    printf("usage: moelab info CHECKPOINT [--json]\n\n"
           "Prints the model config, the parameter tensors, and the total and active (per token)\n"
           "parameter counts of CHECKPOINT (a run folder or a .safetensors file).\n");
}

int cmd_info(int argc, char **argv) {
    const char *ckpt = NULL;
    int json = 0, rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        if (cli_is_help(argv[i])) {
            usage();
            return 0;
        }
        if (strcmp(argv[i], "--json") == 0) json = 1;
        else if (argv[i][0] == '-') rc = ml_fail("unknown flag '%s' (see moelab info --help)", argv[i]);
        else if (!ckpt) ckpt = argv[i];
        else rc = ml_fail("unexpected argument '%s'", argv[i]);
    }
    if (rc == 0 && !ckpt) rc = ml_fail("a CHECKPOINT is required");
    Model m;
    TrainConfig tc;
    memset(&m, 0, sizeof m);
    if (rc == 0) rc = checkpoint_load_model(ckpt, &m, &tc);
    if (rc == 0) cli_warn_nonfinite(ckpt, &m);
    if (rc) {
        fprintf(stderr, "moelab info: %s\n", ml_last_error());
        return 1;
    }
    size_t total, active;
    params_count(&m.table, &m.cfg, m.router_rows, &total, &active);
    char *cfg = config_to_json(&tc, 1);
    if (json) {
        printf("{\"config\":%s,\"params_total\":%zu,\"params_active\":%zu}\n", cfg, total, active);
    } else {
        printf("config:\n%s\n\ntensors:\n", cfg);
        for (int i = 0; i < m.table.n; i++) {
            const ParamInfo *p = &m.table.items[i];
            char shape[64];
            if (p->ndim == 1) snprintf(shape, sizeof shape, "[%d]", p->shape[0]);
            else if (p->ndim == 2) snprintf(shape, sizeof shape, "[%d, %d]", p->shape[0], p->shape[1]);
            else snprintf(shape, sizeof shape, "[%d, %d, %d]", p->shape[0], p->shape[1], p->shape[2]);
            printf("  %-44s %-18s %zu\n", p->name, shape, p->size);
        }
        printf("\nparameters: %zu total, %zu active per token (%.1f%%)\n", total, active, 100.0 * active / total);
        if (m.router_state_len) printf("router state: %zu values\n", m.router_state_len);
    }
    free(cfg);
    model_free(&m);
    return 0;
}
