/* test_sgenome.c — the search space: stored-bits budget, initial genomes, level-switch
 * mutation, and the allocation solvers (exact DP, Lagrangian) against brute force. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "pipeline/search/sp_sgenome.h"

static const int LEVELS[4] = {2, 3, 4, 8};

/* Two layers of the bundled model's shapes (7 modules each), group 32. */
static void make_space(sp_sgenome_space *s, int layers, sp_sgroups how) {
    static const int64_t SH[7][2] = {{64, 64}, {32, 64}, {32, 64}, {64, 64}, {172, 64}, {172, 64}, {64, 172}};
    sp_err err;
    assert_int_equal(sp_sgenome_space_init(s, 7 * layers, 4, LEVELS, &err), SP_OK);
    for (int m = 0; m < 7 * layers; m++) sp_sgenome_set_shape(s, m, SH[m % 7][0], SH[m % 7][1], 32);
    sp_sgenome_set_groups(s, how);
}

/* cost = rows·cols·b + rows·groups·(16 + b), checked by hand for one module. */
static void test_cost(void **state) {
    (void)state;
    sp_sgenome_space s;
    make_space(&s, 1, SP_SGROUPS_SIZE);
    /* down_proj [64, 172], g32 -> 6 groups; at 3 bits: 64·172·3 + 64·6·19 */
    assert_int_equal(s.cost[6 * 4 + 1], 64 * 172 * 3 + 64 * 6 * 19);
    assert_int_equal(s.total, 64 * 64 * 2 + 32 * 64 * 2 + 172 * 64 * 3);
    uint8_t g[7];
    memset(g, 1, sizeof g);
    assert_true(fabs(sp_sgenome_avg(&s, g) - sp_sgenome_uniform_avg(&s, 1)) < 1e-15);
    assert_true(sp_sgenome_uniform_avg(&s, 1) > 3.0); /* the overhead is counted */
    /* groups by size: {q, o}, {k, v}, {gate, up}, {down}: down has as many weights as gate
     * but 6 groups per row instead of 2, so swapping levels with it would move the budget */
    assert_int_equal(s.n_groups, 4);
    assert_int_equal(s.group[0], s.group[3]);
    assert_int_equal(s.group[1], s.group[2]);
    assert_int_equal(s.group[4], s.group[5]);
    assert_int_not_equal(s.group[4], s.group[6]);
    assert_int_not_equal(s.group[0], s.group[4]);
    sp_sgenome_space_free(&s);
}

static void test_init(void **state) {
    (void)state;
    sp_sgenome_space s;
    make_space(&s, 2, SP_SGROUPS_SIZE);
    sp_err err;
    uint8_t g[14];
    uint64_t rng = sp_sgenome_seed(1, 2);
    int uni = 0;
    double u3 = sp_sgenome_uniform_avg(&s, 1);
    assert_int_equal(sp_sgenome_init(&s, u3, &rng, g, &uni, &err), SP_OK);
    assert_true(uni);
    for (int m = 0; m < 14; m++) assert_int_equal(g[m], 1);
    double t = 0.5 * (u3 + sp_sgenome_uniform_avg(&s, 2));
    assert_int_equal(sp_sgenome_init(&s, t, &rng, g, &uni, &err), SP_OK);
    assert_false(uni);
    assert_true(sp_sgenome_fits(&s, g, t));
    for (int m = 0; m < 14; m++) assert_true(g[m] <= 2); /* lowered from uniform 4 bits */
    assert_int_equal(sp_sgenome_init(&s, 2.0, &rng, g, &uni, &err), SP_EINVAL);
    assert_int_equal(sp_sgenome_init(&s, 9.5, &rng, g, &uni, &err), SP_EINVAL);
    sp_sgenome_space_free(&s);
}

/* Mutations fit, differ from the parent, change few modules, and keep the budget exactly
 * with size groups when the step costs match; the flip counts follow 5/9, 3/9, 1/9. */
static void test_mutate(void **state) {
    (void)state;
    for (int how = 0; how < 3; how++) {
        sp_sgenome_space s;
        make_space(&s, 2, (sp_sgroups)how);
        double t = sp_sgenome_uniform_avg(&s, 1);
        uint8_t p[14], c[14];
        memset(p, 1, sizeof p);
        uint64_t rng = sp_sgenome_seed(3, (uint64_t)how);
        int changed[15] = {0};
        for (int i = 0; i < 900; i++) {
            assert_int_equal(sp_sgenome_mutate(&s, p, t, (sp_sgroups)how, &rng, c), 1);
            assert_true(sp_sgenome_fits(&s, c, t));
            assert_memory_not_equal(p, c, sizeof p);
            int n = 0;
            for (int m = 0; m < 14; m++) n += c[m] != p[m];
            changed[n]++;
            if (how == SP_SGROUPS_SIZE) assert_int_equal(sp_sgenome_bits(&s, c), sp_sgenome_bits(&s, p));
        }
        if (how == SP_SGROUPS_SIZE) {
            /* 1 flip changes 2 modules (≈ 5/9 of draws), 2 flips up to 4, 3 flips up to 6 */
            assert_true(changed[2] > 400 && changed[2] < 620);
            assert_int_equal(changed[1] + changed[3] + changed[5], 0);
        }
        sp_sgenome_space_free(&s);
    }
}

/* Brute force over every genome of a small space: the least Σ e that fits, and whether any
 * genome fits at all. */
static double brute_best(const sp_sgenome_space *s, const double *e, double t, int *any) {
    int n = s->n, NL = s->n_levels;
    uint8_t g[8] = {0};
    double best = INFINITY;
    *any = 0;
    for (long code = 0;; code++) {
        long c = code;
        for (int m = 0; m < n; m++) { g[m] = (uint8_t)(c % NL); c /= NL; }
        if (c) break;
        if (!sp_sgenome_fits(s, g, t)) continue;
        *any = 1;
        double v = sp_sgenome_table_sum(s, e, g);
        if (v < best) best = v;
    }
    return best;
}

/* A small space of 3 to 6 modules with the bundled model's shapes; mode 1 gives some modules
 * GGUF-like costs (block bits not of the rows·cols·b + groups form). */
static void small_space(sp_sgenome_space *s, int n, int mode, uint64_t *rng) {
    static const int64_t SH[4][2] = {{64, 64}, {32, 64}, {172, 64}, {64, 172}};
    sp_err err;
    assert_int_equal(sp_sgenome_space_init(s, n, 4, LEVELS, &err), SP_OK);
    for (int m = 0; m < n; m++) {
        int i = (int)(sp_sgenome_rand(rng) % 4);
        sp_sgenome_set_shape(s, m, SH[i][0], SH[i][1], 32);
        if (mode == 1 && m % 2)
            for (int k = 0; k < 4; k++) /* Q2_K..Q6_K-like: 2.625, 3.4375, 4.5, 6.5625 bits */
                sp_sgenome_set_cost(s, m, k, SH[i][0] * SH[i][1] * (int64_t)(k == 0 ? 2625 : k == 1 ? 3437.5
                                    : k == 2 ? 4500 : 6562.5) / 1000);
    }
    sp_sgenome_set_groups(s, SP_SGROUPS_NONE);
}

/* The allocation solvers on spaces small enough to enumerate. The exact DP must reach brute
 * force's optimum at every target, for monotone (convex, like KL vs bits) and for arbitrary
 * tables; the Lagrangian must fit and stay near it on convex tables; both must succeed at every
 * target the lowest levels meet, and refuse one below. */
static void test_allocate(void **state) {
    (void)state;
    sp_err err;
    uint64_t rng = sp_sgenome_seed(42, 1);
    int checked = 0, lag_exact = 0;
    for (int trial = 0; trial < 60; trial++) {
        int n = 3 + trial % 4, mode = trial % 3 == 2, convex = trial % 2 == 0;
        sp_sgenome_space s;
        small_space(&s, n, mode, &rng);
        double e[8 * 4], range = 0;
        for (int m = 0; m < n; m++) {
            double w = 0.1 + (double)(sp_sgenome_rand(&rng) % 1000) / 100.0, mx = 0, mn = INFINITY;
            for (int k = 0; k < 4; k++) {
                e[m * 4 + k] = convex ? w * pow(4.0, -LEVELS[k]) * (1.0 + 0.3 * (double)(sp_sgenome_rand(&rng) % 100) / 100.0)
                                      : (double)(sp_sgenome_rand(&rng) % 10000) / 1000.0;
                mx = fmax(mx, e[m * 4 + k]);
                mn = fmin(mn, e[m * 4 + k]);
            }
            if (mx - mn > range) range = mx - mn;
        }
        double lo = sp_sgenome_uniform_avg(&s, 0), hi = sp_sgenome_uniform_avg(&s, 3);
        for (int i = 0; i <= 20; i++) {
            double t = lo + (hi - lo) * i / 20.0;
            int any = 0;
            double best = brute_best(&s, e, t, &any);
            uint8_t g[8], h[8];
            sp_status a = sp_sgenome_alloc_dp(&s, e, t, SP_SGENOME_DP_CELLS, g, &err);
            sp_status b = sp_sgenome_lagrange(&s, e, t, h, &err);
            if (!any) { /* only possible below the cheapest genome */
                assert_int_equal(a, SP_EINVAL);
                continue;
            }
            assert_int_equal(a, SP_OK);
            assert_int_equal(b, SP_OK);
            assert_true(sp_sgenome_fits(&s, g, t));
            assert_true(sp_sgenome_fits(&s, h, t));
            double v = sp_sgenome_table_sum(&s, e, g), vl = sp_sgenome_table_sum(&s, e, h);
            assert_true(fabs(v - best) <= 1e-12 * fabs(best));
            assert_true(vl >= best - 1e-12 * fabs(best));
            /* the LP relaxation of this multiple-choice knapsack has at most one fractional
             * module; the Lagrangian pick rounds it to its cheaper level, so it loses at most
             * one module's range of errors (the fill only improves on that) */
            assert_true(vl <= best + range + 1e-12 * fabs(best));
            lag_exact += fabs(vl - best) <= 1e-12 * fabs(best);
            checked++;
        }
        /* a tiny cell limit: the DP declines, allocate falls back to the Lagrangian */
        uint8_t g[8], h[8];
        int exact = 1;
        double t = 0.5 * (lo + hi);
        assert_int_equal(sp_sgenome_alloc_dp(&s, e, t, 4, g, &err), SP_EUNSUPPORTED);
        assert_int_equal(sp_sgenome_allocate(&s, e, t, 4, g, &exact, &err), SP_OK);
        assert_false(exact);
        assert_int_equal(sp_sgenome_allocate(&s, e, t, SP_SGENOME_DP_CELLS, h, &exact, &err), SP_OK);
        assert_true(exact);
        assert_int_equal(sp_sgenome_lagrange(&s, e, t, h, &err), SP_OK);
        assert_memory_equal(g, h, (size_t)n);
        assert_int_equal(sp_sgenome_allocate(&s, e, lo - 0.01, SP_SGENOME_DP_CELLS, g, &exact, &err), SP_EINVAL);
        sp_sgenome_space_free(&s);
    }
    assert_true(checked > 900);
    assert_true(lag_exact < checked); /* the instances include ones the relaxation misses */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cost), cmocka_unit_test(test_init), cmocka_unit_test(test_mutate),
        cmocka_unit_test(test_allocate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
