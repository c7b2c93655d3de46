/* sp_qshare.c — see sp_qshare.h. */
#include "pipeline/quantize/sp_qshare.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/sp_pack.h"
#include "mpi/sp_mpi.h"

static int n_groups_of(int cols, int group_size) {
    int64_t g = group_size > 0 ? group_size : cols; /* int64: cols + g must not overflow */
    return (int)(((int64_t)cols + g - 1) / g);
}

size_t sp_qshare_bytes(int rows, int cols, int bits, int group_size) {
    size_t ng = (size_t)n_groups_of(cols, group_size);
    return (size_t)rows * (sp_pack_nwords((size_t)cols, bits) * 4 + ng * (sizeof(float) + 1));
}

sp_status sp_qshare_pack(const sp_qlayer *q, char *buf, sp_err *err) {
    size_t wpr = sp_pack_nwords((size_t)q->cols, q->bits), ng = (size_t)q->n_groups;
    uint32_t *words = (uint32_t *)(void *)buf;
    for (int r = 0; r < q->rows; r++)
        SP_FORWARD(sp_pack_bits(words + (size_t)r * wpr, 1, q->codes + (size_t)r * q->cols, 1,
                                (size_t)q->cols, q->bits, err));
    char *p = buf + (size_t)q->rows * wpr * 4;
    memcpy(p, q->scales, (size_t)q->rows * ng * sizeof(float));
    memcpy(p + (size_t)q->rows * ng * sizeof(float), q->zeros, (size_t)q->rows * ng);
    return SP_OK;
}

void sp_qshare_unpack(sp_qlayer *q, const char *buf) {
    size_t wpr = sp_pack_nwords((size_t)q->cols, q->bits), ng = (size_t)q->n_groups;
    for (int r = 0; r < q->rows; r++)
        sp_unpack_bits(q->codes + (size_t)r * q->cols, 1, buf + (size_t)r * wpr * 4, 1,
                       (size_t)q->cols, q->bits);
    const char *p = buf + (size_t)q->rows * wpr * 4;
    memcpy(q->scales, p, (size_t)q->rows * ng * sizeof(float));
    memcpy(q->zeros, p + (size_t)q->rows * ng * sizeof(float), (size_t)q->rows * ng);
}

/* MPI counts are int: messages go in pieces of at most 1 GiB. */
#define SP_QSHARE_PIECE ((size_t)1 << 30)

sp_status sp_qshare_bcast(MPI_Comm comm, int root, sp_qlayer *q, int rows, int cols, int bits,
                          int group_size, int sym, sp_err *err) {
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    size_t n = sp_qshare_bytes(rows, cols, bits, group_size);
    char *buf = sp_malloc(n, err, "packed layer");
    sp_status st = buf ? SP_OK : SP_ENOMEM;
    if (st == SP_OK && rank == root) st = sp_qshare_pack(q, buf, err);
    if (st == SP_OK && rank != root) st = sp_qlayer_alloc(q, rows, cols, bits, group_size, sym, err);
    st = sp_mpi_agree(comm, st, err);
    for (size_t off = 0; st == SP_OK && off < n; off += SP_QSHARE_PIECE) {
        size_t cnt = n - off < SP_QSHARE_PIECE ? n - off : SP_QSHARE_PIECE;
        st = sp_mpi_check(MPI_Bcast(buf + off, (int)cnt, MPI_BYTE, root, comm),
                          "MPI_Bcast(layer)", err);
    }
    if (st == SP_OK && rank != root) sp_qshare_unpack(q, buf);
    free(buf);
    return st;
}

sp_status sp_qshare_sendrecv(MPI_Comm comm, int src, int dst, int tag, char *buf, size_t n,
                             sp_err *err) {
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    sp_status st = SP_OK;
    for (size_t off = 0; st == SP_OK && off < n; off += SP_QSHARE_PIECE) {
        size_t cnt = n - off < SP_QSHARE_PIECE ? n - off : SP_QSHARE_PIECE;
        if (rank == src)
            st = sp_mpi_check(MPI_Send(buf + off, (int)cnt, MPI_BYTE, dst, tag, comm),
                              "MPI_Send(layer)", err);
        else if (rank == dst)
            st = sp_mpi_check(MPI_Recv(buf + off, (int)cnt, MPI_BYTE, src, tag, comm,
                                       MPI_STATUS_IGNORE), "MPI_Recv(layer)", err);
    }
    return st;
}
