/* A run folder's log.jsonl as `report` reads it: lines, series, finals and medians. */
#include "core/util.h"
#include "fuzz_common.h"
#include "report/runlog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[256];
    fz_path(path, sizeof path, "log.jsonl");
    fz_write(path, data, size);
    RunLog r;
    if (runlog_load(&r, fz_scratch()) != 0) return 0;
    static const char *const keys[] = {"loss", "val_loss", "val_bpb", "load_cv", "layers", "step", NULL};
    for (int i = 0; keys[i]; i++) {
        double *x = NULL, *y = NULL;
        for (int eval = 0; eval < 2; eval++) {
            runlog_series(&r, eval, keys[i], &x, &y);
            free(x);
            free(y);
            x = y = NULL;
        }
        (void)runlog_final(&r, keys[i]);
        (void)runlog_median(&r, keys[i]);
    }
    const cJSON *e = runlog_last_eval(&r);
    (void)json_find(e, "val_bpb", 3);
    runlog_free(&r);
    return 0;
}
