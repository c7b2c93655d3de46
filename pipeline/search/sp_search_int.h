/* sp_search_int.h — state shared by the search's files (sp_search.c: the loop,
 * sp_search_ckpt.c: search.json and checkpoints, sp_search_out.c: the outputs). Not public. */
#ifndef SP_SEARCH_INT_H
#define SP_SEARCH_INT_H

#include "pipeline/search/sp_search.h"
#include "pipeline/search/sp_ssurrogate.h"

typedef struct {
    double fitness;      /* the parent's KL on the generation's last stage */
    int accepted;
    int64_t evals, full; /* layer evaluations of the generation, and what full re-runs cost */
    double predicted;    /* the surrogate's KL for the winner: the old parent's measured KL on
                          * the last stage + pred(winner) − pred(old parent); NAN without one */
    double rho;          /* Spearman(prediction, measured KL) over the first stage; NAN: none */
} sp_search_hist;

typedef struct {
    MPI_Comm comm;
    int rank, size;
    const sp_search_opts *o;
    sp_seval *ev;
    const sp_sgenome_space *space;
    uint8_t *parent;             /* [n modules] level indices                         */
    double parent_fitness;
    int gen;                     /* generations done                                  */
    uint64_t rng;                /* mutation stream (checkpointed)                    */
    sp_search_hist *hist;        /* [generations]                                     */
    int n_hist;
    int64_t evals, full;         /* totals                                            */
    int accepted;
    int stage_windows[SP_SEARCH_MAX_STAGES];
    int uniform_start;
    int checkpoints;
    double *table;               /* [n · n_levels] ΔKL sensitivity, or NULL              */
    int exact;                   /* the table's allocation was the exact DP             */
    int64_t sens_evals, sens_full;
    double sens_seconds;
    /* The surrogate (when a table exists) and what it was fitted on, for the checkpoints:
     * obs_g [n_obs, n], obs_y [n_obs], obs_draw [n_obs] (draw number, ascending). */
    int sur_on;
    sp_ssurrogate sur;
    uint8_t *obs_g;
    double *obs_y;
    int32_t *obs_draw;
    int64_t n_obs, cap_obs;
    int32_t n_draws;
} sp_search_state;

/* Append one draw to the observations and the surrogate (every rank; no MPI). */
sp_status sp_search_observe(sp_search_state *s, const uint8_t *const *g, const double *y, int n,
                            sp_err *err);

/* sp_search_sens.c: the table of s->table as JSON at path (rank 0, atomic); win[0..nw) are
 * the pool windows it was measured on. */
sp_status sp_search_sens_save(const sp_search_state *s, const char *path, const int *win, int nw,
                              sp_err *err);
/* Collective: read path into s->table, checked against the container and dense model, and
 * its cost (layer_evaluations, _full) into s->sens_evals / sens_full. */
sp_status sp_search_sens_load(sp_search_state *s, const char *path, sp_err *err);

/* sp_search_out.c */
sp_status sp_search_write_outputs(const sp_search_state *s, sp_err *err);
/* Before any work (rank 0): the map file can be created where --out says (not a directory,
 * its directory exists and is writable). The message names the path and the cause. */
sp_status sp_search_check_out(const char *map, sp_err *err);

/* sp_search_ckpt.c: search.json (rank 0, atomic) */
sp_status sp_search_write_run(const sp_search_state *s, sp_err *err);
/* Collective: a checkpoint of s after generation s->gen. */
sp_status sp_search_checkpoint(sp_search_state *s, sp_err *err);
/* Collective: load the newest checkpoint into s (parent, gen, rng, history, counters);
 * *found = 0 when there is none yet. warn gets lines for skipped corrupt checkpoints. */
sp_status sp_search_restore(sp_search_state *s, int *found, char *warn, size_t cap, sp_err *err);

#endif
