/* sp_qmodel_gptq.c — the sp_model backend for GPTQ-packed safetensors (AutoGPTQ / GPTQModel
 * "gptq" v1 checkpoints, and "gptq_v2"), e.g. the output of sp_export_gptq.
 *
 * Recognised by quantize_config.json, or config.json "quantization_config" with
 * quant_method "gptq". Every "<module>.qweight" tensor is a quantized module; its bits come
 * from the config (after the "dynamic" rules). Shapes (out, in, b bits, G groups):
 *   qweight int32 [ceil(in·b/32), out]    qzeros int32 [G, ceil(out·b/32)]
 *   scales  f16   [G, out]                g_idx  int32 [in]  (optional: i / group_size)
 * with G = ceil(in / group_size) (1 for group_size -1). in comes from g_idx, else from the
 * architecture. All of it, and every g_idx value, is checked at open.
 *
 * Dequantized on read (z = qzero + 1 for v1, qzero for v2):
 *   W[o, i] = scales[g_idx[i], o] · (q[i, o] − z[g_idx[i], o])      (one fp32 product)
 * which equals the container's s · (q − z) exactly, since its scales are fp16 values.
 * Other tensors (embeddings, norms, biases, lm_head) are read like the safetensors backend.
 *
 * Thread-safety: read-only after open; concurrent reads are safe.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/sp_pack.h"
#include "shards/formats/sp_gptq_int.h"
#include "shards/sp_model_backend.h"
#include "shards/formats/sp_qmodel_int.h"
#include "shards/sp_safetensors.h"

typedef struct {
    char *name;                   /* module, HF name without ".weight" */
    int bits, in, out, groups;
    const sp_st_tensor *qweight, *qzeros, *scales;
    int32_t *g_idx;               /* [in], validated                   */
} gptq_module;

typedef struct {
    sp_st_set *set;
    sp_gptq_qconfig qc;
    char *dir;
    gptq_module *mods; /* sorted by name */
    int n_mods;
} gptq_ctx;

static int cmp_mod(const void *a, const void *b) {
    return strcmp(((const gptq_module *)a)->name, ((const gptq_module *)b)->name);
}

static const gptq_module *find_weight(const gptq_ctx *x, const char *name) {
    size_t n = strlen(name);
    char mod[256];
    if (n <= 7 || n - 7 >= sizeof mod || strcmp(name + n - 7, ".weight") != 0) return NULL;
    memcpy(mod, name, n - 7);
    mod[n - 7] = '\0';
    gptq_module key = {.name = mod};
    return x->n_mods ? bsearch(&key, x->mods, (size_t)x->n_mods, sizeof key, cmp_mod) : NULL;
}

/* ---- backend -------------------------------------------------------------------------------- */

static sp_status gq_tensor_desc(void *vctx, const char *name, sp_tensor_desc *desc, sp_err *err) {
    const gptq_ctx *x = vctx;
    const gptq_module *m = find_weight(x, name);
    if (m) {
        desc->dtype = SP_DTYPE_F32;
        desc->ndim = 2;
        desc->shape[0] = m->out;
        desc->shape[1] = m->in;
        return SP_OK;
    }
    const char *file = NULL;
    const sp_st_tensor *t = sp_st_set_find(x->set, name, &file);
    SP_RETURN_IF(!t, err, SP_ENOTFOUND, "%s: tensor '%s' not found in the GPTQ checkpoint",
                 x->dir, name);
    SP_RETURN_IF(t->ndim < 1 || t->ndim > 2, err, SP_EUNSUPPORTED,
                 "%s: tensor '%s' has %d dims (expected 1 or 2)", file, name, t->ndim);
    desc->dtype = t->dtype;
    desc->ndim = t->ndim;
    desc->shape[0] = t->shape[0];
    desc->shape[1] = t->ndim == 2 ? t->shape[1] : 1;
    return SP_OK;
}

/* Output rows gathered per block: a qweight column is strided by out words, so BLOCK
 * neighbouring columns are copied into contiguous rows first (one pass over whole cache lines
 * instead of one line per word). */
#define BLOCK 64

/* Rows [row0, row0+nrows) of W [out, in]: row o is column o of qweight. */
static sp_status dequant_rows(const gptq_ctx *x, const gptq_module *m, int64_t row0,
                              int64_t nrows, float *dst, sp_err *err) {
    const size_t in = (size_t)m->in, out = (size_t)m->out, G = (size_t)m->groups;
    const size_t wi = sp_pack_nwords(in, m->bits), wo = sp_pack_nwords(out, m->bits);
    uint8_t *codes = sp_malloc(in, err, "codes");
    float *s = sp_malloc(G * sizeof *s, err, "scales");
    int *z = sp_malloc(G * sizeof *z, err, "zeros");
    uint32_t *blk = sp_malloc(BLOCK * wi * sizeof *blk, err, "qweight block"); /* [BLOCK, wi] */
    sp_status st = SP_ENOMEM;
    if (!codes || !s || !z || !blk) goto done;
    const unsigned char *qw = m->qweight->data, *qz = m->qzeros->data, *sc = m->scales->data;
    const size_t es = sp_dtype_size(m->scales->dtype);
    for (int64_t r = 0; r < nrows; r++) {
        const size_t o = (size_t)(row0 + r), k = (size_t)r % BLOCK;
        if (k == 0) {
            size_t nb = (size_t)(nrows - r) < BLOCK ? (size_t)(nrows - r) : BLOCK;
            for (size_t w = 0; w < wi; w++)
                for (size_t j = 0; j < nb; j++)
                    memcpy(&blk[j * wi + w], qw + 4 * (w * out + o + j), 4);
        }
        sp_unpack_bits(codes, 1, blk + k * wi, 1, in, m->bits);
        for (size_t g = 0; g < G; g++) {
            sp_dtype_to_f32(&s[g], sc + (g * out + o) * es, m->scales->dtype, 1);
            z[g] = (int)sp_pack_get(qz + 4 * g * wo, 1, o, m->bits) + (x->qc.v2 ? 0 : 1);
        }
        float *w = dst + (size_t)r * in;
        for (size_t i = 0; i < in; i++) {
            int g = m->g_idx[i];
            w[i] = s[g] * (float)((int)codes[i] - z[g]);
        }
    }
    st = SP_OK;
done:
    free(blk);
    free(codes);
    free(s);
    free(z);
    return st;
}

static sp_status gq_read_rows(void *vctx, const char *name, int64_t row0, int64_t nrows,
                              float *dst, sp_err *err) {
    const gptq_ctx *x = vctx;
    sp_tensor_desc d;
    SP_FORWARD(gq_tensor_desc(vctx, name, &d, err));
    int64_t rows = d.ndim == 2 ? d.shape[0] : 1, cols = d.ndim == 2 ? d.shape[1] : d.shape[0];
    SP_RETURN_IF(row0 < 0 || nrows < 0 || row0 > rows - nrows, err, SP_EINVAL,
                 "%s: tensor '%s': rows [%lld, %lld) out of range (%lld rows)", x->dir, name,
                 (long long)row0, (long long)(row0 + nrows), (long long)rows);
    const gptq_module *m = find_weight(x, name);
    if (m) return dequant_rows(x, m, row0, nrows, dst, err);
    const sp_st_tensor *t = sp_st_set_find(x->set, name, NULL);
    size_t es = sp_dtype_size(t->dtype);
    sp_dtype_to_f32(dst, (const unsigned char *)t->data + (size_t)row0 * (size_t)cols * es,
                    t->dtype, (size_t)nrows * (size_t)cols);
    return SP_OK;
}

/* One stored level per module: selecting it is fine, anything else is not stored. */
static sp_status gq_select_bits(void *vctx, const char *module, int bits, sp_err *err) {
    const gptq_ctx *x = vctx;
    for (int i = 0; i < x->n_mods; i++) {
        const gptq_module *m = &x->mods[i];
        if (module && strcmp(m->name, module) != 0) continue;
        SP_RETURN_IF(m->bits != bits, err, SP_ENOTFOUND,
                     "%s: module %s has no %d-bit level (stored: %d)", x->dir, m->name, bits,
                     m->bits);
        if (module) return SP_OK;
    }
    SP_RETURN_IF(module, err, SP_ENOTFOUND, "%s: module %s is not quantized in this checkpoint",
                 x->dir, module);
    return SP_OK;
}

static void gq_close(void *vctx) {
    gptq_ctx *x = vctx;
    if (!x) return;
    for (int i = 0; i < x->n_mods; i++) {
        free(x->mods[i].name);
        free(x->mods[i].g_idx);
    }
    free(x->mods);
    sp_gptq_qconfig_free(&x->qc);
    sp_st_set_close(x->set);
    free(x->dir);
    free(x);
}

static const sp_model_backend gptq_backend = {
    .name = "gptq",
    .tensor_desc = gq_tensor_desc,
    .read_rows = gq_read_rows,
    .select_bits = gq_select_bits,
    .close = gq_close,
};

/* ---- probe ---------------------------------------------------------------------------------- */

/* Input features of a standard Llama module from the architecture (when g_idx is absent). */
static int arch_in(const sp_config *cfg, const char *module) {
    const char *dot = strrchr(module, '.');
    const char *p = dot ? dot + 1 : module;
    if (!strcmp(p, "o_proj")) return cfg->n_heads * cfg->head_dim;
    if (!strcmp(p, "down_proj")) return cfg->hidden_dim;
    if (!strcmp(p, "q_proj") || !strcmp(p, "k_proj") || !strcmp(p, "v_proj") ||
        !strcmp(p, "gate_proj") || !strcmp(p, "up_proj"))
        return cfg->dim;
    return 0;
}

static sp_status check_tensor(const sp_st_tensor *t, const char *file, const char *name,
                              int is_scale, int64_t d0, int64_t d1, const gptq_module *m,
                              sp_err *err) {
    SP_RETURN_IF(!t, err, SP_EFORMAT, "%s: tensor '%s' is missing", file, name);
    int dt_ok = is_scale ? (t->dtype == SP_DTYPE_F16 || t->dtype == SP_DTYPE_F32 ||
                            t->dtype == SP_DTYPE_BF16)
                         : t->dtype == SP_DTYPE_I32;
    SP_RETURN_IF(!dt_ok, err, SP_EFORMAT, "%s: tensor '%s' has dtype %s, expected %s", file, name,
                 sp_dtype_name(t->dtype), is_scale ? "F16" : "I32");
    int ok = t->ndim == 2 && t->shape[0] == d0 && t->shape[1] == d1;
    SP_RETURN_IF(!ok, err, SP_EFORMAT, "%s: tensor '%s': shape must be [%lld, %lld] for %d bits, "
                 "in=%d, out=%d, %d groups", file, name, (long long)d0, (long long)d1, m->bits,
                 m->in, m->out, m->groups);
    return SP_OK;
}

static sp_status load_module(gptq_ctx *x, const sp_config *cfg, gptq_module *m, sp_err *err) {
    char nm[300];
    const char *file = NULL;
    int gs, quantized;
    SP_FORWARD(sp_gptq_module_rule(&x->qc, m->name, &m->bits, &gs, &quantized, err));
    snprintf(nm, sizeof nm, "%s.qweight", m->name);
    m->qweight = sp_st_set_find(x->set, nm, &file);
    SP_RETURN_IF(!quantized, err, SP_EFORMAT, "%s: tensor '%s' exists but a \"-:\" dynamic rule "
                 "leaves module %s unquantized", file, nm, m->name);
    SP_RETURN_IF(m->qweight->ndim != 2 || m->qweight->shape[1] <= 0 ||
                 m->qweight->shape[1] > INT32_MAX, err, SP_EFORMAT,
                 "%s: tensor '%s': must be 2-D [ceil(in*bits/32), out]", file, nm);
    m->out = (int)m->qweight->shape[1];
    snprintf(nm, sizeof nm, "%s.g_idx", m->name);
    const sp_st_tensor *gi = sp_st_set_find(x->set, nm, &file);
    if (gi) {
        SP_RETURN_IF(gi->ndim != 1 || gi->shape[0] <= 0 || gi->shape[0] > INT32_MAX, err,
                     SP_EFORMAT, "%s: tensor '%s': must be 1-D [in]", file, nm);
        m->in = (int)gi->shape[0];
    } else {
        m->in = arch_in(cfg, m->name);
        SP_RETURN_IF(m->in <= 0, err, SP_EFORMAT, "%s: tensor '%s' is missing and module %s is "
                     "not a standard projection", x->dir, nm, m->name);
    }
    int g = gs > 0 && gs < m->in ? gs : m->in;
    m->groups = (m->in + g - 1) / g;
    const int64_t wi = (int64_t)sp_pack_nwords((size_t)m->in, m->bits);
    const int64_t wo = (int64_t)sp_pack_nwords((size_t)m->out, m->bits);
    snprintf(nm, sizeof nm, "%s.qweight", m->name);
    SP_FORWARD(check_tensor(m->qweight, file, nm, 0, wi, m->out, m, err));
    snprintf(nm, sizeof nm, "%s.qzeros", m->name);
    m->qzeros = sp_st_set_find(x->set, nm, &file);
    SP_FORWARD(check_tensor(m->qzeros, file ? file : x->dir, nm, 0, m->groups, wo, m, err));
    snprintf(nm, sizeof nm, "%s.scales", m->name);
    m->scales = sp_st_set_find(x->set, nm, &file);
    SP_FORWARD(check_tensor(m->scales, file ? file : x->dir, nm, 1, m->groups, m->out, m,
                               err));
    m->g_idx = sp_malloc((size_t)m->in * sizeof *m->g_idx, err, "g_idx");
    if (!m->g_idx) return SP_ENOMEM;
    snprintf(nm, sizeof nm, "%s.g_idx", m->name);
    for (int i = 0; i < m->in; i++) {
        int32_t v = i / g;
        if (gi) memcpy(&v, (const unsigned char *)gi->data + 4 * (size_t)i, 4);
        SP_RETURN_IF(v < 0 || v >= m->groups, err, SP_EFORMAT,
                     "%s: tensor '%s': value %d at %d is outside 0..%d", x->dir, nm, v, i,
                     m->groups - 1);
        m->g_idx[i] = v;
    }
    return SP_OK;
}

/* The quantization config: quantize_config.json, else config.json "quantization_config".
 * *q is NULL (not a GPTQ directory) or owned by *root. */
static sp_status find_qconfig(const char *dir, cJSON **root, const cJSON **q, char *what,
                              size_t cap, sp_err *err) {
    *root = NULL;
    *q = NULL;
    static const char *files[2] = {"quantize_config.json", "config.json"};
    for (int k = 0; k < 2; k++) {
        SP_FORWARD(sp_qmodel_join(what, cap, dir, files[k], err));
        if (access(what, F_OK) != 0) continue;
        char *text = NULL;
        size_t len;
        SP_FORWARD(sp_text_read_file(what, &text, &len, err));
        *root = cJSON_Parse(text);
        free(text);
        SP_RETURN_IF(!cJSON_IsObject(*root), err, SP_EFORMAT, "%s: not a JSON object", what);
        if (k == 0) {
            *q = *root;
            return SP_OK;
        }
        const cJSON *qc = cJSON_GetObjectItemCaseSensitive(*root, "quantization_config");
        if (!cJSON_IsObject(qc)) return SP_OK;
        const cJSON *qm = cJSON_GetObjectItemCaseSensitive(qc, "quant_method");
        size_t L = strlen(what);
        snprintf(what + L, cap - L, " quantization_config");
        SP_RETURN_IF(!cJSON_IsString(qm) || strcmp(qm->valuestring, "gptq") != 0, err,
                     SP_EUNSUPPORTED, "%s: quant_method %s is not supported (only gptq)", what,
                     cJSON_IsString(qm) ? qm->valuestring : "(missing)");
        *q = qc;
    }
    return SP_OK;
}

sp_status sp_qmodel_probe_gptq(const char *dir, const sp_config *cfg, sp_config *cfg_out,
                               void **ctx, const sp_model_backend **be, sp_err *err) {
    *ctx = NULL;
    SP_RETURN_IF(!cfg, err, SP_ENOTFOUND, "%s: not a model directory", dir);
    char what[4200];
    cJSON *root = NULL;
    const cJSON *q = NULL;
    sp_status st = find_qconfig(dir, &root, &q, what, sizeof what, err);
    if (st != SP_OK || !q) {
        cJSON_Delete(root);
        return st != SP_OK ? st : sp_err_set(err, SP_ENOTFOUND, "%s: no GPTQ config", dir);
    }
    gptq_ctx *x = sp_calloc(1, sizeof *x, err, "gptq backend");
    if (!x) {
        cJSON_Delete(root);
        return SP_ENOMEM;
    }
    st = sp_gptq_parse_config(q, what, &x->qc, err);
    cJSON_Delete(root);
    if (st != SP_OK) goto fail;
    if (!(x->dir = strdup(dir))) {
        st = sp_err_set(err, SP_ENOMEM, "%s: out of memory", dir);
        goto fail;
    }
    st = sp_st_set_open_dir(&x->set, dir, err);
    if (st != SP_OK) {
        /* the config says GPTQ, so missing weights are a broken checkpoint, not "not mine" */
        if (st == SP_ENOTFOUND) {
            sp_err_prefix(err, "GPTQ checkpoint (%s)", what);
            st = SP_EFORMAT;
            if (err) err->code = st;
        }
        goto fail;
    }
    size_t n = sp_st_set_count(x->set);
    x->mods = sp_calloc(n, sizeof *x->mods, err, "gptq modules");
    if (!x->mods) {
        st = SP_ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        const char *name = sp_st_set_name(x->set, i);
        size_t L = strlen(name);
        if (L <= 8 || strcmp(name + L - 8, ".qweight") != 0) continue;
        gptq_module *m = &x->mods[x->n_mods];
        if (!(m->name = strndup(name, L - 8))) {
            st = sp_err_set(err, SP_ENOMEM, "%s: out of memory", dir);
            goto fail;
        }
        x->n_mods++;
        if ((st = load_module(x, cfg, m, err))) goto fail;
    }
    if (x->n_mods == 0) {
        st = sp_err_set(err, SP_EFORMAT, "%s: says GPTQ but no tensor is named *.qweight", what);
        goto fail;
    }
    qsort(x->mods, (size_t)x->n_mods, sizeof *x->mods, cmp_mod);
    *ctx = x;
    *be = &gptq_backend;
    return SP_OK;
fail:
    gq_close(x);
    return st;
}
