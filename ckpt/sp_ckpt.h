/* sp_ckpt.h — lazy asynchronous checkpoints to parallel HDF5 (in the spirit of DataStates-LLM).
 *
 * What a checkpoint is
 *   One HDF5 file per checkpoint, <dir>/ckpt-<step %08lld>.h5, holding root attributes and
 *   global datasets. Every rank contributes a block of rows (dim 0) of each dataset; the file
 *   does not depend on the rank count, so it can be read back by any number of ranks.
 *   Layout, integrity rules and how to read it with stock tools: docs/formats.md "Checkpoints".
 *
 * Lazy snapshot
 *   sp_ckpt_put_rows() records a reference to the caller's buffer, nothing is copied.
 *   sp_ckpt_commit() queues the checkpoint for this rank's background I/O thread and returns.
 *   The main thread blocks only in sp_ckpt_wait_buffer() (before it reuses a buffer) and in
 *   sp_ckpt_wait_all()/sp_ckpt_destroy(); that blocked time is measured (sp_ckpt_get_stats).
 *   A buffer is released as soon as the collective writes of its checkpoint are done, before
 *   the file is closed, fsync'ed and published.
 *
 * Threads and HDF5
 *   Debian's parallel HDF5 is not thread-safe: from sp_ckpt_create() until sp_ckpt_destroy()
 *   every HDF5 call of the process must happen on the engine's I/O thread. Other HDF5 users
 *   (the quantize output container) go through sp_ckpt_run_on_io(). At most one engine may live
 *   in a process at a time. MPI must be initialised with MPI_THREAD_MULTIPLE; the I/O thread
 *   uses its own MPI_Comm_dup of the engine's communicator. The engine's functions are called
 *   by one thread per rank (the "main" thread); they are not thread-safe among themselves.
 *   A checkpoint is written only when every rank has committed it, so a wait for it completes
 *   only then: never make a rank wait for a checkpoint (wait_buffer, wait_all, open_latest,
 *   destroy) while another rank still has to commit it after a collective of its own.
 *   run_on_io and reader calls do not have this constraint: local jobs also run while the I/O
 *   thread waits for other ranks.
 *
 * Commit protocol (per checkpoint, on the I/O threads of all ranks, same queue order)
 *   0. agree that every rank's description is valid and identical (a hash of step, attribute
 *      names/types, dataset names/dtypes/shapes, order); per dataset each rank computes the
 *      CRC-32 of its slab; rank 0 gathers them, checks that the slabs tile dim 0 exactly,
 *      combines them (crc32_combine) in row order, and checks free space when uncompressed;
 *      agree.
 *   1. create <dir>/.ckpt-<step>.h5.tmp (MPI-IO driver), attributes, groups, datasets; agree.
 *   2. one collective H5Dwrite per dataset; agree; the checkpoint's buffers are released.
 *   3. attributes crc32/nbytes per dataset, root attribute complete=1 (last), H5Fflush; agree
 *      (a flush that fails leaves the file closable); H5Fclose, then every rank fsyncs the file
 *      (each node flushes what it wrote); agree. Then, if opts.verify says so (by default for
 *      compressed checkpoints), the closed file is read back collectively and every dataset's
 *      CRC checked: Open MPI's OMPIO can lose a collective write to a full disk without
 *      returning an error (independent writes, used for uncompressed data, do report it);
 *      agree. Every rank drops the file's pages from its page cache.
 *   4. rank 0: rename the file to ckpt-<step>.h5, fsync the directory, replace
 *      <dir>/latest (tmp + fsync + rename + fsync dir), delete all but the newest `keep`
 *      checkpoints (and checkpoint files of a higher step, stale leftovers of an earlier run);
 *      agree.
 *   "agree" is sp_mpi_agree's protocol on the I/O thread's communicator (with nonblocking
 *   collectives polled with sleeps, so a waiting I/O thread does not spin on a core the
 *   application needs); a failure on one rank never leaves another rank inside a collective
 *   HDF5 call, and every rank records the same error. Contiguous datasets are written with
 *   collective HDF5 transfers and independent MPI-IO underneath (H5FD_MPIO_INDIVIDUAL_IO:
 *   each slab is one contiguous file range); compressed ones with true collective I/O.
 *
 * Errors
 *   A failed checkpoint is discarded: its .tmp file is removed; earlier checkpoints and
 *   `latest` are untouched; the engine goes on with the next one. Disk full gives
 *   "<dir>/ckpt-<step>.h5: no space left on device (...); checkpoint discarded, earlier
 *   checkpoints and 'latest' unchanged". I/O-thread errors are logged in queue order (identical
 *   on every rank) and each is reported once, by the first wait that covers it:
 *     - sp_ckpt_wait_buffer(buf) covers everything up to the release of buf's checkpoint
 *       (earlier checkpoints completely, buf's checkpoint up to and including its writes);
 *     - sp_ckpt_wait_all() and sp_ckpt_destroy() cover everything committed.
 *   This rule makes every rank report the same error at the same call whatever the timing of
 *   its I/O thread. sp_ckpt_commit() never reports them for that reason (it does not wait).
 *   Several unreported errors are reported as the first one plus "(and N more ...)".
 *   A bad description (bad name, shape or row range, step not increasing, begin twice, commit
 *   without begin, or ranks describing different checkpoints) is reported at once by the call
 *   that detects it on this rank, but the checkpoint is still queued by sp_ckpt_commit: it then
 *   fails on every rank in phase 0 (nothing is written) and the waits report that, agreed, as
 *   for any I/O error. Every commit call queues exactly one job, so the I/O threads of all
 *   ranks stay in step as long as every rank calls begin/commit the same number of times.
 */
#ifndef SP_CKPT_H
#define SP_CKPT_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "common/sp_error.h"

typedef enum { SP_CKPT_NONE = 0, SP_CKPT_GZIP, SP_CKPT_ZSTD } sp_ckpt_compress;
typedef enum { SP_CKPT_U8 = 0, SP_CKPT_I32, SP_CKPT_I64, SP_CKPT_F32, SP_CKPT_F64 } sp_ckpt_dtype;

/* HDF5 filter ID registered for Zstandard (the ID h5py's hdf5plugin and other tools use). */
#define SP_CKPT_ZSTD_FILTER_ID 32015
/* Largest number of dimensions of a checkpoint dataset. */
#define SP_CKPT_MAX_NDIM 4

typedef struct {
    int keep;                  /* checkpoints kept on disk (newest first), >= 1; default 2 */
    sp_ckpt_compress compress; /* default SP_CKPT_NONE (contiguous datasets)               */
    int level;                 /* gzip 1..9 (default 1), zstd 1..22 (default 3); 0: default */
    int verify;                /* read each file back and check its CRCs before publishing
                                  it: 1 always, 0 never, -1 (default) when compressing, the
                                  case where MPI-IO (collective) can lose writes silently    */
} sp_ckpt_opts;

/* Fill o with the defaults: keep 2, no compression, level 0 (default), verify -1 (auto). */
void sp_ckpt_opts_default(sp_ckpt_opts *o);

/* Bytes per element of dt (0 for an invalid value). */
size_t sp_ckpt_dtype_size(sp_ckpt_dtype dt);

typedef struct sp_ckpt sp_ckpt;

/* ---- writing ------------------------------------------------------------------------------ */

/* Collective over comm. Rank 0 creates dir (and missing parents) if needed. Duplicates comm
 * for the I/O thread and starts it; it registers the zstd filter (idempotent, process-wide in
 * HDF5) and from now on makes every HDF5 call of the process. o may be NULL (defaults).
 * @return SP_OK and *out; SP_EINVAL for bad options, SP_EIO if dir cannot be created,
 *         SP_EUNSUPPORTED if MPI is not MPI_THREAD_MULTIPLE; the same code on every rank. */
sp_status sp_ckpt_create(sp_ckpt **out, MPI_Comm comm, const char *dir, const sp_ckpt_opts *o,
                         sp_err *err);

/* Start describing checkpoint `step` (>= 0, strictly greater than every step committed on this
 * engine). All ranks describe the same items in the same order (checked on the I/O thread).
 * @return SP_EINVAL for a bad step, or when a description is already open (that one is then
 *         marked bad; commit it as usual). */
sp_status sp_ckpt_begin(sp_ckpt *ck, int64_t step, sp_err *err);

/* A root attribute of the open checkpoint, copied now; rank 0's value is written (all ranks
 * must name the same attributes). Names: 1..255 bytes, no '/', not one of the reserved
 * format, version, step, complete; each at most once. Strings: < 64 KiB.
 * @return SP_EINVAL for a bad name (the description is marked bad, see top). */
sp_status sp_ckpt_put_attr_str(sp_ckpt *ck, const char *name, const char *value, sp_err *err);
sp_status sp_ckpt_put_attr_i64(sp_ckpt *ck, const char *name, int64_t v, sp_err *err);

/* A global dataset `name` ('/' separates groups, which are created as needed) of dtype dt and
 * global shape global_shape[ndim] (1 <= ndim <= 4). This rank writes rows [row0, row0+nrows)
 * of dim 0 from buf (row-major, native byte order); nrows may be 0 (buf may then be NULL).
 * The slabs of all ranks must tile [0, global_shape[0]) exactly (checked on the I/O thread).
 * buf is NOT copied: the caller must not modify or free it until sp_ckpt_wait_buffer(buf) or
 * sp_ckpt_wait_all() has returned.
 * @return SP_EINVAL for a bad name, dtype, shape or row range (the description is marked bad:
 *         commit it anyway; the checkpoint then fails on every rank, see top). */
sp_status sp_ckpt_put_rows(sp_ckpt *ck, const char *name, sp_ckpt_dtype dt, int ndim,
                           const int64_t *global_shape, int64_t row0, int64_t nrows,
                           const void *buf, sp_err *err);

/* Close the description, queue it for the I/O thread and return at once (no communication).
 * Every call queues one job, also for a bad description or without begin (see top).
 * @return SP_OK; SP_EINVAL without sp_ckpt_begin; SP_ENOMEM. Never reports I/O-thread errors. */
sp_status sp_ckpt_commit(sp_ckpt *ck, sp_err *err);

/* Block until no committed checkpoint still references buf (a pointer inside or at the start
 * of a put_rows slab); returns at once if none does. The time blocked is added to blocked_s.
 * @return the first not yet reported I/O-thread error up to the release of buf's newest
 *         checkpoint (see top), which is then cleared; SP_OK otherwise. */
sp_status sp_ckpt_wait_buffer(sp_ckpt *ck, const void *buf, sp_err *err);

/* Block until every committed checkpoint is durable or failed (time added to blocked_s).
 * @return the first not yet reported I/O-thread error (same on every rank), then cleared. */
sp_status sp_ckpt_wait_all(sp_ckpt *ck, sp_err *err);

/* Run fn(arg, err) on THIS rank's I/O thread and wait for it; not collective. Local jobs have
 * priority over queued checkpoints and also run between the dataset writes of an in-flight
 * checkpoint and while the I/O thread waits for other ranks, so fn starts at the latest after
 * one dataset write or one collective call inside HDF5. fn may call HDF5 (on files
 * of its own; any driver but MPI-IO on the engine's files), must not call MPI collectives and
 * must not call engine functions. The wait is added to run_s.
 * @return fn's status (its message in err). */
sp_status sp_ckpt_run_on_io(sp_ckpt *ck, sp_status (*fn)(void *arg, sp_err *err), void *arg,
                            sp_err *err);

typedef struct {
    double blocked_s; /* main thread time spent in wait_buffer/wait_all                   */
    double write_s;   /* I/O thread time spent on checkpoints (crc, HDF5, fsync, publish)  */
    int64_t bytes;    /* slab bytes this rank wrote in durable checkpoints                 */
    int n_done;       /* durable checkpoints                                               */
    int n_failed;     /* discarded checkpoints                                             */
    double run_s;     /* main thread time spent in run_on_io and reader calls              */
    double io_cpu_s;  /* CPU time (user + system) the I/O thread used for checkpoints      */
} sp_ckpt_stats;

/* A snapshot of this rank's counters (thread-safe). */
void sp_ckpt_get_stats(const sp_ckpt *ck, sp_ckpt_stats *s);

/* Collective: wait_all, stop and join the I/O thread, free the duplicated communicator and
 * ck (also when an error is returned). Readers must be closed before. ck may be NULL.
 * @return what wait_all returned. */
sp_status sp_ckpt_destroy(sp_ckpt *ck, sp_err *err);

/* ---- resume (all HDF5 work runs on the engine's I/O thread) -------------------------------- */

typedef struct sp_ckpt_reader sp_ckpt_reader;

/* Collective over the engine's communicator, queued behind the checkpoints committed before
 * (every rank calls it at the same point of its commit sequence). Considers, newest step
 * first, the checkpoint
 * files in the engine's dir (plus leftover .tmp files and the file `latest` names) and returns
 * the newest that opens, has format "shardpress-ckpt", version 1, the step of its name,
 * complete=1, and whose every dataset's CRC-32 verifies (each rank reads a block of rows of
 * every dataset; rank 0 combines). Each newer file that fails adds one line to warn, e.g.
 *   "ckpt-00000004.h5: dataset 'X': checksum mismatch (stored 0x..., computed 0x...)"
 *   "ckpt-00000004.h5: truncated (HDF5: truncated file: eof = ...)"
 *   "ckpt-00000004.h5: incomplete (root attribute 'complete' is not 1)"
 *   "ckpt-00000005.h5: named by 'latest' but missing"
 *   ".ckpt-00000006.h5.tmp: partial checkpoint (never completed)"
 * Lines are identical on every rank; warn (may be NULL) is NUL-terminated and cut at
 * warn_cap. The reader is then opened by every rank with the POSIX driver, so reader calls
 * are local (any rank, any order) and sp_ckpt_reader_close is local.
 * @return SP_OK and *r; SP_ENOTFOUND when no usable checkpoint exists; same on every rank. */
sp_status sp_ckpt_open_latest(sp_ckpt *ck, sp_ckpt_reader **r, char *warn, size_t warn_cap,
                              sp_err *err);

/* Step and full path of the opened checkpoint (owned by r). */
int64_t sp_ckpt_reader_step(const sp_ckpt_reader *r);
const char *sp_ckpt_reader_path(const sp_ckpt_reader *r);

/* Root attributes. *value is malloc'ed (caller frees). @return SP_ENOTFOUND if absent,
 * SP_EFORMAT if of another type. */
sp_status sp_ckpt_get_attr_str(sp_ckpt_reader *r, const char *name, char **value, sp_err *err);
sp_status sp_ckpt_get_attr_i64(sp_ckpt_reader *r, const char *name, int64_t *v, sp_err *err);

/* Dtype and shape of dataset name. @return SP_ENOTFOUND if absent. */
sp_status sp_ckpt_dataset_info(sp_ckpt_reader *r, const char *name, sp_ckpt_dtype *dt, int *ndim,
                               int64_t shape[4], sp_err *err);
sp_status sp_ckpt_dataset_shape(sp_ckpt_reader *r, const char *name, int *ndim, int64_t shape[4],
                                sp_err *err);

/* Read rows [row0, row0+nrows) of a dataset in its own dtype (native byte order) into buf
 * (nrows × row size bytes). Local: any rank, any rank count. @return SP_EINVAL for a bad range,
 * SP_ENOTFOUND if absent, SP_EIO if the read fails. */
sp_status sp_ckpt_read_rows(sp_ckpt_reader *r, const char *name, int64_t row0, int64_t nrows,
                            void *buf, sp_err *err);

/* Close the file (on the I/O thread) and free r. Local. r may be NULL. */
void sp_ckpt_reader_close(sp_ckpt_reader *r);

#endif
