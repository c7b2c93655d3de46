/* sp_eval.c — see sp_eval.h.
 *
 * Phases (each ends with sp_mpi_agree so one failing rank stops all of them cleanly):
 *   1. setup     every rank opens the model (headers only); rank 0 reads and tokenizes the
 *                text and broadcasts the ids of the windows.
 *   2. forward   every rank runs its windows block by block: for each chunk of windows,
 *                for each layer, convert that one block to fp32 and run every window through
 *                it. Only one block's weights are ever held in fp32.
 *   3. score     final norm + head, log-softmax per position: NLL, and either the top-K
 *                record (--save-logits) or the KL to the saved reference (--kl-base).
 *   4. reduce    per-window sums are gathered in window order and summed identically on
 *                every rank.
 */
#include "pipeline/sp_eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/sp_stop.h"
#include "kernels/cuda/sp_cuda.h"
#include "kernels/sp_forward.h"
#include "kernels/sp_kl.h"
#include "mpi/sp_mpi.h"
#include "shards/sp_model.h"
#include "shards/tok/sp_tokenizer.h"
#include "pipeline/sp_cli.h"
#include "pipeline/sp_device.h"
#include "pipeline/sp_logits.h"

/* Activations of one chunk of windows are kept under this many bytes. */
#define SP_EVAL_CHUNK_BYTES ((size_t)1 << 30)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- --level / --bits-map ------------------------------------------------------------ */

sp_status sp_eval_select_levels(sp_model *m, int level, const char *bits_map, sp_err *err) {
    if (level > 0) SP_FORWARD(sp_model_select_bits(m, NULL, level, err));
    if (!bits_map) return SP_OK;
    sp_bits_map map;
    sp_status st = sp_bits_map_read(bits_map, &map, err);
    for (int i = 0; st == SP_OK && i < map.n; i++) {
        st = sp_model_select_bits(m, map.names[i], map.bits[i], err);
        if (st) sp_err_prefix(err, "%s", bits_map);
    }
    sp_bits_map_free(&map);
    return st;
}

/* ---- phase 1: setup ------------------------------------------------------------------- */

/* Rank 0: read + tokenize the text, check it makes at least one window. */
static sp_status tokenize_text(const sp_eval_opts *o, const sp_model *m, int32_t **ids,
                               size_t *n_ids, sp_err *err) {
    const sp_config *c = sp_model_config(m);
    char *text = NULL;
    size_t len = 0;
    SP_FORWARD(sp_text_read_file(o->text_path, &text, &len, err));
    sp_tokenizer *tok = NULL;
    sp_status st = sp_tokenizer_open_dir(&tok, sp_model_dir(m), c->vocab_size, err);
    if (st == SP_OK) st = sp_tokenizer_encode(tok, text, len, 1, ids, n_ids, err);
    if (st == SP_OK && *n_ids < (size_t)o->ctx)
        st = sp_err_set(err, SP_EINVAL, "%s: %zu tokens, shorter than one window of --ctx %d",
                        o->text_path, *n_ids, o->ctx);
    sp_tokenizer_free(tok);
    free(text);
    return st;
}

/* ---- phase 2: forward ---------------------------------------------------------------- */

/* The forward passes; with stop (eval's --stop flag, issue 21) the loop looks at it after every
 * window of every block, so a signal ends a long chunk within one window's forward. */
static sp_status forward_windows(const sp_model *m, const int32_t *ids, size_t nw, int ctx,
                                 float *x, sp_cuda *gpu, const volatile sig_atomic_t *stop,
                                 sp_err *err);

sp_status sp_eval_forward_windows(const sp_model *m, const int32_t *ids, size_t nw, int ctx,
                                 float *x, sp_err *err) {
    return forward_windows(m, ids, nw, ctx, x, NULL, NULL, err);
}

sp_status sp_eval_forward_windows_on(const sp_model *m, const int32_t *ids, size_t nw, int ctx,
                                     float *x, sp_cuda *gpu, sp_err *err) {
    return forward_windows(m, ids, nw, ctx, x, gpu, NULL, err);
}

static sp_status forward_windows(const sp_model *m, const int32_t *ids, size_t nw, int ctx,
                                 float *x, sp_cuda *gpu, const volatile sig_atomic_t *stop,
                                 sp_err *err) {
    const sp_config *c = sp_model_config(m);
    size_t D = (size_t)c->dim, T = (size_t)ctx;
    SP_FORWARD(sp_model_embed(m, ids, nw * T, x, err));
    sp_block_weights w;
    sp_block_scratch s;
    SP_FORWARD(sp_block_weights_alloc(&w, c, err));
    sp_status st = sp_block_scratch_alloc(&s, c, ctx, err);
    if (st) {
        sp_block_weights_free(&w);
        return st;
    }
    s.gpu = gpu;
    for (int l = 0; l < c->n_layers && st == SP_OK; l++) {
        st = sp_model_load_block(m, l, &w, err);
        /* The block's weights do not change while its windows run: cache them on the device. */
        sp_cuda_cache_weights(gpu, 1);
        for (size_t i = 0; i < nw && st == SP_OK; i++) {
            sp_block_forward(x + i * T * D, &w, c, ctx, &s);
            st = sp_stop_check(stop, "eval", err);
        }
        sp_cuda_cache_weights(gpu, 0);
        if (st == SP_OK) st = sp_cuda_take_error(gpu, err);
    }
    sp_block_scratch_free(&s);
    sp_block_weights_free(&w);
    return st;
}

/* ---- phase 3: score ------------------------------------------------------------------ */

sp_status sp_eval_score_window(const sp_eval_scorer *sc, const float *x, const int32_t *ids, int ctx,
                              char *save, const char *ref, double *nll_sum, double *kl_sum,
                              sp_err *err) {
    int V = sc->c->vocab_size, D = sc->c->dim, K = sc->topk;
    double nll_acc = 0.0, kl_acc = 0.0;
    for (int t0 = 0; t0 < ctx - 1; t0 += SP_EVAL_HEAD_ROWS) {
        int rows = ctx - 1 - t0 < SP_EVAL_HEAD_ROWS ? ctx - 1 - t0 : SP_EVAL_HEAD_ROWS;
        sp_head_forward(sc->logits, sc->xn, x + (size_t)t0 * D, sc->norm, sc->head, sc->c, rows, V);
        for (int r = 0; r < rows; r++) {
            int t = t0 + r;
            const float *lg = sc->logits + (size_t)r * V;
            double nll = 0.0, kl = 0.0;
            if (ref) {
                const char *rec = ref + (size_t)t * sc->rec_bytes;
                float rest;
                memcpy(&rest, rec + (size_t)K * 8, sizeof rest);
                SP_FORWARD(sp_kl_row_vs_ref(&kl, &nll, lg, ids[t + 1], (const float *)rec,
                                            (const int32_t *)(rec + (size_t)K * 4), rest, V, K, err));
            } else if (save) {
                char *rec = save + (size_t)t * sc->rec_bytes;
                float rest;
                SP_FORWARD(sp_kl_row((float *)rec, (int32_t *)(rec + (size_t)K * 4), &rest, &nll, lg,
                                     ids[t + 1], V, K, err));
                memcpy(rec + (size_t)K * 8, &rest, sizeof rest);
            } else {
                SP_FORWARD(sp_kl_nll(&nll, lg, ids[t + 1], V, err));
            }
            nll_acc += nll;
            kl_acc += kl;
        }
    }
    *nll_sum = nll_acc;
    *kl_sum = kl_acc;
    return SP_OK;
}

/* ---- the job -------------------------------------------------------------------------- */

typedef struct {
    sp_model *m;
    int32_t *ids;          /* [windows·ctx] ids of all windows (every rank)             */
    float *x;              /* [chunk, ctx, D] hidden states                             */
    float *norm, *head, *logits, *xn;
    char *records;         /* [my windows, ctx−1] records (save or ref)                 */
    double *nll_w, *kl_w;  /* [windows] per-window sums (mine, then all)                */
    double *all;           /* [windows]                                                 */
    sp_cuda *gpu;          /* --device cuda: this rank's GPU, else NULL                 */
} eval_state;

static void eval_state_free(eval_state *s) {
    sp_cuda_close(s->gpu);
    sp_model_close(s->m);
    free(s->ids);
    free(s->x);
    free(s->norm);
    free(s->head);
    free(s->logits);
    free(s->xn);
    free(s->records);
    free(s->nll_w);
    free(s->kl_w);
    free(s->all);
}

static sp_status check_opts(const sp_eval_opts *o, sp_err *err) {
    SP_RETURN_IF(!o->model_dir, err, SP_EINVAL, "eval: --model is required");
    SP_RETURN_IF(!o->text_path, err, SP_EINVAL, "eval: --text is required");
    SP_RETURN_IF(o->ctx < 2, err, SP_EINVAL, "eval: --ctx must be at least 2 (got %d)", o->ctx);
    SP_RETURN_IF(o->save_logits && o->kl_base, err, SP_EINVAL,
                 "eval: --save-logits and --kl-base cannot be used together");
    SP_RETURN_IF(o->topk < 1, err, SP_EINVAL, "eval: --topk must be at least 1 (got %d)", o->topk);
    return SP_OK;
}

sp_status sp_eval_run(MPI_Comm comm, const sp_eval_opts *o, sp_eval_result *res, sp_err *err) {
    int rank = 0, size = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    memset(res, 0, sizeof *res);
    res->ranks = size;
    eval_state s;
    memset(&s, 0, sizeof s);

    /* 1. setup */
    sp_status st = check_opts(o, err);
    if (st == SP_OK) st = sp_model_open(&s.m, o->model_dir, err);
    if (st == SP_OK) st = sp_eval_select_levels(s.m, o->level, o->bits_map, err);
    const sp_config *c = st == SP_OK ? sp_model_config(s.m) : NULL;
    if (st == SP_OK && o->ctx > c->max_seq_len)
        st = sp_err_set(err, SP_EINVAL, "eval: --ctx %d is larger than the model's maximum "
                        "(max_position_embeddings %d in %s)", o->ctx, c->max_seq_len, o->model_dir);
    st = sp_mpi_agree(comm, st, err);
    if (st) goto out;

    unsigned long long n_tokens = 0;
    if (rank == 0) {
        size_t n = 0;
        st = tokenize_text(o, s.m, &s.ids, &n, err);
        n_tokens = n;
    }
    st = sp_mpi_agree(comm, st, err);
    if (st) goto out;
    MPI_Bcast(&n_tokens, 1, MPI_UNSIGNED_LONG_LONG, 0, comm);
    size_t windows = (size_t)(n_tokens / (unsigned long long)o->ctx);
    if (o->max_windows > 0 && windows > (size_t)o->max_windows) windows = (size_t)o->max_windows;
    size_t T = (size_t)o->ctx, D = (size_t)c->dim, V = (size_t)c->vocab_size;
    if (rank != 0) s.ids = sp_malloc(windows * T * sizeof(int32_t), err, "window ids");
    st = sp_mpi_agree(comm, rank != 0 && !s.ids ? SP_ENOMEM : SP_OK, err);
    if (st) goto out;
    /* Broadcast in pieces so counts stay below INT_MAX. */
    for (size_t off = 0; off < windows * T; off += (size_t)1 << 28) {
        size_t cnt = windows * T - off < ((size_t)1 << 28) ? windows * T - off : (size_t)1 << 28;
        st = sp_mpi_check(MPI_Bcast(s.ids + off, (int)cnt, MPI_INT32_T, 0, comm), "MPI_Bcast(ids)", err);
        if (st) goto out;
    }

    sp_logits_meta meta = {.topk = (uint32_t)o->topk, .ctx = (uint32_t)o->ctx,
                           .n_windows = (uint32_t)windows, .vocab = (uint32_t)V,
                           .tokens_hash = sp_logits_hash_ids(s.ids, windows * T)};
    size_t w0, w1;
    sp_mpi_split_range(windows, rank, size, &w0, &w1);
    size_t mine = w1 - w0;
    uint32_t K = (uint32_t)(o->topk < (int)V ? o->topk : (int)V); /* K > V adds nothing */
    if (o->kl_base) st = sp_logits_read(o->kl_base, &meta, 0, 0, NULL, &K, err);
    size_t rec_bytes = sp_logits_record_bytes(K);
    size_t chunk = SP_EVAL_CHUNK_BYTES / (T * D * sizeof(float));
    if (chunk < 1) chunk = 1;
    if (chunk > mine) chunk = mine ? mine : 1;
    if (st == SP_OK) {
        s.x = sp_malloc(chunk * T * D * sizeof(float), err, "hidden states");
        s.norm = s.x ? sp_malloc(D * sizeof(float), err, "final norm") : NULL;
        s.head = s.norm ? sp_malloc(V * D * sizeof(float), err, "output head") : NULL;
        s.logits = s.head ? sp_malloc(SP_EVAL_HEAD_ROWS * V * sizeof(float), err, "logits") : NULL;
        s.xn = s.logits ? sp_malloc(SP_EVAL_HEAD_ROWS * D * sizeof(float), err, "normed") : NULL;
        s.nll_w = s.xn ? sp_calloc(mine + 1, sizeof(double), err, "window nll") : NULL;
        s.kl_w = s.nll_w ? sp_calloc(mine + 1, sizeof(double), err, "window kl") : NULL;
        s.all = s.kl_w ? sp_calloc(windows + 1, sizeof(double), err, "all windows") : NULL;
        if (!s.all) st = SP_ENOMEM;
    }
    if (st == SP_OK && (o->save_logits || o->kl_base)) {
        s.records = sp_malloc(mine * (T - 1) * rec_bytes, err, "top-K records");
        if (!s.records) st = SP_ENOMEM;
    }
    if (st == SP_OK && o->kl_base) st = sp_logits_read(o->kl_base, &meta, w0, w1, s.records, &K, err);
    if (st == SP_OK) st = sp_model_read_final_norm(s.m, s.norm, err);
    if (st == SP_OK) st = sp_model_read_head_rows(s.m, 0, (int64_t)V, s.head, err);
    st = sp_mpi_agree(comm, st, err);
    if (st) goto out;
    st = sp_device_open(comm, o->device, &s.gpu, err);
    if (st) goto out;

    /* 2 + 3. forward and score, chunk by chunk (no collectives inside; a signal ends the loop
     * on each rank at its next window, and the agreement below stops them all before anything
     * is written) */
    MPI_Barrier(comm);
    double t_start = now_s();
    sp_eval_scorer sc = {.c = c, .norm = s.norm, .head = s.head, .logits = s.logits, .xn = s.xn,
                 .topk = (int)K, .rec_bytes = rec_bytes};
    for (size_t cw = 0; cw < mine && st == SP_OK; cw += chunk) {
        size_t nw = mine - cw < chunk ? mine - cw : chunk;
        const int32_t *cids = s.ids + (w0 + cw) * T;
        st = forward_windows(s.m, cids, nw, o->ctx, s.x, s.gpu, o->stop_flag, err);
        for (size_t i = 0; i < nw && st == SP_OK; i++) {
            char *rec = s.records ? s.records + (cw + i) * (T - 1) * rec_bytes : NULL;
            st = sp_eval_score_window(&sc, s.x + i * T * D, cids + i * T, o->ctx,
                              o->save_logits ? rec : NULL, o->kl_base ? rec : NULL,
                              &s.nll_w[cw + i], &s.kl_w[cw + i], err);
        }
    }
    st = sp_mpi_agree(comm, st, err);
    if (st) goto out;
    MPI_Barrier(comm);
    res->seconds = now_s() - t_start;

    /* 4. reduce in window order */
    st = sp_mpi_allgather_blocks_f64(comm, s.nll_w, windows, s.all, err);
    if (st) goto out;
    double nll_sum = sp_mpi_ordered_sum(s.all, windows);
    st = sp_mpi_allgather_blocks_f64(comm, s.kl_w, windows, s.all, err);
    if (st) goto out;
    double kl_sum = sp_mpi_ordered_sum(s.all, windows);

    res->tokens = (size_t)n_tokens;
    res->windows = windows;
    res->scored = windows * (T - 1);
    res->mean_nll = nll_sum / (double)res->scored;
    res->ppl = exp(res->mean_nll);
    res->has_kl = o->kl_base != NULL;
    res->kl = res->has_kl ? kl_sum / (double)res->scored : 0.0;
    res->tokens_per_s = res->seconds > 0 ? (double)(windows * T) / res->seconds : 0.0;

    if (o->save_logits) {
        meta.topk = K;
        st = sp_logits_write(comm, o->save_logits, &meta, w0, w1, s.records, err);
    }
out:
    eval_state_free(&s);
    return st;
}
