/* sp_hessian.c — double-precision Hessian accumulation (see sp_hessian.h).
 *
 * Shape legend: C columns, n rows per batch, k rows per chunk: k = max(512, 64 MiB / 8C).
 * Each dsyrk call streams all of S, so k must be large enough for the C²·k flops to dominate
 * that traffic; 512 rows keep it to a few percent even at C = 28672.
 */
#include "sp_hessian.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SP_HESS_CHUNK_BYTES ((size_t)64 << 20)
#define SP_HESS_CHUNK_MIN 512

struct sp_hessian {
    int cols;
    int final;        /* 1 after finalize: S holds H                                */
    uint64_t count;   /* N                                                          */
    size_t chunk;     /* k: rows converted to double per dsyrk                      */
    double *S;        /* [C, C] raw sum (upper), or H after finalize                */
    double *Xd;       /* [k, C] double copy of a chunk of rows                      */
};

sp_status sp_hessian_create(sp_hessian **out, int cols, sp_err *err) {
    SP_RETURN_IF(!out, err, SP_EINVAL, "sp_hessian_create: output is NULL");
    *out = NULL;
    SP_RETURN_IF(cols < 1, err, SP_EINVAL, "sp_hessian_create: cols=%d is not positive", cols);
    const size_t C = (size_t)cols;
    sp_hessian *h = sp_calloc(1, sizeof *h, err, "Hessian");
    if (!h) return SP_ENOMEM;
    h->cols = cols;
    h->chunk = SP_HESS_CHUNK_BYTES / (C * sizeof(double));
    if (h->chunk < SP_HESS_CHUNK_MIN) h->chunk = SP_HESS_CHUNK_MIN;
    h->S = sp_calloc(C * C, sizeof(double), err, "Hessian sum");
    h->Xd = sp_malloc(h->chunk * C * sizeof(double), err, "Hessian batch copy");
    if (!h->S || !h->Xd) {
        sp_hessian_free(h);
        return SP_ENOMEM;
    }
    *out = h;
    return SP_OK;
}

void sp_hessian_free(sp_hessian *h) {
    if (!h) return;
    free(h->S);
    free(h->Xd);
    free(h);
}

sp_status sp_hessian_add(sp_hessian *h, const float *X, size_t n, sp_err *err) {
    SP_RETURN_IF(!h, err, SP_EINVAL, "sp_hessian_add: accumulator is NULL");
    SP_RETURN_IF(h->final, err, SP_EINVAL, "sp_hessian_add: the Hessian is already finalized");
    if (n == 0) return SP_OK;
    SP_RETURN_IF(!X, err, SP_EINVAL, "sp_hessian_add: X is NULL");
    const size_t C = (size_t)h->cols;
    /* Check everything first so that a bad batch leaves S untouched. */
    for (size_t i = 0; i < n * C; i++)
        SP_RETURN_IF(!isfinite(X[i]), err, SP_ENUMERIC,
                     "sp_hessian_add: X[%zu, %zu] = %g is not finite", i / C, i % C,
                     (double)X[i]);
    for (size_t r0 = 0; r0 < n; r0 += h->chunk) {
        const size_t k = n - r0 < h->chunk ? n - r0 : h->chunk;
        const float *x = X + r0 * C;
        for (size_t i = 0; i < k * C; i++) h->Xd[i] = (double)x[i];
        /* S (upper, row-major) += Xdᵀ Xd, Xd [k, C]. */
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, h->cols, (int)k, 1.0, h->Xd, h->cols,
                    1.0, h->S, h->cols);
    }
    h->count += n;
    return SP_OK;
}

sp_status sp_hessian_finalize(sp_hessian *h, const double **H_out, sp_err *err) {
    SP_RETURN_IF(!h || !H_out, err, SP_EINVAL, "sp_hessian_finalize: NULL argument");
    if (!h->final) {
        SP_RETURN_IF(h->count == 0, err, SP_EINVAL,
                     "sp_hessian_finalize: no rows were added (N = 0)");
        const size_t C = (size_t)h->cols;
        const double f = 2.0 / (double)h->count;
        for (size_t i = 0; i < C; i++) {
            double *row = h->S + i * C;
            for (size_t j = i; j < C; j++) row[j] *= f;
        }
        /* Mirror the upper triangle in tiles (the column walk is strided). */
        for (size_t i0 = 0; i0 < C; i0 += 64)
            for (size_t j0 = i0; j0 < C; j0 += 64)
                for (size_t i = i0; i < i0 + 64 && i < C; i++)
                    for (size_t j = j0 > i + 1 ? j0 : i + 1; j < j0 + 64 && j < C; j++)
                        h->S[j * C + i] = h->S[i * C + j];
        h->final = 1;
    }
    *H_out = h->S;
    return SP_OK;
}

sp_status sp_hessian_set_chunk(sp_hessian *h, size_t rows, sp_err *err) {
    SP_RETURN_IF(!h || rows < 1, err, SP_EINVAL, "sp_hessian_set_chunk: chunk of %zu rows",
                 rows);
    double *x = sp_malloc(rows * (size_t)h->cols * sizeof(double), err, "Hessian batch copy");
    if (!x) return SP_ENOMEM;
    free(h->Xd);
    h->Xd = x;
    h->chunk = rows;
    return SP_OK;
}

double *sp_hessian_sum(sp_hessian *h) { return h->S; }

uint64_t sp_hessian_count(const sp_hessian *h) { return h->count; }

void sp_hessian_set_count(sp_hessian *h, uint64_t n) { h->count = n; }

int sp_hessian_cols(const sp_hessian *h) { return h->cols; }
