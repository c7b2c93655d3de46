/* sp_plan.c — the prediction: per-rank replay of quantize's allocations, and time per phase.
 * See sp_plan.h for the model; each helper names the code it mirrors. Reading the model and
 * the rates lives in sp_plan_input.c. */
#include "pipeline/plan/sp_plan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/sp_hacc.h"
#include "kernels/sp_pack.h"
#include "mpi/sp_mpi.h"
#include "pipeline/quantize/sp_schedule.h"

#define MIB 1048576.0
#define ATTN_TILE 256          /* SP_ATTN_TILE in kernels/sp_ops.h                         */
#define GPTQ_PANEL 256         /* SP_GPTQ_PANEL in kernels/sp_gptq.c                       */
#define GPTQ_ROWS 1024         /* SP_GPTQ_ROWS in kernels/sp_gptq.c                        */
#define QUAD_ROWS (1 << 22)    /* quad_trace in kernels/sp_gptq.c: rows·cols <= 4M doubles */
#define ALLREDUCE_PIECE (1 << 27) /* sp_hacc_allreduce: int64 entries per MPI_Allreduce   */
#define PAGE 4096.0
/* Rank 0's HDF5 state (library pages, metadata cache) while it writes the container at the
 * end: about 2 MiB measured on the bundled model. */
#define RANK0_FINISH (2 * MIB)
/* The checkpoint engine: its I/O thread, HDF5 and MPI-IO state: about 5 MiB measured. */
#define CKPT_ENGINE (5 * MIB)
#define SEARCH_MAX_RANKS 4096  /* the "try --ranks N" search stops here                    */

enum { N_HESS = 4, MAX_UNITS = 7 * SP_PLAN_MAX_LEVELS };

static const char *MEM_KEYS[SP_PLAN_M_COUNT] = {
    "baseline", "token_ids", "states", "scratch", "weights", "hessians", "gptq", "qlayers",
    "output", "mpi", "checkpoint"};
static const char *MEM_LABELS[SP_PLAN_M_COUNT] = {
    "process baseline (MPI, BLAS, libraries)", "calibration token ids (all windows)",
    "hidden states X_r", "one window's scratch", "block weights fp32 (one block)",
    "Hessians (4, with accumulation scratch)", "GPTQ factors and workspace",
    "quantized layers held", "output writing (rank 0)", "MPI and sharing buffers",
    "checkpoint engine (I/O thread, HDF5)"};
static const char *PHASE_KEYS[SP_PLAN_T_COUNT] = {"calibration", "hessian", "gptq", "share",
                                                   "propagate", "write"};

const char *sp_plan_mem_key(int i) { return i >= 0 && i < SP_PLAN_M_COUNT ? MEM_KEYS[i] : "?"; }
const char *sp_plan_mem_label(int i) {
    return i >= 0 && i < SP_PLAN_M_COUNT ? MEM_LABELS[i] : "?";
}
const char *sp_plan_phase_key(int i) { return i >= 0 && i < SP_PLAN_T_COUNT ? PHASE_KEYS[i] : "?"; }

void sp_plan_opts_default(sp_plan_opts *o) {
    memset(o, 0, sizeof *o);
    o->ranks = 1;
    o->nsamples = 128;
    o->ctx = 0; /* min(2048, max_position_embeddings), resolved by sp_plan_predict */
    o->bits = 4;
    o->n_levels = 1;
    o->levels[0] = 4;
    o->group_size = 128;
    o->block = 128;
    o->act_order = 1; /* quantize's defaults (sp_quantize_defaults) */
    o->hmse = 1;
    o->true_sequential = 0;
}

/* ---- geometry ---------------------------------------------------------------------------- */

typedef struct {
    const sp_plan_model *m;
    const sp_plan_opts *o;
    const sp_plan_rates *r;
    double D, F, q, kv, V, T, hd;
    double n_h[N_HESS];        /* input size of each Hessian: D, q, D, F                  */
    sp_unit units[MAX_UNITS];  /* module x level, in quantize's order; owners per R         */
    int n_units;
    double block_f32;          /* sp_block_weights_alloc bytes                             */
    double scratch;            /* xtmp + sp_block_scratch (touched part)                   */
} geom;

static double round16(double n) { return ceil(n / 16.0) * 16.0; }
static double align64(double bytes) { return ceil(bytes / 64.0) * 64.0; }

static void unit_shape(const geom *g, int mod, double *rows, double *cols) {
    switch (mod) {
    case SP_MOD_Q: *rows = g->q; *cols = g->D; break;
    case SP_MOD_K: case SP_MOD_V: *rows = g->kv; *cols = g->D; break;
    case SP_MOD_O: *rows = g->D; *cols = g->q; break;
    case SP_MOD_GATE: case SP_MOD_UP: *rows = g->F; *cols = g->D; break;
    default: *rows = g->D; *cols = g->F; break;
    }
}

static int unit_hessian(int mod) {
    return mod <= SP_MOD_V ? 0 : mod == SP_MOD_O ? 1 : mod <= SP_MOD_UP ? 2 : 3;
}

static double n_groups(const geom *g, double cols) {
    double gs = g->o->group_size <= 0 ? cols : g->o->group_size;
    return ceil(cols / gs);
}

/* sp_qlayer_alloc: scales + g_idx + codes + zeros. */
static double qlayer_bytes(const geom *g, const sp_unit *u) {
    double G = n_groups(g, u->cols);
    return (double)u->rows * G * 4 + (double)u->cols * 4 + (double)u->rows * u->cols +
           (double)u->rows * G;
}

/* sp_qshare_bytes: packed codes + scales + zeros. */
static double packed_bytes(const geom *g, const sp_unit *u) {
    double words = (double)sp_pack_nwords((size_t)u->cols, u->bits);
    return (double)u->rows * (words * 4 + n_groups(g, u->cols) * 5);
}

/* run_f32 in kernels/sp_gptq_body.h: buffers for one chunk of Rc = min(rows, 1024) rows:
 * X [C, Rc], the panel updates Ap [P, Rc] (P = the block rounded up to a 256-column panel),
 * codes, group parameters, V, and with lazy group parameters the block snapshot S, the inverse
 * block Uin and, when a group crosses a panel, Ae. */
static double gptq_run_bytes(const geom *g, const sp_unit *u) {
    double C = u->cols, G = n_groups(g, C), Rc = u->rows < GPTQ_ROWS ? u->rows : GPTQ_ROWS;
    double gs = g->o->group_size <= 0 ? C : g->o->group_size;
    double B = g->o->block < C ? g->o->block : C;
    double P = B < GPTQ_PANEL ? B * floor(GPTQ_PANEL / B) : B;
    double gmax = gs < C ? gs : C, smax = B + gs < C ? B + gs : C;
    double b = C * Rc * 4 + P * Rc * 4 + C * Rc + G * Rc * 4 + G * Rc + gmax * Rc * 4;
    if (gs < C && !g->o->act_order) { /* lazy group parameters */
        b += B * Rc * 4 + smax * smax * 4;
        int cross = 0;
        for (double g0 = B; g0 < C && !cross; g0 += gs)
            cross = (floor(g0 / P) + 1) * P < (g0 + gs < C ? g0 + gs : C);
        if (cross) b += gmax * Rc * 4;
    }
    return b;
}

/* sp_gptq_layer_error: the dequantized copy plus quad_trace's two row blocks of doubles. */
static double quad_rows(const sp_unit *u) {
    double rc = floor((double)QUAD_ROWS / u->cols);
    return rc < 1 ? 1 : rc > u->rows ? u->rows : rc;
}

/* ---- the allocation replay ----------------------------------------------------------------- */

typedef struct {
    double cur[SP_PLAN_M_COUNT], total, peak, at[SP_PLAN_M_COUNT];
    const char *phase, *peak_at;
} mem_sim;

static void take(mem_sim *s, int item, double bytes) {
    s->cur[item] += bytes;
    s->total += bytes;
    if (s->total > s->peak) {
        s->peak = s->total;
        memcpy(s->at, s->cur, sizeof s->at);
        s->peak_at = s->phase;
    }
}

static void give(mem_sim *s, int item, double bytes) {
    s->cur[item] -= bytes;
    s->total -= bytes;
}

/* A transient allocation: counted at its peak, then released. */
static void touch(mem_sim *s, int item, double bytes) {
    take(s, item, bytes);
    give(s, item, bytes);
}

static double windows_of(const geom *g, int rank, int ranks) {
    size_t w0, w1;
    sp_mpi_split_range((size_t)g->o->nsamples, rank, ranks, &w0, &w1);
    return (double)(w1 - w0);
}

/* Bytes of the embedding's file pages touched by N uniformly drawn token ids. */
static double embed_touched(const geom *g, double N) {
    double row = g->m->embed_bytes / g->V;
    if (row >= PAGE) return g->V * (1 - exp(-N / g->V)) * row;
    double per_page = floor(PAGE / row);
    return g->m->embed_bytes * (1 - exp(-N * per_page / g->V));
}

/* Replay the allocations of one rank of a run over `ranks` ranks (owners already assigned). */
static void sim_rank(const geom *g, int rank, int ranks, sp_plan_rank *out) {
    const sp_plan_opts *o = g->o;
    mem_sim s;
    memset(&s, 0, sizeof s);
    double nw = windows_of(g, rank, ranks), T = g->T, D = g->D;
    /* setup (sp_quantize.c setup + sp_calib_windows) */
    s.phase = "setup";
    take(&s, SP_PLAN_M_BASE, g->r->base_mb * MIB);
    if (o->checkpoint_every > 0) take(&s, SP_PLAN_M_CKPT, CKPT_ENGINE);
    take(&s, SP_PLAN_M_STATES, nw * T * D * 4); /* an empty rank never touches its buffer */
    take(&s, SP_PLAN_M_SCRATCH, g->scratch);
    take(&s, SP_PLAN_M_WEIGHTS, g->block_f32); /* one copy: propagate overwrites it */
    take(&s, SP_PLAN_M_IDS, (double)o->nsamples * T * 4);
    /* The stages of a block (sp_quantize.c n_stages): one with all four Hessians, or one per
     * Hessian with --true-sequential; each runs Hessians, GPTQ, share and the dequantization
     * of its --bits layers into the block before the next. */
    int n_st = o->true_sequential ? N_HESS : 1;
    double held = 0;
    for (int st = 0; st < n_st; st++) {
#define IN_STAGE(h) (n_st == 1 || (h) == st)
        /* Hessians (block_hessians): the stage's accumulators, each the packed upper triangle
         * n(n+1)/2 int64 + a window copy [T, n] double + a panel [n, 512] double */
        s.phase = "hessian";
        double acc[N_HESS] = {0}, scr[N_HESS] = {0}, full = 0;
        int need[N_HESS] = {0};
        for (int i = 0; i < g->n_units; i++)
            if (g->units[i].owner == rank && IN_STAGE(g->units[i].hessian))
                need[g->units[i].hessian] = 1;
        for (int h = 0; h < N_HESS; h++) {
            if (!IN_STAGE(h)) continue;
            double n = g->n_h[h], pw = n < SP_HACC_PANEL ? n : SP_HACC_PANEL;
            acc[h] = n * (n + 1) / 2 * 8;
            scr[h] = T * n * 8 + n * pw * 8;
            take(&s, SP_PLAN_M_HESSIANS, acc[h] + scr[h]);
        }
        /* after the stage's forward, the fp32 weights of its modules that this rank does not
         * quantize are released (release_unowned, madvise) until the stage's end writes their
         * dequantized --bits layers */
        int mine[SP_MOD_COUNT] = {0};
        for (int i = 0; i < g->n_units; i++)
            if (g->units[i].owner == rank) mine[g->units[i].module] = 1;
        double released = 0;
        for (int mod = 0; mod < SP_MOD_COUNT; mod++) {
            double rows, cols;
            unit_shape(g, mod, &rows, &cols);
            if (!mine[mod] && IN_STAGE(unit_hessian(mod))) released += rows * cols * 4;
        }
        give(&s, SP_PLAN_M_WEIGHTS, released);
        /* the all-reduce of each accumulator frees its window scratch first; Open MPI 4.1's
         * in-place MPI_Allreduce holds a temporary of half the message (measured intra-node for
         * 2 to 8 ranks) */
        for (int h = 0; h < N_HESS; h++) {
            if (!IN_STAGE(h)) continue;
            give(&s, SP_PLAN_M_HESSIANS, scr[h]);
            double p = acc[h] / 8 < ALLREDUCE_PIECE ? acc[h] / 8 : ALLREDUCE_PIECE;
            if (ranks > 1) touch(&s, SP_PLAN_M_MPI, p * 8 / 2);
        }
        /* run_stage: the accumulators this rank does not use are dropped; the others grow in
         * place (sp_hacc_take: realloc) into a full double H [n, n], one at a time */
        for (int h = 0; h < N_HESS; h++)
            if (IN_STAGE(h) && !need[h]) give(&s, SP_PLAN_M_HESSIANS, acc[h]);
        for (int h = 0; h < N_HESS; h++) {
            if (!need[h]) continue;
            take(&s, SP_PLAN_M_HESSIANS, g->n_h[h] * g->n_h[h] * 8 - acc[h]);
            full += g->n_h[h] * g->n_h[h] * 8;
        }
        /* GPTQ on my units (quantize_my_units): factors stay until the phase ends; each unit not at
         * --bits is packed as soon as it is done (pack_unit) */
        s.phase = "gptq";
        int have[N_HESS] = {0};
        double factors = 0;
        for (int i = 0; i < g->n_units; i++) {
            const sp_unit *u = &g->units[i];
            if (u->owner != rank || !IN_STAGE(u->hessian)) continue;
            double C = u->cols;
            if (!have[u->hessian]) {
                have[u->hessian] = 1;
                if (o->hmse) {
                    /* diag copy + sort keys; the diag stays: the weights of the scale search */
                    take(&s, SP_PLAN_M_GPTQ, C * 24);
                    give(&s, SP_PLAN_M_GPTQ, C * 16);
                    factors += C * 8;
                } else {
                    touch(&s, SP_PLAN_M_GPTQ, C * 24);         /* diag copy + sort keys */
                }
                take(&s, SP_PLAN_M_GPTQ, C * C * 4 + C * 9);   /* Cholesky factor, order */
                factors += C * C * 4 + C * 9;
            }
            double qb = qlayer_bytes(g, u), pb = packed_bytes(g, u);
            take(&s, SP_PLAN_M_QLAYERS, qb);
            touch(&s, SP_PLAN_M_GPTQ, gptq_run_bytes(g, u));
            if (u->bits == g->o->bits) {
                /* layer error (quad_trace, twice): row blocks of ΔW and ΔW·H in double, + the
                 * dequantized rows in float */
                double rc = quad_rows(u);
                touch(&s, SP_PLAN_M_GPTQ, rc * C * 20);
                held += qb;
            } else {
                take(&s, SP_PLAN_M_QLAYERS, pb);
                give(&s, SP_PLAN_M_QLAYERS, qb);
                held += pb;
            }
        }
        give(&s, SP_PLAN_M_GPTQ, factors);
        give(&s, SP_PLAN_M_HESSIANS, full);
        /* share_units: --bits layers broadcast to every rank and kept; the other levels, packed,
         * sent to rank 0, which appends each unit to the block's segment as it arrives and frees
         * it; owners free their packed units too */
        s.phase = "share";
        for (int i = 0; i < g->n_units; i++) {
            const sp_unit *u = &g->units[i];
            if (!IN_STAGE(u->hessian)) continue;
            double pb = packed_bytes(g, u), qb = qlayer_bytes(g, u);
            int keep = u->bits == o->bits, mine_u = u->owner == rank;
            if (keep) {
                take(&s, SP_PLAN_M_MPI, pb);                  /* sp_qshare_bcast's buffer */
                if (!mine_u) {
                    take(&s, SP_PLAN_M_QLAYERS, qb);
                    held += qb;
                }
                give(&s, SP_PLAN_M_MPI, pb);
                if (rank == 0) touch(&s, SP_PLAN_M_OUTPUT, pb); /* the segment writer packs it */
            } else {
                if (rank == 0 && !mine_u) take(&s, SP_PLAN_M_MPI, pb);
                if (rank == 0 && !mine_u) give(&s, SP_PLAN_M_MPI, pb);
                if (mine_u) {
                    give(&s, SP_PLAN_M_QLAYERS, pb);
                    held -= pb;
                }
            }
        }
        /* dequant_stage: the stage's --bits layers are dequantized into the block in place,
         * faulting the released pages back in */
        take(&s, SP_PLAN_M_WEIGHTS, released);
#undef IN_STAGE
    }
    /* propagate: forward through the quantized block; then the block's layers are freed */
    s.phase = "propagate";
    give(&s, SP_PLAN_M_QLAYERS, held);
    double block_peak = s.peak;
    /* finish (rank 0, sp_qoutput_finish): the dense tensors in fp32 one at a time, then the
     * segments unit by unit (sp_segment_each: the wire form, the unpacked layer, and the
     * container's packed codes) */
    double finish_peak = 0;
    if (rank == 0) {
        s.phase = "finish";
        if (o->checkpoint_every > 0) give(&s, SP_PLAN_M_CKPT, CKPT_ENGINE); /* ended before */
        take(&s, SP_PLAN_M_OUTPUT, RANK0_FINISH);
        touch(&s, SP_PLAN_M_OUTPUT, g->V * D * 4);
        double umax = 0;
        for (int i = 0; i < g->n_units; i++) {
            double b = qlayer_bytes(g, &g->units[i]) + packed_bytes(g, &g->units[i]);
            umax = b > umax ? b : umax;
        }
        touch(&s, SP_PLAN_M_OUTPUT, umax);
        finish_peak = s.total + (umax > g->V * D * 4 ? umax : g->V * D * 4);
    }
    memset(out, 0, sizeof *out);
    out->rank = rank;
    out->windows = (int)nw;
    memcpy(out->item, s.at, sizeof out->item);
    out->heap = s.peak;
    out->peak_at = s.peak_at;
    /* RSS: the block-phase peak comes with every block's pages mapped (the last block), the
     * finish peak with the embedding and the head too. */
    const sp_plan_model *m = g->m;
    double blocks = (double)m->cfg.n_layers * m->block_bytes;
    double emb = nw > 0 ? embed_touched(g, nw * T) : 0;
    double rss = block_peak + blocks + emb;
    if (rank == 0) {
        out->mapped = blocks + m->embed_bytes + m->head_bytes;
        double r2 = finish_peak + out->mapped;
        rss = r2 > rss ? r2 : rss;
    } else {
        out->mapped = blocks + emb;
    }
    out->rss = rss;
}

/* Fill g->units for `ranks` ranks with quantize's own scheduler. */
static sp_status assign(geom *g, int ranks, sp_err *err) {
    const sp_plan_opts *o = g->o;
    g->n_units = 0;
    for (int mod = 0; mod < SP_MOD_COUNT; mod++)
        for (int l = 0; l < o->n_levels; l++) {
            sp_unit *u = &g->units[g->n_units++];
            double rows, cols;
            unit_shape(g, mod, &rows, &cols);
            u->module = mod;
            u->bits = o->levels[l];
            u->hessian = unit_hessian(mod);
            u->rows = (int)rows;
            u->cols = (int)cols;
            u->owner = 0;
        }
    return o->true_sequential ? sp_schedule_assign_stages(g->units, g->n_units, ranks, N_HESS, err)
                              : sp_schedule_assign(g->units, g->n_units, ranks, N_HESS, 1, err);
}

/* Rank 0, the other rank with the largest heap, and the maxima over all ranks. */
static sp_status sim_all(geom *g, int ranks, sp_plan_rank *r0, sp_plan_rank *other,
                         double *heap_max, double *rss_max, sp_err *err) {
    SP_FORWARD(assign(g, ranks, err));
    sim_rank(g, 0, ranks, r0);
    *other = *r0;
    *heap_max = r0->heap;
    *rss_max = r0->rss;
    for (int r = 1; r < ranks; r++) {
        sp_plan_rank x;
        sim_rank(g, r, ranks, &x);
        if (r == 1 || x.heap > other->heap) *other = x;
        if (x.heap > *heap_max) *heap_max = x.heap;
        if (x.rss > *rss_max) *rss_max = x.rss;
    }
    return SP_OK;
}

/* ---- time ---------------------------------------------------------------------------------- */

/* sp_block_forward on one window: the seven products plus the tiled causal attention
 * (kernels/sp_attention.c: two sgemm per query tile over the visible keys) in flops, and the
 * element-wise work (norms, RoPE, softmax over the visible scores, SwiGLU, residual adds),
 * charged like the Hessian's scalar loop (round_ns per element). */
static void forward_taps_cost(const geom *g, int last_tap, double *flops, double *elems);
static void forward_cost(const geom *g, double *flops, double *elems) {
    forward_taps_cost(g, 4, flops, elems);
}

/* sp_block_forward_taps up to tap last_tap (0 xn1, 1 attn, 2 xn2, 3 act, 4 the whole block):
 * the products and element-wise work of the part that runs. */
static void forward_taps_cost(const geom *g, int last_tap, double *flops, double *elems) {
    double T = g->T, D = g->D, F = g->F, q = g->q, kv = g->kv, vis = 0;
    double lin = 2 * T * ((last_tap >= 1 ? D * q + 2 * D * kv : 0) + (last_tap >= 2 ? q * D : 0) +
                          (last_tap >= 3 ? 2 * D * F : 0) + (last_tap >= 4 ? D * F : 0));
    for (double t0 = 0; t0 < T; t0 += ATTN_TILE) {
        double nq = T - t0 < ATTN_TILE ? T - t0 : ATTN_TILE;
        vis += nq * (t0 + nq);
    }
    double Hq = g->m->cfg.n_heads, at = last_tap >= 1;
    *flops = lin + at * 4 * g->hd * vis * Hq;
    *elems = (1 + (last_tap >= 2) + (last_tap >= 2) + (last_tap >= 4)) * T * D +
             at * (T * (q + kv) + vis * Hq) + (last_tap >= 3) * 2 * T * F;
}

/* sp_hacc_add on one window: panel dgemms over the upper triangle, one rounding per entry of
 * the triangle and one conversion per input value. */
static void hacc_cost(const geom *g, double n, double *flops, double *entries) {
    *flops = 0;
    *entries = g->T * n;
    for (double j0 = 0; j0 < n; j0 += SP_HACC_PANEL) {
        double pw = n - j0 < SP_HACC_PANEL ? n - j0 : SP_HACC_PANEL;
        *flops += 2 * g->T * (j0 + pw) * pw;
        *entries += j0 * pw + pw * (pw + 1) / 2;
    }
}

/* One unit's GPTQ: the updates (every column pair j < k, one multiply-add per row), the
 * scalar quantizer (about four roundings' worth per weight, plus the group parameters), and
 * the two dgemm traces of the relative layer error (weight energy and layer error), which
 * quantize computes only for units at --bits. */
static void gptq_cost(const geom *g, const sp_unit *u, double *sflops, double *dflops,
                      double *scalar) {
    double R = u->rows, C = u->cols;
    *sflops = R * C * (C - 1);
    *dflops = u->bits == g->o->bits ? 4 * R * C * C : 0; /* layer error only at --bits */
    *scalar = 4 * R * C;
    /* --scale-search hmse: 80 shrink steps, each quantizing the group once more */
    if (g->o->hmse) *scalar += 80 * 2 * R * C;
}

static void predict_time(geom *g, int ranks, sp_plan_result *res) {
    const sp_plan_opts *o = g->o;
    const sp_plan_rates *r = g->r;
    const double L = g->m->cfg.n_layers, sg = r->sgemm_gflops * 1e9, dg = r->dgemm_gflops * 1e9;
    const double ns = r->round_ns * 1e-9, wr = r->write_mb_s * 1e6, rd = r->read_mb_s * 1e6;
    const double net = r->net_mb_s * 1e6;
    double nw = windows_of(g, 0, ranks), fwd, fwd_el;
    forward_cost(g, &fwd, &fwd_el);
    /* hessian: read + dense forward + accumulation + all-reduce */
    double hs = 0, hd = 0, hn = 0, ar = 0;
    for (int h = 0; h < N_HESS; h++) {
        double f, e, n = g->n_h[h];
        hacc_cost(g, n, &f, &e);
        hd += f;
        hn += e;
        if (ranks > 1) ar += 2 * n * (n + 1) / 2 * 8 * (ranks - 1) / ranks / net;
    }
    /* stages (sp_quantize.c): one dense forward, or with --true-sequential one forward per
     * Hessian, each only up to its tap; the stages run one after the other */
    const int n_st = o->true_sequential ? N_HESS : 1;
    double hs_el = 0;
    for (int st = 0; st < n_st; st++) {
        double f, e;
        forward_taps_cost(g, n_st == 1 ? 4 : st, &f, &e);
        hs += nw * f;
        hs_el += nw * e;
    }
    /* run_stage's expansion of the Hessians a rank uses (the slowest rank: every rank waits) */
    double fin = 0;
    for (int st = 0; st < n_st; st++) {
        double fin_st = 0;
        for (int rk = 0; rk < ranks && rk < g->n_units; rk++) {
            int need[N_HESS] = {0};
            double f = 0;
            for (int i = 0; i < g->n_units; i++)
                if (g->units[i].owner == rk && (n_st == 1 || g->units[i].hessian == st))
                    need[g->units[i].hessian] = 1;
            for (int h = 0; h < N_HESS; h++) f += need[h] ? g->n_h[h] * g->n_h[h] / 2 : 0;
            fin_st = f > fin_st ? f : fin_st;
        }
        fin += fin_st;
    }
    double t_hess = g->m->block_bytes / rd + hs / sg + nw * hd / dg + (nw * hn + hs_el) * ns + ar +
                    fin * ns;
    /* gptq: per stage, the busiest rank's units (a factorization per Hessian it reads) */
    double t_gptq = 0, fs_max = 0, fd_max = 0;
    for (int st = 0; st < n_st; st++) {
        double t_st = 0, fs_st = 0, fd_st = 0;
        for (int rk = 0; rk < ranks && rk < g->n_units; rk++) {
            int have[N_HESS] = {0};
            double t = 0, fs = 0, fdd = 0;
            for (int i = 0; i < g->n_units; i++) {
                const sp_unit *u = &g->units[i];
                if (u->owner != rk || (n_st > 1 && u->hessian != st)) continue;
                double s1, d1, sc;
                gptq_cost(g, u, &s1, &d1, &sc);
                if (!have[u->hessian]) {
                    have[u->hessian] = 1;
                    s1 += pow(u->cols, 3) / 3;
                }
                t += s1 / sg + d1 / dg + sc * ns;
                fs += s1;
                fdd += d1;
            }
            if (t > t_st) t_st = t, fs_st = fs, fd_st = fdd;
        }
        t_gptq += t_st;
        fs_max += fs_st;
        fd_max += fd_st;
    }
    /* share: broadcasts (binomial tree) and sends to rank 0, then rank 0's segment write */
    double t_share = 0, seg = 0;
    for (int i = 0; i < g->n_units; i++) {
        const sp_unit *u = &g->units[i];
        double pb = packed_bytes(g, u);
        seg += pb;
        if (ranks > 1 && u->bits == o->bits) t_share += pb * ceil(log2((double)ranks)) / net;
        else if (ranks > 1 && u->owner != 0) t_share += pb / net;
    }
    double t_seg = seg / wr;
    t_share += t_seg;
    double t_prop = nw * (fwd / sg + fwd_el * ns);
    double dense = g->V * g->D * 4 * (g->m->cfg.tie_embeddings ? 1 : 2);
    double t_write = L * t_seg + dense / wr + L * seg / rd + L * seg / wr;
    res->t[SP_PLAN_T_CALIB] = (double)o->nsamples * g->T * g->D * 4 / rd;
    res->t[SP_PLAN_T_HESSIAN] = L * t_hess;
    res->t[SP_PLAN_T_GPTQ] = L * t_gptq;
    res->t[SP_PLAN_T_SHARE] = L * t_share;
    res->t[SP_PLAN_T_PROPAGATE] = L * t_prop;
    res->t[SP_PLAN_T_WRITE] = t_write;
    res->flops_sgemm = L * (hs + nw * fwd + fs_max);
    res->flops_dgemm = L * (nw * hd + fd_max);
    /* checkpoints: X of every rank plus the block CRCs, written in the background; the main
     * thread waits only if a write outlasts the next block's Hessian, GPTQ and share */
    res->n_checkpoints = 0;
    res->ckpt_bytes = res->ckpt_seconds = 0;
    double blocked = 0;
    if (o->checkpoint_every > 0) {
        for (int done = 1; done < (int)L; done++)
            res->n_checkpoints += done % o->checkpoint_every == 0;
        res->ckpt_bytes = (double)o->nsamples * g->T * g->D * 4 + L * 8;
        res->ckpt_seconds = res->ckpt_bytes / wr;
        double slack = t_hess + t_gptq + t_share;
        if (res->ckpt_seconds > slack) blocked = res->n_checkpoints * (res->ckpt_seconds - slack);
    }
    res->t_total = blocked;
    for (int i = 0; i < SP_PLAN_T_COUNT; i++) res->t_total += res->t[i];
}

/* ---- validation and the whole prediction -------------------------------------------------- */

static sp_status check(const sp_plan_model *m, const sp_plan_opts *o, const sp_plan_rates *r,
                       sp_err *err) {
    const sp_config *c = &m->cfg;
    SP_RETURN_IF(o->ranks < 1, err, SP_EINVAL, "plan: --ranks %d must be >= 1", o->ranks);
    SP_RETURN_IF(o->nsamples < 1, err, SP_EINVAL, "plan: --nsamples %d must be >= 1", o->nsamples);
    SP_RETURN_IF(o->ctx < 2, err, SP_EINVAL, "plan: --ctx %d must be >= 2", o->ctx);
    SP_RETURN_IF(o->ctx > c->max_seq_len, err, SP_EINVAL, "plan: --ctx %d is larger than the "
                 "model's maximum (max_position_embeddings %d)", o->ctx, c->max_seq_len);
    SP_RETURN_IF(o->bits < 2 || o->bits > 8, err, SP_EINVAL, "plan: --bits %d is outside 2..8",
                 o->bits);
    SP_RETURN_IF(o->n_levels < 1 || o->n_levels > SP_PLAN_MAX_LEVELS, err, SP_EINVAL,
                 "plan: --levels needs 1..%d values", SP_PLAN_MAX_LEVELS);
    int has = 0;
    for (int i = 0; i < o->n_levels; i++) {
        SP_RETURN_IF(o->levels[i] < 2 || o->levels[i] > 8, err, SP_EINVAL,
                     "plan: --levels value %d is outside 2..8", o->levels[i]);
        SP_RETURN_IF(i > 0 && o->levels[i] <= o->levels[i - 1], err, SP_EINVAL,
                     "plan: --levels must be ascending and unique");
        has |= o->levels[i] == o->bits;
    }
    SP_RETURN_IF(!has, err, SP_EINVAL, "plan: --bits %d is not among --levels", o->bits);
    SP_RETURN_IF(o->group_size == 0 || o->group_size < -1, err, SP_EINVAL,
                 "plan: --group-size %d must be >= 1, or -1 for one group per row", o->group_size);
    SP_RETURN_IF(o->block < 1, err, SP_EINVAL, "plan: --block %d must be >= 1", o->block);
    SP_RETURN_IF(o->checkpoint_every < 0, err, SP_EINVAL, "plan: --checkpoint-every %d must be "
                 ">= 1", o->checkpoint_every);
    SP_RETURN_IF(!(o->mem_per_rank >= 0), err, SP_EINVAL, "plan: --mem-per-rank must be >= 0");
    SP_RETURN_IF(c->dim < 1 || c->hidden_dim < 1 || c->n_layers < 1 || c->n_heads < 1 ||
                 c->n_kv_heads < 1 || c->head_dim < 1 || c->vocab_size < 1, err, SP_EINVAL,
                 "plan: the model's sizes must be positive");
    double rates[7] = {r->sgemm_gflops, r->dgemm_gflops, r->round_ns, r->write_mb_s,
                       r->read_mb_s, r->net_mb_s, r->base_mb};
    for (int i = 0; i < 7; i++)
        SP_RETURN_IF(!(rates[i] > 0) || !isfinite(rates[i]), err, SP_EINVAL,
                     "plan: rate %d (%g) must be a positive number", i, rates[i]);
    return SP_OK;
}

static void geom_init(geom *g, const sp_plan_model *m, const sp_plan_opts *o,
                      const sp_plan_rates *r) {
    memset(g, 0, sizeof *g);
    const sp_config *c = &m->cfg;
    g->m = m;
    g->o = o;
    g->r = r;
    g->D = c->dim;
    g->F = c->hidden_dim;
    g->hd = c->head_dim;
    g->q = (double)c->n_heads * c->head_dim;
    g->kv = (double)c->n_kv_heads * c->head_dim;
    g->V = c->vocab_size;
    g->T = o->ctx;
    g->n_h[0] = g->D;
    g->n_h[1] = g->q;
    g->n_h[2] = g->D;
    g->n_h[3] = g->F;
    double bias = c->qkv_bias ? round16(g->q) + 2 * round16(g->kv) : 0;
    g->block_f32 = 4 * (2 * round16(g->D) + round16(g->q * g->D) + 2 * round16(g->kv * g->D) +
                        round16(g->D * g->q) + 3 * round16(g->D * g->F) + bias);
    /* xtmp + sp_block_scratch_alloc's views; of the [T, T] scores only the query tile's rows
     * [min(T, 256), T] are ever written, so only those pages become resident. */
    double T = g->T, tile = T < ATTN_TILE ? T : ATTN_TILE;
    g->scratch = T * g->D * 4 + align64(T * g->D * 4) * 2 + align64(T * g->q * 4) * 2 +
                 align64(T * g->kv * 4) * 2 + align64(tile * T * 4) + align64(T * g->F * 4) * 2 +
                 align64(T * (g->hd / 2) * 4) * 2;
}

static int fits_at(geom *g, int ranks, double mem, sp_err *err, sp_status *st) {
    sp_plan_rank r0, w;
    double heap, rss;
    *st = sim_all(g, ranks, &r0, &w, &heap, &rss, err);
    return *st == SP_OK && heap <= mem;
}

sp_status sp_plan_predict(const sp_plan_model *m, const sp_plan_opts *oin, const sp_plan_rates *r,
                          sp_plan_result *res, sp_err *err) {
    memset(res, 0, sizeof *res);
    /* ctx 0: quantize's default, min(2048, max_position_embeddings) */
    sp_plan_opts oc = *oin;
    if (oc.ctx <= 0) oc.ctx = sp_config_default_ctx(&m->cfg);
    const sp_plan_opts *o = &oc;
    SP_FORWARD(check(m, o, r, err));
    geom g;
    geom_init(&g, m, o, r);
    SP_FORWARD(sim_all(&g, o->ranks, &res->rank0, &res->other, &res->heap_max, &res->rss_max,
                       err));
    predict_time(&g, o->ranks, res);
    res->fits = -1;
    if (o->mem_per_rank <= 0) return SP_OK;
    res->fits = res->heap_max <= o->mem_per_rank;
    if (res->fits) return SP_OK;
    sp_status st = SP_OK;
    /* Fewest ranks that fit: X_r shrinks with R (binary search; rank counts above the number
     * of windows only spread the GPTQ units thinner). */
    int hi = o->nsamples > SEARCH_MAX_RANKS ? SEARCH_MAX_RANKS : o->nsamples;
    if (hi > o->ranks && fits_at(&g, hi, o->mem_per_rank, err, &st)) {
        int lo = o->ranks; /* does not fit */
        while (hi - lo > 1) {
            int mid = lo + (hi - lo) / 2;
            if (fits_at(&g, mid, o->mem_per_rank, err, &st)) hi = mid;
            else lo = mid;
            SP_FORWARD(st);
        }
        res->min_ranks = hi;
    }
    SP_FORWARD(st);
    /* Most windows that fit on R ranks (token ids and X_r grow with S). */
    sp_plan_opts o2 = *o;
    g.o = &o2;
    int lo = 0, up = o->nsamples; /* lo fits (0 = none known), up does not */
    while (up - lo > 1) {
        o2.nsamples = lo + (up - lo) / 2;
        if (fits_at(&g, o->ranks, o->mem_per_rank, err, &st)) lo = o2.nsamples;
        else up = o2.nsamples;
        SP_FORWARD(st);
    }
    res->max_nsamples = lo;
    return SP_OK;
}

/* ---- pieces shared with the search predictor (sp_plan_search.c) ---------------------------- */

/* The geometry of windows of T tokens with default options (only the shapes matter here). */
static void geom_for_ctx(geom *g, const sp_plan_model *m, int T, sp_plan_opts *o, sp_plan_rates *r) {
    sp_plan_opts_default(o);
    o->ctx = T;
    sp_plan_rates_default(r);
    geom_init(g, m, o, r);
}

void sp_plan_block_cost(const sp_plan_model *m, int T, double *flops, double *elems) {
    sp_plan_opts o;
    sp_plan_rates r;
    geom g;
    geom_for_ctx(&g, m, T, &o, &r);
    forward_cost(&g, flops, elems);
}

void sp_plan_block_bytes(const sp_plan_model *m, int T, double *block_f32, double *scratch) {
    sp_plan_opts o;
    sp_plan_rates r;
    geom g;
    geom_for_ctx(&g, m, T, &o, &r);
    *block_f32 = g.block_f32;
    *scratch = g.scratch;
}
