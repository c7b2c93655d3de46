/* sp_xmodel.c — the models of an exchange round: open, compare with the base, stream out. */
#include "pipeline/exchange/sp_xint.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "common/sp_mapfile.h"

sp_status sp_xmodel_open(sp_xmodel *m, const char *dir, sp_err *err) {
    memset(m, 0, sizeof *m);
    snprintf(m->dir, sizeof m->dir, "%s", dir);
    SP_FORWARD(sp_st_set_open_dir(&m->set, dir, err));
    m->n = sp_st_set_count(m->set);
    m->t = sp_malloc((m->n ? m->n : 1) * sizeof *m->t, err, "tensor list");
    m->off = sp_malloc((m->n + 1) * sizeof *m->off, err, "tensor offsets");
    if (!m->t || !m->off) {
        sp_xmodel_close(m);
        return SP_ENOMEM;
    }
    m->off[0] = 0;
    for (size_t i = 0; i < m->n; i++) {
        const sp_st_tensor *t = sp_st_set_find(m->set, sp_st_set_name(m->set, i), NULL);
        m->t[i] = t;
        if (t->dtype != SP_DTYPE_F32 && t->dtype != SP_DTYPE_F16 && t->dtype != SP_DTYPE_BF16) {
            sp_status st = sp_err_set(err, SP_EUNSUPPORTED, "%s: tensor '%s' has dtype %s; exchange "
                                      "handles F32, F16 and BF16", dir, t->name,
                                      sp_dtype_name(t->dtype));
            sp_xmodel_close(m);
            return st;
        }
        /* The output header is printed, not built with an escaper: refuse names that would
         * need escaping (Hugging Face names never do). */
        for (const char *c = t->name; *c; c++)
            if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20) {
                sp_status st = sp_err_set(err, SP_EUNSUPPORTED, "%s: tensor name '%s' has a quote, "
                                          "backslash or control character", dir, t->name);
                sp_xmodel_close(m);
                return st;
            }
        m->off[i + 1] = m->off[i] + (int64_t)(t->nbytes / sp_dtype_size(t->dtype));
    }
    m->P = m->off[m->n];
    return SP_OK;
}

void sp_xmodel_close(sp_xmodel *m) {
    if (!m) return;
    sp_st_set_close(m->set);
    free(m->t);
    free(m->off);
    m->set = NULL;
    m->t = NULL;
    m->off = NULL;
}

static void shape_str(const sp_st_tensor *t, char *b, size_t cap) {
    size_t n = (size_t)snprintf(b, cap, "[");
    for (int d = 0; d < t->ndim && n < cap; d++)
        n += (size_t)snprintf(b + n, cap - n, "%s%" PRId64, d ? ", " : "", t->shape[d]);
    if (n < cap) snprintf(b + n, cap - n, "]");
}

sp_status sp_xmodel_check_like(const sp_xmodel *l, const sp_xmodel *b, sp_err *err) {
    for (size_t i = 0; i < b->n; i++) {
        const sp_st_tensor *bt = b->t[i], *lt = sp_st_set_find(l->set, bt->name, NULL);
        SP_RETURN_IF(!lt, err, SP_EFORMAT, "%s: tensor '%s' of the base is missing", l->dir, bt->name);
        SP_RETURN_IF(lt->dtype != bt->dtype, err, SP_EFORMAT,
                     "%s: tensor '%s': dtype %s differs from the base's %s", l->dir, bt->name,
                     sp_dtype_name(lt->dtype), sp_dtype_name(bt->dtype));
        int same = lt->ndim == bt->ndim;
        for (int d = 0; same && d < bt->ndim; d++) same = lt->shape[d] == bt->shape[d];
        if (!same) {
            char s1[128], s2[128];
            shape_str(lt, s1, sizeof s1);
            shape_str(bt, s2, sizeof s2);
            return sp_err_set(err, SP_EFORMAT, "%s: tensor '%s': shape %s differs from the base's %s",
                              l->dir, bt->name, s1, s2);
        }
    }
    SP_RETURN_IF(l->n != b->n, err, SP_EFORMAT, "%s: %zu tensors, the base has %zu", l->dir, l->n, b->n);
    return SP_OK;
}

uint32_t sp_xmodel_layout_fp(const sp_xmodel *m) {
    uLong c = crc32(0L, Z_NULL, 0);
    for (size_t i = 0; i < m->n; i++) {
        const sp_st_tensor *t = m->t[i];
        c = crc32(c, (const Bytef *)t->name, (uInt)strlen(t->name) + 1);
        int64_t desc[SP_ST_MAX_DIMS + 2] = {(int64_t)t->dtype, t->ndim};
        for (int d = 0; d < t->ndim; d++) desc[2 + d] = t->shape[d];
        c = crc32(c, (const Bytef *)desc, (uInt)sizeof desc);
    }
    return (uint32_t)c;
}

uint32_t sp_xmodel_data_crc(const sp_xmodel *m) {
    uLong c = crc32(0L, Z_NULL, 0);
    for (size_t i = 0; i < m->n; i++) {
        const unsigned char *p = m->t[i]->data;
        for (size_t o = 0; o < m->t[i]->nbytes; o += (size_t)1 << 30) {
            size_t k = m->t[i]->nbytes - o < ((size_t)1 << 30) ? m->t[i]->nbytes - o : (size_t)1 << 30;
            c = crc32(c, p + o, (uInt)k);
        }
    }
    return (uint32_t)c;
}

void sp_xmodel_read(const sp_xmodel *m, size_t i, int64_t off, size_t len, float *dst) {
    const sp_st_tensor *t = m->t[i];
    size_t es = sp_dtype_size(t->dtype);
    sp_dtype_to_f32(dst, (const unsigned char *)t->data + (size_t)off * es, t->dtype, len);
}

/* ---- streaming writer ------------------------------------------------------------------------ */

static int write_all(int fd, const void *buf, size_t len) {
    const unsigned char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len > ((size_t)1 << 30) ? ((size_t)1 << 30) : len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* The header as sp_safetensors_write makes it: tensors sorted by name, contiguous data, the JSON
 * padded with spaces to a multiple of 8. */
sp_status sp_xout_open(sp_xout *w, const char *path, const sp_xmodel *b, int64_t round, sp_err *err) {
    memset(w, 0, sizeof *w);
    w->fd = -1;
    snprintf(w->path, sizeof w->path, "%s", path);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp.XXXXXX", path);
    size_t cap = 256 + b->n * 64, n = 0;
    for (size_t i = 0; i < b->n; i++) cap += strlen(b->t[i]->name) * 2 + 40 * (size_t)(b->t[i]->ndim + 2);
    char *h = sp_malloc(cap + 16, err, "safetensors header");
    if (!h) return SP_ENOMEM;
    n = 8;
    n += (size_t)snprintf(h + n, cap - n, "{\"__metadata__\":{\"format\":\"pt\",\"source\":"
                          "\"shardpress exchange round %" PRId64 "\"}", round);
    uint64_t off = 0;
    for (size_t i = 0; i < b->n; i++) {
        const sp_st_tensor *t = b->t[i];
        n += (size_t)snprintf(h + n, cap - n, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t->name,
                              sp_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++)
            n += (size_t)snprintf(h + n, cap - n, "%s%" PRId64, d ? "," : "", t->shape[d]);
        n += (size_t)snprintf(h + n, cap - n, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off,
                              off + t->nbytes);
        off += t->nbytes;
    }
    n += (size_t)snprintf(h + n, cap - n, "}");
    size_t tl = n - 8, hl = (tl + 7) & ~(size_t)7;
    memset(h + n, ' ', hl - tl);
    for (int i = 0; i < 8; i++) h[i] = (char)(((uint64_t)hl >> (8 * i)) & 0xff);
    w->fd = mkstemp(w->tmp);
    sp_status st = SP_OK;
    if (w->fd < 0) st = sp_err_set(err, SP_EIO, "%s: cannot create: %s", w->tmp, strerror(errno));
    else if (fchmod(w->fd, 0644) != 0 || write_all(w->fd, h, 8 + hl) != 0)
        st = sp_err_set(err, SP_EIO, "%s: write failed: %s", w->tmp, strerror(errno));
    free(h);
    if (st != SP_OK) sp_xout_abort(w);
    w->crc = (uint32_t)crc32(0L, Z_NULL, 0);
    return st;
}

sp_status sp_xout_write(sp_xout *w, const sp_xmodel *b, size_t i, const float *v, size_t len,
                        void *scratch, sp_err *err) {
    sp_dtype dt = b->t[i]->dtype;
    const void *p = v;
    size_t bytes = len * 4;
    if (dt != SP_DTYPE_F32) {
        uint16_t *s = scratch;
        for (size_t j = 0; j < len; j++) s[j] = dt == SP_DTYPE_F16 ? sp_f32_to_f16(v[j]) : sp_f32_to_bf16(v[j]);
        p = s;
        bytes = len * 2;
    }
    w->crc = (uint32_t)crc32(w->crc, p, (uInt)bytes);
    SP_RETURN_IF(write_all(w->fd, p, bytes) != 0, err, SP_EIO, "%s: write failed: %s", w->tmp,
                 strerror(errno));
    return SP_OK;
}

sp_status sp_xout_finish(sp_xout *w, sp_err *err) {
    sp_status st = SP_OK;
    if (fsync(w->fd) != 0 || close(w->fd) != 0)
        st = sp_err_set(err, SP_EIO, "%s: write failed: %s", w->tmp, strerror(errno));
    w->fd = -1;
    if (st == SP_OK && rename(w->tmp, w->path) != 0)
        st = sp_err_set(err, SP_EIO, "%s: rename failed: %s", w->path, strerror(errno));
    if (st != SP_OK) unlink(w->tmp);
    return st;
}

void sp_xout_abort(sp_xout *w) {
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    if (w->tmp[0]) unlink(w->tmp);
}

static sp_status copy_file(const char *src, const char *dst, sp_err *err) {
    void *map = NULL;
    size_t len = 0;
    SP_FORWARD(sp_mapfile_open(src, 1, "one byte", &map, &len, err));
    const void *bufs[1] = {map};
    size_t lens[1] = {len};
    sp_status st = sp_shards_write_atomic(dst, bufs, lens, 1, err);
    sp_mapfile_close(map, len);
    return st;
}

/* config.json, the tokenizer files, and llama2.c vocabularies (tok<N>.bin, which eval finds
 * by the vocabulary size) are what eval, quantize and export read beside the weights. */
static int is_aux(const char *nm) {
    static const char *names[] = {"config.json", "generation_config.json", "tokenizer.json",
                                  "tokenizer_config.json", "tokenizer.model", "tokenizer.bin",
                                  "special_tokens_map.json"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(nm, names[i])) return 1;
    size_t L = strlen(nm);
    return !strncmp(nm, "tok", 3) && L > 7 && !strcmp(nm + L - 4, ".bin") &&
           strspn(nm + 3, "0123456789") == L - 7;
}

sp_status sp_xmodel_copy_aux(const char *base_dir, const char *out_dir, sp_err *err) {
    SP_RETURN_IF(mkdir(out_dir, 0755) != 0 && errno != EEXIST, err, SP_EIO, "%s: cannot create: %s",
                 out_dir, strerror(errno));
    DIR *d = opendir(base_dir);
    SP_RETURN_IF(!d, err, SP_EIO, "%s: cannot list: %s", base_dir, strerror(errno));
    sp_status st = SP_OK;
    struct dirent *e;
    while (st == SP_OK && (e = readdir(d)) != NULL) {
        if (!is_aux(e->d_name)) continue;
        char src[4200], dst[4200];
        snprintf(src, sizeof src, "%s/%s", base_dir, e->d_name);
        snprintf(dst, sizeof dst, "%s/%s", out_dir, e->d_name);
        st = copy_file(src, dst, err);
    }
    closedir(d);
    return st;
}
