/* A corpus manifest (the JSON `prepare --manifest` reads). */
#include "core/util.h"
#include "data/manifest.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fz_text(data, size);
    Manifest m;
    if (manifest_parse(&m, text, "/nonexistent", "fuzz") == 0) {
        for (int d = 0; d < m.n_domains; d++) (void)manifest_cap(&m, d);
        manifest_free(&m);
    }
    free(text);
    return 0;
}
