/* sp_qmem.c — quantize's memory check before it starts (issue 21 part 5).
 *
 * `quantize --nsamples 100000 --ctx 512` on a small model used to grow to 13 GB with no word:
 * the calibration states alone are S·T·D·4 bytes. `shardpress plan` predicts the peak heap of
 * every rank from the model's headers and the options (pipeline/plan/sp_plan.h; checked
 * against measured runs in docs/benchmarks.md, "Plan accuracy"). Here the same prediction is
 * compared with what each node has: MemAvailable (/proc/meminfo: free memory plus what the
 * kernel can reclaim) shared by the ranks on that node, the smallest over the nodes. A run
 * whose predicted peak does not fit is refused with both numbers and the largest --nsamples
 * that would fit. When the prediction cannot be made (no /proc/meminfo, an option the plan
 * does not model) the run goes ahead: the check must never refuse a run that might fit.
 */
#include "pipeline/quantize/sp_quantize_int.h"

#include <stdio.h>
#include <string.h>

#include "kernels/sp_quant.h"
#include "mpi/sp_mpi.h"
#include "pipeline/plan/sp_plan.h"

#define GIB (1024.0 * 1024.0 * 1024.0)

/* MemAvailable in bytes, or 0 when unknown. */
static double mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    double kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1) break;
    fclose(f);
    return kb * 1024.0;
}

/* The plan of this run on `ranks` ranks with mem_per_rank; 0 when it cannot be made. */
static int plan_of(const sp_quantize_opts *o, int ranks, double mem_per_rank, sp_plan_result *res) {
    sp_plan_model m;
    sp_err e = {SP_OK, ""};
    if (sp_plan_model_read(&m, o->model_dir, &e) != SP_OK) return 0;
    sp_plan_opts p;
    sp_plan_opts_default(&p);
    if (o->n_levels > SP_PLAN_MAX_LEVELS) return 0;
    p.ranks = ranks;
    p.nsamples = o->nsamples;
    p.ctx = o->ctx;
    p.bits = o->bits;
    p.n_levels = o->n_levels;
    memcpy(p.levels, o->levels, sizeof(int) * (size_t)o->n_levels);
    p.group_size = o->group_size;
    p.block = o->block;
    p.act_order = o->act_order;
    p.true_sequential = o->true_sequential;
    p.hmse = o->scale_search == SP_QSEARCH_HMSE;
    p.checkpoint_every = o->checkpoint_dir ? o->checkpoint_every : 0;
    p.mem_per_rank = mem_per_rank;
    sp_plan_rates r;
    sp_plan_rates_default(&r);
    return sp_plan_predict(&m, &p, &r, res, &e) == SP_OK;
}

sp_status sp_quantize_check_memory(MPI_Comm comm, const sp_quantize_opts *o, sp_err *err) {
    int rank = 0, size = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    /* each node's MemAvailable shared by its ranks; the tightest node decides */
    int local = sp_mpi_local_size(comm);
    double mine = mem_available() / (local > 0 ? local : 1), avail = 0;
    int known = mine > 0, all_known = 0;
    MPI_Allreduce(&mine, &avail, 1, MPI_DOUBLE, MPI_MIN, comm);
    MPI_Allreduce(&known, &all_known, 1, MPI_INT, MPI_MIN, comm);
    sp_status st = SP_OK;
    if (rank == 0 && all_known && !o->rtn) {
        sp_plan_result res;
        if (plan_of(o, size, avail, &res) && res.fits == 0) {
            char more[160] = "";
            if (res.max_nsamples > 0)
                snprintf(more, sizeof more, "at most --nsamples %d fits", res.max_nsamples);
            else
                snprintf(more, sizeof more, "no --nsamples fits at this --ctx");
            if (res.min_ranks > 0)
                snprintf(more + strlen(more), sizeof more - strlen(more), ", or use %d ranks",
                         res.min_ranks);
            st = sp_err_set(err, SP_ENOMEM, "quantize: --nsamples %d --ctx %d needs %.2f GiB per "
                            "rank (plan's prediction, peak at %s), but %.2f GiB is available "
                            "per rank (MemAvailable / ranks on the node); %s (see shardpress "
                            "plan)", o->nsamples, o->ctx, res.heap_max / GIB,
                            res.rank0.heap >= res.other.heap ? res.rank0.peak_at
                                                             : res.other.peak_at,
                            avail / GIB, more);
        }
    }
    return sp_mpi_agree(comm, st, err);
}
