/* sp_gguf_vocab.c — the tokenizer.ggml.* metadata of a GGUF export, from tokenizer.json or a
 * llama2.c tokenizer .bin (see sp_gguf_export.h and docs/formats.md "GGUF export").
 *
 * SentencePiece-style tokenizer.json (BPE with byte fallback, "▁" for spaces) -> model
 * "llama": llama.cpp's SPM tokenizer merges the adjacent pair whose merged piece has the highest
 * score, so a piece made by HF merge rank k gets score −(k + 1) (HF merges the lowest rank
 * first; both merge the leftmost pair on ties); pieces no merge makes (characters, bytes,
 * specials) get 0. llama2.c .bin files carry their own scores. Byte-level BPE -> model "gpt2"
 * with the merges as "a b" strings and tokenizer.ggml.pre from the pre-tokenizer's regex.
 * Token types: 1 normal, 2 unknown, 3 control (special added tokens), 4 user-defined (other
 * added tokens, and padding up to the model's vocab_size), 6 byte (<0xNN>).
 */
#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shards/formats/sp_gguf_int.h"
#include "shards/sp_model.h"
#include "shards/tok/sp_tokenizer.h"

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_BYTE = 6 };

typedef struct {
    int n;
    char **tok;
    float *score;
    int32_t *type;
} vocab;

static void vocab_free(vocab *v) {
    if (v->tok)
        for (int i = 0; i < v->n; i++) free(v->tok[i]);
    free(v->tok);
    free(v->score);
    free(v->type);
    memset(v, 0, sizeof *v);
}

static sp_status vocab_alloc(vocab *v, int n, sp_err *err) {
    v->n = n;
    v->tok = calloc((size_t)n, sizeof *v->tok);
    v->score = calloc((size_t)n, sizeof *v->score);
    v->type = calloc((size_t)n, sizeof *v->type);
    if (!v->tok || !v->score || !v->type) {
        vocab_free(v);
        return sp_err_set(err, SP_ENOMEM, "gguf: out of memory for the vocabulary");
    }
    return SP_OK;
}

static int is_byte_piece(const char *s) {
    return strlen(s) == 6 && !strncmp(s, "<0x", 3) && s[5] == '>';
}

/* Fill ids with no token (holes, or ids beyond the file's vocabulary up to the model's). */
static sp_status pad_holes(vocab *v, sp_err *err) {
    for (int i = 0; i < v->n; i++) {
        if (v->tok[i]) continue;
        char b[32];
        snprintf(b, sizeof b, "[PAD%d]", i);
        if (!(v->tok[i] = strdup(b))) return sp_err_set(err, SP_ENOMEM, "gguf: out of memory");
        v->type[i] = TT_USER;
    }
    return SP_OK;
}

/* Piece -> id, open addressing over FNV-1a (vocabularies of 10^5 pieces and merges). */
typedef struct {
    int32_t *slot; /* id + 1, 0 empty */
    size_t mask;
} piece_map;

static uint64_t fnv(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static sp_status piece_map_build(piece_map *m, const vocab *v, sp_err *err) {
    size_t cap = 16;
    while (cap < 2 * (size_t)v->n) cap *= 2;
    m->mask = cap - 1;
    m->slot = calloc(cap, sizeof *m->slot);
    SP_RETURN_IF(!m->slot, err, SP_ENOMEM, "gguf: out of memory for the vocabulary map");
    for (int i = v->n - 1; i >= 0; i--) { /* lowest id wins for duplicates */
        size_t k = fnv(v->tok[i]) & m->mask;
        while (m->slot[k] && strcmp(v->tok[m->slot[k] - 1], v->tok[i])) k = (k + 1) & m->mask;
        m->slot[k] = i + 1;
    }
    return SP_OK;
}

static int piece_map_find(const piece_map *m, const vocab *v, const char *s) {
    for (size_t k = fnv(s) & m->mask; m->slot[k]; k = (k + 1) & m->mask)
        if (!strcmp(v->tok[m->slot[k] - 1], s)) return m->slot[k] - 1;
    return -1;
}

/* The merges as "a b" strings (array of strings, or of [a, b] pairs). */
static sp_status merge_text(const cJSON *m, const char *path, int k, char **out, sp_err *err) {
    if (cJSON_IsString(m)) *out = strdup(m->valuestring);
    else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 &&
             cJSON_IsString(cJSON_GetArrayItem(m, 0)) && cJSON_IsString(cJSON_GetArrayItem(m, 1))) {
        const char *a = cJSON_GetArrayItem(m, 0)->valuestring, *b = cJSON_GetArrayItem(m, 1)->valuestring;
        size_t n = strlen(a) + strlen(b) + 2;
        if ((*out = malloc(n))) snprintf(*out, n, "%s %s", a, b);
    } else
        return sp_err_set(err, SP_EFORMAT, "%s: model.merges[%d] is not a merge", path, k);
    SP_RETURN_IF(!*out, err, SP_ENOMEM, "gguf: out of memory");
    return SP_OK;
}

/* tokenizer.ggml.pre of a byte-level BPE from its pre-tokenizer's Split regex. */
static const char *bpe_pre(const cJSON *root) {
    char *s = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"));
    const char *pre = NULL;
    if (s) {
        if (strstr(s, "\\\\p{N}{1,3}")) pre = "llama-bpe";
        else if (strstr(s, "(?i:'s|'t|'re|'ve|'m|'ll|'d)") && strstr(s, "\\\\p{N}|")) pre = "qwen2";
        else if (strstr(s, "'s|'t|'re|'ve|'m|'ll|'d| ?\\\\p{L}+| ?\\\\p{N}+")) pre = "gpt2";
        else if (!strstr(s, "Split") && strstr(s, "ByteLevel")) pre = "gpt2";
    }
    cJSON_free(s);
    return pre;
}

static sp_status from_json(sp_gguf *g, const char *path, const sp_config *cfg, sp_err *err) {
    char *text = NULL;
    size_t len;
    SP_FORWARD(sp_text_read_file(path, &text, &len, err));
    cJSON *root = cJSON_Parse(text);
    free(text);
    SP_RETURN_IF(!cJSON_IsObject(root), err, SP_EFORMAT, "%s: not a JSON object", path);
    vocab v = {0};
    char **merges = NULL;
    int n_merges = 0;
    sp_status st = SP_OK;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *vj = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *mj = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (!cJSON_IsObject(vj) || !cJSON_IsArray(mj) || !cJSON_IsString(type) ||
        strcmp(type->valuestring, "BPE") != 0) {
        st = sp_err_set(err, SP_EUNSUPPORTED, "%s: model: only BPE tokenizers with vocab and "
                        "merges can be exported to GGUF", path);
        goto done;
    }
    char *dec = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(root, "decoder"));
    char *pret = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"));
    int byte_level = (dec && strstr(dec, "ByteLevel")) || (pret && strstr(pret, "ByteLevel"));
    cJSON_free(dec);
    cJSON_free(pret);
    const char *pre = byte_level ? bpe_pre(root) : NULL;
    if (byte_level && !pre) {
        st = sp_err_set(err, SP_EUNSUPPORTED, "%s: pre_tokenizer: a byte-level BPE whose regex "
                        "is not Llama 3's, Qwen2's or GPT-2's (no tokenizer.ggml.pre for it)", path);
        goto done;
    }
    /* vocabulary size: the model's rows (llama.cpp requires n_vocab == rows of token_embd) */
    int n = cfg->vocab_size;
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if ((st = vocab_alloc(&v, n, err))) goto done;
    const cJSON *it;
    cJSON_ArrayForEach(it, vj) {
        if (!cJSON_IsNumber(it) || it->valueint < 0 || it->valueint >= n) {
            st = sp_err_set(err, SP_EFORMAT, "%s: model.vocab[\"%s\"]: id outside 0..%d (the "
                            "model's vocab_size)", path, it->string, n - 1);
            goto done;
        }
        int id = it->valueint;
        free(v.tok[id]);
        if (!(v.tok[id] = strdup(it->string))) {
            st = sp_err_set(err, SP_ENOMEM, "gguf: out of memory");
            goto done;
        }
        v.type[id] = (!byte_level && is_byte_piece(it->string)) ? TT_BYTE : TT_NORMAL;
    }
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    cJSON_ArrayForEach(it, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!cJSON_IsNumber(id) || !cJSON_IsString(c) || id->valueint < 0 || id->valueint >= n) {
            st = sp_err_set(err, SP_EFORMAT, "%s: added_tokens: bad id or content", path);
            goto done;
        }
        free(v.tok[id->valueint]);
        if (!(v.tok[id->valueint] = strdup(c->valuestring))) {
            st = sp_err_set(err, SP_ENOMEM, "gguf: out of memory");
            goto done;
        }
        v.type[id->valueint] =
            cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "special")) ? TT_CONTROL : TT_USER;
    }
    int unk_id = -1;
    if (cJSON_IsString(unk)) {
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(vj, unk->valuestring);
        if (cJSON_IsNumber(u) && u->valueint >= 0 && u->valueint < n) {
            unk_id = u->valueint;
            v.type[unk_id] = TT_UNKNOWN;
        }
    }
    n_merges = cJSON_GetArraySize(mj);
    if (!(merges = calloc((size_t)n_merges + 1, sizeof *merges))) {
        st = sp_err_set(err, SP_ENOMEM, "gguf: out of memory");
        goto done;
    }
    {
        int k = 0;
        const cJSON *mi;
        cJSON_ArrayForEach(mi, mj) {
            if ((st = merge_text(mi, path, k, &merges[k], err))) goto done;
            k++;
        }
    }
    if ((st = pad_holes(&v, err))) goto done;
    if (!byte_level) {
        /* SPM scores: −(rank + 1) for the piece a merge makes (the first rank that makes it) */
        piece_map pm;
        if ((st = piece_map_build(&pm, &v, err))) goto done;
        for (int k = n_merges - 1; k >= 0; k--) {
            char *sp = strchr(merges[k], ' ');
            if (!sp) continue;
            char joined[1024];
            int m = snprintf(joined, sizeof joined, "%.*s%s", (int)(sp - merges[k]), merges[k], sp + 1);
            if (m < 0 || (size_t)m >= sizeof joined) continue;
            int id = piece_map_find(&pm, &v, joined);
            if (id >= 0) v.score[id] = -(float)(k + 1);
        }
        free(pm.slot);
    }
    if ((st = sp_gguf_kv_str(g, "tokenizer.ggml.model", byte_level ? "gpt2" : "llama", err)))
        goto done;
    if (byte_level && (st = sp_gguf_kv_str(g, "tokenizer.ggml.pre", pre, err))) goto done;
    if ((st = sp_gguf_kv_arr_str(g, "tokenizer.ggml.tokens", (const char *const *)v.tok,
                                 (size_t)n, err)))
        goto done;
    if (!byte_level &&
        (st = sp_gguf_kv_arr_f32(g, "tokenizer.ggml.scores", v.score, (size_t)n, err)))
        goto done;
    if ((st = sp_gguf_kv_arr_i32(g, "tokenizer.ggml.token_type", v.type, (size_t)n, err)))
        goto done;
    if (byte_level && (st = sp_gguf_kv_arr_str(g, "tokenizer.ggml.merges",
                                               (const char *const *)merges, (size_t)n_merges, err)))
        goto done;
    if (unk_id >= 0 && (st = sp_gguf_kv_u32(g, "tokenizer.ggml.unknown_token_id", (uint32_t)unk_id, err)))
        goto done;
done:
    if (merges)
        for (int k = 0; k < n_merges; k++) free(merges[k]);
    free(merges);
    vocab_free(&v);
    cJSON_Delete(root);
    return st;
}

/* llama2.c tokenizer.bin: i32 max_token_length, then per token f32 score, i32 len, bytes.
 * Its pieces hold ' ' where SentencePiece has '▁'. */
static sp_status from_bin(sp_gguf *g, const char *path, const sp_config *cfg, sp_err *err) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = fopen(path, "rb");
    SP_RETURN_IF(!f, err, SP_EIO, "%s: cannot open", path);
    if (fseek(f, 0, SEEK_END) == 0) {
        long L = ftell(f);
        if (L > 0 && (buf = malloc((size_t)L)) && fseek(f, 0, SEEK_SET) == 0 &&
            fread(buf, 1, (size_t)L, f) == (size_t)L)
            len = (size_t)L;
    }
    fclose(f);
    vocab v = {0};
    sp_status st = vocab_alloc(&v, cfg->vocab_size, err);
    size_t pos = 4;
    for (int i = 0; st == SP_OK && i < v.n; i++) {
        int32_t n;
        if (pos + 8 > len) {
            st = sp_err_set(err, SP_ETRUNC, "%s: token %d: file ends early", path, i);
            break;
        }
        memcpy(&v.score[i], buf + pos, 4);
        memcpy(&n, buf + pos + 4, 4);
        pos += 8;
        if (n < 0 || pos + (size_t)n > len) {
            st = sp_err_set(err, SP_EFORMAT, "%s: token %d: length %d", path, i, n);
            break;
        }
        size_t spaces = 0;
        for (int k = 0; k < n; k++) spaces += buf[pos + (size_t)k] == ' ';
        char *t = malloc((size_t)n + 2 * spaces + 1), *o = t;
        if (!(v.tok[i] = t)) {
            st = sp_err_set(err, SP_ENOMEM, "gguf: out of memory");
            break;
        }
        for (int k = 0; k < n; k++) {
            char c = buf[pos + (size_t)k];
            if (c == ' ') *o++ = (char)0xE2, *o++ = (char)0x96, *o++ = (char)0x81;
            else *o++ = c;
        }
        *o = '\0';
        pos += (size_t)n;
        v.type[i] = i == 0 ? TT_UNKNOWN : (i == 1 || i == 2) ? TT_CONTROL
                    : is_byte_piece(t) ? TT_BYTE : TT_NORMAL;
    }
    free(buf);
    if (st == SP_OK) st = sp_gguf_kv_str(g, "tokenizer.ggml.model", "llama", err);
    if (st == SP_OK)
        st = sp_gguf_kv_arr_str(g, "tokenizer.ggml.tokens", (const char *const *)v.tok,
                                (size_t)v.n, err);
    if (st == SP_OK) st = sp_gguf_kv_arr_f32(g, "tokenizer.ggml.scores", v.score, (size_t)v.n, err);
    if (st == SP_OK) st = sp_gguf_kv_arr_i32(g, "tokenizer.ggml.token_type", v.type, (size_t)v.n, err);
    if (st == SP_OK) st = sp_gguf_kv_u32(g, "tokenizer.ggml.unknown_token_id", 0, err);
    vocab_free(&v);
    return st;
}

sp_status sp_gguf_put_vocab(sp_gguf *g, const char *dir, const sp_config *cfg, sp_err *err) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    sp_status st;
    if (access(p, R_OK) == 0) st = from_json(g, p, cfg, err);
    else {
        snprintf(p, sizeof p, "%s/tokenizer.bin", dir);
        if (access(p, R_OK) != 0) snprintf(p, sizeof p, "%s/tok%d.bin", dir, cfg->vocab_size);
        SP_RETURN_IF(access(p, R_OK) != 0, err, SP_ENOTFOUND,
                     "%s: no tokenizer.json, tokenizer.bin or tok%d.bin to export to GGUF", dir,
                     cfg->vocab_size);
        st = from_bin(g, p, cfg, err);
    }
    SP_FORWARD(st);
    /* BOS as shardpress's (= Hugging Face's) encoder adds it: the post-processor's template or
     * tokenizer_config.json's add_bos_token (Llama 1/2/3 yes, Qwen2/3 and GPT-2 no) */
    sp_tokenizer *t = NULL;
    SP_FORWARD(sp_tokenizer_open_dir(&t, dir, cfg->vocab_size, err));
    int bos = sp_tokenizer_bos(t), eos = sp_tokenizer_eos(t);
    sp_tokenizer_free(t);
    if (bos < 0) bos = -1;
    if (eos < 0) eos = cfg->eos_id;
    int bos_id = bos >= 0 ? bos : cfg->bos_id;
    if (bos_id >= 0) SP_FORWARD(sp_gguf_kv_u32(g, "tokenizer.ggml.bos_token_id", (uint32_t)bos_id, err));
    if (eos >= 0) SP_FORWARD(sp_gguf_kv_u32(g, "tokenizer.ggml.eos_token_id", (uint32_t)eos, err));
    SP_FORWARD(sp_gguf_kv_bool(g, "tokenizer.ggml.add_bos_token", bos >= 0, err));
    return sp_gguf_kv_bool(g, "tokenizer.ggml.add_eos_token", 0, err);
}
