/* sp_sgenome.h — the search space of `shardpress search`: one bit level per linear module, the
 * budget it must fit, and the moves of the evolution (EvoPress, arXiv 2410.14649, Alg. 1).
 *
 * A genome is one level index per module (uint8_t g[n], index into levels[]). Module m is
 * layer m / 7, kind m % 7 (SP_MOD_Q .. SP_MOD_DOWN), so genome order is depth order.
 *
 * Budget (what a user pays on disk, not only the codes as EvoPress counts): a module of
 * [rows, cols] with n_groups groups per row at b bits stores
 *     cost(m, b) = rows·cols·b  +  rows·n_groups·(16 + b)      bits
 * (codes, one fp16 scale and one b-bit zero per group, as in the GPTQ export). The average
 *     avg_bits(g) = Σ_m cost(m, g_m) / Σ_m rows_m·cols_m
 * must not exceed the target: a genome fits when avg_bits ≤ target + SP_SGENOME_TOL.
 *
 * Randomness is one xorshift64* state owned by the caller (checkpointed with the search), so
 * the same seed gives the same genomes on every rank and across a resume.
 * Pure functions: no I/O, no MPI, no globals.
 */
#ifndef SP_SGENOME_H
#define SP_SGENOME_H

#include <stddef.h>
#include <stdint.h>

#include "common/sp_error.h"

#define SP_SGENOME_MAX_LEVELS 7
/* A target is met to 6 decimals, the precision the uniform averages are printed with. */
#define SP_SGENOME_TOL 5e-7

typedef enum { SP_SGROUPS_SIZE = 0, SP_SGROUPS_NAME, SP_SGROUPS_NONE } sp_sgroups;

typedef struct {
    int n;                                /* modules                                       */
    int n_levels;                         /* levels every module has (ascending bits)      */
    int levels[SP_SGENOME_MAX_LEVELS];
    int64_t *numel;                       /* [n] rows·cols                                 */
    int64_t *cost;                        /* [n·n_levels] stored bits at each level        */
    int *group;                           /* [n] mutation group (see sp_sgenome_set_groups) */
    int n_groups;
    int64_t total;                        /* Σ numel                                       */
} sp_sgenome_space;

/* Allocate a space for n modules and n_levels levels (costs and groups to be filled). */
sp_status sp_sgenome_space_init(sp_sgenome_space *s, int n, int n_levels, const int *levels,
                                sp_err *err);
void sp_sgenome_space_free(sp_sgenome_space *s);
/* Set module m's shape: fills numel and the cost of every level. group_size <= 0: one group. */
void sp_sgenome_set_shape(sp_sgenome_space *s, int m, int64_t rows, int64_t cols, int group_size);
/* Override the stored bits of module m at level index k (after set_shape): a level with its own
 * group size, or a GGUF-type level, whose cost is its blocks' bytes (issue 11). */
void sp_sgenome_set_cost(sp_sgenome_space *s, int m, int k, int64_t bits);
/* Mutation groups: SIZE = modules with equal rows and cols; NAME = same kind (m % 7);
 * NONE = one group of everything (moves then restore the budget by lowering, see mutate). */
void sp_sgenome_set_groups(sp_sgenome_space *s, sp_sgroups how);

/* Stored bits of genome g, and its average per weight. */
int64_t sp_sgenome_bits(const sp_sgenome_space *s, const uint8_t *g);
double sp_sgenome_avg(const sp_sgenome_space *s, const uint8_t *g);
int sp_sgenome_fits(const sp_sgenome_space *s, const uint8_t *g, double target);
/* avg_bits of every module at level index k. */
double sp_sgenome_uniform_avg(const sp_sgenome_space *s, int k);

uint64_t sp_sgenome_rand(uint64_t *state);
/* A state from a seed and a stream number (never 0). */
uint64_t sp_sgenome_seed(uint64_t seed, uint64_t stream);

/* Initial genome for a target: every module at level k when uniform k's average equals the
 * target (within SP_SGENOME_TOL). Otherwise everything at the lowest level whose uniform
 * average exceeds the target, then random modules lowered one level until it fits.
 * @return SP_EINVAL (message gives the range) when the target is below the lowest uniform
 *         average or above the highest. */
sp_status sp_sgenome_init(const sp_sgenome_space *s, double target, uint64_t *rng, uint8_t *g,
                          int *uniform, sp_err *err);

/* One offspring of parent into child (EvoPress level-switch mutation): the number of flips is
 * min(U{1,3}, U{1,3}) (P = 5/9, 3/9, 1/9). With SIZE/NAME groups a flip lowers one module and
 * raises another of the same group by one level (budget kept when both steps cost the same;
 * a flip that breaks it is redrawn). With NONE it raises one module, then lowers random ones
 * until the genome fits. Children equal to the parent are redrawn.
 * @return 1 on success, 0 when no different fitting child was found in 1000 draws. */
int sp_sgenome_mutate(const sp_sgenome_space *s, const uint8_t *parent, double target,
                      sp_sgroups how, uint64_t *rng, uint8_t *child);

/* Budgeted allocation over an additive error table: e[m·n_levels + k] is module m's
 * estimated error at level k (a ΔKL sensitivity, or any cost); find g minimising
 *     Σ_m e[m, g_m]   subject to   avg_bits(g) ≤ target + SP_SGENOME_TOL.
 * Both solvers work on the space's costs in bits, so they hold for any level whose cost the
 * container gives (group-size levels, GGUF types' block bits).
 *
 * sp_sgenome_alloc_dp: exact. With c'(m,k) = cost(m,k) − min_k cost(m,k) and q the gcd of
 * every c', the budget left above the cheapest genome is U = floor((B − Σ min cost)/q) units
 * and f_{m+1}(u) = min_k f_m(u − c'(m,k)/q) + e[m,k] (f_0 ≡ 0) is a 0/1 multiple-choice
 * knapsack over u ≤ U; ties go to the lower level. Needs n·(U+1) bytes of choices:
 * @return SP_EUNSUPPORTED (nothing written) when that exceeds max_cells.
 * sp_sgenome_lagrange: the relaxation for any size: binary search on λ of
 * argmin_k e + λ·cost per module (optimal for the budget it uses), then the remaining budget
 * spent greedily on the best Δe/Δcost upgrades.
 * sp_sgenome_allocate: the DP when it fits max_cells (SP_SGENOME_DP_CELLS: 128 MiB of
 * choices), else the Lagrangian;
 * *exact (may be NULL) says which.
 * @return SP_EINVAL when even the lowest levels do not fit. */
#define SP_SGENOME_DP_CELLS ((int64_t)1 << 27)
sp_status sp_sgenome_alloc_dp(const sp_sgenome_space *s, const double *e, double target,
                              int64_t max_cells, uint8_t *g, sp_err *err);
sp_status sp_sgenome_lagrange(const sp_sgenome_space *s, const double *e, double target,
                              uint8_t *g, sp_err *err);
sp_status sp_sgenome_allocate(const sp_sgenome_space *s, const double *e, double target,
                              int64_t max_cells, uint8_t *g, int *exact, sp_err *err);
/* Σ_m e[m, g_m], added in module order. */
double sp_sgenome_table_sum(const sp_sgenome_space *s, const double *e, const uint8_t *g);

/* First module index where a and b differ, or n when equal. */
int sp_sgenome_first_diff(const sp_sgenome_space *s, const uint8_t *a, const uint8_t *b);

#endif
