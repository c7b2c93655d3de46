/* sp_hacc.c — see sp_hacc.h. */
#include "kernels/sp_hacc.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/sp_cuda.h"
#include "kernels/sp_blas.h"
#include "mpi/sp_mpi.h"

sp_status sp_hacc_init(sp_hacc *h, int n, int max_rows, int64_t total_rows, double bound,
                       sp_err *err) {
    memset(h, 0, sizeof *h);
    SP_RETURN_IF(n < 1 || max_rows < 1 || total_rows < 1, err, SP_EINVAL,
                 "hessian: bad sizes n=%d max_rows=%d total_rows=%lld", n, max_rows,
                 (long long)total_rows);
    SP_RETURN_IF(!(bound > 0) || !isfinite(bound), err, SP_EINVAL,
                 "hessian: input bound %g is not a positive finite number", bound);
    /* g = 2^(ceil(log2(N·B²)) − 61): every |partial sum| / g stays below 2^61 (+ rounding). */
    double top = (double)total_rows * bound * bound;
    SP_RETURN_IF(!isfinite(top), err, SP_ENUMERIC, "hessian: input bound %g too large", bound);
    h->grid = ldexp(1.0, (int)ceil(log2(top)) - 61);
    h->bound = bound;
    h->n = n;
    h->max_rows = max_rows;
    size_t nn = (size_t)n * (size_t)(n + 1) / 2;
    h->acc = sp_calloc(nn, sizeof *h->acc, err, "hessian accumulator");
    h->xd = h->acc ? sp_malloc((size_t)max_rows * n * sizeof *h->xd, err, "hessian input") : NULL;
    h->panel = h->xd ? sp_malloc((size_t)n * SP_HACC_PANEL * sizeof *h->panel, err, "hessian panel")
                     : NULL;
    if (!h->panel) {
        sp_hacc_free(h);
        return SP_ENOMEM;
    }
    return SP_OK;
}

sp_status sp_hacc_use_cuda(sp_hacc *h, struct sp_cuda *g, sp_err *err) {
    SP_RETURN_IF(!h->xd || h->rows != 0 || h->gpu, err, SP_EINVAL,
                 "hessian: sp_hacc_use_cuda after the first window");
    SP_FORWARD(sp_cuda_hacc_new(&h->gpu, g, h->n, h->max_rows, h->grid, h->bound, err));
    free(h->xd);
    free(h->panel);
    h->xd = h->panel = NULL;
    return SP_OK;
}

void sp_hacc_free(sp_hacc *h) {
    sp_cuda_hacc_free(h->gpu);
    free(h->acc);
    free(h->xd);
    free(h->panel);
    memset(h, 0, sizeof *h);
}

/* llrint(x) for |x| < 2^62, inline (a libm call per entry cost 10-15% of sp_hacc_add). Below
 * 2^52, adding and subtracting 2^52 rounds |x| to the nearest integer, ties to even, in the
 * default rounding mode (the sum's unit in the last place is 1); from 2^52 up every double is
 * an integer already. Rounding |x| and restoring the sign is the same as rounding x (ties to
 * even are symmetric), so the result is bit for bit llrint's. ISO C mode (CMake
 * C_EXTENSIONS OFF) keeps GCC from contracting v·inv + 2^52 into an fma. */
static inline int64_t round_i64(double x) {
    const double big = 4503599627370496.0; /* 2^52 */
    double a = fabs(x);
    if (a >= big) return (int64_t)x;
    double r = (a + big) - big;
    return (int64_t)(x < 0 ? -r : r);
}

sp_status sp_hacc_add(sp_hacc *h, const float *X, int rows, sp_err *err) {
    if (h->gpu) {
        SP_FORWARD(sp_cuda_hacc_add(h->gpu, X, rows, err));
        h->rows += rows;
        return SP_OK;
    }
    SP_RETURN_IF(!h->xd, err, SP_EINVAL, "hessian: accumulator already reduced");
    SP_RETURN_IF(rows < 1 || rows > h->max_rows, err, SP_EINVAL,
                 "hessian: %d rows (max %d)", rows, h->max_rows);
    int n = h->n;
    size_t cnt = (size_t)rows * n;
    for (size_t i = 0; i < cnt; i++) {
        if (!isfinite(X[i]))
            return sp_err_set(err, SP_ENUMERIC, "hessian: non-finite input at token %zu, "
                              "channel %zu", i / (size_t)n, i % (size_t)n);
        h->xd[i] = X[i];
    }
    /* Entries of one window are at most rows·B²; a larger one means the bound was wrong. */
    double limit = (double)rows * h->bound * h->bound, inv = 1.0 / h->grid;
    for (int j0 = 0; j0 < n; j0 += SP_HACC_PANEL) {
        int pw = n - j0 < SP_HACC_PANEL ? n - j0 : SP_HACC_PANEL;
        int ih = j0 + pw; /* rows i < ih of columns [j0, j0+pw) hold the upper triangle */
        /* panel rows [0, j0) = X[:, 0:j0]ᵀ · X[:, j0:j0+pw] (a rectangle: dgemm), rows
         * [j0, ih) = the upper triangle of X[:, j0:j0+pw]ᵀ · X[:, j0:j0+pw] (dsyrk: half the
         * flops of a full diagonal block, which would add pw/n to the work). Both read xd
         * [rows, n]; the same calls on every rank, so the same bits. The dgemm (the bulk, j0
         * rows) is threaded by sp_blas, whose bits do not depend on the thread count; the dsyrk
         * is a single-threaded OpenBLAS call (sp_blas keeps OpenBLAS at one thread). */
        if (j0 > 0)
            sp_blas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, j0, pw, rows, 1.0, h->xd, n,
                          h->xd + j0, n, 0.0, h->panel, pw);
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, pw, rows, 1.0, h->xd + j0, n, 0.0,
                    h->panel + (size_t)j0 * pw, pw);
        for (int i = 0; i < ih; i++) {
            const double *prow = h->panel + (size_t)i * pw;
            int jstart = i > j0 ? i - j0 : 0;
            /* packed row i starts at column i: arow[j] is entry (i, j0 + j) */
            int64_t *arow = h->acc + sp_hacc_index(n, i, i) - (size_t)(i - j0);
            for (int j = jstart; j < pw; j++) {
                double v = prow[j];
                if (fabs(v) > limit)
                    return sp_err_set(err, SP_EINTERNAL, "hessian: entry (%d,%d) = %g exceeds "
                                      "the a-priori bound %g", i, j0 + j, v, limit);
                arow[j] += round_i64(v * inv);
            }
        }
    }
    h->rows += rows;
    return SP_OK;
}

sp_status sp_hacc_allreduce(sp_hacc *h, MPI_Comm comm, sp_err *err) {
    /* The device accumulator joins the host one (exact integer sums), then goes. */
    if (h->gpu) {
        sp_status st = sp_cuda_hacc_download(h->gpu, h->acc, err);
        sp_cuda_hacc_free(h->gpu);
        h->gpu = NULL;
        SP_FORWARD(st);
    }
    /* The window scratch is done with: give it back before the reduction's own buffers. */
    free(h->xd);
    free(h->panel);
    h->xd = h->panel = NULL;
    size_t nn = (size_t)h->n * (size_t)(h->n + 1) / 2, chunk = (size_t)1 << 27;
    for (size_t off = 0; off < nn; off += chunk) {
        int cnt = (int)(nn - off < chunk ? nn - off : chunk);
        SP_FORWARD(sp_mpi_check(MPI_Allreduce(MPI_IN_PLACE, h->acc + off, cnt, MPI_INT64_T,
                                              MPI_SUM, comm), "MPI_Allreduce(hessian)", err));
    }
    return sp_mpi_check(MPI_Allreduce(MPI_IN_PLACE, &h->rows, 1, MPI_INT64_T, MPI_SUM, comm),
                        "MPI_Allreduce(hessian rows)", err);
}

double *sp_hacc_finalize(const sp_hacc *h, sp_err *err) {
    int n = h->n;
    double *H = sp_malloc((size_t)n * (size_t)n * sizeof *H, err, "hessian");
    if (!H) return NULL;
    double scale = h->rows > 0 ? 2.0 * h->grid / (double)h->rows : 0.0;
    for (int i = 0; i < n; i++) {
        const int64_t *arow = h->acc + sp_hacc_index(n, i, i);
        for (int j = i; j < n; j++) {
            double v = (double)arow[j - i] * scale;
            H[(size_t)i * n + j] = v;
            H[(size_t)j * n + i] = v;
        }
    }
    return H;
}

/* Expand in place. The packed row i starts at p_i = sp_hacc_index(n, i, i) <= i·n + i, where
 * row i's upper part goes, and ends before p_{i+1}. Rows are expanded from the last one up and
 * each row from its last entry down, so every write lands at or after the entry it reads and
 * after every packed entry still unread (those of rows < i end at p_i). Then the lower
 * triangle is mirrored from the upper one in 64 x 64 tiles. Elements change type (int64 ->
 * double) through memcpy, so no pointer aliases two types. */
double *sp_hacc_take(sp_hacc *h, sp_err *err) {
    const size_t n = (size_t)h->n;
    double scale = h->rows > 0 ? 2.0 * h->grid / (double)h->rows : 0.0;
    sp_cuda_hacc_free(h->gpu); /* not reduced: its windows are lost (callers reduce first) */
    h->gpu = NULL;
    free(h->xd);
    free(h->panel);
    h->xd = h->panel = NULL;
    unsigned char *m = realloc(h->acc, n * n * sizeof(double));
    if (!m) {
        sp_hacc_free(h);
        sp_err_set(err, SP_ENOMEM, "cannot allocate %zu bytes for hessian", n * n * sizeof(double));
        return NULL;
    }
    h->acc = NULL;
    sp_hacc_free(h);
    for (size_t i = n; i-- > 0;) {
        size_t src = sp_hacc_index((int)n, (int)i, (int)i);
        for (size_t j = n; j-- > i;) {
            int64_t a;
            memcpy(&a, m + (src + (j - i)) * sizeof a, sizeof a);
            double v = (double)a * scale;
            memcpy(m + (i * n + j) * sizeof v, &v, sizeof v);
        }
    }
    double *H = (double *)(void *)m;
    for (size_t i0 = 0; i0 < n; i0 += 64)
        for (size_t j0 = i0; j0 < n; j0 += 64) {
            size_t i1 = i0 + 64 < n ? i0 + 64 : n, j1 = j0 + 64 < n ? j0 + 64 : n;
            for (size_t i = i0; i < i1; i++)
                for (size_t j = j0 > i + 1 ? j0 : i + 1; j < j1; j++) H[j * n + i] = H[i * n + j];
        }
    return H;
}
