/* sp_qrun.h — what a quantize run is, written down so that `shardpress resume` can continue it:
 * the options (as JSON) and fingerprints of its inputs.
 *
 * run.json in the checkpoint directory is written once when a checkpointed run starts (rank 0,
 * tmp + fsync + rename) and copied into every checkpoint as the attribute "run". Resume reads
 * it, recomputes the fingerprints, and refuses to continue when the model or the calibration
 * text changed.
 *
 * Fingerprints are CRC32s, cheap on a 70B model: the model's is taken over config.json, and for
 * every weight file its name, size and header (safetensors: the 8-byte length + JSON header;
 * llama2.c: the whole file, which is small, or its size + first and last MiB when large). The
 * calibration fingerprint covers the whole text.
 */
#ifndef SP_QRUN_H
#define SP_QRUN_H

#include <stddef.h>
#include <stdint.h>

#include "common/sp_error.h"
#include "pipeline/quantize/sp_quantize.h"

/* Paths in o are made absolute (so resume works from any directory); strings live in *store,
 * which the caller frees with sp_qrun_free_strings. */
typedef struct {
    char *model_dir, *calib_path, *out_dir, *checkpoint_dir;
    char *imatrix_out; /* NULL when the run has no --imatrix-out */
} sp_qrun_strings;

/* Serialise opts + fingerprints into a JSON object text (malloc'ed). */
sp_status sp_qrun_to_json(const sp_quantize_opts *o, uint32_t model_fp, uint32_t calib_fp,
                          char **json, sp_err *err);

/* Parse JSON written by sp_qrun_to_json into o (its strings point into *s). */
sp_status sp_qrun_from_json(const char *json, const char *what, sp_quantize_opts *o,
                            sp_qrun_strings *s, uint32_t *model_fp, uint32_t *calib_fp,
                            sp_err *err);
void sp_qrun_free_strings(sp_qrun_strings *s);

/* Fingerprints (see the header comment). */
sp_status sp_qrun_model_fingerprint(const char *model_path, uint32_t *fp, sp_err *err);
sp_status sp_qrun_file_fingerprint(const char *path, uint32_t *fp, sp_err *err);

/* Read a small whole file (run.json). */
sp_status sp_qrun_read_file(const char *path, char **text, sp_err *err);
/* Write a small file atomically (tmp + fsync + rename). */
sp_status sp_qrun_write_file(const char *path, const char *text, sp_err *err);

#endif
