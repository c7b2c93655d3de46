/* sp_tok_nfc.c — Unicode NFC, the normalizer of Qwen2/Qwen3 (and others') tokenizer.json.
 *
 * Hugging Face applies it to every text segment before pre-tokenization, so a decomposed
 * "e" + U+0301 or a Kelvin sign U+212A must become "é" / "K" before the regex and BPE see
 * them, or the ids differ. UAX #15: full canonical decomposition, canonical ordering of
 * combining marks (stable sort by combining class), then canonical composition. The data
 * (sp_tok_nfc_tables.h) is generated from Python's unicodedata; Hangul syllables are
 * computed. Bytes that are not valid UTF-8 are kept as they are and block composition
 * across them (encode's contract is valid UTF-8; this only keeps bad input from changing).
 */
#include <stdlib.h>
#include <string.h>

#include "shards/tok/sp_tok_internal.h"
#include "shards/tok/sp_tok_nfc_tables.h"

enum {
    S_BASE = 0xAC00, L_BASE = 0x1100, V_BASE = 0x1161, T_BASE = 0x11A7,
    L_COUNT = 19, V_COUNT = 21, T_COUNT = 28, N_COUNT = V_COUNT * T_COUNT,
    S_COUNT = L_COUNT * N_COUNT
};

/* An invalid byte b travels as RAW | b: above U+10FFFF, so no table knows it. */
#define RAW 0x80000000u

static int ccc_of(uint32_t cp) {
    if (cp < 0x300 || cp & RAW) return 0;
    size_t lo = 0, hi = sizeof SP_TOK_NFC_CCC / sizeof *SP_TOK_NFC_CCC;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (SP_TOK_NFC_CCC[mid].cp < cp) lo = mid + 1;
        else hi = mid;
    }
    return lo < sizeof SP_TOK_NFC_CCC / sizeof *SP_TOK_NFC_CCC && SP_TOK_NFC_CCC[lo].cp == cp
               ? SP_TOK_NFC_CCC[lo].ccc
               : 0;
}

/* Append the full canonical decomposition of cp to d (room for SP_TOK_NFC_MAX_DECOMP). */
static size_t decompose(uint32_t cp, uint32_t *d) {
    if (cp >= S_BASE && cp < S_BASE + S_COUNT) {
        uint32_t s = cp - S_BASE;
        d[0] = L_BASE + s / N_COUNT;
        d[1] = V_BASE + (s % N_COUNT) / T_COUNT;
        if (s % T_COUNT == 0) return 2;
        d[2] = T_BASE + s % T_COUNT;
        return 3;
    }
    if (cp >= 0xC0 && !(cp & RAW)) {
        size_t lo = 0, hi = sizeof SP_TOK_NFC_DECOMP / sizeof *SP_TOK_NFC_DECOMP;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (SP_TOK_NFC_DECOMP[mid].cp < cp) lo = mid + 1;
            else hi = mid;
        }
        if (lo < sizeof SP_TOK_NFC_DECOMP / sizeof *SP_TOK_NFC_DECOMP &&
            SP_TOK_NFC_DECOMP[lo].cp == cp) {
            memcpy(d, SP_TOK_NFC_DECOMP_POOL + SP_TOK_NFC_DECOMP[lo].off,
                   SP_TOK_NFC_DECOMP[lo].len * sizeof *d);
            return SP_TOK_NFC_DECOMP[lo].len;
        }
    }
    d[0] = cp;
    return 1;
}

/* The primary composite of (a, b), or 0. */
static uint32_t compose(uint32_t a, uint32_t b) {
    if (a >= L_BASE && a < L_BASE + L_COUNT && b >= V_BASE && b < V_BASE + V_COUNT)
        return S_BASE + ((a - L_BASE) * V_COUNT + (b - V_BASE)) * T_COUNT;
    if (a >= S_BASE && a < S_BASE + S_COUNT && (a - S_BASE) % T_COUNT == 0 && b > T_BASE &&
        b < T_BASE + T_COUNT)
        return a + (b - T_BASE);
    if ((a | b) & RAW) return 0;
    size_t lo = 0, hi = sizeof SP_TOK_NFC_COMP / sizeof *SP_TOK_NFC_COMP;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (SP_TOK_NFC_COMP[mid].first < a ||
            (SP_TOK_NFC_COMP[mid].first == a && SP_TOK_NFC_COMP[mid].second < b))
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < sizeof SP_TOK_NFC_COMP / sizeof *SP_TOK_NFC_COMP &&
        SP_TOK_NFC_COMP[lo].first == a && SP_TOK_NFC_COMP[lo].second == b)
        return SP_TOK_NFC_COMP[lo].composite;
    return 0;
}

/* Decode one strict UTF-8 character at s; returns its length, or 0 when s does not start a
 * valid sequence (overlong, surrogate, above U+10FFFF, cut off). */
static size_t utf8_strict(const unsigned char *s, size_t len, uint32_t *cp) {
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t need;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) need = 1, v = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) need = 2, v = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) need = 3, v = c & 0x07, min = 0x10000;
    else return 0;
    if (len <= need) return 0;
    for (size_t k = 1; k <= need; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        v = v << 6 | (s[k] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return need + 1;
}

sp_status sp_tok_nfc(const char *text, size_t len, char **out, size_t *out_len, sp_err *err) {
    *out = NULL;
    *out_len = 0;
    /* every input byte gives at most one code point, which decomposes into at most
     * SP_TOK_NFC_MAX_DECOMP; composition only shrinks */
    uint32_t *cp = sp_malloc((len ? len : 1) * SP_TOK_NFC_MAX_DECOMP * sizeof *cp, err,
                             "NFC code points");
    if (!cp) return SP_ENOMEM;
    const unsigned char *s = (const unsigned char *)text;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t c;
        size_t cl = utf8_strict(s + i, len - i, &c);
        if (cl == 0) {
            c = RAW | s[i];
            cl = 1;
        }
        n += decompose(c, cp + n);
        i += cl;
    }
    /* canonical ordering: insertion sort of each run of non-starters, stable by class */
    for (size_t i = 1; i < n; i++) {
        int ci = ccc_of(cp[i]);
        if (ci == 0) continue;
        uint32_t x = cp[i];
        size_t j = i;
        while (j > 0 && ccc_of(cp[j - 1]) > ci) {
            cp[j] = cp[j - 1];
            j--;
        }
        cp[j] = x;
    }
    /* canonical composition (UAX #15's reference algorithm): a mark joins the last starter
     * unless a mark of the same or a higher class, or a starter, stands between them */
    size_t m = n ? 1 : 0, starter = 0;
    int last = n ? ccc_of(cp[0]) : 0;
    if (last != 0) last = 256; /* text that starts with a mark has no starter yet */
    for (size_t i = 1; i < n; i++) {
        uint32_t c = cp[i];
        int cc = ccc_of(c);
        uint32_t comp = compose(cp[starter], c);
        if (comp && (last < cc || last == 0)) {
            cp[starter] = comp;
            continue;
        }
        if (cc == 0) starter = m;
        last = cc;
        cp[m++] = c;
    }
    char *o = sp_malloc(m * 4 + 1, err, "NFC text");
    if (!o) {
        free(cp);
        return SP_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < m; i++) {
        if (cp[i] & RAW) o[k++] = (char)(cp[i] & 0xFF);
        else k += sp_tok_utf8_put(cp[i], o + k);
    }
    o[k] = '\0';
    free(cp);
    *out = o;
    *out_len = k;
    return SP_OK;
}
