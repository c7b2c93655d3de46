/* sp_search.h — `shardpress search`: per-module bit widths under a global budget, chosen by
 * EvoPress's evolutionary search (Sieberling et al., arXiv 2410.14649, Algorithm 1) whose
 * fitness is the KL divergence to the dense model, or by a Hessian-aware greedy allocation.
 *
 * Evolution, one generation:
 *   1. `offspring` children of the parent by level-switch mutation (sp_sgenome.h);
 *   2. selection in stages: stage s scores its candidates on fresh calibration windows of
 *      stages[s] tokens (drawn with a stream seeded by (seed, generation, stage)) and keeps
 *      the survivors[s] best; the parent joins before the last stage;
 *   3. the best of the last stage is the next parent ("accepted" when it is a child).
 * Candidates are evaluated by sp_seval.h (windows × candidates over ranks, layer-major, with
 * the parent's states as a prefix cache).
 *
 * Outputs (rank 0, written at the end only, each to a temporary then renamed, MAP last):
 *   MAP                 "module bits" lines, the format of eval/generate/export --bits-map
 *   MAP.evopress.txt    "model.layers.i.self_attn.q_proj: 3" lines (EvoPress's format)
 *   MAP.svg             bits per module along the depth, one row per module kind
 *   MAP.history.json    fitness, acceptance and layer evaluations per generation
 * Checkpoints (--checkpoint-dir D): D/search.json (the options and input fingerprints) and
 * one checkpoint through ckpt/ per generation (parent, generation, RNG state, counters);
 * `shardpress resume D` finishes with the same MAP as an uninterrupted run.
 */
#ifndef SP_SEARCH_H
#define SP_SEARCH_H

#include <mpi.h>
#include <signal.h>
#include <stdint.h>

#include "common/sp_error.h"
#include "pipeline/search/sp_seval.h"

#define SP_SEARCH_MAX_STAGES 8

typedef enum { SP_SEARCH_EVO = 0, SP_SEARCH_GREEDY } sp_search_method;

typedef struct {
    sp_seval_opts ev;              /* QDIR, --dense, --calib, --ctx, --groups              */
    const char *out_map;
    double target_bits;
    sp_search_method method;
    int generations, offspring;
    int n_stages;
    int stages[SP_SEARCH_MAX_STAGES];     /* tokens per stage                          */
    int survivors[SP_SEARCH_MAX_STAGES];  /* candidates kept after each stage          */
    int init_greedy;               /* --init greedy                                        */
    int init_candidates;           /* random starts scored when uniform does not fit       */
    uint64_t seed;
    const char *checkpoint_dir;
    int progress_to_stderr;        /* --json: progress lines go to stderr                  */
    volatile sig_atomic_t *stop_flag;
} sp_search_opts;

typedef struct {
    double target_bits, avg_bits, fitness_kl;
    int generations, accepted, start_generation, uniform_start;
    int64_t layer_evals, layer_evals_full;
    double seconds;
    int ranks;
    int n_levels, levels[SP_SGENOME_MAX_LEVELS];
    double uniform_avg[SP_SGENOME_MAX_LEVELS];
    int ctx, pool_windows;
    int checkpoints;
    double peak_rss_mb_max;        /* largest peak RSS over the ranks                      */
} sp_search_result;

/* Defaults: 150 generations, 128 offspring, stages 2048,16384,131072 tokens with 16,4,1
 * survivors, --groups size, --init uniform, 8 initial candidates, seed 0, topk 64. */
void sp_search_defaults(sp_search_opts *o);

/* The rules of a stage schedule, shared by `search` and `plan --search` (cmd prefixes the
 * message): at least one stage, one survivor count per stage, tokens not decreasing,
 * survivors >= 1 and not increasing, the first survivors <= offspring. */
sp_status sp_search_check_schedule(const char *cmd, const int *stages, int n_stages,
                                   const int *survivors, int n_survivors, int offspring,
                                   sp_err *err);

/* Collective. @return the same status on every rank; SP_EINTERRUPTED after a checkpoint when
 * *stop_flag was raised. */
sp_status sp_search_run(MPI_Comm comm, const sp_search_opts *o, sp_search_result *res,
                        sp_err *err);

/* 1 when dir holds a search checkpoint directory (search.json). */
int sp_search_is_checkpoint_dir(const char *dir);
/* Collective: continue the search whose checkpoint directory is dir. */
sp_status sp_search_resume(MPI_Comm comm, const char *dir, volatile sig_atomic_t *stop_flag,
                           sp_search_result *res, sp_err *err);

#endif
