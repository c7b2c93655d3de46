/* sp_quant.c — the quantized layer and the min-max group quantizer (see sp_quant.h).
 *
 * Shape legend
 *   R   rows of W (out features)        C   columns of W (in features)
 *   gs  group size (columns)            G   groups per row = ceil(C / gs)
 *   n   columns of one group (gs, or less for the last group of a row)
 *
 * Precision: the _f32 paths evaluate every step in float. They do it in double and round each
 * result to float, which gives the float result exactly: +, −, ×, ÷ rounded to double and then
 * to float equal the directly rounded float result because double has ≥ 2·24 + 2 bits.
 */
#include "kernels/sp_quant.h"
#include "kernels/sp_gtype.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SP_Q_CHUNK 64            /* rows handled per pass; per-row state lives on the stack  */
#define SP_F16_MIN_NORMAL 0x1p-14 /* smallest scale used: keeps fp16 scales normal and > 0   */
#define SP_F16_MAX 65504.0
#define SP_MSE_GRID 100          /* the reference's --mse search: grid, maxshrink, norm      */
#define SP_MSE_STEPS 80          /* int(maxshrink · grid) = int(0.8 · 100)                   */
#define SP_MSE_NORM 2.4

/* ---- the layer --------------------------------------------------------------------------- */

sp_status sp_qlayer_alloc(sp_qlayer *q, int rows, int cols, int bits, int group_size, int sym,
                          sp_err *err) {
    return sp_qlayer_alloc_level(q, rows, cols, bits, group_size, sym, 0, err);
}

sp_status sp_qlayer_alloc_level(sp_qlayer *q, int rows, int cols, int bits, int group_size,
                                int sym, int gtype, sp_err *err) {
    SP_RETURN_IF(!q, err, SP_EINVAL, "sp_qlayer_alloc: layer is NULL");
    memset(q, 0, sizeof *q);
    SP_RETURN_IF((bits < 2 && !(bits == 1 && gtype == SP_GT_Q1_0)) || bits > 8, err, SP_EINVAL,
                 "sp_qlayer_alloc: bits=%d is outside 2..8 (1: Q1_0 only)", bits);
    SP_RETURN_IF(rows < 1 || cols < 1, err, SP_EINVAL,
                 "sp_qlayer_alloc: shape [%d, %d] is not positive", rows, cols);
    int has_min = 0, n_super = 0;
    if (gtype) {
        int tb = 0, tg = 0, ts = 0;
        SP_RETURN_IF(!sp_gtype_is_level(gtype), err, SP_EINVAL,
                     "sp_qlayer_alloc: GGUF type %d is not a level type", gtype);
        sp_gtype_level(gtype, &tb, &tg, &ts);
        SP_RETURN_IF(tb != bits || tg != group_size || ts != (sym != 0), err, SP_EINVAL,
                     "sp_qlayer_alloc: %s is %d bits, group %d%s, not %d bits, group %d%s",
                     sp_gtype_name(gtype), tb, tg, ts ? " sym" : "", bits, group_size,
                     sym ? " sym" : "");
        SP_RETURN_IF(cols % sp_gtype_block(gtype), err, SP_EINVAL,
                     "sp_qlayer_alloc: %d columns are not a multiple of %s's block of %d", cols,
                     sp_gtype_name(gtype), sp_gtype_block(gtype));
        has_min = sp_gtype_has_min(gtype);
        n_super = sp_gtype_block(gtype) == 256 ? cols / 256 : 0;
    }
    int gs = group_size <= 0 ? cols : group_size;
    int ng = (int)(((long long)cols + gs - 1) / gs);
    size_t nc = (size_t)rows * (size_t)cols, np = (size_t)rows * (size_t)ng;
    size_t nm = has_min ? np : 0, ns = (size_t)rows * (size_t)n_super * 2;
    /* One allocation: 4-byte arrays first (malloc alignment covers them), bytes after. */
    size_t bytes = (np + nm + ns) * sizeof(float) + (size_t)cols * sizeof(int32_t) + nc + np;
    char *m = sp_calloc(1, bytes, err, "quantized layer");
    if (!m) return SP_ENOMEM;
    q->rows = rows;
    q->cols = cols;
    q->bits = bits;
    q->group_size = gs;
    q->n_groups = ng;
    q->sym = sym ? 1 : 0;
    q->gtype = gtype;
    q->n_super = n_super;
    q->scales = (float *)m;
    q->mins = nm ? q->scales + np : NULL;
    q->supers = ns ? q->scales + np + nm : NULL;
    q->g_idx = (int32_t *)(m + (np + nm + ns) * sizeof(float));
    q->codes = (uint8_t *)(q->g_idx + cols);
    q->zeros = q->codes + nc;
    q->mem_ = m;
    for (int c = 0; c < cols; c++) q->g_idx[c] = c / gs;
    return SP_OK;
}

void sp_qlayer_free(sp_qlayer *q) {
    if (!q) return;
    free(q->mem_);
    memset(q, 0, sizeof *q);
}

void sp_qlayer_dequant(float *W, const sp_qlayer *q) {
    sp_qlayer_dequant_rows(W, q, 0, q->rows);
}

void sp_qlayer_dequant_rows(float *W, const sp_qlayer *q, int r0, int r1) {
    const size_t C = (size_t)q->cols, G = (size_t)q->n_groups;
    for (size_t r = (size_t)r0; r < (size_t)r1; r++) {
        const float *s = q->scales + r * G;
        const uint8_t *z = q->zeros + r * G, *code = q->codes + r * C;
        float *w = W + (r - (size_t)r0) * C;
        for (size_t c = 0; c < C; c++) {
            int32_t g = q->g_idx[c];
            w[c] = s[g] * (float)((int)code[c] - (int)z[g]);
        }
        if (q->mins) { /* ggml rounds the product, then adds: no fused multiply-add here */
            const float *m = q->mins + r * G;
            for (size_t c = 0; c < C; c++) {
                volatile float p = w[c];
                w[c] = p + m[q->g_idx[c]];
            }
        }
    }
}

/* ---- scalar pieces ----------------------------------------------------------------------- */

double sp_quant_round_fp16(double x) {
    if (isnan(x)) return x;
    double a = fabs(x), r;
    if (a >= 65520.0) {
        /* 65520 is the midpoint between 65504 (odd last mantissa bit) and 2^16: ties to even
         * go up, out of the fp16 range. */
        r = INFINITY;
    } else if (a < 0x1p-14) {
        /* fp16 subnormals are the multiples of 2^-24; scaling by 2^24 is exact. */
        r = nearbyint(a * 0x1p24) * 0x1p-24;
    } else {
        /* Keep 10 of double's 52 fraction bits, rounding half to even on the bit pattern (a
         * carry into the exponent is the correct result). */
        uint64_t u;
        memcpy(&u, &a, sizeof u);
        const uint64_t drop = 42, half = (UINT64_C(1) << (drop - 1)) - 1;
        u += half + ((u >> drop) & 1);
        u &= ~((UINT64_C(1) << drop) - 1);
        memcpy(&r, &u, sizeof r);
    }
    return copysign(r, x);
}

/* s rounded to fp16 and kept inside [2^-14, 65504]: always > 0, finite and normal in fp16. */
static float fp16_scale(double s) {
    double r = sp_quant_round_fp16(s);
    if (!(r >= SP_F16_MIN_NORMAL)) r = SP_F16_MIN_NORMAL; /* also catches NaN */
    if (r > SP_F16_MAX) r = SP_F16_MAX;
    return (float)r;
}

/* Round half to even without a libm call (vectorizable). Adding 1.5·2^23 moves t into
 * [2^23, 2^24) where the float spacing is 1, so the addition itself rounds (ties to even in
 * the default rounding mode). |t| >= 2^22 is returned as is: callers clamp it to 0..255. */
static inline float rne_f(float t) {
    return fabsf(t) < 0x1p22f ? (t + 0x1.8p23f) - 0x1.8p23f : t;
}
static inline double rne_d(double t) {
    return fabs(t) < 0x1p51 ? (t + 0x1.8p52) - 0x1.8p52 : t;
}

/* Round to float when the float path is asked for (see the file comment). */
static inline double fr(double v, int f32) { return f32 ? (double)(float)v : v; }

/* Range adjustment of quant.py find_params: include 0, symmetric range, empty range -> ±1. */
static void adjust_range(double *xmin, double *xmax, int sym) {
    double lo = *xmin < 0 ? *xmin : 0, hi = *xmax > 0 ? *xmax : 0;
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

/* (s, z) for an adjusted range. */
static void range_params(float *s, int *z, double xmin, double xmax, int maxq, int sym, int f32) {
    double d = fr(fr(xmax - xmin, f32) / maxq, f32);
    float sc = fp16_scale(d);
    int zz = (maxq + 1) / 2;
    if (!sym) {
        double t = rne_d(fr(-xmin / (double)sc, f32));
        zz = t < 0 ? 0 : t > maxq ? maxq : (int)t;
    }
    *s = sc;
    *z = zz;
}

/* One element: the code, as a float/double holding an integer in [0, maxq]. The rounding
 * constant is added unconditionally (no branch, so loops vectorize): for |x/s| >= 2^22 (2^51)
 * the sum is not x/s rounded, but it is still beyond ±2^22 − 1, so the clamp gives the same
 * code (0 or maxq) as exact rounding would. */
static inline float quant_f(float x, float s, float zf, float maxq) {
    float q = ((x / s + 0x1.8p23f) - 0x1.8p23f) + zf;
    q = q < 0.0f ? 0.0f : q;
    return q > maxq ? maxq : q;
}
static inline double quant_d(double x, double s, double zf, double maxq) {
    double q = ((x / s + 0x1.8p52) - 0x1.8p52) + zf;
    q = q < 0.0 ? 0.0 : q;
    return q > maxq ? maxq : q;
}

/* ---- group parameters ---------------------------------------------------------------------- */

/* The group as seen by the core: element (r, k) = X[r·rs + k·cs], float or double. */
typedef struct {
    const float *f;
    const double *d;
    size_t rs, cs;
} grp_view;

static inline double gv_at(const grp_view *v, size_t r, size_t k) {
    size_t i = r * v->rs + k * v->cs;
    return v->f ? (double)v->f[i] : v->d[i];
}

/* Per-row min and max (both start at 0: the range always includes 0) for rows r0..r0+m-1. */
static void group_minmax(double *mn, double *mx, const grp_view *v, int r0, int m, int n) {
    for (int i = 0; i < m; i++) mn[i] = mx[i] = 0.0;
    /* Walk the contiguous direction innermost; rows contiguous (GPTQ's layout) is the hot case,
     * written per type so that it vectorizes (m == SP_Q_CHUNK except for the last rows). */
    if (v->rs == 1 && v->f) {
        float a[SP_Q_CHUNK] = {0}, b[SP_Q_CHUNK] = {0};
        for (int k = 0; k < n; k++) {
            const float *restrict x = v->f + (size_t)r0 + (size_t)k * v->cs;
            if (m == SP_Q_CHUNK)
                for (int i = 0; i < SP_Q_CHUNK; i++) {
                    a[i] = x[i] < a[i] ? x[i] : a[i];
                    b[i] = x[i] > b[i] ? x[i] : b[i];
                }
            else
                for (int i = 0; i < m; i++) {
                    a[i] = x[i] < a[i] ? x[i] : a[i];
                    b[i] = x[i] > b[i] ? x[i] : b[i];
                }
        }
        for (int i = 0; i < m; i++) mn[i] = a[i], mx[i] = b[i];
    } else if (v->rs == 1) {
        for (int k = 0; k < n; k++) {
            const double *restrict x = v->d + (size_t)r0 + (size_t)k * v->cs;
            for (int i = 0; i < m; i++) {
                mn[i] = x[i] < mn[i] ? x[i] : mn[i];
                mx[i] = x[i] > mx[i] ? x[i] : mx[i];
            }
        }
    } else if (v->cs == 1) {
        for (int i = 0; i < m; i++)
            for (int k = 0; k < n; k++) {
                double x = gv_at(v, (size_t)(r0 + i), (size_t)k);
                mn[i] = x < mn[i] ? x : mn[i];
                mx[i] = x > mx[i] ? x : mx[i];
            }
    } else {
        for (int k = 0; k < n; k++)
            for (int i = 0; i < m; i++) {
                double x = gv_at(v, (size_t)(r0 + i), (size_t)k);
                mn[i] = x < mn[i] ? x : mn[i];
                mx[i] = x > mx[i] ? x : mx[i];
            }
    }
}

/* Grid search over shrunk ranges for rows r0..r0+m-1 whose adjusted ranges are xmin, xmax:
 * try p·(xmin, xmax), p = 1 − i/grid, i < 80, and keep the first (s, z) with the least
 *   E(s, z) = Σ_k wt_k · |deq_k − x_k|^norm       (wt NULL: wt_k = 1)
 * norm 2.4 and wt NULL is quant.py's --mse; norm 2 with wt = diag(H) of the group's columns is
 * the importance-weighted search (sp_quant_params_search_*). i = 0 reproduces the min-max
 * parameters, so the result is never worse than min-max in E. */
static void mse_search(float *s, int *z, const double *xmin, const double *xmax,
                       const grp_view *v, int r0, int m, int n, int maxq, int sym, int f32,
                       const double *wt, double norm) {
    double best[SP_Q_CHUNK], e[SP_Q_CHUNK];
    float s1[SP_Q_CHUNK];
    int z1[SP_Q_CHUNK];
    const int sq = norm == 2.0;
    for (int i = 0; i < m; i++) best[i] = INFINITY;
    for (int step = 0; step < SP_MSE_STEPS; step++) {
        /* torch multiplies a float32 tensor by the Python scalar p in float32. */
        double p = fr(1.0 - (double)step / SP_MSE_GRID, f32);
        for (int i = 0; i < m; i++) {
            range_params(&s1[i], &z1[i], fr(p * xmin[i], f32), fr(p * xmax[i], f32), maxq, sym,
                         f32);
            e[i] = 0.0;
        }
        for (int k = 0; k < n; k++) {
            const double w = wt ? wt[k] : 1.0;
            for (int i = 0; i < m; i++) {
                double x = gv_at(v, (size_t)(r0 + i), (size_t)k), d;
                if (f32) {
                    float q = quant_f((float)x, s1[i], (float)z1[i], (float)maxq);
                    d = (double)(s1[i] * (q - (float)z1[i]) - (float)x);
                } else {
                    double q = quant_d(x, s1[i], z1[i], maxq);
                    d = (double)s1[i] * (q - z1[i]) - x;
                }
                double t = sq ? d * d : pow(fabs(d), norm);
                e[i] += wt ? w * t : t;
            }
        }
        for (int i = 0; i < m; i++)
            if (e[i] < best[i]) {
                best[i] = e[i];
                s[i] = s1[i];
                z[i] = z1[i];
            }
    }
}

/* search: 0 min-max only; 1 grid search with weights wt (NULL: uniform) and exponent norm. */
static void params_core(float *scale, uint8_t *zero, size_t so, const grp_view *v, int rows,
                        int n, int bits, int sym, int search, const double *wt, double norm) {
    const int maxq = (1 << bits) - 1, f32 = v->f != NULL;
    double mn[SP_Q_CHUNK], mx[SP_Q_CHUNK];
    float s[SP_Q_CHUNK];
    int z[SP_Q_CHUNK];
    for (int r0 = 0; r0 < rows; r0 += SP_Q_CHUNK) {
        int m = rows - r0 < SP_Q_CHUNK ? rows - r0 : SP_Q_CHUNK;
        group_minmax(mn, mx, v, r0, m, n);
        for (int i = 0; i < m; i++) {
            adjust_range(&mn[i], &mx[i], sym);
            range_params(&s[i], &z[i], mn[i], mx[i], maxq, sym, f32);
        }
        if (search) mse_search(s, z, mn, mx, v, r0, m, n, maxq, sym, f32, wt, norm);
        for (int i = 0; i < m; i++) {
            scale[(size_t)(r0 + i) * so] = s[i];
            zero[(size_t)(r0 + i) * so] = (uint8_t)z[i];
        }
    }
}

void sp_quant_params_f32(float *scale, uint8_t *zero, size_t so, const float *X, size_t rs,
                         size_t cs, int rows, int n, int bits, int sym, int mse) {
    if (mse == SP_QSEARCH_GGUF) {
        sp_gtype_params_f32(scale, zero, so, X, rs, cs, rows, n, bits);
        return;
    }
    grp_view v = {X, NULL, rs, cs};
    params_core(scale, zero, so, &v, rows, n, bits, sym, mse, NULL, SP_MSE_NORM);
}

void sp_quant_params_f64(float *scale, uint8_t *zero, size_t so, const double *X, size_t rs,
                         size_t cs, int rows, int n, int bits, int sym, int mse) {
    if (mse == SP_QSEARCH_GGUF) {
        sp_gtype_params_f64(scale, zero, so, X, rs, cs, rows, n, bits);
        return;
    }
    grp_view v = {NULL, X, rs, cs};
    params_core(scale, zero, so, &v, rows, n, bits, sym, mse, NULL, SP_MSE_NORM);
}

void sp_quant_params_search_f32(float *scale, uint8_t *zero, size_t so, const float *X,
                                size_t rs, size_t cs, int rows, int n, int bits, int sym,
                                const double *wt, double norm) {
    grp_view v = {X, NULL, rs, cs};
    params_core(scale, zero, so, &v, rows, n, bits, sym, 1, wt, norm);
}

void sp_quant_params_search_f64(float *scale, uint8_t *zero, size_t so, const double *X,
                                size_t rs, size_t cs, int rows, int n, int bits, int sym,
                                const double *wt, double norm) {
    grp_view v = {NULL, X, rs, cs};
    params_core(scale, zero, so, &v, rows, n, bits, sym, 1, wt, norm);
}

const char *sp_quant_search_name(int search) {
    switch (search) {
    case SP_QSEARCH_MINMAX: return "minmax";
    case SP_QSEARCH_MSE: return "mse";
    case SP_QSEARCH_HMSE: return "hmse";
    case SP_QSEARCH_GGUF: return "gguf";
    default: return NULL;
    }
}

int sp_quant_search_parse(const char *name) {
    for (int i = 0; i < SP_QSEARCH_COUNT; i++)
        if (name && !strcmp(name, sp_quant_search_name(i))) return i;
    return -1;
}

/* ---- codes ------------------------------------------------------------------------------ */

/* Columns are done in chunks of SP_QCOL rows: zero points widened to T, then one branch-free
 * loop over a multiple of 8 rows (so that gcc -O2 vectorizes it), then the codes narrowed. */
#define SP_QCOL 256

void sp_quant_column_f32(uint8_t *codes, float *deq, const float *x, const float *scale,
                         const uint8_t *zero, int rows, int bits) {
    const float maxq = (float)((1 << bits) - 1);
    float zf[SP_QCOL], qf[SP_QCOL], dq[SP_QCOL];
    for (size_t r0 = 0; r0 < (size_t)rows; r0 += SP_QCOL) {
        const size_t m = (size_t)rows - r0 < SP_QCOL ? (size_t)rows - r0 : SP_QCOL;
        const size_t m8 = m & ~(size_t)7;
        const float *restrict xs = x + r0, *restrict ss = scale + r0;
        for (size_t i = 0; i < m; i++) zf[i] = (float)zero[r0 + i];
        for (size_t i = 0; i < m8; i++) {
            qf[i] = quant_f(xs[i], ss[i], zf[i], maxq);
            dq[i] = ss[i] * (qf[i] - zf[i]);
        }
        for (size_t i = m8; i < m; i++) {
            qf[i] = quant_f(xs[i], ss[i], zf[i], maxq);
            dq[i] = ss[i] * (qf[i] - zf[i]);
        }
        for (size_t i = 0; i < m; i++) codes[r0 + i] = (uint8_t)qf[i];
        if (deq) memcpy(deq + r0, dq, m * sizeof *dq);
    }
}

void sp_quant_column_f64(uint8_t *codes, double *deq, const double *x, const float *scale,
                         const uint8_t *zero, int rows, int bits) {
    const double maxq = (double)((1 << bits) - 1);
    double zf[SP_QCOL], qf[SP_QCOL], dq[SP_QCOL];
    for (size_t r0 = 0; r0 < (size_t)rows; r0 += SP_QCOL) {
        const size_t m = (size_t)rows - r0 < SP_QCOL ? (size_t)rows - r0 : SP_QCOL;
        const size_t m8 = m & ~(size_t)7;
        const double *restrict xs = x + r0;
        const float *restrict ss = scale + r0;
        for (size_t i = 0; i < m; i++) zf[i] = (double)zero[r0 + i];
        for (size_t i = 0; i < m8; i++) {
            qf[i] = quant_d(xs[i], (double)ss[i], zf[i], maxq);
            dq[i] = (double)ss[i] * (qf[i] - zf[i]);
        }
        for (size_t i = m8; i < m; i++) {
            qf[i] = quant_d(xs[i], (double)ss[i], zf[i], maxq);
            dq[i] = (double)ss[i] * (qf[i] - zf[i]);
        }
        for (size_t i = 0; i < m; i++) codes[r0 + i] = (uint8_t)qf[i];
        if (deq) memcpy(deq + r0, dq, m * sizeof *dq);
    }
}

/* ---- round to nearest ------------------------------------------------------------------- */

sp_status sp_quant_rtn(const float *W, int rows, int cols, int bits, int group_size, int sym,
                       int mse, sp_qlayer *out, sp_err *err) {
    SP_RETURN_IF(!out, err, SP_EINVAL, "sp_quant_rtn: output layer is NULL");
    memset(out, 0, sizeof *out);
    SP_RETURN_IF(!W, err, SP_EINVAL, "sp_quant_rtn: W is NULL");
    SP_RETURN_IF(rows < 1 || cols < 1, err, SP_EINVAL,
                 "sp_quant_rtn: shape [%d, %d] is not positive", rows, cols);
    SP_RETURN_IF(bits < 2 || bits > 8, err, SP_EINVAL, "sp_quant_rtn: bits=%d is outside 2..8",
                 bits);
    SP_RETURN_IF(group_size == 0 || group_size < -1, err, SP_EINVAL,
                 "sp_quant_rtn: group_size=%d (use >= 1, or -1 for one group per row)",
                 group_size);
    const size_t C = (size_t)cols;
    for (size_t i = 0; i < (size_t)rows * C; i++)
        SP_RETURN_IF(!isfinite(W[i]), err, SP_ENUMERIC,
                     "sp_quant_rtn: W[%zu, %zu] = %g is not finite", i / C, i % C, (double)W[i]);
    const int gs = group_size == -1 ? cols : group_size;
    SP_FORWARD(sp_qlayer_alloc(out, rows, cols, bits, gs, sym, err));
    const size_t G = (size_t)out->n_groups;
    for (size_t g = 0; g < G; g++) {
        size_t c0 = g * (size_t)gs;
        int n = (int)(C - c0 < (size_t)gs ? C - c0 : (size_t)gs);
        sp_quant_params_f32(out->scales + g, out->zeros + g, G, W + c0, C, 1, rows, n, bits,
                            out->sym, mse);
    }
    const float maxq = (float)((1 << bits) - 1);
    for (size_t r = 0; r < (size_t)rows; r++)
        for (size_t g = 0; g < G; g++) {
            const float s = out->scales[r * G + g], zf = (float)out->zeros[r * G + g];
            const size_t c1 = (g + 1) * (size_t)gs < C ? (g + 1) * (size_t)gs : C;
            for (size_t c = g * (size_t)gs; c < c1; c++)
                out->codes[r * C + c] = (uint8_t)quant_f(W[r * C + c], s, zf, maxq);
        }
    return SP_OK;
}
