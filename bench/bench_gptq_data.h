/* bench_gptq_data.h — what bench_gptq.c and bench_gptq_cuda.c share: a clock, a seeded
 * generator, and the synthetic GPTQ problem (inputs X with correlated, unevenly scaled columns,
 * weights with 1 % outliers), so that the CPU and GPU benches time the same problem.
 * Header-only (static inline functions; each bench defines BENCH_NAME for its messages first).
 */
#ifndef BENCH_GPTQ_DATA_H
#define BENCH_GPTQ_DATA_H

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "common/sp_error.h"
#include "common/sp_rng.h"

#ifndef BENCH_NAME
#error "define BENCH_NAME before including bench_gptq_data.h"
#endif

static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline double rng_u(uint64_t *s) { return sp_rng_unit_open(s); }
static inline double rng_n(uint64_t *s) {
    return sqrt(-2.0 * log(rng_u(s))) * cos(6.283185307179586 * rng_u(s));
}

static inline void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, BENCH_NAME ": cannot allocate %zu bytes\n", n);
        exit(1);
    }
    return p;
}

static inline void die(const char *what, const sp_err *e) {
    fprintf(stderr, BENCH_NAME ": %s: %s\n", what, e->msg);
    exit(1);
}

/* X [n, C] = Z·M/√k + 0.5·noise, column c scaled by exp(0.5·N(0,1)). */
static inline float *make_inputs(int n, int C, uint64_t seed) {
    const int k = 64;
    float *Z = xmalloc((size_t)n * k * 4), *M = xmalloc((size_t)k * C * 4);
    float *X = xmalloc((size_t)n * C * 4), *sc = xmalloc((size_t)C * 4);
    for (size_t i = 0; i < (size_t)n * k; i++) Z[i] = (float)rng_n(&seed);
    for (size_t i = 0; i < (size_t)k * C; i++) M[i] = (float)rng_n(&seed);
    for (int c = 0; c < C; c++) sc[c] = (float)exp(0.5 * rng_n(&seed));
    for (size_t i = 0; i < (size_t)n * C; i++) X[i] = 0.5f * (float)rng_n(&seed);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, C, k, 1.0f / sqrtf((float)k), Z, k,
                M, C, 1.0f, X, C);
    for (size_t r = 0; r < (size_t)n; r++)
        for (size_t c = 0; c < (size_t)C; c++) X[r * C + c] *= sc[c];
    free(Z), free(M), free(sc);
    return X;
}

/* W [R, C] ~ N(0, 0.02²), 1 % of the entries five times larger. */
static inline float *make_weights(int R, int C, uint64_t seed) {
    float *W = xmalloc((size_t)R * C * 4);
    for (size_t i = 0; i < (size_t)R * C; i++) {
        double v = 0.02 * rng_n(&seed);
        W[i] = (float)(rng_u(&seed) < 0.01 ? 5 * v : v);
    }
    return W;
}

#endif
