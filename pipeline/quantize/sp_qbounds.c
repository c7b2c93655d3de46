/* sp_qbounds.c — a-priori bounds on the inputs of a block's four Hessians, from its weights
 * alone (see sp_quantize_int.h and kernels/sp_hacc.h: the Hessian accumulator sizes its exact
 * fixed-point sums by them). */
#include <math.h>

#include "pipeline/quantize/sp_quantize_int.h"

/* ---- a-priori bounds on the inputs of each Hessian (see kernels/sp_hacc.h) -----------------
 * RMSNorm output: ‖x/rms(x)‖₂ = √D, so |xn_i| ≤ √D·max|w_norm|, and ‖xn‖₂ ≤ √D·max|w_norm|.
 * Attention output is a convex combination of v rows: |attn| ≤ ‖xn1‖₂·max_j‖Wv_j‖₂ + max|bv|.
 * SwiGLU: |silu(g)| ≤ max(|g|, 0.2785) and |g| ≤ ‖xn2‖₂·max_j‖Wg_j‖₂ (same for u).
 * 1% slack covers float rounding. */
static double abs_max(const float *v, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fabs(v[i]) > m ? fabs(v[i]) : m;
    return m;
}

static double row_norm_max(const float *W, int rows, int cols) {
    double m = 0;
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int c = 0; c < cols; c++) s += (double)W[(size_t)r * cols + c] * W[(size_t)r * cols + c];
        m = s > m ? s : m;
    }
    return sqrt(m);
}

void sp_quantize_input_bounds(const sp_block_weights *w, const sp_config *c, double B[SP_N_HESS]) {
    int kv = c->n_kv_heads * c->head_dim;
    double sd = sqrt((double)c->dim);
    double b0 = sd * abs_max(w->attn_norm, (size_t)c->dim);
    double b1 = b0 * row_norm_max(w->wv, kv, c->dim) + (w->bv ? abs_max(w->bv, (size_t)kv) : 0);
    double b2 = sd * abs_max(w->ffn_norm, (size_t)c->dim);
    double bg = b2 * row_norm_max(w->w_gate, c->hidden_dim, c->dim);
    double bu = b2 * row_norm_max(w->w_up, c->hidden_dim, c->dim);
    double b3 = (bg > 0.2785 ? bg : 0.2785) * bu;
    double raw[SP_N_HESS] = {b0, b1, b2, b3};
    for (int h = 0; h < SP_N_HESS; h++) B[h] = (raw[h] > 1e-30 ? raw[h] : 1e-30) * 1.01;
}
