/* sp_qmodel_h5.c — the sp_model backend for the shardpress quantized container (model.sp.h5).
 *
 * Tensors are presented by HF name: "/dense/<name>" datasets directly, and "<module>.weight"
 * as the module's currently selected level, dequantized row by row on read:
 *   W[r, c] = scales[r, g_idx[c]] · (code[r, c] − zeros[r, g_idx[c]])
 * Each module starts at its stored selected_bits (else the container's default_bits);
 * select_bits moves one module or all of them to another stored level.
 *
 * The architecture's tensors and shapes are checked by sp_model_open (through tensor_desc).
 *
 * Threads: reads go to HDF5, which is not thread-safe in Debian's build, so the model must be
 * read from the thread that opened it (other threads get SP_EINVAL, never a crash).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shards/formats/sp_qcontainer.h"
#include "shards/formats/sp_qmodel_int.h"

typedef struct {
    sp_qcontainer *qc;
    int *sel; /* [n_modules] selected bits, in the container's module order */
} h5_ctx;

/* ---- helpers shared with the GPTQ backend --------------------------------------------------- */

sp_status sp_qmodel_join(char *buf, size_t cap, const char *dir, const char *name, sp_err *err) {
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    SP_RETURN_IF(n < 0 || (size_t)n >= cap, err, SP_EINVAL, "%s: path too long", dir);
    return SP_OK;
}

/* ---- the backend ---------------------------------------------------------------------------- */

/* Index of module (HF name without ".weight") in the container's sorted list, or -1. */
static int module_index(const sp_qcontainer *qc, const char *module) {
    int lo = 0, hi = sp_qcontainer_n_modules(qc) - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(sp_qcontainer_module_name(qc, mid), module);
        if (c == 0) return mid;
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

/* For "<module>.weight" names of stored modules: the module index, else -1. */
static int weight_module(const sp_qcontainer *qc, const char *name) {
    size_t n = strlen(name);
    char mod[256];
    if (n <= 7 || n - 7 >= sizeof mod || strcmp(name + n - 7, ".weight") != 0) return -1;
    memcpy(mod, name, n - 7);
    mod[n - 7] = '\0';
    return module_index(qc, mod);
}

static sp_status h5_tensor_desc(void *vctx, const char *name, sp_tensor_desc *desc, sp_err *err) {
    h5_ctx *x = vctx;
    int ndim;
    int64_t shape[2];
    if (sp_qcontainer_dense_desc(x->qc, name, &ndim, shape, NULL) == SP_OK) {
        desc->dtype = SP_DTYPE_F32;
        desc->ndim = ndim;
        desc->shape[0] = shape[0];
        desc->shape[1] = ndim == 2 ? shape[1] : 1;
        return SP_OK;
    }
    int i = weight_module(x->qc, name);
    SP_RETURN_IF(i < 0, err, SP_ENOTFOUND, "%s: tensor %s is not stored",
                 sp_qcontainer_path(x->qc), name);
    sp_qlevel_info lv;
    SP_FORWARD(sp_qcontainer_level_info(x->qc, sp_qcontainer_module_name(x->qc, i), x->sel[i],
                                        &lv, err));
    desc->dtype = SP_DTYPE_F32;
    desc->ndim = 2;
    desc->shape[0] = lv.rows;
    desc->shape[1] = lv.cols;
    return SP_OK;
}

static sp_status h5_read_rows(void *vctx, const char *name, int64_t row0, int64_t nrows,
                              float *dst, sp_err *err) {
    h5_ctx *x = vctx;
    int ndim;
    int64_t shape[2];
    if (sp_qcontainer_dense_desc(x->qc, name, &ndim, shape, NULL) == SP_OK)
        return sp_qcontainer_read_dense_rows(x->qc, name, row0, nrows, dst, err);
    int i = weight_module(x->qc, name);
    SP_RETURN_IF(i < 0, err, SP_ENOTFOUND, "%s: tensor %s is not stored",
                 sp_qcontainer_path(x->qc), name);
    return sp_qcontainer_read_qrows(x->qc, sp_qcontainer_module_name(x->qc, i), x->sel[i], row0,
                                    nrows, dst, err);
}

static sp_status h5_select_bits(void *vctx, const char *module, int bits, sp_err *err) {
    h5_ctx *x = vctx;
    sp_qlevel_info lv;
    int n = sp_qcontainer_n_modules(x->qc);
    if (module) {
        int i = module_index(x->qc, module);
        SP_RETURN_IF(i < 0, err, SP_ENOTFOUND, "%s: module %s is not stored",
                     sp_qcontainer_path(x->qc), module);
        SP_FORWARD(sp_qcontainer_level_info(x->qc, module, bits, &lv, err));
        x->sel[i] = bits;
        return SP_OK;
    }
    /* All or nothing: check every module before changing any. */
    for (int i = 0; i < n; i++)
        SP_FORWARD(sp_qcontainer_level_info(x->qc, sp_qcontainer_module_name(x->qc, i), bits,
                                            &lv, err));
    for (int i = 0; i < n; i++) x->sel[i] = bits;
    return SP_OK;
}

static void h5_close(void *vctx) {
    h5_ctx *x = vctx;
    if (!x) return;
    (void)sp_qcontainer_close(x->qc, NULL);
    free(x->sel);
    free(x);
}

static const sp_model_backend h5_backend = {
    .name = "sp-hdf5",
    .tensor_desc = h5_tensor_desc,
    .read_rows = h5_read_rows,
    .select_bits = h5_select_bits,
    .close = h5_close,
};

sp_status sp_qmodel_probe_h5(const char *dir, const sp_config *cfg, sp_config *cfg_out, void **ctx,
                             const sp_model_backend **be, sp_err *err) {
    *ctx = NULL;
    char path[4096];
    SP_RETURN_IF(!cfg, err, SP_ENOTFOUND, "%s: not a model directory", dir);
    SP_FORWARD(sp_qmodel_join(path, sizeof path, dir, SP_QCONTAINER_FILE, err));
    SP_RETURN_IF(access(path, F_OK) != 0 && errno == ENOENT, err, SP_ENOTFOUND,
                 "%s: no " SP_QCONTAINER_FILE, dir);
    h5_ctx *x = sp_calloc(1, sizeof *x, err, "sp-hdf5 backend");
    if (!x) return SP_ENOMEM;
    sp_status st = sp_qcontainer_open(&x->qc, path, err);
    if (st != SP_OK) goto fail;
    int n = sp_qcontainer_n_modules(x->qc), levels[SP_QCONTAINER_MAX_LEVELS], nl;
    x->sel = sp_calloc((size_t)n, sizeof *x->sel, err, "selected levels");
    if (!x->sel) {
        st = SP_ENOMEM;
        goto fail;
    }
    for (int i = 0; i < n; i++)
        if ((st = sp_qcontainer_module_levels(x->qc, sp_qcontainer_module_name(x->qc, i), levels,
                                              &nl, &x->sel[i], err)))
            goto fail;
    *ctx = x;
    *be = &h5_backend;
    return SP_OK;
fail:
    h5_close(x);
    return st;
}
