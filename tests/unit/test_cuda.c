/* test_cuda.c — the parts of the CUDA path that run without a GPU: device choice (pure
 * functions and the launcher's environment), the --device parser, and what a build or a
 * machine without CUDA answers (one clear error, the CPU path untouched). The GPU kernels
 * against the CPU are in test_cuda_kernels.c (skipped without a GPU). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/sp_cuda.h"
#include "kernels/sp_gptq.h"
#include "kernels/sp_hacc.h"
#include "kernels/sp_ops.h"
#include "pipeline/plan/sp_plan.h"
#include "pipeline/sp_device.h"

static void test_pick(void **state) {
    (void)state;
    assert_int_equal(sp_cuda_pick(0, 8), 0);
    assert_int_equal(sp_cuda_pick(3, 8), 3);
    assert_int_equal(sp_cuda_pick(9, 8), 1);   /* more ranks than GPUs on a node: wrap */
    assert_int_equal(sp_cuda_pick(5, 1), 0);   /* CUDA_VISIBLE_DEVICES per rank: device 0 */
    assert_int_equal(sp_cuda_pick(-1, 4), 0);  /* unknown local rank */
    assert_int_equal(sp_cuda_pick(2, 0), 0);
}

static void test_env_local_rank(void **state) {
    (void)state;
    const char *vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID",
                          "PMI_LOCAL_RANK"};
    char *saved[4];
    for (int i = 0; i < 4; i++) {
        const char *v = getenv(vars[i]);
        saved[i] = v ? strdup(v) : NULL;
        unsetenv(vars[i]);
    }
    assert_int_equal(sp_cuda_env_local_rank(), -1);
    setenv("SLURM_LOCALID", "3", 1);
    assert_int_equal(sp_cuda_env_local_rank(), 3);
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "5", 1); /* Open MPI's own variable wins */
    assert_int_equal(sp_cuda_env_local_rank(), 5);
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "x1", 1); /* invalid: the next one is used */
    assert_int_equal(sp_cuda_env_local_rank(), 3);
    for (int i = 0; i < 4; i++) {
        if (saved[i]) setenv(vars[i], saved[i], 1);
        else unsetenv(vars[i]);
        free(saved[i]);
    }
}

static void test_parse(void **state) {
    (void)state;
    int d = -5;
    sp_err e = {SP_OK, ""};
    assert_int_equal(sp_device_parse("cpu"), SP_DEVICE_CPU);
    assert_int_equal(sp_device_parse("cuda"), SP_DEVICE_CUDA);
    assert_int_equal(sp_device_parse("auto"), SP_DEVICE_AUTO);
    assert_int_equal(sp_device_parse("gpu"), -1);
    assert_int_equal(sp_device_parse(NULL), -1);
    assert_int_equal(sp_device_arg("cuda", &d, &e), SP_OK);
    assert_int_equal(d, SP_DEVICE_CUDA);
    assert_int_equal(sp_device_arg("tpu", &d, &e), SP_EINVAL);
    assert_non_null(strstr(e.msg, "--device: 'tpu' is not cpu or cuda"));
    assert_string_equal(sp_device_name(SP_DEVICE_CPU), "cpu");
    assert_string_equal(sp_device_name(SP_DEVICE_CUDA), "cuda");
}

/* cpu never opens a device; auto opens one only with the build and a GPU on every rank;
 * cuda without them fails with one line that says why. */
static void test_open(void **state) {
    (void)state;
    sp_err e = {SP_OK, ""};
    sp_cuda *g = (sp_cuda *)1;
    assert_int_equal(sp_device_open(MPI_COMM_WORLD, SP_DEVICE_CPU, &g, &e), SP_OK);
    assert_null(g);
    int have = sp_cuda_built() && sp_cuda_device_count() > 0;
#ifdef SP_HAVE_CUDA
    assert_int_equal(sp_cuda_built(), 1);
#else
    assert_int_equal(sp_cuda_built(), 0);
    assert_int_equal(sp_cuda_device_count(), 0);
#endif
    assert_int_equal(sp_device_open(MPI_COMM_WORLD, SP_DEVICE_AUTO, &g, &e), SP_OK);
    assert_true(have ? g != NULL : g == NULL);
    sp_cuda_close(g);
    sp_status st = sp_device_open(MPI_COMM_WORLD, SP_DEVICE_CUDA, &g, &e);
    if (have) {
        assert_int_equal(st, SP_OK);
        assert_non_null(g);
        sp_cuda_close(g);
    } else {
        assert_int_equal(st, SP_EUNSUPPORTED);
        assert_null(g);
        assert_non_null(strstr(e.msg, "--device cuda: "));
        assert_non_null(strstr(e.msg, sp_cuda_built() ? "no CUDA device is visible"
                                                      : "built without CUDA"));
        assert_null(strchr(e.msg, '\n'));
    }
}

/* Without the build the device halves refuse and leave the CPU objects usable. */
static void test_stubs_without_build(void **state) {
    (void)state;
    if (sp_cuda_built()) {
        skip();
        return;
    }
    sp_err e = {SP_OK, ""};
    sp_cuda *g = (sp_cuda *)1;
    assert_int_equal(sp_cuda_open(&g, 0, &e), SP_EUNSUPPORTED);
    assert_null(g);
    assert_non_null(strstr(e.msg, "-DSP_CUDA=ON"));
    sp_hacc h;
    assert_int_equal(sp_hacc_init(&h, 8, 4, 4, 1.0, &e), SP_OK);
    assert_int_equal(sp_hacc_use_cuda(&h, NULL, &e), SP_EUNSUPPORTED);
    float X[32];
    for (int i = 0; i < 32; i++) X[i] = (float)((i % 7) - 3) / 4.0f;
    assert_int_equal(sp_hacc_add(&h, X, 4, &e), SP_OK); /* still the CPU accumulator */
    sp_hacc_free(&h);
    /* The linear stub is the CPU product. */
    float w[6] = {1, 2, 3, 4, 5, 6}, x[2] = {1, -1}, o1[3], o2[3];
    sp_cuda_linear(NULL, o1, x, w, NULL, 1, 2, 3, 0);
    sp_linear_forward(o2, x, w, NULL, 1, 2, 3, 0);
    assert_memory_equal(o1, o2, sizeof o1);
}

/* plan --gpu-mem for a Llama-2-70B block (D 8192, F 28672, 64/8 heads, ctx 2048): the terms
 * are the device allocations of kernels/cuda, so check them against the formulas. */
static void test_plan_gpu(void **state) {
    (void)state;
    sp_config c;
    memset(&c, 0, sizeof c);
    c.dim = 8192, c.hidden_dim = 28672, c.n_layers = 80, c.n_heads = 64, c.n_kv_heads = 8;
    c.head_dim = 128, c.vocab_size = 32000, c.max_seq_len = 4096, c.rope_theta = 10000;
    sp_plan_model m;
    sp_plan_model_from_config(&m, &c, SP_DTYPE_BF16);
    sp_plan_opts o;
    sp_plan_opts_default(&o);
    o.ctx = 2048;
    sp_plan_gpu g;
    sp_plan_gpu_predict(&m, &o, &g);
    assert_int_equal(g.fits, -1); /* no --gpu-mem */
    const double D = 8192, F = 28672, T = 2048;
    /* the block in fp32: 4 D² (q, o; k, v are D/8 wide) ... at least the MLP's 3·D·F */
    assert_true(g.weights >= 3 * D * F * 4 && g.weights < 3.5 * D * F * 4 + 4 * D * D * 4);
    /* sp_cuda_hacc_new per Hessian (q/k/v and gate/up of width D, o of 64·128 = D, down of F):
     * packed int64, the window in fp32 + double, one 2048-column double panel */
    double hb = 0;
    const double n4[4] = {D, D, D, F};
    for (int h = 0; h < 4; h++) hb += n4[h] * (n4[h] + 1) / 2 * 8 + T * n4[h] * 12 + n4[h] * 2048 * 8 + 16;
    assert_true(fabs(g.hessians - hb) < 1.0);
    /* one rank factors every Hessian: F² + 3·D² floats */
    assert_true(g.factors == (F * F + 3 * D * D) * 4);
    /* the largest unit: down_proj [D, F], 8192 rows: W, X (fp32), Ct, codes (bytes) */
    assert_true(g.gptq_work >= D * F * 10 && g.gptq_work < D * F * 10 * 1.1);
    assert_true(g.peak == (g.weights + g.linear + g.hessians > g.factors + g.gptq_work
                               ? g.weights + g.linear + g.hessians : g.factors + g.gptq_work));
    assert_true(g.linear == T * F * 4 * 2);
    o.gpu_mem = 141e9;
    sp_plan_gpu_predict(&m, &o, &g);
    assert_int_equal(g.fits, 1);
    o.gpu_mem = 8e9;
    sp_plan_gpu_predict(&m, &o, &g);
    assert_int_equal(g.fits, 0);
    /* 4 ranks: the factors of one Hessian (the largest) per rank */
    o.ranks = 4;
    sp_plan_gpu_predict(&m, &o, &g);
    assert_true(g.factors == F * F * 4);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pick),          cmocka_unit_test(test_env_local_rank),
        cmocka_unit_test(test_parse),         cmocka_unit_test(test_open),
        cmocka_unit_test(test_stubs_without_build), cmocka_unit_test(test_plan_gpu),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Finalize();
    return rc;
}
