/* sp_tok_internal.h — private pieces of the tokenizer module (not a public header).
 *
 * Layout of the module:
 *   sp_tokenizer.c      public API: load dispatch, open_dir, accessors, encode/decode front end
 *   sp_tok_vocab.c      piece storage (one blob) and the string -> id hash map
 *   sp_tok_bpe.c        pair map (left,right) -> (rank, merged) and the O(n log n) merge engine
 *   sp_tok_added.c      added/special tokens: verbatim leftmost-longest matching
 *   sp_tok_pretok.c     normalizer, pre-tokenizer (PCRE2 split, ByteLevel, Metaspace), initial
 *                       symbols per word
 *   sp_tok_bytelevel.c  the GPT-2 byte <-> unicode alphabet
 *   sp_tok_decode.c     decoder chains (Replace, ByteFallback, Fuse, Strip, ByteLevel, Metaspace)
 *   sp_tok_stream.c     sp_tokenizer_decode_step: one generated id at a time, llama2.c style
 *   sp_tok_json.c       tokenizer.json loading (model, vocab, merges, added tokens, specials)
 *   sp_tok_json_parts.c tokenizer.json normalizer / pre_tokenizer / decoder sections
 *   sp_tok_llama2c.c    llama2.c tokenizer.bin loading (score-ranked pair map)
 *
 * One merge engine serves all sources. A "rank" orders merges, lower first; ties go to the
 * leftmost pair. tokenizer.json ranks are merge-list indices; llama2.c's "highest score first"
 * becomes the dense rank of the merged token's score (equal scores get equal ranks, so run.c's
 * leftmost tie-break carries over exactly).
 */
#ifndef SP_TOK_INTERNAL_H
#define SP_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "shards/tok/sp_tokenizer.h"

/* ---- growable id vector ------------------------------------------------------------- */

typedef struct {
    int32_t *v;
    size_t n, cap;
} sp_tok_ids;

sp_status sp_tok_ids_push(sp_tok_ids *a, int32_t id, sp_err *err);

/* ---- string -> id map (open addressing, keys point into storage owned elsewhere) ------ */

typedef struct {
    const char *key;
    uint32_t len;
    int32_t id; /* -1: empty slot */
} sp_tok_slot;

typedef struct {
    sp_tok_slot *slots;
    size_t mask; /* capacity - 1, capacity a power of two */
    size_t count;
} sp_tok_strmap;

sp_status sp_tok_strmap_init(sp_tok_strmap *m, size_t expected, sp_err *err);
void sp_tok_strmap_free(sp_tok_strmap *m);
/* Insert key -> id unless key is present; *existing gets the id already stored (or -1). */
void sp_tok_strmap_put(sp_tok_strmap *m, const char *key, size_t len, int32_t id,
                       int32_t *existing);
int32_t sp_tok_strmap_get(const sp_tok_strmap *m, const char *key, size_t len);

/* ---- pair map (left id, right id) -> (rank, merged id) -------------------------------- */

typedef struct {
    uint64_t key; /* (uint64)left << 32 | right; UINT64_MAX: empty */
    int32_t rank;
    int32_t merged;
} sp_tok_pair;

typedef struct {
    sp_tok_pair *slots;
    size_t mask;
    size_t count;
} sp_tok_pairmap;

sp_status sp_tok_pairmap_init(sp_tok_pairmap *m, size_t expected, sp_err *err);
void sp_tok_pairmap_free(sp_tok_pairmap *m);
/* Insert or overwrite (Hugging Face builds its merge map with collect(): the last wins). */
void sp_tok_pairmap_set(sp_tok_pairmap *m, int32_t left, int32_t right, int32_t rank,
                        int32_t merged);
const sp_tok_pair *sp_tok_pairmap_get(const sp_tok_pairmap *m, int32_t left, int32_t right);

/* ---- merge engine --------------------------------------------------------------------- */

/* Scratch reused across words of one encode call (not shared between threads). */
typedef struct {
    int32_t *id;
    size_t *prev, *next;
    unsigned char *alive;
    size_t cap;
    struct sp_tok_heap_entry *heap;
    size_t heap_n, heap_cap;
} sp_tok_bpe_scratch;

void sp_tok_bpe_scratch_free(sp_tok_bpe_scratch *s);

/* Merge the n initial symbols in[] by rank (lowest first, ties leftmost) and append the
 * resulting ids to out. Doubly linked symbol list + binary heap of candidate pairs keyed by
 * (rank, left position), stale entries dropped when popped: O(n log n). */
sp_status sp_tok_bpe_merge(const sp_tok_pairmap *pm, sp_tok_bpe_scratch *s, const int32_t *in,
                           size_t n, sp_tok_ids *out, sp_err *err);

/* ---- normalizer, pre-tokenizer, decoder descriptions ---------------------------------- */

typedef enum { SP_TOK_NORM_PREPEND, SP_TOK_NORM_REPLACE } sp_tok_norm_kind;

typedef struct {
    sp_tok_norm_kind kind;
    char *a; /* PREPEND: the prefix; REPLACE: the pattern (non-empty) */
    char *b; /* REPLACE: the replacement */
} sp_tok_norm;

typedef enum { SP_TOK_PRE_SPLIT, SP_TOK_PRE_BYTELEVEL, SP_TOK_PRE_METASPACE } sp_tok_pre_kind;
typedef enum { SP_TOK_SPLIT_ISOLATED, SP_TOK_SPLIT_REMOVED } sp_tok_split_behavior;
typedef enum { SP_TOK_PREPEND_ALWAYS, SP_TOK_PREPEND_FIRST, SP_TOK_PREPEND_NEVER } sp_tok_prepend;

typedef struct {
    sp_tok_pre_kind kind;
    pcre2_code *re;                 /* SPLIT, BYTELEVEL with use_regex (else NULL) */
    sp_tok_split_behavior behavior; /* SPLIT */
    int add_prefix_space;           /* BYTELEVEL */
    char *replacement;              /* METASPACE, usually "▁" */
    sp_tok_prepend prepend;         /* METASPACE */
    int split;                      /* METASPACE: split before each replacement */
} sp_tok_pre;

typedef enum {
    SP_TOK_DEC_REPLACE,
    SP_TOK_DEC_BYTEFALLBACK,
    SP_TOK_DEC_FUSE,
    SP_TOK_DEC_STRIP,
    SP_TOK_DEC_BYTELEVEL,
    SP_TOK_DEC_METASPACE
} sp_tok_dec_kind;

typedef struct {
    sp_tok_dec_kind kind;
    char *a, *b;        /* REPLACE: pattern, content; METASPACE: replacement in a */
    int strip_char;     /* STRIP: the (ASCII) character stripped */
    int start, stop;    /* STRIP: at most this many from the start / end of each token */
    int prepend_scheme; /* METASPACE: sp_tok_prepend */
} sp_tok_dec;

/* ---- added tokens --------------------------------------------------------------------- */

typedef struct {
    char *content;
    size_t len;
    int32_t id;
    int special, lstrip, rstrip, single_word;
} sp_tok_added;

/* A piece of input text after added-token splitting: an added token (id >= 0) or a text
 * range (id == -1). */
typedef struct {
    const char *p;
    size_t len;
    int32_t id;
} sp_tok_segment;

typedef struct {
    sp_tok_segment *v;
    size_t n, cap;
} sp_tok_segments;

/* ---- the tokenizer ------------------------------------------------------------------- */

typedef enum { SP_TOK_JSON, SP_TOK_LLAMA2C } sp_tok_source;

struct sp_tokenizer {
    sp_tok_source source;
    char *path;
    int n_vocab; /* number of ids (highest id + 1) */

    /* pieces: piece i is blob[off[i] .. off[i] + len[i]), NUL-terminated; has[i] == 0 for an
     * id that no vocabulary entry uses (tokenizer.json may have holes) */
    char *blob;
    size_t *off;
    uint32_t *len;
    unsigned char *has;
    unsigned char *special; /* dropped by decode */
    sp_tok_strmap vocab;
    sp_tok_pairmap merges;

    int bos, eos, unk;
    int byte_fallback, fuse_unk, ignore_merges, bytelevel;
    int32_t byte_id[256]; /* bytelevel: id of the byte's alphabet char; else id of <0xNN> */

    sp_tok_added *added;
    size_t n_added;
    unsigned char added_first[256]; /* a byte that starts some added token */

    sp_tok_norm *norm;
    size_t n_norm;
    sp_tok_pre *pre;
    size_t n_pre;
    sp_tok_dec *dec;
    size_t n_dec;
};

/* piece storage: build from (string, id) pairs; sp_tokenizer.c frees. */
sp_status sp_tok_vocab_alloc(sp_tokenizer *t, int n_vocab, size_t blob_bytes, sp_err *err);
/* Store piece id (must fit the blob reserved by sp_tok_vocab_alloc; call in any order). */
void sp_tok_vocab_set(sp_tokenizer *t, int32_t id, const char *s, size_t len, size_t *blob_used);
/* Build t->vocab from the stored pieces; the lowest id wins for duplicate strings. */
sp_status sp_tok_vocab_index(sp_tokenizer *t, sp_err *err);

/* Read a whole file (NUL-terminated copy; *size excludes the NUL). ENOTFOUND when absent. */
sp_status sp_tok_read_file(const char *path, char **data, size_t *size, sp_err *err);

/* loaders (t->path for messages; data/size: the whole file) */
sp_status sp_tok_load_json(sp_tokenizer *t, const char *data, size_t size, int vocab_size,
                           sp_err *err);
sp_status sp_tok_load_llama2c(sp_tokenizer *t, const char *data, size_t size, int vocab_size,
                              sp_err *err);

/* tokenizer.json sections */
struct cJSON;
sp_status sp_tok_parse_normalizer(sp_tokenizer *t, const struct cJSON *j, sp_err *err);
sp_status sp_tok_parse_pretokenizer(sp_tokenizer *t, const struct cJSON *j, sp_err *err);
sp_status sp_tok_parse_decoder(sp_tokenizer *t, const struct cJSON *j, sp_err *err);
/* Compile a PCRE2 pattern in UTF + UCP mode (invalid UTF-8 in the subject never matches). */
sp_status sp_tok_compile_regex(pcre2_code **out, const char *pattern, const char *path,
                               const char *field, sp_err *err);

/* added tokens */
sp_status sp_tok_split_added(const sp_tokenizer *t, const char *text, size_t len,
                             sp_tok_segments *out, sp_err *err);

/* encode one text segment (no added tokens inside) and append ids to out;
 * first: the segment starts the input (Metaspace prepend_scheme "first"). */
sp_status sp_tok_encode_segment(const sp_tokenizer *t, const char *text, size_t len, int first,
                                sp_tok_bpe_scratch *s, sp_tok_ids *out, sp_err *err);
/* llama2.c run.c encoding of the whole text (dummy prefix, codepoints, byte fallback). */
sp_status sp_tok_encode_llama2c(const sp_tokenizer *t, const char *text, size_t len,
                                sp_tok_bpe_scratch *s, sp_tok_ids *out, sp_err *err);

/* GPT-2 byte <-> unicode alphabet: the code point byte b stands for, and the reverse (-1 for
 * a code point outside the alphabet). */
uint32_t sp_tok_byte_to_cp(unsigned char b);
int sp_tok_cp_to_byte(uint32_t cp);
/* UTF-8 encode cp into out (4 bytes room); returns the length. */
size_t sp_tok_utf8_put(uint32_t cp, char *out);
/* Length of the UTF-8 character starting at s (1..4, never past len; run.c's grouping:
 * a lead byte plus its continuation bytes, at most 4). */
size_t sp_tok_utf8_char_len(const char *s, size_t len);
/* Decode one UTF-8 character at s (len >= 1); returns its length, cp = U+FFFD if invalid. */
size_t sp_tok_utf8_decode(const char *s, size_t len, uint32_t *cp);

/* decode the piece strings of ids (already filtered) through t's decoder chain */
sp_status sp_tok_run_decoder(const sp_tokenizer *t, const int32_t *ids, size_t n, char **out,
                             size_t *out_len, sp_err *err);


#endif
