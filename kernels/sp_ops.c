/* sp_ops.c — RMSNorm, RoPE, SwiGLU, softmax and the linear layer. See sp_ops.h.
 *
 * Shape legend: T rows, D row width, hd head dim, half = hd/2, n_in/n_out linear widths.
 */
#include "kernels/sp_ops.h"

#include <math.h>

#include "kernels/sp_blas.h"

void sp_rmsnorm_forward(float *out, const float *x, const float *w, float eps, size_t T,
                        size_t D) {
    for (size_t t = 0; t < T; t++) {
        const float *xr = x + t * D;   /* [D] */
        float *yr = out + t * D;       /* [D] */
        double ss = 0.0;
        for (size_t j = 0; j < D; j++) ss += (double)xr[j] * (double)xr[j];
        /* HF: x * rsqrt(mean + eps) in the model dtype (fp32), then weight * (...). */
        float inv = (float)(1.0 / sqrt(ss / (double)D + (double)eps));
        for (size_t j = 0; j < D; j++) yr[j] = (xr[j] * inv) * w[j];
    }
}

/* 2*pi, spelled out so that no feature macro is needed for M_PI. */
#define SP_TWO_PI 6.283185307179586476925286766559

/* Frequency i < hd/2 of the rotary embedding, Llama 3 scaling applied (see sp_ops.h). */
static double rope_freq(const sp_config *c, int i) {
    double f = pow((double)c->rope_theta, -2.0 * (double)i / (double)c->head_dim);
    if (!c->rope_scaling_llama3) return f;
    double orig = (double)c->rope_original_max_pos;
    double lo_f = (double)c->rope_low_freq_factor, hi_f = (double)c->rope_high_freq_factor;
    double factor = (double)c->rope_factor;
    double wavelen = SP_TWO_PI / f;
    double lo_wavelen = orig / lo_f; /* longer than this: low frequency, divided by factor */
    double hi_wavelen = orig / hi_f; /* shorter than this: high frequency, kept            */
    if (wavelen < hi_wavelen) return f;
    if (wavelen > lo_wavelen) return f / factor;
    double s = (orig / wavelen - lo_f) / (hi_f - lo_f);
    return (1.0 - s) * f / factor + s * f;
}

void sp_rope_inv_freq(double *inv_freq, const sp_config *c) {
    for (int i = 0; i < c->head_dim / 2; i++) inv_freq[i] = rope_freq(c, i);
}

void sp_rope_table(float *cos_t, float *sin_t, const sp_config *c, size_t T) {
    size_t half = (size_t)(c->head_dim / 2);
    for (size_t i = 0; i < half; i++) {
        double f = rope_freq(c, (int)i);
        for (size_t t = 0; t < T; t++) {
            double ang = (double)t * f;
            cos_t[t * half + i] = (float)cos(ang);
            sin_t[t * half + i] = (float)sin(ang);
        }
    }
}

void sp_rope_apply(float *x, const float *cos_t, const float *sin_t, size_t T, size_t ldx,
                   int n_heads, int hd) {
    size_t half = (size_t)hd / 2;
    for (size_t t = 0; t < T; t++) {
        const float *cr = cos_t + t * half; /* [half] */
        const float *sr = sin_t + t * half; /* [half] */
        for (int h = 0; h < n_heads; h++) {
            float *xh = x + t * ldx + (size_t)h * (size_t)hd; /* [hd] */
            for (size_t i = 0; i < half; i++) {
                float a = xh[i], b = xh[half + i];
                /* HF: q*cos + rotate_half(q)*sin, rotate_half(q) = cat(-q2, q1). */
                xh[i] = a * cr[i] - b * sr[i];
                xh[half + i] = b * cr[i] + a * sr[i];
            }
        }
    }
}

void sp_swiglu_forward(float *up, const float *gate, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        up[i] = (g / (1.0f + expf(-g))) * up[i];
    }
}

void sp_softmax_row(float *row, size_t n) {
    float mx = row[0];
    for (size_t j = 1; j < n; j++) mx = row[j] > mx ? row[j] : mx;
    double sum = 0.0;
    for (size_t j = 0; j < n; j++) {
        row[j] = expf(row[j] - mx);
        sum += (double)row[j];
    }
    /* sum >= 1 because the maximum contributes exp(0) = 1. */
    float inv = (float)(1.0 / sum);
    for (size_t j = 0; j < n; j++) row[j] *= inv;
}

void sp_linear_forward(float *out, const float *x, const float *w, const float *bias,
                       size_t T, size_t n_in, size_t n_out, int accumulate) {
    if (T == 0 || n_out == 0) return;
    /* out [T, n_out] = x [T, n_in] · w [n_out, n_in]ᵀ: B transposed, all leading dims natural.
     * sp_blas: threaded, with bits that do not depend on the thread count. */
    sp_blas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)n_out, (int)n_in, 1.0f,
                x, (int)n_in, w, (int)n_in, accumulate ? 1.0f : 0.0f, out, (int)n_out);
    if (bias && !accumulate) {
        for (size_t t = 0; t < T; t++) {
            float *o = out + t * n_out; /* [n_out] */
            for (size_t j = 0; j < n_out; j++) o[j] += bias[j];
        }
    }
}
