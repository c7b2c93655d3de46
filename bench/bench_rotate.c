/* bench_rotate.c — what --rotate costs at a given hidden size (issue 23): building Q, and
 * x·Q per vector of D values, for hadamard and orthogonal; extrapolated to one 70B-shaped
 * block (D 8192, F 28672, 64/8 heads of 128), whose rotation touches
 *   q 8192 + k 1024 + v 1024 + gate 28672 + up 28672 rows (W·Q) and
 *   o 8192 + down 28672 columns (Qᵀ·W)  = 104448 vectors of D values (R2 on hd = 128: small).
 *
 *   bench_rotate [D] [vectors] [threads]     (default 8192 1024 1)
 *   bench_rotate --incoherence MODEL_DIR     how much a rotation can even out: per module kind,
 *                                            the mean over rows and layers of max|w|/rms(w),
 *                                            norms folded, without and with --rotate hadamard
 *                                            (and of Gaussian rows of as many values, drawn
 *                                            here: what "already incoherent" looks like)
 * Prints one line per kind: CPU seconds to build Q, per 1000 vectors, the block estimate, and
 * Q's memory. Threads > 1 make the CPU seconds a sum over threads.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* mean over rows of max|w| / rms(w) */
static double row_peak(const float *W, int rows, int cols) {
    double acc = 0;
    for (int r = 0; r < rows; r++) {
        double mx = 0, ss = 0;
        for (int c = 0; c < cols; c++) {
            double v = fabs(W[(size_t)r * cols + c]);
            mx = v > mx ? v : mx;
            ss += v * v;
        }
        acc += ss > 0 ? mx / sqrt(ss / cols) : 0;
    }
    return acc / rows;
}

/* the same statistic for 4000 rows of n standard Gaussian values (Box–Muller, splitmix64) */
static double gaussian_peak(int n) {
    uint64_t s = 12345;
    float *row = malloc((size_t)n * sizeof(float));
    double acc = 0;
    for (int r = 0; r < 4000 && row; r++) {
        for (int i = 0; i < n; i++) {
            uint64_t z1 = (s += 0x9E3779B97F4A7C15ull), z2 = (s += 0x9E3779B97F4A7C15ull);
            z1 = (z1 ^ (z1 >> 30)) * 0xBF58476D1CE4E5B9ull, z1 = (z1 ^ (z1 >> 27)) * 0x94D049BB133111EBull;
            z2 = (z2 ^ (z2 >> 30)) * 0xBF58476D1CE4E5B9ull, z2 = (z2 ^ (z2 >> 27)) * 0x94D049BB133111EBull;
            double u = ((double)((z1 ^ (z1 >> 31)) >> 11) + 0.5) / 9007199254740992.0;
            double v = (double)((z2 ^ (z2 >> 31)) >> 11) / 9007199254740992.0;
            row[i] = (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
        }
        acc += row_peak(row, 1, n);
    }
    free(row);
    return acc / 4000;
}

static int incoherence(const char *dir) {
    sp_model *m = NULL;
    sp_err err = {SP_OK, ""};
    sp_block_weights w;
    sp_rotation had;
    if (sp_model_open(&m, dir, &err) != SP_OK) {
        fprintf(stderr, "bench_rotate: %s\n", err.msg);
        return 1;
    }
    const sp_config *c = sp_model_config(m);
    if (sp_block_weights_alloc(&w, c, &err) != SP_OK ||
        sp_rotation_init(&had, SP_ROTATE_HADAMARD, 0, c, &err) != SP_OK) {
        fprintf(stderr, "bench_rotate: %s\n", err.msg);
        return 1;
    }
    int q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim, D = c->dim;
    int rows[7] = {q, kv, kv, D, c->hidden_dim, c->hidden_dim, D};
    int cols[7] = {D, D, D, q, D, D, c->hidden_dim};
    double a[7] = {0}, b[7] = {0};
    for (int l = 0; l < c->n_layers; l++) {
        for (int pass = 0; pass < 2; pass++) {
            if (sp_model_load_block(m, l, &w, &err) != SP_OK) {
                fprintf(stderr, "bench_rotate: %s\n", err.msg);
                return 1;
            }
            if (pass == 0) { /* the fold alone: W·diag(g) */
                float *in[5] = {w.wq, w.wk, w.wv, w.w_gate, w.w_up};
                int r5[5] = {q, kv, kv, c->hidden_dim, c->hidden_dim};
                for (int k = 0; k < 5; k++)
                    for (int r = 0; r < r5[k]; r++)
                        for (int i = 0; i < D; i++)
                            in[k][(size_t)r * D + i] *= (k < 3 ? w.attn_norm : w.ffn_norm)[i];
            } else if (sp_rotation_block(&had, &w, c, &err) != SP_OK) {
                fprintf(stderr, "bench_rotate: %s\n", err.msg);
                return 1;
            }
            float *p[7] = {w.wq, w.wk, w.wv, w.wo, w.w_gate, w.w_up, w.w_down};
            for (int k = 0; k < 7; k++)
                (pass ? b : a)[k] += row_peak(p[k], rows[k], cols[k]) / c->n_layers;
        }
    }
    static const char *names[7] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                   "down_proj"};
    printf("%s: mean over rows of max|w|/rms(w), norms folded\n", dir);
    for (int k = 0; k < 7; k++)
        printf("  %-9s  %5d inputs  unrotated %.2f  hadamard %.2f  Gaussian rows %.2f\n", names[k],
               cols[k], a[k], b[k], gaussian_peak(cols[k]));
    sp_rotation_free(&had);
    sp_block_weights_free(&w);
    sp_model_close(m);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--incoherence")) return incoherence(argv[2]);
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
