/* sp_tok_pretok.c — encode one text segment: normalize, pre-tokenize, BPE each word.
 *
 * Pipeline (Hugging Face tokenizers order, for a segment with no added tokens in it):
 *   normalizer steps (Prepend, Replace, NFC) -> one string
 *   pre-tokenizer steps, each splitting every current piece further:
 *     Split      PCRE2 regex; Isolated keeps matches and the gaps between them as pieces,
 *                Removed keeps only the gaps
 *     ByteLevel  optional " " prefix per piece, then the GPT-2 regex (Isolated) if use_regex
 *     Metaspace  ' ' -> replacement, prefix one replacement, optionally split before each
 *   initial symbols of a word:
 *     byte-level  one symbol per byte: the id of the byte's alphabet character
 *     otherwise   one symbol per UTF-8 character; a character not in the vocabulary becomes
 *                 its <0xNN> byte tokens (byte_fallback) or <unk> (consecutive ones fused)
 *   then the merge engine (sp_tok_bpe.c).
 * With no pre-tokenizer the whole segment is one word (SentencePiece-style Llama).
 */
#include <stdlib.h>
#include <string.h>

#include "shards/tok/sp_tok_internal.h"

typedef struct {
    sp_tok_segments pieces, next; /* current pieces and the ones being built */
    char **bufs;                  /* strings made while pre-tokenizing (freed at the end) */
    size_t n_bufs, cap_bufs;
    sp_tok_ids init;  /* initial symbols of one word */
    char *tmp;        /* byte-level word in alphabet characters (ignore_merges lookup) */
    size_t tmp_cap;
    pcre2_match_data *md;
} pretok_ctx;

static sp_status push_piece(sp_tok_segments *a, const char *p, size_t len, sp_err *err) {
    if (len == 0) return SP_OK;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        sp_tok_segment *v = realloc(a->v, cap * sizeof *v);
        SP_RETURN_IF(!v, err, SP_ENOMEM, "tokenizer: cannot grow the word list to %zu", cap);
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = (sp_tok_segment){p, len, -1};
    return SP_OK;
}

static char *new_buf(pretok_ctx *c, size_t len, sp_err *err) {
    if (c->n_bufs == c->cap_bufs) {
        size_t cap = c->cap_bufs ? c->cap_bufs * 2 : 8;
        char **b = realloc(c->bufs, cap * sizeof *b);
        if (!b) {
            sp_err_set(err, SP_ENOMEM, "tokenizer: cannot grow the buffer list");
            return NULL;
        }
        c->bufs = b;
        c->cap_bufs = cap;
    }
    char *p = sp_malloc(len + 1, err, "tokenizer pre-tokenizer text");
    if (p) c->bufs[c->n_bufs++] = p;
    return p;
}

/* Replace every occurrence of pat (non-empty) in s with rep; result in a new buffer. */
static char *replace_all(pretok_ctx *c, const char *s, size_t len, const char *pat,
                         const char *rep, size_t *out_len, sp_err *err) {
    size_t pl = strlen(pat), rl = strlen(rep), hits = 0;
    for (size_t i = 0; i + pl <= len;) {
        if (memcmp(s + i, pat, pl) == 0) {
            hits++;
            i += pl;
        } else {
            i++;
        }
    }
    char *o = new_buf(c, len + hits * rl, err);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        if (i + pl <= len && memcmp(s + i, pat, pl) == 0) {
            memcpy(o + k, rep, rl);
            k += rl;
            i += pl;
        } else {
            o[k++] = s[i++];
        }
    }
    *out_len = k;
    return o;
}

/* NFC of s, or s itself when it has no byte >= 0xCC: every code point below U+0300 is
 * NFC-stable and none of them composes with another, so such text (ASCII, Latin-1, most
 * Latin) is NFC already and costs no copy. */
static const char *nfc(pretok_ctx *c, const char *s, size_t len, size_t *out_len, sp_err *err) {
    size_t i = 0;
    while (i < len && (unsigned char)s[i] < 0xCC) i++;
    *out_len = len;
    if (i == len) return s;
    char *o = new_buf(c, 0, err); /* a slot in c->bufs; replaced by the NFC text below */
    if (!o) return NULL;
    char *r;
    if (sp_tok_nfc(s, len, &r, out_len, err) != SP_OK) return NULL;
    free(o);
    c->bufs[c->n_bufs - 1] = r;
    return r;
}

static char *prepend(pretok_ctx *c, const char *s, size_t len, const char *pre, size_t *out_len,
                     sp_err *err) {
    size_t pl = strlen(pre);
    char *o = new_buf(c, len + pl, err);
    if (!o) return NULL;
    memcpy(o, pre, pl);
    memcpy(o + pl, s, len);
    *out_len = len + pl;
    return o;
}

/* Split s by re: gaps always become pieces, matches too when keep_matches. Empty matches are
 * skipped (the search moves on by one character). */
static sp_status regex_split(pretok_ctx *c, const pcre2_code *re, const char *s, size_t len,
                             int keep_matches, sp_err *err) {
    size_t pos = 0, last = 0;
    while (pos < len) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, len, pos, 0, c->md, NULL);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* a huge match: the interpreter uses the heap */
            rc = pcre2_match(re, (PCRE2_SPTR)s, len, pos, PCRE2_NO_JIT, c->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        SP_RETURN_IF(rc < 0, err, SP_EINTERNAL, "tokenizer: pre-tokenizer regex failed (%d)", rc);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
        size_t ms = ov[0], me = ov[1];
        if (me <= ms) {
            pos = ms + sp_tok_utf8_char_len(s + ms, len - ms);
            continue;
        }
        SP_FORWARD(push_piece(&c->next, s + last, ms - last, err));
        if (keep_matches) SP_FORWARD(push_piece(&c->next, s + ms, me - ms, err));
        last = pos = me;
    }
    return push_piece(&c->next, s + last, len - last, err);
}

/* Metaspace: ' ' -> replacement, prefix it, and (split) cut before each replacement. */
static sp_status metaspace(pretok_ctx *c, const sp_tok_pre *p, const char *s, size_t len,
                           int first, sp_err *err) {
    size_t rl = strlen(p->replacement), n;
    const char *r = replace_all(c, s, len, " ", p->replacement, &n, err);
    if (!r) return err ? err->code : SP_ENOMEM;
    int want = p->prepend == SP_TOK_PREPEND_ALWAYS || (p->prepend == SP_TOK_PREPEND_FIRST && first);
    if (want && !(n >= rl && memcmp(r, p->replacement, rl) == 0)) {
        r = prepend(c, r, n, p->replacement, &n, err);
        if (!r) return err ? err->code : SP_ENOMEM;
    }
    if (!p->split) return push_piece(&c->next, r, n, err);
    size_t start = 0;
    for (size_t i = 1; i + rl <= n; i++) {
        if (memcmp(r + i, p->replacement, rl) != 0) continue;
        SP_FORWARD(push_piece(&c->next, r + start, i - start, err));
        start = i;
    }
    return push_piece(&c->next, r + start, n - start, err);
}

static sp_status run_pre_step(pretok_ctx *c, const sp_tok_pre *p, int first, sp_err *err) {
    c->next.n = 0;
    for (size_t k = 0; k < c->pieces.n; k++) {
        const char *s = c->pieces.v[k].p;
        size_t len = c->pieces.v[k].len;
        switch (p->kind) {
        case SP_TOK_PRE_SPLIT:
            SP_FORWARD(regex_split(c, p->re, s, len, p->behavior == SP_TOK_SPLIT_ISOLATED, err));
            break;
        case SP_TOK_PRE_BYTELEVEL:
            if (p->add_prefix_space && s[0] != ' ') {
                s = prepend(c, s, len, " ", &len, err);
                if (!s) return err ? err->code : SP_ENOMEM;
            }
            if (p->re)
                SP_FORWARD(regex_split(c, p->re, s, len, 1, err));
            else
                SP_FORWARD(push_piece(&c->next, s, len, err));
            break;
        case SP_TOK_PRE_METASPACE:
            SP_FORWARD(metaspace(c, p, s, len, first && k == 0, err));
            break;
        }
    }
    sp_tok_segments tmp = c->pieces;
    c->pieces = c->next;
    c->next = tmp;
    return SP_OK;
}

/* Unknown character: <unk> if the model has one (fused with a preceding <unk> from the same
 * word when fuse_unk), else dropped as Hugging Face does. */
static sp_status push_unk(const sp_tokenizer *t, pretok_ctx *c, int *prev_unk, sp_err *err) {
    if (t->unk < 0) return SP_OK;
    if (t->fuse_unk && *prev_unk) return SP_OK;
    *prev_unk = 1;
    return sp_tok_ids_push(&c->init, t->unk, err);
}

static sp_status initial_symbols(const sp_tokenizer *t, pretok_ctx *c, const char *s, size_t len,
                                 sp_err *err) {
    c->init.n = 0;
    int prev_unk = 0;
    if (t->bytelevel) {
        for (size_t i = 0; i < len; i++) {
            int32_t id = t->byte_id[(unsigned char)s[i]];
            if (id < 0) {
                SP_FORWARD(push_unk(t, c, &prev_unk, err));
                continue;
            }
            prev_unk = 0;
            SP_FORWARD(sp_tok_ids_push(&c->init, id, err));
        }
        return SP_OK;
    }
    for (size_t i = 0; i < len;) {
        size_t cl = sp_tok_utf8_char_len(s + i, len - i);
        int32_t id = sp_tok_strmap_get(&t->vocab, s + i, cl);
        if (id >= 0) {
            prev_unk = 0;
            SP_FORWARD(sp_tok_ids_push(&c->init, id, err));
        } else {
            int all = t->byte_fallback;
            for (size_t k = 0; all && k < cl; k++) all = t->byte_id[(unsigned char)s[i + k]] >= 0;
            if (all) {
                prev_unk = 0;
                for (size_t k = 0; k < cl; k++)
                    SP_FORWARD(sp_tok_ids_push(&c->init, t->byte_id[(unsigned char)s[i + k]], err));
            } else {
                SP_FORWARD(push_unk(t, c, &prev_unk, err));
            }
        }
        i += cl;
    }
    return SP_OK;
}

/* ignore_merges (Llama 3): a word that is itself in the vocabulary is one token. */
static int32_t whole_word_id(const sp_tokenizer *t, pretok_ctx *c, const char *s, size_t len,
                             sp_err *err, sp_status *st) {
    *st = SP_OK;
    if (!t->bytelevel) return sp_tok_strmap_get(&t->vocab, s, len);
    if (c->tmp_cap < 2 * len) {
        char *p = realloc(c->tmp, 2 * len);
        if (!p) {
            *st = sp_err_set(err, SP_ENOMEM, "tokenizer: cannot allocate a %zu-byte word", len);
            return -1;
        }
        c->tmp = p;
        c->tmp_cap = 2 * len;
    }
    size_t k = 0; /* every alphabet character is 1 or 2 UTF-8 bytes */
    for (size_t i = 0; i < len; i++)
        k += sp_tok_utf8_put(sp_tok_byte_to_cp((unsigned char)s[i]), c->tmp + k);
    return sp_tok_strmap_get(&t->vocab, c->tmp, k);
}

static sp_status encode_words(const sp_tokenizer *t, pretok_ctx *c, const char *text,
                              size_t len, int first, sp_tok_bpe_scratch *s, sp_tok_ids *out,
                              sp_err *err) {
    /* normalizer */
    const char *norm = text;
    size_t nlen = len;
    for (size_t k = 0; k < t->n_norm; k++) {
        const sp_tok_norm *nm = &t->norm[k];
        if (nm->kind == SP_TOK_NORM_PREPEND) {
            if (nlen > 0) norm = prepend(c, norm, nlen, nm->a, &nlen, err);
        } else if (nm->kind == SP_TOK_NORM_NFC) {
            norm = nfc(c, norm, nlen, &nlen, err);
        } else {
            norm = replace_all(c, norm, nlen, nm->a, nm->b, &nlen, err);
        }
        if (!norm) return err ? err->code : SP_ENOMEM;
    }
    /* pre-tokenizer */
    SP_FORWARD(push_piece(&c->pieces, norm, nlen, err));
    int need_md = 0;
    for (size_t k = 0; k < t->n_pre; k++) need_md |= t->pre[k].re != NULL;
    if (need_md) {
        c->md = pcre2_match_data_create(1, NULL);
        SP_RETURN_IF(!c->md, err, SP_ENOMEM, "tokenizer: cannot allocate PCRE2 match data");
    }
    for (size_t k = 0; k < t->n_pre; k++) SP_FORWARD(run_pre_step(c, &t->pre[k], first, err));
    /* BPE per word */
    for (size_t w = 0; w < c->pieces.n; w++) {
        const char *p = c->pieces.v[w].p;
        size_t plen = c->pieces.v[w].len;
        if (t->ignore_merges) {
            sp_status st;
            int32_t id = whole_word_id(t, c, p, plen, err, &st);
            SP_FORWARD(st);
            if (id >= 0) {
                SP_FORWARD(sp_tok_ids_push(out, id, err));
                continue;
            }
        }
        SP_FORWARD(initial_symbols(t, c, p, plen, err));
        SP_FORWARD(sp_tok_bpe_merge(&t->merges, s, c->init.v, c->init.n, out, err));
    }
    return SP_OK;
}

sp_status sp_tok_encode_segment(const sp_tokenizer *t, const char *text, size_t len, int first,
                                sp_tok_bpe_scratch *s, sp_tok_ids *out, sp_err *err) {
    pretok_ctx c;
    memset(&c, 0, sizeof c);
    sp_status st = encode_words(t, &c, text, len, first, s, out, err);
    for (size_t k = 0; k < c.n_bufs; k++) free(c.bufs[k]);
    free(c.bufs);
    free(c.pieces.v);
    free(c.next.v);
    free(c.init.v);
    free(c.tmp);
    pcre2_match_data_free(c.md);
    return st;
}
