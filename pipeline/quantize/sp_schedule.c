/* sp_schedule.c — see sp_schedule.h. */
#include "pipeline/quantize/sp_schedule.h"

#include <stdlib.h>

static double unit_cost(const sp_unit *u) { return (double)u->rows * u->cols * u->cols; }
static double prepare_cost(const sp_unit *u) {
    return 4.0 / 3.0 * (double)u->cols * u->cols * u->cols;
}

/* Few ranks: LPT over Hessian groups (cost = one factorization + the group's units). */
static sp_status assign_groups(sp_unit *units, int n, int ranks, int n_hess, sp_err *err) {
    double *cost = sp_calloc((size_t)n_hess, sizeof *cost, err, "group cost");
    double *load = sp_calloc((size_t)ranks, sizeof *load, err, "schedule load");
    int *owner = sp_malloc((size_t)n_hess * sizeof *owner, err, "group owner");
    int *done = sp_calloc((size_t)n_hess, sizeof *done, err, "group done");
    sp_status st = cost && load && owner && done ? SP_OK : SP_ENOMEM;
    for (int h = 0; st == SP_OK && h < n_hess; h++) {
        cost[h] = 0;
        int any = 0;
        for (int i = 0; i < n; i++)
            if (units[i].hessian == h) {
                cost[h] += unit_cost(&units[i]) + (any ? 0 : prepare_cost(&units[i]));
                any = 1;
            }
        owner[h] = 0;
        if (!any) done[h] = 1;
    }
    for (int k = 0; st == SP_OK && k < n_hess; k++) {
        int g = -1; /* the costliest group not yet placed (ties: lower index) */
        for (int h = 0; h < n_hess; h++)
            if (!done[h] && (g < 0 || cost[h] > cost[g])) g = h;
        if (g < 0) break;
        int best = 0;
        for (int r = 1; r < ranks; r++)
            if (load[r] < load[best]) best = r;
        owner[g] = best;
        load[best] += cost[g];
        done[g] = 1;
    }
    for (int i = 0; st == SP_OK && i < n; i++) units[i].owner = owner[units[i].hessian];
    free(cost);
    free(load);
    free(owner);
    free(done);
    return st;
}

sp_status sp_schedule_assign(sp_unit *units, int n, int ranks, int n_hess, int with_hessian,
                             sp_err *err) {
    if (with_hessian && ranks <= n_hess) return assign_groups(units, n, ranks, n_hess, err);
    int *order = sp_malloc((size_t)n * sizeof *order, err, "schedule order");
    double *load = sp_calloc((size_t)ranks, sizeof *load, err, "schedule load");
    char *has = sp_calloc((size_t)ranks * (size_t)(n_hess > 0 ? n_hess : 1), 1, err, "schedule");
    if (!order || !load || !has) {
        free(order);
        free(load);
        free(has);
        return SP_ENOMEM;
    }
    for (int i = 0; i < n; i++) order[i] = i;
    /* insertion sort by decreasing cost, stable on index: n is small (7 modules x levels) */
    for (int i = 1; i < n; i++) {
        int v = order[i], j = i;
        while (j > 0 && unit_cost(&units[order[j - 1]]) < unit_cost(&units[v])) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = v;
    }
    for (int k = 0; k < n; k++) {
        sp_unit *u = &units[order[k]];
        int best = 0;
        double best_load = 0;
        for (int r = 0; r < ranks; r++) {
            double extra = unit_cost(u);
            if (with_hessian && !has[(size_t)r * n_hess + u->hessian]) extra += prepare_cost(u);
            if (r == 0 || load[r] + extra < best_load) {
                best = r;
                best_load = load[r] + extra;
            }
        }
        u->owner = best;
        load[best] = best_load;
        if (with_hessian) has[(size_t)best * n_hess + u->hessian] = 1;
    }
    free(order);
    free(load);
    free(has);
    return SP_OK;
}

sp_status sp_schedule_assign_stages(sp_unit *units, int n, int ranks, int n_hess, sp_err *err) {
    sp_unit *sub = sp_malloc((size_t)(n > 0 ? n : 1) * sizeof *sub, err, "stage units");
    if (!sub) return SP_ENOMEM;
    sp_status st = SP_OK;
    for (int h = 0; h < n_hess && st == SP_OK; h++) {
        int m = 0;
        for (int i = 0; i < n; i++)
            if (units[i].hessian == h) {
                sub[m] = units[i];
                sub[m++].hessian = 0;
            }
        if (m) st = sp_schedule_assign(sub, m, ranks, 1, 1, err);
        for (int i = 0, k = 0; st == SP_OK && i < n; i++)
            if (units[i].hessian == h) units[i].owner = sub[k++].owner;
    }
    free(sub);
    return st;
}
