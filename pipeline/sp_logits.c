/* sp_logits.c — see sp_logits.h. */
#include "pipeline/sp_logits.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mpi/sp_mpi.h"

#define SP_LOGITS_MAGIC "SPLOGIT1"
#define SP_LOGITS_VERSION 1u
#define SP_LOGITS_HEADER 64

typedef struct {
    char magic[8];
    uint32_t version, topk, ctx, n_windows, vocab, record_bytes;
    uint64_t tokens_hash, n_records;
    uint8_t reserved[16];
} sp_logits_header;
_Static_assert(sizeof(sp_logits_header) == SP_LOGITS_HEADER, "logits header is 64 bytes");

size_t sp_logits_record_bytes(uint32_t topk) { return (size_t)topk * 8 + 4; }

uint64_t sp_logits_hash_ids(const int32_t *ids, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)ids[i];
        for (int b = 0; b < 4; b++) {
            h ^= (v >> (8 * b)) & 0xffu;
            h *= 1099511628211ull;
        }
    }
    return h;
}

/* This code assumes a little-endian host (x86_64, aarch64); the header records it. */
static int host_is_little_endian(void) {
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

sp_status sp_logits_write(MPI_Comm comm, const char *path, const sp_logits_meta *meta, size_t w0,
                          size_t w1, const void *records, sp_err *err) {
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    size_t rec = sp_logits_record_bytes(meta->topk);
    size_t per_window = (size_t)(meta->ctx - 1) * rec;

    sp_status st = SP_OK;
    if (!host_is_little_endian())
        st = sp_err_set(err, SP_EUNSUPPORTED, "%s: big-endian hosts are not supported", path);
    st = sp_mpi_agree(comm, st, err);
    if (st) return st;

    MPI_File fh;
    int rc = MPI_File_open(comm, tmp, MPI_MODE_CREATE | MPI_MODE_WRONLY, MPI_INFO_NULL, &fh);
    if (rc != MPI_SUCCESS) {
        st = sp_mpi_check(rc, "MPI_File_open", err);
        sp_err_prefix(err, "%s", tmp);
        return sp_mpi_agree(comm, st, err);
    }
    MPI_File_set_size(fh, 0);
    if (rank == 0) {
        sp_logits_header h;
        memset(&h, 0, sizeof h);
        memcpy(h.magic, SP_LOGITS_MAGIC, 8);
        h.version = SP_LOGITS_VERSION;
        h.topk = meta->topk;
        h.ctx = meta->ctx;
        h.n_windows = meta->n_windows;
        h.vocab = meta->vocab;
        h.record_bytes = (uint32_t)rec;
        h.tokens_hash = meta->tokens_hash;
        h.n_records = (uint64_t)meta->n_windows * (meta->ctx - 1);
        rc = MPI_File_write_at(fh, 0, &h, (int)sizeof h, MPI_BYTE, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) st = sp_mpi_check(rc, "MPI_File_write_at(header)", err);
    }
    /* Records: written in pieces of at most 1 GiB (MPI counts are int). */
    const char *p = records;
    size_t total = (w1 - w0) * per_window;
    MPI_Offset off = SP_LOGITS_HEADER + (MPI_Offset)(w0 * per_window);
    while (st == SP_OK && total > 0) {
        size_t piece = total < (1u << 30) ? total : (1u << 30);
        rc = MPI_File_write_at(fh, off, p, (int)piece, MPI_BYTE, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) st = sp_mpi_check(rc, "MPI_File_write_at(records)", err);
        p += piece;
        off += (MPI_Offset)piece;
        total -= piece;
    }
    if (st == SP_OK) {
        rc = MPI_File_sync(fh);
        if (rc != MPI_SUCCESS) st = sp_mpi_check(rc, "MPI_File_sync", err);
    }
    MPI_File_close(&fh);
    if (st) sp_err_prefix(err, "%s", tmp);
    st = sp_mpi_agree(comm, st, err);
    if (st) {
        if (rank == 0) unlink(tmp);
        return st;
    }
    if (rank == 0 && rename(tmp, path) != 0)
        st = sp_err_set(err, SP_EIO, "%s: cannot rename from %s: %s", path, tmp, strerror(errno));
    return sp_mpi_agree(comm, st, err);
}

sp_status sp_logits_read(const char *path, const sp_logits_meta *expect, size_t w0, size_t w1,
                         void *records, uint32_t *topk_out, sp_err *err) {
    sp_status st = SP_OK;
    int fd = open(path, O_RDONLY);
    SP_RETURN_IF(fd < 0, err, SP_EIO, "%s: cannot open: %s", path, strerror(errno));
    sp_logits_header h;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        st = sp_err_set(err, SP_EIO, "%s: cannot stat: %s", path, strerror(errno));
        goto done;
    }
    if ((size_t)sb.st_size < sizeof h || pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h) {
        st = sp_err_set(err, SP_ETRUNC, "%s: shorter than its 64-byte header", path);
        goto done;
    }
    if (memcmp(h.magic, SP_LOGITS_MAGIC, 8) != 0) {
        st = sp_err_set(err, SP_EFORMAT, "%s: field 'magic': not a shardpress logits file", path);
        goto done;
    }
    if (h.version != SP_LOGITS_VERSION) {
        st = sp_err_set(err, SP_EUNSUPPORTED, "%s: field 'version': %u (expected %u)", path,
                        h.version, SP_LOGITS_VERSION);
        goto done;
    }
    if (h.topk == 0 || h.topk > h.vocab || h.record_bytes != sp_logits_record_bytes(h.topk)) {
        st = sp_err_set(err, SP_EFORMAT, "%s: field 'topk'/'record_bytes': %u/%u inconsistent",
                        path, h.topk, h.record_bytes);
        goto done;
    }
    if (h.ctx < 2 || h.n_records != (uint64_t)h.n_windows * (h.ctx - 1)) {
        st = sp_err_set(err, SP_EFORMAT, "%s: field 'n_records': %llu, expected windows x (ctx-1)",
                        path, (unsigned long long)h.n_records);
        goto done;
    }
    uint64_t want = SP_LOGITS_HEADER + h.n_records * h.record_bytes;
    if ((uint64_t)sb.st_size != want) {
        st = sp_err_set(err, (uint64_t)sb.st_size < want ? SP_ETRUNC : SP_EFORMAT,
                        "%s: size %lld bytes, header implies %llu", path, (long long)sb.st_size,
                        (unsigned long long)want);
        goto done;
    }
    if (h.ctx != expect->ctx || h.n_windows != expect->n_windows || h.vocab != expect->vocab) {
        st = sp_err_set(err, SP_EINVAL,
                        "%s: saved with ctx %u, %u windows, vocab %u; this run has ctx %u, %u "
                        "windows, vocab %u", path, h.ctx, h.n_windows, h.vocab, expect->ctx,
                        expect->n_windows, expect->vocab);
        goto done;
    }
    if (h.tokens_hash != expect->tokens_hash) {
        st = sp_err_set(err, SP_EINVAL, "%s: field 'tokens_hash': saved from a different text or "
                        "tokenizer", path);
        goto done;
    }
    if (topk_out) *topk_out = h.topk;
    if (records && w1 > w0) {
        size_t per_window = (size_t)(h.ctx - 1) * h.record_bytes;
        size_t total = (w1 - w0) * per_window, got = 0;
        off_t off = SP_LOGITS_HEADER + (off_t)(w0 * per_window);
        while (got < total) {
            ssize_t n = pread(fd, (char *)records + got, total - got, off + (off_t)got);
            if (n <= 0) {
                st = sp_err_set(err, SP_EIO, "%s: read failed at offset %lld", path,
                                (long long)(off + (off_t)got));
                goto done;
            }
            got += (size_t)n;
        }
    }
done:
    close(fd);
    return st;
}
