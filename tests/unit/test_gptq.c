/* test_gptq.c — blocked GPTQ (kernels/sp_gptq.c) against a plain, independent implementation
 * of the reference algorithm written here, plus its error paths.
 *
 * Shape legend: R rows (out), C columns (in) = size of H, B block, gs group size.
 *
 * The plain version (ref_gptq) follows gptq.py fasterquant literally, in double: dead
 * columns, stable act-order sort, damping, H⁻¹ by naive Cholesky + triangular inverse, its
 * upper Cholesky factor U, then column by column q = quant(w), e = (w − q)/U_jj,
 * w_k −= e·U_jk for every k > j at once (no blocks, no lazy batches, no R formulation).
 * Lazy group parameters (no act_order) come from W as it stood at the start of the B-column
 * block holding the group's first column (gptq.py reads W, which is updated per block), kept
 * here as a snapshot of W every B columns. Static groups come from W before any update.
 *
 * Precision decisions shared with SP_GPTQ_F64 (so that codes can be compared exactly): all
 * arithmetic in double; per row and group, xmin/xmax of the double values, s = fp16((xmax −
 * xmin)/maxq) with the division in double and one rounding double -> fp16 (here through
 * _Float16), clamped to [2^-14, 65504]; z = rne(−xmin/s) in double; q = clamp(rne(w/s) + z);
 * deq = s·(q − z). The only differences left are summation orders and the R vs U formulation
 * (~1e-13 relative), which could flip a code only if w/s fell within ~1e-12 of a half-integer:
 * with random inputs that does not happen (and the assertion stays exact).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/sp_gptq.h"
#include "kernels/sp_quant.h"
#include "common/sp_rng.h"

/* ---- random inputs ------------------------------------------------------------------------ */

static double rng_u(uint64_t *s) { return (double)(sp_rng_next(s) >> 11) / 9007199254740992.0; }
static double rng_n(uint64_t *s) {
    double u = rng_u(s) + 1e-300, v = rng_u(s);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* H = 2/n XᵀX + ridge (ridge only on live columns), X [n = 2C, C] correlated: X = Z·M + noise,
 * Z [n, k], column scales spread over two decades. Columns listed in dead[] are all zero in X,
 * so their rows and columns of H are exactly 0. */
static double *make_hessian(int C, uint64_t seed, const int *dead, int n_dead) {
    int n = 2 * C, k = C / 4 + 2;
    double *X = calloc((size_t)n * C, sizeof *X), *Z = malloc((size_t)n * k * sizeof *Z);
    double *M = malloc((size_t)k * C * sizeof *M), *sc = malloc((size_t)C * sizeof *sc);
    double *H = calloc((size_t)C * C, sizeof *H);
    assert_true(X && Z && M && sc && H);
    for (int i = 0; i < n * k; i++) Z[i] = rng_n(&seed);
    for (int i = 0; i < k * C; i++) M[i] = rng_n(&seed);
    for (int c = 0; c < C; c++) sc[c] = pow(10.0, 2.0 * rng_u(&seed) - 1.0);
    for (int r = 0; r < n; r++)
        for (int c = 0; c < C; c++) {
            double v = 0.3 * rng_n(&seed);
            for (int t = 0; t < k; t++) v += Z[r * k + t] * M[t * C + c] / sqrt((double)k);
            X[r * C + c] = v * sc[c];
        }
    for (int d = 0; d < n_dead; d++)
        for (int r = 0; r < n; r++) X[r * C + dead[d]] = 0;
    for (int i = 0; i < C; i++)
        for (int j = 0; j < C; j++) {
            double s = 0;
            for (int r = 0; r < n; r++) s += X[r * C + i] * X[r * C + j];
            H[i * C + j] = 2.0 * s / n;
        }
    for (int i = 0; i < C; i++)
        if (H[i * C + i] != 0) H[i * C + i] += 1e-3;
    free(X);
    free(Z);
    free(M);
    free(sc);
    return H;
}

static float *make_weights(int R, int C, uint64_t seed) {
    float *W = malloc((size_t)R * C * sizeof *W);
    assert_non_null(W);
    for (int i = 0; i < R * C; i++) {
        double v = 0.05 * rng_n(&seed);
        if (rng_u(&seed) < 0.01) v *= 8; /* a few outliers */
        W[i] = (float)v;
    }
    return W;
}

/* ---- the plain reference -------------------------------------------------------------------- */

static double ref_f16_scale(double s) {
    double r = (double)(_Float16)s;
    if (!(r >= 0x1p-14)) r = 0x1p-14;
    return r > 65504.0 ? 65504.0 : r;
}

static int ref_code(double w, double s, int z, int maxq) {
    double q = nearbyint(w / s) + z;
    return q < 0 ? 0 : q > maxq ? maxq : (int)q;
}

static void ref_scale_zero(double *s, int *z, double lo, double hi, int maxq, int sym) {
    *s = ref_f16_scale((hi - lo) / maxq);
    if (sym) {
        *z = (maxq + 1) / 2;
    } else {
        double t = nearbyint(-lo / *s);
        *z = t < 0 ? 0 : t > maxq ? maxq : (int)t;
    }
}

/* Parameters of one row's group x[0..n) (quant.py find_params, + its mse search). mse 1:
 * least Σ_k |deq_k − x_k|^2.4 (quant.py --mse); mse 2 (SP_QSEARCH_HMSE): least
 * Σ_k wt_k (deq_k − x_k)², wt_k = diag(H) of the group's column k (wt NULL: all 1, only to show
 * that the weights change the answer). */
static void ref_params(double *s, int *z, const double *x, int n, int bits, int sym, int mse,
                       const double *wt) {
    int maxq = (1 << bits) - 1;
    double lo = 0, hi = 0;
    for (int k = 0; k < n; k++) {
        lo = x[k] < lo ? x[k] : lo;
        hi = x[k] > hi ? x[k] : hi;
    }
    if (sym) {
        hi = fmax(-lo, hi);
        if (lo < 0) lo = -hi;
    }
    if (lo == 0 && hi == 0) lo = -1, hi = 1;
    ref_scale_zero(s, z, lo, hi, maxq, sym);
    if (!mse) return;
    double best = INFINITY;
    for (int i = 0; i < 80; i++) {
        double p = 1.0 - i / 100.0, s1, e = 0;
        int z1;
        ref_scale_zero(&s1, &z1, p * lo, p * hi, maxq, sym);
        for (int k = 0; k < n; k++) {
            double d = s1 * (ref_code(x[k], s1, z1, maxq) - z1) - x[k];
            e += mse == 2 ? (wt ? wt[k] : 1.0) * d * d : pow(fabs(d), 2.4);
        }
        if (e < best) best = e, *s = s1, *z = z1;
    }
}

/* Naive Cholesky A = L Lᵀ (lower, row-major, in place; upper part zeroed). 0 if not PD. */
static int ref_chol(double *A, int n) {
    for (int j = 0; j < n; j++) {
        double d = A[j * n + j];
        for (int k = 0; k < j; k++) d -= A[j * n + k] * A[j * n + k];
        if (!(d > 0)) return 0;
        A[j * n + j] = sqrt(d);
        for (int i = j + 1; i < n; i++) {
            double v = A[i * n + j];
            for (int k = 0; k < j; k++) v -= A[i * n + k] * A[j * n + k];
            A[i * n + j] = v / A[j * n + j];
        }
        for (int k = j + 1; k < n; k++) A[j * n + k] = 0;
    }
    return 1;
}

typedef struct {
    int R, C, bits, gs, act, sym, mse, block;
    double damp;
} ref_cfg;

/* ref_cfg.mse for the reference only: the HMSE search with unit weights instead of diag(H)
 * (what a kernel passing NULL weights computes). */
#define REF_HMSE_UNIT (-2)

/* codes [R, C], scales/zeros [R, G] in the original column order. */
static void ref_gptq(uint8_t *codes, float *scales, uint8_t *zeros, const float *W, const double *H,
                     const ref_cfg *k) {
    const int R = k->R, n = k->C, gs = k->gs == -1 ? n : k->gs, G = (n + gs - 1) / gs;
    const int maxq = (1 << k->bits) - 1, lazy = !k->act && gs < n;
    const int unit = k->mse == REF_HMSE_UNIT, mse = unit ? SP_QSEARCH_HMSE : k->mse;
    double *Hp = malloc(sizeof(double) * n * n), *Wd = malloc(sizeof(double) * R * n);
    double *Wp = malloc(sizeof(double) * R * n), *snap = malloc(sizeof(double) * R * n);
    double *Li = calloc((size_t)n * n, sizeof(double)), *Hi = malloc(sizeof(double) * n * n);
    double *x = malloc(sizeof(double) * n), *S = malloc(sizeof(double) * R * G);
    int *Z = malloc(sizeof(int) * R * G), *perm = malloc(sizeof(int) * n);
    double *dg = malloc(sizeof(double) * n);
    assert_true(Hp && Wd && Wp && snap && Li && Hi && x && S && Z && perm && dg);
    for (int i = 0; i < R * n; i++) Wd[i] = W[i];
    for (int i = 0; i < n; i++) {
        dg[i] = H[i * n + i];
        if (dg[i] == 0) {
            dg[i] = 1;
            for (int r = 0; r < R; r++) Wd[r * n + i] = 0;
        }
    }
    if (!lazy)
        for (int g = 0; g < G; g++)
            for (int r = 0; r < R; r++) {
                int m = 0;
                for (int c = g * gs; c < n && c < (g + 1) * gs; c++) x[m++] = Wd[r * n + c];
                ref_params(&S[r * G + g], &Z[r * G + g], x, m, k->bits, k->sym, mse,
                           unit ? NULL : dg + g * gs);
            }
    for (int i = 0; i < n; i++) perm[i] = i;
    if (k->act) /* stable insertion sort, decreasing diag */
        for (int i = 1; i < n; i++)
            for (int j = i; j > 0 && dg[perm[j]] > dg[perm[j - 1]]; j--) {
                int t = perm[j];
                perm[j] = perm[j - 1];
                perm[j - 1] = t;
            }
    double mean = 0;
    for (int i = 0; i < n; i++) mean += dg[i];
    mean /= n;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            Hp[i * n + j] = i == j ? dg[perm[i]] + k->damp * mean : H[perm[i] * n + perm[j]];
    for (int r = 0; r < R; r++)
        for (int j = 0; j < n; j++) Wp[r * n + j] = Wd[r * n + perm[j]];
    /* H⁻¹ = L⁻ᵀ L⁻¹, then H⁻¹ = Uᵀ U with U upper (U = chol(H⁻¹)ᵀ). */
    assert_true(ref_chol(Hp, n));
    for (int j = 0; j < n; j++) {
        Li[j * n + j] = 1.0 / Hp[j * n + j];
        for (int i = j + 1; i < n; i++) {
            double v = 0;
            for (int t = j; t < i; t++) v -= Hp[i * n + t] * Li[t * n + j];
            Li[i * n + j] = v / Hp[i * n + i];
        }
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double v = 0;
            for (int t = i > j ? i : j; t < n; t++) v += Li[t * n + i] * Li[t * n + j];
            Hi[i * n + j] = v;
        }
    assert_true(ref_chol(Hi, n)); /* Hi = L2 L2ᵀ, U(i, j) = L2(j, i) */
#define U(i, j) Hi[(j) * n + (i)]
    for (int j = 0; j < n; j++) {
        if (j % k->block == 0) memcpy(snap, Wp, sizeof(double) * R * n);
        if (lazy && j % gs == 0)
            for (int r = 0; r < R; r++) {
                int m = 0;
                for (int c = j; c < n && c < j + gs; c++) x[m++] = snap[r * n + c];
                /* lazy groups exist only without act_order: column j is original column j */
                ref_params(&S[r * G + j / gs], &Z[r * G + j / gs], x, m, k->bits, k->sym, mse,
                           unit ? NULL : dg + j);
            }
        int g = perm[j] / gs;
        for (int r = 0; r < R; r++) {
            double w = Wp[r * n + j], s = S[r * G + g];
            int q = ref_code(w, s, Z[r * G + g], maxq);
            codes[r * n + perm[j]] = (uint8_t)q;
            double e = (w - s * (q - Z[r * G + g])) / U(j, j);
            for (int c = j + 1; c < n; c++) Wp[r * n + c] -= e * U(j, c);
        }
    }
#undef U
    for (int i = 0; i < R * G; i++) {
        scales[i] = (float)S[i];
        zeros[i] = (uint8_t)Z[i];
    }
    free(Hp), free(Wd), free(Wp), free(snap), free(Li), free(Hi), free(x), free(S), free(Z);
    free(perm), free(dg);
}

/* tr(ΔW H ΔWᵀ), naive double. */
static double ref_layer_error(const float *W, const float *deq, const double *H, int R, int C) {
    double t = 0;
    for (int r = 0; r < R; r++)
        for (int i = 0; i < C; i++) {
            double di = (double)W[r * C + i] - deq[r * C + i], s = 0;
            for (int j = 0; j < C; j++) s += H[i * C + j] * ((double)W[r * C + j] - deq[r * C + j]);
            t += di * s;
        }
    return t;
}

/* Compare sp_gptq (precision F64) with ref_gptq on one configuration. */
static void check_against_ref(const float *W, const double *H, const ref_cfg *k) {
    sp_gptq_opts o;
    sp_gptq_opts_default(&o);
    o.block = k->block;
    o.group_size = k->gs;
    o.act_order = k->act;
    o.sym = k->sym;
    o.mse = k->mse;
    o.damp = k->damp;
    o.precision = SP_GPTQ_F64;
    sp_err e = {0};
    sp_gptq_ctx *ctx = NULL;
    assert_int_equal(sp_gptq_prepare(&ctx, H, k->C, &o, &e), SP_OK);
    sp_gptq_info info;
    sp_gptq_get_info(ctx, &info);
    assert_int_equal(info.retries, 0);
    sp_qlayer q;
    double lerr = -1;
    assert_int_equal(sp_gptq_quantize(ctx, W, k->R, k->bits, &q, &lerr, &e), SP_OK);
    int gs = k->gs == -1 ? k->C : k->gs, G = (k->C + gs - 1) / gs;
    assert_int_equal(q.n_groups, G);
    uint8_t *codes = malloc((size_t)k->R * k->C), *zeros = malloc((size_t)k->R * G);
    float *scales = malloc(sizeof(float) * k->R * G), *deq = malloc(sizeof(float) * k->R * k->C);
    assert_true(codes && zeros && scales && deq);
    ref_gptq(codes, scales, zeros, W, H, k);
    int bad = 0;
    for (int i = 0; i < k->R * k->C; i++) bad += codes[i] != q.codes[i];
    for (int i = 0; i < k->R * G; i++) bad += scales[i] != q.scales[i] || zeros[i] != q.zeros[i];
    if (bad)
        print_error("R %d C %d bits %d gs %d act %d sym %d mse %d: %d mismatches\n", k->R, k->C,
                    k->bits, k->gs, k->act, k->sym, k->mse, bad);
    assert_int_equal(bad, 0);
    for (int c = 0; c < k->C; c++) assert_int_equal(q.g_idx[c], c / gs);
    sp_qlayer_dequant(deq, &q);
    double want = ref_layer_error(W, deq, H, k->R, k->C);
    assert_true(want > 0);
    assert_true(fabs(lerr - want) <= 1e-5 * want);
    sp_qlayer_free(&q);
    sp_gptq_free(ctx);
    free(codes), free(zeros), free(scales), free(deq);
}

static void test_matches_reference(void **state) {
    (void)state;
    static const int shapes[][2] = {{16, 40}, {33, 96}, {64, 130}};
    static const int gss[] = {8, 24, 32, 48, -1}, bitss[] = {2, 3, 4, 8};
    static const int dead[] = {3, 17, 35};
    for (int s = 0; s < 3; s++) {
        int R = shapes[s][0], C = shapes[s][1];
        double *H = make_hessian(C, 100 + (uint64_t)s, dead, s == 1 ? 3 : 0);
        float *W = make_weights(R, C, 200 + (uint64_t)s);
        for (int gi = 0; gi < 5; gi++)
            for (int act = 0; act < 2; act++)
                for (int sym = 0; sym < 2; sym++)
                    for (int b = 0; b < 4; b++) {
                        ref_cfg k = {R, C, bitss[b], gss[gi], act, sym, 0, 32, 0.01};
                        check_against_ref(W, H, &k);
                    }
        free(H);
        free(W);
    }
}

/* Issue 21: the default scale search (SP_QSEARCH_HMSE) weights each group's error by diag(H)
 * of its columns. The reference does the weighted search itself; the diagonal of make_hessian
 * spans four decades, and the test first checks that unit weights would give other codes, so
 * a kernel that passed no weights (NULL: unit) cannot match. Static (act_order) and lazy
 * groups, sym and asym, dead columns (weight 1, as their diag is replaced). */
static void test_matches_reference_hmse(void **state) {
    (void)state;
    static const int dead[] = {5, 40};
    double *H = make_hessian(96, 21, dead, 2);
    float *W = make_weights(24, 96, 22);
    for (int act = 0; act < 2; act++)
        for (int sym = 0; sym < 2; sym++)
            for (int bits = 2; bits <= 4; bits += 2) {
                ref_cfg k = {24, 96, bits, 32, act, sym, SP_QSEARCH_HMSE, 32, 0.01};
                /* the weights matter here: unit weights give other codes or parameters */
                uint8_t *c1 = malloc(24 * 96), *c2 = malloc(24 * 96), *z1 = malloc(24 * 3),
                        *z2 = malloc(24 * 3);
                float *s1 = malloc(sizeof(float) * 24 * 3), *s2 = malloc(sizeof(float) * 24 * 3);
                assert_true(c1 && c2 && z1 && z2 && s1 && s2);
                ref_gptq(c1, s1, z1, W, H, &k);
                ref_cfg u = k;
                u.mse = REF_HMSE_UNIT;
                ref_gptq(c2, s2, z2, W, H, &u);
                int diff = 0;
                for (int i = 0; i < 24 * 3; i++) diff += s1[i] != s2[i] || z1[i] != z2[i];
                if (diff < 5) fail_msg("act %d sym %d bits %d: diag(H) weights change only %d "
                                       "groups", act, sym, bits, diff);
                free(c1), free(c2), free(z1), free(z2), free(s1), free(s2);
                check_against_ref(W, H, &k);
            }
    free(H);
    free(W);
}

static void test_matches_reference_mse_blocks(void **state) {
    (void)state;
    double *H = make_hessian(96, 7, NULL, 0);
    float *W = make_weights(24, 96, 8);
    for (int act = 0; act < 2; act++)
        for (int sym = 0; sym < 2; sym++) {
            ref_cfg k = {24, 96, 3, 32, act, sym, 1, 32, 0.01};
            check_against_ref(W, H, &k);
        }
    /* Other block sizes (1, non-divisors, larger than C) and damping. */
    static const int blocks[] = {1, 7, 128, 200};
    for (int b = 0; b < 4; b++) {
        ref_cfg k = {24, 96, 4, 16, 0, 0, 0, blocks[b], 0.05};
        check_against_ref(W, H, &k);
        k.act = 1;
        check_against_ref(W, H, &k);
    }
    free(H);
    free(W);
}

/* More columns than one left-looking panel (256 columns, or 2 blocks of 100): panel gemms,
 * and lazy groups that run past the end of a panel. */
static void test_matches_reference_panels(void **state) {
    (void)state;
    const int R = 12, C = 600;
    double *H = make_hessian(C, 9, NULL, 0);
    float *W = make_weights(R, C, 10);
    static const int cfg[][3] = {{32, 48, 0}, {32, 100, 0}, {32, 100, 1}, {32, -1, 0},
                                 {100, 64, 0}, {100, 150, 0}, {7, 40, 0}};
    for (int i = 0; i < 7; i++) {
        ref_cfg k = {R, C, 3, cfg[i][1], cfg[i][2], 0, 0, cfg[i][0], 0.01};
        check_against_ref(W, H, &k);
    }
    free(H);
    free(W);
    /* More rows than one internal chunk (1024): rows are done in chunks. */
    H = make_hessian(48, 13, NULL, 0);
    W = make_weights(2100, 48, 14);
    for (int act = 0; act < 2; act++) {
        ref_cfg k = {2100, 48, 4, 16, act, act, 0, 32, 0.01};
        check_against_ref(W, H, &k);
    }
    free(H);
    free(W);
}

/* ---- float path, RTN, structure ------------------------------------------------------------ */

static void quantize(sp_qlayer *q, double *lerr, const float *W, const double *H, int R, int C,
                     int bits, int gs, int act, int sym, int prec) {
    sp_gptq_opts o;
    sp_gptq_opts_default(&o);
    o.group_size = gs;
    o.act_order = act;
    o.sym = sym;
    o.precision = prec;
    sp_err e = {0};
    sp_gptq_ctx *ctx = NULL;
    assert_int_equal(sp_gptq_prepare(&ctx, H, C, &o, &e), SP_OK);
    assert_int_equal(sp_gptq_quantize(ctx, W, R, bits, q, lerr, &e), SP_OK);
    sp_gptq_free(ctx);
}

static double rtn_error(const float *W, const double *H, int R, int C, int bits, int gs, int sym) {
    sp_qlayer q;
    sp_err e = {0};
    assert_int_equal(sp_quant_rtn(W, R, C, bits, gs, sym, 0, &q, &e), SP_OK);
    float *deq = malloc(sizeof(float) * R * C);
    assert_non_null(deq);
    sp_qlayer_dequant(deq, &q);
    double v;
    assert_int_equal(sp_gptq_layer_error(W, deq, H, R, C, &v, &e), SP_OK);
    assert_true(fabs(v - ref_layer_error(W, deq, H, R, C)) <= 1e-9 * v);
    free(deq);
    sp_qlayer_free(&q);
    return v;
}

/* F32 runs the same code in float: nearly the same codes, the same error up to a few %, and
 * much better than RTN on correlated inputs. */
static void test_f32_vs_f64_and_rtn(void **state) {
    (void)state;
    const int R = 64, C = 256;
    double *H = make_hessian(C, 11, NULL, 0);
    float *W = make_weights(R, C, 12);
    static const int gss[] = {32, -1};
    for (int gi = 0; gi < 2; gi++)
        for (int act = 0; act < 2; act++)
            for (int bits = 3; bits <= 4; bits++) {
                sp_qlayer q32, q64;
                double e32, e64;
                quantize(&q32, &e32, W, H, R, C, bits, gss[gi], act, 0, SP_GPTQ_F32);
                quantize(&q64, &e64, W, H, R, C, bits, gss[gi], act, 0, SP_GPTQ_F64);
                int same = 0;
                for (int i = 0; i < R * C; i++) same += q32.codes[i] == q64.codes[i];
                double rtn = rtn_error(W, H, R, C, bits, gss[gi], 0);
                print_message("gs %d act %d bits %d: same codes %.4f, err f32 %.6g f64 %.6g "
                              "rtn %.6g\n",
                              gss[gi], act, bits, (double)same / (R * C), e32, e64, rtn);
                assert_true(same >= 0.95 * R * C);
                assert_true(fabs(e32 - e64) <= 0.02 * e64);
                assert_true(e32 < 0.8 * rtn);
                sp_qlayer_free(&q32);
                sp_qlayer_free(&q64);
            }
    free(H);
    free(W);
}

/* A diagonal H couples no columns: GPTQ must reduce to RTN exactly (codes, scales, zeros).
 * F32 only: RTN is the float quantizer, F64 quantizes in double. */
static void test_diagonal_h_is_rtn(void **state) {
    (void)state;
    const int R = 20, C = 70;
    double *H = calloc((size_t)C * C, sizeof *H);
    assert_non_null(H);
    uint64_t s = 5;
    for (int i = 0; i < C; i++) H[i * C + i] = 0.5 + rng_u(&s);
    float *W = make_weights(R, C, 6);
    static const int gss[] = {16, 70, -1, 100};
    for (int gi = 0; gi < 4; gi++)
        for (int act = 0; act < 2; act++)
            for (int sym = 0; sym < 2; sym++)
                for (int bits = 2; bits <= 8; bits++) {
                    sp_qlayer a, b;
                    sp_err e = {0};
                    quantize(&a, NULL, W, H, R, C, bits, gss[gi], act, sym, SP_GPTQ_F32);
                    assert_int_equal(sp_quant_rtn(W, R, C, bits, gss[gi], sym, 0, &b, &e), SP_OK);
                    assert_int_equal(a.n_groups, b.n_groups);
                    assert_int_equal(a.group_size, b.group_size);
                    assert_memory_equal(a.codes, b.codes, (size_t)R * C);
                    assert_memory_equal(a.zeros, b.zeros, (size_t)R * a.n_groups);
                    assert_memory_equal(a.scales, b.scales, sizeof(float) * R * a.n_groups);
                    sp_qlayer_free(&a);
                    sp_qlayer_free(&b);
                }
    free(H);
    free(W);
}

static void test_dead_columns(void **state) {
    (void)state;
    const int R = 12, C = 48;
    static const int dead[] = {0, 5, 47};
    double *H = make_hessian(C, 21, dead, 3);
    float *W = make_weights(R, C, 22);
    for (int prec = 0; prec < 2; prec++)
        for (int act = 0; act < 2; act++) {
            sp_gptq_opts o;
            sp_gptq_opts_default(&o);
            o.group_size = 16;
            o.act_order = act;
            o.precision = prec;
            sp_err e = {0};
            sp_gptq_ctx *ctx = NULL;
            assert_int_equal(sp_gptq_prepare(&ctx, H, C, &o, &e), SP_OK);
            sp_gptq_info info;
            sp_gptq_get_info(ctx, &info);
            assert_int_equal(info.n_dead, 3);
            sp_qlayer q;
            double lerr;
            assert_int_equal(sp_gptq_quantize(ctx, W, R, 4, &q, &lerr, &e), SP_OK);
            float *deq = malloc(sizeof(float) * R * C);
            assert_non_null(deq);
            sp_qlayer_dequant(deq, &q);
            for (int r = 0; r < R; r++)
                for (int d = 0; d < 3; d++) assert_true(deq[r * C + dead[d]] == 0.0f);
            assert_true(isfinite(lerr) && lerr > 0);
            free(deq);
            sp_qlayer_free(&q);
            sp_gptq_free(ctx);
        }
    free(H);
    free(W);
}

/* I − μ·vvᵀ has the eigenvalue 1 − μ (v a unit vector), so it needs λ > μ − 1. */
static double *indefinite(int C, double mu, uint64_t seed) {
    double *H = malloc(sizeof(double) * C * C), *v = malloc(sizeof(double) * C), nv = 0;
    assert_true(H && v);
    for (int i = 0; i < C; i++) {
        v[i] = rng_n(&seed);
        nv += v[i] * v[i];
    }
    for (int i = 0; i < C; i++)
        for (int j = 0; j < C; j++) H[i * C + j] = (i == j) - mu * v[i] * v[j] / nv;
    free(v);
    return H;
}

static void test_damp_retry(void **state) {
    (void)state;
    const int C = 40, R = 10;
    float *W = make_weights(R, C, 31);
    for (int prec = 0; prec < 2; prec++) {
        /* eigenvalue −0.05, mean diag ≈ 0.97: damp 0.01 fails, 0.1 works. */
        double *H = indefinite(C, 1.05, 32);
        sp_gptq_opts o;
        sp_gptq_opts_default(&o);
        o.precision = prec;
        o.group_size = 8;
        sp_err e = {0};
        sp_gptq_ctx *ctx = NULL;
        assert_int_equal(sp_gptq_prepare(&ctx, H, C, &o, &e), SP_OK);
        sp_gptq_info info;
        sp_gptq_get_info(ctx, &info);
        assert_int_equal(info.retries, 1);
        assert_true(fabs(info.damp - 0.1) < 1e-12);
        double mean = 0;
        for (int i = 0; i < C; i++) mean += H[i * C + i];
        assert_true(fabs(info.lambda - 0.1 * mean / C) < 1e-12);
        sp_gptq_free(ctx);
        if (prec == SP_GPTQ_F64) {
            ref_cfg k = {R, C, 4, 8, 0, 0, 0, 128, 0.1}; /* the retry is the plain run at 0.1 */
            check_against_ref(W, H, &k);
        }
        free(H);
        /* eigenvalue −29 with mean diag 0.25: even damp 100 (λ = 25) is not enough. */
        H = indefinite(C, 30, 33);
        assert_int_equal(sp_gptq_prepare(&ctx, H, C, &o, &e), SP_ENUMERIC);
        assert_null(ctx);
        assert_non_null(strstr(e.msg, "not positive definite"));
        free(H);
        /* Negative definite: the mean of the diagonal is negative. */
        H = indefinite(C, 0, 34);
        for (int i = 0; i < C * C; i++) H[i] = -H[i];
        assert_int_equal(sp_gptq_prepare(&ctx, H, C, &o, &e), SP_ENUMERIC);
        assert_non_null(strstr(e.msg, "mean of diag"));
        free(H);
    }
    free(W);
}

/* ---- one factorization, many bit widths, many threads ----------------------------------- */

typedef struct {
    const sp_gptq_ctx *ctx;
    const float *W;
    int R, bits;
    sp_qlayer q;
    sp_status st;
} job;

static void *run_job(void *p) {
    job *j = p;
    sp_err e = {0};
    j->st = sp_gptq_quantize(j->ctx, j->W, j->R, j->bits, &j->q, NULL, &e);
    return NULL;
}

static void test_threads_share_ctx(void **state) {
    (void)state;
    const int R = 48, C = 160;
    double *H = make_hessian(C, 41, NULL, 0);
    float *W = make_weights(R, C, 42), *W0 = malloc(sizeof(float) * R * C);
    assert_non_null(W0);
    memcpy(W0, W, sizeof(float) * R * C);
    for (int act = 0; act < 2; act++) {
        sp_gptq_opts o;
        sp_gptq_opts_default(&o);
        o.group_size = 32;
        o.block = 64;
        o.act_order = act;
        sp_err e = {0};
        sp_gptq_ctx *ctx = NULL;
        assert_int_equal(sp_gptq_prepare(&ctx, H, C, &o, &e), SP_OK);
        job jobs[4];
        pthread_t th[4];
        for (int t = 0; t < 4; t++) {
            jobs[t] = (job){ctx, W, R, 2 + 2 * t, {0}, SP_EINTERNAL};
            assert_int_equal(pthread_create(&th[t], NULL, run_job, &jobs[t]), 0);
        }
        for (int t = 0; t < 4; t++) assert_int_equal(pthread_join(th[t], NULL), 0);
        for (int t = 0; t < 4; t++) {
            assert_int_equal(jobs[t].st, SP_OK);
            sp_qlayer q;
            assert_int_equal(sp_gptq_quantize(ctx, W, R, jobs[t].bits, &q, NULL, &e), SP_OK);
            assert_memory_equal(q.codes, jobs[t].q.codes, (size_t)R * C);
            assert_memory_equal(q.scales, jobs[t].q.scales, sizeof(float) * R * q.n_groups);
            sp_qlayer_free(&q);
            sp_qlayer_free(&jobs[t].q);
        }
        sp_gptq_free(ctx);
    }
    assert_memory_equal(W, W0, sizeof(float) * R * C); /* W is not modified */
    free(H), free(W), free(W0);
}

static void test_bad_arguments(void **state) {
    (void)state;
    const int C = 16, R = 4;
    double *H = make_hessian(C, 51, NULL, 0);
    float *W = make_weights(R, C, 52);
    sp_gptq_opts o;
    sp_err e = {0};
    sp_gptq_ctx *ctx = NULL;
    static const int bad_gs[] = {0, -2};
    for (int i = 0; i < 2; i++) {
        sp_gptq_opts_default(&o);
        o.group_size = bad_gs[i];
        assert_int_equal(sp_gptq_prepare(&ctx, H, C, &o, &e), SP_EINVAL);
        assert_null(ctx);
    }
    sp_gptq_opts_default(&o);
    o.damp = 0;
    assert_int_equal(sp_gptq_prepare(&ctx, H, C, &o, &e), SP_EINVAL);
    o.damp = 0.01;
    o.block = 0;
    assert_int_equal(sp_gptq_prepare(&ctx, H, C, &o, &e), SP_EINVAL);
    o.block = 128;
    o.precision = 7;
    assert_int_equal(sp_gptq_prepare(&ctx, H, C, &o, &e), SP_EINVAL);
    assert_int_equal(sp_gptq_prepare(&ctx, H, 0, NULL, &e), SP_EINVAL);
    double keep = H[3 * C + 5];
    H[3 * C + 5] = NAN;
    assert_int_equal(sp_gptq_prepare(&ctx, H, C, NULL, &e), SP_ENUMERIC);
    assert_non_null(strstr(e.msg, "H[3, 5]"));
    H[3 * C + 5] = keep;
    assert_int_equal(sp_gptq_prepare(&ctx, H, C, NULL, &e), SP_OK);
    sp_qlayer q;
    assert_int_equal(sp_gptq_quantize(ctx, W, R, 1, &q, NULL, &e), SP_EINVAL);
    assert_null(q.codes);
    assert_int_equal(sp_gptq_quantize(ctx, W, R, 9, &q, NULL, &e), SP_EINVAL);
    assert_int_equal(sp_gptq_quantize(ctx, W, 0, 4, &q, NULL, &e), SP_EINVAL);
    W[2 * C + 7] = INFINITY;
    assert_int_equal(sp_gptq_quantize(ctx, W, R, 4, &q, NULL, &e), SP_ENUMERIC);
    assert_non_null(strstr(e.msg, "W[2, 7]"));
    assert_null(q.codes);
    W[2 * C + 7] = 0;
    assert_int_equal(sp_gptq_quantize(ctx, W, R, 4, &q, NULL, &e), SP_OK);
    sp_qlayer_free(&q);
    sp_gptq_free(ctx);
    sp_gptq_free(NULL);
    free(H), free(W);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_reference),
        cmocka_unit_test(test_matches_reference_mse_blocks),
        cmocka_unit_test(test_matches_reference_hmse),
        cmocka_unit_test(test_matches_reference_panels),
        cmocka_unit_test(test_f32_vs_f64_and_rtn),
        cmocka_unit_test(test_diagonal_h_is_rtn),
        cmocka_unit_test(test_dead_columns),
        cmocka_unit_test(test_damp_retry),
        cmocka_unit_test(test_threads_share_ctx),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
