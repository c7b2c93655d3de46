/* sp_seval.c — see sp_seval.h. */
#include "kernels/cuda/sp_cuda.h"
#include "pipeline/sp_device.h"
#include "pipeline/search/sp_seval.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/sp_blas.h"
#include "kernels/sp_forward.h"
#include "kernels/sp_gtype.h"
#include "mpi/sp_mpi.h"
#include "pipeline/quantize/sp_qrun.h"
#include "pipeline/sp_eval.h"
#include "pipeline/sp_logits.h"
#include "shards/formats/sp_gguf_export.h"
#include "shards/formats/sp_qcontainer.h"
#include "shards/sp_model.h"
#include "shards/tok/sp_tokenizer.h"

/* A block buffer and which genome slice (layer + 7 level indices) it holds. */
typedef struct {
    sp_block_weights w;
    int layer;              /* -1: nothing loaded */
    uint8_t lv[SP_MOD_COUNT];
} block_buf;

struct sp_seval {
    MPI_Comm comm;
    int rank, size;
    sp_model *qm, *dm;            /* quantized container, dense model                        */
    const sp_config *c;
    sp_sgenome_space space;
    int ctx, K;
    size_t rec_bytes;
    int pool;                     /* windows in the pool                                     */
    int32_t *ids;                 /* [pool, ctx]                                             */
    char *ref;                    /* [pool, ctx−1] dense top-K records                       */
    float *norm, *head, *logits, *xn;
    block_buf bp, bc;             /* parent's and one candidate's block                      */
    sp_block_scratch scr;
    sp_cuda *gpu;                 /* --device cuda: the block linears' GPU, else NULL        */
    char dense_dir[PATH_MAX];
    uint32_t dense_fp;
    int gguf_costs;               /* sp_seval_opts.gguf_costs                                */
};

const sp_config *sp_seval_config(const sp_seval *e) { return e->c; }
const sp_sgenome_space *sp_seval_space(const sp_seval *e) { return &e->space; }
int sp_seval_ctx(const sp_seval *e) { return e->ctx; }
int sp_seval_pool(const sp_seval *e) { return e->pool; }
const char *sp_seval_dense_dir(const sp_seval *e) { return e->dense_dir; }
uint32_t sp_seval_dense_fingerprint(const sp_seval *e) { return e->dense_fp; }

void sp_seval_module_name(int m, char *buf, size_t cap) {
    snprintf(buf, cap, "model.layers.%d.%s", m / SP_MOD_COUNT, sp_module_suffix(m % SP_MOD_COUNT));
}

void sp_seval_close(sp_seval *e) {
    if (!e) return;
    sp_model_close(e->qm);
    sp_model_close(e->dm);
    sp_sgenome_space_free(&e->space);
    free(e->ids);
    free(e->ref);
    free(e->norm);
    free(e->head);
    free(e->logits);
    free(e->xn);
    sp_block_weights_free(&e->bp.w);
    sp_block_weights_free(&e->bc.w);
    sp_block_scratch_free(&e->scr);
    sp_cuda_close(e->gpu);
    free(e);
}

/* ---- opening: the level database ------------------------------------------------------- */

/* The genome space from the container: every module must hold the same levels. */
static sp_status read_space(sp_seval *e, const char *qdir, sp_err *err) {
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/%s", qdir, SP_QCONTAINER_FILE);
    sp_qcontainer *qc = NULL;
    SP_FORWARD(sp_qcontainer_open(&qc, path, err));
    const sp_qcontainer_meta *meta = sp_qcontainer_get_meta(qc);
    sp_status st = SP_OK;
    if (meta->n_levels < 2)
        st = sp_err_set(err, SP_EINVAL, "%s: holds one level (%d bits); search needs a quantize "
                        "run with several --levels (e.g. --levels 2,3,4,5,6,8)", path, meta->levels[0]);
    int n = SP_MOD_COUNT * e->c->n_layers;
    if (st == SP_OK) st = sp_sgenome_space_init(&e->space, n, meta->n_levels, meta->levels, err);
    for (int m = 0; m < n && st == SP_OK; m++) {
        char name[128];
        sp_seval_module_name(m, name, sizeof name);
        int lv[SP_QCONTAINER_MAX_LEVELS], nl = 0;
        st = sp_qcontainer_module_levels(qc, name, lv, &nl, NULL, err);
        if (st == SP_OK && (nl != meta->n_levels || memcmp(lv, meta->levels, sizeof(int) * (size_t)nl)))
            st = sp_err_set(err, SP_EFORMAT, "%s: %s does not hold every level of the file's "
                            "'levels' attribute", path, name);
        sp_qlevel_info info;
        if (st == SP_OK) st = sp_qcontainer_level_info(qc, name, meta->levels[0], &info, err);
        if (st == SP_OK) sp_sgenome_set_shape(&e->space, m, info.rows, info.cols, info.group_size);
        /* Levels with their own group size or a GGUF type (issue 11) cost what they store:
         * codes + fp16 scale + zero per group, or the type's blocks (e.g. Q4_K 4.5 bits). */
        for (int k = 0; k < meta->n_levels && st == SP_OK; k++) {
            sp_qlevel_info li;
            st = sp_qcontainer_level_info(qc, name, meta->levels[k], &li, err);
            if (st != SP_OK) break;
            const int64_t R = li.rows, C = li.cols, b = li.bits;
            int exact;
            if (e->gguf_costs) /* what the GGUF file holds: the type's blocks, or F32 */
                sp_sgenome_set_cost(&e->space, m, k, R * (int64_t)sp_gtype_row_bytes(
                                    sp_gguf_level_export_type(&li, SP_GT_F16, &exact), C) * 8);
            else if (li.gtype)
                sp_sgenome_set_cost(&e->space, m, k, R * (int64_t)sp_gtype_row_bytes(li.gtype, C) * 8);
            else
                sp_sgenome_set_cost(&e->space, m, k, R * C * b + R * (int64_t)li.n_groups * (16 + b));
        }
    }
    sp_qcontainer_close(qc, NULL);
    return st;
}

/* ---- opening: the dense model ----------------------------------------------------------- */

/* source.json written by quantize: the dense model's path and fingerprint. */
static sp_status read_source(const char *qdir, char *dir, size_t cap, uint32_t *fp, int *have,
                             sp_err *err) {
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/source.json", qdir);
    char *text = NULL;
    sp_status st = sp_qrun_read_file(path, &text, err);
    *have = 0;
    if (st == SP_ENOTFOUND) return SP_OK;
    if (st) return st;
    cJSON *j = cJSON_Parse(text);
    free(text);
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "model_dir");
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, "model_fingerprint");
    if (!cJSON_IsString(d) || !cJSON_IsNumber(f) || f->valuedouble < 0 || f->valuedouble > 4294967295.0) {
        cJSON_Delete(j);
        return sp_err_set(err, SP_EFORMAT, "%s: expected a JSON object with 'model_dir' (string) "
                          "and 'model_fingerprint' (uint32)", path);
    }
    snprintf(dir, cap, "%s", d->valuestring);
    *fp = (uint32_t)f->valuedouble;
    *have = 1;
    cJSON_Delete(j);
    return SP_OK;
}

/* The dense model must be the one the container was made from. */
static sp_status check_dense(const sp_seval *e, const char *qdir, sp_err *err) {
    const sp_config *q = e->c, *d = sp_model_config(e->dm);
#define SAME(f) SP_RETURN_IF(q->f != d->f, err, SP_EINVAL, "%s: does not match %s: config.json " \
                             "field %s is %d in the dense model, %d in the container", \
                             e->dense_dir, qdir, #f, d->f, q->f)
    SAME(dim); SAME(hidden_dim); SAME(n_layers); SAME(n_heads); SAME(n_kv_heads);
    SAME(head_dim); SAME(vocab_size);
#undef SAME
    return SP_OK;
}

static sp_status open_dense(sp_seval *e, const sp_seval_opts *o, sp_err *err) {
    char src[PATH_MAX] = "";
    uint32_t src_fp = 0;
    int have = 0;
    SP_FORWARD(read_source(o->qdir, src, sizeof src, &src_fp, &have, err));
    SP_RETURN_IF(!o->dense_dir && !have, err, SP_EINVAL, "%s: no source.json naming the dense "
                 "model; pass --dense DIR", o->qdir);
    snprintf(e->dense_dir, sizeof e->dense_dir, "%s", o->dense_dir ? o->dense_dir : src);
    sp_status st = sp_model_open(&e->dm, e->dense_dir, err);
    if (st && !o->dense_dir) sp_err_prefix(err, "%s/source.json names the dense model; pass --dense DIR if it moved", o->qdir);
    if (st) return st;
    SP_FORWARD(check_dense(e, o->qdir, err));
    SP_FORWARD(sp_qrun_model_fingerprint(e->dense_dir, &e->dense_fp, err));
    SP_RETURN_IF(have && e->dense_fp != src_fp, err, SP_EINVAL, "%s: fingerprint 0x%08x, but "
                 "%s/source.json says the container was made from a model with 0x%08x: not "
                 "the same dense model", e->dense_dir, e->dense_fp, o->qdir, src_fp);
    return SP_OK;
}

/* ---- opening: the pool and the dense reference ---------------------------------------- */

/* Rank 0: tokenize the calibration text once with one BOS; the pool is its floor(N/ctx)
 * non-overlapping windows. */
static sp_status read_pool(sp_seval *e, const char *path, sp_err *err) {
    char *text = NULL;
    size_t len = 0, n = 0;
    int32_t *ids = NULL;
    sp_tokenizer *tok = NULL;
    SP_FORWARD(sp_text_read_file(path, &text, &len, err));
    sp_status st = sp_tokenizer_open_dir(&tok, sp_model_dir(e->qm), e->c->vocab_size, err);
    if (st == SP_OK) st = sp_tokenizer_encode(tok, text, len, 1, &ids, &n, err);
    if (st == SP_OK && n < (size_t)e->ctx)
        st = sp_err_set(err, SP_EINVAL, "%s: calibration text has %zu tokens, shorter than one "
                        "window of --ctx %d", path, n, e->ctx);
    if (st == SP_OK) {
        e->pool = (int)(n / (size_t)e->ctx);
        e->ids = ids;
        ids = NULL;
    }
    free(ids);
    free(text);
    sp_tokenizer_free(tok);
    return st;
}

static sp_status bcast_pool(sp_seval *e, sp_err *err) {
    MPI_Bcast(&e->pool, 1, MPI_INT, 0, e->comm);
    size_t n = (size_t)e->pool * (size_t)e->ctx;
    if (e->rank != 0) e->ids = sp_malloc(n * sizeof(int32_t), err, "calibration windows");
    sp_status st = sp_mpi_agree(e->comm, e->ids ? SP_OK : SP_ENOMEM, err);
    if (st == SP_OK)
        st = sp_mpi_bcast_large(e->comm, e->ids, n, MPI_INT32_T, sizeof(int32_t),
                                "MPI_Bcast(calibration)", err);
    return st;
}

static sp_eval_scorer scorer_of(sp_seval *e) {
    sp_eval_scorer sc = {.c = e->c, .norm = e->norm, .head = e->head, .logits = e->logits,
                         .xn = e->xn, .topk = e->K, .rec_bytes = e->rec_bytes};
    return sc;
}

/* Dense top-K records of every pool window: my block of windows, then gathered everywhere. */
static sp_status dense_reference(sp_seval *e, sp_err *err) {
    size_t w0, w1, T = (size_t)e->ctx, D = (size_t)e->c->dim, R = (T - 1) * e->rec_bytes;
    sp_mpi_split_range((size_t)e->pool, e->rank, e->size, &w0, &w1);
    float *x = sp_malloc(T * D * sizeof(float), err, "dense states");
    e->ref = x ? sp_malloc((size_t)e->pool * R + 1, err, "dense reference") : NULL;
    float *dnorm = e->ref ? sp_malloc(D * sizeof(float), err, "final norm") : NULL;
    float *dhead = dnorm ? sp_malloc((size_t)e->c->vocab_size * D * sizeof(float), err, "head") : NULL;
    sp_status st = dhead ? SP_OK : SP_ENOMEM;
    if (st == SP_OK) st = sp_model_read_final_norm(e->dm, dnorm, err);
    if (st == SP_OK) st = sp_model_read_head_rows(e->dm, 0, e->c->vocab_size, dhead, err);
    sp_eval_scorer sc = scorer_of(e);
    sc.norm = dnorm;
    sc.head = dhead;
    for (size_t w = w0; w < w1 && st == SP_OK; w++) {
        const int32_t *ids = e->ids + w * T;
        double nll, kl;
        st = sp_eval_forward_windows_on(e->dm, ids, 1, e->ctx, x, e->gpu, err);
        if (st == SP_OK) st = sp_eval_score_window(&sc, x, ids, e->ctx, e->ref + w * R, NULL,
                                                   &nll, &kl, err);
    }
    free(x);
    free(dnorm);
    free(dhead);
    st = sp_mpi_agree(e->comm, st, err);
    if (st) return st;
    SP_RETURN_IF((size_t)e->pool * R > (size_t)INT_MAX, err, SP_EUNSUPPORTED, "search: the dense "
                 "reference of %d windows exceeds 2 GiB; use a shorter calibration text", e->pool);
    /* My windows' records are already in place; gather the other ranks' blocks. */
    st = sp_mpi_allgather_blocks(e->comm, NULL, (size_t)e->pool, R, MPI_BYTE, e->ref,
                                 "MPI_Allgatherv(dense reference)", err);
    return sp_mpi_agree(e->comm, st, err);
}

sp_status sp_seval_open(sp_seval **out, MPI_Comm comm, const sp_seval_opts *o, sp_err *err) {
    *out = NULL;
    sp_seval *e = sp_calloc(1, sizeof *e, err, "search state");
    sp_status st = e ? SP_OK : SP_ENOMEM;
    if (e) {
        e->comm = comm;
        MPI_Comm_rank(comm, &e->rank);
        MPI_Comm_size(comm, &e->size);
        e->bp.layer = e->bc.layer = -1;
    }
    if (st == SP_OK) st = sp_model_open(&e->qm, o->qdir, err);
    if (st == SP_OK && strcmp(sp_model_format(e->qm), "sp-hdf5") != 0)
        st = sp_err_set(err, SP_EINVAL, "%s: not an output of 'shardpress quantize' (format %s, "
                        "expected a model.sp.h5 container)", o->qdir, sp_model_format(e->qm));
    if (st == SP_OK) {
        e->c = sp_model_config(e->qm);
        e->ctx = o->ctx > 0 ? o->ctx : sp_config_default_ctx(e->c);
        if (e->ctx > e->c->max_seq_len)
            st = sp_err_set(err, SP_EINVAL, "search: --ctx %d is larger than the model's maximum "
                            "(max_position_embeddings %d)", e->ctx, e->c->max_seq_len);
    }
    if (e) e->gguf_costs = o->gguf_costs;
    if (st == SP_OK) st = read_space(e, o->qdir, err);
    if (st == SP_OK) sp_sgenome_set_groups(&e->space, (sp_sgroups)o->group_by);
    if (st == SP_OK) st = open_dense(e, o, err);
    st = sp_mpi_agree(comm, st, err);
    /* The dense values too, not only its layout (issue 21): every tensor read once, per rank. */
    if (st == SP_OK) st = sp_qrun_verify_source(comm, e->dm, e->dense_dir, o->qdir, err);
    if (st == SP_OK && e->rank == 0) st = read_pool(e, o->calib_path, err);
    st = sp_mpi_agree(comm, st, err);
    if (st == SP_OK) st = bcast_pool(e, err);
    if (st == SP_OK) {
        size_t D = (size_t)e->c->dim, V = (size_t)e->c->vocab_size;
        e->K = o->topk < (int)V ? o->topk : (int)V;
        e->rec_bytes = sp_logits_record_bytes((uint32_t)e->K);
        e->norm = sp_malloc(D * sizeof(float), err, "final norm");
        e->head = e->norm ? sp_malloc(V * D * sizeof(float), err, "output head") : NULL;
        e->logits = e->head ? sp_malloc(SP_EVAL_HEAD_ROWS * V * sizeof(float), err, "logits") : NULL;
        e->xn = e->logits ? sp_malloc(SP_EVAL_HEAD_ROWS * D * sizeof(float), err, "normed") : NULL;
        st = e->xn ? SP_OK : SP_ENOMEM;
        if (st == SP_OK) st = sp_model_read_final_norm(e->qm, e->norm, err);
        if (st == SP_OK) st = sp_model_read_head_rows(e->qm, 0, (int64_t)V, e->head, err);
        if (st == SP_OK) st = sp_block_weights_alloc(&e->bp.w, e->c, err);
        if (st == SP_OK) st = sp_block_weights_alloc(&e->bc.w, e->c, err);
        if (st == SP_OK) st = sp_block_scratch_alloc(&e->scr, e->c, e->ctx, err);
    }
    st = sp_mpi_agree(comm, st, err);
    if (st == SP_OK) st = sp_device_open(comm, o->device, &e->gpu, err);
    e->scr.gpu = e->gpu;
    if (st == SP_OK) st = dense_reference(e, err);
    if (st) {
        sp_seval_close(e);
        return st;
    }
    *out = e;
    return SP_OK;
}

/* ---- evaluation ------------------------------------------------------------------------ */

/* Make b hold layer l of genome g (reads only when it holds something else). */
static sp_status load_layer(sp_seval *e, block_buf *b, int l, const uint8_t *g, sp_err *err) {
    const uint8_t *lv = g + (size_t)l * SP_MOD_COUNT;
    if (b->layer == l && memcmp(b->lv, lv, SP_MOD_COUNT) == 0) return SP_OK;
    for (int k = 0; k < SP_MOD_COUNT; k++) {
        char name[128];
        sp_seval_module_name(l * SP_MOD_COUNT + k, name, sizeof name);
        SP_FORWARD(sp_model_select_bits(e->qm, name, e->space.levels[lv[k]], err));
    }
    b->layer = -1;
    SP_FORWARD(sp_model_load_block(e->qm, l, &b->w, err));
    b->layer = l;
    memcpy(b->lv, lv, SP_MOD_COUNT);
    return SP_OK;
}

/* Items [i0, i1) of one run (item = window index · n_cands + candidate) on this rank, whose
 * windows are consecutive. Computes kl[i − a] for each. */
typedef struct {
    const int *windows;
    const uint8_t *parent;
    const uint8_t *const *cands;
    int n_cands;
    const int *fd;          /* [n_cands] first layer where candidate differs (L: never) */
    size_t a;               /* first item of this rank                                 */
    double *kl;             /* [my items]                                              */
    int64_t evals;
} run_ctx;

static sp_status run_chunk(sp_seval *e, run_ctx *r, size_t i0, size_t i1, sp_err *err) {
    const sp_config *c = e->c;
    int L = c->n_layers, nc = r->n_cands;
    size_t T = (size_t)e->ctx, D = (size_t)c->dim, TD = T * D;
    size_t wfirst = i0 / (size_t)nc, wlast = (i1 - 1) / (size_t)nc, nwin = wlast - wfirst + 1;
    size_t nit = i1 - i0;
    float *xp = sp_malloc(nwin * TD * sizeof(float), err, "parent states");
    float *xi = xp ? sp_malloc(nit * TD * sizeof(float), err, "candidate states") : NULL;
    if (!xi) {
        free(xp);
        return SP_ENOMEM;
    }
    sp_status st = SP_OK;
    int parent_until = 0; /* the parent is run through layers [0, parent_until) */
    for (size_t i = i0; i < i1; i++) {
        int f = r->fd[i % (size_t)nc];
        if (f > parent_until) parent_until = f;
    }
    for (size_t w = 0; w < nwin && st == SP_OK; w++)
        st = sp_model_embed(e->qm, e->ids + (size_t)r->windows[wfirst + w] * T, T, xp + w * TD, err);
    for (int l = 0; l < L && st == SP_OK; l++) {
        /* Candidates that leave the parent at layer l start from its state at l's input. */
        for (size_t i = i0; i < i1; i++)
            if (r->fd[i % (size_t)nc] == l)
                memcpy(xi + (i - i0) * TD, xp + (i / (size_t)nc - wfirst) * TD, TD * sizeof(float));
        for (int j = 0; j < nc && st == SP_OK; j++) {
            if (r->fd[j] > l) continue;
            int any = 0;
            for (size_t i = i0; i < i1 && !any; i++) any = (int)(i % (size_t)nc) == j;
            if (!any) continue;
            st = load_layer(e, &e->bc, l, r->cands[j], err);
            for (size_t i = i0; i < i1 && st == SP_OK; i++) {
                if ((int)(i % (size_t)nc) != j) continue;
                sp_block_forward(xi + (i - i0) * TD, &e->bc.w, c, e->ctx, &e->scr);
                r->evals++;
            }
        }
        if (l < parent_until && st == SP_OK) {
            st = load_layer(e, &e->bp, l, r->parent, err);
            for (size_t w = 0; w < nwin && st == SP_OK; w++) {
                sp_block_forward(xp + w * TD, &e->bp.w, c, e->ctx, &e->scr);
                r->evals++;
            }
        }
    }
    sp_eval_scorer sc = scorer_of(e);
    size_t R = (T - 1) * e->rec_bytes;
    for (size_t i = i0; i < i1 && st == SP_OK; i++) {
        size_t w = i / (size_t)nc;
        int pw = r->windows[w];
        const float *x = r->fd[i % (size_t)nc] >= L ? xp + (w - wfirst) * TD : xi + (i - i0) * TD;
        double nll;
        st = sp_eval_score_window(&sc, x, e->ids + (size_t)pw * T, e->ctx, NULL,
                                  e->ref + (size_t)pw * R, &nll, &r->kl[i - r->a], err);
    }
    free(xp);
    free(xi);
    return st;
}

sp_status sp_seval_run(sp_seval *e, const int *windows, int nw, const uint8_t *parent,
                       const uint8_t *const *cands, int n_cands, double *fitness,
                       sp_seval_counts *counts, sp_err *err) {
    int L = e->c->n_layers;
    size_t N = (size_t)nw * (size_t)n_cands, a, b;
    sp_mpi_split_range(N, e->rank, e->size, &a, &b);
    int *fd = sp_malloc(sizeof(int) * (size_t)(n_cands + 1), err, "first differences");
    double *kl = fd ? sp_calloc(b - a + 1, sizeof(double), err, "kl") : NULL;
    double *all = kl ? sp_calloc(N + 1, sizeof(double), err, "kl") : NULL;
    sp_status st = all ? SP_OK : SP_ENOMEM;
    for (int w = 0; w < nw && st == SP_OK; w++)
        if (windows[w] < 0 || windows[w] >= e->pool)
            st = sp_err_set(err, SP_EINTERNAL, "search: window %d outside the pool", windows[w]);
    for (int j = 0; j < n_cands && st == SP_OK; j++)
        fd[j] = sp_sgenome_first_diff(&e->space, parent, cands[j]) / SP_MOD_COUNT;
    run_ctx r = {.windows = windows, .parent = parent, .cands = cands, .n_cands = n_cands,
                 .fd = fd, .a = a, .kl = kl};
    /* Chunks of whole windows (a window's items together), states under the chunk budget. */
    size_t TD = (size_t)e->ctx * (size_t)e->c->dim * sizeof(float);
    for (size_t i0 = a; i0 < b && st == SP_OK;) {
        size_t i1 = i0, bytes = 0;
        while (i1 < b) {
            size_t wend = (i1 / (size_t)n_cands + 1) * (size_t)n_cands;
            if (wend > b) wend = b;
            size_t more = (wend - i1 + 1) * TD;
            if (i1 > i0 && bytes + more > SP_SEVAL_CHUNK_BYTES) break;
            bytes += more;
            i1 = wend;
        }
        st = run_chunk(e, &r, i0, i1, err);
        i0 = i1;
    }
    if (st == SP_OK) st = sp_cuda_take_error(e->gpu, err);
    st = sp_mpi_agree(e->comm, st, err);
    if (st == SP_OK) st = sp_mpi_allgather_blocks_f64(e->comm, kl, N, all, err);
    if (st == SP_OK) {
        double scored = (double)nw * (double)(e->ctx - 1);
        for (int j = 0; j < n_cands; j++) {
            double s = 0.0;
            for (int w = 0; w < nw; w++) s += all[(size_t)w * (size_t)n_cands + (size_t)j];
            fitness[j] = s / scored;
        }
        if (counts) {
            int64_t mine = r.evals, tot = 0;
            MPI_Allreduce(&mine, &tot, 1, MPI_INT64_T, MPI_SUM, e->comm);
            counts->layer_evals = tot;
            counts->full_evals = (int64_t)N * L;
        }
    }
    free(fd);
    free(kl);
    free(all);
    return st;
}

/* ---- the error model of --method greedy ----------------------------------------------- */

/* Pointer to module kind k's matrix in w, with its [rows, cols]. */
static float *module_ptr(sp_block_weights *w, const sp_config *c, int k, int *rows, int *cols) {
    int q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    switch (k) {
    case SP_MOD_Q: *rows = q; *cols = c->dim; return w->wq;
    case SP_MOD_K: *rows = kv; *cols = c->dim; return w->wk;
    case SP_MOD_V: *rows = kv; *cols = c->dim; return w->wv;
    case SP_MOD_O: *rows = c->dim; *cols = q; return w->wo;
    case SP_MOD_GATE: *rows = c->hidden_dim; *cols = c->dim; return w->w_gate;
    case SP_MOD_UP: *rows = c->hidden_dim; *cols = c->dim; return w->w_up;
    default: *rows = c->dim; *cols = c->hidden_dim; return w->w_down;
    }
}

sp_status sp_seval_layer_errors(sp_seval *e, const int *windows, int nw, double *err_est,
                                sp_err *err) {
    const sp_config *c = e->c;
    const sp_sgenome_space *s = &e->space;
    int L = c->n_layers, NL = s->n_levels;
    size_t T = (size_t)e->ctx, D = (size_t)c->dim, TD = T * D, w0, w1;
    size_t per_w = (size_t)s->n * (size_t)NL;
    sp_mpi_split_range((size_t)nw, e->rank, e->size, &w0, &w1);
    size_t mine = w1 - w0;
    size_t tap = T * (D + (size_t)(c->n_heads * c->head_dim) + D + (size_t)c->hidden_dim);
    size_t maxo = (size_t)(c->hidden_dim > c->dim ? c->hidden_dim : c->dim);
    if ((size_t)(c->n_heads * c->head_dim) > maxo) maxo = (size_t)(c->n_heads * c->head_dim);
    float *x = sp_malloc((mine + 1) * TD * sizeof(float), err, "dense states");
    float *taps = x ? sp_malloc((mine + 1) * tap * sizeof(float), err, "module inputs") : NULL;
    float *prod = taps ? sp_malloc(T * maxo * sizeof(float), err, "output error") : NULL;
    double *my = prod ? sp_calloc((mine + 1) * per_w, sizeof(double), err, "errors") : NULL;
    double *all = my ? sp_calloc((size_t)nw * per_w + 1, sizeof(double), err, "errors") : NULL;
    sp_status st = all ? SP_OK : SP_ENOMEM;
    for (size_t w = 0; w < mine && st == SP_OK; w++)
        st = sp_model_embed(e->dm, e->ids + (size_t)windows[w0 + w] * T, T, x + w * TD, err);
    uint8_t *uni = sp_calloc((size_t)s->n, 1, err, "levels");
    if (!uni) st = SP_ENOMEM;
    for (int l = 0; l < L && st == SP_OK; l++) {
        /* Dense block l into bc; forward each window, keeping the four taps. */
        e->bc.layer = -1;
        st = sp_model_load_block(e->dm, l, &e->bc.w, err);
        for (size_t w = 0; w < mine && st == SP_OK; w++) {
            sp_block_forward(x + w * TD, &e->bc.w, c, e->ctx, &e->scr);
            float *t = taps + w * tap;
            size_t hq = (size_t)(c->n_heads * c->head_dim), F = (size_t)c->hidden_dim;
            memcpy(t, e->scr.xn1, T * D * sizeof(float));
            memcpy(t + T * D, e->scr.attn, T * hq * sizeof(float));
            memcpy(t + T * (D + hq), e->scr.xn2, T * D * sizeof(float));
            memcpy(t + T * (2 * D + hq), e->scr.act, T * F * sizeof(float));
        }
        for (int k = 0; k < NL && st == SP_OK; k++) {
            memset(uni, k, (size_t)s->n);
            st = load_layer(e, &e->bp, l, uni, err);
            for (int mk = 0; mk < SP_MOD_COUNT && st == SP_OK; mk++) {
                int rows, cols, r2, c2;
                float *wq = module_ptr(&e->bp.w, c, mk, &rows, &cols);
                const float *wd = module_ptr(&e->bc.w, c, mk, &r2, &c2);
                /* ΔW = W_k − W, in the candidate buffer (reloaded next time it is needed). */
                for (size_t i = 0; i < (size_t)rows * (size_t)cols; i++) wq[i] -= wd[i];
                e->bp.layer = -1;
                size_t hq = (size_t)(c->n_heads * c->head_dim);
                size_t off = mk <= SP_MOD_V ? 0 : mk == SP_MOD_O ? T * D
                           : mk <= SP_MOD_UP ? T * (D + hq) : T * (2 * D + hq);
                for (size_t w = 0; w < mine; w++) {
                    const float *in = taps + w * tap + off; /* [T, cols] */
                    /* E [T, rows] = X ΔWᵀ; the error is ‖E‖²_F = tr(ΔW XᵀX ΔWᵀ). */
                    sp_blas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, rows, cols, 1.0f,
                                  in, cols, wq, cols, 0.0f, prod, rows);
                    double acc = 0.0;
                    for (size_t i = 0; i < T * (size_t)rows; i++) acc += (double)prod[i] * prod[i];
                    my[w * per_w + ((size_t)(l * SP_MOD_COUNT + mk)) * (size_t)NL + (size_t)k] = acc;
                }
            }
        }
    }
    free(uni);
    st = sp_mpi_agree(e->comm, st, err);
    if (st == SP_OK) {
        st = sp_mpi_allgather_blocks(e->comm, my, (size_t)nw, per_w, MPI_DOUBLE, all,
                                     "MPI_Allgatherv(errors)", err);
        st = sp_mpi_agree(e->comm, st, err);
    }
    if (st == SP_OK) /* window order: the same sum on any rank count */
        for (size_t i = 0; i < per_w; i++) {
            double acc = 0.0;
            for (int w = 0; w < nw; w++) acc += all[(size_t)w * per_w + i];
            err_est[i] = acc;
        }
    free(x);
    free(taps);
    free(prod);
    free(my);
    free(all);
    return st;
}
