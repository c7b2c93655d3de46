/* sp_forward.c — one Llama decoder block and the output head over a window. See sp_forward.h.
 *
 * Shape legend: T tokens, D dim, F hidden_dim, Hq/Hkv heads, hd head dim, V vocabulary,
 * nv head rows computed by one sp_head_forward call.
 *
 * Cost per token (multiply-add = 2 flops): linears 2 (D·Hq·hd + 2·D·Hkv·hd + Hq·hd·D + 3·D·F),
 * which is 2 (4D² + 3DF) for Hkv = Hq and hd = D/Hq, plus attention (sp_attention_flops).
 * Every linear is one sgemm over the whole window, so the block runs at close to the BLAS rate.
 */
#include "kernels/sp_forward.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/sp_cuda.h"
#include "kernels/sp_ops.h"

/* Bytes of n floats rounded up to 64 so that every scratch buffer starts on a cache line. */
static size_t aligned_bytes(size_t n) {
    return (n * sizeof(float) + 63) & ~(size_t)63;
}

sp_status sp_block_scratch_alloc(sp_block_scratch *s, const sp_config *c, int max_T,
                                 sp_err *err) {
    memset(s, 0, sizeof *s);
    SP_RETURN_IF(max_T <= 0, err, SP_EINVAL, "sp_block_scratch_alloc: max_T = %d must be > 0",
                 max_T);
    SP_RETURN_IF(c->dim <= 0 || c->hidden_dim <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0,
                 err, SP_EINVAL,
                 "sp_block_scratch_alloc: config sizes dim=%d hidden_dim=%d n_heads=%d "
                 "n_kv_heads=%d must be > 0", c->dim, c->hidden_dim, c->n_heads, c->n_kv_heads);
    SP_RETURN_IF(c->head_dim <= 0 || c->head_dim % 2 != 0, err, SP_EINVAL,
                 "sp_block_scratch_alloc: config field head_dim = %d must be even and > 0",
                 c->head_dim);
    SP_RETURN_IF(c->n_heads % c->n_kv_heads != 0, err, SP_EINVAL,
                 "sp_block_scratch_alloc: config field n_heads = %d is not a multiple of "
                 "n_kv_heads = %d", c->n_heads, c->n_kv_heads);
    SP_RETURN_IF(c->rope_theta <= 0.0f, err, SP_EINVAL,
                 "sp_block_scratch_alloc: config field rope_theta = %g must be > 0",
                 (double)c->rope_theta);
    SP_RETURN_IF(c->rope_scaling_llama3 &&
                     (c->rope_factor <= 0.0f || c->rope_original_max_pos <= 0 ||
                      c->rope_low_freq_factor <= 0.0f ||
                      c->rope_high_freq_factor <= c->rope_low_freq_factor),
                 err, SP_EINVAL,
                 "sp_block_scratch_alloc: config rope_scaling needs factor > 0, "
                 "original_max_position_embeddings > 0 and high_freq_factor > "
                 "low_freq_factor > 0");

    size_t T = (size_t)max_T, D = (size_t)c->dim, F = (size_t)c->hidden_dim;
    size_t qd = (size_t)c->n_heads * (size_t)c->head_dim;     /* Hq*hd  */
    size_t kvd = (size_t)c->n_kv_heads * (size_t)c->head_dim; /* Hkv*hd */
    size_t half = (size_t)c->head_dim / 2;
    /* One allocation, views in this order (element counts): */
    size_t n[11] = {
        T * D,    /* xn1      [T, D]      */
        T * qd,   /* attn     [T, Hq*hd]  */
        T * D,    /* xn2      [T, D]      */
        T * F,    /* act      [T, F]      */
        T * qd,   /* q        [T, Hq*hd]  */
        T * kvd,  /* k        [T, Hkv*hd] */
        T * kvd,  /* v        [T, Hkv*hd] */
        T * T,    /* scores   [T, T]      */
        T * F,    /* gate     [T, F]      */
        T * half, /* rope_cos [T, hd/2]   */
        T * half, /* rope_sin [T, hd/2]   */
    };
    size_t total = 0;
    for (int i = 0; i < 11; i++) total += aligned_bytes(n[i]);
    /* 64-byte aligned base so that the views stay aligned. */
    void *mem = NULL;
    if (posix_memalign(&mem, 64, total) != 0) {
        return sp_err_set(err, SP_ENOMEM,
                          "sp_block_scratch_alloc: cannot allocate %zu bytes of block scratch "
                          "for max_T = %d", total, max_T);
    }
    float **views[11] = {&s->xn1, &s->attn, &s->xn2, &s->act, &s->q, &s->k, &s->v,
                         &s->scores, &s->gate, &s->rope_cos, &s->rope_sin};
    size_t off = 0;
    for (int i = 0; i < 11; i++) {
        *views[i] = (float *)((char *)mem + off);
        off += aligned_bytes(n[i]);
    }
    s->mem_ = mem;
    s->max_T = max_T;
    sp_rope_table(s->rope_cos, s->rope_sin, c, T);
    return SP_OK;
}

void sp_block_scratch_free(sp_block_scratch *s) {
    if (!s) return;
    free(s->mem_);
    memset(s, 0, sizeof *s);
}

/* One linear of the block: sp_linear_forward, or cuBLAS when the scratch has a device. */
static void linear(sp_block_scratch *s, float *out, const float *x, const float *w,
                   const float *bias, size_t T, size_t n_in, size_t n_out, int accumulate) {
    if (s->gpu)
        sp_cuda_linear(s->gpu, out, x, w, bias, T, n_in, n_out, accumulate);
    else
        sp_linear_forward(out, x, w, bias, T, n_in, n_out, accumulate);
}

void sp_block_forward_taps(float *x, const sp_block_weights *w, const sp_config *c, int T,
                           sp_block_scratch *s, int last_tap) {
    size_t Tn = (size_t)T, D = (size_t)c->dim, F = (size_t)c->hidden_dim;
    int hd = c->head_dim, Hq = c->n_heads, Hkv = c->n_kv_heads;
    size_t qd = (size_t)Hq * (size_t)hd, kvd = (size_t)Hkv * (size_t)hd;
    if (T <= 0) return;

    /* ---- attention half: x += Attn(RMSNorm(x)) Woᵀ -------------------------------------- */
    sp_rmsnorm_forward(s->xn1, x, w->attn_norm, c->norm_eps, Tn, D);  /* xn1 [T, D]      */
    if (last_tap <= SP_TAP_XN1) return;
    linear(s, s->q, s->xn1, w->wq, w->bq, Tn, D, qd, 0);      /* q   [T, Hq*hd]  */
    linear(s, s->k, s->xn1, w->wk, w->bk, Tn, D, kvd, 0);     /* k   [T, Hkv*hd] */
    linear(s, s->v, s->xn1, w->wv, w->bv, Tn, D, kvd, 0);     /* v   [T, Hkv*hd] */
    sp_rope_apply(s->q, s->rope_cos, s->rope_sin, Tn, qd, Hq, hd);
    sp_rope_apply(s->k, s->rope_cos, s->rope_sin, Tn, kvd, Hkv, hd);
    sp_attention_forward(s->attn, s->scores, s->q, s->k, s->v, Tn, Hq, Hkv, hd); /* [T, Hq*hd] */
    if (last_tap <= SP_TAP_ATTN) return;
    linear(s, x, s->attn, w->wo, NULL, Tn, qd, D, 1);         /* x  += attn Woᵀ  */

    /* ---- MLP half: x += (silu(xn2 Wgateᵀ) * xn2 Wupᵀ) Wdownᵀ ----------------------------- */
    sp_rmsnorm_forward(s->xn2, x, w->ffn_norm, c->norm_eps, Tn, D);   /* xn2  [T, D]     */
    if (last_tap <= SP_TAP_XN2) return;
    linear(s, s->gate, s->xn2, w->w_gate, NULL, Tn, D, F, 0); /* gate [T, F]     */
    linear(s, s->act, s->xn2, w->w_up, NULL, Tn, D, F, 0);    /* up   [T, F]     */
    sp_swiglu_forward(s->act, s->gate, Tn * F);                       /* act  [T, F]     */
    if (last_tap <= SP_TAP_ACT) return;
    linear(s, x, s->act, w->w_down, NULL, Tn, F, D, 1);       /* x += act Wdownᵀ */
}

void sp_block_forward(float *x, const sp_block_weights *w, const sp_config *c, int T,
                      sp_block_scratch *s) {
    sp_block_forward_taps(x, w, c, T, s, SP_TAP_ALL);
}

void sp_head_forward(float *logits, float *xn, const float *x, const float *norm,
                     const float *head_rows, const sp_config *c, int T, int nv) {
    size_t D = (size_t)c->dim;
    if (T <= 0 || nv <= 0) return;
    sp_rmsnorm_forward(xn, x, norm, c->norm_eps, (size_t)T, D);                 /* xn [T, D] */
    sp_linear_forward(logits, xn, head_rows, NULL, (size_t)T, D, (size_t)nv, 0); /* [T, nv]  */
}
