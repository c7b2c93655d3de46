/* sp_blas.c — see sp_blas.h.
 *
 * The pool: n-1 workers sleep on a condition variable; a call publishes one job (function,
 * argument, task count, slot limit), bumps a generation counter and wakes them; the caller
 * works as slot 0. Tasks are handed out from an atomic counter (which thread gets which task
 * does not matter for the bits, only for the balance). The caller waits until every worker
 * has seen the job and left it, so the job (on the caller's stack) outlives every access.
 */
#include "kernels/sp_blas.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>


typedef struct {
    pthread_mutex_t mu;     /* guards everything below except next                         */
    pthread_cond_t go;      /* workers: a new generation (job) or stop                     */
    pthread_cond_t done;    /* caller: the last worker left the job                        */
    pthread_mutex_t submit; /* held by the one caller whose job the pool runs              */
    pthread_t *th;          /* [n_workers]                                                 */
    int n_workers;          /* started workers (threads - 1, fewer if pthread_create fails) */
    int threads;            /* threads requested (caller included)                         */
    unsigned long gen;      /* job generation                                              */
    unsigned long gen0;     /* gen when the workers were started (no job in flight then)    */
    int stop;
    int busy;               /* workers that have not left the current job                  */
    /* the current job */
    sp_blas_task_fn fn;
    void *arg;
    int n_tasks, max_slots;
    atomic_int next;
} sp_blas_pool;

static sp_blas_pool pool = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .go = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
    .submit = PTHREAD_MUTEX_INITIALIZER,
    .threads = 1,
};

/* 1 on a thread while it runs tasks of a pool job: a nested call must not wait for the pool
 * it is part of. */
static _Thread_local int in_job;

static void run_tasks(int slot) {
    in_job = 1;
    for (;;) {
        int t = atomic_fetch_add_explicit(&pool.next, 1, memory_order_relaxed);
        if (t >= pool.n_tasks) break;
        pool.fn(pool.arg, t, slot);
    }
    in_job = 0;
}

static void *worker_main(void *p) {
    int slot = (int)(size_t)p;
    pthread_mutex_lock(&pool.mu);
    /* Not pool.gen: a job may have been published before this thread got here, and it must
     * still take part in it (the caller counts on every worker leaving the job). */
    unsigned long seen = pool.gen0;
    for (;;) {
        while (!pool.stop && pool.gen == seen) pthread_cond_wait(&pool.go, &pool.mu);
        if (pool.stop) break;
        seen = pool.gen;
        int take = slot < pool.max_slots;
        pthread_mutex_unlock(&pool.mu);
        if (take) run_tasks(slot);
        pthread_mutex_lock(&pool.mu);
        if (--pool.busy == 0) pthread_cond_signal(&pool.done);
    }
    pthread_mutex_unlock(&pool.mu);
    return NULL;
}

void sp_blas_shutdown(void) {
    pthread_mutex_lock(&pool.mu);
    pool.stop = 1;
    pthread_cond_broadcast(&pool.go);
    pthread_mutex_unlock(&pool.mu);
    for (int i = 0; i < pool.n_workers; i++) pthread_join(pool.th[i], NULL);
    free(pool.th);
    pthread_mutex_lock(&pool.mu);
    pool.th = NULL;
    pool.n_workers = 0;
    pool.threads = 1;
    pool.stop = 0;
    pthread_mutex_unlock(&pool.mu);
}

sp_status sp_blas_set_threads(int n, sp_err *err) {
    SP_RETURN_IF(n < 1, err, SP_EINVAL, "sp_blas: thread count %d (need >= 1)", n);
    openblas_set_num_threads(1);
    sp_blas_shutdown();
    if (n == 1) return SP_OK;
    pool.th = sp_malloc((size_t)(n - 1) * sizeof *pool.th, err, "sp_blas thread pool");
    if (!pool.th) return SP_ENOMEM;
    pool.threads = n;
    pool.gen0 = pool.gen;
    for (int i = 0; i < n - 1; i++) {
        int rc = pthread_create(&pool.th[i], NULL, worker_main, (void *)(size_t)(i + 1));
        if (rc != 0) {
            return sp_err_set(err, SP_ENOMEM, "sp_blas: cannot start thread %d of %d: %s",
                              i + 2, n, strerror(rc));
        }
        pool.n_workers = i + 1;
    }
    return SP_OK;
}

int sp_blas_threads(void) { return pool.threads; }

void sp_blas_parallel(int n_tasks, int max_slots, sp_blas_task_fn fn, void *arg) {
    if (n_tasks <= 0) return;
    int serial = n_tasks == 1 || max_slots <= 1 || in_job;
    if (!serial) {
        pthread_mutex_lock(&pool.mu);
        serial = pool.n_workers == 0;
        pthread_mutex_unlock(&pool.mu);
    }
    if (serial || pthread_mutex_trylock(&pool.submit) != 0) {
        for (int t = 0; t < n_tasks; t++) fn(arg, t, 0);
        return;
    }
    pthread_mutex_lock(&pool.mu);
    pool.fn = fn;
    pool.arg = arg;
    pool.n_tasks = n_tasks;
    pool.max_slots = max_slots;
    atomic_store_explicit(&pool.next, 0, memory_order_relaxed);
    pool.busy = pool.n_workers;
    pool.gen++;
    pthread_cond_broadcast(&pool.go);
    pthread_mutex_unlock(&pool.mu);
    run_tasks(0);
    pthread_mutex_lock(&pool.mu);
    while (pool.busy > 0) pthread_cond_wait(&pool.done, &pool.mu);
    pthread_mutex_unlock(&pool.mu);
    pthread_mutex_unlock(&pool.submit);
}

/* ---- the tiled products ------------------------------------------------------------------
 * Everything is turned into row-major first: column-major C = op(A)·op(B) is row-major
 * Cᵀ = op(B)ᵀ·op(A)ᵀ, i.e. the same call with A and B (and M and N) swapped. Tile (ti, tj)
 * covers C rows [ti·TM, ...) and columns [tj·TN, ...); its operands are rows of op(A) and
 * columns of op(B):
 *   op(A) rows i0..   : A + i0·lda (NoTrans, A [M, K])  or  A + i0 (Trans, A [K, M])
 *   op(B) columns j0..: B + j0 (NoTrans, B [K, N])      or  B + j0·ldb (Trans, B [N, K]) */

#define SP_BLAS_GEMM_IMPL(NAME, T, CBLAS)                                                      \
    typedef struct {                                                                           \
        CBLAS_TRANSPOSE ta, tb;                                                                \
        int M, N, K, lda, ldb, ldc, tiles_n;                                                   \
        T alpha, beta;                                                                         \
        const T *A, *B;                                                                        \
        T *C;                                                                                  \
    } NAME##_job;                                                                              \
                                                                                               \
    static void NAME##_tile(void *p, int task, int slot) {                                     \
        (void)slot;                                                                            \
        const NAME##_job *j = p;                                                               \
        int i0 = (task / j->tiles_n) * SP_BLAS_TILE_M, j0 = (task % j->tiles_n) * SP_BLAS_TILE_N; \
        int m = j->M - i0 < SP_BLAS_TILE_M ? j->M - i0 : SP_BLAS_TILE_M;                       \
        int n = j->N - j0 < SP_BLAS_TILE_N ? j->N - j0 : SP_BLAS_TILE_N;                       \
        const T *a = j->ta == CblasNoTrans ? j->A + (size_t)i0 * j->lda : j->A + i0;           \
        const T *b = j->tb == CblasNoTrans ? j->B + j0 : j->B + (size_t)j0 * j->ldb;           \
        CBLAS(CblasRowMajor, j->ta, j->tb, m, n, j->K, j->alpha, a, j->lda, b, j->ldb, j->beta, \
              j->C + (size_t)i0 * j->ldc + j0, j->ldc);                                        \
    }                                                                                          \
                                                                                               \
    void NAME(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K,  \
              T alpha, const T *A, int lda, const T *B, int ldb, T beta, T *C, int ldc) {      \
        if (M <= 0 || N <= 0) return;                                                          \
        NAME##_job j;                                                                          \
        if (order == CblasRowMajor)                                                            \
            j = (NAME##_job){ta, tb, M, N, K, lda, ldb, ldc, 0, alpha, beta, A, B, C};         \
        else                                                                                   \
            j = (NAME##_job){tb, ta, N, M, K, ldb, lda, ldc, 0, alpha, beta, B, A, C};         \
        int tiles_m = (j.M + SP_BLAS_TILE_M - 1) / SP_BLAS_TILE_M;                             \
        j.tiles_n = (j.N + SP_BLAS_TILE_N - 1) / SP_BLAS_TILE_N;                               \
        int tiles = tiles_m * j.tiles_n;                                                       \
        /* Small products: the same tiles, serially on this thread (one slot). */              \
        int slots = (double)M * N * (K > 0 ? K : 1) < (double)SP_BLAS_SERIAL_MNK ? 1 : tiles;  \
        sp_blas_parallel(tiles, slots, NAME##_tile, &j);                                       \
    }

SP_BLAS_GEMM_IMPL(sp_blas_sgemm, float, cblas_sgemm)
SP_BLAS_GEMM_IMPL(sp_blas_dgemm, double, cblas_dgemm)
