/* sp_config.c — read and write Hugging Face config.json for Llama-family models
 * (see sp_config.h).
 *
 * Defaults follow transformers' config classes where config.json omits a field:
 *   num_key_value_heads = num_attention_heads, head_dim = hidden_size / num_attention_heads,
 *   rms_norm_eps = 1e-6, rope_theta = 10000, tie_word_embeddings = false,
 *   max_position_embeddings = 2048 (Llama) / 131072 (Mistral) / 32768 (Qwen2).
 * Architectures: LlamaForCausalLM, MistralForCausalLM (no sliding window), Qwen2ForCausalLM
 * (q/k/v biases; sliding window only when use_sliding_window is true).
 */
#include "shards/sp_config.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shards/sp_model.h"
#include "shards/sp_safetensors.h"

typedef enum { ARCH_LLAMA, ARCH_MISTRAL, ARCH_QWEN2 } arch_kind;

static const struct {
    const char *arch, *model_type;
    arch_kind kind;
    int default_max_pos;
} k_archs[] = {
    {"LlamaForCausalLM", "llama", ARCH_LLAMA, 2048},
    {"MistralForCausalLM", "mistral", ARCH_MISTRAL, 131072},
    {"Qwen2ForCausalLM", "qwen2", ARCH_QWEN2, 32768},
};
#define N_ARCHS (sizeof k_archs / sizeof k_archs[0])

/* Integer field: absent/null -> *present = 0; otherwise must be an integral number in
 * [lo, INT_MAX]. */
static sp_status get_int(const cJSON *root, const char *key, int lo, int *out, int *present,
                         const char *path, sp_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    *present = v != NULL && !cJSON_IsNull(v);
    if (!*present) return SP_OK;
    SP_RETURN_IF(!cJSON_IsNumber(v) || floor(v->valuedouble) != v->valuedouble ||
                     v->valuedouble < lo || v->valuedouble > INT_MAX,
                 err, SP_EFORMAT, "%s: field '%s' must be an integer >= %d", path, key, lo);
    *out = (int)v->valuedouble;
    return SP_OK;
}

static sp_status need_int(const cJSON *root, const char *key, int *out, const char *path,
                          sp_err *err) {
    int present = 0;
    SP_FORWARD(get_int(root, key, 1, out, &present, path, err));
    SP_RETURN_IF(!present, err, SP_EFORMAT, "%s: missing required field '%s'", path, key);
    return SP_OK;
}

/* Positive finite number; absent/null keeps *out. */
static sp_status get_pos_float(const cJSON *root, const char *key, float *out, const char *path,
                               sp_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) return SP_OK;
    SP_RETURN_IF(!cJSON_IsNumber(v) || !(v->valuedouble > 0) || !isfinite(v->valuedouble), err,
                 SP_EFORMAT, "%s: field '%s' must be a positive number", path, key);
    *out = (float)v->valuedouble;
    return SP_OK;
}

static sp_status get_bool(const cJSON *root, const char *key, int *out, const char *path,
                          sp_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) return SP_OK;
    SP_RETURN_IF(!cJSON_IsBool(v), err, SP_EFORMAT, "%s: field '%s' must be true or false", path,
                 key);
    *out = cJSON_IsTrue(v);
    return SP_OK;
}

/* bos/eos: an integer, a list of integers (the first is used), or absent/null (-1). */
static sp_status get_token_id(const cJSON *root, const char *key, int *out, const char *path,
                              sp_err *err) {
    *out = -1;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (v && cJSON_IsArray(v)) v = cJSON_GetArrayItem(v, 0);
    if (!v || cJSON_IsNull(v)) return SP_OK;
    SP_RETURN_IF(!cJSON_IsNumber(v) || floor(v->valuedouble) != v->valuedouble ||
                     v->valuedouble < 0 || v->valuedouble > INT_MAX,
                 err, SP_EFORMAT, "%s: field '%s' must be a token id or a list of token ids", path,
                 key);
    *out = (int)v->valuedouble;
    return SP_OK;
}

/* Which architecture: "architectures"[0], or "model_type" when the list is absent. */
static sp_status parse_arch(sp_config *cfg, const cJSON *root, size_t *which, const char *path,
                            sp_err *err) {
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (!archs && cJSON_IsString(mt)) {
        for (size_t i = 0; i < N_ARCHS; i++) {
            if (strcmp(mt->valuestring, k_archs[i].model_type) == 0) {
                *which = i;
                snprintf(cfg->arch, sizeof cfg->arch, "%s", k_archs[i].arch);
                return SP_OK;
            }
        }
        return sp_err_set(err, SP_EUNSUPPORTED, "%s: no \"architectures\" and model_type '%.60s' "
                          "is not supported (llama, mistral, qwen2)", path, mt->valuestring);
    }
    const cJSON *a0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    SP_RETURN_IF(!cJSON_IsString(a0), err, SP_EFORMAT,
                 "%s: field \"architectures\" must be a non-empty list of strings", path);
    for (size_t i = 0; i < N_ARCHS; i++) {
        if (strcmp(a0->valuestring, k_archs[i].arch) == 0) {
            *which = i;
            snprintf(cfg->arch, sizeof cfg->arch, "%s", k_archs[i].arch);
            return SP_OK;
        }
    }
    return sp_err_set(err, SP_EUNSUPPORTED, "%s: \"architectures\" is '%.80s', which is not "
                      "supported (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)", path,
                      a0->valuestring);
}

static sp_status parse_rope_scaling(sp_config *cfg, const cJSON *root, const char *path,
                                    sp_err *err) {
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    if (!rs || cJSON_IsNull(rs)) return SP_OK;
    SP_RETURN_IF(!cJSON_IsObject(rs), err, SP_EFORMAT, "%s: field 'rope_scaling' must be an object "
                 "or null", path);
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (!ty) ty = cJSON_GetObjectItemCaseSensitive(rs, "type");
    SP_RETURN_IF(!cJSON_IsString(ty), err, SP_EFORMAT, "%s: rope_scaling has no 'rope_type'", path);
    if (strcmp(ty->valuestring, "default") == 0) return SP_OK;
    SP_RETURN_IF(strcmp(ty->valuestring, "llama3") != 0, err, SP_EUNSUPPORTED,
                 "%s: rope_scaling type '%.40s' is not supported (only llama3)", path,
                 ty->valuestring);
    cfg->rope_scaling_llama3 = 1;
    cfg->rope_factor = cfg->rope_low_freq_factor = cfg->rope_high_freq_factor = 0;
    SP_FORWARD(get_pos_float(rs, "factor", &cfg->rope_factor, path, err));
    SP_FORWARD(get_pos_float(rs, "low_freq_factor", &cfg->rope_low_freq_factor, path, err));
    SP_FORWARD(get_pos_float(rs, "high_freq_factor", &cfg->rope_high_freq_factor, path, err));
    int present = 0;
    SP_FORWARD(get_int(rs, "original_max_position_embeddings", 1, &cfg->rope_original_max_pos,
                       &present, path, err));
    SP_RETURN_IF(!(cfg->rope_factor > 0) || !(cfg->rope_low_freq_factor > 0) ||
                     !(cfg->rope_high_freq_factor > 0) || !present,
                 err, SP_EFORMAT, "%s: rope_scaling llama3 needs factor, low_freq_factor, "
                 "high_freq_factor and original_max_position_embeddings", path);
    /* The llama3 formula divides by (high - low). */
    SP_RETURN_IF(cfg->rope_high_freq_factor <= cfg->rope_low_freq_factor, err, SP_EFORMAT,
                 "%s: rope_scaling high_freq_factor must exceed low_freq_factor", path);
    return SP_OK;
}

static sp_status parse_config(sp_config *cfg, const cJSON *root, const char *path, sp_err *err) {
    SP_RETURN_IF(!cJSON_IsObject(root), err, SP_EFORMAT, "%s: not a JSON object", path);
    memset(cfg, 0, sizeof *cfg);
    size_t which = 0;
    SP_FORWARD(parse_arch(cfg, root, &which, path, err));
    arch_kind kind = k_archs[which].kind;
    int present = 0;
    SP_FORWARD(need_int(root, "hidden_size", &cfg->dim, path, err));
    SP_FORWARD(need_int(root, "intermediate_size", &cfg->hidden_dim, path, err));
    SP_FORWARD(need_int(root, "num_hidden_layers", &cfg->n_layers, path, err));
    SP_FORWARD(need_int(root, "num_attention_heads", &cfg->n_heads, path, err));
    SP_FORWARD(need_int(root, "vocab_size", &cfg->vocab_size, path, err));
    cfg->n_kv_heads = cfg->n_heads;
    SP_FORWARD(get_int(root, "num_key_value_heads", 1, &cfg->n_kv_heads, &present, path, err));
    SP_RETURN_IF(cfg->n_heads % cfg->n_kv_heads != 0, err, SP_EFORMAT,
                 "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", path,
                 cfg->n_heads, cfg->n_kv_heads);
    SP_FORWARD(get_int(root, "head_dim", 1, &cfg->head_dim, &present, path, err));
    if (!present) {
        SP_RETURN_IF(cfg->dim % cfg->n_heads != 0, err, SP_EFORMAT,
                     "%s: hidden_size %d is not a multiple of num_attention_heads %d", path,
                     cfg->dim, cfg->n_heads);
        cfg->head_dim = cfg->dim / cfg->n_heads;
    }
    SP_RETURN_IF(cfg->head_dim % 2 != 0, err, SP_EFORMAT,
                 "%s: head_dim %d must be even (RoPE rotates pairs)", path, cfg->head_dim);
    cfg->max_seq_len = k_archs[which].default_max_pos;
    SP_FORWARD(get_int(root, "max_position_embeddings", 1, &cfg->max_seq_len, &present, path, err));
    cfg->norm_eps = 1e-6f;
    cfg->rope_theta = 10000.0f;
    SP_FORWARD(get_pos_float(root, "rms_norm_eps", &cfg->norm_eps, path, err));
    SP_FORWARD(get_pos_float(root, "rope_theta", &cfg->rope_theta, path, err));
    SP_FORWARD(get_bool(root, "tie_word_embeddings", &cfg->tie_embeddings, path, err));
    SP_FORWARD(get_token_id(root, "bos_token_id", &cfg->bos_id, path, err));
    SP_FORWARD(get_token_id(root, "eos_token_id", &cfg->eos_id, path, err));
    SP_FORWARD(parse_rope_scaling(cfg, root, path, err));
    cfg->rotation[0] = '\0';
    cfg->rotation_seed = 0;
    const cJSON *rot = cJSON_GetObjectItemCaseSensitive(root, "shardpress_rotation");
    if (rot) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(rot, "method");
        const cJSON *sd = cJSON_GetObjectItemCaseSensitive(rot, "seed");
        SP_RETURN_IF(!cJSON_IsString(m) || (strcmp(m->valuestring, "hadamard") != 0 &&
                                            strcmp(m->valuestring, "orthogonal") != 0),
                     err, SP_EFORMAT, "%s: field 'shardpress_rotation.method' is not hadamard or "
                     "orthogonal", path);
        SP_RETURN_IF(!cJSON_IsString(sd) || !sd->valuestring[0] ||
                     strspn(sd->valuestring, "0123456789") != strlen(sd->valuestring) ||
                     strlen(sd->valuestring) > 19, err, SP_EFORMAT,
                     "%s: field 'shardpress_rotation.seed' is not a decimal string", path);
        snprintf(cfg->rotation, sizeof cfg->rotation, "%s", m->valuestring);
        cfg->rotation_seed = strtoull(sd->valuestring, NULL, 10);
    }

    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    SP_RETURN_IF(cJSON_IsString(act) && strcmp(act->valuestring, "silu") != 0, err,
                 SP_EUNSUPPORTED, "%s: hidden_act '%.40s' is not supported (silu only)", path,
                 act->valuestring);
    int mlp_bias = 0, attn_bias = 0, use_sw = (kind == ARCH_MISTRAL);
    SP_FORWARD(get_bool(root, "mlp_bias", &mlp_bias, path, err));
    SP_RETURN_IF(mlp_bias, err, SP_EUNSUPPORTED, "%s: mlp_bias true is not supported", path);
    SP_FORWARD(get_bool(root, "attention_bias", &attn_bias, path, err));
    /* Qwen2 always has q/k/v biases; Llama's attention_bias adds them too (and an o_proj
     * bias, which sp_model_open rejects if the weights contain one). */
    cfg->qkv_bias = kind == ARCH_QWEN2 || (kind == ARCH_LLAMA && attn_bias);
    if (kind == ARCH_QWEN2) SP_FORWARD(get_bool(root, "use_sliding_window", &use_sw, path, err));
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
    /* transformers' MistralConfig defaults sliding_window to 4096 when the key is absent */
    double window = !sw && kind == ARCH_MISTRAL ? 4096.0 : -1.0;
    if (sw && !cJSON_IsNull(sw)) {
        SP_RETURN_IF(!cJSON_IsNumber(sw), err, SP_EFORMAT,
                     "%s: field 'sliding_window' must be an integer or null", path);
        window = sw->valuedouble;
    }
    SP_RETURN_IF(use_sw && window >= 0 && window < cfg->max_seq_len, err, SP_EUNSUPPORTED,
                 "%s: sliding_window %.0f < max_position_embeddings %d: sliding-window "
                 "attention is not supported", path, window, cfg->max_seq_len);
    return SP_OK;
}

sp_status sp_config_load_json(sp_config *cfg, const char *path, sp_err *err) {
    char *text = NULL;
    size_t len = 0;
    SP_FORWARD(sp_text_read_file(path, &text, &len, err));
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    sp_status st;
    if (!root)
        st = sp_err_set(err, SP_EFORMAT, "%s: not valid JSON (near byte %zu)", path,
                        end ? (size_t)(end - text) : (size_t)0);
    else
        st = parse_config(cfg, root, path, err);
    cJSON_Delete(root);
    free(text);
    return st;
}

/* A float as the shortest decimal that reads back to the same float, so 1e-5f is written
 * "1e-05" rather than the double 9.99999974737875e-06. */
static cJSON *float_number(float f) {
    char buf[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f) break;
    }
    return cJSON_CreateNumber(strtod(buf, NULL));
}

sp_status sp_config_save_json(const sp_config *cfg, const char *path, const char *extra_json,
                              sp_err *err) {
    sp_status st = SP_OK;
    char *text = NULL;
    cJSON *extra = NULL;
    cJSON *root = cJSON_CreateObject();
    SP_RETURN_IF(!root, err, SP_ENOMEM, "%s: out of memory", path);
    size_t which = 0; /* llama2.c checkpoints are written as Llama */
    for (size_t i = 0; i < N_ARCHS; i++)
        if (strcmp(cfg->arch, k_archs[i].arch) == 0) which = i;
    const char *arch = k_archs[which].arch;
    int ok = 1;
    cJSON *archs = cJSON_AddArrayToObject(root, "architectures");
    ok = ok && archs && cJSON_AddItemToArray(archs, cJSON_CreateString(arch));
    ok = ok && cJSON_AddStringToObject(root, "model_type", k_archs[which].model_type);
    ok = ok && cJSON_AddNumberToObject(root, "hidden_size", cfg->dim);
    ok = ok && cJSON_AddNumberToObject(root, "intermediate_size", cfg->hidden_dim);
    ok = ok && cJSON_AddNumberToObject(root, "num_hidden_layers", cfg->n_layers);
    ok = ok && cJSON_AddNumberToObject(root, "num_attention_heads", cfg->n_heads);
    ok = ok && cJSON_AddNumberToObject(root, "num_key_value_heads", cfg->n_kv_heads);
    ok = ok && cJSON_AddNumberToObject(root, "head_dim", cfg->head_dim);
    ok = ok && cJSON_AddNumberToObject(root, "vocab_size", cfg->vocab_size);
    ok = ok && cJSON_AddNumberToObject(root, "max_position_embeddings", cfg->max_seq_len);
    ok = ok && cJSON_AddItemToObject(root, "rms_norm_eps", float_number(cfg->norm_eps));
    ok = ok && cJSON_AddItemToObject(root, "rope_theta", float_number(cfg->rope_theta));
    if (cfg->rope_scaling_llama3) {
        cJSON *rs = cJSON_AddObjectToObject(root, "rope_scaling");
        ok = ok && rs && cJSON_AddStringToObject(rs, "rope_type", "llama3");
        ok = ok && cJSON_AddItemToObject(rs, "factor", float_number(cfg->rope_factor));
        ok = ok && cJSON_AddItemToObject(rs, "low_freq_factor",
                                         float_number(cfg->rope_low_freq_factor));
        ok = ok && cJSON_AddItemToObject(rs, "high_freq_factor",
                                         float_number(cfg->rope_high_freq_factor));
        ok = ok && cJSON_AddNumberToObject(rs, "original_max_position_embeddings",
                                           cfg->rope_original_max_pos);
    } else {
        ok = ok && cJSON_AddNullToObject(root, "rope_scaling");
    }
    ok = ok && cJSON_AddStringToObject(root, "hidden_act", "silu");
    if (k_archs[which].kind == ARCH_LLAMA)
        ok = ok && cJSON_AddBoolToObject(root, "attention_bias", cfg->qkv_bias);
    /* say "no window" explicitly: an absent key means 4096 to transformers' Mistral */
    if (k_archs[which].kind == ARCH_MISTRAL)
        ok = ok && cJSON_AddNullToObject(root, "sliding_window");
    if (k_archs[which].kind == ARCH_QWEN2)
        ok = ok && cJSON_AddBoolToObject(root, "use_sliding_window", 0);
    ok = ok && cJSON_AddBoolToObject(root, "tie_word_embeddings", cfg->tie_embeddings);
    if (cfg->bos_id >= 0) ok = ok && cJSON_AddNumberToObject(root, "bos_token_id", cfg->bos_id);
    if (cfg->eos_id >= 0) ok = ok && cJSON_AddNumberToObject(root, "eos_token_id", cfg->eos_id);
    if (cfg->rotation[0]) {
        /* The seed as a string: exact beyond 2^53. */
        char seed[32];
        snprintf(seed, sizeof seed, "%llu", cfg->rotation_seed);
        cJSON *r = cJSON_AddObjectToObject(root, "shardpress_rotation");
        ok = ok && r && cJSON_AddStringToObject(r, "method", cfg->rotation);
        ok = ok && cJSON_AddStringToObject(r, "seed", seed);
        ok = ok && cJSON_AddStringToObject(r, "folded", "RMSNorm weights into q/k/v, gate/up "
                                           "and lm_head; norms are all-ones");
        ok = ok && cJSON_AddStringToObject(r, "rotated", "residual stream (R1) and v/o per "
                                           "head (R2); lm_head untied");
    }
    if (!ok) {
        st = sp_err_set(err, SP_ENOMEM, "%s: out of memory building config", path);
        goto done;
    }
    if (extra_json) {
        extra = cJSON_Parse(extra_json);
        if (!cJSON_IsObject(extra)) {
            st = sp_err_set(err, SP_EINVAL, "%s: extra_json is not a JSON object", path);
            goto done;
        }
        /* Move each member over, replacing a member of the same name. */
        while (extra->child) {
            cJSON *it = cJSON_DetachItemViaPointer(extra, extra->child);
            cJSON_DeleteItemFromObjectCaseSensitive(root, it->string);
            cJSON_AddItemToObject(root, it->string, it);
        }
    }
    text = cJSON_Print(root);
    if (!text) {
        st = sp_err_set(err, SP_ENOMEM, "%s: out of memory printing config", path);
        goto done;
    }
    size_t tlen = strlen(text);
    const void *bufs[2] = {text, "\n"};
    size_t lens[2] = {tlen, 1};
    st = sp_shards_write_atomic(path, bufs, lens, 2, err);
done:
    cJSON_free(text);
    cJSON_Delete(extra);
    cJSON_Delete(root);
    return st;
}

int sp_config_default_ctx(const sp_config *cfg) {
    return cfg->max_seq_len < SP_CONFIG_DEFAULT_CTX ? cfg->max_seq_len : SP_CONFIG_DEFAULT_CTX;
}
