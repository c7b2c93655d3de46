/* bench_gptq_cuda.c — GPTQ and the Hessian accumulation on a GPU (kernels/cuda), against the
 * GPU's own cuBLAS sgemm rate measured in the same run, and against the CPU path's codes.
 *
 * Shapes, W [out, in] = [R, C]: [4096, 4096] (Llama-2-7B q/k/v/o) with act-order off and on,
 * and [8192, 28672] (Llama-2-70B down_proj; skipped by --quick). 4 bits, group 128, asymmetric,
 * block 128, damp 0.01, min-max groups (as bench_gptq), plus the quantize default (act-order +
 * hmse) at 4096². Inputs as bench_gptq: X [2048, C] low rank (64) plus noise with log-normal
 * column scales, H = 2/n XᵀX (accumulated on the GPU: sp_hacc_use_cuda), W ~ N(0, 0.02²) with
 * 1% outliers x5.
 *
 * Flops counted as bench_gptq (2 per multiply-add): GPTQ = C³/3 + R·C·(C − 1); Hessian =
 * n·C² per window batch. The reference rate is cublasSgemm 4096³ on device-resident data (best
 * of 5), measured right before each GPTQ run. prepare = building J·P(H+λI)Pᵀ·J on the host,
 * copying it and cuSOLVER spotrf; quantize = copying W in, the loop, copying codes out.
 * For C = 4096 the CPU float path runs the same layer and H: the fraction of differing codes
 * and both layer errors tr(ΔW H ΔWᵀ) are printed (the "tiny fraction, equal error" check).
 *
 * Output: human-readable lines, then "CROW ..." markdown rows for bench/run_gptq.sh --cuda.
 * Exit 77 without a CUDA build or a visible GPU.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>
#include <mpi.h>

#include "kernels/cuda/sp_cuda.h"
#include "kernels/sp_blas.h"
#include "kernels/sp_gptq.h"
#include "kernels/sp_hacc.h"
#include "kernels/sp_quant.h"

#define BENCH_NAME "bench_gptq_cuda"
#include "bench/bench_gptq_data.h"

/* H from X [n, C]: on the GPU (g) or the CPU (NULL); *t_add = seconds of the add. */
static double *hessian(const float *X, int n, int C, sp_cuda *g, double *t_add) {
    double xmax = 0;
    for (size_t i = 0; i < (size_t)n * C; i++) xmax = fabs(X[i]) > xmax ? fabs(X[i]) : xmax;
    sp_hacc h;
    sp_err e = {0};
    if (sp_hacc_init(&h, C, n, n, 1.01 * xmax, &e) != SP_OK) die("hessian", &e);
    if (g && sp_hacc_use_cuda(&h, g, &e) != SP_OK) die("hessian on the GPU", &e);
    double t = now_s();
    if (sp_hacc_add(&h, X, n, &e) != SP_OK) die("hessian add", &e);
    if (sp_hacc_allreduce(&h, MPI_COMM_SELF, &e) != SP_OK) die("hessian reduce", &e);
    *t_add = now_s() - t;
    double *H = sp_hacc_take(&h, &e);
    if (!H) die("hessian take", &e);
    return H;
}

int main(int argc, char **argv) {
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) {
            quick = 1;
        } else {
            fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
            return 2;
        }
    }
    if (!sp_cuda_built() || sp_cuda_device_count() == 0) {
        printf("bench_gptq_cuda: skipped (%s)\n",
               sp_cuda_built() ? "no CUDA device visible" : "built without CUDA");
        return 77;
    }
    MPI_Init(&argc, &argv);
    sp_err e = {0};
    sp_cuda *g = NULL;
    if (sp_cuda_open(&g, 0, &e) != SP_OK) die("open", &e);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (sp_blas_set_threads(ncpu > 0 ? (int)ncpu : 1, &e) != SP_OK) die("threads", &e);
    char name[256];
    size_t mem = 0, fr = 0;
    sp_cuda_describe(g, name, sizeof name, &mem, &fr);
    const double sg = sp_cuda_sgemm_rate(g, 4096, 5);
    printf("device %s, %.1f GiB; cublasSgemm 4096^3: %.1f GFLOP/s (best of 5); CPU threads %ld\n",
           name, (double)mem / (1u << 30), sg, ncpu);
    printf("CROWM | %s | %.1f |\n", name, sg);

    const int n = 2048, bits = 4;
    static const struct {
        const char *label;
        int R, C;
    } shapes[] = {{"7B q/k/v/o", 4096, 4096}, {"70B down", 8192, 28672}};
    for (int si = 0; si < (quick ? 1 : 2); si++) {
        const int R = shapes[si].R, C = shapes[si].C;
        float *X = make_inputs(n, C, 100 + (uint64_t)C);
        double t_h = 0, t_hc = 0;
        double *H = hessian(X, n, C, g, &t_h);
        /* the add again, now that the device pages exist (steady state of a calibration); at
         * C = 28672 once only: each run also expands a 6.6 GB H on the host */
        if (C <= 8192) free(hessian(X, n, C, g, &t_h));
        const double hrate = (double)n * C * (double)C / t_h * 1e-9;
        double *Hc = NULL;
        if (C <= 8192) {
            Hc = hessian(X, n, C, NULL, &t_hc);
            double md = 0, mx = 0;
            for (size_t i = 0; i < (size_t)C * C; i++) {
                md = fabs(H[i] - Hc[i]) > md ? fabs(H[i] - Hc[i]) : md;
                mx = fabs(Hc[i]) > mx ? fabs(Hc[i]) : mx;
            }
            printf("hessian C=%d n=%d: GPU %.4f s (%.1f GFLOP/s), CPU %.3f s; max |H_gpu - H_cpu| "
                   "/ max |H| = %.2e\n", C, n, t_h, hrate, t_hc, md / mx);
        } else {
            printf("hessian C=%d n=%d: GPU %.4f s (%.1f GFLOP/s)\n", C, n, t_h, hrate);
        }
        printf("CROWH | %d | %d | %.4f | %.1f | %.1f%% |\n", C, n, t_h, hrate, 100 * hrate / sg);
        free(X);
        float *W = make_weights(R, C, 200 + (uint64_t)si);
        const double flops = (double)C * C * C / 3 + (double)R * C * (C - 1.0);
        const int ncfg = si == 0 ? 3 : 1;
        for (int cfg = 0; cfg < ncfg; cfg++) {
            sp_gptq_opts o;
            sp_gptq_opts_default(&o);
            o.act_order = cfg >= 1;
            o.mse = cfg == 2 ? SP_QSEARCH_HMSE : SP_QSEARCH_MINMAX;
            const char *cname = cfg == 0 ? "minmax" : cfg == 1 ? "act-order minmax"
                                                               : "act-order hmse (default)";
            o.gpu = g;
            double t_prep = 1e30, t_q = 1e30, sg_pair = sg;
            sp_qlayer q = {0};
            sp_gptq_ctx *ctx = NULL;
            for (int rep = 0; rep < (C > 8192 ? 2 : 3); rep++) {
                sp_gptq_free(ctx);
                sp_qlayer_free(&q);
                double sg_now = sp_cuda_sgemm_rate(g, 4096, 1), t = now_s();
                if (sp_gptq_prepare(&ctx, H, C, &o, &e) != SP_OK) die("prepare", &e);
                double tp = now_s() - t;
                t = now_s();
                if (sp_gptq_quantize(ctx, W, R, bits, &q, NULL, &e) != SP_OK) die("quantize", &e);
                double tq = now_s() - t;
                if (tp + tq < t_prep + t_q) t_prep = tp, t_q = tq, sg_pair = sg_now;
            }
            const double tot = t_prep + t_q, rate = flops / tot * 1e-9, qrate =
                (double)R * C * (C - 1.0) / t_q * 1e-9;
            printf("GPTQ %s W[%d, %d] %d-bit g128 %s: prepare %.4f s + quantize %.4f s = %.4f s, "
                   "%.1f GFLOP/s = %.1f%% of sgemm (%.1f just before); quantize alone %.1f "
                   "GFLOP/s of R·C·(C-1)\n", shapes[si].label, R, C, bits, cname, t_prep, t_q, tot,
                   rate, 100 * rate / sg_pair, sg_pair, qrate);
            char cmp[256] = "not compared (CPU too slow for this shape here)";
            if (Hc) {
                /* The CPU float path on the same H (the GPU's); the GPU again, with layer error. */
                sp_gptq_opts oc = o;
                oc.gpu = NULL;
                sp_gptq_ctx *cc = NULL;
                sp_qlayer qc = {0};
                double ec = 0, egp = 0, t = now_s();
                if (sp_gptq_prepare(&cc, H, C, &oc, &e) != SP_OK) die("cpu prepare", &e);
                if (sp_gptq_quantize(cc, W, R, bits, &qc, &ec, &e) != SP_OK) die("cpu quantize", &e);
                double tc = now_s() - t;
                sp_gptq_free(cc);
                sp_qlayer qg2 = {0};
                if (sp_gptq_quantize(ctx, W, R, bits, &qg2, &egp, &e) != SP_OK) die("quantize", &e);
                size_t diff = 0;
                for (size_t i = 0; i < (size_t)R * C; i++) diff += qc.codes[i] != qg2.codes[i];
                if (memcmp(q.codes, qg2.codes, (size_t)R * C)) printf("  WARNING: GPU run to run codes differ\n");
                snprintf(cmp, sizeof cmp, "%.2e of codes differ from the CPU's; layer error GPU "
                         "%.5e, CPU %.5e (%+.3f%%); CPU took %.2f s",
                         (double)diff / ((double)R * C), egp, ec, 100 * (egp - ec) / ec, tc);
                printf("  same H on the CPU: %s\n", cmp);
                sp_qlayer_free(&qc);
                sp_qlayer_free(&qg2);
            }
            printf("CROW | %s | [%d, %d] | %s | %.4f | %.4f | %.4f | %.1f | %.1f | %.1f%% | %s |\n",
                   shapes[si].label, R, C, cname, t_prep, t_q, tot, rate, sg_pair,
                   100 * rate / sg_pair, cmp);
            sp_qlayer_free(&q);
            sp_gptq_free(ctx);
        }
        free(W);
        free(H);
        free(Hc);
    }
    sp_cuda_close(g);
    sp_blas_shutdown();
    MPI_Finalize();
    return 0;
}
