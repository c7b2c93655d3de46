/* sp_tok_stream.c — sp_tokenizer_decode_step: one generated id at a time, llama2.c style.
 *
 * The decoder chain is replayed on a single piece with streaming semantics: ByteFallback and
 * ByteLevel give raw bytes (never U+FFFD: the rest of a character comes with the next ids),
 * Replace / Metaspace map '▁' to ' ', and Strip / Metaspace drop the leading space only at
 * the start of the output (prev is BOS or -1), which is what llama2.c's run.c prints.
 */
#include <stdlib.h>
#include <string.h>

#include "shards/tok/sp_tok_internal.h"

/* dst = src with every pat replaced by rep; returns the new length (dst has room). */
static size_t replace(char *dst, const char *src, size_t n, const char *pat, const char *rep) {
    size_t pl = strlen(pat), rl = strlen(rep), k = 0;
    for (size_t i = 0; i < n;) {
        if (pl && i + pl <= n && memcmp(src + i, pat, pl) == 0) {
            memcpy(dst + k, rep, rl);
            k += rl;
            i += pl;
        } else {
            dst[k++] = src[i++];
        }
    }
    return k;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* One decoder step on (a, n) into b; returns the new length. */
static size_t step(const sp_tok_dec *d, const char *a, size_t n, char *b, int at_start) {
    switch (d->kind) {
    case SP_TOK_DEC_REPLACE: return replace(b, a, n, d->a, d->b);
    case SP_TOK_DEC_BYTEFALLBACK:
        if (n == 6 && memcmp(a, "<0x", 3) == 0 && a[5] == '>' && hexval(a[3]) >= 0 &&
            hexval(a[4]) >= 0) {
            b[0] = (char)(hexval(a[3]) * 16 + hexval(a[4]));
            return 1;
        }
        break;
    case SP_TOK_DEC_BYTELEVEL: {
        size_t k = 0;
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            i += sp_tok_utf8_decode(a + i, n - i, &cp);
            int byte = sp_tok_cp_to_byte(cp);
            if (byte < 0) break; /* outside the alphabet: the piece's own bytes */
            b[k++] = (char)byte;
            if (i == n) return k;
        }
        break;
    }
    case SP_TOK_DEC_STRIP: {
        size_t s = 0;
        while (at_start && s < n && s < (size_t)d->start && a[s] == d->strip_char) s++;
        memcpy(b, a + s, n - s);
        return n - s;
    }
    case SP_TOK_DEC_METASPACE: {
        size_t rl = strlen(d->a), s = 0;
        if (at_start && d->prepend_scheme != SP_TOK_PREPEND_NEVER && n >= rl &&
            memcmp(a, d->a, rl) == 0)
            s = rl;
        return replace(b, a + s, n - s, d->a, " ");
    }
    case SP_TOK_DEC_FUSE: break;
    }
    memcpy(b, a, n);
    return n;
}

sp_status sp_tokenizer_decode_step(const sp_tokenizer *t, int32_t prev, int32_t id, char *buf,
                                   size_t cap, size_t *len, sp_err *err) {
    SP_RETURN_IF(!t || !buf || !len || cap == 0, err, SP_EINVAL,
                 "sp_tokenizer_decode_step: NULL argument");
    SP_RETURN_IF(id < 0 || id >= t->n_vocab || !t->has[id], err, SP_EINVAL,
                 "%s: cannot decode id %d (vocabulary has %d ids)", t->path, (int)id, t->n_vocab);
    *len = 0;
    buf[0] = '\0';
    if (t->special[id]) return SP_OK;
    int at_start = prev < 0 || prev == t->bos;
    /* working room: each Replace may grow the text by its content/pattern ratio */
    size_t n = t->len[id], room = n + 2;
    for (size_t k = 0; k < t->n_dec; k++)
        if (t->dec[k].kind == SP_TOK_DEC_REPLACE) room *= strlen(t->dec[k].b) + 1;
    char *a = malloc(room), *b = malloc(room);
    sp_status st = SP_OK;
    if (!a || !b) {
        st = sp_err_set(err, SP_ENOMEM, "%s: cannot allocate %zu bytes to decode id %d", t->path,
                        room, (int)id);
        goto done;
    }
    if (t->n_dec == 0 && !at_start) { /* no decoder: pieces are joined with ' ' */
        a[0] = ' ';
        memcpy(a + 1, t->blob + t->off[id], n);
        n++;
    } else {
        memcpy(a, t->blob + t->off[id], n);
    }
    for (size_t k = 0; k < t->n_dec; k++) {
        n = step(&t->dec[k], a, n, b, at_start);
        char *tmp = a;
        a = b;
        b = tmp;
    }
    if (n + 1 > cap) {
        st = sp_err_set(err, SP_EINVAL, "%s: id %d decodes to %zu bytes, more than the %zu of the "
                        "buffer", t->path, (int)id, n, cap - 1);
        goto done;
    }
    memcpy(buf, a, n);
    buf[n] = '\0';
    *len = n;
done:
    free(a);
    free(b);
    return st;
}
