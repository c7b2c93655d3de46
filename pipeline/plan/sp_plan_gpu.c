/* sp_plan_gpu.c — GPU memory of quantize --device cuda (see sp_plan.h). Each term names the
 * allocation in kernels/cuda it mirrors; when those change, this must follow. */
#include "pipeline/plan/sp_plan.h"

#include <string.h>

static double maxd(double a, double b) { return a > b ? a : b; }

/* sp_cuda_gptq_run's buffers for W [rows, cols] (sp_cuda_gptq.cu: SP_CU_GPTQ_ROWS 8192,
 * SP_CU_GPTQ_PANEL 512): W and X in fp32, Ct and codes in bytes, the panel, scales + zeros,
 * and for lazy groups V, Ae and U. */
static double gptq_work(double rows, double cols, int group_size, int act_order) {
    double rc = rows < 8192 ? rows : 8192, gs = group_size > 0 ? group_size : cols;
    double g = (cols + gs - 1) / gs, lazy = !act_order && gs < cols;
    return rc * cols * (4 + 4 + 1 + 1) + 512 * rc * 4 + g * rc * 5 +
           (lazy ? 2 * gs * rc * 4 + (128 + gs) * (128 + gs) * 4 : 0);
}

/* sp_cuda_hacc_new: packed int64 triangle, the window in fp32 and double, one panel. */
static double hacc_bytes(double n, double T) {
    return n * (n + 1) / 2 * 8 + T * n * 12 + n * (n < 2048 ? n : 2048) * 8 + 16;
}

void sp_plan_gpu_predict(const sp_plan_model *m, const sp_plan_opts *o, sp_plan_gpu *g) {
    memset(g, 0, sizeof *g);
    const sp_config *c = &m->cfg;
    const double D = c->dim, F = c->hidden_dim, Q = (double)c->n_heads * c->head_dim;
    const double KV = (double)c->n_kv_heads * c->head_dim, T = o->ctx > 0 ? o->ctx : 2048;
    double scratch = 0;
    sp_plan_block_bytes(m, (int)T, &g->weights, &scratch);
    /* sp_cuda_linear: x [T, n_in] and out [T, n_out], the widest of the seven linears. */
    g->linear = T * maxd(maxd(D, F), Q) * 4 * 2;
    /* One-pass: the four Hessians of a block at once; true-sequential: one stage's. */
    const double dims[4] = {D, Q, D, F};
    double hsum = 0, hmax = 0;
    for (int h = 0; h < 4; h++) {
        hsum += hacc_bytes(dims[h], T);
        hmax = maxd(hmax, hacc_bytes(dims[h], T));
    }
    g->hessians = o->true_sequential ? hmax : hsum;
    /* Factors: the ceil(4/R) largest C² in fp32 (all four on one rank). */
    double f[4] = {D * D * 4, Q * Q * 4, D * D * 4, F * F * 4};
    for (int i = 1; i < 4; i++)
        for (int k = i; k > 0 && f[k] > f[k - 1]; k--) {
            double t = f[k];
            f[k] = f[k - 1];
            f[k - 1] = t;
        }
    int held = o->ranks >= 4 ? 1 : (4 + o->ranks - 1) / o->ranks;
    if (o->true_sequential) held = 1; /* one stage's Hessian at a time */
    for (int i = 0; i < held; i++) g->factors += f[i];
    const double shapes[5][2] = {{Q, D}, {KV, D}, {D, Q}, {F, D}, {D, F}};
    for (int s = 0; s < 5; s++)
        g->gptq_work = maxd(g->gptq_work, gptq_work(shapes[s][0], shapes[s][1], o->group_size,
                                                     o->act_order));
    g->peak = maxd(g->weights + g->linear + g->hessians, g->factors + g->gptq_work);
    g->fits = o->gpu_mem > 0 ? g->peak <= o->gpu_mem : -1;
}
