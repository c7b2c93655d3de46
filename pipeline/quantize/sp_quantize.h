/* sp_quantize.h — `shardpress quantize`: GPTQ (or RTN) of every linear layer of a model, block
 * by block, with calibration windows spread over MPI ranks.
 *
 * Per decoder block b (every rank holds block b's weights and its share of the windows X_r):
 *   1. Hessians   forward X_r through the dense block; the inputs of q/k/v, o, gate/up and
 *                 down feed four exact fixed-point accumulators (kernels/sp_hacc.h), reduced
 *                 over ranks: H = 2/N Σ x xᵀ, identical for any rank count.
 *   2. GPTQ       work units (module × level) are scheduled over ranks by cost
 *                 (sp_schedule.h); one factorization per Hessian serves all of a rank's
 *                 units that read it.
 *   3. share      units at --bits are broadcast packed to every rank; other levels go to
 *                 rank 0 only, which writes every level to the container.
 *   4. propagate  X_r ← block_quantized(X_r): the next block calibrates on the outputs of the
 *                 quantized model, as in the reference (sequential quantization).
 * --rotate (issue 23, kernels/sp_rotate.h): the windows' embeddings are rotated (x·Q) and every
 * block is folded and rotated right after it is loaded, before the Hessians, so GPTQ, the
 * container and everything read from it see the rotated model; memory stays one block. The
 * output's embedding and head are rotated when rank 0 writes the container; its config.json
 * records the rotation ("shardpress_rotation") and an explicit lm_head (tie_word_embeddings
 * false).
 * True-sequential (the reference's --true-sequential): steps 1-3 run once per Hessian, in
 * forward order — q/k/v, then o from a forward pass with the quantized q/k/v in place, then
 * gate/up after attention is quantized, then down after gate/up — each stage's --bits layers
 * dequantized into the block before the next stage's forward.
 * Memory per rank: one block in fp32, four Hessians, X_r, and one window's scratch.
 * Output: <out>/ with config.json, tokenizer files and model.sp.h5, built in <out>.partial and
 * renamed at the end, so an interrupted run never leaves a directory that looks complete.
 */
#ifndef SP_QUANTIZE_H
#define SP_QUANTIZE_H

#include <mpi.h>
#include <signal.h>
#include <stdint.h>

#include "common/sp_error.h"

#define SP_QUANTIZE_MAX_LEVELS 7

typedef struct {
    const char *model_dir, *calib_path, *out_dir;
    int bits;                            /* level used to propagate and the default output  */
    int n_levels;                        /* levels stored (bits is always among them)       */
    int levels[SP_QUANTIZE_MAX_LEVELS];  /* ascending, unique, each 2..8 (1: Q1_0 only)    */
    int gtypes[SP_QUANTIZE_MAX_LEVELS];  /* per level: 0 (group_size, sym below), or a GGUF *
                                          * type of sp_gtype_is_level (Q4_1, Q5_1, Q2_K …  *
                                          * Q6_K) whose bits are that level's: quantized in  *
                                          * the type's own format (kernels/sp_gtype.h)       */
    int level_group[SP_QUANTIZE_MAX_LEVELS]; /* per plain level: its own group size (>= 1 or *
                                          * -1; "4g128" in --levels), 0: group_size below   */
    int group_size;                      /* >= 1, or -1 for one group per row               */
    int sym, act_order, rtn;             /* rtn: round-to-nearest instead of GPTQ           */
    int scale_search;                    /* group (s, z): SP_QSEARCH_* (kernels/sp_quant.h) */
    int true_sequential;                 /* 1: one Hessian per stage, see above              */
    double damp;                         /* fraction of mean(diag H) added to the diagonal */
    int block;                           /* GPTQ column block                                */
    int nsamples, ctx;
    uint64_t seed;
    int force;                           /* replace an existing output directory            */
    const char *checkpoint_dir;          /* NULL: no checkpoints                            */
    int checkpoint_every;                /* checkpoint after every B blocks (default 1)     */
    int checkpoint_compress;             /* sp_ckpt_compress (none, gzip, zstd)             */
    int device;                          /* SP_DEVICE_* (pipeline/sp_device.h), 0 = auto;   *
                                          * not recorded in run.json: resume picks again    */
    const char *imatrix_out;             /* NULL, or llama.cpp's imatrix GGUF from diag(H)  */
    int rotate;                          /* SP_ROTATE_* (kernels/sp_rotate.h), 0 = none:    *
                                          * fold the norms and rotate each block as it is   *
                                          * loaded; the output is the rotated model          */
    uint64_t rotate_seed;                /* seed of the rotation's signs / Gaussian         */
    /* Set asynchronously (signal handler) to ask for a checkpoint and a clean stop at the next
     * block boundary; NULL: never. Checked collectively, so every rank stops at the same block. */
    volatile sig_atomic_t *stop_flag;
} sp_quantize_opts;

typedef struct {
    double seconds;
    double t_calib, t_hessian, t_gptq, t_share, t_propagate, t_write;  /* rank 0, summed  */
    double t_rotate;         /* rank 0: building Q, rotating the windows' embeddings and the *
                              * blocks (also counted in t_calib and t_hessian)              */
    double peak_rss_mb_max;
    double *peak_rss_mb;     /* [ranks] (malloc'ed on every rank; free it)                 */
    int ranks;
    int modules;             /* linear modules quantized                                  */
    double mean_rel_error;   /* mean over modules at --bits of tr(ΔW H ΔWᵀ)/tr(W H Wᵀ)     */
    int ctx;                 /* the window length used (the default resolved)              */
    int ctx_defaulted;       /* 1: ctx was not given and is min(2048, max_position_emb.)  */
    int start_layer;         /* first block computed by this run (> 0 after a resume)      */
    int checkpoints;         /* checkpoints written by this run                            */
    double ckpt_blocked_s;   /* main-thread time blocked by checkpoints (max over ranks)   */
    double ckpt_write_s;     /* background write time (max over ranks)                    */
    char warnings[1024];     /* resume: checkpoints skipped as corrupt, one line each      */
} sp_quantize_result;

/* Fill o with the defaults (bits 4, group 128, asym, damp 0.01, block 128, 128 windows of
 * ctx 0 = min(2048, max_position_embeddings), resolved by sp_quantize_run; act-order, scale
 * search hmse, not true-sequential). hmse needs GPTQ: a caller that sets rtn picks another
 * scale search (the CLI uses minmax). */
void sp_quantize_defaults(sp_quantize_opts *o);

/* The group size, sym and GGUF type (0 for none) of the level of `bits` in o for a module of
 * `cols` columns. A module whose columns the level's type does not divide into blocks gets a
 * plain level instead (o->group_size, o->sym), as llama.cpp falls back to another type for
 * such tensors; export --format gguf then writes its exact values as F32. */
void sp_quantize_level(const sp_quantize_opts *o, int bits, int cols, int *group_size, int *sym,
                       int *gtype);

/* Collective over comm. @return the same status on every rank; SP_EINTERRUPTED when
 * *stop_flag was raised (after writing a checkpoint when checkpoint_dir is set). */
sp_status sp_quantize_run(MPI_Comm comm, const sp_quantize_opts *o, sp_quantize_result *res,
                          sp_err *err);

/* Collective: continue the run whose checkpoint directory is dir, from its newest checkpoint
 * that verifies (or from the start if it has none), on any number of ranks. The options come
 * from dir/run.json; the model and calibration fingerprints must still match. The output is
 * byte-identical to an uninterrupted run. stop_flag as in sp_quantize_opts. */
sp_status sp_quantize_resume(MPI_Comm comm, const char *dir, volatile sig_atomic_t *stop_flag,
                             sp_quantize_result *res, sp_err *err);

#endif
