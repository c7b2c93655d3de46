/* sp_safetensors.h — read and write .safetensors files (single files and sharded sets).
 *
 * File layout (little-endian):
 *   [u64 N] [N bytes of JSON header, padded with spaces] [data area]
 *   header: { "__metadata__": {str: str}?,
 *             "<name>": {"dtype": "F32", "shape": [d0, ...], "data_offsets": [begin, end]}, ... }
 *   offsets are relative to the start of the data area; end - begin == prod(shape) * dtype size.
 *
 * Reading mmaps the file read-only and validates the whole header before returning:
 * header inside the file, JSON valid, known dtype, integral shape, offsets ordered and inside
 * the data area, byte length consistent with shape x dtype, no two tensors overlapping, no
 * duplicate names. A file shorter than its header says is SP_ETRUNC; any impossible value is
 * SP_EFORMAT; a valid dtype that shardpress does not read (F64, BOOL, F8_*) is SP_EUNSUPPORTED.
 * Every message names the file (and the tensor or field).
 *
 * Thread-safety: an opened file or set is read-only; concurrent lookups and reads are safe.
 */
#ifndef SP_SAFETENSORS_H
#define SP_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common/sp_error.h"
#include "shards/sp_model.h"

#define SP_ST_MAX_DIMS 8

/* One tensor of an opened file. data points into the mapping (any alignment). */
typedef struct {
    const char *name;
    sp_dtype dtype;
    int ndim;                        /* 0..SP_ST_MAX_DIMS (0: a scalar)              */
    int64_t shape[SP_ST_MAX_DIMS];
    uint64_t begin, end;             /* data_offsets, relative to the data area      */
    const void *data;                /* mapping + 8 + N + begin                      */
    size_t nbytes;                   /* end - begin                                  */
} sp_st_tensor;

typedef struct sp_st_file sp_st_file;

/* Map and validate one .safetensors file.
 * @return SP_OK and *out set; SP_EIO, SP_ETRUNC, SP_EFORMAT, SP_EUNSUPPORTED, SP_ENOMEM with
 *         *out NULL. Ownership: close with sp_safetensors_close. */
sp_status sp_safetensors_open(sp_st_file **out, const char *path, sp_err *err);
void sp_safetensors_close(sp_st_file *f);

const char *sp_safetensors_path(const sp_st_file *f);
/* Tensors in name order; i < sp_safetensors_count(f). */
size_t sp_safetensors_count(const sp_st_file *f);
const sp_st_tensor *sp_safetensors_at(const sp_st_file *f, size_t i);
/* @return the tensor called name, or NULL. O(log n). */
const sp_st_tensor *sp_safetensors_find(const sp_st_file *f, const char *name);
/* A string value of "__metadata__", or NULL when absent (or not a string). */
const char *sp_safetensors_metadata(const sp_st_file *f, const char *key);

/* ---- a model's tensors: one file, or shards listed by model.safetensors.index.json ---- */

typedef struct sp_st_set sp_st_set;

/* Open the weights of a model directory: dir/model.safetensors if it exists, else
 * dir/model.safetensors.index.json ("weight_map": name -> shard file name), opening each
 * shard once. Every tensor the index lists must exist in its shard (else SP_ENOTFOUND naming
 * the tensor, the shard and the index); shards must stay inside dir.
 * @return SP_ENOTFOUND (message names dir) when neither file exists, other errors as
 *         sp_safetensors_open, SP_EFORMAT for a malformed index. */
sp_status sp_st_set_open_dir(sp_st_set **out, const char *dir, sp_err *err);
void sp_st_set_close(sp_st_set *s);
/* @return the tensor, and (when file is non-NULL) the path of the file that holds it; NULL
 *         when absent. */
const sp_st_tensor *sp_st_set_find(const sp_st_set *s, const char *name, const char **file);
size_t sp_st_set_count(const sp_st_set *s);
/* i-th tensor name in name order. */
const char *sp_st_set_name(const sp_st_set *s, size_t i);

/* ---- writing ------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    sp_dtype dtype;
    int ndim;                        /* 0..SP_ST_MAX_DIMS */
    int64_t shape[SP_ST_MAX_DIMS];
    const void *data;                /* prod(shape) * dtype size bytes, little-endian */
} sp_st_write_tensor;

/* Write n tensors to path atomically (temporary file in the same directory, fsync, rename):
 * either the old file or the complete new one exists afterwards, never a partial one.
 * Tensors are stored sorted by name, data contiguous in that order; the header is padded with
 * spaces so the data area starts at a multiple of 8. metadata_json, when non-NULL, is a JSON
 * object whose values are strings; it becomes "__metadata__".
 * @return SP_OK; SP_EINVAL (duplicate/empty name, bad shape, bad metadata), SP_EIO, SP_ENOMEM. */
sp_status sp_safetensors_write(const char *path, const sp_st_write_tensor *tensors, size_t n,
                               const char *metadata_json, sp_err *err);

/* Write nbufs buffers, concatenated, to path atomically (as above). Used by the writers in
 * shards/ (safetensors, config.json). @return SP_OK or SP_EIO naming path. */
sp_status sp_shards_write_atomic(const char *path, const void *const *bufs, const size_t *lens,
                                 int nbufs, sp_err *err);

#endif
