/* sp_cuda_hacc.cu — the device half of sp_hacc (kernels/sp_hacc.h, sp_cuda.h).
 *
 * Per window: X [rows, n] fp32 is copied in and widened to double (NaN/Inf detected), then for
 * each panel of SP_CU_HACC_PANEL columns [j0, j0+pw) one cublasDgemm forms
 *   P [ih, pw] = X[:, 0:ih]ᵀ · X[:, j0:j0+pw],   ih = j0 + pw
 * (row-major; it includes the lower half of the panel's diagonal block, pw²/2 wasted
 * multiply-adds per panel, which keeps it one call), and a kernel adds round(P[i][j] / g) into
 * the packed upper triangle (entries j >= i only) in int64, with sp_hacc.c's rounding: |v|
 * below 2^52 is rounded by (|v| + 2^52) − 2^52 (ties to even; the file is compiled with
 * --fmad=false, so v·inv + 2^52 is never fused), the sign restored. inv = 1/g is a power of
 * two, so v·inv is exact. Each entry has one owner thread: no atomics, the sum is exact.
 *
 * The products' bits depend only on the shapes (one cuBLAS call each, no atomics), so every
 * rank computes the same S_w for the same window; the int64 sums are then order-free and the
 * MPI reduction of sp_hacc_allreduce is unchanged. Memory: acc n(n+1)/2 int64 (3.3 GB at
 * n = 28672) + X in double + one panel, n·SP_CU_HACC_PANEL doubles.
 */
#include "kernels/cuda/sp_cuda_int.cuh"

#include <math.h>
#include <stdlib.h>

#define SP_CU_HACC_PANEL 2048

struct sp_cuda_hacc {
    sp_cuda *g;
    int n, max_rows;
    double grid, bound;
    long long *acc;          /* [n(n+1)/2] packed upper triangle, as sp_hacc.acc           */
    float *xf;               /* [max_rows, n]                                              */
    double *xd;              /* [max_rows, n]                                              */
    double *panel;           /* [n, SP_CU_HACC_PANEL]                                      */
    unsigned long long *flags; /* [2]: first non-finite input index, first bound violation */
};

__global__ void widen_kernel(double *xd, const float *xf, size_t cnt, unsigned long long *bad) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= cnt) return;
    float v = xf[i];
    if (!isfinite(v)) atomicMin(bad, (unsigned long long)i);
    xd[i] = (double)v;
}

__device__ __forceinline__ long long round_i64(double x) {
    const double big = 4503599627370496.0; /* 2^52 */
    double a = fabs(x);
    if (a >= big) return (long long)x;
    double r = __dsub_rn(__dadd_rn(a, big), big);
    return (long long)(x < 0 ? -r : r);
}

__device__ __forceinline__ size_t packed_index(int n, int i, int j) {
    return (size_t)i * (size_t)n - (size_t)i * (size_t)(i - 1) / 2 + (size_t)(j - i);
}

/* Thread (i, jj): entry (i, j0 + jj) of the panel, i < ih, j0 + jj >= i. */
__global__ void round_add_kernel(long long *acc, const double *P, int n, int j0, int pw, int ih,
                                 double inv, double limit, unsigned long long *viol) {
    int jj = blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y * blockDim.y + threadIdx.y;
    if (jj >= pw || i >= ih || j0 + jj < i) return;
    double v = P[(size_t)i * pw + jj];
    if (fabs(v) > limit) {
        atomicMin(viol, (unsigned long long)i * (unsigned long long)n + (unsigned long long)(j0 + jj));
        return;
    }
    acc[packed_index(n, i, j0 + jj)] += round_i64(__dmul_rn(v, inv));
}

extern "C" sp_status sp_cuda_hacc_new(sp_cuda_hacc **out, sp_cuda *g, int n, int max_rows,
                                      double grid, double bound, sp_err *err) {
    SP_RETURN_IF(!out || !g, err, SP_EINVAL, "sp_cuda_hacc_new: NULL argument");
    *out = NULL;
    SP_RETURN_IF(n < 1 || max_rows < 1 || !(grid > 0) || !(bound > 0), err, SP_EINVAL,
                 "sp_cuda_hacc_new: bad sizes n=%d max_rows=%d", n, max_rows);
    sp_cuda_hacc *h = (sp_cuda_hacc *)sp_calloc(1, sizeof *h, err, "cuda hessian");
    if (!h) return SP_ENOMEM;
    h->g = g;
    h->n = n;
    h->max_rows = max_rows;
    h->grid = grid;
    h->bound = bound;
    const size_t nn = (size_t)n * (size_t)(n + 1) / 2, xr = (size_t)max_rows * n;
    const size_t pw = n < SP_CU_HACC_PANEL ? (size_t)n : SP_CU_HACC_PANEL;
    sp_status st = SP_OK;
    pthread_mutex_lock(&g->mu);
    SP_CU_GO(sp_cu_check(cudaSetDevice(g->ordinal), "cudaSetDevice", err));
    SP_CU_GO(sp_cu_check(cudaMalloc(&h->acc, nn * sizeof *h->acc), "cudaMalloc(hessian)", err));
    SP_CU_GO(sp_cu_check(cudaMalloc(&h->xf, xr * sizeof(float)), "cudaMalloc(hessian input)", err));
    SP_CU_GO(sp_cu_check(cudaMalloc(&h->xd, xr * sizeof(double)), "cudaMalloc(hessian input)", err));
    SP_CU_GO(sp_cu_check(cudaMalloc(&h->panel, (size_t)n * pw * sizeof(double)),
                         "cudaMalloc(hessian panel)", err));
    SP_CU_GO(sp_cu_check(cudaMalloc(&h->flags, 2 * sizeof *h->flags), "cudaMalloc(flags)", err));
    SP_CU_GO(sp_cu_check(cudaMemsetAsync(h->acc, 0, nn * sizeof *h->acc, g->stream),
                         "clear hessian", err));
    SP_CU_GO(sp_cu_check(cudaStreamSynchronize(g->stream), "clear hessian", err));
done:
    pthread_mutex_unlock(&g->mu);
    if (st != SP_OK) {
        sp_cuda_hacc_free(h);
        return st;
    }
    *out = h;
    return SP_OK;
}

extern "C" sp_status sp_cuda_hacc_add(sp_cuda_hacc *h, const float *X, int rows, sp_err *err) {
    SP_RETURN_IF(!h || !h->xd, err, SP_EINVAL, "hessian: device accumulator already reduced");
    SP_RETURN_IF(rows < 1 || rows > h->max_rows, err, SP_EINVAL, "hessian: %d rows (max %d)",
                 rows, h->max_rows);
    sp_cuda *g = h->g;
    const int n = h->n;
    const size_t cnt = (size_t)rows * n;
    const double limit = (double)rows * h->bound * h->bound, inv = 1.0 / h->grid;
    unsigned long long fl[2] = {~0ull, ~0ull};
    sp_status st = SP_OK;
    pthread_mutex_lock(&g->mu);
    SP_CU_GO(sp_cu_check(cudaSetDevice(g->ordinal), "cudaSetDevice", err));
    SP_CU_GO(sp_cu_check(cudaMemcpyAsync(h->flags, fl, sizeof fl, cudaMemcpyHostToDevice,
                                         g->stream), "hessian flags", err));
    SP_CU_GO(sp_cu_check(cudaMemcpyAsync(h->xf, X, cnt * sizeof(float), cudaMemcpyHostToDevice,
                                         g->stream), "copy hessian input", err));
    widen_kernel<<<(unsigned)((cnt + 255) / 256), 256, 0, g->stream>>>(h->xd, h->xf, cnt, h->flags);
    SP_CU_GO(sp_cu_check(cudaGetLastError(), "hessian widen kernel", err));
    for (int j0 = 0; j0 < n; j0 += SP_CU_HACC_PANEL) {
        const int pw = n - j0 < SP_CU_HACC_PANEL ? n - j0 : SP_CU_HACC_PANEL, ih = j0 + pw;
        /* Column-major view: X is xc [n, rows] (xc = Xᵀ), and row-major P [ih, pw] is
         * column-major Pᵀ [pw, ih] = xc[j0:j0+pw, :] · xc[0:ih, :]ᵀ. */
        const double one = 1.0, zero = 0.0;
        SP_CU_GO(sp_cu_blas_check(cublasDgemm(g->blas, CUBLAS_OP_N, CUBLAS_OP_T, pw, ih, rows,
                                              &one, h->xd + j0, n, h->xd, n, &zero, h->panel, pw),
                                  "dgemm(hessian)", err));
        dim3 blk(32, 8), grd((unsigned)((pw + 31) / 32), (unsigned)((ih + 7) / 8));
        round_add_kernel<<<grd, blk, 0, g->stream>>>(h->acc, h->panel, n, j0, pw, ih, inv, limit,
                                                      h->flags + 1);
        SP_CU_GO(sp_cu_check(cudaGetLastError(), "hessian rounding kernel", err));
    }
    SP_CU_GO(sp_cu_check(cudaMemcpyAsync(fl, h->flags, sizeof fl, cudaMemcpyDeviceToHost,
                                         g->stream), "hessian flags", err));
    SP_CU_GO(sp_cu_check(cudaStreamSynchronize(g->stream), "hessian add", err));
    if (fl[0] != ~0ull) {
        /* Non-finite input: rejected before anything was trusted, as on the CPU (the
         * accumulator is then unusable: the job fails). */
        st = sp_err_set(err, SP_ENUMERIC, "hessian: non-finite input at token %llu, channel %llu",
                        fl[0] / (unsigned long long)n, fl[0] % (unsigned long long)n);
    } else if (fl[1] != ~0ull) {
        st = sp_err_set(err, SP_EINTERNAL, "hessian: entry (%llu,%llu) exceeds the a-priori "
                        "bound %g", fl[1] / (unsigned long long)n, fl[1] % (unsigned long long)n,
                        limit);
    }
done:
    pthread_mutex_unlock(&g->mu);
    return st;
}

extern "C" sp_status sp_cuda_hacc_download(sp_cuda_hacc *h, int64_t *acc_host, sp_err *err) {
    SP_RETURN_IF(!h || !h->acc, err, SP_EINVAL, "hessian: no device accumulator");
    sp_cuda *g = h->g;
    const size_t nn = (size_t)h->n * (size_t)(h->n + 1) / 2, chunk = (size_t)1 << 24;
    sp_status st = SP_OK;
    long long *tmp = (long long *)sp_malloc(chunk * sizeof *tmp, err, "hessian download");
    if (!tmp) return SP_ENOMEM;
    pthread_mutex_lock(&g->mu);
    SP_CU_GO(sp_cu_check(cudaSetDevice(g->ordinal), "cudaSetDevice", err));
    /* The scratch goes first (as sp_hacc_allreduce frees the host window scratch). */
    cudaFree(h->xf);
    cudaFree(h->xd);
    cudaFree(h->panel);
    h->xf = NULL;
    h->xd = h->panel = NULL;
    for (size_t off = 0; off < nn; off += chunk) {
        const size_t m = nn - off < chunk ? nn - off : chunk;
        SP_CU_GO(sp_cu_check(cudaMemcpyAsync(tmp, h->acc + off, m * sizeof *tmp,
                                             cudaMemcpyDeviceToHost, g->stream),
                             "copy hessian", err));
        SP_CU_GO(sp_cu_check(cudaStreamSynchronize(g->stream), "copy hessian", err));
        for (size_t k = 0; k < m; k++) acc_host[off + k] += (int64_t)tmp[k];
    }
    cudaFree(h->acc);
    h->acc = NULL;
done:
    pthread_mutex_unlock(&g->mu);
    free(tmp);
    return st;
}

extern "C" void sp_cuda_hacc_free(sp_cuda_hacc *h) {
    if (!h) return;
    cudaSetDevice(h->g->ordinal);
    cudaFree(h->acc);
    cudaFree(h->xf);
    cudaFree(h->xd);
    cudaFree(h->panel);
    cudaFree(h->flags);
    free(h);
}
