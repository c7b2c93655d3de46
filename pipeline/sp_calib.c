/* sp_calib.c — see sp_calib.h. */
#include "pipeline/sp_calib.h"

#include <stdlib.h>
#include <string.h>

#include "mpi/sp_mpi.h"
#include "shards/tok/sp_tokenizer.h"

static uint64_t xorshift64s(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static sp_status draw_windows(const sp_model *m, const char *path, int nsamples, int ctx,
                              uint64_t seed, int32_t *out, int64_t *n_text, sp_err *err) {
    char *text = NULL;
    size_t len = 0, n = 0;
    int32_t *ids = NULL;
    sp_tokenizer *tok = NULL;
    SP_FORWARD(sp_text_read_file(path, &text, &len, err));
    sp_status st = sp_tokenizer_open_dir(&tok, sp_model_dir(m), sp_model_config(m)->vocab_size, err);
    if (st == SP_OK) st = sp_tokenizer_encode(tok, text, len, 1, &ids, &n, err);
    if (st == SP_OK && n < (size_t)ctx)
        st = sp_err_set(err, SP_EINVAL, "%s: calibration text has %zu tokens, shorter than one "
                        "window of --ctx %d", path, n, ctx);
    if (st == SP_OK) {
        uint64_t rng = seed * 0x9E3779B97F4A7C15ull + 0x1234567ull;
        if (!rng) rng = 1;
        uint64_t span = (uint64_t)(n - (size_t)ctx) + 1; /* offsets 0 .. n − ctx */
        for (int s = 0; s < nsamples; s++) {
            uint64_t i = xorshift64s(&rng) % span;
            memcpy(out + (size_t)s * ctx, ids + i, (size_t)ctx * sizeof *out);
        }
        *n_text = (int64_t)n;
    }
    free(ids);
    free(text);
    sp_tokenizer_free(tok);
    return st;
}

sp_status sp_calib_windows(MPI_Comm comm, const sp_model *m, const char *path, int nsamples,
                           int ctx, uint64_t seed, int32_t **ids, int64_t *text_tokens,
                           sp_err *err) {
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    size_t count = (size_t)nsamples * (size_t)ctx;
    int64_t n_text = 0;
    *ids = sp_malloc(count * sizeof **ids, err, "calibration windows");
    sp_status st = *ids ? SP_OK : SP_ENOMEM;
    if (st == SP_OK && rank == 0) st = draw_windows(m, path, nsamples, ctx, seed, *ids, &n_text, err);
    st = sp_mpi_agree(comm, st, err);
    if (st == SP_OK)
        st = sp_mpi_bcast_large(comm, *ids, count, MPI_INT32_T, sizeof **ids,
                                "MPI_Bcast(calibration)", err);
    if (st == SP_OK) MPI_Bcast(&n_text, 1, MPI_INT64_T, 0, comm);
    if (st) {
        free(*ids);
        *ids = NULL;
    }
    if (text_tokens) *text_tokens = n_text;
    return st;
}
