/* sp_tokenize.h — `shardpress tokenize`: the ids (or pieces) a tokenizer gives a text.
 *
 * For debugging calibration / evaluation data and for checking shardpress's tokenizers
 * against other implementations. The input is taken byte for byte (newlines included, no
 * trimming) and encoded in one call, exactly as eval and quantize encode their text files:
 * with the tokenizer's BOS first unless no_bos (a tokenizer without one adds none).
 *
 * Output: one line. Ids are decimal, separated by single spaces. Pieces are the vocabulary
 * strings as the tokenizer file stores them ("▁the", "Ġthe", "<0x0A>"), separated by single
 * spaces, with these escapes so that splitting at ' ' and unescaping gives them back:
 *   '\' -> \\   ' ' -> \s   TAB -> \t   LF -> \n   CR -> \r
 *   any other control byte (00..1F, 7F) and any byte not part of valid UTF-8 -> \xHH
 * Everything else (valid UTF-8, printable) is written as is.
 */
#ifndef SP_TOKENIZE_H
#define SP_TOKENIZE_H

#include <signal.h>
#include <stdio.h>

#include "common/sp_error.h"

typedef struct {
    const char *model_dir;      /* --model: a model directory (or llama2.c .bin), or NULL */
    const char *tokenizer_path; /* --tokenizer: tokenizer.json or tokenizer.bin, or NULL */
    const char *file;           /* --file: the input text, or NULL                       */
    const char *text;           /* the TEXT argument when file is NULL                   */
    int no_bos;                 /* do not add BOS                                         */
    int pieces;                 /* print pieces instead of ids                            */
    const volatile sig_atomic_t *stop_flag; /* raised before printing: print nothing      */
} sp_tokenize_opts;

/* Check o (exactly one of model_dir / tokenizer_path, exactly one of file / text), load the
 * tokenizer, encode the input and write one line to out. Not collective: the caller runs
 * it on one rank. An empty input gives just the BOS (or an empty line with no_bos).
 * @return SP_OK; SP_EINVAL (options), SP_ENOTFOUND / SP_EIO / SP_EFORMAT (files, invalid
 * UTF-8 with its byte offset), SP_EIO when out cannot be written. */
sp_status sp_tokenize_run(const sp_tokenize_opts *o, FILE *out, sp_err *err);

/* Write piece (len bytes) to out with the escapes above. */
void sp_tokenize_write_piece(FILE *out, const char *piece, size_t len);

#endif
