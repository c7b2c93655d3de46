/* sp_gptq.c — GPTQ with one factorization per Hessian (see sp_gptq.h for the algorithm).
 *
 * The numeric core lives in sp_gptq_body.h, included below once per precision (float and
 * double), so the two precisions run the same code: the tests check the double instance code
 * for code against a plain implementation of the reference, and the float instance against
 * the double one.
 */
#include "kernels/sp_gptq.h"

#include <cblas.h>
#include <float.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/sp_cuda.h"
#include "kernels/sp_blas.h"
#include "kernels/sp_gtype.h"

#define SP_GPTQ_SUB 16     /* columns per sub-block inside a block (rank-1 updates within)  */
#define SP_GPTQ_PANEL 256  /* columns per left-looking panel (a multiple of the block)       */
#define SP_GPTQ_CHUNK 256  /* rows per pass when quantizing a column                         */
#define SP_GPTQ_ROWS 1024  /* rows per chunk of the layer (buffers sized for one chunk)      */
#define SP_GPTQ_RETRIES 4  /* damp, damp·10, ..., damp·10^4                                 */

struct sp_gptq_ctx {
    int cols;             /* C                                                              */
    int gs;               /* group size, >= 1 (-1 resolved to C)                            */
    int gtype;            /* 0, or the GGUF type of the level being quantized (per call)    */
    int ps;               /* columns whose parameters are fixed at once: gs, or the type's  *
                           * block (per call; see sp_gptq_body.h)                           */
    sp_gptq_opts o;
    int n_dead, retries;
    double damp, lambda;  /* relative and absolute damping used                             */
    const double *H;      /* the caller's undamped H, for the layer error (not owned)       */
    int32_t *perm;        /* [C] position j processes original column perm[j]               */
    int32_t *invperm;     /* [C] inverse of perm                                            */
    uint8_t *dead;        /* [C] 1 where H[i,i] == 0                                        */
    double *hdiag;        /* [C] diag(H) (dead: 1), original order: weights of SP_QSEARCH_HMSE/GGUF */
    double *gwt;          /* [C] R_jj² of each column's position, original order: the weights *
                           * of a gtype level's block search (see sp_gptq_quantize_level)     */
    void *R;              /* [C, C] float or double, see sp_gptq_body.h (NULL with gq)      */
    sp_cuda_gptq *gq;     /* the factor on the GPU (sp_gptq_opts.gpu), or NULL              */
};

#define SP_T float
#define SP_FN(name) name##_f32
#define SP_GEMM sp_blas_sgemm
#define SP_GER cblas_sger
#define SP_POTRF LAPACKE_spotrf_work
#define SP_TRTRI LAPACKE_strtri_work
#define SP_QPARAMS sp_quant_params_f32
#define SP_QSEARCH sp_quant_params_search_f32
#define SP_GSEARCH sp_gtype_params_search_f32
#define SP_QCOLUMN sp_quant_column_f32
#include "kernels/sp_gptq_body.h"
#undef SP_T
#undef SP_FN
#undef SP_GEMM
#undef SP_GER
#undef SP_POTRF
#undef SP_TRTRI
#undef SP_QPARAMS
#undef SP_QSEARCH
#undef SP_GSEARCH
#undef SP_QCOLUMN

#define SP_T double
#define SP_FN(name) name##_f64
#define SP_GEMM sp_blas_dgemm
#define SP_GER cblas_dger
#define SP_POTRF LAPACKE_dpotrf_work
#define SP_TRTRI LAPACKE_dtrtri_work
#define SP_QPARAMS sp_quant_params_f64
#define SP_QSEARCH sp_quant_params_search_f64
#define SP_GSEARCH sp_gtype_params_search_f64
#define SP_QCOLUMN sp_quant_column_f64
#include "kernels/sp_gptq_body.h"
#undef SP_T
#undef SP_FN
#undef SP_GEMM
#undef SP_GER
#undef SP_POTRF
#undef SP_TRTRI
#undef SP_QPARAMS
#undef SP_QSEARCH
#undef SP_GSEARCH
#undef SP_QCOLUMN

/* factor_f32 on the GPU: the same matrix J·P·(H_fix + λI)·Pᵀ·J (lower triangle, column-major)
 * is built here and factored by cuSOLVER, with the same damp retries; R stays on the device. */
static sp_status factor_cuda(sp_gptq_ctx *c, const double *H, const double *dfix, double mean,
                             sp_err *err) {
    const size_t n = (size_t)c->cols;
    sp_cuda_gptq_desc d = {c->cols, c->gs, c->o.block, c->o.act_order, c->o.sym, c->o.mse,
                           c->perm, c->invperm, c->dead, dfix};
    SP_FORWARD(sp_cuda_gptq_new(&c->gq, c->o.gpu, &d, err));
    float *a = sp_malloc(n * n * sizeof *a, err, "GPTQ matrix");
    if (!a) return SP_ENOMEM;
    double damp = c->o.damp;
    int ok = 0;
    sp_status st = SP_OK;
    for (int t = 0; t <= SP_GPTQ_RETRIES && !ok && st == SP_OK; t++, damp *= 10.0) {
        const double lam = damp * mean;
        for (size_t v = 0; v < n; v++) {
            const size_t pv = (size_t)c->perm[n - 1 - v];
            const double *hrow = H + pv * n;
            float *col = a + v * n;
            if (t == 0) memset(col, 0, v * sizeof *col);
            for (size_t u = v + 1; u < n; u++) col[u] = (float)hrow[c->perm[n - 1 - u]];
            col[v] = (float)(dfix[pv] + lam);
        }
        st = sp_cuda_gptq_factor(c->gq, a, &ok, err);
        if (st == SP_OK && ok) {
            c->retries = t;
            c->damp = damp;
            c->lambda = lam;
        }
    }
    free(a);
    if (st != SP_OK) return st;
    if (!ok)
        return sp_err_set(err, SP_ENUMERIC,
                          "sp_gptq_prepare: H + λI (%zu x %zu) is not positive definite even "
                          "with damp %g (λ = %g)",
                          n, n, damp / 10.0, damp / 10.0 * mean);
    return SP_OK;
}

void sp_gptq_opts_default(sp_gptq_opts *o) {
    memset(o, 0, sizeof *o);
    o->damp = 0.01;
    o->block = 128;
    o->group_size = 128;
    o->precision = SP_GPTQ_F32;
}

void sp_gptq_free(sp_gptq_ctx *ctx) {
    if (!ctx) return;
    free(ctx->perm);
    free(ctx->invperm);
    free(ctx->dead);
    free(ctx->hdiag);
    free(ctx->gwt);
    free(ctx->R);
    sp_cuda_gptq_free(ctx->gq);
    free(ctx);
}

void sp_gptq_get_info(const sp_gptq_ctx *ctx, sp_gptq_info *info) {
    info->cols = ctx->cols;
    info->n_dead = ctx->n_dead;
    info->retries = ctx->retries;
    info->damp = ctx->damp;
    info->lambda = ctx->lambda;
}

/* Sort key for act_order: decreasing diag, ties by increasing column (a stable order). */
typedef struct {
    double d;
    int32_t i;
} diag_key;

static int cmp_diag_desc(const void *pa, const void *pb) {
    const diag_key *a = pa, *b = pb;
    if (a->d != b->d) return a->d > b->d ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

sp_status sp_gptq_prepare(sp_gptq_ctx **out, const double *H, int cols, const sp_gptq_opts *o,
                          sp_err *err) {
    SP_RETURN_IF(!out, err, SP_EINVAL, "sp_gptq_prepare: ctx is NULL");
    *out = NULL;
    SP_RETURN_IF(!H, err, SP_EINVAL, "sp_gptq_prepare: H is NULL");
    SP_RETURN_IF(cols < 1, err, SP_EINVAL, "sp_gptq_prepare: cols=%d is not positive", cols);
    sp_gptq_opts op;
    if (o)
        op = *o;
    else
        sp_gptq_opts_default(&op);
    SP_RETURN_IF(!(isfinite(op.damp) && op.damp > 0), err, SP_EINVAL,
                 "sp_gptq_prepare: damp=%g must be finite and > 0", op.damp);
    SP_RETURN_IF(op.block < 1, err, SP_EINVAL, "sp_gptq_prepare: block=%d must be >= 1",
                 op.block);
    SP_RETURN_IF(op.group_size == 0 || op.group_size < -1, err, SP_EINVAL,
                 "sp_gptq_prepare: group_size=%d (use >= 1, or -1 for one group per row)",
                 op.group_size);
    SP_RETURN_IF(op.precision != SP_GPTQ_F32 && op.precision != SP_GPTQ_F64, err, SP_EINVAL,
                 "sp_gptq_prepare: precision=%d is neither SP_GPTQ_F32 nor SP_GPTQ_F64",
                 op.precision);
    op.act_order = op.act_order != 0;
    op.sym = op.sym != 0;
    SP_RETURN_IF(op.mse < 0 || op.mse >= SP_QSEARCH_COUNT, err, SP_EINVAL,
                 "sp_gptq_prepare: mse=%d is not an SP_QSEARCH_* value", op.mse);
    /* the CUDA group-parameter kernel has the min-max, mse and hmse rules only (issue 11) */
    SP_RETURN_IF(op.gpu && op.mse == SP_QSEARCH_GGUF, err, SP_EUNSUPPORTED,
                 "sp_gptq_prepare: the GGUF scale rule (--format gguf, --scale-search gguf) runs "
                 "on the CPU only (use --device cpu)");
    const size_t n = (size_t)cols;
    /* The float factorization needs H (and λ) well inside float range. */
    const double hmax = op.precision == SP_GPTQ_F32 ? 1e30 : DBL_MAX;
    for (size_t i = 0; i < n * n; i++)
        SP_RETURN_IF(!(fabs(H[i]) <= hmax), err, SP_ENUMERIC,
                     "sp_gptq_prepare: H[%zu, %zu] = %g is not finite%s", i / n, i % n, H[i],
                     isfinite(H[i]) ? " in float" : "");

    sp_status st = SP_ENOMEM;
    diag_key *keys = NULL;
    double *dfix = NULL;
    sp_gptq_ctx *c = sp_calloc(1, sizeof *c, err, "GPTQ context");
    if (!c) return SP_ENOMEM;
    c->cols = cols;
    c->gs = op.group_size == -1 ? cols : op.group_size;
    c->ps = c->gs;
    c->o = op;
    c->H = H;
    c->perm = sp_malloc(n * sizeof *c->perm, err, "GPTQ order");
    c->invperm = sp_malloc(n * sizeof *c->invperm, err, "GPTQ order");
    c->dead = sp_malloc(n, err, "GPTQ dead columns");
    dfix = sp_malloc(n * sizeof *dfix, err, "GPTQ diagonal");
    keys = sp_malloc(n * sizeof *keys, err, "GPTQ order");
    if (!c->perm || !c->invperm || !c->dead || !dfix || !keys) goto done;

    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        double d = H[i * n + i];
        c->dead[i] = d == 0.0;
        c->n_dead += c->dead[i];
        dfix[i] = c->dead[i] ? 1.0 : d;
        sum += dfix[i];
        keys[i].d = dfix[i];
        keys[i].i = (int32_t)i;
    }
    const double mean = sum / (double)n;
    if (!(mean > 0)) {
        st = sp_err_set(err, SP_ENUMERIC,
                        "sp_gptq_prepare: mean of diag(H) is %g; a Hessian has a positive one",
                        mean);
        goto done;
    }
    if (op.act_order) qsort(keys, n, sizeof *keys, cmp_diag_desc);
    for (size_t j = 0; j < n; j++) {
        c->perm[j] = keys[j].i;
        c->invperm[keys[j].i] = (int32_t)j;
    }
    st = op.precision == SP_GPTQ_F64 ? factor_f64(c, H, dfix, mean, err)
         : op.gpu                    ? factor_cuda(c, H, dfix, mean, err)
                                     : factor_f32(c, H, dfix, mean, err);
    if (st == SP_OK) {
        c->hdiag = dfix; /* kept: the weights of the group parameter searches */
        dfix = NULL;
    }
    /* R_jj² = 1 / [H_F⁻¹]_jj, F the columns from position j on: the loss GPTQ's column j adds,
     * (w_j − q_j)² R_jj², once the later columns compensate — the weight that matters for the
     * parameters of a block that GPTQ is about to quantize (diag(H) overstates columns whose
     * error the later ones can absorb). The GPU keeps R on the device: diag(H) there. */
    if (st == SP_OK && c->R) {
        c->gwt = sp_malloc(n * sizeof *c->gwt, err, "GPTQ column weights");
        if (!c->gwt) st = SP_ENOMEM;
        for (size_t j = 0; st == SP_OK && j < n; j++) {
            double r = op.precision == SP_GPTQ_F64 ? ((const double *)c->R)[j + j * n]
                                                   : ((const float *)c->R)[j + j * n];
            c->gwt[c->perm[j]] = r * r;
        }
    }
done:
    free(keys);
    free(dfix);
    if (st != SP_OK) {
        sp_gptq_free(c);
        return st;
    }
    *out = c;
    return SP_OK;
}

static sp_status quad_trace(const float *W, const float *deq, const sp_qlayer *q,
                            const double *H, int rows, int cols, double *out, sp_err *err);

sp_status sp_gptq_quantize(const sp_gptq_ctx *ctx, const float *W, int rows, int bits,
                           sp_qlayer *out, double *layer_err_out, sp_err *err) {
    return sp_gptq_quantize_level(ctx, W, rows, bits, 0, 0, out, layer_err_out, err);
}

sp_status sp_gptq_quantize_level(const sp_gptq_ctx *ctx0, const float *W, int rows, int bits,
                                 int gtype, int group_size, sp_qlayer *out,
                                 double *layer_err_out, sp_err *err) {
    SP_RETURN_IF(!out, err, SP_EINVAL, "sp_gptq_quantize: output layer is NULL");
    memset(out, 0, sizeof *out);
    SP_RETURN_IF(!ctx0, err, SP_EINVAL, "sp_gptq_quantize: ctx is NULL");
    /* The level's own group size and type on a copy of the context (the factor is shared). */
    sp_gptq_ctx view = *ctx0;
    const sp_gptq_ctx *ctx = &view;
    int gsym = ctx0->o.sym;
    SP_RETURN_IF(group_size < -1 || (group_size && gtype), err, SP_EINVAL,
                 "sp_gptq_quantize: group_size=%d (0, >= 1 or -1; 0 with a GGUF type)", group_size);
    const int gs = group_size == -1 ? ctx0->cols : group_size;
    if (gs && gs != ctx0->gs) {
        SP_RETURN_IF(ctx0->gq != NULL, err, SP_EUNSUPPORTED, "sp_gptq_quantize: a level's own "
                     "group size (%d, not the context's %d) runs on the CPU only (--device cpu)",
                     gs, ctx0->gs);
        view.gs = view.ps = gs;
    }
    if (gtype) {
        int tb = 0, tg = 0;
        SP_RETURN_IF(!sp_gtype_is_level(gtype), err, SP_EINVAL,
                     "sp_gptq_quantize: GGUF type %d is not a level type", gtype);
        sp_gtype_level(gtype, &tb, &tg, &gsym);
        SP_RETURN_IF(tb != bits, err, SP_EINVAL, "sp_gptq_quantize: %s is %d bits, not %d",
                     sp_gtype_name(gtype), tb, bits);
        SP_RETURN_IF(ctx0->cols % sp_gtype_block(gtype), err, SP_EINVAL,
                     "sp_gptq_quantize: %d columns are not a multiple of %s's block of %d",
                     ctx0->cols, sp_gtype_name(gtype), sp_gtype_block(gtype));
        SP_RETURN_IF(ctx0->gq != NULL, err, SP_EUNSUPPORTED,
                     "sp_gptq_quantize: GPTQ in %s runs on the CPU only (--device cpu)",
                     sp_gtype_name(gtype));
        view.gs = tg;
        view.ps = sp_gtype_block(gtype);
    }
    view.gtype = gtype;
    SP_RETURN_IF(!W, err, SP_EINVAL, "sp_gptq_quantize: W is NULL");
    SP_RETURN_IF(rows < 1, err, SP_EINVAL, "sp_gptq_quantize: rows=%d is not positive", rows);
    SP_RETURN_IF((bits < 2 && !(bits == 1 && gtype == SP_GT_Q1_0)) || bits > 8, err, SP_EINVAL,
                 "sp_gptq_quantize: bits=%d is outside 2..8 (1: Q1_0 only)", bits);
    const size_t C = (size_t)ctx->cols;
    for (size_t i = 0; i < (size_t)rows * C; i++)
        SP_RETURN_IF(!isfinite(W[i]), err, SP_ENUMERIC,
                     "sp_gptq_quantize: W[%zu, %zu] = %g is not finite", i / C, i % C,
                     (double)W[i]);
    SP_FORWARD(sp_qlayer_alloc_level(out, rows, ctx->cols, bits, ctx->gs, gsym, gtype, err));
    sp_status st = ctx->o.precision == SP_GPTQ_F64 ? run_f64(ctx, W, rows, bits, out, err)
                   : ctx->gq ? sp_cuda_gptq_run(ctx->gq, W, rows, bits, out->codes, out->scales,
                                                out->zeros, out->n_groups, err)
                             : run_f32(ctx, W, rows, bits, out, err);
    if (st == SP_OK && layer_err_out)
        st = quad_trace(W, NULL, out, ctx->H, rows, ctx->cols, layer_err_out, err);
    if (st != SP_OK) sp_qlayer_free(out);
    return st;
}

/* Σ_r δ_r H δ_rᵀ with δ = W − deq, in blocks of about 4M doubles of rows. deq comes from the
 * dense array deq or, row block by row block, from the quantized layer q (no full dequantized
 * copy: 4·R·C bytes saved, 0.9 GB for a 70B down_proj); both NULL: δ = W. */
static sp_status quad_trace(const float *W, const float *deq, const sp_qlayer *q,
                            const double *H, int rows, int cols, double *out, sp_err *err) {
    const size_t C = (size_t)cols;
    size_t rc = ((size_t)1 << 22) / C;
    rc = rc < 1 ? 1 : rc > (size_t)rows ? (size_t)rows : rc;
    double *D = sp_malloc(rc * C * sizeof *D, err, "layer error ΔW");
    double *M = sp_malloc(rc * C * sizeof *M, err, "layer error ΔW·H");
    float *Q = q ? sp_malloc(rc * C * sizeof *Q, err, "layer error rows") : NULL;
    if (!D || !M || (q && !Q)) {
        free(D);
        free(M);
        free(Q);
        return SP_ENOMEM;
    }
    double total = 0;
    for (size_t r0 = 0; r0 < (size_t)rows; r0 += rc) {
        size_t m = (size_t)rows - r0 < rc ? (size_t)rows - r0 : rc;
        const float *dq = deq ? deq + r0 * C : Q;
        if (q) sp_qlayer_dequant_rows(Q, q, (int)r0, (int)(r0 + m));
        for (size_t i = 0; i < m * C; i++)
            D[i] = (double)W[r0 * C + i] - (dq ? (double)dq[i] : 0.0);
        sp_blas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, cols, cols, 1.0, D,
                      cols, H, cols, 0.0, M, cols);
        for (size_t i = 0; i < m * C; i++) total += M[i] * D[i];
    }
    free(D);
    free(M);
    free(Q);
    *out = total;
    return SP_OK;
}

sp_status sp_gptq_layer_error(const float *W, const float *deq, const double *H, int rows,
                              int cols, double *out, sp_err *err) {
    SP_RETURN_IF(!W || !deq || !H || !out, err, SP_EINVAL, "sp_gptq_layer_error: NULL argument");
    SP_RETURN_IF(rows < 1 || cols < 1, err, SP_EINVAL,
                 "sp_gptq_layer_error: shape [%d, %d] is not positive", rows, cols);
    return quad_trace(W, deq, NULL, H, rows, cols, out, err);
}

double sp_gptq_weight_energy(const float *W, const double *H, int rows, int cols) {
    double e = NAN;
    if (!W || !H || rows < 1 || cols < 1) return NAN;
    if (quad_trace(W, NULL, NULL, H, rows, cols, &e, NULL) != SP_OK) return NAN;
    return e;
}
