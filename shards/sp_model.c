/* sp_model.c — open a model directory (or llama2.c file), pick its backend, validate that the
 * architecture's tensors are all there, and read them as fp32 (see sp_model.h).
 *
 * Shapes checked at open (HF layout, [out, in]):
 *   model.embed_tokens.weight [V, D]        model.norm.weight [D]      lm_head.weight [V, D]
 *   per layer l, prefix model.layers.<l>.:
 *     input_layernorm.weight [D]            post_attention_layernorm.weight [D]
 *     self_attn.q_proj.weight [Hq*hd, D]    self_attn.k_proj.weight [Hkv*hd, D]
 *     self_attn.v_proj.weight [Hkv*hd, D]   self_attn.o_proj.weight [D, Hq*hd]
 *     mlp.gate_proj.weight [F, D]           mlp.up_proj.weight [F, D]    mlp.down_proj.weight [D, F]
 *     with qkv_bias: self_attn.{q,k,v}_proj.bias [Hq*hd], [Hkv*hd], [Hkv*hd]
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zlib.h>

#include "shards/sp_model_backend.h"
#include "shards/sp_safetensors.h"

/* The probes are referenced strongly on purpose. A weak reference (#pragma weak) would let
 * the build link without the quantized backends, but from a static library the linker never
 * extracts an object for a weak reference alone: the probes would be NULL in every program
 * and quantized models would silently fall through to "no model weights". */

#define SP_NAME_MAX 160

struct sp_model {
    sp_config cfg;
    char *dir;     /* directory of the model (for the tokenizer)          */
    char *source;  /* what was opened, for messages (dir or .bin path)     */
    void *ctx;
    const sp_model_backend *be;
};

static const char *const k_mod_suffix[SP_MOD_COUNT] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj",
};

const char *sp_module_suffix(int mod) {
    return mod >= 0 && mod < SP_MOD_COUNT ? k_mod_suffix[mod] : NULL;
}

void sp_module_shape(const sp_config *c, int mod, int *rows, int *cols) {
    const int D = c->dim, F = c->hidden_dim, q = c->n_heads * c->head_dim,
              kv = c->n_kv_heads * c->head_dim;
    const int r[SP_MOD_COUNT] = {q, kv, kv, D, F, F, D}, i[SP_MOD_COUNT] = {D, D, D, q, D, D, F};
    const int k = mod >= 0 && mod < SP_MOD_COUNT ? mod : SP_MOD_DOWN;
    *rows = r[k];
    *cols = i[k];
}

const sp_config *sp_model_config(const sp_model *m) { return &m->cfg; }
const char *sp_model_dir(const sp_model *m) { return m->dir; }
const char *sp_model_format(const sp_model *m) { return m->be->name; }

void sp_model_close(sp_model *m) {
    if (!m) return;
    if (m->be && m->be->close) m->be->close(m->ctx);
    free(m->dir);
    free(m->source);
    free(m);
}

/* The file holding a tensor, for messages: the shard for safetensors, else the source. */
static const char *tensor_file(const sp_model *m, const char *name) {
    const char *file = NULL;
    if (strcmp(m->be->name, "safetensors") == 0 && sp_st_set_find(m->ctx, name, &file)) return file;
    return m->source;
}

sp_status sp_model_tensor_desc(const sp_model *m, const char *name, sp_tensor_desc *desc,
                               sp_err *err) {
    return m->be->tensor_desc(m->ctx, name, desc, err);
}

sp_status sp_model_read_rows(const sp_model *m, const char *name, int64_t row0, int64_t nrows,
                             float *dst, sp_err *err) {
    sp_tensor_desc d;
    SP_FORWARD(m->be->tensor_desc(m->ctx, name, &d, err));
    int64_t rows = d.ndim == 2 ? d.shape[0] : 1;
    SP_RETURN_IF(row0 < 0 || nrows < 0 || row0 > rows - nrows, err, SP_EINVAL,
                 "%s: tensor '%s': rows [%lld, %lld) out of range (%lld rows)",
                 tensor_file(m, name), name, (long long)row0, (long long)(row0 + nrows),
                 (long long)rows);
    return m->be->read_rows(m->ctx, name, row0, nrows, dst, err);
}

sp_status sp_model_select_bits(sp_model *m, const char *module, int bits, sp_err *err) {
    SP_RETURN_IF(!m->be->select_bits, err, SP_EUNSUPPORTED,
                 "%s: a dense model (format %s) has no bit levels to select", m->source,
                 m->be->name);
    return m->be->select_bits(m->ctx, module, bits, err);
}

/* ---- validation at open --------------------------------------------------------------- */

static sp_status expect_tensor(const sp_model *m, const char *name, int ndim, int64_t d0,
                               int64_t d1, sp_err *err) {
    sp_tensor_desc d;
    sp_err local;
    sp_status st = m->be->tensor_desc(m->ctx, name, &d, &local);
    char want[64];
    if (ndim == 2)
        snprintf(want, sizeof want, "[%lld, %lld]", (long long)d0, (long long)d1);
    else
        snprintf(want, sizeof want, "[%lld]", (long long)d0);
    if (st == SP_ENOTFOUND)
        return sp_err_set(err, SP_ENOTFOUND, "%s: missing tensor '%s' (expected shape %s)",
                          m->source, name, want);
    if (st != SP_OK) {
        if (err) *err = local;
        return st;
    }
    const char *file = tensor_file(m, name);
    SP_RETURN_IF(d.dtype != SP_DTYPE_F32 && d.dtype != SP_DTYPE_F16 && d.dtype != SP_DTYPE_BF16,
                 err, SP_EFORMAT, "%s: tensor '%s' has dtype %s; weights must be F32, F16 or BF16",
                 file, name, sp_dtype_name(d.dtype));
    int same = d.ndim == ndim && d.shape[0] == d0 && (ndim == 1 || d.shape[1] == d1);
    if (!same) {
        char got[64];
        if (d.ndim == 2)
            snprintf(got, sizeof got, "[%lld, %lld]", (long long)d.shape[0], (long long)d.shape[1]);
        else
            snprintf(got, sizeof got, "[%lld]", (long long)d.shape[0]);
        return sp_err_set(err, SP_EFORMAT, "%s: tensor '%s' has shape %s, expected %s for this "
                          "config", file, name, got, want);
    }
    return SP_OK;
}

static sp_status validate_tensors(const sp_model *m, sp_err *err) {
    const sp_config *c = &m->cfg;
    int64_t D = c->dim, F = c->hidden_dim, V = c->vocab_size;
    int64_t Q = (int64_t)c->n_heads * c->head_dim, KV = (int64_t)c->n_kv_heads * c->head_dim;
    char nm[SP_NAME_MAX];
    SP_FORWARD(expect_tensor(m, "model.embed_tokens.weight", 2, V, D, err));
    SP_FORWARD(expect_tensor(m, "model.norm.weight", 1, D, 1, err));
    if (!c->tie_embeddings) SP_FORWARD(expect_tensor(m, "lm_head.weight", 2, V, D, err));
    for (int l = 0; l < c->n_layers; l++) {
        static const struct { const char *suffix; int ndim; char r, k; } want[] = {
            /* r/k: row and column size by letter: D, F, Q (Hq*hd), K (Hkv*hd), '1' */
            {"input_layernorm.weight", 1, 'D', '1'},
            {"self_attn.q_proj.weight", 2, 'Q', 'D'},
            {"self_attn.k_proj.weight", 2, 'K', 'D'},
            {"self_attn.v_proj.weight", 2, 'K', 'D'},
            {"self_attn.o_proj.weight", 2, 'D', 'Q'},
            {"post_attention_layernorm.weight", 1, 'D', '1'},
            {"mlp.gate_proj.weight", 2, 'F', 'D'},
            {"mlp.up_proj.weight", 2, 'F', 'D'},
            {"mlp.down_proj.weight", 2, 'D', 'F'},
            {"self_attn.q_proj.bias", 1, 'Q', '1'},
            {"self_attn.k_proj.bias", 1, 'K', '1'},
            {"self_attn.v_proj.bias", 1, 'K', '1'},
        };
        size_t nwant = c->qkv_bias ? 12 : 9;
        for (size_t i = 0; i < nwant; i++) {
            int64_t dims[2];
            char letters[2] = {want[i].r, want[i].k};
            for (int j = 0; j < 2; j++)
                dims[j] = letters[j] == 'D' ? D : letters[j] == 'F' ? F : letters[j] == 'Q' ? Q
                        : letters[j] == 'K' ? KV : 1;
            snprintf(nm, sizeof nm, "model.layers.%d.%s", l, want[i].suffix);
            SP_FORWARD(expect_tensor(m, nm, want[i].ndim, dims[0], dims[1], err));
        }
        /* Llama's attention_bias also gives o_proj a bias, which the forward pass lacks:
         * refuse rather than silently drop it. */
        sp_tensor_desc d;
        snprintf(nm, sizeof nm, "model.layers.%d.self_attn.o_proj.bias", l);
        SP_RETURN_IF(m->be->tensor_desc(m->ctx, nm, &d, NULL) == SP_OK, err, SP_EUNSUPPORTED,
                     "%s: tensor '%s': an o_proj bias is not supported", tensor_file(m, nm), nm);
    }
    return SP_OK;
}

/* ---- opening ---------------------------------------------------------------------------- */

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* A *.bin in a directory that could be a llama2.c checkpoint (not a tokenizer or a PyTorch
 * pickle). */
static int is_checkpoint_bin(const char *name) {
    return ends_with(name, ".bin") && strncmp(name, "tok", 3) != 0 &&
           strncmp(name, "pytorch_model", 13) != 0;
}

/* The single llama2.c checkpoint in dir, into path. */
static sp_status find_single_bin(const char *dir, char *path, size_t cap, sp_err *err) {
    DIR *d = opendir(dir);
    SP_RETURN_IF(!d, err, SP_EIO, "%s: cannot list directory: %s", dir, strerror(errno));
    int count = 0;
    char first[256] = "", second[256] = "";
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!is_checkpoint_bin(de->d_name)) continue;
        if (count == 0) snprintf(first, sizeof first, "%s", de->d_name);
        if (count == 1) snprintf(second, sizeof second, "%s", de->d_name);
        count++;
    }
    closedir(d);
    SP_RETURN_IF(count == 0, err, SP_ENOTFOUND, "%s: no config.json and no llama2.c .bin "
                 "checkpoint: not a model directory", dir);
    SP_RETURN_IF(count > 1, err, SP_EINVAL, "%s: no config.json and %d .bin checkpoints (%s, %s, "
                 "...): give the path of the one to use", dir, count, first, second);
    int w = snprintf(path, cap, "%s/%s", dir, first);
    SP_RETURN_IF(w < 0 || (size_t)w >= cap, err, SP_EINVAL, "%s: path too long", dir);
    return SP_OK;
}

/* Directory with config.json: the probes in order; the first that is not ENOTFOUND wins. */
static sp_status open_with_config(sp_model *m, const char *cfg_path, sp_err *err) {
    SP_FORWARD(sp_config_load_json(&m->cfg, cfg_path, err));
    sp_model_probe_fn probes[3] = {sp_qmodel_probe_h5, sp_qmodel_probe_gptq, sp_safetensors_probe};
    sp_status st = SP_ENOTFOUND;
    for (int i = 0; i < 3; i++) {
        sp_config out = m->cfg; /* probes may refine it; most leave it as read */
        st = probes[i](m->dir, &m->cfg, &out, &m->ctx, &m->be, err);
        if (st == SP_OK) {
            m->cfg = out;
            return SP_OK;
        }
        if (st != SP_ENOTFOUND) return st;
    }
    /* All said "not mine": the last (safetensors) message says what was expected. */
    return st;
}

sp_status sp_model_open(sp_model **out, const char *path, sp_err *err) {
    *out = NULL;
    struct stat sb;
    SP_RETURN_IF(stat(path, &sb) != 0, err, errno == ENOENT ? SP_ENOTFOUND : SP_EIO,
                 "%s: cannot open model: %s", path, strerror(errno));
    sp_model *m = sp_calloc(1, sizeof *m, err, "model");
    if (!m) return SP_ENOMEM;
    sp_status st = SP_OK;
    char buf[4096];
    if (S_ISDIR(sb.st_mode)) {
        /* drop trailing slashes so messages read "dir/config.json" */
        size_t L = strlen(path);
        while (L > 1 && path[L - 1] == '/') L--;
        m->dir = strndup(path, L);
        m->source = strndup(path, L);
    } else {
        m->source = strdup(path);
        const char *slash = strrchr(path, '/');
        m->dir = slash ? (slash == path ? strdup("/") : strndup(path, (size_t)(slash - path)))
                       : strdup(".");
    }
    if (!m->source || !m->dir) {
        st = sp_err_set(err, SP_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    if (!S_ISDIR(sb.st_mode)) {
        if (!S_ISREG(sb.st_mode) || !ends_with(path, ".bin")) {
            st = sp_err_set(err, SP_EINVAL, "%s: not a model directory or a llama2.c .bin "
                            "checkpoint", path);
            goto fail;
        }
        st = sp_llama2c_probe(path, NULL, &m->cfg, &m->ctx, &m->be, err);
    } else {
        snprintf(buf, sizeof buf, "%s/config.json", m->dir);
        if (stat(buf, &sb) == 0) {
            st = open_with_config(m, buf, err);
        } else {
            st = find_single_bin(m->dir, buf, sizeof buf, err);
            if (st == SP_OK) {
                free(m->source);
                m->source = strdup(buf);
                st = m->source ? sp_llama2c_probe(buf, NULL, &m->cfg, &m->ctx, &m->be, err)
                               : sp_err_set(err, SP_ENOMEM, "%s: out of memory", path);
            }
        }
    }
    if (st != SP_OK) goto fail;
    st = validate_tensors(m, err);
    if (st != SP_OK) goto fail;
    *out = m;
    return SP_OK;
fail:
    sp_model_close(m);
    return st;
}

/* ---- fp32 blocks ------------------------------------------------------------------------ */

/* Sizes (floats) of the block's tensors in struct order; each rounded up to 16 floats so
 * every tensor starts 64-byte aligned within the one allocation. */
static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

sp_status sp_block_weights_alloc(sp_block_weights *w, const sp_config *c, sp_err *err) {
    memset(w, 0, sizeof *w);
    size_t D = (size_t)c->dim, F = (size_t)c->hidden_dim;
    size_t Q = (size_t)c->n_heads * (size_t)c->head_dim;
    size_t K = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    size_t sizes[13] = {D, Q * D, K * D, K * D, 0, 0, 0, D * Q, D, F * D, F * D, D * F, 0};
    if (c->qkv_bias) {
        sizes[4] = Q;
        sizes[5] = K;
        sizes[6] = K;
    }
    size_t total = 0;
    for (int i = 0; i < 12; i++) total += round16(sizes[i]);
    float *base = NULL;
    SP_RETURN_IF(posix_memalign((void **)&base, 64, total * sizeof(float)) != 0, err, SP_ENOMEM,
                 "cannot allocate %zu bytes for the weights of one block", total * sizeof(float));
    float **slots[12] = {&w->attn_norm, &w->wq, &w->wk, &w->wv, &w->bq, &w->bk,
                         &w->bv,        &w->wo, &w->ffn_norm, &w->w_gate, &w->w_up, &w->w_down};
    size_t off = 0;
    for (int i = 0; i < 12; i++) {
        *slots[i] = sizes[i] ? base + off : NULL;
        off += round16(sizes[i]);
    }
    w->mem_ = base;
    return SP_OK;
}

void sp_block_weights_free(sp_block_weights *w) {
    if (!w) return;
    free(w->mem_);
    memset(w, 0, sizeof *w);
}

/* CRC-32 of n floats' bytes; zlib's crc32 takes uInt lengths, so in slices of 1 GiB. */
static uint32_t crc_floats(uint32_t crc, const float *x, size_t n) {
    const unsigned char *p = (const unsigned char *)x;
    size_t bytes = n * sizeof(float);
    uLong c = crc;
    while (bytes > 0) {
        size_t k = bytes < ((size_t)1 << 30) ? bytes : ((size_t)1 << 30);
        c = crc32(c, p, (uInt)k);
        p += k;
        bytes -= k;
    }
    return (uint32_t)c;
}

/* Read a whole tensor (n floats expected) and refuse NaN/Inf; crc (if non-NULL) gets the
 * CRC-32 of the values read. */
static sp_status read_checked(const sp_model *m, const char *name, float *dst, size_t n,
                              uint32_t *crc, sp_err *err) {
    sp_tensor_desc d;
    SP_FORWARD(m->be->tensor_desc(m->ctx, name, &d, err));
    int64_t rows = d.ndim == 2 ? d.shape[0] : 1, cols = d.ndim == 2 ? d.shape[1] : d.shape[0];
    SP_RETURN_IF((size_t)(rows * cols) != n, err, SP_EINTERNAL,
                 "%s: tensor '%s' has %lld elements, expected %zu", tensor_file(m, name), name,
                 (long long)(rows * cols), n);
    SP_FORWARD(m->be->read_rows(m->ctx, name, 0, rows, dst, err));
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(dst[i]))
            return sp_err_set(err, SP_ENUMERIC, "%s: tensor '%s' holds %s at element %zu "
                              "(row %lld, column %lld)", tensor_file(m, name), name,
                              isnan(dst[i]) ? "NaN" : "Inf", i, (long long)(i / (size_t)cols),
                              (long long)(i % (size_t)cols));
    }
    if (crc) *crc = crc_floats(0, dst, n);
    return SP_OK;
}

static const char *const k_block_tensor[SP_BLOCK_TENSORS] = {
    "input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
    "self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
    "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
    "self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias",
};

int sp_block_tensor_count(const sp_config *c) { return c->qkv_bias ? 12 : 9; }

const char *sp_block_tensor_suffix(int i) {
    return i >= 0 && i < SP_BLOCK_TENSORS ? k_block_tensor[i] : NULL;
}

void sp_model_global_tensors(const sp_config *c, const char *names[SP_GLOBAL_TENSORS], int *n) {
    names[0] = "model.embed_tokens.weight";
    names[1] = "model.norm.weight";
    names[2] = c->tie_embeddings ? NULL : "lm_head.weight";
    *n = c->tie_embeddings ? 2 : 3;
}

sp_status sp_model_tensor_crc(const sp_model *m, const char *name, uint32_t *crc, sp_err *err) {
    sp_tensor_desc d;
    SP_FORWARD(m->be->tensor_desc(m->ctx, name, &d, err));
    int64_t rows = d.ndim == 2 ? d.shape[0] : 1, cols = d.ndim == 2 ? d.shape[1] : d.shape[0];
    /* 1-D tensors are read as one row; 2-D in slices of about 16 MiB of fp32. */
    int64_t step = d.ndim == 2 ? ((int64_t)1 << 22) / (cols > 0 ? cols : 1) : 1;
    if (step < 1) step = 1;
    float *buf = sp_malloc((size_t)(step < rows ? step : rows) * (size_t)cols * sizeof(float) + 1,
                           err, name);
    if (!buf) return SP_ENOMEM;
    uint32_t c = 0;
    sp_status st = SP_OK;
    for (int64_t r = 0; r < rows && st == SP_OK; r += step) {
        int64_t k = rows - r < step ? rows - r : step;
        st = m->be->read_rows(m->ctx, name, r, k, buf, err);
        if (st == SP_OK) c = crc_floats(c, buf, (size_t)(k * cols));
    }
    free(buf);
    *crc = c;
    return st;
}

sp_status sp_model_load_block(const sp_model *m, int layer, sp_block_weights *w, sp_err *err) {
    return sp_model_load_block_crc(m, layer, w, NULL, err);
}

sp_status sp_model_load_block_crc(const sp_model *m, int layer, sp_block_weights *w,
                                  uint32_t *crc, sp_err *err) {
    const sp_config *c = &m->cfg;
    SP_RETURN_IF(layer < 0 || layer >= c->n_layers, err, SP_EINVAL,
                 "%s: layer %d out of range (model has %d)", m->source, layer, c->n_layers);
    size_t D = (size_t)c->dim, F = (size_t)c->hidden_dim;
    size_t Q = (size_t)c->n_heads * (size_t)c->head_dim;
    size_t K = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    /* In k_block_tensor's order. */
    const struct { float *dst; size_t n; } parts[SP_BLOCK_TENSORS] = {
        {w->attn_norm, D}, {w->wq, Q * D},    {w->wk, K * D},     {w->wv, K * D},
        {w->wo, D * Q},    {w->ffn_norm, D},  {w->w_gate, F * D}, {w->w_up, F * D},
        {w->w_down, D * F}, {w->bq, Q},       {w->bk, K},         {w->bv, K},
    };
    size_t nparts = (size_t)sp_block_tensor_count(c);
    char nm[SP_NAME_MAX];
    for (size_t i = 0; i < nparts; i++) {
        SP_RETURN_IF(!parts[i].dst, err, SP_EINVAL, "%s: block weights were not allocated for "
                     "this config (%s is NULL)", m->source, k_block_tensor[i]);
        snprintf(nm, sizeof nm, "model.layers.%d.%s", layer, k_block_tensor[i]);
        SP_FORWARD(read_checked(m, nm, parts[i].dst, parts[i].n, crc ? crc + i : NULL, err));
    }
    return SP_OK;
}

sp_status sp_model_embed(const sp_model *m, const int32_t *ids, size_t n, float *out,
                         sp_err *err) {
    const sp_config *c = &m->cfg;
    for (size_t i = 0; i < n; i++) {
        SP_RETURN_IF(ids[i] < 0 || ids[i] >= c->vocab_size, err, SP_EINVAL,
                     "%s: token id %d at position %zu is outside the vocabulary [0, %d)",
                     m->source, (int)ids[i], i, c->vocab_size);
        SP_FORWARD(m->be->read_rows(m->ctx, "model.embed_tokens.weight", ids[i], 1,
                                    out + i * (size_t)c->dim, err));
    }
    return SP_OK;
}

sp_status sp_model_read_final_norm(const sp_model *m, float *dst, sp_err *err) {
    return m->be->read_rows(m->ctx, "model.norm.weight", 0, 1, dst, err);
}

sp_status sp_model_read_head_rows(const sp_model *m, int64_t v0, int64_t nv, float *dst,
                                  sp_err *err) {
    const char *name = m->cfg.tie_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
    return sp_model_read_rows(m, name, v0, nv, dst, err);
}
