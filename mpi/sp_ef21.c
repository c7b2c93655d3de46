/* sp_ef21.c — see sp_ef21.h. */
#include "mpi/sp_ef21.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/sp_mpi.h"

sp_status sp_ef21_uplink(const sp_cmp_spec *c, const float *v, float scale, float *g_i, size_t d,
                         uint64_t stream, float *scratch, sp_cmp_buf *msg, sp_err *err) {
    for (size_t j = 0; j < d; j++) scratch[j] = scale * v[j] - g_i[j];
    size_t at = msg->len;
    SP_FORWARD(sp_cmp_encode(c, scratch, d, stream, msg, err));
    return sp_cmp_decode_add(msg->data + at, msg->len - at, 1.0f, g_i, d, err);
}

sp_status sp_ef_uplink(const sp_cmp_spec *c, const float *v, float scale, float *e, size_t d,
                       uint64_t stream, sp_cmp_buf *msg, sp_err *err) {
    for (size_t j = 0; j < d; j++) e[j] += scale * v[j];
    size_t at = msg->len;
    SP_FORWARD(sp_cmp_encode(c, e, d, stream, msg, err));
    return sp_cmp_decode_add(msg->data + at, msg->len - at, -1.0f, e, d, err);
}

sp_status sp_ef21_downlink(const sp_cmp_spec *c, const float *x, float *xhat, size_t d,
                           uint64_t stream, float *scratch, sp_cmp_buf *msg, sp_err *err) {
    for (size_t j = 0; j < d; j++) scratch[j] = x[j] - xhat[j];
    size_t at = msg->len;
    SP_FORWARD(sp_cmp_encode(c, scratch, d, stream, msg, err));
    return sp_cmp_decode_add(msg->data + at, msg->len - at, 1.0f, xhat, d, err);
}

sp_status sp_ef21_aggregate(const uint8_t *const *msgs, const size_t *lens, const double *w, int n,
                            float *g, size_t d, sp_err *err) {
    for (int i = 0; i < n; i++) {
        sp_status st = sp_cmp_decode_add(msgs[i], lens[i], (float)w[i], g, d, err);
        if (st != SP_OK) return sp_err_prefix(err, "participant %d", i);
    }
    return SP_OK;
}

double sp_ef21_step(double alpha) {
    if (!(alpha > 0.0)) return 0.0; /* NaN too */
    if (alpha >= 1.0) return 1.0;
    return 1.0 - sqrt(1.0 - alpha);
}

sp_status sp_ef21_weights(const char *mode, const double *sizes, int n, double *w, sp_err *err) {
    SP_RETURN_IF(n < 1, err, SP_EINVAL, "weights: %d participants", n);
    if (!strcmp(mode, "uniform")) {
        for (int i = 0; i < n; i++) w[i] = 1.0 / n;
        return SP_OK;
    }
    SP_RETURN_IF(strcmp(mode, "data") && strcmp(mode, "smooth"), err, SP_EINVAL,
                 "weights: '%s' is not uniform, data or smooth", mode);
    double s = 0.0;
    for (int i = 0; i < n; i++) {
        SP_RETURN_IF(!(sizes[i] > 0.0), err, SP_EINVAL, "weights: participant %d has %s %g <= 0", i,
                     mode[0] == 'd' ? "data size" : "smoothness", sizes[i]);
        s += sizes[i];
    }
    for (int i = 0; i < n; i++) w[i] = sizes[i] / s;
    return SP_OK;
}

void sp_ef21_gathered_free(sp_ef21_gathered *g) {
    if (!g) return;
    free(g->data);
    free(g->off);
    free(g->len);
    memset(g, 0, sizeof *g);
}

sp_status sp_ef21_gather(MPI_Comm comm, int root, const uint8_t *mine, size_t len,
                         sp_ef21_gathered *all, sp_err *err) {
    int rank = 0, size = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    memset(all, 0, sizeof *all);
    /* Four collectives: the lengths (a rank that cannot take part sends UINT64_MAX, so they
     * double as the agreement on its local failure), the agreement on the receive buffers,
     * the bytes, and the agreement on the MPI status. The bench runs one gather per round. */
    uint64_t *lens = malloc((size_t)size * sizeof *lens);
    int *cnt = malloc(2 * (size_t)size * sizeof *cnt);
    uint64_t l = lens && cnt ? (uint64_t)len : UINT64_MAX, dummy[1];
    int rc = MPI_Allgather(&l, 1, MPI_UINT64_T, lens ? lens : dummy, lens ? 1 : 0, MPI_UINT64_T, comm);
    sp_status st = sp_mpi_check(rc, "MPI_Allgather(message lengths)", err);
    uint64_t total = 0;
    for (int r = 0; st == SP_OK && lens && r < size; r++) {
        if (lens[r] == UINT64_MAX)
            st = sp_err_set(err, SP_ENOMEM, "exchange: rank %d is out of memory for the gather", r);
        total += lens[r];
    }
    if (st == SP_OK && (!lens || !cnt))
        st = sp_err_set(err, SP_ENOMEM, "exchange: out of memory for the gather");
    if (st == SP_OK && total > INT_MAX)
        st = sp_err_set(err, SP_EUNSUPPORTED, "exchange: %llu bytes in one gather (limit %d)",
                        (unsigned long long)total, INT_MAX);
    int recv = root < 0 || rank == root;
    if (st == SP_OK) {
        if (recv) {
            all->n = size;
            all->total = (size_t)total;
            all->data = sp_malloc(total ? (size_t)total : 1, err, "gathered messages");
            all->off = sp_malloc((size_t)size * sizeof *all->off, err, "gather offsets");
            all->len = sp_malloc((size_t)size * sizeof *all->len, err, "gather lengths");
            if (!all->data || !all->off || !all->len) st = SP_ENOMEM;
        }
        for (int r = 0; st == SP_OK && r < size; r++) {
            cnt[r] = (int)lens[r];
            cnt[size + r] = r ? cnt[size + r - 1] + cnt[r - 1] : 0;
            if (recv) {
                all->len[r] = (size_t)lens[r];
                all->off[r] = (size_t)cnt[size + r];
            }
        }
        st = sp_mpi_agree(comm, st, err);
    }
    if (st == SP_OK) {
        rc = root < 0 ? MPI_Allgatherv(mine, (int)len, MPI_BYTE, all->data, cnt, cnt + size,
                                       MPI_BYTE, comm)
                      : MPI_Gatherv(mine, (int)len, MPI_BYTE, all->data, cnt, cnt + size,
                                    MPI_BYTE, root, comm);
        st = sp_mpi_check(rc, root < 0 ? "MPI_Allgatherv(messages)" : "MPI_Gatherv(messages)", err);
        st = sp_mpi_agree(comm, st, err);
    }
    free(lens);
    free(cnt);
    if (st != SP_OK) sp_ef21_gathered_free(all);
    return st;
}
