/* sp_seval.h — candidate evaluation for `shardpress search`: the fitness of a genome is the
 * mean KL(dense ‖ candidate) per scored token over a set of calibration windows.
 *
 * Distributed design: windows × candidates are the work items, flattened window-major and
 * split in contiguous blocks over the ranks (sp_mpi_split_range). A rank runs its items layer
 * by layer ("layer-major"): at layer l it holds the hidden states of every item it owns, so
 * it reads layer l of the level database once per candidate that needs it, packed from the
 * container, and dequantizes it into one fp32 block. No rank ever holds more than one block
 * of weights plus the states of its items (chunked to SP_SEVAL_CHUNK_BYTES): the whole model
 * at every level is never in memory, whatever its size.
 *
 * Prefix cache: each evaluation is given the parent genome. A candidate equal to the parent
 * up to layer l−1 starts from the parent's state at the input of layer l, so a candidate
 * whose first change is at layer l costs L − l layer evaluations instead of L. The parent's
 * own states are computed once per window (as far as a candidate needs them, or to the end
 * when the parent is scored too).
 *
 * The dense reference: the calibration text is tokenized once (one BOS) and cut into
 * floor(tokens/ctx) windows (the pool). A window's dense top-K log-probabilities are computed
 * the first time a run draws it (the missing windows of a run split over ranks, then gathered
 * on every rank), never per candidate and never for windows no stage draws.
 *
 * Determinism: each (window, candidate) KL sum is computed the same way on any rank; the sums
 * are gathered in item order and added in window order, so fitness is bitwise identical for
 * any rank count.
 */
#ifndef SP_SEVAL_H
#define SP_SEVAL_H

#include <signal.h>
#include <mpi.h>
#include <stdint.h>

#include "common/sp_error.h"
#include "pipeline/search/sp_sgenome.h"
#include "shards/sp_config.h"

#define SP_SEVAL_CHUNK_BYTES ((size_t)1 << 30)

typedef struct {
    const char *qdir;        /* quantize output (config.json + model.sp.h5 + source.json)   */
    const char *dense_dir;   /* NULL: source.json's model_dir                                */
    const char *calib_path;
    int ctx;                 /* 0: min(2048, max_position_embeddings)                        */
    int topk;                /* K of the dense reference (default 64)                        */
    int group_by;            /* sp_sgroups                                                   */
    int device;              /* SP_DEVICE_* (pipeline/sp_device.h), 0 = auto; not recorded   */
    int gguf_costs;          /* 1: a level costs the bytes `export --format gguf` writes for
                              * it (sp_gguf_level_export_type; search --match-gguf)          */
} sp_seval_opts;

typedef struct sp_seval sp_seval;

/* Work done by one sp_seval_run, summed over ranks (window-layer forwards). */
typedef struct {
    int64_t layer_evals;     /* what one rank runs with the cache: per window Σ_j (L − f_j)
                              * + max_j f_j (the parent's pass), f_j the candidate's first
                              * changed layer; the same on any rank count (--max-evals)      */
    int64_t run_evals;       /* what the ranks ran (ranks sharing a window each run its
                              * parent's pass), summed over ranks                            */
    int64_t full_evals;      /* what full re-runs of every candidate would have run          */
} sp_seval_counts;

/* Collective: open both models, check they match, tokenize the calibration text into the
 * pool, and compute the dense reference. Errors name the file and field.
 * @return SP_EINVAL for a container with fewer than two levels, SP_EFORMAT/SP_EINVAL for a
 *         dense model that does not match (config field or fingerprint). */
sp_status sp_seval_open(sp_seval **out, MPI_Comm comm, const sp_seval_opts *o, sp_err *err);
/* The flag sp_seval_run looks at once per layer of each chunk (common/sp_stop.h; NULL, the
 * default: never stop); raised, the run returns SP_EINTERRUPTED on every rank. The sensitivity
 * pass is one long run (minutes to hours). Local; give every rank the same. */
void sp_seval_set_stop(sp_seval *e, const volatile sig_atomic_t *flag);
void sp_seval_close(sp_seval *e);

const sp_config *sp_seval_config(const sp_seval *e);
const sp_sgenome_space *sp_seval_space(const sp_seval *e);
int sp_seval_ctx(const sp_seval *e);
int sp_seval_pool(const sp_seval *e);              /* windows in the pool                */
const char *sp_seval_dense_dir(const sp_seval *e);
int sp_seval_reference_windows(const sp_seval *e); /* pool windows run through the dense model */
uint32_t sp_seval_dense_fingerprint(const sp_seval *e);
/* HF module name of genome position m ("model.layers.3.mlp.down_proj"). */
void sp_seval_module_name(int m, char *buf, size_t cap);

/* Collective. fitness[j] = mean KL per scored token of cands[j] over windows[0..nw) (pool
 * indices); the parent is the prefix source. counts may be NULL.
 * @return the same status on every rank. */
sp_status sp_seval_run(sp_seval *e, const int *windows, int nw, const uint8_t *parent,
                       const uint8_t *const *cands, int n_cands, double *fitness,
                       sp_seval_counts *counts, sp_err *err);

/* A genome entry that stands for the module's dense weights (the sensitivity pass; never in a
 * map). load_layer copies them from the dense model over the quantized block. */
#define SP_SEVAL_DENSE 0xFF

/* Collective. The ΔKL sensitivity table: table[m·n_levels + k] = mean KL per scored token over
 * windows[0..nw) of the model that is dense except module m at level k. One sp_seval_run with
 * the all-dense genome as parent, so the prefix cache runs only layer(m) onward for each
 * (m, k); the (window, m, k) items are split over ranks as in any run (bitwise the same table
 * on any rank count). */
sp_status sp_seval_sensitivity(sp_seval *e, const int *windows, int nw, double *table,
                               sp_seval_counts *counts, sp_err *err);

#endif
