/* sp_logits.h — the reference-logits file written by `eval --save-logits` and read by
 * `eval --kl-base`: per scored position, the reference model's top-K log-probabilities, their
 * token ids, and the log of the probability mass outside them.
 *
 * Layout (little-endian; docs/formats.md):
 *   header (64 bytes)  magic "SPLOGIT1", u32 version=1, u32 topk, u32 ctx, u32 n_windows,
 *                      u32 vocab, u32 record_bytes, u64 tokens_hash (FNV-1a of the scored
 *                      windows' token ids), u64 n_records, 16 reserved zero bytes
 *   records            n_records = n_windows·(ctx−1), window-major, position-minor:
 *                      f32 top_lp[K], i32 top_id[K], f32 rest_lp        (8K+4 bytes)
 *
 * The file is written collectively with MPI-IO (each rank writes the records of its windows at
 * their offsets) under "<path>.tmp", and renamed by rank 0 only after every rank succeeded,
 * so a partial file never looks complete.
 */
#ifndef SP_LOGITS_H
#define SP_LOGITS_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "common/sp_error.h"

typedef struct {
    uint32_t topk, ctx, n_windows, vocab;
    uint64_t tokens_hash;
} sp_logits_meta;

/* Bytes of one record for top-K. */
size_t sp_logits_record_bytes(uint32_t topk);

/* FNV-1a 64 over n int32 ids (little-endian bytes). */
uint64_t sp_logits_hash_ids(const int32_t *ids, size_t n);

/* Collective. Rank r passes the records of windows [w0, w1) (its sp_mpi_split_range block),
 * packed back to back. @return SP_OK on every rank, or the same error on every rank. */
sp_status sp_logits_write(MPI_Comm comm, const char *path, const sp_logits_meta *meta, size_t w0,
                          size_t w1, const void *records, sp_err *err);

/* Read records of windows [w0, w1) into records (caller-allocated). The header must match
 * `expect` in ctx, n_windows, vocab and tokens_hash; *topk_out receives the file's K.
 * Call first with records == NULL to validate and learn K. Errors name the file and field. */
sp_status sp_logits_read(const char *path, const sp_logits_meta *expect, size_t w0, size_t w1,
                         void *records, uint32_t *topk_out, sp_err *err);

#endif
