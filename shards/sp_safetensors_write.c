/* sp_safetensors_write.c — atomic file writes and the .safetensors writer (see
 * sp_safetensors.h).
 *
 * Atomicity: write to "<path>.tmp.XXXXXX" in the same directory, fsync it, rename over path,
 * fsync the directory. A crash leaves either the old file or the new one (plus perhaps a
 * stray temporary), never a partial file under the final name.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shards/sp_safetensors.h"

static int write_all(int fd, const void *buf, size_t len) {
    const unsigned char *p = buf;
    while (len > 0) {
        size_t chunk = len > ((size_t)1 << 30) ? ((size_t)1 << 30) : len;
        ssize_t w = write(fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* fsync the directory holding path, so the rename itself is durable. Best effort: some
 * file systems refuse fsync on directories (EINVAL), which is not an error for us. */
static int fsync_parent(const char *path) {
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(dir, sizeof dir, ".");
    } else if (slash == path) {
        snprintf(dir, sizeof dir, "/");
    } else {
        size_t L = (size_t)(slash - path);
        if (L >= sizeof dir) return 0;
        memcpy(dir, path, L);
        dir[L] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return 0;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    return (rc != 0 && e != EINVAL && e != EROFS) ? -1 : 0;
}

sp_status sp_shards_write_atomic(const char *path, const void *const *bufs, const size_t *lens,
                                 int nbufs, sp_err *err) {
    size_t L = strlen(path);
    char *tmp = sp_malloc(L + 16, err, "temporary file name");
    if (!tmp) return SP_ENOMEM;
    snprintf(tmp, L + 16, "%s.tmp.XXXXXX", path);
    sp_status st = SP_OK;
    int fd = mkstemp(tmp);
    if (fd < 0) {
        st = sp_err_set(err, SP_EIO, "%s: cannot create temporary file: %s", path, strerror(errno));
        goto done;
    }
    /* mkstemp makes the file 0600; outputs are meant to be shared like any written file. */
    if (fchmod(fd, 0644) != 0) goto io_error;
    for (int i = 0; i < nbufs; i++)
        if (lens[i] && write_all(fd, bufs[i], lens[i]) != 0) goto io_error;
    if (fsync(fd) != 0) goto io_error;
    if (close(fd) != 0) {
        fd = -1;
        goto io_error;
    }
    fd = -1;
    if (rename(tmp, path) != 0) goto io_error;
    if (fsync_parent(path) != 0) {
        st = sp_err_set(err, SP_EIO, "%s: fsync of the directory failed: %s", path,
                        strerror(errno));
    }
    goto done;
io_error:
    st = sp_err_set(err, SP_EIO, "%s: write failed: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    unlink(tmp);
done:
    free(tmp);
    return st;
}

static int cmp_write_name(const void *a, const void *b) {
    const sp_st_write_tensor *x = *(const sp_st_write_tensor *const *)a;
    const sp_st_write_tensor *y = *(const sp_st_write_tensor *const *)b;
    return strcmp(x->name, y->name);
}

/* An exact integer as raw JSON text (cJSON would print numbers >= 2^31 via %g). */
static cJSON *raw_u64(uint64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    return cJSON_CreateRaw(buf);
}

sp_status sp_safetensors_write(const char *path, const sp_st_write_tensor *tensors, size_t n,
                               const char *metadata_json, sp_err *err) {
    sp_status st = SP_OK;
    const sp_st_write_tensor **order = NULL;
    uint64_t *nbytes = NULL;
    const void **bufs = NULL;
    size_t *lens = NULL;
    char *text = NULL, *header = NULL;
    cJSON *root = cJSON_CreateObject();
    order = sp_malloc((n ? n : 1) * sizeof *order, err, "tensor order");
    nbytes = sp_malloc((n ? n : 1) * sizeof *nbytes, err, "tensor sizes");
    bufs = sp_malloc((n + 2) * sizeof *bufs, err, "write buffers");
    lens = sp_malloc((n + 2) * sizeof *lens, err, "write lengths");
    if (!root || !order || !nbytes || !bufs || !lens) {
        st = sp_err_set(err, SP_ENOMEM, "%s: out of memory building the header", path);
        goto done;
    }
    for (size_t i = 0; i < n; i++) order[i] = &tensors[i];
    for (size_t i = 0; i < n; i++) {
        const sp_st_write_tensor *t = &tensors[i];
        if (!t->name || !t->name[0] || strcmp(t->name, "__metadata__") == 0) {
            st = sp_err_set(err, SP_EINVAL, "%s: tensor %zu has an empty or reserved name", path, i);
            goto done;
        }
        if (t->ndim < 0 || t->ndim > SP_ST_MAX_DIMS || sp_dtype_size(t->dtype) == 0) {
            st = sp_err_set(err, SP_EINVAL, "%s: tensor '%s': bad ndim %d or dtype", path, t->name,
                            t->ndim);
            goto done;
        }
        uint64_t b = sp_dtype_size(t->dtype);
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0 || __builtin_mul_overflow(b, (uint64_t)t->shape[d], &b)) {
                st = sp_err_set(err, SP_EINVAL, "%s: tensor '%s': bad shape[%d] = %lld", path,
                                t->name, d, (long long)t->shape[d]);
                goto done;
            }
        }
        if (b > 0 && !t->data) {
            st = sp_err_set(err, SP_EINVAL, "%s: tensor '%s': no data", path, t->name);
            goto done;
        }
        nbytes[i] = b;
    }
    qsort(order, n, sizeof *order, cmp_write_name);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(order[i - 1]->name, order[i]->name) == 0) {
            st = sp_err_set(err, SP_EINVAL, "%s: tensor '%s' given twice", path, order[i]->name);
            goto done;
        }
    }
    if (metadata_json) {
        cJSON *meta = cJSON_Parse(metadata_json);
        int ok = cJSON_IsObject(meta);
        const cJSON *v;
        if (ok) cJSON_ArrayForEach(v, meta) ok = ok && cJSON_IsString(v);
        if (!ok) {
            cJSON_Delete(meta);
            st = sp_err_set(err, SP_EINVAL, "%s: metadata must be a JSON object of strings", path);
            goto done;
        }
        cJSON_AddItemToObject(root, "__metadata__", meta);
    }
    uint64_t off = 0;
    for (size_t k = 0; k < n; k++) {
        const sp_st_write_tensor *t = order[k];
        uint64_t b = nbytes[t - tensors];
        cJSON *e = cJSON_AddObjectToObject(root, t->name);
        int ok = e && cJSON_AddStringToObject(e, "dtype", sp_dtype_name(t->dtype));
        cJSON *shape = ok ? cJSON_AddArrayToObject(e, "shape") : NULL;
        cJSON *offs = shape ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
        ok = ok && shape && offs;
        for (int d = 0; ok && d < t->ndim; d++)
            ok = cJSON_AddItemToArray(shape, raw_u64((uint64_t)t->shape[d]));
        ok = ok && cJSON_AddItemToArray(offs, raw_u64(off)) &&
             cJSON_AddItemToArray(offs, raw_u64(off + b));
        if (!ok) {
            st = sp_err_set(err, SP_ENOMEM, "%s: out of memory building the header", path);
            goto done;
        }
        bufs[2 + k] = t->data;
        lens[2 + k] = (size_t)b;
        off += b;
    }
    text = cJSON_PrintUnformatted(root);
    if (!text) {
        st = sp_err_set(err, SP_ENOMEM, "%s: out of memory printing the header", path);
        goto done;
    }
    /* Pad with spaces so the data area (at 8 + hlen) starts 8-byte aligned. */
    size_t tlen = strlen(text);
    size_t hlen = (tlen + 7) & ~(size_t)7;
    header = sp_malloc(8 + hlen, err, "safetensors header");
    if (!header) {
        st = SP_ENOMEM;
        goto done;
    }
    for (int i = 0; i < 8; i++) header[i] = (char)(((uint64_t)hlen >> (8 * i)) & 0xff);
    memcpy(header + 8, text, tlen);
    memset(header + 8 + tlen, ' ', hlen - tlen);
    bufs[0] = header;
    lens[0] = 8 + hlen;
    bufs[1] = NULL;
    lens[1] = 0;
    st = sp_shards_write_atomic(path, (const void *const *)bufs, lens, (int)(n + 2), err);
done:
    cJSON_Delete(root);
    cJSON_free(text);
    free(header);
    free(order);
    free(nbytes);
    free(bufs);
    free(lens);
    return st;
}
