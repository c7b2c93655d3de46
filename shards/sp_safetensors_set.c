/* sp_safetensors_set.c — a model's safetensors weights, single file or sharded by
 * model.safetensors.index.json, and the sp_model backend on top of it.
 *
 * Index format (Hugging Face):
 *   { "metadata": {...}, "weight_map": { "<tensor name>": "model-00001-of-00002.safetensors", ... } }
 * Each shard is mapped once however many tensors it holds; lookups go through one table of
 * (name -> shard, tensor) sorted by name.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "shards/sp_model_backend.h"
#include "shards/sp_safetensors.h"

typedef struct {
    const char *name;       /* points into the shard's tensor table */
    const sp_st_tensor *t;
    size_t file;
} st_entry;

struct sp_st_set {
    char *where;            /* model.safetensors or the index: named in messages */
    sp_st_file **files;
    size_t nfiles;
    st_entry *e;            /* sorted by name */
    size_t n;
};

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const st_entry *)a)->name, ((const st_entry *)b)->name);
}

void sp_st_set_close(sp_st_set *s) {
    if (!s) return;
    for (size_t i = 0; i < s->nfiles; i++) sp_safetensors_close(s->files[i]);
    free(s->files);
    free(s->e);
    free(s->where);
    free(s);
}

size_t sp_st_set_count(const sp_st_set *s) { return s->n; }
const char *sp_st_set_name(const sp_st_set *s, size_t i) { return i < s->n ? s->e[i].name : NULL; }

const sp_st_tensor *sp_st_set_find(const sp_st_set *s, const char *name, const char **file) {
    st_entry key = {.name = name};
    const st_entry *hit = bsearch(&key, s->e, s->n, sizeof *s->e, cmp_entry);
    if (!hit) return NULL;
    if (file) *file = sp_safetensors_path(s->files[hit->file]);
    return hit->t;
}

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* A single model.safetensors: every tensor of it. */
static sp_status set_from_file(sp_st_set *s, const char *path, sp_err *err) {
    s->files = sp_malloc(sizeof *s->files, err, "shard table");
    if (!s->files) return SP_ENOMEM;
    SP_FORWARD(sp_safetensors_open(&s->files[0], path, err));
    s->nfiles = 1;
    size_t n = sp_safetensors_count(s->files[0]);
    s->e = sp_calloc(n ? n : 1, sizeof *s->e, err, "tensor table");
    if (!s->e) return SP_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const sp_st_tensor *t = sp_safetensors_at(s->files[0], i);
        s->e[i] = (st_entry){.name = t->name, .t = t, .file = 0};
    }
    s->n = n; /* already sorted by name */
    return SP_OK;
}

/* The shard file named by the index: open it unless already open. *idx gets its slot. */
static sp_status shard_get(sp_st_set *s, const char *dir, const char *shard, const char *index,
                           const char *tensor, size_t *idx, sp_err *err) {
    SP_RETURN_IF(!shard[0] || shard[0] == '/' || strstr(shard, "..") != NULL, err, SP_EFORMAT,
                 "%s: weight_map['%s'] names shard '%s' outside the model directory", index, tensor,
                 shard);
    char path[4096];
    int w = snprintf(path, sizeof path, "%s/%s", dir, shard);
    SP_RETURN_IF(w < 0 || (size_t)w >= sizeof path, err, SP_EINVAL, "%s: shard path too long",
                 index);
    for (size_t i = 0; i < s->nfiles; i++) {
        if (strcmp(sp_safetensors_path(s->files[i]), path) == 0) {
            *idx = i;
            return SP_OK;
        }
    }
    sp_status st = sp_safetensors_open(&s->files[s->nfiles], path, err);
    if (st != SP_OK) return st;
    *idx = s->nfiles++;
    return SP_OK;
}

static sp_status set_from_index(sp_st_set *s, const char *dir, const char *index, sp_err *err) {
    char *text = NULL;
    size_t len = 0;
    sp_status st = sp_text_read_file(index, &text, &len, err);
    if (st != SP_OK) return st;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!root || !cJSON_IsObject(map)) {
        st = sp_err_set(err, SP_EFORMAT, "%s: %s", index,
                        root ? "missing object 'weight_map'" : "not valid JSON");
        goto done;
    }
    size_t n = (size_t)cJSON_GetArraySize(map);
    /* at most one shard per tensor */
    s->files = sp_calloc(n ? n : 1, sizeof *s->files, err, "shard table");
    s->e = sp_calloc(n ? n : 1, sizeof *s->e, err, "tensor table");
    if (!s->files || !s->e) {
        st = SP_ENOMEM;
        goto done;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, map) {
        if (!cJSON_IsString(it)) {
            st = sp_err_set(err, SP_EFORMAT, "%s: weight_map['%s'] is not a file name", index,
                            it->string);
            goto done;
        }
        size_t fi = 0;
        st = shard_get(s, dir, it->valuestring, index, it->string, &fi, err);
        if (st != SP_OK) goto done;
        const sp_st_tensor *t = sp_safetensors_find(s->files[fi], it->string);
        if (!t) {
            st = sp_err_set(err, SP_ENOTFOUND, "%s: tensor '%s' is listed in shard '%s', but %s "
                            "does not contain it", index, it->string, it->valuestring,
                            sp_safetensors_path(s->files[fi]));
            goto done;
        }
        s->e[s->n++] = (st_entry){.name = t->name, .t = t, .file = fi};
    }
    qsort(s->e, s->n, sizeof *s->e, cmp_entry);
    for (size_t i = 1; i < s->n; i++) {
        if (strcmp(s->e[i - 1].name, s->e[i].name) == 0) {
            st = sp_err_set(err, SP_EFORMAT, "%s: tensor '%s' appears twice in weight_map", index,
                            s->e[i].name);
            goto done;
        }
    }
done:
    cJSON_Delete(root);
    return st;
}

sp_status sp_st_set_open_dir(sp_st_set **out, const char *dir, sp_err *err) {
    *out = NULL;
    char single[4096], index[4096];
    int w1 = snprintf(single, sizeof single, "%s/model.safetensors", dir);
    int w2 = snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    SP_RETURN_IF(w1 < 0 || w2 < 0 || (size_t)w2 >= sizeof index, err, SP_EINVAL,
                 "%s: directory path too long", dir);
    int has_single = file_exists(single), has_index = file_exists(index);
    SP_RETURN_IF(!has_single && !has_index, err, SP_ENOTFOUND,
                 "%s: no model weights (expected model.safetensors or "
                 "model.safetensors.index.json)", dir);
    sp_st_set *s = sp_calloc(1, sizeof *s, err, "safetensors set");
    if (!s) return SP_ENOMEM;
    /* Like transformers: a single file wins over an index. */
    s->where = strdup(has_single ? single : index);
    sp_status st = !s->where ? sp_err_set(err, SP_ENOMEM, "%s: out of memory", dir)
                 : has_single ? set_from_file(s, single, err)
                              : set_from_index(s, dir, index, err);
    if (st != SP_OK) {
        sp_st_set_close(s);
        return st;
    }
    *out = s;
    return SP_OK;
}

/* ---- sp_model backend ----------------------------------------------------------------- */

static sp_status st_tensor_desc(void *ctx, const char *name, sp_tensor_desc *desc, sp_err *err) {
    const char *file = NULL;
    const sp_st_set *s = ctx;
    const sp_st_tensor *t = sp_st_set_find(s, name, &file);
    SP_RETURN_IF(!t, err, SP_ENOTFOUND, "%s: no tensor '%s'", s->where, name);
    SP_RETURN_IF(t->ndim < 1 || t->ndim > 2, err, SP_EUNSUPPORTED,
                 "%s: tensor '%s' has %d dims (expected 1 or 2)", file, name, t->ndim);
    desc->dtype = t->dtype;
    desc->ndim = t->ndim;
    desc->shape[0] = t->shape[0];
    desc->shape[1] = t->ndim == 2 ? t->shape[1] : 1;
    return SP_OK;
}

/* Rows are contiguous in a row-major tensor, so a row range is one conversion call. */
static sp_status st_read_rows(void *ctx, const char *name, int64_t row0, int64_t nrows,
                              float *dst, sp_err *err) {
    sp_tensor_desc d = {0}; /* zeroed: -O3 cannot see that st_tensor_desc fills it on SP_OK */
    SP_FORWARD(st_tensor_desc(ctx, name, &d, err));
    const char *file = NULL;
    const sp_st_tensor *t = sp_st_set_find(ctx, name, &file);
    int64_t rows = d.ndim == 2 ? d.shape[0] : 1, cols = d.ndim == 2 ? d.shape[1] : d.shape[0];
    SP_RETURN_IF(row0 < 0 || nrows < 0 || row0 > rows - nrows, err, SP_EINVAL,
                 "%s: tensor '%s': rows [%lld, %lld) out of range (%lld rows)", file, name,
                 (long long)row0, (long long)(row0 + nrows), (long long)rows);
    size_t es = sp_dtype_size(t->dtype);
    const unsigned char *src = (const unsigned char *)t->data + (size_t)row0 * (size_t)cols * es;
    sp_dtype_to_f32(dst, src, t->dtype, (size_t)nrows * (size_t)cols);
    return SP_OK;
}

static void st_close(void *ctx) { sp_st_set_close(ctx); }

static const sp_model_backend st_backend = {
    .name = "safetensors",
    .tensor_desc = st_tensor_desc,
    .read_rows = st_read_rows,
    .select_bits = NULL,
    .close = st_close,
};

sp_status sp_safetensors_probe(const char *dir, const sp_config *cfg, sp_config *cfg_out,
                               void **ctx, const sp_model_backend **be, sp_err *err) {
    sp_st_set *s = NULL;
    SP_FORWARD(sp_st_set_open_dir(&s, dir, err));
    *ctx = s;
    *be = &st_backend;
    return SP_OK;
}
