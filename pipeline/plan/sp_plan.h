/* sp_plan.h — `shardpress plan`: predict the peak memory per rank and the time per phase of
 * `shardpress quantize` before running it, from the model's headers alone.
 *
 * Shape legend (as in kernels/sp_forward.h): D hidden, F intermediate, Hq/Hkv heads, hd head
 * dim, q = Hq·hd, kv = Hkv·hd, V vocabulary, L layers; S calibration windows of T tokens, R
 * ranks, nw = ceil(S/R) windows on the busiest rank; n the input size of a Hessian (D, q, D, F
 * for q/k/v, o, gate/up, down).
 *
 * Memory is predicted by replaying, per rank, the allocations quantize makes (pipeline/
 * sp_quantize.c and the kernels it calls), in their order, and keeping the running maximum:
 *   token ids     S·T·4 (every rank holds all windows' ids)
 *   states X_r    nw·T·D·4, plus one window copy T·D·4
 *   scratch       sp_block_scratch for T tokens (only the touched part of the T×T scores)
 *   weights       one block in fp32 (propagate overwrites the matrices with their --bits
 *                 dequantization in place)
 *   Hessians      4 × (n(n+1)/2·8 packed accumulator + T·n·8 window copy + n·512·8 panel),
 *                 kernels/sp_hacc.h; then, one at a time, each Hessian the rank uses is
 *                 expanded to a full n²·8 double H (its accumulator freed after), the others
 *                 dropped; the H's live through the GPTQ phase
 *   GPTQ          per Hessian the rank factors: n²·4 (F32 Cholesky factor, kept for the whole
 *                 GPTQ phase of the block); per unit, for a chunk of min(rows, 1024) rows:
 *                 (n + 256)·4 + n bytes per row (+ group parameters, lazy-batch snapshot), then
 *                 the layer error's dequantized copy rows·n·4 and 2 × 32 MiB of dgemm rows
 *   quantized     one sp_qlayer per unit held (rows·cols + groups·5 bytes): a rank's own units
 *                 (every level) until they are shared, then the --bits ones of the block;
 *                 rank 0 streams the other levels into the block's segment one at a time
 *   output        rank 0, at the end: one dense tensor in fp32 (the embedding, V·D·4), or one
 *                 block's segment read back with its layers unpacked; HDF5's state
 *   MPI           the temporary of an in-place MPI_Allreduce of a Hessian: half of a piece of
 *                 at most 1 GiB (measured for Open MPI 4.1.4); packed layers while shared
 *   checkpoint    the engine's I/O thread, HDF5 and MPI-IO state; the checkpoints reference
 *                 X_r instead of copying it
 * plus the process baseline (MPI, OpenBLAS, libraries; measured by --calibrate).
 *
 * RSS versus heap: quantize reads weights through read-only file mappings, and the pages it
 * touches (every block on every rank, the embedding on rank 0) stay in its RSS as page cache.
 * They are reclaimable, so they are not counted against --mem-per-rank, but they are part of
 * the peak RSS quantize reports; the plan predicts both.
 *
 * Time per phase (the names of `quantize --json`'s phase_seconds), from rates:
 *   hessian    read the block (bytes / read rate) + dense forward of nw windows (sgemm) +
 *              Σ_h T·n·(n + 512) flops (dgemm) + n²/2 roundings per window (round_ns) +
 *              ring all-reduce of the 4 packed Hessians (2·n²/2·8·(R−1)/R bytes / network
 *              rate) + the expansion of the used ones (n²/2 entries at round_ns)
 *   gptq       per rank, for the units the scheduler (pipeline/quantize/sp_schedule.h) gives it: n³/3 per
 *              factorization + rows·n·(n−1) flops (sgemm) + 4·rows·n² (dgemm, the relative
 *              layer error) + 4 roundings per weight; the phase lasts as long as the busiest
 *              rank
 *   share      broadcast / send of the packed layers (network rate)
 *   propagate  forward of nw windows through the quantized block (sgemm)
 *   write      the packed layers and dense tensors at the disk write rate
 *
 * Thread-safety: every function is reentrant; sp_plan_rates_calibrate runs BLAS with the
 * calling thread's OpenBLAS settings. Nothing here is collective.
 */
#ifndef SP_PLAN_H
#define SP_PLAN_H

#include <mpi.h>

#include "common/sp_error.h"
#include "shards/sp_config.h"
#include "shards/sp_model.h"

#define SP_PLAN_MAX_LEVELS 7

/* ---- the model, from its headers ----------------------------------------------------- */

typedef struct {
    sp_config cfg;
    char format[16];       /* "safetensors" or "llama2c"                                  */
    sp_dtype dtype;        /* storage dtype of the decoder-block matrices                 */
    int n_files;           /* weight files                                                */
    double file_bytes;     /* all weight files' tensor bytes                              */
    double block_bytes;    /* the largest decoder block, as stored                        */
    double embed_bytes;    /* model.embed_tokens.weight, as stored                        */
    double head_bytes;     /* lm_head.weight, as stored; 0 when tied                      */
} sp_plan_model;

/* Read config.json and the safetensors headers (single file or sharded index) of the model
 * at path, or the 28-byte header of a llama2.c .bin (path = the file, or a directory holding
 * one). Tensor data is never read. Every tensor a Llama block needs must be present.
 * @return SP_OK; the errors of sp_config_load_json / sp_st_set_open_dir (naming the file and
 *         field); SP_ENOTFOUND (a missing tensor, named); SP_EFORMAT (a bad llama2.c header). */
sp_status sp_plan_model_read(sp_plan_model *m, const char *path, sp_err *err);

/* A model with no files: sizes derived from cfg with every tensor stored as dt. */
void sp_plan_model_from_config(sp_plan_model *m, const sp_config *cfg, sp_dtype dt);

/* ---- what would be run ------------------------------------------------------------- */

typedef struct {
    int ranks;                          /* R >= 1                                          */
    int nsamples, ctx;                  /* S, T                                            */
    int bits;                           /* 2..8, one of levels                             */
    int n_levels;
    int levels[SP_PLAN_MAX_LEVELS];     /* ascending, unique, 2..8                          */
    int group_size;                     /* >= 1, or -1: one group per row                  */
    int block;                          /* GPTQ lazy-batch block                           */
    int act_order;                      /* quantize --act-order: static groups             */
    int true_sequential;                /* quantize --true-sequential: one Hessian a stage */
    int hmse;                           /* --scale-search hmse (GPTQ keeps diag(H))        */
    int checkpoint_every;               /* 0: no checkpoints; else blocks between them     */
    double mem_per_rank;                /* bytes available per rank; 0: not given          */
    double gpu_mem;                     /* --gpu-mem: bytes of one rank's GPU; 0: not given */
} sp_plan_opts;

/* quantize's defaults: 1 rank, 128 windows of ctx 0 (= min(2048, max_position_embeddings),
 * resolved by sp_plan_predict), bits 4 (levels {4}), group 128, block 128. */
void sp_plan_opts_default(sp_plan_opts *o);

/* ---- rates of this machine --------------------------------------------------------- */

typedef struct {
    double sgemm_gflops;   /* one rank's float GEMM rate                                  */
    double dgemm_gflops;   /* one rank's double GEMM rate (Hessians, layer errors)        */
    double round_ns;       /* Hessian accumulation: ns per entry rounded to the grid      */
    double write_mb_s;     /* disk write rate, MB/s (10⁶ bytes)                          */
    double read_mb_s;      /* weight read rate, MB/s                                      */
    double net_mb_s;       /* per-rank network rate for all-reduce and broadcast, MB/s    */
    double base_mb;        /* RSS of a rank before its allocations, MiB                   */
    char source[64];       /* "defaults", "calibrated" or the rates file's name           */
} sp_plan_rates;

/* Conservative defaults (a few-core node): sgemm 20, dgemm 10 GF/s, round 2 ns, write 200,
 * read 500, network 1000 MB/s, baseline 32 MiB. */
void sp_plan_rates_default(sp_plan_rates *r);

/* Read a rates file: one JSON object whose members are a subset of sgemm_gflops,
 * dgemm_gflops, round_ns, write_mb_s, read_mb_s, net_mb_s, base_mb (positive numbers);
 * missing members keep r's values. Unknown members are an error (catches typos).
 * @return SP_OK; SP_EIO / SP_EFORMAT / SP_EINVAL naming the file and the member. */
sp_status sp_plan_rates_load(sp_plan_rates *r, const char *path, sp_err *err);

/* Write r as a rates file that sp_plan_rates_load reads back. @return SP_OK or SP_EIO. */
sp_status sp_plan_rates_save(const sp_plan_rates *r, const char *path, sp_err *err);

/* Measure sgemm, dgemm, rounding, disk write and read (a 64 MiB file in dir, fsync'ed, then
 * read back after dropping it from the page cache, then removed) and the baseline RSS; a few
 * seconds in all. net_mb_s is left as it is (one process cannot measure it).
 * @return SP_OK; SP_ENOMEM; SP_EIO naming the file in dir. */
sp_status sp_plan_rates_calibrate(sp_plan_rates *r, const char *dir, sp_err *err);

/* ---- the prediction ---------------------------------------------------------------- */

enum { SP_PLAN_M_BASE = 0, SP_PLAN_M_IDS, SP_PLAN_M_STATES, SP_PLAN_M_SCRATCH,
       SP_PLAN_M_WEIGHTS, SP_PLAN_M_HESSIANS, SP_PLAN_M_GPTQ, SP_PLAN_M_QLAYERS,
       SP_PLAN_M_OUTPUT, SP_PLAN_M_MPI, SP_PLAN_M_CKPT, SP_PLAN_M_COUNT };

enum { SP_PLAN_T_CALIB = 0, SP_PLAN_T_HESSIAN, SP_PLAN_T_GPTQ, SP_PLAN_T_SHARE,
       SP_PLAN_T_PROPAGATE, SP_PLAN_T_WRITE, SP_PLAN_T_COUNT };

/* Short key ("states") and human label ("hidden states X_r") of memory item i. */
const char *sp_plan_mem_key(int i);
const char *sp_plan_mem_label(int i);
/* Key of time phase i, as in quantize's phase_seconds ("hessian", ...). */
const char *sp_plan_phase_key(int i);

typedef struct {
    int rank;
    int windows;                        /* calibration windows on this rank               */
    double item[SP_PLAN_M_COUNT];       /* bytes of each item at this rank's heap peak    */
    double heap;                        /* baseline + allocations at the peak (bytes)     */
    const char *peak_at;                /* "setup", "hessian", "gptq", "share", "write",
                                           "finish"                                        */
    double mapped;                      /* weight-file bytes touched by the end (bytes)  */
    double rss;                         /* predicted peak RSS (bytes)                     */
} sp_plan_rank;

typedef struct {
    sp_plan_rank rank0;                 /* rank 0 (it also writes the output)             */
    sp_plan_rank other;                 /* the other rank with the largest heap (a copy of
                                           rank0 when R == 1)                              */
    double heap_max, rss_max;           /* over all ranks (bytes)                          */
    double t[SP_PLAN_T_COUNT];          /* seconds per phase, whole run                   */
    double t_total;
    double ckpt_bytes;                  /* bytes written per checkpoint (all ranks)       */
    double ckpt_seconds;                /* one checkpoint's write, in the background      */
    int n_checkpoints;
    double flops_sgemm, flops_dgemm;    /* whole run, busiest rank                         */
    int fits;                           /* -1: no --mem-per-rank; 0/1: heap_max fits      */
    int min_ranks;                      /* fewest ranks >= R that fit; 0: none (or fits)  */
    int max_nsamples;                   /* most windows that fit on R ranks; 0: none      */
} sp_plan_result;

/* Validate o against m (one line naming the option at fault) and predict.
 * @return SP_OK; SP_EINVAL for an impossible option (ctx above max_position_embeddings,
 *         bits not among levels, ...). */
sp_status sp_plan_predict(const sp_plan_model *m, const sp_plan_opts *o, const sp_plan_rates *r,
                          sp_plan_result *res, sp_err *err);

/* One window of T tokens through one decoder block: sgemm flops and element-wise work; and the
 * bytes of one block's fp32 weights and of one window's forward scratch, as allocated. */
void sp_plan_block_cost(const sp_plan_model *m, int T, double *flops, double *elems);
void sp_plan_block_bytes(const sp_plan_model *m, int T, double *block_f32, double *scratch);

/* ---- the search (pipeline/plan/sp_plan_search.c) ----------------------------------------
 * Replays sp_seval.h's allocations and work for `shardpress search`: per rank, two fp32
 * blocks, one window's scratch, the head, the pool's token ids and dense reference (on every
 * rank), and the hidden states of the rank's items at the largest stage (chunked at 1 GiB).
 * Time per generation: the window-layer forwards of every stage split over the ranks, with
 * the prefix cache's expected saving for EvoPress's mutation (a candidate that changes k
 * modules at uniform positions runs k/(k+1) of the layers; k = 2, 4, 6 with P = 5/9, 3/9,
 * 1/9), plus one parent pass per window, the head and KL per item, and one block read and
 * dequantized per candidate and layer.
 * The sensitivity pass (issue 19): ceil(sens_tokens/ctx) windows, each running
 * Σ_m NL·(L − layer(m)) + L − 1 = 7·NL·L(L+1)/2 + L − 1 window-layers, split over ranks.
 * The dense reference is lazy: only the windows some stage draws, expected
 * pool·(1 − (1 − w_sens/pool)·Π_s (1 − w_s/pool)^G) of the pool.
 * RSS adds the dense model's mapped pages: every block (the reference and the table run the
 * dense model through all layers), its embedding and head. */
typedef struct {
    int ranks, ctx, generations, offspring, n_stages, topk, n_levels, pool_windows;
    int stages[8], survivors[8];
    int sens_tokens;                    /* 0: stages[0]; < 0: no sensitivity pass            */
} sp_plan_search_opts;

typedef struct {
    double heap, rss;                   /* peak per rank (bytes)                          */
    double blocks, scratch, head, pool, reference, states;   /* the items (bytes)           */
    double t_reference;                 /* the dense reference, once (s)                  */
    double t_generation, t_total;       /* s                                              */
    double layer_evals_gen;             /* window-layer forwards per generation (all ranks) */
    double layer_evals_full_gen;        /* the same without the prefix cache              */
    double mapped;                      /* the dense model's pages mapped (bytes)         */
    double reference_windows;           /* expected pool windows the dense model runs      */
    double t_sensitivity;               /* the ΔKL table (s)                              */
    double layer_evals_sensitivity;     /* its window-layer forwards (all ranks)          */
} sp_plan_search_result;

void sp_plan_search_opts_default(sp_plan_search_opts *o);
sp_status sp_plan_search_predict(const sp_plan_model *m, const sp_plan_search_opts *o,
                                 const sp_plan_rates *r, sp_plan_search_result *res, sp_err *err);

/* ---- GPU memory of quantize --device cuda (pipeline/plan/sp_plan_gpu.c) -----------------
 * The device allocations of kernels/cuda on the busiest rank, in two phases that never overlap:
 * the forward passes (the block in fp32, cached; sp_cuda_linear's window buffers; the stage's
 * device Hessian accumulators: packed int64 + the window in fp32 and double + one panel of
 * 2048 columns) and GPTQ (the fp32 factors R the rank holds at once + the largest unit's
 * buffers: W, X, codes twice, the 512-column panel, the group parameters). Which Hessians a rank
 * factors is not replayed from the schedule: one rank holds all four; with R ranks the
 * ceil(4/R) largest are counted (an upper estimate: LPT gives the largest its own rank first).
 * Host memory is sp_plan_predict's (the GPU path keeps the same host buffers, less the Hessian
 * window scratch). */
typedef struct {
    double weights, linear, hessians;   /* forward phase (bytes)                          */
    double factors, gptq_work;          /* GPTQ phase (bytes)                             */
    double peak;                        /* the larger phase                               */
    int fits;                           /* -1: no --gpu-mem; else peak <= o->gpu_mem      */
} sp_plan_gpu;

void sp_plan_gpu_predict(const sp_plan_model *m, const sp_plan_opts *o, sp_plan_gpu *g);

/* ---- the CLI (pipeline/plan/sp_plan_cli.c) ----------------------------------------------- */

/* `shardpress plan ...` (argv[0] == "plan"). Collective over comm: every rank parses the same
 * options; rank 0 reads the model, calibrates and prints; the status is agreed.
 * @return SP_OK (also when the settings do not fit, unless --strict); option and model errors
 *         as one line naming the option or file. */
sp_status sp_plan_cli(MPI_Comm comm, int rank, int argc, char **argv, sp_err *err);

/* Parse a memory size: bytes, or a number with K/M/G/T (powers of 1024; "GiB", "GB", "G"
 * all mean 2^30). @return SP_OK, or SP_EINVAL naming opt. */
sp_status sp_plan_parse_size(const char *opt, const char *val, double *bytes, sp_err *err);

#endif
