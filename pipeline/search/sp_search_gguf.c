/* sp_search_gguf.c — a llama.cpp GGUF file as a search budget (see sp_search_gguf.h). */
#include "pipeline/search/sp_search_gguf.h"

#include <stdio.h>
#include <string.h>

#include "shards/formats/sp_gguf_export.h"
#include "shards/formats/sp_gguf_read.h"
#include "shards/sp_model.h"

static sp_status expect(const char *path, const sp_gguf_info *g, const char *name, int64_t ne0,
                        int64_t ne1, const sp_gguf_tensor **out, sp_err *err) {
    const sp_gguf_tensor *t = sp_gguf_info_find(g, name);
    SP_RETURN_IF(!t, err, SP_EFORMAT, "%s: tensor '%s' is missing", path, name);
    SP_RETURN_IF(t->n_dims != 2 || t->ne[0] != ne0 || t->ne[1] != ne1, err, SP_EFORMAT,
                 "%s: tensor '%s' has shape [%lld, %lld], the model's is [%lld, %lld] (a GGUF "
                 "of another model?)", path, name, (long long)t->ne[0], (long long)t->ne[1],
                 (long long)ne0, (long long)ne1);
    *out = t;
    return SP_OK;
}

static void add_type(char *buf, size_t cap, int *seen, const int *count) {
    buf[0] = 0;
    for (int t = 0; t < 64; t++) {
        if (!seen[t]) continue;
        const char *nm;
        sp_gguf_type_traits(t, NULL, NULL, &nm);
        size_t n = strlen(buf);
        snprintf(buf + n, cap - n, "%s%s x%d", n ? " " : "", nm ? nm : "?", count[t]);
    }
}

static sp_status check(const char *path, const sp_gguf_info *g, const sp_config *c,
                       sp_gguf_match *m, sp_err *err) {
    SP_RETURN_IF(strcmp(g->arch, "llama") != 0, err, SP_EFORMAT, "%s: general.architecture is "
                 "'%s', not 'llama'", path, g->arch);
    int seen[64] = {0}, count[64] = {0};
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < SP_MOD_COUNT; k++) {
            char hf[128], gg[96];
            snprintf(hf, sizeof hf, "model.layers.%d.%s.weight", l, sp_module_suffix(k));
            if (sp_gguf_tensor_name(hf, gg, sizeof gg) != 0) return SP_EINTERNAL;
            int rows, cols;
            sp_module_shape(c, k, &rows, &cols);
            const sp_gguf_tensor *t = NULL; /* set by expect() on success (-O3 cannot see it) */
            SP_FORWARD(expect(path, g, gg, cols, rows, &t, err));
            m->block_bytes += t->nbytes;
            m->block_weights += (int64_t)rows * cols;
            if (t->type < 64) seen[t->type] = 1, count[t->type]++;
        }
    char extra[64];
    snprintf(extra, sizeof extra, "blk.%d.attn_q.weight", c->n_layers);
    SP_RETURN_IF(sp_gguf_info_find(g, extra), err, SP_EFORMAT, "%s: tensor '%s' exists: the file "
                 "has more blocks than the model's %d", path, extra, c->n_layers);
    const sp_gguf_tensor *e = NULL, *o = sp_gguf_info_find(g, "output.weight");
    SP_FORWARD(expect(path, g, "token_embd.weight", c->dim, c->vocab_size, &e, err));
    if (o) SP_FORWARD(expect(path, g, "output.weight", c->dim, c->vocab_size, &o, err));
    SP_RETURN_IF(!o && !c->tie_embeddings, err, SP_EFORMAT, "%s: tensor 'output.weight' is missing "
                 "(the model has an untied lm_head)", path);
    m->embed_type = e->type;
    m->embed_bytes = e->nbytes;
    m->output_type = o ? o->type : -1;
    m->output_bytes = o ? o->nbytes : 0;
    m->file_bytes = g->file_bytes;
    m->other_bytes = g->file_bytes - m->block_bytes - m->embed_bytes - m->output_bytes;
    m->file_type = g->file_type;
    m->target_bits = 8.0 * (double)m->block_bytes / (double)m->block_weights;
    add_type(m->types, sizeof m->types, seen, count);
    return SP_OK;
}

sp_status sp_gguf_match_read(const char *path, const sp_config *cfg, sp_gguf_match *m, sp_err *err) {
    memset(m, 0, sizeof *m);
    sp_gguf_info g;
    SP_FORWARD(sp_gguf_read_info(path, &g, err));
    sp_status st = check(path, &g, cfg, m, err);
    sp_gguf_info_free(&g);
    return st;
}
