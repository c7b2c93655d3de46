/* sp_hacc.h — reproducible Hessian accumulation for distributed calibration.
 *
 * GPTQ needs H = 2/N · Σ_t x_t x_tᵀ over all N calibration tokens of a linear layer's input
 * (x_t ∈ R^n). Tokens are spread over ranks, and floating-point sums depend on their order, so
 * a plain MPI_Allreduce of double partial sums gives a slightly different H for 1, 2 or 4 ranks
 * — enough to flip GPTQ codes. shardpress instead makes the sum exact:
 *
 *   1. For each window w (T tokens), S_w = X_wᵀ X_w is computed in double with BLAS (same
 *      shapes every time, so S_w is the same bits on any rank).
 *   2. Each entry is rounded once to an integer multiple of a fixed grid g (a power of two):
 *      A += llrint(S_w / g). Integer sums are exact and associative, so partial sums can be
 *      combined in any order — MPI_Allreduce(MPI_INT64_T, MPI_SUM) — with the same result.
 *   3. H = 2 · A · g / N.
 *
 * The grid comes from an a-priori bound B ≥ |x_ti| supplied by the caller (derived from the
 * weights: see pipeline/quantize/sp_quantize.c): |Σ S_w[i][j]| ≤ N·B², so g = 2^(ceil(log2(N·B²)) − 61)
 * keeps every partial sum below 2^62 (no overflow, whatever the order). Precision is then
 * 61 bits below N·B² — finer than the fp32 Hessian of the reference GPTQ for any bound within
 * 2^18 of the true maximum. A window whose entries exceed the bound is rejected (SP_EINTERNAL)
 * rather than silently overflowing.
 *
 * Memory: A is the packed upper triangle, n(n+1)/2 int64 (half of a dense double H: 3.3 GB
 * for the 28672-wide down_proj input of a 70B model). Only ranks that quantize modules reading
 * this Hessian call sp_hacc_take, which grows A in place into the full n² double H. Products
 * are formed in panels of SP_HACC_PANEL columns (dgemm above the panel's diagonal block, dsyrk
 * for the block itself: only the upper triangle is computed), so the double scratch is
 * O(T·n + n·panel).
 *
 * Thread-safety: one accumulator per thread. The MPI reduction is collective over its comm.
 */
#ifndef SP_HACC_H
#define SP_HACC_H

#include <mpi.h>
#include <stdint.h>

#include "common/sp_error.h"

#define SP_HACC_PANEL 512

typedef struct {
    int n;                /* dimension of the inputs x ∈ R^n                          */
    double grid;          /* value of one integer unit g (a power of two)             */
    double bound;         /* B: a-priori bound on |x|                                 */
    int64_t rows;         /* tokens accumulated on this rank (all ranks after reduce) */
    int64_t *acc;         /* packed upper triangle: row i holds entries j = i..n-1    */
    double *xd;           /* [max_rows, n] double copy of a window                     */
    double *panel;        /* [n, SP_HACC_PANEL] one panel of X_wᵀ X_w                   */
    int max_rows;
    struct sp_cuda_hacc *gpu; /* non-NULL: windows go to the device (sp_hacc_use_cuda)      */
} sp_hacc;

/* Prepare an accumulator for inputs of dimension n, windows of up to max_rows tokens, at most
 * total_rows tokens over all ranks, and |x| <= bound.
 * @return SP_OK; SP_EINVAL (bad sizes or non-finite/non-positive bound); SP_ENOMEM. */
sp_status sp_hacc_init(sp_hacc *h, int n, int max_rows, int64_t total_rows, double bound,
                       sp_err *err);
void sp_hacc_free(sp_hacc *h);

/* A += round(X_wᵀ X_w / g). X [rows, n] fp32 row-major, rows <= max_rows.
 * @return SP_OK; SP_EINTERNAL when an input exceeds the bound (the accumulator is then
 *         unusable); SP_ENUMERIC on NaN/Inf. */
sp_status sp_hacc_add(sp_hacc *h, const float *X, int rows, sp_err *err);

/* Move the accumulation to a GPU (kernels/cuda/sp_cuda.h): call right after sp_hacc_init,
 * before any window. sp_hacc_add then computes X_wᵀX_w on the device (cuBLAS dgemm) and
 * rounds it to the same grid into a device int64 accumulator; sp_hacc_allreduce first adds
 * that into the host accumulator, so the reduction and everything after it are unchanged.
 * The host window scratch is freed. @return SP_OK; SP_EUNSUPPORTED without the CUDA build;
 * CUDA errors (SP_ENOMEM, SP_EINTERNAL). On failure the accumulator stays on the CPU. */
struct sp_cuda;
sp_status sp_hacc_use_cuda(sp_hacc *h, struct sp_cuda *g, sp_err *err);

/* Collective over comm: sum the integer accumulators and row counts of all ranks (exact).
 * Every rank ends with the global sums. The window scratch is freed first: sp_hacc_add
 * refuses (SP_EINVAL) after it. */
sp_status sp_hacc_allreduce(sp_hacc *h, MPI_Comm comm, sp_err *err);

/* Offset of entry (i, j), i <= j, in the packed upper triangle. */
static inline size_t sp_hacc_index(int n, int i, int j) {
    return (size_t)i * (size_t)n - (size_t)i * (size_t)(i - 1) / 2 + (size_t)(j - i);
}

/* H = 2·A·g / rows as a full symmetric double [n, n] matrix (malloc'ed: free() it), or NULL
 * when it cannot be allocated (err filled). The accumulator is left as it was. */
double *sp_hacc_finalize(const sp_hacc *h, sp_err *err);

/* The same H, built in the accumulator's own memory (realloc to n² doubles, expanded in
 * place): the peak is n² doubles instead of n² + n(n+1)/2 — 6.6 instead of 9.9 GB for a 70B
 * down_proj. Consumes the accumulator (it is freed, as by sp_hacc_free, success or not).
 * @return H (free() it), or NULL with err filled (SP_ENOMEM). */
double *sp_hacc_take(sp_hacc *h, sp_err *err);

#endif
