/* sp_config.h — the architecture of a Llama-family model, read from config.json
 * (Hugging Face) or from a llama2.c header.
 *
 * Supported: LlamaForCausalLM (Llama 1/2/3, incl. Llama 3 rope_scaling), MistralForCausalLM
 * without sliding window, Qwen2ForCausalLM (q/k/v biases). Anything else is SP_EUNSUPPORTED
 * with a message naming config.json and the field "architectures".
 */
#ifndef SP_CONFIG_H
#define SP_CONFIG_H

#include "common/sp_error.h"

typedef struct {
    char arch[64];        /* e.g. "LlamaForCausalLM" (llama2.c files report "llama2c")  */
    int dim;              /* hidden_size D                                               */
    int hidden_dim;       /* intermediate_size F                                         */
    int n_layers;         /* num_hidden_layers L                                         */
    int n_heads;          /* num_attention_heads Hq                                      */
    int n_kv_heads;       /* num_key_value_heads Hkv (Hq % Hkv == 0)                     */
    int head_dim;         /* hd; D / Hq unless config.json says head_dim                 */
    int vocab_size;       /* V                                                           */
    int max_seq_len;      /* max_position_embeddings                                     */
    float norm_eps;       /* rms_norm_eps                                                */
    float rope_theta;     /* base of the RoPE frequencies                                */
    int tie_embeddings;   /* 1: lm_head shares embed_tokens                              */
    int qkv_bias;         /* 1: q/k/v projections have biases (Qwen2)                    */
    /* Llama 3 rope_scaling ("rope_type": "llama3"); rope_scaling_llama3 == 0 means none.     */
    int rope_scaling_llama3;
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_pos;
    int bos_id, eos_id;   /* -1 when unknown                                              */
    /* Issue 23: the weights were rotated by quantize --rotate (kernels/sp_rotate.h): norms
     * folded (all-ones), residual stream and v/o rotated. config.json's "shardpress_rotation":
     * {"method": "hadamard"|"orthogonal", "seed": "S", ...}; "" when absent. Informational:
     * the rotated model is an ordinary Llama, nothing reads it differently. */
    char rotation[16];
    unsigned long long rotation_seed;
} sp_config;

/* Parse and validate config.json at path. All sizes must be positive, Hq % Hkv == 0,
 * and (unless head_dim is given) D % Hq == 0.
 * @return SP_OK, SP_EIO, SP_EFORMAT (names the field), SP_EUNSUPPORTED (architecture,
 *         sliding window, unknown rope_scaling type). cfg is undefined on failure. */
sp_status sp_config_load_json(sp_config *cfg, const char *path, sp_err *err);

/* The default calibration/search window: min(2048, max_position_embeddings). 2048 is the
 * reference's (GPTQ, EvoPress) length; a model trained on shorter contexts gets its maximum. */
#define SP_CONFIG_DEFAULT_CTX 2048
int sp_config_default_ctx(const sp_config *cfg);

/* Write cfg back as a Hugging Face config.json (used by exporters). extra_json, when
 * non-NULL, is a JSON object text whose members are appended (e.g. quantization_config). */
sp_status sp_config_save_json(const sp_config *cfg, const char *path, const char *extra_json,
                              sp_err *err);

#endif
