/* sp_gguf.h — a GGUF v3 writer (the file format of llama.cpp / ggml), written from the spec
 * (docs/gguf.md of llama.cpp). Little-endian throughout:
 *
 *   u32 magic "GGUF" (0x46554747)   u32 version = 3   u64 n_tensors   u64 n_kv
 *   n_kv × { string key, u32 value_type, value }
 *   n_tensors × { string name, u32 n_dims, u64 ne[n_dims] (ne[0] = the contiguous dimension),
 *                 u32 ggml_type, u64 offset (from the start of the data section) }
 *   zero padding to `alignment`, then the data section: each tensor at its offset, every
 *   offset a multiple of `alignment` (general.alignment, 32 when absent), zero padding between.
 *   string = u64 length + bytes (no NUL); array = u32 element type, u64 count, elements.
 *
 * Use: sp_gguf_create, the kv_* calls, one add_tensor per tensor (declares name, type, shape),
 * then sp_gguf_begin (writes the header and the tensor infos), then sp_gguf_write_data for the
 * tensors in the order they were added (each call the whole tensor or a consecutive piece;
 * the writer checks the byte counts), then sp_gguf_finish. Data is written as it comes, so a
 * model never has to be in memory. The file is "<path>.partial" until sp_gguf_finish fsyncs and
 * renames it; sp_gguf_free removes an unfinished partial file. Keys must be unique (checked).
 * The writer never calls exit; every failure names the file.
 */
#ifndef SP_GGUF_H
#define SP_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "common/sp_error.h"

/* GGUF metadata value types. */
enum {
    SP_GGUF_U8 = 0, SP_GGUF_I8 = 1, SP_GGUF_U16 = 2, SP_GGUF_I16 = 3, SP_GGUF_U32 = 4,
    SP_GGUF_I32 = 5, SP_GGUF_F32 = 6, SP_GGUF_BOOL = 7, SP_GGUF_STRING = 8, SP_GGUF_ARRAY = 9,
    SP_GGUF_U64 = 10, SP_GGUF_I64 = 11, SP_GGUF_F64 = 12
};

#define SP_GGUF_ALIGNMENT 32

typedef struct sp_gguf sp_gguf;

/* A writer for path (nothing is written until sp_gguf_begin). force: replace an existing file
 * (only once the new one is complete). @return SP_EEXIST when path exists and !force; SP_ENOMEM. */
sp_status sp_gguf_create(sp_gguf **out, const char *path, int force, sp_err *err);

sp_status sp_gguf_kv_u32(sp_gguf *g, const char *key, uint32_t v, sp_err *err);
sp_status sp_gguf_kv_i32(sp_gguf *g, const char *key, int32_t v, sp_err *err);
sp_status sp_gguf_kv_f32(sp_gguf *g, const char *key, float v, sp_err *err);
sp_status sp_gguf_kv_bool(sp_gguf *g, const char *key, int v, sp_err *err);
sp_status sp_gguf_kv_str(sp_gguf *g, const char *key, const char *v, sp_err *err);
/* Arrays: n strings (NUL-terminated), n f32, n i32. */
sp_status sp_gguf_kv_arr_str(sp_gguf *g, const char *key, const char *const *v, size_t n,
                             sp_err *err);
sp_status sp_gguf_kv_arr_f32(sp_gguf *g, const char *key, const float *v, size_t n, sp_err *err);
sp_status sp_gguf_kv_arr_i32(sp_gguf *g, const char *key, const int32_t *v, size_t n,
                             sp_err *err);

/* Declare a tensor: ggml type, n_dims 1..4, ne[0] the contiguous (innermost) dimension, and
 * nbytes its data size (the caller computes it from the type). @return SP_EINVAL (duplicate
 * name, name over 64 bytes, n_dims out of range, called after begin). */
sp_status sp_gguf_add_tensor(sp_gguf *g, const char *name, int type, int n_dims,
                             const int64_t *ne, size_t nbytes, sp_err *err);

/* Write the header, the metadata and the tensor infos. @return SP_EIO naming the file. */
sp_status sp_gguf_begin(sp_gguf *g, sp_err *err);
/* The next n bytes of tensor data, in declaration order. @return SP_EINVAL when more bytes
 * come than the tensors declared; SP_EIO. */
sp_status sp_gguf_write_data(sp_gguf *g, const void *data, size_t n, sp_err *err);
/* Check every declared byte was written, fsync, rename to the final path, free g.
 * On failure the partial file is removed and g freed. */
sp_status sp_gguf_finish(sp_gguf *g, sp_err *err);
/* Free a writer that was not finished (removes its partial file). NULL is fine. */
void sp_gguf_free(sp_gguf *g);

#endif
