/* A checkpoint folder: model.safetensors (the config in its metadata builds the model),
 * then optim.safetensors (AdamW moments, step, loader state). The input is the model
 * file, "\n--OPTIM--\n", the optimizer file. */
#include "core/util.h"
#include "fuzz_common.h"
#include "io/checkpoint.h"
#include "model/sizes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char model[256], optim[256];
    fz_path(model, sizeof model, "model.safetensors");
    fz_path(optim, sizeof optim, "optim.safetensors");
    sizes_set_memory_limit((uint64_t)256 << 20);
    size_t n1, n2;
    const uint8_t *rest;
    fz_split(data, size, "\n--OPTIM--\n", &n1, &rest, &n2);
    fz_write(model, data, n1);
    fz_write(optim, rest, n2);
    Model m;
    TrainConfig tc;
    if (checkpoint_load_model(fz_scratch(), &m, &tc) != 0) return 0;
    AdamW opt;
    memset(&opt, 0, sizeof opt);
    TrainState st;
    memset(&st, 0, sizeof st);
    if (checkpoint_load_state(fz_scratch(), &m, &opt, &st) == 0) adamw_free(&opt);
    else if (opt.m) adamw_free(&opt);
    model_free(&m);
    return 0;
}
