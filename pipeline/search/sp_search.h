/* sp_search.h — `shardpress search`: per-module bit widths under a global budget, chosen by
 * EvoPress's evolutionary search (Sieberling et al., arXiv 2410.14649, Algorithm 1) whose
 * fitness is the KL divergence to the dense model, or by the exact budgeted allocation of a
 * measured ΔKL sensitivity table (--method sensitivity; the default start of the evolution).
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

#define SP_SEARCH_MAX_TARGETS 16

typedef enum { SP_SEARCH_EVO = 0, SP_SEARCH_SENSITIVITY } sp_search_method;
typedef enum { SP_SEARCH_INIT_UNIFORM = 0, SP_SEARCH_INIT_SENSITIVITY } sp_search_init;

typedef struct {
    sp_seval_opts ev;              /* QDIR, --dense, --calib, --ctx, --groups              */
    const char *out_map;
    double target_bits;            /* one target in stored bits (when target_spec is NULL)  */
    const char *target_spec;       /* --target-bits as given: "3.61" or "u2.5,u3,4.2" (see
                                    * sp_search_targets); resolved against the container   */
    sp_search_method method;
    sp_search_init init;
    const char *sensitivity_file;  /* --sensitivity FILE: reuse a table instead of measuring */
    int sensitivity_tokens;        /* tokens of the table's windows (0: the first stage's)  */
    int screen;                    /* --screen F: F × offspring children, the surrogate's
                                    * best `offspring` are evaluated (1: plain EvoPress)    */
    int64_t max_evals;             /* --max-evals N: start no generation whose worst case
                                    * (no prefix reuse) could take the layer evaluations
                                    * (table included) past N; never exceeded; 0: no limit */
    int generations, offspring;
    int n_stages;
    int stages[SP_SEARCH_MAX_STAGES];     /* tokens per stage                          */
    int survivors[SP_SEARCH_MAX_STAGES];  /* candidates kept after each stage          */
    int init_candidates;           /* random starts scored when uniform does not fit       */
    uint64_t seed;
    const char *checkpoint_dir;
    int progress_to_stderr;        /* --json: progress lines go to stderr                  */
    volatile sig_atomic_t *stop_flag;
} sp_search_opts;

typedef struct {
    double target_bits, avg_bits, fitness_kl;
    int64_t layer_evals;
    int start_generation;
    char out[1024];
} sp_search_target_result;

typedef struct {
    double target_bits, avg_bits, fitness_kl;   /* of the last target                   */
    int generations, accepted, start_generation, uniform_start;
    int64_t layer_evals, layer_evals_full;
    double seconds;
    int ranks;
    int n_modules, n_levels, levels[SP_SGENOME_MAX_LEVELS];
    double uniform_avg[SP_SGENOME_MAX_LEVELS];
    int ctx, pool_windows;
    int reference_windows;         /* pool windows the dense model ran (drawn at least once) */
    int checkpoints;
    double peak_rss_mb_max;        /* largest peak RSS over the ranks                      */
    int n_targets;                 /* every target of the run, in the order given          */
    sp_search_target_result per[SP_SEARCH_MAX_TARGETS];
    int sens_measured, sens_loaded, sens_exact; /* table measured / read; DP (1) or λ (0)  */
    int sens_windows;
    int64_t sens_evals, sens_evals_full;
    double sens_seconds;
} sp_search_result;

/* Defaults: 150 generations, 128 offspring, stages 2048,16384,131072 tokens with 16,4,1
 * survivors, --groups size, --init uniform, 8 initial candidates, seed 0, topk 64. */
void sp_search_defaults(sp_search_opts *o);

/* "evolution", "sensitivity". */
const char *sp_search_method_name(sp_search_method m);

/* The rules of a stage schedule, shared by `search` and `plan --search` (cmd prefixes the
 * message): at least one stage, one survivor count per stage, tokens not decreasing,
 * survivors >= 1 and not increasing, the first survivors <= offspring. */
sp_status sp_search_check_schedule(const char *cmd, const int *stages, int n_stages,
                                   const int *survivors, int n_survivors, int offspring,
                                   sp_err *err);

/* The targets of spec ("3.61", "u3", "u2.5,u3,u3.5"): a plain number is stored bits per
 * weight; uX is the stored-bits average of uniform X-bit, and between two stored levels
 * b_i < X < b_{i+1} the linear interpolation of their averages. labels[i] gets the token as
 * written. @return SP_EINVAL naming the token (not a number, uX outside the levels, more than
 * SP_SEARCH_MAX_TARGETS). */
sp_status sp_search_targets(const char *spec, const sp_sgenome_space *s, double *targets,
                            char labels[][24], int *n, sp_err *err);

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
