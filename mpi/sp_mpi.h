/* sp_mpi.h — MPI helpers every job uses: agreeing on failure, splitting work, ordered
 * (deterministic) gathers, and rank-0 logging.
 *
 * Rules
 *   - The communicator is always passed in; MPI_COMM_WORLD appears only in pipeline/main.c.
 *   - Functions marked "collective" must be called by every rank of comm, in the same order.
 *   - Failure on one rank must never leave the others waiting: every collective phase of a
 *     job ends with sp_mpi_agree(), which turns "some rank failed" into the same error on
 *     every rank, carrying the message of the lowest failing rank.
 */
#ifndef SP_MPI_H
#define SP_MPI_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "common/sp_error.h"

/* Collective. Every rank passes its local status (err holds its message when not SP_OK).
 * @return SP_OK on every rank if all ranks passed SP_OK; otherwise, on every rank, the code
 *         and message of the lowest failing rank (prefixed "rank R: " when size > 1). */
sp_status sp_mpi_agree(MPI_Comm comm, sp_status local, sp_err *err);

/* Block distribution of n items over size ranks: rank r gets [*begin, *end). The first
 * n % size ranks get one more. Pure function: the same for every rank count. */
void sp_mpi_split_range(size_t n, int rank, int size, size_t *begin, size_t *end);

/* Collective. Each rank holds the values of its block of n items (sp_mpi_split_range);
 * on return `all` [n] holds every item in item order on every rank. Used so that sums are
 * always taken in item order, whatever the rank count (deterministic reductions). */
sp_status sp_mpi_allgather_blocks_f64(MPI_Comm comm, const double *mine, size_t n, double *all,
                                      sp_err *err);

/* Collective. The general form: n items of `item_len` elements of `type` each, rank r holding the items of its sp_mpi_split_range block. mine == NULL means "in
 * place": my block is already at its offset in `all`. Fails cleanly (SP_EUNSUPPORTED, naming
 * `what`) when a count or offset does not fit MPI's int. */
sp_status sp_mpi_allgather_blocks(MPI_Comm comm, const void *mine, size_t n, size_t item_len,
                                  MPI_Datatype type, void *all, const char *what,
                                  sp_err *err);

/* Collective. MPI_Bcast of `count` elements from rank 0, in chunks of 2^28 elements so that
 * buffers above MPI's int count limit go through. Every rank passes the same count. */
sp_status sp_mpi_bcast_large(MPI_Comm comm, void *buf, size_t count, MPI_Datatype type,
                             size_t elem_size, const char *what, sp_err *err);

/* Sum of n doubles in index order (Kahan-free, fixed order: bitwise reproducible). */
double sp_mpi_ordered_sum(const double *v, size_t n);

/* Number of ranks of comm on this node (MPI_COMM_TYPE_SHARED). */
int sp_mpi_local_size(MPI_Comm comm);

/* Wrap an MPI return code: SP_OK, or SP_EMPI with MPI_Error_string and the call's name. */
sp_status sp_mpi_check(int mpi_rc, const char *what, sp_err *err);

#endif
