/* sp_llama2c.c — llama2.c "legacy" (version 0) checkpoints as an sp_model backend.
 *
 * File layout (little-endian, all weights fp32, row-major):
 *   header   7 x int32: dim D, hidden_dim F, n_layers L, n_heads Hq, n_kv_heads Hkv,
 *            vocab_size V (negative: the classifier is not shared), seq_len S
 *   token_embedding [V, D]
 *   rms_att  [L, D]          wq [L, D, D]        wk [L, Hkv*hd, D]   wv [L, Hkv*hd, D]
 *   wo       [L, D, D]       rms_ffn [L, D]
 *   w1       [L, F, D] gate  w2 [L, D, F] down   w3 [L, F, D] up
 *   rms_final [D]
 *   freq_cis_real [S, hd/2], freq_cis_imag [S, hd/2]   (unused: RoPE is recomputed)
 *   wcls     [V, D]          only when V < 0
 * with hd = D / Hq. The file size must equal 28 + 4 * (sum of the above) exactly.
 *
 * RoPE pair order: llama2.c rotates adjacent pairs (x[2j], x[2j+1]) of each head, HF rotates
 * (x[j], x[j + hd/2]). The q/k rows are therefore presented permuted, per head:
 *   HF row j        = llama2.c row 2j        (j < hd/2)
 *   HF row hd/2 + j = llama2.c row 2j + 1
 * which makes q·k (and so attention) identical under HF's rotate-half RoPE.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sp_mapfile.h"
#include "shards/sp_model_backend.h"

#define L2C_HEADER_BYTES 28
#define L2C_NAME_MAX 80

typedef struct {
    char name[L2C_NAME_MAX];
    uint64_t off;   /* in floats, from the end of the header */
    int64_t rows, cols;
    int ndim;
    int permute;    /* 1 for q/k: rows reordered from interleaved to rotate-half */
} l2c_entry;

typedef struct {
    char *path;
    unsigned char *map;
    size_t map_len;
    int head_dim;
    l2c_entry *e;   /* sorted by name */
    size_t n;
} l2c_model;

static int cmp_l2c(const void *a, const void *b) {
    return strcmp(((const l2c_entry *)a)->name, ((const l2c_entry *)b)->name);
}

static void l2c_close(void *ctx) {
    l2c_model *m = ctx;
    if (!m) return;
    sp_mapfile_close(m->map, m->map_len);
    free(m->e);
    free(m->path);
    free(m);
}

static const l2c_entry *l2c_find(const l2c_model *m, const char *name) {
    l2c_entry key;
    snprintf(key.name, sizeof key.name, "%s", name);
    if (strlen(name) >= sizeof key.name) return NULL;
    return bsearch(&key, m->e, m->n, sizeof *m->e, cmp_l2c);
}

static sp_status l2c_desc(void *ctx, const char *name, sp_tensor_desc *desc, sp_err *err) {
    const l2c_model *m = ctx;
    const l2c_entry *e = l2c_find(m, name);
    SP_RETURN_IF(!e, err, SP_ENOTFOUND, "%s: no tensor '%s' in a llama2.c checkpoint", m->path,
                 name);
    desc->dtype = SP_DTYPE_F32;
    desc->ndim = e->ndim;
    desc->shape[0] = e->ndim == 2 ? e->rows : e->cols;
    desc->shape[1] = e->ndim == 2 ? e->cols : 1;
    return SP_OK;
}

static sp_status l2c_read_rows(void *ctx, const char *name, int64_t row0, int64_t nrows,
                               float *dst, sp_err *err) {
    const l2c_model *m = ctx;
    const l2c_entry *e = l2c_find(m, name);
    SP_RETURN_IF(!e, err, SP_ENOTFOUND, "%s: no tensor '%s' in a llama2.c checkpoint", m->path,
                 name);
    SP_RETURN_IF(row0 < 0 || nrows < 0 || row0 > e->rows - nrows, err, SP_EINVAL,
                 "%s: tensor '%s': rows [%lld, %lld) out of range (%lld rows)", m->path, name,
                 (long long)row0, (long long)(row0 + nrows), (long long)e->rows);
    const unsigned char *base = m->map + L2C_HEADER_BYTES + e->off * sizeof(float);
    size_t row_bytes = (size_t)e->cols * sizeof(float);
    if (!e->permute) {
        memcpy(dst, base + (size_t)row0 * row_bytes, (size_t)nrows * row_bytes);
        return SP_OK;
    }
    int hd = m->head_dim, half = hd / 2;
    for (int64_t r = row0; r < row0 + nrows; r++) {
        int64_t h = r / hd, j = r % hd;
        int64_t src = h * hd + (j < half ? 2 * j : 2 * (j - half) + 1);
        memcpy(dst + (size_t)(r - row0) * (size_t)e->cols, base + (size_t)src * row_bytes,
               row_bytes);
    }
    return SP_OK;
}

static const sp_model_backend l2c_backend = {
    .name = "llama2c",
    .tensor_desc = l2c_desc,
    .read_rows = l2c_read_rows,
    .select_bits = NULL,
    .close = l2c_close,
};

/* Append one name -> (offset in floats, shape) entry. */
static void add_entry(l2c_model *m, const char *name, uint64_t off, int64_t rows, int64_t cols,
                      int ndim, int permute) {
    l2c_entry *e = &m->e[m->n++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->off = off;
    e->rows = rows;
    e->cols = cols;
    e->ndim = ndim;
    e->permute = permute;
}

/* Build the name table. Sizes were checked for overflow by the caller. */
static sp_status build_table(l2c_model *m, int D, int F, int L, int kv, int V, int S, int hd,
                             int tied, sp_err *err) {
    m->n = 0;
    m->e = sp_calloc((size_t)L * 9 + 3, sizeof *m->e, err, "llama2.c tensor table");
    if (!m->e) return SP_ENOMEM;
    uint64_t d = (uint64_t)D, f = (uint64_t)F, l = (uint64_t)L, k = (uint64_t)kv;
    uint64_t o_emb = 0, o_rms_att = o_emb + (uint64_t)V * d, o_wq = o_rms_att + l * d;
    uint64_t o_wk = o_wq + l * d * d, o_wv = o_wk + l * k * d, o_wo = o_wv + l * k * d;
    uint64_t o_rms_ffn = o_wo + l * d * d, o_w1 = o_rms_ffn + l * d, o_w2 = o_w1 + l * f * d;
    uint64_t o_w3 = o_w2 + l * d * f, o_final = o_w3 + l * f * d;
    uint64_t o_wcls = o_final + d + (uint64_t)S * (uint64_t)hd; /* skip freq_cis real + imag */
    char nm[L2C_NAME_MAX];
    add_entry(m, "model.embed_tokens.weight", o_emb, V, D, 2, 0);
    add_entry(m, "model.norm.weight", o_final, 1, D, 1, 0);
    if (!tied) add_entry(m, "lm_head.weight", o_wcls, V, D, 2, 0);
    for (int i = 0; i < L; i++) {
        uint64_t u = (uint64_t)i;
#define L2C_ADD(suffix, off, rows, cols, ndim, perm)                              \
    do {                                                                          \
        snprintf(nm, sizeof nm, "model.layers.%d.%s.weight", i, suffix);          \
        add_entry(m, nm, off, rows, cols, ndim, perm);                            \
    } while (0)
        L2C_ADD("input_layernorm", o_rms_att + u * d, 1, D, 1, 0);
        L2C_ADD("self_attn.q_proj", o_wq + u * d * d, D, D, 2, 1);
        L2C_ADD("self_attn.k_proj", o_wk + u * k * d, kv, D, 2, 1);
        L2C_ADD("self_attn.v_proj", o_wv + u * k * d, kv, D, 2, 0);
        L2C_ADD("self_attn.o_proj", o_wo + u * d * d, D, D, 2, 0);
        L2C_ADD("post_attention_layernorm", o_rms_ffn + u * d, 1, D, 1, 0);
        L2C_ADD("mlp.gate_proj", o_w1 + u * f * d, F, D, 2, 0);
        L2C_ADD("mlp.down_proj", o_w2 + u * d * f, D, F, 2, 0);
        L2C_ADD("mlp.up_proj", o_w3 + u * f * d, F, D, 2, 0);
#undef L2C_ADD
    }
    qsort(m->e, m->n, sizeof *m->e, cmp_l2c);
    return SP_OK;
}

/* Size in bytes the header implies; 0 on overflow. */
static uint64_t expected_bytes(int D, int F, int L, int kv, int V, int S, int hd, int tied) {
    uint64_t d = (uint64_t)D, f = (uint64_t)F, l = (uint64_t)L, k = (uint64_t)kv;
    uint64_t v = (uint64_t)V, s = (uint64_t)S;
    /* every factor is < 2^31, so products of three fit in 128 bits; sums too */
    __uint128_t n = (__uint128_t)v * d * (tied ? 1 : 2) + (__uint128_t)l * d * 2 +
                    (__uint128_t)l * d * d * 2 + (__uint128_t)l * k * d * 2 +
                    (__uint128_t)l * f * d * 3 + d + (__uint128_t)s * (uint64_t)hd;
    __uint128_t bytes = n * 4 + L2C_HEADER_BYTES;
    return bytes > (__uint128_t)UINT64_MAX / 2 ? 0 : (uint64_t)bytes;
}

sp_status sp_llama2c_probe(const char *path, const sp_config *cfg, sp_config *cfg_out, void **ctx,
                           const sp_model_backend **be, sp_err *err) {
    *ctx = NULL;
    sp_status st = SP_OK;
    l2c_model *m = sp_calloc(1, sizeof *m, err, "llama2.c model");
    if (!m) return SP_ENOMEM;
    m->path = strdup(path);
    if (!m->path) {
        st = sp_err_set(err, SP_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    void *map = NULL;
    size_t size = 0;
    st = sp_mapfile_open(path, L2C_HEADER_BYTES, "the 28-byte llama2.c header", &map, &size, err);
    if (st != SP_OK) goto fail;
    m->map = map;
    m->map_len = size;
    int32_t h[7];
    memcpy(h, m->map, sizeof h);
    /* llama2.c's versioned exports start with the magic "ak42". */
    if ((uint32_t)h[0] == 0x616b3432u) {
        st = sp_err_set(err, SP_EUNSUPPORTED, "%s: llama2.c export version %d is not supported "
                        "(only the legacy version-0 layout)", path, h[1]);
        goto fail;
    }
    int D = h[0], F = h[1], L = h[2], Hq = h[3], Hkv = h[4], V = h[5], S = h[6];
    int tied = V > 0;
    if (V < 0 && V != INT32_MIN) V = -V;
    if (D <= 0 || F <= 0 || L <= 0 || Hq <= 0 || Hkv <= 0 || V <= 0 || S <= 0 || D % Hq != 0 ||
        Hq % Hkv != 0 || (D / Hq) % 2 != 0) {
        st = sp_err_set(err, SP_EFORMAT, "%s: impossible llama2.c header (dim %d, hidden_dim %d, "
                        "n_layers %d, n_heads %d, n_kv_heads %d, vocab_size %d, seq_len %d)", path,
                        h[0], h[1], h[2], h[3], h[4], h[5], h[6]);
        goto fail;
    }
    int hd = D / Hq, kv = Hkv * hd;
    uint64_t want = expected_bytes(D, F, L, kv, V, S, hd, tied);
    if (want == 0 || want != (uint64_t)size) {
        st = sp_err_set(err, want > size ? SP_ETRUNC : SP_EFORMAT,
                        "%s: file is %zu bytes but its header (dim %d, hidden_dim %d, n_layers %d, "
                        "n_heads %d, n_kv_heads %d, vocab_size %d, seq_len %d) implies %llu bytes",
                        path, size, h[0], h[1], h[2], h[3], h[4], h[5], h[6],
                        (unsigned long long)want);
        goto fail;
    }
    m->head_dim = hd;
    st = build_table(m, D, F, L, kv, V, S, hd, tied, err);
    if (st != SP_OK) goto fail;

    memset(cfg_out, 0, sizeof *cfg_out);
    snprintf(cfg_out->arch, sizeof cfg_out->arch, "llama2c");
    cfg_out->dim = D;
    cfg_out->hidden_dim = F;
    cfg_out->n_layers = L;
    cfg_out->n_heads = Hq;
    cfg_out->n_kv_heads = Hkv;
    cfg_out->head_dim = hd;
    cfg_out->vocab_size = V;
    cfg_out->max_seq_len = S;
    cfg_out->norm_eps = 1e-5f;
    cfg_out->rope_theta = 10000.0f;
    cfg_out->tie_embeddings = tied;
    cfg_out->bos_id = 1;
    cfg_out->eos_id = 2;
    *ctx = m;
    *be = &l2c_backend;
    return SP_OK;
fail:
    l2c_close(m);
    return st;
}
