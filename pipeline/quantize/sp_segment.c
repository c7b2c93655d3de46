/* sp_segment.c — see sp_segment.h. */
#include "pipeline/quantize/sp_segment.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "kernels/sp_gtype.h"
#include "pipeline/quantize/sp_qshare.h"

#define SEG_MAGIC "SPBLK001"
#define SEG_VERSION 1u

typedef struct {
    char magic[8];
    uint32_t version, layer, n_units, reserved;
} seg_header;
_Static_assert(sizeof(seg_header) == 24, "segment header is 24 bytes");

typedef struct {
    uint32_t module, bits, rows, cols;
    int32_t group_size;
    uint16_t sym, gtype; /* gtype (issue 11): 0, or the level's GGUF type; older files: 0 */
    uint64_t nbytes;
} seg_unit;
_Static_assert(sizeof(seg_unit) == 32, "segment unit header is 32 bytes");

/* Rows, columns and group size of a unit are at most 2^24 (a 405B model's widest matrix has
 * 53248 columns), so their products stay far inside size_t and their sums inside int. */
#define SEG_MAX_DIM (1u << 24)

void sp_segment_path(char *buf, size_t cap, const char *dir, int layer) {
    snprintf(buf, cap, "%s/block-%05d.spb", dir, layer);
}

static sp_status write_all(int fd, const void *buf, size_t n, uLong *crc, const char *path,
                           sp_err *err) {
    const char *p = buf;
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        SP_RETURN_IF(w <= 0, err, SP_EIO, "%s: write failed: %s", path, strerror(errno));
        done += (size_t)w;
    }
    for (size_t off = 0; off < n; off += (size_t)1 << 30) {
        size_t cnt = n - off < ((size_t)1 << 30) ? n - off : (size_t)1 << 30;
        *crc = crc32(*crc, (const Bytef *)p + off, (uInt)cnt);
    }
    return SP_OK;
}

sp_status sp_segment_writer_open(sp_segment_writer *w, const char *dir, int layer, int n_units,
                                 sp_err *err) {
    memset(w, 0, sizeof *w);
    w->fd = -1;
    sp_segment_path(w->path, sizeof w->path, dir, layer);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp", w->path);
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    SP_RETURN_IF(w->fd < 0, err, SP_EIO, "%s: cannot create: %s", w->tmp, strerror(errno));
    uLong crc = crc32(0L, Z_NULL, 0);
    seg_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, SEG_MAGIC, 8);
    h.version = SEG_VERSION;
    h.layer = (uint32_t)layer;
    h.n_units = (uint32_t)n_units;
    w->expected = n_units;
    sp_status st = write_all(w->fd, &h, sizeof h, &crc, w->tmp, err);
    w->crc = crc;
    if (st) sp_segment_writer_abort(w);
    return st;
}

sp_status sp_segment_writer_append_packed(sp_segment_writer *w, int module, int bits, int rows,
                                          int cols, int group_size, int sym, int gtype,
                                          const char *data, sp_err *err) {
    SP_RETURN_IF(w->written >= w->expected, err, SP_EINTERNAL, "%s: more units than announced",
                 w->tmp);
    int gs = group_size <= 0 ? cols : group_size;
    seg_unit u = {(uint32_t)module, (uint32_t)bits, (uint32_t)rows, (uint32_t)cols, gs,
                  (uint16_t)(sym != 0), (uint16_t)gtype,
                  sp_qshare_bytes(rows, cols, bits, gs, gtype)};
    uLong crc = w->crc;
    sp_status st = write_all(w->fd, &u, sizeof u, &crc, w->tmp, err);
    if (st == SP_OK) st = write_all(w->fd, data, u.nbytes, &crc, w->tmp, err);
    w->crc = crc;
    w->written++;
    return st;
}

sp_status sp_segment_writer_append(sp_segment_writer *w, int module, const sp_qlayer *q,
                                   sp_err *err) {
    size_t n = sp_qshare_bytes(q->rows, q->cols, q->bits, q->group_size, q->gtype);
    char *buf = sp_malloc(n, err, "segment unit");
    if (!buf) return SP_ENOMEM;
    sp_status st = sp_qshare_pack(q, buf, err);
    if (st == SP_OK)
        st = sp_segment_writer_append_packed(w, module, q->bits, q->rows, q->cols, q->group_size,
                                             q->sym, q->gtype, buf, err);
    free(buf);
    return st;
}

sp_status sp_segment_writer_close(sp_segment_writer *w, uint32_t *crc_out, sp_err *err) {
    sp_status st = SP_OK;
    if (w->written != w->expected)
        st = sp_err_set(err, SP_EINTERNAL, "%s: %d of %d units written", w->tmp, w->written,
                        w->expected);
    uint32_t c32 = (uint32_t)w->crc;
    if (st == SP_OK) {
        uLong dummy = 0;
        st = write_all(w->fd, &c32, sizeof c32, &dummy, w->tmp, err);
    }
    if (st == SP_OK && fsync(w->fd) != 0)
        st = sp_err_set(err, SP_EIO, "%s: fsync failed: %s", w->tmp, strerror(errno));
    close(w->fd);
    w->fd = -1;
    if (st == SP_OK && rename(w->tmp, w->path) != 0)
        st = sp_err_set(err, SP_EIO, "%s: cannot rename: %s", w->path, strerror(errno));
    if (st != SP_OK) unlink(w->tmp);
    else if (crc_out) *crc_out = c32;
    return st;
}

void sp_segment_writer_abort(sp_segment_writer *w) {
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    unlink(w->tmp);
}

static sp_status read_exact(FILE *f, void *buf, size_t n, const char *path, sp_err *err) {
    SP_RETURN_IF(fread(buf, 1, n, f) != n, err, SP_EIO, "%s: read failed", path);
    return SP_OK;
}

sp_status sp_segment_each(const char *dir, int layer, uint32_t expect_crc, sp_segment_fn fn,
                          void *ctx, sp_err *err) {
    /* The whole file is checked before any of it is trusted; the second pass below reads the
     * same bytes (from the page cache, usually). */
    SP_FORWARD(sp_segment_verify(dir, layer, expect_crc, err));
    char path[4096];
    sp_segment_path(path, sizeof path, dir, layer);
    FILE *f = fopen(path, "rb");
    SP_RETURN_IF(!f, err, errno == ENOENT ? SP_ENOTFOUND : SP_EIO, "%s: cannot open: %s", path,
                 strerror(errno));
    struct stat sb;
    size_t size = fstat(fileno(f), &sb) == 0 ? (size_t)sb.st_size : 0;
    seg_header h;
    sp_status st = read_exact(f, &h, sizeof h, path, err);
    if (st == SP_OK && (memcmp(h.magic, SEG_MAGIC, 8) != 0 || h.version != SEG_VERSION ||
                        h.layer != (uint32_t)layer || h.n_units == 0 || h.n_units > 64))
        st = sp_err_set(err, SP_EFORMAT, "%s: field 'magic'/'version'/'layer'/'n_units' invalid",
                        path);
    size_t off = sizeof h;
    for (uint32_t i = 0; st == SP_OK && i < h.n_units; i++) {
        seg_unit u;
        if (off + sizeof u > size - 4) {
            st = sp_err_set(err, SP_EFORMAT, "%s: unit %u header past the end", path, i);
            break;
        }
        st = read_exact(f, &u, sizeof u, path, err);
        off += sizeof u;
        /* Bounded dimensions first: sp_qshare_bytes works in int (fuzz_segment). */
        if (st == SP_OK && (u.rows > SEG_MAX_DIM || u.cols > SEG_MAX_DIM ||
                            u.group_size > (int32_t)SEG_MAX_DIM))
            st = sp_err_set(err, SP_EFORMAT, "%s: unit %u: rows %u, cols %u or group_size %d "
                            "outside 1..%u", path, i, u.rows, u.cols, u.group_size, SEG_MAX_DIM);
        if (st == SP_OK && u.gtype) { /* a GGUF-type level: the shape must be the type's */
            int tb = 0, tg = 0, ts = 0;
            sp_gtype_level(u.gtype, &tb, &tg, &ts);
            if (!sp_gtype_is_level(u.gtype) || (uint32_t)tb != u.bits || tg != u.group_size ||
                (uint32_t)ts != u.sym || u.cols % (uint32_t)sp_gtype_block(u.gtype))
                st = sp_err_set(err, SP_EFORMAT, "%s: unit %u: field 'gtype' %u does not match "
                                "its shape", path, i, u.gtype);
        }
        if (st == SP_OK && ((u.bits < 2 && !(u.bits == 1 && u.gtype == SP_GT_Q1_0)) ||
                            u.bits > 8 || u.rows == 0 || u.cols == 0 ||
                            u.sym > 1 || u.module >= 7 ||
                            u.nbytes != sp_qshare_bytes((int)u.rows, (int)u.cols, (int)u.bits,
                                                        u.group_size, u.gtype) ||
                            off + u.nbytes > size - 4))
            st = sp_err_set(err, SP_EFORMAT, "%s: unit %u: inconsistent shape/bits/nbytes", path, i);
        if (st) break;
        /* One unit at a time: its wire form, then the unpacked layer handed to fn. */
        char *data = sp_malloc(u.nbytes, err, "segment unit");
        sp_qlayer q;
        memset(&q, 0, sizeof q);
        st = data ? read_exact(f, data, u.nbytes, path, err) : SP_ENOMEM;
        if (st == SP_OK)
            st = sp_qlayer_alloc_level(&q, (int)u.rows, (int)u.cols, (int)u.bits, u.group_size,
                                       (int)u.sym, (int)u.gtype, err);
        if (st == SP_OK) sp_qshare_unpack(&q, data);
        free(data);
        if (st == SP_OK) st = fn(ctx, (int)u.module, &q, err);
        sp_qlayer_free(&q);
        off += u.nbytes;
    }
    fclose(f);
    return st;
}

sp_status sp_segment_verify(const char *dir, int layer, uint32_t expect_crc, sp_err *err) {
    char path[4096];
    sp_segment_path(path, sizeof path, dir, layer);
    int fd = open(path, O_RDONLY);
    SP_RETURN_IF(fd < 0, err, errno == ENOENT ? SP_ENOTFOUND : SP_EIO, "%s: cannot open: %s",
                 path, strerror(errno));
    struct stat sb;
    sp_status st = SP_OK;
    if (fstat(fd, &sb) != 0 || sb.st_size < (off_t)(sizeof(seg_header) + 4)) {
        close(fd);
        return sp_err_set(err, SP_ETRUNC, "%s: shorter than a segment header", path);
    }
    size_t body = (size_t)sb.st_size - 4, done = 0;
    uLong crc = crc32(0L, Z_NULL, 0);
    char buf[1 << 16];
    while (st == SP_OK && done < body) {
        size_t want = body - done < sizeof buf ? body - done : sizeof buf;
        ssize_t n = pread(fd, buf, want, (off_t)done);
        if (n <= 0) st = sp_err_set(err, SP_EIO, "%s: read failed", path);
        else {
            crc = crc32(crc, (const Bytef *)buf, (uInt)n);
            done += (size_t)n;
        }
    }
    uint32_t stored = 0;
    if (st == SP_OK && pread(fd, &stored, 4, (off_t)body) != 4)
        st = sp_err_set(err, SP_EIO, "%s: read failed", path);
    close(fd);
    if (st == SP_OK && stored != (uint32_t)crc)
        st = sp_err_set(err, SP_EFORMAT, "%s: field 'crc32': stored %08x, computed %08x (corrupt "
                        "or truncated)", path, stored, (uint32_t)crc);
    if (st == SP_OK && stored != expect_crc)
        st = sp_err_set(err, SP_EFORMAT, "%s: CRC %08x differs from the checkpoint's %08x (a "
                        "segment of another run?)", path, stored, expect_crc);
    return st;
}
