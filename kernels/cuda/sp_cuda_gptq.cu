/* sp_cuda_gptq.cu — the device half of GPTQ's float path (kernels/sp_gptq.h, sp_cuda.h).
 *
 * Same algorithm and layouts as sp_gptq_body.h (read it first), on the device:
 *   X  [C, Rn]  column j of W (permuted) contiguous, then Δ_j      Ap [P, Rn] panel updates
 *   Ct [C, Rn]  codes                                               Ps, Pz [G, Rn] group params
 *   R  [C, C]   column-major upper factor, H + λI = R Rᵀ (cuSOLVER spotrf on J·P(H+λI)Pᵀ·J)
 * Panels of SP_CU_GPTQ_PANEL columns get their left-looking update from all finished columns
 * in one cublasSgemm; after each block of B columns one sgemm updates the rest of the panel.
 * Inside a block one kernel does the column loop: thread r owns row r (rows are independent in
 * GPTQ), keeps a sub-block of 16 accumulators A_j in registers, quantizes column j with its
 * group's (s, z), applies the rank-1 updates inside the sub-block in registers and the sub-block's
 * update of the rest of the block (16 multiply-adds per later column) before the next
 * sub-block. R's entries are the same for every thread of a warp (broadcast loads).
 *
 * Group parameters: static groups (act-order, or one group per row) are computed by one kernel
 * up front from W, exactly as the CPU computes them (same float steps, fp16 rounding of s and
 * the same shrink search), so they equal the CPU's bit for bit. Lazy groups (no act-order,
 * gs < C) depend only on the state at the start of the block in which they start
 * (sp_gptq_body.h lazy_params: X's unprocessed rows and the block-start accumulators, whose
 * snapshot S is what the CPU uses), so they are all computed before the block's kernel runs:
 * V = W_c + Σ A0_m U_mc with U = R⁻¹ on [i1, e) from a small host strtri of R's block.
 *
 * Arithmetic: the file is compiled with --fmad=false, and the quantizer uses explicit
 * round-to-nearest intrinsics, so w̃ = x + a·inv, q = clamp(rne(w̃/s) + z) and Δ = x − s(q − z)
 * are the CPU's float operations. The accumulations use fused multiply-adds (__fmaf_rn) and a
 * different summation order from OpenBLAS, so A_j differs from the CPU in the last bits, and a
 * code differs where w̃/s falls within those bits of a rounding boundary: a tiny fraction of
 * codes, with the same layer error up to noise (checked by tests/unit/test_cuda_gptq.c and
 * bench/bench_gptq_cuda.c on a device).
 */
#include "kernels/cuda/sp_cuda_int.cuh"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SP_CU_GPTQ_SUB 16     /* columns per sub-block (registers per thread)                 */
#define SP_CU_GPTQ_PANEL 512  /* columns per left-looking panel                              */
#define SP_CU_GPTQ_ROWS 8192  /* rows per chunk (device buffers sized for one chunk)         */
#define SP_CU_THREADS 64      /* threads per CTA of the row kernels: more CTAs for few rows  */

struct sp_cuda_gptq {
    sp_cuda *g;
    int C, gs, B, act, sym, mse;
    int *perm, *invperm;   /* [C] device                                                   */
    uint8_t *dead;         /* [C] device                                                   */
    double *hdiag;         /* [C] device (HMSE only)                                       */
    float *R;              /* [C, C] device                                                */
    int factored;
};

/* ---- the quantizer, the CPU's float steps (kernels/sp_quant.c) ---------------------------- */

__device__ double cu_round_fp16(double x) {
    if (isnan(x)) return x;
    double a = fabs(x), r;
    if (a >= 65520.0) {
        r = INFINITY;
    } else if (a < 0x1p-14) {
        r = rint(__dmul_rn(a, 0x1p24)) * 0x1p-24;
    } else {
        unsigned long long u = (unsigned long long)__double_as_longlong(a);
        const unsigned long long drop = 42, half = (1ull << (drop - 1)) - 1;
        u += half + ((u >> drop) & 1);
        u &= ~((1ull << drop) - 1);
        r = __longlong_as_double((long long)u);
    }
    return copysign(r, x);
}

__device__ float cu_fp16_scale(double s) {
    double r = cu_round_fp16(s);
    if (!(r >= 0x1p-14)) r = 0x1p-14;
    if (r > 65504.0) r = 65504.0;
    return (float)r;
}

__device__ void cu_adjust(float *xmin, float *xmax, int sym) {
    float lo = *xmin < 0 ? *xmin : 0.0f, hi = *xmax > 0 ? *xmax : 0.0f;
    if (sym) {
        hi = -lo > hi ? -lo : hi;
        if (lo < 0) lo = -hi;
    }
    if (lo == 0 && hi == 0) {
        lo = -1;
        hi = 1;
    }
    *xmin = lo;
    *xmax = hi;
}

__device__ void cu_range_params(float *s, int *z, float xmin, float xmax, int maxq, int sym) {
    float d = __fdiv_rn(__fsub_rn(xmax, xmin), (float)maxq);
    float sc = cu_fp16_scale((double)d);
    int zz = (maxq + 1) / 2;
    if (!sym) {
        double t = rint((double)__fdiv_rn(-xmin, sc));
        zz = t < 0 ? 0 : t > maxq ? maxq : (int)t;
    }
    *s = sc;
    *z = zz;
}

__device__ __forceinline__ float cu_quant(float x, float s, float zf, float maxq) {
    float q = __fadd_rn(__fsub_rn(__fadd_rn(__fdiv_rn(x, s), 0x1.8p23f), 0x1.8p23f), zf);
    q = q < 0.0f ? 0.0f : q;
    return q > maxq ? maxq : q;
}

/* Parameters of group gy (columns c0 = c_first + gy·gs .. c0 + n − 1) for row r. Column c of
 * the group is row (map ? map[c] : c − col_base) of X [*, Rn]. mode: 0 min-max, 1 quant.py's
 * --mse (norm 2.4), 2 diag(H)-weighted (norm 2, weights hdiag[c]). */
__global__ void params_kernel(float *Ps, uint8_t *Pz, const float *X, int Rn, const int *map,
                              int col_base, int c_first, int gs, int C, int bits, int sym,
                              int mode, const double *hdiag) {
    const int r = blockIdx.x * blockDim.x + threadIdx.x, gy = blockIdx.y;
    if (r >= Rn) return;
    const int c0 = c_first + gy * gs, n = C - c0 < gs ? C - c0 : gs, maxq = (1 << bits) - 1;
#define SP_CU_COL(k) X[(size_t)(map ? map[c0 + (k)] : c0 + (k) - col_base) * Rn + r]
    float mn = 0.0f, mx = 0.0f;
    for (int k = 0; k < n; k++) {
        float x = SP_CU_COL(k);
        mn = x < mn ? x : mn;
        mx = x > mx ? x : mx;
    }
    cu_adjust(&mn, &mx, sym);
    float s;
    int z;
    cu_range_params(&s, &z, mn, mx, maxq, sym);
    if (mode != 0) {
        double best = INFINITY;
        for (int step = 0; step < 80; step++) {
            float p = (float)(1.0 - (double)step / 100.0), s1;
            int z1;
            cu_range_params(&s1, &z1, __fmul_rn(p, mn), __fmul_rn(p, mx), maxq, sym);
            const float zf = (float)z1;
            double e = 0.0;
            for (int k = 0; k < n; k++) {
                float x = SP_CU_COL(k);
                float q = cu_quant(x, s1, zf, (float)maxq);
                double d = (double)__fsub_rn(__fmul_rn(s1, __fsub_rn(q, zf)), x);
                if (mode == 2)
                    e = __dadd_rn(e, __dmul_rn(hdiag[c0 + k], __dmul_rn(d, d)));
                else
                    e = __dadd_rn(e, pow(fabs(d), 2.4));
            }
            if (e < best) {
                best = e;
                s = s1;
                z = z1;
            }
        }
    }
#undef SP_CU_COL
    Ps[(size_t)gy * Rn + r] = s;
    Pz[(size_t)gy * Rn + r] = (uint8_t)z;
}

/* ---- transposes ------------------------------------------------------------------------------ */

/* X[j, r] = dead[perm[j]] ? 0 : W[r, perm[j]], 32 x 32 tiles. */
__global__ void load_w_kernel(float *X, const float *W, const int *perm, const uint8_t *dead,
                              int Rn, int C) {
    __shared__ float tile[32][33];
    const int j0 = blockIdx.x * 32, r0 = blockIdx.y * 32, tx = threadIdx.x, ty = threadIdx.y;
    for (int rr = ty; rr < 32; rr += 8) {
        const int r = r0 + rr, j = j0 + tx;
        float v = 0.0f;
        if (r < Rn && j < C) {
            const int pj = perm[j];
            v = dead[pj] ? 0.0f : W[(size_t)r * C + pj];
        }
        tile[rr][tx] = v;
    }
    __syncthreads();
    for (int jj = ty; jj < 32; jj += 8) {
        const int j = j0 + jj, r = r0 + tx;
        if (j < C && r < Rn) X[(size_t)j * Rn + r] = tile[tx][jj];
    }
}

/* codes[r, perm[j]] = Ct[j, r]. */
__global__ void store_codes_kernel(uint8_t *codes, const uint8_t *Ct, const int *perm, int Rn,
                                   int C) {
    __shared__ uint8_t tile[32][33];
    const int j0 = blockIdx.x * 32, r0 = blockIdx.y * 32, tx = threadIdx.x, ty = threadIdx.y;
    for (int jj = ty; jj < 32; jj += 8) {
        const int j = j0 + jj, r = r0 + tx;
        tile[jj][tx] = (j < C && r < Rn) ? Ct[(size_t)j * Rn + r] : 0;
    }
    __syncthreads();
    for (int rr = ty; rr < 32; rr += 8) {
        const int r = r0 + rr, j = j0 + tx;
        if (r < Rn && j < C) codes[(size_t)r * C + perm[j]] = tile[tx][rr];
    }
}

/* ---- factor ---------------------------------------------------------------------------------- */

__global__ void diag_check_kernel(const float *a, int n, int *bad) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float d = a[(size_t)i + (size_t)i * n];
    if (!(isfinite(d) && d > 0)) atomicExch(bad, 1);
}

/* a[i] <-> a[n² − 1 − i]: column-major (u, v) -> (n−1−u, n−1−v), R = J L J. */
__global__ void reverse_kernel(float *a, size_t nn) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= nn / 2) return;
    const float t = a[i];
    a[i] = a[nn - 1 - i];
    a[nn - 1 - i] = t;
}

/* ---- the column loop of one block ------------------------------------------------------------ */

__global__ void block_kernel(float *__restrict__ X, float *__restrict__ Ab,
                             const float *__restrict__ R, int C, int Rn, int i1, int i2, int gs,
                             const int *__restrict__ perm, const float *__restrict__ Ps,
                             const uint8_t *__restrict__ Pz, uint8_t *__restrict__ Ct, int bits) {
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= Rn) return;
    const float maxq = (float)((1 << bits) - 1);
    const size_t Cs = (size_t)C, Rs = (size_t)Rn;
    for (int j1 = i1; j1 < i2; j1 += SP_CU_GPTQ_SUB) {
        const int j2 = j1 + SP_CU_GPTQ_SUB < i2 ? j1 + SP_CU_GPTQ_SUB : i2, ns = j2 - j1;
        float a[SP_CU_GPTQ_SUB], d[SP_CU_GPTQ_SUB];
#pragma unroll
        for (int t = 0; t < SP_CU_GPTQ_SUB; t++) {
            a[t] = t < ns ? Ab[(size_t)(j1 - i1 + t) * Rs + r] : 0.0f;
            d[t] = 0.0f;
        }
#pragma unroll
        for (int t = 0; t < SP_CU_GPTQ_SUB; t++) {
            if (t < ns) {
                const int j = j1 + t;
                const size_t g = (size_t)((perm ? perm[j] : j) / gs);
                const float s = Ps[g * Rs + r], zf = (float)Pz[g * Rs + r];
                const float x = X[(size_t)j * Rs + r];
                const float inv = __fdiv_rn(1.0f, R[(size_t)j + (size_t)j * Cs]);
                const float w = __fadd_rn(x, __fmul_rn(a[t], inv));
                const float q = cu_quant(w, s, zf, maxq);
                const float dl = __fsub_rn(x, __fmul_rn(s, __fsub_rn(q, zf)));
                X[(size_t)j * Rs + r] = dl;
                Ct[(size_t)j * Rs + r] = (uint8_t)q;
                d[t] = dl;
#pragma unroll
                for (int u = t + 1; u < SP_CU_GPTQ_SUB; u++)
                    if (u < ns) a[u] = __fmaf_rn(R[(size_t)j + (size_t)(j1 + u) * Cs], dl, a[u]);
            }
        }
        /* Rest of the block: Ab[k] += Σ_t R(j1 + t, k) Δ_{j1+t}, k in [j2, i2). */
        for (int k = j2; k < i2; k++) {
            const float *rc = R + (size_t)j1 + (size_t)k * Cs;
            float acc = Ab[(size_t)(k - i1) * Rs + r];
#pragma unroll
            for (int t = 0; t < SP_CU_GPTQ_SUB; t++)
                if (t < ns) acc = __fmaf_rn(rc[t], d[t], acc);
            Ab[(size_t)(k - i1) * Rs + r] = acc;
        }
    }
}

/* ---- host side ------------------------------------------------------------------------------- */

extern "C" sp_status sp_cuda_gptq_new(sp_cuda_gptq **out, sp_cuda *g, const sp_cuda_gptq_desc *d,
                                      sp_err *err) {
    SP_RETURN_IF(!out || !g || !d, err, SP_EINVAL, "sp_cuda_gptq_new: NULL argument");
    *out = NULL;
    SP_RETURN_IF(d->cols < 1 || d->gs < 1 || d->block < 1 || !d->perm || !d->invperm || !d->dead ||
                 (d->mse == 2 && !d->hdiag), err, SP_EINVAL, "sp_cuda_gptq_new: bad layer");
    sp_cuda_gptq *q = (sp_cuda_gptq *)sp_calloc(1, sizeof *q, err, "cuda GPTQ");
    if (!q) return SP_ENOMEM;
    q->g = g;
    q->C = d->cols;
    q->gs = d->gs;
    q->B = d->block < d->cols ? d->block : d->cols;
    q->act = d->act_order != 0;
    q->sym = d->sym != 0;
    q->mse = d->mse;
    const size_t C = (size_t)d->cols;
    sp_status st = SP_OK;
    pthread_mutex_lock(&g->mu);
    SP_CU_GO(sp_cu_check(cudaSetDevice(g->ordinal), "cudaSetDevice", err));
    SP_CU_GO(sp_cu_check(cudaMalloc(&q->perm, C * sizeof(int)), "cudaMalloc(GPTQ order)", err));
    SP_CU_GO(sp_cu_check(cudaMalloc(&q->invperm, C * sizeof(int)), "cudaMalloc(GPTQ order)", err));
    SP_CU_GO(sp_cu_check(cudaMalloc(&q->dead, C), "cudaMalloc(GPTQ dead)", err));
    SP_CU_GO(sp_cu_check(cudaMalloc(&q->R, C * C * sizeof(float)), "cudaMalloc(GPTQ factor)", err));
    SP_CU_GO(sp_cu_check(cudaMemcpy(q->perm, d->perm, C * sizeof(int), cudaMemcpyHostToDevice),
                         "copy GPTQ order", err));
    SP_CU_GO(sp_cu_check(cudaMemcpy(q->invperm, d->invperm, C * sizeof(int),
                                    cudaMemcpyHostToDevice), "copy GPTQ order", err));
    SP_CU_GO(sp_cu_check(cudaMemcpy(q->dead, d->dead, C, cudaMemcpyHostToDevice),
                         "copy GPTQ dead", err));
    if (d->mse == 2) {
        SP_CU_GO(sp_cu_check(cudaMalloc(&q->hdiag, C * sizeof(double)), "cudaMalloc(diag H)", err));
        SP_CU_GO(sp_cu_check(cudaMemcpy(q->hdiag, d->hdiag, C * sizeof(double),
                                        cudaMemcpyHostToDevice), "copy diag H", err));
    }
done:
    pthread_mutex_unlock(&g->mu);
    if (st != SP_OK) {
        sp_cuda_gptq_free(q);
        return st;
    }
    *out = q;
    return SP_OK;
}

extern "C" void sp_cuda_gptq_free(sp_cuda_gptq *q) {
    if (!q) return;
    cudaSetDevice(q->g->ordinal);
    cudaFree(q->perm);
    cudaFree(q->invperm);
    cudaFree(q->dead);
    cudaFree(q->hdiag);
    cudaFree(q->R);
    free(q);
}

extern "C" sp_status sp_cuda_gptq_factor(sp_cuda_gptq *q, const float *a, int *ok, sp_err *err) {
    SP_RETURN_IF(!q || !a || !ok, err, SP_EINVAL, "sp_cuda_gptq_factor: NULL argument");
    *ok = 0;
    sp_cuda *g = q->g;
    const int n = q->C;
    const size_t nn = (size_t)n * (size_t)n;
    int lwork = 0, info = 0, bad = 0, *dinfo = NULL;
    float *work = NULL;
    sp_status st = SP_OK;
    pthread_mutex_lock(&g->mu);
    SP_CU_GO(sp_cu_check(cudaSetDevice(g->ordinal), "cudaSetDevice", err));
    SP_CU_GO(sp_cu_check(cudaMemcpyAsync(q->R, a, nn * sizeof(float), cudaMemcpyHostToDevice,
                                         g->stream), "copy GPTQ matrix", err));
    SP_CU_GO(sp_cu_solver_check(cusolverDnSpotrf_bufferSize(g->solver, CUBLAS_FILL_MODE_LOWER, n,
                                                            q->R, n, &lwork),
                                "spotrf_bufferSize", err));
    SP_CU_GO(sp_cu_check(cudaMalloc(&work, (size_t)(lwork > 0 ? lwork : 1) * sizeof(float)),
                         "cudaMalloc(spotrf workspace)", err));
    SP_CU_GO(sp_cu_check(cudaMalloc(&dinfo, 2 * sizeof(int)), "cudaMalloc(info)", err));
    SP_CU_GO(sp_cu_check(cudaMemsetAsync(dinfo, 0, 2 * sizeof(int), g->stream), "clear info", err));
    SP_CU_GO(sp_cu_solver_check(cusolverDnSpotrf(g->solver, CUBLAS_FILL_MODE_LOWER, n, q->R, n,
                                                 work, lwork, dinfo), "spotrf", err));
    diag_check_kernel<<<(n + 255) / 256, 256, 0, g->stream>>>(q->R, n, dinfo + 1);
    SP_CU_GO(sp_cu_check(cudaGetLastError(), "diagonal check kernel", err));
    SP_CU_GO(sp_cu_check(cudaMemcpyAsync(&info, dinfo, sizeof info, cudaMemcpyDeviceToHost,
                                         g->stream), "copy info", err));
    SP_CU_GO(sp_cu_check(cudaMemcpyAsync(&bad, dinfo + 1, sizeof bad, cudaMemcpyDeviceToHost,
                                         g->stream), "copy info", err));
    SP_CU_GO(sp_cu_check(cudaStreamSynchronize(g->stream), "spotrf", err));
    if (info < 0) {
        st = sp_err_set(err, SP_EINTERNAL, "sp_gptq_prepare: cusolver spotrf argument %d is bad",
                        -info);
        goto done;
    }
    if (info == 0 && !bad) {
        reverse_kernel<<<(unsigned)((nn / 2 + 255) / 256), 256, 0, g->stream>>>(q->R, nn);
        SP_CU_GO(sp_cu_check(cudaGetLastError(), "reverse kernel", err));
        SP_CU_GO(sp_cu_check(cudaStreamSynchronize(g->stream), "reverse", err));
        *ok = 1;
        q->factored = 1;
    }
done:
    cudaFree(work);
    cudaFree(dinfo);
    pthread_mutex_unlock(&g->mu);
    return st;
}

/* Device buffers of one run, sized for a chunk of Rc rows. */
typedef struct {
    float *W, *X, *Ap, *Ps, *V, *Uin, *Ae;
    uint8_t *Ct, *Pz, *codes;
    float *hR;      /* [smax²] host: R's block, then U = its inverse */
    float *hPs;     /* [G, Rc] host                                   */
    uint8_t *hPz;   /* [G, Rc] host                                   */
} gptq_bufs;

/* Lazy parameters of the group starting at column j inside block [i1, i2) of panel [p1, p2),
 * taken at the block's start (see the file comment and sp_gptq_body.h lazy_params). */
static sp_status lazy_params(sp_cuda_gptq *q, gptq_bufs *b, int j, int i1, int i2, int p1,
                             int p2, int m, int bits, sp_err *err) {
    sp_cuda *g = q->g;
    const int C = q->C, gs = q->gs, e = j + gs < C ? j + gs : C, n = e - j;
    const size_t Rs = (size_t)m, Cs = (size_t)C;
    SP_FORWARD(sp_cu_check(cudaMemcpyAsync(b->V, b->X + (size_t)j * Rs, (size_t)n * Rs * 4,
                                           cudaMemcpyDeviceToDevice, g->stream), "copy group", err));
    if (i1 > 0) {
        const int s = e - i1;
        const size_t sn = (size_t)s;
        SP_FORWARD(sp_cu_check(cudaMemcpy2DAsync(b->hR, sn * 4, q->R + (size_t)i1 + (size_t)i1 * Cs,
                                                 Cs * 4, sn * 4, sn, cudaMemcpyDeviceToHost,
                                                 g->stream), "copy R block", err));
        SP_FORWARD(sp_cu_check(cudaStreamSynchronize(g->stream), "copy R block", err));
        for (size_t v = 0; v < sn; v++)
            for (size_t u = v + 1; u < sn; u++) b->hR[u + v * sn] = 0.0f;
        lapack_int info = LAPACKE_strtri_work(LAPACK_COL_MAJOR, 'U', 'N', (lapack_int)s, b->hR,
                                              (lapack_int)s);
        SP_RETURN_IF(info != 0, err, SP_EINTERNAL,
                     "sp_gptq_quantize: trtri of the R block at column %d failed (%d)", i1,
                     (int)info);
        SP_FORWARD(sp_cu_check(cudaMemcpyAsync(b->Uin, b->hR, sn * sn * 4, cudaMemcpyHostToDevice,
                                               g->stream), "copy U block", err));
        if (e > p2) /* A0[p2:e] = R[0:i1, p2:e]ᵀ Δ[0:i1] */
            SP_FORWARD(sp_cu_sgemm_rm(g, e - p2, m, i1, 1, q->R + (size_t)p2 * Cs, C, b->X, m, 0,
                                      b->Ae, m, err));
        const int m0[3] = {i1, i2, p2}, m1[3] = {i2 < e ? i2 : e, p2 < e ? p2 : e, e};
        const float *src[3] = {b->Ap + (size_t)(i1 - p1) * Rs, b->Ap + (size_t)(i2 - p1) * Rs,
                               b->Ae};
        for (int part = 0; part < 3; part++)
            if (m1[part] > m0[part])
                SP_FORWARD(sp_cu_sgemm_rm(g, n, m, m1[part] - m0[part], 1,
                                          b->Uin + (size_t)(m0[part] - i1) + (size_t)(j - i1) * sn,
                                          s, src[part], m, 1, b->V, m, err));
    }
    const size_t gl = (size_t)(j / gs);
    params_kernel<<<dim3((unsigned)((m + SP_CU_THREADS - 1) / SP_CU_THREADS), 1), SP_CU_THREADS, 0,
                    g->stream>>>(b->Ps + gl * Rs, b->Pz + gl * Rs, b->V, m, NULL, j, j, gs, C, bits,
                                 q->sym, q->mse, q->hdiag);
    return sp_cu_check(cudaGetLastError(), "group parameter kernel", err);
}

/* Rows r0 .. r0 + m − 1 (W points at row r0). */
static sp_status run_chunk(sp_cuda_gptq *q, gptq_bufs *b, const float *W, int m, int r0,
                           int bits, uint8_t *codes, float *scales, uint8_t *zeros, int G,
                           sp_err *err) {
    sp_cuda *g = q->g;
    const int C = q->C, gs = q->gs, B = q->B, act = q->act;
    const int P = B * (B < SP_CU_GPTQ_PANEL ? SP_CU_GPTQ_PANEL / B : 1);
    const int lazy = !act && gs < C;
    const size_t Rs = (size_t)m, Cs = (size_t)C;
    const unsigned rb = (unsigned)((m + SP_CU_THREADS - 1) / SP_CU_THREADS);
    const dim3 tb(32, 8), tg((unsigned)((C + 31) / 32), (unsigned)((m + 31) / 32));
    SP_FORWARD(sp_cu_check(cudaMemcpyAsync(b->W, W, Rs * Cs * 4, cudaMemcpyHostToDevice, g->stream),
                           "copy W", err));
    load_w_kernel<<<tg, tb, 0, g->stream>>>(b->X, b->W, q->perm, q->dead, m, C);
    SP_FORWARD(sp_cu_check(cudaGetLastError(), "load kernel", err));
    if (!lazy) {
        params_kernel<<<dim3(rb, (unsigned)G), SP_CU_THREADS, 0, g->stream>>>(
            b->Ps, b->Pz, b->X, m, act ? q->invperm : NULL, 0, 0, gs, C, bits, q->sym, q->mse,
            q->hdiag);
        SP_FORWARD(sp_cu_check(cudaGetLastError(), "group parameter kernel", err));
    }
    for (int p1 = 0; p1 < C; p1 += P) {
        const int p2 = p1 + P < C ? p1 + P : C;
        if (p1 > 0)
            SP_FORWARD(sp_cu_sgemm_rm(g, p2 - p1, m, p1, 1, q->R + (size_t)p1 * Cs, C, b->X, m, 0,
                                      b->Ap, m, err));
        else
            SP_FORWARD(sp_cu_check(cudaMemsetAsync(b->Ap, 0, (size_t)(p2 - p1) * Rs * 4, g->stream),
                                   "clear panel", err));
        for (int i1 = p1; i1 < p2; i1 += B) {
            const int i2 = i1 + B < p2 ? i1 + B : p2;
            if (lazy)
                for (int j = (i1 + gs - 1) / gs * gs; j < i2; j += gs)
                    SP_FORWARD(lazy_params(q, b, j, i1, i2, p1, p2, m, bits, err));
            block_kernel<<<rb, SP_CU_THREADS, 0, g->stream>>>(
                b->X, b->Ap + (size_t)(i1 - p1) * Rs, q->R, C, m, i1, i2, gs,
                act ? q->perm : NULL, b->Ps, b->Pz, b->Ct, bits);
            SP_FORWARD(sp_cu_check(cudaGetLastError(), "column loop kernel", err));
            if (i2 < p2) /* Ap[i2:p2] += R[i1:i2, i2:p2]ᵀ Δ[i1:i2] */
                SP_FORWARD(sp_cu_sgemm_rm(g, p2 - i2, m, i2 - i1, 1,
                                          q->R + (size_t)i1 + (size_t)i2 * Cs, C,
                                          b->X + (size_t)i1 * Rs, m, 1,
                                          b->Ap + (size_t)(i2 - p1) * Rs, m, err));
        }
    }
    store_codes_kernel<<<tg, tb, 0, g->stream>>>(b->codes, b->Ct, q->perm, m, C);
    SP_FORWARD(sp_cu_check(cudaGetLastError(), "store kernel", err));
    SP_FORWARD(sp_cu_check(cudaMemcpyAsync(codes + (size_t)r0 * Cs, b->codes, Rs * Cs,
                                           cudaMemcpyDeviceToHost, g->stream), "copy codes", err));
    SP_FORWARD(sp_cu_check(cudaMemcpyAsync(b->hPs, b->Ps, (size_t)G * Rs * 4,
                                           cudaMemcpyDeviceToHost, g->stream), "copy scales", err));
    SP_FORWARD(sp_cu_check(cudaMemcpyAsync(b->hPz, b->Pz, (size_t)G * Rs, cudaMemcpyDeviceToHost,
                                           g->stream), "copy zeros", err));
    SP_FORWARD(sp_cu_check(cudaStreamSynchronize(g->stream), "GPTQ", err));
    for (size_t gg = 0; gg < (size_t)G; gg++)
        for (size_t r = 0; r < Rs; r++) {
            scales[((size_t)r0 + r) * G + gg] = b->hPs[gg * Rs + r];
            zeros[((size_t)r0 + r) * G + gg] = b->hPz[gg * Rs + r];
        }
    return SP_OK;
}

extern "C" sp_status sp_cuda_gptq_run(sp_cuda_gptq *q, const float *W, int rows, int bits,
                                      uint8_t *codes, float *scales, uint8_t *zeros, int n_groups,
                                      sp_err *err) {
    SP_RETURN_IF(!q || !W || !codes || !scales || !zeros, err, SP_EINVAL,
                 "sp_cuda_gptq_run: NULL argument");
    SP_RETURN_IF(!q->factored, err, SP_EINVAL, "sp_cuda_gptq_run: no factor");
    SP_RETURN_IF(rows < 1 || bits < 2 || bits > 8 || n_groups != (q->C + q->gs - 1) / q->gs, err,
                 SP_EINVAL, "sp_cuda_gptq_run: bad rows=%d bits=%d groups=%d", rows, bits,
                 n_groups);
    sp_cuda *g = q->g;
    const int C = q->C, gs = q->gs, B = q->B, G = n_groups;
    const int P = B * (B < SP_CU_GPTQ_PANEL ? SP_CU_GPTQ_PANEL / B : 1);
    const int Rc = rows < SP_CU_GPTQ_ROWS ? rows : SP_CU_GPTQ_ROWS;
    const size_t Rs = (size_t)Rc, Cs = (size_t)C;
    const size_t gmax = (size_t)(gs < C ? gs : C), smax = (size_t)(B + gs < C ? B + gs : C);
    const int lazy = !q->act && gs < C;
    gptq_bufs b;
    memset(&b, 0, sizeof b);
    sp_status st = SP_OK;
    pthread_mutex_lock(&g->mu);
    SP_CU_GO(sp_cu_check(cudaSetDevice(g->ordinal), "cudaSetDevice", err));
    SP_CU_GO(sp_cu_check(cudaMalloc(&b.W, Rs * Cs * 4), "cudaMalloc(GPTQ W)", err));
    SP_CU_GO(sp_cu_check(cudaMalloc(&b.X, Rs * Cs * 4), "cudaMalloc(GPTQ weights)", err));
    SP_CU_GO(sp_cu_check(cudaMalloc(&b.Ap, (size_t)P * Rs * 4), "cudaMalloc(GPTQ panel)", err));
    SP_CU_GO(sp_cu_check(cudaMalloc(&b.Ps, (size_t)G * Rs * 4), "cudaMalloc(GPTQ scales)", err));
    SP_CU_GO(sp_cu_check(cudaMalloc(&b.Pz, (size_t)G * Rs), "cudaMalloc(GPTQ zeros)", err));
    SP_CU_GO(sp_cu_check(cudaMalloc(&b.Ct, Rs * Cs), "cudaMalloc(GPTQ codes)", err));
    SP_CU_GO(sp_cu_check(cudaMalloc(&b.codes, Rs * Cs), "cudaMalloc(GPTQ codes)", err));
    if (lazy) {
        SP_CU_GO(sp_cu_check(cudaMalloc(&b.V, gmax * Rs * 4), "cudaMalloc(GPTQ group)", err));
        SP_CU_GO(sp_cu_check(cudaMalloc(&b.Uin, smax * smax * 4), "cudaMalloc(GPTQ U)", err));
        SP_CU_GO(sp_cu_check(cudaMalloc(&b.Ae, gmax * Rs * 4), "cudaMalloc(GPTQ group)", err));
        b.hR = (float *)sp_malloc(smax * smax * 4, err, "GPTQ R block");
        if (!b.hR) {
            st = SP_ENOMEM;
            goto done;
        }
    }
    b.hPs = (float *)sp_malloc((size_t)G * Rs * 4, err, "GPTQ scales");
    b.hPz = b.hPs ? (uint8_t *)sp_malloc((size_t)G * Rs, err, "GPTQ zeros") : NULL;
    if (!b.hPz) {
        st = SP_ENOMEM;
        goto done;
    }
    for (int r0 = 0; r0 < rows && st == SP_OK; r0 += Rc)
        st = run_chunk(q, &b, W + (size_t)r0 * Cs, rows - r0 < Rc ? rows - r0 : Rc, r0, bits,
                       codes, scales, zeros, G, err);
done:
    cudaStreamSynchronize(g->stream);
    cudaFree(b.W);
    cudaFree(b.X);
    cudaFree(b.Ap);
    cudaFree(b.Ps);
    cudaFree(b.Pz);
    cudaFree(b.Ct);
    cudaFree(b.codes);
    cudaFree(b.V);
    cudaFree(b.Uin);
    cudaFree(b.Ae);
    free(b.hR);
    free(b.hPs);
    free(b.hPz);
    pthread_mutex_unlock(&g->mu);
    return st;
}
