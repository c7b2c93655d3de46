/* sp_ops.h — the elementwise and per-row primitives of the transformer forward pass, and the
 * two batched products it is built from (linear layer, causal grouped-query attention).
 *
 * Shape legend (as in sp_forward.h)
 *   T   tokens (rows)      D   row width of a norm      in/out  linear layer widths
 *   Hq  query heads        Hkv key/value heads          hd      head dim (even), half = hd/2
 *
 * Conventions: outputs first, inputs next, dimensions last; every matrix is row-major and
 * contiguous unless a leading dimension (row stride, in floats) is passed. None of these
 * functions allocate, fail, or keep state; all are safe to call from several threads on
 * disjoint outputs. The two products run on the sp_blas pool (kernels/sp_blas.h): threaded,
 * with results that do not depend on the thread count (nothing here changes that setting).
 */
#ifndef SP_OPS_H
#define SP_OPS_H

#include <stddef.h>

#include "shards/sp_config.h"

/* RMSNorm of each row: out[t, :] = x[t, :] / sqrt(mean_j x[t, j]^2 + eps) * w.
 * The mean of squares is accumulated in double in index order (deterministic); the scaling is
 * done in float like Hugging Face: (x * inv_rms) * w. out [T, D], x [T, D], w [D].
 * out may equal x (in place). */
void sp_rmsnorm_forward(float *out, const float *x, const float *w, float eps, size_t T,
                        size_t D);

/* Inverse frequencies of the rotary embedding: inv_freq[i] = theta^(-2i/hd), i < hd/2, then,
 * when c->rope_scaling_llama3, Hugging Face's Llama 3 rule with wavelen = 2*pi/inv_freq,
 * lo = orig_max/low_freq_factor, hi = orig_max/high_freq_factor:
 *   wavelen < hi         -> unchanged
 *   wavelen > lo         -> inv_freq / factor
 *   otherwise            -> (1-s) inv_freq/factor + s inv_freq,
 *                           s = (orig_max/wavelen - low_freq_factor)/(high - low).
 * inv_freq [hd/2], computed in double. */
void sp_rope_inv_freq(double *inv_freq, const sp_config *c);

/* RoPE tables for positions 0..T-1: cos[t, i] = cos(t * inv_freq[i]), sin likewise, the
 * angle and its cosine/sine computed in double and stored as float. cos, sin [T, hd/2].
 * Precondition: c->head_dim is even and positive. */
void sp_rope_table(float *cos_t, float *sin_t, const sp_config *c, size_t T);

/* Rotate-half RoPE in place on n_heads heads of every row of x: for each head h and i < half,
 * with a = x[t, h*hd + i], b = x[t, h*hd + half + i]:
 *   x[t, h*hd + i] = a cos[t,i] - b sin[t,i];   x[t, h*hd + half + i] = b cos[t,i] + a sin[t,i].
 * x [T, ldx] (heads packed in the first n_heads*hd columns), cos/sin [>=T, hd/2]. */
void sp_rope_apply(float *x, const float *cos_t, const float *sin_t, size_t T, size_t ldx,
                   int n_heads, int hd);

/* SwiGLU in place: up[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)); n elements. */
void sp_swiglu_forward(float *up, const float *gate, size_t n);

/* Numerically stable softmax of row[0..n) in place: exp(row - max) / sum, the sum in double.
 * n >= 1. */
void sp_softmax_row(float *row, size_t n);

/* Linear layer, one sgemm: out [T, n_out] = x [T, n_in] · Wᵀ (+ bias), W row-major
 * [n_out, n_in] (Hugging Face layout), bias [n_out] or NULL. With accumulate != 0 the product
 * is added to out (out += x Wᵀ; used for the residual adds) and bias must be NULL. */
void sp_linear_forward(float *out, const float *x, const float *w, const float *bias,
                       size_t T, size_t n_in, size_t n_out, int accumulate);

/* Causal grouped-query attention over one window, per head h (kv head h / (Hq/Hkv)):
 *   out_h = softmax(q_h k_hᵀ / sqrt(hd) + causal mask) v_h
 * q [T, Hq*hd], k [T, Hkv*hd], v [T, Hkv*hd] (RoPE already applied), out [T, Hq*hd].
 * scores [T, T] is scratch. Queries are processed in tiles of SP_ATTN_TILE rows so that the
 * products skip whole key blocks above the diagonal; the tiles start at multiples of
 * SP_ATTN_TILE, so a window's result does not depend on anything but the window. The
 * (head, tile) pairs run in parallel on the sp_blas pool, at most T / min(T, SP_ATTN_TILE) at
 * once (each uses min(T, SP_ATTN_TILE) rows of scores); the bits do not depend on the threads.
 * Precondition: Hq % Hkv == 0, T >= 1. */
#define SP_ATTN_TILE 256
void sp_attention_forward(float *out, float *scores, const float *q, const float *k,
                          const float *v, size_t T, int Hq, int Hkv, int hd);

/* Floating-point operations sp_attention_forward performs in its two sgemm products for a
 * window of T tokens (2 per multiply-add, including masked entries inside diagonal tiles). */
double sp_attention_flops(size_t T, int Hq, int hd);

#endif
