/* sp_qcontainer_int.h — internals shared by sp_qcontainer.c (helpers, writer) and
 * sp_qcontainer_read.c (reader). Not a public header: only these two files include it.
 */
#ifndef SP_QCONTAINER_INT_H
#define SP_QCONTAINER_INT_H

#include <hdf5.h>
#include <pthread.h>
#include <stdint.h>

#include "shards/formats/sp_qcontainer.h"

/* One module as found at open: its stored levels (ascending) and their shapes. */
typedef struct {
    char *name;
    int n_levels;
    int selected;                                  /* bits a reader starts with        */
    sp_qlevel_info lv[SP_QCONTAINER_MAX_LEVELS];   /* lv[k].bits ascending             */
    unsigned verified[SP_QCONTAINER_MAX_LEVELS];   /* bit j: dataset j of lv[k] (qweight,
                                                    * scales, zeros, g_idx) checksummed     */
} sp_qc_module;

typedef struct {
    char *name;
    int ndim;
    int64_t shape[2]; /* shape[1] = 1 for 1-D */
    int verified;     /* its checksum was checked (version 2)      */
} sp_qc_dense;

struct sp_qcontainer {
    hid_t file;
    int writing;
    char *path;      /* the final path                           */
    char *tmp_path;  /* writer only: "<path>.partial"            */
    pthread_t owner; /* the thread that created / opened c       */
    sp_qcontainer_meta meta;
    sp_qc_module *mods; /* reader only, sorted by name           */
    int n_mods;
    sp_qc_dense *dense; /* reader only, sorted by name           */
    int n_dense;
};

/* Silence HDF5's automatic error printing for the span of one API call and restore the
 * previous handler afterwards. */
typedef struct {
    H5E_auto2_t func;
    void *data;
} sp_qc_quiet;
void sp_qc_quiet_begin(sp_qc_quiet *q);
void sp_qc_quiet_end(const sp_qc_quiet *q);

/* SP_EINVAL when called from a thread other than c's owner. */
sp_status sp_qc_check_thread(const sp_qcontainer *c, sp_err *err);

/* Fill err with "<path>: <what>" followed by HDF5's innermost error description. */
sp_status sp_qc_h5err(sp_err *err, sp_status code, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Names stored as HDF5 link names: non-empty, < 256 bytes, no '/', not "." or "..". */
int sp_qc_name_ok(const char *name);

/* Validate container metadata; failures return code (SP_EINVAL when writing, SP_EFORMAT when
 * reading) with a message naming path and the field. */
sp_status sp_qc_check_meta(const sp_qcontainer_meta *m, const char *path, sp_status code,
                           sp_err *err);

/* Free c's memory (no HDF5 calls). */
void sp_qc_free(sp_qcontainer *c);

/* Attribute helpers; on failure err is "<path>: <obj>: attribute <name>: why". */
sp_status sp_qc_attr_read_int(hid_t obj, const char *name, int *v, const char *path,
                              const char *objname, sp_err *err);
sp_status sp_qc_attr_read_ints(hid_t obj, const char *name, int *v, int max, int *n,
                               const char *path, const char *objname, sp_err *err);
sp_status sp_qc_attr_read_str(hid_t obj, const char *name, char *buf, size_t cap,
                              const char *path, const char *objname, sp_err *err);

/* Check a dataset's stored type (class, byte size, and signedness for integers: 1 signed,
 * 0 unsigned, -1 any) and shape (ndim and dims); err names the dataset. */
sp_status sp_qc_check_dset(hid_t dset, H5T_class_t cls, size_t size, int is_signed, int ndim,
                           const hsize_t *dims, const char *path, const char *dname,
                           sp_err *err);

/* Read rows [row0, row0+nrows) of a 1-D or 2-D dataset as mem_type into dst. */
sp_status sp_qc_read_rows(hid_t dset, hid_t mem_type, hsize_t row0, hsize_t nrows, void *dst,
                          const char *path, const char *dname, sp_err *err);

/* ---- checksums (sp_qcontainer_crc.c, version 2) ---- */

/* zlib CRC-32 of n bytes, continuing crc (start with 0). */
uint32_t sp_qc_crc(uint32_t crc, const void *data, size_t n);
/* Attach attribute crc32 = CRC of the nbytes at data to dataset dset. */
sp_status sp_qc_write_crc(hid_t dset, const void *data, size_t nbytes, const char *path,
                          const char *dname, sp_err *err);
/* Check dataset d against its crc32 attribute (version >= 2; else SP_OK): over whole[0..nbytes)
 * when the caller has just read all of it, else by streaming it. SP_EFORMAT naming the
 * dataset on a mismatch or a missing attribute. */
sp_status sp_qc_verify(const sp_qcontainer *c, hid_t d, const void *whole, size_t nbytes,
                       const char *dname, sp_err *err);

#endif
