/* test_shards.c — opening the bundled model through every dense backend and reading it.
 *
 * The central check: stories260K is bundled twice, as HF safetensors (q/k rows already in
 * rotate-half order) and as the original llama2.c .bin. Every tensor read through the two
 * backends must be bit-identical, which pins down the llama2.c offsets and the q/k row
 * permutation. Sharded (index.json), BF16 and F16 copies are written with the library's own
 * writer into temporary directories and read back.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "tests/unit/shards_test_util.h"

static sp_model *open_ok(const char *path) {
    sp_model *m = NULL;
    sp_err err = {0};
    sp_status st = sp_model_open(&m, path, &err);
    if (st != SP_OK) fprintf(stderr, "open %s: %s\n", path, err.msg);
    assert_int_equal(st, SP_OK);
    assert_non_null(m);
    return m;
}

/* Read a whole tensor as fp32 (malloc'ed); *n gets the element count. */
static float *read_all(const sp_model *m, const char *name, size_t *n) {
    sp_tensor_desc d;
    sp_err err = {0};
    assert_int_equal(sp_model_tensor_desc(m, name, &d, &err), SP_OK);
    int64_t rows = d.ndim == 2 ? d.shape[0] : 1, cols = d.ndim == 2 ? d.shape[1] : d.shape[0];
    float *buf = malloc((size_t)(rows * cols) * sizeof(float));
    assert_non_null(buf);
    sp_status st = sp_model_read_rows(m, name, 0, rows, buf, &err);
    if (st != SP_OK) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(st, SP_OK);
    *n = (size_t)(rows * cols);
    return buf;
}

static void test_open_safetensors(void **state) {
    (void)state;
    sp_model *m = open_ok(SP_TEST_MODEL_DIR);
    const sp_config *c = sp_model_config(m);
    assert_string_equal(c->arch, "LlamaForCausalLM");
    assert_int_equal(c->dim, 64);
    assert_int_equal(c->hidden_dim, 172);
    assert_int_equal(c->n_layers, 5);
    assert_int_equal(c->n_heads, 8);
    assert_int_equal(c->n_kv_heads, 4);
    assert_int_equal(c->head_dim, 8);
    assert_int_equal(c->vocab_size, 512);
    assert_int_equal(c->max_seq_len, 512);
    assert_true(c->norm_eps == 1e-5f);
    assert_true(c->rope_theta == 10000.0f);
    assert_int_equal(c->tie_embeddings, 1);
    assert_int_equal(c->qkv_bias, 0);
    assert_int_equal(c->rope_scaling_llama3, 0);
    assert_int_equal(c->bos_id, 1);
    assert_int_equal(c->eos_id, 2);
    assert_string_equal(sp_model_format(m), "safetensors");
    assert_string_equal(sp_model_dir(m), SP_TEST_MODEL_DIR);

    sp_tensor_desc d;
    sp_err err = {0};
    assert_int_equal(sp_model_tensor_desc(m, "model.layers.0.self_attn.k_proj.weight", &d, &err),
                     SP_OK);
    assert_int_equal(d.dtype, SP_DTYPE_F32);
    assert_int_equal(d.ndim, 2);
    assert_int_equal(d.shape[0], 32);
    assert_int_equal(d.shape[1], 64);
    assert_int_equal(sp_model_tensor_desc(m, "model.norm.weight", &d, &err), SP_OK);
    assert_int_equal(d.ndim, 1);
    assert_int_equal(d.shape[0], 64);

    float row[64];
    assert_int_equal(sp_model_read_rows(m, "model.embed_tokens.weight", 512, 1, row, &err),
                     SP_EINVAL);
    assert_true(tu_msg_has(err.msg, "model.embed_tokens.weight", "out of range", NULL));
    assert_int_equal(sp_model_read_rows(m, "model.embed_tokens.weight", -1, 1, row, &err),
                     SP_EINVAL);
    assert_int_equal(sp_model_tensor_desc(m, "lm_head.weight", &d, &err), SP_ENOTFOUND);
    assert_true(tu_msg_has(err.msg, "model.safetensors", "lm_head.weight", NULL));
    assert_int_equal(sp_model_select_bits(m, NULL, 4, &err), SP_EUNSUPPORTED);
    sp_model *m2 = NULL;
    assert_int_equal(sp_model_open(&m2, SP_TEST_MODEL_DIR "//", &err), SP_OK);
    assert_string_equal(sp_model_dir(m2), SP_TEST_MODEL_DIR);
    sp_model_close(m2);
    assert_int_equal(sp_model_open(&m2, ST_BUNDLED, &err), SP_EINVAL); /* a file, not a .bin */
    assert_null(m2);
    assert_true(tu_msg_has(err.msg, ST_BUNDLED, "llama2.c", NULL));
    assert_string_equal(sp_module_suffix(SP_MOD_DOWN), "mlp.down_proj");
    assert_null(sp_module_suffix(SP_MOD_COUNT));
    sp_model_close(m);
}

static void test_open_llama2c_file(void **state) {
    (void)state;
    sp_model *m = open_ok(BIN_BUNDLED);
    sp_model *h = open_ok(SP_TEST_MODEL_DIR);
    const sp_config *c = sp_model_config(m), *hc = sp_model_config(h);
    assert_string_equal(c->arch, "llama2c");
    assert_string_equal(sp_model_format(m), "llama2c");
    assert_string_equal(sp_model_dir(m), SP_TEST_MODEL_DIR);
    assert_int_equal(c->dim, hc->dim);
    assert_int_equal(c->hidden_dim, hc->hidden_dim);
    assert_int_equal(c->n_layers, hc->n_layers);
    assert_int_equal(c->n_heads, hc->n_heads);
    assert_int_equal(c->n_kv_heads, hc->n_kv_heads);
    assert_int_equal(c->head_dim, hc->head_dim);
    assert_int_equal(c->vocab_size, hc->vocab_size);
    assert_int_equal(c->max_seq_len, hc->max_seq_len);
    assert_true(c->norm_eps == hc->norm_eps);
    assert_true(c->rope_theta == hc->rope_theta);
    assert_int_equal(c->tie_embeddings, 1);
    assert_int_equal(c->bos_id, 1);
    assert_int_equal(c->eos_id, 2);
    sp_model_close(m);
    sp_model_close(h);
}

/* Every tensor, both backends, bit for bit. */
static void test_llama2c_matches_safetensors(void **state) {
    (void)state;
    sp_model *a = open_ok(SP_TEST_MODEL_DIR), *b = open_ok(BIN_BUNDLED);
    sp_st_set *set = NULL;
    sp_err err = {0};
    assert_int_equal(sp_st_set_open_dir(&set, SP_TEST_MODEL_DIR, &err), SP_OK);
    assert_int_equal(sp_st_set_count(set), 5 * 9 + 2);
    for (size_t i = 0; i < sp_st_set_count(set); i++) {
        const char *name = sp_st_set_name(set, i);
        sp_tensor_desc da, db;
        assert_int_equal(sp_model_tensor_desc(a, name, &da, &err), SP_OK);
        assert_int_equal(sp_model_tensor_desc(b, name, &db, &err), SP_OK);
        assert_int_equal(da.ndim, db.ndim);
        assert_int_equal(da.shape[0], db.shape[0]);
        assert_int_equal(da.shape[1], db.shape[1]);
        size_t na, nb;
        float *x = read_all(a, name, &na), *y = read_all(b, name, &nb);
        assert_int_equal(na, nb);
        if (memcmp(x, y, na * sizeof(float)) != 0) fail_msg("tensor %s differs", name);
        free(x);
        free(y);
    }
    /* The permutation is real: HF q row 1 is llama2.c row 2 of head 0, not row 1. */
    size_t flen = 0;
    unsigned char *raw = tu_read(BIN_BUNDLED, &flen);
    assert_non_null(raw);
    const size_t D = 64, V = 512, L = 5;
    const unsigned char *wq0 = raw + 28 + 4 * (V * D + L * D);
    float hf[2][64];
    assert_int_equal(sp_model_read_rows(b, "model.layers.0.self_attn.q_proj.weight", 0, 2,
                                        &hf[0][0], &err), SP_OK);
    assert_memory_equal(hf[0], wq0, D * 4);           /* row 0 = row 0     */
    assert_memory_equal(hf[1], wq0 + 2 * D * 4, D * 4); /* row 1 = row 2     */
    assert_memory_not_equal(hf[1], wq0 + D * 4, D * 4);
    float r4[64];
    assert_int_equal(sp_model_read_rows(b, "model.layers.0.self_attn.q_proj.weight", 4, 1, r4,
                                        &err), SP_OK);
    assert_memory_equal(r4, wq0 + 1 * D * 4, D * 4);  /* row hd/2 = row 1  */
    free(raw);
    sp_st_set_close(set);
    sp_model_close(a);
    sp_model_close(b);
}

static void test_llama2c_dir_without_config(void **state) {
    (void)state;
    char dir[256], p[4096];
    tu_tmpdir(dir, sizeof dir);
    sp_model *m = NULL;
    sp_err err = {0};
    assert_int_equal(sp_model_open(&m, dir, &err), SP_ENOTFOUND);
    assert_true(tu_msg_has(err.msg, dir, NULL));
    tu_copy(SP_TEST_MODEL_DIR "/tok512.bin", tu_path(p, sizeof p, dir, "tok512.bin"));
    tu_copy(BIN_BUNDLED, tu_path(p, sizeof p, dir, "stories260K.bin"));
    m = open_ok(dir);
    assert_string_equal(sp_model_format(m), "llama2c");
    assert_string_equal(sp_model_dir(m), dir);
    assert_int_equal(sp_model_config(m)->vocab_size, 512);
    sp_model_close(m);
    tu_copy(BIN_BUNDLED, tu_path(p, sizeof p, dir, "other.bin"));
    assert_int_equal(sp_model_open(&m, dir, &err), SP_EINVAL);
    assert_null(m);
    assert_true(tu_msg_has(err.msg, dir, ".bin", NULL));
    tu_rmdir(dir);
}

/* Copy the bundled tensors into sp_st_write_tensor specs converted to dtype dt. *bufs gets
 * the converted data (free each). */
static size_t bundled_specs(sp_st_write_tensor *spec, void **bufs, sp_dtype dt,
                            const sp_st_set *set) {
    size_t n = sp_st_set_count(set);
    for (size_t i = 0; i < n; i++) {
        const sp_st_tensor *t = sp_st_set_find(set, sp_st_set_name(set, i), NULL);
        size_t numel = t->nbytes / 4;
        spec[i].name = t->name;
        spec[i].dtype = dt;
        spec[i].ndim = t->ndim;
        memcpy(spec[i].shape, t->shape, sizeof t->shape);
        bufs[i] = malloc(numel * 4);
        const float *src = t->data;
        for (size_t k = 0; k < numel; k++) {
            uint16_t h = dt == SP_DTYPE_BF16 ? sp_f32_to_bf16(src[k]) : sp_f32_to_f16(src[k]);
            if (dt == SP_DTYPE_F32)
                memcpy((char *)bufs[i] + 4 * k, &src[k], 4);
            else
                memcpy((char *)bufs[i] + 2 * k, &h, 2);
        }
        spec[i].data = bufs[i];
    }
    return n;
}

static void test_sharded_index(void **state) {
    (void)state;
    char dir[256], p[4096];
    tu_tmpdir(dir, sizeof dir);
    tu_model_dir_config(dir);
    sp_st_set *set = NULL;
    sp_err err = {0};
    assert_int_equal(sp_st_set_open_dir(&set, SP_TEST_MODEL_DIR, &err), SP_OK);
    sp_st_write_tensor spec[64];
    void *bufs[64];
    size_t n = bundled_specs(spec, bufs, SP_DTYPE_F32, set);
    /* shard 1: embed + layers 0-1; shard 2: layers 2-4 + final norm */
    sp_st_write_tensor s1[64], s2[64];
    size_t n1 = 0, n2 = 0;
    cJSON *index = cJSON_CreateObject(), *map = cJSON_AddObjectToObject(index, "weight_map");
    cJSON_AddObjectToObject(index, "metadata");
    for (size_t i = 0; i < n; i++) {
        int first = strstr(spec[i].name, "embed") || strstr(spec[i].name, "layers.0.") ||
                    strstr(spec[i].name, "layers.1.");
        if (first) s1[n1++] = spec[i]; else s2[n2++] = spec[i];
        cJSON_AddStringToObject(map, spec[i].name, first ? "model-00001-of-00002.safetensors"
                                                         : "model-00002-of-00002.safetensors");
    }
    assert_int_equal(sp_safetensors_write(tu_path(p, sizeof p, dir,
                                                  "model-00001-of-00002.safetensors"),
                                          s1, n1, "{\"format\":\"pt\"}", &err), SP_OK);
    assert_int_equal(sp_safetensors_write(tu_path(p, sizeof p, dir,
                                                  "model-00002-of-00002.safetensors"),
                                          s2, n2, NULL, &err), SP_OK);
    char *text = cJSON_Print(index);
    tu_write_str(tu_path(p, sizeof p, dir, "model.safetensors.index.json"), text);
    cJSON_free(text);
    cJSON_Delete(index);

    sp_model *a = open_ok(SP_TEST_MODEL_DIR), *b = open_ok(dir);
    assert_string_equal(sp_model_format(b), "safetensors");
    for (size_t i = 0; i < n; i++) {
        size_t na, nb;
        float *x = read_all(a, spec[i].name, &na), *y = read_all(b, spec[i].name, &nb);
        assert_int_equal(na, nb);
        if (memcmp(x, y, na * 4) != 0) fail_msg("tensor %s differs", spec[i].name);
        free(x);
        free(y);
    }
    sp_st_set *sh = NULL;
    assert_int_equal(sp_st_set_open_dir(&sh, dir, &err), SP_OK);
    const char *file = NULL;
    assert_non_null(sp_st_set_find(sh, "model.layers.4.mlp.up_proj.weight", &file));
    assert_non_null(strstr(file, "model-00002-of-00002.safetensors"));
    assert_non_null(sp_st_set_find(sh, "model.layers.1.mlp.up_proj.weight", &file));
    assert_non_null(strstr(file, "model-00001-of-00002.safetensors"));
    sp_st_set_close(sh);
    sp_model_close(a);
    sp_model_close(b);
    for (size_t i = 0; i < n; i++) free(bufs[i]);
    sp_st_set_close(set);
    tu_rmdir(dir);
}

/* BF16 and F16 copies read back as exactly the rounded values, and close to the originals. */
static void check_half_copy(sp_dtype dt) {
    char dir[256], p[4096];
    tu_tmpdir(dir, sizeof dir);
    tu_model_dir_config(dir);
    sp_st_set *set = NULL;
    sp_err err = {0};
    assert_int_equal(sp_st_set_open_dir(&set, SP_TEST_MODEL_DIR, &err), SP_OK);
    sp_st_write_tensor spec[64];
    void *bufs[64];
    size_t n = bundled_specs(spec, bufs, dt, set);
    assert_int_equal(sp_safetensors_write(tu_path(p, sizeof p, dir, "model.safetensors"), spec, n,
                                          NULL, &err), SP_OK);
    sp_model *m = open_ok(dir);
    double rel = dt == SP_DTYPE_BF16 ? 0x1p-8 : 0x1p-11;
    for (size_t i = 0; i < n; i++) {
        sp_tensor_desc d;
        assert_int_equal(sp_model_tensor_desc(m, spec[i].name, &d, &err), SP_OK);
        assert_int_equal(d.dtype, dt);
        size_t cnt;
        float *y = read_all(m, spec[i].name, &cnt);
        const float *x = sp_st_set_find(set, spec[i].name, NULL)->data;
        for (size_t k = 0; k < cnt; k++) {
            float want = dt == SP_DTYPE_BF16 ? sp_bf16_to_f32(sp_f32_to_bf16(x[k]))
                                             : sp_f16_to_f32(sp_f32_to_f16(x[k]));
            if (memcmp(&want, &y[k], 4) != 0) fail_msg("%s[%zu]", spec[i].name, k);
            assert_true(fabs((double)y[k] - x[k]) <= fabs((double)x[k]) * rel + 0x1p-25);
        }
        free(y);
    }
    sp_model_close(m);
    for (size_t i = 0; i < n; i++) free(bufs[i]);
    sp_st_set_close(set);
    tu_rmdir(dir);
}

static void test_bf16_copy(void **state) {
    (void)state;
    check_half_copy(SP_DTYPE_BF16);
}

static void test_f16_copy(void **state) {
    (void)state;
    check_half_copy(SP_DTYPE_F16);
}

static void test_block_embed_head(void **state) {
    (void)state;
    sp_model *m = open_ok(SP_TEST_MODEL_DIR);
    const sp_config *c = sp_model_config(m);
    sp_block_weights w;
    sp_err err = {0};
    assert_int_equal(sp_block_weights_alloc(&w, c, &err), SP_OK);
    assert_null(w.bq);
    assert_null(w.bk);
    assert_null(w.bv);
    assert_int_equal(sp_model_load_block(m, 3, &w, &err), SP_OK);
    const struct { const char *suffix; const float *got; } parts[] = {
        {"input_layernorm.weight", w.attn_norm}, {"self_attn.q_proj.weight", w.wq},
        {"self_attn.k_proj.weight", w.wk},       {"self_attn.v_proj.weight", w.wv},
        {"self_attn.o_proj.weight", w.wo},       {"post_attention_layernorm.weight", w.ffn_norm},
        {"mlp.gate_proj.weight", w.w_gate},      {"mlp.up_proj.weight", w.w_up},
        {"mlp.down_proj.weight", w.w_down},
    };
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        char nm[128];
        snprintf(nm, sizeof nm, "model.layers.3.%s", parts[i].suffix);
        size_t cnt;
        float *x = read_all(m, nm, &cnt);
        assert_memory_equal(x, parts[i].got, cnt * 4);
        free(x);
    }
    assert_int_equal(sp_model_load_block(m, 5, &w, &err), SP_EINVAL);
    sp_block_weights_free(&w);
    assert_null(w.mem_);

    int32_t ids[3] = {1, 5, 511};
    float emb[3 * 64], row[64], head[3 * 64], norm[64];
    assert_int_equal(sp_model_embed(m, ids, 3, emb, &err), SP_OK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sp_model_read_rows(m, "model.embed_tokens.weight", ids[i], 1, row, &err),
                         SP_OK);
        assert_memory_equal(row, emb + 64 * i, sizeof row);
    }
    int32_t bad[2] = {0, 512};
    assert_int_equal(sp_model_embed(m, bad, 2, emb, &err), SP_EINVAL);
    assert_true(tu_msg_has(err.msg, "512", "position 1", NULL));
    assert_int_equal(sp_model_read_head_rows(m, 5, 1, head, &err), SP_OK); /* tied */
    assert_memory_equal(head, emb + 64, sizeof row);
    assert_int_equal(sp_model_read_head_rows(m, 510, 3, head, &err), SP_EINVAL);
    assert_int_equal(sp_model_read_final_norm(m, norm, &err), SP_OK);
    assert_int_equal(sp_model_read_rows(m, "model.norm.weight", 0, 1, row, &err), SP_OK);
    assert_memory_equal(norm, row, sizeof row);
    sp_model_close(m);
}

/* A NaN or Inf in a weight: open succeeds (it reads nothing), load_block names the tensor. */
static void test_nonfinite_weight(void **state) {
    (void)state;
    const float bad[2] = {NAN, INFINITY};
    for (int b = 0; b < 2; b++) {
        char dir[256], p[4096];
        tu_tmpdir(dir, sizeof dir);
        tu_model_dir_config(dir);
        tu_st s;
        tu_st_load(&s, ST_BUNDLED);
        const cJSON *off = cJSON_GetObjectItem(tu_st_entry(&s, "model.layers.2.mlp.gate_proj.weight"),
                                               "data_offsets");
        size_t at = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble + 4 * 77;
        memcpy((unsigned char *)s.data + at, &bad[b], 4);
        tu_st_write_raw(tu_path(p, sizeof p, dir, "model.safetensors"), s.hdr, s.data, s.data_len);
        tu_st_free(&s);
        sp_model *m = open_ok(dir);
        sp_block_weights w;
        sp_err err = {0};
        assert_int_equal(sp_block_weights_alloc(&w, sp_model_config(m), &err), SP_OK);
        assert_int_equal(sp_model_load_block(m, 1, &w, &err), SP_OK);
        assert_int_equal(sp_model_load_block(m, 2, &w, &err), SP_ENUMERIC);
        assert_true(tu_msg_has(err.msg, "model.layers.2.mlp.gate_proj.weight",
                               b == 0 ? "NaN" : "Inf", "row 1, column 13", NULL));
        sp_block_weights_free(&w);
        sp_model_close(m);
        tu_rmdir(dir);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_safetensors),
        cmocka_unit_test(test_open_llama2c_file),
        cmocka_unit_test(test_llama2c_matches_safetensors),
        cmocka_unit_test(test_llama2c_dir_without_config),
        cmocka_unit_test(test_sharded_index),
        cmocka_unit_test(test_bf16_copy),
        cmocka_unit_test(test_f16_copy),
        cmocka_unit_test(test_block_embed_head),
        cmocka_unit_test(test_nonfinite_weight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
