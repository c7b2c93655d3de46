/* sp_gptq_export.c — container -> GPTQ-packed safetensors (see sp_gptq_export.h).
 *
 * Shape legend (per module): out = rows of W, in = cols, b bits, G groups,
 *   Wi = ceil(in·b/32) words per qweight column, Wo = ceil(out·b/32) words per qzeros row.
 *
 * Order of work: pick each module's level, build the quantization config, plan the shard
 * files from the known tensor sizes, then produce and write one shard at a time into a
 * temporary directory, add the JSON files and the tokenizer, and rename the directory.
 */
#include "shards/formats/sp_gptq_export.h"

#include "common/sp_stop.h"
#include "kernels/sp_gtype.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/sp_pack.h"
#include "shards/formats/sp_gptq_int.h"
#include "shards/sp_model.h"
#include "shards/formats/sp_qcontainer.h"
#include "shards/formats/sp_qmodel_int.h"
#include "shards/sp_safetensors.h"

/* One unit of the shard plan: a module (4 tensors) or a dense tensor. */
typedef struct {
    const char *name;
    int module;        /* index into the container's modules, or -1 for dense  */
    int bits;          /* chosen level (modules)                               */
    size_t bytes;      /* bytes of its tensors in the output                   */
    int shard;
} plan_item;

typedef struct {
    sp_st_write_tensor *t;
    void **bufs;
    char **names;
    size_t n, cap;
} shard_buf;

static void shard_clear(shard_buf *s) {
    for (size_t i = 0; i < s->n; i++) {
        free(s->bufs[i]);
        free(s->names[i]);
    }
    s->n = 0;
}

static void shard_free(shard_buf *s) {
    shard_clear(s);
    free(s->t);
    free(s->bufs);
    free(s->names);
}

/* Append a tensor whose data buffer (malloc'ed) and name become the shard's. */
static sp_status shard_add(shard_buf *s, const char *module, const char *suffix, sp_dtype dt,
                           int ndim, int64_t d0, int64_t d1, void *data, sp_err *err) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 32;
        sp_st_write_tensor *t = realloc(s->t, cap * sizeof *t);
        if (t) s->t = t;
        void **b = t ? realloc(s->bufs, cap * sizeof *b) : NULL;
        if (b) s->bufs = b;
        char **nm = b ? realloc(s->names, cap * sizeof *nm) : NULL;
        if (nm) s->names = nm;
        if (!nm) {
            free(data);
            return sp_err_set(err, SP_ENOMEM, "export: out of memory for the tensor list");
        }
        s->cap = cap;
    }
    size_t len = strlen(module) + strlen(suffix) + 1;
    char *name = malloc(len);
    if (!name) {
        free(data);
        return sp_err_set(err, SP_ENOMEM, "export: out of memory");
    }
    snprintf(name, len, "%s%s", module, suffix);
    sp_st_write_tensor *t = &s->t[s->n];
    memset(t, 0, sizeof *t);
    t->name = name;
    t->dtype = dt;
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->data = data;
    s->bufs[s->n] = data;
    s->names[s->n] = name;
    s->n++;
    return SP_OK;
}

/* Bytes of a module's four GPTQ tensors. */
static size_t module_bytes(const sp_qlevel_info *lv) {
    size_t in = (size_t)lv->cols, out = (size_t)lv->rows, G = (size_t)lv->n_groups;
    return 4 * (sp_pack_nwords(in, lv->bits) * out + G * sp_pack_nwords(out, lv->bits) + in) +
           2 * G * out;
}

sp_status sp_gptq_module_tensors(const sp_qlayer *q, const char *module, int v2,
                                 sp_gptq_packed *p, sp_err *err) {
    memset(p, 0, sizeof *p);
    const size_t in = (size_t)q->cols, out = (size_t)q->rows, G = (size_t)q->n_groups;
    const int b = q->bits;
    for (size_t i = 0; i < in; i++)
        SP_RETURN_IF(q->g_idx[i] != (int32_t)(i / (size_t)q->group_size), err, SP_EUNSUPPORTED,
                     "%s: g_idx[%zu]=%d is not %zu / group_size: only static groups in column "
                     "order can be exported as GPTQ with desc_act=false", module, i,
                     q->g_idx[i], i);
    p->wi = sp_pack_nwords(in, b);
    p->wo = sp_pack_nwords(out, b);
    p->qweight = sp_malloc(p->wi * out * 4, err, "qweight");
    p->qzeros = sp_malloc(G * p->wo * 4, err, "qzeros");
    p->scales = sp_malloc(G * out * 2, err, "scales");
    p->g_idx = sp_malloc(in * 4, err, "g_idx");
    uint8_t *zcol = sp_malloc(out, err, "zero points");
    uint32_t *blk = NULL;
    sp_status st = SP_ENOMEM;
    if (!p->qweight || !p->qzeros || !p->scales || !p->g_idx || !zcol) goto done;
    /* qweight column o holds the codes of W's row o along the input dim. Rows are packed in
     * blocks of 64 into contiguous words, then scattered column-wise a cache line at a time. */
    enum { BLOCK = 64 };
    blk = sp_malloc(BLOCK * p->wi * sizeof *blk, err, "qweight block");
    if (!blk) goto done;
    for (size_t o0 = 0; o0 < out; o0 += BLOCK) {
        size_t nb = out - o0 < BLOCK ? out - o0 : BLOCK;
        for (size_t j = 0; j < nb; j++)
            if ((st = sp_pack_bits(blk + j * p->wi, 1, q->codes + (o0 + j) * in, 1, in, b, err)))
                goto done;
        for (size_t w = 0; w < p->wi; w++)
            for (size_t j = 0; j < nb; j++) p->qweight[w * out + o0 + j] = blk[j * p->wi + w];
    }
    for (size_t g = 0; g < G; g++) {
        for (size_t o = 0; o < out; o++) {
            unsigned z = q->zeros[o * G + g];
            if (!v2 && z == 0) {
                st = sp_err_set(err, SP_EUNSUPPORTED, "%s: zero point 0 at row %zu group %zu "
                                "cannot be stored as zero-1 in the GPTQ v1 format (export with "
                                "checkpoint format gptq_v2)", module, o, g);
                goto done;
            }
            zcol[o] = (uint8_t)(v2 ? z : z - 1);
            float s = q->scales[o * G + g];
            uint16_t h = sp_f32_to_f16(s);
            if (!sp_qcontainer_f16_exact(s) || sp_f16_to_f32(h) != s) {
                st = sp_err_set(err, SP_EINVAL, "%s: scale %.9g at row %zu group %zu is not "
                                "fp16-representable", module, (double)s, o, g);
                goto done;
            }
            p->scales[g * out + o] = h;
        }
        if ((st = sp_pack_bits(p->qzeros + g * p->wo, 1, zcol, 1, out, b, err))) goto done;
    }
    for (size_t i = 0; i < in; i++) p->g_idx[i] = q->g_idx[i];
    st = SP_OK;
done:
    free(zcol);
    free(blk);
    if (st != SP_OK) sp_gptq_packed_free(p);
    return st;
}

void sp_gptq_packed_free(sp_gptq_packed *p) {
    free(p->qweight);
    free(p->qzeros);
    free(p->scales);
    free(p->g_idx);
    memset(p, 0, sizeof *p);
}

/* Add one plan item's tensors to the shard. */
static sp_status add_item(sp_qcontainer *c, const plan_item *it, int v2, shard_buf *s,
                          sp_err *err) {
    if (it->module < 0) {
        int ndim;
        int64_t shape[2];
        SP_FORWARD(sp_qcontainer_dense_desc(c, it->name, &ndim, shape, err));
        int64_t rows = ndim == 2 ? shape[0] : 1;
        float *buf = sp_malloc((size_t)shape[0] * (size_t)shape[1] * 4, err, it->name);
        if (!buf) return SP_ENOMEM;
        sp_status st = sp_qcontainer_read_dense_rows(c, it->name, 0, rows, buf, err);
        if (st != SP_OK) {
            free(buf);
            return st;
        }
        return shard_add(s, it->name, "", SP_DTYPE_F32, ndim, shape[0], shape[1], buf, err);
    }
    sp_qlayer q;
    SP_FORWARD(sp_qcontainer_read_qlayer(c, it->name, it->bits, &q, err));
    if (q.gtype) { /* offsets and fp32 product scales have no place in GPTQ's tensors */
        const char *tn = sp_gtype_name(q.gtype);
        sp_qlayer_free(&q);
        return sp_err_set(err, SP_EUNSUPPORTED, "%s: %s: the %d-bit level is GGUF type %s, which "
                          "the GPTQ format cannot hold (export it with --format gguf)",
                          sp_qcontainer_path(c), it->name, it->bits, tn);
    }
    sp_gptq_packed p;
    sp_status st = sp_gptq_module_tensors(&q, it->name, v2, &p, err);
    int64_t in = q.cols, out = q.rows, G = q.n_groups;
    sp_qlayer_free(&q);
    if (st != SP_OK) return sp_err_prefix(err, "%s: %d-bit level", sp_qcontainer_path(c), it->bits);
    /* shard_add takes each buffer, also on failure; later ones are freed here. */
    st = shard_add(s, it->name, ".qweight", SP_DTYPE_I32, 2, (int64_t)p.wi, out, p.qweight, err);
    p.qweight = NULL;
    if (st == SP_OK)
        st = shard_add(s, it->name, ".qzeros", SP_DTYPE_I32, 2, G, (int64_t)p.wo, p.qzeros, err);
    p.qzeros = NULL;
    if (st == SP_OK)
        st = shard_add(s, it->name, ".scales", SP_DTYPE_F16, 2, G, out, p.scales, err);
    p.scales = NULL;
    if (st == SP_OK) st = shard_add(s, it->name, ".g_idx", SP_DTYPE_I32, 1, in, 0, p.g_idx, err);
    p.g_idx = NULL;
    return st;
}

static int cmp_item(const void *a, const void *b) {
    return strcmp(((const plan_item *)a)->name, ((const plan_item *)b)->name);
}

/* ---- files and directories ------------------------------------------------------------------ */

static sp_status read_all(const char *path, char **buf, size_t *len, sp_err *err) {
    *buf = NULL;
    FILE *f = fopen(path, "rb");
    SP_RETURN_IF(!f, err, SP_EIO, "%s: cannot open: %s", path, strerror(errno));
    sp_status st = SP_OK;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || sb.st_size < 0) {
        st = sp_err_set(err, SP_EIO, "%s: cannot stat: %s", path, strerror(errno));
        goto done;
    }
    *len = (size_t)sb.st_size;
    if (!(*buf = sp_malloc(*len + 1, err, path))) {
        st = SP_ENOMEM;
        goto done;
    }
    if (fread(*buf, 1, *len, f) != *len) {
        st = sp_err_set(err, SP_EIO, "%s: short read", path);
        free(*buf);
        *buf = NULL;
        goto done;
    }
    (*buf)[*len] = '\0';
done:
    fclose(f);
    return st;
}

/* Remove a directory tree (the export's own temporary or replaced directory). */
static void remove_tree(const char *path) {
    DIR *d = opendir(path);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            char sub[PATH_MAX];
            struct stat sb;
            int n = snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
            if (n < 0 || (size_t)n >= sizeof sub) continue;
            if (lstat(sub, &sb) == 0 && S_ISDIR(sb.st_mode)) remove_tree(sub);
            else (void)unlink(sub);
        }
        closedir(d);
    }
    (void)rmdir(path);
}

static sp_status write_text(const char *dir, const char *name, const char *text, sp_err *err) {
    char path[PATH_MAX];
    SP_FORWARD(sp_qmodel_join(path, sizeof path, dir, name, err));
    const void *bufs[1] = {text};
    size_t lens[1] = {strlen(text)};
    return sp_shards_write_atomic(path, bufs, lens, 1, err);
}

/* Copy the tokenizer files that exist in src (tok<V>.bin is llama2.c's tokenizer). */
static sp_status copy_tokenizer(const char *src, const char *dst, int vocab, sp_err *err) {
    static const char *names[] = {"tokenizer.json",    "tokenizer.model",
                                  "tokenizer_config.json", "special_tokens_map.json",
                                  "generation_config.json", "added_tokens.json",
                                  "vocab.json",        "merges.txt",
                                  "tokenizer.bin",     NULL};
    char tokbin[32];
    snprintf(tokbin, sizeof tokbin, "tok%d.bin", vocab);
    for (int i = 0; i <= (int)(sizeof names / sizeof names[0]) - 1; i++) {
        const char *nm = names[i] ? names[i] : tokbin;
        char from[PATH_MAX], to[PATH_MAX];
        SP_FORWARD(sp_qmodel_join(from, sizeof from, src, nm, err));
        SP_FORWARD(sp_qmodel_join(to, sizeof to, dst, nm, err));
        if (access(from, F_OK) != 0) continue;
        char *buf;
        size_t len;
        SP_FORWARD(read_all(from, &buf, &len, err));
        const void *bufs[1] = {buf};
        sp_status st = sp_shards_write_atomic(to, bufs, &len, 1, err);
        free(buf);
        SP_FORWARD(st);
    }
    return SP_OK;
}

/* Publish tmp as outdir; an existing outdir (force) is moved aside first and removed after. */
static sp_status commit_dir(const char *tmp, const char *outdir, sp_err *err) {
    SP_RETURN_IF(chmod(tmp, 0755) != 0, err, SP_EIO, "%s: chmod: %s", tmp, strerror(errno));
    char old[PATH_MAX] = "";
    if (access(outdir, F_OK) == 0) {
        int n = snprintf(old, sizeof old, "%s.old.XXXXXX", outdir);
        SP_RETURN_IF(n < 0 || (size_t)n >= sizeof old, err, SP_EINVAL, "%s: path too long", outdir);
        SP_RETURN_IF(!mkdtemp(old), err, SP_EIO, "%s: cannot create %s: %s", outdir, old,
                     strerror(errno));
        /* rename onto the empty placeholder directory replaces it */
        if (rename(outdir, old) != 0) {
            int e = errno;
            (void)rmdir(old);
            return sp_err_set(err, SP_EIO, "%s: cannot move the old export aside: %s", outdir,
                              strerror(e));
        }
    }
    if (rename(tmp, outdir) != 0) {
        int e = errno;
        if (old[0]) (void)rename(old, outdir);
        return sp_err_set(err, SP_EIO, "%s: cannot rename %s to it: %s", outdir, tmp,
                          strerror(e));
    }
    if (old[0]) remove_tree(old);
    return SP_OK;
}

/* ---- the export ----------------------------------------------------------------------------- */

static sp_status choose_levels(sp_qcontainer *c, const sp_gptq_export_opts *o, int *bits,
                               sp_err *err) {
    int n = sp_qcontainer_n_modules(c), levels[SP_QCONTAINER_MAX_LEVELS], nl;
    for (int i = 0; i < n; i++)
        SP_FORWARD(sp_qcontainer_module_levels(c, sp_qcontainer_module_name(c, i), levels, &nl,
                                               &bits[i], err));
    for (int k = 0; k < o->n_overrides; k++) {
        const char *m = o->override_modules[k];
        int i = 0;
        while (i < n && strcmp(sp_qcontainer_module_name(c, i), m) != 0) i++;
        SP_RETURN_IF(i == n, err, SP_EINVAL, "%s: override names module %s, which is not stored",
                     sp_qcontainer_path(c), m);
        sp_qlevel_info lv;
        SP_FORWARD(sp_qcontainer_level_info(c, m, o->override_bits[k], &lv, err));
        bits[i] = o->override_bits[k];
    }
    return SP_OK;
}

static sp_status check_outdir(const char *container_dir, const char *outdir, int force,
                              sp_err *err) {
    struct stat a, b;
    if (stat(outdir, &b) != 0) return SP_OK;
    SP_RETURN_IF(!force, err, SP_EEXIST, "%s: already exists (use --force to replace it)",
                 outdir);
    SP_RETURN_IF(!S_ISDIR(b.st_mode), err, SP_EEXIST, "%s: exists and is not a directory",
                 outdir);
    SP_RETURN_IF(stat(container_dir, &a) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino,
                 err, SP_EINVAL, "%s: is the container directory itself; export elsewhere",
                 outdir);
    return SP_OK;
}

/* Write the planned shards (and the index when there are several) into tmp; a raised stop
 * flag ends it at the next module (the caller removes tmp). */
static sp_status write_shards(sp_qcontainer *c, const plan_item *items, int n_items,
                              int n_shards, int v2, const char *tmp,
                              const volatile sig_atomic_t *stop, sp_err *err) {
    shard_buf s = {0};
    sp_status st = SP_OK;
    cJSON *index = cJSON_CreateObject(), *wmap = NULL, *meta = NULL;
    char *text = NULL;
    double total = 0;
    if (!index || !(meta = cJSON_AddObjectToObject(index, "metadata")) ||
        !(wmap = cJSON_AddObjectToObject(index, "weight_map"))) {
        st = sp_err_set(err, SP_ENOMEM, "export: out of memory");
        goto done;
    }
    for (int sh = 0, k = 0; sh < n_shards; sh++) {
        char fname[64], path[PATH_MAX];
        if (n_shards == 1) snprintf(fname, sizeof fname, "model.safetensors");
        else snprintf(fname, sizeof fname, "model-%05d-of-%05d.safetensors", sh + 1, n_shards);
        for (; k < n_items && items[k].shard == sh; k++)
            if ((st = add_item(c, &items[k], v2, &s, err)) ||
                (st = sp_stop_check(stop, "export", err)))
                goto done;
        if ((st = sp_qmodel_join(path, sizeof path, tmp, fname, err)) ||
            (st = sp_safetensors_write(path, s.t, s.n, "{\"format\":\"pt\"}", err)))
            goto done;
        for (size_t i = 0; i < s.n; i++) {
            size_t nb = sp_dtype_size(s.t[i].dtype);
            for (int d = 0; d < s.t[i].ndim; d++) nb *= (size_t)s.t[i].shape[d];
            total += (double)nb;
            if (!cJSON_AddStringToObject(wmap, s.t[i].name, fname)) {
                st = sp_err_set(err, SP_ENOMEM, "export: out of memory");
                goto done;
            }
        }
        shard_clear(&s);
    }
    if (n_shards > 1) {
        if (!cJSON_AddNumberToObject(meta, "total_size", total) ||
            !(text = cJSON_Print(index))) {
            st = sp_err_set(err, SP_ENOMEM, "export: out of memory");
            goto done;
        }
        st = write_text(tmp, "model.safetensors.index.json", text, err);
    }
done:
    shard_free(&s);
    cJSON_Delete(index);
    cJSON_free(text);
    return st;
}

sp_status sp_export_gptq(const char *container_dir, const char *outdir,
                         const sp_gptq_export_opts *opts, sp_err *err) {
    sp_gptq_export_opts o = {0};
    if (opts) o = *opts;
    if (o.shard_bytes == 0) o.shard_bytes = (size_t)4 << 30;
    SP_FORWARD(check_outdir(container_dir, outdir, o.force, err));
    char path[PATH_MAX], tmp[PATH_MAX] = "";
    SP_FORWARD(sp_qmodel_join(path, sizeof path, container_dir, SP_QCONTAINER_FILE, err));
    sp_qcontainer *c = NULL;
    SP_FORWARD(sp_qcontainer_open(&c, path, err));
    int nm = sp_qcontainer_n_modules(c), nd = sp_qcontainer_n_dense(c), n_items = nm + nd;
    int *bits = sp_calloc((size_t)nm, sizeof *bits, err, "levels");
    plan_item *items = sp_calloc((size_t)n_items, sizeof *items, err, "export plan");
    char *cfg_text = NULL, *qtext = NULL, *ctext = NULL;
    cJSON *qcfg = NULL, *cfg = NULL;
    sp_status st = SP_ENOMEM;
    if (!bits || !items) goto done;
    if ((st = choose_levels(c, &o, bits, err))) goto done;
    for (int i = 0; i < nm; i++) {
        sp_qlevel_info lv;
        const char *m = sp_qcontainer_module_name(c, i);
        if ((st = sp_qcontainer_level_info(c, m, bits[i], &lv, err))) goto done;
        items[i] = (plan_item){.name = m, .module = i, .bits = bits[i], .bytes = module_bytes(&lv)};
    }
    for (int i = 0; i < nd; i++) {
        int ndim;
        int64_t shape[2];
        const char *name = sp_qcontainer_dense_name(c, i);
        if ((st = sp_qcontainer_dense_desc(c, name, &ndim, shape, err))) goto done;
        items[nm + i] = (plan_item){.name = name, .module = -1,
                                    .bytes = 4 * (size_t)shape[0] * (size_t)shape[1]};
    }
    qsort(items, (size_t)n_items, sizeof *items, cmp_item);
    int n_shards = 0;
    size_t cur = 0;
    for (int i = 0; i < n_items; i++) {
        if (n_shards == 0 || (cur > 0 && cur + items[i].bytes > o.shard_bytes)) {
            n_shards++;
            cur = 0;
        }
        items[i].shard = n_shards - 1;
        cur += items[i].bytes;
    }
    if (n_shards == 0) n_shards = 1;
    /* the quantization config, and config.json with it */
    if ((st = sp_gptq_build_config(c, bits, o.checkpoint_v2, &qcfg, err))) goto done;
    char cfg_path[PATH_MAX];
    size_t cfg_len;
    if ((st = sp_qmodel_join(cfg_path, sizeof cfg_path, container_dir, "config.json", err)) ||
        (st = read_all(cfg_path, &cfg_text, &cfg_len, err)))
        goto done;
    cfg = cJSON_Parse(cfg_text);
    if (!cJSON_IsObject(cfg)) {
        st = sp_err_set(err, SP_EFORMAT, "%s: not a JSON object", cfg_path);
        goto done;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, "quantization_config");
    cJSON *dup = cJSON_Duplicate(qcfg, 1);
    if (!dup || !cJSON_AddItemToObject(cfg, "quantization_config", dup) ||
        !(qtext = cJSON_Print(qcfg)) || !(ctext = cJSON_Print(cfg))) {
        if (dup && !cJSON_GetObjectItemCaseSensitive(cfg, "quantization_config")) cJSON_Delete(dup);
        st = sp_err_set(err, SP_ENOMEM, "export: out of memory");
        goto done;
    }
    const cJSON *vs = cJSON_GetObjectItemCaseSensitive(cfg, "vocab_size");
    int n = snprintf(tmp, sizeof tmp, "%s.partial.XXXXXX", outdir);
    if (n < 0 || (size_t)n >= sizeof tmp || !mkdtemp(tmp)) {
        st = sp_err_set(err, SP_EIO, "%s: cannot create a temporary directory beside it: %s",
                        outdir, strerror(errno));
        tmp[0] = '\0';
        goto done;
    }
    if ((st = write_shards(c, items, n_items, n_shards, o.checkpoint_v2, tmp, o.stop_flag, err)) ||
        (st = write_text(tmp, "quantize_config.json", qtext, err)) ||
        (st = write_text(tmp, "config.json", ctext, err)) ||
        (st = copy_tokenizer(container_dir, tmp, cJSON_IsNumber(vs) ? vs->valueint : 0, err)))
        goto done;
    st = commit_dir(tmp, outdir, err);
    if (st == SP_OK) tmp[0] = '\0';
done:
    if (tmp[0]) remove_tree(tmp);
    sp_qcontainer_discard(c);
    cJSON_Delete(qcfg);
    cJSON_Delete(cfg);
    cJSON_free(qtext);
    cJSON_free(ctext);
    free(cfg_text);
    free(items);
    free(bits);
    return st;
}
