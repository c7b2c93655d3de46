/* sp_tok_decode.c — decoder chains: pieces of ids -> text, as Hugging Face tokenizers does.
 *
 * A chain works on a list of token strings, step by step (each step maps list -> list):
 *   Replace(a, b)    every a in every token becomes b ("▁" -> " ")
 *   ByteFallback     runs of <0xNN> tokens become the bytes they name when the run is valid
 *                    UTF-8, else one U+FFFD per byte
 *   Fuse             all tokens become one
 *   Strip(c, s, e)   at most s leading and e trailing c's leave each token
 *   ByteLevel        each token's GPT-2 alphabet characters become bytes (a token with a
 *                    character outside the alphabet keeps its own bytes); all fused into one,
 *                    invalid UTF-8 replaced by U+FFFD (maximal subparts, like from_utf8_lossy)
 *   Metaspace        replacement -> ' ', except in the first token where it is dropped
 *                    (unless prepend_scheme is never)
 * The result is the tokens joined; with no decoder at all they are joined with ' '.
 */
#include <stdlib.h>
#include <string.h>

#include "shards/tok/sp_tok_internal.h"

typedef struct {
    char *buf;
    size_t len, cap;
    size_t *st, *ln; /* token k is buf[st[k] .. st[k] + ln[k]) */
    size_t n, cap_t;
} toklist;

static void tl_free(toklist *l) {
    free(l->buf);
    free(l->st);
    free(l->ln);
    memset(l, 0, sizeof *l);
}

static sp_status tl_new(toklist *l, sp_err *err) {
    if (l->n == l->cap_t) {
        size_t cap = l->cap_t ? l->cap_t * 2 : 64;
        size_t *st = realloc(l->st, cap * sizeof *st);
        if (st) l->st = st;
        size_t *ln = realloc(l->ln, cap * sizeof *ln);
        if (ln) l->ln = ln;
        SP_RETURN_IF(!st || !ln, err, SP_ENOMEM, "tokenizer: cannot grow the decode list");
        l->cap_t = cap;
    }
    l->st[l->n] = l->len;
    l->ln[l->n] = 0;
    l->n++;
    return SP_OK;
}

/* Append bytes to the last token. */
static sp_status tl_add(toklist *l, const char *p, size_t n, sp_err *err) {
    if (l->len + n + 1 > l->cap) {
        size_t cap = l->cap ? l->cap : 256;
        while (cap < l->len + n + 1) cap *= 2;
        char *b = realloc(l->buf, cap);
        SP_RETURN_IF(!b, err, SP_ENOMEM, "tokenizer: cannot grow the decode buffer to %zu", cap);
        l->buf = b;
        l->cap = cap;
    }
    memcpy(l->buf + l->len, p, n);
    l->len += n;
    l->ln[l->n - 1] += n;
    return SP_OK;
}

static const char REPLACEMENT_CHAR[] = "\xEF\xBF\xBD"; /* U+FFFD */

/* Length of the valid UTF-8 sequence at s, or 0 with *bad = the length of its maximal
 * invalid subpart (Unicode's "substitution of maximal subparts"). */
static size_t utf8_valid(const unsigned char *s, size_t len, size_t *bad) {
    unsigned c = s[0];
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        *bad = 1;
        return 0;
    }
    for (size_t i = 1; i < need; i++) {
        unsigned lo_i = i == 1 ? lo : 0x80, hi_i = i == 1 ? hi : 0xBF;
        if (i >= len || s[i] < lo_i || s[i] > hi_i) {
            *bad = i;
            return 0;
        }
    }
    return need;
}

static int utf8_all_valid(const unsigned char *s, size_t len) {
    size_t bad;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_valid(s + i, len - i, &bad);
        if (!n) return 0;
        i += n;
    }
    return 1;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* byte named by a "<0xNN>" token, or -1 */
static int byte_token(const char *p, size_t n) {
    if (n != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>') return -1;
    int hi = hexval(p[3]), lo = hexval(p[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

static sp_status flush_bytes(toklist *o, const unsigned char *b, size_t n, sp_err *err) {
    if (n == 0) return SP_OK;
    if (utf8_all_valid(b, n)) {
        SP_FORWARD(tl_new(o, err));
        return tl_add(o, (const char *)b, n, err);
    }
    for (size_t i = 0; i < n; i++) {
        SP_FORWARD(tl_new(o, err));
        SP_FORWARD(tl_add(o, REPLACEMENT_CHAR, 3, err));
    }
    return SP_OK;
}

static sp_status step_bytefallback(const toklist *in, toklist *o, sp_err *err) {
    unsigned char *run = NULL; /* the pending run of <0xNN> bytes */
    size_t nrun = 0, cap = 0;
    sp_status st = SP_OK;
    for (size_t k = 0; k < in->n && st == SP_OK; k++) {
        const char *p = in->buf + in->st[k];
        int b = byte_token(p, in->ln[k]);
        if (b >= 0) {
            if (nrun == cap) {
                size_t ncap = cap ? cap * 2 : 64;
                unsigned char *nr = realloc(run, ncap);
                if (!nr) {
                    st = sp_err_set(err, SP_ENOMEM, "tokenizer: cannot grow a byte run");
                    break;
                }
                run = nr;
                cap = ncap;
            }
            run[nrun++] = (unsigned char)b;
            continue;
        }
        st = flush_bytes(o, run, nrun, err);
        nrun = 0;
        if (st == SP_OK) st = tl_new(o, err);
        if (st == SP_OK) st = tl_add(o, p, in->ln[k], err);
    }
    if (st == SP_OK) st = flush_bytes(o, run, nrun, err);
    free(run);
    return st;
}

static sp_status replace_into(toklist *o, const char *p, size_t n, const char *pat,
                              const char *rep, sp_err *err) {
    size_t pl = strlen(pat), rl = strlen(rep);
    for (size_t i = 0; i < n;) {
        if (pl && i + pl <= n && memcmp(p + i, pat, pl) == 0) {
            SP_FORWARD(tl_add(o, rep, rl, err));
            i += pl;
        } else {
            SP_FORWARD(tl_add(o, p + i, 1, err));
            i++;
        }
    }
    return SP_OK;
}

static sp_status step_bytelevel(const toklist *in, toklist *o, sp_err *err) {
    toklist raw = {0};
    sp_status st = tl_new(&raw, err);
    for (size_t k = 0; k < in->n && st == SP_OK; k++) {
        const char *p = in->buf + in->st[k];
        size_t n = in->ln[k];
        int all = 1;
        for (size_t i = 0; i < n && all;) {
            uint32_t cp;
            i += sp_tok_utf8_decode(p + i, n - i, &cp);
            all = sp_tok_cp_to_byte(cp) >= 0;
        }
        if (!all) {
            st = tl_add(&raw, p, n, err);
            continue;
        }
        for (size_t i = 0; i < n && st == SP_OK;) {
            uint32_t cp;
            i += sp_tok_utf8_decode(p + i, n - i, &cp);
            char b = (char)sp_tok_cp_to_byte(cp);
            st = tl_add(&raw, &b, 1, err);
        }
    }
    /* one fused token, invalid UTF-8 replaced */
    if (st == SP_OK) st = tl_new(o, err);
    const unsigned char *s = (const unsigned char *)raw.buf;
    for (size_t i = 0; st == SP_OK && i < raw.len;) {
        size_t bad = 0, v = utf8_valid(s + i, raw.len - i, &bad);
        st = v ? tl_add(o, (const char *)s + i, v, err) : tl_add(o, REPLACEMENT_CHAR, 3, err);
        i += v ? v : bad;
    }
    tl_free(&raw);
    return st;
}

static sp_status run_step(const sp_tok_dec *d, const toklist *in, toklist *o, sp_err *err) {
    switch (d->kind) {
    case SP_TOK_DEC_BYTEFALLBACK: return step_bytefallback(in, o, err);
    case SP_TOK_DEC_BYTELEVEL: return step_bytelevel(in, o, err);
    case SP_TOK_DEC_FUSE:
        SP_FORWARD(tl_new(o, err));
        return tl_add(o, in->buf ? in->buf : "", in->len, err);
    default: break;
    }
    for (size_t k = 0; k < in->n; k++) {
        const char *p = in->buf + in->st[k];
        size_t n = in->ln[k];
        SP_FORWARD(tl_new(o, err));
        if (d->kind == SP_TOK_DEC_REPLACE) {
            SP_FORWARD(replace_into(o, p, n, d->a, d->b, err));
        } else if (d->kind == SP_TOK_DEC_METASPACE) {
            int drop = k == 0 && d->prepend_scheme != SP_TOK_PREPEND_NEVER;
            SP_FORWARD(replace_into(o, p, n, d->a, drop ? "" : " ", err));
        } else { /* STRIP */
            size_t b = 0, e = n;
            while (b < e && b < (size_t)d->start && p[b] == d->strip_char) b++;
            while (e > b && n - e < (size_t)d->stop && p[e - 1] == d->strip_char) e--;
            SP_FORWARD(tl_add(o, p + b, e - b, err));
        }
    }
    return SP_OK;
}

sp_status sp_tok_run_decoder(const sp_tokenizer *t, const int32_t *ids, size_t n, char **out,
                             size_t *out_len, sp_err *err) {
    toklist a = {0}, b = {0};
    sp_status st = SP_OK;
    for (size_t k = 0; k < n && st == SP_OK; k++) {
        st = tl_new(&a, err);
        if (st == SP_OK) st = tl_add(&a, t->blob + t->off[ids[k]], t->len[ids[k]], err);
    }
    for (size_t k = 0; k < t->n_dec && st == SP_OK; k++) {
        b.n = b.len = 0;
        st = run_step(&t->dec[k], &a, &b, err);
        toklist tmp = a;
        a = b;
        b = tmp;
    }
    /* join: "" after a decoder, " " with none */
    char *res = NULL;
    size_t len = 0;
    if (st == SP_OK) {
        size_t total = a.len + (t->n_dec == 0 && a.n ? a.n - 1 : 0);
        res = sp_malloc(total + 1, err, "decoded text");
        if (!res) st = SP_ENOMEM;
    }
    for (size_t k = 0; st == SP_OK && k < a.n; k++) {
        if (k && t->n_dec == 0) res[len++] = ' ';
        memcpy(res + len, a.buf + a.st[k], a.ln[k]);
        len += a.ln[k];
    }
    if (res) res[len] = '\0';
    tl_free(&a);
    tl_free(&b);
    if (st != SP_OK) {
        free(res);
        return st;
    }
    *out = res;
    *out_len = len;
    return SP_OK;
}
