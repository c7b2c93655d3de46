/* bench_ef21.c — the EF21 paper's logistic-regression experiment on the library's exchange
 * (mpi/sp_ef21.h): every MPI rank is a worker.
 *
 *   mpirun -n 20 bench_ef21 --data FILE --k K --method ef21|ef21w|ef|naive|gd --factor F
 *                           --rounds R --csv OUT [--until EPS] [--lambda 0.1]
 *
 * Problem: f(x) = (1/n) Σ_i f_i(x), f_i(x) = (1/m) Σ_j log(1 + exp(−b_j a_jᵀx))
 *          + λ Σ_k x_k²/(1 + x_k²). Conventions (issue 12): the larger label is +1, the other −1;
 * d = the largest feature index, no bias; n = ranks, worker i takes rows [i·m, (i+1)·m) with
 * m = ⌊N/n⌋ (the rest is dropped); x⁰ = 0, g_i⁰ = ∇f_i(x⁰) (dense); Top-K ties to the lower
 * index; γ = F/(L + L̃·√(β/θ)), α = K/d, θ = 1 − √(1−α), β = (1−α)/(1 − √(1−α)),
 * L_i = λ_max(A_iᵀA_i)/(4m) + 2λ, L = λ_max(Σ_i A_iᵀA_i/(4nm)) + 2λ, L̃ = √(mean L_i²) (EF21)
 * or mean L_i (EF21-W, w_i = L_i/Σ L_j).
 * Methods: ef21, ef21w; ef: classic error feedback (e_i += γ∇f_i; c_i = C(e_i); e_i −= c_i;
 * x −= mean c_i), same γ as ef21; naive: x −= γ·mean C(∇f_i), no feedback, same γ; gd: x −= γ∇f
 * with γ = F/L. CSV: round,grad_norm_sq,bits_per_worker with bits = 32d + 64Kt (ef21, ef21w),
 * 64Kt (ef, naive: no dense start), 32d(t+1) (gd). Row t is x^t; the wire bytes the library
 * really sent (headers, varint indices) are printed at the end.
 */
#include <lapacke.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/sp_compress.h"
#include "mpi/sp_ef21.h"

typedef struct {
    int N, d;            /* rows kept (n·m), features          */
    int *rowp, *col;     /* CSR of all rows: rowp [N+1]        */
    double *val, *b;     /* values [nnz], labels ±1 [N]        */
} dataset;

static int die(int rank, const char *msg, const char *arg) {
    if (rank == 0) fprintf(stderr, "bench_ef21: %s%s\n", msg, arg ? arg : "");
    MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
}

/* Read a LibSVM file; keep the first n·⌊N/n⌋ rows. Labels: max label → +1, others −1. */
static int load(const char *path, int n, dataset *D) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t cap = 1 << 16, nnz = 0, rcap = 1024;
    int rows = 0, d = 0;
    D->col = malloc(cap * sizeof(int));
    D->val = malloc(cap * sizeof(double));
    D->rowp = malloc((rcap + 1) * sizeof(int));
    double *lab = malloc(rcap * sizeof(double));
    char *line = NULL;
    size_t ll = 0;
    D->rowp[0] = 0;
    while (getline(&line, &ll, f) > 0) {
        char *p = line, *e;
        double y = strtod(p, &e);
        if (e == p) continue;
        if ((size_t)rows + 1 >= rcap) {
            rcap *= 2;
            D->rowp = realloc(D->rowp, (rcap + 1) * sizeof(int));
            lab = realloc(lab, rcap * sizeof(double));
        }
        lab[rows] = y;
        p = e;
        for (;;) {
            long j = strtol(p, &e, 10);
            if (e == p || *e != ':') break;
            double v = strtod(e + 1, &p);
            if (nnz == cap) {
                cap *= 2;
                D->col = realloc(D->col, cap * sizeof(int));
                D->val = realloc(D->val, cap * sizeof(double));
            }
            D->col[nnz] = (int)j - 1;
            D->val[nnz++] = v;
            if (j > d) d = (int)j;
        }
        D->rowp[++rows] = (int)nnz;
    }
    free(line);
    fclose(f);
    double ymax = -INFINITY;
    for (int r = 0; r < rows; r++) ymax = fmax(ymax, lab[r]);
    D->N = rows / n * n;
    D->d = d;
    D->b = malloc((size_t)D->N * sizeof(double));
    for (int r = 0; r < D->N; r++) D->b[r] = lab[r] == ymax ? 1.0 : -1.0;
    free(lab);
    return D->N > 0 ? 0 : -1;
}

/* λ_max(Σ_{r in [r0,r1)} a_r a_rᵀ)·scale, dense d×d (d <= a few hundred). */
static double lmax_rows(const dataset *D, int r0, int r1, double scale) {
    int d = D->d;
    double *M = calloc((size_t)d * d, sizeof(double)), *w = malloc((size_t)d * sizeof(double));
    for (int r = r0; r < r1; r++)
        for (int p = D->rowp[r]; p < D->rowp[r + 1]; p++)
            for (int q = D->rowp[r]; q < D->rowp[r + 1]; q++)
                M[(size_t)D->col[p] * d + D->col[q]] += D->val[p] * D->val[q] * scale;
    LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'N', 'U', d, M, d, w);
    double l = w[d - 1];
    free(M);
    free(w);
    return l;
}

/* ∇f_i(x) over rows [r0, r1) into g [d]. */
static void grad(const dataset *D, int r0, int r1, double lambda, const double *x, double *g) {
    int d = D->d;
    for (int k = 0; k < d; k++) g[k] = lambda * 2.0 * x[k] / ((1 + x[k] * x[k]) * (1 + x[k] * x[k]));
    double inv = 1.0 / (r1 - r0);
    for (int r = r0; r < r1; r++) {
        double z = 0;
        for (int p = D->rowp[r]; p < D->rowp[r + 1]; p++) z += D->val[p] * x[D->col[p]];
        double bz = D->b[r] * z, s = -D->b[r] / (1.0 + exp(bz)) * inv; /* −b σ(−b aᵀx) / m */
        for (int p = D->rowp[r]; p < D->rowp[r + 1]; p++) g[D->col[p]] += s * D->val[p];
    }
}

typedef struct {
    int kind;          /* 0 ef21, 1 ef21w, 2 ef, 3 naive, 4 gd */
    double factor, gamma;
    double *x, *gagg, *step, *gr;  /* [d] */
    float *gi, *e;                 /* [d] */
    double *w;                     /* [n] */
    FILE *out;
    char path[4200], tmp[4300];
    int done;
    long t_end;
    double wire;
} run_t;

static const char *KINDS[] = {"ef21", "ef21w", "ef", "naive", "gd"};

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, n;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    const char *data = NULL, *methods = "ef21", *csv = NULL, *factors = "1";
    long K = 1, R = 1000;
    double lambda = 0.1, until = 0.0;
    for (int a = 1; a + 1 < argc; a += 2) {
        if (!strcmp(argv[a], "--data")) data = argv[a + 1];
        else if (!strcmp(argv[a], "--k")) K = atol(argv[a + 1]);
        else if (!strcmp(argv[a], "--method")) methods = argv[a + 1];
        else if (!strcmp(argv[a], "--factor")) factors = argv[a + 1];
        else if (!strcmp(argv[a], "--rounds")) R = atol(argv[a + 1]);
        else if (!strcmp(argv[a], "--csv")) csv = argv[a + 1];
        else if (!strcmp(argv[a], "--until")) until = atof(argv[a + 1]);
        else if (!strcmp(argv[a], "--lambda")) lambda = atof(argv[a + 1]);
        else return die(rank, "unknown option ", argv[a]);
    }
    /* Runs: every method × every factor (comma lists), advanced together so that one gather
     * per round serves them all (20 ranks on a few cores pay per collective, not per byte). */
    int kinds[8], nk = 0, nf = 0;
    double fs[32];
    char buf[256];
    snprintf(buf, sizeof buf, "%s", methods);
    for (char *sv = NULL, *p = strtok_r(buf, ",", &sv); p && nk < 8; p = strtok_r(NULL, ",", &sv)) {
        int k = -1;
        for (int j = 0; j < 5; j++) if (!strcmp(p, KINDS[j])) k = j;
        if (k < 0) return die(rank, "unknown method ", p);
        kinds[nk++] = k;
    }
    snprintf(buf, sizeof buf, "%s", factors);
    for (char *sv = NULL, *p = strtok_r(buf, ",", &sv); p && nf < 32; p = strtok_r(NULL, ",", &sv))
        fs[nf++] = atof(p);
    if (!data || !csv || K < 1 || R < 0 || nk == 0 || nf == 0)
        return die(rank, "usage: bench_ef21 --data FILE --k K --method ef21|ef21w|ef|naive|gd[,..] "
                   "--factor F[,..] --rounds R --csv OUT [--until EPS]", NULL);
    dataset D;
    if (load(data, n, &D) != 0) return die(rank, "cannot read ", data);
    int d = D.d, m = D.N / n, r0 = rank * m, r1 = r0 + m;
    if (K > d) K = d;
    /* smoothness constants */
    double Li = lmax_rows(&D, r0, r1, 1.0 / (4.0 * m)) + 2 * lambda, *Ls = malloc((size_t)n * sizeof(double));
    MPI_Allgather(&Li, 1, MPI_DOUBLE, Ls, 1, MPI_DOUBLE, MPI_COMM_WORLD);
    double L = 0;
    if (rank == 0) L = lmax_rows(&D, 0, D.N, 1.0 / (4.0 * n * m)) + 2 * lambda;
    MPI_Bcast(&L, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    double meanL = 0, meanL2 = 0, sumL = 0;
    for (int i = 0; i < n; i++) { meanL += Ls[i] / n; meanL2 += Ls[i] * Ls[i] / n; sumL += Ls[i]; }
    double alpha = (double)K / d, theta = 1 - sqrt(1 - alpha), beta = K >= d ? 0.0 : (1 - alpha) / theta;

    char spec_s[64];
    snprintf(spec_s, sizeof spec_s, "topk:%ld", K);
    sp_cmp_spec topk, dense;
    sp_err err;
    sp_cmp_parse(spec_s, &topk, &err);
    sp_cmp_parse("none", &dense, &err);
    int nr = nk * nf;
    run_t *runs = calloc((size_t)nr, sizeof *runs);
    for (int q = 0; q < nr; q++) {
        run_t *u = &runs[q];
        u->kind = kinds[q / nf];
        u->factor = fs[q % nf];
        double Lt = u->kind == 1 ? meanL : sqrt(meanL2);
        u->gamma = u->kind == 4 ? u->factor / L : u->factor / (L + Lt * sqrt(beta / theta));
        u->x = calloc((size_t)d, sizeof(double));
        u->gagg = calloc((size_t)d, sizeof(double));
        u->step = calloc((size_t)d, sizeof(double));
        u->gr = calloc((size_t)d, sizeof(double));
        u->gi = calloc((size_t)d, sizeof(float));
        u->e = calloc((size_t)d, sizeof(float));
        u->w = malloc((size_t)n * sizeof(double));
        for (int i = 0; i < n; i++) u->w[i] = u->kind == 1 ? Ls[i] / sumL : 1.0 / n;
        u->t_end = R;
        if (nr == 1) snprintf(u->path, sizeof u->path, "%s", csv);
        else snprintf(u->path, sizeof u->path, "%s-%s-f%g.csv", csv, KINDS[u->kind], u->factor);
        if (rank == 0) {
            snprintf(u->tmp, sizeof u->tmp, "%s.tmp", u->path);
            u->out = fopen(u->tmp, "w");
            if (!u->out) return die(rank, "cannot write ", u->tmp);
            fprintf(u->out, "round,grad_norm_sq,bits_per_worker\n");
        }
    }
    float *v = malloc((size_t)d * sizeof(float)), *scratch = malloc((size_t)d * sizeof(float));
    double *gsum = malloc((size_t)nr * d * sizeof(double)), *gloc = malloc((size_t)nr * d * sizeof(double));
    uint32_t *mlen = malloc((size_t)nr * sizeof(uint32_t));
    sp_cmp_buf msg = {0};
    for (long t = 0; t <= R; t++) {
        /* Each active run: its gradient and its message, appended to one buffer. */
        msg.len = 0;
        int active = 0;
        for (int q = 0; q < nr; q++) {
            run_t *u = &runs[q];
            mlen[q] = 0;
            if (u->done) { memset(gloc + (size_t)q * d, 0, (size_t)d * sizeof(double)); continue; }
            active++;
            grad(&D, r0, r1, lambda, u->x, u->gr);
            memcpy(gloc + (size_t)q * d, u->gr, (size_t)d * sizeof(double));
            for (int k = 0; k < d; k++) v[k] = (float)u->gr[k];
            float scale = (float)(1.0 / (n * u->w[rank]));
            size_t at = msg.len;
            sp_status st;
            if (u->kind <= 1) st = sp_ef21_uplink(t == 0 ? &dense : &topk, v, scale, u->gi, (size_t)d, 0, scratch, &msg, &err);
            else if (u->kind == 2) st = sp_ef_uplink(&topk, v, (float)u->gamma, u->e, (size_t)d, 0, &msg, &err);
            else st = sp_cmp_encode(u->kind == 4 ? &dense : &topk, v, (size_t)d, 0, &msg, &err);
            if (st != SP_OK) return die(rank, err.msg, NULL);
            mlen[q] = (uint32_t)(msg.len - at);
            u->wire += (double)mlen[q];
        }
        if (active == 0) break;
        /* ‖∇f(x^t)‖² for every run: a diagnostic sum, not part of the methods' traffic. */
        MPI_Allreduce(gloc, gsum, nr * d, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        sp_ef21_gathered all;
        if (sp_ef21_gather(MPI_COMM_WORLD, -1, msg.data, msg.len, &all, &err) != SP_OK)
            return die(rank, err.msg, NULL);
        size_t *pos = calloc((size_t)n, sizeof(size_t));
        for (int q = 0; q < nr; q++) {
            run_t *u = &runs[q];
            if (u->done) continue;
            double gn = 0;
            for (int k = 0; k < d; k++) gn += (gsum[(size_t)q * d + k] / n) * (gsum[(size_t)q * d + k] / n);
            double bits = u->kind <= 1 ? 32.0 * d + 64.0 * K * t : u->kind == 4 ? 32.0 * d * (t + 1) : 64.0 * K * t;
            if (rank == 0) fprintf(u->out, "%ld,%.17g,%.17g\n", t, gn, bits);
            int stop = !isfinite(gn) || gn > 1e12 || (until > 0 && gn < until) || t == R;
            memset(u->step, 0, (size_t)d * sizeof(double));
            for (int i = 0; i < n; i++) {
                /* every rank's messages are in run order; message lengths come from the headers */
                const uint8_t *p = all.data + all.off[i] + pos[i];
                sp_cmp_header h;
                size_t L1;
                if (sp_cmp_peek(p, all.len[i] - pos[i], &h, &L1, &err) != SP_OK) return die(rank, err.msg, NULL);
                pos[i] += L1;
                if (stop) continue;
                if (sp_cmp_decode_add_f64(p, L1, u->kind <= 1 ? u->w[i] : 1.0 / n,
                                          u->kind <= 1 ? u->gagg : u->step, (size_t)d, &err) != SP_OK)
                    return die(rank, err.msg, NULL);
            }
            if (stop) { u->done = 1; u->t_end = t; continue; }
            for (int k = 0; k < d; k++)
                u->x[k] -= u->kind <= 1 ? u->gamma * u->gagg[k] : u->kind == 2 ? u->step[k] : u->gamma * u->step[k];
        }
        free(pos);
        sp_ef21_gathered_free(&all);
    }
    for (int q = 0; q < nr; q++) {
        run_t *u = &runs[q];
        double wsum = 0;
        MPI_Reduce(&u->wire, &wsum, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
        if (rank == 0) {
            fclose(u->out);
            rename(u->tmp, u->path);
            fprintf(stderr, "bench_ef21: %s factor=%g d=%d N=%d n=%d K=%ld gamma=%.6g L=%.6g "
                    "rounds=%ld wire_bytes_per_worker=%.0f\n", KINDS[u->kind], u->factor, d, D.N,
                    n, K, u->gamma, L, u->t_end, wsum / n);
        }
    }
    sp_cmp_buf_free(&msg);
    MPI_Finalize();
    return 0;
}
