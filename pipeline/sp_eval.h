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
#include <stddef.h>

#include "common/sp_error.h"

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

/* Apply --level / --bits-map to an opened model (shared with other jobs). */
struct sp_model;
sp_status sp_eval_select_levels(struct sp_model *m, int level, const char *bits_map, sp_err *err);

#endif
