/* sp_search_gguf.h — a llama.cpp GGUF file as the budget of `shardpress search --match-gguf`
 * and the side types of `export --format gguf --match-gguf` (issue 20).
 *
 * The file is validated as a whole (sp_gguf_read.h) and against the model: architecture
 * "llama", exactly cfg->n_layers blocks, every block linear blk.N.{attn_q,attn_k,attn_v,
 * attn_output,ffn_gate,ffn_up,ffn_down}.weight present as a 2-D tensor of the model's shape
 * (ne[0] = in features, ne[1] = out features), token_embd [D, V]. What it gives:
 *   block_bytes    Σ of the block linears' data bytes (the K-quant mix as llama.cpp stores it)
 *   target_bits    8·block_bytes / Σ weights of the block linears: the budget of the search,
 *                  whose levels are then priced at the bytes the GGUF export writes
 *                  (sp_seval_opts.gguf_costs), so the searched map's block linears take at
 *                  most block_bytes in our file;
 *   embed/output   the types and bytes of token_embd and output (output absent: tied), which
 *                  the export takes to hold them at the mix's types;
 *   other_bytes    the rest of the file (header, tokenizer, norms, padding).
 * Errors are one line naming the file and the tensor or field.
 */
#ifndef SP_SEARCH_GGUF_H
#define SP_SEARCH_GGUF_H

#include <stdint.h>

#include "common/sp_error.h"
#include "shards/sp_config.h"

typedef struct {
    uint64_t file_bytes, block_bytes, embed_bytes, output_bytes, other_bytes;
    int64_t block_weights;
    double target_bits;
    int embed_type, output_type;   /* ggml types; output_type −1 when the file has no output */
    int file_type;                 /* general.file_type (llama_ftype), −1 when absent         */
    char types[256];               /* the block linears' types with counts: "q4_K×30 q6_K×12" */
} sp_gguf_match;

/* Read and check path against cfg. @return SP_OK; the reader's errors; SP_EFORMAT naming the
 * file and the tensor that is missing or of the wrong shape. */
sp_status sp_gguf_match_read(const char *path, const sp_config *cfg, sp_gguf_match *m, sp_err *err);

#endif
