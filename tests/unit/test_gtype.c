/* test_gtype.c — ggml block types (kernels/sp_gtype.c), the GGUF writer (shards/formats/sp_gguf.c)
 * and GPTQ in a GGUF type (SP_QSEARCH_GGUF in kernels/sp_gptq.c).
 *
 * What llama.cpp itself reads is checked by tests/mpi/test_gguf.sh (ggml's to_float against
 * sp_gtype_dequant_row, bit for bit); here: sizes, error bounds of every quantizer, the exact
 * packing of a symmetric group-32 level, the GPTQ scale rule, and the writer's bytes.
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
#include <unistd.h>

#include "kernels/sp_gptq.h"
#include "kernels/sp_gtype.h"
#include "shards/formats/sp_gguf.h"
#include "shards/formats/sp_gguf_export.h"
#include "common/sp_rng.h"
#include "shards/sp_model.h"

static float rng_f(uint64_t *s) { return (float)((double)(sp_rng_next(s) >> 11) / 9007199254740992.0 - 0.5); }

static void test_sizes_and_names(void **state) {
    (void)state;
    assert_int_equal(sp_gtype_row_bytes(SP_GT_Q4_0, 64), 36);
    assert_int_equal(sp_gtype_row_bytes(SP_GT_Q8_0, 32), 34);
    assert_int_equal(sp_gtype_row_bytes(SP_GT_Q5_1, 32), 24);
    assert_int_equal(sp_gtype_row_bytes(SP_GT_Q4_K, 256), 144);
    assert_int_equal(sp_gtype_row_bytes(SP_GT_Q5_K, 512), 352);
    assert_int_equal(sp_gtype_row_bytes(SP_GT_Q6_K, 256), 210);
    assert_int_equal(sp_gtype_row_bytes(SP_GT_Q4_K, 64), 0);
    assert_int_equal(sp_gtype_row_bytes(SP_GT_Q4_0, 172), 0);
    assert_int_equal(sp_gtype_parse("q4_k"), SP_GT_Q4_K);
    assert_int_equal(sp_gtype_parse("F16"), SP_GT_F16);
    assert_int_equal(sp_gtype_parse("Q9_0"), -1);
    assert_string_equal(sp_gtype_name(SP_GT_Q5_0), "Q5_0");
    for (int t = 0; t < 16; t++)
        if (sp_gtype_name(t))
            assert_true(fabs(sp_gtype_bpw(t) * sp_gtype_block(t) - 8.0 * sp_gtype_block_bytes(t)) < 1e-9);
}

/* Each type's round trip error is within its grid: legacy half a step of d, K-quants a step of
 * the sub-block scale (plus the scale's own rounding), F16 its half ulp. */
static void test_roundtrip_bounds(void **state) {
    (void)state;
    const int types[] = {SP_GT_F32, SP_GT_F16, SP_GT_Q4_0, SP_GT_Q4_1, SP_GT_Q5_0, SP_GT_Q5_1,
                         SP_GT_Q8_0, SP_GT_Q4_K, SP_GT_Q5_K, SP_GT_Q6_K, SP_GT_Q2_K,
                         SP_GT_Q3_K};
    const double rel[] = {0, 1e-3, 0.15, 0.07, 0.07, 0.035, 0.008, 0.2, 0.1, 0.05, 0.5, 0.3};
    uint64_t s = 7;
    float x[512], y[512];
    uint8_t buf[2048];
    sp_err e;
    for (int i = 0; i < 512; i++) x[i] = rng_f(&s) * (i % 37 == 0 ? 8.0f : 1.0f);
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        assert_int_equal(sp_gtype_quantize_row(types[k], x, 512, buf, &e), SP_OK);
        assert_int_equal(sp_gtype_dequant_row(types[k], buf, 512, y, &e), SP_OK);
        double maxerr = 0, amax = 0;
        for (int i = 0; i < 512; i++) {
            maxerr = fmax(maxerr, fabs((double)x[i] - y[i]));
            amax = fmax(amax, fabs(x[i]));
        }
        if (maxerr > rel[k] * amax + 1e-7) print_error("%s: max error %g of %g\n", sp_gtype_name(types[k]), maxerr, amax);
        assert_true(maxerr <= rel[k] * amax + 1e-7);
        if (types[k] == SP_GT_F32) assert_memory_equal(x, y, sizeof x);
    }
    assert_int_equal(sp_gtype_quantize_row(SP_GT_Q4_K, x, 64, buf, &e), SP_EINVAL);
    assert_int_equal(sp_gtype_quantize_row(SP_GT_Q3_K, x, 100, buf, &e), SP_EINVAL);
}

/* sp_gtype_quantize_row_search (export --match-gguf's token_embd/output): a valid row of the
 * type whose squared error, summed over rows with outliers, is no larger than the min-max
 * rule's (Q2_K/Q3_K: the same search, so equal bytes), and with weights, no larger in the
 * weighted error than the unit-weight search. F32/F16 pass through. */
static void test_row_search(void **state) {
    (void)state;
    const int types[] = {SP_GT_Q4_0, SP_GT_Q4_1, SP_GT_Q5_0, SP_GT_Q5_1, SP_GT_Q8_0,
                         SP_GT_Q4_K, SP_GT_Q5_K, SP_GT_Q6_K, SP_GT_Q2_K, SP_GT_Q3_K, SP_GT_F16};
    enum { N = 512, ROWS = 16 };
    static float x[ROWS][N], y[N];
    static double wt[N];
    uint8_t a[2048], b[2048];
    uint64_t s = 11;
    sp_err e;
    for (int r = 0; r < ROWS; r++)
        for (int i = 0; i < N; i++) x[r][i] = rng_f(&s) * (i % 29 == r ? 6.0f : 1.0f);
    for (int i = 0; i < N; i++) wt[i] = 0.05 + (double)(sp_rng_next(&s) % 1000) / 100.0;
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        const int t = types[k];
        double e_rule = 0, e_search = 0, w_unit = 0, w_wt = 0;
        for (int r = 0; r < ROWS; r++) {
            assert_int_equal(sp_gtype_quantize_row(t, x[r], N, a, &e), SP_OK);
            assert_int_equal(sp_gtype_quantize_row_search(t, x[r], N, NULL, b, &e), SP_OK);
            if (t == SP_GT_F16 || t == SP_GT_Q2_K || t == SP_GT_Q3_K)
                assert_memory_equal(a, b, sp_gtype_row_bytes(t, N));
            assert_int_equal(sp_gtype_dequant_row(t, a, N, y, &e), SP_OK);
            for (int i = 0; i < N; i++) e_rule += ((double)x[r][i] - y[i]) * ((double)x[r][i] - y[i]);
            assert_int_equal(sp_gtype_dequant_row(t, b, N, y, &e), SP_OK);
            for (int i = 0; i < N; i++) {
                double d = (double)x[r][i] - y[i];
                e_search += d * d;
                w_unit += wt[i] * d * d;
            }
            assert_int_equal(sp_gtype_quantize_row_search(t, x[r], N, wt, b, &e), SP_OK);
            assert_int_equal(sp_gtype_dequant_row(t, b, N, y, &e), SP_OK);
            for (int i = 0; i < N; i++) w_wt += wt[i] * ((double)x[r][i] - y[i]) * ((double)x[r][i] - y[i]);
        }
        if (e_search > e_rule * (1 + 1e-12) || w_wt > w_unit * (1 + 1e-12))
            print_error("%s: search %g vs rule %g; weighted %g vs unit %g\n", sp_gtype_name(t),
                        e_search, e_rule, w_wt, w_unit);
        assert_true(e_search <= e_rule * (1 + 1e-12));
        assert_true(w_wt <= w_unit * (1 + 1e-12));
    }
    assert_int_equal(sp_gtype_quantize_row_search(SP_GT_Q4_K, x[0], 100, NULL, b, &e), SP_EINVAL);
}

/* A zero row stays zero in every type (no NaN from a zero scale). */
static void test_zero_row(void **state) {
    (void)state;
    float x[256] = {0}, y[256];
    uint8_t buf[512];
    sp_err e;
    const int types[] = {SP_GT_Q4_0, SP_GT_Q4_1, SP_GT_Q5_0, SP_GT_Q5_1, SP_GT_Q8_0,
                         SP_GT_Q4_K, SP_GT_Q5_K, SP_GT_Q6_K, SP_GT_Q2_K, SP_GT_Q3_K};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        assert_int_equal(sp_gtype_quantize_row(types[k], x, 256, buf, &e), SP_OK);
        assert_int_equal(sp_gtype_dequant_row(types[k], buf, 256, y, &e), SP_OK);
        for (int i = 0; i < 256; i++) assert_true(y[i] == 0.0f);
    }
}

/* A symmetric group-32 level packs into Q4_0/Q5_0/Q8_0 and dequantizes to the level's own
 * s·(q − z), bit for bit; other levels are refused. */
static void test_pack_exact(void **state) {
    (void)state;
    uint64_t s = 3;
    const int bits[] = {4, 5, 8}, types[] = {SP_GT_Q4_0, SP_GT_Q5_0, SP_GT_Q8_0};
    float W[4 * 64], D[4 * 64], y[64];
    for (int i = 0; i < 4 * 64; i++) W[i] = rng_f(&s);
    sp_err e;
    for (int k = 0; k < 3; k++) {
        sp_qlayer q;
        assert_int_equal(sp_quant_rtn(W, 4, 64, bits[k], 32, 1, 0, &q, &e), SP_OK);
        assert_int_equal(sp_gtype_exact_of_level(bits[k], 32, 1, 64), types[k]);
        sp_qlayer_dequant(D, &q);
        uint8_t buf[128];
        for (int r = 0; r < 4; r++) {
            assert_int_equal(sp_gtype_pack_qrow(types[k], &q, r, buf, &e), SP_OK);
            assert_int_equal(sp_gtype_dequant_row(types[k], buf, 64, y, &e), SP_OK);
            assert_memory_equal(y, D + r * 64, sizeof y);
        }
        assert_int_equal(sp_gtype_pack_qrow(SP_GT_Q4_0 == types[k] ? SP_GT_Q8_0 : SP_GT_Q4_0, &q,
                                            0, buf, &e), SP_EINVAL);
        sp_qlayer_free(&q);
    }
    assert_int_equal(sp_gtype_exact_of_level(4, 32, 0, 64), -1);
    assert_int_equal(sp_gtype_exact_of_level(4, 64, 1, 64), -1);
    assert_int_equal(sp_gtype_exact_of_level(3, 32, 1, 64), -1);
    assert_int_equal(sp_gtype_exact_of_level(4, 32, 1, 172), -1);
}

/* GPTQ with the GGUF scale rule: group 32, symmetric, every scale is v/−8 of the group's weights
 * (as quantized so far), so the largest weight's code is 0, and the level is exact Q4_0. */
static void test_gptq_gguf_rule(void **state) {
    (void)state;
    const int R = 8, C = 64, N = 256;
    uint64_t s = 11;
    float *W = malloc(sizeof(float) * R * C), *X = malloc(sizeof(float) * N * C);
    double *H = calloc((size_t)C * C, sizeof(double));
    for (int i = 0; i < R * C; i++) W[i] = rng_f(&s);
    for (int i = 0; i < N * C; i++) X[i] = rng_f(&s);
    for (int a = 0; a < C; a++)
        for (int b = 0; b < C; b++) {
            double acc = 0;
            for (int t = 0; t < N; t++) acc += (double)X[t * C + a] * X[t * C + b];
            H[a * C + b] = 2.0 * acc / N;
        }
    sp_gptq_opts o;
    sp_gptq_opts_default(&o);
    o.group_size = 32;
    o.sym = 1;
    o.mse = SP_QSEARCH_GGUF;
    sp_gptq_ctx *ctx;
    sp_err e;
    assert_int_equal(sp_gptq_prepare(&ctx, H, C, &o, &e), SP_OK);
    sp_qlayer q;
    assert_int_equal(sp_gptq_quantize(ctx, W, R, 4, &q, NULL, &e), SP_OK);
    int negative = 0;
    for (int i = 0; i < R * q.n_groups; i++) {
        assert_int_equal(q.zeros[i], 8);
        negative += q.scales[i] < 0;
    }
    assert_true(negative > 0); /* d keeps the sign of the largest value */
    uint8_t buf[64];
    for (int r = 0; r < R; r++) assert_int_equal(sp_gtype_pack_qrow(SP_GT_Q4_0, &q, r, buf, &e), SP_OK);
    assert_string_equal(sp_quant_search_name(SP_QSEARCH_GGUF), "gguf");
    sp_qlayer_free(&q);
    sp_gptq_free(ctx);
    free(W);
    free(X);
    free(H);
}

/* A random SPD Hessian H = 2/N Σ x xᵀ [C, C] whose columns have different scales (so that
 * diag(H) weights matter), and W [R, C]. */
static void make_problem(int R, int C, uint64_t seed, float *W, double *H) {
    const int N = 2 * C;
    uint64_t s = seed;
    float *X = malloc(sizeof(float) * (size_t)N * C);
    for (int i = 0; i < R * C; i++) W[i] = rng_f(&s) * (i % 53 == 0 ? 6.0f : 1.0f);
    for (int t = 0; t < N; t++)
        for (int c = 0; c < C; c++) X[t * C + c] = rng_f(&s) * (1.0f + (float)(c % 7)) + rng_f(&s);
    for (int a = 0; a < C; a++)
        for (int b = a; b < C; b++) {
            double acc = 0;
            for (int t = 0; t < N; t++) acc += (double)X[t * C + a] * X[t * C + b];
            H[a * C + b] = H[b * C + a] = 2.0 * acc / N;
        }
    free(X);
}

/* GPTQ in every gtype level (Q4_1, Q5_1, Q2_K … Q6_K), with and without act_order:
 *  - every row packs into the type (the values are exactly the type's) and ggml's layout,
 *    read back by sp_gtype_dequant_row, gives the level's own dequantization bit for bit;
 *  - the layer error tr(ΔW H ΔWᵀ) is below that of the type's round-to-nearest quantizer
 *    (sp_gtype_quantize_row): the error compensation works inside the type's grid;
 *  - the level's shape is the type's (bits, group, zero point), offsets and super-scales set. */
static void test_gptq_levels(void **state) {
    (void)state;
    const int R = 6, C = 512;
    const int types[] = {SP_GT_Q4_1, SP_GT_Q5_1, SP_GT_Q2_K, SP_GT_Q3_K, SP_GT_Q4_K,
                         SP_GT_Q5_K, SP_GT_Q6_K, SP_GT_Q2_0, SP_GT_Q1_0};
    float *W = malloc(sizeof(float) * R * C), *D = malloc(sizeof(float) * R * C), y[512];
    double *H = malloc(sizeof(double) * C * C);
    uint8_t buf[512 * 2];
    make_problem(R, C, 5, W, H);
    sp_err e;
    for (int act = 0; act < 2; act++) {
        sp_gptq_opts o;
        sp_gptq_opts_default(&o);
        o.act_order = act;
        sp_gptq_ctx *ctx;
        assert_int_equal(sp_gptq_prepare(&ctx, H, C, &o, &e), SP_OK);
        for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
            const int t = types[k];
            int bits, g, sym;
            sp_gtype_level(t, &bits, &g, &sym);
            sp_qlayer q;
            double eg = 0, er = 0;
            assert_int_equal(sp_gptq_quantize_level(ctx, W, R, bits, t, 0, &q, &eg, &e), SP_OK);
            assert_int_equal(q.gtype, t);
            assert_int_equal(q.group_size, g);
            assert_int_equal(q.n_super, sp_gtype_block(t) == 256 ? C / 256 : 0);
            assert_true((q.mins != NULL) == sp_gtype_has_min(t));
            for (int i = 0; i < R * q.n_groups; i++) assert_int_equal(q.zeros[i], sp_gtype_zero(t));
            sp_qlayer_dequant(D, &q);
            for (int r = 0; r < R; r++) {
                assert_int_equal(sp_gtype_pack_level_row(&q, r, buf, &e), SP_OK);
                assert_int_equal(sp_gtype_dequant_row(t, buf, C, y, &e), SP_OK);
                assert_memory_equal(y, D + r * C, sizeof y);
            }
            /* round-to-nearest in the type, then its layer error */
            for (int r = 0; r < R; r++) {
                assert_int_equal(sp_gtype_quantize_row(t, W + r * C, C, buf, &e), SP_OK);
                assert_int_equal(sp_gtype_dequant_row(t, buf, C, D + r * C, &e), SP_OK);
            }
            assert_int_equal(sp_gptq_layer_error(W, D, H, R, C, &er, &e), SP_OK);
            if (!(eg < er)) print_error("%s act %d: GPTQ %g vs RTN %g\n", sp_gtype_name(t), act, eg, er);
            assert_true(eg < er);
            /* a value that is not the type's is refused by the packer */
            q.scales[1] = nextafterf(q.scales[1], 1e9f);
            assert_int_equal(sp_gtype_pack_level_row(&q, 0, buf, &e), SP_EINVAL);
            sp_qlayer_free(&q);
        }
        sp_qlayer q;
        assert_int_equal(sp_gptq_quantize_level(ctx, W, R, 4, SP_GT_Q6_K, 0, &q, NULL, &e), SP_EINVAL);
        assert_int_equal(sp_gptq_quantize_level(ctx, W, R, 4, SP_GT_Q4_0, 0, &q, NULL, &e), SP_EINVAL);
        sp_gptq_free(ctx);
    }
    free(W);
    free(D);
    free(H);
}

/* Q2_0 / Q1_0 (issue 20): the d that sp_gtype_block_params picks is the least weighted error
 * over every finite fp16 value, against a brute force that tries all 2·31743 of them with each
 * value's nearest grid point (computed here in double, not with sp_gtype_code), and it is never
 * worse than llama.cpp's own rule (Q2_0: d = max|x|; Q1_0: d = mean|x|). The error of ours is
 * measured on what the block dequantizes to. An all-zero block reads back as +0. */
static double grid_err(int type, const float *x, const double *w, int n, double d) {
    double e = 0;
    for (int k = 0; k < n; k++) {
        double best = INFINITY;
        for (int c = type == SP_GT_Q2_0 ? -1 : 0; c <= (type == SP_GT_Q2_0 ? 2 : 1); c++) {
            double y = type == SP_GT_Q2_0 ? c * d : (c ? d : -d), t = (x[k] - y) * (x[k] - y);
            if (t < best) best = t;
        }
        e += (w ? w[k] : 1.0) * best;
    }
    return e;
}

static void test_lowbit_exact(void **state) {
    (void)state;
    const int types[] = {SP_GT_Q2_0, SP_GT_Q1_0};
    uint64_t s = 99;
    sp_err e;
    for (int ti = 0; ti < 2; ti++) {
        const int t = types[ti], n = sp_gtype_block(t);
        double sum_ours = 0, sum_ref = 0;
        for (int trial = 0; trial < 16; trial++) {
            float x[128], y[128];
            double w[128];
            uint8_t blk[18];
            for (int k = 0; k < n; k++) {
                float v = rng_f(&s) + rng_f(&s) + rng_f(&s);          /* bell-shaped */
                if (trial % 4 == 1 && k % 9 == 0) v *= 6.0f;              /* outliers    */
                if (trial % 4 == 2) v = fabsf(v) + 0.05f * rng_f(&s);    /* skewed      */
                x[k] = v * (trial % 3 ? 0.01f : 3.0f);
                w[k] = trial % 4 == 3 ? 1.0 : 0.01 + 4.0 * (rng_f(&s) + 0.5) * (rng_f(&s) + 0.5);
            }
            const double *wt = trial % 4 == 3 ? NULL : w;
            assert_int_equal(sp_gtype_quantize_row_search(t, x, n, wt, blk, &e), SP_OK);
            assert_int_equal(sp_gtype_dequant_row(t, blk, n, y, &e), SP_OK);
            double ours = 0;
            for (int k = 0; k < n; k++) ours += (wt ? w[k] : 1.0) * ((double)x[k] - y[k]) * ((double)x[k] - y[k]);
            double brute = INFINITY;
            for (int h = 1; h < 0x7C00; h++)
                for (int sg = -1; sg <= 1; sg += 2) {
                    const double d = sg * (double)sp_f16_to_f32((uint16_t)h);
                    const double v = grid_err(t, x, wt, n, d);
                    if (v < brute) brute = v;
                }
            if (!(ours <= brute * (1 + 1e-9))) print_error("%s trial %d: ours %.9g, brute force %.9g\n", sp_gtype_name(t), trial, ours, brute);
            assert_true(ours <= brute * (1 + 1e-9));
            /* llama.cpp's rule, its codes: round-half-away(x/d) + 1 clamped (Q2_0), sign (Q1_0) */
            double amax = 0, mabs = 0;
            for (int k = 0; k < n; k++) amax = fmax(amax, fabs(x[k])), mabs += fabs(x[k]) / n;
            const double d = sp_f16_to_f32(sp_f32_to_f16((float)(t == SP_GT_Q2_0 ? amax : mabs)));
            double ref = 0;
            for (int k = 0; k < n; k++) {
                double yv;
                if (t == SP_GT_Q2_0) {
                    double c = round(x[k] / amax) + 1;
                    c = c < 0 ? 0 : c > 3 ? 3 : c;
                    yv = (c - 1) * d;
                } else {
                    yv = x[k] >= 0 ? d : -d;
                }
                ref += (wt ? w[k] : 1.0) * (x[k] - yv) * (x[k] - yv);
            }
            assert_true(ours <= ref * (1 + 1e-9));
            sum_ours += ours, sum_ref += ref;
        }
        print_message("%s: weighted error %.4g, llama.cpp's rule %.4g (16 blocks)\n",
                      sp_gtype_name(t), sum_ours, sum_ref);
        /* Q2_0: llama.cpp's d = max|x| never uses 2d; Q1_0 differs by the weights only */
        assert_true(sum_ours < (t == SP_GT_Q2_0 ? 0.5 : 1.0) * sum_ref);
        /* an all-zero block: +0 everywhere through the dequantizer */
        float z[128] = {0}, y[128];
        uint8_t blk[18];
        assert_int_equal(sp_gtype_quantize_row(t, z, n, blk, &e), SP_OK);
        assert_int_equal(sp_gtype_dequant_row(t, blk, n, y, &e), SP_OK);
        assert_memory_equal(y, z, sizeof(float) * (size_t)n);
    }
}

static void test_qk_permutation(void **state) {
    (void)state;
    /* hd = 8: GGUF rows 0..7 of a head come from HF rows 0 4 1 5 2 6 3 7 (pairs interleaved) */
    const int64_t want[8] = {0, 4, 1, 5, 2, 6, 3, 7};
    for (int r = 0; r < 16; r++) assert_int_equal(sp_gguf_qk_src_row(r, 8), want[r % 8] + 8 * (r / 8));
    char n[64];
    assert_int_equal(sp_gguf_tensor_name("model.layers.12.self_attn.o_proj.weight", n, sizeof n), 0);
    assert_string_equal(n, "blk.12.attn_output.weight");
    assert_int_equal(sp_gguf_tensor_name("model.embed_tokens.weight", n, sizeof n), 0);
    assert_string_equal(n, "token_embd.weight");
    assert_int_equal(sp_gguf_tensor_name("model.layers.1.mlp.foo.weight", n, sizeof n), -1);
}

/* The writer's bytes: header, one kv, one tensor info, alignment, data at its offset. */
static void test_writer_bytes(void **state) {
    (void)state;
    char path[] = "/tmp/test_gtype.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    unlink(path);
    sp_gguf *g;
    sp_err e;
    assert_int_equal(sp_gguf_create(&g, path, 0, &e), SP_OK);
    assert_int_equal(sp_gguf_kv_u32(g, "a.b", 7, &e), SP_OK);
    assert_int_equal(sp_gguf_kv_u32(g, "a.b", 8, &e), SP_EINVAL); /* key given twice */
    int64_t ne[2] = {3, 1};
    assert_int_equal(sp_gguf_add_tensor(g, "t", SP_GT_F32, 1, ne, 12, &e), SP_OK);
    assert_int_equal(sp_gguf_add_tensor(g, "t", SP_GT_F32, 1, ne, 12, &e), SP_EINVAL);
    assert_int_equal(sp_gguf_begin(g, &e), SP_OK);
    float v[3] = {1, 2, 3};
    assert_int_equal(sp_gguf_write_data(g, v, 8, &e), SP_OK);
    assert_int_equal(sp_gguf_write_data(g, v + 2, 4, &e), SP_OK);
    assert_int_equal(sp_gguf_write_data(g, v, 4, &e), SP_EINVAL); /* more than declared */
    assert_int_equal(sp_gguf_finish(g, &e), SP_OK);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint8_t b[256];
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    /* 24 header + kv (8+3 key, 4 type, 4 value = 19) + info (8+1 name, 4 ndim, 8 ne, 4 type,
     * 8 offset = 33) = 76 -> data at 96, 12 bytes, padded to 128 */
    assert_int_equal(n, 128);
    assert_memory_equal(b, "GGUF\3\0\0\0\1\0\0\0\0\0\0\0\1\0\0\0\0\0\0\0", 24);
    uint32_t val;
    memcpy(&val, b + 24 + 11 + 4, 4);
    assert_int_equal(val, 7);
    assert_memory_equal(b + 96, v, 12);
    for (int i = 76; i < 96; i++) assert_int_equal(b[i], 0);
    assert_int_equal(access(path, F_OK), 0);
    /* an unfinished writer leaves nothing */
    assert_int_equal(sp_gguf_create(&g, path, 0, &e), SP_EEXIST);
    assert_int_equal(sp_gguf_create(&g, path, 1, &e), SP_OK);
    assert_int_equal(sp_gguf_add_tensor(g, "t", SP_GT_F32, 1, ne, 12, &e), SP_OK);
    assert_int_equal(sp_gguf_begin(g, &e), SP_OK);
    assert_int_equal(sp_gguf_write_data(g, v, 4, &e), SP_OK);
    sp_gguf_free(g);
    char partial[64];
    snprintf(partial, sizeof partial, "%s.partial", path);
    assert_int_equal(access(partial, F_OK), -1);
    f = fopen(path, "rb");
    assert_int_equal(fread(b, 1, sizeof b, f), 128); /* the old file is untouched */
    fclose(f);
    unlink(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes_and_names), cmocka_unit_test(test_roundtrip_bounds),
        cmocka_unit_test(test_zero_row),        cmocka_unit_test(test_pack_exact),
        cmocka_unit_test(test_gptq_gguf_rule),  cmocka_unit_test(test_qk_permutation),
        cmocka_unit_test(test_writer_bytes),    cmocka_unit_test(test_gptq_levels),
        cmocka_unit_test(test_row_search),      cmocka_unit_test(test_lowbit_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
