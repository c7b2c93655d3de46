/* sp_search_int.h — state shared by the search's files (sp_search.c: the loop,
 * sp_search_ckpt.c: search.json and checkpoints, sp_search_out.c: the outputs). Not public. */
#ifndef SP_SEARCH_INT_H
#define SP_SEARCH_INT_H

#include "pipeline/search/sp_search.h"

typedef struct {
    double fitness;      /* the parent's KL on the generation's last stage */
    int accepted;
    int64_t evals, full; /* layer evaluations of the generation, and what full re-runs cost */
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
} sp_search_state;

/* sp_search_out.c */
sp_status sp_search_write_outputs(const sp_search_state *s, sp_err *err);

/* sp_search_ckpt.c: search.json (rank 0, atomic) */
sp_status sp_search_write_run(const sp_search_state *s, sp_err *err);
/* Collective: a checkpoint of s after generation s->gen. */
sp_status sp_search_checkpoint(sp_search_state *s, sp_err *err);
/* Collective: load the newest checkpoint into s (parent, gen, rng, history, counters);
 * *found = 0 when there is none yet. warn gets lines for skipped corrupt checkpoints. */
sp_status sp_search_restore(sp_search_state *s, int *found, char *warn, size_t cap, sp_err *err);

#endif
