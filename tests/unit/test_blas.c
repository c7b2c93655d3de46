/* test_blas.c — kernels/sp_blas.h: the tiled products give the same bits for 1, 2, 3 and 4
 * threads (and for the serial path), agree with a plain double-precision product, and the
 * pool runs every task once with at most max_slots threads; attention, threaded over
 * (head, query tile), gives the same bits for any thread count. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kernels/sp_blas.h"
#include "kernels/sp_ops.h"

static double drand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)((*s >> 40) & 0xffffff) / 16777216.0 * 2.0 - 1.0;
}

/* Awkward shapes: 1, odd, one either side of the tile (256), several tiles; some below the
 * serial threshold, some above it. */
static const int SHAPES[][3] = {
    {1, 1, 1},     {1, 7, 255},   {7, 1, 257},   {7, 7, 7},     {255, 257, 64},
    {257, 255, 255}, {1, 1000, 3000}, {513, 300, 17}, {300, 513, 129}, {257, 257, 1},
};
#define N_SHAPES (sizeof SHAPES / sizeof SHAPES[0])
static const int THREADS[] = {1, 2, 3, 4};

typedef struct {
    CBLAS_ORDER order;
    CBLAS_TRANSPOSE ta, tb;
    double alpha, beta;
} gemm_case;

static const gemm_case CASES[] = {
    {CblasRowMajor, CblasNoTrans, CblasTrans, 1.0, 0.0},  /* the linear layer's form  */
    {CblasRowMajor, CblasNoTrans, CblasNoTrans, 0.5, 1.0}, /* accumulate, GPTQ's form */
    {CblasRowMajor, CblasTrans, CblasNoTrans, 1.0, 0.0},   /* the Hessian panel's form */
    {CblasColMajor, CblasTrans, CblasTrans, -1.5, 0.25},
};
#define N_CASES (sizeof CASES / sizeof CASES[0])

/* Element (i, j) of a matrix with leading dimension ld in the given storage order. */
static size_t at(CBLAS_ORDER o, int i, int j, int ld) {
    return o == CblasRowMajor ? (size_t)i * ld + j : (size_t)j * ld + i;
}

/* One case and shape, in float (dbl = 0) or double (dbl = 1): results for every thread
 * count equal bitwise, and close to the plain product. Leading dimensions are padded so that
 * tiles inside a larger matrix are exercised. */
static void check_gemm(const gemm_case *c, int M, int N, int K, int dbl) {
    /* Stored shapes: A is op(A) [M, K] or its transpose [K, M]; likewise B. */
    int ar = c->ta == CblasNoTrans ? M : K, ac = c->ta == CblasNoTrans ? K : M;
    int br = c->tb == CblasNoTrans ? K : N, bc = c->tb == CblasNoTrans ? N : K;
    int row = c->order == CblasRowMajor;
    int lda = (row ? ac : ar) + 3, ldb = (row ? bc : br) + 5, ldc = (row ? N : M) + 2;
    size_t na = (size_t)(row ? ar : ac) * lda, nb = (size_t)(row ? br : bc) * ldb,
           nc = (size_t)(row ? M : N) * ldc;
    size_t es = dbl ? sizeof(double) : sizeof(float);
    double *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B), *C0 = malloc(nc * sizeof *C0);
    char *a = malloc(na * es), *b = malloc(nb * es), *c0 = malloc(nc * es), *first = malloc(nc * es),
         *out = malloc(nc * es);
    assert_non_null(A && B && C0 && a && b && c0 && first && out);
    uint64_t s = (uint64_t)M * 7919u + (uint64_t)N * 104729u + (uint64_t)K;
    for (size_t i = 0; i < na; i++) A[i] = drand(&s);
    for (size_t i = 0; i < nb; i++) B[i] = drand(&s);
    for (size_t i = 0; i < nc; i++) C0[i] = drand(&s);
    /* Inputs rounded to the working precision, so that the reference sees the same values. */
    for (size_t i = 0; i < na; i++)
        dbl ? (((double *)(void *)a)[i] = A[i]) : (((float *)(void *)a)[i] = (float)A[i]);
    for (size_t i = 0; i < nb; i++)
        dbl ? (((double *)(void *)b)[i] = B[i]) : (((float *)(void *)b)[i] = (float)B[i]);
    for (size_t i = 0; i < nc; i++)
        dbl ? (((double *)(void *)c0)[i] = C0[i]) : (((float *)(void *)c0)[i] = (float)C0[i]);
    if (!dbl) {
        for (size_t i = 0; i < na; i++) A[i] = (float)A[i];
        for (size_t i = 0; i < nb; i++) B[i] = (float)B[i];
        for (size_t i = 0; i < nc; i++) C0[i] = (float)C0[i];
    }
    for (size_t t = 0; t < sizeof THREADS / sizeof THREADS[0]; t++) {
        sp_err err;
        assert_int_equal(sp_blas_set_threads(THREADS[t], &err), SP_OK);
        assert_int_equal(sp_blas_threads(), THREADS[t]);
        memcpy(out, c0, nc * es);
        if (dbl)
            sp_blas_dgemm(c->order, c->ta, c->tb, M, N, K, c->alpha, (double *)(void *)a, lda,
                          (double *)(void *)b, ldb, c->beta, (double *)(void *)out, ldc);
        else
            sp_blas_sgemm(c->order, c->ta, c->tb, M, N, K, (float)c->alpha, (float *)(void *)a,
                          lda, (float *)(void *)b, ldb, (float)c->beta, (float *)(void *)out, ldc);
        if (t == 0) {
            memcpy(first, out, nc * es);
        } else if (memcmp(first, out, nc * es) != 0) {
            fail_msg("%s order %d ta %d tb %d M %d N %d K %d: %d threads differ from 1",
                     dbl ? "dgemm" : "sgemm", c->order, c->ta, c->tb, M, N, K, THREADS[t]);
        }
    }
    /* Reference: plain triple loop in double; relative to the sum of |terms|. */
    double eps = dbl ? 1e-13 : 2e-6;
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double sum = 0, mag = 0;
            for (int k = 0; k < K; k++) {
                double x = c->ta == CblasNoTrans ? A[at(c->order, i, k, lda)]
                                                 : A[at(c->order, k, i, lda)];
                double y = c->tb == CblasNoTrans ? B[at(c->order, k, j, ldb)]
                                                 : B[at(c->order, j, k, ldb)];
                sum += x * y;
                mag += fabs(x * y);
            }
            size_t ic = at(c->order, i, j, ldc);
            double ref = c->alpha * sum + c->beta * C0[ic];
            double tol = eps * (fabs(c->alpha) * mag + fabs(c->beta * C0[ic]) + 1e-30) * (K + 2);
            double got = dbl ? ((double *)(void *)first)[ic] : ((float *)(void *)first)[ic];
            if (fabs(got - ref) > tol)
                fail_msg("%s M %d N %d K %d (%d, %d): %.17g vs reference %.17g",
                         dbl ? "dgemm" : "sgemm", M, N, K, i, j, got, ref);
        }
    }
    /* Entries outside C (the padding of ldc) are untouched. */
    for (int i = 0; i < (row ? M : N); i++)
        for (int j = row ? N : M; j < ldc; j++) {
            size_t ic = (size_t)i * ldc + j;
            double got = dbl ? ((double *)(void *)first)[ic] : ((float *)(void *)first)[ic];
            assert_true(got == C0[ic]);
        }
    free(A);
    free(B);
    free(C0);
    free(a);
    free(b);
    free(c0);
    free(first);
    free(out);
}

static void run_all(int dbl) {
    for (size_t c = 0; c < N_CASES; c++)
        for (size_t s = 0; s < N_SHAPES; s++)
            check_gemm(&CASES[c], SHAPES[s][0], SHAPES[s][1], SHAPES[s][2], dbl);
    sp_blas_shutdown();
}

static void test_sgemm_threads(void **state) {
    (void)state;
    run_all(0);
}

static void test_dgemm_threads(void **state) {
    (void)state;
    run_all(1);
}

/* ---- the pool ---------------------------------------------------------------------------- */

typedef struct {
    int *count;            /* [n] times task i ran            */
    int max_slots, bad;
    atomic_int running[8]; /* tasks running now in each slot  */
} pool_probe;

static void probe_task(void *p, int task, int slot) {
    pool_probe *pp = p;
    if (slot < 0 || slot >= pp->max_slots || atomic_fetch_add(&pp->running[slot], 1) != 0)
        pp->bad = 1;
    __atomic_fetch_add(&pp->count[task], 1, __ATOMIC_RELAXED);
    for (volatile int i = 0; i < 2000; i++) {
    }
    if (slot >= 0 && slot < pp->max_slots) atomic_fetch_sub(&pp->running[slot], 1);
}

static void test_parallel_slots(void **state) {
    (void)state;
    sp_err err;
    assert_int_equal(sp_blas_set_threads(4, &err), SP_OK);
    for (int max_slots = 1; max_slots <= 6; max_slots++) {
        pool_probe pp = {.max_slots = max_slots};
        int n = 1000;
        pp.count = calloc((size_t)n, sizeof *pp.count);
        for (int i = 0; i < 8; i++) atomic_init(&pp.running[i], 0);
        sp_blas_parallel(n, max_slots, probe_task, &pp);
        for (int i = 0; i < n; i++) assert_int_equal(pp.count[i], 1);
        assert_int_equal(pp.bad, 0);
        free(pp.count);
    }
    assert_int_equal(sp_blas_set_threads(0, &err), SP_EINVAL);
    sp_blas_shutdown();
    assert_int_equal(sp_blas_threads(), 1);
}

/* Products called from several threads at once (the pool is busy: they run serially) give
 * the bits of a lone call. */
typedef struct {
    const float *a, *b;
    float *c;
    int n;
} conc_arg;

static void *conc_main(void *p) {
    conc_arg *x = p;
    sp_blas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, x->n, x->n, x->n, 1.0f, x->a, x->n,
                  x->b, x->n, 0.0f, x->c, x->n);
    return NULL;
}

static void test_concurrent_callers(void **state) {
    (void)state;
    enum { NN = 300, NT = 3 };
    float *a = malloc(sizeof(float) * NN * NN), *b = malloc(sizeof(float) * NN * NN);
    float *c[NT + 1];
    uint64_t s = 5;
    for (int i = 0; i < NN * NN; i++) {
        a[i] = (float)drand(&s);
        b[i] = (float)drand(&s);
    }
    for (int i = 0; i <= NT; i++) c[i] = malloc(sizeof(float) * NN * NN);
    sp_err err;
    assert_int_equal(sp_blas_set_threads(2, &err), SP_OK);
    conc_arg x[NT + 1];
    for (int i = 0; i <= NT; i++) x[i] = (conc_arg){a, b, c[i], NN};
    conc_main(&x[NT]);
    pthread_t th[NT];
    for (int i = 0; i < NT; i++) assert_int_equal(pthread_create(&th[i], NULL, conc_main, &x[i]), 0);
    for (int i = 0; i < NT; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < NT; i++) assert_memory_equal(c[i], c[NT], sizeof(float) * NN * NN);
    sp_blas_shutdown();
    for (int i = 0; i <= NT; i++) free(c[i]);
    free(a);
    free(b);
}

/* ---- attention ---------------------------------------------------------------------------- */

static void test_attention_threads(void **state) {
    (void)state;
    /* 3 query tiles (256, 256, 88): up to 2 tasks at once in the [T, T] scratch. */
    enum { T = 600, HQ = 4, HKV = 2, HD = 16 };
    size_t nq = (size_t)T * HQ * HD, nkv = (size_t)T * HKV * HD;
    float *q = malloc(nq * sizeof *q), *k = malloc(nkv * sizeof *k), *v = malloc(nkv * sizeof *v);
    float *scores = malloc((size_t)T * T * sizeof *scores);
    float *first = malloc(nq * sizeof *first), *out = malloc(nq * sizeof *out);
    uint64_t s = 99;
    for (size_t i = 0; i < nq; i++) q[i] = (float)drand(&s);
    for (size_t i = 0; i < nkv; i++) {
        k[i] = (float)drand(&s);
        v[i] = (float)drand(&s);
    }
    for (size_t t = 0; t < sizeof THREADS / sizeof THREADS[0]; t++) {
        sp_err err;
        assert_int_equal(sp_blas_set_threads(THREADS[t], &err), SP_OK);
        sp_attention_forward(out, scores, q, k, v, T, HQ, HKV, HD);
        if (t == 0) memcpy(first, out, nq * sizeof *out);
        else assert_memory_equal(first, out, nq * sizeof *out);
    }
    sp_blas_shutdown();
    /* Spot check against a direct computation of one row: head 3 (kv head 1), token 400. */
    int h = 3, t = 400;
    double w[T], sum = 0, mx = -1e300;
    for (int j = 0; j <= t; j++) {
        double d = 0;
        for (int i = 0; i < HD; i++)
            d += (double)q[(size_t)t * HQ * HD + h * HD + i] * k[(size_t)j * HKV * HD + 1 * HD + i];
        w[j] = d / sqrt((double)HD);
        mx = w[j] > mx ? w[j] : mx;
    }
    for (int j = 0; j <= t; j++) sum += (w[j] = exp(w[j] - mx));
    for (int i = 0; i < HD; i++) {
        double o = 0;
        for (int j = 0; j <= t; j++) o += w[j] / sum * v[(size_t)j * HKV * HD + 1 * HD + i];
        assert_true(fabs(o - first[(size_t)t * HQ * HD + h * HD + i]) < 1e-5);
    }
    free(q);
    free(k);
    free(v);
    free(scores);
    free(first);
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgemm_threads),
        cmocka_unit_test(test_dgemm_threads),
        cmocka_unit_test(test_parallel_slots),
        cmocka_unit_test(test_concurrent_callers),
        cmocka_unit_test(test_attention_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
