/* test_shards_config.c — config.json parsing and writing, dtype conversions, and the
 * safetensors writer's on-disk layout.
 *
 * fp16 conversions are checked against GCC's _Float16 (an independent, correctly rounded
 * implementation) over all 65536 half values and a sweep of fp32 bit patterns.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "tests/unit/shards_test_util.h"

static sp_status load_cfg_text(const char *json, sp_config *c, sp_err *err) {
    char dir[256], p[4096];
    tu_tmpdir(dir, sizeof dir);
    tu_write_str(tu_path(p, sizeof p, dir, "config.json"), json);
    sp_status st = sp_config_load_json(c, p, err);
    tu_rmdir(dir);
    return st;
}

#define BASE "\"hidden_size\": 64, \"intermediate_size\": 172, \"num_hidden_layers\": 2, " \
             "\"num_attention_heads\": 8, \"vocab_size\": 100"

static void test_config_defaults_and_variants(void **state) {
    (void)state;
    sp_config c;
    sp_err err = {0};
    /* Llama with defaults: kv heads = heads, head_dim = D / Hq, untied, no bos/eos */
    assert_int_equal(load_cfg_text("{\"architectures\": [\"LlamaForCausalLM\"], " BASE "}", &c,
                                   &err), SP_OK);
    assert_int_equal(c.n_kv_heads, 8);
    assert_int_equal(c.head_dim, 8);
    assert_int_equal(c.tie_embeddings, 0);
    assert_int_equal(c.qkv_bias, 0);
    assert_int_equal(c.bos_id, -1);
    assert_int_equal(c.eos_id, -1);
    assert_int_equal(c.max_seq_len, 2048);
    assert_true(c.norm_eps == 1e-6f);
    assert_true(c.rope_theta == 10000.0f);
    /* Qwen2: biases; sliding window ignored unless use_sliding_window */
    assert_int_equal(load_cfg_text("{\"architectures\": [\"Qwen2ForCausalLM\"], " BASE
                                   ", \"sliding_window\": 64, \"use_sliding_window\": false, "
                                   "\"max_position_embeddings\": 4096, \"eos_token_id\": [7, 8], "
                                   "\"bos_token_id\": null, \"rope_theta\": 1000000.0}", &c, &err),
                     SP_OK);
    assert_int_equal(c.qkv_bias, 1);
    assert_int_equal(c.eos_id, 7);
    assert_int_equal(c.bos_id, -1);
    assert_true(c.rope_theta == 1e6f);
    assert_string_equal(c.arch, "Qwen2ForCausalLM");
    /* Llama with attention_bias, explicit head_dim and Llama 3 rope scaling */
    assert_int_equal(load_cfg_text("{\"architectures\": [\"LlamaForCausalLM\"], " BASE
                                   ", \"attention_bias\": true, \"head_dim\": 16, "
                                   "\"num_key_value_heads\": 2, \"rope_scaling\": {\"rope_type\": "
                                   "\"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, "
                                   "\"high_freq_factor\": 4.0, "
                                   "\"original_max_position_embeddings\": 8192}}", &c, &err),
                     SP_OK);
    assert_int_equal(c.qkv_bias, 1);
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.n_kv_heads, 2);
    assert_int_equal(c.rope_scaling_llama3, 1);
    assert_true(c.rope_factor == 8.0f && c.rope_low_freq_factor == 1.0f &&
                c.rope_high_freq_factor == 4.0f);
    assert_int_equal(c.rope_original_max_pos, 8192);
    /* Mistral whose window covers every position is plain attention */
    assert_int_equal(load_cfg_text("{\"architectures\": [\"MistralForCausalLM\"], " BASE
                                   ", \"sliding_window\": 4096, \"max_position_embeddings\": 4096}",
                                   &c, &err), SP_OK);
    assert_int_equal(load_cfg_text("{\"architectures\": [\"MistralForCausalLM\"], " BASE
                                   ", \"sliding_window\": null}", &c, &err), SP_OK);
    /* no "architectures": model_type decides */
    assert_int_equal(load_cfg_text("{\"model_type\": \"llama\", " BASE "}", &c, &err), SP_OK);
    assert_string_equal(c.arch, "LlamaForCausalLM");
}

static void test_config_rejects(void **state) {
    (void)state;
    static const struct { const char *json; sp_status code; const char *needle; } cases[] = {
        {"{\"architectures\": [\"MistralForCausalLM\"], " BASE ", \"sliding_window\": 4096, "
         "\"max_position_embeddings\": 32768}", SP_EUNSUPPORTED, "sliding_window"},
        {"{\"architectures\": [\"MistralForCausalLM\"], " BASE ", \"max_position_embeddings\": "
         "32768}", SP_EUNSUPPORTED, "sliding_window 4096"},
        {"{\"architectures\": [\"Qwen2ForCausalLM\"], " BASE ", \"sliding_window\": 64, "
         "\"use_sliding_window\": true}", SP_EUNSUPPORTED, "sliding_window 64"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"rope_scaling\": {\"type\": "
         "\"yarn\", \"factor\": 4.0}}", SP_EUNSUPPORTED, "yarn"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"rope_scaling\": {\"rope_type\": "
         "\"llama3\", \"factor\": 8.0}}", SP_EFORMAT, "low_freq_factor"},
        {"{\"architectures\": [\"FalconForCausalLM\"], " BASE "}", SP_EUNSUPPORTED, "architectures"},
        {"{\"architectures\": [], " BASE "}", SP_EFORMAT, "architectures"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64}", SP_EFORMAT,
         "intermediate_size"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"num_key_value_heads\": 3}",
         SP_EFORMAT, "num_key_value_heads"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"hidden_act\": \"gelu\"}",
         SP_EUNSUPPORTED, "hidden_act"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"rms_norm_eps\": -1}", SP_EFORMAT,
         "rms_norm_eps"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64.5, \"intermediate_size\": "
         "1, \"num_hidden_layers\": 1, \"num_attention_heads\": 1, \"vocab_size\": 1}", SP_EFORMAT,
         "hidden_size"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"tie_word_embeddings\": 1}",
         SP_EFORMAT, "tie_word_embeddings"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", }", SP_EFORMAT, "JSON"},
        /* issue 23: the rotation record */
        {"{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"shardpress_rotation\": "
         "{\"method\": \"givens\", \"seed\": \"1\"}}", SP_EFORMAT, "shardpress_rotation.method"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"shardpress_rotation\": "
         "{\"method\": \"hadamard\", \"seed\": 1}}", SP_EFORMAT, "shardpress_rotation.seed"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"shardpress_rotation\": "
         "{\"method\": \"hadamard\", \"seed\": \"-1\"}}", SP_EFORMAT, "shardpress_rotation.seed"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sp_config c;
        sp_err err = {0};
        sp_status st = load_cfg_text(cases[i].json, &c, &err);
        if (st != cases[i].code) fail_msg("case %zu: got %d (%s)", i, (int)st, err.msg);
        assert_true(tu_msg_has(err.msg, "config.json", cases[i].needle, NULL));
    }
}

static void test_config_save_roundtrip(void **state) {
    (void)state;
    char dir[256], p[4096];
    tu_tmpdir(dir, sizeof dir);
    sp_config a, b;
    sp_err err = {0};
    assert_int_equal(sp_config_load_json(&a, CFG_BUNDLED, &err), SP_OK);
    a.rope_scaling_llama3 = 1;
    a.rope_factor = 8;
    a.rope_low_freq_factor = 1;
    a.rope_high_freq_factor = 4;
    a.rope_original_max_pos = 8192;
    tu_path(p, sizeof p, dir, "config.json");
    assert_int_equal(sp_config_save_json(&a, p, "{\"quantization_config\": {\"bits\": 4}, "
                                         "\"torch_dtype\": \"float16\"}", &err), SP_OK);
    assert_int_equal(sp_config_load_json(&b, p, &err), SP_OK);
    assert_memory_equal(&a, &b, sizeof a);
    size_t n;
    char *text = (char *)tu_read(p, &n);
    assert_non_null(strstr(text, "\"rms_norm_eps\":\t1e-05"));
    assert_non_null(strstr(text, "\"quantization_config\""));
    cJSON *root = cJSON_Parse(text);
    assert_string_equal(cJSON_GetObjectItem(root, "torch_dtype")->valuestring, "float16");
    cJSON_Delete(root);
    free(text);
    /* a llama2.c config is written as Llama */
    sp_model *m = NULL;
    assert_int_equal(sp_model_open(&m, BIN_BUNDLED, &err), SP_OK);
    assert_int_equal(sp_config_save_json(sp_model_config(m), p, NULL, &err), SP_OK);
    assert_int_equal(sp_config_load_json(&b, p, &err), SP_OK);
    assert_string_equal(b.arch, "LlamaForCausalLM");
    assert_int_equal(b.dim, 64);
    assert_int_equal(b.tie_embeddings, 1);
    assert_true(b.norm_eps == 1e-5f);
    sp_model_close(m);
    /* Mistral and Qwen2 come back as themselves (no window, biases kept) */
    snprintf(a.arch, sizeof a.arch, "MistralForCausalLM");
    assert_int_equal(sp_config_save_json(&a, p, NULL, &err), SP_OK);
    assert_int_equal(sp_config_load_json(&b, p, &err), SP_OK);
    assert_memory_equal(&a, &b, sizeof a);
    memset(a.arch, 0, sizeof a.arch);
    snprintf(a.arch, sizeof a.arch, "Qwen2ForCausalLM");
    a.qkv_bias = 1;
    assert_int_equal(sp_config_save_json(&a, p, NULL, &err), SP_OK);
    assert_int_equal(sp_config_load_json(&b, p, &err), SP_OK);
    assert_memory_equal(&a, &b, sizeof a);
    assert_int_equal(sp_config_save_json(&a, p, "[1]", &err), SP_EINVAL);
    /* issue 23: the rotation survives a save and a load (the seed exactly, beyond 2^53) */
    snprintf(a.rotation, sizeof a.rotation, "orthogonal");
    a.rotation_seed = 9223372036854775807ull;
    assert_int_equal(sp_config_save_json(&a, p, NULL, &err), SP_OK);
    assert_int_equal(sp_config_load_json(&b, p, &err), SP_OK);
    assert_string_equal(b.rotation, "orthogonal");
    assert_true(b.rotation_seed == 9223372036854775807ull);
    assert_memory_equal(&a, &b, sizeof a);
    tu_rmdir(dir);
}

static uint16_t f16_bits(_Float16 h) {
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}

static void test_f16_exhaustive(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        _Float16 ref;
        uint16_t hb = (uint16_t)h;
        memcpy(&ref, &hb, 2);
        float want = (float)ref, got = sp_f16_to_f32(hb);
        int nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (nan) {
            assert_true(isnan(got));
            assert_true(isnan(sp_f16_to_f32(sp_f32_to_f16(got))));
            continue;
        }
        if (memcmp(&want, &got, 4) != 0) fail_msg("f16 0x%04x: %a vs %a", h, got, want);
        if (sp_f32_to_f16(got) != hb) fail_msg("roundtrip 0x%04x", h);
    }
}

static void test_f32_to_f16_rounding(void **state) {
    (void)state;
    /* ties to even, subnormals, overflow */
    static const struct { float x; uint16_t h; } cases[] = {
        {1.0f + 0x1p-11f, 0x3c00},        {1.0f + 3 * 0x1p-11f, 0x3c02},
        {65504.0f, 0x7bff},               {65519.99f, 0x7bff},
        {65520.0f, 0x7c00},               {1e10f, 0x7c00},
        {0x1p-14f, 0x0400},               {0x1p-24f, 0x0001},
        {0x1p-25f, 0x0000},               {0x1.8p-25f, 0x0001},
        {3 * 0x1p-25f, 0x0002},           {5 * 0x1p-25f, 0x0002},
        {-0.0f, 0x8000},                  {-INFINITY, 0xfc00},
        {0x1.ffcp-15f, 0x0400},           {-2.5f, 0xc100},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (sp_f32_to_f16(cases[i].x) != cases[i].h)
            fail_msg("%a -> 0x%04x, want 0x%04x", cases[i].x, sp_f32_to_f16(cases[i].x), cases[i].h);
    /* a sweep of fp32 bit patterns against the compiler's conversion */
    for (uint64_t u = 0; u < 0x100000000ull; u += 2039) {
        uint32_t b = (uint32_t)u;
        float x;
        memcpy(&x, &b, 4);
        uint16_t got = sp_f32_to_f16(x);
        if (isnan(x)) {
            assert_true((got & 0x7c00) == 0x7c00 && (got & 0x3ff));
            continue;
        }
        uint16_t want = f16_bits((_Float16)x);
        if (got != want) fail_msg("%a (0x%08x) -> 0x%04x, want 0x%04x", x, b, got, want);
    }
}

static void test_bf16(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = sp_bf16_to_f32((uint16_t)h);
        uint32_t b;
        memcpy(&b, &f, 4);
        assert_int_equal(b, h << 16);
        if (!isnan(f)) assert_int_equal(sp_f32_to_bf16(f), h);
    }
    static const struct { uint32_t x; uint16_t h; } cases[] = {
        {0x3f808000u, 0x3f80}, /* tie, even stays */
        {0x3f818000u, 0x3f82}, /* tie, odd rounds up */
        {0x3f808001u, 0x3f81}, /* above the tie */
        {0x7f7fffffu, 0x7f80}, /* FLT_MAX rounds to Inf */
        {0x80000001u, 0x8000}, /* tiny negative */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float x;
        memcpy(&x, &cases[i].x, 4);
        assert_int_equal(sp_f32_to_bf16(x), cases[i].h);
    }
    uint16_t q = sp_f32_to_bf16(NAN);
    assert_true((q & 0x7f80) == 0x7f80 && (q & 0x7f));
    uint32_t snan = 0x7f800001u; /* payload only in the low bits: must stay NaN */
    float sn;
    memcpy(&sn, &snan, 4);
    assert_true(isnan(sp_bf16_to_f32(sp_f32_to_bf16(sn))));
}

static void test_dtype_table(void **state) {
    (void)state;
    static const char *const names[] = {"F32", "F16", "BF16", "I32", "U8", "I8", "I64"};
    static const size_t sizes[] = {4, 2, 2, 4, 1, 1, 8};
    for (int i = 0; i < 7; i++) {
        sp_dtype dt;
        assert_true(sp_dtype_from_name(names[i], &dt));
        assert_string_equal(sp_dtype_name(dt), names[i]);
        assert_int_equal(sp_dtype_size(dt), sizes[i]);
    }
    sp_dtype dt;
    assert_false(sp_dtype_from_name("F64", &dt));
    const unsigned char raw[] = {0xff, 0xff, 0xff, 0xff, 0xfe, 0xff, 0xff, 0xff};
    float out[8];
    sp_dtype_to_f32(out, raw, SP_DTYPE_I32, 2);
    assert_true(out[0] == -1.0f && out[1] == -2.0f);
    sp_dtype_to_f32(out, raw, SP_DTYPE_U8, 2);
    assert_true(out[0] == 255.0f);
    sp_dtype_to_f32(out, raw, SP_DTYPE_I8, 1);
    assert_true(out[0] == -1.0f);
    sp_dtype_to_f32(out, raw, SP_DTYPE_I64, 1); /* 0xfffffffeffffffff */
    assert_true(out[0] == -4294967297.0f);
}

static void test_writer_layout(void **state) {
    (void)state;
    char dir[256], p[4096];
    tu_tmpdir(dir, sizeof dir);
    tu_path(p, sizeof p, dir, "w.safetensors");
    const float a[3] = {1, 2, 3};
    const uint16_t b[4] = {0x3c00, 0x4000, 0x4200, 0x4400};
    const int64_t c[1] = {-7};
    sp_st_write_tensor t[4] = {
        {.name = "zeta", .dtype = SP_DTYPE_F32, .ndim = 1, .shape = {3}, .data = a},
        {.name = "alpha", .dtype = SP_DTYPE_F16, .ndim = 2, .shape = {2, 2}, .data = b},
        {.name = "scalar", .dtype = SP_DTYPE_I64, .ndim = 0, .data = c},
        {.name = "empty", .dtype = SP_DTYPE_BF16, .ndim = 2, .shape = {0, 5}, .data = NULL},
    };
    sp_err err = {0};
    assert_int_equal(sp_safetensors_write(p, t, 4, "{\"format\": \"pt\"}", &err), SP_OK);
    size_t n = 0;
    unsigned char *raw = tu_read(p, &n);
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--) h = (h << 8) | raw[i];
    assert_int_equal((8 + h) % 8, 0);
    assert_int_equal(n, 8 + h + 12 + 8 + 8);
    /* data in name order: alpha (8 bytes), empty (0), scalar (8), zeta (12) */
    assert_memory_equal(raw + 8 + h, b, 8);
    assert_memory_equal(raw + 8 + h + 8, c, 8);
    assert_memory_equal(raw + 8 + h + 16, a, 12);
    assert_true(raw[8 + h - 1] == ' ' || raw[8 + h - 1] == '}');
    free(raw);
    sp_st_file *f = NULL;
    assert_int_equal(sp_safetensors_open(&f, p, &err), SP_OK);
    assert_int_equal(sp_safetensors_count(f), 4);
    assert_string_equal(sp_safetensors_at(f, 0)->name, "alpha");
    assert_string_equal(sp_safetensors_metadata(f, "format"), "pt");
    assert_null(sp_safetensors_metadata(f, "nope"));
    const sp_st_tensor *s = sp_safetensors_find(f, "scalar");
    assert_int_equal(s->ndim, 0);
    assert_int_equal(s->nbytes, 8);
    const sp_st_tensor *al = sp_safetensors_find(f, "alpha");
    float conv[4];
    sp_dtype_to_f32(conv, al->data, al->dtype, 4);
    assert_true(conv[0] == 1 && conv[1] == 2 && conv[2] == 3 && conv[3] == 4);
    assert_null(sp_safetensors_find(f, "missing"));
    sp_safetensors_close(f);
    /* only the output is left: no temporary files */
    DIR *d = opendir(dir);
    int count = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) count += de->d_name[0] != '.';
    closedir(d);
    assert_int_equal(count, 1);
    /* bad input writes nothing */
    t[2].name = "zeta";
    assert_int_equal(sp_safetensors_write(p, t, 4, NULL, &err), SP_EINVAL);
    assert_true(tu_msg_has(err.msg, p, "zeta", NULL));
    t[2].name = "scalar";
    assert_int_equal(sp_safetensors_write(p, t, 4, "{\"format\": 1}", &err), SP_EINVAL);
    tu_rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults_and_variants),
        cmocka_unit_test(test_config_rejects),
        cmocka_unit_test(test_config_save_roundtrip),
        cmocka_unit_test(test_f16_exhaustive),
        cmocka_unit_test(test_f32_to_f16_rounding),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_dtype_table),
        cmocka_unit_test(test_writer_layout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
