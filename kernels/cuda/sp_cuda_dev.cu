/* sp_cuda_dev.cu — device handle, error helpers and the forward pass's linears (sp_cuda.h). */
#include "kernels/cuda/sp_cuda_int.cuh"

#include <stdlib.h>
#include <string.h>

extern "C" {
#include "kernels/sp_ops.h"
}

sp_status sp_cu_check(cudaError_t e, const char *what, sp_err *err) {
    if (e == cudaSuccess) return SP_OK;
    return sp_err_set(err, e == cudaErrorMemoryAllocation ? SP_ENOMEM : SP_EINTERNAL,
                      "cuda: %s: %s", what, cudaGetErrorString(e));
}

sp_status sp_cu_blas_check(cublasStatus_t s, const char *what, sp_err *err) {
    if (s == CUBLAS_STATUS_SUCCESS) return SP_OK;
    return sp_err_set(err, s == CUBLAS_STATUS_ALLOC_FAILED ? SP_ENOMEM : SP_EINTERNAL,
                      "cublas: %s: status %d", what, (int)s);
}

sp_status sp_cu_solver_check(cusolverStatus_t s, const char *what, sp_err *err) {
    if (s == CUSOLVER_STATUS_SUCCESS) return SP_OK;
    return sp_err_set(err, s == CUSOLVER_STATUS_ALLOC_FAILED ? SP_ENOMEM : SP_EINTERNAL,
                      "cusolver: %s: status %d", what, (int)s);
}

sp_status sp_cu_buf_reserve(sp_cu_buf *b, size_t bytes, const char *what, sp_err *err) {
    if (b->bytes >= bytes && b->p) return SP_OK;
    cudaFree(b->p);
    b->p = NULL;
    b->bytes = 0;
    cudaError_t e = cudaMalloc(&b->p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        b->p = NULL;
        return sp_err_set(err, SP_ENOMEM, "cuda: cannot allocate %zu bytes of device memory "
                          "for %s: %s", bytes, what, cudaGetErrorString(e));
    }
    b->bytes = bytes;
    return SP_OK;
}

void sp_cu_buf_free(sp_cu_buf *b) {
    cudaFree(b->p);
    b->p = NULL;
    b->bytes = 0;
}

sp_status sp_cu_sgemm_rm(sp_cuda *g, int M, int N, int K, float alpha, const float *A, int lda,
                         const float *B, int ldb, float beta, float *C, int ldc, sp_err *err) {
    if (M <= 0 || N <= 0) return SP_OK;
    return sp_cu_blas_check(cublasSgemm(g->blas, CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, &alpha, B, ldb,
                                        A, lda, &beta, C, ldc),
                            "sgemm", err);
}

extern "C" int sp_cuda_built(void) { return 1; }

extern "C" int sp_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); /* clear: no driver or no device is not an error here */
        return 0;
    }
    return n;
}

extern "C" sp_status sp_cuda_open(sp_cuda **out, int ordinal, sp_err *err) {
    SP_RETURN_IF(!out, err, SP_EINVAL, "sp_cuda_open: out is NULL");
    *out = NULL;
    int n = sp_cuda_device_count();
    SP_RETURN_IF(n == 0, err, SP_EINVAL, "--device cuda: no CUDA device is visible "
                 "(CUDA_VISIBLE_DEVICES=%s)", getenv("CUDA_VISIBLE_DEVICES") ?
                 getenv("CUDA_VISIBLE_DEVICES") : "unset");
    SP_RETURN_IF(ordinal < 0 || ordinal >= n, err, SP_EINVAL,
                 "sp_cuda_open: device %d does not exist (%d visible)", ordinal, n);
    sp_cuda *g = (sp_cuda *)sp_calloc(1, sizeof *g, err, "cuda handle");
    if (!g) return SP_ENOMEM;
    g->ordinal = ordinal;
    pthread_mutex_init(&g->mu, NULL);
    sp_status st = SP_OK;
    cudaDeviceProp prop;
    SP_CU_GO(sp_cu_check(cudaSetDevice(ordinal), "cudaSetDevice", err));
    SP_CU_GO(sp_cu_check(cudaGetDeviceProperties(&prop, ordinal), "cudaGetDeviceProperties", err));
    snprintf(g->name, sizeof g->name, "%s", prop.name);
    g->mem_total = prop.totalGlobalMem;
    SP_CU_GO(sp_cu_check(cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking),
                         "cudaStreamCreate", err));
    SP_CU_GO(sp_cu_blas_check(cublasCreate(&g->blas), "cublasCreate", err));
    SP_CU_GO(sp_cu_blas_check(cublasSetStream(g->blas, g->stream), "cublasSetStream", err));
    /* Reproducible: no atomics (split-K reductions in any order), plain fp32 (no TF32). */
    SP_CU_GO(sp_cu_blas_check(cublasSetAtomicsMode(g->blas, CUBLAS_ATOMICS_NOT_ALLOWED),
                              "cublasSetAtomicsMode", err));
    SP_CU_GO(sp_cu_blas_check(cublasSetMathMode(g->blas, CUBLAS_PEDANTIC_MATH),
                              "cublasSetMathMode", err));
    SP_CU_GO(sp_cu_solver_check(cusolverDnCreate(&g->solver), "cusolverDnCreate", err));
    SP_CU_GO(sp_cu_solver_check(cusolverDnSetStream(g->solver, g->stream), "cusolverDnSetStream",
                                err));
    *out = g;
    return SP_OK;
done:
    sp_cuda_close(g);
    return st;
}

static void drop_cache(sp_cuda *g) {
    for (int i = 0; i < g->n_cache; i++) cudaFree(g->cache[i].dev);
    g->n_cache = 0;
}

extern "C" void sp_cuda_close(sp_cuda *g) {
    if (!g) return;
    cudaSetDevice(g->ordinal);
    drop_cache(g);
    free(g->cache);
    sp_cu_buf_free(&g->lin_x);
    sp_cu_buf_free(&g->lin_w);
    sp_cu_buf_free(&g->lin_o);
    if (g->solver) cusolverDnDestroy(g->solver);
    if (g->blas) cublasDestroy(g->blas);
    if (g->stream) cudaStreamDestroy(g->stream);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

extern "C" void sp_cuda_describe(const sp_cuda *g, char *name, size_t cap, size_t *total,
                                 size_t *free_b) {
    size_t f = 0, t = 0;
    if (cudaSetDevice(g->ordinal) == cudaSuccess) cudaMemGetInfo(&f, &t);
    if (name && cap) snprintf(name, cap, "%s", g->name);
    if (total) *total = g->mem_total;
    if (free_b) *free_b = f;
}

extern "C" sp_status sp_cuda_take_error(sp_cuda *g, sp_err *err) {
    if (!g) return SP_OK;
    pthread_mutex_lock(&g->mu);
    sp_status st = g->latched.code;
    if (st != SP_OK) sp_err_set(err, st, "%s", g->latched.msg);
    g->latched.code = SP_OK;
    g->latched.msg[0] = '\0';
    pthread_mutex_unlock(&g->mu);
    return st;
}

extern "C" void sp_cuda_cache_weights(sp_cuda *g, int on) {
    if (!g) return;
    pthread_mutex_lock(&g->mu);
    cudaSetDevice(g->ordinal);
    cudaStreamSynchronize(g->stream);
    drop_cache(g);
    g->cache_on = on != 0;
    pthread_mutex_unlock(&g->mu);
}

/* The device copy of w [n_out, n_in]: cached (copied on first use) or in lin_w. */
static sp_status weights_on_device(sp_cuda *g, const float *w, size_t bytes, const float **dw,
                                   sp_err *err) {
    if (g->cache_on) {
        for (int i = 0; i < g->n_cache; i++)
            if (g->cache[i].host == w && g->cache[i].bytes == bytes) {
                *dw = g->cache[i].dev;
                return SP_OK;
            }
        if (g->n_cache == g->cap_cache) {
            int cap = g->cap_cache ? 2 * g->cap_cache : 16;
            sp_cu_wcache *c = (sp_cu_wcache *)realloc(g->cache, (size_t)cap * sizeof *c);
            SP_RETURN_IF(!c, err, SP_ENOMEM, "cuda: weight cache table");
            g->cache = c;
            g->cap_cache = cap;
        }
        float *d = NULL;
        SP_FORWARD(sp_cu_check(cudaMalloc(&d, bytes), "cudaMalloc(weight cache)", err));
        sp_status st = sp_cu_check(cudaMemcpyAsync(d, w, bytes, cudaMemcpyHostToDevice, g->stream),
                                   "copy weights", err);
        if (st != SP_OK) {
            cudaFree(d);
            return st;
        }
        g->cache[g->n_cache++] = (sp_cu_wcache){w, bytes, d};
        *dw = d;
        return SP_OK;
    }
    SP_FORWARD(sp_cu_buf_reserve(&g->lin_w, bytes, "linear weights", err));
    SP_FORWARD(sp_cu_check(cudaMemcpyAsync(g->lin_w.p, w, bytes, cudaMemcpyHostToDevice,
                                           g->stream), "copy weights", err));
    *dw = (const float *)g->lin_w.p;
    return SP_OK;
}

static sp_status linear_gpu(sp_cuda *g, float *out, const float *x, const float *w, size_t T,
                            size_t n_in, size_t n_out, int accumulate, sp_err *err) {
    const size_t bx = T * n_in * sizeof(float), bo = T * n_out * sizeof(float);
    SP_FORWARD(sp_cu_check(cudaSetDevice(g->ordinal), "cudaSetDevice", err));
    const float *dw = NULL;
    SP_FORWARD(weights_on_device(g, w, n_out * n_in * sizeof(float), &dw, err));
    SP_FORWARD(sp_cu_buf_reserve(&g->lin_x, bx, "linear input", err));
    SP_FORWARD(sp_cu_buf_reserve(&g->lin_o, bo, "linear output", err));
    float *dx = (float *)g->lin_x.p, *dout = (float *)g->lin_o.p;
    SP_FORWARD(sp_cu_check(cudaMemcpyAsync(dx, x, bx, cudaMemcpyHostToDevice, g->stream),
                           "copy linear input", err));
    if (accumulate)
        SP_FORWARD(sp_cu_check(cudaMemcpyAsync(dout, out, bo, cudaMemcpyHostToDevice, g->stream),
                               "copy residual", err));
    /* Column-major: outᵀ [n_out, T] = W (as column-major [n_in, n_out], transposed) · xᵀ. */
    const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    SP_FORWARD(sp_cu_blas_check(cublasSgemm(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n_out, (int)T,
                                            (int)n_in, &one, dw, (int)n_in, dx, (int)n_in, &beta,
                                            dout, (int)n_out), "sgemm(linear)", err));
    SP_FORWARD(sp_cu_check(cudaMemcpyAsync(out, dout, bo, cudaMemcpyDeviceToHost, g->stream),
                           "copy linear output", err));
    return sp_cu_check(cudaStreamSynchronize(g->stream), "linear", err);
}

extern "C" void sp_cuda_linear(sp_cuda *g, float *out, const float *x, const float *w,
                               const float *bias, size_t T, size_t n_in, size_t n_out,
                               int accumulate) {
    if (T == 0 || n_out == 0) return;
    sp_status st = SP_EINVAL;
    sp_err e = {SP_OK, ""};
    if (g) {
        pthread_mutex_lock(&g->mu);
        st = g->latched.code == SP_OK
                 ? linear_gpu(g, out, x, w, T, n_in, n_out, accumulate, &e)
                 : g->latched.code;
        if (st != SP_OK && g->latched.code == SP_OK) g->latched = e;
        pthread_mutex_unlock(&g->mu);
    }
    if (st != SP_OK) {
        /* out is intact when accumulating: it is only written by the final copy, which failed
         * or did not run. The CPU gives the values; the job reports the latched error. */
        sp_linear_forward(out, x, w, bias, T, n_in, n_out, accumulate);
        return;
    }
    if (bias && !accumulate)
        for (size_t t = 0; t < T; t++)
            for (size_t j = 0; j < n_out; j++) out[t * n_out + j] += bias[j];
}

extern "C" double sp_cuda_sgemm_rate(sp_cuda *g, int n, int reps) {
    if (!g || n < 1) return 0.0;
    const size_t nn = (size_t)n * (size_t)n;
    float *a = NULL, *b = NULL, *c = NULL;
    double best = 1e30;
    cudaEvent_t e0 = NULL, e1 = NULL;
    pthread_mutex_lock(&g->mu);
    cudaSetDevice(g->ordinal);
    if (cudaMalloc(&a, nn * 4) != cudaSuccess || cudaMalloc(&b, nn * 4) != cudaSuccess ||
        cudaMalloc(&c, nn * 4) != cudaSuccess || cudaEventCreate(&e0) != cudaSuccess ||
        cudaEventCreate(&e1) != cudaSuccess) {
        best = 1e30;
    } else {
        cudaMemsetAsync(a, 0, nn * 4, g->stream);
        cudaMemsetAsync(b, 0, nn * 4, g->stream);
        const float one = 1.0f, zero = 0.0f;
        for (int r = 0; r <= reps; r++) { /* the first call warms up */
            cudaEventRecord(e0, g->stream);
            cublasSgemm(g->blas, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, n, b, n, &zero, c, n);
            cudaEventRecord(e1, g->stream);
            cudaEventSynchronize(e1);
            float ms = 0;
            cudaEventElapsedTime(&ms, e0, e1);
            if (r > 0 && ms > 0 && ms * 1e-3 < best) best = ms * 1e-3;
        }
    }
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaFree(a);
    cudaFree(b);
    cudaFree(c);
    cudaGetLastError();
    pthread_mutex_unlock(&g->mu);
    return best < 1e30 ? 2.0 * (double)n * (double)n * (double)n / best * 1e-9 : 0.0;
}
