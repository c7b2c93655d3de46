/* sp_cuda_int.cuh — private to the .cu files of kernels/cuda: device handle, error helpers. */
#ifndef SP_CUDA_INT_CUH
#define SP_CUDA_INT_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>
#include <pthread.h>

extern "C" {
#include "common/sp_error.h"
}
#include "kernels/cuda/sp_cuda.h"

/* A device buffer that only grows. */
typedef struct {
    void *p;
    size_t bytes;
} sp_cu_buf;

/* One cached weight matrix (sp_cuda_cache_weights). */
typedef struct {
    const float *host;
    size_t bytes;
    float *dev;
} sp_cu_wcache;

struct sp_cuda {
    int ordinal;
    cudaStream_t stream;
    cublasHandle_t blas;
    cusolverDnHandle_t solver;
    pthread_mutex_t mu;        /* one caller at a time on the stream                      */
    sp_cu_buf lin_x, lin_w, lin_o; /* sp_cuda_linear's operands                           */
    int cache_on;
    sp_cu_wcache *cache;
    int n_cache, cap_cache;
    sp_err latched;            /* first error sp_cuda_linear could not return             */
    char name[256];
    size_t mem_total;
};

/* SP_OK or SP_EINTERNAL/SP_ENOMEM naming the call. */
sp_status sp_cu_check(cudaError_t e, const char *what, sp_err *err);
sp_status sp_cu_blas_check(cublasStatus_t s, const char *what, sp_err *err);
sp_status sp_cu_solver_check(cusolverStatus_t s, const char *what, sp_err *err);
/* Grow b to at least bytes (contents are not kept). */
sp_status sp_cu_buf_reserve(sp_cu_buf *b, size_t bytes, const char *what, sp_err *err);
void sp_cu_buf_free(sp_cu_buf *b);

/* Row-major C [M, N] = alpha·A [M, K]·B [K, N] + beta·C (no transposes; lda, ldb, ldc row
 * strides), as cblas_sgemm(CblasRowMajor, NoTrans, NoTrans, ...), on g's stream. cuBLAS is
 * column-major: row-major C is column-major Cᵀ = Bᵀ·Aᵀ, the same memory. */
sp_status sp_cu_sgemm_rm(sp_cuda *g, int M, int N, int K, float alpha, const float *A, int lda,
                         const float *B, int ldb, float beta, float *C, int ldc, sp_err *err);

/* Needs a local `sp_status st` and a label `done`. */
#define SP_CU_GO(expr)                        \
    do {                                      \
        if ((st = (expr)) != SP_OK) goto done; \
    } while (0)

#endif
