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
 *   per unit: u32 module, u32 bits, u32 rows, u32 cols, i32 group_size, u16 sym, u16 gtype, u64 nbytes,
 *             then nbytes of the packed layer (pipeline/quantize/sp_qshare.h wire form)
 *   u32 crc32 of every byte before it
 */
#ifndef SP_SEGMENT_H
#define SP_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "common/sp_error.h"
#include "kernels/sp_quant.h"

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
/* The same for a layer already in its wire form: data holds sp_qshare_bytes(rows, cols, bits,
 * group_size, gtype) bytes (pipeline/quantize/sp_qshare.h). group_size <= 0 means cols. */
sp_status sp_segment_writer_append_packed(sp_segment_writer *w, int module, int bits, int rows,
                                          int cols, int group_size, int sym, int gtype,
                                          const char *data, sp_err *err);
sp_status sp_segment_writer_close(sp_segment_writer *w, uint32_t *crc_out, sp_err *err);
void sp_segment_writer_abort(sp_segment_writer *w);

/* Read a segment unit by unit: the file's CRC is verified first (against its stored value and
 * expect_crc), then fn gets each unit in file order, unpacked into a layer that is freed when
 * fn returns. Memory: one unit (packed + unpacked) at a time, whatever the block's size.
 * Errors name the file: SP_ENOTFOUND (missing), SP_ETRUNC, SP_EFORMAT (bad field or CRC), or
 * fn's own status (reading stops there). */
typedef sp_status (*sp_segment_fn)(void *ctx, int module, const sp_qlayer *q, sp_err *err);
sp_status sp_segment_each(const char *dir, int layer, uint32_t expect_crc, sp_segment_fn fn,
                          void *ctx, sp_err *err);

/* Check a segment's stored CRC against its bytes and against expect_crc, streaming (no unpack,
 * constant memory). Errors as sp_segment_read. */
sp_status sp_segment_verify(const char *dir, int layer, uint32_t expect_crc, sp_err *err);

#endif
