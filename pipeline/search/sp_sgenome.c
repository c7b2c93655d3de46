/* sp_sgenome.c — see sp_sgenome.h. */
#include "pipeline/search/sp_sgenome.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

sp_status sp_sgenome_space_init(sp_sgenome_space *s, int n, int n_levels, const int *levels,
                                sp_err *err) {
    memset(s, 0, sizeof *s);
    SP_RETURN_IF(n < 1 || n_levels < 1 || n_levels > SP_SGENOME_MAX_LEVELS, err, SP_EINVAL,
                 "search: %d modules at %d levels", n, n_levels);
    s->n = n;
    s->n_levels = n_levels;
    memcpy(s->levels, levels, sizeof(int) * (size_t)n_levels);
    s->numel = sp_calloc((size_t)n, sizeof *s->numel, err, "module sizes");
    s->cost = s->numel ? sp_calloc((size_t)n * (size_t)n_levels, sizeof *s->cost, err, "costs") : NULL;
    s->group = s->cost ? sp_calloc((size_t)n, sizeof *s->group, err, "groups") : NULL;
    if (!s->group) {
        sp_sgenome_space_free(s);
        return SP_ENOMEM;
    }
    return SP_OK;
}

void sp_sgenome_space_free(sp_sgenome_space *s) {
    free(s->numel);
    free(s->cost);
    free(s->group);
    memset(s, 0, sizeof *s);
}

void sp_sgenome_set_shape(sp_sgenome_space *s, int m, int64_t rows, int64_t cols, int group_size) {
    int64_t groups = group_size <= 0 ? 1 : (cols + group_size - 1) / group_size;
    s->total += rows * cols - s->numel[m];
    s->numel[m] = rows * cols;
    for (int k = 0; k < s->n_levels; k++) {
        int64_t b = s->levels[k];
        s->cost[(size_t)m * (size_t)s->n_levels + (size_t)k] = rows * cols * b + rows * groups * (16 + b);
    }
}

void sp_sgenome_set_cost(sp_sgenome_space *s, int m, int k, int64_t bits) {
    s->cost[(size_t)m * (size_t)s->n_levels + (size_t)k] = bits;
}

void sp_sgenome_set_groups(sp_sgenome_space *s, sp_sgroups how) {
    s->n_groups = 0;
    for (int m = 0; m < s->n; m++) {
        int g = -1;
        for (int p = 0; p < m && g < 0; p++) {
            int same = how == SP_SGROUPS_NONE ? 1
                     : how == SP_SGROUPS_NAME ? p % 7 == m % 7
                     : s->numel[p] == s->numel[m] &&
                       s->cost[(size_t)p * (size_t)s->n_levels] == s->cost[(size_t)m * (size_t)s->n_levels];
            if (same) g = s->group[p];
        }
        s->group[m] = g >= 0 ? g : s->n_groups++;
    }
}

int64_t sp_sgenome_bits(const sp_sgenome_space *s, const uint8_t *g) {
    int64_t b = 0;
    for (int m = 0; m < s->n; m++) b += s->cost[(size_t)m * (size_t)s->n_levels + g[m]];
    return b;
}

double sp_sgenome_avg(const sp_sgenome_space *s, const uint8_t *g) {
    return (double)sp_sgenome_bits(s, g) / (double)s->total;
}

int sp_sgenome_fits(const sp_sgenome_space *s, const uint8_t *g, double target) {
    return sp_sgenome_avg(s, g) <= target + SP_SGENOME_TOL;
}

double sp_sgenome_uniform_avg(const sp_sgenome_space *s, int k) {
    int64_t b = 0;
    for (int m = 0; m < s->n; m++) b += s->cost[(size_t)m * (size_t)s->n_levels + (size_t)k];
    return (double)b / (double)s->total;
}

uint64_t sp_sgenome_rand(uint64_t *st) {
    *st ^= *st >> 12;
    *st ^= *st << 25;
    *st ^= *st >> 27;
    return *st * 0x2545F4914F6CDD1Dull;
}

uint64_t sp_sgenome_seed(uint64_t seed, uint64_t stream) {
    /* splitmix64 of (seed, stream): independent streams for generations and stages. */
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + stream * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return z ? z : 1;
}

static int randint(uint64_t *rng, int n) { return (int)(sp_sgenome_rand(rng) % (uint64_t)n); }

/* Lower random modules (one level each draw) until g fits; 0 if it cannot. */
static int lower_until_fits(const sp_sgenome_space *s, uint8_t *g, double target, uint64_t *rng) {
    for (long tries = 0; !sp_sgenome_fits(s, g, target); tries++) {
        if (tries > 1000L * s->n) return 0;
        int m = randint(rng, s->n);
        if (g[m] > 0) g[m]--;
    }
    return 1;
}

sp_status sp_sgenome_init(const sp_sgenome_space *s, double target, uint64_t *rng, uint8_t *g,
                          int *uniform, sp_err *err) {
    double lo = sp_sgenome_uniform_avg(s, 0), hi = sp_sgenome_uniform_avg(s, s->n_levels - 1);
    SP_RETURN_IF(target < lo - SP_SGENOME_TOL || target > hi + SP_SGENOME_TOL, err, SP_EINVAL,
                 "search: --target-bits %.6f is outside what the stored levels allow: %.6f "
                 "(uniform %d-bit) to %.6f (uniform %d-bit)", target, lo, s->levels[0], hi,
                 s->levels[s->n_levels - 1]);
    int above = 0;
    for (int k = 0; k < s->n_levels; k++) {
        double a = sp_sgenome_uniform_avg(s, k);
        if (fabs(a - target) <= SP_SGENOME_TOL) {
            memset(g, k, (size_t)s->n);
            *uniform = 1;
            return SP_OK;
        }
        if (a > target) {
            above = k;
            break;
        }
    }
    *uniform = 0;
    memset(g, above, (size_t)s->n);
    SP_RETURN_IF(!lower_until_fits(s, g, target, rng), err, SP_EINVAL,
                 "search: no genome fits --target-bits %.6f", target);
    return SP_OK;
}

int sp_sgenome_first_diff(const sp_sgenome_space *s, const uint8_t *a, const uint8_t *b) {
    for (int m = 0; m < s->n; m++)
        if (a[m] != b[m]) return m;
    return s->n;
}

/* One level switch inside a group: a module one level down, another of its group one up. */
static int flip_in_group(const sp_sgenome_space *s, uint8_t *g, double target, uint64_t *rng) {
    int top = s->n_levels - 1;
    for (int tries = 0; tries < 1000; tries++) {
        int a = randint(rng, s->n), b = randint(rng, s->n);
        if (a == b || s->group[a] != s->group[b] || g[a] == 0 || g[b] == top) continue;
        g[a]--;
        g[b]++;
        if (sp_sgenome_fits(s, g, target)) return 1;
        g[a]++;
        g[b]--;
    }
    return 0;
}

int sp_sgenome_mutate(const sp_sgenome_space *s, const uint8_t *parent, double target,
                      sp_sgroups how, uint64_t *rng, uint8_t *child) {
    int top = s->n_levels - 1;
    for (int attempt = 0; attempt < 1000; attempt++) {
        memcpy(child, parent, (size_t)s->n);
        int r1 = 1 + randint(rng, 3), r2 = 1 + randint(rng, 3);
        int flips = r1 < r2 ? r1 : r2;
        int ok = 1;
        for (int f = 0; f < flips && ok; f++) {
            if (how != SP_SGROUPS_NONE) {
                ok = flip_in_group(s, child, target, rng);
            } else {
                int m = -1;
                for (int t = 0; t < 1000 && m < 0; t++) {
                    int c = randint(rng, s->n);
                    if (child[c] < top) m = c;
                }
                if (m < 0) { ok = 0; break; }
                child[m]++;
                ok = lower_until_fits(s, child, target, rng);
            }
        }
        if (ok && memcmp(child, parent, (size_t)s->n) != 0) return 1;
    }
    return 0;
}

/* argmin_k err + λ·cost for every module, into g. */
static void lagrange_pick(const sp_sgenome_space *s, const double *e, double lambda, uint8_t *g) {
    for (int m = 0; m < s->n; m++) {
        int best = 0;
        double bv = INFINITY;
        for (int k = 0; k < s->n_levels; k++) {
            size_t i = (size_t)m * (size_t)s->n_levels + (size_t)k;
            double v = e[i] + lambda * (double)s->cost[i];
            if (v < bv) { bv = v; best = k; }
        }
        g[m] = (uint8_t)best;
    }
}

sp_status sp_sgenome_lagrange(const sp_sgenome_space *s, const double *e, double target,
                              uint8_t *g, sp_err *err) {
    memset(g, 0, (size_t)s->n);
    SP_RETURN_IF(!sp_sgenome_fits(s, g, target), err, SP_EINVAL,
                 "search: --target-bits %.6f is below uniform %d-bit (%.6f)", target,
                 s->levels[0], sp_sgenome_avg(s, g));
    /* λ = 0 takes the lowest error everywhere; a large λ the cheapest level. Find the
     * smallest λ (60 halvings of the bracket) whose choice fits. */
    double lo = 0.0, hi = 1.0;
    lagrange_pick(s, e, 0.0, g);
    if (!sp_sgenome_fits(s, g, target)) {
        for (int i = 0; i < 200; i++) {
            lagrange_pick(s, e, hi, g);
            if (sp_sgenome_fits(s, g, target)) break;
            hi *= 4.0;
        }
        for (int i = 0; i < 60; i++) {
            double mid = 0.5 * (lo + hi);
            lagrange_pick(s, e, mid, g);
            if (sp_sgenome_fits(s, g, target)) hi = mid;
            else lo = mid;
        }
        lagrange_pick(s, e, hi, g);
    }
    /* Spend what is left: the upgrade with the largest error drop per extra bit that fits. */
    for (;;) {
        int bm = -1;
        double br = 0.0;
        for (int m = 0; m < s->n; m++) {
            if (g[m] + 1 >= s->n_levels) continue;
            size_t i = (size_t)m * (size_t)s->n_levels + g[m];
            double de = e[i] - e[i + 1];
            double dc = (double)(s->cost[i + 1] - s->cost[i]);
            if (de <= 0.0) continue;
            g[m]++;
            int fits = sp_sgenome_fits(s, g, target);
            g[m]--;
            if (fits && de / dc > br) { br = de / dc; bm = m; }
        }
        if (bm < 0) break;
        g[bm]++;
    }
    return SP_OK;
}

double sp_sgenome_table_sum(const sp_sgenome_space *s, const double *e, const uint8_t *g) {
    double v = 0.0;
    for (int m = 0; m < s->n; m++) v += e[(size_t)m * (size_t)s->n_levels + g[m]];
    return v;
}

static int64_t gcd64(int64_t a, int64_t b) {
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* The largest stored-bits total that fits the target, by the same test as sp_sgenome_fits. */
static int64_t budget_bits(const sp_sgenome_space *s, double target) {
    int64_t B = (int64_t)floor((target + SP_SGENOME_TOL) * (double)s->total);
    while (B > 0 && !((double)B / (double)s->total <= target + SP_SGENOME_TOL)) B--;
    while ((double)(B + 1) / (double)s->total <= target + SP_SGENOME_TOL) B++;
    return B;
}

sp_status sp_sgenome_alloc_dp(const sp_sgenome_space *s, const double *e, double target,
                              int64_t max_cells, uint8_t *g, sp_err *err) {
    int n = s->n, NL = s->n_levels;
    int64_t B = budget_bits(s, target), base = 0, q = 0, span = 0;
    for (int m = 0; m < n; m++) {
        const int64_t *c = s->cost + (size_t)m * (size_t)NL;
        int64_t lo = c[0], hi = c[0];
        for (int k = 1; k < NL; k++) {
            if (c[k] < lo) lo = c[k];
            if (c[k] > hi) hi = c[k];
        }
        base += lo;
        span += hi - lo;
        for (int k = 0; k < NL; k++) q = gcd64(q, c[k] - lo);
    }
    SP_RETURN_IF(base > B, err, SP_EINVAL, "search: --target-bits %.6f is below the cheapest "
                 "genome (%.6f)", target, (double)base / (double)s->total);
    if (q == 0) q = 1; /* every level costs the same: any genome fits */
    int64_t U = (B - base) / q, top = span / q;
    if (U > top) U = top;
    SP_RETURN_IF((double)n * (double)(U + 1) > (double)max_cells, err, SP_EUNSUPPORTED,
                 "search: exact allocation needs %.0f cells (limit %lld)",
                 (double)n * (double)(U + 1), (long long)max_cells);
    size_t W = (size_t)U + 1;
    double *f = sp_malloc(W * sizeof *f, err, "allocation table");
    double *h = f ? sp_malloc(W * sizeof *h, err, "allocation table") : NULL;
    uint8_t *ch = h ? sp_malloc((size_t)n * W, err, "allocation choices") : NULL;
    int *w = ch ? sp_malloc((size_t)NL * sizeof *w, err, "allocation weights") : NULL;
    if (!w) {
        free(f); free(h); free(ch);
        return SP_ENOMEM;
    }
    for (size_t u = 0; u < W; u++) f[u] = 0.0;
    for (int m = 0; m < n; m++) {
        const int64_t *c = s->cost + (size_t)m * (size_t)NL;
        int64_t lo = c[0];
        for (int k = 1; k < NL; k++) if (c[k] < lo) lo = c[k];
        for (int k = 0; k < NL; k++) w[k] = (int)((c[k] - lo) / q);
        const double *em = e + (size_t)m * (size_t)NL;
        uint8_t *cm = ch + (size_t)m * W;
        for (size_t u = 0; u < W; u++) {
            double best = INFINITY;
            int bk = 0;
            for (int k = 0; k < NL; k++) {
                if ((size_t)w[k] > u) continue;
                double v = f[u - (size_t)w[k]] + em[k];
                if (v < best) { best = v; bk = k; }
            }
            h[u] = best;
            cm[u] = (uint8_t)bk;
        }
        double *t = f; f = h; h = t;
    }
    /* Backtrack from the whole budget: module m took level cm[u], leaving u − w. */
    size_t u = W - 1;
    for (int m = n - 1; m >= 0; m--) {
        const int64_t *c = s->cost + (size_t)m * (size_t)NL;
        int64_t lo = c[0];
        for (int k = 1; k < NL; k++) if (c[k] < lo) lo = c[k];
        int k = ch[(size_t)m * W + u];
        g[m] = (uint8_t)k;
        u -= (size_t)((c[k] - lo) / q);
    }
    free(f); free(h); free(ch); free(w);
    return SP_OK;
}

sp_status sp_sgenome_allocate(const sp_sgenome_space *s, const double *e, double target,
                              int64_t max_cells, uint8_t *g, int *exact, sp_err *err) {
    sp_status st = sp_sgenome_alloc_dp(s, e, target, max_cells, g, err);
    if (exact) *exact = st == SP_OK;
    if (st != SP_EUNSUPPORTED) return st;
    return sp_sgenome_lagrange(s, e, target, g, err);
}
