/* sp_rotate.c — see sp_rotate.h. */
#include "kernels/sp_rotate.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/sp_blas.h"
#include "common/sp_rng.h"

struct sp_rotate {
    int kind, n;
    /* hadamard: n = m·p, p = 2^k */
    int m, p;
    double *sign;  /* [n] ±1                                                  */
    double *hm;    /* [m·m] H_m (±1), row-major                               */
    double scale;  /* 1/√n                                                    */
    /* orthogonal */
    double *q;     /* [n·n] row-major                                         */
};

static const char *const NAMES[SP_ROTATE_COUNT] = {"none", "hadamard", "orthogonal"};

int sp_rotate_parse(const char *s) {
    for (int k = 0; s && k < SP_ROTATE_COUNT; k++)
        if (!strcmp(s, NAMES[k])) return k;
    return -1;
}

const char *sp_rotate_name(int kind) {
    return kind >= 0 && kind < SP_ROTATE_COUNT ? NAMES[kind] : "?";
}

int sp_rotate_order(const sp_rotate *r) { return r->n; }
int sp_rotate_hadamard_m(const sp_rotate *r) { return r->kind == SP_ROTATE_HADAMARD ? r->m : 0; }

/* ---- Hadamard bases ------------------------------------------------------------------- */

static int is_prime(int p) {
    if (p < 2) return 0;
    for (int d = 2; d * d <= p; d++)
        if (p % d == 0) return 0;
    return 1;
}

/* Legendre symbol χ(a) mod an odd prime p: 0, 1 (a square) or −1, by Euler's criterion
 * a^((p−1)/2) mod p. */
static int legendre(int a, int p) {
    a %= p;
    if (a < 0) a += p;
    if (a == 0) return 0;
    long long r = 1, b = a;
    for (int e = (p - 1) / 2; e > 0; e >>= 1) {
        if (e & 1) r = r * b % p;
        b = b * b % p;
    }
    return r == 1 ? 1 : -1;
}

/* Which construction gives order m: 1 Sylvester (m = 1, 2), 2 Paley I, 3 Paley II, 0 none. */
static int base_kind(int m) {
    if (m == 1 || m == 2) return 1;
    if (m >= 4 && is_prime(m - 1) && (m - 1) % 4 == 3) return 2;
    if (m >= 4 && m % 2 == 0 && is_prime(m / 2 - 1) && (m / 2 - 1) % 4 == 1) return 3;
    return 0;
}

sp_status sp_rotate_hadamard_base(int m, int *h, sp_err *err) {
    int kind = base_kind(m);
    SP_RETURN_IF(!kind, err, SP_EUNSUPPORTED, "no Hadamard construction of order %d", m);
    if (kind == 1) {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < m; j++) h[i * m + j] = (i & j) ? -1 : 1;
    } else if (kind == 2) {
        /* Paley I, p ≡ 3 mod 4: S = [[0, 1ᵀ], [−1, J]] with the Jacobsthal matrix
         * J_ij = χ(j − i), skew because χ(−1) = −1; H = I + S, H Hᵀ = (p + 1) I. */
        int p = m - 1;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < m; j++) {
                int s = i == 0 ? (j == 0 ? 0 : 1) : j == 0 ? -1 : legendre(j - i, p);
                h[i * m + j] = s + (i == j);
            }
    } else {
        /* Paley II, p ≡ 1 mod 4: the symmetric conference matrix C = [[0, 1ᵀ], [1, J]] of
         * order p + 1 (C² = p I); H = C ⊗ [[1, 1], [1, −1]] + I ⊗ [[1, −1], [−1, −1]]. */
        int p = m / 2 - 1;
        static const int A[2][2] = {{1, 1}, {1, -1}}, B[2][2] = {{1, -1}, {-1, -1}};
        for (int a = 0; a <= p; a++)
            for (int b = 0; b <= p; b++) {
                int cab = a == 0 ? (b == 0 ? 0 : 1) : b == 0 ? 1 : legendre(b - a, p);
                for (int x = 0; x < 2; x++)
                    for (int y = 0; y < 2; y++)
                        h[(2 * a + x) * m + 2 * b + y] = cab * A[x][y] + (a == b) * B[x][y];
            }
    }
    return SP_OK;
}

/* The smallest m with n = m·2^k and a construction for m; 0 when none up to 4096. */
static int choose_m(int n) {
    int odd = n;
    while (odd % 2 == 0) odd /= 2;
    for (int m = odd; m <= n && m <= 4096; m *= 2)
        if (base_kind(m)) return m;
    return 0;
}

/* ---- create --------------------------------------------------------------------------- */

static sp_status create_hadamard(sp_rotate *r, uint64_t seed, sp_err *err) {
    int n = r->n, m = choose_m(n);
    SP_RETURN_IF(m == 0, err, SP_EUNSUPPORTED,
                 "--rotate hadamard: no Hadamard construction for size %d (it needs n = 2^k·m "
                 "with m = 1, 2, p + 1 for a prime p ≡ 3 mod 4, or 2(p + 1) for a prime p ≡ 1 "
                 "mod 4; use --rotate orthogonal)", n);
    r->m = m;
    r->p = n / m;
    r->scale = 1.0 / sqrt((double)n);
    r->sign = sp_malloc((size_t)n * sizeof(double), err, "rotation signs");
    r->hm = r->sign ? sp_malloc((size_t)m * m * sizeof(double), err, "Hadamard base") : NULL;
    int *hi = r->hm ? sp_malloc((size_t)m * m * sizeof(int), err, "Hadamard base") : NULL;
    if (!hi) return SP_ENOMEM;
    sp_status st = sp_rotate_hadamard_base(m, hi, err);
    for (size_t i = 0; i < (size_t)m * m; i++) r->hm[i] = hi[i];
    free(hi);
    uint64_t s = seed;
    for (int i = 0; i < n; i++) r->sign[i] = (sp_rng_next(&s) >> 63) ? -1.0 : 1.0;
    return st;
}

static sp_status create_orthogonal(sp_rotate *r, uint64_t seed, sp_err *err) {
    size_t n = (size_t)r->n;
    double *a = sp_malloc(n * n * sizeof(double), err, "rotation matrix");
    double *tau = a ? sp_malloc(n * sizeof(double), err, "rotation tau") : NULL;
    double *sg = tau ? sp_malloc(n * sizeof(double), err, "rotation signs") : NULL;
    r->q = sg ? sp_malloc(n * n * sizeof(double), err, "rotation matrix") : NULL;
    sp_status st = r->q ? SP_OK : SP_ENOMEM;
    if (st == SP_OK) {
        /* Standard Gaussian entries by Box–Muller, in column-major order. */
        uint64_t s = seed;
        for (size_t i = 0; i < n * n; i += 2) {
            double u = sp_rng_unit_open(&s), v = sp_rng_unit_open(&s), rad = sqrt(-2.0 * log(u));
            a[i] = rad * cos(6.283185307179586 * v);
            if (i + 1 < n * n) a[i + 1] = rad * sin(6.283185307179586 * v);
        }
        lapack_int info = LAPACKE_dgeqrf(LAPACK_COL_MAJOR, (lapack_int)n, (lapack_int)n, a,
                                         (lapack_int)n, tau);
        /* Q·diag(sign(R_jj)) is Haar distributed (Mezzadri 2007); Q alone is not. */
        for (size_t j = 0; info == 0 && j < n; j++) sg[j] = a[j * n + j] < 0 ? -1.0 : 1.0;
        if (info == 0)
            info = LAPACKE_dorgqr(LAPACK_COL_MAJOR, (lapack_int)n, (lapack_int)n, (lapack_int)n,
                                  a, (lapack_int)n, tau);
        if (info != 0)
            st = sp_err_set(err, SP_ENUMERIC, "--rotate orthogonal: QR of a %zu x %zu matrix "
                            "failed (LAPACK info %d)", n, n, (int)info);
        for (size_t i = 0; st == SP_OK && i < n; i++)
            for (size_t j = 0; j < n; j++) r->q[i * n + j] = a[j * n + i] * sg[j];
    }
    free(a);
    free(tau);
    free(sg);
    return st;
}

sp_status sp_rotate_create(sp_rotate **out, int kind, int n, uint64_t seed, sp_err *err) {
    *out = NULL;
    SP_RETURN_IF(kind != SP_ROTATE_HADAMARD && kind != SP_ROTATE_ORTHOGONAL, err, SP_EINVAL,
                 "rotation kind %d is not hadamard or orthogonal", kind);
    SP_RETURN_IF(n < 1, err, SP_EINVAL, "rotation of order %d", n);
    sp_rotate *r = sp_calloc(1, sizeof *r, err, "rotation");
    if (!r) return SP_ENOMEM;
    r->kind = kind;
    r->n = n;
    sp_status st = kind == SP_ROTATE_HADAMARD ? create_hadamard(r, seed, err)
                                              : create_orthogonal(r, seed, err);
    if (st) {
        sp_rotate_free(r);
        return st;
    }
    *out = r;
    return SP_OK;
}

void sp_rotate_free(sp_rotate *r) {
    if (!r) return;
    free(r->sign);
    free(r->hm);
    free(r->q);
    free(r);
}

/* ---- apply ------------------------------------------------------------------------------ */

/* x ← (x ⊙ s)·(H_m ⊗ H_p)/√n on one row, in double. With i = a·p + b, j = c·p + d:
 * y_j = Σ_a H_m[a][c] Σ_b x'[a·p + b] H_p[b][d]: a fast Walsh–Hadamard transform of each of
 * the m segments of length p, then H_mᵀ across segments for each d. t: scratch [m]. */
static void hadamard_row(const sp_rotate *r, double *x, double *t) {
    int n = r->n, m = r->m, p = r->p;
    for (int i = 0; i < n; i++) x[i] *= r->sign[i];
    for (int a = 0; a < m; a++) {
        double *seg = x + (size_t)a * p;
        for (int h = 1; h < p; h <<= 1)
            for (int i = 0; i < p; i += h << 1)
                for (int j = i; j < i + h; j++) {
                    double u = seg[j], v = seg[j + h];
                    seg[j] = u + v;
                    seg[j + h] = u - v;
                }
    }
    if (m > 1)
        for (int d = 0; d < p; d++) {
            for (int c = 0; c < m; c++) {
                double s = 0;
                for (int a = 0; a < m; a++) s += r->hm[a * m + c] * x[(size_t)a * p + d];
                t[c] = s;
            }
            for (int c = 0; c < m; c++) x[(size_t)c * p + d] = t[c];
        }
    for (int i = 0; i < n; i++) x[i] *= r->scale;
}

/* rows rows of n doubles (contiguous) ← themselves · Q. y: scratch [rows·n] (orthogonal). */
static void apply_rows_d(const sp_rotate *r, double *x, size_t rows, double *y, double *t) {
    size_t n = (size_t)r->n;
    if (r->kind == SP_ROTATE_HADAMARD) {
        for (size_t i = 0; i < rows; i++) hadamard_row(r, x + i * n, t);
        return;
    }
    sp_blas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)n, (int)n, 1.0, x,
                  (int)n, r->q, (int)n, 0.0, y, (int)n);
    memcpy(x, y, rows * n * sizeof(double));
}

#define CHUNK 256

typedef struct {
    double *x, *y, *t;
} bufs;

static sp_status bufs_alloc(const sp_rotate *r, bufs *b, sp_err *err) {
    size_t n = (size_t)r->n;
    memset(b, 0, sizeof *b);
    b->x = sp_malloc(CHUNK * n * sizeof(double), err, "rotation buffer");
    b->y = b->x && r->kind == SP_ROTATE_ORTHOGONAL
               ? sp_malloc(CHUNK * n * sizeof(double), err, "rotation buffer") : NULL;
    b->t = b->x ? sp_malloc((size_t)(r->m > 0 ? r->m : 1) * sizeof(double), err, "scratch") : NULL;
    if (!b->t || (r->kind == SP_ROTATE_ORTHOGONAL && !b->y)) {
        free(b->x);
        free(b->y);
        free(b->t);
        return SP_ENOMEM;
    }
    return SP_OK;
}

static void bufs_free(bufs *b) {
    free(b->x);
    free(b->y);
    free(b->t);
}

sp_status sp_rotate_rows(const sp_rotate *r, float *x, size_t rows, size_t ld, sp_err *err) {
    size_t n = (size_t)r->n;
    bufs b;
    SP_FORWARD(bufs_alloc(r, &b, err));
    for (size_t r0 = 0; r0 < rows; r0 += CHUNK) {
        size_t nr = rows - r0 < CHUNK ? rows - r0 : CHUNK;
        for (size_t i = 0; i < nr; i++)
            for (size_t j = 0; j < n; j++) b.x[i * n + j] = x[(r0 + i) * ld + j];
        apply_rows_d(r, b.x, nr, b.y, b.t);
        for (size_t i = 0; i < nr; i++)
            for (size_t j = 0; j < n; j++) x[(r0 + i) * ld + j] = (float)b.x[i * n + j];
    }
    bufs_free(&b);
    return SP_OK;
}

/* Qᵀ·W = (Wᵀ·Q)ᵀ: each column of W, taken as a row, times Q. */
sp_status sp_rotate_cols(const sp_rotate *r, float *W, size_t cols, size_t ld, sp_err *err) {
    size_t n = (size_t)r->n;
    bufs b;
    SP_FORWARD(bufs_alloc(r, &b, err));
    for (size_t c0 = 0; c0 < cols; c0 += CHUNK) {
        size_t nc = cols - c0 < CHUNK ? cols - c0 : CHUNK;
        for (size_t i = 0; i < n; i++)
            for (size_t c = 0; c < nc; c++) b.x[c * n + i] = W[i * ld + c0 + c];
        apply_rows_d(r, b.x, nc, b.y, b.t);
        for (size_t i = 0; i < n; i++)
            for (size_t c = 0; c < nc; c++) W[i * ld + c0 + c] = (float)b.x[c * n + i];
    }
    bufs_free(&b);
    return SP_OK;
}

/* ---- a whole model ------------------------------------------------------------------------ */

/* R2's seed: a fixed offset from R1's, so the two are independent streams. */
#define R2_SEED_OFFSET 0x5232u

sp_status sp_rotation_init(sp_rotation *rot, int kind, uint64_t seed, const sp_config *c,
                           sp_err *err) {
    memset(rot, 0, sizeof *rot);
    SP_RETURN_IF(kind < 0 || kind >= SP_ROTATE_COUNT, err, SP_EINVAL, "rotation kind %d", kind);
    rot->kind = kind;
    rot->seed = seed;
    if (kind == SP_ROTATE_NONE) return SP_OK;
    sp_status st = sp_rotate_create(&rot->r1, kind, c->dim, seed, err);
    if (st) sp_err_prefix(err, "hidden_size %d", c->dim);
    if (st == SP_OK) {
        st = sp_rotate_create(&rot->r2, kind, c->head_dim, seed + R2_SEED_OFFSET, err);
        if (st) sp_err_prefix(err, "head_dim %d", c->head_dim);
    }
    if (st) sp_rotation_free(rot);
    return st;
}

void sp_rotation_free(sp_rotation *rot) {
    sp_rotate_free(rot->r1);
    sp_rotate_free(rot->r2);
    rot->r1 = rot->r2 = NULL;
}

/* W [rows, cols] ← W·diag(g). */
static void fold_cols(float *W, size_t rows, size_t cols, const float *g) {
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) W[r * cols + c] *= g[c];
}

sp_status sp_rotation_block(const sp_rotation *rot, sp_block_weights *w, const sp_config *c,
                            sp_err *err) {
    if (rot->kind == SP_ROTATE_NONE) return SP_OK;
    size_t D = (size_t)c->dim, F = (size_t)c->hidden_dim, hd = (size_t)c->head_dim;
    size_t qd = (size_t)c->n_heads * hd, kvd = (size_t)c->n_kv_heads * hd;
    fold_cols(w->wq, qd, D, w->attn_norm);
    fold_cols(w->wk, kvd, D, w->attn_norm);
    fold_cols(w->wv, kvd, D, w->attn_norm);
    fold_cols(w->w_gate, F, D, w->ffn_norm);
    fold_cols(w->w_up, F, D, w->ffn_norm);
    for (size_t i = 0; i < D; i++) w->attn_norm[i] = w->ffn_norm[i] = 1.0f;
    const sp_rotate *q = rot->r1, *r2 = rot->r2;
    SP_FORWARD(sp_rotate_rows(q, w->wq, qd, D, err));
    SP_FORWARD(sp_rotate_rows(q, w->wk, kvd, D, err));
    SP_FORWARD(sp_rotate_rows(q, w->wv, kvd, D, err));
    SP_FORWARD(sp_rotate_rows(q, w->w_gate, F, D, err));
    SP_FORWARD(sp_rotate_rows(q, w->w_up, F, D, err));
    SP_FORWARD(sp_rotate_cols(q, w->wo, qd, qd, err));
    SP_FORWARD(sp_rotate_cols(q, w->w_down, F, F, err));
    /* R2: v_proj's rows of each KV head ← Rᵀ·W_h; o_proj's columns of every query head ← ·R
     * (the rows of wo are D·Hq consecutive segments of hd). */
    for (int h = 0; h < c->n_kv_heads; h++)
        SP_FORWARD(sp_rotate_cols(r2, w->wv + (size_t)h * hd * D, D, D, err));
    if (w->bv) SP_FORWARD(sp_rotation_v_bias(rot, w->bv, c, err));
    return sp_rotate_rows(r2, w->wo, D * (size_t)c->n_heads, hd, err);
}

sp_status sp_rotation_v_bias(const sp_rotation *rot, float *bv, const sp_config *c, sp_err *err) {
    if (rot->kind == SP_ROTATE_NONE) return SP_OK;
    /* b_h as a row: b_hᵀ·R = (Rᵀ b_h)ᵀ */
    return sp_rotate_rows(rot->r2, bv, (size_t)c->n_kv_heads, (size_t)c->head_dim, err);
}

sp_status sp_rotation_embed(const sp_rotation *rot, float *x, size_t rows, sp_err *err) {
    if (rot->kind == SP_ROTATE_NONE) return SP_OK;
    return sp_rotate_rows(rot->r1, x, rows, (size_t)rot->r1->n, err);
}

sp_status sp_rotation_head(const sp_rotation *rot, float *head_rows, size_t nv,
                           const float *final_norm, const sp_config *c, sp_err *err) {
    if (rot->kind == SP_ROTATE_NONE) return SP_OK;
    fold_cols(head_rows, nv, (size_t)c->dim, final_norm);
    return sp_rotate_rows(rot->r1, head_rows, nv, (size_t)c->dim, err);
}
