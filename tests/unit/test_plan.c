/* test_plan.c — `shardpress plan`: the memory prediction of quantize, the time model's
 * monotonicity, and the errors for bad models, options and rates files.
 *
 * Expected byte counts are written out here from the allocations of pipeline/quantize/sp_quantize.c
 * and the kernels (independently of pipeline/plan/sp_plan.c's code), for the bundled model and for
 * a Llama-2-70B-shaped model whose weight files are sparse: real safetensors headers with
 * the data area left as a hole (nothing is ever read from it).
 */
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "pipeline/plan/sp_plan.h"
#include "pipeline/quantize/sp_schedule.h"

#define GIB 1073741824.0

/* ---- files ---------------------------------------------------------------------------------- */

static void tmpdir(char *buf, size_t cap) {
    snprintf(buf, cap, "%s/sp-plan-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(buf));
}

static void rmtree(const char *dir) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void write_str(const char *dir, const char *name, const char *text) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* A safetensors file with these tensors (BF16) whose data area is a hole. */
typedef struct {
    char name[96];
    int64_t rows, cols; /* cols 0: 1-D */
} tdesc;

static void write_sparse_st(const char *path, const tdesc *t, int n) {
    size_t cap = (size_t)n * 200 + 64, len = 0;
    char *h = malloc(cap);
    assert_non_null(h);
    len += (size_t)snprintf(h + len, cap - len, "{");
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        uint64_t b = (uint64_t)t[i].rows * (uint64_t)(t[i].cols ? t[i].cols : 1) * 2;
        if (t[i].cols)
            len += (size_t)snprintf(h + len, cap - len, "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":"
                                    "[%lld,%lld],\"data_offsets\":[%llu,%llu]}", i ? "," : "",
                                    t[i].name, (long long)t[i].rows, (long long)t[i].cols,
                                    (unsigned long long)off, (unsigned long long)(off + b));
        else
            len += (size_t)snprintf(h + len, cap - len, "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":"
                                    "[%lld],\"data_offsets\":[%llu,%llu]}", i ? "," : "",
                                    t[i].name, (long long)t[i].rows, (unsigned long long)off,
                                    (unsigned long long)(off + b));
        off += b;
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    while (len % 8) h[len++] = ' ';
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    uint64_t hl = len;
    assert_int_equal(write(fd, &hl, 8), 8);
    assert_int_equal(write(fd, h, len), (ssize_t)len);
    assert_int_equal(ftruncate(fd, (off_t)(8 + len + off)), 0);
    assert_int_equal(close(fd), 0);
    free(h);
}

/* Llama 2 70B: D 8192, F 28672, 80 layers, 64/8 heads, vocab 32000, untied; two shards. */
#define L70 80
static void write_70b(const char *dir, const char *bad_tensor) {
    write_str(dir, "config.json",
              "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8192, "
              "\"intermediate_size\": 28672, \"num_hidden_layers\": 80, "
              "\"num_attention_heads\": 64, \"num_key_value_heads\": 8, \"vocab_size\": 32000, "
              "\"max_position_embeddings\": 4096, \"rms_norm_eps\": 1e-05, "
              "\"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\"}");
    int cap = 9 * L70 + 3, n = 0;
    tdesc *t = calloc((size_t)cap, sizeof *t);
    assert_non_null(t);
    const int64_t D = 8192, F = 28672, kv = 1024, V = 32000;
    snprintf(t[n].name, sizeof t[n].name, "model.embed_tokens.weight");
    t[n].rows = V, t[n++].cols = D;
    for (int l = 0; l < L70; l++) {
        static const char *sfx[9] = {"input_layernorm", "self_attn.q_proj", "self_attn.k_proj",
                                     "self_attn.v_proj", "self_attn.o_proj",
                                     "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj",
                                     "mlp.down_proj"};
        const int64_t rows[9] = {D, D, kv, kv, D, D, F, F, D}, cols[9] = {0, D, D, D, D, 0, D, D, F};
        for (int i = 0; i < 9; i++) {
            snprintf(t[n].name, sizeof t[n].name, "model.layers.%d.%s.weight", l, sfx[i]);
            t[n].rows = rows[i], t[n++].cols = cols[i];
        }
    }
    snprintf(t[n].name, sizeof t[n].name, "model.norm.weight");
    t[n].rows = D, t[n++].cols = 0;
    snprintf(t[n].name, sizeof t[n].name, "lm_head.weight");
    t[n].rows = V, t[n++].cols = D;
    for (int i = 0; bad_tensor && i < n; i++)
        if (!strcmp(t[i].name, bad_tensor)) t[i].rows += 1;
    int half = n / 2;
    char p[4096];
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
    write_sparse_st(p, t, half);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    write_sparse_st(p, t + half, n - half);
    size_t icap = (size_t)n * 140 + 128, len = 0;
    char *idx = malloc(icap);
    assert_non_null(idx);
    len += (size_t)snprintf(idx, icap, "{\"metadata\": {}, \"weight_map\": {");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(idx + len, icap - len, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"",
                                i ? ", " : "", t[i].name, i < half ? 1 : 2);
    snprintf(idx + len, icap - len, "}}");
    write_str(dir, "model.safetensors.index.json", idx);
    free(idx);
    free(t);
}

/* Which of the 4 Hessians (q/k/v, o, gate/up, down inputs) `rank` uses, by quantize's own
 * scheduler over the 7 modules at the given levels. */
/* The Hessians (need) and the fp32 weight elements (owned: the modules it quantizes) a rank
 * uses, from quantize's own scheduler. */
static void hessians_used(int rank, int ranks, double D, double q, double kv, double F,
                          const int *levels, int n_levels, int need[4], double *owned) {
    sp_unit u[7 * 7];
    const double rows[7] = {q, kv, kv, D, F, F, D}, cols[7] = {D, D, D, q, D, D, F};
    const int hs[7] = {0, 0, 0, 1, 2, 2, 3};
    int n = 0;
    for (int m = 0; m < 7; m++)
        for (int l = 0; l < n_levels; l++, n++)
            u[n] = (sp_unit){.module = m, .bits = levels[l], .hessian = hs[m],
                             .rows = (int)rows[m], .cols = (int)cols[m]};
    sp_err err = {0};
    assert_int_equal(sp_schedule_assign(u, n, ranks, 4, 1, &err), SP_OK);
    int mine[7] = {0};
    for (int h = 0; h < 4; h++) need[h] = 0;
    for (int i = 0; i < n; i++)
        if (u[i].owner == rank) need[u[i].hessian] = mine[u[i].module] = 1;
    *owned = 0;
    for (int m = 0; m < 7; m++) *owned += mine[m] ? rows[m] * cols[m] : 0;
}

static sp_plan_rates fixed_rates(void) {
    sp_plan_rates r;
    sp_plan_rates_default(&r);
    r.base_mb = 30;
    return r;
}

/* ---- the bundled model -------------------------------------------------------------------- */

static void test_bundled(void **state) {
    (void)state;
    sp_plan_model m;
    sp_err err = {0};
    assert_int_equal(sp_plan_model_read(&m, SP_TEST_MODEL_DIR, &err), SP_OK);
    assert_string_equal(m.format, "safetensors");
    assert_int_equal(m.dtype, SP_DTYPE_F32);
    assert_int_equal(m.cfg.dim, 64);
    /* block as stored: 2 norms + q 64x64 + k, v 32x64 + o 64x64 + 3 x 64x172, fp32 */
    double block = 4.0 * (2 * 64 + 64 * 64 + 2 * 32 * 64 + 64 * 64 + 3 * 64 * 172);
    assert_true(m.block_bytes == block);
    assert_true(m.embed_bytes == 4.0 * 512 * 64);
    assert_true(m.head_bytes == 0);
    assert_true(m.file_bytes == 5 * block + 4.0 * 512 * 64 + 4.0 * 64);

    /* the llama2.c file gives the same figures */
    sp_plan_model b;
    assert_int_equal(sp_plan_model_read(&b, SP_TEST_MODEL_DIR "/stories260K.bin", &err), SP_OK);
    assert_string_equal(b.format, "llama2c");
    assert_true(b.block_bytes == block);
    assert_int_equal(b.cfg.n_kv_heads, 4);

    sp_plan_opts o;
    sp_plan_opts_default(&o);
    o.ranks = 2, o.nsamples = 8, o.ctx = 128, o.group_size = 32;
    sp_plan_rates r = fixed_rates();
    sp_plan_result res;
    assert_int_equal(sp_plan_predict(&m, &o, &r, &res, &err), SP_OK);
    const sp_plan_rank *r0 = &res.rank0, *r1 = &res.other;
    assert_int_equal(r0->windows, 4);
    assert_int_equal(r1->rank, 1);
    assert_string_equal(r0->peak_at, "finish"); /* HDF5 while writing the container */
    assert_string_equal(r1->peak_at, "hessian");
    /* rank 1 at its GPTQ peak. X_r: 4 windows x 128 tokens x 64 x 4 bytes; ids: 8 x 128 x 4 */
    assert_int_equal(r1->windows, 4);
    assert_true(r1->item[SP_PLAN_M_STATES] == 4.0 * 128 * 64 * 4);
    assert_true(r1->item[SP_PLAN_M_IDS] == 8.0 * 128 * 4);
    /* Hessians: n = 64, 64, 64, 172: n² x 8 + T x n x 8 + n x min(n, 512) x 8 */
    /* rank 1 peaks in the all-reduce of the Hessians: four packed accumulators n(n+1)/2 x 8
     * with their window copy T x n x 8 and panel n x min(n, 512) x 8 (n = 64, 64, 64, 172),
     * plus Open MPI's temporary, half of the largest accumulator */
    double hess = 0;
    const double n_h[4] = {64, 64, 64, 172};
    for (int h = 0; h < 4; h++)
        hess += n_h[h] * (n_h[h] + 1) / 2 * 8 + 128 * n_h[h] * 8 + n_h[h] * n_h[h] * 8;
    assert_true(r1->item[SP_PLAN_M_HESSIANS] == hess);
    assert_true(r1->item[SP_PLAN_M_MPI] == 0);
    /* one fp32 block (each tensor rounded up to 16 floats) */
    double f32 = 4.0 * (64 + 4096 + 2048 + 2048 + 4096 + 64 + 3 * 11008);
    assert_true(r1->item[SP_PLAN_M_WEIGHTS] == f32);
    assert_true(r1->item[SP_PLAN_M_BASE] == 30 * 1048576.0);
    assert_true(r1->item[SP_PLAN_M_CKPT] == 0);
    assert_true(r1->item[SP_PLAN_M_GPTQ] == 0 && r1->item[SP_PLAN_M_OUTPUT] == 0);
    /* rank 0 at the end: the Hessians are gone, the container is being written */
    assert_true(r0->item[SP_PLAN_M_HESSIANS] == 0 && r0->item[SP_PLAN_M_STATES] == r1->item[SP_PLAN_M_STATES]);
    assert_true(r0->item[SP_PLAN_M_OUTPUT] >= 512.0 * 64 * 4);
    /* the heap is the sum of its items; RSS adds every block's pages */
    double sum = 0;
    for (int i = 0; i < SP_PLAN_M_COUNT; i++) sum += r0->item[i];
    assert_true(fabs(sum - r0->heap) < 1e-6 * sum);
    assert_true(r0->rss >= r0->heap + 5 * block);
    assert_true(res.rss_max >= r0->rss && res.heap_max >= r1->heap);
    assert_true(res.fits == -1);
    for (int i = 0; i < SP_PLAN_T_COUNT; i++) assert_true(res.t[i] >= 0);
    assert_true(res.t_total > 0);
    /* checkpoints add the engine's state on every rank */
    o.checkpoint_every = 1;
    sp_plan_result rc;
    assert_int_equal(sp_plan_predict(&m, &o, &r, &rc, &err), SP_OK);
    assert_true(rc.other.item[SP_PLAN_M_CKPT] > 0);
    assert_true(rc.heap_max > res.heap_max);
    assert_int_equal(rc.n_checkpoints, 4);
}

/* ---- 70B ----------------------------------------------------------------------------------- */

static void test_70b(void **state) {
    (void)state;
    char dir[256];
    tmpdir(dir, sizeof dir);
    write_70b(dir, NULL);
    sp_plan_model m;
    sp_err err = {0};
    assert_int_equal(sp_plan_model_read(&m, dir, &err), SP_OK);
    assert_int_equal(m.n_files, 2);
    assert_int_equal(m.dtype, SP_DTYPE_BF16);
    const double D = 8192, F = 28672, kv = 1024, V = 32000, T = 2048;
    double blk = 2 * D + D * D + 2 * kv * D + D * D + 3 * D * F; /* parameters of a block */
    assert_true(m.block_bytes == 2 * blk);
    assert_true(m.file_bytes == 2 * (80 * blk + 2 * V * D + D));
    assert_true(m.head_bytes == 2 * V * D);

    sp_plan_opts o;
    sp_plan_opts_default(&o); /* 128 x 2048, bits 4, group 128 */
    o.ranks = 8;
    sp_plan_rates r = fixed_rates();
    sp_plan_result res;
    assert_int_equal(sp_plan_predict(&m, &o, &r, &res, &err), SP_OK);
    const sp_plan_rank *r0 = &res.rank0;
    assert_int_equal(r0->windows, 16);
    assert_true(r0->item[SP_PLAN_M_STATES] == 16 * T * D * 4); /* exactly 1 GiB */
    assert_true(r0->item[SP_PLAN_M_STATES] == GIB);
    int need[4];
    double owned;
    hessians_used(0, 8, D, D, kv, F, o.levels, o.n_levels, need, &owned);
    const double n_h[4] = {D, D, D, F};
    double hess = 0;
    for (int h = 0; h < 4; h++) hess += need[h] ? n_h[h] * n_h[h] * 8 : 0;
    assert_true(r0->item[SP_PLAN_M_HESSIANS] == hess);
    /* at its GPTQ peak a rank holds the norms and the fp32 weights of its own modules only
     * (the others' pages are released until propagate) */
    assert_string_equal(r0->peak_at, "gptq");
    assert_true(owned > 0 && owned < blk);
    assert_true(r0->item[SP_PLAN_M_WEIGHTS] == 4 * (2 * D + owned));
    /* the rank that factors the down_proj Hessian holds F² floats of Cholesky factor */
    assert_true(res.heap_max > F * F * 8 + 4 * D * F + GIB + F * F * 4);
    assert_true(res.heap_max < 40 * GIB);
    /* every rank maps all 80 blocks by the end */
    assert_true(r0->mapped >= 80 * m.block_bytes);
    assert_true(r0->rss > r0->heap + 80 * m.block_bytes);

    /* More ranks: X_r shrinks, the heap never grows, and the work per rank falls. */
    double prev_states = INFINITY, prev_heap = INFINITY, prev_t = INFINITY;
    for (int R = 1; R <= 64; R *= 2) {
        o.ranks = R;
        assert_int_equal(sp_plan_predict(&m, &o, &r, &res, &err), SP_OK);
        assert_true(res.rank0.item[SP_PLAN_M_STATES] < prev_states);
        assert_true(res.heap_max <= prev_heap);
        assert_true(res.t[SP_PLAN_T_HESSIAN] < prev_t);
        prev_states = res.rank0.item[SP_PLAN_M_STATES];
        prev_heap = res.heap_max;
        prev_t = res.t[SP_PLAN_T_HESSIAN];
    }

    /* --mem-per-rank: the suggestions are the boundary (R - 1 ranks do not fit, R do). */
    o.ranks = 2;
    o.mem_per_rank = 14 * GIB; /* 2 ranks need about 15.2 GiB */
    assert_int_equal(sp_plan_predict(&m, &o, &r, &res, &err), SP_OK);
    assert_int_equal(res.fits, 0);
    assert_true(res.min_ranks > 2);
    assert_true(res.max_nsamples >= 1 && res.max_nsamples < 128);
    int R = res.min_ranks, S = res.max_nsamples;
    o.ranks = R;
    assert_int_equal(sp_plan_predict(&m, &o, &r, &res, &err), SP_OK);
    assert_int_equal(res.fits, 1);
    o.ranks = R - 1;
    assert_int_equal(sp_plan_predict(&m, &o, &r, &res, &err), SP_OK);
    assert_int_equal(res.fits, 0);
    o.ranks = 2, o.nsamples = S;
    assert_int_equal(sp_plan_predict(&m, &o, &r, &res, &err), SP_OK);
    assert_int_equal(res.fits, 1);
    o.nsamples = S + 1;
    assert_int_equal(sp_plan_predict(&m, &o, &r, &res, &err), SP_OK);
    assert_int_equal(res.fits, 0);
    /* too little for any rank count: one block's work alone does not fit */
    o.nsamples = 128, o.mem_per_rank = 8 * GIB;
    assert_int_equal(sp_plan_predict(&m, &o, &r, &res, &err), SP_OK);
    assert_int_equal(res.fits, 0);
    assert_int_equal(res.min_ranks, 0);
    assert_int_equal(res.max_nsamples, 0);

    /* checkpoints: X of all 128 windows, 79 of them for 80 blocks */
    o.mem_per_rank = 0, o.checkpoint_every = 1;
    assert_int_equal(sp_plan_predict(&m, &o, &r, &res, &err), SP_OK);
    assert_int_equal(res.n_checkpoints, 79);
    assert_true(res.ckpt_bytes >= 128 * T * D * 4);
    o.checkpoint_every = 10;
    assert_int_equal(sp_plan_predict(&m, &o, &r, &res, &err), SP_OK);
    assert_int_equal(res.n_checkpoints, 7);
    rmtree(dir);
}

/* ---- errors ------------------------------------------------------------------------------ */

static void test_bad_models(void **state) {
    (void)state;
    char dir[256];
    tmpdir(dir, sizeof dir);
    sp_plan_model m;
    sp_err err = {0};
    /* a tensor whose shape disagrees with config.json is named */
    write_70b(dir, "model.layers.7.mlp.up_proj.weight");
    assert_int_equal(sp_plan_model_read(&m, dir, &err), SP_EFORMAT);
    assert_non_null(strstr(err.msg, "model.layers.7.mlp.up_proj.weight"));
    assert_non_null(strstr(err.msg, "model-0000"));
    /* config.json without hidden_size: the field is named */
    write_str(dir, "config.json", "{\"architectures\": [\"LlamaForCausalLM\"], "
              "\"intermediate_size\": 100, \"num_hidden_layers\": 2, \"num_attention_heads\": 2, "
              "\"vocab_size\": 10}");
    assert_int_not_equal(sp_plan_model_read(&m, dir, &err), SP_OK);
    assert_non_null(strstr(err.msg, "config.json"));
    assert_non_null(strstr(err.msg, "hidden_size"));
    /* not JSON */
    write_str(dir, "config.json", "{\"architectures\": [");
    assert_int_equal(sp_plan_model_read(&m, dir, &err), SP_EFORMAT);
    assert_non_null(strstr(err.msg, "config.json"));
    /* an unsupported architecture */
    write_str(dir, "config.json", "{\"architectures\": [\"GPT2LMHeadModel\"], \"hidden_size\": 64}");
    assert_int_equal(sp_plan_model_read(&m, dir, &err), SP_EUNSUPPORTED);
    rmtree(dir);
    /* llama2.c: impossible header, and a file shorter than its header implies */
    tmpdir(dir, sizeof dir);
    char p[4096];
    snprintf(p, sizeof p, "%s/m.bin", dir);
    int32_t h[7] = {64, 172, 5, 7, 4, 512, 512}; /* 64 % 7 != 0 */
    FILE *f = fopen(p, "wb");
    fwrite(h, 4, 7, f);
    fclose(f);
    assert_int_equal(sp_plan_model_read(&m, p, &err), SP_EFORMAT);
    assert_non_null(strstr(err.msg, "m.bin"));
    h[3] = 8;
    f = fopen(p, "wb");
    fwrite(h, 4, 7, f);
    fclose(f);
    assert_int_equal(sp_plan_model_read(&m, dir, &err), SP_ETRUNC); /* found in the dir */
    assert_non_null(strstr(err.msg, "m.bin"));
    rmtree(dir);
    assert_int_equal(sp_plan_model_read(&m, "/nonexistent/model", &err), SP_ENOTFOUND);
    assert_non_null(strstr(err.msg, "/nonexistent/model"));
}

static void test_bad_options(void **state) {
    (void)state;
    sp_plan_model m;
    sp_err err = {0};
    assert_int_equal(sp_plan_model_read(&m, SP_TEST_MODEL_DIR, &err), SP_OK);
    sp_plan_rates r = fixed_rates();
    sp_plan_result res;
    sp_plan_opts o;
    sp_plan_opts_default(&o);
    o.ctx = 1024; /* max_position_embeddings is 512 */
    assert_int_equal(sp_plan_predict(&m, &o, &r, &res, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "--ctx 1024"));
    assert_non_null(strstr(err.msg, "max_position_embeddings 512"));
    sp_plan_opts_default(&o);
    o.ctx = 128, o.bits = 3; /* levels {4} */
    assert_int_equal(sp_plan_predict(&m, &o, &r, &res, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "--bits 3"));
    sp_plan_opts_default(&o);
    o.ctx = 128, o.group_size = 0;
    assert_int_equal(sp_plan_predict(&m, &o, &r, &res, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "--group-size"));
    sp_plan_opts_default(&o);
    o.ctx = 128, o.ranks = 0;
    assert_int_equal(sp_plan_predict(&m, &o, &r, &res, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "--ranks"));

    double b = 0;
    assert_int_equal(sp_plan_parse_size("--mem-per-rank", "24G", &b, &err), SP_OK);
    assert_true(b == 24 * GIB);
    assert_int_equal(sp_plan_parse_size("--mem-per-rank", "1.5TiB", &b, &err), SP_OK);
    assert_true(b == 1.5 * 1024 * GIB);
    assert_int_equal(sp_plan_parse_size("--mem-per-rank", "512mb", &b, &err), SP_OK);
    assert_true(b == 512 * 1048576.0);
    assert_int_equal(sp_plan_parse_size("--mem-per-rank", "4096", &b, &err), SP_OK);
    assert_true(b == 4096);
    const char *bad[] = {"24X", "-1G", "G", "", "12 G", "1e400", "5GiBs"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(sp_plan_parse_size("--mem-per-rank", bad[i], &b, &err), SP_EINVAL);
        assert_non_null(strstr(err.msg, "--mem-per-rank"));
    }
}

static void test_rates_file(void **state) {
    (void)state;
    char dir[256], p[4096];
    tmpdir(dir, sizeof dir);
    sp_err err = {0};
    sp_plan_rates r = fixed_rates(), back;
    r.sgemm_gflops = 123.5;
    r.net_mb_s = 4321;
    snprintf(p, sizeof p, "%s/rates.json", dir);
    assert_int_equal(sp_plan_rates_save(&r, p, &err), SP_OK);
    sp_plan_rates_default(&back);
    assert_int_equal(sp_plan_rates_load(&back, p, &err), SP_OK);
    assert_true(fabs(back.sgemm_gflops - 123.5) < 1e-9 && fabs(back.net_mb_s - 4321) < 1e-9);
    assert_true(fabs(back.base_mb - 30) < 1e-9);
    assert_string_equal(back.source, "rates.json");
    /* a subset keeps the other values */
    write_str(dir, "part.json", "{\"dgemm_gflops\": 7}");
    snprintf(p, sizeof p, "%s/part.json", dir);
    assert_int_equal(sp_plan_rates_load(&back, p, &err), SP_OK);
    assert_true(back.dgemm_gflops == 7 && fabs(back.sgemm_gflops - 123.5) < 1e-9);
    /* unknown member, non-positive value, not an object */
    write_str(dir, "bad.json", "{\"sgemm_gflop\": 7}");
    snprintf(p, sizeof p, "%s/bad.json", dir);
    assert_int_equal(sp_plan_rates_load(&back, p, &err), SP_EFORMAT);
    assert_non_null(strstr(err.msg, "sgemm_gflop"));
    assert_non_null(strstr(err.msg, "bad.json"));
    write_str(dir, "bad.json", "{\"write_mb_s\": -3}");
    assert_int_equal(sp_plan_rates_load(&back, p, &err), SP_EFORMAT);
    assert_non_null(strstr(err.msg, "write_mb_s"));
    write_str(dir, "bad.json", "[1, 2]");
    assert_int_equal(sp_plan_rates_load(&back, p, &err), SP_EFORMAT);
    assert_true(back.dgemm_gflops == 7); /* unchanged on failure */
    rmtree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bundled),     cmocka_unit_test(test_70b),
        cmocka_unit_test(test_bad_models),  cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_rates_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
