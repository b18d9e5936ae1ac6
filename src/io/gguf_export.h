/* A trained model as a GGUF file that llama.cpp runs with no conversion: the choice of
 * llama.cpp architecture for a config, the tensor mapping, and the tokenizer.
 * docs/export.md has the tables. */
#ifndef MOELAB_GGUF_EXPORT_H
#define MOELAB_GGUF_EXPORT_H
#include "data/tokenizer.h"
#include "io/gguf.h"
#include "model/model.h"

typedef struct {
    const char *arch;  /* llama.cpp architecture name */
    int renorm;        /* gate weights renormalised over the chosen experts */
    int zero_shared;   /* the architecture needs a shared expert: an all-zero one stands in */
} GgufPlan;

/* How the model's inference rule maps onto llama.cpp, or -1 (ml_fail, saying why) when no
 * architecture computes it exactly. Each router that exports declares its rule in
 * gguf_export.c; a router without one is refused. */
int gguf_plan(const Model *m, GgufPlan *plan);
/* Writes the file atomically. tok: the BPE tokenizer, or NULL for byte-level (vocab 257).
 * Router weights and norms stay f32 whatever `type`; q8_0 falls back to f16 for a tensor
 * whose rows are not a multiple of 32 values (*n_fallback counts them, may be NULL).
 * note (may be NULL) goes into the metadata as moelab.approximate. */
int gguf_export(const Model *m, Tokenizer *tok, GgType type, const char *path, int *n_fallback, const char *note);
/* The config of the per-token top-k model that stands in for a router without an exact
 * form: same weights, router "topk", gates renormalised as the original router does. */
void gguf_topk_stand_in(const ModelConfig *c, ModelConfig *out);

#endif
