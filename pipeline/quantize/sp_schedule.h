/* sp_schedule.h — assigning quantization work units (module × bit level) to ranks.
 *
 * A unit's cost is the GPTQ lazy-update work, ≈ rows·cols² multiply-adds. A rank that has not
 * yet factored the unit's Hessian also pays the Cholesky/inverse, ≈ 4/3·cols³, once: one
 * Hessian serves every module that reads the same input (q/k/v, gate/up) and every level.
 * Longest-processing-time-first: units by decreasing cost (ties by index) go to the rank whose
 * load after taking them is smallest (ties to the lowest rank). Deterministic: every rank
 * computes the same assignment.
 *
 * Memory decides the granularity. Every rank that quantizes a module must hold that module's
 * Hessian and its factorization — for a 70B down_proj, 6.6 GB + 3.3 GB. When there are no more
 * ranks than Hessians (n_hess), whole Hessian groups (every module and level reading one
 * Hessian) are scheduled as units, so each Hessian lives on exactly one rank; with more ranks,
 * single units are scheduled so that all ranks get work.
 */
#ifndef SP_SCHEDULE_H
#define SP_SCHEDULE_H

#include "common/sp_error.h"

typedef struct {
    int module;     /* SP_MOD_*                                  */
    int bits;
    int hessian;    /* id of the Hessian it reads (0..n_hess-1)  */
    int rows, cols;
    int owner;      /* filled by sp_schedule_assign              */
} sp_unit;

/* Fill units[i].owner for n units over ranks; prepare costs count once per (rank, hessian).
 * @return SP_ENOMEM or SP_OK. */
sp_status sp_schedule_assign(sp_unit *units, int n, int ranks, int n_hess, int with_hessian,
                             sp_err *err);

/* True-sequential quantization (one Hessian per stage, see sp_quantize.h): the units of each
 * Hessian are a stage of their own and run while the other ranks would otherwise wait, so
 * each stage is scheduled alone: one rank takes everything; more ranks get single units by
 * LPT (sp_schedule_assign with one Hessian). Same determinism as above.
 * @return SP_ENOMEM or SP_OK. */
sp_status sp_schedule_assign_stages(sp_unit *units, int n, int ranks, int n_hess, sp_err *err);

#endif
