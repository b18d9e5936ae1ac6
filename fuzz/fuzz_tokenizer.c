/* tokenizer.json (Hugging Face's byte-level BPE format); a tokenizer that loads encodes
 * the input's own bytes and decodes them back, which must give the same bytes. */
#include "core/util.h"
#include "data/tokenizer.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Tokenizer *t = NULL;
    if (tok_load_json(&t, (const char *)data, size, "fuzz") != 0) return 0;
    size_t n = size < 512 ? size : 512;
    TokIds ids = {0};
    tok_encode(t, data, n, &ids);
    TokBytes back = {0};
    if (tok_decode(t, ids.ids, ids.n, 1, &back) != 0 || back.len != n || (n && memcmp(back.data, data, n) != 0)) abort();
    free(ids.ids);
    free(back.data);
    tok_free(t);
    return 0;
}
