/* sp_quantize.c — see sp_quantize.h. The job in four phases per block; helpers first. */
#include "pipeline/quantize/sp_quantize.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "kernels/cuda/sp_cuda.h"
#include "kernels/sp_gptq.h"
#include "kernels/sp_gtype.h"
#include "kernels/sp_hacc.h"
#include "mpi/sp_mpi.h"
#include "pipeline/sp_calib.h"
#include "pipeline/sp_device.h"
#include "pipeline/quantize/sp_qrun.h"
#include "pipeline/quantize/sp_qshare.h"
#include "pipeline/quantize/sp_quantize_int.h"
#include "pipeline/quantize/sp_segment.h"

#define H_QKV SP_H_QKV
#define H_O SP_H_O
#define H_GATEUP SP_H_GATEUP
#define H_DOWN SP_H_DOWN
#define N_HESS SP_N_HESS

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void sp_quantize_defaults(sp_quantize_opts *o) {
    memset(o, 0, sizeof *o);
    o->bits = 4;
    o->group_size = 128;
    o->sym = 0;
    o->damp = 0.01;
    o->block = 128;
    o->nsamples = 128;
    o->ctx = 0; /* min(2048, max_position_embeddings), resolved when the model is opened */
    o->checkpoint_every = 1;
    /* Issue 9 (docs/architecture.md, "Quality defaults"): act-order and the diag(H)-weighted
     * scale search; true-sequential stays an option. */
    o->act_order = 1;
    o->scale_search = SP_QSEARCH_HMSE;
    o->true_sequential = 0;
}

/* ---- module geometry ---------------------------------------------------------------------- */

/* Which Hessian each module reads, and its [rows, cols]. */
static int module_hessian(int mod) {
    switch (mod) {
    case SP_MOD_Q: case SP_MOD_K: case SP_MOD_V: return H_QKV;
    case SP_MOD_O: return H_O;
    case SP_MOD_GATE: case SP_MOD_UP: return H_GATEUP;
    default: return H_DOWN;
    }
}

static float *module_weight(sp_block_weights *w, int mod) {
    switch (mod) {
    case SP_MOD_Q: return w->wq;
    case SP_MOD_K: return w->wk;
    case SP_MOD_V: return w->wv;
    case SP_MOD_O: return w->wo;
    case SP_MOD_GATE: return w->w_gate;
    case SP_MOD_UP: return w->w_up;
    default: return w->w_down;
    }
}

static void module_name(char *buf, size_t cap, int layer, int mod) {
    snprintf(buf, cap, "model.layers.%d.%s", layer, sp_module_suffix(mod));
}

/* ---- stages ------------------------------------------------------------------------------
 * A block is quantized in stages; stage s collects the Hessians h with hessian_stage(h) == s
 * from one forward pass over the windows, with the --bits layers of the earlier stages already
 * in the block. Without --true-sequential there is one stage (all four Hessians from the dense
 * block); with it, one per Hessian in forward order (q/k/v, o, gate/up, down). */
static int n_stages(const sp_quantize_opts *o) { return o->true_sequential ? N_HESS : 1; }
static int hessian_stage(const sp_quantize_opts *o, int h) { return o->true_sequential ? h : 0; }
static int unit_stage(const sp_qjob *j, int u) { return hessian_stage(j->o, j->units[u].hessian); }

static void free_units_q(sp_qjob *j) {
    for (int u = 0; u < j->n_units; u++) {
        sp_qlayer_free(&j->q[u]);
        free(j->packed[u]);
        j->packed[u] = NULL;
    }
}

void sp_quantize_level(const sp_quantize_opts *o, int bits, int cols, int *group_size, int *sym,
                       int *gtype) {
    int t = 0, g = 0;
    for (int l = 0; l < o->n_levels; l++)
        if (o->levels[l] == bits) {
            t = o->gtypes[l];
            g = o->level_group[l];
        }
    if (t && cols % sp_gtype_block(t)) t = 0; /* the type does not fit: a plain level */
    *gtype = t;
    if (t) {
        sp_gtype_level(t, NULL, group_size, sym);
    } else {
        *group_size = g ? g : o->group_size;
        *sym = o->sym;
    }
}

/* Bytes of a unit's wire form. */
static size_t unit_bytes(const sp_qjob *j, const sp_unit *un) {
    int gs, sym, gt;
    sp_quantize_level(j->o, un->bits, un->cols, &gs, &sym, &gt);
    return sp_qshare_bytes(un->rows, un->cols, un->bits, gs, gt);
}

/* A unit that is not at --bits is needed only by rank 0's segment writer: keep it packed
 * (bits/8 bytes per weight instead of one byte per code) from the moment it is computed. For a
 * 70B block at levels 2..8 this is 1.9 GB less per rank than holding the codes unpacked. */
static sp_status pack_unit(sp_qjob *j, int u, sp_err *err) {
    j->packed[u] = sp_malloc(unit_bytes(j, &j->units[u]), err, "packed layer");
    if (!j->packed[u]) return SP_ENOMEM;
    sp_status st = sp_qshare_pack(&j->q[u], j->packed[u], err);
    sp_qlayer_free(&j->q[u]);
    return st;
}

/* After the Hessians a rank reads only the weights of the modules it quantizes, and propagate
 * overwrites all seven with their dequantized --bits layers: the pages of the others go back to
 * the kernel now (MADV_DONTNEED on anonymous memory: they read as zero when next touched) and
 * return, zeroed, when propagate writes them. 2.3 GB less on a rank that owns only down_proj
 * of a 70B block. The range is shrunk to whole pages inside the tensor. */
static void release_module(sp_qjob *j, int mod) {
    int rows, cols;
    sp_module_shape(j->c, mod, &rows, &cols);
    uintptr_t a = (uintptr_t)module_weight(&j->dense, mod);
    uintptr_t b = a + (size_t)rows * (size_t)cols * sizeof(float);
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    a = (a + page - 1) / page * page;
    b = b / page * page;
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

/* The modules of stage `stage` that this rank does not quantize (stage < 0: every stage). */
static void release_unowned(sp_qjob *j, int stage) {
    int mine[SP_MOD_COUNT] = {0}, in[SP_MOD_COUNT] = {0};
    for (int u = 0; u < j->n_units; u++) {
        if (j->units[u].owner == j->rank) mine[j->units[u].module] = 1;
        if (stage < 0 || unit_stage(j, u) == stage) in[j->units[u].module] = 1;
    }
    for (int mod = 0; mod < SP_MOD_COUNT; mod++)
        if (in[mod] && !mine[mod]) release_module(j, mod);
}

/* ---- phase 1: Hessians -------------------------------------------------------------------- */

/* The Hessians of one stage. The forward pass runs only up to the stage's last tap. The input
 * bounds are taken from the block as it is now (earlier stages' layers dequantized: the same
 * on every rank), and read only norms and layers that are either dense or already quantized
 * on every rank, never a released module. */
static sp_status block_hessians(sp_qjob *j, sp_hacc H[N_HESS], int stage, sp_err *err) {
    const sp_config *c = j->c;
    int T = j->o->ctx, D = c->dim, dims[N_HESS] = {D, c->n_heads * c->head_dim, D, c->hidden_dim};
    double B[N_HESS];
    sp_quantize_input_bounds(&j->dense, c, B);
    int64_t total = (int64_t)j->o->nsamples * T;
    sp_status st = SP_OK;
    int in[N_HESS] = {0}, last = 0;
    for (int h = 0; h < N_HESS; h++)
        if (hessian_stage(j->o, h) == stage) in[h] = 1, last = h;
    for (int h = 0; h < N_HESS && st == SP_OK; h++)
        if (in[h]) {
            st = sp_hacc_init(&H[h], dims[h], T, total, B[h], err);
            if (st == SP_OK && j->gpu) st = sp_hacc_use_cuda(&H[h], j->gpu, err);
        }
    sp_block_scratch *s = &j->scratch;
    sp_cuda_cache_weights(j->gpu, 1); /* the block does not change during the windows */
    for (size_t w = 0; st == SP_OK && w < j->w1 - j->w0; w++) {
        memcpy(j->xtmp, j->X + w * (size_t)T * D, (size_t)T * D * sizeof(float));
        sp_block_forward_taps(j->xtmp, &j->dense, c, T, s, last); /* tap h is SP_TAP_* h */
        const float *taps[N_HESS] = {s->xn1, s->attn, s->xn2, s->act};
        for (int h = 0; h < N_HESS && st == SP_OK; h++)
            if (in[h]) st = sp_hacc_add(&H[h], taps[h], T, err);
    }
    sp_cuda_cache_weights(j->gpu, 0);
    if (st == SP_OK) st = sp_cuda_take_error(j->gpu, err);
    st = sp_mpi_agree(j->comm, st, err);
    /* The forward is done: this stage's weights that this rank will not quantize can go
     * before the reduction (see release_module). */
    if (st == SP_OK) release_unowned(j, stage);
    for (int h = 0; h < N_HESS && st == SP_OK; h++)
        if (in[h]) st = sp_hacc_allreduce(&H[h], j->comm, err);
    return st;
}

/* ---- phase 2: GPTQ / RTN on my units ------------------------------------------------------ */

static sp_status quantize_my_units(sp_qjob *j, double *Hs[N_HESS], int layer, int stage,
                                   sp_err *err) {
    const sp_quantize_opts *o = j->o;
    sp_gptq_ctx *ctx[N_HESS] = {0};
    sp_status st = SP_OK;
    for (int u = 0; u < j->n_units && st == SP_OK; u++) {
        sp_unit *un = &j->units[u];
        if (un->owner != j->rank || unit_stage(j, u) != stage) continue;
        const float *W = module_weight(&j->dense, un->module);
        double rel = 0;
        int lgs, lsym, gt;
        sp_quantize_level(o, un->bits, un->cols, &lgs, &lsym, &gt);
        if (o->rtn && gt) {
            st = sp_gtype_rtn_level(W, un->rows, un->cols, gt, &j->q[u], err);
        } else if (o->rtn) {
            st = sp_quant_rtn(W, un->rows, un->cols, un->bits, lgs, lsym,
                              o->scale_search, &j->q[u], err);
        } else {
            if (!ctx[un->hessian]) {
                sp_gptq_opts go;
                sp_gptq_opts_default(&go);
                go.damp = o->damp;
                go.block = o->block;
                go.act_order = o->act_order;
                go.group_size = o->group_size;
                go.sym = o->sym;
                go.mse = o->scale_search;
                go.gpu = j->gpu;
                st = sp_gptq_prepare(&ctx[un->hessian], Hs[un->hessian], un->cols, &go, err);
            }
            /* The layer error tr(ΔW H ΔWᵀ) costs more than GPTQ itself (two products with H):
             * it is computed only at --bits, the level the summary reports. */
            int diag = un->bits == o->bits;
            double layer_err = 0;
            if (st == SP_OK)
                st = sp_gptq_quantize_level(ctx[un->hessian], W, un->rows, un->bits, gt,
                                            gt ? 0 : lgs, &j->q[u], diag ? &layer_err : NULL,
                                            err);
            if (st == SP_OK && diag) {
                double base = sp_gptq_weight_energy(W, Hs[un->hessian], un->rows, un->cols);
                rel = base > 0 ? layer_err / base : 0;
            }
        }
        if (st == SP_OK && un->bits != o->bits) st = pack_unit(j, u, err);
        if (st) {
            char name[256];
            module_name(name, sizeof name, layer, un->module);
            sp_err_prefix(err, "%s (%d bits)", name, un->bits);
        }
        j->unit_err[u] = rel;
    }
    for (int h = 0; h < N_HESS; h++) sp_gptq_free(ctx[h]);
    return sp_mpi_agree(j->comm, st, err);
}

/* ---- phase 3: share and write ---------------------------------------------------------------- */

/* Rank 0's segment of the block: open for the whole block, units appended in unit order
 * (stages follow the unit order, so a true-sequential segment has the same layout). */
typedef struct {
    sp_segment_writer w;
    sp_status wst;           /* the writer's own status (rank 0)                             */
    sp_err werr;
    int open;
} seg_state;

/* Units at --bits go to every rank (propagation needs them); other levels, packed since GPTQ,
 * only to rank 0, which streams each unit into the block's segment as it arrives and frees it,
 * so no rank ever holds a whole block at every level (5 GB of codes for a 70B block at six
 * levels). Only the units of `stage`. */
static sp_status share_units(sp_qjob *j, seg_state *sg, int stage, double *t_write, sp_err *err) {
    const sp_quantize_opts *o = j->o;
    sp_status st = SP_OK;
    double tw = 0;
    for (int u = 0; u < j->n_units && st == SP_OK; u++) {
        sp_unit *un = &j->units[u];
        if (unit_stage(j, u) != stage) continue;
        int keep = un->bits == o->bits, lgs, lsym, gt;
        sp_quantize_level(o, un->bits, un->cols, &lgs, &lsym, &gt);
        if (keep) {
            st = sp_qshare_bcast(j->comm, un->owner, &j->q[u], un->rows, un->cols, un->bits, lgs,
                                 lsym, gt, err);
        } else if (un->owner != 0) {
            if (j->rank == 0) {
                j->packed[u] = sp_malloc(unit_bytes(j, un), err, "packed layer");
                st = j->packed[u] ? SP_OK : SP_ENOMEM;
            }
            /* Every rank learns whether rank 0 could take it before the owner sends. */
            st = sp_mpi_agree(j->comm, st, err);
            if (st == SP_OK && (j->rank == 0 || j->rank == un->owner))
                st = sp_qshare_sendrecv(j->comm, un->owner, 0, u, j->packed[u], unit_bytes(j, un),
                                        err);
        }
        if (st == SP_OK && j->rank == 0 && sg->wst == SP_OK) {
            double t0 = now_s();
            sg->wst = keep ? sp_segment_writer_append(&sg->w, un->module, &j->q[u], &sg->werr)
                           : sp_segment_writer_append_packed(&sg->w, un->module, un->bits,
                                                             un->rows, un->cols, lgs, lsym, gt,
                                                             j->packed[u], &sg->werr);
            tw += now_s() - t0;
        }
        free(j->packed[u]);
        j->packed[u] = NULL;
    }
    *t_write += tw;
    if (st == SP_OK && sg->wst != SP_OK) {
        st = sg->wst;
        if (err) *err = sg->werr;
    }
    /* Errors of transfers or of the segment reach every rank here. */
    st = sp_mpi_agree(j->comm, st, err);
    if (st) return st;
    /* Relative errors at --bits, for the summary (sum over owners). */
    double e[2] = {0, 0};
    for (int u = 0; u < j->n_units; u++)
        if (j->units[u].owner == j->rank && j->units[u].bits == o->bits &&
            unit_stage(j, u) == stage) {
            e[0] += j->unit_err[u];
            e[1] += 1;
        }
    MPI_Allreduce(MPI_IN_PLACE, e, 2, MPI_DOUBLE, MPI_SUM, j->comm);
    j->err_sum += e[0];
    j->err_count += (int)e[1];
    return SP_OK;
}

/* Rank 0 opens the block's segment (its errors are reported by share_units / seg_close). */
static void seg_open(sp_qjob *j, seg_state *sg, int layer) {
    memset(sg, 0, sizeof *sg);
    sg->werr.code = SP_OK;
    if (j->rank != 0) return;
    sg->wst = sp_segment_writer_open(&sg->w, j->segdir, layer, j->n_units, &sg->werr);
    sg->open = sg->wst == SP_OK;
}

/* Close the segment when the block went well (st == SP_OK on every rank), else abort it. */
static sp_status seg_close(sp_qjob *j, seg_state *sg, int layer, sp_status st, double *t_write,
                           sp_err *err) {
    if (j->rank == 0 && sg->open) {
        if (st == SP_OK && sg->wst == SP_OK) {
            uint32_t crc = 0;
            double t0 = now_s();
            sg->wst = sp_segment_writer_close(&sg->w, &crc, &sg->werr);
            *t_write += now_s() - t0;
            if (sg->wst == SP_OK) j->block_crc[layer] = crc;
        } else {
            sp_segment_writer_abort(&sg->w);
        }
        sg->open = 0;
    }
    if (st == SP_OK && sg->wst != SP_OK) {
        st = sg->wst;
        if (err) *err = sg->werr;
    }
    return sp_mpi_agree(j->comm, st, err);
}

/* The --bits layers of a stage replace their dense matrices in the block, in place (norms
 * and biases stay): every rank has them after share_units. This saves a second fp32 copy of
 * the block (3.4 GB for a 70B block); released pages come back here. */
static void dequant_stage(sp_qjob *j, int stage) {
    for (int u = 0; u < j->n_units; u++)
        if (j->units[u].bits == j->o->bits && unit_stage(j, u) == stage)
            sp_qlayer_dequant(module_weight(&j->dense, j->units[u].module), &j->q[u]);
}

/* ---- phase 4: propagate through the quantized block ------------------------------------------ */

/* The block holds the dequantized --bits layers of every stage (dequant_stage). */
static sp_status propagate(sp_qjob *j, sp_err *err) {
    const sp_config *c = j->c;
    int T = j->o->ctx;
    size_t D = (size_t)c->dim;
    sp_cuda_cache_weights(j->gpu, 1);
    for (size_t w = 0; w < j->w1 - j->w0; w++)
        sp_block_forward(j->X + w * (size_t)T * D, &j->dense, c, T, &j->scratch);
    sp_cuda_cache_weights(j->gpu, 0);
    return sp_mpi_agree(j->comm, sp_cuda_take_error(j->gpu, err), err);
}

/* ---- setup -------------------------------------------------------------------------------- */

static sp_status check_opts(const sp_quantize_opts *o, sp_err *err) {
    SP_RETURN_IF(!o->model_dir, err, SP_EINVAL, "quantize: --model is required");
    SP_RETURN_IF(!o->out_dir, err, SP_EINVAL, "quantize: --out is required");
    SP_RETURN_IF(!o->rtn && !o->calib_path, err, SP_EINVAL, "quantize: --calib is required for GPTQ");
    /* 1 bit: only as the Q1_0 level (issue 20); a plain 1-bit level has no zero to round to */
    int q1 = 0;
    for (int i = 0; i < o->n_levels; i++) q1 |= o->levels[i] == 1 && o->gtypes[i] == SP_GT_Q1_0;
    SP_RETURN_IF(o->bits < (q1 ? 1 : 2) || o->bits > 8, err, SP_EINVAL,
                 "quantize: --bits %d is outside 2..8 (1: the Q1_0 level only)", o->bits);
    SP_RETURN_IF(o->group_size == 0 || o->group_size < -1, err, SP_EINVAL,
                 "quantize: --group-size %d must be >= 1, or -1 for one group per row", o->group_size);
    SP_RETURN_IF(!(o->damp > 0) || o->damp >= 1, err, SP_EINVAL,
                 "quantize: --damp %g must be in (0, 1)", o->damp);
    SP_RETURN_IF(o->block < 1, err, SP_EINVAL, "quantize: --block must be >= 1");
    SP_RETURN_IF(o->scale_search < 0 || o->scale_search >= SP_QSEARCH_COUNT, err, SP_EINVAL,
                 "quantize: scale search %d is not minmax, mse, hmse or gguf", o->scale_search);
    SP_RETURN_IF(o->rtn && o->scale_search == SP_QSEARCH_HMSE, err, SP_EINVAL,
                 "quantize: --scale-search hmse weights by diag(H) and needs GPTQ (use mse with "
                 "--method rtn)");
    SP_RETURN_IF(o->imatrix_out && o->rtn, err, SP_EINVAL,
                 "quantize: --imatrix-out is made from GPTQ's Hessians (not with --method rtn)");
    SP_RETURN_IF(o->imatrix_out && !o->force && access(o->imatrix_out, F_OK) == 0, err,
                 SP_EEXIST, "%s: already exists (use --force to replace it)", o->imatrix_out);
    SP_RETURN_IF(o->nsamples < 1 || o->ctx < 1, err, SP_EINVAL,
                 "quantize: --nsamples and --ctx must be >= 1");
    SP_RETURN_IF(o->rotate < 0 || o->rotate >= SP_ROTATE_COUNT, err, SP_EINVAL,
                 "quantize: --rotate %d is not none, hadamard or orthogonal", o->rotate);
    int has_bits = 0;
    for (int i = 0; i < o->n_levels; i++) {
        SP_RETURN_IF(o->levels[i] < (o->gtypes[i] == SP_GT_Q1_0 ? 1 : 2) || o->levels[i] > 8,
                     err, SP_EINVAL, "quantize: --levels value %d is outside 2..8 (1: Q1_0 only)",
                     o->levels[i]);
        SP_RETURN_IF(i > 0 && o->levels[i] <= o->levels[i - 1], err, SP_EINVAL,
                     "quantize: --levels must be ascending and unique");
        has_bits |= o->levels[i] == o->bits;
        const int t = o->gtypes[i], g = o->level_group[i];
        SP_RETURN_IF(g < -1 || (g && t), err, SP_EINVAL, "quantize: level %d: group size %d "
                     "(a plain level's own group: >= 1 or -1; a GGUF type has its own)",
                     o->levels[i], g);
        SP_RETURN_IF(g && o->device == SP_DEVICE_CUDA, err, SP_EUNSUPPORTED,
                     "quantize: level %dg%d: a level's own group size runs on the CPU only "
                     "(--device cpu)", o->levels[i], g);
        if (t) {
            int tb = 0;
            sp_gtype_level(t, &tb, NULL, NULL);
            SP_RETURN_IF(!sp_gtype_is_level(t) || tb != o->levels[i], err, SP_EINVAL,
                         "quantize: level %d: GGUF type %s is not a %d-bit level type",
                         o->levels[i], sp_gtype_name(t) ? sp_gtype_name(t) : "?", o->levels[i]);
            SP_RETURN_IF(o->device == SP_DEVICE_CUDA, err, SP_EUNSUPPORTED,
                         "quantize: GPTQ in %s runs on the CPU only (--device cpu)",
                         sp_gtype_name(t));
        }
    }
    SP_RETURN_IF(!has_bits, err, SP_EINVAL, "quantize: --bits %d is not among --levels", o->bits);
    return SP_OK;
}

/* Allocate the per-rank state. Fresh runs draw the calibration windows and embed them; a
 * resumed run gets X from the checkpoint instead (sp_qckpt_start). */
static sp_status setup(sp_qjob *j, int resume, char *warn, size_t warn_cap, sp_err *err) {
    const sp_quantize_opts *o = j->o;
    sp_status st = check_opts(o, err);
    if (st == SP_OK) st = sp_fault_parse(getenv(SP_FAULT_ENV), &j->fault, err);
    if (st == SP_OK) st = sp_model_open(&j->m, o->model_dir, err);
    if (st == SP_OK) {
        j->c = sp_model_config(j->m);
        if (o->ctx > j->c->max_seq_len)
            st = sp_err_set(err, SP_EINVAL, "quantize: --ctx %d is larger than the model's maximum "
                            "(max_position_embeddings %d)", o->ctx, j->c->max_seq_len);
    }
    /* --rotate: Q from the seed alone, the same bits on every rank (kernels/sp_rotate.h). A
     * size with no Hadamard construction is refused here, before any work. */
    double tr = now_s();
    if (st == SP_OK) st = sp_rotation_init(&j->rot, o->rotate, o->rotate_seed, j->c, err);
    if (st && o->rotate) sp_err_prefix(err, "quantize: %s", o->model_dir);
    j->t_rotate += now_s() - tr;
    st = sp_mpi_agree(j->comm, st, err);
    if (st) return st;
    const sp_config *c = j->c;
    if (!o->rtn) sp_mpi_split_range((size_t)o->nsamples, j->rank, j->size, &j->w0, &j->w1);
    size_t nw = j->w1 - j->w0, T = (size_t)o->ctx, D = (size_t)c->dim;
    j->n_units = SP_MOD_COUNT * o->n_levels;
    j->units = sp_calloc((size_t)j->n_units, sizeof *j->units, err, "work units");
    j->q = j->units ? sp_calloc((size_t)j->n_units, sizeof *j->q, err, "quantized layers") : NULL;
    j->packed = j->q ? sp_calloc((size_t)j->n_units, sizeof(char *), err, "packed layers") : NULL;
    j->unit_err = j->packed ? sp_calloc((size_t)j->n_units, sizeof(double), err, "unit errors")
                            : NULL;
    j->block_crc = j->unit_err ? sp_calloc((size_t)c->n_layers, sizeof(int64_t), err, "crcs") : NULL;
    j->wcrc = j->block_crc ? sp_calloc((size_t)c->n_layers * SP_BLOCK_TENSORS, sizeof(int64_t), err,
                                       "weight crcs") : NULL;
    st = j->wcrc ? SP_OK : SP_ENOMEM;
    /* The globals' CRCs (issue 21): recorded by a fresh run, compared by a resumed one. */
    if (st == SP_OK && j->rank == 0) st = sp_qrun_global_crcs(j->m, j->gcrc, err);
    if (st == SP_OK && !o->rtn) {
        j->X = sp_malloc((nw ? nw : 1) * T * D * sizeof(float), err, "calibration states");
        j->xtmp = j->X ? sp_malloc(T * D * sizeof(float), err, "window") : NULL;
        st = j->xtmp ? SP_OK : SP_ENOMEM;
        if (st == SP_OK) st = sp_block_scratch_alloc(&j->scratch, c, o->ctx, err);
    }
    if (st == SP_OK) st = sp_block_weights_alloc(&j->dense, c, err);
    if (st == SP_OK) {
        for (int mod = 0, u = 0; mod < SP_MOD_COUNT; mod++)
            for (int l = 0; l < o->n_levels; l++, u++) {
                j->units[u].module = mod;
                j->units[u].bits = o->levels[l];
                j->units[u].hessian = module_hessian(mod);
                sp_module_shape(c, mod, &j->units[u].rows, &j->units[u].cols);
            }
        /* A GGUF type that fits none of the modules is an error; one that misses some is a
         * plain level there (sp_quantize_level), said once per type. The same on every rank:
         * the shapes come from the config. */
        for (int l = 0; l < o->n_levels && st == SP_OK; l++) {
            const int gt = o->gtypes[l], blk = gt ? sp_gtype_block(gt) : 1;
            int fit = 0, miss = -1;
            for (int mod = 0; mod < SP_MOD_COUNT; mod++) {
                int rows, cols;
                sp_module_shape(c, mod, &rows, &cols);
                if (cols % blk == 0) fit++;
                else if (miss < 0) miss = mod;
            }
            if (miss < 0) continue;
            char name[256];
            module_name(name, sizeof name, 0, miss);
            int rows, cols;
            sp_module_shape(c, miss, &rows, &cols);
            if (!fit)
                st = sp_err_set(err, SP_EINVAL, "quantize: %s needs rows of a multiple of %d "
                                "values, and no module has them (%s has %d columns; Q4_0, Q4_1, "
                                "Q5_0, Q5_1 and Q8_0 need a multiple of 32)", sp_gtype_name(gt),
                                blk, name, cols);
            else if (gt == SP_GT_Q1_0) /* no plain 1-bit level to fall back to */
                st = sp_err_set(err, SP_EINVAL, "quantize: Q1_0 needs rows of a multiple of 128 "
                                "values, and %s has %d columns (a 1-bit level has no plain "
                                "form: leave Q1_0 out of --levels)", name, cols);
            else if (j->rank == 0 && strlen(warn) + 200 < warn_cap)
                snprintf(warn + strlen(warn), warn_cap - strlen(warn),
                         "warning: %s needs rows of a multiple of %d values: %d of %d module "
                         "shapes (e.g. %s, %d columns) get a plain %d-bit level instead\n",
                         sp_gtype_name(gt), blk, SP_MOD_COUNT - fit, SP_MOD_COUNT, name, cols,
                         o->levels[l]);
        }
        if (st) return st;
        st = o->true_sequential && !o->rtn
                 ? sp_schedule_assign_stages(j->units, j->n_units, j->size, N_HESS, err)
                 : sp_schedule_assign(j->units, j->n_units, j->size, N_HESS, !o->rtn, err);
    }
    /* The output directory is checked (and "<out>.partial" made) before any work. */
    if (st == SP_OK && j->rank == 0) st = sp_qoutput_begin(j, err);
    st = sp_mpi_agree(j->comm, st, err);
    if (st) return st;
    /* Checkpoints: a fresh run records run.json; a resumed run restores X and progress. */
    if (o->checkpoint_dir) SP_FORWARD(sp_qckpt_start(j, resume, warn, warn_cap, err));
    if (!o->rtn && j->start_layer == 0) {
        SP_FORWARD(sp_calib_windows(j->comm, j->m, o->calib_path, o->nsamples, o->ctx, o->seed,
                                    &j->calib, NULL, err));
        if (nw) st = sp_model_embed(j->m, j->calib + j->w0 * T, nw * T, j->X, err);
        double tr2 = now_s();
        if (nw && st == SP_OK) st = sp_rotation_embed(&j->rot, j->X, nw * T, err); /* x·Q */
        j->t_rotate += now_s() - tr2;
    }
    SP_FORWARD(sp_mpi_agree(j->comm, st, err));
    /* RTN needs no forward pass and no Hessian: it stays on the CPU. */
    /* GPTQ in GGUF types (gtype levels, ggml's scale rule) has no GPU path: auto means CPU. */
    /* Nor levels with their own group size: the GPU factor is prepared for --group-size. */
    int dev = o->device, cpu_only = o->scale_search == SP_QSEARCH_GGUF;
    for (int l = 0; l < o->n_levels; l++) cpu_only |= o->gtypes[l] != 0 || o->level_group[l] != 0;
    if (cpu_only && dev == SP_DEVICE_AUTO) dev = SP_DEVICE_CPU;
    if (!o->rtn) SP_FORWARD(sp_device_open(j->comm, dev, &j->gpu, err));
    j->scratch.gpu = j->gpu;
    return SP_OK;
}

static void teardown(sp_qjob *j, sp_status st) {
    if (j->rank == 0 && st != SP_OK) sp_qoutput_abort(j);
    if (j->q && j->packed) free_units_q(j);
    sp_qimatrix_free(j);
    free(j->q);
    free(j->packed);
    free(j->units);
    free(j->unit_err);
    free(j->block_crc);
    free(j->wcrc);
    free(j->calib);
    free(j->X);
    free(j->xtmp);
    free(j->run_json);
    sp_block_weights_free(&j->dense);
    sp_block_scratch_free(&j->scratch);
    sp_rotation_free(&j->rot);
    sp_cuda_close(j->gpu);
    sp_model_close(j->m);
}

/* ---- the job ------------------------------------------------------------------------------ */

/* Collective: has any rank been asked to stop? */
static int stop_requested(sp_qjob *j) {
    int mine = j->o->stop_flag && *j->o->stop_flag ? 1 : 0, any = 0;
    MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, j->comm);
    return any;
}

/* One stage of a block (see n_stages): Hessians, GPTQ, share + segment, dequantize. */
static sp_status run_stage(sp_qjob *j, int l, int stage, seg_state *sg, sp_quantize_result *res,
                           sp_err *err) {
    const sp_quantize_opts *o = j->o;
    double t0 = now_s();
    sp_status st = SP_OK;
    sp_hacc H[N_HESS];
    memset(H, 0, sizeof H);
    double *Hs[N_HESS] = {0};
    if (!o->rtn) {
        st = block_hessians(j, H, stage, err);
        int agreed = st != SP_OK; /* block_hessians' errors are every rank's already */
        if (o->imatrix_out && j->rank == 0)
            for (int h = 0; h < N_HESS && st == SP_OK; h++)
                if (hessian_stage(o, h) == stage) st = sp_qimatrix_take(j, l, h, &H[h], err);
        /* Memory: drop the Hessians this rank does not use first, then expand the ones it
         * does from packed int64 to full double in place, one at a time. */
        int need[N_HESS] = {0};
        for (int u = 0; u < j->n_units; u++)
            if (j->units[u].owner == j->rank && unit_stage(j, u) == stage)
                need[j->units[u].hessian] = 1;
        for (int h = 0; h < N_HESS; h++)
            if (!need[h]) sp_hacc_free(&H[h]);
        /* SP_FAULT (tests/mpi/failure.cmake): a rank dies, or its allocation fails, here, in
         * the middle of the block, with the Hessians reduced and GPTQ not yet started. */
        if (sp_fault_hit(&j->fault, SP_FAULT_KILL, j->rank, l)) raise(SIGKILL);
        if (st == SP_OK && sp_fault_hit(&j->fault, SP_FAULT_ALLOC, j->rank, l)) {
            size_t n = 0;
            for (int h = 0; h < N_HESS && !n; h++) n = need[h] ? (size_t)H[h].n : 0;
            st = sp_err_set(err, SP_ENOMEM, "cannot allocate %zu bytes for hessian (injected by "
                            "SP_FAULT)", n * n * sizeof(double));
        }
        for (int h = 0; h < N_HESS && st == SP_OK; h++) {
            if (!need[h]) continue;
            Hs[h] = sp_hacc_take(&H[h], err);
            if (!Hs[h]) st = SP_ENOMEM;
        }
        if (st && !agreed) sp_err_prefix(err, "model.layers.%d", l);
        st = sp_mpi_agree(j->comm, st, err);
        /* Issue 21: with no checkpoint to write there is no reason to finish the block first;
         * every rank is here with the same status, so the collective check is safe. */
        if (st == SP_OK && !o->checkpoint_dir && stop_requested(j))
            st = sp_err_set(err, SP_EINTERRUPTED, "stopped by a signal in block %d of %d (no "
                            "--checkpoint-dir: nothing saved)", l + 1, j->c->n_layers);
    } else {
        release_unowned(j, -1);
    }
    double t1 = now_s();
    res->t_hessian += t1 - t0;
    if (st == SP_OK) st = quantize_my_units(j, Hs, l, stage, err);
    for (int h = 0; h < N_HESS; h++) {
        sp_hacc_free(&H[h]);
        free(Hs[h]);
    }
    double t2 = now_s();
    res->t_gptq += t2 - t1;
    if (st == SP_OK) st = share_units(j, sg, stage, &res->t_write, err);
    if (st == SP_OK) dequant_stage(j, stage);
    res->t_share += now_s() - t2;
    return st;
}

/* One decoder block: its stages, then propagate. */
static sp_status run_block(sp_qjob *j, int l, sp_quantize_result *res, sp_err *err) {
    const sp_quantize_opts *o = j->o;
    double t0 = now_s();
    /* Rank 0 records the CRC of every tensor as it is read (issue 21; sp_qrun.h). */
    uint32_t crc[SP_BLOCK_TENSORS] = {0};
    sp_status st = sp_model_load_block_crc(j->m, l, &j->dense, j->rank == 0 ? crc : NULL, err);
    for (int i = 0; j->rank == 0 && i < SP_BLOCK_TENSORS; i++)
        j->wcrc[(size_t)l * SP_BLOCK_TENSORS + (size_t)i] = crc[i];
    /* --rotate: fold the norms and rotate, before the Hessians (input_bounds reads the folded
     * block); every rank does the same, so the block is the same bits everywhere. */
    double tr = now_s();
    if (st == SP_OK) st = sp_rotation_block(&j->rot, &j->dense, j->c, err);
    j->t_rotate += now_s() - tr;
    st = sp_mpi_agree(j->comm, st, err);
    res->t_hessian += now_s() - t0;
    if (st) return st;
    seg_state sg;
    seg_open(j, &sg, l);
    for (int s = 0; s < n_stages(o) && st == SP_OK; s++) st = run_stage(j, l, s, &sg, res, err);
    double t3 = now_s();
    st = seg_close(j, &sg, l, st, &res->t_write, err);
    res->t_share += now_s() - t3;
    t3 = now_s();
    /* X is about to be overwritten: a checkpoint still writing it must finish first. */
    if (st == SP_OK && !o->rtn && j->ck) st = sp_qckpt_before_overwrite(j, err);
    if (st == SP_OK && !o->rtn) st = propagate(j, err);
    res->t_propagate += now_s() - t3;
    free_units_q(j);
    return st;
}

sp_status sp_quantize_job(MPI_Comm comm, const sp_quantize_opts *o, int resume,
                          sp_quantize_result *res, sp_err *err) {
    sp_qjob j;
    memset(&j, 0, sizeof j);
    memset(res, 0, sizeof *res);
    j.comm = comm;
    j.o = o;
    MPI_Comm_rank(comm, &j.rank);
    MPI_Comm_size(comm, &j.size);
    double t_start = now_s();
    sp_status st = setup(&j, resume, res->warnings, sizeof res->warnings, err);
    res->t_calib = now_s() - t_start;
    res->start_layer = j.start_layer;
    res->ctx = o->ctx;

    int stopped = 0;
    for (int l = j.start_layer; st == SP_OK && l < j.c->n_layers; l++) {
        st = run_block(&j, l, res, err);
        /* --imatrix-out with checkpoints: the block's diagonals go beside the segments, so a
         * resumed run that skips this block still has them */
        if (st == SP_OK && o->imatrix_out && j.ck && j.rank == 0)
            st = sp_qimatrix_save_block(&j, l, err);
        st = sp_mpi_agree(comm, st, err);
        if (st) break;
        int done = l + 1, stop = stop_requested(&j);
        if (j.ck && done < j.c->n_layers && (done % o->checkpoint_every == 0 || stop))
            st = sp_qckpt_save(&j, done, err);
        if (st == SP_OK && stop && done < j.c->n_layers) {
            stopped = done;
            break;
        }
    }
    /* The checkpoint engine (and its HDF5 thread) ends before rank 0 writes the container. */
    if (j.ck) {
        sp_status s2 = sp_qckpt_finish(&j, res, err);
        if (st == SP_OK) st = s2;
    }
    if (st == SP_OK && stopped)
        st = sp_err_set(err, SP_EINTERRUPTED, o->checkpoint_dir
                        ? "stopped by a signal after block %d of %d; checkpoint written, continue "
                          "with: shardpress resume %s"
                        : "stopped by a signal after block %d of %d (no --checkpoint-dir%s: "
                          "nothing saved)", stopped, j.c->n_layers,
                        o->checkpoint_dir ? o->checkpoint_dir : "");
    if (st == SP_OK) {
        double tw = now_s();
        if (j.rank == 0 && o->imatrix_out) st = sp_qimatrix_write(&j, err);
        if (j.rank == 0 && st == SP_OK) st = sp_qoutput_finish(&j, err);
        if (j.rank == 0 && st != SP_OK && o->imatrix_out) (void)unlink(o->imatrix_out);
        res->t_write += now_s() - tw;
    }
    st = sp_mpi_agree(comm, st, err);

    /* Summary: peak RSS of every rank, module count, mean relative error at --bits. */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double mine = (double)ru.ru_maxrss / 1024.0;
    res->ranks = j.size;
    res->peak_rss_mb = malloc(sizeof(double) * (size_t)j.size);
    if (res->peak_rss_mb) {
        MPI_Allgather(&mine, 1, MPI_DOUBLE, res->peak_rss_mb, 1, MPI_DOUBLE, comm);
        for (int r = 0; r < j.size; r++)
            if (res->peak_rss_mb[r] > res->peak_rss_mb_max) res->peak_rss_mb_max = res->peak_rss_mb[r];
    }
    if (j.c) res->modules = SP_MOD_COUNT * j.c->n_layers;
    res->mean_rel_error = j.err_count ? j.err_sum / j.err_count : 0;
    res->checkpoints = j.checkpoints;
    res->t_rotate = o->rotate != SP_ROTATE_NONE ? j.t_rotate : 0; /* none: no such phase */
    res->seconds = now_s() - t_start;
    /* Any failure, an interruption included, removes "<out>.partial": resume rebuilds it. */
    teardown(&j, st);
    return st;
}

sp_status sp_quantize_run(MPI_Comm comm, const sp_quantize_opts *o, sp_quantize_result *res,
                          sp_err *err) {
    /* --ctx not given: min(2048, max_position_embeddings). Resolved here, before run.json is
     * written, so a resumed run reads the value that was used. */
    sp_quantize_opts oc = *o;
    int defaulted = 0;
    memset(res, 0, sizeof *res);
    SP_RETURN_IF(!o->model_dir, err, SP_EINVAL, "quantize: --model is required");
    if (oc.ctx <= 0) {
        sp_model *m = NULL;
        sp_status st = sp_mpi_agree(comm, sp_model_open(&m, oc.model_dir, err), err);
        if (st) return st;
        oc.ctx = sp_config_default_ctx(sp_model_config(m));
        sp_model_close(m);
        defaulted = 1;
    }
    sp_status st = sp_quantize_check_memory(comm, &oc, err);
    if (st == SP_OK) st = sp_quantize_job(comm, &oc, 0, res, err);
    res->ctx_defaulted = defaulted;
    return st;
}
