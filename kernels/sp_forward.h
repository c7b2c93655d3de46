/* sp_forward.h — the Llama-family decoder block and output head, batched over a window
 * (prefill style), fp32 activations, BLAS sgemm for every matrix product.
 *
 * Shape legend
 *   T   tokens in the window (positions 0..T-1; causal attention inside the window)
 *   D   hidden size (dim)            F   intermediate size (hidden_dim)
 *   Hq  query heads, Hkv key/value heads, hd head dim, G = Hq / Hkv (grouped-query)
 *   V   vocabulary
 *
 * One block (HF LlamaDecoderLayer):
 *   xn1  = RMSNorm(x) * attn_norm                            [T, D]
 *   q    = xn1 Wqᵀ (+bq), k = xn1 Wkᵀ (+bk), v = xn1 Wvᵀ (+bv)  [T, Hq*hd], [T, Hkv*hd]
 *   q,k  = RoPE rotate-half: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin), freq_i =
 *          theta^(-2i/hd), i < hd/2, with Llama 3 rope_scaling applied to freq_i
 *   attn = softmax(q kᵀ / sqrt(hd) + causal mask) v per head (query head h uses kv head h/G)
 *   x   += attn Woᵀ
 *   xn2  = RMSNorm(x) * ffn_norm
 *   act  = silu(xn2 Wgateᵀ) * (xn2 Wupᵀ)                       [T, F]
 *   x   += act Wdownᵀ
 *
 * Determinism: the result for a window depends only on that window and the weights, never on
 * which rank or batch computes it (each window is one set of sgemm calls with fixed shapes).
 */
#ifndef SP_FORWARD_H
#define SP_FORWARD_H

#include <stddef.h>

#include "common/sp_error.h"
#include "shards/sp_config.h"
#include "shards/sp_model.h"

/* Scratch for one window of up to max_T tokens. After sp_block_forward the four "taps" hold
 * the inputs of the block's linear layers for that window (used by GPTQ's Hessians):
 *   xn1  [T, D]      input of q_proj, k_proj, v_proj
 *   attn [T, Hq*hd]  input of o_proj
 *   xn2  [T, D]      input of gate_proj, up_proj
 *   act  [T, F]      input of down_proj                                                   */
typedef struct {
    int max_T;
    float *xn1, *attn, *xn2, *act;      /* taps (see above)                                */
    float *q, *k, *v;                    /* [T, Hq*hd], [T, Hkv*hd], [T, Hkv*hd]             */
    float *scores;                       /* [T, T] attention scores of one head             */
    float *gate;                         /* [T, F]                                          */
    float *rope_cos, *rope_sin;          /* [max_T, hd/2]                                   */
    struct sp_cuda *gpu;                 /* NULL (alloc's default): linears on the CPU;     *
                                          * set by the caller: sp_cuda_linear (cuBLAS)      */
    void *mem_;
} sp_block_scratch;

/* Allocate scratch for windows of up to max_T tokens and fill the RoPE tables. */
sp_status sp_block_scratch_alloc(sp_block_scratch *s, const sp_config *c, int max_T, sp_err *err);
void sp_block_scratch_free(sp_block_scratch *s);

/* x [T, D] in place: x <- block(x). T <= s->max_T. */
void sp_block_forward(float *x, const sp_block_weights *w, const sp_config *c, int T,
                      sp_block_scratch *s);

/* The taps in forward order (SP_TAP_ALL: the whole block). */
enum { SP_TAP_XN1 = 0, SP_TAP_ATTN, SP_TAP_XN2, SP_TAP_ACT, SP_TAP_ALL };

/* The block up to and including tap last_tap (SP_TAP_*): the same operations as
 * sp_block_forward, stopped early, so the taps computed are bit for bit the same; x is left
 * partly updated (x += attn Woᵀ is done from SP_TAP_XN2 on). Used by true-sequential
 * quantization, which needs one tap per pass. */
void sp_block_forward_taps(float *x, const sp_block_weights *w, const sp_config *c, int T,
                           sp_block_scratch *s, int last_tap);

/* Final RMSNorm then head rows [v0, v0+nv): logits[t, j] = RMSNorm(x_t)·head[j].
 * x [T, D], norm [D], head_rows [nv, D], logits [T, nv] (row stride nv). xn [T, D] is scratch. */
void sp_head_forward(float *logits, float *xn, const float *x, const float *norm,
                     const float *head_rows, const sp_config *c, int T, int nv);

#endif
