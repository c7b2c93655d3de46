/* sp_tok_llama2c.c — llama2.c tokenizer.bin: loading and run.c's encoding.
 *
 * File layout (little-endian, no magic):
 *   int32 max_token_length
 *   vocab_size x { float32 score, int32 len, len bytes of piece }
 * Pieces use ' ' where SentencePiece writes '▁'; ids 0/1/2 are <unk>, BOS, EOS and ids
 * 3..258 the byte tokens <0x00>..<0xFF>.
 *
 * run.c's encode: a dummy prefix " " (when the text is non-empty), one symbol per UTF-8
 * character (its vocabulary id, or byte + 3 per byte when absent), then repeatedly merge the
 * adjacent pair whose concatenation has the highest score (ties: leftmost). That loop is
 * O(n^2); here it becomes the shared heap engine: every vocabulary piece p is split at each
 * k in 1..len-1, and when both halves are pieces the pair (left, right) -> p is a merge whose
 * rank is the dense rank of score(p) (highest score = rank 0). Equal scores share a rank, so
 * the engine's (rank, position) order picks exactly what run.c's "strictly better" scan picks.
 * Where two ids share a piece string, lookups give the lowest id (run.c's bsearch leaves that
 * unspecified).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "shards/tok/sp_tok_internal.h"

typedef struct {
    int32_t left, right, merged;
    float score;
} candidate;

static int32_t rd_i32(const unsigned char *p) {
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t s;
    memcpy(&s, &v, 4);
    return s;
}

static float rd_f32(const unsigned char *p) {
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &v, 4);
    return f;
}

/* Walk the token records: count them (up to want, or to the end when want == 0), validate,
 * and sum the piece bytes. */
static sp_status scan(const sp_tokenizer *t, const unsigned char *d, size_t size, int want,
                      int32_t maxlen, int *count, size_t *blob, sp_err *err) {
    size_t pos = 4;
    int i = 0;
    *blob = 0;
    while (want > 0 ? i < want : pos < size) {
        SP_RETURN_IF(size - pos < 8, err, SP_ETRUNC, "%s: token %d: record header cut off at "
                     "byte %zu (file is %zu bytes)", t->path, i, pos, size);
        float score = rd_f32(d + pos);
        int32_t len = rd_i32(d + pos + 4);
        SP_RETURN_IF(isnan(score), err, SP_EFORMAT, "%s: token %d: score is NaN", t->path, i);
        SP_RETURN_IF(len < 0 || len > maxlen, err, SP_EFORMAT, "%s: token %d: length %d outside "
                     "0..max_token_length %d", t->path, i, (int)len, (int)maxlen);
        SP_RETURN_IF(size - pos - 8 < (size_t)len, err, SP_ETRUNC,
                     "%s: token %d: %d piece bytes cut off at byte %zu (file is %zu bytes)",
                     t->path, i, (int)len, pos + 8, size);
        pos += 8 + (size_t)len;
        *blob += (size_t)len + 1;
        SP_RETURN_IF(++i == (1 << 24) && pos < size, err, SP_EFORMAT, "%s: more than 2^24 tokens",
                     t->path);
    }
    SP_RETURN_IF(pos != size, err, SP_EFORMAT, "%s: %zu bytes left after the %d tokens of the "
                 "model's vocab_size", t->path, size - pos, want);
    *count = i;
    return SP_OK;
}

static int cmp_score_desc(const void *x, const void *y) {
    const candidate *a = x, *b = y;
    return a->score > b->score ? -1 : a->score < b->score;
}

/* All pairs (left, right) whose concatenation is a piece, ranked by that piece's score. */
static sp_status build_pairs(sp_tokenizer *t, const float *score, sp_err *err) {
    int n = t->n_vocab;
    sp_status st = SP_OK;
    int32_t *dup = sp_malloc((size_t)n * sizeof *dup, err, "duplicate piece chain");
    candidate *c = NULL;
    size_t nc = 0, cap = 0;
    if (!dup) return SP_ENOMEM;
    /* dup[id]: next higher id with the same piece, -1 at the end of the chain */
    for (int32_t id = 0; id < n; id++) dup[id] = -1;
    for (int32_t id = n - 1; id >= 0; id--) {
        int32_t canon = sp_tok_strmap_get(&t->vocab, t->blob + t->off[id], t->len[id]);
        if (canon != id) {
            dup[id] = dup[canon];
            dup[canon] = id;
        }
    }
    for (int32_t id = 0; id < n && st == SP_OK; id++) {
        const char *p = t->blob + t->off[id];
        if (sp_tok_strmap_get(&t->vocab, p, t->len[id]) != id) continue; /* a duplicate */
        for (uint32_t k = 1; k < t->len[id] && st == SP_OK; k++) {
            int32_t l0 = sp_tok_strmap_get(&t->vocab, p, k);
            int32_t r0 = sp_tok_strmap_get(&t->vocab, p + k, t->len[id] - k);
            if (l0 < 0 || r0 < 0) continue;
            for (int32_t l = l0; l >= 0 && st == SP_OK; l = dup[l]) {
                for (int32_t r = r0; r >= 0; r = dup[r]) {
                    if (nc == cap) {
                        cap = cap ? cap * 2 : 4096;
                        candidate *nc_ = realloc(c, cap * sizeof *c);
                        if (!nc_) {
                            st = sp_err_set(err, SP_ENOMEM, "%s: cannot allocate %zu merge pairs",
                                            t->path, cap);
                            break;
                        }
                        c = nc_;
                    }
                    c[nc++] = (candidate){l, r, id, score[id]};
                }
            }
        }
    }
    if (st == SP_OK) st = sp_tok_pairmap_init(&t->merges, nc, err);
    if (st == SP_OK) {
        qsort(c, nc, sizeof *c, cmp_score_desc);
        int32_t rank = 0;
        for (size_t i = 0; i < nc; i++) {
            if (i > 0 && c[i].score != c[i - 1].score) rank++;
            sp_tok_pairmap_set(&t->merges, c[i].left, c[i].right, rank, c[i].merged);
        }
    }
    free(c);
    free(dup);
    return st;
}

sp_status sp_tok_load_llama2c(sp_tokenizer *t, const char *data, size_t size, int vocab_size,
                              sp_err *err) {
    const unsigned char *d = (const unsigned char *)data;
    t->source = SP_TOK_LLAMA2C;
    SP_RETURN_IF(size < 4, err, SP_ETRUNC, "%s: %zu bytes, too short for max_token_length",
                 t->path, size);
    int32_t maxlen = rd_i32(d);
    SP_RETURN_IF(maxlen <= 0 || maxlen > (1 << 20), err, SP_EFORMAT, "%s: max_token_length %d "
                 "is not in 1..2^20", t->path, (int)maxlen);
    int n = 0;
    size_t blob = 0;
    SP_FORWARD(scan(t, d, size, vocab_size, maxlen, &n, &blob, err));
    SP_RETURN_IF(n < 259, err, SP_EFORMAT, "%s: %d tokens, fewer than the 259 of <unk>, <s>, "
                 "</s> and the 256 byte tokens", t->path, n);
    SP_FORWARD(sp_tok_vocab_alloc(t, n, blob, err));
    float *score = sp_malloc((size_t)n * sizeof *score, err, "token scores");
    if (!score) return SP_ENOMEM;
    size_t pos = 4, used = 0;
    for (int i = 0; i < n; i++) {
        int32_t len = rd_i32(d + pos + 4);
        score[i] = rd_f32(d + pos);
        sp_tok_vocab_set(t, i, data + pos + 8, (size_t)len, &used);
        pos += 8 + (size_t)len;
    }
    sp_status st = sp_tok_vocab_index(t, err);
    if (st == SP_OK) st = build_pairs(t, score, err);
    free(score);
    SP_FORWARD(st);

    t->unk = 0;
    t->bos = 1;
    t->eos = 2;
    t->special[0] = t->special[1] = t->special[2] = 1;
    for (int b = 0; b < 256; b++) t->byte_id[b] = b + 3;
    /* decode like the SentencePiece tokenizer.json: bytes, fuse, strip one leading space */
    t->dec = sp_calloc(3, sizeof *t->dec, err, "decoder steps");
    if (!t->dec) return SP_ENOMEM;
    t->n_dec = 3;
    t->dec[0].kind = SP_TOK_DEC_BYTEFALLBACK;
    t->dec[1].kind = SP_TOK_DEC_FUSE;
    t->dec[2].kind = SP_TOK_DEC_STRIP;
    t->dec[2].strip_char = ' ';
    t->dec[2].start = 1;
    return SP_OK;
}

sp_status sp_tok_encode_llama2c(const sp_tokenizer *t, const char *text, size_t len,
                                sp_tok_bpe_scratch *s, sp_tok_ids *out, sp_err *err) {
    sp_tok_ids init = {0};
    sp_status st = SP_OK;
    int32_t prefix = sp_tok_strmap_get(&t->vocab, " ", 1);
    if (len > 0 && prefix >= 0) st = sp_tok_ids_push(&init, prefix, err);
    for (size_t i = 0; i < len && st == SP_OK;) {
        size_t cl = sp_tok_utf8_char_len(text + i, len - i);
        int32_t id = sp_tok_strmap_get(&t->vocab, text + i, cl);
        if (id >= 0) {
            st = sp_tok_ids_push(&init, id, err);
        } else {
            for (size_t k = 0; k < cl && st == SP_OK; k++)
                st = sp_tok_ids_push(&init, t->byte_id[(unsigned char)text[i + k]], err);
        }
        i += cl;
    }
    if (st == SP_OK) st = sp_tok_bpe_merge(&t->merges, s, init.v, init.n, out, err);
    free(init.v);
    return st;
}
