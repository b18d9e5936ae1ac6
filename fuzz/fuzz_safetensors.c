/* safetensors: header length, JSON header, dtypes, shapes against byte ranges, metadata;
 * every tensor that loads is then copied out with its own dtype and shape. */
#include "core/util.h"
#include "fuzz_common.h"
#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[256];
    fz_path(path, sizeof path, "t.safetensors");
    fz_write(path, data, size);
    StFile f;
    if (st_load(&f, path) != 0) return 0;
    for (int i = 0; i < f.n; i++) {
        const StTensor *t = &f.tensors[i];
        void *buf = malloc(t->nbytes ? t->nbytes : 1);
        if (st_read(&f, t->name, t->dtype, t->ndim, t->shape, buf) != 0) abort(); /* it loaded: it must read */
        free(buf);
    }
    (void)st_meta(&f, "config");
    st_free(&f);
    return 0;
}
