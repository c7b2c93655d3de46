/* sp_attention.c — causal grouped-query attention over one window. See sp_ops.h.
 *
 * Shape legend: T tokens, Hq query heads, Hkv kv heads, G = Hq/Hkv, hd head dim,
 * nq rows of a query tile, nk = keys visible to the tile (0 .. t0+nq-1).
 *
 * Why tiles: with full T x T score matrices half of every product is masked away. Query tile
 * [t0, t0+nq) only needs keys [0, t0+nq), so the two sgemm calls per tile are
 *   S [nq, nk] = (1/sqrt(hd)) Q_h[t0:t0+nq] · K_kv[0:nk]ᵀ      (lda = Hq*hd, ldb = Hkv*hd)
 *   O_h[t0:t0+nq] = softmax_causal(S) · V_kv[0:nk]               (ldc = Hq*hd)
 * which computes (T/tile + 1)/(2 T/tile) of the full square, about 56% at T = 2048.
 */
#include "kernels/sp_ops.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

void sp_attention_forward(float *out, float *scores, const float *q, const float *k,
                          const float *v, size_t T, int Hq, int Hkv, int hd) {
    int G = Hq / Hkv;                       /* query heads per kv head            */
    int ldq = Hq * hd, ldkv = Hkv * hd;     /* row strides of q/out and of k/v    */
    float scale = (float)(1.0 / sqrt((double)hd));
    for (int h = 0; h < Hq; h++) {
        const float *qh = q + (size_t)h * (size_t)hd;              /* [T, hd], ld ldq  */
        const float *kh = k + (size_t)(h / G) * (size_t)hd;        /* [T, hd], ld ldkv */
        const float *vh = v + (size_t)(h / G) * (size_t)hd;        /* [T, hd], ld ldkv */
        float *oh = out + (size_t)h * (size_t)hd;                  /* [T, hd], ld ldq  */
        for (size_t t0 = 0; t0 < T; t0 += SP_ATTN_TILE) {
            size_t nq = T - t0 < SP_ATTN_TILE ? T - t0 : SP_ATTN_TILE;
            size_t nk = t0 + nq;
            /* scores [nq, nk] = scale * Q_h[t0:t0+nq] K_h[0:nk]ᵀ */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)nk, hd, scale,
                        qh + t0 * (size_t)ldq, ldq, kh, ldkv, 0.0f, scores, (int)nk);
            for (size_t i = 0; i < nq; i++) {
                float *row = scores + i * nk;  /* [nk] */
                size_t nvis = t0 + i + 1;      /* keys 0 .. t0+i are visible */
                sp_softmax_row(row, nvis);
                if (nvis < nk) memset(row + nvis, 0, (nk - nvis) * sizeof(float));
            }
            /* O_h[t0:t0+nq] [nq, hd] = P [nq, nk] · V_h[0:nk] [nk, hd] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nq, hd, (int)nk, 1.0f,
                        scores, (int)nk, vh, ldkv, 0.0f, oh + t0 * (size_t)ldq, ldq);
        }
    }
}

double sp_attention_flops(size_t T, int Hq, int hd) {
    double f = 0.0;
    for (size_t t0 = 0; t0 < T; t0 += SP_ATTN_TILE) {
        size_t nq = T - t0 < SP_ATTN_TILE ? T - t0 : SP_ATTN_TILE;
        size_t nk = t0 + nq;
        f += 2.0 * 2.0 * (double)nq * (double)nk * (double)hd; /* QKᵀ and PV */
    }
    return f * (double)Hq;
}
