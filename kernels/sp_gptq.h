/* sp_gptq.h — GPTQ (Frantar et al. 2022) for one linear layer, one Cholesky for every bit width.
 *
 * Shape legend
 *   R   rows of W = out features          C   columns of W = in features = size of H
 *   B   lazy-batch block (columns)        gs  group size (columns), G = ceil(C / gs)
 *
 * Inputs: W [R, C] fp32 row-major and the layer's Hessian H = 2/n · Σ x xᵀ [C, C] in double
 * (full symmetric matrix, as sp_hacc_finalize returns it). The result is the reference
 * gptq.py `fasterquant` (IST-DASLab), with its choices:
 *   dead   columns with H[i,i] == 0: H[i,i] = 1 and W[:, i] = 0
 *   act_order: columns processed in the order of decreasing diag(H) (stable sort: ties keep
 *          the original order); groups are then static: the parameters of group g (original
 *          columns g·gs ..) come up front from W (dead columns zeroed), as static_groups=True
 *   no act_order: the parameters of group g are found when the loop reaches column g·gs,
 *          from W as the reference holds it then: updated by every block before the current
 *          one but not by the columns already done inside the current block (the reference
 *          reads W, not its working copy W1). So the block size B matters when gs is not a
 *          multiple of B; with the default B = gs = 128 it does not.
 *   group_size -1 (one group per row) is group_size = C; its parameters come from W after the
 *          dead columns are zeroed (the reference takes them before: a difference only for
 *          dead columns, whose inputs are always 0).
 *   mse    SP_QSEARCH_HMSE: each group's (s, z) minimises Σ_k diag(H)_k (w_k − q_k)² over the
 *          shrink grid, w the group's weights as above (static groups: W; lazy groups: W at
 *          the block start) and diag(H) undamped (dead columns: 1, their weights are 0).
 *   mse    SP_QSEARCH_GGUF (issue 11): ggml's scale rule for Q4_0/Q5_0/Q8_0 (sp_gtype.h), with
 *          a weighted shrink search over fp16(p·d), weights R_jj² of the columns' positions
 *          (GPTQ's per-column loss with compensation, sp_gtype_level.c; diag(H) on a GPU
 *          context); use with sym and gs = 32.
 *   damping λ = damp · mean(diag H) (after the dead fix) on the diagonal; if the Cholesky
 *          factorization fails, damp is multiplied by 10 and retried (up to 4 times).
 *
 * How it is computed (same result in exact arithmetic, fewer flops): the reference needs U,
 * the upper Cholesky factor of H⁻¹ (H⁻¹ = UᵀU), and runs, column by column,
 *   e_j = (w̃_j − q_j) / U_jj,   w̃_k −= e_j U_jk  (k > j),   q_j = quant(w̃_j).
 * U = R⁻¹ where H = R Rᵀ with R upper ("reverse" Cholesky: R = J·chol(J H J)·J, J the order
 * reversal). Writing Δ = W − Q (original minus dequantized weights), e = Δ R and so
 *   w̃_j = W_j + A_j / R_jj,   A_j = Σ_{m<j} Δ_m R_mj,
 * a forward substitution with R: no inverse is formed (one potrf, C³/3 flops, instead of the
 * reference's Cholesky + inverse + Cholesky, 4/3·C³). A is accumulated with lazy batch
 * updates: for each panel of 256 columns one left-looking gemm over all finished columns
 * (A[:, p1:p2] = Δ[:, :p1] · R[:p1, p1:p2], the O(R·C²) part), then right-looking gemms after
 * each block of B columns and each sub-block of 16, rank-1 updates inside a sub-block.
 * The reference's block-start weights needed by the lazy group parameters are
 * W_c + Σ_{i1<=m<=c} A0_m U_mc, with U's diagonal block from a small trtri.
 * Rows are independent in GPTQ: they are processed in chunks of 1024, which bounds the
 * working memory.
 *
 * Precision: SP_GPTQ_F32 (default) factorizes (H + λI) in float and runs the loop in float
 * with sgemm (the reference runs in float32 too); SP_GPTQ_F64 does everything in double (dgemm,
 * about half the speed) and is what the tests compare code for code with a plain
 * implementation of the reference algorithm (same code, instantiated for double).
 *
 * Cost (2 flops per multiply-add): potrf C³/3 + R·C·(C − 1) for the updates (every column
 * pair j < k, one multiply-add per row) + O(R·C) quantization, + O(R·C·gs) for lazy groups.
 */
#ifndef SP_GPTQ_H
#define SP_GPTQ_H

#include "common/sp_error.h"
#include "kernels/sp_quant.h"

enum { SP_GPTQ_F32 = 0, SP_GPTQ_F64 = 1 };

typedef struct {
    double damp;     /* percdamp: λ = damp · mean(diag H); > 0. Default 0.01                 */
    int block;       /* lazy-batch block B, columns, >= 1. Default 128                        */
    int group_size;  /* >= 1, or -1 for one group per row. Default 128                         */
    int act_order;   /* 1: decreasing diag(H) order, static groups. Default 0                 */
    int sym;         /* 1: symmetric quantizer. Default 0                                      */
    int mse;         /* group parameter search, SP_QSEARCH_* (sp_quant.h): 0 min-max, 1 the  *
                      * quantizer's MSE shrink search, 2 the diag(H)-weighted one. Default 0  */
    int precision;   /* SP_GPTQ_F32 or SP_GPTQ_F64. Default SP_GPTQ_F32                       */
    struct sp_cuda *gpu; /* non-NULL (and SP_GPTQ_F32): factor and quantize on this GPU      *
                      * (kernels/cuda/sp_cuda.h); the layer error stays on the CPU. F64 runs *
                      * on the CPU whatever this says. Default NULL                          */
} sp_gptq_opts;

/* What prepare found and used. */
typedef struct {
    int cols;        /* C                                                                     */
    int n_dead;      /* columns with H[i,i] == 0                                              */
    int retries;     /* failed factorizations before the one that worked                      */
    double damp;     /* relative damping actually used (opts.damp · 10^retries)              */
    double lambda;   /* absolute damping added to the diagonal: damp · mean(diag H)          */
} sp_gptq_info;

typedef struct sp_gptq_ctx sp_gptq_ctx;

/* Defaults listed in sp_gptq_opts. */
void sp_gptq_opts_default(sp_gptq_opts *o);

/* Everything that depends on H only: dead columns, order, damping, factorization (with the
 * damp retries). Done once per layer, then used for every bit width.
 * H [cols, cols] must be symmetric with both triangles filled. The context keeps a pointer to
 * H (not a copy) for the layer error of sp_gptq_quantize: H must stay alive and unchanged
 * while the context is used with layer_err_out != NULL. opts NULL means the defaults.
 * Memory: cols² floats (F32) or doubles (F64), plus O(cols) (+ cols doubles with HMSE).
 * @return SP_OK and *ctx (free with sp_gptq_free); SP_EINVAL (bad option, cols < 1, NULL);
 *         SP_ENUMERIC (NaN/Inf in H, mean of diag(H) <= 0, or H + λI not positive definite
 *         even after the retries — the message gives the last damp); SP_ENOMEM.
 *         On failure *ctx is NULL. */
sp_status sp_gptq_prepare(sp_gptq_ctx **ctx, const double *H, int cols, const sp_gptq_opts *o,
                          sp_err *err);

/* Quantize W [rows, ctx cols] (fp32 row-major, not modified) to `bits` bits into out
 * (allocated here, codes/scales/zeros in the original column order, g_idx = c / gs; free with
 * sp_qlayer_free; left zeroed on failure). When layer_err_out is not NULL it receives
 * tr(ΔW H ΔWᵀ) with the undamped H given to prepare, ΔW = W − dequant(out)
 * (sp_gptq_layer_error: 2·rows·cols² more double flops).
 * Thread-safety: ctx is read-only here, so several threads may quantize with one ctx at once
 * (e.g. one bit width each); the BLAS must be thread-safe (OpenBLAS is).
 * Memory, besides out: about (C + 256 + 2·gs)·min(rows, 1024) floats (F32) or doubles (F64)
 * + C·min(rows, 1024) bytes.
 * @return SP_OK; SP_EINVAL (bits outside 2..8, rows < 1, NULL); SP_ENUMERIC (NaN/Inf in W —
 *         the message names the element); SP_ENOMEM; SP_EINTERNAL (a LAPACK call failed on a
 *         block that should be invertible). */
sp_status sp_gptq_quantize(const sp_gptq_ctx *ctx, const float *W, int rows, int bits,
                           sp_qlayer *out, double *layer_err_out, sp_err *err);

/* sp_gptq_quantize at a GGUF-type level (issue 11, kernels/sp_gtype.h): gtype 0 is
 * sp_gptq_quantize; otherwise one of sp_gtype_is_level's types, bits its bits, the context's
 * cols a multiple of its block. The level's group size and sym are the type's (the context's
 * group_size, sym and mse are not used): at the first column of every block of the type — 256
 * columns for the K-quants, so several groups at once — the block's parameters come from
 * sp_gtype_block_params with the weights R_jj² of its columns (diag(H) on a GPU context), from
 * W as GPTQ holds it then
 * (as for lazy groups, sp_gptq.h; with act_order from the original W). out gets mins and
 * supers. CPU only. @return as sp_gptq_quantize; SP_EUNSUPPORTED on a GPU context.
 * group_size (gtype 0 only): 0 keeps the context's; >= 1, or -1 for one group per row, gives
 * this level its own groups ("4g128" in quantize --levels) on the same factor: the sweep is
 * the same, only where a group's (scale, zero) is fixed moves. CPU only when it differs from
 * the context's. */
sp_status sp_gptq_quantize_level(const sp_gptq_ctx *ctx, const float *W, int rows, int bits,
                                 int gtype, int group_size, sp_qlayer *out,
                                 double *layer_err_out, sp_err *err);

/* What prepare found (see sp_gptq_info). */
void sp_gptq_get_info(const sp_gptq_ctx *ctx, sp_gptq_info *info);

void sp_gptq_free(sp_gptq_ctx *ctx);

/* *out = tr(ΔW H ΔWᵀ) = Σ_r δ_r H δ_rᵀ, δ_r = W[r,:] − deq[r,:], in double (dgemm over blocks
 * of rows). W, deq [rows, cols] fp32; H [cols, cols] double, symmetric, both triangles.
 * @return SP_OK; SP_EINVAL (NULL, shape < 1); SP_ENOMEM. */
sp_status sp_gptq_layer_error(const float *W, const float *deq, const double *H, int rows,
                              int cols, double *out, sp_err *err);

/* tr(W H Wᵀ), the layer's output energy on the calibration inputs: the natural scale for a
 * relative layer error (layer_err / energy). Same cost as sp_gptq_layer_error.
 * @return the value, or NaN for NULL/empty arguments or when memory runs out. */
double sp_gptq_weight_energy(const float *W, const double *H, int rows, int cols);

#endif
