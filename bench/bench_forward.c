/* bench_forward.c — throughput of sp_block_forward on one synthetic decoder block, compared
 * with the machine's cblas_sgemm rate measured in the same run.
 *
 * Full mode (default): a Llama-2-7B-shaped block (D 4096, F 11008, Hq = Hkv = 32, hd 128),
 * 4 windows of 2048 tokens, random weights (no model file), reference sgemm 4096^3.
 * --quick: D 1024, F 2816, Hq = Hkv = 8, hd 128, 2 windows of 512 tokens, sgemm 2048^3.
 * Options: --windows N, --tokens T override the window count and length.
 *
 * Flop count (multiply-add = 2), per window of T tokens:
 *   linears   2 T (D·Hq·hd + 2 D·Hkv·hd + Hq·hd·D + 3 D F)   (= 2 T (4D² + 3DF) here)
 *   attention sp_attention_flops(T, Hq, hd): the QKᵀ and PV products actually computed, i.e.
 *             the causal lower triangle in 256-row query tiles (diagonal tiles in full), about
 *             0.56 of the full T x T square at T = 2048. Norms, RoPE, softmax and SwiGLU are
 *             not counted (they are O(T·D) or O(T²·H) and run in the measured time).
 * Threads: SP_NUM_THREADS, else OPENBLAS_NUM_THREADS (default: all cores), for both the forward (through
 * kernels/sp_blas.h: OpenBLAS at 1 thread inside shape-only tiles, as shardpress runs it) and
 * the reference sgemm (plain OpenBLAS threading, switched on around it only); the elementwise
 * parts are single-threaded.
 *
 * Output: human-readable lines, then one markdown table row prefixed "ROW " for
 * bench/run_forward.sh.
 */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/sp_blas.h"
#include "kernels/sp_forward.h"
#include "kernels/sp_ops.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Fill n floats with uniform values in [-a, a) from a 64-bit LCG (fast; quality irrelevant). */
static void fill(float *p, size_t n, float a, uint64_t *s) {
    for (size_t i = 0; i < n; i++) {
        *s = *s * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = ((float)(*s >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * a;
    }
}

static float *alloc_fill(size_t n, float a, uint64_t *s) {
    float *p = NULL;
    if (posix_memalign((void **)&p, 64, n * sizeof(float)) != 0) {
        fprintf(stderr, "bench_forward: cannot allocate %zu floats\n", n);
        exit(1);
    }
    fill(p, n, a, s);
    return p;
}

/* Reference products C [n, n] = A [n, n] · B [n, n]; best keeps the highest GFLOP/s seen (the
 * reference rate is the best of all runs: the machine at its least disturbed). */
typedef struct {
    int n;
    float *a, *b, *c; /* [n, n] each */
    double best;      /* GFLOP/s     */
    int runs;
    int threads;      /* OpenBLAS threads for the reference */
} gemm_ref;

static void gemm_ref_run(gemm_ref *g, int reps) {
    openblas_set_num_threads(g->threads);
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->n, g->n, g->n, 1.0f, g->a,
                    g->n, g->b, g->n, 0.0f, g->c, g->n);
        double rate = 2.0 * (double)g->n * (double)g->n * (double)g->n / (now_s() - t0) * 1e-9;
        if (rate > g->best) g->best = rate;
        g->runs++;
    }
    openblas_set_num_threads(1); /* back to what sp_blas needs */
}

int main(int argc, char **argv) {
    int quick = 0, windows = -1, T = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--windows") && i + 1 < argc) windows = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tokens") && i + 1 < argc) T = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--quick] [--windows N] [--tokens T]\n", argv[0]);
            return 2;
        }
    }
    sp_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.arch, sizeof c.arch, "LlamaForCausalLM");
    c.dim = quick ? 1024 : 4096;
    c.hidden_dim = quick ? 2816 : 11008;
    c.n_heads = c.n_kv_heads = quick ? 8 : 32;
    c.head_dim = 128;
    c.n_layers = 1;
    c.vocab_size = 32000;
    c.max_seq_len = 4096;
    c.norm_eps = 1e-5f;
    c.rope_theta = 10000.0f;
    c.bos_id = c.eos_id = -1;
    if (windows <= 0) windows = quick ? 2 : 4;
    if (T <= 0) T = quick ? 512 : 2048;
    int gemm_n = quick ? 2048 : 4096;

    size_t D = (size_t)c.dim, F = (size_t)c.hidden_dim;
    size_t qd = (size_t)c.n_heads * 128, kvd = (size_t)c.n_kv_heads * 128;
    uint64_t s = 1;
    sp_block_weights w;
    memset(&w, 0, sizeof w);
    w.attn_norm = alloc_fill(D, 0.1f, &s);
    for (size_t i = 0; i < D; i++) w.attn_norm[i] += 1.0f;
    w.ffn_norm = alloc_fill(D, 0.1f, &s);
    for (size_t i = 0; i < D; i++) w.ffn_norm[i] += 1.0f;
    float in_scale = 1.7f / sqrtf((float)D);
    w.wq = alloc_fill(qd * D, in_scale, &s);
    w.wk = alloc_fill(kvd * D, in_scale, &s);
    w.wv = alloc_fill(kvd * D, in_scale, &s);
    w.wo = alloc_fill(D * qd, 1.7f / sqrtf((float)qd), &s);
    w.w_gate = alloc_fill(F * D, in_scale, &s);
    w.w_up = alloc_fill(F * D, in_scale, &s);
    w.w_down = alloc_fill(D * F, 1.7f / sqrtf((float)F), &s);

    sp_block_scratch sc;
    sp_err err = {0};
    if (sp_block_scratch_alloc(&sc, &c, T, &err) != SP_OK) {
        fprintf(stderr, "bench_forward: %s\n", err.msg);
        return 1;
    }
    float *x = alloc_fill((size_t)windows * (size_t)T * D, 1.0f, &s); /* [windows, T, D] */
    double weight_mb = (double)(D * (2 * qd + 2 * kvd) + 3 * D * F) * 4.0 / 1e6;

    printf("block: D=%d F=%d Hq=%d Hkv=%d hd=%d, %d windows x %d tokens, weights %.0f MB\n",
           c.dim, c.hidden_dim, c.n_heads, c.n_kv_heads, c.head_dim, windows, T, weight_mb);
    const char *tv = getenv("SP_NUM_THREADS");
    if (!tv || !*tv) tv = getenv("OPENBLAS_NUM_THREADS");
    long cores = sysconf(_SC_NPROCESSORS_ONLN); /* unset: all cores, as OpenBLAS would */
    int threads = tv && atoi(tv) > 0 ? atoi(tv) : cores > 0 ? (int)cores : 1;
    if (sp_blas_set_threads(threads, &err) != SP_OK) {
        fprintf(stderr, "bench_forward: %s\n", err.msg);
        return 1;
    }
    printf("threads: %d (sp_blas for the forward, OpenBLAS for the reference sgemm)\n", threads);
    gemm_ref g = {gemm_n, NULL, NULL, NULL, 0.0, 0, threads};
    size_t gnn = (size_t)gemm_n * (size_t)gemm_n;
    g.a = alloc_fill(gnn, 1.0f, &s);
    g.b = alloc_fill(gnn, 1.0f, &s);
    g.c = alloc_fill(gnn, 0.0f, &s);
    gemm_ref_run(&g, 1); /* warm-up: thread start, page faults */
    g.best = 0.0;
    g.runs = 0;
    gemm_ref_run(&g, 2);
    printf("cblas_sgemm %d^3 before the forward: best %.1f GFLOP/s\n", gemm_n, g.best);

    double lin_flops = 2.0 * (double)T * ((double)D * (double)qd + 2.0 * (double)D * (double)kvd +
                                          (double)qd * (double)D + 3.0 * (double)D * (double)F);
    double att_flops = sp_attention_flops((size_t)T, c.n_heads, c.head_dim);
    double win_flops = lin_flops + att_flops;

    /* warm-up window (page faults in scratch, BLAS thread start), not timed */
    {
        float *xw = alloc_fill((size_t)T * D, 1.0f, &s);
        sp_block_forward(xw, &w, &c, T, &sc);
        free(xw);
    }
    double t_total = 0.0, t_best = 1e30;
    for (int b = 0; b < windows; b++) {
        float *xb = x + (size_t)b * (size_t)T * D;
        double t0 = now_s();
        sp_block_forward(xb, &w, &c, T, &sc);
        double dt = now_s() - t0;
        t_total += dt;
        if (dt < t_best) t_best = dt;
        printf("window %d: %.3f s, %.1f GFLOP/s\n", b, dt, win_flops / dt * 1e-9);
    }
    /* sgemm again after the forward, so that a disturbance during either phase shows up as a
     * lower ratio rather than a flattering one (the reference is the best of all runs). */
    gemm_ref_run(&g, 2);
    double gemm = g.best;
    printf("cblas_sgemm %d^3 best of %d runs (before and after): %.1f GFLOP/s\n", gemm_n,
           g.runs, gemm);
    free(g.a); free(g.b); free(g.c);
    double checksum = 0.0;
    for (size_t i = 0; i < (size_t)windows * (size_t)T * D; i++) checksum += x[i];
    double rate = (double)windows * win_flops / t_total * 1e-9;
    double tok_s = (double)windows * (double)T / t_total;
    printf("flops per window: linears %.1f GFLOP + attention %.1f GFLOP (causal tiles)\n",
           lin_flops * 1e-9, att_flops * 1e-9);
    double best_rate = win_flops / t_best * 1e-9;
    printf("forward: %.2f s total, %.0f tokens/s, %.1f GFLOP/s = %.1f%% of sgemm; best window "
           "%.1f GFLOP/s = %.1f%% (checksum %.6g)\n", t_total, tok_s, rate, 100.0 * rate / gemm,
           best_rate, 100.0 * best_rate / gemm, checksum);
    printf("ROW | %s D=%d F=%d H=%d/%d hd=%d | %d x %d | %.2f | %.0f | %.1f | %.1f | "
           "%.1f (%d^3) | %.0f%% |\n", quick ? "quick" : "7B-block", c.dim, c.hidden_dim,
           c.n_heads, c.n_kv_heads, c.head_dim, windows, T, t_total, tok_s, rate, best_rate, gemm,
           gemm_n, 100.0 * rate / gemm);

    sp_block_scratch_free(&sc);
    free(x);
    float *p[] = {w.attn_norm, w.ffn_norm, w.wq, w.wk, w.wv, w.wo, w.w_gate, w.w_up, w.w_down};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) free(p[i]);
    sp_blas_shutdown();
    return 0;
}
