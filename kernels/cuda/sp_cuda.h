/* sp_cuda.h — the optional GPU path (issue 14): one rank drives one GPU through this C API.
 *
 * Built with -DSP_CUDA=ON (CMake defines SP_HAVE_CUDA): the .cu files of kernels/cuda/ implement
 * it with the CUDA runtime, cuBLAS and cuSOLVER. Without it sp_cuda_stub.c provides the same
 * functions: sp_cuda_built() is 0, sp_cuda_device_count() is 0 and every constructor fails with
 * SP_EUNSUPPORTED, so the CPU build links and behaves as before. Callers never include CUDA
 * headers; the handles below are opaque.
 *
 * Three users, each opt-in through a pointer that is NULL on the CPU path:
 *   forward   sp_block_scratch.gpu: the block's seven linears run as cuBLAS sgemm
 *             (sp_cuda_linear); norms, RoPE, attention and SwiGLU stay on the CPU.
 *   Hessians  sp_hacc_use_cuda: X_wᵀX_w in double (cuBLAS dgemm) and the same integer-grid
 *             rounding as sp_hacc.c into an int64 accumulator kept on the device; it is copied
 *             into the host accumulator before the MPI reduction, so the reduction is exact and
 *             rank-count independent exactly as on the CPU.
 *   GPTQ      sp_gptq_opts.gpu: the Cholesky of H + λI with cuSOLVER (spotrf), the lazy blocked
 *             updates with cuBLAS sgemm, and one kernel per block of B columns for the column
 *             loop and the group quantizer (sp_cuda_gptq.cu).
 *
 * Determinism: every product is one cuBLAS call whose shapes depend only on the data's shapes,
 * on one stream, atomics disallowed: cuBLAS then gives the same bits run to run on GPUs of the
 * same model. Across GPU ranks results are therefore rank-count independent as on the CPU; GPU
 * and CPU results differ in the last bits (different summation orders), see
 * docs/architecture.md "CUDA path (issue 14)".
 *
 * Thread-safety: a handle serialises its own calls with a mutex (one stream), so several
 * threads may share one; they then run one after the other.
 */
#ifndef SP_CUDA_H
#define SP_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "common/sp_error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sp_cuda sp_cuda;             /* one device, stream, cuBLAS/cuSOLVER handles */
typedef struct sp_cuda_hacc sp_cuda_hacc;   /* a Hessian accumulator on the device         */
typedef struct sp_cuda_gptq sp_cuda_gptq;   /* one layer's GPTQ factor on the device        */

/* 1 when built with SP_CUDA, else 0. */
int sp_cuda_built(void);

/* Visible CUDA devices (after CUDA_VISIBLE_DEVICES); 0 without the build, a driver or a GPU. */
int sp_cuda_device_count(void);

/* The local rank from the launcher's environment: OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID,
 * MPI_LOCALRANKID, PMI_LOCAL_RANK (first one set and valid), else -1. */
int sp_cuda_env_local_rank(void);

/* Which device a rank uses: local_rank mod n_devices (n_devices >= 1; local_rank < 0 is 0).
 * With CUDA_VISIBLE_DEVICES set per rank by the launcher, every rank sees one device: 0. */
int sp_cuda_pick(int local_rank, int n_devices);

/* Open device `ordinal`: context, one stream, cuBLAS (pointer mode host, atomics disallowed,
 * default math: true fp32, no TF32) and cuSOLVER handles.
 * @return SP_OK; SP_EUNSUPPORTED (built without CUDA); SP_EINVAL (no such device); SP_ENOMEM
 *         or SP_EINTERNAL (a CUDA call failed: the message names it). */
sp_status sp_cuda_open(sp_cuda **out, int ordinal, sp_err *err);
void sp_cuda_close(sp_cuda *g);

/* Name (e.g. "NVIDIA H200"), total and free memory in bytes of the opened device. */
void sp_cuda_describe(const sp_cuda *g, char *name, size_t cap, size_t *total, size_t *free_b);

/* The first error of an operation that could not report it (sp_cuda_linear called from the
 * void forward pass): SP_OK, or the code with its message copied into err; cleared. */
sp_status sp_cuda_take_error(sp_cuda *g, sp_err *err);

/* ---- forward --------------------------------------------------------------------------------
 * out [T, n_out] (=|+=) x [T, n_in] · Wᵀ (+ bias), W row-major [n_out, n_in], as
 * sp_linear_forward (kernels/sp_ops.h), on the GPU: x, W (and out when accumulating) are
 * copied in, one cublasSgemm, out copied back. With the weight cache on, W is copied once per
 * host address and kept. On a CUDA failure the product is done by sp_linear_forward instead
 * (same values up to rounding) and the error is latched for sp_cuda_take_error. */
void sp_cuda_linear(sp_cuda *g, float *out, const float *x, const float *w, const float *bias,
                    size_t T, size_t n_in, size_t n_out, int accumulate);

/* Weight cache: on = 1 keeps every W given to sp_cuda_linear on the device, keyed by its host
 * address, until sp_cuda_cache_weights(g, 0) drops them all. The caller promises that the
 * weights at those addresses do not change while it is on (eval: one block, all windows). */
void sp_cuda_cache_weights(sp_cuda *g, int on);

/* ---- Hessians -------------------------------------------------------------------------------
 * The device half of sp_hacc (kernels/sp_hacc.h; use sp_hacc_use_cuda rather than these).
 * acc += round(X_wᵀX_w / grid) entry by entry on the packed upper triangle, as sp_hacc_add,
 * with the same bound check (|entry| <= rows·bound²) and the same rounding (ties to even). */
sp_status sp_cuda_hacc_new(sp_cuda_hacc **out, sp_cuda *g, int n, int max_rows, double grid,
                           double bound, sp_err *err);
/* X [rows, n] fp32 row-major on the host. SP_ENUMERIC on NaN/Inf (names token and channel),
 * SP_EINTERNAL on a bound violation (names the entry), as sp_hacc_add. */
sp_status sp_cuda_hacc_add(sp_cuda_hacc *h, const float *X, int rows, sp_err *err);
/* acc_host[k] += device acc[k] for the n(n+1)/2 packed entries, then the device memory goes. */
sp_status sp_cuda_hacc_download(sp_cuda_hacc *h, int64_t *acc_host, sp_err *err);
void sp_cuda_hacc_free(sp_cuda_hacc *h);

/* ---- GPTQ -----------------------------------------------------------------------------------
 * The device half of sp_gptq (kernels/sp_gptq.h; used through sp_gptq_opts.gpu). */
typedef struct {
    int cols;               /* C                                                          */
    int gs;                 /* group size, resolved (>= 1)                                */
    int block;              /* B (>= 1)                                                   */
    int act_order, sym, mse;
    const int32_t *perm;    /* [C] host: position j processes original column perm[j]    */
    const int32_t *invperm; /* [C]                                                        */
    const uint8_t *dead;    /* [C] 1 where H[i,i] == 0                                    */
    const double *hdiag;    /* [C] diag(H) (dead: 1), needed with mse == SP_QSEARCH_HMSE  */
} sp_cuda_gptq_desc;

sp_status sp_cuda_gptq_new(sp_cuda_gptq **out, sp_cuda *g, const sp_cuda_gptq_desc *d,
                           sp_err *err);
/* Factor A = L Lᵀ (A [C, C] column-major, lower triangle read, the matrix sp_gptq's factor
 * step builds) with cusolverDnSpotrf and turn it into R = J L J on the device.
 * *ok = 1 when the factorization succeeded with a finite positive diagonal, 0 when the matrix
 * is not positive definite (the caller retries with more damping).
 * @return SP_OK (whatever *ok), or an error for CUDA failures. */
sp_status sp_cuda_gptq_factor(sp_cuda_gptq *q, const float *a, int *ok, sp_err *err);
/* Quantize W [rows, C] (host fp32) to `bits`: codes [rows, C], scales and zeros
 * [rows, n_groups] (host, sp_qlayer layout). Same algorithm as the CPU float path. */
sp_status sp_cuda_gptq_run(sp_cuda_gptq *q, const float *W, int rows, int bits, uint8_t *codes,
                           float *scales, uint8_t *zeros, int n_groups, sp_err *err);
void sp_cuda_gptq_free(sp_cuda_gptq *q);

/* ---- benchmarks -----------------------------------------------------------------------------
 * Best of reps: C = A·B, n x n x n, cublasSgemm on device-resident data. GFLOP/s (0 on error). */
double sp_cuda_sgemm_rate(sp_cuda *g, int n, int reps);

#ifdef __cplusplus
}
#endif

#endif
