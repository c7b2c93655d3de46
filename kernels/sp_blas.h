/* sp_blas.h — deterministic multithreaded GEMM: the same bits for any thread count.
 *
 * Why: OpenBLAS 0.3.21's own threading is not reproducible across thread counts. Its
 * multithreaded level-3 driver splits C into one range per thread, and the edge micro-kernels
 * (narrower tiles) round differently from the full-width ones, so with 1 vs 2 threads about
 * 6.5% of a 256×256×16 sgemm's outputs differ in the last bits (no K blocking involved). With
 * one rank per node getting cores/ranks threads, ppl and GPTQ codes then depend on the number
 * of ranks (docs/architecture.md, "Threads").
 *
 * What: OpenBLAS runs single-threaded, and sp_blas_sgemm / sp_blas_dgemm split C into tiles
 * of SP_BLAS_TILE_M × SP_BLAS_TILE_N entries starting at multiples of the tile size (the last
 * row/column of tiles is shorter). The tiling depends only on M and N, never on the thread
 * count; each tile is one single-threaded cblas call over the whole K (K is never split, so
 * every entry's sum runs in one kernel's order). Measured (see docs/architecture.md):
 * single-threaded OpenBLAS gives a tile the same bits whether it is computed alone (tight
 * copies, other alignment) or inside the large matrix, and whichever thread runs it. So the
 * result is the same for 1 thread, N threads, or the serial path that small products take
 * (same tiles, run in order on the caller's thread, no thread hand-off).
 *
 * Process-wide state (a documented exception to "no globals in library code"): the pool of
 * worker threads and the thread count. A context object passed down would have to travel
 * through every kernel signature (sp_linear_forward, sp_attention_forward, sp_hacc_add, the
 * GPTQ body...) and every job that calls them, for a setting that is one per process by
 * nature: OpenBLAS's own thread count, which it replaces, is process-wide too. Only
 * pipeline/main.c (and tests/benchmarks, which are their own programs) call the setter,
 * before any job runs. Until it is called everything runs serially on the caller's thread.
 *
 * Thread safety: any thread may call the products and sp_blas_parallel at any time. The pool
 * runs one call at a time; a call made while the pool is busy (from another thread, or from
 * inside a task of the pool) runs its tasks serially on its own thread. Results do not change.
 */
#ifndef SP_BLAS_H
#define SP_BLAS_H

#include <cblas.h>

#include "common/sp_error.h"

/* Tile of C handed to one single-threaded cblas call. Large enough that packing (O((m+n)K)
 * per tile) is small beside the product (O(mnK)), small enough that a 2048-token window's
 * linears give tens of tiles for load balance. Changing them changes results' last bits. */
#define SP_BLAS_TILE_M 256
#define SP_BLAS_TILE_N 256

/* Products with fewer multiply-adds than this run their tiles serially on the caller's
 * thread (waking the pool costs more than it saves). Affects speed only, never bits. */
#define SP_BLAS_SERIAL_MNK (1L << 21)

/* Set the number of threads (caller included) that the products use: starts n-1 persistent
 * workers (joining any previous ones), and sets OpenBLAS itself to 1 thread, since the tile
 * invariance above holds only for single-threaded OpenBLAS calls. n < 1 is SP_EINVAL; a
 * failed pthread_create is SP_ENOMEM (the pool then runs with the workers it got: still
 * correct, and the same bits). Not to be called while another thread is inside sp_blas. */
sp_status sp_blas_set_threads(int n, sp_err *err);

/* The thread count set (1 before any sp_blas_set_threads). */
int sp_blas_threads(void);

/* Join the workers; the products then run serially. Safe to call when none were started. */
void sp_blas_shutdown(void);

/* Row- or column-major C = alpha·op(A)·op(B) + beta·C, arguments exactly as cblas_sgemm /
 * cblas_dgemm (op(A) [M, K], op(B) [K, N], C [M, N]), computed tile by tile as described
 * above. The bits depend on the shapes, transposes, alpha, beta and data only. */
void sp_blas_sgemm(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N,
                   int K, float alpha, const float *A, int lda, const float *B, int ldb,
                   float beta, float *C, int ldc);
void sp_blas_dgemm(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N,
                   int K, double alpha, const double *A, int lda, const double *B, int ldb,
                   double beta, double *C, int ldc);

/* Run fn(arg, task, slot) for every task in [0, n_tasks) on the pool, returning when all are
 * done. At most max_slots threads take part; slot in [0, max_slots) names the thread running
 * the task, so that a caller can give each slot its own scratch (no two tasks run in the same
 * slot at once). Tasks must write disjoint outputs and must not depend on their order or slot
 * for their values: that is what keeps the result independent of the thread count. Nested
 * calls (from inside a task) run serially in slot 0 of their own call. */
typedef void (*sp_blas_task_fn)(void *arg, int task, int slot);
void sp_blas_parallel(int n_tasks, int max_slots, sp_blas_task_fn fn, void *arg);

#endif
