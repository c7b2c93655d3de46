/* test_hessian.c — double Hessian accumulation (kernels/sp_hessian.c) against a naive sum.
 *
 * Shape legend: C columns (inputs), n rows per batch, N rows in all.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/sp_hessian.h"

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float *random_x(size_t n, int C, uint64_t seed) {
    float *X = malloc(sizeof(float) * n * (size_t)C);
    assert_non_null(X);
    for (size_t i = 0; i < n * (size_t)C; i++)
        X[i] = (float)((double)(rng_next(&seed) >> 11) / 9007199254740992.0 - 0.3) *
               (float)(1 + i % 5);
    return X;
}

/* |a − b| <= tol · sqrt(H_ii H_jj) for every entry (the natural scale of entry i, j). */
static void assert_close(const double *a, const double *b, int C, double tol) {
    for (int i = 0; i < C; i++)
        for (int j = 0; j < C; j++) {
            double sc = sqrt(b[i * C + i] * b[j * C + j]);
            if (!(fabs(a[i * C + j] - b[i * C + j]) <= tol * sc))
                fail_msg("H[%d, %d] = %.17g, want %.17g", i, j, a[i * C + j], b[i * C + j]);
        }
}

static void test_vs_naive_and_batches(void **state) {
    (void)state;
    const int C = 37;
    const size_t N = 120;
    float *X = random_x(N, C, 1);
    /* naive: H = 2/N Σ x xᵀ in long double */
    double *want = malloc(sizeof(double) * C * C);
    assert_non_null(want);
    for (int i = 0; i < C; i++)
        for (int j = 0; j < C; j++) {
            long double s = 0;
            for (size_t r = 0; r < N; r++) s += (long double)X[r * C + i] * X[r * C + j];
            want[i * C + j] = (double)(2 * s / N);
        }
    sp_err e = {0};
    /* one batch */
    sp_hessian *h1 = NULL;
    assert_int_equal(sp_hessian_create(&h1, C, &e), SP_OK);
    assert_int_equal(sp_hessian_cols(h1), C);
    assert_int_equal(sp_hessian_add(h1, X, N, &e), SP_OK);
    const double *S = sp_hessian_sum(h1);
    for (int i = 0; i < C; i++)
        for (int j = 0; j < i; j++) assert_true(S[i * C + j] == 0.0); /* strict lower stays 0 */
    const double *H1;
    assert_int_equal(sp_hessian_finalize(h1, &H1, &e), SP_OK);
    assert_close(H1, want, C, 1e-13);
    for (int i = 0; i < C; i++)
        for (int j = 0; j < C; j++) assert_true(H1[i * C + j] == H1[j * C + i]);
    const double *again;
    assert_int_equal(sp_hessian_finalize(h1, &again, &e), SP_OK);
    assert_ptr_equal(again, H1);
    /* uneven batches (and an empty one) through chunks of 7 rows */
    sp_hessian *h2 = NULL;
    assert_int_equal(sp_hessian_create(&h2, C, &e), SP_OK);
    assert_int_equal(sp_hessian_set_chunk(h2, 7, &e), SP_OK);
    static const size_t cuts[] = {0, 1, 1, 14, 20, 57, 120};
    for (int b = 0; b + 1 < 7; b++)
        assert_int_equal(sp_hessian_add(h2, X + cuts[b] * C, cuts[b + 1] - cuts[b], &e), SP_OK);
    assert_int_equal(sp_hessian_count(h2), N);
    const double *H2;
    assert_int_equal(sp_hessian_finalize(h2, &H2, &e), SP_OK);
    assert_close(H2, H1, C, 1e-13);
    assert_close(H2, want, C, 1e-13);
    sp_hessian_free(h1);
    sp_hessian_free(h2);
    free(X);
    free(want);
}

/* Two "ranks": sum the raw buffers and counts, then finalize = one accumulator over all rows. */
static void test_reduce_partial_sums(void **state) {
    (void)state;
    const int C = 50;
    const size_t N = 90;
    float *X = random_x(N, C, 2);
    sp_err e = {0};
    sp_hessian *all = NULL, *a = NULL, *b = NULL;
    assert_int_equal(sp_hessian_create(&all, C, &e), SP_OK);
    assert_int_equal(sp_hessian_create(&a, C, &e), SP_OK);
    assert_int_equal(sp_hessian_create(&b, C, &e), SP_OK);
    assert_int_equal(sp_hessian_add(all, X, N, &e), SP_OK);
    assert_int_equal(sp_hessian_add(a, X, 31, &e), SP_OK);
    assert_int_equal(sp_hessian_add(b, X + 31 * C, N - 31, &e), SP_OK);
    double *sa = sp_hessian_sum(a);
    const double *sb = sp_hessian_sum(b);
    for (int i = 0; i < C * C; i++) sa[i] += sb[i];
    sp_hessian_set_count(a, sp_hessian_count(a) + sp_hessian_count(b));
    const double *Ha, *Hall;
    assert_int_equal(sp_hessian_finalize(a, &Ha, &e), SP_OK);
    assert_int_equal(sp_hessian_finalize(all, &Hall, &e), SP_OK);
    assert_close(Ha, Hall, C, 1e-13);
    sp_hessian_free(all);
    sp_hessian_free(a);
    sp_hessian_free(b);
    free(X);
}

static void test_errors(void **state) {
    (void)state;
    sp_err e = {0};
    sp_hessian *h = NULL;
    assert_int_equal(sp_hessian_create(&h, 0, &e), SP_EINVAL);
    assert_null(h);
    assert_int_equal(sp_hessian_create(&h, 4, &e), SP_OK);
    const double *H;
    assert_int_equal(sp_hessian_finalize(h, &H, &e), SP_EINVAL); /* N = 0 */
    float X[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_int_equal(sp_hessian_add(h, X, 0, &e), SP_OK);
    assert_int_equal(sp_hessian_add(h, NULL, 1, &e), SP_EINVAL);
    X[6] = NAN;
    assert_int_equal(sp_hessian_add(h, X, 2, &e), SP_ENUMERIC);
    assert_non_null(strstr(e.msg, "X[1, 2]"));
    assert_int_equal(sp_hessian_count(h), 0);
    for (int i = 0; i < 16; i++) assert_true(sp_hessian_sum(h)[i] == 0.0); /* untouched */
    X[6] = 7;
    assert_int_equal(sp_hessian_set_chunk(h, 0, &e), SP_EINVAL);
    assert_int_equal(sp_hessian_add(h, X, 2, &e), SP_OK);
    assert_int_equal(sp_hessian_finalize(h, &H, &e), SP_OK);
    assert_true(H[0 * 4 + 1] == (1.0 * 2 + 5.0 * 6) * 2 / 2);
    assert_int_equal(sp_hessian_add(h, X, 2, &e), SP_EINVAL); /* after finalize */
    sp_hessian_free(h);
    sp_hessian_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vs_naive_and_batches),
        cmocka_unit_test(test_reduce_partial_sums),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
