/* sp_ckpt_read.c — resume: find the newest checkpoint that verifies, and read it.
 *
 * Verification is collective on the I/O threads (comm_io): the file is opened with the MPI-IO
 * driver, each rank reads the block sp_mpi_split_range gives it of every dataset's rows
 * (independent reads, at most ~16 MiB at a time), CRCs it, rank 0 combines the CRCs in rank
 * order (= row order) with crc32_combine and compares with the stored "crc32". This is the
 * same number for any rank count, so a checkpoint written on 4 ranks verifies on 1.
 * The chosen file is then reopened by every rank with HDF5's default (POSIX) driver, so the
 * reader calls are local.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "ckpt/sp_ckpt_int.h"

#define CLOSE_ID(fn, id)             \
    do {                             \
        if ((id) >= 0) (void)fn(id); \
        (id) = H5I_INVALID_HID;      \
    } while (0)

#define PIECE_BYTES ((size_t)16 << 20)

struct sp_ckpt_reader {
    sp_ckpt *ck;
    char *path;
    int64_t step;
    hid_t file; /* POSIX driver, read-only; used on the I/O thread only */
};

/* ---- verification (I/O thread, collective) --------------------------------------------------- */

typedef struct {
    char **names;
    int n, cap;
    int oom;
} name_list;

static herr_t collect_dset(hid_t obj, const char *name, const H5O_info_t *info, void *data) {
    name_list *l = data;
    if (info->type != H5O_TYPE_DATASET) return 0;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 32;
        char **nn = realloc(l->names, (size_t)cap * sizeof *nn);
        if (!nn) {
            l->oom = 1;
            return -1;
        }
        l->names = nn;
        l->cap = cap;
    }
    if (!(l->names[l->n] = strdup(name))) {
        l->oom = 1;
        return -1;
    }
    l->n++;
    return 0;
}

/* This rank's part of dataset `name`: CRC and byte count of its block of rows. Local. */
static sp_status crc_my_rows(const sp_ckpt *ck, hid_t file, const char *name, uint32_t *crc,
                             int64_t *len, uint32_t *stored, int64_t *stored_n, sp_err *err) {
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT), type = H5I_INVALID_HID;
    hid_t fspace = H5I_INVALID_HID, mspace = H5I_INVALID_HID;
    unsigned char *buf = NULL;
    sp_status st = SP_OK;
    uLong c = crc32(0L, Z_NULL, 0);
    *len = 0;
    if (d < 0 || (type = H5Dget_type(d)) < 0 || (fspace = H5Dget_space(d)) < 0) {
        st = sp_ck_h5err(err, SP_EFORMAT, "dataset '%s': cannot open", name);
        goto done;
    }
    int dt = sp_ck_dtype_of(type), nd = H5Sget_simple_extent_ndims(fspace);
    hsize_t dims[SP_CKPT_MAX_NDIM];
    if (dt < 0 || nd < 1 || nd > SP_CKPT_MAX_NDIM ||
        H5Sget_simple_extent_dims(fspace, dims, NULL) < 0) {
        st = sp_err_set(err, SP_EFORMAT, "dataset '%s': unsupported dtype or rank", name);
        goto done;
    }
    int64_t sn = 0, sc = 0;
    if ((st = sp_ck_attr_read_i64(d, "crc32", &sc, err)) != SP_OK ||
        (st = sp_ck_attr_read_i64(d, "nbytes", &sn, err)) != SP_OK) {
        sp_err_prefix(err, "dataset '%s'", name);
        if (st == SP_ENOTFOUND) st = SP_EFORMAT;
        goto done;
    }
    size_t es = sp_ckpt_dtype_size((sp_ckpt_dtype)dt), row = es;
    for (int k = 1; k < nd; k++) row *= (size_t)dims[k];
    if ((double)sn != (double)row * (double)dims[0] || sc < 0 || sc > 0xffffffffLL) {
        st = sp_err_set(err, SP_EFORMAT, "dataset '%s': nbytes %lld does not match its shape",
                        name, (long long)sn);
        goto done;
    }
    *stored = (uint32_t)sc;
    *stored_n = sn;
    size_t b, e;
    sp_mpi_split_range((size_t)dims[0], ck->rank, ck->size, &b, &e);
    if (row == 0 || e == b) goto done;
    size_t per = PIECE_BYTES / row ? PIECE_BYTES / row : 1;
    buf = malloc((per < e - b ? per : e - b) * row);
    if (!buf) {
        st = sp_err_set(err, SP_ENOMEM, "dataset '%s': out of memory", name);
        goto done;
    }
    for (size_t r = b; r < e && st == SP_OK; r += per) {
        hsize_t start[SP_CKPT_MAX_NDIM] = {0}, count[SP_CKPT_MAX_NDIM];
        size_t nr = e - r < per ? e - r : per;
        start[0] = r;
        count[0] = nr;
        for (int k = 1; k < nd; k++) count[k] = dims[k];
        mspace = H5Screate_simple(nd, count, NULL);
        if (mspace < 0 ||
            H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
            H5Dread(d, sp_ck_mem_type((sp_ckpt_dtype)dt), mspace, fspace, H5P_DEFAULT, buf) < 0)
            st = sp_ck_h5err(err, SP_EFORMAT, "dataset '%s': cannot read rows %zu..%zu", name,
                             r, r + nr);
        else
            c = crc32(c, buf, (uInt)(nr * row)); /* nr * row <= max(16 MiB, one row) */
        CLOSE_ID(H5Sclose, mspace);
        *len += (int64_t)(nr * row);
    }
done:
    *crc = (uint32_t)c;
    free(buf);
    CLOSE_ID(H5Sclose, fspace);
    CLOSE_ID(H5Tclose, type);
    CLOSE_ID(H5Dclose, d);
    return st;
}

/* Every dataset in `names`: each rank CRCs its block of rows, one gather, rank 0 combines the
 * per-rank CRCs of each dataset (rank order = row order) and compares. The first problem (a
 * local read error, or rank 0's first mismatch) is the rank's status; the caller agrees. */
static sp_status check_datasets(sp_ckpt *ck, hid_t file, char **names, int n,
                                sp_err *err) {
    int64_t *mine = calloc(4 * (size_t)n + 1, sizeof *mine), *all = NULL;
    if (ck->rank == 0) all = calloc(4 * (size_t)n * (size_t)ck->size + 1, sizeof *all);
    sp_status st = (!mine || (ck->rank == 0 && !all))
                       ? sp_err_set(err, SP_ENOMEM, "out of memory verifying datasets")
                       : SP_OK;
    /* Collectives below need every rank; agree on the allocations first. */
    if ((st = sp_ck_agree(ck, st, 1, err)) != SP_OK) goto done;
    for (int i = 0; i < n; i++) {
        uint32_t crc = 0, stored = 0;
        int64_t len = 0, stored_n = 0;
        sp_err e = {SP_OK, ""};
        sp_status s1 = crc_my_rows(ck, file, names[i], &crc, &len, &stored, &stored_n, &e);
        if (s1 != SP_OK && st == SP_OK) {
            st = s1;
            *err = e;
        }
        mine[4 * i] = crc;
        mine[4 * i + 1] = len;
        mine[4 * i + 2] = stored;
        mine[4 * i + 3] = stored_n;
    }
    sp_err ge = {SP_OK, ""};
    sp_status gs = sp_ck_gather_i64(ck, mine, 4 * n, all, &ge);
    if (gs != SP_OK) {
        *err = ge;
        st = gs;
    }
    for (int i = 0; ck->rank == 0 && st == SP_OK && i < n; i++) {
        uLong c = crc32(0L, Z_NULL, 0);
        int64_t total = 0;
        for (int r = 0; r < ck->size; r++) {
            const int64_t *v = all + ((size_t)r * (size_t)n + (size_t)i) * 4;
            c = crc32_combine(c, (uLong)v[0], (z_off_t)v[1]);
            total += v[1];
        }
        uint32_t stored = (uint32_t)mine[4 * i + 2];
        if ((uint32_t)c != stored || total != mine[4 * i + 3])
            st = sp_err_set(err, SP_EFORMAT,
                            "dataset '%s': checksum mismatch (stored 0x%08x, computed 0x%08x)",
                            names[i], stored, (unsigned)c);
    }
done:
    free(mine);
    free(all);
    return st;
}

static sp_status check_root(hid_t file, int64_t step, sp_err *err) {
    char *fmt = NULL;
    int64_t v = 0;
    sp_status st = sp_ck_attr_read_str(file, "format", &fmt, err);
    if (st == SP_OK && strcmp(fmt, SP_CK_FORMAT) != 0)
        st = sp_err_set(err, SP_EFORMAT, "format is \"%.64s\", not \"%s\"", fmt, SP_CK_FORMAT);
    free(fmt);
    if (st == SP_OK && (st = sp_ck_attr_read_i64(file, "version", &v, err)) == SP_OK &&
        v != SP_CK_VERSION)
        st = sp_err_set(err, SP_EUNSUPPORTED, "version %lld is not %d", (long long)v,
                        SP_CK_VERSION);
    if (st == SP_OK && (st = sp_ck_attr_read_i64(file, "step", &v, err)) == SP_OK && v != step)
        st = sp_err_set(err, SP_EFORMAT, "attribute step = %lld does not match the file name",
                        (long long)v);
    if (st == SP_OK) {
        st = sp_ck_attr_read_i64(file, "complete", &v, err);
        if (st == SP_ENOTFOUND || (st == SP_OK && v != 1))
            st = sp_err_set(err, SP_EFORMAT, "incomplete (root attribute 'complete' is not 1)");
    }
    if (st == SP_ENOTFOUND) st = SP_EFORMAT;
    return st;
}

sp_status sp_ck_verify_file(sp_ckpt *ck, const char *path, int64_t step, sp_err *err) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), file = H5I_INVALID_HID;
    name_list l = {NULL, 0, 0, 0};
    sp_status st = SP_OK;
    if (fapl >= 0 && H5Pset_fapl_mpio(fapl, ck->comm_io, MPI_INFO_NULL) >= 0)
        file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    char h5[200];
    sp_ck_h5_msg(h5, sizeof h5); /* before any other HDF5 call clears the error stack */
    CLOSE_ID(H5Pclose, fapl);
    if (file < 0) {
        int trunc = strstr(h5, "truncated") != NULL;
        st = sp_err_set(err, trunc ? SP_ETRUNC : SP_EFORMAT, "%s (HDF5: %s)",
                        trunc ? "truncated" : "cannot open as HDF5", h5[0] ? h5 : "no detail");
    }
    if ((st = sp_ck_agree(ck, st, 1, err)) != SP_OK) return st;
    st = check_root(file, step, err);
    if (st == SP_OK && H5Ovisit2(file, H5_INDEX_NAME, H5_ITER_INC, collect_dset, &l,
                                 H5O_INFO_BASIC) < 0)
        st = l.oom ? sp_err_set(err, SP_ENOMEM, "out of memory listing datasets")
                   : sp_ck_h5err(err, SP_EFORMAT, "cannot list the datasets");
    st = sp_ck_agree(ck, st, 1, err);
    if (st == SP_OK) st = check_datasets(ck, file, l.names, l.n, err);
    st = sp_ck_agree(ck, st, 1, err);
    for (int i = 0; i < l.n; i++) free(l.names[i]);
    free(l.names);
    if (H5Fclose(file) < 0 && st == SP_OK) st = sp_ck_h5err(err, SP_EIO, "cannot close");
    return sp_ck_agree(ck, st, 1, err);
}

/* ---- open_latest ------------------------------------------------------------------------------ */

enum { CAND_FILE = 0, CAND_TMP = 1, CAND_LATEST_MISSING = 2, CAND_LATEST_BAD = 3 };

typedef struct {
    int64_t step, kind;
} cand;

static int cmp_cand(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->step != y->step) return x->step < y->step ? 1 : -1; /* newest first */
    return (x->kind > y->kind) - (x->kind < y->kind);
}

typedef struct {
    sp_ckpt *ck;
    char *warn;
    size_t warn_cap;
    sp_ckpt_reader *r;
} open_args;

static void warn_add(open_args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void warn_add(open_args *a, const char *fmt, ...) {
    if (!a->warn || a->warn_cap == 0) return;
    size_t n = strlen(a->warn);
    if (n + 1 >= a->warn_cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->warn + n, a->warn_cap - n, fmt, ap);
    va_end(ap);
    n = strlen(a->warn);
    if (n + 1 < a->warn_cap) memcpy(a->warn + n, "\n", 2);
}

/* Rank 0: the candidates, newest first; every rank gets them (and `latest`'s text). */
static sp_status list_candidates(sp_ckpt *ck, cand **out, int64_t *n_out, char *latest,
                                 sp_err *err) {
    int64_t *fin = NULL, *tmp = NULL, n = 0;
    int nf = 0, nt = 0;
    cand *c = NULL;
    sp_status st = SP_OK;
    latest[0] = '\0';
    if (ck->rank == 0) {
        if ((st = sp_ck_list_steps(ck->dir, 0, &fin, &nf, err)) == SP_OK &&
            (st = sp_ck_list_steps(ck->dir, 1, &tmp, &nt, err)) == SP_OK)
            st = sp_ck_read_latest(ck->dir, latest, 256, err);
        if (st == SP_OK && !(c = calloc((size_t)nf + (size_t)nt + 2, sizeof *c)))
            st = sp_err_set(err, SP_ENOMEM, "%s: out of memory", ck->dir);
        if (st == SP_OK) {
            for (int i = 0; i < nf; i++) c[n++] = (cand){fin[i], CAND_FILE};
            for (int i = 0; i < nt; i++) c[n++] = (cand){tmp[i], CAND_TMP};
            if (latest[0]) {
                int64_t s = sp_ck_parse_name(latest, 0), found = 0;
                for (int i = 0; i < nf; i++) found |= fin[i] == s;
                if (s < 0) c[n++] = (cand){INT64_MAX, CAND_LATEST_BAD};
                else if (!found) c[n++] = (cand){s, CAND_LATEST_MISSING};
            }
            qsort(c, (size_t)n, sizeof *c, cmp_cand);
        }
    }
    free(fin);
    free(tmp);
    if ((st = sp_ck_agree(ck, st, 0, err)) != SP_OK) {
        free(c);
        return st;
    }
    st = sp_ck_bcast(ck, &n, 1, MPI_INT64_T, err);
    if (st == SP_OK) st = sp_ck_bcast(ck, latest, 256, MPI_CHAR, err);
    if (st == SP_OK && ck->rank != 0 && !(c = calloc((size_t)n + 1, sizeof *c)))
        st = sp_err_set(err, SP_ENOMEM, "%s: out of memory", ck->dir);
    if ((st = sp_ck_agree(ck, st, 0, err)) == SP_OK)
        st = sp_ck_bcast(ck, c, (int)(2 * n), MPI_INT64_T, err);
    if (st != SP_OK) {
        free(c);
        return st;
    }
    *out = c;
    *n_out = n;
    return SP_OK;
}

sp_status sp_ck_open_latest_io(void *arg, sp_err *err) {
    open_args *a = arg;
    sp_ckpt *ck = a->ck;
    cand *c = NULL;
    int64_t n = 0, skipped = 0;
    char latest[256];
    sp_status st = list_candidates(ck, &c, &n, latest, err);
    if (st != SP_OK) return st;
    int64_t chosen = -1;
    for (int64_t i = 0; i < n && chosen < 0 && st == SP_OK; i++) {
        char name[64];
        snprintf(name, sizeof name, c[i].kind == CAND_TMP ? ".ckpt-%08lld.h5.tmp" : "ckpt-%08lld.h5",
                 (long long)c[i].step);
        if (c[i].kind == CAND_TMP) {
            warn_add(a, "%s: partial checkpoint (never completed)", name);
        } else if (c[i].kind == CAND_LATEST_MISSING) {
            warn_add(a, "%s: named by 'latest' but missing", name);
        } else if (c[i].kind == CAND_LATEST_BAD) {
            warn_add(a, "latest: \"%.64s\" does not name a checkpoint file", latest);
        } else {
            char *path = sp_ck_final_path(ck->dir, c[i].step);
            sp_err e = {SP_OK, ""};
            sp_status v = path ? SP_OK : sp_err_set(&e, SP_ENOMEM, "out of memory");
            if ((v = sp_ck_agree(ck, v, 1, &e)) == SP_OK)
                v = sp_ck_verify_file(ck, path, c[i].step, &e);
            free(path);
            if (v == SP_OK) {
                chosen = i;
                break;
            }
            if (v == SP_EMPI || v == SP_ENOMEM) { /* our failure, not the file's */
                *err = e;
                st = v;
                break;
            }
            warn_add(a, "%s: %s", name, e.msg);
        }
        skipped++;
    }
    if (st == SP_OK && chosen < 0)
        st = sp_err_set(err, SP_ENOTFOUND, "%s: no usable checkpoint (%lld skipped)", ck->dir,
                        (long long)skipped);
    sp_ckpt_reader *r = NULL;
    if (st == SP_OK) {
        r = calloc(1, sizeof *r);
        if (r) {
            r->ck = ck;
            r->step = c[chosen].step;
            r->path = sp_ck_final_path(ck->dir, r->step);
            r->file = H5I_INVALID_HID;
        }
        if (!r || !r->path) st = sp_err_set(err, SP_ENOMEM, "%s: out of memory", ck->dir);
        else if ((r->file = H5Fopen(r->path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0)
            st = sp_ck_h5err(err, SP_EIO, "%s: cannot reopen", r->path);
        st = sp_ck_agree(ck, st, 0, err);
    }
    free(c);
    if (st != SP_OK) {
        if (r) {
            CLOSE_ID(H5Fclose, r->file);
            free(r->path);
            free(r);
        }
        return st;
    }
    a->r = r;
    return SP_OK;
}

sp_status sp_ckpt_open_latest(sp_ckpt *ck, sp_ckpt_reader **r, char *warn, size_t warn_cap,
                              sp_err *err) {
    SP_RETURN_IF(!ck || !r, err, SP_EINVAL, "sp_ckpt_open_latest: NULL argument");
    *r = NULL;
    if (warn && warn_cap) warn[0] = '\0';
    open_args a = {ck, warn, warn_cap, NULL};
    sp_status st = sp_ck_run_collective(ck, sp_ck_open_latest_io, &a, err);
    if (st == SP_OK) *r = a.r;
    return st;
}

/* ---- reader calls (local jobs on the I/O thread) --------------------------------------------- */

int64_t sp_ckpt_reader_step(const sp_ckpt_reader *r) { return r ? r->step : -1; }
const char *sp_ckpt_reader_path(const sp_ckpt_reader *r) { return r ? r->path : NULL; }

typedef struct {
    sp_ckpt_reader *r;
    const char *name;
    char **str;
    int64_t *i64;
    sp_ckpt_dtype *dt;
    int *ndim;
    int64_t *shape;
    int64_t row0, nrows;
    void *buf;
} rd_args;

static sp_status rd_attr(void *arg, sp_err *err) {
    rd_args *a = arg;
    sp_ck_quiet q;
    sp_ck_quiet_begin(&q);
    sp_status st = a->str ? sp_ck_attr_read_str(a->r->file, a->name, a->str, err)
                          : sp_ck_attr_read_i64(a->r->file, a->name, a->i64, err);
    sp_ck_quiet_end(&q);
    if (st != SP_OK) sp_err_prefix(err, "%s", a->r->path);
    return st;
}

sp_status sp_ckpt_get_attr_str(sp_ckpt_reader *r, const char *name, char **value, sp_err *err) {
    SP_RETURN_IF(!r || !name || !value, err, SP_EINVAL, "sp_ckpt_get_attr_str: NULL argument");
    rd_args a = {.r = r, .name = name, .str = value};
    *value = NULL;
    return sp_ck_run_local(r->ck, rd_attr, &a, err);
}

sp_status sp_ckpt_get_attr_i64(sp_ckpt_reader *r, const char *name, int64_t *v, sp_err *err) {
    SP_RETURN_IF(!r || !name || !v, err, SP_EINVAL, "sp_ckpt_get_attr_i64: NULL argument");
    rd_args a = {.r = r, .name = name, .i64 = v};
    return sp_ck_run_local(r->ck, rd_attr, &a, err);
}

/* Open dataset a->name and read its dtype and dims. */
static sp_status open_dset(rd_args *a, hid_t *d, int *dt, int *nd, hsize_t *dims, sp_err *err) {
    int ex = sp_ck_path_exists(a->r->file, a->name);
    SP_RETURN_IF(ex <= 0, err, ex < 0 ? SP_EIO : SP_ENOTFOUND, "%s: dataset '%s' %s",
                 a->r->path, a->name, ex < 0 ? "cannot be looked up" : "is not in the checkpoint");
    *d = H5Dopen2(a->r->file, a->name, H5P_DEFAULT);
    hid_t type = *d >= 0 ? H5Dget_type(*d) : H5I_INVALID_HID;
    hid_t space = *d >= 0 ? H5Dget_space(*d) : H5I_INVALID_HID;
    sp_status st = SP_OK;
    *dt = type >= 0 ? sp_ck_dtype_of(type) : -1;
    *nd = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    if (*d < 0 || type < 0 || space < 0)
        st = sp_ck_h5err(err, SP_EIO, "%s: dataset '%s': cannot open", a->r->path, a->name);
    else if (*dt < 0 || *nd < 1 || *nd > SP_CKPT_MAX_NDIM ||
             H5Sget_simple_extent_dims(space, dims, NULL) < 0)
        st = sp_err_set(err, SP_EFORMAT, "%s: dataset '%s': unsupported dtype or rank",
                        a->r->path, a->name);
    CLOSE_ID(H5Sclose, space);
    CLOSE_ID(H5Tclose, type);
    if (st != SP_OK) CLOSE_ID(H5Dclose, *d);
    return st;
}

static sp_status rd_info(void *arg, sp_err *err) {
    rd_args *a = arg;
    hid_t d = H5I_INVALID_HID;
    int dt, nd;
    hsize_t dims[SP_CKPT_MAX_NDIM];
    sp_ck_quiet q;
    sp_ck_quiet_begin(&q);
    sp_status st = open_dset(a, &d, &dt, &nd, dims, err);
    CLOSE_ID(H5Dclose, d);
    sp_ck_quiet_end(&q);
    if (st != SP_OK) return st;
    if (a->dt) *a->dt = (sp_ckpt_dtype)dt;
    *a->ndim = nd;
    for (int k = 0; k < SP_CKPT_MAX_NDIM; k++) a->shape[k] = k < nd ? (int64_t)dims[k] : 0;
    return SP_OK;
}

sp_status sp_ckpt_dataset_info(sp_ckpt_reader *r, const char *name, sp_ckpt_dtype *dt, int *ndim,
                               int64_t shape[4], sp_err *err) {
    SP_RETURN_IF(!r || !name || !ndim || !shape, err, SP_EINVAL,
                 "sp_ckpt_dataset_info: NULL argument");
    rd_args a = {.r = r, .name = name, .dt = dt, .ndim = ndim, .shape = shape};
    return sp_ck_run_local(r->ck, rd_info, &a, err);
}

sp_status sp_ckpt_dataset_shape(sp_ckpt_reader *r, const char *name, int *ndim, int64_t shape[4],
                                sp_err *err) {
    return sp_ckpt_dataset_info(r, name, NULL, ndim, shape, err);
}

static sp_status rd_rows(void *arg, sp_err *err) {
    rd_args *a = arg;
    hid_t d = H5I_INVALID_HID, fspace = H5I_INVALID_HID, mspace = H5I_INVALID_HID;
    int dt, nd;
    hsize_t dims[SP_CKPT_MAX_NDIM];
    sp_ck_quiet q;
    sp_ck_quiet_begin(&q);
    sp_status st = open_dset(a, &d, &dt, &nd, dims, err);
    if (st != SP_OK) goto done;
    if (a->row0 < 0 || a->nrows < 0 || (hsize_t)a->row0 + (hsize_t)a->nrows > dims[0]) {
        st = sp_err_set(err, SP_EINVAL, "%s: dataset '%s': rows %lld..%lld are outside 0..%llu",
                        a->r->path, a->name, (long long)a->row0, (long long)(a->row0 + a->nrows),
                        (unsigned long long)dims[0]);
        goto done;
    }
    if (a->nrows == 0) goto done;
    hsize_t start[SP_CKPT_MAX_NDIM] = {0}, count[SP_CKPT_MAX_NDIM];
    start[0] = (hsize_t)a->row0;
    count[0] = (hsize_t)a->nrows;
    for (int k = 1; k < nd; k++) count[k] = dims[k];
    fspace = H5Dget_space(d);
    mspace = H5Screate_simple(nd, count, NULL);
    if (fspace < 0 || mspace < 0 ||
        H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        H5Dread(d, sp_ck_mem_type((sp_ckpt_dtype)dt), mspace, fspace, H5P_DEFAULT, a->buf) < 0)
        st = sp_ck_h5err(err, SP_EIO, "%s: dataset '%s': cannot read rows %lld..%lld",
                         a->r->path, a->name, (long long)a->row0, (long long)(a->row0 + a->nrows));
done:
    CLOSE_ID(H5Sclose, mspace);
    CLOSE_ID(H5Sclose, fspace);
    CLOSE_ID(H5Dclose, d);
    sp_ck_quiet_end(&q);
    return st;
}

sp_status sp_ckpt_read_rows(sp_ckpt_reader *r, const char *name, int64_t row0, int64_t nrows,
                            void *buf, sp_err *err) {
    SP_RETURN_IF(!r || !name || (!buf && nrows > 0), err, SP_EINVAL,
                 "sp_ckpt_read_rows: NULL argument");
    rd_args a = {.r = r, .name = name, .row0 = row0, .nrows = nrows, .buf = buf};
    return sp_ck_run_local(r->ck, rd_rows, &a, err);
}

static sp_status rd_close(void *arg, sp_err *err) {
    sp_ckpt_reader *r = arg;
    sp_ck_quiet q;
    sp_ck_quiet_begin(&q);
    CLOSE_ID(H5Fclose, r->file);
    sp_ck_quiet_end(&q);
    return SP_OK;
}

void sp_ckpt_reader_close(sp_ckpt_reader *r) {
    if (!r) return;
    (void)sp_ck_run_local(r->ck, rd_close, r, NULL);
    free(r->path);
    free(r);
}
