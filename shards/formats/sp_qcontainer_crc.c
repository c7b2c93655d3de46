/* sp_qcontainer_crc.c — the per-dataset checksums of a version-2 container (issue 13).
 *
 * Every dataset carries an attribute crc32 (uint32 LE scalar): zlib's CRC-32 of its bytes as
 * stored (little-endian, row-major). The writer computes it from the buffer it writes. A reader
 * checks each dataset the first time it touches it: a read of the whole dataset is checked on
 * the bytes just read (no second pass); a read of some rows first streams the whole dataset in
 * 4 MiB blocks. Version-1 files have no checksums and are read unchecked. Why: without them a
 * flipped byte in a code, scale or embedding changed the results silently (the flip sweep of
 * tests/mpi/test_flip_sweep.sh: 55% of 96 flips over a small container).
 */
#include "shards/formats/sp_qcontainer_int.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define CLOSE_ID(fn, id)             \
    do {                             \
        if ((id) >= 0) (void)fn(id); \
        (id) = H5I_INVALID_HID;      \
    } while (0)

uint32_t sp_qc_crc(uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = data;
    uLong c = crc;
    while (n > 0) { /* zlib takes uInt lengths */
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, k);
        p += k;
        n -= k;
    }
    return (uint32_t)c;
}

sp_status sp_qc_write_crc(hid_t dset, const void *data, size_t nbytes, const char *path,
                          const char *dname, sp_err *err) {
    uint32_t crc = sp_qc_crc(0, data, nbytes);
    hid_t space = H5Screate(H5S_SCALAR), attr = H5I_INVALID_HID;
    sp_status st = SP_OK;
    if (space < 0 ||
        (attr = H5Acreate2(dset, "crc32", H5T_STD_U32LE, space, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        H5Awrite(attr, H5T_NATIVE_UINT32, &crc) < 0)
        st = sp_qc_h5err(err, SP_EIO, path, "%s: writing attribute crc32", dname);
    CLOSE_ID(H5Aclose, attr);
    CLOSE_ID(H5Sclose, space);
    return st;
}

/* CRC of the whole dataset, read in blocks of rows (1-D datasets are one row). */
static sp_status stream_crc(hid_t d, const char *path, const char *dname, uint32_t *crc,
                            sp_err *err) {
    hid_t space = H5Dget_space(d), ftype = H5Dget_type(d), mtype = H5I_INVALID_HID;
    hsize_t dims[2] = {0, 1};
    int nd = space < 0 ? -1 : H5Sget_simple_extent_ndims(space);
    sp_status st = SP_OK;
    size_t es = ftype < 0 ? 0 : H5Tget_size(ftype);
    if (nd < 1 || nd > 2 || H5Sget_simple_extent_dims(space, dims, NULL) < 0 || es == 0 ||
        (mtype = H5Tget_native_type(ftype, H5T_DIR_ASCEND)) < 0) {
        st = sp_qc_h5err(err, SP_EIO, path, "%s: shape or type", dname);
        goto done;
    }
    size_t row = (nd == 2 ? (size_t)dims[1] : (size_t)dims[0]) * es;
    hsize_t nrows = nd == 2 ? dims[0] : 1;
    hsize_t per = row >= (4u << 20) ? 1 : (hsize_t)((4u << 20) / row);
    if (per > nrows) per = nrows;
    void *buf = sp_malloc((size_t)per * row, err, "checksum block");
    if (!buf) {
        st = SP_ENOMEM;
        goto done;
    }
    *crc = 0;
    for (hsize_t r = 0; r < nrows && st == SP_OK; r += per) {
        hsize_t n = nrows - r < per ? nrows - r : per;
        st = sp_qc_read_rows(d, mtype, r, n, buf, path, dname, err);
        if (st == SP_OK) *crc = sp_qc_crc(*crc, buf, (size_t)n * row);
    }
    free(buf);
done:
    CLOSE_ID(H5Tclose, mtype);
    CLOSE_ID(H5Tclose, ftype);
    CLOSE_ID(H5Sclose, space);
    return st;
}

sp_status sp_qc_verify(const sp_qcontainer *c, hid_t d, const void *whole, size_t nbytes,
                       const char *dname, sp_err *err) {
    if (c->meta.version < 2) return SP_OK;
    htri_t ex = H5Aexists(d, "crc32");
    SP_RETURN_IF(ex <= 0, err, SP_EFORMAT, "%s: %s: attribute crc32 is missing (a version-%d "
                 "container checksums every dataset): the file is corrupt", c->path, dname,
                 c->meta.version);
    hid_t attr = H5Aopen(d, "crc32", H5P_DEFAULT);
    uint32_t stored = 0;
    int ok = attr >= 0 && H5Aread(attr, H5T_NATIVE_UINT32, &stored) >= 0;
    CLOSE_ID(H5Aclose, attr);
    if (!ok) return sp_qc_h5err(err, SP_EFORMAT, c->path, "%s: attribute crc32", dname);
    uint32_t crc = 0;
    if (whole) crc = sp_qc_crc(0, whole, nbytes);
    else SP_FORWARD(stream_crc(d, c->path, dname, &crc, err));
    SP_RETURN_IF(crc != stored, err, SP_EFORMAT, "%s: %s: checksum mismatch (stored 0x%08x, "
                 "computed 0x%08x): the file is corrupt", c->path, dname, stored, crc);
    return SP_OK;
}
