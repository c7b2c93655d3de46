/* test_quant.c — the min-max group quantizer and RTN (kernels/sp_quant.c).
 *
 * Shape legend: R rows, C columns, gs group size, G = ceil(C / gs).
 * Independent checks: fp16 rounding against the compiler's _Float16 conversion, RTN against a
 * naive float implementation written here (quant.py's formulas), error bounds per element.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/sp_quant.h"
#include "common/sp_rng.h"

static double rng_u(uint64_t *s) { return (double)(sp_rng_next(s) >> 11) / 9007199254740992.0; }

static float *random_w(int R, int C, uint64_t seed) {
    float *W = malloc(sizeof(float) * R * C);
    assert_non_null(W);
    for (int i = 0; i < R * C; i++) {
        double v = (rng_u(&seed) - 0.5) * 0.2;
        if (rng_u(&seed) < 0.02) v *= 10;
        W[i] = (float)v;
    }
    return W;
}

static int is_f16(float s) { return (float)(_Float16)s == s; }

/* ---- fp16 rounding ------------------------------------------------------------------------ */

static void test_round_fp16(void **state) {
    (void)state;
    uint64_t s = 1;
    for (int i = 0; i < 200000; i++) {
        /* random magnitude 2^-30 .. 2^17, random sign and 52-bit mantissa */
        double x = ldexp(1.0 + rng_u(&s), (int)(rng_u(&s) * 48) - 31) * (rng_u(&s) < 0.5 ? -1 : 1);
        double want = (double)(_Float16)x, got = sp_quant_round_fp16(x);
        if (!(want == got || (isinf(want) && isinf(got) && (want > 0) == (got > 0))))
            fail_msg("round_fp16(%a) = %a, _Float16 gives %a", x, got, want);
    }
    /* Exact ties, normal and subnormal: half-way between neighbours goes to the even one. */
    for (int e = -24; e <= 15; e++)
        for (int m = 0; m < 64; m++) {
            double ulp = e >= -14 ? ldexp(1.0, e - 10) : ldexp(1.0, -24);
            double base = e >= -14 ? ldexp(1.0, e) + m * ulp : m * ulp;
            double x = base + ulp / 2;
            assert_true(sp_quant_round_fp16(x) == (double)(_Float16)x);
            assert_true(sp_quant_round_fp16(-x) == -(double)(_Float16)x);
        }
    assert_true(sp_quant_round_fp16(65504.0) == 65504.0);
    assert_true(sp_quant_round_fp16(65519.99) == 65504.0);
    assert_true(isinf(sp_quant_round_fp16(65520.0)));
    assert_true(sp_quant_round_fp16(0x1p-25) == 0.0);             /* tie to 0 (even) */
    assert_true(sp_quant_round_fp16(0x1.8p-25) == 0x1p-24);       /* above the tie   */
    assert_true(sp_quant_round_fp16(0.1) == (double)(_Float16)0.1);
    assert_true(sp_quant_round_fp16(0.0) == 0.0);
    assert_true(isnan(sp_quant_round_fp16(NAN)));
}

/* ---- RTN against a naive float implementation ------------------------------------------ */

static float naive_scale(float s) {
    float r = (float)(_Float16)s;
    if (!(r >= 0x1p-14f)) r = 0x1p-14f;
    return r > 65504.0f ? 65504.0f : r;
}

static void naive_sz(float *s, int *z, float lo, float hi, int maxq, int sym) {
    *s = naive_scale((hi - lo) / (float)maxq);
    if (sym) {
        *z = (maxq + 1) / 2;
    } else {
        float t = rintf(-lo / *s);
        *z = t < 0 ? 0 : t > maxq ? maxq : (int)t;
    }
}

static int naive_q(float x, float s, int z, int maxq) {
    float q = rintf(x / s) + (float)z;
    return q < 0 ? 0 : q > maxq ? maxq : (int)q;
}

/* One row group x[0..n): quant.py find_params in float (+ the mse search, error in double). */
static void naive_params(float *s, int *z, const float *x, int n, int bits, int sym, int mse) {
    int maxq = (1 << bits) - 1;
    float lo = 0, hi = 0;
    for (int k = 0; k < n; k++) lo = fminf(lo, x[k]), hi = fmaxf(hi, x[k]);
    if (sym) {
        hi = fmaxf(-lo, hi);
        if (lo < 0) lo = -hi;
    }
    if (lo == 0 && hi == 0) lo = -1, hi = 1;
    naive_sz(s, z, lo, hi, maxq, sym);
    if (!mse) return;
    double best = INFINITY;
    for (int i = 0; i < 80; i++) {
        float p = (float)(1.0 - i / 100.0), s1;
        int z1;
        naive_sz(&s1, &z1, p * lo, p * hi, maxq, sym);
        double e = 0;
        for (int k = 0; k < n; k++)
            e += pow(fabs((double)(s1 * (float)(naive_q(x[k], s1, z1, maxq) - z1) - x[k])), 2.4);
        if (e < best) best = e, *s = s1, *z = z1;
    }
}

static void check_rtn_naive(const float *W, int R, int C, int bits, int gs_in, int sym, int mse) {
    sp_qlayer q;
    sp_err e = {0};
    assert_int_equal(sp_quant_rtn(W, R, C, bits, gs_in, sym, mse, &q, &e), SP_OK);
    int gs = gs_in == -1 ? C : gs_in, G = (C + gs - 1) / gs, maxq = (1 << bits) - 1;
    assert_int_equal(q.n_groups, G);
    assert_int_equal(q.group_size, gs);
    float *x = malloc(sizeof(float) * C);
    assert_non_null(x);
    for (int r = 0; r < R; r++)
        for (int g = 0; g < G; g++) {
            int n = 0;
            for (int c = g * gs; c < C && c < (g + 1) * gs; c++) x[n++] = W[r * C + c];
            float s;
            int z;
            naive_params(&s, &z, x, n, bits, sym, mse);
            if (s != q.scales[r * G + g] || z != q.zeros[r * G + g])
                fail_msg("row %d group %d (bits %d gs %d sym %d mse %d): s %a/%a z %d/%d", r, g,
                         bits, gs_in, sym, mse, (double)q.scales[r * G + g], (double)s,
                         q.zeros[r * G + g], z);
            for (int k = 0; k < n; k++)
                assert_int_equal(q.codes[r * C + g * gs + k], naive_q(x[k], s, z, maxq));
        }
    free(x);
    sp_qlayer_free(&q);
}

static void test_rtn_matches_naive(void **state) {
    (void)state;
    const int R = 9, C = 75;
    float *W = random_w(R, C, 3);
    static const int gss[] = {1, 7, 32, 75, -1, 128};
    for (int bits = 2; bits <= 8; bits++)
        for (int gi = 0; gi < 6; gi++)
            for (int sym = 0; sym < 2; sym++) check_rtn_naive(W, R, C, bits, gss[gi], sym, 0);
    for (int bits = 2; bits <= 8; bits += 3)
        for (int sym = 0; sym < 2; sym++) check_rtn_naive(W, R, C, bits, 16, sym, 1);
    free(W);
}

/* ---- per-element error bounds ------------------------------------------------------------- */

/* Every weight: inside the grid [s·(0−z), s·(maxq−z)] the error is at most s/2; outside it is
 * clamped to the nearest end. Asymmetric: the error is at most s/2 plus the range lost to
 * rounding s to fp16, which is at most 2^-11 of the range. */
static void check_bounds(const float *W, int R, int C, int bits, int gs, int sym) {
    sp_qlayer q;
    sp_err e = {0};
    assert_int_equal(sp_quant_rtn(W, R, C, bits, gs, sym, 0, &q, &e), SP_OK);
    float *deq = malloc(sizeof(float) * R * C);
    assert_non_null(deq);
    sp_qlayer_dequant(deq, &q);
    const int maxq = (1 << bits) - 1, G = q.n_groups;
    gs = q.group_size;
    for (int r = 0; r < R; r++)
        for (int g = 0; g < G; g++) {
            double s = q.scales[r * G + g], z = q.zeros[r * G + g];
            assert_true(s >= 0x1p-14 && is_f16((float)s));
            assert_true(z >= 0 && z <= maxq);
            double lo = 0, hi = 0;
            for (int c = g * gs; c < C && c < (g + 1) * gs; c++)
                lo = fmin(lo, W[r * C + c]), hi = fmax(hi, W[r * C + c]);
            if (lo == 0 && hi == 0) lo = -1, hi = 1;
            double shortfall = fmax(0.0, (hi - lo) - maxq * s);
            if (!sym) assert_true(shortfall <= (hi - lo) * 0x1p-11 * 1.0001);
            for (int c = g * gs; c < C && c < (g + 1) * gs; c++) {
                double x = W[r * C + c], d = deq[r * C + c], a = s * (0 - z), b = s * (maxq - z);
                assert_true(d == s * (q.codes[r * C + c] - z));
                if (x == 0) assert_true(d == 0); /* zero is always exact */
                if (x >= a && x <= b)
                    assert_true(fabs(x - d) <= s / 2 * (1 + 1e-6));
                else
                    assert_true(d == (x < a ? a : b));
                if (!sym) assert_true(fabs(x - d) <= s / 2 * (1 + 1e-6) + shortfall);
            }
        }
    free(deq);
    sp_qlayer_free(&q);
}

static void test_error_bounds(void **state) {
    (void)state;
    const int R = 16, C = 96;
    float *W = random_w(R, C, 9);
    /* rows 0..2 constant (positive, negative, zero), row 3 non-negative, columns 5 and 40 zero */
    for (int c = 0; c < C; c++) {
        W[0 * C + c] = 0.37f;
        W[1 * C + c] = -2.5f;
        W[2 * C + c] = 0.0f;
        W[3 * C + c] = fabsf(W[3 * C + c]);
    }
    for (int r = 0; r < R; r++) W[r * C + 5] = W[r * C + 40] = 0.0f;
    static const int gss[] = {8, 32, 96, -1};
    for (int bits = 2; bits <= 8; bits++)
        for (int gi = 0; gi < 4; gi++)
            for (int sym = 0; sym < 2; sym++) check_bounds(W, R, C, bits, gss[gi], sym);
    free(W);
}

static void test_constant_rows(void **state) {
    (void)state;
    const int C = 10;
    float W[3 * 10];
    for (int c = 0; c < C; c++) W[c] = 0.37f, W[C + c] = -2.5f, W[2 * C + c] = 0.0f;
    for (int bits = 2; bits <= 8; bits++) {
        const int maxq = (1 << bits) - 1;
        sp_qlayer q;
        sp_err e = {0};
        assert_int_equal(sp_quant_rtn(W, 3, C, bits, -1, 0, 0, &q, &e), SP_OK);
        /* 0.37: range [0, 0.37], z = 0, s = fp16(0.37/maxq); -2.5: z = maxq; 0: range ±1. */
        assert_int_equal(q.zeros[0], 0);
        assert_true(q.scales[0] == (float)sp_quant_round_fp16((double)(0.37f / (float)maxq)));
        assert_int_equal(q.zeros[1], maxq);
        assert_true(q.scales[2] == (float)sp_quant_round_fp16((double)(2.0f / (float)maxq)));
        float deq[30];
        sp_qlayer_dequant(deq, &q);
        for (int c = 0; c < C; c++) {
            assert_true(fabsf(deq[c] - 0.37f) <= q.scales[0] / 2 + 0.37f * 0x1p-11f);
            assert_true(fabsf(deq[C + c] + 2.5f) <= q.scales[1] / 2 + 2.5f * 0x1p-11f);
            assert_true(deq[2 * C + c] == 0.0f);
        }
        sp_qlayer_free(&q);
    }
}

/* Exact half-steps round to even, like torch.round: s = 0.0625 exactly, x = k·s/2. */
static void test_ties_to_even(void **state) {
    (void)state;
    float W[31], Wn[31];
    for (int k = 0; k <= 30; k++) W[k] = 0.03125f * (float)k, Wn[k] = -W[k];
    sp_qlayer q;
    sp_err e = {0};
    assert_int_equal(sp_quant_rtn(W, 1, 31, 4, -1, 0, 0, &q, &e), SP_OK);
    assert_true(q.scales[0] == 0.0625f);
    assert_int_equal(q.zeros[0], 0);
    for (int k = 0; k <= 30; k++) assert_int_equal(q.codes[k], (int)nearbyint(k / 2.0));
    sp_qlayer_free(&q);
    /* Negative side, asymmetric: z = 15 and codes 15 − rne(k/2). */
    assert_int_equal(sp_quant_rtn(Wn, 1, 31, 4, -1, 0, 0, &q, &e), SP_OK);
    assert_true(q.scales[0] == 0.0625f);
    assert_int_equal(q.zeros[0], 15);
    for (int k = 0; k <= 30; k++) assert_int_equal(q.codes[k], 15 - (int)nearbyint(k / 2.0));
    sp_qlayer_free(&q);
}

/* Tiny and huge ranges: the scale stays a finite, positive, normal fp16 value. */
static void test_scale_limits(void **state) {
    (void)state;
    float W[2 * 4] = {1e-9f, -2e-9f, 3e-9f, 0, 1e7f, -3e7f, 2e7f, 5e6f};
    for (int sym = 0; sym < 2; sym++) {
        sp_qlayer q;
        sp_err e = {0};
        assert_int_equal(sp_quant_rtn(W, 2, 4, 4, -1, sym, 0, &q, &e), SP_OK);
        assert_true(q.scales[0] == 0x1p-14f);
        assert_true(q.scales[1] == 65504.0f);
        float deq[8];
        sp_qlayer_dequant(deq, &q);
        for (int i = 0; i < 8; i++) assert_true(isfinite(deq[i]));
        for (int i = 0; i < 4; i++) assert_true(fabsf(deq[i] - W[i]) <= 3e-9f); /* rounds to 0 */
        sp_qlayer_free(&q);
    }
}

/* MSE never increases Σ|err|^2.4 per row group, and improves it on heavy-tailed rows. */
static void test_mse_not_worse(void **state) {
    (void)state;
    const int R = 32, C = 64;
    float *W = random_w(R, C, 17);
    for (int sym = 0; sym < 2; sym++)
        for (int bits = 2; bits <= 4; bits++) {
            sp_qlayer a, b;
            sp_err e = {0};
            assert_int_equal(sp_quant_rtn(W, R, C, bits, 32, sym, 0, &a, &e), SP_OK);
            assert_int_equal(sp_quant_rtn(W, R, C, bits, 32, sym, 1, &b, &e), SP_OK);
            float *da = malloc(sizeof(float) * R * C), *db = malloc(sizeof(float) * R * C);
            assert_true(da && db);
            sp_qlayer_dequant(da, &a);
            sp_qlayer_dequant(db, &b);
            int better = 0;
            for (int r = 0; r < R; r++)
                for (int g = 0; g < 2; g++) {
                    double ea = 0, eb = 0;
                    for (int c = 32 * g; c < 32 * (g + 1); c++) {
                        ea += pow(fabs((double)(da[r * C + c] - W[r * C + c])), 2.4);
                        eb += pow(fabs((double)(db[r * C + c] - W[r * C + c])), 2.4);
                    }
                    assert_true(eb <= ea * (1 + 1e-9));
                    better += eb < ea * 0.999;
                }
            assert_true(better > 0);
            free(da), free(db);
            sp_qlayer_free(&a);
            sp_qlayer_free(&b);
        }
    free(W);
}

/* Σ_k w_k (deq_k − x_k)² of row r of a group stored row-major (X[r·n + k]) with (s, z). */
static double weighted_err(const float *x, int n, const double *w, float s, int z, int bits) {
    const int maxq = (1 << bits) - 1;
    double e = 0;
    for (int k = 0; k < n; k++) {
        float t = nearbyintf(x[k] / s) + (float)z; /* ties to even in the default mode */
        t = t < 0 ? 0 : t > (float)maxq ? (float)maxq : t;
        double d = (double)(s * (t - (float)z)) - (double)x[k];
        e += w[k] * d * d;
    }
    return e;
}

/* The importance-weighted search never gives a larger weighted error than min-max, on random
 * heavy-tailed groups with random weights (some zero, some huge), in float and in double, and
 * improves on it for some rows. */
static void test_hmse_not_worse_than_minmax(void **state) {
    (void)state;
    const int R = 70, ns[3] = {7, 32, 128};
    uint64_t seed = 99;
    for (int ni = 0; ni < 3; ni++)
        for (int sym = 0; sym < 2; sym++)
            for (int bits = 2; bits <= 5; bits++) {
                const int n = ns[ni];
                float *X = random_w(R, n, seed++);
                double *Xd = malloc(sizeof(double) * R * n), *w = malloc(sizeof(double) * n);
                assert_true(Xd && w);
                for (int i = 0; i < R * n; i++) Xd[i] = X[i];
                for (int k = 0; k < n; k++) {
                    double u = rng_u(&seed);
                    w[k] = u < 0.1 ? 0 : u < 0.2 ? 1e3 * u : u;
                }
                float s0[70], s1[70], s2[70];
                uint8_t z0[70], z1[70], z2[70];
                sp_quant_params_f32(s0, z0, 1, X, (size_t)n, 1, R, n, bits, sym, 0);
                sp_quant_params_search_f32(s1, z1, 1, X, (size_t)n, 1, R, n, bits, sym, w, 2.0);
                sp_quant_params_search_f64(s2, z2, 1, Xd, (size_t)n, 1, R, n, bits, sym, w, 2.0);
                int better = 0;
                for (int r = 0; r < R; r++) {
                    double e0 = weighted_err(X + r * n, n, w, s0[r], z0[r], bits);
                    double e1 = weighted_err(X + r * n, n, w, s1[r], z1[r], bits);
                    assert_true(e1 <= e0 * (1 + 1e-6) + 1e-30);
                    assert_true(is_f16(s1[r]) && is_f16(s2[r]));
                    better += e1 < e0 * 0.999;
                }
                if (n >= 32) assert_true(better > 0);
                free(X), free(Xd), free(w);
            }
}

/* With uniform weights the search is the unweighted one: weights 1 and norm 2.4 give exactly
 * quant.py's --mse (mse = 1), weights NULL too, in both precisions and any layout. */
static void test_search_uniform_is_mse(void **state) {
    (void)state;
    const int R = 70, n = 48;
    float *X = random_w(R, n, 5);
    double *Xd = malloc(sizeof(double) * R * n), *ones = malloc(sizeof(double) * n);
    assert_true(Xd && ones);
    for (int i = 0; i < R * n; i++) Xd[i] = X[i];
    for (int k = 0; k < n; k++) ones[k] = 1.0;
    for (int sym = 0; sym < 2; sym++)
        for (int bits = 2; bits <= 8; bits++) {
            float a[70], b[70], c[70], da[70], db[70];
            uint8_t za[70], zb[70], zc[70], zda[70], zdb[70];
            sp_quant_params_f32(a, za, 1, X, (size_t)n, 1, R, n, bits, sym, 1);
            sp_quant_params_search_f32(b, zb, 1, X, (size_t)n, 1, R, n, bits, sym, ones, 2.4);
            sp_quant_params_search_f32(c, zc, 1, X, (size_t)n, 1, R, n, bits, sym, NULL, 2.4);
            sp_quant_params_f64(da, zda, 1, Xd, (size_t)n, 1, R, n, bits, sym, 1);
            sp_quant_params_search_f64(db, zdb, 1, Xd, (size_t)n, 1, R, n, bits, sym, ones, 2.4);
            assert_memory_equal(a, b, sizeof a);
            assert_memory_equal(za, zb, sizeof za);
            assert_memory_equal(a, c, sizeof a);
            assert_memory_equal(za, zc, sizeof za);
            assert_memory_equal(da, db, sizeof da);
            assert_memory_equal(zda, zdb, sizeof zda);
        }
    assert_string_equal(sp_quant_search_name(SP_QSEARCH_HMSE), "hmse");
    assert_int_equal(sp_quant_search_parse("mse"), SP_QSEARCH_MSE);
    assert_int_equal(sp_quant_search_parse("minmax"), SP_QSEARCH_MINMAX);
    assert_int_equal(sp_quant_search_parse("rtn"), -1);
    assert_null(sp_quant_search_name(7));
    free(X), free(Xd), free(ones);
}

/* The strided entry point agrees with the row-major one; the double entry points follow the
 * same formulas evaluated in double (checked against a naive double version). */
static void test_params_layouts(void **state) {
    (void)state;
    const int R = 70, n = 40; /* more rows than one internal chunk (64) */
    float *W = random_w(R, n, 23), *Wt = malloc(sizeof(float) * R * n);
    double *Wd = malloc(sizeof(double) * R * n);
    assert_true(Wt && Wd);
    for (int r = 0; r < R; r++)
        for (int k = 0; k < n; k++) {
            Wt[k * R + r] = W[r * n + k];
            Wd[k * R + r] = W[r * n + k] * 1.001;
        }
    for (int bits = 2; bits <= 8; bits += 2)
        for (int sym = 0; sym < 2; sym++) {
            const int maxq = (1 << bits) - 1;
            float s1[70], s2[70], s3[70], dq[70];
            uint8_t z1[70], z2[70], z3[70], c1[70], c3[70];
            double dd[70];
            sp_quant_params_f32(s1, z1, 1, W, (size_t)n, 1, R, n, bits, sym, 0);
            sp_quant_params_f32(s2, z2, 1, Wt, 1, (size_t)R, R, n, bits, sym, 0);
            sp_quant_params_f64(s3, z3, 1, Wd, 1, (size_t)R, R, n, bits, sym, 0);
            assert_memory_equal(s1, s2, sizeof s1);
            assert_memory_equal(z1, z2, sizeof z1);
            sp_quant_column_f32(c1, dq, Wt + 3 * R, s1, z1, R, bits);
            sp_quant_column_f64(c3, dd, Wd + 3 * R, s3, z3, R, bits);
            for (int r = 0; r < R; r++) {
                double lo = 0, hi = 0;
                for (int k = 0; k < n; k++) {
                    lo = fmin(lo, Wd[k * R + r]);
                    hi = fmax(hi, Wd[k * R + r]);
                }
                if (sym) {
                    hi = fmax(-lo, hi);
                    if (lo < 0) lo = -hi;
                }
                double s = (double)(_Float16)((hi - lo) / maxq);
                int z = sym ? (maxq + 1) / 2 : (int)nearbyint(-lo / s);
                assert_true(s3[r] == (float)s);
                assert_int_equal(z3[r], z);
                double x = Wd[3 * R + r], q = fmin(fmax(nearbyint(x / s) + z, 0), maxq);
                assert_int_equal(c3[r], (int)q);
                assert_true(dd[r] == s * (q - z));
                assert_int_equal(c1[r], naive_q(Wt[3 * R + r], s1[r], z1[r], maxq));
                assert_true(dq[r] == s1[r] * (float)(c1[r] - z1[r]));
            }
        }
    free(W), free(Wt), free(Wd);
}

static void test_qlayer_and_errors(void **state) {
    (void)state;
    sp_qlayer q;
    sp_err e = {0};
    assert_int_equal(sp_qlayer_alloc(&q, 3, 10, 4, 4, 0, &e), SP_OK);
    assert_int_equal(q.n_groups, 3);
    for (int c = 0; c < 10; c++) assert_int_equal(q.g_idx[c], c / 4);
    for (int i = 0; i < 30; i++) assert_int_equal(q.codes[i], 0);
    sp_qlayer_free(&q);
    assert_null(q.mem_);
    sp_qlayer_free(&q); /* twice is harmless */
    assert_int_equal(sp_qlayer_alloc(&q, 3, 10, 4, 0, 1, &e), SP_OK);
    assert_int_equal(q.group_size, 10);
    assert_int_equal(q.n_groups, 1);
    sp_qlayer_free(&q);
    assert_int_equal(sp_qlayer_alloc(&q, 3, 10, 9, 4, 0, &e), SP_EINVAL);
    assert_int_equal(sp_qlayer_alloc(&q, 0, 10, 4, 4, 0, &e), SP_EINVAL);

    float W[12] = {0.1f, 0.2f, -0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f, 0.9f, 1.0f, 1.1f, 1.2f};
    assert_int_equal(sp_quant_rtn(W, 3, 4, 1, -1, 0, 0, &q, &e), SP_EINVAL);
    assert_null(q.mem_);
    assert_int_equal(sp_quant_rtn(W, 3, 4, 9, -1, 0, 0, &q, &e), SP_EINVAL);
    assert_int_equal(sp_quant_rtn(W, 3, 4, 4, 0, 0, 0, &q, &e), SP_EINVAL);
    assert_int_equal(sp_quant_rtn(W, 3, 4, 4, -2, 0, 0, &q, &e), SP_EINVAL);
    assert_int_equal(sp_quant_rtn(W, 0, 4, 4, -1, 0, 0, &q, &e), SP_EINVAL);
    W[6] = NAN;
    assert_int_equal(sp_quant_rtn(W, 3, 4, 4, -1, 0, 0, &q, &e), SP_ENUMERIC);
    assert_non_null(strstr(e.msg, "W[1, 2]"));
    assert_null(q.mem_);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_fp16),      cmocka_unit_test(test_rtn_matches_naive),
        cmocka_unit_test(test_error_bounds),    cmocka_unit_test(test_constant_rows),
        cmocka_unit_test(test_ties_to_even),    cmocka_unit_test(test_scale_limits),
        cmocka_unit_test(test_mse_not_worse),
        cmocka_unit_test(test_hmse_not_worse_than_minmax),
        cmocka_unit_test(test_search_uniform_is_mse),
        cmocka_unit_test(test_params_layouts),  cmocka_unit_test(test_qlayer_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
