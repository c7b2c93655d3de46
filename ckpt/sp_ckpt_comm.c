/* sp_ckpt_comm.c — the I/O thread's own collectives, waiting without spinning.
 *
 * Open MPI's blocking collectives busy-poll. On the I/O thread that burns a core whenever one
 * rank waits for another that is sleeping in write(2)/fsync(2) or publishing the checkpoint —
 * a core the application's compute threads need. These wrappers start the nonblocking
 * collective and poll it with MPI_Test, sleeping between polls (20 µs doubling to 1 ms), so a
 * waiting I/O thread costs almost no CPU and at most ~1 ms of latency per sync point.
 * (Collectives inside HDF5 still poll; the engine enters them right after an agreement, when
 * every rank arrives at about the same time.)
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ckpt/sp_ckpt_int.h"

sp_status sp_ck_wait(sp_ckpt *ck, MPI_Request *req, const char *what, sp_err *err) {
    long ns = 20000;
    for (;;) {
        int done = 0, rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return sp_mpi_check(rc, what, err);
        if (done) return SP_OK;
        /* While other ranks keep us waiting, this rank's local jobs (run_on_io, reader calls)
         * still run: no HDF5 call is in progress here. */
        sp_ck_service_local(ck);
        struct timespec ts = {0, ns};
        nanosleep(&ts, NULL);
        if (ns < 1000000) ns *= 2;
    }
}

sp_status sp_ck_agree(sp_ckpt *ck, sp_status local, int plain, sp_err *err) {
    MPI_Comm comm = ck->comm_io;
    int rank = ck->rank, size = ck->size;
    /* Lowest failing rank: MIN over (rank if failed else size), as sp_mpi_agree. */
    int mine = local != SP_OK ? rank : size, first = size;
    MPI_Request req;
    int rc = MPI_Iallreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm, &req);
    sp_status st = rc == MPI_SUCCESS ? sp_ck_wait(ck, &req, "MPI_Iallreduce(agree)", err)
                                     : sp_mpi_check(rc, "MPI_Iallreduce(agree)", err);
    if (st != SP_OK) return st;
    if (first == size) return SP_OK;
    sp_err buf;
    memset(&buf, 0, sizeof buf);
    if (rank == first) {
        buf.code = local;
        if (err) memcpy(buf.msg, err->msg, sizeof buf.msg);
        else snprintf(buf.msg, sizeof buf.msg, "%s", sp_strerror(local));
    }
    rc = MPI_Ibcast(&buf, (int)sizeof buf, MPI_BYTE, first, comm, &req);
    st = rc == MPI_SUCCESS ? sp_ck_wait(ck, &req, "MPI_Ibcast(agree)", err)
                           : sp_mpi_check(rc, "MPI_Ibcast(agree)", err);
    if (st != SP_OK) return st;
    buf.msg[sizeof buf.msg - 1] = '\0';
    if (!plain && size > 1 && strncmp(buf.msg, "rank ", 5) != 0)
        return sp_err_set(err, buf.code, "rank %d: %s", first, buf.msg);
    return sp_err_set(err, buf.code, "%s", buf.msg);
}

sp_status sp_ck_gather_i64(sp_ckpt *ck, const int64_t *mine, int n, int64_t *all,
                           sp_err *err) {
    MPI_Request req;
    int rc = MPI_Igather(mine, n, MPI_INT64_T, all, n, MPI_INT64_T, 0, ck->comm_io, &req);
    if (rc != MPI_SUCCESS) return sp_mpi_check(rc, "MPI_Igather", err);
    return sp_ck_wait(ck, &req, "MPI_Igather", err);
}

sp_status sp_ck_bcast(sp_ckpt *ck, void *buf, int n, MPI_Datatype t, sp_err *err) {
    MPI_Request req;
    int rc = MPI_Ibcast(buf, n, t, 0, ck->comm_io, &req);
    if (rc != MPI_SUCCESS) return sp_mpi_check(rc, "MPI_Ibcast", err);
    return sp_ck_wait(ck, &req, "MPI_Ibcast", err);
}
