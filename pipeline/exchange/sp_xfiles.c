/* sp_xfiles.c — the files transport: one message file per sender per round in a shared
 * directory, written to a temporary name and renamed (a reader never sees a partial file),
 * with a CRC-32 over the whole file so that a damaged one is named, not decoded. */
#include "pipeline/exchange/sp_xint.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "common/sp_mapfile.h"
#include "mpi/sp_compress.h"

#define XF_HEADER 32
#define XF_TRAILER 16

static void put_u64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint64_t get_u64(const uint8_t *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = (v << 8) | p[i]; return v; }

/* zlib's crc32 takes a 32-bit length: feed big files in 1 GiB pieces. */
static uint32_t crc_big(const uint8_t *p, size_t n) {
    uLong c = crc32(0L, Z_NULL, 0);
    for (size_t o = 0; o < n; o += (size_t)1 << 30)
        c = crc32(c, p + o, (uInt)(n - o < ((size_t)1 << 30) ? n - o : (size_t)1 << 30));
    return (uint32_t)c;
}

static void file_path(char *b, size_t cap, const char *dir, int64_t round, const char *name) {
    snprintf(b, cap, "%s/round-%06" PRId64 "/%s.msg", dir, round, name);
}

static sp_status put(sp_xf_writer *w, const void *p, size_t len, sp_err *err) {
    const unsigned char *c = p;
    w->crc = (uint32_t)crc32(w->crc, c, (uInt)len);
    while (len > 0) {
        ssize_t k = write(w->fd, c, len);
        if (k < 0 && errno == EINTR) continue;
        SP_RETURN_IF(k < 0, err, SP_EIO, "%s: write failed: %s", w->tmp, strerror(errno));
        c += k;
        len -= (size_t)k;
    }
    w->bytes += (uint64_t)(c - (const unsigned char *)p);
    return SP_OK;
}

sp_status sp_xf_create(sp_xf_writer *w, const char *dir, int64_t round, const char *name,
                       sp_err *err) {
    memset(w, 0, sizeof *w);
    w->fd = -1;
    char rd[4200];
    snprintf(rd, sizeof rd, "%s/round-%06" PRId64, dir, round);
    SP_RETURN_IF(mkdir(dir, 0755) != 0 && errno != EEXIST, err, SP_EIO, "files:%s: cannot create: %s",
                 dir, strerror(errno));
    SP_RETURN_IF(mkdir(rd, 0755) != 0 && errno != EEXIST, err, SP_EIO, "%s: cannot create: %s", rd,
                 strerror(errno));
    file_path(w->path, sizeof w->path, dir, round, name);
    snprintf(w->tmp, sizeof w->tmp, "%s/.%s.msg.tmp.XXXXXX", rd, name);
    w->fd = mkstemp(w->tmp);
    SP_RETURN_IF(w->fd < 0, err, SP_EIO, "%s: cannot create: %s", w->tmp, strerror(errno));
    fchmod(w->fd, 0644);
    w->crc = (uint32_t)crc32(0L, Z_NULL, 0);
    uint8_t h[XF_HEADER] = "SPXF\x01\0\0\0";
    put_u64(h + 8, (uint64_t)round);
    snprintf((char *)h + 16, 16, "%s", name);
    sp_status st = put(w, h, sizeof h, err);
    if (st != SP_OK) sp_xf_abort(w);
    return st;
}

sp_status sp_xf_append(sp_xf_writer *w, const uint8_t *msg, size_t len, sp_err *err) {
    SP_FORWARD(put(w, msg, len, err));
    w->n++;
    return SP_OK;
}

sp_status sp_xf_commit(sp_xf_writer *w, sp_err *err) {
    uint8_t t[XF_TRAILER];
    put_u64(t, w->n);
    uint32_t c = w->crc;
    for (int i = 0; i < 4; i++) t[8 + i] = (uint8_t)(c >> (8 * i));
    memcpy(t + 12, "FXPS", 4);
    sp_status st = put(w, t, sizeof t, err);
    if (st == SP_OK && (fsync(w->fd) != 0 || close(w->fd) != 0))
        st = sp_err_set(err, SP_EIO, "%s: write failed: %s", w->tmp, strerror(errno));
    else if (st != SP_OK) close(w->fd);
    w->fd = -1;
    if (st == SP_OK && rename(w->tmp, w->path) != 0)
        st = sp_err_set(err, SP_EIO, "%s: rename failed: %s", w->path, strerror(errno));
    if (st != SP_OK) unlink(w->tmp);
    return st;
}

void sp_xf_abort(sp_xf_writer *w) {
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    if (w->tmp[0]) unlink(w->tmp);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

sp_status sp_xf_open_wait(sp_xf_reader *r, const char *dir, int64_t round, const char *name,
                          double timeout_s, const volatile sig_atomic_t *stop, sp_err *err) {
    memset(r, 0, sizeof *r);
    file_path(r->path, sizeof r->path, dir, round, name);
    double t0 = now_s();
    struct stat sb;
    while (stat(r->path, &sb) != 0) {
        SP_FORWARD(sp_stop_check(stop, "exchange", err));
        SP_RETURN_IF(now_s() - t0 > timeout_s, err, SP_ENOTFOUND,
                     "%s: missing after waiting %.0f s (the sender of '%s' for round %" PRId64
                     " has not written it; see --timeout)", r->path, timeout_s, name, round);
        usleep(20000);
    }
    SP_FORWARD(sp_mapfile_open(r->path, XF_HEADER + XF_TRAILER, "a message file's header and trailer",
                               &r->map, &r->len, err));
    const uint8_t *p = r->map, *t = p + r->len - XF_TRAILER;
    sp_status st = SP_OK;
    uint32_t c = 0;
    for (int i = 3; i >= 0; i--) c = (c << 8) | t[8 + i];
    char want[16] = {0};
    snprintf(want, sizeof want, "%s", name);
    if (memcmp(p, "SPXF\x01\0\0\0", 8) != 0 || memcmp(t + 12, "FXPS", 4) != 0)
        st = sp_err_set(err, SP_EFORMAT, "%s: not a shardpress message file (bad magic)", r->path);
    else if (c != crc_big(p, r->len - XF_TRAILER))
        st = sp_err_set(err, SP_EFORMAT, "%s: checksum mismatch", r->path);
    else if (get_u64(p + 8) != (uint64_t)round || memcmp(p + 16, want, 16) != 0)
        st = sp_err_set(err, SP_EFORMAT, "%s: holds round %" PRIu64 " of '%.16s', not round %" PRId64
                        " of '%s'", r->path, get_u64(p + 8), (const char *)p + 16, round, name);
    if (st != SP_OK) {
        sp_xf_close(r);
        return st;
    }
    r->n = get_u64(t);
    r->pos = XF_HEADER;
    r->end = r->len - XF_TRAILER;
    return SP_OK;
}

sp_status sp_xf_next(sp_xf_reader *r, const uint8_t **msg, size_t *len, sp_err *err) {
    SP_RETURN_IF(r->i >= r->n, err, SP_EFORMAT, "%s: %" PRIu64 " messages, more expected", r->path, r->n);
    sp_cmp_header h;
    sp_status st = sp_cmp_peek((const uint8_t *)r->map + r->pos, r->end - r->pos, &h, len, err);
    if (st != SP_OK) return sp_err_prefix(err, "%s: message %" PRIu64, r->path, r->i);
    *msg = (const uint8_t *)r->map + r->pos;
    r->pos += *len;
    r->i++;
    return SP_OK;
}

void sp_xf_close(sp_xf_reader *r) {
    if (r->map) sp_mapfile_close(r->map, r->len);
    r->map = NULL;
}
