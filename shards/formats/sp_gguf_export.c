/* sp_gguf_export.c — model or container -> one GGUF file (see sp_gguf_export.h).
 *
 * Order of work: open the source (a dense model through sp_model, or a container through
 * sp_qcontainer — never both, one HDF5 handle), choose every tensor's GGUF name, type and shape,
 * write the metadata and the tensor infos, then the tensors one at a time (row chunks, or the
 * whole tensor for the permuted q/k), so memory holds one tensor at most.
 */
#include "shards/formats/sp_gguf_export.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/sp_stop.h"
#include "kernels/sp_gtype.h"
#include "shards/formats/sp_gguf.h"
#include "shards/formats/sp_gguf_int.h"
#include "shards/formats/sp_qcontainer.h"
#include "shards/sp_model.h"

void sp_gguf_export_opts_default(sp_gguf_export_opts *o) {
    memset(o, 0, sizeof *o);
    o->type = o->embed_type = o->output_type = -1;
}

/* ---- names and the q/k permutation ----------------------------------------------------------- */

int sp_gguf_tensor_name(const char *hf, char *out, size_t cap) {
    static const char *const top[][2] = {{"model.embed_tokens.weight", "token_embd.weight"},
                                         {"model.norm.weight", "output_norm.weight"},
                                         {"lm_head.weight", "output.weight"}};
    static const char *const blk[][2] = {
        {"input_layernorm.weight", "attn_norm.weight"},
        {"post_attention_layernorm.weight", "ffn_norm.weight"},
        {"self_attn.q_proj.weight", "attn_q.weight"}, {"self_attn.k_proj.weight", "attn_k.weight"},
        {"self_attn.v_proj.weight", "attn_v.weight"},
        {"self_attn.o_proj.weight", "attn_output.weight"},
        {"self_attn.q_proj.bias", "attn_q.bias"}, {"self_attn.k_proj.bias", "attn_k.bias"},
        {"self_attn.v_proj.bias", "attn_v.bias"}, {"mlp.gate_proj.weight", "ffn_gate.weight"},
        {"mlp.up_proj.weight", "ffn_up.weight"}, {"mlp.down_proj.weight", "ffn_down.weight"}};
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        if (!strcmp(hf, top[i][0])) return snprintf(out, cap, "%s", top[i][1]) < (int)cap ? 0 : -1;
    int layer, n = 0;
    if (sscanf(hf, "model.layers.%d.%n", &layer, &n) != 1 || n == 0 || layer < 0) return -1;
    for (size_t i = 0; i < sizeof blk / sizeof blk[0]; i++)
        if (!strcmp(hf + n, blk[i][0]))
            return snprintf(out, cap, "blk.%d.%s", layer, blk[i][1]) < (int)cap ? 0 : -1;
    return -1;
}

int64_t sp_gguf_qk_src_row(int64_t r, int hd) {
    int64_t h = r / hd, k = r % hd, i = k / 2, j = k % 2;
    return h * hd + j * (hd / 2) + i;
}

int sp_gguf_permutes_qk(const sp_config *cfg) { return !cfg->qkv_bias; }

/* ---- the source -------------------------------------------------------------------------------- */

typedef struct {
    sp_model *m;       /* dense source, or NULL                      */
    sp_qcontainer *c;  /* container source, or NULL                  */
    sp_config cfg;
    char dir[PATH_MAX];
    int *bits;         /* container: the exported level of module i  */
    const sp_model *dense; /* opts.dense: float fallbacks from the original */
    const volatile sig_atomic_t *stop; /* opts.stop_flag              */
} src_t;

/* The container module of an HF weight name, or -1. */
static int module_of(const src_t *s, const char *hf) {
    if (!s->c) return -1;
    size_t n = strlen(hf);
    if (n < 8 || strcmp(hf + n - 7, ".weight") != 0) return -1;
    for (int i = 0; i < sp_qcontainer_n_modules(s->c); i++) {
        const char *m = sp_qcontainer_module_name(s->c, i);
        if (strlen(m) == n - 7 && !strncmp(m, hf, n - 7)) return i;
    }
    return -1;
}

static sp_status src_desc(const src_t *s, const char *hf, int *ndim, int64_t shape[2],
                          sp_err *err) {
    if (s->m) {
        sp_tensor_desc d;
        SP_FORWARD(sp_model_tensor_desc(s->m, hf, &d, err));
        *ndim = d.ndim;
        shape[0] = d.shape[0];
        shape[1] = d.ndim == 2 ? d.shape[1] : 1;
        return SP_OK;
    }
    int mi = module_of(s, hf);
    if (mi >= 0) {
        sp_qlevel_info lv;
        SP_FORWARD(sp_qcontainer_level_info(s->c, sp_qcontainer_module_name(s->c, mi),
                                            s->bits[mi], &lv, err));
        *ndim = 2;
        shape[0] = lv.rows;
        shape[1] = lv.cols;
        return SP_OK;
    }
    return sp_qcontainer_dense_desc(s->c, hf, ndim, shape, err);
}

static sp_status src_rows(const src_t *s, const char *hf, int64_t r0, int64_t n, float *dst,
                          sp_err *err) {
    if (s->m) return sp_model_read_rows(s->m, hf, r0, n, dst, err);
    int mi = module_of(s, hf);
    if (mi >= 0)
        return sp_qcontainer_read_qrows(s->c, sp_qcontainer_module_name(s->c, mi), s->bits[mi],
                                        r0, n, dst, err);
    return sp_qcontainer_read_dense_rows(s->c, hf, r0, n, dst, err);
}

/* ---- the plan ---------------------------------------------------------------------------------- */

typedef struct {
    char hf[192], gg[64];
    int type, ndim, permute;
    int module;    /* container module index, or -1                          */
    int exact;     /* 1: pack the container's codes (sp_gtype_pack_qrow)     */
    int rope;      /* 1: the rope_freqs tensor (computed, no source)         */
    int side_search; /* token_embd/output under opts.side_search              */
    int from_dense;  /* a float fallback read from opts.dense, not the levels */
    int64_t rows, cols;
} ent_t;

/* The GGUF type a stored level is exactly, or -1: a gtype level (Q4_1, Q5_1, K-quants) or a
 * plain symmetric group-32 level (Q4_0, Q5_0, Q8_0). */
static int level_type(const sp_qlevel_info *lv) {
    return lv->gtype ? lv->gtype
                     : sp_gtype_exact_of_level(lv->bits, lv->group_size, lv->sym, lv->cols);
}

static int fit_type_to(int t, int64_t cols, int flt);

int sp_gguf_level_export_type(const sp_qlevel_info *lv, int flt, int *exact) {
    *exact = 0;
    int t = level_type(lv);
    if (t >= 0) {
        *exact = 1;
        return t;
    }
    int k = lv->cols % 256 == 0, b = lv->bits;
    if (b >= 7) t = SP_GT_Q8_0;
    else if (b == 6) t = k ? SP_GT_Q6_K : SP_GT_Q8_0;
    else if (b == 5) t = k ? SP_GT_Q5_K : SP_GT_Q5_0;
    else t = k ? SP_GT_Q4_K : SP_GT_Q4_0;
    return fit_type_to(t, lv->cols, flt);
}

static int auto_linear(const src_t *s, int mi, int flt, int *exact) {
    *exact = 0;
    if (mi < 0) return SP_GT_F32;
    sp_qlevel_info lv;
    sp_err e;
    if (sp_qcontainer_level_info(s->c, sp_qcontainer_module_name(s->c, mi), s->bits[mi], &lv, &e))
        return SP_GT_F32;
    return sp_gguf_level_export_type(&lv, flt, exact);
}

/* A type whose block divides the row: K-quants fall back to the legacy type of one more bit
 * (as llama.cpp's quantizer does: Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0), legacy types to
 * `flt` (F16 for dense weights; F32 for container levels, whose GPTQ values s·(q − z) need up
 * to 11 + b significant bits, more than fp16 holds). */
static int fit_type_to(int t, int64_t cols, int flt) {
    if (sp_gtype_row_bytes(t, cols)) return t;
    if (t == SP_GT_Q4_K || t == SP_GT_Q3_K || t == SP_GT_Q2_K) t = SP_GT_Q5_0;
    else if (t == SP_GT_Q5_K) t = SP_GT_Q5_1;
    else if (t == SP_GT_Q6_K) t = SP_GT_Q8_0;
    return sp_gtype_row_bytes(t, cols) ? t : flt;
}
static int fit_type(int t, int64_t cols) { return fit_type_to(t, cols, SP_GT_F16); }

/* embeddings / output head: F32/F16 exports keep the float type, otherwise a fine type */
static int auto_side(int linear_type, int fine, int cols) {
    if (linear_type == SP_GT_F32 || linear_type == SP_GT_F16) return linear_type;
    if (sp_gtype_row_bytes(fine, cols)) return fine;
    if (sp_gtype_row_bytes(SP_GT_Q8_0, cols)) return SP_GT_Q8_0;
    return SP_GT_F16;
}

static sp_status add_ent(ent_t *e, int *n, const src_t *s, const char *hf, sp_err *err) {
    ent_t *x = &e[*n];
    memset(x, 0, sizeof *x);
    snprintf(x->hf, sizeof x->hf, "%s", hf);
    SP_RETURN_IF(sp_gguf_tensor_name(hf, x->gg, sizeof x->gg) != 0, err, SP_EINTERNAL,
                 "gguf: no llama.cpp name for %s", hf);
    int64_t shape[2];
    SP_FORWARD(src_desc(s, hf, &x->ndim, shape, err));
    x->rows = shape[0];
    x->cols = x->ndim == 2 ? shape[1] : shape[0];
    if (x->ndim == 1) x->rows = 1;
    x->module = module_of(s, hf);
    x->type = SP_GT_F32;
    (*n)++;
    return SP_OK;
}

static sp_status build_plan(const src_t *s, const sp_gguf_export_opts *o, ent_t *e, int *n,
                            sp_err *err) {
    const sp_config *c = &s->cfg;
    char name[192];
    int lin_first = -1;
    *n = 0;
    SP_FORWARD(add_ent(e, n, s, "model.embed_tokens.weight", err));
    SP_FORWARD(add_ent(e, n, s, "model.norm.weight", err));
    if (!c->tie_embeddings) SP_FORWARD(add_ent(e, n, s, "lm_head.weight", err));
    static const char *const per[] = {
        "input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
        "self_attn.v_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.bias",
        "self_attn.v_proj.bias", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
        "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"};
    for (int l = 0; l < c->n_layers; l++)
        for (size_t k = 0; k < sizeof per / sizeof per[0]; k++) {
            if (strstr(per[k], ".bias") && !c->qkv_bias) continue;
            snprintf(name, sizeof name, "model.layers.%d.%s", l, per[k]);
            if (lin_first < 0 && strstr(per[k], "proj.weight")) lin_first = *n;
            SP_FORWARD(add_ent(e, n, s, name, err));
        }
    /* linear types */
    int first_lin_type = -1;
    for (int i = 0; i < *n; i++) {
        ent_t *x = &e[i];
        if (!strstr(x->hf, "_proj.weight")) continue;
        int flt = x->module >= 0 && !o->f16_fallback ? SP_GT_F32 : SP_GT_F16;
        int exact = 0, t = auto_linear(s, x->module, flt, &exact);
        if (o->type >= 0) t = o->type;
        /* auto and --type fall back where the row is too short */
        t = fit_type_to(t, x->cols, flt);
        for (int k = 0; k < o->n_types; k++) {
            size_t ml = strlen(o->type_modules[k]);
            if (!strncmp(x->hf, o->type_modules[k], ml) && !strcmp(x->hf + ml, ".weight"))
                t = o->type_types[k]; /* the type map is taken as given */
        }
        if (x->module >= 0 && t >= 0) {
            sp_qlevel_info lv;
            SP_FORWARD(sp_qcontainer_level_info(s->c, sp_qcontainer_module_name(s->c, x->module),
                                                s->bits[x->module], &lv, err));
            x->exact = level_type(&lv) == t;
            /* a float row because no block fits the level (its own export type is a float) */
            int ex, lt = sp_gguf_level_export_type(&lv, SP_GT_F16, &ex);
            x->from_dense = s->dense && !x->exact && (t == SP_GT_F16 || t == SP_GT_F32) &&
                            (lt == SP_GT_F16 || lt == SP_GT_F32);
            sp_tensor_desc d;
            if (x->from_dense) {
                SP_FORWARD(sp_model_tensor_desc(s->dense, x->hf, &d, err));
                SP_RETURN_IF(d.ndim != 2 || d.shape[0] != x->rows || d.shape[1] != x->cols, err,
                             SP_EINVAL, "--dense-from: %s is not [%lld, %lld] there", x->hf,
                             (long long)x->rows, (long long)x->cols);
            }
        }
        x->type = t;
        x->permute = sp_gguf_permutes_qk(c) &&
                     (strstr(x->hf, "q_proj.weight") || strstr(x->hf, "k_proj.weight"));
        if (first_lin_type < 0) first_lin_type = t;
    }
    for (int k = 0; k < o->n_types; k++) {
        int found = 0;
        for (int i = 0; i < *n && !found; i++) {
            size_t ml = strlen(o->type_modules[k]);
            found = !strncmp(e[i].hf, o->type_modules[k], ml) && !strcmp(e[i].hf + ml, ".weight") &&
                    strstr(e[i].hf, "_proj.weight");
        }
        SP_RETURN_IF(!found, err, SP_EINVAL, "type map: %s is not a linear module of the model",
                     o->type_modules[k]);
    }
    if (first_lin_type < 0) first_lin_type = SP_GT_F32;
    for (int i = 0; i < *n; i++) {
        ent_t *x = &e[i];
        if (!strcmp(x->hf, "model.embed_tokens.weight"))
            x->type = fit_type(o->embed_type >= 0 ? o->embed_type : auto_side(first_lin_type, SP_GT_Q8_0, (int)x->cols), x->cols);
        else if (!strcmp(x->hf, "lm_head.weight"))
            x->type = fit_type(o->output_type >= 0 ? o->output_type : auto_side(first_lin_type, SP_GT_Q6_K, (int)x->cols), x->cols);
        x->side_search = o->side_search && (!strcmp(x->hf, "model.embed_tokens.weight") ||
                                            !strcmp(x->hf, "lm_head.weight"));
        SP_RETURN_IF(!sp_gtype_row_bytes(x->type, x->cols), err, SP_EINVAL,
                     "gguf: %s: rows of %lld values do not fit type %s (block of %d)", x->hf,
                     (long long)x->cols, sp_gtype_name(x->type), sp_gtype_block(x->type));
    }
    if (c->rope_scaling_llama3) {
        ent_t *x = &e[(*n)++];
        memset(x, 0, sizeof *x);
        snprintf(x->gg, sizeof x->gg, "rope_freqs.weight");
        x->rope = 1;
        x->ndim = 1;
        x->rows = 1;
        x->cols = c->head_dim / 2;
        x->type = SP_GT_F32;
        x->module = -1;
    }
    return SP_OK;
}

/* llama_ftype of the most common linear type (general.file_type; informative in llama.cpp) */
static uint32_t file_type(const ent_t *e, int n) {
    int count[64] = {0}, best = 0;
    for (int i = 0; i < n; i++)
        if (strstr(e[i].hf, "_proj.weight") && e[i].type < 64) count[e[i].type]++;
    for (int t = 0; t < 64; t++)
        if (count[t] > count[best]) best = t;
    switch (best) {
    case SP_GT_F16: return 1;
    case SP_GT_Q4_0: return 2;
    case SP_GT_Q4_1: return 3;
    case SP_GT_Q8_0: return 7;
    case SP_GT_Q5_0: return 8;
    case SP_GT_Q5_1: return 9;
    case SP_GT_Q2_K: return 10;
    case SP_GT_Q3_K: return 12;
    case SP_GT_Q4_K: return 15;
    case SP_GT_Q5_K: return 17;
    case SP_GT_Q6_K: return 18;
    case SP_GT_Q1_0: return 40; /* llama.h: LLAMA_FTYPE_MOSTLY_Q1_0 */
    case SP_GT_Q2_0: return 41; /* LLAMA_FTYPE_MOSTLY_Q2_0 */
    default: return 0;
    }
}

/* ---- metadata ---------------------------------------------------------------------------------- */

static sp_status put_meta(sp_gguf *g, const src_t *s, const ent_t *e, int n, sp_err *err) {
    const sp_config *c = &s->cfg;
    const char *arch = c->qkv_bias ? "qwen2" : "llama";
    char k[128];
    const char *base = strrchr(s->dir, '/');
    base = base && base[1] ? base + 1 : s->dir;
    SP_FORWARD(sp_gguf_kv_str(g, "general.architecture", arch, err));
    SP_FORWARD(sp_gguf_kv_str(g, "general.name", base, err));
    SP_FORWARD(sp_gguf_kv_u32(g, "general.alignment", SP_GGUF_ALIGNMENT, err));
    SP_FORWARD(sp_gguf_kv_u32(g, "general.file_type", file_type(e, n), err));
    SP_FORWARD(sp_gguf_kv_u32(g, "general.quantization_version", 2, err));
    if (c->rotation[0]) { /* issue 23: an ordinary model whose weights were rotated */
        char v[160];
        snprintf(v, sizeof v, "%s, seed %llu: RMSNorm weights folded into the linears (norms "
                 "all-ones), residual stream and v/o per head rotated", c->rotation,
                 c->rotation_seed);
        SP_FORWARD(sp_gguf_kv_str(g, "shardpress.rotation", v, err));
    }
#define KV_U32(name, v)                                                \
    do {                                                               \
        snprintf(k, sizeof k, "%s." name, arch);                       \
        SP_FORWARD(sp_gguf_kv_u32(g, k, (uint32_t)(v), err));          \
    } while (0)
    KV_U32("context_length", c->max_seq_len);
    KV_U32("embedding_length", c->dim);
    KV_U32("block_count", c->n_layers);
    KV_U32("feed_forward_length", c->hidden_dim);
    KV_U32("attention.head_count", c->n_heads);
    KV_U32("attention.head_count_kv", c->n_kv_heads);
    KV_U32("attention.key_length", c->head_dim);
    KV_U32("attention.value_length", c->head_dim);
    KV_U32("rope.dimension_count", c->head_dim);
    KV_U32("vocab_size", c->vocab_size);
#undef KV_U32
    snprintf(k, sizeof k, "%s.attention.layer_norm_rms_epsilon", arch);
    SP_FORWARD(sp_gguf_kv_f32(g, k, c->norm_eps, err));
    snprintf(k, sizeof k, "%s.rope.freq_base", arch);
    SP_FORWARD(sp_gguf_kv_f32(g, k, c->rope_theta, err));
    return sp_gguf_put_vocab(g, s->dir, c, err);
}

/* Llama 3 rope scaling as llama.cpp's per-frequency divisors: base frequency / scaled one,
 * with the scaled frequency as in kernels/sp_ops.c. */
static void rope_freqs(const sp_config *c, float *out) {
    double orig = c->rope_original_max_pos, lo = c->rope_low_freq_factor,
           hi = c->rope_high_freq_factor, factor = c->rope_factor;
    for (int i = 0; i < c->head_dim / 2; i++) {
        double f = pow((double)c->rope_theta, -2.0 * i / c->head_dim);
        double wl = 6.283185307179586476925286766559 / f, r;
        if (wl < orig / hi) r = 1.0;
        else if (wl > orig / lo) r = factor;
        else {
            double sm = (orig / wl - lo) / (hi - lo);
            r = f / ((1.0 - sm) * f / factor + sm * f);
        }
        out[i] = (float)r;
    }
}

/* ---- tensor data ------------------------------------------------------------------------------- */

static sp_status write_ent(sp_gguf *g, const src_t *s, const ent_t *x, sp_err *err) {
    size_t rb = sp_gtype_row_bytes(x->type, x->cols);
    const int hd = s->cfg.head_dim;
    sp_status st = SP_OK;
    if (x->rope) {
        float f[4096];
        rope_freqs(&s->cfg, f);
        return sp_gguf_write_data(g, f, (size_t)x->cols * 4, err);
    }
    uint8_t *row = sp_malloc(rb, err, "gguf row");
    if (!row) return SP_ENOMEM;
    if (x->exact) {
        sp_qlayer q;
        st = sp_qcontainer_read_qlayer(s->c, sp_qcontainer_module_name(s->c, x->module),
                                       s->bits[x->module], &q, err);
        for (int64_t r = 0; st == SP_OK && r < x->rows; r++) {
            int64_t sr = x->permute ? sp_gguf_qk_src_row(r, hd) : r;
            st = q.gtype ? sp_gtype_pack_level_row(&q, (int)sr, row, err)
                         : sp_gtype_pack_qrow(x->type, &q, (int)sr, row, err);
            if (st == SP_OK) st = sp_gguf_write_data(g, row, rb, err);
        }
        if (st != SP_OK) sp_err_prefix(err, "%s", x->hf);
        if (q.mem_) sp_qlayer_free(&q);
        free(row);
        return st;
    }
    /* float rows: the whole tensor when permuted, else chunks of up to 16 MiB */
    int64_t chunk = x->permute ? x->rows : (int64_t)((16u << 20) / ((size_t)x->cols * 4));
    if (chunk < 1) chunk = 1;
    if (chunk > x->rows) chunk = x->rows;
    float *buf = sp_malloc((size_t)chunk * (size_t)x->cols * 4, err, x->hf);
    if (!buf) {
        free(row);
        return SP_ENOMEM;
    }
    for (int64_t r0 = 0; st == SP_OK && r0 < x->rows; r0 += chunk) {
        int64_t nr = x->rows - r0 < chunk ? x->rows - r0 : chunk;
        st = x->from_dense ? sp_model_read_rows(s->dense, x->hf, r0, nr, buf, err)
                           : src_rows(s, x->hf, r0, nr, buf, err);
        for (int64_t r = 0; st == SP_OK && r < nr; r++) {
            int64_t sr = x->permute ? sp_gguf_qk_src_row(r, hd) : r;
            const float *v = buf + (size_t)sr * (size_t)x->cols;
            for (int64_t k = 0; k < x->cols; k++)
                if (!isfinite(v[k])) {
                    st = sp_err_set(err, SP_ENUMERIC, "%s: non-finite value at row %lld column "
                                    "%lld", x->hf, (long long)(r0 + sr), (long long)k);
                    break;
                }
            if (st == SP_OK)
                st = x->side_search ? sp_gtype_quantize_row_search(x->type, v, x->cols, NULL, row, err)
                                    : sp_gtype_quantize_row(x->type, v, x->cols, row, err);
            if (st == SP_OK) st = sp_gguf_write_data(g, row, rb, err);
        }
        /* re-quantizing a large tensor takes a while (Q2_K/Q3_K search per block) */
        if (st == SP_OK) st = sp_stop_check(s->stop, "export", err);
    }
    free(buf);
    free(row);
    return st;
}

/* ---- the export -------------------------------------------------------------------------------- */

static sp_status open_src(src_t *s, const char *path, const sp_gguf_export_opts *o, sp_err *err) {
    char cpath[PATH_MAX + 32];
    struct stat sb;
    snprintf(s->dir, sizeof s->dir, "%s", path);
    snprintf(cpath, sizeof cpath, "%s/%s", path, SP_QCONTAINER_FILE);
    if (stat(cpath, &sb) != 0) {
        SP_RETURN_IF(o->n_overrides > 0, err, SP_EINVAL, "%s: a bits map needs a quantized "
                     "container (this is a dense model)", path);
        SP_FORWARD(sp_model_open(&s->m, path, err));
        s->cfg = *sp_model_config(s->m);
        snprintf(s->dir, sizeof s->dir, "%s", sp_model_dir(s->m));
        return SP_OK;
    }
    char cfgp[PATH_MAX + 16];
    snprintf(cfgp, sizeof cfgp, "%s/config.json", path);
    SP_FORWARD(sp_config_load_json(&s->cfg, cfgp, err));
    SP_FORWARD(sp_qcontainer_open(&s->c, cpath, err));
    int nm = sp_qcontainer_n_modules(s->c), lv[SP_QCONTAINER_MAX_LEVELS], nl;
    if (!(s->bits = sp_calloc((size_t)nm + 1, sizeof *s->bits, err, "levels"))) return SP_ENOMEM;
    for (int i = 0; i < nm; i++)
        SP_FORWARD(sp_qcontainer_module_levels(s->c, sp_qcontainer_module_name(s->c, i), lv, &nl,
                                               &s->bits[i], err));
    for (int k = 0; k < o->n_overrides; k++) {
        int i = 0;
        while (i < nm && strcmp(sp_qcontainer_module_name(s->c, i), o->override_modules[k])) i++;
        SP_RETURN_IF(i == nm, err, SP_EINVAL, "%s: bits map names module %s, which is not stored",
                     cpath, o->override_modules[k]);
        sp_qlevel_info li;
        SP_FORWARD(sp_qcontainer_level_info(s->c, o->override_modules[k], o->override_bits[k], &li, err));
        s->bits[i] = o->override_bits[k];
    }
    return SP_OK;
}

sp_status sp_export_gguf(const char *model_path, const char *out_file,
                         const sp_gguf_export_opts *opts, sp_err *err) {
    sp_gguf_export_opts o;
    if (opts) o = *opts;
    else sp_gguf_export_opts_default(&o);
    src_t s;
    memset(&s, 0, sizeof s);
    sp_gguf *g = NULL;
    ent_t *e = NULL;
    int n = 0;
    sp_status st = open_src(&s, model_path, &o, err);
    s.stop = o.stop_flag;
    if (st == SP_OK && o.dense && !s.c)
        st = sp_err_set(err, SP_EINVAL, "%s: --dense-from needs a quantized container (this is "
                        "a dense model)", model_path);
    s.dense = o.dense;
    if (st == SP_OK && strcmp(s.cfg.arch, "LlamaForCausalLM") && strcmp(s.cfg.arch, "llama2c") &&
        strcmp(s.cfg.arch, "MistralForCausalLM") && strcmp(s.cfg.arch, "Qwen2ForCausalLM"))
        st = sp_err_set(err, SP_EUNSUPPORTED, "%s: architecture %s has no GGUF export",
                        model_path, s.cfg.arch);
    if (st == SP_OK && s.cfg.head_dim / 2 > 4096)
        st = sp_err_set(err, SP_EUNSUPPORTED, "%s: head_dim %d", model_path, s.cfg.head_dim);
    size_t cap = (size_t)s.cfg.n_layers * 12 + 8;
    if (st == SP_OK && !(e = sp_calloc(cap, sizeof *e, err, "gguf plan"))) st = SP_ENOMEM;
    if (st == SP_OK) st = build_plan(&s, &o, e, &n, err);
    if (st == SP_OK) st = sp_gguf_create(&g, out_file, o.force, err);
    if (st == SP_OK) st = put_meta(g, &s, e, n, err);
    for (int i = 0; st == SP_OK && i < n; i++) {
        int64_t ne[2] = {e[i].cols, e[i].rows};
        st = sp_gguf_add_tensor(g, e[i].gg, e[i].type, e[i].ndim == 2 ? 2 : 1, ne,
                                sp_gtype_row_bytes(e[i].type, e[i].cols) * (size_t)e[i].rows, err);
    }
    if (st == SP_OK) st = sp_gguf_begin(g, err);
    for (int i = 0; st == SP_OK && i < n; i++) {
        st = write_ent(g, &s, &e[i], err);
        if (st == SP_OK) st = sp_stop_check(s.stop, "export", err);
    }
    if (st == SP_OK) {
        st = sp_gguf_finish(g, err);
        g = NULL;
    }
    sp_gguf_free(g);
    free(e);
    free(s.bits);
    if (s.c) sp_qcontainer_discard(s.c);
    if (s.m) sp_model_close(s.m);
    return st;
}
