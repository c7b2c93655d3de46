/* sp_gguf.c — GGUF v3 writer (see sp_gguf.h). The metadata is serialised into one growing
 * buffer as the kv_* calls come (so it is written in call order); tensor infos are kept until
 * begin, when their offsets are known. */
#include "shards/formats/sp_gguf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GGUF_MAGIC 0x46554747u
#define GGUF_VERSION 3u
#define MAX_NAME 64 /* GGML_MAX_NAME: llama.cpp refuses longer tensor names */

typedef struct {
    char name[MAX_NAME];
    int type, n_dims;
    int64_t ne[4];
    size_t nbytes;
    uint64_t offset;
} tinfo;

struct sp_gguf {
    char path[4096], partial[4112];
    int force;
    uint8_t *kv;
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    char **keys;
    tinfo *t;
    size_t n_t, cap_t;
    FILE *f;
    size_t cur, cur_done; /* tensor being written, bytes of it done */
    uint64_t data_pos;    /* bytes written into the data section    */
};

static uint64_t align_up(uint64_t x) {
    return (x + SP_GGUF_ALIGNMENT - 1) / SP_GGUF_ALIGNMENT * SP_GGUF_ALIGNMENT;
}

sp_status sp_gguf_create(sp_gguf **out, const char *path, int force, sp_err *err) {
    *out = NULL;
    SP_RETURN_IF(!force && access(path, F_OK) == 0, err, SP_EEXIST,
                 "%s: already exists (use --force to replace it)", path);
    SP_RETURN_IF(strlen(path) >= 4096, err, SP_EINVAL, "%s: path too long", path);
    sp_gguf *g = sp_calloc(1, sizeof *g, err, "gguf writer");
    if (!g) return SP_ENOMEM;
    snprintf(g->path, sizeof g->path, "%s", path);
    snprintf(g->partial, sizeof g->partial, "%s.partial", path);
    g->force = force;
    *out = g;
    return SP_OK;
}

void sp_gguf_free(sp_gguf *g) {
    if (!g) return;
    if (g->f) {
        fclose(g->f);
        (void)unlink(g->partial);
    }
    for (uint64_t i = 0; i < g->n_kv; i++) free(g->keys[i]);
    free(g->keys);
    free(g->kv);
    free(g->t);
    free(g);
}

/* ---- metadata serialisation ------------------------------------------------------------------ */

static sp_status put(sp_gguf *g, const void *p, size_t n, sp_err *err) {
    if (g->kv_len + n > g->kv_cap) {
        size_t cap = g->kv_cap ? g->kv_cap : 4096;
        while (cap < g->kv_len + n) cap *= 2;
        uint8_t *b = realloc(g->kv, cap);
        SP_RETURN_IF(!b, err, SP_ENOMEM, "%s: out of memory for the GGUF metadata", g->path);
        g->kv = b;
        g->kv_cap = cap;
    }
    memcpy(g->kv + g->kv_len, p, n);
    g->kv_len += n;
    return SP_OK;
}
static sp_status put_u32(sp_gguf *g, uint32_t v, sp_err *err) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return put(g, b, 4, err);
}
static sp_status put_u64(sp_gguf *g, uint64_t v, sp_err *err) {
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
    return put(g, b, 8, err);
}
static sp_status put_str(sp_gguf *g, const char *s, sp_err *err) {
    size_t n = strlen(s);
    SP_FORWARD(put_u64(g, n, err));
    return put(g, s, n, err);
}
static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* The key with its type; refuses a key given twice. */
static sp_status key(sp_gguf *g, const char *k, uint32_t type, sp_err *err) {
    SP_RETURN_IF(g->f, err, SP_EINVAL, "%s: metadata key %s added after the header", g->path, k);
    for (uint64_t i = 0; i < g->n_kv; i++)
        SP_RETURN_IF(!strcmp(g->keys[i], k), err, SP_EINVAL, "%s: metadata key %s given twice",
                     g->path, k);
    char **keys = realloc(g->keys, (size_t)(g->n_kv + 1) * sizeof *keys);
    SP_RETURN_IF(!keys, err, SP_ENOMEM, "%s: out of memory", g->path);
    g->keys = keys;
    SP_RETURN_IF(!(keys[g->n_kv] = strdup(k)), err, SP_ENOMEM, "%s: out of memory", g->path);
    g->n_kv++;
    SP_FORWARD(put_str(g, k, err));
    return put_u32(g, type, err);
}

sp_status sp_gguf_kv_u32(sp_gguf *g, const char *k, uint32_t v, sp_err *err) {
    SP_FORWARD(key(g, k, SP_GGUF_U32, err));
    return put_u32(g, v, err);
}
sp_status sp_gguf_kv_i32(sp_gguf *g, const char *k, int32_t v, sp_err *err) {
    SP_FORWARD(key(g, k, SP_GGUF_I32, err));
    return put_u32(g, (uint32_t)v, err);
}
sp_status sp_gguf_kv_f32(sp_gguf *g, const char *k, float v, sp_err *err) {
    SP_FORWARD(key(g, k, SP_GGUF_F32, err));
    return put_u32(g, f32_bits(v), err);
}
sp_status sp_gguf_kv_bool(sp_gguf *g, const char *k, int v, sp_err *err) {
    SP_FORWARD(key(g, k, SP_GGUF_BOOL, err));
    uint8_t b = v ? 1 : 0;
    return put(g, &b, 1, err);
}
sp_status sp_gguf_kv_str(sp_gguf *g, const char *k, const char *v, sp_err *err) {
    SP_FORWARD(key(g, k, SP_GGUF_STRING, err));
    return put_str(g, v, err);
}
sp_status sp_gguf_kv_arr_str(sp_gguf *g, const char *k, const char *const *v, size_t n,
                             sp_err *err) {
    SP_FORWARD(key(g, k, SP_GGUF_ARRAY, err));
    SP_FORWARD(put_u32(g, SP_GGUF_STRING, err));
    SP_FORWARD(put_u64(g, n, err));
    for (size_t i = 0; i < n; i++) SP_FORWARD(put_str(g, v[i], err));
    return SP_OK;
}
sp_status sp_gguf_kv_arr_f32(sp_gguf *g, const char *k, const float *v, size_t n, sp_err *err) {
    SP_FORWARD(key(g, k, SP_GGUF_ARRAY, err));
    SP_FORWARD(put_u32(g, SP_GGUF_F32, err));
    SP_FORWARD(put_u64(g, n, err));
    for (size_t i = 0; i < n; i++) SP_FORWARD(put_u32(g, f32_bits(v[i]), err));
    return SP_OK;
}
sp_status sp_gguf_kv_arr_i32(sp_gguf *g, const char *k, const int32_t *v, size_t n,
                             sp_err *err) {
    SP_FORWARD(key(g, k, SP_GGUF_ARRAY, err));
    SP_FORWARD(put_u32(g, SP_GGUF_I32, err));
    SP_FORWARD(put_u64(g, n, err));
    for (size_t i = 0; i < n; i++) SP_FORWARD(put_u32(g, (uint32_t)v[i], err));
    return SP_OK;
}

/* ---- tensors ----------------------------------------------------------------------------------- */

sp_status sp_gguf_add_tensor(sp_gguf *g, const char *name, int type, int n_dims,
                             const int64_t *ne, size_t nbytes, sp_err *err) {
    SP_RETURN_IF(g->f, err, SP_EINVAL, "%s: tensor %s added after the header", g->path, name);
    SP_RETURN_IF(strlen(name) >= MAX_NAME, err, SP_EINVAL,
                 "%s: tensor name %s is longer than %d bytes", g->path, name, MAX_NAME - 1);
    SP_RETURN_IF(n_dims < 1 || n_dims > 4, err, SP_EINVAL, "%s: tensor %s: %d dimensions",
                 g->path, name, n_dims);
    for (size_t i = 0; i < g->n_t; i++)
        SP_RETURN_IF(!strcmp(g->t[i].name, name), err, SP_EINVAL, "%s: tensor %s given twice",
                     g->path, name);
    if (g->n_t == g->cap_t) {
        size_t cap = g->cap_t ? 2 * g->cap_t : 64;
        tinfo *t = realloc(g->t, cap * sizeof *t);
        SP_RETURN_IF(!t, err, SP_ENOMEM, "%s: out of memory", g->path);
        g->t = t;
        g->cap_t = cap;
    }
    tinfo *t = &g->t[g->n_t++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < n_dims; d++) t->ne[d] = ne[d];
    t->nbytes = nbytes;
    return SP_OK;
}

static sp_status fwrite_all(sp_gguf *g, const void *p, size_t n, sp_err *err) {
    SP_RETURN_IF(n && fwrite(p, 1, n, g->f) != n, err, SP_EIO, "%s: write failed: %s",
                 g->partial, strerror(errno));
    return SP_OK;
}
static sp_status zeros(sp_gguf *g, size_t n, sp_err *err) {
    static const uint8_t z[SP_GGUF_ALIGNMENT];
    return fwrite_all(g, z, n, err);
}

sp_status sp_gguf_begin(sp_gguf *g, sp_err *err) {
    SP_RETURN_IF(g->f, err, SP_EINVAL, "%s: header written twice", g->path);
    /* the tensor infos go after the metadata, in the same buffer */
    uint64_t off = 0;
    for (size_t i = 0; i < g->n_t; i++) {
        tinfo *t = &g->t[i];
        t->offset = off;
        off = align_up(off + t->nbytes);
        SP_FORWARD(put_str(g, t->name, err));
        SP_FORWARD(put_u32(g, (uint32_t)t->n_dims, err));
        for (int d = 0; d < t->n_dims; d++) SP_FORWARD(put_u64(g, (uint64_t)t->ne[d], err));
        SP_FORWARD(put_u32(g, (uint32_t)t->type, err));
        SP_FORWARD(put_u64(g, t->offset, err));
    }
    g->f = fopen(g->partial, "wb");
    SP_RETURN_IF(!g->f, err, SP_EIO, "%s: cannot create: %s", g->partial, strerror(errno));
    uint8_t h[24];
    uint32_t w32[2] = {GGUF_MAGIC, GGUF_VERSION};
    uint64_t w64[2] = {g->n_t, g->n_kv};
    for (int i = 0; i < 2; i++)
        for (int b = 0; b < 4; b++) h[4 * i + b] = (uint8_t)(w32[i] >> (8 * b));
    for (int i = 0; i < 2; i++)
        for (int b = 0; b < 8; b++) h[8 + 8 * i + b] = (uint8_t)(w64[i] >> (8 * b));
    SP_FORWARD(fwrite_all(g, h, sizeof h, err));
    SP_FORWARD(fwrite_all(g, g->kv, g->kv_len, err));
    uint64_t pos = sizeof h + g->kv_len;
    SP_FORWARD(zeros(g, (size_t)(align_up(pos) - pos), err));
    g->cur = 0;
    g->cur_done = 0;
    g->data_pos = 0;
    return SP_OK;
}

sp_status sp_gguf_write_data(sp_gguf *g, const void *data, size_t n, sp_err *err) {
    SP_RETURN_IF(!g->f, err, SP_EINVAL, "%s: tensor data before the header", g->path);
    const uint8_t *p = data;
    while (n > 0) {
        SP_RETURN_IF(g->cur >= g->n_t, err, SP_EINVAL, "%s: more tensor data than declared",
                     g->path);
        tinfo *t = &g->t[g->cur];
        size_t k = t->nbytes - g->cur_done < n ? t->nbytes - g->cur_done : n;
        SP_FORWARD(fwrite_all(g, p, k, err));
        p += k;
        n -= k;
        g->cur_done += k;
        g->data_pos += k;
        if (g->cur_done == t->nbytes) {
            uint64_t next = align_up(g->data_pos);
            SP_FORWARD(zeros(g, (size_t)(next - g->data_pos), err));
            g->data_pos = next;
            g->cur++;
            g->cur_done = 0;
        }
    }
    /* zero-byte tensors complete without data */
    while (g->cur < g->n_t && g->t[g->cur].nbytes == 0) g->cur++;
    return SP_OK;
}

sp_status sp_gguf_finish(sp_gguf *g, sp_err *err) {
    sp_status st = SP_OK;
    if (!g->f) st = sp_err_set(err, SP_EINVAL, "%s: finished before the header", g->path);
    else if (g->cur < g->n_t)
        st = sp_err_set(err, SP_EINTERNAL, "%s: tensor %s has %zu of %zu bytes", g->path,
                        g->t[g->cur].name, g->cur_done, g->t[g->cur].nbytes);
    else if (fflush(g->f) != 0 || fsync(fileno(g->f)) != 0)
        st = sp_err_set(err, SP_EIO, "%s: cannot flush: %s", g->partial, strerror(errno));
    if (st == SP_OK) {
        int rc = fclose(g->f);
        g->f = NULL;
        if (rc != 0) {
            st = sp_err_set(err, SP_EIO, "%s: close failed: %s", g->partial, strerror(errno));
            (void)unlink(g->partial);
        } else if (rename(g->partial, g->path) != 0) {
            st = sp_err_set(err, SP_EIO, "%s: cannot rename %s to it: %s", g->path, g->partial,
                            strerror(errno));
            (void)unlink(g->partial);
        }
    }
    sp_gguf_free(g);
    return st;
}
