/* sp_gtype_level.c — GGUF types as GPTQ levels (see sp_gtype.h): the weighted search of one
 * block's parameters, the code of a value, and the packing of a level's row into ggml blocks.
 *
 * DESIGN. A ggml block fixes its parameters in two tiers: per sub-block j a scale s_j (and for
 * "+m" types an offset m_j), and for the K-quants one fp16 d (and dmin) per 256 values with
 * small integers sc_j, mm_j: s_j = d·sc_j, m_j = −dmin·mm_j. GPTQ needs s_j, z_j, m_j for a
 * column before it quantizes it, so the whole block is fixed when GPTQ reaches its first
 * column, from the weights as GPTQ has updated them by then. The search:
 *   1. each sub-block alone, with real-valued parameters: a shrink grid over its range, 80
 *      steps (the reference GPTQ's --mse grid, as SP_QSEARCH_HMSE), each scored with the
 *      weighted error E = Σ_k w_k (x_k − y_k)²; for the legacy "+m" types also 31 code grids
 *      (the range at maxq + t/10 steps), each refitted REFITS times by weighted least squares
 *      (codes -> (s, m) -> codes); then one refit of (s, m) — or s alone — on the best
 *      point's codes, kept when E drops. (On stories260K Q4_1 the refitted grids took KL from
 *      0.0508 to 0.0459, docs/benchmarks.md "GGUF".)
 *   2. the block's fp16 scales from the sub-blocks' (d = fp16(max s_j / S)), then for every
 *      sub-block the integers around s_j / d (and m_j / dmin): nearest, −1, +1, scored by E.
 * Legacy Q4_1/Q5_1 stop after 1 with fp16-rounded d and m. Under GPTQ w_k = R_jj² of the
 * column's position j (H = R Rᵀ, sp_gptq.h): 1/[H_F⁻¹]_jj, the loss GPTQ adds per unit of
 * (w_j − q_j)² once the later columns compensate — not diag(H), which llama.cpp's imatrix
 * weights by and which overstates columns whose error later columns absorb (stories260K Q4_1:
 * KL 0.0468 with diag(H), 0.0448 with R_jj²; Q5_1 0.0107 vs 0.0110: within noise).
 */
#include "kernels/sp_gtype.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "shards/sp_model.h" /* sp_f32_to_f16 / sp_f16_to_f32 */

#define SHRINK_STEPS 80
#define REFITS 3       /* least-squares refits per code grid (asym_sub)                   */

static float f16r(float x) {
    if (x > 65504.0f) x = 65504.0f;
    if (x < -65504.0f) x = -65504.0f;
    return sp_f16_to_f32(sp_f32_to_f16(x));
}
static int f16_exact(float x) { return isfinite(x) && f16r(x) == x; }

int sp_gtype_code(float x, float s, int z, float m, int maxq, float *deq) {
    int q = z;
    if (s != 0.0f) {
        float t = rintf((x - m) / s) + (float)z;
        q = !(t >= 0.0f) ? 0 : t > (float)maxq ? maxq : (int)t; /* NaN -> 0 */
    }
    volatile float p = s * (float)(q - z); /* product, then sum: as ggml dequantizes */
    *deq = p + m;
    return q;
}

/* E of one sub-block x[n] with (s, z, m). Stops early once it reaches `stop`. */
static double sub_err(const float *x, const double *w, int n, float s, int z, float m, int maxq,
                      double stop) {
    double e = 0;
    for (int k = 0; k < n && e < stop; k++) {
        float y;
        sp_gtype_code(x[k], s, z, m, maxq, &y);
        double d = (double)x[k] - (double)y;
        e += (w ? w[k] : 1.0) * d * d;
    }
    return e;
}

/* Weighted least squares of x ≈ s·c + m over the codes c = q − z of (s, z, m):
 * with_m: the 2 × 2 normal equations; else s = Σ w x c / Σ w c². Returns 0 when singular. */
static int refit(const float *x, const double *w, int n, float *s, int z, float *m, int maxq,
                 int with_m) {
    double sw = 0, sc = 0, scc = 0, sx = 0, sxc = 0;
    for (int k = 0; k < n; k++) {
        float y;
        double c = sp_gtype_code(x[k], *s, z, *m, maxq, &y) - z, wk = w ? w[k] : 1.0;
        sw += wk, sc += wk * c, scc += wk * c * c, sx += wk * x[k], sxc += wk * x[k] * c;
    }
    if (!with_m) {
        if (!(scc > 0)) return 0;
        *s = (float)(sxc / scc);
        return 1;
    }
    double det = sw * scc - sc * sc;
    if (!(det > 1e-30 * (sw * scc + 1e-300))) return 0;
    *s = (float)((sw * sxc - sc * sx) / det);
    *m = (float)((scc * sx - sc * sxc) / det);
    return 1;
}

/* Step 1 for an asymmetric sub-block (+m types): codes 0..maxq, y = s·q + m. kneg: the K-quant
 * form m = −dmin·mm <= 0 (the range is widened to include 0, the offset kept <= 0). r16:
 * d and m are fp16 values (Q4_1/Q5_1). Returns E. */
static double asym_sub(const float *x, const double *w, int n, int maxq, int kneg, int r16,
                       float *s_out, float *m_out) {
    float lo = x[0], hi = x[0];
    for (int k = 1; k < n; k++) lo = fminf(lo, x[k]), hi = fmaxf(hi, x[k]);
    if (kneg) lo = fminf(lo, 0.0f), hi = fmaxf(hi, 0.0f);
    float bs = 0.0f, bm = r16 ? f16r(lo) : lo;
    double best = sub_err(x, w, n, 0.0f, 0, bm, maxq, INFINITY);
    if (hi > lo) {
        /* shrink toward the middle (legacy) or toward 0 (K: the offset must stay <= 0) */
        const float c = kneg ? 0.0f : 0.5f * (lo + hi);
        for (int i = 0; i < SHRINK_STEPS; i++) {
            const float p = (float)(1.0 - i / 100.0), l = c + p * (lo - c), h = c + p * (hi - c);
            float s = (h - l) / (float)maxq, m = l;
            if (r16) s = f16r(s), m = f16r(m);
            if (s == 0.0f) break;
            double e = sub_err(x, w, n, s, 0, m, maxq, best);
            if (e < best) best = e, bs = s, bm = m;
        }
        /* Grids of code assignments: codes from the range lo..hi at maxq + t/10 steps (t in
         * −10..20, so slightly coarser and finer grids than the range's own), each refitted
         * by weighted least squares; the refit of a point is often far better than the
         * point itself when a few weights dominate. */
        for (int t = -10; t <= 20 && !kneg; t++) {
            float s = (hi - lo) / ((float)maxq + 0.1f * (float)t), m = lo;
            for (int it = 0; it < REFITS; it++) { /* codes -> (s, m) -> codes ... */
                if (!(s > 0.0f) || !refit(x, w, n, &s, 0, &m, maxq, 1)) break;
                float s16 = r16 ? f16r(s) : s, m16 = r16 ? f16r(m) : m;
                if (!(s16 > 0.0f) || !isfinite(m16)) break;
                double e = sub_err(x, w, n, s16, 0, m16, maxq, best);
                if (e < best) best = e, bs = s16, bm = m16;
            }
        }
        float s = bs, m = bm;
        if (bs != 0.0f && refit(x, w, n, &s, 0, &m, maxq, 1)) {
            if (kneg && m > 0.0f) { /* keep the K form: m = 0, refit s alone */
                m = 0.0f;
                s = bs;
                if (!refit(x, w, n, &s, 0, &m, maxq, 0)) s = bs;
            }
            if (r16) s = f16r(s), m = f16r(m);
            double e = s > 0.0f && isfinite(m) ? sub_err(x, w, n, s, 0, m, maxq, best) : INFINITY;
            if (e < best) best = e, bs = s, bm = m;
        }
    }
    *s_out = bs;
    *m_out = bm;
    return best;
}

/* Step 1 for a symmetric sub-block (z = 2^(b−1)): the value of largest magnitude v gets code 0,
 * s = v / −z, shrunk; then the refit of s. s may be negative (the int8 sc carry the sign). */
static double sym_sub(const float *x, const double *w, int n, int z, int maxq, float *s_out) {
    float v = 0.0f, a = 0.0f;
    for (int k = 0; k < n; k++)
        if (fabsf(x[k]) > a) a = fabsf(x[k]), v = x[k];
    float bs = 0.0f;
    double best = sub_err(x, w, n, 0.0f, z, 0.0f, maxq, INFINITY);
    if (a > 0.0f) {
        const float s0 = v / (float)-z;
        for (int i = 0; i < SHRINK_STEPS; i++) {
            const float s = s0 * (float)(1.0 - i / 100.0);
            double e = sub_err(x, w, n, s, z, 0.0f, maxq, best);
            if (e < best) best = e, bs = s;
        }
        float s = bs, m = 0.0f;
        if (bs != 0.0f && refit(x, w, n, &s, z, &m, maxq, 0) && isfinite(s) && s != 0.0f) {
            double e = sub_err(x, w, n, s, z, 0.0f, maxq, best);
            if (e < best) best = e, bs = s;
        }
    }
    *s_out = bs;
    return best;
}

/* Step 2: the integer nearest t/d in [lo, hi] and its neighbours, scored by E; sets *s (= d·k)
 * and *k. For the "+m" K types the offset integer is searched the same way, jointly. */
static void pick_ints(const float *x, const double *w, int n, int z, int maxq, float d, int lo,
                      int hi, float t, float dmin, int mlo, int mhi, float mt, int with_m,
                      float *s, int *k, float *m, int *mk) {
    const int k0 = d != 0.0f ? (int)fminf(fmaxf(rintf(t / d), (float)lo), (float)hi) : 0;
    const int m0 = with_m && dmin != 0.0f
                       ? (int)fminf(fmaxf(rintf(mt / dmin), (float)mlo), (float)mhi) : 0;
    double best = INFINITY;
    *s = 0.0f, *k = 0, *m = 0.0f, *mk = 0;
    for (int a = 0; a < 3; a++) {
        const int kk = k0 + (a == 0 ? 0 : a == 1 ? -1 : 1);
        if (kk < lo || kk > hi || (d == 0.0f && a)) continue;
        for (int b = 0; b < (with_m ? 3 : 1); b++) {
            const int mm = m0 + (b == 0 ? 0 : b == 1 ? -1 : 1);
            if (with_m && (mm < mlo || mm > mhi || (dmin == 0.0f && b))) continue;
            const float sv = d * (float)kk, mv = with_m ? -(dmin * (float)mm) : 0.0f;
            double e = sub_err(x, w, n, sv, z, mv, maxq, best);
            if (e < best) best = e, *s = sv, *k = kk, *m = mv, *mk = mm;
        }
    }
}

/* ---- Q2_0 / Q1_0: one fp16 d per block, the exact optimum ----------------------------------
 * Q2_0 (y ∈ {−d, 0, d, 2d}). Write d = σ·e, e > 0, u_k = σ·x_k. For a fixed e every u_k takes
 * the nearest of {−e, 0, e, 2e}; its code changes only where u_k is a midpoint: e = −2u_k
 * (u_k < 0: −1|0), e = 2u_k and e = 2u_k/3 (u_k > 0: 0|1 and 1|2). Between two consecutive
 * breakpoints the codes c_k are fixed and E(e) = Σ w_k (u_k − c_k e)² is a parabola, least at
 * e* = Σ w u c / Σ w c²; clamped into the interval, the interval's best fp16 value is the fp16
 * value just below or just above it. So the fp16 values at and next to fp16(clamp(e*)) of every
 * interval, both signs, hold the optimum over every finite fp16 d; each is scored with the real
 * codes (sp_gtype_code). About 2·(2n + 1)·4n multiply-adds per block of n = 64.
 * Q1_0 (y = ±d): for d > 0 each x_k takes +d when x_k > 0, so E(d) = Σ w (|x_k| − d)²: one
 * parabola, least at Σ w|x| / Σ w (llama.cpp's mean |x| is the unit-weight case), with fp16
 * values around it as above; d < 0 mirrors d > 0 with the same error, so d >= 0 only.
 * Weights that are all 0 count as unit weights (every d would tie). */
static double low_err(int type, const float *x, const double *w, int n, float d, double stop) {
    return type == SP_GT_Q2_0 ? sub_err(x, w, n, d, 1, 0.0f, 3, stop)
                              : sub_err(x, w, n, 2.0f * d, 0, -d, 1, stop);
}

/* Score the fp16 values at and next to fp16(sign·e) against *best (kept on strict improvement). */
static void low_try(int type, const float *x, const double *w, int n, double e, int sign,
                    double *best, float *bd) {
    if (!(e > 0.0)) e = 0.0;
    if (e > 65504.0) e = 65504.0;
    const int h = (int)sp_f32_to_f16((float)e);
    for (int hh = h - 1; hh <= h + 1; hh++) {
        if (hh < 1 || hh > 0x7BFF) continue; /* positive finite fp16 values */
        const float d = (float)sign * sp_f16_to_f32((uint16_t)hh);
        const double v = low_err(type, x, w, n, d, *best);
        if (v < *best) *best = v, *bd = d;
    }
}

static int cmp_double(const void *a, const void *b) {
    const double u = *(const double *)a, v = *(const double *)b;
    return u < v ? -1 : u > v;
}

static void low_params(int type, const float *x, const double *wt, sp_gtype_params *p) {
    const int n = sp_gtype_block(type);
    double sw = 0;
    for (int k = 0; k < n && wt; k++) sw += wt[k];
    const double *w = wt && sw > 0 ? wt : NULL;
    float bd = type == SP_GT_Q1_0 ? -0.0f : 0.0f; /* d = 0: every value 0 (Q1_0: see below) */
    double best = low_err(type, x, w, n, bd, INFINITY);
    if (type == SP_GT_Q1_0) {
        double a = 0, b = 0;
        for (int k = 0; k < n; k++) a += (w ? w[k] : 1.0) * fabs((double)x[k]), b += w ? w[k] : 1.0;
        if (a > 0) low_try(type, x, w, n, a / b, 1, &best, &bd);
    } else {
        double bp[128], u[64];
        for (int sign = 1; sign >= -1; sign -= 2) {
            int nb = 0;
            for (int k = 0; k < n; k++) {
                u[k] = sign * (double)x[k];
                if (u[k] < 0) bp[nb++] = -2 * u[k];
                else if (u[k] > 0) bp[nb++] = 2 * u[k], bp[nb++] = 2 * u[k] / 3;
            }
            qsort(bp, (size_t)nb, sizeof *bp, cmp_double);
            for (int i = 0; i < nb; i++) { /* interval (lo, hi) = (bp[i−1], bp[i]); i = 0: (0, bp[0]) */
                const double lo = i ? bp[i - 1] : 0.0, hi = bp[i];
                if (!(hi > lo)) continue;
                const double et = 0.5 * (lo + hi);
                double num = 0, den = 0;
                for (int k = 0; k < n; k++) {
                    double c = rint(u[k] / et);
                    c = c < -1 ? -1 : c > 2 ? 2 : c;
                    num += (w ? w[k] : 1.0) * u[k] * c, den += (w ? w[k] : 1.0) * c * c;
                }
                if (!(den > 0)) continue;
                double e = num / den;
                e = e < lo ? lo : e > hi ? hi : e;
                low_try(type, x, w, n, e, sign, &best, &bd);
            }
            /* beyond the last breakpoint every code is 0: the error of d = 0, already scored */
        }
    }
    p->d = bd;
    p->zero[0] = (uint8_t)sp_gtype_zero(type);
    if (type == SP_GT_Q2_0) {
        p->scale[0] = bd;
    } else { /* s = 2d, m = −d: y = 2d·q − d is exactly ±d (an all-zero block: d = −0, m = +0) */
        p->scale[0] = 2.0f * bd;
        p->min[0] = p->dmin = -bd;
    }
}

void sp_gtype_block_params(int type, const float *x, const double *wt, sp_gtype_params *p) {
    memset(p, 0, sizeof *p);
    if (type == SP_GT_Q2_0 || type == SP_GT_Q1_0) {
        low_params(type, x, wt, p);
        return;
    }
    int bits, g, sym;
    sp_gtype_level(type, &bits, &g, &sym);
    const int maxq = (1 << bits) - 1, z = sp_gtype_zero(type);
    const int nsub = sp_gtype_block(type) / g;
    for (int j = 0; j < nsub; j++) p->zero[j] = (uint8_t)z;
    if (type == SP_GT_Q4_0 || type == SP_GT_Q5_0 || type == SP_GT_Q8_0) {
        /* ggml's rule with the weighted fp16 shrink (the plain levels' search, sp_gtype.c) */
        double w1[32];
        for (int k = 0; k < 32; k++) w1[k] = wt ? wt[k] : 1.0;
        uint8_t zz;
        sp_gtype_params_search_f32(&p->scale[0], &zz, 1, x, 0, 1, 1, 32, bits, w1);
        p->d = p->scale[0];
        return;
    }
    if (type == SP_GT_Q4_1 || type == SP_GT_Q5_1) {
        asym_sub(x, wt, 32, maxq, 0, 1, &p->scale[0], &p->min[0]);
        p->d = p->scale[0];
        p->dmin = p->min[0];
        return;
    }
    /* K-quants. Step 1: real-valued sub-block parameters. */
    float s[16], m[16];
    for (int j = 0; j < nsub; j++) {
        const float *xs = x + g * j;
        const double *ws = wt ? wt + g * j : NULL;
        if (sym) sym_sub(xs, ws, g, z, maxq, &s[j]), m[j] = 0.0f;
        else asym_sub(xs, ws, g, maxq, 1, 0, &s[j], &m[j]);
    }
    /* Step 2: the fp16 super-block scales and the integers. */
    int smax = 63, mmax = 63, slo = 0;   /* Q4_K / Q5_K: 6-bit sc and mm      */
    if (type == SP_GT_Q2_K) smax = mmax = 15;
    if (type == SP_GT_Q6_K) slo = -128, smax = 127;
    if (type == SP_GT_Q3_K) slo = -32, smax = 31;
    if (sym) {
        float big = 0.0f;
        for (int j = 0; j < nsub; j++)
            if (fabsf(s[j]) > fabsf(big)) big = s[j];
        p->d = f16r(big / (float)slo); /* the largest |s_j| maps to sc = slo */
    } else {
        float a = 0.0f, b = 0.0f;
        for (int j = 0; j < nsub; j++) a = fmaxf(a, s[j]), b = fmaxf(b, -m[j]);
        p->d = f16r(a / (float)smax);
        p->dmin = f16r(b / (float)mmax);
    }
    for (int j = 0; j < nsub; j++)
        pick_ints(x + g * j, wt ? wt + g * j : NULL, g, z, maxq, p->d, slo, smax, s[j], p->dmin,
                  0, mmax, -m[j], !sym, &p->scale[j], &p->sc[j], &p->min[j], &p->mm[j]);
}

/* ---- a level's row as ggml blocks ----------------------------------------------------------- */

sp_status sp_gtype_pack_level_row(const sp_qlayer *q, int r, void *dst, sp_err *err) {
    const int type = q->gtype, B = sp_gtype_block(type), nsub = B / q->group_size;
    const int z = sp_gtype_zero(type), kq = B == 256, has_m = sp_gtype_has_min(type);
    SP_RETURN_IF(!sp_gtype_is_level(type) || q->cols % B || (has_m && !q->mins) ||
                     (kq && (!q->supers || q->n_super != q->cols / 256)),
                 err, SP_EINVAL, "gguf: the level is not a complete %s level",
                 sp_gtype_name(type) ? sp_gtype_name(type) : "GGUF");
    int slo = 0, shi = 63, mhi = 63;
    if (type == SP_GT_Q2_K) shi = mhi = 15;
    if (type == SP_GT_Q6_K) slo = -128, shi = 127;
    if (type == SP_GT_Q3_K) slo = -32, shi = 31;
    const size_t G = (size_t)q->n_groups, rb = (size_t)r;
    uint8_t *b = dst; /* NULL: only check the parameters (the container's reader and writer) */
    int codes[256];
    for (int blk = 0; blk < q->cols / B; blk++, b = b ? b + sp_gtype_block_bytes(type) : NULL) {
        sp_gtype_params p;
        memset(&p, 0, sizeof p);
        if (kq) {
            p.d = q->supers[(rb * (size_t)q->n_super + (size_t)blk) * 2];
            p.dmin = q->supers[(rb * (size_t)q->n_super + (size_t)blk) * 2 + 1];
            SP_RETURN_IF(!f16_exact(p.d) || !f16_exact(p.dmin), err, SP_EINVAL,
                         "gguf: row %d super-block %d: supers d %.9g or dmin %.9g is not an "
                         "fp16 value",
                         r, blk, (double)p.d, (double)p.dmin);
        }
        for (int j = 0; j < nsub; j++) {
            const size_t gi = rb * G + (size_t)(blk * nsub + j);
            const float s = q->scales[gi], m = has_m ? q->mins[gi] : 0.0f;
            int ok = q->zeros[gi] == z && isfinite(s) && isfinite(m);
            if (ok && type == SP_GT_Q1_0) { /* s = 2d, m = −d, d fp16; a zero d as m = +0 */
                ok = f16_exact(m) && s == -2.0f * m && !(m == 0.0f && signbit(m));
                p.d = -m;
            } else if (ok && !kq) { /* Q4_1 / Q5_1: fp16 d and m; Q2_0: fp16 d (m = 0) */
                ok = f16_exact(s) && f16_exact(m);
                p.d = s, p.dmin = m;
            } else if (ok) {
                const float k = p.d != 0.0f ? rintf(s / p.d) : 0.0f;
                const float mk = has_m && p.dmin != 0.0f ? rintf(-m / p.dmin) : 0.0f;
                ok = k >= (float)slo && k <= (float)shi && mk >= 0.0f && mk <= (float)mhi &&
                     p.d * k == s && (!has_m || -(p.dmin * mk) == m);
                p.sc[j] = (int)k, p.mm[j] = (int)mk;
            }
            SP_RETURN_IF(!ok, err, SP_EINVAL,
                         "gguf: row %d group %d: scale %.9g, min %.9g or zero %d "
                         "(scales/mins/zeros) is not %s's",
                         r, blk * nsub + j, (double)s, (double)m, q->zeros[gi],
                         sp_gtype_name(type));
        }
        if (!dst) continue; /* check only */
        const uint8_t *c = q->codes + rb * (size_t)q->cols + (size_t)blk * (size_t)B;
        for (int v = 0; v < B; v++) codes[v] = c[v];
        sp_gtype_put_block(type, &p, codes, b);
    }
    return SP_OK;
}

sp_status sp_gtype_rtn_level(const float *W, int rows, int cols, int gtype, sp_qlayer *out,
                             sp_err *err) {
    int bits = 0, g = 0, sym = 0;
    sp_gtype_level(gtype, &bits, &g, &sym);
    SP_RETURN_IF(!W || !out, err, SP_EINVAL, "sp_gtype_rtn_level: NULL argument");
    for (size_t i = 0; i < (size_t)rows * (size_t)cols; i++)
        SP_RETURN_IF(!isfinite(W[i]), err, SP_ENUMERIC, "rtn: W[%zu, %zu] = %g is not finite",
                     i / (size_t)cols, i % (size_t)cols, (double)W[i]);
    SP_FORWARD(sp_qlayer_alloc_level(out, rows, cols, bits, g, sym, gtype, err));
    const int B = sp_gtype_block(gtype), nsub = B / g, maxq = (1 << bits) - 1;
    const size_t G = (size_t)out->n_groups;
    for (size_t r = 0; r < (size_t)rows; r++)
        for (int blk = 0; blk < cols / B; blk++) {
            const float *x = W + r * (size_t)cols + (size_t)blk * (size_t)B;
            sp_gtype_params p;
            sp_gtype_block_params(gtype, x, NULL, &p);
            for (int j = 0; j < nsub; j++) {
                const size_t gi = r * G + (size_t)(blk * nsub + j);
                out->scales[gi] = p.scale[j];
                out->zeros[gi] = p.zero[j];
                if (out->mins) out->mins[gi] = p.min[j];
            }
            if (out->supers) {
                out->supers[(r * (size_t)out->n_super + (size_t)blk) * 2] = p.d;
                out->supers[(r * (size_t)out->n_super + (size_t)blk) * 2 + 1] = p.dmin;
            }
            uint8_t *c = out->codes + r * (size_t)cols + (size_t)blk * (size_t)B;
            for (int v = 0; v < B; v++) {
                float y;
                c[v] = (uint8_t)sp_gtype_code(x[v], p.scale[v / g], p.zero[v / g], p.min[v / g],
                                              maxq, &y);
            }
        }
    return SP_OK;
}

sp_status sp_gtype_quantize_row_search(int type, const float *x, int64_t n, const double *wt,
                                       void *dst, sp_err *err) {
    int bits = 0, g = 0, sym = 0;
    sp_gtype_level(type, &bits, &g, &sym);
    if (bits == 0) return sp_gtype_quantize_row(type, x, n, dst, err);
    const int B = sp_gtype_block(type), maxq = (1 << bits) - 1;
    SP_RETURN_IF(n % B != 0, err, SP_EINVAL, "gguf %s: a row of %lld values is not a multiple of "
                 "the block (%d)", sp_gtype_name(type), (long long)n, B);
    const size_t bb = sp_gtype_block_bytes(type);
    int q[256];
    for (int64_t b0 = 0; b0 < n; b0 += B) {
        const float *xb = x + b0;
        sp_gtype_params p;
        sp_gtype_block_params(type, xb, wt ? wt + b0 : NULL, &p);
        for (int v = 0; v < B; v++) {
            float y;
            q[v] = sp_gtype_code(xb[v], p.scale[v / g], p.zero[v / g], p.min[v / g], maxq, &y);
        }
        sp_gtype_put_block(type, &p, q, (uint8_t *)dst + (size_t)(b0 / B) * bb);
    }
    return SP_OK;
}
