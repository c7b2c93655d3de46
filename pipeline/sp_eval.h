/* sp_eval.h — `shardpress eval`: perplexity and KL divergence to a reference, on any number
 * of MPI ranks with identical results.
 *
 * Windows follow the GPTQ/EvoPress evaluation code: the whole text is tokenized once with one
 * BOS at the start, cut into floor(N/ctx) non-overlapping windows of ctx tokens (at most
 * max_windows), and the ctx−1 next-token predictions inside each window are scored.
 * Ranks own contiguous blocks of windows. Each window's numbers are computed the same way on
 * any rank; per-window sums are gathered in window order and added there, so ppl and kl are
 * bitwise identical for any rank count.
 */
#ifndef SP_EVAL_H
#define SP_EVAL_H

#include <mpi.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "common/sp_error.h"
#include "shards/sp_config.h"

typedef struct {
    const char *model_dir;     /* model directory (or llama2.c .bin)                     */
    const char *text_path;     /* evaluation text (UTF-8)                                 */
    int ctx;                   /* window length in tokens                                 */
    long max_windows;          /* <= 0: all windows                                       */
    const char *save_logits;   /* write reference top-K logits here (NULL: don't)         */
    const char *kl_base;       /* compare against this saved reference (NULL: don't)      */
    int topk;                  /* K for --save-logits (default 64)                        */
    int level;                 /* quantized models: bits for every module (0: default)    */
    const char *bits_map;      /* quantized models: "module bits" per line (NULL: none)   */
    int device;                /* SP_DEVICE_* (pipeline/sp_device.h); 0 = auto            */
    const volatile sig_atomic_t *stop_flag; /* raised: stop, write nothing (common/sp_stop.h) */
} sp_eval_opts;

typedef struct {
    size_t tokens;             /* tokens in the file, BOS included                        */
    size_t windows;            /* windows evaluated                                       */
    size_t scored;             /* windows · (ctx − 1)                                      */
    double mean_nll;           /* mean negative log-likelihood (nats)                     */
    double ppl;                /* exp(mean_nll)                                           */
    int has_kl;
    double kl;                 /* mean KL(reference ‖ model) per scored token             */
    double seconds;            /* wall time of the forward passes                         */
    double tokens_per_s;       /* windows·ctx / seconds                                   */
    int ranks;
} sp_eval_result;

/* Collective over comm. @return the same status on every rank; res is filled on every rank. */
sp_status sp_eval_run(MPI_Comm comm, const sp_eval_opts *o, sp_eval_result *res, sp_err *err);

/* ---- pieces shared with other jobs (search) ---------------------------------------------- */

struct sp_model;
/* x [nw, ctx, D] <- hidden states after the last block, for windows ids [nw, ctx]: one block
 * converted to fp32 at a time, every window run through it. */
sp_status sp_eval_forward_windows(const struct sp_model *m, const int32_t *ids, size_t nw,
                                  int ctx, float *x, sp_err *err);
/* The same with the block's linears on gpu (NULL: the CPU); each block's weights are copied to
 * the device once for all nw windows. */
struct sp_cuda;
sp_status sp_eval_forward_windows_on(const struct sp_model *m, const int32_t *ids, size_t nw,
                                     int ctx, float *x, struct sp_cuda *gpu, sp_err *err);

/* Positions whose logits are materialised at once ([rows, V] floats). */
#define SP_EVAL_HEAD_ROWS 64

/* What scoring a window needs: the final norm, the head, scratch, and the record layout
 * (sp_logits.h: f32 top_lp[K], i32 top_id[K], f32 rest_lp per position). */
typedef struct {
    const sp_config *c;
    const float *norm;     /* [D]                                  */
    const float *head;     /* [V, D]                               */
    float *logits;         /* [SP_EVAL_HEAD_ROWS, V]               */
    float *xn;             /* [SP_EVAL_HEAD_ROWS, D]               */
    int topk;              /* K of the records being written/read  */
    size_t rec_bytes;
} sp_eval_scorer;

/* Score the ctx−1 predictions of one window. x [ctx, D] final hidden states, ids [ctx].
 * save: records out [ctx−1]; ref: reference records in [ctx−1] (at most one of them).
 * *nll_sum, *kl_sum: sums over the window's positions (kl 0 without ref).
 * Fails (SP_ENUMERIC) when the model produces a non-finite logit. */
sp_status sp_eval_score_window(const sp_eval_scorer *sc, const float *x, const int32_t *ids,
                               int ctx, char *save, const char *ref, double *nll_sum,
                               double *kl_sum, sp_err *err);

/* Apply --level / --bits-map to an opened model (shared with other jobs). */
sp_status sp_eval_select_levels(struct sp_model *m, int level, const char *bits_map, sp_err *err);

#endif
