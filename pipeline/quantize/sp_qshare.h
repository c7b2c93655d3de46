/* sp_qshare.h — moving quantized layers between ranks, packed.
 *
 * The wire form of a layer is its packed codes (kernels/sp_pack.h, ceil(cols·bits/32) words
 * per row), then scales (fp32) and zeros (uint8), one entry per (row, group). Its size follows
 * from the shape alone, so the receiver allocates it without a size message. g_idx is not sent:
 * it is always c / group_size. A GGUF-type level (gtype != 0, kernels/sp_gtype.h) adds its
 * offsets (fp32 per (row, group), when the type has them) and super-block scales (2 fp32 per
 * row and 256 columns, K-quants).
 */
#ifndef SP_QSHARE_H
#define SP_QSHARE_H

#include <mpi.h>
#include <stddef.h>

#include "common/sp_error.h"
#include "kernels/sp_quant.h"

/* Bytes of the wire form of a layer of this shape. */
size_t sp_qshare_bytes(int rows, int cols, int bits, int group_size, int gtype);

/* q -> its wire form in out (sp_qshare_bytes(...) bytes). */
sp_status sp_qshare_pack(const sp_qlayer *q, char *out, sp_err *err);
/* Wire form -> q (allocated by the caller with the matching shape). */
void sp_qshare_unpack(sp_qlayer *q, const char *in);

/* Collective over comm: root's q is broadcast; other ranks' q is allocated here (shape given
 * by the arguments, which every rank must pass alike). */
sp_status sp_qshare_bcast(MPI_Comm comm, int root, sp_qlayer *q, int rows, int cols, int bits,
                          int group_size, int sym, int gtype, sp_err *err);

/* Point to point: src sends the n bytes of buf (a layer's wire form) to dst, which receives
 * them into its own buf of n bytes (allocated by the caller). Both call; other ranks must not.
 * Layers other than the propagation level travel like this, packed since they were quantized. */
sp_status sp_qshare_sendrecv(MPI_Comm comm, int src, int dst, int tag, char *buf, size_t n,
                             sp_err *err);

#endif
