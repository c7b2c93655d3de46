/* sp_ckpt_h5.c — small HDF5 helpers of the checkpoint engine. I/O thread only (HDF5 is not
 * thread-safe). Every function closes what it opens on every path.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/sp_ckpt_int.h"

#define CLOSE_ID(fn, id)             \
    do {                             \
        if ((id) >= 0) (void)fn(id); \
        (id) = H5I_INVALID_HID;      \
    } while (0)

void sp_ck_quiet_begin(sp_ck_quiet *q) {
    q->func = NULL;
    q->data = NULL;
    (void)H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
    (void)H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void sp_ck_quiet_end(const sp_ck_quiet *q) { (void)H5Eset_auto2(H5E_DEFAULT, q->func, q->data); }

typedef struct {
    char *buf;
    size_t cap;
} msg_sink;

/* H5Ewalk2 callback, walking upward: the first entry (n == 0) is the innermost one, which
 * usually says what really went wrong ("truncated file: eof = ...", "filter returned failure"). */
static herr_t innermost_cb(unsigned n, const H5E_error2_t *e, void *data) {
    msg_sink *s = data;
    if (n == 0 && e && e->desc) snprintf(s->buf, s->cap, "%s", e->desc);
    return 0;
}

void sp_ck_h5_msg(char *buf, size_t cap) {
    msg_sink s = {buf, cap};
    buf[0] = '\0';
    (void)H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_cb, &s);
}

sp_status sp_ck_h5err(sp_err *err, sp_status code, const char *fmt, ...) {
    char what[SP_ERR_MSG_MAX], h5[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    sp_ck_h5_msg(h5, sizeof h5);
    if (h5[0]) return sp_err_set(err, code, "%s (HDF5: %s)", what, h5);
    return sp_err_set(err, code, "%s", what);
}

/* On disk every type is little-endian; in memory native (the engine refuses big-endian hosts,
 * so the CRC of the memory bytes is the CRC of the file bytes). */
hid_t sp_ck_file_type(sp_ckpt_dtype dt) {
    switch (dt) {
    case SP_CKPT_U8: return H5T_STD_U8LE;
    case SP_CKPT_I32: return H5T_STD_I32LE;
    case SP_CKPT_I64: return H5T_STD_I64LE;
    case SP_CKPT_F32: return H5T_IEEE_F32LE;
    case SP_CKPT_F64: return H5T_IEEE_F64LE;
    }
    return H5I_INVALID_HID;
}

hid_t sp_ck_mem_type(sp_ckpt_dtype dt) {
    switch (dt) {
    case SP_CKPT_U8: return H5T_NATIVE_UINT8;
    case SP_CKPT_I32: return H5T_NATIVE_INT32;
    case SP_CKPT_I64: return H5T_NATIVE_INT64;
    case SP_CKPT_F32: return H5T_NATIVE_FLOAT;
    case SP_CKPT_F64: return H5T_NATIVE_DOUBLE;
    }
    return H5I_INVALID_HID;
}

int sp_ck_dtype_of(hid_t type) {
    H5T_class_t cls = H5Tget_class(type);
    size_t sz = H5Tget_size(type);
    H5T_order_t order = H5Tget_order(type);
    if (order != H5T_ORDER_LE && !(sz == 1 && cls == H5T_INTEGER)) return -1;
    if (cls == H5T_INTEGER) {
        H5T_sign_t sg = H5Tget_sign(type);
        if (sz == 1 && sg == H5T_SGN_NONE) return SP_CKPT_U8;
        if (sz == 4 && sg == H5T_SGN_2) return SP_CKPT_I32;
        if (sz == 8 && sg == H5T_SGN_2) return SP_CKPT_I64;
    } else if (cls == H5T_FLOAT) {
        if (sz == 4) return SP_CKPT_F32;
        if (sz == 8) return SP_CKPT_F64;
    }
    return -1;
}

hid_t sp_ck_untimed_plist(hid_t cls) {
    hid_t p = H5Pcreate(cls);
    if (p >= 0 && H5Pset_obj_track_times(p, 0) < 0) CLOSE_ID(H5Pclose, p);
    return p;
}

static sp_status attr_write(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *v,
                            sp_err *err) {
    hid_t space = H5Screate(H5S_SCALAR), attr = H5I_INVALID_HID;
    sp_status st = SP_OK;
    if (space < 0 ||
        (attr = H5Acreate2(obj, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        H5Awrite(attr, mtype, v) < 0)
        st = sp_ck_h5err(err, SP_EIO, "writing attribute '%s'", name);
    CLOSE_ID(H5Aclose, attr);
    CLOSE_ID(H5Sclose, space);
    return st;
}

sp_status sp_ck_attr_write_i64(hid_t obj, const char *name, int64_t v, sp_err *err) {
    return attr_write(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, err);
}

sp_status sp_ck_attr_write_u32(hid_t obj, const char *name, uint32_t v, sp_err *err) {
    return attr_write(obj, name, H5T_STD_U32LE, H5T_NATIVE_UINT32, &v, err);
}

sp_status sp_ck_attr_write_str(hid_t obj, const char *name, const char *s, sp_err *err) {
    /* Fixed-length, NUL-terminated ASCII: h5dump and h5py show it as a plain string. */
    hid_t type = H5Tcopy(H5T_C_S1);
    sp_status st = SP_OK;
    if (type < 0 || H5Tset_size(type, strlen(s) + 1) < 0 ||
        H5Tset_strpad(type, H5T_STR_NULLTERM) < 0)
        st = sp_ck_h5err(err, SP_EIO, "attribute '%s': string type", name);
    else
        st = attr_write(obj, name, type, type, s, err);
    CLOSE_ID(H5Tclose, type);
    return st;
}

static sp_status attr_open(hid_t obj, const char *name, hid_t *attr, sp_err *err) {
    htri_t ex = H5Aexists(obj, name);
    if (ex < 0) return sp_ck_h5err(err, SP_EIO, "attribute '%s'", name);
    if (ex == 0) return sp_err_set(err, SP_ENOTFOUND, "attribute '%s' is missing", name);
    *attr = H5Aopen(obj, name, H5P_DEFAULT);
    if (*attr < 0) return sp_ck_h5err(err, SP_EIO, "attribute '%s'", name);
    return SP_OK;
}

sp_status sp_ck_attr_read_i64(hid_t obj, const char *name, int64_t *v, sp_err *err) {
    hid_t attr = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    sp_status st = attr_open(obj, name, &attr, err);
    if (st != SP_OK) return st;
    type = H5Aget_type(attr);
    space = H5Aget_space(attr);
    if (type < 0 || space < 0) {
        st = sp_ck_h5err(err, SP_EIO, "attribute '%s'", name);
    } else if (H5Tget_class(type) != H5T_INTEGER || H5Sget_simple_extent_npoints(space) != 1) {
        st = sp_err_set(err, SP_EFORMAT, "attribute '%s' is not an integer scalar", name);
    } else if (H5Aread(attr, H5T_NATIVE_INT64, v) < 0) {
        st = sp_ck_h5err(err, SP_EFORMAT, "attribute '%s'", name);
    }
    CLOSE_ID(H5Sclose, space);
    CLOSE_ID(H5Tclose, type);
    CLOSE_ID(H5Aclose, attr);
    return st;
}

sp_status sp_ck_attr_read_str(hid_t obj, const char *name, char **v, sp_err *err) {
    hid_t attr = H5I_INVALID_HID, type = H5I_INVALID_HID, mem = H5I_INVALID_HID;
    hid_t space = H5I_INVALID_HID;
    char *s = NULL;
    *v = NULL;
    sp_status st = attr_open(obj, name, &attr, err);
    if (st != SP_OK) return st;
    type = H5Aget_type(attr);
    space = H5Aget_space(attr);
    if (type < 0 || space < 0) {
        st = sp_ck_h5err(err, SP_EIO, "attribute '%s'", name);
        goto done;
    }
    if (H5Tget_class(type) != H5T_STRING || H5Sget_simple_extent_npoints(space) != 1) {
        st = sp_err_set(err, SP_EFORMAT, "attribute '%s' is not a string scalar", name);
        goto done;
    }
    if (H5Tis_variable_str(type) > 0) { /* written by other tools (h5py's default) */
        char *vs = NULL;
        mem = H5Tcopy(H5T_C_S1);
        if (mem < 0 || H5Tset_size(mem, H5T_VARIABLE) < 0 || H5Aread(attr, mem, &vs) < 0) {
            st = sp_ck_h5err(err, SP_EIO, "attribute '%s'", name);
            goto done;
        }
        s = strdup(vs ? vs : "");
        (void)H5free_memory(vs);
    } else {
        size_t sz = H5Tget_size(type);
        s = calloc(sz + 1, 1);
        mem = H5Tcopy(H5T_C_S1);
        if (s && (mem < 0 || H5Tset_size(mem, sz + 1) < 0 ||
                  H5Tset_strpad(mem, H5T_STR_NULLTERM) < 0 || H5Aread(attr, mem, s) < 0)) {
            st = sp_ck_h5err(err, SP_EIO, "attribute '%s'", name);
            goto done;
        }
    }
    if (!s) {
        st = sp_err_set(err, SP_ENOMEM, "attribute '%s': out of memory", name);
        goto done;
    }
    *v = s;
    s = NULL;
done:
    free(s);
    CLOSE_ID(H5Tclose, mem);
    CLOSE_ID(H5Sclose, space);
    CLOSE_ID(H5Tclose, type);
    CLOSE_ID(H5Aclose, attr);
    return st;
}

sp_status sp_ck_make_parents(hid_t file, const char *name, sp_err *err) {
    char path[SP_CK_NAME_MAX + 1];
    snprintf(path, sizeof path, "%s", name);
    hid_t gcpl = sp_ck_untimed_plist(H5P_GROUP_CREATE);
    if (gcpl < 0) return sp_ck_h5err(err, SP_EIO, "group creation list");
    sp_status st = SP_OK;
    /* Create each parent "a", "a/b", ... explicitly (not with intermediate-group creation)
     * so that every group has timestamps off. */
    for (char *p = strchr(path, '/'); p && st == SP_OK; p = strchr(p + 1, '/')) {
        *p = '\0';
        htri_t ex = H5Lexists(file, path, H5P_DEFAULT);
        if (ex < 0) {
            st = sp_ck_h5err(err, SP_EIO, "group '%s'", path);
        } else if (ex == 0) {
            hid_t g = H5Gcreate2(file, path, H5P_DEFAULT, gcpl, H5P_DEFAULT);
            if (g < 0) st = sp_ck_h5err(err, SP_EIO, "creating group '%s'", path);
            CLOSE_ID(H5Gclose, g);
        }
        *p = '/';
    }
    CLOSE_ID(H5Pclose, gcpl);
    return st;
}

int sp_ck_path_exists(hid_t file, const char *name) {
    char path[SP_CK_NAME_MAX + 1];
    if (!name || !name[0] || strlen(name) > SP_CK_NAME_MAX) return 0;
    snprintf(path, sizeof path, "%s", name);
    /* H5Lexists("a/b") fails when "a" is missing, so test each prefix in turn. */
    for (char *p = path;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            htri_t ex = H5Lexists(file, path, H5P_DEFAULT);
            *p = c;
            if (ex <= 0) return ex < 0 ? -1 : 0;
            if (c == '\0') break;
        }
    }
    return H5Oexists_by_name(file, path, H5P_DEFAULT) > 0;
}

void sp_ck_chunk_dims(int ndim, const int64_t *shape, size_t esize, hsize_t *chunk) {
    const double target = 4.0 * 1024 * 1024;
    for (int d = 0; d < ndim; d++) chunk[d] = shape[d] > 0 ? (hsize_t)shape[d] : 1;
    /* Shrink dim 0 first (rows), then dim 1, ...: a chunk is a run of whole rows when a row
     * fits in the target, so each rank's slab maps onto few chunks. */
    for (int d = 0; d < ndim; d++) {
        double inner = (double)esize;
        for (int k = d + 1; k < ndim; k++) inner *= (double)chunk[k];
        double total = inner * (double)chunk[d];
        if (total <= target) break;
        if (inner <= target) {
            hsize_t c = (hsize_t)(target / inner);
            chunk[d] = c < 1 ? 1 : c;
            break;
        }
        chunk[d] = 1;
    }
}
