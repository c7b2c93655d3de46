/* sp_segment.h — one quantized decoder block on disk, written once and never changed.
 *
 * quantize writes each finished block's work units (every module at every level) to
 * "<dir>/block-<layer %05d>.spb" (rank 0, POSIX I/O, tmp + fsync + rename). The output
 * container is assembled from the segments at the end, and a checkpoint refers to the segments
 * of the blocks it covers by their CRC32, so resume needs neither the quantized blocks in memory
 * nor HDF5 calls outside the checkpoint I/O thread.
 *
 * Layout (little-endian):
 *   magic "SPBLK001", u32 version = 1, u32 layer, u32 n_units, u32 reserved
 *   per unit: u32 module, u32 bits, u32 rows, u32 cols, i32 group_size, u32 sym, u64 nbytes,
 *             then nbytes of the packed layer (pipeline/sp_qshare.h wire form)
 *   u32 crc32 of every byte before it
 */
#ifndef SP_SEGMENT_H
#define SP_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "../common/sp_error.h"
#include "../kernels/sp_quant.h"

typedef struct {
    int module, bits;
    sp_qlayer q;
} sp_segment_unit;

/* Path of the segment of a layer. */
void sp_segment_path(char *buf, size_t cap, const char *dir, int layer);

/* Streaming writer: open, append n_units units one by one (each may be freed right after),
 * close (fsync + rename; *crc_out gets the file's CRC32). abort removes the temporary file. */
typedef struct {
    int fd;
    unsigned long crc;
    int expected, written;
    char path[4096], tmp[4200];
} sp_segment_writer;

sp_status sp_segment_writer_open(sp_segment_writer *w, const char *dir, int layer, int n_units,
                                 sp_err *err);
sp_status sp_segment_writer_append(sp_segment_writer *w, int module, const sp_qlayer *q,
                                   sp_err *err);
sp_status sp_segment_writer_close(sp_segment_writer *w, uint32_t *crc_out, sp_err *err);
void sp_segment_writer_abort(sp_segment_writer *w);

/* Write the units of one layer atomically. *crc_out (may be NULL) gets the file's CRC32. */
sp_status sp_segment_write(const char *dir, int layer, const sp_segment_unit *units, int n,
                           uint32_t *crc_out, sp_err *err);

/* Read and verify a segment. When expect_crc is not NULL the file's CRC must equal it.
 * *units (malloc'ed, n entries; free with sp_segment_free_units) hold allocated layers.
 * Errors name the file: SP_ENOTFOUND (missing), SP_ETRUNC, SP_EFORMAT (bad field or CRC). */
sp_status sp_segment_read(const char *dir, int layer, const uint32_t *expect_crc,
                          sp_segment_unit **units, int *n, sp_err *err);

void sp_segment_free_units(sp_segment_unit *units, int n);

/* Check a segment's stored CRC against its bytes and against expect_crc, streaming (no unpack,
 * constant memory). Errors as sp_segment_read. */
sp_status sp_segment_verify(const char *dir, int layer, uint32_t expect_crc, sp_err *err);

#endif
