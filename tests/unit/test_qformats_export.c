/* test_qformats_export.c — the GPTQ export and the two quantized sp_model backends.
 *
 * A container is built from the bundled stories260K model (RTN at 3, 4 and 8 bits, group size
 * 32), exported as GPTQ, and both are opened through sp_model_open: every tensor must read
 * bit-identically, including the 3-bit padding path (172·3 bits is not a multiple of 32),
 * per-module "dynamic" overrides, sharded output and gptq_v2.
 */
#include "tests/unit/qformats_test_util.h"

/* ---- export round trip on the bundled model --------------------------------------------- */

static const char *TOK_FILES[] = {"config.json", "tokenizer.json", "tokenizer_config.json",
                                  "tok512.bin"};

/* Container of stories260K: every module RTN-quantized at 3, 4, 8 bits (group 32, sym),
 * default 3; layer 0 down_proj starts at 8 bits and layer 1 q_proj at 4. */
static void build_bundled_container(const char *dir) {
    char from[4096], to[4096];
    for (size_t i = 0; i < sizeof TOK_FILES / sizeof TOK_FILES[0]; i++) {
        path_join(from, sizeof from, SP_TEST_MODEL_DIR, TOK_FILES[i]);
        path_join(to, sizeof to, dir, TOK_FILES[i]);
        copy_file(from, to);
    }
    sp_model *m = NULL;
    ASSERT_OK(sp_model_open(&m, SP_TEST_MODEL_DIR, &e_));
    const sp_config *cfg = sp_model_config(m);
    sp_qcontainer_meta meta = {.default_bits = 3, .group_size = 32, .sym = 1, .method = "rtn",
                               .n_levels = 3, .levels = {3, 4, 8}};
    sp_qcontainer *c = NULL;
    path_join(to, sizeof to, dir, SP_QCONTAINER_FILE);
    ASSERT_OK(sp_qcontainer_create(&c, to, &meta, 0, &e_));
    float *W = malloc((size_t)cfg->vocab_size * (size_t)cfg->dim * sizeof(float));
    char name[256];
    const char *dense[3] = {"model.embed_tokens.weight", "model.norm.weight", NULL};
    for (int l = -1; l < cfg->n_layers; l++) {
        for (int k = 0; k < (l < 0 ? 2 : 2 + SP_MOD_COUNT); k++) {
            if (l < 0) snprintf(name, sizeof name, "%s", dense[k]);
            else if (k < 2)
                snprintf(name, sizeof name, "model.layers.%d.%s.weight", l,
                         k == 0 ? "input_layernorm" : "post_attention_layernorm");
            else snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, sp_module_suffix(k - 2));
            sp_tensor_desc d;
            ASSERT_OK(sp_model_tensor_desc(m, name, &d, &e_));
            int64_t rows = d.ndim == 2 ? d.shape[0] : 1;
            ASSERT_OK(sp_model_read_rows(m, name, 0, rows, W, &e_));
            if (l < 0 || k < 2) {
                ASSERT_OK(sp_qcontainer_put_dense(c, name, d.ndim, d.shape, W, &e_));
                continue;
            }
            name[strlen(name) - 7] = '\0'; /* module name */
            for (int b = 0; b < 3; b++) {
                sp_qlayer q;
                ASSERT_OK(sp_quant_rtn(W, (int)d.shape[0], (int)d.shape[1], meta.levels[b], 32, 1,
                                       0, &q, &e_));
                ASSERT_OK(sp_qcontainer_put_qlayer(c, name, &q, &e_));
                sp_qlayer_free(&q);
            }
        }
    }
    ASSERT_OK(sp_qcontainer_set_selected(c, "model.layers.0.mlp.down_proj", 8, &e_));
    ASSERT_OK(sp_qcontainer_set_selected(c, "model.layers.1.self_attn.q_proj", 4, &e_));
    ASSERT_OK(sp_qcontainer_close(c, &e_));
    free(W);
    sp_model_close(m);
}

/* Every tensor of the architecture reads bit-identically from a and b. */
static void assert_models_equal(const sp_model *a, const sp_model *b) {
    const sp_config *cfg = sp_model_config(a);
    float *x = malloc((size_t)cfg->vocab_size * (size_t)cfg->dim * sizeof(float));
    float *y = malloc((size_t)cfg->vocab_size * (size_t)cfg->dim * sizeof(float));
    char name[256];
    for (int l = -1; l < cfg->n_layers; l++) {
        for (int k = 0; k < (l < 0 ? 2 : 2 + SP_MOD_COUNT); k++) {
            if (l < 0) snprintf(name, sizeof name, "%s", k ? "model.norm.weight" : "model.embed_tokens.weight");
            else if (k < 2)
                snprintf(name, sizeof name, "model.layers.%d.%s.weight", l,
                         k == 0 ? "input_layernorm" : "post_attention_layernorm");
            else snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, sp_module_suffix(k - 2));
            sp_tensor_desc da, db;
            ASSERT_OK(sp_model_tensor_desc(a, name, &da, &e_));
            ASSERT_OK(sp_model_tensor_desc(b, name, &db, &e_));
            assert_int_equal(da.ndim, db.ndim);
            assert_int_equal(da.shape[0], db.shape[0]);
            assert_int_equal(da.shape[1], db.shape[1]);
            int64_t rows = da.ndim == 2 ? da.shape[0] : 1;
            size_t n = (size_t)(da.ndim == 2 ? da.shape[0] * da.shape[1] : da.shape[0]);
            memset(x, 0, n * 4);
            memset(y, 0xff, n * 4);
            ASSERT_OK(sp_model_read_rows(a, name, 0, rows, x, &e_));
            ASSERT_OK(sp_model_read_rows(b, name, 0, rows, y, &e_));
            if (memcmp(x, y, n * 4) != 0) fail_msg("tensor %s differs", name);
            if (da.ndim == 2 && rows > 3) { /* a row range in the middle */
                ASSERT_OK(sp_model_read_rows(b, name, 2, 2, y, &e_));
                assert_memory_equal(y, x + 2 * da.shape[1], 2 * (size_t)da.shape[1] * 4);
            }
        }
    }
    free(x);
    free(y);
}

/* The GPTQ layout of one module checked against the container with a bit-by-bit reference. */
static void check_gptq_layout(const char *outdir, const char *container, const char *module,
                              int bits, int v2) {
    sp_qcontainer *c = NULL;
    ASSERT_OK(sp_qcontainer_open(&c, container, &e_));
    sp_qlayer q;
    ASSERT_OK(sp_qcontainer_read_qlayer(c, module, bits, &q, &e_));
    ASSERT_OK(sp_qcontainer_close(c, &e_));
    sp_st_set *set = NULL;
    ASSERT_OK(sp_st_set_open_dir(&set, outdir, &e_));
    char nm[300];
    const size_t in = (size_t)q.cols, out = (size_t)q.rows, G = (size_t)q.n_groups;
    snprintf(nm, sizeof nm, "%s.qweight", module);
    const sp_st_tensor *qw = sp_st_set_find(set, nm, NULL);
    assert_non_null(qw);
    assert_int_equal(qw->dtype, SP_DTYPE_I32);
    assert_int_equal(qw->shape[0], (int64_t)((in * (size_t)bits + 31) / 32));
    assert_int_equal(qw->shape[1], (int64_t)out);
    for (size_t i = 0; i < in; i++)
        for (size_t o = 0; o < out; o++)
            for (int j = 0; j < bits; j++) {
                size_t bit = i * (size_t)bits + (size_t)j;
                uint32_t w;
                memcpy(&w, (const unsigned char *)qw->data + 4 * ((bit / 32) * out + o), 4);
                assert_int_equal((w >> (bit % 32)) & 1u, (q.codes[o * in + i] >> j) & 1u);
            }
    snprintf(nm, sizeof nm, "%s.qzeros", module);
    const sp_st_tensor *qz = sp_st_set_find(set, nm, NULL);
    assert_non_null(qz);
    assert_int_equal(qz->shape[0], (int64_t)G);
    assert_int_equal(qz->shape[1], (int64_t)((out * (size_t)bits + 31) / 32));
    snprintf(nm, sizeof nm, "%s.scales", module);
    const sp_st_tensor *sc = sp_st_set_find(set, nm, NULL);
    assert_int_equal(sc->dtype, SP_DTYPE_F16);
    for (size_t g = 0; g < G; g++)
        for (size_t o = 0; o < out; o++) {
            size_t bit = o * (size_t)bits;
            uint32_t w0, w1 = 0;
            memcpy(&w0, (const unsigned char *)qz->data + 4 * (g * (size_t)qz->shape[1] + bit / 32), 4);
            if (bit % 32 + (size_t)bits > 32)
                memcpy(&w1, (const unsigned char *)qz->data + 4 * (g * (size_t)qz->shape[1] + bit / 32 + 1), 4);
            uint64_t both = (uint64_t)w0 | (uint64_t)w1 << 32;
            unsigned z = (unsigned)(both >> (bit % 32)) & ((1u << bits) - 1);
            assert_int_equal(z, q.zeros[o * G + g] - (v2 ? 0 : 1));
            uint16_t h;
            memcpy(&h, (const unsigned char *)sc->data + 2 * (g * out + o), 2);
            assert_true(sp_f16_to_f32(h) == q.scales[o * G + g]);
        }
    snprintf(nm, sizeof nm, "%s.g_idx", module);
    const sp_st_tensor *gi = sp_st_set_find(set, nm, NULL);
    for (size_t i = 0; i < in; i++) {
        int32_t v;
        memcpy(&v, (const unsigned char *)gi->data + 4 * i, 4);
        assert_int_equal(v, q.g_idx[i]);
    }
    sp_st_set_close(set);
    sp_qlayer_free(&q);
}

static cJSON *read_json(const char *dir, const char *file) {
    char p[4096];
    size_t n;
    path_join(p, sizeof p, dir, file);
    unsigned char *b = slurp(p, &n);
    assert_non_null(b);
    cJSON *j = cJSON_Parse((const char *)b);
    free(b);
    assert_non_null(j);
    return j;
}

static void test_export_roundtrip(void **state) {
    (void)state;
    char root[256], cdir[300], out1[300], out2[300], cpath[400];
    tmpdir(root, sizeof root);
    path_join(cdir, sizeof cdir, root, "container");
    path_join(out1, sizeof out1, root, "gptq1");
    path_join(out2, sizeof out2, root, "gptq2");
    path_join(cpath, sizeof cpath, cdir, SP_QCONTAINER_FILE);
    assert_int_equal(mkdir(cdir, 0755), 0);
    build_bundled_container(cdir);
    sp_err e = {0};

    /* the container through sp_model: levels, selection, dequantized weights */
    sp_model *cm = NULL, *gm = NULL;
    ASSERT_OK(sp_model_open(&cm, cdir, &e_));
    assert_string_equal(sp_model_format(cm), "sp-hdf5");
    expect_err(sp_model_select_bits(cm, "model.layers.0.mlp.up_proj", 2, &e), &e, SP_ENOTFOUND,
               "model.layers.0.mlp.up_proj", "stored: 3, 4, 8");
    expect_err(sp_model_select_bits(cm, "model.layers.9.mlp.up_proj", 4, &e), &e, SP_ENOTFOUND,
               "model.layers.9.mlp.up_proj", NULL);
    {   /* 8-bit layer 0 down_proj reads as sp_qlayer_dequant of its RTN quantization */
        sp_model *dm = NULL;
        ASSERT_OK(sp_model_open(&dm, SP_TEST_MODEL_DIR, &e_));
        float W[64 * 172], want[64 * 172], got[64 * 172];
        ASSERT_OK(sp_model_read_rows(dm, "model.layers.0.mlp.down_proj.weight", 0, 64, W, &e_));
        sp_qlayer q;
        ASSERT_OK(sp_quant_rtn(W, 64, 172, 8, 32, 1, 0, &q, &e_));
        sp_qlayer_dequant(want, &q);
        sp_qlayer_free(&q);
        ASSERT_OK(sp_model_read_rows(cm, "model.layers.0.mlp.down_proj.weight", 0, 64, got, &e_));
        assert_memory_equal(got, want, sizeof got);
        sp_model_close(dm);
    }

    /* export 1: the container's own selection, v1, one file */
    ASSERT_OK(sp_export_gptq(cdir, out1, NULL, &e_));
    ASSERT_OK(sp_model_open(&gm, out1, &e_));
    assert_string_equal(sp_model_format(gm), "gptq");
    assert_models_equal(cm, gm);
    expect_err(sp_model_select_bits(gm, "model.layers.0.mlp.down_proj", 3, &e), &e, SP_ENOTFOUND,
               "stored: 8", NULL);
    sp_model_close(gm);
    check_gptq_layout(out1, cpath, "model.layers.1.mlp.down_proj", 3, 0);  /* in = 172 padded */
    check_gptq_layout(out1, cpath, "model.layers.1.mlp.up_proj", 3, 0);    /* out = 172 padded */
    check_gptq_layout(out1, cpath, "model.layers.0.mlp.down_proj", 8, 0);
    check_gptq_layout(out1, cpath, "model.layers.1.self_attn.q_proj", 4, 0);
    cJSON *qc = read_json(out1, "quantize_config.json");
    assert_int_equal(cJSON_GetObjectItem(qc, "bits")->valueint, 3);
    assert_int_equal(cJSON_GetObjectItem(qc, "group_size")->valueint, 32);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(qc, "desc_act")));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(qc, "sym")));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(qc, "shardpress_padded")));
    assert_string_equal(cJSON_GetObjectItem(qc, "checkpoint_format")->valuestring, "gptq");
    cJSON *dyn = cJSON_GetObjectItem(qc, "dynamic");
    assert_int_equal(cJSON_GetArraySize(dyn), 2);
    cJSON *ov = cJSON_GetObjectItem(dyn, "+:^model\\.layers\\.0\\.mlp\\.down_proj$");
    assert_non_null(ov);
    assert_int_equal(cJSON_GetObjectItem(ov, "bits")->valueint, 8);
    cJSON *cfgj = read_json(out1, "config.json");
    cJSON *qc2 = cJSON_GetObjectItem(cfgj, "quantization_config");
    assert_true(cJSON_Compare(qc, qc2, 1));
    assert_int_equal(cJSON_GetObjectItem(cfgj, "hidden_size")->valueint, 64);
    cJSON_Delete(qc);
    cJSON_Delete(cfgj);
    for (size_t i = 1; i < sizeof TOK_FILES / sizeof TOK_FILES[0]; i++) {
        char a[4096], b[4096];
        size_t na, nb;
        path_join(a, sizeof a, cdir, TOK_FILES[i]);
        path_join(b, sizeof b, out1, TOK_FILES[i]);
        unsigned char *x = slurp(a, &na), *y = slurp(b, &nb);
        assert_non_null(y);
        assert_int_equal(na, nb);
        assert_memory_equal(x, y, na);
        free(x);
        free(y);
    }
    expect_err(sp_export_gptq(cdir, out1, NULL, &e), &e, SP_EEXIST, out1, NULL);
    sp_gptq_export_opts self = {.force = 1};
    expect_err(sp_export_gptq(cdir, cdir, &self, &e), &e, SP_EINVAL, "container directory",
               NULL);

    /* export 2: an override, gptq_v2, small shards (index + several files), replacing out1 */
    const char *om[1] = {"model.layers.2.mlp.up_proj"};
    const int ob[1] = {4};
    sp_gptq_export_opts o = {.force = 1, .checkpoint_v2 = 1, .shard_bytes = 100000,
                             .n_overrides = 1, .override_modules = om, .override_bits = ob};
    ASSERT_OK(sp_export_gptq(cdir, out2, &o, &e_));
    ASSERT_OK(sp_export_gptq(cdir, out1, &o, &e_)); /* force over an existing export */
    char idx[4096];
    path_join(idx, sizeof idx, out1, "model.safetensors.index.json");
    assert_int_equal(access(idx, F_OK), 0);
    path_join(idx, sizeof idx, out1, "model.safetensors");
    assert_int_not_equal(access(idx, F_OK), 0);
    ASSERT_OK(sp_model_select_bits(cm, "model.layers.2.mlp.up_proj", 4, &e_));
    ASSERT_OK(sp_model_open(&gm, out1, &e_));
    assert_models_equal(cm, gm);
    sp_model_close(gm);
    check_gptq_layout(out1, cpath, "model.layers.2.mlp.up_proj", 4, 1);
    const char *bad_m[1] = {"model.layers.2.mlp.nope"};
    o.override_modules = bad_m;
    expect_err(sp_export_gptq(cdir, out2, &o, &e), &e, SP_EINVAL, "model.layers.2.mlp.nope", NULL);
    o.override_modules = om;
    const int bad_b[1] = {2};
    o.override_bits = bad_b;
    expect_err(sp_export_gptq(cdir, out2, &o, &e), &e, SP_ENOTFOUND, "no 2-bit level", NULL);
    /* a failed export leaves the previous out2 in place and no partial directory */
    ASSERT_OK(sp_model_open(&gm, out2, &e_));
    sp_model_close(gm);
    DIR *d = opendir(root);
    struct dirent *de;
    int entries = 0;
    while ((de = readdir(d)) != NULL) entries += de->d_name[0] != '.';
    closedir(d);
    assert_int_equal(entries, 3); /* container, gptq1, gptq2 */

    /* all modules at 8 bits */
    ASSERT_OK(sp_model_select_bits(cm, NULL, 8, &e_));
    expect_err(sp_model_select_bits(cm, NULL, 2, &e), &e, SP_ENOTFOUND, "no 2-bit level", NULL);
    sp_tensor_desc dd;
    ASSERT_OK(sp_model_tensor_desc(cm, "model.layers.4.mlp.gate_proj.weight", &dd, &e_));
    assert_int_equal(dd.shape[0], 172);
    sp_model_close(cm);

    /* broken GPTQ checkpoints */
    char qpath[4096];
    path_join(qpath, sizeof qpath, out2, "quantize_config.json");
    cJSON *q2 = read_json(out2, "quantize_config.json");
    cJSON_ReplaceItemInObject(q2, "bits", cJSON_CreateNumber(5));
    char *txt = cJSON_Print(q2);
    spit(qpath, txt, strlen(txt));
    cJSON_free(txt);
    expect_err(sp_model_open(&gm, out2, &e), &e, SP_EFORMAT, ".qweight", "shape must be");
    cJSON_ReplaceItemInObject(q2, "bits", cJSON_CreateNumber(3));
    cJSON_ReplaceItemInObject(q2, "quant_method", cJSON_CreateString("awq"));
    txt = cJSON_Print(q2);
    spit(qpath, txt, strlen(txt));
    cJSON_free(txt);
    expect_err(sp_model_open(&gm, out2, &e), &e, SP_EUNSUPPORTED, "quant_method", "awq");
    cJSON_Delete(q2);
    assert_int_equal(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
    rm_tree(root);
}

/* A zero point of 0 cannot be written as GPTQ v1 (zero − 1). */
static void test_export_zero_point_zero(void **state) {
    (void)state;
    char root[256], cdir[300], out[300], p[400];
    tmpdir(root, sizeof root);
    path_join(cdir, sizeof cdir, root, "c");
    path_join(out, sizeof out, root, "o");
    assert_int_equal(mkdir(cdir, 0755), 0);
    build_bundled_container(cdir);
    /* make layer 3's k_proj 4-bit zeros asymmetric with a 0 */
    path_join(p, sizeof p, cdir, SP_QCONTAINER_FILE);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t d = H5Dopen2(f, "/modules/model.layers.3.self_attn.k_proj/3bit/zeros", H5P_DEFAULT);
    assert_true(d >= 0);
    uint8_t z[32 * 2];
    assert_true(H5Dread(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, z) >= 0);
    z[5] = 0;
    assert_true(H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, z) >= 0);
    rewrite_crc(d, z, sizeof z);
    H5Dclose(d);
    H5Fclose(f);
    sp_err e = {0};
    expect_err(sp_export_gptq(cdir, out, NULL, &e), &e, SP_EUNSUPPORTED,
               "model.layers.3.self_attn.k_proj", "zero point 0 at row 2 group 1");
    assert_int_not_equal(access(out, F_OK), 0);
    sp_gptq_export_opts o = {.checkpoint_v2 = 1};
    ASSERT_OK(sp_export_gptq(cdir, out, &o, &e_));
    sp_model *a = NULL, *b = NULL;
    ASSERT_OK(sp_model_open(&a, cdir, &e_));
    ASSERT_OK(sp_model_open(&b, out, &e_));
    assert_models_equal(a, b);
    sp_model_close(a);
    sp_model_close(b);
    rm_tree(root);
}

/* Export of a hand-made container: per-module group size and sym overrides in "dynamic",
 * gptq_v2 zeros, dense tensors as written. */
static void test_export_small_dynamic(void **state) {
    (void)state;
    char root[256], cdir[300], out[300], p[400], from[4096];
    tmpdir(root, sizeof root);
    path_join(cdir, sizeof cdir, root, "c");
    path_join(out, sizeof out, root, "o");
    assert_int_equal(mkdir(cdir, 0755), 0);
    path_join(from, sizeof from, SP_TEST_MODEL_DIR, "config.json");
    path_join(p, sizeof p, cdir, "config.json");
    copy_file(from, p);
    path_join(p, sizeof p, cdir, SP_QCONTAINER_FILE);
    small_set s;
    small_set_make(&s);
    small_write(p, &s, 0); /* MOD_A at 4 (default), MOD_B selected at 8 */
    sp_gptq_export_opts o = {.checkpoint_v2 = 1};
    ASSERT_OK(sp_export_gptq(cdir, out, &o, &e_));
    cJSON *qc = read_json(out, "quantize_config.json");
    assert_int_equal(cJSON_GetObjectItem(qc, "bits")->valueint, 4);
    assert_int_equal(cJSON_GetObjectItem(qc, "group_size")->valueint, 16);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(qc, "sym")));
    assert_string_equal(cJSON_GetObjectItem(qc, "checkpoint_format")->valuestring, "gptq_v2");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(qc, "shardpress_padded"))); /* 45·4 bits */
    cJSON *dyn = cJSON_GetObjectItem(qc, "dynamic");
    assert_int_equal(cJSON_GetArraySize(dyn), 1);
    cJSON *ov = cJSON_GetObjectItem(dyn, "+:^model\\.layers\\.0\\.mlp\\.down_proj$");
    assert_non_null(ov);
    assert_int_equal(cJSON_GetObjectItem(ov, "bits")->valueint, 8);
    assert_int_equal(cJSON_GetObjectItem(ov, "group_size")->valueint, -1);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(ov, "sym")));
    cJSON_Delete(qc);
    check_gptq_layout(out, p, MOD_A, 4, 1);
    check_gptq_layout(out, p, MOD_B, 8, 1);
    sp_st_set *set = NULL;
    ASSERT_OK(sp_st_set_open_dir(&set, out, &e_));
    const sp_st_tensor *t = sp_st_set_find(set, "model.embed_tokens.weight", NULL);
    assert_non_null(t);
    assert_int_equal(t->dtype, SP_DTYPE_F32);
    assert_int_equal(t->shape[0], 5);
    assert_int_equal(t->shape[1], 3);
    assert_memory_equal(t->data, s.emb, sizeof s.emb);
    sp_st_set_close(set);
    small_set_free(&s);
    rm_tree(root);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_export_roundtrip),
        cmocka_unit_test(test_export_zero_point_zero),
        cmocka_unit_test(test_export_small_dynamic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
