/* sp_tok_added.c — split input text around added tokens (<s>, <|endoftext|>, ...).
 *
 * Hugging Face matches added tokens before normalization and pre-tokenization, leftmost first
 * and longest at a position (its Aho-Corasick LeftmostLongest). t->added is sorted by length,
 * longest first, so the first token that matches at a position is the longest one. Only bytes
 * that start some added token (t->added_first) are tried, so plain text costs one table lookup
 * per byte.
 *
 * Flags: lstrip / rstrip make the match swallow ASCII whitespace to its left / right;
 * single_word rejects a match that touches a word character (ASCII alnum, '_', or any byte of
 * a multi-byte character) on either side.
 */
#include <stdlib.h>
#include <string.h>

#include "shards/tok/sp_tok_internal.h"

static int is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int is_word(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           c == '_' || c >= 0x80;
}

static sp_status push_seg(sp_tok_segments *out, const char *p, size_t len, int32_t id,
                          sp_err *err) {
    if (id < 0 && len == 0) return SP_OK;
    if (out->n == out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 16;
        sp_tok_segment *v = realloc(out->v, cap * sizeof *v);
        SP_RETURN_IF(!v, err, SP_ENOMEM, "tokenizer: cannot grow the segment list to %zu", cap);
        out->v = v;
        out->cap = cap;
    }
    out->v[out->n++] = (sp_tok_segment){p, len, id};
    return SP_OK;
}

/* The added token matching at text[i], or NULL. */
static const sp_tok_added *match_at(const sp_tokenizer *t, const char *text, size_t len,
                                    size_t i) {
    for (size_t k = 0; k < t->n_added; k++) {
        const sp_tok_added *a = &t->added[k];
        if (a->len == 0 || a->len > len - i || memcmp(text + i, a->content, a->len) != 0)
            continue;
        if (a->single_word) {
            if (i > 0 && is_word((unsigned char)text[i - 1])) continue;
            if (i + a->len < len && is_word((unsigned char)text[i + a->len])) continue;
        }
        return a;
    }
    return NULL;
}

sp_status sp_tok_split_added(const sp_tokenizer *t, const char *text, size_t len,
                             sp_tok_segments *out, sp_err *err) {
    size_t start = 0; /* start of the pending text range */
    size_t i = 0;
    while (i < len) {
        const sp_tok_added *a =
            t->added_first[(unsigned char)text[i]] ? match_at(t, text, len, i) : NULL;
        if (!a) {
            i++;
            continue;
        }
        size_t b = i, e = i + a->len;
        if (a->lstrip)
            while (b > start && is_space((unsigned char)text[b - 1])) b--;
        if (a->rstrip)
            while (e < len && is_space((unsigned char)text[e])) e++;
        SP_FORWARD(push_seg(out, text + start, b - start, -1, err));
        SP_FORWARD(push_seg(out, text + b, e - b, a->id, err));
        start = i = e;
    }
    return push_seg(out, text + start, len - start, -1, err);
}
