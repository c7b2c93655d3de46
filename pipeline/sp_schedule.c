/* sp_schedule.c — see sp_schedule.h. */
#include "sp_schedule.h"

#include <stdlib.h>

static double unit_cost(const sp_unit *u) { return (double)u->rows * u->cols * u->cols; }
static double prepare_cost(const sp_unit *u) {
    return 4.0 / 3.0 * (double)u->cols * u->cols * u->cols;
}

sp_status sp_schedule_assign(sp_unit *units, int n, int ranks, int n_hess, int with_hessian,
                             sp_err *err) {
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
