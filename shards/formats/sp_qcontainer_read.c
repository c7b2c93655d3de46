/* sp_qcontainer_read.c — opening, validating and reading a quantized container.
 * See sp_qcontainer.h for the layout.
 *
 * At open every attribute and every dataset's type and shape is checked (metadata only, a few
 * HDF5 calls per level), and the module / dense lists are kept sorted in memory. Values are
 * checked when they are read: a row's zeros and scales, the whole g_idx, and the padding bits
 * of every packed row.
 *
 * Shape legend: R rows (out features), C cols (in features), b bits, G groups = ceil(C / gs),
 * Wd = ceil(C·b / 32) packed words per row.
 */
#include "shards/formats/sp_qcontainer_int.h"

#include "kernels/sp_gtype.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/sp_pack.h"

#define CLOSE_ID(fn, id)             \
    do {                             \
        if ((id) >= 0) (void)fn(id); \
        (id) = H5I_INVALID_HID;      \
    } while (0)

/* ---- name lists ---------------------------------------------------------------------------- */

typedef struct {
    char **names;
    int n, cap, oom;
    char link[64]; /* first member that is not a hard link (soft/external links are refused) */
} name_list;

static herr_t collect_cb(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    name_list *l = data;
    if (info->type != H5L_TYPE_HARD) {
        snprintf(l->link, sizeof l->link, "%s", name);
        return -1;
    }
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        char **p = realloc(l->names, (size_t)cap * sizeof *p);
        if (!p) return (l->oom = 1, -1);
        l->names = p;
        l->cap = cap;
    }
    if (!(l->names[l->n] = strdup(name))) return (l->oom = 1, -1);
    l->n++;
    return 0;
}

static void free_names(name_list *l) {
    for (int i = 0; i < l->n; i++) free(l->names[i]);
    free(l->names);
    memset(l, 0, sizeof *l);
}

static sp_status list_children(hid_t g, const char *path, const char *objname, name_list *l,
                               sp_err *err) {
    memset(l, 0, sizeof *l);
    if (H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, collect_cb, l) < 0) {
        sp_status st =
            l->oom ? sp_err_set(err, SP_ENOMEM, "%s: %s: out of memory", path, objname)
            : l->link[0] ? sp_err_set(err, SP_EFORMAT, "%s: %s: member %s is a soft or external "
                                      "link (only plain members are allowed)", path, objname,
                                      l->link)
                         : sp_qc_h5err(err, SP_EFORMAT, path, "%s: listing members", objname);
        free_names(l);
        return st;
    }
    return SP_OK;
}

static int cmp_mod(const void *a, const void *b) {
    return strcmp(((const sp_qc_module *)a)->name, ((const sp_qc_module *)b)->name);
}
static int cmp_dense(const void *a, const void *b) {
    return strcmp(((const sp_qc_dense *)a)->name, ((const sp_qc_dense *)b)->name);
}
static int cmp_level(const void *a, const void *b) {
    return ((const sp_qlevel_info *)a)->bits - ((const sp_qlevel_info *)b)->bits;
}

static const sp_qc_module *find_module(const sp_qcontainer *c, const char *name) {
    sp_qc_module key = {.name = (char *)name};
    return c->n_mods ? bsearch(&key, c->mods, (size_t)c->n_mods, sizeof key, cmp_mod) : NULL;
}

static const sp_qc_dense *find_dense(const sp_qcontainer *c, const char *name) {
    sp_qc_dense key = {.name = (char *)name};
    return c->n_dense ? bsearch(&key, c->dense, (size_t)c->n_dense, sizeof key, cmp_dense) : NULL;
}

/* ---- open ---------------------------------------------------------------------------------- */

static sp_status read_meta(sp_qcontainer *c, sp_err *err) {
    char fmt[64];
    sp_qcontainer_meta *m = &c->meta;
    SP_FORWARD(sp_qc_attr_read_str(c->file, "format", fmt, sizeof fmt, c->path, "/", err));
    SP_RETURN_IF(strcmp(fmt, SP_QCONTAINER_FORMAT) != 0, err, SP_EUNSUPPORTED,
                 "%s: /: attribute format is \"%s\", expected \"%s\"", c->path, fmt,
                 SP_QCONTAINER_FORMAT);
    SP_FORWARD(sp_qc_attr_read_int(c->file, "version", &m->version, c->path, "/", err));
    SP_RETURN_IF(m->version < 1 || m->version > SP_QCONTAINER_VERSION, err, SP_EUNSUPPORTED,
                 "%s: /: attribute version is %d, this build reads versions 1..%d", c->path,
                 m->version, SP_QCONTAINER_VERSION);
    SP_FORWARD(sp_qc_attr_read_int(c->file, "default_bits", &m->default_bits, c->path, "/", err));
    SP_FORWARD(sp_qc_attr_read_int(c->file, "group_size", &m->group_size, c->path, "/", err));
    SP_FORWARD(sp_qc_attr_read_int(c->file, "sym", &m->sym, c->path, "/", err));
    SP_FORWARD(sp_qc_attr_read_str(c->file, "method", m->method, sizeof m->method, c->path, "/",
                                   err));
    SP_FORWARD(sp_qc_attr_read_ints(c->file, "levels", m->levels, SP_QCONTAINER_MAX_LEVELS,
                                    &m->n_levels, c->path, "/", err));
    char where[300];
    snprintf(where, sizeof where, "%s: / attributes", c->path);
    return sp_qc_check_meta(m, where, SP_EFORMAT, err);
}

static sp_status read_dense_list(sp_qcontainer *c, hid_t g, sp_err *err) {
    name_list l;
    SP_FORWARD(list_children(g, c->path, "/dense", &l, err));
    sp_status st = SP_OK;
    hid_t d = H5I_INVALID_HID, space = H5I_INVALID_HID, type = H5I_INVALID_HID;
    c->dense = sp_calloc((size_t)l.n, sizeof *c->dense, err, "dense list");
    if (!c->dense) {
        st = SP_ENOMEM;
        goto done;
    }
    for (int i = 0; i < l.n; i++) {
        char obj[300];
        if (!sp_qc_name_ok(l.names[i])) {
            st = sp_err_set(err, SP_EFORMAT, "%s: /dense: member name of %zu bytes is too long",
                            c->path, strlen(l.names[i]));
            goto done;
        }
        snprintf(obj, sizeof obj, "/dense/%s", l.names[i]);
        d = H5Dopen2(g, l.names[i], H5P_DEFAULT);
        if (d < 0) {
            st = sp_qc_h5err(err, SP_EFORMAT, c->path, "%s: not a dataset", obj);
            goto done;
        }
        space = H5Dget_space(d);
        type = H5Dget_type(d);
        hsize_t dims[2] = {0, 1};
        int nd = space < 0 ? -1 : H5Sget_simple_extent_ndims(space);
        if (type < 0 || nd < 1 || nd > 2 || H5Sget_simple_extent_dims(space, dims, NULL) < 0 ||
            H5Tget_class(type) != H5T_FLOAT || H5Tget_size(type) != 4 || dims[0] == 0 ||
            dims[1] == 0) {
            st = sp_err_set(err, SP_EFORMAT, "%s: %s: must be a non-empty 1-D or 2-D float32 "
                            "dataset", c->path, obj);
            goto done;
        }
        sp_qc_dense *t = &c->dense[c->n_dense++];
        t->name = l.names[i];
        l.names[i] = NULL; /* ownership moves to c */
        t->ndim = nd;
        t->shape[0] = (int64_t)dims[0];
        t->shape[1] = (int64_t)dims[1];
        CLOSE_ID(H5Tclose, type);
        CLOSE_ID(H5Sclose, space);
        CLOSE_ID(H5Dclose, d);
    }
    qsort(c->dense, (size_t)c->n_dense, sizeof *c->dense, cmp_dense);
done:
    CLOSE_ID(H5Tclose, type);
    CLOSE_ID(H5Sclose, space);
    CLOSE_ID(H5Dclose, d);
    free_names(&l);
    return st;
}

/* Validate the attributes and dataset shapes of level group gl (named obj) into *lv. */
static sp_status read_level_info(sp_qcontainer *c, hid_t gl, const char *obj, int bits,
                                 sp_qlevel_info *lv, sp_err *err) {
    SP_FORWARD(sp_qc_attr_read_int(gl, "rows", &lv->rows, c->path, obj, err));
    SP_FORWARD(sp_qc_attr_read_int(gl, "cols", &lv->cols, c->path, obj, err));
    SP_FORWARD(sp_qc_attr_read_int(gl, "bits", &lv->bits, c->path, obj, err));
    SP_FORWARD(sp_qc_attr_read_int(gl, "group_size", &lv->group_size, c->path, obj, err));
    SP_FORWARD(sp_qc_attr_read_int(gl, "sym", &lv->sym, c->path, obj, err));
    SP_RETURN_IF(lv->rows <= 0 || lv->cols <= 0, err, SP_EFORMAT,
                 "%s: %s: attributes rows=%d cols=%d must be positive", c->path, obj, lv->rows,
                 lv->cols);
    SP_RETURN_IF(lv->bits != bits, err, SP_EFORMAT,
                 "%s: %s: attribute bits=%d does not match the group name", c->path, obj,
                 lv->bits);
    SP_RETURN_IF(lv->group_size <= 0, err, SP_EFORMAT,
                 "%s: %s: attribute group_size=%d must be positive", c->path, obj,
                 lv->group_size);
    SP_RETURN_IF(lv->sym != 0 && lv->sym != 1, err, SP_EFORMAT,
                 "%s: %s: attribute sym=%d must be 0 or 1", c->path, obj, lv->sym);
    lv->n_groups = (int)(((int64_t)lv->cols + lv->group_size - 1) / lv->group_size);
    lv->gtype = 0;
    htri_t has_gt = H5Aexists(gl, "gguf_type");
    SP_RETURN_IF(has_gt < 0, err, SP_EFORMAT, "%s: %s: attribute gguf_type unreadable", c->path,
                 obj);
    if (has_gt > 0) { /* a GGUF-type level: its shape must be the type's */
        char tname[16];
        SP_FORWARD(sp_qc_attr_read_str(gl, "gguf_type", tname, sizeof tname, c->path, obj, err));
        int t = sp_gtype_parse(tname), tb = 0, tg = 0, ts = 0;
        SP_RETURN_IF(t < 0 || !sp_gtype_is_level(t), err, SP_EFORMAT,
                     "%s: %s: attribute gguf_type=\"%s\" is not Q4_1, Q5_1, Q2_K..Q6_K, Q2_0 "
                     "or Q1_0",
                     c->path, obj, tname);
        sp_gtype_level(t, &tb, &tg, &ts);
        SP_RETURN_IF(tb != lv->bits || tg != lv->group_size || ts != lv->sym ||
                         lv->cols % sp_gtype_block(t),
                     err, SP_EFORMAT, "%s: %s: attributes bits=%d group_size=%d sym=%d cols=%d "
                     "are not %s's", c->path, obj, lv->bits, lv->group_size, lv->sym, lv->cols,
                     tname);
        lv->gtype = t;
    }
    SP_RETURN_IF(bits == 1 && lv->gtype != SP_GT_Q1_0, err, SP_EFORMAT,
                 "%s: %s: a 1-bit level must be gguf_type Q1_0", c->path, obj);
    static const struct {
        const char *name;
        H5T_class_t cls;
        size_t size;
        int sgn, ndim;
    } ds[6] = {{"qweight", H5T_INTEGER, 4, 0, 2}, {"scales", H5T_FLOAT, 4, -1, 2},
               {"zeros", H5T_INTEGER, 1, 0, 2}, {"g_idx", H5T_INTEGER, 4, 1, 1},
               {"mins", H5T_FLOAT, 4, -1, 2}, {"supers", H5T_FLOAT, 4, -1, 2}};
    const int ns = lv->gtype && sp_gtype_block(lv->gtype) == 256 ? lv->cols / 256 : 0;
    hsize_t dims[6][2] = {{(hsize_t)lv->rows, sp_pack_nwords((size_t)lv->cols, bits)},
                          {(hsize_t)lv->rows, (hsize_t)lv->n_groups},
                          {(hsize_t)lv->rows, (hsize_t)lv->n_groups},
                          {(hsize_t)lv->cols, 0},
                          {(hsize_t)lv->rows, (hsize_t)lv->n_groups},
                          {(hsize_t)lv->rows, (hsize_t)ns * 2}};
    const int want[6] = {1, 1, 1, 1, lv->gtype && sp_gtype_has_min(lv->gtype), ns > 0};
    for (int k = 0; k < 6; k++) {
        if (!want[k]) continue;
        char dname[360];
        snprintf(dname, sizeof dname, "%s/%s", obj, ds[k].name);
        htri_t ex = H5Lexists(gl, ds[k].name, H5P_DEFAULT);
        SP_RETURN_IF(ex <= 0, err, SP_EFORMAT, "%s: %s: dataset is missing", c->path, dname);
        hid_t d = H5Dopen2(gl, ds[k].name, H5P_DEFAULT);
        if (d < 0) return sp_qc_h5err(err, SP_EFORMAT, c->path, "%s: not a dataset", dname);
        sp_status st = sp_qc_check_dset(d, ds[k].cls, ds[k].size, ds[k].sgn, ds[k].ndim, dims[k],
                                        c->path, dname, err);
        H5Dclose(d);
        SP_FORWARD(st);
    }
    return SP_OK;
}

static sp_status read_module(sp_qcontainer *c, hid_t mods, const char *name, sp_qc_module *m,
                             sp_err *err) {
    char obj[300];
    snprintf(obj, sizeof obj, "/modules/%s", name);
    hid_t gm = H5Gopen2(mods, name, H5P_DEFAULT), gl = H5I_INVALID_HID;
    if (gm < 0) return sp_qc_h5err(err, SP_EFORMAT, c->path, "%s: not a group", obj);
    name_list l = {0};
    sp_status st = list_children(gm, c->path, obj, &l, err);
    if (st != SP_OK) goto done;
    if (l.n < 1 || l.n > SP_QCONTAINER_MAX_LEVELS) {
        st = sp_err_set(err, SP_EFORMAT, "%s: %s: holds %d levels (expected 1..%d)", c->path, obj,
                        l.n, SP_QCONTAINER_MAX_LEVELS);
        goto done;
    }
    for (int i = 0; i < l.n; i++) {
        char lobj[340];
        int bits = 0, listed = 0;
        snprintf(lobj, sizeof lobj, "%s/%s", obj, l.names[i]);
        /* level groups are named "<b>bit" with one digit b */
        if (l.names[i][0] >= '1' && l.names[i][0] <= '8' && strcmp(l.names[i] + 1, "bit") == 0)
            bits = l.names[i][0] - '0';
        for (int k = 0; k < c->meta.n_levels; k++) listed |= c->meta.levels[k] == bits;
        if (!listed) {
            st = sp_err_set(err, SP_EFORMAT, "%s: %s: not a level of this container (levels "
                            "attribute lists the stored bit widths)", c->path, lobj);
            goto done;
        }
        if ((gl = H5Gopen2(gm, l.names[i], H5P_DEFAULT)) < 0) {
            st = sp_qc_h5err(err, SP_EFORMAT, c->path, "%s: not a group", lobj);
            goto done;
        }
        if ((st = read_level_info(c, gl, lobj, bits, &m->lv[m->n_levels], err))) goto done;
        CLOSE_ID(H5Gclose, gl);
        if (m->lv[m->n_levels].rows != m->lv[0].rows || m->lv[m->n_levels].cols != m->lv[0].cols) {
            st = sp_err_set(err, SP_EFORMAT, "%s: %s: rows/cols differ from %s's other levels",
                            c->path, lobj, obj);
            goto done;
        }
        m->n_levels++;
    }
    qsort(m->lv, (size_t)m->n_levels, sizeof m->lv[0], cmp_level);
    /* The starting level: selected_bits, else default_bits, else the only level stored. */
    htri_t has_sel = H5Aexists(gm, "selected_bits");
    m->selected = -1;
    if (has_sel > 0) {
        if ((st = sp_qc_attr_read_int(gm, "selected_bits", &m->selected, c->path, obj, err)))
            goto done;
    } else {
        for (int k = 0; k < m->n_levels; k++)
            if (m->lv[k].bits == c->meta.default_bits) m->selected = c->meta.default_bits;
        if (m->selected < 0 && m->n_levels == 1) m->selected = m->lv[0].bits;
    }
    int found = 0;
    for (int k = 0; k < m->n_levels; k++) found |= m->lv[k].bits == m->selected;
    if (has_sel < 0 || !found)
        st = sp_err_set(err, SP_EFORMAT, "%s: %s: attribute selected_bits=%d (or default_bits=%d)"
                        " names no stored level", c->path, obj, m->selected,
                        c->meta.default_bits);
done:
    CLOSE_ID(H5Gclose, gl);
    CLOSE_ID(H5Gclose, gm);
    free_names(&l);
    return st;
}

static sp_status read_module_list(sp_qcontainer *c, hid_t g, sp_err *err) {
    name_list l;
    SP_FORWARD(list_children(g, c->path, "/modules", &l, err));
    sp_status st = SP_OK;
    c->mods = sp_calloc((size_t)l.n, sizeof *c->mods, err, "module list");
    if (!c->mods) {
        st = SP_ENOMEM;
        goto done;
    }
    for (int i = 0; i < l.n; i++) {
        sp_qc_module *m = &c->mods[c->n_mods];
        if (!sp_qc_name_ok(l.names[i])) {
            st = sp_err_set(err, SP_EFORMAT, "%s: /modules: member name of %zu bytes is too long",
                            c->path, strlen(l.names[i]));
            goto done;
        }
        if ((st = read_module(c, g, l.names[i], m, err))) goto done;
        m->name = l.names[i];
        l.names[i] = NULL;
        c->n_mods++;
    }
    qsort(c->mods, (size_t)c->n_mods, sizeof *c->mods, cmp_mod);
done:
    free_names(&l);
    return st;
}

sp_status sp_qcontainer_open(sp_qcontainer **out, const char *path, sp_err *err) {
    *out = NULL;
    SP_RETURN_IF(access(path, R_OK) != 0, err, SP_EIO, "%s: cannot read: %s", path,
                 strerror(errno));
    sp_qc_quiet q;
    sp_qc_quiet_begin(&q);
    sp_status st = SP_ENOMEM;
    hid_t fapl = H5I_INVALID_HID, g = H5I_INVALID_HID;
    sp_qcontainer *c = sp_calloc(1, sizeof *c, err, "quantized container");
    if (!c) goto done;
    c->file = H5I_INVALID_HID;
    c->owner = pthread_self();
    if (!(c->path = strdup(path))) {
        st = sp_err_set(err, SP_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    if (H5Fis_hdf5(path) <= 0) {
        st = sp_err_set(err, SP_EFORMAT, "%s: not an HDF5 file", path);
        goto done;
    }
    fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fclose_degree(fapl, H5F_CLOSE_SEMI) < 0 ||
        (c->file = H5Fopen(path, H5F_ACC_RDONLY, fapl)) < 0) {
        st = sp_qc_h5err(err, SP_EIO, path, "cannot open");
        goto done;
    }
    if ((st = read_meta(c, err))) goto done;
    static const char *groups[2] = {"dense", "modules"};
    for (int k = 0; k < 2; k++) {
        if (H5Lexists(c->file, groups[k], H5P_DEFAULT) <= 0 ||
            (g = H5Gopen2(c->file, groups[k], H5P_DEFAULT)) < 0) {
            st = sp_err_set(err, SP_EFORMAT, "%s: /%s: group is missing", path, groups[k]);
            goto done;
        }
        st = k == 0 ? read_dense_list(c, g, err) : read_module_list(c, g, err);
        CLOSE_ID(H5Gclose, g);
        if (st != SP_OK) goto done;
    }
done:
    CLOSE_ID(H5Gclose, g);
    CLOSE_ID(H5Pclose, fapl);
    sp_qc_quiet_end(&q);
    if (st != SP_OK) {
        sp_qcontainer_discard(c);
        return st;
    }
    *out = c;
    return SP_OK;
}

/* ---- accessors ----------------------------------------------------------------------------- */

const sp_qcontainer_meta *sp_qcontainer_get_meta(const sp_qcontainer *c) { return &c->meta; }
const char *sp_qcontainer_path(const sp_qcontainer *c) { return c->path; }
int sp_qcontainer_n_modules(const sp_qcontainer *c) { return c->n_mods; }
const char *sp_qcontainer_module_name(const sp_qcontainer *c, int i) { return c->mods[i].name; }
int sp_qcontainer_n_dense(const sp_qcontainer *c) { return c->n_dense; }
const char *sp_qcontainer_dense_name(const sp_qcontainer *c, int i) { return c->dense[i].name; }

sp_status sp_qcontainer_module_levels(const sp_qcontainer *c, const char *module, int *levels,
                                      int *n, int *selected, sp_err *err) {
    const sp_qc_module *m = find_module(c, module);
    SP_RETURN_IF(!m, err, SP_ENOTFOUND, "%s: module %s is not stored", c->path, module);
    for (int k = 0; k < m->n_levels; k++) levels[k] = m->lv[k].bits;
    *n = m->n_levels;
    if (selected) *selected = m->selected;
    return SP_OK;
}

sp_status sp_qcontainer_level_info(const sp_qcontainer *c, const char *module, int bits,
                                   sp_qlevel_info *info, sp_err *err) {
    const sp_qc_module *m = find_module(c, module);
    SP_RETURN_IF(!m, err, SP_ENOTFOUND, "%s: module %s is not stored", c->path, module);
    char have[64] = "";
    size_t len = 0;
    for (int k = 0; k < m->n_levels; k++) {
        if (m->lv[k].bits == bits) {
            *info = m->lv[k];
            return SP_OK;
        }
        len += (size_t)snprintf(have + len, sizeof have - len, "%s%d", k ? ", " : "",
                                m->lv[k].bits);
    }
    return sp_err_set(err, SP_ENOTFOUND, "%s: module %s has no %d-bit level (stored: %s)",
                      c->path, module, bits, have);
}

sp_status sp_qcontainer_dense_desc(const sp_qcontainer *c, const char *name, int *ndim,
                                   int64_t shape[2], sp_err *err) {
    const sp_qc_dense *t = find_dense(c, name);
    SP_RETURN_IF(!t, err, SP_ENOTFOUND, "%s: dense tensor %s is not stored", c->path, name);
    *ndim = t->ndim;
    shape[0] = t->shape[0];
    shape[1] = t->shape[1];
    return SP_OK;
}

/* ---- reading values ------------------------------------------------------------------------ */

/* Read rows [row0, row0+nrows) of one level: qw [nrows, Wd], sc [nrows, G], zr [nrows, G],
 * gi [C] (whole), validating every value read. */
static sp_status read_level_rows(sp_qcontainer *c, const char *module, const sp_qlevel_info *lv,
                                 int64_t row0, int64_t nrows, uint32_t *qw, float *sc,
                                 uint8_t *zr, int32_t *gi, float *mn, float *sup, sp_err *err) {
    char obj[320];
    snprintf(obj, sizeof obj, "/modules/%s/%dbit", module, lv->bits);
    static const char *names[6] = {"qweight", "scales", "zeros", "g_idx", "mins", "supers"};
    const hid_t types[6] = {H5T_NATIVE_UINT32, H5T_NATIVE_FLOAT, H5T_NATIVE_UINT8,
                            H5T_NATIVE_INT32, H5T_NATIVE_FLOAT, H5T_NATIVE_FLOAT};
    void *dst[6] = {qw, sc, zr, gi, mn, sup};
    size_t G = (size_t)lv->n_groups, R = (size_t)lv->rows;
    const size_t NS = lv->gtype && sp_gtype_block(lv->gtype) == 256 ? (size_t)lv->cols / 256 : 0;
    const size_t whole_bytes[6] = {R * sp_pack_nwords((size_t)lv->cols, lv->bits) * 4, R * G * 4,
                                   R * G, (size_t)lv->cols * 4, R * G * 4, R * NS * 8};
    const int nds = lv->gtype ? 6 : 4;
    sp_qc_module *m = (sp_qc_module *)find_module(c, module);
    unsigned *verified = NULL;
    for (int k = 0; m && k < m->n_levels; k++)
        if (m->lv[k].bits == lv->bits) verified = &m->verified[k];
    hid_t gl = H5Gopen2(c->file, obj, H5P_DEFAULT), d = H5I_INVALID_HID;
    sp_status st = SP_OK;
    if (gl < 0) {
        st = sp_qc_h5err(err, SP_EIO, c->path, "%s", obj);
        goto done;
    }
    for (int k = 0; k < nds; k++) {
        if (!dst[k]) continue; /* the type has no such dataset */
        char dname[360];
        snprintf(dname, sizeof dname, "%s/%s", obj, names[k]);
        if ((d = H5Dopen2(gl, names[k], H5P_DEFAULT)) < 0) {
            st = sp_qc_h5err(err, SP_EIO, c->path, "%s", dname);
            goto done;
        }
        st = sp_qc_read_rows(d, types[k], (hsize_t)(k == 3 ? 0 : row0),
                             (hsize_t)(k == 3 ? 1 : nrows), dst[k], c->path, dname, err);
        /* First touch: the checksum, before any value is trusted (on the rows just read when
         * they are the whole dataset). */
        int whole = k == 3 || (row0 == 0 && nrows == lv->rows);
        if (st == SP_OK && verified && !(*verified & (1u << k))) {
            st = sp_qc_verify(c, d, whole ? dst[k] : NULL, whole_bytes[k], dname, err);
            if (st == SP_OK) *verified |= 1u << k;
        }
        CLOSE_ID(H5Dclose, d);
        if (st != SP_OK) goto done;
    }
    for (int k = 0; k < lv->cols; k++)
        if (gi[k] < 0 || gi[k] >= lv->n_groups) {
            st = sp_err_set(err, SP_EFORMAT, "%s: %s/g_idx: value %d at column %d is outside "
                            "0..%d", c->path, obj, gi[k], k, lv->n_groups - 1);
            goto done;
        }
    size_t ng = (size_t)lv->n_groups, nw = sp_pack_nwords((size_t)lv->cols, lv->bits);
    for (int64_t r = 0; r < nrows; r++) {
        for (size_t g = 0; g < ng; g++) {
            size_t i = (size_t)r * ng + g;
            if (zr[i] >= (1u << lv->bits)) {
                st = sp_err_set(err, SP_EFORMAT, "%s: %s/zeros: value %u at row %lld group %zu "
                                "is outside 0..%u", c->path, obj, zr[i],
                                (long long)(row0 + r), g, (1u << lv->bits) - 1);
                goto done;
            }
            if (!lv->gtype && !sp_qcontainer_f16_exact(sc[i])) {
                st = sp_err_set(err, SP_EFORMAT, "%s: %s/scales: value %.9g at row %lld group "
                                "%zu is not finite and fp16-representable", c->path, obj,
                                (double)sc[i], (long long)(row0 + r), g);
                goto done;
            }
        }
        if (lv->gtype) { /* every value exactly the type's (the packer's check, no codes) */
            sp_qlayer v = {.rows = (int)nrows, .cols = lv->cols, .bits = lv->bits,
                           .group_size = lv->group_size, .n_groups = lv->n_groups,
                           .sym = lv->sym, .scales = sc, .zeros = zr, .g_idx = gi,
                           .gtype = lv->gtype, .n_super = (int)NS, .mins = mn, .supers = sup};
            if (sp_gtype_pack_level_row(&v, (int)r, NULL, err) != SP_OK) {
                sp_err_prefix(err, "%s: %s (%s) at row %lld", c->path, obj,
                              sp_gtype_name(lv->gtype), (long long)(row0 + r));
                st = SP_EFORMAT;
                if (err) err->code = SP_EFORMAT;
                goto done;
            }
        }
        if (sp_pack_padding_dirty(qw + (size_t)r * nw, 1, (size_t)lv->cols, lv->bits)) {
            st = sp_err_set(err, SP_EFORMAT, "%s: %s/qweight: padding bits of row %lld are not "
                            "zero", c->path, obj, (long long)(row0 + r));
            goto done;
        }
    }
done:
    CLOSE_ID(H5Dclose, d);
    CLOSE_ID(H5Gclose, gl);
    return st;
}

sp_status sp_qcontainer_read_qlayer(sp_qcontainer *c, const char *module, int bits, sp_qlayer *q,
                                    sp_err *err) {
    memset(q, 0, sizeof *q);
    SP_FORWARD(sp_qc_check_thread(c, err));
    sp_qlevel_info lv;
    SP_FORWARD(sp_qcontainer_level_info(c, module, bits, &lv, err));
    SP_FORWARD(sp_qlayer_alloc_level(q, lv.rows, lv.cols, bits, lv.group_size, lv.sym, lv.gtype,
                                     err));
    size_t nw = sp_pack_nwords((size_t)lv.cols, bits);
    uint32_t *qw = sp_malloc((size_t)lv.rows * nw * sizeof *qw, err, "packed codes");
    sp_status st = SP_ENOMEM;
    if (!qw) goto done;
    sp_qc_quiet q5;
    sp_qc_quiet_begin(&q5);
    st = read_level_rows(c, module, &lv, 0, lv.rows, qw, q->scales, q->zeros, q->g_idx, q->mins,
                         q->supers, err);
    sp_qc_quiet_end(&q5);
    if (st != SP_OK) goto done;
    for (int r = 0; r < lv.rows; r++)
        sp_unpack_bits(q->codes + (size_t)r * (size_t)lv.cols, 1, qw + (size_t)r * nw, 1,
                       (size_t)lv.cols, bits);
done:
    free(qw);
    if (st != SP_OK) {
        sp_qlayer_free(q);
        memset(q, 0, sizeof *q);
    }
    return st;
}

sp_status sp_qcontainer_read_qrows(sp_qcontainer *c, const char *module, int bits, int64_t row0,
                                   int64_t nrows, float *dst, sp_err *err) {
    SP_FORWARD(sp_qc_check_thread(c, err));
    sp_qlevel_info lv;
    SP_FORWARD(sp_qcontainer_level_info(c, module, bits, &lv, err));
    SP_RETURN_IF(row0 < 0 || nrows < 0 || row0 + nrows > lv.rows, err, SP_EINVAL,
                 "%s: %s: rows [%lld, %lld) out of range (%d rows)", c->path, module,
                 (long long)row0, (long long)(row0 + nrows), lv.rows);
    if (nrows == 0) return SP_OK;
    size_t C = (size_t)lv.cols, G = (size_t)lv.n_groups, nw = sp_pack_nwords(C, bits);
    size_t n = (size_t)nrows;
    const size_t NS = lv.gtype && sp_gtype_block(lv.gtype) == 256 ? C / 256 : 0;
    const size_t NM = lv.gtype && sp_gtype_has_min(lv.gtype) ? G : 0;
    /* one buffer: qw [n, Wd] u32 | gi [C] i32 | sc [n, G] f32 | mn [n, NM] f32 |
     * sup [n, 2·NS] f32 | zr [n, G] u8 | codes [C] u8 */
    size_t bytes = n * nw * 4 + C * 4 + n * G * 4 + n * NM * 4 + n * NS * 8 + n * G + C;
    uint32_t *qw = sp_malloc(bytes, err, "quantized rows");
    if (!qw) return SP_ENOMEM;
    int32_t *gi = (int32_t *)(qw + n * nw);
    float *sc = (float *)(gi + C), *mn = sc + n * G, *sup = mn + n * NM;
    uint8_t *zr = (uint8_t *)(sup + n * NS * 2), *codes = zr + n * G;
    sp_qc_quiet q5;
    sp_qc_quiet_begin(&q5);
    sp_status st = read_level_rows(c, module, &lv, row0, nrows, qw, sc, zr, gi, NM ? mn : NULL,
                                   NS ? sup : NULL, err);
    sp_qc_quiet_end(&q5);
    if (st == SP_OK) {
        for (size_t r = 0; r < n; r++) {
            sp_unpack_bits(codes, 1, qw + r * nw, 1, C, bits);
            const float *s = sc + r * G;
            const uint8_t *z = zr + r * G;
            float *w = dst + r * C;
            /* W[r, c] = s[g] · (q − z[g]), g = g_idx[c]; (q − z) is exact in fp32. */
            for (size_t k = 0; k < C; k++)
                w[k] = s[gi[k]] * (float)((int)codes[k] - (int)z[gi[k]]);
            if (NM) /* + m after the rounded product, as ggml (and sp_qlayer_dequant) */
                for (size_t k = 0; k < C; k++) {
                    volatile float p = w[k];
                    w[k] = p + mn[r * G + (size_t)gi[k]];
                }
        }
    }
    free(qw);
    return st;
}

sp_status sp_qcontainer_read_dense_rows(sp_qcontainer *c, const char *name, int64_t row0,
                                        int64_t nrows, float *dst, sp_err *err) {
    SP_FORWARD(sp_qc_check_thread(c, err));
    const sp_qc_dense *t = find_dense(c, name);
    SP_RETURN_IF(!t, err, SP_ENOTFOUND, "%s: dense tensor %s is not stored", c->path, name);
    int64_t nr = t->ndim == 1 ? 1 : t->shape[0];
    SP_RETURN_IF(row0 < 0 || nrows < 0 || row0 + nrows > nr, err, SP_EINVAL,
                 "%s: /dense/%s: rows [%lld, %lld) out of range (%lld rows)", c->path, name,
                 (long long)row0, (long long)(row0 + nrows), (long long)nr);
    if (nrows == 0) return SP_OK;
    sp_qc_quiet q;
    sp_qc_quiet_begin(&q);
    char obj[300];
    snprintf(obj, sizeof obj, "/dense/%s", name);
    sp_status st = SP_OK;
    hid_t d = H5Dopen2(c->file, obj, H5P_DEFAULT);
    if (d < 0)
        st = sp_qc_h5err(err, SP_EIO, c->path, "%s", obj);
    else
        st = sp_qc_read_rows(d, H5T_NATIVE_FLOAT, (hsize_t)row0, (hsize_t)nrows, dst, c->path,
                             obj, err);
    sp_qc_dense *td = (sp_qc_dense *)t;
    if (st == SP_OK && !td->verified) {
        int whole = row0 == 0 && nrows == nr;
        st = sp_qc_verify(c, d, whole ? dst : NULL,
                          (size_t)t->shape[0] * (size_t)t->shape[1] * sizeof(float), obj, err);
        if (st == SP_OK) td->verified = 1;
    }
    CLOSE_ID(H5Dclose, d);
    sp_qc_quiet_end(&q);
    return st;
}
