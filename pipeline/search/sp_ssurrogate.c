/* sp_ssurrogate.c — see sp_ssurrogate.h. */
#include "pipeline/search/sp_ssurrogate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The prior's weight in observations: α = 4 (δ moves once a few draws agree); c is held to 1
 * as by 4 observations of a genome whose Σ t is n·mean(t) (β = 4 (n·mean t)², in KL²). */
#define SP_SSURROGATE_PRIOR 4.0

sp_status sp_ssurrogate_init(sp_ssurrogate *s, const sp_sgenome_space *sp, const double *table,
                             sp_err *err) {
    memset(s, 0, sizeof *s);
    s->n = sp->n;
    s->NL = sp->n_levels;
    s->P = sp->n * sp->n_levels;
    s->t = table;
    size_t Q = (size_t)s->P + 1;
    s->A = sp_calloc(Q * Q, sizeof *s->A, err, "surrogate");
    s->L = s->A ? sp_calloc(Q * Q, sizeof *s->L, err, "surrogate") : NULL;
    s->r = s->L ? sp_calloc(Q, sizeof *s->r, err, "surrogate") : NULL;
    s->theta = s->r ? sp_calloc(Q, sizeof *s->theta, err, "surrogate") : NULL;
    s->w = s->theta ? sp_calloc((size_t)s->P, sizeof *s->w, err, "surrogate") : NULL;
    if (!s->w) {
        sp_ssurrogate_free(s);
        return SP_ENOMEM;
    }
    s->theta[0] = 1.0;
    memcpy(s->w, table, sizeof *s->w * (size_t)s->P);
    return SP_OK;
}

void sp_ssurrogate_free(sp_ssurrogate *s) {
    free(s->A);
    free(s->L);
    free(s->r);
    free(s->theta);
    free(s->w);
    memset(s, 0, sizeof *s);
}

double sp_ssurrogate_predict(const sp_ssurrogate *s, const uint8_t *g) {
    double v = 0.0;
    for (int m = 0; m < s->n; m++) v += s->w[(size_t)m * (size_t)s->NL + g[m]];
    return v;
}

/* Feature i of genome g, dense: f[0] = Σ t, f[1 + m·NL + k] = [g_m == k]. */
static void features(const sp_ssurrogate *s, const uint8_t *g, double *f) {
    size_t Q = (size_t)s->P + 1;
    memset(f, 0, Q * sizeof *f);
    for (int m = 0; m < s->n; m++) {
        size_t i = (size_t)m * (size_t)s->NL + g[m];
        f[0] += s->t[i];
        f[1 + i] = 1.0;
    }
}

void sp_ssurrogate_add(sp_ssurrogate *s, const uint8_t *const *g, const double *y, int n) {
    if (n < 2) return;
    size_t Q = (size_t)s->P + 1;
    double *mean = calloc(Q, sizeof *mean), *f = calloc(Q, sizeof *f);
    if (!mean || !f) { /* a draw that cannot be added leaves the model as it was */
        free(mean);
        free(f);
        return;
    }
    double ym = 0.0;
    for (int i = 0; i < n; i++) {
        features(s, g[i], f);
        for (size_t q = 0; q < Q; q++) mean[q] += f[q];
        ym += y[i];
    }
    for (size_t q = 0; q < Q; q++) mean[q] /= n;
    ym /= n;
    for (int i = 0; i < n; i++) {
        features(s, g[i], f);
        for (size_t q = 0; q < Q; q++) f[q] -= mean[q];
        double yc = y[i] - ym;
        for (size_t a = 0; a < Q; a++) {
            if (f[a] == 0.0) continue;
            s->r[a] += f[a] * yc;
            double *row = s->A + a * Q;
            for (size_t b = 0; b < Q; b++) row[b] += f[a] * f[b];
        }
    }
    s->draws++;
    free(mean);
    free(f);
}

sp_status sp_ssurrogate_fit(sp_ssurrogate *s, sp_err *err) {
    size_t Q = (size_t)s->P + 1, P = (size_t)s->P;
    double tm = 0.0;
    for (size_t i = 0; i < P; i++) tm += fabs(s->t[i]);
    tm = tm / (double)P;
    if (!(tm > 0)) tm = 1.0;
    double alpha = SP_SSURROGATE_PRIOR;
    double beta = SP_SSURROGATE_PRIOR * (tm * s->n) * (tm * s->n);
    /* M = A + diag(β, α…α), rhs = r + (β·1, 0…0); Cholesky M = L Lᵀ, row-major lower */
    double *Lm = s->L, *x = s->theta;
    memcpy(Lm, s->A, Q * Q * sizeof *Lm);
    Lm[0] += beta;
    for (size_t i = 1; i < Q; i++) Lm[i * Q + i] += alpha;
    for (size_t j = 0; j < Q; j++) {
        double d = Lm[j * Q + j];
        for (size_t k = 0; k < j; k++) d -= Lm[j * Q + k] * Lm[j * Q + k];
        SP_RETURN_IF(!(d > 0), err, SP_ENUMERIC, "search: the surrogate's normal equations "
                     "are not positive definite (pivot %zu)", j);
        d = sqrt(d);
        Lm[j * Q + j] = d;
        for (size_t i = j + 1; i < Q; i++) {
            double v = Lm[i * Q + j];
            for (size_t k = 0; k < j; k++) v -= Lm[i * Q + k] * Lm[j * Q + k];
            Lm[i * Q + j] = v / d;
        }
    }
    for (size_t i = 0; i < Q; i++) { /* L z = rhs */
        double v = s->r[i] + (i == 0 ? beta : 0.0);
        for (size_t k = 0; k < i; k++) v -= Lm[i * Q + k] * x[k];
        x[i] = v / Lm[i * Q + i];
    }
    for (size_t i = Q; i-- > 0;) { /* Lᵀ θ = z */
        double v = x[i];
        for (size_t k = i + 1; k < Q; k++) v -= Lm[k * Q + i] * x[k];
        x[i] = v / Lm[i * Q + i];
    }
    for (size_t i = 0; i < P; i++) s->w[i] = x[0] * s->t[i] + x[1 + i];
    return SP_OK;
}

/* Average ranks (1-based) of v into r. */
static void ranks(const double *v, int n, double *r, int *idx) {
    for (int i = 0; i < n; i++) idx[i] = i;
    for (int i = 1; i < n; i++)
        for (int k = i; k > 0 && v[idx[k]] < v[idx[k - 1]]; k--) {
            int t = idx[k];
            idx[k] = idx[k - 1];
            idx[k - 1] = t;
        }
    for (int i = 0; i < n;) {
        int j = i;
        while (j + 1 < n && v[idx[j + 1]] == v[idx[i]]) j++;
        for (int k = i; k <= j; k++) r[idx[k]] = 0.5 * (i + j) + 1.0;
        i = j + 1;
    }
}

double sp_ssurrogate_spearman(const double *a, const double *b, int n) {
    if (n < 3) return 0.0;
    double *ra = malloc(sizeof *ra * (size_t)n), *rb = malloc(sizeof *rb * (size_t)n);
    int *idx = malloc(sizeof *idx * (size_t)n);
    double rho = 0.0;
    if (ra && rb && idx) {
        ranks(a, n, ra, idx);
        ranks(b, n, rb, idx);
        double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
        for (int i = 0; i < n; i++) { ma += ra[i]; mb += rb[i]; }
        ma /= n;
        mb /= n;
        for (int i = 0; i < n; i++) {
            sab += (ra[i] - ma) * (rb[i] - mb);
            saa += (ra[i] - ma) * (ra[i] - ma);
            sbb += (rb[i] - mb) * (rb[i] - mb);
        }
        rho = saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : 0.0;
    }
    free(ra);
    free(rb);
    free(idx);
    return rho;
}
