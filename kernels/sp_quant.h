/* sp_quant.h — group-wise uniform quantization of a weight matrix, and the quantized layer.
 *
 * A quantized layer W [rows=out, cols=in] stores, for every row r and group g:
 *   scale s[r,g] (fp32 holding an fp16-representable value) and integer zero z[r,g],
 * and for every weight an integer code q in [0, 2^bits - 1]:
 *   W[r,c] ≈ s[r,g] · (q[r,c] − z[r,g]),   g = g_idx[c] = c / group_size   (static groups)
 * Scales are rounded to fp16 when they are chosen, so a GPTQ export (fp16 scales) dequantizes
 * to exactly the same weights as the shardpress container.
 * Symmetric: z = 2^(bits-1) for every group. Asymmetric: z = round(−min/s), clamped to range.
 *
 * GGUF-type levels (issue 11, kernels/sp_gtype.h): a level that is exactly one of ggml's types
 * with a min or super-block scales (Q4_1, Q5_1, Q2_K … Q6_K) has gtype set and, besides the
 * arrays above, an offset m per group and, for the K-quants, the super-block scales:
 *   W[r,c] ≈ s[r,g] · (q[r,c] − z[r,g]) + m[r,g]      (fp32 product, then the fp32 sum)
 *   supers[r, b] = (d, dmin) of super-block b (256 columns), fp16 values; then every s[r,g] of
 *   the super-block is fp32(d · sc) and every m[r,g] is −fp32(dmin · mm) for small integers
 *   sc, mm — the values ggml's dequantizer computes, so the level is that type bit for bit.
 * Scales of such levels are fp32 products, not fp16 values (Q4_1/Q5_1: fp16 d and m).
 */
#ifndef SP_QUANT_H
#define SP_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "common/sp_error.h"

typedef struct {
    int rows;         /* out features                                                     */
    int cols;         /* in features                                                      */
    int bits;         /* 2..8                                                             */
    int group_size;   /* columns per group (== cols for "one group per row", -1 on CLI)   */
    int n_groups;     /* ceil(cols / group_size); the last group of a row may be shorter  */
    int sym;          /* 1: symmetric                                                     */
    uint8_t *codes;   /* [rows, cols]  one code per byte                                  */
    float *scales;    /* [rows, n_groups]                                                 */
    uint8_t *zeros;   /* [rows, n_groups]                                                 */
    int32_t *g_idx;   /* [cols]        g_idx[c] = c / group_size                          */
    int gtype;        /* 0: a plain level; else the SP_GT_* type (sp_gtype.h) it is exactly */
    int n_super;      /* K-quants: cols / 256; else 0                                      */
    float *mins;      /* [rows, n_groups] offsets m, or NULL (no gtype, Q3_K, Q6_K)       */
    float *supers;    /* [rows, n_super, 2] (d, dmin), or NULL (not a K-quant)            */
    void *mem_;       /* one allocation                                                   */
} sp_qlayer;

/* Allocate a layer (codes/scales/zeros zeroed, g_idx filled). group_size <= 0 means cols.
 * @return SP_EINVAL for bits outside 2..8 or non-positive shape; SP_ENOMEM. */
sp_status sp_qlayer_alloc(sp_qlayer *q, int rows, int cols, int bits, int group_size, int sym,
                          sp_err *err);
void sp_qlayer_free(sp_qlayer *q);

/* sp_qlayer_alloc with gtype: 0 is the plain level; otherwise one of sp_gtype_is_level's types,
 * and bits, group_size and sym must be the type's (sp_gtype_level). mins and supers are
 * allocated (zeroed) when the type has them.
 * @return SP_EINVAL (not a level type, shape or bits that are not the type's, cols not a
 *         multiple of its block); SP_ENOMEM. */
sp_status sp_qlayer_alloc_level(sp_qlayer *q, int rows, int cols, int bits, int group_size,
                                int sym, int gtype, sp_err *err);

/* W [rows, cols] <- dequantized weights. */
void sp_qlayer_dequant(float *W, const sp_qlayer *q);
/* W [r1 - r0, cols] <- dequantized rows r0 .. r1-1 (0 <= r0 <= r1 <= rows). */
void sp_qlayer_dequant_rows(float *W, const sp_qlayer *q, int r0, int r1);

/* ---- the quantizer (min-max, as the reference GPTQ's quant.py Quantizer) ------------------
 *
 * Per row r of a group (the group's columns of that row, n values x):
 *   xmin = min(min x, 0), xmax = max(max x, 0)
 *   sym:  xmax = max(|xmin|, xmax); xmin = −xmax when xmin < 0
 *   xmin = −1, xmax = +1 when both are 0
 *   s    = fp16((xmax − xmin) / maxq)         maxq = 2^bits − 1, fp16(): nearest fp16 value
 *                                             (ties to even), clamped to [2^−14, 65504]
 *   z    = sym ? 2^(bits−1) : clamp(rne(−xmin / s), 0, maxq)
 *   q    = clamp(rne(x / s) + z, 0, maxq),    deq = s · (q − z)
 * rne = round half to even (torch.round). mse = 1 adds the reference's shrink search (grid 100,
 * maxshrink 0.8, norm 2.4): for p = 1 − i/100, i < 80, the range (p·xmin, p·xmax) is tried and
 * the (s, z) with the smallest Σ|deq − x|^2.4 of the row (first one on ties) is kept.
 * Because s is rounded before z and q are computed, an fp16 export of s dequantizes exactly.
 *
 * Arithmetic: the _f32 functions do every step in float, exactly as torch float32 does; the
 * _f64 functions do them in double (used by GPTQ's double-precision mode). Σ|.|^2.4 is
 * accumulated in double in both. The sym quirk of the reference is kept: a row with no negative
 * value gets xmin = 0, s = xmax/maxq and z = 2^(bits−1), so values above ≈ xmax/2 clip.
 *
 * Thread-safety: every function below is a pure function of its arguments. */

/* Nearest fp16-representable value of x (round half to even; subnormals handled; ±inf beyond
 * the fp16 range; NaN stays NaN). */
double sp_quant_round_fp16(double x);

/* Parameters of one group for `rows` rows at once. Element (r, k), r < rows, k < n, of the
 * group is X[r·rs + k·cs] (rs = cols, cs = 1 for a row-major W; rs = 1, cs = rows for W stored
 * transposed). Writes scale[r·so] and zero[r·so]. Preconditions (not checked): bits in 2..8,
 * rows >= 1, n >= 1, finite X. No allocation. */
void sp_quant_params_f32(float *scale, uint8_t *zero, size_t so, const float *X, size_t rs,
                         size_t cs, int rows, int n, int bits, int sym, int mse);
void sp_quant_params_f64(float *scale, uint8_t *zero, size_t so, const double *X, size_t rs,
                         size_t cs, int rows, int n, int bits, int sym, int mse);

/* ---- scale search --------------------------------------------------------------------------
 * How a group's (s, z) is chosen (quantize --scale-search, sp_gptq_opts.mse):
 *   SP_QSEARCH_MINMAX  the min-max parameters above
 *   SP_QSEARCH_MSE     quant.py's --mse: shrink grid, least Σ_k |deq_k − x_k|^2.4
 *   SP_QSEARCH_HMSE    importance-weighted: the same shrink grid, least
 *                      Σ_k h_k (deq_k − x_k)²,  h_k = diag(H)_k of the group's column k: the
 *                      layer's output error tr(ΔW H ΔWᵀ) restricted to the diagonal of H (needs
 *                      a Hessian, so GPTQ only)
 *   SP_QSEARCH_GGUF    ggml's own scale rule for its symmetric legacy types (issue 11,
 *                      kernels/sp_gtype.h): d = fp16(v / −2^(bits−1)), v the group's value of
 *                      largest magnitude with its sign (8 bits: d = fp16(max|x| / 127)), zero
 *                      2^(bits−1); with sym and group 32 the level is Q4_0/Q5_0/Q8_0 exactly */
enum { SP_QSEARCH_MINMAX = 0, SP_QSEARCH_MSE = 1, SP_QSEARCH_HMSE = 2, SP_QSEARCH_GGUF = 3,
       SP_QSEARCH_COUNT };

/* "minmax", "mse", "hmse", "gguf"; NULL for other values. */
const char *sp_quant_search_name(int search);
/* The SP_QSEARCH_* value of a name, or -1. */
int sp_quant_search_parse(const char *name);

/* The grid search of the parameters for `rows` rows at once (layout as sp_quant_params_*):
 * the shrunk ranges p·(xmin, xmax), p = 1 − i/100, i < 80, of the adjusted min-max range are
 * tried and the first (s, z) with the least Σ_k wt[k]·|deq − x|^norm over the row's n values
 * is kept (wt NULL: all 1; wt[k] >= 0 finite). i = 0 is the min-max choice, so the weighted
 * error is never larger than min-max's. wt NULL with norm 2.4 is exactly mse = 1. norm > 0. */
void sp_quant_params_search_f32(float *scale, uint8_t *zero, size_t so, const float *X,
                                size_t rs, size_t cs, int rows, int n, int bits, int sym,
                                const double *wt, double norm);
void sp_quant_params_search_f64(float *scale, uint8_t *zero, size_t so, const double *X,
                                size_t rs, size_t cs, int rows, int n, int bits, int sym,
                                const double *wt, double norm);

/* Quantize one column: x[r] with its row's scale[r], zero[r] -> codes[r] (and deq[r] when deq
 * is not NULL), r < rows. Same preconditions. */
void sp_quant_column_f32(uint8_t *codes, float *deq, const float *x, const float *scale,
                         const uint8_t *zero, int rows, int bits);
void sp_quant_column_f64(uint8_t *codes, double *deq, const double *x, const float *scale,
                         const uint8_t *zero, int rows, int bits);

/* Round-to-nearest baseline: quantize W [rows, cols] (fp32, row-major) group by group with the
 * quantizer above (f32 arithmetic). group_size -1 means one group per row (cols). out is
 * allocated here (free with sp_qlayer_free); on failure it is left zeroed.
 * @return SP_OK; SP_EINVAL (bits outside 2..8, group_size 0 or < -1, rows/cols < 1, NULL);
 *         SP_ENUMERIC (NaN/Inf in W, the message gives the element); SP_ENOMEM. */
sp_status sp_quant_rtn(const float *W, int rows, int cols, int bits, int group_size, int sym,
                       int mse, sp_qlayer *out, sp_err *err);

#endif
