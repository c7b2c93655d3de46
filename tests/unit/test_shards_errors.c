/* test_shards_errors.c — every kind of bad model input gets the right code and a one-line
 * message naming the file and what is wrong. Each broken file is a modified copy of the
 * bundled model in a temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "tests/unit/test_data.h"

#include "tests/unit/shards_test_util.h"

typedef struct {
    char dir[256];
    char st[4096];   /* dir/model.safetensors */
    tu_st src;       /* bundled safetensors in memory, header editable */
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    tu_tmpdir(f->dir, sizeof f->dir);
    tu_model_dir_config(f->dir);
    tu_path(f->st, sizeof f->st, f->dir, "model.safetensors");
    tu_st_load(&f->src, ST_BUNDLED);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    tu_st_free(&f->src);
    tu_rmdir(f->dir);
    free(f);
    return 0;
}

/* Write the (edited) header + data to the fixture's model.safetensors. */
static void write_st(fixture *f) { tu_st_write_raw(f->st, f->src.hdr, f->src.data, f->src.data_len); }

static sp_status open_st(fixture *f, sp_err *err) {
    sp_st_file *sf = NULL;
    sp_status st = sp_safetensors_open(&sf, f->st, err);
    if (st == SP_OK) sp_safetensors_close(sf); else assert_null(sf);
    return st;
}

static sp_status open_model(const char *path, sp_err *err) {
    sp_model *m = NULL;
    sp_status st = sp_model_open(&m, path, err);
    if (st == SP_OK) sp_model_close(m); else assert_null(m);
    return st;
}

static void test_unchanged_copy_opens(void **state) {
    fixture *f = *state;
    write_st(f);
    sp_err err = {0};
    assert_int_equal(open_st(f, &err), SP_OK);
    assert_int_equal(open_model(f->dir, &err), SP_OK);
}

static void test_truncated_data(void **state) {
    fixture *f = *state;
    sp_err err = {0};
    /* cut 1000 bytes: the tensor at [1031680, 1039872) now ends past the data */
    tu_st_write_raw(f->st, f->src.hdr, f->src.data, f->src.data_len - 1000);
    assert_int_equal(open_st(f, &err), SP_ETRUNC);
    assert_true(tu_msg_has(err.msg, f->st, "model.layers.4.self_attn.v_proj.weight",
                           "past end of data", "1039128", NULL));
    assert_int_equal(open_model(f->dir, &err), SP_ETRUNC);
    assert_true(tu_msg_has(err.msg, f->st, "truncated", NULL));
}

static void test_truncated_header(void **state) {
    fixture *f = *state;
    sp_err err = {0};
    tu_write(f->st, f->src.file, 5); /* not even the length */
    assert_int_equal(open_st(f, &err), SP_ETRUNC);
    assert_true(tu_msg_has(err.msg, f->st, "5 bytes", NULL));
    tu_write(f->st, f->src.file, 100); /* cut inside the JSON header */
    assert_int_equal(open_st(f, &err), SP_ETRUNC);
    assert_true(tu_msg_has(err.msg, f->st, "header length 4952", NULL));
}

static void test_header_length_past_end(void **state) {
    fixture *f = *state;
    sp_err err = {0};
    unsigned char *buf = malloc(f->src.file_len);
    memcpy(buf, f->src.file, f->src.file_len);
    uint64_t len = f->src.file_len; /* one header longer than the whole file */
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(len >> (8 * i));
    tu_write(f->st, buf, f->src.file_len);
    assert_int_equal(open_st(f, &err), SP_ETRUNC);
    assert_true(tu_msg_has(err.msg, f->st, "header length 1045088", "past the end", NULL));
    len = (uint64_t)1 << 40; /* garbage: corrupt, not truncated */
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(len >> (8 * i));
    tu_write(f->st, buf, f->src.file_len);
    assert_int_equal(open_st(f, &err), SP_EFORMAT);
    assert_true(tu_msg_has(err.msg, f->st, "header length", NULL));
    free(buf);
}

static void test_invalid_json_header(void **state) {
    fixture *f = *state;
    sp_err err = {0};
    unsigned char *buf = malloc(f->src.file_len);
    memcpy(buf, f->src.file, f->src.file_len);
    buf[8] = '['; /* the object's opening brace */
    tu_write(f->st, buf, f->src.file_len);
    assert_int_equal(open_st(f, &err), SP_EFORMAT);
    assert_true(tu_msg_has(err.msg, f->st, "JSON", NULL));
    free(buf);
}

static void test_overlapping_offsets(void **state) {
    fixture *f = *state;
    sp_err err = {0};
    /* q_proj (64x64 F32) is moved onto o_proj's bytes */
    const cJSON *o = cJSON_GetObjectItem(tu_st_entry(&f->src, "model.layers.0.self_attn.o_proj.weight"),
                                         "data_offsets");
    double b = cJSON_GetArrayItem(o, 0)->valuedouble, e = cJSON_GetArrayItem(o, 1)->valuedouble;
    tu_set_pair(tu_st_entry(&f->src, "model.layers.0.self_attn.q_proj.weight"), "data_offsets",
                b + 8, e + 8);
    write_st(f);
    assert_int_equal(open_st(f, &err), SP_EFORMAT);
    assert_true(tu_msg_has(err.msg, f->st, "model.layers.0.self_attn.q_proj.weight",
                           "model.layers.0.self_attn.o_proj.weight", "overlap", NULL));
}

static void test_offsets_inconsistent(void **state) {
    fixture *f = *state;
    sp_err err = {0};
    cJSON *e = tu_st_entry(&f->src, "model.norm.weight");
    tu_set_pair(e, "data_offsets", 1040128, 1039872); /* begin > end */
    write_st(f);
    assert_int_equal(open_st(f, &err), SP_EFORMAT);
    assert_true(tu_msg_has(err.msg, f->st, "model.norm.weight", "begin > end", NULL));
    tu_set_pair(e, "data_offsets", 1039872, 1040000); /* 128 bytes for 64 floats */
    write_st(f);
    assert_int_equal(open_st(f, &err), SP_EFORMAT);
    assert_true(tu_msg_has(err.msg, f->st, "model.norm.weight", "128 bytes", "256", NULL));
}

static void test_duplicate_tensor(void **state) {
    fixture *f = *state;
    sp_err err = {0};
    cJSON *dup = cJSON_Duplicate(tu_st_entry(&f->src, "model.norm.weight"), 1);
    cJSON_AddItemToObject(f->src.hdr, "model.norm.weight", dup);
    write_st(f);
    assert_int_equal(open_st(f, &err), SP_EFORMAT);
    assert_true(tu_msg_has(err.msg, f->st, "model.norm.weight", "twice", NULL));
}

static void test_bad_dtype_in_file(void **state) {
    fixture *f = *state;
    sp_err err = {0};
    cJSON *e = tu_st_entry(&f->src, "model.layers.1.mlp.up_proj.weight");
    cJSON_ReplaceItemInObject(e, "dtype", cJSON_CreateString("F99"));
    write_st(f);
    assert_int_equal(open_st(f, &err), SP_EFORMAT);
    assert_true(tu_msg_has(err.msg, f->st, "model.layers.1.mlp.up_proj.weight", "F99", NULL));
    /* a real safetensors dtype that shardpress does not read */
    cJSON_ReplaceItemInObject(e, "dtype", cJSON_CreateString("F64"));
    write_st(f);
    assert_int_equal(open_st(f, &err), SP_EUNSUPPORTED);
    assert_true(tu_msg_has(err.msg, f->st, "model.layers.1.mlp.up_proj.weight", "F64", NULL));
}

/* I32 has the same size as F32, so the file is valid; the model refuses it as a weight. */
static void test_wrong_dtype_for_weight(void **state) {
    fixture *f = *state;
    sp_err err = {0};
    cJSON *e = tu_st_entry(&f->src, "model.layers.2.self_attn.v_proj.weight");
    cJSON_ReplaceItemInObject(e, "dtype", cJSON_CreateString("I32"));
    write_st(f);
    assert_int_equal(open_st(f, &err), SP_OK);
    assert_int_equal(open_model(f->dir, &err), SP_EFORMAT);
    assert_true(tu_msg_has(err.msg, f->st, "model.layers.2.self_attn.v_proj.weight", "I32", NULL));
}

static void test_wrong_shape(void **state) {
    fixture *f = *state;
    sp_err err = {0};
    cJSON *e = tu_st_entry(&f->src, "model.layers.0.self_attn.q_proj.weight");
    tu_set_pair(e, "shape", 32, 128); /* same bytes, wrong shape */
    write_st(f);
    assert_int_equal(open_st(f, &err), SP_OK);
    assert_int_equal(open_model(f->dir, &err), SP_EFORMAT);
    assert_true(tu_msg_has(err.msg, f->st, "model.layers.0.self_attn.q_proj.weight", "[32, 128]",
                           "[64, 64]", NULL));
    tu_set_pair(e, "shape", 64, 65); /* shape disagrees with the byte length */
    write_st(f);
    assert_int_equal(open_st(f, &err), SP_EFORMAT);
    assert_true(tu_msg_has(err.msg, f->st, "model.layers.0.self_attn.q_proj.weight", "[64, 65]",
                           NULL));
}

static void test_missing_tensor(void **state) {
    fixture *f = *state;
    sp_err err = {0};
    cJSON_DeleteItemFromObject(f->src.hdr, "model.layers.3.mlp.up_proj.weight");
    write_st(f);
    assert_int_equal(open_st(f, &err), SP_OK); /* a gap in the data is allowed */
    assert_int_equal(open_model(f->dir, &err), SP_ENOTFOUND);
    assert_true(tu_msg_has(err.msg, f->dir, "model.layers.3.mlp.up_proj.weight", "[172, 64]", NULL));
}

static void test_unsupported_architecture(void **state) {
    fixture *f = *state;
    sp_err err = {0};
    write_st(f);
    char p[4096];
    size_t n = 0;
    char *cfg = (char *)tu_read(CFG_BUNDLED, &n);
    char *at = strstr(cfg, "LlamaForCausalLM");
    assert_non_null(at);
    char *edited = malloc(n + 32);
    snprintf(edited, n + 32, "%.*sGPT2LMHeadModel%s", (int)(at - cfg), cfg, at + 16);
    tu_write_str(tu_path(p, sizeof p, f->dir, "config.json"), edited);
    sp_config c;
    assert_int_equal(sp_config_load_json(&c, p, &err), SP_EUNSUPPORTED);
    assert_true(tu_msg_has(err.msg, p, "architectures", "GPT2LMHeadModel", NULL));
    assert_int_equal(open_model(f->dir, &err), SP_EUNSUPPORTED);
    assert_true(tu_msg_has(err.msg, "config.json", "architectures", NULL));
    assert_null(strchr(err.msg, '\n'));
    free(edited);
    free(cfg);
}

static void test_index_tensor_missing_in_shard(void **state) {
    fixture *f = *state;
    sp_err err = {0};
    char p[4096];
    /* one shard named by the index, which also lists a tensor the shard lacks */
    tu_st_write_raw(tu_path(p, sizeof p, f->dir, "model-00001-of-00001.safetensors"), f->src.hdr,
                    f->src.data, f->src.data_len);
    cJSON *index = cJSON_CreateObject(), *map = cJSON_AddObjectToObject(index, "weight_map");
    const cJSON *e;
    cJSON_ArrayForEach(e, f->src.hdr) {
        if (strcmp(e->string, "__metadata__") != 0)
            cJSON_AddStringToObject(map, e->string, "model-00001-of-00001.safetensors");
    }
    cJSON_AddStringToObject(map, "lm_head.weight", "model-00001-of-00001.safetensors");
    char *text = cJSON_Print(index);
    tu_write_str(tu_path(p, sizeof p, f->dir, "model.safetensors.index.json"), text);
    assert_int_equal(open_model(f->dir, &err), SP_ENOTFOUND);
    assert_true(tu_msg_has(err.msg, "model.safetensors.index.json", "lm_head.weight",
                           "model-00001-of-00001.safetensors", NULL));
    /* a shard outside the directory is refused */
    cJSON_ReplaceItemInObject(map, "lm_head.weight", cJSON_CreateString("../x.safetensors"));
    cJSON_free(text);
    text = cJSON_Print(index);
    tu_write_str(p, text);
    assert_int_equal(open_model(f->dir, &err), SP_EFORMAT);
    assert_true(tu_msg_has(err.msg, "model.safetensors.index.json", "../x.safetensors", NULL));
    /* a shard that does not exist */
    cJSON_ReplaceItemInObject(map, "lm_head.weight", cJSON_CreateString("nope.safetensors"));
    cJSON_free(text);
    text = cJSON_Print(index);
    tu_write_str(p, text);
    assert_int_equal(open_model(f->dir, &err), SP_ENOTFOUND);
    assert_true(tu_msg_has(err.msg, "nope.safetensors", NULL));
    cJSON_free(text);
    cJSON_Delete(index);
}

static void test_no_weights(void **state) {
    fixture *f = *state;
    sp_err err = {0};
    assert_int_equal(open_model(f->dir, &err), SP_ENOTFOUND); /* config.json only */
    assert_true(tu_msg_has(err.msg, f->dir, "model.safetensors", NULL));
    assert_int_equal(open_model("/nonexistent/model", &err), SP_ENOTFOUND);
    assert_true(tu_msg_has(err.msg, "/nonexistent/model", NULL));
}

static void test_llama2c_wrong_size(void **state) {
    fixture *f = *state;
    sp_err err = {0};
    char p[4096];
    size_t n = 0;
    unsigned char *bin = tu_read(BIN_BUNDLED, &n);
    assert_int_equal(n, 1056540);
    unsigned char *big = calloc(1, n + 4);
    memcpy(big, bin, n);
    tu_path(p, sizeof p, f->dir, "stories260K.bin");
    tu_write(p, big, n + 4);
    assert_int_equal(open_model(p, &err), SP_EFORMAT);
    assert_true(tu_msg_has(err.msg, p, "1056544 bytes", "implies 1056540 bytes", NULL));
    tu_write(p, bin, n - 4096);
    assert_int_equal(open_model(p, &err), SP_ETRUNC);
    assert_true(tu_msg_has(err.msg, p, "1052444 bytes", "implies 1056540 bytes", NULL));
    /* negative vocab: an untied head of V*D floats must follow, which this file lacks */
    int32_t v = -512;
    memcpy(big + 20, &v, 4);
    tu_write(p, big, n);
    assert_int_equal(open_model(p, &err), SP_ETRUNC);
    assert_true(tu_msg_has(err.msg, p, "vocab_size -512", "implies 1187612 bytes", NULL));
    int32_t zero = 0;
    memcpy(big + 12, &zero, 4); /* n_heads 0 */
    tu_write(p, big, n);
    assert_int_equal(open_model(p, &err), SP_EFORMAT);
    assert_true(tu_msg_has(err.msg, p, "n_heads 0", NULL));
    free(big);
    free(bin);
}

/* An untied llama2.c file (built from the tied one) exposes lm_head.weight. */
static void test_llama2c_untied(void **state) {
    fixture *f = *state;
    sp_err err = {0};
    char p[4096];
    size_t n = 0;
    unsigned char *bin = tu_read(BIN_BUNDLED, &n);
    assert_non_null(bin);
    assert_int_equal(n, 1056540);
    size_t extra = 512 * 64 * 4;
    unsigned char *big = malloc(n + extra);
    memcpy(big, bin, n);
    memcpy(big + n, bin + 28 + 256, extra); /* wcls = embedding with a shift of 64 floats */
    int32_t v = -512;
    memcpy(big + 20, &v, 4);
    tu_write(tu_path(p, sizeof p, f->dir, "untied.bin"), big, n + extra);
    sp_model *m = NULL;
    assert_int_equal(sp_model_open(&m, p, &err), SP_OK);
    assert_int_equal(sp_model_config(m)->tie_embeddings, 0);
    float row[64];
    assert_int_equal(sp_model_read_head_rows(m, 3, 1, row, &err), SP_OK);
    assert_memory_equal(row, bin + 28 + 256 + 3 * 256, 256);
    sp_model_close(m);
    free(big);
    free(bin);
}

static void test_text_invalid_utf8(void **state) {
    fixture *f = *state;
    static const struct { const char *bytes; size_t offset; } cases[] = {
        {"abc\xC0\xAFxyz", 3},          /* overlong '/' */
        {"ab\xE0\x80\xAF", 2},          /* overlong 3-byte */
        {"a\xED\xA0\x80", 1},           /* surrogate U+D800 */
        {"hello \x80", 6},              /* stray continuation */
        {"\xF4\x90\x80\x80", 0},        /* above U+10FFFF */
        {"ok \xE2\x82", 3},             /* cut off at the end */
        {"x\xF8\x88\x80\x80\x80", 1},   /* 5-byte form */
        {"caf\xC3\xA9 \xE2\x82", 6},    /* valid é, then a cut-off € */
    };
    char p[4096];
    tu_path(p, sizeof p, f->dir, "calib.txt");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tu_write_str(p, cases[i].bytes);
        char *text = NULL;
        size_t len = 99;
        sp_err err = {0};
        assert_int_equal(sp_text_read_file(p, &text, &len, &err), SP_EFORMAT);
        assert_null(text);
        char want[64];
        snprintf(want, sizeof want, "byte offset %zu", cases[i].offset);
        assert_true(tu_msg_has(err.msg, p, "UTF-8", want, NULL));
    }
    const char *good = "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9D\x84\x9E \xEF\xBF\xBF \xF4\x8F\xBF\xBF";
    tu_write_str(p, good);
    char *text = NULL;
    size_t len = 0;
    sp_err err = {0};
    assert_int_equal(sp_text_read_file(p, &text, &len, &err), SP_OK);
    assert_int_equal(len, strlen(good));
    assert_string_equal(text, good);
    free(text);
}

static void test_text_empty_and_missing(void **state) {
    fixture *f = *state;
    char p[4096];
    tu_path(p, sizeof p, f->dir, "empty.txt");
    tu_write(p, "", 0);
    char *text = NULL;
    size_t len = 0;
    sp_err err = {0};
    assert_int_equal(sp_text_read_file(p, &text, &len, &err), SP_EFORMAT);
    assert_null(text);
    assert_true(tu_msg_has(err.msg, p, "empty", NULL));
    tu_path(p, sizeof p, f->dir, "missing.txt");
    assert_int_equal(sp_text_read_file(p, &text, &len, &err), SP_ENOTFOUND);
    assert_true(tu_msg_has(err.msg, p, NULL));
    assert_int_equal(sp_text_read_file(f->dir, &text, &len, &err), SP_EIO);
    /* a real corpus reads back whole */
    assert_int_equal(sp_text_read_file(tu_data("text/stories260K-samples/calib.txt"),
                                       &text, &len, &err), SP_OK);
    assert_true(len > 1000);
    assert_int_equal(strlen(text), len);
    free(text);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_unchanged_copy_opens),
        T(test_truncated_data),
        T(test_truncated_header),
        T(test_header_length_past_end),
        T(test_invalid_json_header),
        T(test_overlapping_offsets),
        T(test_offsets_inconsistent),
        T(test_duplicate_tensor),
        T(test_bad_dtype_in_file),
        T(test_wrong_dtype_for_weight),
        T(test_wrong_shape),
        T(test_missing_tensor),
        T(test_unsupported_architecture),
        T(test_index_tensor_missing_in_shard),
        T(test_no_weights),
        T(test_llama2c_wrong_size),
        T(test_llama2c_untied),
        T(test_text_invalid_utf8),
        T(test_text_empty_and_missing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
