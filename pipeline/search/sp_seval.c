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

#include "kernels/sp_forward.h"
#include "kernels/sp_gtype.h"
#include "kernels/sp_rotate.h"
#include "common/sp_stop.h"
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
    char *ref;                    /* [pool, ctx−1] dense top-K records (where have_ref)      */
    uint8_t *have_ref;            /* [pool] 1: the window's records are computed            */
    int ref_windows;              /* windows whose reference was computed                   */
    float *dnorm, *dhead;         /* the dense model's norm/head when not the container's   */
    float *norm, *head, *logits, *xn;
    block_buf bp, bc;             /* parent's and one candidate's block                      */
    block_buf bd;                 /* a dense layer (sensitivity pass), allocated on first use */
    sp_block_scratch scr;
    sp_cuda *gpu;                 /* --device cuda: the block linears' GPU, else NULL        */
    char dense_dir[PATH_MAX];
    uint32_t dense_fp;
    int gguf_costs;               /* sp_seval_opts.gguf_costs                                */
    const volatile sig_atomic_t *stop_flag; /* sp_seval_set_stop; NULL: never stop        */
    /* A container made with quantize --rotate (config.json "shardpress_rotation") holds the
     * rotated model: the reference (all dense) is the dense model's own forward, the same
     * function; but a dense module mixed into a quantized block (the sensitivity pass) must be
     * rotated like the container's, so dense blocks are rotated the same way when loaded. */
    sp_rotation rot;
};

const sp_config *sp_seval_config(const sp_seval *e) { return e->c; }
const sp_sgenome_space *sp_seval_space(const sp_seval *e) { return &e->space; }
int sp_seval_ctx(const sp_seval *e) { return e->ctx; }
int sp_seval_pool(const sp_seval *e) { return e->pool; }
const char *sp_seval_dense_dir(const sp_seval *e) { return e->dense_dir; }
int sp_seval_reference_windows(const sp_seval *e) { return e->ref_windows; }
uint32_t sp_seval_dense_fingerprint(const sp_seval *e) { return e->dense_fp; }

void sp_seval_module_name(int m, char *buf, size_t cap) {
    snprintf(buf, cap, "model.layers.%d.%s", m / SP_MOD_COUNT, sp_module_suffix(m % SP_MOD_COUNT));
}

void sp_seval_close(sp_seval *e) {
    if (!e) return;
    sp_model_close(e->qm);
    sp_model_close(e->dm);
    sp_rotation_free(&e->rot);
    sp_sgenome_space_free(&e->space);
    free(e->ids);
    free(e->ref);
    free(e->have_ref);
    free(e->dnorm);
    free(e->dhead);
    free(e->norm);
    free(e->head);
    free(e->logits);
    free(e->xn);
    sp_block_weights_free(&e->bp.w);
    sp_block_weights_free(&e->bc.w);
    sp_block_weights_free(&e->bd.w);
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
    if (e->c->rotation[0])
        SP_FORWARD(sp_rotation_init(&e->rot, sp_rotate_parse(e->c->rotation),
                                    (uint64_t)e->c->rotation_seed, e->c, err));
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

/* The dense model's final norm and head for the reference: the container's own when they are
 * the same values (quantize copies them), else a copy read from the dense model. */
static sp_status dense_head(sp_seval *e, sp_err *err) {
    size_t D = (size_t)e->c->dim, V = (size_t)e->c->vocab_size;
    float *dnorm = sp_malloc(D * sizeof(float), err, "final norm");
    float *dhead = dnorm ? sp_malloc(V * D * sizeof(float), err, "head") : NULL;
    sp_status st = dhead ? SP_OK : SP_ENOMEM;
    if (st == SP_OK) st = sp_model_read_final_norm(e->dm, dnorm, err);
    if (st == SP_OK) st = sp_model_read_head_rows(e->dm, 0, (int64_t)V, dhead, err);
    if (st == SP_OK && memcmp(dnorm, e->norm, D * sizeof(float)) == 0 &&
        memcmp(dhead, e->head, V * D * sizeof(float)) == 0) {
        free(dnorm);
        free(dhead);
        return SP_OK; /* e->dnorm/dhead stay NULL: use e->norm/head */
    }
    if (st == SP_OK) {
        e->dnorm = dnorm;
        e->dhead = dhead;
        return SP_OK;
    }
    free(dnorm);
    free(dhead);
    return st;
}

/* Collective, lazily: the dense top-K records of the windows among windows[0..nw) not computed
 * yet (ascending pool order), split over the ranks and gathered everywhere. Only the windows a
 * search draws are ever run through the dense model. */
static sp_status ensure_reference(sp_seval *e, const int *windows, int nw, sp_err *err) {
    size_t T = (size_t)e->ctx, D = (size_t)e->c->dim, R = (T - 1) * e->rec_bytes;
    int *miss = sp_malloc(sizeof(int) * ((size_t)nw + 1), err, "reference windows");
    sp_status st = miss ? SP_OK : SP_ENOMEM;
    int nm = 0;
    for (int i = 0; i < nw && st == SP_OK; i++) {
        int w = windows[i], dup = 0;
        if (e->have_ref[w]) continue;
        for (int k = 0; k < nm && !dup; k++) dup = miss[k] == w;
        if (!dup) miss[nm++] = w;
    }
    for (int i = 1; i < nm; i++) /* ascending: the same order on every rank */
        for (int k = i; k > 0 && miss[k] < miss[k - 1]; k--) {
            int t = miss[k];
            miss[k] = miss[k - 1];
            miss[k - 1] = t;
        }
    if (st == SP_OK && (size_t)nm * R > (size_t)INT_MAX)
        st = sp_err_set(err, SP_EUNSUPPORTED, "search: the dense reference of %d windows "
                        "exceeds 2 GiB in one stage; use a smaller stage", nm);
    if (st || nm == 0) {
        free(miss);
        return st;
    }
    size_t w0, w1;
    sp_mpi_split_range((size_t)nm, e->rank, e->size, &w0, &w1);
    float *x = sp_malloc(T * D * sizeof(float), err, "dense states");
    char *rec = x ? sp_malloc((size_t)nm * R + 1, err, "dense reference") : NULL;
    st = rec ? SP_OK : SP_ENOMEM;
    sp_eval_scorer sc = scorer_of(e);
    if (e->dnorm) {
        sc.norm = e->dnorm;
        sc.head = e->dhead;
    }
    for (size_t i = w0; i < w1 && st == SP_OK; i++) {
        const int32_t *ids = e->ids + (size_t)miss[i] * T;
        double nll, kl;
        st = sp_eval_forward_windows_on(e->dm, ids, 1, e->ctx, x, e->gpu, err);
        if (st == SP_OK) st = sp_eval_score_window(&sc, x, ids, e->ctx, rec + i * R, NULL,
                                                   &nll, &kl, err);
    }
    st = sp_mpi_agree(e->comm, st, err);
    /* my windows' records are in place in rec; gather the other ranks' blocks */
    if (st == SP_OK)
        st = sp_mpi_agree(e->comm, sp_mpi_allgather_blocks(e->comm, NULL, (size_t)nm, R, MPI_BYTE,
                                                           rec, "MPI_Allgatherv(dense reference)",
                                                           err), err);
    for (int i = 0; i < nm && st == SP_OK; i++) {
        memcpy(e->ref + (size_t)miss[i] * R, rec + (size_t)i * R, R);
        e->have_ref[miss[i]] = 1;
        e->ref_windows++;
    }
    free(x);
    free(rec);
    free(miss);
    return st;
}

void sp_seval_set_stop(sp_seval *e, const volatile sig_atomic_t *flag) { e->stop_flag = flag; }

sp_status sp_seval_open(sp_seval **out, MPI_Comm comm, const sp_seval_opts *o, sp_err *err) {
    *out = NULL;
    sp_seval *e = sp_calloc(1, sizeof *e, err, "search state");
    sp_status st = e ? SP_OK : SP_ENOMEM;
    if (e) {
        e->comm = comm;
        MPI_Comm_rank(comm, &e->rank);
        MPI_Comm_size(comm, &e->size);
        e->bp.layer = e->bc.layer = e->bd.layer = -1;
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
    /* the dense reference: records for the whole pool, each computed when first drawn */
    if (st == SP_OK) {
        size_t R = (size_t)(e->ctx - 1) * e->rec_bytes;
        e->ref = sp_malloc((size_t)e->pool * R + 1, err, "dense reference");
        e->have_ref = e->ref ? sp_calloc((size_t)e->pool + 1, 1, err, "dense reference") : NULL;
        st = e->have_ref ? SP_OK : SP_ENOMEM;
        if (st == SP_OK) st = dense_head(e, err);
        st = sp_mpi_agree(comm, st, err);
    }
    if (st) {
        sp_seval_close(e);
        return st;
    }
    *out = e;
    return SP_OK;
}

/* ---- evaluation ------------------------------------------------------------------------ */

/* Pointer to module kind k's matrix in w, with its [rows, cols]. */
static float *module_ptr(sp_block_weights *w, const sp_config *c, int k, int *rows, int *cols) {
    sp_module_shape(c, k, rows, cols);
    float *const p[SP_MOD_COUNT] = {w->wq, w->wk, w->wv, w->wo, w->w_gate, w->w_up, w->w_down};
    return p[k >= 0 && k < SP_MOD_COUNT ? k : SP_MOD_DOWN];
}

/* Make b hold layer l of genome g (reads only when it holds something else). Modules at
 * SP_SEVAL_DENSE come from the dense model: the whole block when all seven are, else copied
 * over the quantized block from e->bd (dense layer cache, allocated on first use). */
static sp_status load_layer(sp_seval *e, block_buf *b, int l, const uint8_t *g, sp_err *err) {
    const uint8_t *lv = g + (size_t)l * SP_MOD_COUNT;
    if (b->layer == l && memcmp(b->lv, lv, SP_MOD_COUNT) == 0) return SP_OK;
    int nd = 0;
    for (int k = 0; k < SP_MOD_COUNT; k++) {
        if (lv[k] == SP_SEVAL_DENSE) {
            nd++;
            continue;
        }
        char name[128];
        sp_seval_module_name(l * SP_MOD_COUNT + k, name, sizeof name);
        SP_FORWARD(sp_model_select_bits(e->qm, name, e->space.levels[lv[k]], err));
    }
    b->layer = -1;
    if (nd == SP_MOD_COUNT) {
        SP_FORWARD(sp_model_load_block(e->dm, l, &b->w, err));
        SP_FORWARD(sp_rotation_block(&e->rot, &b->w, e->c, err));
    } else {
        SP_FORWARD(sp_model_load_block(e->qm, l, &b->w, err));
        if (nd && e->bd.layer != l) {
            if (!e->bd.w.wq) SP_FORWARD(sp_block_weights_alloc(&e->bd.w, e->c, err));
            e->bd.layer = -1;
            SP_FORWARD(sp_model_load_block(e->dm, l, &e->bd.w, err));
            SP_FORWARD(sp_rotation_block(&e->rot, &e->bd.w, e->c, err));
            e->bd.layer = l;
        }
        for (int k = 0; k < SP_MOD_COUNT && nd; k++) {
            if (lv[k] != SP_SEVAL_DENSE) continue;
            int rows, cols;
            float *dst = module_ptr(&b->w, e->c, k, &rows, &cols);
            memcpy(dst, module_ptr(&e->bd.w, e->c, k, &rows, &cols),
                   (size_t)rows * (size_t)cols * sizeof(float));
        }
    }
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
        /* A chunk can hold every window of a long run (the sensitivity table: all of it), so
         * the signal is looked at once per layer; the caller's agree stops every rank. */
        if ((st = sp_stop_check(e->stop_flag, "search", err)) != SP_OK) break;
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
    if (st == SP_OK) st = ensure_reference(e, windows, nw, err);
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
        /* A local look between chunks; the agree below makes every rank stop together. */
        if (st == SP_OK) st = sp_stop_check(e->stop_flag, "search", err);
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
            counts->run_evals = tot;
            counts->full_evals = (int64_t)N * L;
            int64_t per_w = 0, pu = 0;
            for (int j = 0; j < n_cands; j++) {
                per_w += L - (fd[j] < L ? fd[j] : L);
                if (fd[j] > pu) pu = fd[j];
            }
            counts->layer_evals = (int64_t)nw * (per_w + pu);
        }
    }
    free(fd);
    free(kl);
    free(all);
    return st;
}

/* ---- the sensitivity table -------------------------------------------------------------- */

sp_status sp_seval_sensitivity(sp_seval *e, const int *windows, int nw, double *table,
                               sp_seval_counts *counts, sp_err *err) {
    const sp_sgenome_space *s = &e->space;
    size_t n = (size_t)s->n, NL = (size_t)s->n_levels, nc = n * NL;
    uint8_t *g = sp_malloc((nc + 1) * n, err, "sensitivity genomes");
    const uint8_t **c = g ? sp_malloc(nc * sizeof *c, err, "sensitivity genomes") : NULL;
    sp_status st = c ? SP_OK : SP_ENOMEM;
    st = sp_mpi_agree(e->comm, st, err);
    if (st == SP_OK) {
        /* genome nc is the dense parent; candidate m·NL + k is dense but for m at level k */
        memset(g, SP_SEVAL_DENSE, (nc + 1) * n);
        for (size_t m = 0; m < n; m++)
            for (size_t k = 0; k < NL; k++) {
                uint8_t *x = g + (m * NL + k) * n;
                x[m] = (uint8_t)k;
                c[m * NL + k] = x;
            }
        st = sp_seval_run(e, windows, nw, g + nc * n, c, (int)nc, table, counts, err);
    }
    free(g);
    free(c);
    return st;
}
