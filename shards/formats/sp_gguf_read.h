/* sp_gguf_read.h — read and validate the layout of a GGUF v2/v3 file (llama.cpp's, or ours):
 * its metadata keys shardpress needs and every tensor's name, ggml type, shape and data extent.
 * Tensor data is not read. Format: sp_gguf.h.
 *
 * Validation (each failure one line naming the file and the field): magic "GGUF", version 2 or
 * 3, counts that fit the file, every string and array inside the file, metadata value types
 * 0..12 (arrays of arrays too), general.alignment a power of two, tensor names <= 64 bytes and
 * unique, 1..4 dimensions each > 0, a ggml type with a known block (every type of ggml 0.5's
 * table, including IQ*, TQ*, MXFP4, NVFP4, Q1_0, Q2_0), ne[0] a multiple of the type's block,
 * offsets aligned and every tensor's bytes inside the file's data section, no two tensors
 * overlapping. A file that passes can be mapped tensor by tensor without further checks.
 *
 * Thread-safety: pure apart from reading the file.
 */
#ifndef SP_GGUF_READ_H
#define SP_GGUF_READ_H

#include <stddef.h>
#include <stdint.h>

#include "common/sp_error.h"

typedef struct {
    char name[65];
    int type;           /* ggml type number                                 */
    int n_dims;
    int64_t ne[4];      /* ne[0] contiguous; absent dimensions are 1        */
    uint64_t offset;    /* from the start of the file                       */
    uint64_t nbytes;
} sp_gguf_tensor;

typedef struct {
    uint32_t version;
    uint64_t file_bytes, data_offset;
    uint32_t alignment;
    int file_type;      /* general.file_type (llama_ftype), -1 when absent   */
    char arch[32];      /* general.architecture, "" when absent              */
    int64_t n_tensors;
    sp_gguf_tensor *t;
} sp_gguf_info;

/* Read path's header and tensor infos into *out (free with sp_gguf_info_free).
 * @return SP_OK; SP_EIO; SP_EFORMAT / SP_ETRUNC naming the file and the field; SP_ENOMEM. */
sp_status sp_gguf_read_info(const char *path, sp_gguf_info *out, sp_err *err);
void sp_gguf_info_free(sp_gguf_info *g);

/* The tensor called name, or NULL. */
const sp_gguf_tensor *sp_gguf_info_find(const sp_gguf_info *g, const char *name);

/* ggml's block length and bytes per block of any ggml type (0, 0 for a number that is not a
 * type); name: ggml's lower-case type name ("q4_K"), or NULL. */
void sp_gguf_type_traits(int type, int *block, size_t *block_bytes, const char **name);

#endif
