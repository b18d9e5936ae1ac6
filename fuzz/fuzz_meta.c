/* A data folder's meta.json and, for "bpe", the tokenizer.json it names. The input is
 * meta.json, "\n--TOKENIZER--\n", tokenizer.json. */
#include "core/util.h"
#include "data/shard.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char meta[256], tok[256];
    fz_path(meta, sizeof meta, "meta.json");
    fz_path(tok, sizeof tok, "tokenizer.json");
    size_t n1, n2;
    const uint8_t *rest;
    fz_split(data, size, "\n--TOKENIZER--\n", &n1, &rest, &n2);
    fz_write(meta, data, n1);
    fz_write(tok, rest, n2);
    DataMeta m;
    if (data_meta_load(&m, fz_scratch()) == 0) data_meta_free(&m);
    return 0;
}
