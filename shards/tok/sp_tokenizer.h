/* sp_tokenizer.h — BPE tokenizers: encode text to ids and decode ids to text.
 *
 * Three sources, one behaviour per source:
 *   - tokenizer.json, SentencePiece style (Llama 1/2, the bundled model): normalizer
 *     Prepend "▁" + Replace " " -> "▁", BPE with rank-ordered merges, byte fallback <0xNN>
 *     for anything not in the vocabulary; decoder maps ▁ -> ' ', <0xNN> -> byte, and strips
 *     one leading space.
 *   - tokenizer.json, byte-level BPE (GPT-2 / Llama 3 / Qwen2): a PCRE2 regex pre-tokenizer
 *     (from pre_tokenizer Split/ByteLevel), the GPT-2 byte-to-unicode map, rank-ordered
 *     merges, added/special tokens matched verbatim before pre-tokenization, and the NFC
 *     normalizer where the file has one (Qwen2/Qwen3).
 *   - llama2.c tokenizer.bin: max_token_length then (score, len, bytes) per token; encode
 *     is llama2.c's greedy best-score pair merging, with a dummy prefix space and byte
 *     fallback (ids 3..258 are <0x00>..<0xFF>).
 *
 * Thread-safety: a loaded tokenizer is read-only; concurrent encode/decode are safe.
 */
#ifndef SP_TOKENIZER_H
#define SP_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "common/sp_error.h"

typedef struct sp_tokenizer sp_tokenizer;

/* Load tokenizer.json or a llama2.c tokenizer .bin (decided by content: a JSON object
 * starts with '{'). vocab_size is the model's vocabulary (for .bin files, which do not
 * store it); pass 0 to take the file's own count where it has one.
 * @return SP_OK; SP_EIO / SP_EFORMAT / SP_EUNSUPPORTED naming the file and field. */
sp_status sp_tokenizer_load(sp_tokenizer **out, const char *path, int vocab_size, sp_err *err);

/* Find the tokenizer of a model directory: tokenizer.json, else tokenizer.bin, else
 * tok<V>.bin, else (when dir is a .bin model file) the same files beside it. */
sp_status sp_tokenizer_open_dir(sp_tokenizer **out, const char *dir, int vocab_size,
                                sp_err *err);
void sp_tokenizer_free(sp_tokenizer *t);

int sp_tokenizer_vocab_size(const sp_tokenizer *t);
int sp_tokenizer_bos(const sp_tokenizer *t); /* -1 when the tokenizer has none */
int sp_tokenizer_eos(const sp_tokenizer *t);

/* Encode len bytes of text (need not be NUL-terminated; must be valid UTF-8).
 * With add_bos, the BOS id is first. *ids is malloc'ed (free() it), *n its length. */
sp_status sp_tokenizer_encode(const sp_tokenizer *t, const char *text, size_t len, int add_bos,
                              int32_t **ids, size_t *n, sp_err *err);

/* Decode n ids to text as Hugging Face's decode(skip_special_tokens=True) would: special
 * tokens (BOS/EOS/added specials) are dropped. *out is malloc'ed and NUL-terminated. */
sp_status sp_tokenizer_decode(const sp_tokenizer *t, const int32_t *ids, size_t n, char **out,
                              size_t *out_len, sp_err *err);

/* The raw piece of one id ("▁the", "<0x0A>", "Ġthe"), or NULL when id is out of range. */
const char *sp_tokenizer_piece(const sp_tokenizer *t, int32_t id);

/* Streaming output of generated ids, one id at a time, as llama2.c prints them: the bytes
 * id adds after prev (prev = the id before it, or -1 at the start). "<0xNN>" gives that raw
 * byte (a multi-byte character arrives over several calls: print bytes as they come), '▁'
 * gives ' ', byte-level pieces give their bytes, the leading space is dropped when prev is
 * BOS or -1, special ids give nothing. Use this rather than sp_tokenizer_decode per id,
 * which (like Hugging Face) strips a leading space and replaces partial characters on every
 * call. Writes *len bytes plus a NUL into buf.
 * @return SP_OK; SP_EINVAL when id is out of range or the bytes do not fit cap (256 is
 * ample for real vocabularies). Thread-safe. */
sp_status sp_tokenizer_decode_step(const sp_tokenizer *t, int32_t prev, int32_t id, char *buf,
                                   size_t cap, size_t *len, sp_err *err);

#endif
