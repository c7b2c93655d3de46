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

#include <cjson/cJSON.h>
#include <mpi.h>

#include "common/sp_error.h"
#include "pipeline/quantize/sp_quantize.h"
#include "shards/sp_model.h"

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

/* ---- weight CRCs (issue 21) -------------------------------------------------------------
 * The layout fingerprint above misses changed values (a fine-tune has its base's headers). So a
 * quantize run also records the CRC-32 of every tensor it uses, of the fp32 values as read
 * (shards/sp_model.h): the globals (embed_tokens, norm, lm_head unless tied) when it starts, each
 * block's tensors as the block is loaded. A checkpoint holds them ("global_crc" [3],
 * "weight_crc" [blocks done, SP_BLOCK_TENSORS]); resume re-reads the globals and the blocks
 * already done and refuses a changed tensor by name before anything is written. source.json
 * holds them all ("weights_crc": {name: crc}) so `search` can refuse a dense model whose values
 * differ from the one the container was made from. Arrays: g[SP_GLOBAL_TENSORS],
 * blk[layer·SP_BLOCK_TENSORS + i], unused slots 0. */

/* Rank-local: the CRCs of m's global tensors. */
sp_status sp_qrun_global_crcs(const sp_model *m, int64_t g[SP_GLOBAL_TENSORS], sp_err *err);

/* Collective over comm: re-read m's globals (rank 0, when g != NULL) and blocks [0, n_blocks)
 * (block l on rank l mod size, into buf, allocated by sp_block_weights_alloc) and compare with
 * g / blk. A difference: SP_EINVAL, "DIR: tensor 'NAME' <how> (CRC-32 0x.., expected 0x..)"
 * with how = e.g. "changed since the run started; refusing to resume". */
sp_status sp_qrun_verify_weights(MPI_Comm comm, const sp_model *m, const char *dir,
                                 const int64_t *g, const int64_t *blk, int n_blocks,
                                 sp_block_weights *buf, const char *how, sp_err *err);

/* The "weights_crc" object of source.json: {name: crc, ...} for g and every block of blk. */
cJSON *sp_qrun_weights_json(const sp_config *c, const int64_t *g, const int64_t *blk);

/* Collective: qdir/source.json's "weights_crc" (when it has one) against dense model m (opened
 * from dir) — every tensor read once, spread over the ranks. */
sp_status sp_qrun_verify_source(MPI_Comm comm, const sp_model *m, const char *dir,
                                const char *qdir, sp_err *err);

/* Read a small whole file (run.json). */
sp_status sp_qrun_read_file(const char *path, char **text, sp_err *err);
/* Write a small file atomically (tmp + fsync + rename). */
sp_status sp_qrun_write_file(const char *path, const char *text, sp_err *err);

#endif
