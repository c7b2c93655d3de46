/* sp_tokenizer.c — public front end of the tokenizer module (see sp_tokenizer.h).
 *
 * Load reads the whole file, picks the loader by content (a JSON object starts with '{'),
 * and frees everything on failure. Encode splits out added tokens (tokenizer.json only) and
 * encodes each remaining segment; decode drops special ids and runs the decoder chain.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "shards/tok/sp_tok_internal.h"

sp_status sp_tok_read_file(const char *path, char **data, size_t *size, sp_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return sp_err_set(err, errno == ENOENT ? SP_ENOTFOUND : SP_EIO, "%s: cannot open: %s",
                          path, strerror(errno));
    sp_status st = SP_OK;
    char *buf = NULL;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = sp_err_set(err, SP_EIO, "%s: not a regular file", path);
        goto done;
    }
    size_t n = (size_t)sb.st_size;
    buf = sp_malloc(n + 1, err, path);
    if (!buf) {
        st = SP_ENOMEM;
        goto done;
    }
    if (n && fread(buf, 1, n, f) != n) {
        st = sp_err_set(err, SP_EIO, "%s: read failed: %s", path, strerror(errno));
        goto done;
    }
    buf[n] = '\0';
    *data = buf;
    *size = n;
    buf = NULL;
done:
    free(buf);
    fclose(f);
    return st;
}

void sp_tokenizer_free(sp_tokenizer *t) {
    if (!t) return;
    free(t->path);
    free(t->blob);
    free(t->off);
    free(t->len);
    free(t->has);
    free(t->special);
    sp_tok_strmap_free(&t->vocab);
    sp_tok_pairmap_free(&t->merges);
    free(t->added);
    for (size_t k = 0; k < t->n_norm; k++) {
        free(t->norm[k].a);
        free(t->norm[k].b);
    }
    free(t->norm);
    for (size_t k = 0; k < t->n_pre; k++) {
        pcre2_code_free(t->pre[k].re);
        free(t->pre[k].replacement);
    }
    free(t->pre);
    for (size_t k = 0; k < t->n_dec; k++) {
        free(t->dec[k].a);
        free(t->dec[k].b);
    }
    free(t->dec);
    free(t);
}

sp_status sp_tokenizer_load(sp_tokenizer **out, const char *path, int vocab_size, sp_err *err) {
    SP_RETURN_IF(!out || !path, err, SP_EINVAL, "sp_tokenizer_load: NULL argument");
    SP_RETURN_IF(vocab_size < 0, err, SP_EINVAL, "%s: vocab_size %d is negative", path,
                 vocab_size);
    *out = NULL;
    char *data = NULL;
    size_t size = 0;
    SP_FORWARD(sp_tok_read_file(path, &data, &size, err));
    sp_status st = SP_OK;
    sp_tokenizer *t = sp_calloc(1, sizeof *t, err, "tokenizer");
    if (!t || !(t->path = sp_malloc(strlen(path) + 1, err, "tokenizer path"))) {
        st = SP_ENOMEM;
        goto done;
    }
    strcpy(t->path, path);
    t->bos = t->eos = t->unk = -1;
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    size_t i = 0;
    while (i < size && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r'))
        i++;
    if (i < size && data[i] == '{')
        st = sp_tok_load_json(t, data, size, vocab_size, err);
    else
        st = sp_tok_load_llama2c(t, data, size, vocab_size, err);
done:
    free(data);
    if (st != SP_OK) {
        sp_tokenizer_free(t);
        return st;
    }
    *out = t;
    return SP_OK;
}

static int is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

sp_status sp_tokenizer_open_dir(sp_tokenizer **out, const char *dir, int vocab_size,
                                sp_err *err) {
    SP_RETURN_IF(!out || !dir, err, SP_EINVAL, "sp_tokenizer_open_dir: NULL argument");
    *out = NULL;
    /* a model file (stories260K.bin): look beside it */
    size_t dl = strlen(dir);
    if (is_file(dir)) {
        const char *slash = strrchr(dir, '/');
        dl = slash ? (size_t)(slash - dir) : 0;
    }
    char names[3][32] = {"tokenizer.json", "tokenizer.bin", ""};
    if (vocab_size > 0) snprintf(names[2], sizeof names[2], "tok%d.bin", vocab_size);
    char *p = sp_malloc(dl + 40, err, "tokenizer path");
    if (!p) return SP_ENOMEM;
    sp_status st = SP_ENOTFOUND;
    for (int k = 0; k < 3 && st == SP_ENOTFOUND; k++) {
        if (!names[k][0]) continue;
        size_t at = 0, nl = strlen(names[k]);
        memcpy(p, dir, dl);
        at = dl;
        if (dl || dir[0] == '/') p[at++] = '/'; /* "" (a file in .) or "/" (a file in /) */
        memcpy(p + at, names[k], nl + 1);
        if (is_file(p)) st = sp_tokenizer_load(out, p, vocab_size, err);
    }
    free(p);
    if (st == SP_ENOTFOUND && !*out)
        sp_err_set(err, SP_ENOTFOUND, "%.*s: no tokenizer.json, tokenizer.bin or tok%d.bin",
                   (int)(dl ? dl : strlen(dir)), dir, vocab_size);
    return st;
}

int sp_tokenizer_vocab_size(const sp_tokenizer *t) { return t ? t->n_vocab : 0; }
int sp_tokenizer_bos(const sp_tokenizer *t) { return t ? t->bos : -1; }
int sp_tokenizer_eos(const sp_tokenizer *t) { return t ? t->eos : -1; }

const char *sp_tokenizer_piece(const sp_tokenizer *t, int32_t id) {
    if (!t || id < 0 || id >= t->n_vocab || !t->has[id]) return NULL;
    return t->blob + t->off[id];
}

static sp_status encode_json(const sp_tokenizer *t, const char *text, size_t len,
                             sp_tok_bpe_scratch *s, sp_tok_ids *out, sp_err *err) {
    sp_tok_segments segs = {0};
    sp_status st = sp_tok_split_added(t, text, len, &segs, err);
    for (size_t k = 0; k < segs.n && st == SP_OK; k++) {
        const sp_tok_segment *g = &segs.v[k];
        if (g->id >= 0)
            st = sp_tok_ids_push(out, g->id, err);
        else
            st = sp_tok_encode_segment(t, g->p, g->len, g->p == text, s, out, err);
    }
    free(segs.v);
    return st;
}

sp_status sp_tokenizer_encode(const sp_tokenizer *t, const char *text, size_t len, int add_bos,
                              int32_t **ids, size_t *n, sp_err *err) {
    SP_RETURN_IF(!t || !ids || !n || (!text && len), err, SP_EINVAL,
                 "sp_tokenizer_encode: NULL argument");
    sp_tok_ids out = {0};
    sp_tok_bpe_scratch s = {0};
    sp_status st = SP_OK;
    /* a tokenizer without BOS (GPT-2, Qwen2) adds none, as Hugging Face does */
    if (add_bos && t->bos >= 0) st = sp_tok_ids_push(&out, t->bos, err);
    if (st == SP_OK && t->source == SP_TOK_JSON)
        st = encode_json(t, text, len, &s, &out, err);
    else if (st == SP_OK)
        st = sp_tok_encode_llama2c(t, text, len, &s, &out, err);
    if (st == SP_OK && !out.v && !(out.v = sp_malloc(sizeof *out.v, err, "token ids")))
        st = SP_ENOMEM;
    sp_tok_bpe_scratch_free(&s);
    if (st != SP_OK) {
        free(out.v);
        return st;
    }
    *ids = out.v;
    *n = out.n;
    return SP_OK;
}

sp_status sp_tokenizer_decode(const sp_tokenizer *t, const int32_t *ids, size_t n, char **out,
                              size_t *out_len, sp_err *err) {
    SP_RETURN_IF(!t || !out || (!ids && n), err, SP_EINVAL,
                 "sp_tokenizer_decode: NULL argument");
    int32_t *keep = sp_malloc((n ? n : 1) * sizeof *keep, err, "decode ids");
    if (!keep) return SP_ENOMEM;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_vocab || !t->has[id]) {
            free(keep);
            return sp_err_set(err, SP_EINVAL, "%s: cannot decode id %d at position %zu (vocabulary "
                              "has %d ids)", t->path, (int)id, i, t->n_vocab);
        }
        if (!t->special[id]) keep[m++] = id;
    }
    size_t len = 0;
    sp_status st = sp_tok_run_decoder(t, keep, m, out, &len, err);
    free(keep);
    if (st == SP_OK && out_len) *out_len = len;
    return st;
}
