/* test_hacc.c — the reproducible Hessian accumulator: exact order independence, agreement with
 * a naive double sum, and the bound check. */
#include <math.h>
#include <mpi.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kernels/sp_hacc.h"

static float frand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
}

enum { N = 37, T = 29, W = 6 };

static void make_windows(float *X, uint64_t seed) {
    for (int i = 0; i < W * T * N; i++) X[i] = frand(&seed) * (i % 7 == 0 ? 3.0f : 0.5f);
}

/* Windows added in any order, split over any number of accumulators, give the same bits. */
static void test_order_independent(void **state) {
    (void)state;
    float *X = malloc(sizeof(float) * W * T * N);
    make_windows(X, 11);
    sp_err err;
    sp_hacc a, b, c;
    assert_int_equal(sp_hacc_init(&a, N, T, (int64_t)W * T, 3.0 * sqrt(N), &err), SP_OK);
    assert_int_equal(sp_hacc_init(&b, N, T, (int64_t)W * T, 3.0 * sqrt(N), &err), SP_OK);
    assert_int_equal(sp_hacc_init(&c, N, T, (int64_t)W * T, 3.0 * sqrt(N), &err), SP_OK);
    for (int w = 0; w < W; w++) assert_int_equal(sp_hacc_add(&a, X + w * T * N, T, &err), SP_OK);
    for (int w = W - 1; w >= 3; w--) assert_int_equal(sp_hacc_add(&b, X + w * T * N, T, &err), SP_OK);
    for (int w = 0; w < 3; w++) assert_int_equal(sp_hacc_add(&c, X + w * T * N, T, &err), SP_OK);
    for (int i = 0; i < N * (N + 1) / 2; i++) b.acc[i] += c.acc[i];
    b.rows += c.rows;
    assert_memory_equal(a.acc, b.acc, sizeof(int64_t) * N * (N + 1) / 2);
    /* Against a naive double sum: H = 2/n Σ x xᵀ. */
    double *H = sp_hacc_finalize(&a, &err);
    assert_non_null(H);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int t = 0; t < W * T; t++) s += (double)X[t * N + i] * X[t * N + j];
            s *= 2.0 / (W * T);
            assert_true(fabs(H[i * N + j] - s) <= 1e-12 * (1.0 + fabs(s)));
            assert_true(H[i * N + j] == H[j * N + i]);
        }
    free(H);
    sp_hacc_free(&a);
    sp_hacc_free(&b);
    sp_hacc_free(&c);
    free(X);
}

/* sp_hacc_take (in place) gives the same bits as sp_hacc_finalize (a new matrix), for sizes
 * below, at and across the 64-wide mirror tiles and the 512-wide panels; the accumulator is
 * consumed. */
static void test_take_equals_finalize(void **state) {
    (void)state;
    const int sizes[] = {1, 2, 63, 64, 65, 130, 600};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int n = sizes[k], t = 9;
        float *X = malloc(sizeof(float) * (size_t)t * n);
        uint64_t seed = 100 + k;
        for (int i = 0; i < t * n; i++) X[i] = frand(&seed);
        sp_err err;
        sp_hacc a;
        assert_int_equal(sp_hacc_init(&a, n, t, t, 1.0, &err), SP_OK);
        assert_int_equal(sp_hacc_add(&a, X, t, &err), SP_OK);
        double *H1 = sp_hacc_finalize(&a, &err);
        assert_non_null(H1);
        double *H2 = sp_hacc_take(&a, &err);
        assert_non_null(H2);
        assert_null(a.acc);
        assert_memory_equal(H1, H2, sizeof(double) * (size_t)n * n);
        for (int i = 0; i < n; i++) assert_true(H2[(size_t)i * n + i] > 0);
        free(H1);
        free(H2);
        free(X);
    }
}

/* The MPI reduction (one rank here) keeps the sums and row counts. */
static void test_allreduce_single(void **state) {
    (void)state;
    float *X = malloc(sizeof(float) * W * T * N);
    make_windows(X, 5);
    sp_err err;
    sp_hacc a;
    assert_int_equal(sp_hacc_init(&a, N, T, (int64_t)W * T, 4.0 * sqrt(N), &err), SP_OK);
    for (int w = 0; w < W; w++) assert_int_equal(sp_hacc_add(&a, X + w * T * N, T, &err), SP_OK);
    size_t np = (size_t)N * (N + 1) / 2;
    int64_t *copy = malloc(sizeof(int64_t) * np);
    memcpy(copy, a.acc, sizeof(int64_t) * np);
    assert_int_equal(sp_hacc_allreduce(&a, MPI_COMM_WORLD, &err), SP_OK);
    assert_memory_equal(copy, a.acc, sizeof(int64_t) * np);
    assert_int_equal(a.rows, W * T);
    /* The window scratch is gone: more windows are refused, not written to freed memory. */
    assert_int_equal(sp_hacc_add(&a, X, T, &err), SP_EINVAL);
    sp_hacc_free(&a);
    free(copy);
    free(X);
}

/* An input above the declared bound is refused instead of overflowing. */
static void test_bound_violation(void **state) {
    (void)state;
    float X[4 * 3] = {0};
    X[0] = 100.0f;
    sp_err err;
    sp_hacc a;
    assert_int_equal(sp_hacc_init(&a, 3, 4, 4, 1.0, &err), SP_OK);
    assert_int_equal(sp_hacc_add(&a, X, 4, &err), SP_EINTERNAL);
    assert_non_null(strstr(err.msg, "bound"));
    sp_hacc_free(&a);
    X[0] = NAN;
    assert_int_equal(sp_hacc_init(&a, 3, 4, 4, 1.0, &err), SP_OK);
    assert_int_equal(sp_hacc_add(&a, X, 4, &err), SP_ENUMERIC);
    sp_hacc_free(&a);
    assert_int_equal(sp_hacc_init(&a, 3, 4, 4, -1.0, &err), SP_EINVAL);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_independent),
        cmocka_unit_test(test_allreduce_single),
        cmocka_unit_test(test_take_equals_finalize),
        cmocka_unit_test(test_bound_violation),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Finalize();
    return rc;
}
