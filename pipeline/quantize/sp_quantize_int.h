/* sp_quantize_int.h — the state of a quantize job, shared by sp_quantize.c (the block loop),
 * sp_qoutput.c (the output directory) and sp_qckpt.c (checkpoints and resume). Internal. */
#ifndef SP_QUANTIZE_INT_H
#define SP_QUANTIZE_INT_H

#include <mpi.h>
#include <stdint.h>

#include "ckpt/sp_ckpt.h"
#include "common/sp_fault.h"
#include "kernels/sp_forward.h"
#include "kernels/sp_hacc.h"
#include "kernels/sp_quant.h"
#include "kernels/sp_rotate.h"
#include "shards/sp_model.h"
#include "pipeline/quantize/sp_quantize.h"
#include "pipeline/quantize/sp_schedule.h"

enum { SP_H_QKV = 0, SP_H_O, SP_H_GATEUP, SP_H_DOWN, SP_N_HESS };

typedef struct {
    MPI_Comm comm;
    int rank, size;
    const sp_quantize_opts *o;
    sp_model *m;
    const sp_config *c;
    int32_t *calib;          /* [nsamples, ctx] token ids (fresh runs)                       */
    size_t w0, w1;           /* my windows                                                   */
    float *X;                /* [w1-w0, ctx, D] my windows' hidden states                    */
    float *xtmp;             /* [ctx, D] one window, run through the dense block             */
    sp_block_weights dense;  /* block weights: dense, then (propagate) dequantized in place */
    sp_block_scratch scratch;
    sp_rotation rot;         /* --rotate (issue 23): applied to each block as it is loaded    */
    sp_unit *units;          /* [7 · n_levels]                                               */
    int n_units;
    sp_qlayer *q;            /* [n_units]: the --bits layers (mine after GPTQ, all after share) */
    char **packed;           /* [n_units]: my other levels in wire form (sp_qshare.h), from   *
                              * GPTQ until share_units hands them to rank 0                   */
    double *unit_err;        /* [n_units] relative layer error (owner's value, 0 elsewhere)  */
    int64_t *block_crc;      /* [n_layers] CRC32 of each finished block's segment (rank 0)   */
    int64_t *wcrc;           /* [n_layers · SP_BLOCK_TENSORS] CRC32 of each block tensor's   *
                              * values as read (rank 0; restored ones on every rank)         */
    int64_t gcrc[SP_GLOBAL_TENSORS]; /* the same of embed_tokens, norm, lm_head (rank 0)     */
    char partial[4096];      /* rank 0: "<out>.partial"                                       */
    char segdir[4096];       /* where block segments go (checkpoint dir or partial)         */
    double err_sum;
    int err_count;
    /* checkpoints */
    sp_ckpt *ck;             /* NULL without --checkpoint-dir                                */
    char *run_json;          /* the run's description (run.json), every rank                 */
    uint32_t model_fp, calib_fp;
    int start_layer;         /* first block to compute                                       */
    int checkpoints;
    double t_rotate;         /* seconds in sp_rotation_* (this rank)                         */
    struct sp_cuda *gpu;     /* --device cuda: this rank's GPU (forward, Hessians, GPTQ)     */
    sp_fault fault;          /* SP_FAULT (common/sp_fault.h): test-only injected failures    */
    /* --imatrix-out (issue 11), rank 0: Σ x_i² of every Hessian's inputs, [layer·4 + h] */
    float **imx;
    int64_t imx_tokens;
} sp_qjob;

/* sp_qimatrix.c — rank 0 only: keep diag(A)·g of Hessian h of a layer (after the all-reduce);
 * write them as llama.cpp's imatrix GGUF to o->imatrix_out; free. */
sp_status sp_qimatrix_take(sp_qjob *j, int layer, int h, const sp_hacc *H, sp_err *err);
sp_status sp_qimatrix_write(sp_qjob *j, sp_err *err);
/* Checkpointed runs: store layer's diagonals as <checkpoint_dir>/imatrix-<layer>.bin (written
 * once, tmp + rename); sp_qimatrix_write reads the layers a resumed run did not compute. */
sp_status sp_qimatrix_save_block(const sp_qjob *j, int layer, sp_err *err);
void sp_qimatrix_free(sp_qjob *j);

/* sp_qoutput.c — rank 0 only. */
sp_status sp_qoutput_begin(sp_qjob *j, sp_err *err);
sp_status sp_qoutput_finish(sp_qjob *j, sp_err *err);
void sp_qoutput_abort(sp_qjob *j);

/* sp_qckpt.c — collective. */
sp_status sp_qckpt_start(sp_qjob *j, int resume, char *warn, size_t warn_cap, sp_err *err);
sp_status sp_qckpt_save(sp_qjob *j, int layers_done, sp_err *err);
sp_status sp_qckpt_before_overwrite(sp_qjob *j, sp_err *err);
sp_status sp_qckpt_finish(sp_qjob *j, sp_quantize_result *res, sp_err *err);

/* sp_qmem.c — collective, before any output: the plan's predicted peak heap per rank
 * (pipeline/plan) against the smallest MemAvailable per rank of the nodes; SP_ENOMEM with both
 * numbers and the --nsamples that would fit when it cannot fit (o->ctx resolved). */
sp_status sp_quantize_check_memory(MPI_Comm comm, const sp_quantize_opts *o, sp_err *err);

/* sp_qbounds.c — B[h] ≥ max |x_i| over every input x of Hessian h of the block with weights w
 * (RMSNorm, attention and SwiGLU bounds; 1% slack for float rounding). */
void sp_quantize_input_bounds(const sp_block_weights *w, const sp_config *c, double B[SP_N_HESS]);

/* sp_quantize.c — the job itself (resume = 1 continues from the checkpoint directory). */
sp_status sp_quantize_job(MPI_Comm comm, const sp_quantize_opts *o, int resume,
                          sp_quantize_result *res, sp_err *err);

#endif
