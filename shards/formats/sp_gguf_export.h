/* sp_gguf_export.h — export a model (dense, or a shardpress quantized container) as one GGUF v3
 * file that llama.cpp loads with no conversion step (format: docs/formats.md, "GGUF export").
 *
 * Metadata: general.architecture "llama" (Llama, Mistral) or "qwen2" (q/k/v biases), the
 * hyper-parameters (<arch>.context_length, embedding_length, block_count, feed_forward_length,
 * attention.head_count, head_count_kv, key_length, value_length, layer_norm_rms_epsilon,
 * rope.dimension_count, rope.freq_base, vocab_size), general.alignment 32, general.file_type,
 * and the tokenizer: SentencePiece ("llama": tokens, scores, token types) or byte-level BPE
 * ("gpt2": tokens, types, merges, tokenizer.ggml.pre "llama-bpe" / "qwen2" / "gpt2").
 * Llama 3 rope scaling becomes the rope_freqs.weight tensor (per-frequency divisors).
 *
 * Tensors: HF names map to llama.cpp's (token_embd, output_norm, output, blk.N.attn_norm,
 * attn_q/k/v/output, ffn_norm, ffn_gate/up/down). For the "llama" architecture the q and k rows
 * are permuted from Hugging Face's rotate-half order back to llama.cpp's interleaved pairs:
 * GGUF row h·hd + 2i + j = HF row h·hd + j·hd/2 + i (i < hd/2, j < 2, h a head; k uses the KV
 * heads). Norms and biases are F32. Linear weights get, in order of precedence: the type map's
 * entry, opts.type, or "auto": a container level that is a GGUF type exactly (sp_gtype.h:
 * symmetric, group 32, 4/5/8 bits) is written as Q4_0/Q5_0/Q8_0 with the container's codes
 * and scales unchanged; other levels are re-quantized from their dequantized weights to the
 * K-quant (or, when the row is not a multiple of 256, the legacy type) of their bit width;
 * dense models are exported as F32. Embeddings and the output head: opts.embed_type /
 * output_type, auto = the linear type for F32/F16 exports, else Q8_0 / Q6_K (F16 when the row
 * length does not allow the block).
 *
 * The file is written as "<out>.partial" and renamed when complete.
 * Threads: opens the container with HDF5; one thread, no other HDF5 user at the same time.
 */
#ifndef SP_GGUF_EXPORT_H
#define SP_GGUF_EXPORT_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "common/sp_error.h"
#include "shards/formats/sp_qcontainer.h"
#include "shards/sp_config.h"

typedef struct {
    int force;        /* replace an existing output file                                     */
    int type;         /* sp_gtype of linear weights, -1 auto                                  */
    int embed_type;   /* token_embd, -1 auto                                                  */
    int output_type;  /* output (untied head), -1 auto                                        */
    int side_search;  /* token_embd/output quantized with the block search (unit weights,
                       * sp_gtype_quantize_row_search) instead of the min-max rule          */
    int f16_fallback; /* container levels whose rows fit no block: F16 (as llama.cpp writes
                       * them; rounds GPTQ's values) instead of their exact F32 values       */
    /* container source only: the dense model it was quantized from (the caller checks it
     * against source.json's CRCs). A linear module written as F16/F32 because its level fits
     * no GGUF block takes its values from here instead of GPTQ's: the file pays float bytes
     * for those rows either way, and the original weights are the better values. NULL: off */
    const struct sp_model *dense;
    /* per-module levels (bits) replacing the container's selected ones (bits map) */
    int n_overrides;
    const char *const *override_modules;
    const int *override_bits;
    /* per-module GGUF types (type map); module = HF name without ".weight" */
    int n_types;
    const char *const *type_modules;
    const int *type_types;
    /* raised (common/sp_stop.h): stop at the next tensor or row chunk, remove the partial
     * file, return SP_EINTERRUPTED; NULL: never */
    const volatile sig_atomic_t *stop_flag;
} sp_gguf_export_opts;

/* Default options (every type auto). */
void sp_gguf_export_opts_default(sp_gguf_export_opts *o);

/* Export model_path (a model directory or llama2.c .bin, or a quantized container directory)
 * to out_file. @return SP_OK; SP_EEXIST; SP_EINVAL (a type that does not fit a row length,
 * unknown module in a map); SP_EUNSUPPORTED (architecture, tokenizer); errors of the
 * readers and the writer. Nothing is left at out_file on failure. */
sp_status sp_export_gguf(const char *model_path, const char *out_file,
                         const sp_gguf_export_opts *opts, sp_err *err);

/* The type a stored level is written as when no --type or type map says otherwise: the type it
 * is exactly (a gtype level, or Q4_0/Q5_0/Q8_0: *exact = 1, the codes are copied), else the
 * K-quant (rows of 256) or legacy type of its bits, else flt (F32, or F16 under f16_fallback:
 * the row fits no block). What `search --match-gguf` prices a level at (with F16). */
int sp_gguf_level_export_type(const sp_qlevel_info *lv, int flt, int *exact);

/* llama.cpp's name of an HF tensor name into out (cap bytes). @return 0, or -1 when the name
 * is not one of a Llama block's. */
int sp_gguf_tensor_name(const char *hf, char *out, size_t cap);

/* The HF row that GGUF row r of a q (n_head = Hq) or k (n_head = Hkv) projection holds, for the
 * "llama" architecture (see above); hd = head_dim. */
int64_t sp_gguf_qk_src_row(int64_t r, int hd);

/* 1 when the q/k rows are permuted for cfg (the "llama" architecture). */
int sp_gguf_permutes_qk(const sp_config *cfg);

#endif
