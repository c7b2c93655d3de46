/* sp_qcontainer.h — the shardpress quantized container: one HDF5 file, model.sp.h5, in a model
 * directory beside config.json and the tokenizer files. It holds every linear module at one or
 * several bit levels (the level database) plus the dense tensors. Layout (docs/formats.md,
 * "Quantized container"):
 *
 *   /                         attrs format="shardpress-quant", version=1, default_bits,
 *                                   group_size (<= 0: one group per row), sym, method, levels[]
 *   /dense/<HF name>          float32, the tensor's own shape (embeddings, norms, lm_head, biases)
 *   /modules/<module>         optional attr selected_bits (the level a reader starts with)
 *   /modules/<module>/<b>bit  attrs rows, cols, bits, group_size, sym; datasets
 *       qweight uint32  [rows, ceil(cols·b/32)]  codes of each row packed with sp_pack_bits
 *       scales  float32 [rows, n_groups]         fp16-representable values
 *       zeros   uint8   [rows, n_groups]         < 2^b
 *       g_idx   int32   [cols]                   group of each column, < n_groups
 *   <module> is the HF module name without ".weight" ("model.layers.0.mlp.down_proj").
 *   W[r, c] = scales[r, g_idx[c]] · (code[r, c] − zeros[r, g_idx[c]])   (fp32 product)
 * A GGUF-type level (issue 11; sp_quant.h, sp_gtype.h) adds the attr gguf_type (the type's
 * name, e.g. "Q4_K") and, when the type has them, the datasets
 *       mins    float32 [rows, n_groups]         offsets m:  W = s·(q − z) + m
 *       supers  float32 [rows, 2·cols/256]       K-quants: (d, dmin) per 256 columns
 *   its scales are then fp32 products d·sc; every value is checked to be exactly the type's.
 *
 * Writing is done by one rank with the default (non-MPI) file driver. The writer fills
 * "<path>.partial" and sp_qcontainer_close() renames it to <path>, so an interrupted write never
 * leaves a file that looks complete. The same calls in the same order give byte-identical files
 * (object timestamps are switched off).
 *
 * Reading validates at open every attribute and every dataset's type and shape; the values
 * (zeros < 2^b, g_idx range, scales fp16-representable) are checked on each read. Errors name
 * the file, the object and the field.
 *
 * Threads: Debian's parallel HDF5 is not thread-safe. A container handle may only be used from
 * the thread that created or opened it; calls from another thread fail with SP_EINVAL. The
 * functions leave HDF5's automatic error printing as they found it.
 */
#ifndef SP_QCONTAINER_H
#define SP_QCONTAINER_H

#include <stdint.h>

#include "common/sp_error.h"
#include "kernels/sp_quant.h"

#define SP_QCONTAINER_FILE "model.sp.h5"
#define SP_QCONTAINER_FORMAT "shardpress-quant"
/* Version 2 (issue 13) adds a crc32 attribute to every dataset, checked on first read;
 * version-1 files are still read (unchecked). */
#define SP_QCONTAINER_VERSION 2
#define SP_QCONTAINER_MAX_LEVELS 7 /* bits 2..8, or 1 (Q1_0) and 6 of 2..8 */

typedef struct {
    int version;         /* read: the file's; ignored when writing (always 1)          */
    int default_bits;    /* 2..8, one of levels[]                                      */
    int group_size;      /* columns per group; <= 0 means one group per row            */
    int sym;             /* 0 / 1                                                      */
    char method[16];     /* "gptq" or "rtn"                                            */
    int n_levels;        /* 1..SP_QCONTAINER_MAX_LEVELS                                */
    int levels[SP_QCONTAINER_MAX_LEVELS]; /* strictly ascending, each 1..8 (1: Q1_0)  */
} sp_qcontainer_meta;

/* Shape of one stored level of a module. */
typedef struct {
    int rows, cols, bits, group_size, n_groups, sym;
    int gtype; /* 0, or the GGUF type the level is exactly (attr gguf_type)             */
} sp_qlevel_info;

typedef struct sp_qcontainer sp_qcontainer;

/* ---- writing ---------------------------------------------------------------------------- */

/* Start a container at path (written to "<path>.partial" until sp_qcontainer_close).
 * @return SP_OK; SP_EEXIST when path exists and !force; SP_EINVAL for bad meta; SP_EIO. */
sp_status sp_qcontainer_create(sp_qcontainer **out, const char *path,
                               const sp_qcontainer_meta *meta, int force, sp_err *err);

/* Store a dense tensor (fp32, ndim 1 or 2, shape [rows] or [rows, cols]) under /dense/<name>.
 * @return SP_EINVAL (bad name, '/' in it, NaN/Inf value, a second tensor of that name), SP_EIO. */
sp_status sp_qcontainer_put_dense(sp_qcontainer *c, const char *name, int ndim,
                                  const int64_t shape[2], const float *data, sp_err *err);

/* Store one level of a module (q->bits must be one of meta.levels). Validates q first:
 * codes and zeros < 2^bits, g_idx < n_groups, scales finite and fp16-representable.
 * @return SP_EINVAL naming the module and the bad field; SP_EIO. */
sp_status sp_qcontainer_put_qlayer(sp_qcontainer *c, const char *module, const sp_qlayer *q,
                                   sp_err *err);

/* Record which stored level a reader of this module starts with (else default_bits).
 * The level must have been stored already. */
sp_status sp_qcontainer_set_selected(sp_qcontainer *c, const char *module, int bits, sp_err *err);

/* Make sure the directory of path has room for a container of about raw_bytes of data in
 * n_datasets datasets, before the writer starts: a scratch file "<path>.space" is given
 * raw_bytes + 4 KiB per dataset + 256 KiB (HDF5's own share, measured: ~0.7 KiB per dataset)
 * with posix_fallocate (statvfs where the file system cannot allocate) and removed again.
 * Why: HDF5 1.10.8 does not survive a write that fails for want of space — H5Fclose fails,
 * the file ID stays, and the library crashes when it is torn down at MPI_Finalize — so a full
 * disk must be found before HDF5 writes. (Another writer may still fill the disk between the
 * check and the write; see docs/architecture.md, "Hostile input".)
 * @return SP_OK; SP_EIO naming path, the bytes needed and strerror (ENOSPC, EDQUOT). */
sp_status sp_qcontainer_check_space(const char *path, uint64_t raw_bytes, uint64_t n_datasets,
                                    sp_err *err);

/* Writer: flush, close, fsync and rename "<path>.partial" to path (on failure the partial
 * file is removed). Reader: close. Frees c in every case (NULL is fine) — except when called
 * from a thread other than c's owner: then nothing is done and SP_EINVAL is returned.
 * @return SP_OK; SP_EIO (HDF5 could not close the file, e.g. an object was left open; fsync or
 *         rename failed). */
sp_status sp_qcontainer_close(sp_qcontainer *c, sp_err *err);

/* Close and, for a writer, delete the partial file. Frees c (NULL is fine). Call it from
 * c's owner thread (it closes the HDF5 file). */
void sp_qcontainer_discard(sp_qcontainer *c);

/* ---- reading ---------------------------------------------------------------------------- */

/* Open and validate a container (attributes, every level's attributes and dataset shapes).
 * @return SP_OK; SP_EIO (cannot open / not HDF5); SP_EFORMAT naming the object and field;
 *         SP_EUNSUPPORTED for another format name or version. */
sp_status sp_qcontainer_open(sp_qcontainer **out, const char *path, sp_err *err);

const sp_qcontainer_meta *sp_qcontainer_get_meta(const sp_qcontainer *c);
const char *sp_qcontainer_path(const sp_qcontainer *c);

/* Modules and dense tensors, in strcmp order of their names; i in [0, n). */
int sp_qcontainer_n_modules(const sp_qcontainer *c);
const char *sp_qcontainer_module_name(const sp_qcontainer *c, int i);
int sp_qcontainer_n_dense(const sp_qcontainer *c);
const char *sp_qcontainer_dense_name(const sp_qcontainer *c, int i);

/* Levels of a module: levels[0..*n) ascending (the array holds SP_QCONTAINER_MAX_LEVELS);
 * *selected (may be NULL) gets the level a reader starts with.
 * @return SP_ENOTFOUND naming the module when it is not stored. */
sp_status sp_qcontainer_module_levels(const sp_qcontainer *c, const char *module, int *levels,
                                      int *n, int *selected, sp_err *err);

/* Shape of one level. @return SP_ENOTFOUND naming the module and its stored levels. */
sp_status sp_qcontainer_level_info(const sp_qcontainer *c, const char *module, int bits,
                                   sp_qlevel_info *info, sp_err *err);

/* Read one level into q (allocated here with sp_qlayer_alloc; free with sp_qlayer_free; q is
 * zeroed on failure). @return SP_ENOTFOUND, SP_EFORMAT naming dataset and field, SP_ENOMEM. */
sp_status sp_qcontainer_read_qlayer(sp_qcontainer *c, const char *module, int bits, sp_qlayer *q,
                                    sp_err *err);

/* Dequantized rows [row0, row0+nrows) of one level into dst [nrows, cols] (fp32).
 * @return SP_EINVAL (rows out of range), SP_ENOTFOUND, SP_EFORMAT, SP_ENOMEM. */
sp_status sp_qcontainer_read_qrows(sp_qcontainer *c, const char *module, int bits, int64_t row0,
                                   int64_t nrows, float *dst, sp_err *err);

/* Shape of a dense tensor (ndim 1 or 2; shape[1] = 1 for 1-D). @return SP_ENOTFOUND. */
sp_status sp_qcontainer_dense_desc(const sp_qcontainer *c, const char *name, int *ndim,
                                   int64_t shape[2], sp_err *err);

/* Rows [row0, row0+nrows) of a dense tensor into dst (a 1-D tensor is one row).
 * @return SP_EINVAL (rows out of range), SP_ENOTFOUND, SP_EIO. */
sp_status sp_qcontainer_read_dense_rows(sp_qcontainer *c, const char *name, int64_t row0,
                                        int64_t nrows, float *dst, sp_err *err);

/* 1 when s is finite and exactly representable in IEEE fp16 (shared by the writers). */
int sp_qcontainer_f16_exact(float s);

#endif
