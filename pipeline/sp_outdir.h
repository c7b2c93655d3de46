/* sp_outdir.h — output directories that never look complete before they are.
 *
 * A job writes into "<out>.partial/" and, only after every file is closed and synced, renames
 * it to "<out>". A leftover ".partial" from a killed run is removed when the next run starts.
 * An existing <out> is refused unless force is set; with force it is replaced only at commit
 * (moved aside, the new one renamed in, the old one deleted), so a failed run with --force
 * still leaves the previous output intact. Rank 0 only; not collective.
 */
#ifndef SP_OUTDIR_H
#define SP_OUTDIR_H

#include <stddef.h>

#include "common/sp_error.h"

/* Check <out> (SP_EEXIST without force), clear a stale "<out>.partial", create it.
 * partial receives "<out>.partial". */
sp_status sp_outdir_begin(const char *out, int force, char *partial, size_t cap, sp_err *err);

/* Rename "<out>.partial" to <out> (replacing <out> when force). */
sp_status sp_outdir_commit(const char *out, int force, sp_err *err);

/* Remove "<out>.partial" after a failure (best effort). */
void sp_outdir_abort(const char *out);

/* Copy file src to dst (dst is created; fails if it exists). */
sp_status sp_outdir_copy_file(const char *src, const char *dst, sp_err *err);

/* Copy the tokenizer files found in model_dir (tokenizer.json, tokenizer_config.json,
 * special_tokens_map.json, tokenizer.model, tokenizer.bin, tok*.bin) into dst_dir; a model given
 * as a llama2.c .bin file has its tokenizer next to it. At least one tokenizer must exist. */
sp_status sp_outdir_copy_tokenizer(const char *model_dir, const char *dst_dir, sp_err *err);

/* Make sure dir is a directory this process can write, creating it and its parents (mode
 * 0755) when missing. what names it in the message ("checkpoint directory"). A failure names
 * the real cause and the path where it happened: "<path>: cannot create <what>: Permission
 * denied", "<dir>: <what> is not writable: Read-only file system", "<dir>: <what> is not a
 * directory". Not collective. */
sp_status sp_outdir_mkdirs(const char *dir, const char *what, sp_err *err);

/* Remove a directory tree (best effort; used for stale partial outputs). */
void sp_outdir_rmtree(const char *path);

#endif
