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

#include "kernels/sp_blas.h"

/* Threads: the work is split into tasks of one (head, query tile) each, run on the sp_blas pool.
 * A task's two products are plain single-threaded cblas calls (sp_blas keeps OpenBLAS at one
 * thread) with shapes fixed by the tile, so a task's bits do not depend on the thread that runs
 * it or on how many run: the result is the same for any thread count. The per-head products
 * are too small (nq × nk × hd) to be worth splitting themselves. Each running task needs its
 * own [nq, nk] score block: the [T, T] scratch holds T / min(T, SP_ATTN_TILE) of them, which
 * bounds the tasks running at once (8 at T = 2048, 1 below 2 tiles). */
typedef struct {
    float *out, *scores;
    const float *q, *k, *v;
    size_t T;
    int Hq, G, hd, ldq, ldkv, n_tiles;
    float scale;
} attn_job;

static void attn_task(void *p, int task, int slot) {
    const attn_job *j = p;
    /* Largest tiles (most keys) first, so that the last tasks to start are the short ones. */
    int h = task % j->Hq;
    size_t t0 = (size_t)(j->n_tiles - 1 - task / j->Hq) * SP_ATTN_TILE;
    size_t T = j->T, hd = (size_t)j->hd;
    size_t tile_rows = T < SP_ATTN_TILE ? T : SP_ATTN_TILE;
    float *scores = j->scores + (size_t)slot * tile_rows * T;           /* [nq, nk]          */
    const float *qh = j->q + (size_t)h * hd;                            /* [T, hd], ld ldq   */
    const float *kh = j->k + (size_t)(h / j->G) * hd;                   /* [T, hd], ld ldkv  */
    const float *vh = j->v + (size_t)(h / j->G) * hd;                   /* [T, hd], ld ldkv  */
    float *oh = j->out + (size_t)h * hd;                                /* [T, hd], ld ldq   */
    size_t nq = T - t0 < SP_ATTN_TILE ? T - t0 : SP_ATTN_TILE;
    size_t nk = t0 + nq;
    /* scores [nq, nk] = scale * Q_h[t0:t0+nq] K_h[0:nk]ᵀ */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)nk, j->hd, j->scale,
                qh + t0 * (size_t)j->ldq, j->ldq, kh, j->ldkv, 0.0f, scores, (int)nk);
    for (size_t i = 0; i < nq; i++) {
        float *row = scores + i * nk;  /* [nk] */
        size_t nvis = t0 + i + 1;      /* keys 0 .. t0+i are visible */
        sp_softmax_row(row, nvis);
        if (nvis < nk) memset(row + nvis, 0, (nk - nvis) * sizeof(float));
    }
    /* O_h[t0:t0+nq] [nq, hd] = P [nq, nk] · V_h[0:nk] [nk, hd] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nq, j->hd, (int)nk, 1.0f,
                scores, (int)nk, vh, j->ldkv, 0.0f, oh + t0 * (size_t)j->ldq, j->ldq);
}

void sp_attention_forward(float *out, float *scores, const float *q, const float *k,
                          const float *v, size_t T, int Hq, int Hkv, int hd) {
    attn_job j = {
        .out = out, .scores = scores, .q = q, .k = k, .v = v, .T = T, .Hq = Hq,
        .G = Hq / Hkv,                            /* query heads per kv head            */
        .hd = hd, .ldq = Hq * hd, .ldkv = Hkv * hd, /* row strides of q/out and of k/v  */
        .n_tiles = (int)((T + SP_ATTN_TILE - 1) / SP_ATTN_TILE),
        .scale = (float)(1.0 / sqrt((double)hd)),
    };
    size_t tile_rows = T < SP_ATTN_TILE ? T : SP_ATTN_TILE;
    int slots = (int)(T / tile_rows);
    /* Below ~2 multiply-add megaflops the pool's hand-off costs more than it saves. */
    if (sp_attention_flops(T, Hq, hd) < 2.0 * (double)SP_BLAS_SERIAL_MNK) slots = 1;
    sp_blas_parallel(j.n_tiles * Hq, slots, attn_task, &j);
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
