/* sp_ckpt_zstd.c — a Zstandard filter for HDF5, registered in-process under the filter ID
 * 32015 (the ID registered with The HDF Group for Zstandard and used by hdf5plugin), so files
 * written here open in h5py + hdf5plugin and in h5dump with the plugin on HDF5_PLUGIN_PATH.
 *
 * Chunk encoding: one complete zstd frame per chunk, with the content size in the frame header
 * (ZSTD_compress writes it). cd_values[0], when present, is the compression level; that is the
 * same convention as hdf5plugin's filter. The decoder also accepts frames without a content
 * size (streamed by other writers).
 */
#include <stdint.h>
#include <string.h>
#include <zstd.h>

#include "ckpt/sp_ckpt_int.h"

/* A chunk larger than this is refused when decoding (HDF5 chunks are < 4 GiB anyway). */
#define MAX_CHUNK_BYTES ((unsigned long long)4 << 30)

static size_t zstd_encode(int level, size_t nbytes, size_t *buf_size, void **buf) {
    size_t cap = ZSTD_compressBound(nbytes);
    void *out = H5allocate_memory(cap, 0);
    if (!out) return 0;
    size_t n = ZSTD_compress(out, cap, *buf, nbytes, level);
    if (ZSTD_isError(n)) {
        (void)H5free_memory(out);
        return 0; /* HDF5 turns 0 into "filter returned failure" */
    }
    (void)H5free_memory(*buf);
    *buf = out;
    *buf_size = cap;
    return n;
}

/* Decode a frame whose size is not in its header: grow the output until the frame ends. */
static size_t zstd_decode_stream(size_t nbytes, size_t *buf_size, void **buf) {
    ZSTD_DStream *ds = ZSTD_createDStream();
    if (!ds) return 0;
    size_t cap = nbytes * 4 + 4096, done = 0, ret = 1;
    unsigned char *out = H5allocate_memory(cap, 0);
    ZSTD_inBuffer in = {*buf, nbytes, 0};
    while (out && ret != 0) {
        if (done == cap) {
            if (cap >= MAX_CHUNK_BYTES) break;
            unsigned char *bigger = H5resize_memory(out, cap * 2);
            if (!bigger) break;
            out = bigger;
            cap *= 2;
        }
        ZSTD_outBuffer o = {out, cap, done};
        ret = ZSTD_decompressStream(ds, &o, &in);
        done = o.pos;
        if (ZSTD_isError(ret)) break;
        if (ret != 0 && in.pos == in.size && o.pos < o.size) break; /* truncated frame */
    }
    ZSTD_freeDStream(ds);
    if (!out || ret != 0) {
        if (out) (void)H5free_memory(out);
        return 0;
    }
    (void)H5free_memory(*buf);
    *buf = out;
    *buf_size = cap;
    return done;
}

static size_t zstd_decode(size_t nbytes, size_t *buf_size, void **buf) {
    unsigned long long n = ZSTD_getFrameContentSize(*buf, nbytes);
    if (n == ZSTD_CONTENTSIZE_ERROR || (n != ZSTD_CONTENTSIZE_UNKNOWN && n > MAX_CHUNK_BYTES))
        return 0;
    if (n == ZSTD_CONTENTSIZE_UNKNOWN) return zstd_decode_stream(nbytes, buf_size, buf);
    void *out = H5allocate_memory(n ? (size_t)n : 1, 0);
    if (!out) return 0;
    size_t got = ZSTD_decompress(out, (size_t)n, *buf, nbytes);
    if (ZSTD_isError(got) || got != (size_t)n) {
        (void)H5free_memory(out);
        return 0;
    }
    (void)H5free_memory(*buf);
    *buf = out;
    *buf_size = n ? (size_t)n : 1;
    return got;
}

/* The H5Z_func_t: flags has H5Z_FLAG_REVERSE when reading. Returns the valid bytes now in
 * *buf, or 0 on failure (HDF5 then fails the read/write of the chunk). */
static size_t zstd_filter(unsigned int flags, size_t cd_nelmts, const unsigned int cd_values[],
                          size_t nbytes, size_t *buf_size, void **buf) {
    if (flags & H5Z_FLAG_REVERSE) return zstd_decode(nbytes, buf_size, buf);
    int level = cd_nelmts > 0 ? (int)cd_values[0] : 3;
    if (level < 1 || level > ZSTD_maxCLevel()) level = 3;
    return zstd_encode(level, nbytes, buf_size, buf);
}

sp_status sp_ck_zstd_register(sp_err *err) {
    /* Registering the same ID again replaces the entry, so this is idempotent; we always
     * register so that our implementation (not a plugin found on a path) is the one used. */
    static const H5Z_class2_t cls = {
        H5Z_CLASS_T_VERS, (H5Z_filter_t)SP_CKPT_ZSTD_FILTER_ID, 1, 1, "zstd (shardpress)",
        NULL, NULL, zstd_filter};
    if (H5Zregister(&cls) < 0)
        return sp_ck_h5err(err, SP_EIO, "cannot register the zstd HDF5 filter (id %d)",
                           SP_CKPT_ZSTD_FILTER_ID);
    return SP_OK;
}
