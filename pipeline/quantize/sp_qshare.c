/* sp_qshare.c — see sp_qshare.h. */
#include "pipeline/quantize/sp_qshare.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/sp_gtype.h"
#include "kernels/sp_pack.h"
#include "mpi/sp_mpi.h"

static int n_groups_of(int cols, int group_size) {
    int64_t g = group_size > 0 ? group_size : cols; /* int64: cols + g must not overflow */
    return (int)(((int64_t)cols + g - 1) / g);
}

/* Floats of the extra arrays of a gtype level: offsets, then super-block scales. */
static size_t n_mins(int cols, int group_size, int gtype) {
    return gtype && sp_gtype_has_min(gtype) ? (size_t)n_groups_of(cols, group_size) : 0;
}
static size_t n_supers(int cols, int gtype) {
    return gtype && sp_gtype_block(gtype) == 256 ? (size_t)(cols / 256) * 2 : 0;
}

size_t sp_qshare_bytes(int rows, int cols, int bits, int group_size, int gtype) {
    size_t ng = (size_t)n_groups_of(cols, group_size);
    size_t extra = (n_mins(cols, group_size, gtype) + n_supers(cols, gtype)) * sizeof(float);
    return (size_t)rows *
           (sp_pack_nwords((size_t)cols, bits) * 4 + ng * (sizeof(float) + 1) + extra);
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
    p += (size_t)q->rows * ng * (sizeof(float) + 1);
    size_t nm = (size_t)q->rows * n_mins(q->cols, q->group_size, q->gtype);
    if (nm) memcpy(p, q->mins, nm * sizeof(float));
    size_t ns = (size_t)q->rows * n_supers(q->cols, q->gtype);
    if (ns) memcpy(p + nm * sizeof(float), q->supers, ns * sizeof(float));
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
    p += (size_t)q->rows * ng * (sizeof(float) + 1);
    size_t nm = (size_t)q->rows * n_mins(q->cols, q->group_size, q->gtype);
    if (nm && q->mins) memcpy(q->mins, p, nm * sizeof(float));
    size_t ns = (size_t)q->rows * n_supers(q->cols, q->gtype);
    if (ns && q->supers) memcpy(q->supers, p + nm * sizeof(float), ns * sizeof(float));
}

/* MPI counts are int: messages go in pieces of at most 1 GiB. */
#define SP_QSHARE_PIECE ((size_t)1 << 30)

sp_status sp_qshare_bcast(MPI_Comm comm, int root, sp_qlayer *q, int rows, int cols, int bits,
                          int group_size, int sym, int gtype, sp_err *err) {
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    size_t n = sp_qshare_bytes(rows, cols, bits, group_size, gtype);
    char *buf = sp_malloc(n, err, "packed layer");
    sp_status st = buf ? SP_OK : SP_ENOMEM;
    if (st == SP_OK && rank == root) st = sp_qshare_pack(q, buf, err);
    if (st == SP_OK && rank != root)
        st = sp_qlayer_alloc_level(q, rows, cols, bits, group_size, sym, gtype, err);
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
