/* sp_tok_json_parts.c — the normalizer, pre_tokenizer and decoder sections of tokenizer.json.
 *
 * Each section is null or an object with "type"; "Sequence" nests. Supported:
 *   normalizer     Prepend, Replace (String pattern), NFC
 *   pre_tokenizer  ByteLevel, Split (Regex or String pattern; Isolated or Removed),
 *                  Digits (a \p{N} split), Metaspace
 *   decoder        Replace, ByteFallback, Fuse, Strip, ByteLevel, Metaspace
 * Anything else is SP_EUNSUPPORTED naming the file and the type, so a model that needs a step
 * shardpress lacks fails at load time rather than tokenizing differently.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "shards/tok/sp_tok_internal.h"

/* The GPT-2 pre-tokenizer regex (ByteLevel with use_regex). */
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static const char *str_field(const cJSON *j, const char *name) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, name);
    return cJSON_IsString(f) ? f->valuestring : NULL;
}

/* bool field with a default when absent or null */
static int bool_field(const cJSON *j, const char *name, int dflt) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, name);
    return cJSON_IsBool(f) ? cJSON_IsTrue(f) : dflt;
}

static char *dup_str(const char *s, sp_err *err) {
    size_t n = strlen(s);
    char *d = sp_malloc(n + 1, err, "tokenizer string");
    if (d) memcpy(d, s, n + 1);
    return d;
}

/* Grow an array of elem-sized items by one; returns the new (zeroed) item or NULL. */
static void *grow(void **arr, size_t *n, size_t elem, sp_err *err) {
    void *p = realloc(*arr, (*n + 1) * elem);
    if (!p) {
        sp_err_set(err, SP_ENOMEM, "tokenizer: cannot grow a step list");
        return NULL;
    }
    *arr = p;
    char *item = (char *)p + *n * elem;
    memset(item, 0, elem);
    (*n)++;
    return item;
}

sp_status sp_tok_compile_regex(pcre2_code **out, const char *pattern, const char *path,
                               const char *field, sp_err *err) {
    int code;
    PCRE2_SIZE off;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, opts, &code, &off,
                                   NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof msg);
        return sp_err_set(err, SP_EFORMAT, "%s: %s: regex error at offset %zu: %s", path, field,
                          (size_t)off, (const char *)msg);
    }
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
    *out = re;
    return SP_OK;
}

/* String pattern {"String": s} or {"Regex": r} -> a PCRE2 pattern (a String is quoted). */
static sp_status pattern_regex(sp_tokenizer *t, const cJSON *pat, const char *field,
                               pcre2_code **re, sp_err *err) {
    const char *rx = str_field(pat, "Regex"), *lit = str_field(pat, "String");
    SP_RETURN_IF(!rx && !lit, err, SP_EFORMAT, "%s: %s.pattern has neither String nor Regex",
                 t->path, field);
    if (rx) return sp_tok_compile_regex(re, rx, t->path, field, err);
    /* \Q...\E quotes everything except a literal "\E", which no tokenizer uses */
    SP_RETURN_IF(strstr(lit, "\\E"), err, SP_EUNSUPPORTED,
                 "%s: %s.pattern String contains \\E", t->path, field);
    size_t n = strlen(lit);
    char *q = sp_malloc(n + 5, err, "tokenizer pattern");
    if (!q) return SP_ENOMEM;
    snprintf(q, n + 5, "\\Q%s\\E", lit);
    sp_status st = sp_tok_compile_regex(re, q, t->path, field, err);
    free(q);
    return st;
}

static sp_status parse_prepend_scheme(sp_tokenizer *t, const cJSON *j, const char *field,
                                      int *out, sp_err *err) {
    const char *s = str_field(j, "prepend_scheme");
    if (!s) {
        *out = bool_field(j, "add_prefix_space", 1) ? SP_TOK_PREPEND_ALWAYS : SP_TOK_PREPEND_NEVER;
        return SP_OK;
    }
    if (strcmp(s, "always") == 0) *out = SP_TOK_PREPEND_ALWAYS;
    else if (strcmp(s, "first") == 0) *out = SP_TOK_PREPEND_FIRST;
    else if (strcmp(s, "never") == 0) *out = SP_TOK_PREPEND_NEVER;
    else
        return sp_err_set(err, SP_EFORMAT, "%s: %s.prepend_scheme '%s' unknown", t->path, field,
                          s);
    return SP_OK;
}

sp_status sp_tok_parse_normalizer(sp_tokenizer *t, const cJSON *j, sp_err *err) {
    if (!j || cJSON_IsNull(j)) return SP_OK;
    const char *type = str_field(j, "type");
    SP_RETURN_IF(!type, err, SP_EFORMAT, "%s: normalizer has no type", t->path);
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "normalizers"), *it;
        SP_RETURN_IF(!cJSON_IsArray(arr), err, SP_EFORMAT, "%s: normalizer Sequence has no "
                     "normalizers array", t->path);
        cJSON_ArrayForEach(it, arr) SP_FORWARD(sp_tok_parse_normalizer(t, it, err));
        return SP_OK;
    }
    sp_tok_norm *n;
    if (strcmp(type, "NFC") == 0) {
        if (!(n = grow((void **)&t->norm, &t->n_norm, sizeof *n, err))) return SP_ENOMEM;
        n->kind = SP_TOK_NORM_NFC;
        return SP_OK;
    }
    if (strcmp(type, "Prepend") == 0) {
        const char *p = str_field(j, "prepend");
        SP_RETURN_IF(!p, err, SP_EFORMAT, "%s: normalizer Prepend has no prepend", t->path);
        if (!(n = grow((void **)&t->norm, &t->n_norm, sizeof *n, err))) return SP_ENOMEM;
        n->kind = SP_TOK_NORM_PREPEND;
        return (n->a = dup_str(p, err)) ? SP_OK : SP_ENOMEM;
    }
    if (strcmp(type, "Replace") == 0) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
        const char *s = str_field(pat, "String"), *c = str_field(j, "content");
        SP_RETURN_IF(!s, err, SP_EUNSUPPORTED, "%s: normalizer Replace needs a String pattern",
                     t->path);
        SP_RETURN_IF(!*s || !c, err, SP_EFORMAT, "%s: normalizer Replace has an empty pattern "
                     "or no content", t->path);
        if (!(n = grow((void **)&t->norm, &t->n_norm, sizeof *n, err))) return SP_ENOMEM;
        n->kind = SP_TOK_NORM_REPLACE;
        n->a = dup_str(s, err);
        n->b = dup_str(c, err);
        return n->a && n->b ? SP_OK : SP_ENOMEM;
    }
    return sp_err_set(err, SP_EUNSUPPORTED, "%s: normalizer type '%s' is not supported", t->path,
                      type);
}

sp_status sp_tok_parse_pretokenizer(sp_tokenizer *t, const cJSON *j, sp_err *err) {
    if (!j || cJSON_IsNull(j)) return SP_OK;
    const char *type = str_field(j, "type");
    SP_RETURN_IF(!type, err, SP_EFORMAT, "%s: pre_tokenizer has no type", t->path);
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "pretokenizers"), *it;
        SP_RETURN_IF(!cJSON_IsArray(arr), err, SP_EFORMAT, "%s: pre_tokenizer Sequence has no "
                     "pretokenizers array", t->path);
        cJSON_ArrayForEach(it, arr) SP_FORWARD(sp_tok_parse_pretokenizer(t, it, err));
        return SP_OK;
    }
    sp_tok_pre *p;
    if (!(p = grow((void **)&t->pre, &t->n_pre, sizeof *p, err))) return SP_ENOMEM;
    if (strcmp(type, "ByteLevel") == 0) {
        p->kind = SP_TOK_PRE_BYTELEVEL;
        p->add_prefix_space = bool_field(j, "add_prefix_space", 0);
        t->bytelevel = 1;
        if (bool_field(j, "use_regex", 1))
            return sp_tok_compile_regex(&p->re, GPT2_PATTERN, t->path, "pre_tokenizer ByteLevel",
                                        err);
        return SP_OK;
    }
    if (strcmp(type, "Split") == 0) {
        p->kind = SP_TOK_PRE_SPLIT;
        const char *beh = str_field(j, "behavior");
        SP_RETURN_IF(bool_field(j, "invert", 0), err, SP_EUNSUPPORTED,
                     "%s: pre_tokenizer Split with invert is not supported", t->path);
        if (beh && strcmp(beh, "Isolated") == 0) p->behavior = SP_TOK_SPLIT_ISOLATED;
        else if (beh && strcmp(beh, "Removed") == 0) p->behavior = SP_TOK_SPLIT_REMOVED;
        else return sp_err_set(err, SP_EUNSUPPORTED, "%s: pre_tokenizer Split behavior '%s' is "
                               "not supported", t->path, beh ? beh : "(none)");
        return pattern_regex(t, cJSON_GetObjectItemCaseSensitive(j, "pattern"),
                             "pre_tokenizer Split", &p->re, err);
    }
    if (strcmp(type, "Digits") == 0) {
        p->kind = SP_TOK_PRE_SPLIT;
        p->behavior = SP_TOK_SPLIT_ISOLATED;
        const char *rx = bool_field(j, "individual_digits", 0) ? "\\p{N}" : "\\p{N}+";
        return sp_tok_compile_regex(&p->re, rx, t->path, "pre_tokenizer Digits", err);
    }
    if (strcmp(type, "Metaspace") == 0) {
        p->kind = SP_TOK_PRE_METASPACE;
        const char *r = str_field(j, "replacement");
        p->split = bool_field(j, "split", 1);
        int scheme;
        SP_FORWARD(parse_prepend_scheme(t, j, "pre_tokenizer Metaspace", &scheme, err));
        p->prepend = (sp_tok_prepend)scheme;
        return (p->replacement = dup_str(r && *r ? r : "\xE2\x96\x81", err)) ? SP_OK : SP_ENOMEM;
    }
    return sp_err_set(err, SP_EUNSUPPORTED, "%s: pre_tokenizer type '%s' is not supported",
                      t->path, type);
}

sp_status sp_tok_parse_decoder(sp_tokenizer *t, const cJSON *j, sp_err *err) {
    if (!j || cJSON_IsNull(j)) return SP_OK;
    const char *type = str_field(j, "type");
    SP_RETURN_IF(!type, err, SP_EFORMAT, "%s: decoder has no type", t->path);
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "decoders"), *it;
        SP_RETURN_IF(!cJSON_IsArray(arr), err, SP_EFORMAT, "%s: decoder Sequence has no "
                     "decoders array", t->path);
        cJSON_ArrayForEach(it, arr) SP_FORWARD(sp_tok_parse_decoder(t, it, err));
        return SP_OK;
    }
    sp_tok_dec *d;
    if (!(d = grow((void **)&t->dec, &t->n_dec, sizeof *d, err))) return SP_ENOMEM;
    if (strcmp(type, "ByteFallback") == 0) {
        d->kind = SP_TOK_DEC_BYTEFALLBACK;
    } else if (strcmp(type, "Fuse") == 0) {
        d->kind = SP_TOK_DEC_FUSE;
    } else if (strcmp(type, "ByteLevel") == 0) {
        d->kind = SP_TOK_DEC_BYTELEVEL;
    } else if (strcmp(type, "Replace") == 0) {
        d->kind = SP_TOK_DEC_REPLACE;
        const char *s = str_field(cJSON_GetObjectItemCaseSensitive(j, "pattern"), "String");
        const char *c = str_field(j, "content");
        SP_RETURN_IF(!s || !*s || !c, err, SP_EUNSUPPORTED, "%s: decoder Replace needs a "
                     "non-empty String pattern and a content", t->path);
        d->a = dup_str(s, err);
        d->b = dup_str(c, err);
        if (!d->a || !d->b) return SP_ENOMEM;
    } else if (strcmp(type, "Strip") == 0) {
        d->kind = SP_TOK_DEC_STRIP;
        const char *c = str_field(j, "content");
        const cJSON *start = cJSON_GetObjectItemCaseSensitive(j, "start");
        const cJSON *stop = cJSON_GetObjectItemCaseSensitive(j, "stop");
        SP_RETURN_IF(!c || strlen(c) != 1, err, SP_EUNSUPPORTED, "%s: decoder Strip content "
                     "must be one ASCII character", t->path);
        SP_RETURN_IF(!cJSON_IsNumber(start) || !cJSON_IsNumber(stop) || start->valueint < 0 ||
                     stop->valueint < 0, err, SP_EFORMAT, "%s: decoder Strip start/stop must "
                     "be non-negative integers", t->path);
        d->strip_char = c[0];
        d->start = start->valueint;
        d->stop = stop->valueint;
    } else if (strcmp(type, "Metaspace") == 0) {
        d->kind = SP_TOK_DEC_METASPACE;
        const char *r = str_field(j, "replacement");
        SP_FORWARD(parse_prepend_scheme(t, j, "decoder Metaspace", &d->prepend_scheme, err));
        if (!(d->a = dup_str(r && *r ? r : "\xE2\x96\x81", err))) return SP_ENOMEM;
    } else {
        return sp_err_set(err, SP_EUNSUPPORTED, "%s: decoder type '%s' is not supported",
                          t->path, type);
    }
    return SP_OK;
}
