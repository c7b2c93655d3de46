/* sp_hessian.h — the GPTQ Hessian of one linear layer, accumulated in double.
 *
 * Shape legend: C = in features (size of H), n = rows of one batch X [n, C] (fp32, row-major,
 * one calibration token per row), N = rows added so far.
 *
 *   S = Σ_batches Xᵀ X   (raw sum, double, upper triangle: S[i·C + j] for j >= i)
 *   H = 2/N · S          (sp_hessian_finalize: full symmetric matrix)
 *
 * which is the reference gptq.py's running normalisation H ← H·N/(N+n) + 2/(N+n)·XᵀX, without
 * rescaling at every batch (the reference counts sequences, not tokens, in N: that scales H by
 * a constant, which leaves GPTQ's codes unchanged). Each batch is converted to double in
 * chunks of rows and added with one cblas_dsyrk per chunk (upper triangle only: C²·n flops).
 *
 * Distributed use: every rank accumulates its own S and N; the lead sums the raw buffers
 * (sp_hessian_sum, C² doubles, strict lower triangle always 0) and counts over ranks, writes
 * them back (the buffer is the caller's to modify; sp_hessian_set_count), and finalizes.
 *
 * Thread-safety: one accumulator per thread; distinct accumulators are independent.
 */
#ifndef SP_HESSIAN_H
#define SP_HESSIAN_H

#include <stddef.h>
#include <stdint.h>

#include "../common/sp_error.h"

typedef struct sp_hessian sp_hessian;

/* An empty accumulator for C = cols inputs (S = 0, N = 0). Memory: C² doubles + a conversion
 * buffer of max(64 MiB, 512 rows of C doubles).
 * @return SP_OK and *h (free with sp_hessian_free); SP_EINVAL (cols < 1, NULL); SP_ENOMEM. */
sp_status sp_hessian_create(sp_hessian **h, int cols, sp_err *err);

/* S += Xᵀ X, N += n for X [n, C] fp32 row-major. n = 0 is a no-op.
 * @return SP_OK; SP_EINVAL (NULL X with n > 0, already finalized); SP_ENUMERIC (NaN/Inf in X:
 *         the message names the element; S and N are then unchanged). */
sp_status sp_hessian_add(sp_hessian *h, const float *X, size_t n, sp_err *err);

/* Turn S into H = 2·S/N in place (both triangles filled, exactly symmetric) and return it
 * through *H_out (owned by h, valid until sp_hessian_free). After this, add is refused.
 * Calling it again returns the same matrix.
 * @return SP_OK; SP_EINVAL (N == 0: no rows were added). */
sp_status sp_hessian_finalize(sp_hessian *h, const double **H_out, sp_err *err);

/* The raw sum S [C, C] (upper triangle valid, strict lower 0) for reductions across ranks;
 * after finalize it is H. The caller may overwrite it (e.g. with the sum over ranks). */
double *sp_hessian_sum(sp_hessian *h);

/* Rows converted to double per dsyrk call (default max(512, 64 MiB / 8C)); tuning and tests.
 * @return SP_OK; SP_EINVAL (rows < 1); SP_ENOMEM (the old buffer is kept). */
sp_status sp_hessian_set_chunk(sp_hessian *h, size_t rows, sp_err *err);

/* N, the number of rows added (or set). */
uint64_t sp_hessian_count(const sp_hessian *h);

/* Replace N (e.g. with the total over ranks after reducing sp_hessian_sum). */
void sp_hessian_set_count(sp_hessian *h, uint64_t n);

/* C. */
int sp_hessian_cols(const sp_hessian *h);

void sp_hessian_free(sp_hessian *h);

#endif
