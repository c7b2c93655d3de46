/* sp_gtype.h — GGUF / ggml tensor types: block layouts, a round-to-nearest quantizer and the
 * dequantizer of each, and the exact packing of a shardpress quantized layer into them.
 *
 * A row of n values (n a multiple of the type's block length) is stored as n / block blocks,
 * little-endian, no padding between blocks (layouts as in the GGUF spec / ggml-common.h):
 *   F32   4 bytes per value                    F16   IEEE half per value
 *   Q4_0  32 values: fp16 d, u8 qs[16]          y = d·(q − 8),   q = 4-bit code
 *   Q4_1  32 values: fp16 d, fp16 m, u8 qs[16]  y = d·q + m
 *   Q5_0  32 values: fp16 d, u32 qh, u8 qs[16]  y = d·(q − 16),  q = 5-bit code
 *   Q5_1  32 values: fp16 d, fp16 m, u32 qh, u8 qs[16]   y = d·q + m
 *   Q8_0  32 values: fp16 d, i8 qs[32]          y = d·q
 *   Q4_K  256 values: fp16 d, fp16 dmin, u8 scales[12], u8 qs[128]; 8 sub-blocks of 32 with
 *         6-bit scale sc_j and 6-bit min m_j:   y = (d·sc_j)·q − (dmin·m_j)
 *   Q5_K  as Q4_K plus u8 qh[32] (the fifth bit)
 *   Q6_K  256 values: u8 ql[128], u8 qh[64], i8 scales[16], fp16 d; 16 sub-blocks of 16:
 *         y = (d·sc_j)·(q − 32), q = 6-bit code
 *   Q2_K  256 values: u8 scales[16], u8 qs[64], fp16 d, fp16 dmin; 16 sub-blocks of 16 with a
 *         4-bit scale (low nibble) and 4-bit min (high nibble):  y = (d·sc_j)·q − (dmin·m_j)
 *   Q3_K  256 values: u8 hmask[32], u8 qs[64], u8 scales[12], fp16 d; 16 sub-blocks of 16 with
 *         6-bit scales u_j:  y = (d·(u_j − 32))·(q − 4), q = 3-bit code
 *   Q2_0  64 values: fp16 d, u8 qs[16]           y = (q − 1)·d, q = 2-bit code (values
 *         −d, 0, d, 2d), value j in bits 2(j % 4)..2(j % 4)+1 of qs[j / 4]
 *   Q1_0  128 values: fp16 d, u8 qs[16]          y = bit ? d : −d, value j in bit j % 8 of
 *         qs[j / 8] (ggml 0.5's newer low-bit types, ggml-common.h block_q2_0 / block_q1_0)
 * 2-bit code placement (Q2_K, and the low two bits of Q3_K): value v = 128h + 32j + l (h < 2,
 * j < 4, l < 32) is bits 2j..2j+1 of qs[32h + l]; Q3_K's third bit is bit 4h + j of hmask[l].
 * Q3_K's scales: u_i & 15 is the low nibble of byte i (i < 8) or the high nibble of byte i − 8;
 * u_i >> 4 is bits 2(i/4)..2(i/4)+1 of byte 8 + i % 4.
 * Nibble order of qs in Q4_0/Q4_1/Q5_*: byte j holds value j (low) and value j + 16 (high); the
 * 5th bits of Q5_0/Q5_1 are bit j (value j) and bit j + 16 (value j + 16) of qh. K-quants pair
 * sub-blocks 2i and 2i+1 in the low and high nibbles of a 32-byte run (see sp_gtype.c).
 * Every product is an fp32 product in the order written above, as ggml's reference dequantizer
 * computes it, so a dequantization here and ggml's to_float give the same bits.
 *
 * Quantizers (round-to-nearest, shardpress's own choice of scales; the format is ggml's):
 *   Q4_0/Q5_0  d = fp16(v / −2^(b−1)), v the value of largest magnitude (its sign kept), so v
 *              gets code 0 and the full 2^b codes are used; q = clamp(rne(x/d) + 2^(b−1))
 *   Q8_0       d = fp16(max|x| / 127), q = clamp(rne(x/d), −128, 127)
 *   Q4_1/Q5_1  d = fp16((max − min) / (2^b − 1)), m = fp16(min), q = clamp(rne((x − m)/d))
 *   Q4_K/Q5_K  per sub-block min' = min(min, 0), s_j = (max − min')/(2^b − 1), m_j = −min';
 *              d = fp16(max s_j / 63), dmin = fp16(max m_j / 63), sc_j = rne(s_j/d),
 *              mm_j = rne(m_j/dmin) (clamped to 0..63), then q = clamp(rne((x + dmin·mm_j)/(d·sc_j)))
 *   Q6_K       s_j = v_j / −32 (v_j as for Q4_0), d = fp16(s / −128) with s the s_j of largest
 *              magnitude, sc_j = clamp(rne(s_j/d), −128, 127), q = clamp(rne(x/(d·sc_j)) + 32)
 *   F16        nearest fp16 (ties to even)
 *   Q2_K/Q3_K/Q2_0/Q1_0  sp_gtype_block_params with unit weights (below): for Q2_0/Q1_0 the
 *              d of least squared error over every fp16 value (llama.cpp's own rule is
 *              d = max|x| for Q2_0, so its code 3 (2d) is never used, and mean|x| for Q1_0)
 *
 * Thread-safety: pure functions.
 */
#ifndef SP_GTYPE_H
#define SP_GTYPE_H

#include <stddef.h>
#include <stdint.h>

#include "common/sp_error.h"
#include "kernels/sp_quant.h"

/* The ggml_type numbers (they are stored in GGUF files). */
enum {
    SP_GT_F32 = 0, SP_GT_F16 = 1, SP_GT_Q4_0 = 2, SP_GT_Q4_1 = 3, SP_GT_Q5_0 = 6,
    SP_GT_Q5_1 = 7, SP_GT_Q8_0 = 8, SP_GT_Q2_K = 10, SP_GT_Q3_K = 11, SP_GT_Q4_K = 12,
    SP_GT_Q5_K = 13, SP_GT_Q6_K = 14, SP_GT_Q1_0 = 41, SP_GT_Q2_0 = 42
};

/* "F32", "Q4_K", ...; NULL for a number that is not one of the above. */
const char *sp_gtype_name(int type);
/* The type of a name (case-insensitive), or -1. */
int sp_gtype_parse(const char *name);
/* Every type's name in table order (F32 F16 Q4_0 ... Q6_K), separated by sep, into buf
 * (always terminated; truncated when cap is too small); quantized_only leaves out F32/F16.
 * Help texts and error messages take their lists from here, so a new type is listed
 * everywhere. @return the length the full list needs (as snprintf). */
size_t sp_gtype_names(char *buf, size_t cap, const char *sep, int quantized_only);
/* Values per block (1 for F32/F16, 32 legacy, 256 K-quants); 0 for an unknown type. */
int sp_gtype_block(int type);
/* Bytes per block; 0 for an unknown type. */
size_t sp_gtype_block_bytes(int type);
/* Bytes of a row of n values; 0 when n is not a multiple of the block (or type unknown). */
size_t sp_gtype_row_bytes(int type, int64_t n);
/* Bits per weight of the type including its scales (e.g. 4.5 for Q4_0). */
double sp_gtype_bpw(int type);

/* Quantize one row x[n] (finite) into dst (sp_gtype_row_bytes(type, n) bytes).
 * @return SP_OK; SP_EINVAL (n not a multiple of the block, unknown type). */
sp_status sp_gtype_quantize_row(int type, const float *x, int64_t n, void *dst, sp_err *err);

/* Dequantize one row (the ggml products, see above) into y[n]. Unknown types: y is left
 * untouched and SP_EUNSUPPORTED returned. */
sp_status sp_gtype_dequant_row(int type, const void *src, int64_t n, float *y, sp_err *err);

/* ---- shardpress levels that are GGUF types exactly ------------------------------------------
 * A symmetric level with 32-column groups, zero point 2^(b−1) and b = 4, 5 or 8 is Q4_0, Q5_0
 * or Q8_0 with d = the group's scale: ggml's y = d·(q − z) is the container's s·(q − z).      */

/* The exact type of a level (bits, group_size, sym, cols), or -1. */
int sp_gtype_exact_of_level(int bits, int group_size, int sym, int cols);

/* Pack row r of q into dst in type (which must be sp_gtype_exact_of_level of q).
 * @return SP_EINVAL when q is not exactly representable (a zero other than 2^(b−1), a scale
 *         that is not fp16-exact), naming the row. */
sp_status sp_gtype_pack_qrow(int type, const sp_qlayer *q, int r, void *dst, sp_err *err);

/* GPTQ's group parameters for an exact legacy type (the quantizer inside GPTQ): scale[r·so]
 * and zero[r·so] for rows r < rows of a group of n values, element (r, k) at X[r·rs + k·cs]
 * (sp_quant_params_f32 layout): d = fp16(v / −2^(b−1)) (Q8_0: fp16(max|x| / 127)), zero
 * 2^(b−1). A group of zeros gets d = 1. No allocation. */
void sp_gtype_params_f32(float *scale, uint8_t *zero, size_t so, const float *X, size_t rs,
                         size_t cs, int rows, int n, int bits);
void sp_gtype_params_f64(float *scale, uint8_t *zero, size_t so, const double *X, size_t rs,
                         size_t cs, int rows, int n, int bits);
/* The same rule with a weighted shrink search, as SP_QSEARCH_HMSE does for the min-max grid:
 * d_p = fp16(p · d), p = 1 − i/100, i < 80, and the first d_p with the least
 * Σ_k wt[k] (x_k − d_p·(q_k − z))² over the group (wt[k] >= 0, e.g. diag(H) of its columns) is
 * kept; i = 0 is the plain rule, so the weighted error is never larger. GPTQ uses it when
 * sp_gptq_opts.mse is SP_QSEARCH_GGUF. */
void sp_gtype_params_search_f32(float *scale, uint8_t *zero, size_t so, const float *X,
                                size_t rs, size_t cs, int rows, int n, int bits,
                                const double *wt);
void sp_gtype_params_search_f64(float *scale, uint8_t *zero, size_t so, const double *X,
                                size_t rs, size_t cs, int rows, int n, int bits,
                                const double *wt);

/* ---- GGUF types as GPTQ levels (issue 11; sp_gtype_level.c) ------------------------------------
 * Every quantized type is a level: bits b, group = its sub-block, and a zero point z:
 *   Q4_0 4/32 z 8     Q5_0 5/32 z 16    Q8_0 8/32 z 128   (plain levels: gtype 0, see above)
 *   Q4_1 4/32 z 0 +m  Q5_1 5/32 z 0 +m  Q2_K 2/16 z 0 +m  Q3_K 3/16 z 4
 *   Q4_K 4/32 z 0 +m  Q5_K 5/32 z 0 +m  Q6_K 6/16 z 32
 *   Q2_0 2/64 z 1     Q1_0 1/128 z 0 +m (s = 2d, m = −d: y = 2d·q − d is ±d exactly)
 * and y = s·(q − z) + m per sub-block (sp_quant.h). "+m": the type has an offset (Q4_1/Q5_1: m
 * fp16; K-quants: m = −dmin·mm). The K-quants' s are d·sc with one fp16 d per 256 values: so
 * GPTQ must fix a whole super-block's scales before it quantizes the super-block's first
 * column (sp_gtype_block_params, called by GPTQ at every 256th column). */

/* 1 for the types stored as gtype levels (Q4_1, Q5_1, Q2_K … Q6_K, Q2_0, Q1_0); 0 otherwise.
 * Q1_0 is the one 1-bit level: the bit-width checks elsewhere admit 1 only for it. */
int sp_gtype_is_level(int type);
/* bits, group (sub-block) and sym (z = 2^(b−1)) of any quantized type; 0s for F32/F16. */
void sp_gtype_level(int type, int *bits, int *group, int *sym);
/* 1 when the type has an offset m (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K, Q1_0). */
int sp_gtype_has_min(int type);
/* The zero point z of a quantized type (see the table). */
int sp_gtype_zero(int type);

/* One block's parameters: per sub-block j < block / group, the level's s_j, z_j, m_j and
 * ggml's integers (sc_j, mm_j: K-quants; Q3_K: sc_j = u_j − 32); d, dmin of the block
 * (K-quants; legacy: d = s_0, dmin = m_0). */
typedef struct {
    float scale[16], min[16];
    uint8_t zero[16];
    int sc[16], mm[16];
    float d, dmin;
} sp_gtype_params;

/* The parameters of one block x[block] of a gtype level (or Q4_0/Q5_0/Q8_0) that minimise, as
 * far as the search goes, the weighted error Σ_k wt[k] (x_k − y_k)² (wt NULL: all 1; GPTQ
 * passes R_jj² of the block's columns, the per-column loss of GPTQ with compensation; see
 * sp_gtype_level.c). The search, per type (DESIGN in sp_gtype_level.c):
 *   sub-blocks   a shrink grid over the sub-block's range (80 steps, as SP_QSEARCH_HMSE), then
 *                a weighted least-squares refit of (s, m) on the codes it gave, kept when better;
 *   super-block  d = fp16(max s_j / S) (sym types: the s_j of largest magnitude over −S), sc_j
 *                the nearest integers, then sc_j − 1, sc_j, sc_j + 1 (and the same for mm_j)
 *                tried per sub-block against the weighted error.
 *   Q2_0, Q1_0   one fp16 d per block, chosen exactly: the least weighted error over every
 *                finite fp16 value (sp_gtype_level.c, "Q2_0 / Q1_0"); an all-zero block gets
 *                d = −0, which both dequantizers read as +0 everywhere.
 * Pure; x finite. */
void sp_gtype_block_params(int type, const float *x, const double *wt, sp_gtype_params *p);

/* The code of x for (s, z, m) — clamp(rne((x − m) / s) + z, 0, 2^b − 1), z when s is 0 — and,
 * in *deq, s·(q − z) + m rounded as the dequantizer does. */
int sp_gtype_code(float x, float s, int z, float m, int maxq, float *deq);

/* Pack row r of a gtype level q into dst (sp_gtype_row_bytes(q->gtype, q->cols) bytes): the
 * integers are recovered from s, m and the super-block scales, and every value is checked to
 * be exactly the type's (what the container's reader validates with). dst NULL: check only
 * (codes are not read).
 * @return SP_EINVAL naming the row, the group and the value that is not the type's. */
sp_status sp_gtype_pack_level_row(const sp_qlayer *q, int r, void *dst, sp_err *err);

/* Round-to-nearest into a gtype level: W [rows, cols] fp32 row-major, each block's parameters
 * from sp_gtype_block_params with unit weights. out allocated here (free with sp_qlayer_free).
 * @return SP_EINVAL (not a level type, cols not a multiple of its block); SP_ENUMERIC (NaN/Inf
 *         in W); SP_ENOMEM. */
sp_status sp_gtype_rtn_level(const float *W, int rows, int cols, int gtype, sp_qlayer *out,
                             sp_err *err);

/* Quantize one row x[n] into dst like sp_gtype_quantize_row, but each block's parameters from
 * sp_gtype_block_params (the weighted search; wt[n] or NULL for unit weights) instead of the
 * min-max rule: what export --match-gguf uses for token_embd/output. F32/F16: as
 * sp_gtype_quantize_row. @return SP_EINVAL (n not a multiple of the block). */
sp_status sp_gtype_quantize_row_search(int type, const float *x, int64_t n, const double *wt,
                                       void *dst, sp_err *err);

/* Write one block of type from its parameters and codes q[block] (sp_gtype.c). */
void sp_gtype_put_block(int type, const sp_gtype_params *p, const int *q, uint8_t *dst);

#endif
