/* bench_rotate.c — what --rotate costs at a given hidden size (issue 23): building Q, and
 * x·Q per vector of D values, for hadamard and orthogonal; extrapolated to one 70B-shaped
 * block (D 8192, F 28672, 64/8 heads of 128), whose rotation touches
 *   q 8192 + k 1024 + v 1024 + gate 28672 + up 28672 rows (W·Q) and
 *   o 8192 + down 28672 columns (Qᵀ·W)  = 104448 vectors of D values (R2 on hd = 128: small).
 *
 *   bench_rotate [D] [vectors] [threads]     (default 8192 1024 1)
 * Prints one line per kind: CPU seconds to build Q, per 1000 vectors, the block estimate, and
 * Q's memory. Threads > 1 make the CPU seconds a sum over threads.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kernels/sp_blas.h"
#include "kernels/sp_rotate.h"

/* Process CPU time: with one thread it is the cost on an idle core, unaffected by other jobs
 * on a shared machine (wall time is not). */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    int D = argc > 1 ? atoi(argv[1]) : 8192;
    int nv = argc > 2 ? atoi(argv[2]) : 1024;
    int threads = argc > 3 ? atoi(argv[3]) : 1;
    if (D < 2 || nv < 1 || threads < 1) {
        fprintf(stderr, "usage: bench_rotate [D] [vectors] [threads]\n");
        return 2;
    }
    sp_err err = {SP_OK, ""};
    if (sp_blas_set_threads(threads, &err) != SP_OK) {
        fprintf(stderr, "bench_rotate: %s\n", err.msg);
        return 1;
    }
    float *x = malloc((size_t)nv * (size_t)D * sizeof(float));
    if (!x) return 1;
    for (size_t i = 0; i < (size_t)nv * (size_t)D; i++) x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f;
    const double block_vectors = 104448.0;
    printf("D %d, %d vectors, %d thread(s), CPU seconds\n", D, nv, threads);
    for (int kind = SP_ROTATE_HADAMARD; kind <= SP_ROTATE_ORTHOGONAL; kind++) {
        sp_rotate *r = NULL;
        double t0 = now_s();
        if (sp_rotate_create(&r, kind, D, 1, &err) != SP_OK) {
            printf("%-10s  %s\n", sp_rotate_name(kind), err.msg);
            continue;
        }
        double t1 = now_s();
        if (sp_rotate_rows(r, x, (size_t)nv, (size_t)D, &err) != SP_OK) {
            fprintf(stderr, "bench_rotate: %s\n", err.msg);
            return 1;
        }
        double t2 = now_s(), per = (t2 - t1) / nv;
        double mem = kind == SP_ROTATE_HADAMARD
                         ? (double)D * 8 + (double)sp_rotate_hadamard_m(r) * sp_rotate_hadamard_m(r) * 8
                         : (double)D * D * 8;
        printf("%-10s  build %.3f s  x·Q %.4f s per 1000 vectors  70B-shaped block (104448 "
               "vectors) %.1f s  Q %.1f MiB%s\n", sp_rotate_name(kind), t1 - t0, per * 1000,
               per * block_vectors, mem / 1048576.0,
               kind == SP_ROTATE_HADAMARD ? "" : " (+ the same again while building)");
        sp_rotate_free(r);
    }
    free(x);
    sp_blas_shutdown();
    return 0;
}
