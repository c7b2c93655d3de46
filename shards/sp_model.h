/* sp_model.h — a model directory, opened without reading its weights.
 *
 * Backends (chosen by what the directory holds, checked in this order):
 *   1. shardpress quantized container: config.json + model.sp.h5 (issue 3, may be absent)
 *   2. GPTQ-packed safetensors with quantize_config.json (issue 3, may be absent)
 *   3. Hugging Face: config.json + model.safetensors, or model.safetensors.index.json + shards
 *   4. llama2.c: a single *.bin checkpoint (7 x int32 header; vocab < 0 means untied head)
 *      — or `path` may name the .bin file itself.
 *
 * Every file is mmap'ed read-only and validated at open: header inside the file, offsets
 * inside the data area, no overlaps, shape x dtype size == byte length, and every tensor
 * the architecture needs present with the right shape. Nothing is converted at open, so
 * opening a 70B model costs only its headers.
 *
 * Tensors are addressed by their Hugging Face names ("model.layers.3.self_attn.q_proj.weight").
 * The llama2.c backend maps those names to its offsets and permutes q/k rows from
 * llama2.c's interleaved RoPE pairs to HF's rotate-half order, so callers see one layout.
 *
 * Thread-safety: an opened sp_model is read-only; concurrent reads are safe.
 */
#ifndef SP_MODEL_H
#define SP_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "common/sp_error.h"
#include "shards/sp_config.h"

typedef enum { SP_DTYPE_F32 = 0, SP_DTYPE_F16, SP_DTYPE_BF16, SP_DTYPE_I32, SP_DTYPE_U8,
               SP_DTYPE_I8, SP_DTYPE_I64 } sp_dtype;

/* Bytes per element of dtype. */
size_t sp_dtype_size(sp_dtype dt);
const char *sp_dtype_name(sp_dtype dt);

/* fp16 / bf16 <-> fp32 conversions (round-to-nearest-even on the way down). */
float sp_f16_to_f32(uint16_t h);
uint16_t sp_f32_to_f16(float f);
float sp_bf16_to_f32(uint16_t h);
/* fp32 -> bf16, round-to-nearest-even; NaN stays NaN (quiet). */
uint16_t sp_f32_to_bf16(float f);
/* Parse a safetensors dtype name ("F32", "BF16", ...). @return 1 and *dt set, or 0 if unknown. */
int sp_dtype_from_name(const char *name, sp_dtype *dt);
/* Convert n elements of dtype dt at src (any alignment, little-endian) to fp32 in dst.
 * Integer dtypes convert by value. dst and src must not overlap. Thread-safe. */
void sp_dtype_to_f32(float *dst, const void *src, sp_dtype dt, size_t n);

typedef struct sp_model sp_model;

typedef struct {
    sp_dtype dtype;     /* storage dtype (for quantized backends: the dequantized view, F32) */
    int ndim;           /* 1 or 2                                                          */
    int64_t shape[2];   /* [rows, cols] for 2-D (HF: [out_features, in_features]);
                           1-D: [length, 1] (read it as one row of `length` values)         */
} sp_tensor_desc;

/* Open the model at path (directory, or a llama2.c .bin file).
 * @return SP_OK and *out set; on failure *out is NULL and err names the file and field. */
sp_status sp_model_open(sp_model **out, const char *path, sp_err *err);
void sp_model_close(sp_model *m);

const sp_config *sp_model_config(const sp_model *m);
/* The directory the model was opened from (for finding the tokenizer). */
const char *sp_model_dir(const sp_model *m);
/* "safetensors", "llama2c", "sp-hdf5", "gptq" */
const char *sp_model_format(const sp_model *m);

/* Describe a tensor by HF name. @return SP_ENOTFOUND (err names tensor) when absent. */
sp_status sp_model_tensor_desc(const sp_model *m, const char *name, sp_tensor_desc *desc,
                               sp_err *err);

/* Read rows [row0, row0+nrows) of a 2-D tensor (or the whole 1-D tensor with row0=0,
 * nrows=1) converted to fp32 into dst (nrows x cols floats). NaN/Inf are not checked here.
 * @return SP_OK, SP_ENOTFOUND, SP_EINVAL (rows out of range). */
sp_status sp_model_read_rows(const sp_model *m, const char *name, int64_t row0, int64_t nrows,
                             float *dst, sp_err *err);

/* ---- one decoder block, in fp32 ---------------------------------------------------- */

/* Weights of one decoder block, HF layout: every matrix is row-major [out, in].
 * One allocation holds them all (sp_block_weights_alloc); free with sp_block_weights_free. */
typedef struct {
    float *attn_norm;        /* [D]                              input_layernorm          */
    float *wq;               /* [Hq*hd, D]                       self_attn.q_proj         */
    float *wk;               /* [Hkv*hd, D]                      self_attn.k_proj         */
    float *wv;               /* [Hkv*hd, D]                      self_attn.v_proj         */
    float *bq, *bk, *bv;     /* [Hq*hd], [Hkv*hd], [Hkv*hd] or NULL when !qkv_bias          */
    float *wo;               /* [D, Hq*hd]                       self_attn.o_proj         */
    float *ffn_norm;         /* [D]                              post_attention_layernorm */
    float *w_gate;           /* [F, D]                           mlp.gate_proj            */
    float *w_up;             /* [F, D]                           mlp.up_proj              */
    float *w_down;           /* [D, F]                           mlp.down_proj            */
    void *mem_;              /* the one allocation                                       */
} sp_block_weights;

sp_status sp_block_weights_alloc(sp_block_weights *w, const sp_config *c, sp_err *err);
void sp_block_weights_free(sp_block_weights *w);

/* Convert decoder block `layer` to fp32 into w (allocated by sp_block_weights_alloc).
 * Fails with SP_ENUMERIC naming the tensor if any weight is NaN or Inf. */
sp_status sp_model_load_block(const sp_model *m, int layer, sp_block_weights *w, sp_err *err);

/* ---- weight fingerprints (issue 21) ---------------------------------------------------
 * The CRC-32 (zlib) of a tensor's values as read, i.e. of its fp32 values' bytes in row-major
 * order. A changed byte of a stored F32/F16/BF16 weight changes its fp32 value (the conversions
 * are injective on finite values), so it changes the CRC; quantize records these as it reads
 * and resume / search --dense compare them (pipeline/quantize/sp_qrun.h). */

/* The tensors of a block in load order: SP_BLOCK_TENSORS with qkv_bias, else the first 9.
 * Suffix i: the HF name is "model.layers.<l>.<suffix>". */
#define SP_BLOCK_TENSORS 12
int sp_block_tensor_count(const sp_config *c);
const char *sp_block_tensor_suffix(int i);

/* sp_model_load_block, also filling crc[sp_block_tensor_count(c)] with each tensor's CRC. */
sp_status sp_model_load_block_crc(const sp_model *m, int layer, sp_block_weights *w,
                                  uint32_t *crc, sp_err *err);

/* The CRC-32 of a whole tensor's fp32 values (read in slices of rows, bounded memory). */
sp_status sp_model_tensor_crc(const sp_model *m, const char *name, uint32_t *crc, sp_err *err);

/* The tensors outside the blocks that a job reads: embed_tokens, norm, and lm_head unless the
 * embeddings are tied (then *n = 2). names[i] are static strings. */
#define SP_GLOBAL_TENSORS 3
void sp_model_global_tensors(const sp_config *c, const char *names[SP_GLOBAL_TENSORS], int *n);

/* The seven linear modules of a block, in forward order, and their HF suffixes
 * ("self_attn.q_proj", ...). Full name: "model.layers.<l>.<suffix>". */
enum { SP_MOD_Q = 0, SP_MOD_K, SP_MOD_V, SP_MOD_O, SP_MOD_GATE, SP_MOD_UP, SP_MOD_DOWN,
       SP_MOD_COUNT };
const char *sp_module_suffix(int mod);
/* Module mod's weight shape [rows = out features, cols = in features] under c
 * (q: [H·hd, D], k/v: [KV·hd, D], o: [D, H·hd], gate/up: [F, D], down: [D, F]). */
void sp_module_shape(const sp_config *c, int mod, int *rows, int *cols);

/* Gather embedding rows for token ids (n ids) into out [n, D]. */
sp_status sp_model_embed(const sp_model *m, const int32_t *ids, size_t n, float *out, sp_err *err);

/* Final RMSNorm weight [D] ("model.norm.weight"). */
sp_status sp_model_read_final_norm(const sp_model *m, float *dst, sp_err *err);

/* Rows [v0, v0+nv) of the output head [V, D] ("lm_head.weight", or embed_tokens if tied). */
sp_status sp_model_read_head_rows(const sp_model *m, int64_t v0, int64_t nv, float *dst,
                                  sp_err *err);

/* Choose the bit level of quantized weights: of one module (HF name without ".weight",
 * e.g. "model.layers.0.mlp.down_proj") or of every module (module == NULL).
 * @return SP_EUNSUPPORTED for dense models, SP_ENOTFOUND when the level is not stored. */
sp_status sp_model_select_bits(sp_model *m, const char *module, int bits, sp_err *err);

/* ---- text files -------------------------------------------------------------------- */

/* Read a whole text file. Fails (naming the file) when it cannot be read, is empty, or is
 * not valid UTF-8 (the message gives the byte offset). *out is NUL-terminated; free() it. */
sp_status sp_text_read_file(const char *path, char **out, size_t *len, sp_err *err);

/* Length of the longest strict-UTF-8 prefix of s[0..len) (len when all of it is valid);
 * the rules are those sp_text_read_file checks. Pure function. */
size_t sp_text_utf8_valid_len(const char *s, size_t len);

#endif
