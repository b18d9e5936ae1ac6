/* Forward/backward pairs over plain arrays; shapes are in the arguments.
 * Every backward accumulates (+=) into its gradient outputs. Matrices are row-major;
 * a weight W[out, in] acts as y = x W^T, like a PyTorch Linear. Every matrix product goes
 * through gemm() (core/gemm.h), which applies the precision (fp32 or bf16 inputs). */
#ifndef MOELAB_OPS_H
#define MOELAB_OPS_H
#include <stddef.h>
#include <stdint.h>

/* out[n, o] = inp[n, i] W[o, i]^T, or += when accumulate */
void matmul_forward(float *out, const float *inp, const float *w, int n, int in, int outd, int accumulate);
/* dinp[n, i] += dout W ; dw[o, i] += dout^T inp (either may be NULL) */
void matmul_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w, int n, int in, int outd);
/* The same, always in fp32 whatever the precision (router scores: selection stays fp32). */
void matmul_forward_fp32(float *out, const float *inp, const float *w, int n, int in, int outd, int accumulate);
void matmul_backward_fp32(float *dinp, float *dw, const float *dout, const float *inp, const float *w, int n, int in, int outd);

/* y = x / rms(x) * w, per row of length d; rstd[n] kept for the backward */
void rmsnorm_forward(float *y, float *rstd, const float *x, const float *w, int n, int d, float eps);
void rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd, int n, int d);

/* Rotary embedding on q and k inside qkv [B*T, 3D] in place, rotate-half convention (HF Llama).
 * pos0 is the position of the first row (KV-cache decoding). inverse=1 undoes it (the backward). */
void rope_apply(float *qkv, int B, int T, int D, int NH, float theta, int pos0, int inverse);

/* Causal attention. qkv [B*T, 3D] (post-RoPE), att [B, NH, T, T] softmax probs, out [B*T, D]. */
void attention_forward(float *out, float *att, const float *qkv, int B, int T, int D, int NH);
void attention_backward(float *dqkv, float *datt_scratch, const float *dout, const float *qkv, const float *att,
                        int B, int T, int D, int NH);

/* SwiGLU FFN: h = x W_gu^T [n, 2F], a = silu(h_gate) * h_up [n, F], y = a W_d^T [n, D]. */
void swiglu_forward(float *y, float *h, float *a, const float *x, const float *w_gu, const float *w_d, int n, int D, int F);
/* dx += ... (dx = ... when !accumulate: expert slices need no zeroed buffer), dw_gu += ...,
 * dw_d += ...; dh [n,2F] and da [n,F] are scratch. */
void swiglu_backward(float *dx, float *dw_gu, float *dw_d, float *dh, float *da, const float *dy, const float *x,
                     const float *h, const float *a, const float *w_gu, const float *w_d, int n, int D, int F,
                     int accumulate);

/* The same on operands already rounded to bf16 (expert slices in bf16 precision): x, a and
 * dh are bf16, h, y, da fp32; the weights are read from their bf16 shadow (gemm_cast_weights).
 * dx is overwritten; dyh [n, D] is dy rounded, by the caller. Products only, no padding: the
 * caller picks n (row counts rounded up to a block, with zero rows, keep shapes few). */
void swiglu_forward_bf16(float *y, float *h, uint16_t *a, const uint16_t *x, const float *w_gu, const float *w_d,
                         int n, int D, int F);
void swiglu_backward_bf16(float *dx, float *dw_gu, float *dw_d, uint16_t *dh, float *da, const uint16_t *dyh,
                          const uint16_t *x, const float *h, const uint16_t *a, const float *w_gu, const float *w_d,
                          int n, int D, int F);

/* Cross-entropy over rows of logits [n, V]; losses[n] per row; returns the mean. */
float crossentropy_forward(float *losses, const float *logits, const int *targets, int n, int V);
/* dlogits = (softmax - onehot) * scale / n (written, not accumulated: logits grads start here) */
void crossentropy_backward(float *dlogits, const float *logits, const int *targets, int n, int V, float scale);

void softmax_rows(float *out, const float *in, int n, int d);
void add_inplace(float *y, const float *x, size_t n);
/* y = a + b; y = 0; y = x: on all threads, as one thread alone does not reach the memory bandwidth */
void add_into(float *y, const float *a, const float *b, size_t n);
void zero_floats(float *y, size_t n);
void copy_floats(float *y, const float *x, size_t n);

#endif
