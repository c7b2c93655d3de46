/* test_sgenome.c — the search space: stored-bits budget, initial genomes, level-switch
 * mutation, and the greedy (Lagrangian) allocation against brute force. */
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

/* Greedy on a space small enough to enumerate (3 modules x 4 levels): the Lagrangian + fill
 * result fits and is within the best error found by brute force for convex errors. */
static void test_greedy(void **state) {
    (void)state;
    sp_sgenome_space s;
    sp_err err;
    assert_int_equal(sp_sgenome_space_init(&s, 3, 4, LEVELS, &err), SP_OK);
    sp_sgenome_set_shape(&s, 0, 64, 64, 32);
    sp_sgenome_set_shape(&s, 1, 32, 64, 32);
    sp_sgenome_set_shape(&s, 2, 64, 172, 32);
    double e[12];
    double w[3] = {5.0, 1.0, 2.0};
    for (int m = 0; m < 3; m++)
        for (int k = 0; k < 4; k++) e[m * 4 + k] = w[m] * pow(4.0, -LEVELS[k]);
    for (double t = 2.7; t < 8.5; t += 0.37) {
        uint8_t g[3];
        if (sp_sgenome_greedy(&s, e, t, g, &err) != SP_OK) continue;
        assert_true(sp_sgenome_fits(&s, g, t));
        double mine = e[g[0]] + e[4 + g[1]] + e[8 + g[2]], best = INFINITY;
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 4; b++)
                for (int c = 0; c < 4; c++) {
                    uint8_t h[3] = {(uint8_t)a, (uint8_t)b, (uint8_t)c};
                    double v = e[a] + e[4 + b] + e[8 + c];
                    if (sp_sgenome_fits(&s, h, t) && v < best) best = v;
                }
        assert_true(mine <= best * 1.5 + 1e-300); /* a knapsack relaxation: near the optimum */
    }
    uint8_t g[3];
    assert_int_equal(sp_sgenome_greedy(&s, e, 2.0, g, &err), SP_EINVAL);
    sp_sgenome_space_free(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cost), cmocka_unit_test(test_init), cmocka_unit_test(test_mutate),
        cmocka_unit_test(test_greedy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
