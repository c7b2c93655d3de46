/* sp_ckpt_int.h — internals of the checkpoint engine shared by the ckpt/ sources (not a public API).
 *
 * Threads: the main thread owns the description being built (ck->pend*) and the history list;
 * the I/O thread owns HDF5. Everything marked "mu" is read and written under ck->mu only.
 */
#ifndef SP_CKPT_INT_H
#define SP_CKPT_INT_H

#include <hdf5.h>
#include <pthread.h>

#include "mpi/sp_mpi.h"
#include "ckpt/sp_ckpt.h"

#define SP_CK_FORMAT "shardpress-ckpt"
#define SP_CK_VERSION 1
#define SP_CK_NAME_MAX 255
#define SP_CK_ATTR_STR_MAX 65535

/* CKPT: a checkpoint; COLL: fn on every rank's I/O thread, in queue order (may use comm_io);
 * FN: fn on this rank's I/O thread only (priority); STOP: end the thread. */
typedef enum { SP_CK_JOB_CKPT, SP_CK_JOB_COLL, SP_CK_JOB_FN, SP_CK_JOB_STOP } sp_ck_job_kind;

typedef struct {
    char *name;
    int is_str;
    char *str;   /* is_str: the value (rank 0's is written) */
    int64_t i64; /* !is_str                                 */
} sp_ck_attr;

typedef struct {
    char *name; /* HDF5 path relative to the root, no leading '/' */
    sp_ckpt_dtype dt;
    int ndim;
    int64_t shape[SP_CKPT_MAX_NDIM];
    int64_t row0, nrows;
    const void *buf;
    size_t nbytes; /* this rank's slab: nrows × row bytes */
} sp_ck_item;

typedef struct sp_ck_job sp_ck_job;
struct sp_ck_job {
    sp_ck_job_kind kind;
    sp_ck_job *qnext; /* queue link (mu)                 */
    sp_ck_job *hnext; /* history link (main thread only) */
    /* CKPT */
    int64_t step;
    sp_ck_attr *attrs;
    int n_attrs, cap_attrs;
    sp_ck_item *items;
    int n_items, cap_items;
    sp_status bad;       /* first error of the description (local), or SP_OK        */
    sp_err bad_err;
    uint64_t hash;       /* of what all ranks must describe identically              */
    int released;        /* mu: buffers no longer referenced             */
    int64_t err_mark;    /* mu: error-log count when released            */
    int finished;        /* mu: the I/O thread is done with the job      */
    /* FN and COLL */
    sp_status (*fn)(void *arg, sp_err *err);
    void *arg;
    sp_status result;
    sp_err err;
};

/* Errors of the I/O thread, in queue order (the same on every rank because each is agreed). */
typedef struct {
    sp_err *e;        /* e[i - base] for i in [base, count) */
    int64_t base, count;
    size_t cap;
} sp_ck_errlog;

struct sp_ckpt {
    MPI_Comm comm_io; /* MPI_Comm_dup of the engine's communicator, used by the I/O thread */
    int rank, size;
    char *dir;
    sp_ckpt_opts opts;

    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv_work; /* I/O thread waits for jobs      */
    pthread_cond_t cv_done; /* main thread waits for progress */
    sp_ck_job *coll_head, *coll_tail;   /* mu: collective jobs, same order on every rank */
    sp_ck_job *local_head, *local_tail; /* mu: this rank's local jobs (priority)          */
    sp_ck_errlog log;                   /* mu                                              */
    double write_s, io_cpu_s;           /* mu */
    int64_t bytes;                      /* mu */
    int n_done, n_failed;               /* mu */
    int64_t n_finished;                 /* mu: CKPT jobs finished                          */
    /* main thread only */
    double blocked_s, run_s;
    int64_t n_committed; /* CKPT jobs queued */
    int64_t reported;                 /* errors reported so far (index into log) */
    int64_t last_step;                /* last committed step, -1 before          */
    sp_ck_job *hist_head, *hist_tail; /* committed CKPT jobs not yet pruned       */
    sp_ck_job *pend;                  /* description being built                 */
    int pend_open;                    /* begin called, commit not yet             */
    sp_status pend_st;                /* first error of the description           */
    sp_err pend_err;
};

/* ---- sp_ckpt.c (used by the reader) ---- */
/* Queue a local job fn(arg) on the I/O thread and wait for it. */
sp_status sp_ck_run_local(sp_ckpt *ck, sp_status (*fn)(void *, sp_err *), void *arg,
                          sp_err *err);
/* Queue a collective job (same order on every rank) and wait for it. */
sp_status sp_ck_run_collective(sp_ckpt *ck, sp_status (*fn)(void *, sp_err *), void *arg,
                               sp_err *err);
double sp_ck_now(void);

/* ---- sp_ckpt_comm.c: collectives of the I/O thread that sleep while they wait ---- */
/* Complete req, polling with sleeps (no busy wait); this rank's local jobs run meanwhile. */
sp_status sp_ck_wait(sp_ckpt *ck, MPI_Request *req, const char *what, sp_err *err);
/* sp_mpi_agree's contract on ck->comm_io (lowest failing rank's code and message on every
 * rank, prefixed "rank R: " when size > 1), without spinning; plain = 1: no prefix. */
sp_status sp_ck_agree(sp_ckpt *ck, sp_status local, int plain, sp_err *err);
/* Gather n int64 of every rank to rank 0 (rank order); broadcast from rank 0; on comm_io. */
sp_status sp_ck_gather_i64(sp_ckpt *ck, const int64_t *mine, int n, int64_t *all, sp_err *err);
sp_status sp_ck_bcast(sp_ckpt *ck, void *buf, int n, MPI_Datatype t, sp_err *err);

/* ---- sp_ckpt_io.c: the I/O thread ---- */
void *sp_ck_io_main(void *arg);
/* Run this rank's queued local jobs now (between dataset writes). */
void sp_ck_service_local(sp_ckpt *ck);

/* ---- sp_ckpt_h5.c: HDF5 helpers (I/O thread only) ---- */
typedef struct {
    H5E_auto2_t func;
    void *data;
} sp_ck_quiet;
void sp_ck_quiet_begin(sp_ck_quiet *q);
void sp_ck_quiet_end(const sp_ck_quiet *q);
/* Innermost HDF5 error description into buf ("" if none). */
void sp_ck_h5_msg(char *buf, size_t cap);
/* sp_err_set with " (HDF5: <innermost message>)" appended when there is one. */
sp_status sp_ck_h5err(sp_err *err, sp_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
hid_t sp_ck_file_type(sp_ckpt_dtype dt);
hid_t sp_ck_mem_type(sp_ckpt_dtype dt);
/* dtype of an HDF5 dataset type, or -1. */
int sp_ck_dtype_of(hid_t type);
hid_t sp_ck_untimed_plist(hid_t cls);
sp_status sp_ck_attr_write_str(hid_t obj, const char *name, const char *s, sp_err *err);
sp_status sp_ck_attr_write_i64(hid_t obj, const char *name, int64_t v, sp_err *err);
sp_status sp_ck_attr_write_u32(hid_t obj, const char *name, uint32_t v, sp_err *err);
/* Read an integer attribute (any integer type HDF5 converts to int64). SP_ENOTFOUND if absent. */
sp_status sp_ck_attr_read_i64(hid_t obj, const char *name, int64_t *v, sp_err *err);
/* Read a string attribute (fixed or variable length) into a malloc'ed string. */
sp_status sp_ck_attr_read_str(hid_t obj, const char *name, char **v, sp_err *err);
/* Create the groups on the path to dataset name (parent components), timestamps off. */
sp_status sp_ck_make_parents(hid_t file, const char *name, sp_err *err);
/* 1 if the object at path exists (every component checked), 0 if not, <0 on error. */
int sp_ck_path_exists(hid_t file, const char *name);
/* Chunk dims for a compressed dataset: rows along dim 0 (then dim 1, ...) to ~4 MiB. */
void sp_ck_chunk_dims(int ndim, const int64_t *shape, size_t esize, hsize_t *chunk);
/* Register the zstd filter (id 32015) with HDF5; idempotent. */
sp_status sp_ck_zstd_register(sp_err *err);

/* ---- sp_ckpt_fs.c: files and directories (no HDF5) ---- */
/* mkdir -p. */
sp_status sp_ck_mkdirs(const char *dir, sp_err *err);
sp_status sp_ck_fsync_path(const char *path, int is_dir, sp_err *err);
/* "<dir>/ckpt-%08lld.h5" and "<dir>/.ckpt-%08lld.h5.tmp" (malloc'ed). */
char *sp_ck_final_path(const char *dir, int64_t step);
char *sp_ck_tmp_path(const char *dir, int64_t step);
/* Step of a file name "ckpt-<digits>.h5" (tmp=0) or ".ckpt-<digits>.h5.tmp" (tmp=1), or -1. */
int64_t sp_ck_parse_name(const char *name, int tmp);
/* Steps of the checkpoint files (tmp=0) or leftover tmp files (tmp=1) in dir, ascending. */
sp_status sp_ck_list_steps(const char *dir, int tmp, int64_t **steps, int *n, sp_err *err);
/* Atomically replace <dir>/latest with "<name>\n" (tmp + fsync + rename + fsync dir). */
sp_status sp_ck_write_latest(const char *dir, const char *name, sp_err *err);
/* Content of <dir>/latest without the newline into buf ("" when missing). */
sp_status sp_ck_read_latest(const char *dir, char *buf, size_t cap, sp_err *err);
/* Bytes available to an unprivileged writer in dir's file system, or -1. */
int64_t sp_ck_free_bytes(const char *dir);
/* "1.5 GiB" style. */
void sp_ck_fmt_bytes(char *buf, size_t cap, double bytes);
/* Delete checkpoints except the newest keep with step <= step, checkpoint files with a higher
 * step, and leftover tmp files. */
sp_status sp_ck_prune(const char *dir, int64_t step, int keep, sp_err *err);

/* ---- sp_ckpt_read.c ---- */
/* Collective on comm_io: SP_OK when path is a complete checkpoint of `step` whose every dataset
 * verifies (each rank CRCs its block of rows, rank 0 combines); else the problem, without the
 * file name and without a rank prefix, the same on every rank. */
sp_status sp_ck_verify_file(sp_ckpt *ck, const char *path, int64_t step, sp_err *err);
/* The body of sp_ckpt_open_latest, run on the I/O thread (arg: sp_ck_open_args). */
sp_status sp_ck_open_latest_io(void *arg, sp_err *err);

#endif
