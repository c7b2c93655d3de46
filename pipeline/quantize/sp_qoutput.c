/* sp_qoutput.c — the output directory of quantize (rank 0 only).
 *
 *   begin    refuse an existing --out (unless --force), make "<out>.partial", and choose where
 *            block segments go: "<checkpoint dir>/blocks" (they must outlive a killed run) or
 *            "<out>.partial/blocks".
 *   (after each block, sp_quantize.c streams its modules at every level into a segment)
 *   finish   config.json + tokenizer + source.json (where the dense model is, for search) +
 *            model.sp.h5 (dense tensors — with --rotate the embedding rotated, the head folded,
 *            rotated and explicit, the norms all-ones, v's bias rotated — then every block's modules
 *            read back from its segment, in block order), then rename to <out>.
 * The container is written in one pass at the end, on the main thread, after the checkpoint
 * engine (the only other HDF5 user) has stopped; the same segments always give the same bytes,
 * which is what makes a resumed run's output identical to an uninterrupted one.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <limits.h>

#include "pipeline/quantize/sp_qrun.h"
#include "pipeline/quantize/sp_qshare.h"
#include "shards/formats/sp_qcontainer.h"
#include "pipeline/sp_outdir.h"
#include "pipeline/quantize/sp_quantize_int.h"
#include "pipeline/quantize/sp_segment.h"

sp_status sp_qoutput_begin(sp_qjob *j, sp_err *err) {
    const sp_quantize_opts *o = j->o;
    SP_FORWARD(sp_outdir_begin(o->out_dir, o->force, j->partial, sizeof j->partial, err));
    int n = o->checkpoint_dir
                ? snprintf(j->segdir, sizeof j->segdir, "%s/blocks", o->checkpoint_dir)
                : snprintf(j->segdir, sizeof j->segdir, "%s/blocks", j->partial);
    SP_RETURN_IF(n < 0 || (size_t)n >= sizeof j->segdir, err, SP_EINVAL, "%s: path too long",
                 o->checkpoint_dir ? o->checkpoint_dir : j->partial);
    if (o->checkpoint_dir)
        SP_FORWARD(sp_outdir_mkdirs(o->checkpoint_dir, "checkpoint directory", err));
    SP_RETURN_IF(mkdir(j->segdir, 0755) != 0 && errno != EEXIST, err, SP_EIO,
                 "%s: cannot create: %s", j->segdir, strerror(errno));
    return SP_OK;
}

/* A dense tensor as read from the model, passed through `edit` (NULL: as is) before it is
 * stored. */
typedef sp_status (*edit_fn)(sp_qjob *j, float *buf, int64_t rows, sp_err *err);

static sp_status put_dense_tensor(sp_qjob *j, sp_qcontainer *out, const char *name, int64_t rows,
                                  int64_t cols, edit_fn edit, sp_err *err) {
    float *buf = sp_malloc((size_t)rows * (size_t)cols * sizeof(float), err, name);
    if (!buf) return SP_ENOMEM;
    /* 1-D tensors (cols == 1) are read as one row of their length. */
    sp_status st = sp_model_read_rows(j->m, name, 0, cols > 1 ? rows : 1, buf, err);
    if (st == SP_OK && edit) st = edit(j, buf, rows, err);
    int64_t shape[2] = {rows, cols};
    if (st == SP_OK) st = sp_qcontainer_put_dense(out, name, cols > 1 ? 2 : 1, shape, buf, err);
    free(buf);
    return st;
}

/* --rotate (issue 23): what the block loop did to the blocks, done to the dense tensors. */
static sp_status edit_embed(sp_qjob *j, float *buf, int64_t rows, sp_err *err) {
    return sp_rotation_embed(&j->rot, buf, (size_t)rows, err); /* embed·Q */
}

static sp_status edit_ones(sp_qjob *j, float *buf, int64_t rows, sp_err *err) {
    (void)j, (void)err;
    for (int64_t i = 0; i < rows; i++) buf[i] = 1.0f; /* folded into the linears */
    return SP_OK;
}

static sp_status edit_v_bias(sp_qjob *j, float *buf, int64_t rows, sp_err *err) {
    (void)rows;
    return sp_rotation_v_bias(&j->rot, buf, j->c, err); /* Rᵀ b_h per KV head */
}

/* lm_head ← (head·diag(final norm))·Q, from lm_head or, tied, the embedding: always explicit. */
static sp_status put_rotated_head(sp_qjob *j, sp_qcontainer *out, sp_err *err) {
    const sp_config *c = j->c;
    size_t D = (size_t)c->dim, V = (size_t)c->vocab_size;
    float *head = sp_malloc(V * D * sizeof(float), err, "lm_head");
    float *norm = head ? sp_malloc(D * sizeof(float), err, "model.norm.weight") : NULL;
    sp_status st = norm ? SP_OK : SP_ENOMEM;
    if (st == SP_OK) st = sp_model_read_head_rows(j->m, 0, (int64_t)V, head, err);
    if (st == SP_OK) st = sp_model_read_final_norm(j->m, norm, err);
    if (st == SP_OK) st = sp_rotation_head(&j->rot, head, V, norm, c, err);
    int64_t shape[2] = {(int64_t)V, (int64_t)D};
    if (st == SP_OK) st = sp_qcontainer_put_dense(out, "lm_head.weight", 2, shape, head, err);
    free(head);
    free(norm);
    return st;
}

static sp_status put_dense(sp_qjob *j, sp_qcontainer *out, sp_err *err) {
    const sp_config *c = j->c;
    int64_t D = c->dim, V = c->vocab_size;
    int rot = j->rot.kind != SP_ROTATE_NONE;
    edit_fn ones = rot ? edit_ones : NULL;
    SP_FORWARD(put_dense_tensor(j, out, "model.embed_tokens.weight", V, D,
                                rot ? edit_embed : NULL, err));
    SP_FORWARD(put_dense_tensor(j, out, "model.norm.weight", D, 1, ones, err));
    if (rot) SP_FORWARD(put_rotated_head(j, out, err));
    else if (!c->tie_embeddings)
        SP_FORWARD(put_dense_tensor(j, out, "lm_head.weight", V, D, NULL, err));
    int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    for (int l = 0; l < c->n_layers; l++) {
        char name[256];
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        SP_FORWARD(put_dense_tensor(j, out, name, D, 1, ones, err));
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        SP_FORWARD(put_dense_tensor(j, out, name, D, 1, ones, err));
        if (c->qkv_bias) {
            const char *p[3] = {"q_proj", "k_proj", "v_proj"};
            int64_t n[3] = {q, kv, kv};
            for (int i = 0; i < 3; i++) {
                snprintf(name, sizeof name, "model.layers.%d.self_attn.%s.bias", l, p[i]);
                SP_FORWARD(put_dense_tensor(j, out, name, n[i], 1,
                                            rot && i == 2 ? edit_v_bias : NULL, err));
            }
        }
    }
    return SP_OK;
}

/* Every block's modules, read back from its segment one unit at a time (CRC checked against
 * the run's record first). */
typedef struct {
    sp_qcontainer *out;
    int layer;
} put_ctx;

static sp_status put_unit(void *ctx, int module, const sp_qlayer *q, sp_err *err) {
    put_ctx *p = ctx;
    char name[256];
    snprintf(name, sizeof name, "model.layers.%d.%s", p->layer, sp_module_suffix(module));
    return sp_qcontainer_put_qlayer(p->out, name, q, err);
}

static sp_status put_blocks(sp_qjob *j, sp_qcontainer *out, sp_err *err) {
    for (int l = 0; l < j->c->n_layers; l++) {
        put_ctx p = {out, l};
        SP_FORWARD(sp_segment_each(j->segdir, l, (uint32_t)j->block_crc[l], put_unit, &p, err));
    }
    return SP_OK;
}

/* source.json: the dense model this container came from (absolute path + the fingerprint of
 * sp_qrun.h), so `search` finds the dense reference and can tell when it changed. */
static sp_status write_source(const sp_qjob *j, const char *dir, sp_err *err) {
    const sp_quantize_opts *o = j->o;
    char abs[PATH_MAX], path[4600];
    uint32_t fp = 0;
    SP_RETURN_IF(!realpath(o->model_dir, abs), err, SP_EIO, "%s: %s", o->model_dir, strerror(errno));
    SP_FORWARD(sp_qrun_model_fingerprint(o->model_dir, &fp, err));
    /* The path is a JSON string: refuse the characters that would need escaping. */
    for (const char *c = abs; *c; c++)
        SP_RETURN_IF(*c == '"' || *c == '\\' || (unsigned char)*c < 0x20, err, SP_EUNSUPPORTED,
                     "%s: the model path has a character source.json cannot hold", abs);
    /* + the CRC of every tensor's values as the run read them (issue 21), for search --dense */
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "format", "shardpress-source");
    cJSON_AddNumberToObject(s, "version", 1);
    cJSON_AddStringToObject(s, "model_dir", abs);
    cJSON_AddNumberToObject(s, "model_fingerprint", (double)fp);
    cJSON *w = sp_qrun_weights_json(j->c, j->gcrc, j->wcrc);
    if (w) cJSON_AddItemToObject(s, "weights_crc", w);
    char *text = w ? cJSON_Print(s) : NULL;
    cJSON_Delete(s);
    SP_RETURN_IF(!text, err, SP_ENOMEM, "%s/source.json: out of memory", dir);
    snprintf(path, sizeof path, "%s/source.json", dir);
    sp_status st = sp_qrun_write_file(path, text, err);
    free(text);
    return st;
}

/* What the container will hold: raw bytes and datasets (a bound for
 * sp_qcontainer_check_space). Dense: embeddings (and lm_head), norms, biases in fp32; each
 * module at each level: the wire form (codes, scales, zeros) plus g_idx (int32 per column). */
static void container_size(const sp_qjob *j, uint64_t *bytes, uint64_t *datasets) {
    const sp_config *c = j->c;
    uint64_t D = (uint64_t)c->dim, V = (uint64_t)c->vocab_size, L = (uint64_t)c->n_layers;
    uint64_t q = (uint64_t)c->n_heads * c->head_dim, kv = (uint64_t)c->n_kv_heads * c->head_dim;
    int tied = c->tie_embeddings && !j->o->rotate; /* a rotated head is explicit */
    uint64_t f = V * D * (tied ? 1 : 2) + D +
                 L * (2 * D + (c->qkv_bias ? q + 2 * kv : 0));
    uint64_t b = 4 * f, n = 2 + !tied + L * (2 + (c->qkv_bias ? 3 : 0));
    for (int u = 0; u < j->n_units; u++) {
        const sp_unit *un = &j->units[u];
        int gs, sym, gt;
        sp_quantize_level(j->o, un->bits, un->cols, &gs, &sym, &gt);
        b += L * (sp_qshare_bytes(un->rows, un->cols, un->bits, gs, gt) + 4 * (uint64_t)un->cols);
        n += L * 4;
    }
    *bytes = b;
    *datasets = n;
}

sp_status sp_qoutput_finish(sp_qjob *j, sp_err *err) {
    const sp_quantize_opts *o = j->o;
    char path[4600];
    snprintf(path, sizeof path, "%s/config.json", j->partial);
    sp_config cfg = *j->c;
    if (o->rotate) { /* the rotated model: explicit lm_head, the rotation recorded */
        cfg.tie_embeddings = 0;
        snprintf(cfg.rotation, sizeof cfg.rotation, "%s", sp_rotate_name(o->rotate));
        cfg.rotation_seed = (unsigned long long)o->rotate_seed;
    }
    SP_FORWARD(sp_config_save_json(&cfg, path, NULL, err));
    SP_FORWARD(sp_outdir_copy_tokenizer(o->model_dir, j->partial, err));
    SP_FORWARD(write_source(j, j->partial, err));
    sp_qcontainer_meta meta = {.default_bits = o->bits, .group_size = o->group_size,
                               .sym = o->sym, .n_levels = o->n_levels};
    snprintf(meta.method, sizeof meta.method, "%s", o->rtn ? "rtn" : "gptq");
    memcpy(meta.levels, o->levels, sizeof(int) * (size_t)o->n_levels);
    snprintf(path, sizeof path, "%s/%s", j->partial, SP_QCONTAINER_FILE);
    uint64_t bytes = 0, datasets = 0;
    container_size(j, &bytes, &datasets);
    SP_FORWARD(sp_qcontainer_check_space(path, bytes, datasets, err));
    sp_qcontainer *out = NULL;
    SP_FORWARD(sp_qcontainer_create(&out, path, &meta, 0, err));
    sp_status st = put_dense(j, out, err);
    if (st == SP_OK) st = put_blocks(j, out, err);
    if (st != SP_OK) {
        sp_qcontainer_discard(out);
        return st;
    }
    SP_FORWARD(sp_qcontainer_close(out, err));
    if (!o->checkpoint_dir) sp_outdir_rmtree(j->segdir); /* the segments were scratch */
    return sp_outdir_commit(o->out_dir, o->force, err);
}

void sp_qoutput_abort(sp_qjob *j) {
    if (j->partial[0]) sp_outdir_abort(j->o->out_dir);
}
