/* sp_calib.h — calibration windows for quantization.
 *
 * As in the reference GPTQ code: the calibration text is tokenized once (one BOS at the start)
 * and nsamples windows of ctx tokens are cut at random offsets i ∈ [0, N − ctx], drawn from a
 * xorshift64* generator seeded with --seed, so the windows depend only on (text, tokenizer,
 * nsamples, ctx, seed) and never on the rank count.
 */
#ifndef SP_CALIB_H
#define SP_CALIB_H

#include <mpi.h>
#include <stdint.h>

#include "common/sp_error.h"
#include "shards/sp_model.h"

/* Collective. Rank 0 reads + tokenizes path with the model's tokenizer and draws the windows;
 * every rank receives all of them: *ids [nsamples, ctx] (malloc'ed; free it).
 * *text_tokens (may be NULL) gets the token count of the whole text.
 * @return the same status on every rank; SP_EINVAL names the file when it is shorter than
 *         one window. */
sp_status sp_calib_windows(MPI_Comm comm, const sp_model *m, const char *path, int nsamples,
                           int ctx, uint64_t seed, int32_t **ids, int64_t *text_tokens,
                           sp_err *err);

#endif
