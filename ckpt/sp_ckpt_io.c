/* sp_ckpt_io.c — the I/O thread: the job loop and the write of one checkpoint.
 *
 * Every rank's I/O thread takes collective jobs from its queue in the same order, so the
 * collective HDF5 and MPI calls below line up across ranks on ck->comm_io. Each phase of a
 * checkpoint ends with sp_ck_agree(comm_io): a rank that failed stops issuing collective HDF5
 * calls only at a phase boundary, where every other rank learns of the failure too; inside the
 * write phase a rank whose H5Dwrite failed still issues the remaining (collective) writes.
 * Phases and their agreement points are listed in sp_ckpt.h.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "ckpt/sp_ckpt_int.h"

_Static_assert(sizeof(z_off_t) >= 8, "crc32_combine needs 64-bit lengths");

#define CLOSE_ID(fn, id)             \
    do {                             \
        if ((id) >= 0) (void)fn(id); \
        (id) = H5I_INVALID_HID;      \
    } while (0)

/* ---- job loop ------------------------------------------------------------------------------- */

static void finish(sp_ckpt *ck, sp_ck_job *j) {
    pthread_mutex_lock(&ck->mu);
    j->finished = 1; /* the main thread may free j from here on: do not touch it after */
    if (j->kind == SP_CK_JOB_CKPT) ck->n_finished++;
    pthread_cond_broadcast(&ck->cv_done);
    pthread_mutex_unlock(&ck->mu);
}

static void run_fn(sp_ckpt *ck, sp_ck_job *j) {
    j->err.code = SP_OK;
    j->err.msg[0] = '\0';
    j->result = j->fn(j->arg, &j->err);
    if (j->result != SP_OK && j->err.msg[0] == '\0')
        sp_err_set(&j->err, j->result, "%s", sp_strerror(j->result));
    finish(ck, j);
}

void sp_ck_service_local(sp_ckpt *ck) {
    for (;;) {
        pthread_mutex_lock(&ck->mu);
        sp_ck_job *j = ck->local_head;
        if (j) {
            ck->local_head = j->qnext;
            if (!ck->local_head) ck->local_tail = NULL;
        }
        pthread_mutex_unlock(&ck->mu);
        if (!j) return;
        run_fn(ck, j);
    }
}

static void write_ckpt(sp_ckpt *ck, sp_ck_job *j);

void *sp_ck_io_main(void *arg) {
    sp_ckpt *ck = arg;
    for (;;) {
        pthread_mutex_lock(&ck->mu);
        while (!ck->local_head && !ck->coll_head) pthread_cond_wait(&ck->cv_work, &ck->mu);
        sp_ck_job *j;
        if (ck->local_head) { /* local jobs first: a main thread is blocked on each */
            j = ck->local_head;
            ck->local_head = j->qnext;
            if (!ck->local_head) ck->local_tail = NULL;
        } else {
            j = ck->coll_head;
            ck->coll_head = j->qnext;
            if (!ck->coll_head) ck->coll_tail = NULL;
        }
        pthread_mutex_unlock(&ck->mu);
        switch (j->kind) {
        case SP_CK_JOB_FN: run_fn(ck, j); break;
        case SP_CK_JOB_COLL: {
            sp_ck_quiet q;
            sp_ck_quiet_begin(&q);
            run_fn(ck, j);
            sp_ck_quiet_end(&q);
            break;
        }
        case SP_CK_JOB_CKPT: write_ckpt(ck, j); break;
        case SP_CK_JOB_STOP: finish(ck, j); return NULL;
        }
    }
}

/* ---- one checkpoint --------------------------------------------------------------------------- */

typedef struct {
    sp_ckpt *ck;
    sp_ck_job *job;
    char *path, *tmp; /* final and temporary file                                */
    uint32_t *crc;    /* [n_items] this rank's slab CRC, then the dataset's CRC    */
    int64_t *nbytes;  /* [n_items] the dataset's byte count (after phase 0)        */
    char *blob;       /* rank 0's attribute values (strings NUL-terminated, i64)   */
    int64_t blob_len;
    int64_t total;    /* all datasets' bytes                                       */
    hid_t file, *dset;
    int open_all;  /* the file is open on every rank (its creation was agreed)     */
    int published; /* the file is renamed to its final name and `latest` names it  */
} wctx;

/* CRC-32 of n bytes (zlib takes uInt lengths, so feed it 1 GiB at a time). */
static uint32_t crc_bytes(const void *p, size_t n) {
    uLong c = crc32(0L, Z_NULL, 0);
    const Bytef *b = p;
    while (n > 0) {
        uInt k = n > ((size_t)1 << 30) ? (uInt)1 << 30 : (uInt)n;
        c = crc32(c, b, k);
        b += k;
        n -= k;
    }
    return (uint32_t)c;
}

static int cmp_row0(const void *a, const void *b) {
    int64_t x = ((const int64_t *)a)[0], y = ((const int64_t *)b)[0];
    return (x > y) - (x < y);
}

/* Rank 0: the slabs of item i (4 int64 per rank in `all`: row0, nrows, crc, nbytes) must tile
 * [0, shape0); combine their CRCs in row order. slab is scratch of 4 × size int64. */
static sp_status combine_item(const wctx *w, int i, const int64_t *all, int64_t *slab,
                              sp_err *err) {
    const sp_ckpt *ck = w->ck;
    const sp_ck_item *it = &w->job->items[i];
    int n = 0, ni = w->job->n_items;
    for (int r = 0; r < ck->size; r++) {
        const int64_t *v = all + ((size_t)r * (size_t)ni + (size_t)i) * 4;
        if (v[1] == 0) continue;
        memcpy(slab + 4 * n, v, 4 * sizeof *v);
        n++;
    }
    qsort(slab, (size_t)n, 4 * sizeof *slab, cmp_row0);
    int64_t next = 0, bytes = 0;
    uLong c = crc32(0L, Z_NULL, 0);
    for (int k = 0; k < n; k++) {
        const int64_t *v = slab + 4 * k;
        SP_RETURN_IF(v[0] != next, err, SP_EINVAL,
                     "%s: dataset '%s': rows %lld..%lld are %s", w->path, it->name,
                     (long long)(v[0] < next ? v[0] : next), (long long)(v[0] < next ? next : v[0]),
                     v[0] < next ? "written by two ranks" : "written by no rank");
        c = crc32_combine(c, (uLong)v[2], (z_off_t)v[3]);
        bytes += v[3];
        next = v[0] + v[1];
    }
    SP_RETURN_IF(next != it->shape[0], err, SP_EINVAL,
                 "%s: dataset '%s': rows %lld..%lld are written by no rank", w->path, it->name,
                 (long long)next, (long long)it->shape[0]);
    w->crc[i] = (uint32_t)c;
    w->nbytes[i] = bytes;
    return SP_OK;
}

static size_t attr_blob_len(const sp_ck_job *j) {
    size_t n = 0;
    for (int i = 0; i < j->n_attrs; i++)
        n += j->attrs[i].is_str ? strlen(j->attrs[i].str) + 1 : sizeof(int64_t);
    return n;
}

/* Phase 0: local CRCs; rank 0 checks the tiling, combines, checks free space; rank 0's
 * attribute values and the dataset CRCs reach every rank. */
static sp_status phase_checks(wctx *w, sp_err *err) {
    sp_ckpt *ck = w->ck;
    sp_ck_job *j = w->job;
    int ni = j->n_items, root = ck->rank == 0;
    int64_t *mine = NULL, *all = NULL, *slab = NULL, *tab = NULL;
    /* The description: valid on every rank (a put_* error marks it bad), and the same on
     * every rank (names, dtypes, shapes, order) — before any collective sized by it. */
    sp_status st = j->bad;
    if (st != SP_OK) *err = j->bad_err;
    if ((st = sp_ck_agree(ck, st, 0, err)) != SP_OK) return st;
    uint64_t hv[2] = {j->hash, ~j->hash}, hr[2] = {0, 0};
    MPI_Request req;
    int rc = MPI_Iallreduce(hv, hr, 2, MPI_UINT64_T, MPI_MAX, ck->comm_io, &req);
    st = rc == MPI_SUCCESS ? sp_ck_wait(ck, &req, "MPI_Iallreduce(description)", err)
                           : sp_mpi_check(rc, "MPI_Iallreduce(description)", err);
    if (st != SP_OK) return st;
    if (hr[0] != ~hr[1]) /* max(h) == min(h): every rank sees the same result */
        return sp_err_set(err, SP_EINVAL,
                          "%s: ranks described different checkpoints (attribute or dataset "
                          "names, dtypes, shapes or order differ)", w->path);
    w->crc = calloc((size_t)ni + 1, sizeof *w->crc);
    w->nbytes = calloc((size_t)ni + 1, sizeof *w->nbytes);
    mine = calloc(4 * (size_t)ni + 1, sizeof *mine);
    tab = calloc(2 * (size_t)ni + 1, sizeof *tab);
    if (root) {
        all = calloc(4 * (size_t)ni * (size_t)ck->size + 1, sizeof *all);
        slab = calloc(4 * (size_t)ck->size, sizeof *slab);
        w->blob_len = (int64_t)attr_blob_len(j);
        w->blob = malloc((size_t)w->blob_len + 1);
    }
    if (!w->crc || !w->nbytes || !mine || !tab || (root && (!all || !slab || !w->blob))) {
        st = sp_err_set(err, SP_ENOMEM, "%s: out of memory", w->path);
    } else {
        for (int i = 0; i < ni; i++) {
            const sp_ck_item *it = &j->items[i];
            mine[4 * i] = it->row0;
            mine[4 * i + 1] = it->nrows;
            mine[4 * i + 2] = (int64_t)crc_bytes(it->buf, it->nbytes);
            mine[4 * i + 3] = (int64_t)it->nbytes;
        }
        if (root) {
            char *p = w->blob;
            for (int i = 0; i < j->n_attrs; i++) {
                const sp_ck_attr *a = &j->attrs[i];
                size_t n = a->is_str ? strlen(a->str) + 1 : sizeof a->i64;
                memcpy(p, a->is_str ? (const void *)a->str : (const void *)&a->i64, n);
                p += n;
            }
        }
    }
    if ((st = sp_ck_agree(ck, st, 0, err)) != SP_OK) goto done;

    st = sp_ck_gather_i64(ck, mine, 4 * ni, all, err);
    if (st == SP_OK) st = sp_ck_bcast(ck, &w->blob_len, 1, MPI_INT64_T, err);
    if (st == SP_OK && root) {
        for (int i = 0; i < ni && st == SP_OK; i++) {
            st = combine_item(w, i, all, slab, err);
            w->total += w->nbytes[i];
        }
        int64_t free_b = sp_ck_free_bytes(ck->dir);
        /* Uncompressed, the file needs the data plus a little metadata: fail now with a
         * clear message rather than halfway through the writes. */
        if (st == SP_OK && ck->opts.compress == SP_CKPT_NONE && free_b >= 0 &&
            free_b < w->total + 65536) {
            char need[32], have[32];
            sp_ck_fmt_bytes(need, sizeof need, (double)w->total);
            sp_ck_fmt_bytes(have, sizeof have, (double)free_b);
            st = sp_err_set(err, SP_EIO,
                            "%s: no space left on device (checkpoint needs %s, %s free)",
                            w->path, need, have);
        }
    } else if (st == SP_OK) {
        w->blob = malloc((size_t)w->blob_len + 1);
        if (!w->blob) st = sp_err_set(err, SP_ENOMEM, "%s: out of memory", w->path);
    }
    if ((st = sp_ck_agree(ck, st, 0, err)) != SP_OK) goto done;

    for (int i = 0; i < ni; i++) {
        tab[2 * i] = (int64_t)w->crc[i];
        tab[2 * i + 1] = w->nbytes[i];
    }
    st = sp_ck_bcast(ck, tab, 2 * ni, MPI_INT64_T, err);
    if (st == SP_OK && w->blob_len > 0)
        st = sp_ck_bcast(ck, w->blob, (int)w->blob_len, MPI_BYTE, err);
    if (st != SP_OK) goto done;
    w->total = 0;
    for (int i = 0; i < ni; i++) {
        w->crc[i] = (uint32_t)tab[2 * i];
        w->nbytes[i] = tab[2 * i + 1];
        w->total += w->nbytes[i];
    }
done:
    free(mine);
    free(all);
    free(slab);
    free(tab);
    return st;
}

static sp_status create_dataset(wctx *w, int i, sp_err *err) {
    const sp_ckpt *ck = w->ck;
    const sp_ck_item *it = &w->job->items[i];
    hsize_t dims[SP_CKPT_MAX_NDIM], chunk[SP_CKPT_MAX_NDIM];
    for (int d = 0; d < it->ndim; d++) dims[d] = (hsize_t)it->shape[d];
    hid_t space = H5Screate_simple(it->ndim, dims, NULL);
    hid_t dcpl = sp_ck_untimed_plist(H5P_DATASET_CREATE);
    sp_status st = SP_OK;
    int ok = space >= 0 && dcpl >= 0 && H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) >= 0;
    if (ok && ck->opts.compress != SP_CKPT_NONE && w->nbytes[i] > 0) {
        sp_ck_chunk_dims(it->ndim, it->shape, sp_ckpt_dtype_size(it->dt), chunk);
        unsigned level = (unsigned)ck->opts.level;
        ok = H5Pset_chunk(dcpl, it->ndim, chunk) >= 0 &&
             (ck->opts.compress == SP_CKPT_GZIP
                  ? H5Pset_deflate(dcpl, level) >= 0
                  : H5Pset_filter(dcpl, SP_CKPT_ZSTD_FILTER_ID, H5Z_FLAG_MANDATORY, 1, &level) >=
                        0);
    }
    if (ok) st = sp_ck_make_parents(w->file, it->name, err);
    if (ok && st == SP_OK) {
        w->dset[i] = H5Dcreate2(w->file, it->name, sp_ck_file_type(it->dt), space, H5P_DEFAULT,
                                dcpl, H5P_DEFAULT);
        ok = w->dset[i] >= 0;
    }
    if (!ok && st == SP_OK) st = sp_ck_h5err(err, SP_EIO, "creating dataset '%s'", it->name);
    if (st != SP_OK) sp_err_prefix(err, "%s", w->path);
    CLOSE_ID(H5Pclose, dcpl);
    CLOSE_ID(H5Sclose, space);
    return st;
}

/* Phase 1 second half: root attributes and datasets (the file exists on every rank). */
static sp_status phase_layout(wctx *w, sp_err *err) {
    const sp_ck_job *j = w->job;
    sp_status st;
    if ((st = sp_ck_attr_write_str(w->file, "format", SP_CK_FORMAT, err)) ||
        (st = sp_ck_attr_write_i64(w->file, "version", SP_CK_VERSION, err)) ||
        (st = sp_ck_attr_write_i64(w->file, "step", j->step, err)))
        return sp_err_prefix(err, "%s", w->path);
    const char *p = w->blob;
    for (int i = 0; i < j->n_attrs; i++) {
        const sp_ck_attr *a = &j->attrs[i];
        if (a->is_str) {
            st = sp_ck_attr_write_str(w->file, a->name, p, err);
            p += strlen(p) + 1;
        } else {
            int64_t v;
            memcpy(&v, p, sizeof v);
            st = sp_ck_attr_write_i64(w->file, a->name, v, err);
            p += sizeof v;
        }
        if (st != SP_OK) return sp_err_prefix(err, "%s", w->path);
    }
    for (int i = 0; i < j->n_items; i++) SP_FORWARD(create_dataset(w, i, err));
    return SP_OK;
}

/* The write failed: name the file, and say "no space" when the file system is (nearly) full —
 * MPI-IO reports ENOSPC only as a generic write failure. */
static sp_status write_error(const wctx *w, const char *what, sp_err *err) {
    int64_t free_b = sp_ck_free_bytes(w->ck->dir);
    if (free_b >= 0 && free_b < w->total + 65536) {
        char need[32], have[32];
        sp_ck_fmt_bytes(need, sizeof need, (double)w->total);
        sp_ck_fmt_bytes(have, sizeof have, (double)free_b);
        return sp_err_set(err, SP_EIO,
                          "%s: no space left on device (%s failed; checkpoint needs up to %s, "
                          "%s free)", w->path, what, need, have);
    }
    return sp_ck_h5err(err, SP_EIO, "%s: %s failed", w->path, what);
}

/* Phase 2: one collective write per dataset, in description order. */
static sp_status phase_write(wctx *w, sp_err *err) {
    const sp_ck_job *j = w->job;
    sp_status st = SP_OK;
    /* Collective transfers. Filtered datasets need true collective I/O (chunks are owned and
     * compressed by one rank each). A contiguous dataset gets collective HDF5 semantics with
     * independent MPI-IO underneath: each rank's slab is one contiguous run of the file, so
     * two-phase aggregation would only copy data between ranks before the same writes. */
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER), dxpl_ind = H5Pcreate(H5P_DATASET_XFER);
    if (dxpl < 0 || dxpl_ind < 0 || H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE) < 0 ||
        H5Pset_dxpl_mpio(dxpl_ind, H5FD_MPIO_COLLECTIVE) < 0 ||
        H5Pset_dxpl_mpio_collective_opt(dxpl_ind, H5FD_MPIO_INDIVIDUAL_IO) < 0) {
        CLOSE_ID(H5Pclose, dxpl);
        CLOSE_ID(H5Pclose, dxpl_ind);
        return sp_ck_h5err(err, SP_EIO, "%s: transfer property lists", w->path);
    }
    const int filtered = w->ck->opts.compress != SP_CKPT_NONE;
    static const unsigned char dummy = 0; /* H5Dwrite wants a buffer even for 0 elements */
    for (int i = 0; i < j->n_items; i++) {
        const sp_ck_item *it = &j->items[i];
        if (w->nbytes[i] == 0) continue; /* same decision on every rank */
        hsize_t start[SP_CKPT_MAX_NDIM] = {0}, count[SP_CKPT_MAX_NDIM], one = 1;
        count[0] = (hsize_t)it->nrows;
        start[0] = (hsize_t)it->row0;
        for (int d = 1; d < it->ndim; d++) count[d] = (hsize_t)it->shape[d];
        hid_t fspace = H5Dget_space(w->dset[i]), mspace = H5I_INVALID_HID;
        int ok = fspace >= 0;
        if (ok && it->nrows > 0) {
            mspace = H5Screate_simple(it->ndim, count, NULL);
            ok = mspace >= 0 &&
                 H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) >= 0;
        } else if (ok) {
            mspace = H5Screate_simple(1, &one, NULL);
            ok = mspace >= 0 && H5Sselect_none(mspace) >= 0 && H5Sselect_none(fspace) >= 0;
        }
        /* Issue the collective write even after an earlier local failure: the other ranks
         * are in it too; the failure is agreed after the loop. */
        if (ok)
            ok = H5Dwrite(w->dset[i], sp_ck_mem_type(it->dt), mspace, fspace,
                          filtered ? dxpl : dxpl_ind,
                          it->nrows > 0 ? it->buf : (const void *)&dummy) >= 0;
        if (!ok && st == SP_OK) {
            char what[SP_CK_NAME_MAX + 40];
            snprintf(what, sizeof what, "writing dataset '%s'", it->name);
            st = write_error(w, what, err);
        }
        CLOSE_ID(H5Sclose, mspace);
        CLOSE_ID(H5Sclose, fspace);
        sp_ck_service_local(w->ck); /* run_on_io callers wait at most one dataset write */
    }
    CLOSE_ID(H5Pclose, dxpl);
    CLOSE_ID(H5Pclose, dxpl_ind);
    return st;
}

/* Phase 3, first half: checksums, complete=1 (last), and a flush of all metadata. A flush
 * that fails (disk full) leaves the file open and consistent, so the failure path can still
 * close it; a failing H5Fclose would leave HDF5 with a half-destroyed file that crashes
 * H5close at MPI_Finalize. Collective calls are made whatever the local status. */
static sp_status phase_finish(wctx *w, sp_err *err) {
    const sp_ck_job *j = w->job;
    sp_status st = SP_OK;
    for (int i = 0; i < j->n_items && st == SP_OK; i++) {
        if ((st = sp_ck_attr_write_u32(w->dset[i], "crc32", w->crc[i], err)) ||
            (st = sp_ck_attr_write_i64(w->dset[i], "nbytes", w->nbytes[i], err)))
            sp_err_prefix(err, "%s: dataset '%s'", w->path, j->items[i].name);
    }
    if (st == SP_OK && (st = sp_ck_attr_write_i64(w->file, "complete", 1, err)) != SP_OK)
        sp_err_prefix(err, "%s", w->path);
    for (int i = 0; i < j->n_items; i++) CLOSE_ID(H5Dclose, w->dset[i]);
    if (H5Fflush(w->file, H5F_SCOPE_LOCAL) < 0 && st == SP_OK)
        st = write_error(w, "flushing the file", err);
    return st;
}

/* Phase 3, second half: close, then every rank fsyncs the file (H5Fclose does not sync): on
 * a shared file system each node flushes what it wrote, and write-back errors (ENOSPC on
 * NFS/Lustre, EIO) surface here, on the rank that hit them. */
static sp_status phase_close(wctx *w, sp_err *err) {
    sp_status st = SP_OK;
    if (H5Fclose(w->file) < 0) st = write_error(w, "closing the file", err);
    w->file = H5I_INVALID_HID;
    if (st == SP_OK && sp_ck_fsync_path(w->tmp, 0, err) != SP_OK) {
        char what[SP_ERR_MSG_MAX];
        snprintf(what, sizeof what, "%s", err->msg);
        st = write_error(w, what, err);
    }
    return st;
}

/* Phase 3b (collective): read the closed file back and check every dataset's CRC. Open MPI's
 * OMPIO can report success for a collective write that hit ENOSPC (the data is simply not in
 * the file), so the error codes of the writes are not enough to publish a checkpoint. */
static sp_status phase_verify(wctx *w, sp_err *err) {
    sp_status st = sp_ck_verify_file(w->ck, w->tmp, w->job->step, err);
    if (st == SP_OK) return SP_OK;
    /* Rank 0 words the error (free space is read once) and agreement hands it to everyone. */
    if (w->ck->rank == 0) {
        char why[SP_ERR_MSG_MAX];
        snprintf(why, sizeof why, "%s", err->msg);
        int64_t free_b = sp_ck_free_bytes(w->ck->dir);
        char have[32];
        sp_ck_fmt_bytes(have, sizeof have, (double)free_b);
        if (free_b >= 0 && free_b < w->total + 65536)
            sp_err_set(err, SP_EIO, "%s: no space left on device (the data read back do not "
                       "match what was written: %.200s; %s free)", w->path, why, have);
        else
            sp_err_set(err, SP_EIO, "%s: the data read back do not match what was written: %.300s",
                       w->path, why);
    }
    return SP_EIO;
}

/* The file is synced (and verified): drop its pages from the page cache. A checkpoint is
 * read only on resume, and gigabytes of cached checkpoint data would push the application's
 * memory out, or cost it page reclaim later. Best effort (every rank, its own node's cache). */
static void drop_cache(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return;
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
}

/* Phase 4 (rank 0): make the file durable, publish it, update `latest`, prune. */
static sp_status phase_publish(wctx *w, sp_err *err) {
    const sp_ckpt *ck = w->ck;
    sp_status st;
    if (rename(w->tmp, w->path) != 0)
        return sp_err_set(err, SP_EIO, "%s: cannot rename %s to it", w->path, w->tmp);
    const char *base = strrchr(w->path, '/') + 1;
    if ((st = sp_ck_fsync_path(ck->dir, 1, err)) != SP_OK ||
        (st = sp_ck_write_latest(ck->dir, base, err)) != SP_OK) {
        /* Not published: take the file back so that the directory is as before. */
        (void)unlink(w->path);
        return sp_err_prefix(err, "%s", w->path);
    }
    w->published = 1;
    if ((st = sp_ck_prune(ck->dir, w->job->step, ck->opts.keep, err)) != SP_OK)
        return sp_err_prefix(err, "%s is durable, but pruning old checkpoints failed", w->path);
    return SP_OK;
}

static void release(sp_ckpt *ck, sp_ck_job *j) {
    pthread_mutex_lock(&ck->mu);
    if (!j->released) {
        j->released = 1;
        j->err_mark = ck->log.count;
        pthread_cond_broadcast(&ck->cv_done);
    }
    pthread_mutex_unlock(&ck->mu);
}

/* Append an (agreed) error to the log; if the log cannot grow, the error is dropped. */
static void log_error(sp_ckpt *ck, const sp_err *e) {
    pthread_mutex_lock(&ck->mu);
    sp_ck_errlog *l = &ck->log;
    size_t used = (size_t)(l->count - l->base);
    if (used == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 4;
        sp_err *ne = realloc(l->e, cap * sizeof *ne);
        if (ne) {
            l->e = ne;
            l->cap = cap;
        }
    }
    if (used < l->cap) {
        l->e[used] = *e;
        l->count++;
    }
    pthread_mutex_unlock(&ck->mu);
}

static double thread_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void write_ckpt(sp_ckpt *ck, sp_ck_job *j) {
    double t0 = sp_ck_now(), c0 = thread_cpu_s();
    sp_ck_quiet q;
    sp_ck_quiet_begin(&q);
    sp_err e = {SP_OK, ""};
    wctx w;
    memset(&w, 0, sizeof w);
    w.ck = ck;
    w.job = j;
    w.file = H5I_INVALID_HID;
    w.path = sp_ck_final_path(ck->dir, j->step);
    w.tmp = sp_ck_tmp_path(ck->dir, j->step);
    w.dset = malloc(((size_t)j->n_items + 1) * sizeof *w.dset);
    sp_status st = SP_OK;
    if (!w.path || !w.tmp || !w.dset)
        st = sp_err_set(&e, SP_ENOMEM, "%s: checkpoint %lld: out of memory", ck->dir,
                        (long long)j->step);
    else
        for (int i = 0; i < j->n_items; i++) w.dset[i] = H5I_INVALID_HID;
    if ((st = sp_ck_agree(ck, st, 0, &e)) != SP_OK) goto fail;
    if ((st = phase_checks(&w, &e)) != SP_OK) goto fail;

    /* Phase 1: create (collective), agree, then layout, agree. */
    hid_t fcpl = sp_ck_untimed_plist(H5P_FILE_CREATE), fapl = H5Pcreate(H5P_FILE_ACCESS);
    /* The 1.8 file format at least: superblock v2 and v2 object headers carry checksums, so
     * a flipped byte in HDF5's own metadata (an object header, an attribute message) is
     * reported by the library as a checksum failure instead of being parsed. The earliest
     * format has none there: a flipped header byte could crash H5Aexists (flip_sweep). */
    if (fcpl >= 0 && fapl >= 0 && H5Pset_fapl_mpio(fapl, ck->comm_io, MPI_INFO_NULL) >= 0 &&
        H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST) >= 0)
        w.file = H5Fcreate(w.tmp, H5F_ACC_TRUNC, fcpl, fapl);
    if (w.file < 0) st = sp_ck_h5err(&e, SP_EIO, "%s: cannot create", w.tmp);
    CLOSE_ID(H5Pclose, fcpl); /* after reading the error: any HDF5 call clears the stack */
    CLOSE_ID(H5Pclose, fapl);
    if ((st = sp_ck_agree(ck, st, 0, &e)) != SP_OK) goto fail;
    w.open_all = 1;
    st = phase_layout(&w, &e);
    if ((st = sp_ck_agree(ck, st, 0, &e)) != SP_OK) goto fail;
    st = phase_write(&w, &e);
    if ((st = sp_ck_agree(ck, st, 0, &e)) != SP_OK) goto fail;
    release(ck, j); /* the buffers are in the file (or MPI-IO's hands) now */
    st = phase_finish(&w, &e);
    if ((st = sp_ck_agree(ck, st, 0, &e)) != SP_OK) goto fail;
    st = phase_close(&w, &e);
    if ((st = sp_ck_agree(ck, st, 0, &e)) != SP_OK) goto fail;
    if (ck->opts.verify) {
        st = phase_verify(&w, &e);
        if ((st = sp_ck_agree(ck, st, 0, &e)) != SP_OK) goto fail;
    }
    drop_cache(w.tmp);
    st = ck->rank == 0 ? phase_publish(&w, &e) : SP_OK;
    if ((st = sp_ck_agree(ck, st, 0, &e)) != SP_OK) goto fail;
    goto done;

fail:
    /* Every rank is here after the same agreement. */
    for (int i = 0; w.dset && i < j->n_items; i++) CLOSE_ID(H5Dclose, w.dset[i]);
    if (w.open_all && w.file >= 0) {
        /* Free the data blocks first (the file is being discarded), so that the metadata
         * H5Fclose flushes fits even on a full disk and the close succeeds. */
        sp_err ignore;
        if (ck->rank == 0) (void)truncate(w.tmp, 0);
        (void)sp_ck_agree(ck, SP_OK, 0, &ignore);
    }
    /* If H5Fcreate failed on some ranks only, closing on the others cannot complete
     * collectively; MPI-IO's open is collective and fails on all ranks together in practice. */
    CLOSE_ID(H5Fclose, w.file);
    if (ck->rank == 0 && w.tmp) (void)unlink(w.tmp);
    if (!w.published) {
        static const char suffix[] =
            "; checkpoint discarded, earlier checkpoints and 'latest' unchanged";
        size_t n = strlen(e.msg);
        if (n + sizeof suffix <= sizeof e.msg) memcpy(e.msg + n, suffix, sizeof suffix);
    }
    log_error(ck, &e); /* before the release, so a wait_buffer(buf) of this one reports it */
    release(ck, j);
done:
    sp_ck_quiet_end(&q);
    pthread_mutex_lock(&ck->mu);
    ck->write_s += sp_ck_now() - t0;
    ck->io_cpu_s += thread_cpu_s() - c0;
    if (st == SP_OK) {
        ck->n_done++;
        for (int i = 0; i < j->n_items; i++) ck->bytes += (int64_t)j->items[i].nbytes;
    } else {
        ck->n_failed++;
    }
    pthread_mutex_unlock(&ck->mu);
    free(w.path);
    free(w.tmp);
    free(w.dset);
    free(w.crc);
    free(w.nbytes);
    free(w.blob);
    finish(ck, j); /* last: the main thread may free j now */
}
