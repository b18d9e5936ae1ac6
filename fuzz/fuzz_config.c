/* A config JSON (train --config, and a checkpoint's metadata). A config that validates
 * must print as JSON that reads back to the same config. */
#include "core/util.h"
#include "fuzz_common.h"
#include "model/config.h"
#include "model/sizes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fz_text(data, size);
    TrainConfig c, back;
    config_defaults(&c);
    if (config_apply_json_text(&c, text) == 0 && config_validate(&c) == 0) {
        char *js = config_to_json(&c, 0);
        config_defaults(&back);
        if (config_apply_json_text(&back, js) != 0) abort();
        char *js2 = config_to_json(&back, 0);
        if (strcmp(js, js2) != 0) abort();
        uint64_t p, a;
        if (sizes_params(&c.model, &p) == 0) (void)sizes_activations(&c.model, c.batch, c.model.seq_len, &a);
        free(js);
        free(js2);
    }
    free(text);
    return 0;
}
