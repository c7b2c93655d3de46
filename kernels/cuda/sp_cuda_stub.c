/* sp_cuda_stub.c — the sp_cuda.h API for builds without SP_CUDA: nothing is visible, every
 * constructor fails with one clear line, so the CPU build links and runs as before. With
 * SP_CUDA the .cu files of this folder define these functions and this file is empty. */
#include "kernels/cuda/sp_cuda.h"

#include <stdlib.h>

#ifndef SP_HAVE_CUDA

#include "kernels/sp_ops.h"

static sp_status not_built(sp_err *err) {
    return sp_err_set(err, SP_EUNSUPPORTED, "this shardpress was built without CUDA "
                      "(configure with -DSP_CUDA=ON)");
}

int sp_cuda_built(void) { return 0; }
int sp_cuda_device_count(void) { return 0; }

sp_status sp_cuda_open(sp_cuda **out, int ordinal, sp_err *err) {
    (void)ordinal;
    if (out) *out = NULL;
    return not_built(err);
}
void sp_cuda_close(sp_cuda *g) { (void)g; }
void sp_cuda_describe(const sp_cuda *g, char *name, size_t cap, size_t *total, size_t *free_b) {
    (void)g;
    if (name && cap) name[0] = '\0';
    if (total) *total = 0;
    if (free_b) *free_b = 0;
}
sp_status sp_cuda_take_error(sp_cuda *g, sp_err *err) {
    (void)g;
    (void)err;
    return SP_OK;
}
void sp_cuda_linear(sp_cuda *g, float *out, const float *x, const float *w, const float *bias,
                    size_t T, size_t n_in, size_t n_out, int accumulate) {
    (void)g;
    sp_linear_forward(out, x, w, bias, T, n_in, n_out, accumulate);
}
void sp_cuda_cache_weights(sp_cuda *g, int on) {
    (void)g;
    (void)on;
}

sp_status sp_cuda_hacc_new(sp_cuda_hacc **out, sp_cuda *g, int n, int max_rows, double grid,
                           double bound, sp_err *err) {
    (void)g, (void)n, (void)max_rows, (void)grid, (void)bound;
    if (out) *out = NULL;
    return not_built(err);
}
sp_status sp_cuda_hacc_add(sp_cuda_hacc *h, const float *X, int rows, sp_err *err) {
    (void)h, (void)X, (void)rows;
    return not_built(err);
}
sp_status sp_cuda_hacc_download(sp_cuda_hacc *h, int64_t *acc_host, sp_err *err) {
    (void)h, (void)acc_host;
    return not_built(err);
}
void sp_cuda_hacc_free(sp_cuda_hacc *h) { (void)h; }

sp_status sp_cuda_gptq_new(sp_cuda_gptq **out, sp_cuda *g, const sp_cuda_gptq_desc *d,
                           sp_err *err) {
    (void)g, (void)d;
    if (out) *out = NULL;
    return not_built(err);
}
sp_status sp_cuda_gptq_factor(sp_cuda_gptq *q, const float *a, int *ok, sp_err *err) {
    (void)q, (void)a;
    if (ok) *ok = 0;
    return not_built(err);
}
sp_status sp_cuda_gptq_run(sp_cuda_gptq *q, const float *W, int rows, int bits, uint8_t *codes,
                           float *scales, uint8_t *zeros, int n_groups, sp_err *err) {
    (void)q, (void)W, (void)rows, (void)bits, (void)codes, (void)scales, (void)zeros,
        (void)n_groups;
    return not_built(err);
}
void sp_cuda_gptq_free(sp_cuda_gptq *q) { (void)q; }

double sp_cuda_sgemm_rate(sp_cuda *g, int n, int reps) {
    (void)g, (void)n, (void)reps;
    return 0.0;
}

#endif /* !SP_HAVE_CUDA */

/* Shared by both builds: pure functions of the environment and their arguments. */
int sp_cuda_pick(int local_rank, int n_devices) {
    if (n_devices < 1 || local_rank < 0) return 0;
    return local_rank % n_devices;
}

int sp_cuda_env_local_rank(void) {
    static const char *vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID",
                                 "PMI_LOCAL_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (!v || !*v) continue;
        char *end = NULL;
        long r = strtol(v, &end, 10);
        if (*end == '\0' && r >= 0 && r < 1 << 20) return (int)r;
    }
    return -1;
}
