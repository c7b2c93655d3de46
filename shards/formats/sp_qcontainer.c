/* sp_qcontainer.c — HDF5 helpers shared with the reader, and the container writer.
 * See sp_qcontainer.h for the layout; the reader is sp_qcontainer_read.c.
 *
 * Determinism: every object is created with timestamps off (H5Pset_obj_track_times(.., 0)
 * on the file, group and dataset creation lists), datasets are contiguous and written whole,
 * and nothing else in the file depends on time or memory addresses, so the same sequence of
 * calls yields byte-identical files.
 */
#include "shards/formats/sp_qcontainer_int.h"

#include "kernels/sp_gtype.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "kernels/sp_pack.h"

#define CLOSE_ID(fn, id)           \
    do {                           \
        if ((id) >= 0) (void)fn(id); \
        (id) = H5I_INVALID_HID;    \
    } while (0)

/* ---- helpers shared with the reader ------------------------------------------------------ */

void sp_qc_quiet_begin(sp_qc_quiet *q) {
    q->func = NULL;
    q->data = NULL;
    (void)H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
    (void)H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void sp_qc_quiet_end(const sp_qc_quiet *q) { (void)H5Eset_auto2(H5E_DEFAULT, q->func, q->data); }

sp_status sp_qc_check_thread(const sp_qcontainer *c, sp_err *err) {
    SP_RETURN_IF(!c, err, SP_EINVAL, "quantized container: NULL handle");
    SP_RETURN_IF(!pthread_equal(c->owner, pthread_self()), err, SP_EINVAL,
                 "%s: used from a thread that did not open it (HDF5 is not thread-safe here)",
                 c->path);
    return SP_OK;
}

/* H5Ewalk2 callback: keep the innermost (first, walking upward) description. */
static herr_t innermost_cb(unsigned n, const H5E_error2_t *e, void *data) {
    if (n == 0 && e && e->desc) snprintf((char *)data, 400, "%s", e->desc);
    return 0;
}

/* An HDF5 description fit for a one-line message: control characters become spaces, and a
 * low-level I/O failure ("file write failed: time = ..., filename = ..., errno = 28, error
 * message = 'No space left on device', ...") is cut to "file write failed: No space left on
 * device" (the file is named by the caller). */
static void tidy_h5_desc(char *d, size_t cap) {
    for (char *p = d; *p; p++)
        if ((unsigned char)*p < 0x20) *p = ' ';
    const char *m = strstr(d, "error message = '");
    const char *colon = strchr(d, ':');
    if (m && colon && colon < m) {
        char tail[200];
        m += strlen("error message = '");
        size_t n = strcspn(m, "'");
        snprintf(tail, sizeof tail, "%.*s", (int)(n < 190 ? n : 190), m);
        snprintf(d + (colon - d), cap - (size_t)(colon - d), ": %s", tail);
    }
}

sp_status sp_qc_h5err(sp_err *err, sp_status code, const char *path, const char *fmt, ...) {
    char what[SP_ERR_MSG_MAX], h5[400] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    (void)H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_cb, h5);
    tidy_h5_desc(h5, sizeof h5);
    if (h5[0])
        return sp_err_set(err, code, "%s: %s (HDF5: %s)", path, what, h5);
    return sp_err_set(err, code, "%s: %s", path, what);
}

int sp_qc_name_ok(const char *name) {
    if (!name || !name[0] || strlen(name) >= 256 || strchr(name, '/')) return 0;
    return strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

int sp_qcontainer_f16_exact(float s) {
    if (!isfinite(s)) return 0;
    if (s == 0.0f) return 1;
    float a = fabsf(s);
    if (a > 65504.0f) return 0;
    int e;
    (void)frexpf(a, &e); /* a = m·2^e, m in [0.5, 1) */
    /* Normal fp16 keeps 11 significant bits: a·2^(11−e) must be an integer. Subnormal fp16
     * (a < 2^−14) is a multiple of 2^−24. */
    float t = a >= 0x1p-14f ? ldexpf(a, 11 - e) : ldexpf(a, 24);
    return t == floorf(t);
}

static sp_status attr_open(hid_t obj, const char *name, hid_t *attr, const char *path,
                           const char *objname, sp_err *err) {
    htri_t ex = H5Aexists(obj, name);
    if (ex < 0) return sp_qc_h5err(err, SP_EIO, path, "%s: attribute %s", objname, name);
    SP_RETURN_IF(ex == 0, err, SP_EFORMAT, "%s: %s: attribute %s is missing", path, objname, name);
    *attr = H5Aopen(obj, name, H5P_DEFAULT);
    if (*attr < 0) return sp_qc_h5err(err, SP_EIO, path, "%s: attribute %s", objname, name);
    return SP_OK;
}

sp_status sp_qc_attr_read_ints(hid_t obj, const char *name, int *v, int max, int *n,
                               const char *path, const char *objname, sp_err *err) {
    hid_t attr = H5I_INVALID_HID, space = H5I_INVALID_HID, type = H5I_INVALID_HID;
    sp_status st = attr_open(obj, name, &attr, path, objname, err);
    if (st != SP_OK) return st;
    type = H5Aget_type(attr);
    space = H5Aget_space(attr);
    if (type < 0 || space < 0) {
        st = sp_qc_h5err(err, SP_EIO, path, "%s: attribute %s", objname, name);
        goto done;
    }
    if (H5Tget_class(type) != H5T_INTEGER) {
        st = sp_err_set(err, SP_EFORMAT, "%s: %s: attribute %s is not an integer", path,
                        objname, name);
        goto done;
    }
    int nd = H5Sget_simple_extent_ndims(space);
    hssize_t npts = H5Sget_simple_extent_npoints(space);
    if (nd < 0 || nd > 1 || npts < 1 || npts > max) {
        st = sp_err_set(err, SP_EFORMAT, "%s: %s: attribute %s has %lld values (expected %s%d)",
                        path, objname, name, (long long)npts, max > 1 ? "1.." : "", max);
        goto done;
    }
    /* HDF5 converts any integer width to native int (out-of-range values are clipped, and
     * then fail the range checks of the caller). */
    if (H5Aread(attr, H5T_NATIVE_INT, v) < 0) {
        st = sp_qc_h5err(err, SP_EFORMAT, path, "%s: attribute %s", objname, name);
        goto done;
    }
    if (n) *n = (int)npts;
done:
    CLOSE_ID(H5Sclose, space);
    CLOSE_ID(H5Tclose, type);
    CLOSE_ID(H5Aclose, attr);
    return st;
}

sp_status sp_qc_attr_read_int(hid_t obj, const char *name, int *v, const char *path,
                              const char *objname, sp_err *err) {
    return sp_qc_attr_read_ints(obj, name, v, 1, NULL, path, objname, err);
}

sp_status sp_qc_attr_read_str(hid_t obj, const char *name, char *buf, size_t cap,
                              const char *path, const char *objname, sp_err *err) {
    hid_t attr = H5I_INVALID_HID, type = H5I_INVALID_HID, mem = H5I_INVALID_HID;
    sp_status st = attr_open(obj, name, &attr, path, objname, err);
    if (st != SP_OK) return st;
    type = H5Aget_type(attr);
    if (type < 0) {
        st = sp_qc_h5err(err, SP_EIO, path, "%s: attribute %s", objname, name);
        goto done;
    }
    size_t sz = H5Tget_size(type);
    if (H5Tget_class(type) != H5T_STRING || H5Tis_variable_str(type) != 0 || sz == 0 ||
        sz >= cap) {
        st = sp_err_set(err, SP_EFORMAT,
                        "%s: %s: attribute %s is not a fixed-length string of < %zu bytes", path,
                        objname, name, cap);
        goto done;
    }
    mem = H5Tcopy(H5T_C_S1);
    if (mem < 0 || H5Tset_size(mem, sz + 1) < 0 || H5Tset_strpad(mem, H5T_STR_NULLTERM) < 0 ||
        H5Aread(attr, mem, buf) < 0) {
        st = sp_qc_h5err(err, SP_EIO, path, "%s: attribute %s", objname, name);
        goto done;
    }
    buf[sz] = '\0';
done:
    CLOSE_ID(H5Tclose, mem);
    CLOSE_ID(H5Tclose, type);
    CLOSE_ID(H5Aclose, attr);
    return st;
}

sp_status sp_qc_check_dset(hid_t dset, H5T_class_t cls, size_t size, int is_signed, int ndim,
                           const hsize_t *dims, const char *path, const char *dname,
                           sp_err *err) {
    hid_t type = H5Dget_type(dset), space = H5Dget_space(dset);
    sp_status st = SP_OK;
    if (type < 0 || space < 0) {
        st = sp_qc_h5err(err, SP_EIO, path, "%s: type/shape", dname);
        goto done;
    }
    int sgn = cls == H5T_INTEGER ? (H5Tget_sign(type) == H5T_SGN_2) : -1;
    if (H5Tget_class(type) != cls || H5Tget_size(type) != size ||
        (is_signed >= 0 && sgn != is_signed)) {
        st = sp_err_set(err, SP_EFORMAT, "%s: %s: dtype must be %s%zu", path, dname,
                        cls == H5T_FLOAT ? "float" : (is_signed ? "int" : "uint"), size * 8);
        goto done;
    }
    hsize_t got[2] = {0, 0};
    int nd = H5Sget_simple_extent_ndims(space);
    if (nd != ndim || H5Sget_simple_extent_dims(space, got, NULL) < 0 || got[0] != dims[0] ||
        (ndim == 2 && got[1] != dims[1])) {
        if (ndim == 2)
            st = sp_err_set(err, SP_EFORMAT, "%s: %s: shape must be [%llu, %llu]", path, dname,
                            (unsigned long long)dims[0], (unsigned long long)dims[1]);
        else
            st = sp_err_set(err, SP_EFORMAT, "%s: %s: shape must be [%llu]", path, dname,
                            (unsigned long long)dims[0]);
    }
done:
    CLOSE_ID(H5Sclose, space);
    CLOSE_ID(H5Tclose, type);
    return st;
}

sp_status sp_qc_read_rows(hid_t dset, hid_t mem_type, hsize_t row0, hsize_t nrows, void *dst,
                          const char *path, const char *dname, sp_err *err) {
    hid_t fspace = H5Dget_space(dset), mspace = H5I_INVALID_HID;
    sp_status st = SP_OK;
    hsize_t dims[2] = {0, 1};
    int nd = fspace >= 0 ? H5Sget_simple_extent_ndims(fspace) : -1;
    if (nd < 1 || nd > 2 || H5Sget_simple_extent_dims(fspace, dims, NULL) < 0) {
        st = sp_qc_h5err(err, SP_EIO, path, "%s: shape", dname);
        goto done;
    }
    hsize_t start[2] = {row0, 0}, count[2] = {nrows, nd == 2 ? dims[1] : 1};
    if (nd == 1) { /* a 1-D tensor is read whole, as one row */
        start[0] = 0;
        count[0] = dims[0];
    }
    mspace = H5Screate_simple(nd, count, NULL);
    if (mspace < 0 ||
        H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        H5Dread(dset, mem_type, mspace, fspace, H5P_DEFAULT, dst) < 0)
        st = sp_qc_h5err(err, SP_EIO, path, "%s: reading rows %llu..%llu", dname,
                         (unsigned long long)row0, (unsigned long long)(row0 + nrows));
done:
    CLOSE_ID(H5Sclose, mspace);
    CLOSE_ID(H5Sclose, fspace);
    return st;
}

/* ---- writer helpers ------------------------------------------------------------------------ */

/* An object-creation list of class cls with timestamps off (determinism). */
static hid_t untimed_plist(hid_t cls) {
    hid_t p = H5Pcreate(cls);
    if (p >= 0 && H5Pset_obj_track_times(p, 0) < 0) CLOSE_ID(H5Pclose, p);
    return p;
}

static sp_status write_attr_ints(hid_t obj, const char *name, const int *v, int n, int scalar,
                                 const char *path, const char *objname, sp_err *err) {
    hsize_t dim = (hsize_t)n;
    hid_t space = scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dim, NULL);
    hid_t attr = space < 0 ? H5I_INVALID_HID
                           : H5Acreate2(obj, name, H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT);
    sp_status st = SP_OK;
    if (attr < 0 || H5Awrite(attr, H5T_NATIVE_INT, v) < 0)
        st = sp_qc_h5err(err, SP_EIO, path, "%s: writing attribute %s", objname, name);
    CLOSE_ID(H5Aclose, attr);
    CLOSE_ID(H5Sclose, space);
    return st;
}

static sp_status write_attr_int(hid_t obj, const char *name, int v, const char *path,
                                const char *objname, sp_err *err) {
    return write_attr_ints(obj, name, &v, 1, 1, path, objname, err);
}

static sp_status write_attr_str(hid_t obj, const char *name, const char *s, const char *path,
                                sp_err *err) {
    hid_t type = H5Tcopy(H5T_C_S1), space = H5Screate(H5S_SCALAR), attr = H5I_INVALID_HID;
    sp_status st = SP_OK;
    if (type < 0 || space < 0 || H5Tset_size(type, strlen(s) + 1) < 0 ||
        H5Tset_strpad(type, H5T_STR_NULLTERM) < 0 ||
        (attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        H5Awrite(attr, type, s) < 0)
        st = sp_qc_h5err(err, SP_EIO, path, "/: writing attribute %s", name);
    CLOSE_ID(H5Aclose, attr);
    CLOSE_ID(H5Sclose, space);
    CLOSE_ID(H5Tclose, type);
    return st;
}

/* Create a contiguous dataset loc/name of file_type and write all of data (mem_type). */
static sp_status write_dset(hid_t loc, const char *name, hid_t file_type, hid_t mem_type, int ndim,
                            const hsize_t *dims, const void *data, const char *path,
                            const char *objname, sp_err *err) {
    hid_t space = H5Screate_simple(ndim, dims, NULL);
    hid_t dcpl = untimed_plist(H5P_DATASET_CREATE), dset = H5I_INVALID_HID;
    sp_status st = SP_OK;
    if (space < 0 || dcpl < 0 || H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0 ||
        (dset = H5Dcreate2(loc, name, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0 ||
        H5Dwrite(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        st = sp_qc_h5err(err, SP_EIO, path, "%s/%s: writing dataset", objname, name);
    if (st == SP_OK) {
        size_t nbytes = H5Tget_size(mem_type);
        for (int i = 0; i < ndim; i++) nbytes *= (size_t)dims[i];
        char dname[600];
        snprintf(dname, sizeof dname, "%s/%s", objname, name);
        st = sp_qc_write_crc(dset, data, nbytes, path, dname, err);
    }
    CLOSE_ID(H5Dclose, dset);
    CLOSE_ID(H5Pclose, dcpl);
    CLOSE_ID(H5Sclose, space);
    return st;
}

static sp_status create_group(hid_t loc, const char *name, hid_t *g, const char *path,
                              sp_err *err) {
    hid_t gcpl = untimed_plist(H5P_GROUP_CREATE);
    *g = gcpl < 0 ? H5I_INVALID_HID : H5Gcreate2(loc, name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    CLOSE_ID(H5Pclose, gcpl);
    if (*g < 0) return sp_qc_h5err(err, SP_EIO, path, "creating group %s", name);
    return SP_OK;
}

sp_status sp_qc_check_meta(const sp_qcontainer_meta *m, const char *path, sp_status code,
                           sp_err *err) {
    SP_RETURN_IF(m->n_levels < 1 || m->n_levels > SP_QCONTAINER_MAX_LEVELS, err, code,
                 "%s: n_levels=%d is outside 1..%d", path, m->n_levels, SP_QCONTAINER_MAX_LEVELS);
    int has_default = 0;
    for (int i = 0; i < m->n_levels; i++) {
        /* 1: the Q1_0 level only (its modules say gguf_type Q1_0; a plain 1-bit layer is
         * refused where it is read, sp_qlayer_alloc_level) */
        SP_RETURN_IF(m->levels[i] < 1 || m->levels[i] > 8 || (i && m->levels[i] <= m->levels[i - 1]),
                     err, code, "%s: levels must be strictly ascending bits in 1..8 "
                     "(levels[%d]=%d)", path, i, m->levels[i]);
        has_default |= m->levels[i] == m->default_bits;
    }
    SP_RETURN_IF(!has_default, err, code, "%s: default_bits=%d is not one of the levels",
                 path, m->default_bits);
    SP_RETURN_IF(m->sym != 0 && m->sym != 1, err, code, "%s: sym=%d must be 0 or 1", path,
                 m->sym);
    SP_RETURN_IF(strcmp(m->method, "gptq") != 0 && strcmp(m->method, "rtn") != 0, err, code, "%s: method \"%.16s\" must be \"gptq\" or \"rtn\"", path, m->method);
    return SP_OK;
}

void sp_qc_free(sp_qcontainer *c) {
    if (!c) return;
    for (int i = 0; i < c->n_mods; i++) free(c->mods[i].name);
    for (int i = 0; i < c->n_dense; i++) free(c->dense[i].name);
    free(c->mods);
    free(c->dense);
    free(c->path);
    free(c->tmp_path);
    free(c);
}

/* ---- writer -------------------------------------------------------------------------------- */

sp_status sp_qcontainer_create(sp_qcontainer **out, const char *path,
                               const sp_qcontainer_meta *meta, int force, sp_err *err) {
    *out = NULL;
    SP_FORWARD(sp_qc_check_meta(meta, path, SP_EINVAL, err));
    SP_RETURN_IF(!force && access(path, F_OK) == 0, err, SP_EEXIST,
                 "%s: already exists (use --force to replace it)", path);
    sp_qc_quiet q;
    sp_qc_quiet_begin(&q);
    hid_t fcpl = H5I_INVALID_HID, fapl = H5I_INVALID_HID, g = H5I_INVALID_HID;
    sp_status st = SP_ENOMEM;
    sp_qcontainer *c = sp_calloc(1, sizeof *c, err, "quantized container");
    if (!c) goto done;
    c->file = H5I_INVALID_HID;
    c->writing = 1;
    c->owner = pthread_self();
    c->meta = *meta;
    c->meta.version = SP_QCONTAINER_VERSION;
    if (c->meta.group_size <= 0) c->meta.group_size = -1;
    c->path = strdup(path);
    c->tmp_path = malloc(strlen(path) + sizeof ".partial");
    if (!c->path || !c->tmp_path) {
        st = sp_err_set(err, SP_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    sprintf(c->tmp_path, "%s.partial", path);
    fcpl = untimed_plist(H5P_FILE_CREATE); /* the root group has no timestamps either */
    fapl = H5Pcreate(H5P_FILE_ACCESS);
    /* SEMI: closing the file fails while an object is still open (catches leaks). */
    if (fcpl < 0 || fapl < 0 || H5Pset_fclose_degree(fapl, H5F_CLOSE_SEMI) < 0) {
        st = sp_qc_h5err(err, SP_EIO, path, "property lists");
        goto done;
    }
    c->file = H5Fcreate(c->tmp_path, H5F_ACC_TRUNC, fcpl, fapl);
    if (c->file < 0) {
        st = sp_qc_h5err(err, SP_EIO, c->tmp_path, "cannot create");
        goto done;
    }
    const sp_qcontainer_meta *m = &c->meta;
    if ((st = write_attr_str(c->file, "format", SP_QCONTAINER_FORMAT, path, err)) ||
        (st = write_attr_int(c->file, "version", m->version, path, "/", err)) ||
        (st = write_attr_int(c->file, "default_bits", m->default_bits, path, "/", err)) ||
        (st = write_attr_int(c->file, "group_size", m->group_size, path, "/", err)) ||
        (st = write_attr_int(c->file, "sym", m->sym, path, "/", err)) ||
        (st = write_attr_str(c->file, "method", m->method, path, err)) ||
        (st = write_attr_ints(c->file, "levels", m->levels, m->n_levels, 0, path, "/", err)))
        goto done;
    if ((st = create_group(c->file, "dense", &g, path, err))) goto done;
    CLOSE_ID(H5Gclose, g);
    if ((st = create_group(c->file, "modules", &g, path, err))) goto done;
    CLOSE_ID(H5Gclose, g);
    st = SP_OK;
done:
    CLOSE_ID(H5Gclose, g);
    CLOSE_ID(H5Pclose, fapl);
    CLOSE_ID(H5Pclose, fcpl);
    sp_qc_quiet_end(&q);
    if (st != SP_OK) {
        sp_qcontainer_discard(c);
        return st;
    }
    *out = c;
    return SP_OK;
}

sp_status sp_qcontainer_put_dense(sp_qcontainer *c, const char *name, int ndim,
                                  const int64_t shape[2], const float *data, sp_err *err) {
    SP_FORWARD(sp_qc_check_thread(c, err));
    SP_RETURN_IF(!c->writing, err, SP_EINVAL, "%s: opened for reading", c->path);
    SP_RETURN_IF(!sp_qc_name_ok(name), err, SP_EINVAL, "%s: bad dense tensor name \"%s\"",
                 c->path, name ? name : "(null)");
    SP_RETURN_IF(ndim < 1 || ndim > 2 || shape[0] <= 0 || (ndim == 2 && shape[1] <= 0), err,
                 SP_EINVAL, "%s: /dense/%s: bad shape (ndim %d)", c->path, name, ndim);
    hsize_t dims[2] = {(hsize_t)shape[0], ndim == 2 ? (hsize_t)shape[1] : 1};
    size_t n = (size_t)dims[0] * (size_t)dims[1];
    for (size_t i = 0; i < n; i++)
        SP_RETURN_IF(!isfinite(data[i]), err, SP_EINVAL, "%s: /dense/%s: element %zu is %g",
                     c->path, name, i, (double)data[i]);
    sp_qc_quiet q;
    sp_qc_quiet_begin(&q);
    sp_status st = SP_OK;
    hid_t g = H5Gopen2(c->file, "dense", H5P_DEFAULT);
    htri_t ex = g < 0 ? -1 : H5Lexists(g, name, H5P_DEFAULT);
    if (ex < 0)
        st = sp_qc_h5err(err, SP_EIO, c->path, "/dense/%s", name);
    else if (ex > 0)
        st = sp_err_set(err, SP_EINVAL, "%s: /dense/%s is stored twice", c->path, name);
    else
        st = write_dset(g, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, ndim, dims, data, c->path,
                        "/dense", err);
    CLOSE_ID(H5Gclose, g);
    sp_qc_quiet_end(&q);
    return st;
}

/* Everything a reader would reject, checked before anything is written. */
static sp_status check_qlayer(const sp_qcontainer *c, const char *module, const sp_qlayer *q,
                              sp_err *err) {
    int listed = 0;
    for (int i = 0; i < c->meta.n_levels; i++) listed |= c->meta.levels[i] == q->bits;
    SP_RETURN_IF(!listed, err, SP_EINVAL, "%s: %s: bits=%d is not one of the container's levels",
                 c->path, module, q->bits);
    SP_RETURN_IF(q->rows <= 0 || q->cols <= 0 || q->group_size <= 0 ||
                 q->n_groups != (q->cols + q->group_size - 1) / q->group_size ||
                 (q->sym != 0 && q->sym != 1), err, SP_EINVAL,
                 "%s: %s: inconsistent layer (rows %d cols %d group_size %d n_groups %d sym %d)",
                 c->path, module, q->rows, q->cols, q->group_size, q->n_groups, q->sym);
    const unsigned limit = 1u << q->bits;
    size_t ng = (size_t)q->rows * (size_t)q->n_groups;
    if (q->gtype) { /* the values must be exactly the type's: the packer checks them */
        int tb = 0, tg = 0, ts = 0;
        sp_gtype_level(q->gtype, &tb, &tg, &ts);
        SP_RETURN_IF(!sp_gtype_is_level(q->gtype) || tb != q->bits || tg != q->group_size ||
                         ts != q->sym || q->cols % sp_gtype_block(q->gtype),
                     err, SP_EINVAL, "%s: %s: gguf_type %d does not match the level", c->path,
                     module, q->gtype);
        for (int r = 0; r < q->rows; r++) {
            sp_status st = sp_gtype_pack_level_row(q, r, NULL, err);
            if (st != SP_OK) return sp_err_prefix(err, "%s: %s", c->path, module), st;
        }
        ng = 0; /* scales are fp32 products: checked above */
    }
    for (size_t i = 0; i < ng; i++) {
        SP_RETURN_IF(q->zeros[i] >= limit, err, SP_EINVAL,
                     "%s: %s: zeros[%zu, %zu]=%u is outside 0..%u", c->path, module,
                     i / (size_t)q->n_groups, i % (size_t)q->n_groups, q->zeros[i], limit - 1);
        SP_RETURN_IF(!sp_qcontainer_f16_exact(q->scales[i]), err, SP_EINVAL,
                     "%s: %s: scales[%zu, %zu]=%.9g is not finite and fp16-representable",
                     c->path, module, i / (size_t)q->n_groups, i % (size_t)q->n_groups,
                     (double)q->scales[i]);
    }
    for (int k = 0; k < q->cols; k++)
        SP_RETURN_IF(q->g_idx[k] < 0 || q->g_idx[k] >= q->n_groups, err, SP_EINVAL,
                     "%s: %s: g_idx[%d]=%d is outside 0..%d", c->path, module, k, q->g_idx[k],
                     q->n_groups - 1);
    return SP_OK;
}

sp_status sp_qcontainer_put_qlayer(sp_qcontainer *c, const char *module, const sp_qlayer *q,
                                   sp_err *err) {
    SP_FORWARD(sp_qc_check_thread(c, err));
    SP_RETURN_IF(!c->writing, err, SP_EINVAL, "%s: opened for reading", c->path);
    SP_RETURN_IF(!sp_qc_name_ok(module), err, SP_EINVAL, "%s: bad module name \"%s\"", c->path,
                 module ? module : "(null)");
    SP_FORWARD(check_qlayer(c, module, q, err));
    size_t nw = sp_pack_nwords((size_t)q->cols, q->bits);
    uint32_t *packed = sp_malloc((size_t)q->rows * nw * sizeof *packed, err, "packed codes");
    if (!packed) return SP_ENOMEM;
    sp_status st = SP_OK;
    for (int r = 0; r < q->rows && st == SP_OK; r++) {
        st = sp_pack_bits(packed + (size_t)r * nw, 1, q->codes + (size_t)r * (size_t)q->cols, 1,
                          (size_t)q->cols, q->bits, err);
        if (st != SP_OK) sp_err_prefix(err, "%s: %s: codes row %d", c->path, module, r);
    }
    if (st != SP_OK) {
        free(packed);
        return st;
    }
    sp_qc_quiet q5;
    sp_qc_quiet_begin(&q5);
    char lvname[16], obj[320];
    snprintf(lvname, sizeof lvname, "%dbit", q->bits);
    snprintf(obj, sizeof obj, "/modules/%s/%s", module, lvname);
    hid_t mods = H5Gopen2(c->file, "modules", H5P_DEFAULT), gm = H5I_INVALID_HID;
    hid_t gl = H5I_INVALID_HID;
    htri_t ex = mods < 0 ? -1 : H5Lexists(mods, module, H5P_DEFAULT);
    if (ex < 0) {
        st = sp_qc_h5err(err, SP_EIO, c->path, "/modules/%s", module);
        goto done;
    }
    if (ex == 0) {
        if ((st = create_group(mods, module, &gm, c->path, err))) goto done;
    } else if ((gm = H5Gopen2(mods, module, H5P_DEFAULT)) < 0) {
        st = sp_qc_h5err(err, SP_EIO, c->path, "/modules/%s", module);
        goto done;
    }
    ex = H5Lexists(gm, lvname, H5P_DEFAULT);
    if (ex != 0) {
        st = ex < 0 ? sp_qc_h5err(err, SP_EIO, c->path, "%s", obj)
                    : sp_err_set(err, SP_EINVAL, "%s: %s is stored twice", c->path, obj);
        goto done;
    }
    if ((st = create_group(gm, lvname, &gl, c->path, err))) goto done;
    hsize_t dq[2] = {(hsize_t)q->rows, nw}, dg[2] = {(hsize_t)q->rows, (hsize_t)q->n_groups};
    hsize_t dc = (hsize_t)q->cols;
    if ((st = write_attr_int(gl, "rows", q->rows, c->path, obj, err)) ||
        (st = write_attr_int(gl, "cols", q->cols, c->path, obj, err)) ||
        (st = write_attr_int(gl, "bits", q->bits, c->path, obj, err)) ||
        (st = write_attr_int(gl, "group_size", q->group_size, c->path, obj, err)) ||
        (st = write_attr_int(gl, "sym", q->sym, c->path, obj, err)) ||
        (st = write_dset(gl, "qweight", H5T_STD_U32LE, H5T_NATIVE_UINT32, 2, dq, packed, c->path,
                         obj, err)) ||
        (st = write_dset(gl, "scales", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, dg, q->scales,
                         c->path, obj, err)) ||
        (st = write_dset(gl, "zeros", H5T_STD_U8LE, H5T_NATIVE_UINT8, 2, dg, q->zeros, c->path,
                         obj, err)) ||
        (st = write_dset(gl, "g_idx", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &dc, q->g_idx, c->path,
                         obj, err)))
        goto done;
    if (q->gtype) {
        hsize_t ds[2] = {(hsize_t)q->rows, (hsize_t)q->n_super * 2};
        if ((st = write_attr_str(gl, "gguf_type", sp_gtype_name(q->gtype), c->path, err)) ||
            (q->mins && (st = write_dset(gl, "mins", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, dg,
                                         q->mins, c->path, obj, err))) ||
            (q->supers && (st = write_dset(gl, "supers", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, ds,
                                           q->supers, c->path, obj, err))))
            goto done;
    }
done:
    CLOSE_ID(H5Gclose, gl);
    CLOSE_ID(H5Gclose, gm);
    CLOSE_ID(H5Gclose, mods);
    sp_qc_quiet_end(&q5);
    free(packed);
    return st;
}

sp_status sp_qcontainer_set_selected(sp_qcontainer *c, const char *module, int bits,
                                     sp_err *err) {
    SP_FORWARD(sp_qc_check_thread(c, err));
    SP_RETURN_IF(!c->writing, err, SP_EINVAL, "%s: opened for reading", c->path);
    SP_RETURN_IF(!sp_qc_name_ok(module), err, SP_EINVAL, "%s: bad module name", c->path);
    sp_qc_quiet q;
    sp_qc_quiet_begin(&q);
    sp_status st = SP_OK;
    char path[300], lvname[16];
    snprintf(path, sizeof path, "/modules/%s", module);
    snprintf(lvname, sizeof lvname, "%dbit", bits);
    hid_t gm = H5I_INVALID_HID;
    htri_t ex = H5Lexists(c->file, "modules", H5P_DEFAULT) > 0
                    ? H5Lexists(c->file, path, H5P_DEFAULT) : -1;
    if (ex > 0) gm = H5Gopen2(c->file, path, H5P_DEFAULT);
    htri_t lv = gm >= 0 ? H5Lexists(gm, lvname, H5P_DEFAULT) : -1;
    if (ex == 0 || lv == 0) {
        st = sp_err_set(err, SP_ENOTFOUND, "%s: %s: level %d bits is not stored", c->path,
                        module, bits);
        goto done;
    }
    if (gm < 0 || lv < 0 || (H5Aexists(gm, "selected_bits") > 0 && H5Adelete(gm, "selected_bits") < 0)) {
        st = sp_qc_h5err(err, SP_EIO, c->path, "%s: selected_bits", path);
        goto done;
    }
    st = write_attr_int(gm, "selected_bits", bits, c->path, path, err);
done:
    CLOSE_ID(H5Gclose, gm);
    sp_qc_quiet_end(&q);
    return st;
}

void sp_qcontainer_discard(sp_qcontainer *c) {
    if (!c) return;
    sp_qc_quiet q;
    sp_qc_quiet_begin(&q);
    CLOSE_ID(H5Fclose, c->file);
    sp_qc_quiet_end(&q);
    if (c->writing && c->tmp_path) (void)unlink(c->tmp_path);
    sp_qc_free(c);
}

sp_status sp_qcontainer_check_space(const char *path, uint64_t raw_bytes, uint64_t n_datasets,
                                    sp_err *err) {
    uint64_t need = raw_bytes + n_datasets * 4096u + (256u << 10);
    char scratch[4200];
    int n = snprintf(scratch, sizeof scratch, "%s.space", path);
    SP_RETURN_IF(n < 0 || (size_t)n >= sizeof scratch, err, SP_EINVAL, "%s: path too long", path);
    int fd = open(scratch, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    SP_RETURN_IF(fd < 0, err, SP_EIO, "%s: cannot create: %s", scratch, strerror(errno));
    /* posix_fallocate returns the error (it does not set errno); where the file system cannot
     * allocate without writing (EINVAL / EOPNOTSUPP from glibc's fallback being refused),
     * the free space is read instead. */
    int rc = posix_fallocate(fd, 0, (off_t)need);
    close(fd);
    (void)unlink(scratch);
    if (rc == EINVAL || rc == EOPNOTSUPP) {
        struct statvfs sv;
        char dir[4200];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) *(slash == dir ? slash + 1 : slash) = '\0';
        else snprintf(dir, sizeof dir, ".");
        if (statvfs(dir, &sv) != 0) return SP_OK; /* nothing to learn: let the write try */
        rc = (uint64_t)sv.f_bavail * sv.f_frsize < need ? ENOSPC : 0;
    }
    SP_RETURN_IF(rc != 0, err, SP_EIO, "%s: cannot reserve %llu bytes for the container: %s",
                 path, (unsigned long long)need, strerror(rc));
    return SP_OK;
}

/* fsync a closed file so that the rename below publishes complete data. */
static sp_status sync_file(const char *path, sp_err *err) {
    int fd = open(path, O_RDONLY);
    SP_RETURN_IF(fd < 0, err, SP_EIO, "%s: cannot reopen for fsync: %s", path, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    SP_RETURN_IF(rc != 0, err, SP_EIO, "%s: fsync: %s", path, strerror(e));
    return SP_OK;
}

sp_status sp_qcontainer_close(sp_qcontainer *c, sp_err *err) {
    if (!c) return SP_OK;
    sp_status st = sp_qc_check_thread(c, err);
    if (st != SP_OK) return st; /* another thread must not touch HDF5, not even to close */
    sp_qc_quiet q;
    sp_qc_quiet_begin(&q);
    if (c->file >= 0 && H5Fclose(c->file) < 0)
        st = sp_qc_h5err(err, SP_EIO, c->writing ? c->tmp_path : c->path, "closing");
    c->file = H5I_INVALID_HID;
    sp_qc_quiet_end(&q);
    if (c->writing && st == SP_OK) st = sync_file(c->tmp_path, err);
    if (c->writing && st == SP_OK && rename(c->tmp_path, c->path) != 0)
        st = sp_err_set(err, SP_EIO, "%s: cannot rename %s to it: %s", c->path, c->tmp_path,
                        strerror(errno));
    if (c->writing && st != SP_OK) (void)unlink(c->tmp_path);
    sp_qc_free(c);
    return st;
}
