/* What a config costs in memory, computed in 64 bits with every product and sum checked,
 * so a crafted value (a flag, a JSON config, a checkpoint's metadata) is refused with a
 * message before anything is allocated instead of wrapping around or exhausting memory. */
#ifndef MOELAB_SIZES_H
#define MOELAB_SIZES_H
#include "model/config.h"
#include <stdint.h>

/* Bounds on single widths: keep every tensor shape inside an int. */
#define SIZES_MAX_WIDTH (1 << 20)    /* d-expert, d-dense, and a dense FFN's width */
#define SIZES_MAX_PARAMS ((uint64_t)1 << 36)
#define SIZES_MAX_BYTES ((uint64_t)1 << 42)

/* Upper bounds, in floats, of the parameter buffer, the activations of one forward and
 * backward over B x T tokens, and the KV cache of one sequence of seq_len tokens.
 * -1 (ml_fail) when a value is out of range or a size overflows. */
int sizes_params(const ModelConfig *m, uint64_t *floats);
int sizes_activations(const ModelConfig *m, int B, int T, uint64_t *floats);
int sizes_kv(const ModelConfig *m, uint64_t *floats);

/* Caps the memory the checks below allow at `bytes` (0: this machine's memory), for
 * tests and fuzzers that must stay small. */
void sizes_set_memory_limit(uint64_t bytes);

/* The model alone (parameters, gradients, KV cache): bounds, then this machine's memory. */
int sizes_check_model(const ModelConfig *m);
/* A run over B x T tokens: the model, activations and, when training, the AdamW moments. */
int sizes_check_run(const ModelConfig *m, int B, int T, int training);

#endif
