/* sp_tok_json.c — load a Hugging Face tokenizer.json (BPE model only).
 *
 * Reads: model {type BPE, vocab {piece: id}, merges ["a b"] or [["a","b"]], unk_token,
 * byte_fallback, fuse_unk, ignore_merges}, added_tokens [{id, content, special, lstrip, rstrip,
 * single_word}], normalizer / pre_tokenizer / decoder (sp_tok_json_parts.c), and
 * post_processor for the BOS id. The merge at index i gets rank i; its merged id is the
 * vocabulary id of the concatenated pieces (Hugging Face rejects merges whose pieces or result
 * are missing from the vocabulary, and so do we).
 *
 * BOS: the special token the post-processor's "single" template puts first; else, when the
 * tokenizer_config.json beside the file says add_bos_token true, its bos_token; else none.
 * EOS: tokenizer_config.json's eos_token; else the first added token named </s>,
 * <|end_of_text|> or <|endoftext|>; else none.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "shards/tok/sp_tok_internal.h"

static const char *str_field(const cJSON *j, const char *name) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, name);
    return cJSON_IsString(f) ? f->valuestring : NULL;
}

static int bool_field(const cJSON *j, const char *name, int dflt) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, name);
    return cJSON_IsBool(f) ? cJSON_IsTrue(f) : dflt;
}

/* a JSON number that is an integer in [0, 2^24): real vocabularies stay far below, and the
 * bound keeps a corrupt id from sizing the id tables */
static int valid_id(const cJSON *n) {
    return cJSON_IsNumber(n) && n->valuedouble >= 0 && n->valuedouble < 16777216.0 &&
           n->valuedouble == (double)(int32_t)n->valuedouble;
}

/* Pass 1 over vocab + added_tokens: validate ids, count ids and piece bytes. */
static sp_status size_vocab(sp_tokenizer *t, const cJSON *vocab, const cJSON *added,
                            int vocab_size, size_t *blob, sp_err *err) {
    int32_t max_id = -1;
    const cJSON *it;
    *blob = 0;
    cJSON_ArrayForEach(it, vocab) {
        SP_RETURN_IF(!valid_id(it), err, SP_EFORMAT, "%s: model.vocab['%s'] is not a valid id",
                     t->path, it->string);
        if ((int32_t)it->valuedouble > max_id) max_id = (int32_t)it->valuedouble;
        *blob += strlen(it->string) + 1;
    }
    size_t k = 0;
    cJSON_ArrayForEach(it, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const char *content = str_field(it, "content");
        SP_RETURN_IF(!valid_id(id) || !content, err, SP_EFORMAT,
                     "%s: added_tokens[%zu] needs an integer id and a content string", t->path, k);
        if ((int32_t)id->valuedouble > max_id) max_id = (int32_t)id->valuedouble;
        *blob += strlen(content) + 1;
        k++;
    }
    SP_RETURN_IF(max_id < 0, err, SP_EFORMAT, "%s: model.vocab is empty", t->path);
    SP_RETURN_IF(vocab_size > 0 && max_id >= vocab_size, err, SP_EFORMAT,
                 "%s: token id %d does not fit the model's vocab_size %d", t->path, (int)max_id,
                 vocab_size);
    return sp_tok_vocab_alloc(t, max_id + 1, *blob, err);
}

/* Pass 2: store pieces; an id used by two different strings is an error. */
static sp_status fill_vocab(sp_tokenizer *t, const cJSON *vocab, const cJSON *added, sp_err *err) {
    size_t used = 0, k = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        int32_t id = (int32_t)it->valuedouble;
        SP_RETURN_IF(t->has[id], err, SP_EFORMAT, "%s: model.vocab id %d is used twice ('%s' and "
                     "'%s')", t->path, (int)id, t->blob + t->off[id], it->string);
        sp_tok_vocab_set(t, id, it->string, strlen(it->string), &used);
    }
    cJSON_ArrayForEach(it, added) {
        int32_t id = (int32_t)cJSON_GetObjectItemCaseSensitive(it, "id")->valuedouble;
        const char *content = str_field(it, "content");
        if (t->has[id]) {
            SP_RETURN_IF(strcmp(t->blob + t->off[id], content) != 0, err, SP_EFORMAT,
                         "%s: added_tokens[%zu] id %d is '%s' but the vocabulary has '%s'",
                         t->path, k, (int)id, content, t->blob + t->off[id]);
        } else {
            sp_tok_vocab_set(t, id, content, strlen(content), &used);
        }
        k++;
    }
    return sp_tok_vocab_index(t, err);
}

static sp_status load_merges(sp_tokenizer *t, const cJSON *merges, sp_err *err) {
    size_t n = (size_t)cJSON_GetArraySize(merges), i = 0;
    SP_FORWARD(sp_tok_pairmap_init(&t->merges, n, err));
    char *cat = NULL;
    size_t cat_cap = 0;
    sp_status st = SP_OK;
    const cJSON *m;
    cJSON_ArrayForEach(m, merges) {
        const char *a = NULL, *b = NULL;
        size_t la = 0, lb = 0;
        if (cJSON_IsString(m)) { /* "a b": exactly one space */
            const char *sp = strchr(m->valuestring, ' ');
            if (sp && !strchr(sp + 1, ' ')) {
                a = m->valuestring;
                la = (size_t)(sp - a);
                b = sp + 1;
                lb = strlen(b);
            }
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 &&
                   cJSON_IsString(cJSON_GetArrayItem(m, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(m, 1))) {
            a = cJSON_GetArrayItem(m, 0)->valuestring;
            b = cJSON_GetArrayItem(m, 1)->valuestring;
            la = strlen(a);
            lb = strlen(b);
        }
        if (!a) {
            st = sp_err_set(err, SP_EFORMAT, "%s: model.merges[%zu] is neither \"a b\" nor "
                            "[\"a\", \"b\"]", t->path, i);
            break;
        }
        if (la + lb > cat_cap) {
            cat_cap = 2 * (la + lb);
            free(cat);
            if (!(cat = sp_malloc(cat_cap, err, "merge string"))) {
                st = SP_ENOMEM;
                break;
            }
        }
        memcpy(cat, a, la);
        memcpy(cat + la, b, lb);
        int32_t ia = sp_tok_strmap_get(&t->vocab, a, la);
        int32_t ib = sp_tok_strmap_get(&t->vocab, b, lb);
        int32_t im = sp_tok_strmap_get(&t->vocab, cat, la + lb);
        if (ia < 0 || ib < 0 || im < 0) {
            st = sp_err_set(err, SP_EFORMAT, "%s: model.merges[%zu] ('%.*s' + '%.*s'): %s is "
                            "not in the vocabulary", t->path, i, (int)la, a, (int)lb, b,
                            ia < 0 ? "the left piece" : ib < 0 ? "the right piece" : "the merge");
            break;
        }
        SP_RETURN_IF(i > INT32_MAX - 1, err, SP_EUNSUPPORTED, "%s: too many merges", t->path);
        sp_tok_pairmap_set(&t->merges, ia, ib, (int32_t)i, im);
        i++;
    }
    free(cat);
    return st;
}

static int cmp_added_len(const void *x, const void *y) {
    const sp_tok_added *a = x, *b = y;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static sp_status load_added(sp_tokenizer *t, const cJSON *added, sp_err *err) {
    size_t n = (size_t)cJSON_GetArraySize(added);
    if (n == 0) return SP_OK;
    t->added = sp_calloc(n, sizeof *t->added, err, "added tokens");
    if (!t->added) return SP_ENOMEM;
    const cJSON *it;
    cJSON_ArrayForEach(it, added) {
        sp_tok_added *a = &t->added[t->n_added++];
        a->id = (int32_t)cJSON_GetObjectItemCaseSensitive(it, "id")->valuedouble;
        a->content = t->blob + t->off[a->id]; /* fill_vocab checked they are equal */
        a->len = t->len[a->id];
        a->special = bool_field(it, "special", 0);
        a->lstrip = bool_field(it, "lstrip", 0);
        a->rstrip = bool_field(it, "rstrip", 0);
        a->single_word = bool_field(it, "single_word", 0);
        if (a->special) t->special[a->id] = 1;
        if (a->len) t->added_first[(unsigned char)a->content[0]] = 1;
    }
    qsort(t->added, t->n_added, sizeof *t->added, cmp_added_len);
    return SP_OK;
}

/* The id of a special-token name: post_processor.special_tokens[name].ids[0], else the
 * vocabulary. */
static int32_t template_id(const sp_tokenizer *t, const cJSON *pp, const char *name) {
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(pp, "special_tokens");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(sp, name), "ids");
    const cJSON *first = cJSON_IsArray(ids) ? cJSON_GetArrayItem(ids, 0) : NULL;
    if (first && valid_id(first) && (int32_t)first->valuedouble < t->n_vocab)
        return (int32_t)first->valuedouble;
    return sp_tok_strmap_get(&t->vocab, name, strlen(name));
}

/* The special token the "single" template puts before the sequence, or -1. */
static int32_t bos_from_post_processor(const sp_tokenizer *t, const cJSON *pp) {
    const char *type = str_field(pp, "type");
    if (!type) return -1;
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(pp, "processors")) {
            int32_t id = bos_from_post_processor(t, it);
            if (id >= 0) return id;
        }
        return -1;
    }
    if (strcmp(type, "TemplateProcessing") != 0) return -1;
    const cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(pp, "single"), 0);
    const char *name = str_field(cJSON_GetObjectItemCaseSensitive(first, "SpecialToken"), "id");
    return name ? template_id(t, pp, name) : -1;
}

/* tokenizer_config.json's bos_token / eos_token: a string or {"content": string}. */
static int32_t config_token(const sp_tokenizer *t, const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    const char *s = cJSON_IsString(v) ? v->valuestring : str_field(v, "content");
    return s ? sp_tok_strmap_get(&t->vocab, s, strlen(s)) : -1;
}

static void find_specials(sp_tokenizer *t, const cJSON *root) {
    t->bos = bos_from_post_processor(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"));
    t->eos = -1;
    /* tokenizer_config.json beside the file (optional) */
    const char *slash = strrchr(t->path, '/');
    size_t dl = slash ? (size_t)(slash - t->path) + 1 : 0;
    char *cpath = malloc(dl + sizeof "tokenizer_config.json");
    char *data = NULL;
    size_t size;
    cJSON *cfg = NULL;
    if (cpath) {
        memcpy(cpath, t->path, dl);
        memcpy(cpath + dl, "tokenizer_config.json", sizeof "tokenizer_config.json");
        if (sp_tok_read_file(cpath, &data, &size, NULL) == SP_OK)
            cfg = cJSON_ParseWithLength(data, size);
    }
    if (cfg) {
        if (t->bos < 0 && bool_field(cfg, "add_bos_token", 0))
            t->bos = config_token(t, cfg, "bos_token");
        t->eos = config_token(t, cfg, "eos_token");
    }
    static const char *const eos_names[] = {"</s>", "<|end_of_text|>", "<|endoftext|>"};
    for (size_t k = 0; t->eos < 0 && k < sizeof eos_names / sizeof *eos_names; k++)
        for (size_t a = 0; t->eos < 0 && a < t->n_added; a++)
            if (strcmp(t->added[a].content, eos_names[k]) == 0) t->eos = t->added[a].id;
    cJSON_Delete(cfg);
    free(data);
    free(cpath);
}

/* Byte table: byte-level -> id of the byte's alphabet character; else -> id of <0xNN>. */
static void byte_table(sp_tokenizer *t) {
    for (int b = 0; b < 256; b++) {
        char s[8];
        size_t n;
        if (t->bytelevel) {
            n = sp_tok_utf8_put(sp_tok_byte_to_cp((unsigned char)b), s);
        } else {
            static const char hex[] = "0123456789ABCDEF";
            memcpy(s, "<0x", 3);
            s[3] = hex[b >> 4];
            s[4] = hex[b & 15];
            s[5] = '>';
            n = 6;
        }
        t->byte_id[b] = sp_tok_strmap_get(&t->vocab, s, n);
    }
}

static sp_status load_model(sp_tokenizer *t, const cJSON *root, int vocab_size, sp_err *err) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    SP_RETURN_IF(!cJSON_IsObject(model), err, SP_EFORMAT, "%s: no model object", t->path);
    const char *type = str_field(model, "type");
    SP_RETURN_IF(type && strcmp(type, "BPE") != 0, err, SP_EUNSUPPORTED,
                 "%s: model.type '%s' is not supported (only BPE)", t->path, type);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    SP_RETURN_IF(!cJSON_IsObject(vocab), err, SP_EFORMAT, "%s: model.vocab is not an object",
                 t->path);
    SP_RETURN_IF(!cJSON_IsArray(merges), err, SP_EFORMAT, "%s: model.merges is not an array",
                 t->path);
    SP_RETURN_IF(added && !cJSON_IsArray(added) && !cJSON_IsNull(added), err, SP_EFORMAT,
                 "%s: added_tokens is not an array", t->path);
    if (!cJSON_IsArray(added)) added = NULL;
    const char *cont = str_field(model, "continuing_subword_prefix");
    const char *suffix = str_field(model, "end_of_word_suffix");
    SP_RETURN_IF((cont && *cont) || (suffix && *suffix), err, SP_EUNSUPPORTED,
                 "%s: model.continuing_subword_prefix / end_of_word_suffix are not supported",
                 t->path);

    size_t blob;
    SP_FORWARD(size_vocab(t, vocab, added, vocab_size, &blob, err));
    SP_FORWARD(fill_vocab(t, vocab, added, err));
    SP_FORWARD(load_merges(t, merges, err));
    if (added) SP_FORWARD(load_added(t, added, err));
    t->byte_fallback = bool_field(model, "byte_fallback", 0);
    t->fuse_unk = bool_field(model, "fuse_unk", 0);
    t->ignore_merges = bool_field(model, "ignore_merges", 0);
    const char *unk = str_field(model, "unk_token");
    t->unk = unk ? sp_tok_strmap_get(&t->vocab, unk, strlen(unk)) : -1;
    SP_RETURN_IF(unk && t->unk < 0, err, SP_EFORMAT, "%s: model.unk_token '%s' is not in the "
                 "vocabulary", t->path, unk);
    return SP_OK;
}

sp_status sp_tok_load_json(sp_tokenizer *t, const char *data, size_t size, int vocab_size,
                           sp_err *err) {
    t->source = SP_TOK_JSON;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(data, size, &end, 0);
    if (!root) {
        size_t at = end && end >= data && end <= data + size ? (size_t)(end - data) : 0;
        return sp_err_set(err, SP_EFORMAT, "%s: invalid JSON near byte %zu", t->path, at);
    }
    sp_status st = SP_OK;
    if (!cJSON_IsObject(root)) st = sp_err_set(err, SP_EFORMAT, "%s: not a JSON object", t->path);
    if (st == SP_OK) st = load_model(t, root, vocab_size, err);
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (st == SP_OK) st = sp_tok_parse_normalizer(t, norm, err);
    if (st == SP_OK) st = sp_tok_parse_pretokenizer(t, pre, err);
    if (st == SP_OK) st = sp_tok_parse_decoder(t, dec, err);
    if (st == SP_OK) {
        byte_table(t);
        find_specials(t, root);
    }
    cJSON_Delete(root);
    return st;
}
