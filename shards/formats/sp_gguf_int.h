/* sp_gguf_int.h — internal to the GGUF export: the tokenizer metadata (sp_gguf_vocab.c). */
#ifndef SP_GGUF_INT_H
#define SP_GGUF_INT_H

#include "common/sp_error.h"
#include "shards/formats/sp_gguf.h"
#include "shards/sp_config.h"

/* Add the tokenizer.ggml.* keys for the tokenizer found in dir (tokenizer.json, else
 * tokenizer.bin / tok<V>.bin), padded to cfg->vocab_size tokens. */
sp_status sp_gguf_put_vocab(sp_gguf *g, const char *dir, const sp_config *cfg, sp_err *err);

#endif
