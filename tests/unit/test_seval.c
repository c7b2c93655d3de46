/* test_seval.c — the search's candidate evaluation (pipeline/search/sp_seval.h) on the bundled
 * model quantized here (round-to-nearest, levels 2,3,4,8, g32):
 *   - the prefix cache: a candidate's KL with the parent's states reused up to its first
 *     changed layer equals, bit for bit, its KL from a full re-run (a parent that differs from
 *     it in layer 0, so nothing is reused) and its KL as a parent itself;
 *   - the sensitivity table: entry (m, k) equals, bit for bit, a full re-run of the genome that
 *     is dense but for module m at level k, and the all-dense genome has KL 0 to the dense
 *     reference (up to the top-K records' rounding). */
#include <math.h>
#include <mpi.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "pipeline/quantize/sp_quantize.h"
#include "pipeline/search/sp_seval.h"
#include "kernels/sp_quant.h"

static char g_dir[256];

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/sp_test_seval_XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    char out[300], cal[700];
    snprintf(out, sizeof out, "%s/q", g_dir);
    /* the first 6000 bytes of calib.txt (ASCII): a pool of about 25 windows of 64 tokens */
    snprintf(cal, sizeof cal, "head -c 6000 %s/text/stories260K-samples/calib.txt >%s/calib.txt",
             SP_TEST_DATA_DIR, g_dir);
    if (system(cal) != 0) return -1;
    snprintf(cal, sizeof cal, "%s/calib.txt", g_dir);
    sp_quantize_opts o;
    sp_quantize_defaults(&o);
    o.model_dir = SP_TEST_MODEL_DIR;
    o.calib_path = cal;
    o.out_dir = out;
    o.bits = 3;
    o.n_levels = 4;
    o.levels[0] = 2; o.levels[1] = 3; o.levels[2] = 4; o.levels[3] = 8;
    o.group_size = 32;
    o.rtn = 1;
    o.scale_search = SP_QSEARCH_MINMAX;
    o.nsamples = 2;
    o.ctx = 64;
    sp_quantize_result r;
    memset(&r, 0, sizeof r);
    sp_err err;
    sp_status st = sp_quantize_run(MPI_COMM_WORLD, &o, &r, &err);
    free(r.peak_rss_mb);
    if (st != SP_OK) fprintf(stderr, "quantize: %s\n", err.msg);
    return st == SP_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static sp_seval *open_eval(void) {
    char q[300], cal[300];
    snprintf(q, sizeof q, "%s/q", g_dir);
    snprintf(cal, sizeof cal, "%s/calib.txt", g_dir);
    sp_seval_opts o;
    memset(&o, 0, sizeof o);
    o.qdir = q;
    o.calib_path = cal;
    o.ctx = 64;
    o.topk = 64;
    sp_seval *e = NULL;
    sp_err err;
    sp_status st = sp_seval_open(&e, MPI_COMM_WORLD, &o, &err);
    if (st) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(st, SP_OK);
    return e;
}

static void test_prefix_cache(void **state) {
    (void)state;
    sp_seval *e = open_eval();
    const sp_sgenome_space *s = sp_seval_space(e);
    int n = s->n, L = n / 7;
    assert_int_equal(L, 5);
    const int win[3] = {0, 3, 5};
    enum { NC = 5 };
    uint8_t parent[35], other[35], cg[NC][35];
    memset(parent, 1, sizeof parent);
    memcpy(other, parent, sizeof other);
    other[0] = 3; /* no candidate has 8 bits at module 0: nothing is shared with `other` */
    /* candidates whose first change is in layers 1, 2, 3, 4 (two changes) and 4 (the last) */
    const int first[NC] = {7, 15, 22, 29, 34};
    const uint8_t *c[NC];
    for (int j = 0; j < NC; j++) {
        memcpy(cg[j], parent, sizeof parent);
        cg[j][first[j]] = (uint8_t)(j % 2 ? 0 : 2);
        if (j == 3) cg[j][33] = 0;
        c[j] = cg[j];
    }
    double cached[NC], full[NC], alone[NC];
    sp_seval_counts k1, k2;
    sp_err err;
    assert_int_equal(sp_seval_run(e, win, 3, parent, c, NC, cached, &k1, &err), SP_OK);
    assert_int_equal(sp_seval_run(e, win, 3, other, c, NC, full, &k2, &err), SP_OK);
    for (int j = 0; j < NC; j++) {
        const uint8_t *one[1] = {cg[j]};
        assert_int_equal(sp_seval_run(e, win, 3, cg[j], one, 1, &alone[j], NULL, &err), SP_OK);
        assert_true(cached[j] > 0);
        assert_memory_equal(&cached[j], &full[j], sizeof(double));
        assert_memory_equal(&cached[j], &alone[j], sizeof(double));
    }
    /* the cache ran fewer layers: Σ (L − first layer) per window + the parent's pass */
    int64_t want = 0;
    for (int j = 0; j < NC; j++) want += L - first[j] / 7;
    assert_int_equal(k1.layer_evals, 3 * (want + (L - 1)));
    assert_int_equal(k2.layer_evals, 3 * (int64_t)NC * L);
    sp_seval_close(e);
}

static void test_sensitivity(void **state) {
    (void)state;
    sp_seval *e = open_eval();
    const sp_sgenome_space *s = sp_seval_space(e);
    int n = s->n, NL = s->n_levels;
    const int win[2] = {1, 4};
    double *t = calloc((size_t)n * (size_t)NL, sizeof *t);
    assert_non_null(t);
    sp_seval_counts k;
    sp_err err;
    assert_int_equal(sp_seval_sensitivity(e, win, 2, t, &k, &err), SP_OK);
    /* only layer(m) onward runs: Σ_m NL·(L − layer(m)) per window, plus the dense pass */
    int L = n / 7;
    int64_t want = 0;
    for (int m = 0; m < n; m++) want += (int64_t)NL * (L - m / 7);
    assert_int_equal(k.layer_evals, 2 * (want + (L - 1)));
    /* the all-dense genome (through the dense loader) matches the dense reference */
    uint8_t dense[35], alt[35];
    memset(dense, SP_SEVAL_DENSE, sizeof dense);
    memset(alt, 0, sizeof alt);
    const uint8_t *d1[1] = {dense};
    double f0 = -1;
    assert_int_equal(sp_seval_run(e, win, 2, alt, d1, 1, &f0, NULL, &err), SP_OK);
    assert_true(fabs(f0) < 1e-6);
    /* entries against full re-runs (a quantized parent: nothing shared) */
    const int pick[4][2] = {{0, 0}, {9, 1}, {20, 2}, {34, 0}};
    for (int i = 0; i < 4; i++) {
        int m = pick[i][0], lv = pick[i][1];
        uint8_t g[35];
        memset(g, SP_SEVAL_DENSE, sizeof g);
        g[m] = (uint8_t)lv;
        const uint8_t *one[1] = {g};
        double f = -1;
        assert_int_equal(sp_seval_run(e, win, 2, alt, one, 1, &f, NULL, &err), SP_OK);
        assert_memory_equal(&f, &t[m * NL + lv], sizeof f);
    }
    /* lower levels hurt more: 2-bit above 8-bit for every module */
    for (int m = 0; m < n; m++) assert_true(t[m * NL] > t[m * NL + NL - 1]);
    free(t);
    sp_seval_close(e);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefix_cache), cmocka_unit_test(test_sensitivity),
    };
    int r = cmocka_run_group_tests(tests, setup, teardown);
    MPI_Finalize();
    return r;
}
