/* sp_mpi.c — see sp_mpi.h. */
#include "mpi/sp_mpi.h"

#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

sp_status sp_mpi_check(int mpi_rc, const char *what, sp_err *err) {
    if (mpi_rc == MPI_SUCCESS) return SP_OK;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(mpi_rc, msg, &len);
    return sp_err_set(err, SP_EMPI, "%s failed: %s", what, msg);
}

sp_status sp_mpi_agree(MPI_Comm comm, sp_status local, sp_err *err) {
    int rank = 0, size = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    /* Lowest failing rank: MIN over (rank if failed else size). */
    int mine = local != SP_OK ? rank : size, first = size;
    int rc = MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
    if (rc != MPI_SUCCESS) return sp_mpi_check(rc, "MPI_Allreduce(agree)", err);
    if (first == size) return SP_OK;

    /* The failing rank's code and message travel to everyone in one buffer. */
    struct { int code; char msg[SP_ERR_MSG_MAX]; } buf;
    memset(&buf, 0, sizeof buf);
    if (rank == first) {
        buf.code = (int)local;
        if (err) memcpy(buf.msg, err->msg, sizeof buf.msg);
        else snprintf(buf.msg, sizeof buf.msg, "%s", sp_strerror(local));
        buf.msg[sizeof buf.msg - 1] = '\0';
    }
    rc = MPI_Bcast(&buf, (int)sizeof buf, MPI_BYTE, first, comm);
    if (rc != MPI_SUCCESS) return sp_mpi_check(rc, "MPI_Bcast(agree)", err);
    if (size > 1 && strncmp(buf.msg, "rank ", 5) != 0)
        return sp_err_set(err, (sp_status)buf.code, "rank %d: %s", first, buf.msg);
    return sp_err_set(err, (sp_status)buf.code, "%s", buf.msg);
}

void sp_mpi_split_range(size_t n, int rank, int size, size_t *begin, size_t *end) {
    size_t base = n / (size_t)size, extra = n % (size_t)size, r = (size_t)rank;
    *begin = r * base + (r < extra ? r : extra);
    *end = *begin + base + (r < extra ? 1 : 0);
}

sp_status sp_mpi_allgather_blocks(MPI_Comm comm, const void *mine, size_t n, size_t item_len,
                                  MPI_Datatype type, void *all, const char *what,
                                  sp_err *err) {
    int size = 1, rank = 0;
    MPI_Comm_size(comm, &size);
    MPI_Comm_rank(comm, &rank);
    SP_RETURN_IF(n * item_len > (size_t)INT_MAX, err, SP_EUNSUPPORTED,
                 "%s: %zu elements exceed MPI's int count", what, n * item_len);
    int *counts = sp_malloc(2 * (size_t)size * sizeof(int), err, "allgather counts");
    if (!counts) return SP_ENOMEM;
    int *displs = counts + size;
    for (int r = 0; r < size; r++) {
        size_t b, e;
        sp_mpi_split_range(n, r, size, &b, &e);
        counts[r] = (int)((e - b) * item_len);
        displs[r] = (int)(b * item_len);
    }
    /* MPI_IN_PLACE ignores the send arguments; otherwise my block is copied in by MPI. */
    const void *send = mine ? mine : MPI_IN_PLACE;
    int rc = MPI_Allgatherv(send, counts[rank], type, all, counts, displs, type, comm);
    free(counts);
    return sp_mpi_check(rc, what, err);
}

sp_status sp_mpi_allgather_blocks_f64(MPI_Comm comm, const double *mine, size_t n, double *all,
                                      sp_err *err) {
    return sp_mpi_allgather_blocks(comm, mine, n, 1, MPI_DOUBLE, all, "MPI_Allgatherv", err);
}

sp_status sp_mpi_bcast_large(MPI_Comm comm, void *buf, size_t count, MPI_Datatype type,
                             size_t elem_size, const char *what, sp_err *err) {
    const size_t chunk = (size_t)1 << 28;
    sp_status st = SP_OK;
    for (size_t off = 0; st == SP_OK && off < count; off += chunk) {
        size_t cnt = count - off < chunk ? count - off : chunk;
        st = sp_mpi_check(MPI_Bcast((char *)buf + off * elem_size, (int)cnt, type, 0, comm), what, err);
    }
    return st;
}

double sp_mpi_ordered_sum(const double *v, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += v[i];
    return s;
}

int sp_mpi_local_size(MPI_Comm comm) {
    MPI_Comm node;
    int n = 1;
    if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        MPI_Comm_size(node, &n);
        MPI_Comm_free(&node);
    }
    return n;
}
