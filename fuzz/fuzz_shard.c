/* A token shard: header, domain names, document table, tokens; a shard that loads is
 * then read by the training and evaluation loaders. */
#include "core/util.h"
#include "data/shard.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[256];
    fz_path(path, sizeof path, "train.bin");
    fz_write(path, data, size);
    Shard s;
    if (shard_load(&s, path) != 0) return 0;
    enum { B = 2, T = 4 };
    int32_t in[B * T], tgt[B * T], dom[B * T];
    Loader l;
    if (loader_init(&l, &s, B, T, 1) == 0)
        for (int i = 0; i < 3; i++) loader_next(&l, in, tgt);
    int64_t nb = loader_eval_batches(&s, B, T);
    for (int64_t b = 0; b < nb && b < 3; b++) loader_eval_batch(&s, B, T, b, in, tgt, dom);
    if (nb > 0) loader_eval_batch_spread(&s, B, T, 0, nb < 2 ? nb : 2, in, tgt, dom);
    (void)shard_domain_at(&s, s.n_tokens / 2);
    shard_free(&s);
    return 0;
}
