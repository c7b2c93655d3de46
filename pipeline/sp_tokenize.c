/* sp_tokenize.c — `shardpress tokenize` (see sp_tokenize.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pipeline/sp_tokenize.h"
#include "common/sp_stop.h"
#include "shards/sp_model.h"
#include "shards/tok/sp_tokenizer.h"

void sp_tokenize_write_piece(FILE *out, const char *piece, size_t len) {
    static const char hex[] = "0123456789ABCDEF";
    size_t i = 0;
    while (i < len) {
        size_t ok = sp_text_utf8_valid_len(piece + i, len - i);
        for (size_t k = i; k < i + ok; k++) {
            unsigned char c = (unsigned char)piece[k];
            switch (c) {
            case '\\': fputs("\\\\", out); break;
            case ' ': fputs("\\s", out); break;
            case '\t': fputs("\\t", out); break;
            case '\n': fputs("\\n", out); break;
            case '\r': fputs("\\r", out); break;
            default:
                if (c < 0x20 || c == 0x7f)
                    fprintf(out, "\\x%c%c", hex[c >> 4], hex[c & 15]);
                else
                    fputc(c, out);
            }
        }
        i += ok;
        if (i < len) { /* one byte that starts no valid sequence: escape it, go on after it */
            unsigned char c = (unsigned char)piece[i++];
            fprintf(out, "\\x%c%c", hex[c >> 4], hex[c & 15]);
        }
    }
}

/* The input text: the file's bytes (checked UTF-8), or a copy of the TEXT argument after the
 * same check. An empty regular file is an empty text here, not an error as it is for eval:
 * tokenizing "" is a fair question to ask a tokenizer. */
static sp_status read_input(const sp_tokenize_opts *o, char **text, size_t *len, sp_err *err) {
    if (o->file) {
        struct stat sb;
        if (stat(o->file, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size == 0) {
            *text = calloc(1, 1);
            *len = 0;
            return *text ? SP_OK : sp_err_set(err, SP_ENOMEM, "tokenize: out of memory");
        }
        return sp_text_read_file(o->file, text, len, err);
    }
    size_t n = strlen(o->text);
    size_t bad = sp_text_utf8_valid_len(o->text, n);
    SP_RETURN_IF(bad < n, err, SP_EFORMAT, "tokenize: TEXT is not valid UTF-8 at byte offset %zu "
                 "(byte 0x%02X)", bad, (unsigned)(unsigned char)o->text[bad]);
    *text = sp_malloc(n + 1, err, "tokenize text");
    if (!*text) return SP_ENOMEM;
    memcpy(*text, o->text, n + 1);
    *len = n;
    return SP_OK;
}

/* --model opens the model (headers only) so that the tokenizer is found as eval finds it,
 * with the model's vocab_size; --tokenizer loads the file with vocab_size 0, which makes a
 * tokenizer.bin count its own records. */
static sp_status open_tokenizer(const sp_tokenize_opts *o, sp_tokenizer **tok, sp_err *err) {
    if (o->tokenizer_path) return sp_tokenizer_load(tok, o->tokenizer_path, 0, err);
    sp_model *m = NULL;
    SP_FORWARD(sp_model_open(&m, o->model_dir, err));
    sp_status st = sp_tokenizer_open_dir(tok, sp_model_dir(m), sp_model_config(m)->vocab_size, err);
    sp_model_close(m);
    return st;
}

sp_status sp_tokenize_run(const sp_tokenize_opts *o, FILE *out, sp_err *err) {
    SP_RETURN_IF(!o || !out, err, SP_EINVAL, "sp_tokenize_run: NULL argument");
    SP_RETURN_IF(o->model_dir && o->tokenizer_path, err, SP_EINVAL,
                 "tokenize: give --model or --tokenizer, not both");
    SP_RETURN_IF(!o->model_dir && !o->tokenizer_path, err, SP_EINVAL,
                 "tokenize: --model DIR or --tokenizer FILE is required");
    SP_RETURN_IF(o->file && o->text, err, SP_EINVAL,
                 "tokenize: give --file or TEXT, not both");
    SP_RETURN_IF(!o->file && !o->text, err, SP_EINVAL,
                 "tokenize: --file FILE or a TEXT argument is required");
    char *text = NULL;
    size_t len = 0;
    int32_t *ids = NULL;
    size_t n = 0;
    sp_tokenizer *tok = NULL;
    /* the input first: a bad input file is reported before a slow tokenizer load */
    sp_status st = read_input(o, &text, &len, err);
    if (st == SP_OK) st = open_tokenizer(o, &tok, err);
    if (st == SP_OK) st = sp_tokenizer_encode(tok, text, len, !o->no_bos, &ids, &n, err);
    /* a signal during the (possibly long) encode: stop before the first byte of output */
    if (st == SP_OK) st = sp_stop_check(o->stop_flag, "tokenize", err);
    for (size_t i = 0; i < n && st == SP_OK; i++) {
        if (i) fputc(' ', out);
        if (!o->pieces) {
            fprintf(out, "%d", (int)ids[i]);
            continue;
        }
        const char *p = sp_tokenizer_piece(tok, ids[i]);
        if (!p) /* encode only yields ids of the vocabulary: a bug if not */
            st = sp_err_set(err, SP_EINTERNAL, "tokenize: id %d has no piece", (int)ids[i]);
        else
            sp_tokenize_write_piece(out, p, strlen(p));
    }
    if (st == SP_OK) {
        fputc('\n', out);
        if (fflush(out) != 0 || ferror(out))
            st = sp_err_set(err, SP_EIO, "tokenize: cannot write the output: %s", strerror(errno));
    }
    free(ids);
    sp_tokenizer_free(tok);
    free(text);
    return st;
}
