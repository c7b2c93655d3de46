/* sp_ckpt.c — the main-thread side of the checkpoint engine: describing a checkpoint, handing
 * it to the I/O thread, waiting for buffers, reporting errors. See sp_ckpt.h for the contract;
 * the I/O thread is sp_ckpt_io.c, resume is sp_ckpt_read.c.
 *
 * Hand-over: jobs are linked into two queues under ck->mu (collective jobs: the same sequence
 * on every rank; local jobs: this rank only) and the I/O thread is woken with cv_work. The I/O
 * thread marks progress (released, finished) under mu and wakes waiters with cv_done.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ckpt/sp_ckpt_int.h"

double sp_ck_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void sp_ckpt_opts_default(sp_ckpt_opts *o) {
    o->keep = 2;
    o->compress = SP_CKPT_NONE;
    o->level = 0;
    o->verify = -1;
}

size_t sp_ckpt_dtype_size(sp_ckpt_dtype dt) {
    switch (dt) {
    case SP_CKPT_U8: return 1;
    case SP_CKPT_I32: return 4;
    case SP_CKPT_F32: return 4;
    case SP_CKPT_I64: return 8;
    case SP_CKPT_F64: return 8;
    }
    return 0;
}

static void free_job(sp_ck_job *j) {
    if (!j) return;
    for (int i = 0; i < j->n_attrs; i++) {
        free(j->attrs[i].name);
        free(j->attrs[i].str);
    }
    for (int i = 0; i < j->n_items; i++) free(j->items[i].name);
    free(j->attrs);
    free(j->items);
    free(j);
}

/* ---- queues --------------------------------------------------------------------------------- */

static void push(sp_ckpt *ck, sp_ck_job *j) {
    pthread_mutex_lock(&ck->mu);
    j->qnext = NULL;
    if (j->kind == SP_CK_JOB_FN) {
        if (ck->local_tail) ck->local_tail->qnext = j;
        else ck->local_head = j;
        ck->local_tail = j;
    } else {
        if (ck->coll_tail) ck->coll_tail->qnext = j;
        else ck->coll_head = j;
        ck->coll_tail = j;
    }
    pthread_cond_signal(&ck->cv_work);
    pthread_mutex_unlock(&ck->mu);
}

static sp_status run_job(sp_ckpt *ck, sp_ck_job_kind kind, sp_status (*fn)(void *, sp_err *),
                         void *arg, sp_err *err) {
    sp_ck_job *j = sp_calloc(1, sizeof *j, err, "checkpoint I/O job");
    if (!j) return SP_ENOMEM;
    j->kind = kind;
    j->fn = fn;
    j->arg = arg;
    double t0 = sp_ck_now();
    push(ck, j);
    pthread_mutex_lock(&ck->mu);
    while (!j->finished) pthread_cond_wait(&ck->cv_done, &ck->mu);
    pthread_mutex_unlock(&ck->mu);
    ck->run_s += sp_ck_now() - t0;
    sp_status st = j->result;
    if (st != SP_OK && err) *err = j->err;
    free(j);
    return st;
}

sp_status sp_ck_run_local(sp_ckpt *ck, sp_status (*fn)(void *, sp_err *), void *arg,
                          sp_err *err) {
    return run_job(ck, SP_CK_JOB_FN, fn, arg, err);
}

sp_status sp_ck_run_collective(sp_ckpt *ck, sp_status (*fn)(void *, sp_err *), void *arg,
                               sp_err *err) {
    return run_job(ck, SP_CK_JOB_COLL, fn, arg, err);
}

sp_status sp_ckpt_run_on_io(sp_ckpt *ck, sp_status (*fn)(void *arg, sp_err *err), void *arg,
                            sp_err *err) {
    SP_RETURN_IF(!ck || !fn, err, SP_EINVAL, "sp_ckpt_run_on_io: NULL engine or function");
    return sp_ck_run_local(ck, fn, arg, err);
}

/* ---- create / destroy ------------------------------------------------------------------------ */

/* First collective job: register the zstd filter on the I/O thread (HDF5 state is global). */
static sp_status init_io(void *arg, sp_err *err) {
    sp_ckpt *ck = arg;
    sp_status st = sp_ck_zstd_register(err);
    return sp_ck_agree(ck, st, 0, err);
}

static sp_status check_opts(const sp_ckpt_opts *o, const char *dir, sp_err *err) {
    SP_RETURN_IF(!dir || !dir[0] || strlen(dir) > 4000, err, SP_EINVAL,
                 "checkpoint directory: empty or too long path");
    SP_RETURN_IF(o->keep < 1, err, SP_EINVAL, "%s: checkpoints to keep must be >= 1 (got %d)",
                 dir, o->keep);
    SP_RETURN_IF(o->compress != SP_CKPT_NONE && o->compress != SP_CKPT_GZIP &&
                     o->compress != SP_CKPT_ZSTD,
                 err, SP_EINVAL, "%s: unknown checkpoint compression %d", dir, (int)o->compress);
    int max = o->compress == SP_CKPT_ZSTD ? 22 : o->compress == SP_CKPT_GZIP ? 9 : 0;
    SP_RETURN_IF(o->level < 0 || (o->compress != SP_CKPT_NONE && o->level > max), err,
                 SP_EINVAL, "%s: compression level %d is outside 0..%d", dir, o->level, max);
    SP_RETURN_IF(o->verify < -1 || o->verify > 1, err, SP_EINVAL,
                 "%s: verify must be -1 (auto), 0 or 1 (got %d)", dir, o->verify);
    return SP_OK;
}

static void stop_thread(sp_ckpt *ck) {
    if (!ck->thread_started) return;
    sp_ck_job stop;
    memset(&stop, 0, sizeof stop);
    stop.kind = SP_CK_JOB_STOP;
    push(ck, &stop);
    pthread_join(ck->thread, NULL);
    ck->thread_started = 0;
}

static void free_engine(sp_ckpt *ck) {
    stop_thread(ck);
    while (ck->hist_head) {
        sp_ck_job *n = ck->hist_head->hnext;
        free_job(ck->hist_head);
        ck->hist_head = n;
    }
    free_job(ck->pend);
    if (ck->comm_io != MPI_COMM_NULL) MPI_Comm_free(&ck->comm_io);
    pthread_cond_destroy(&ck->cv_done);
    pthread_cond_destroy(&ck->cv_work);
    pthread_mutex_destroy(&ck->mu);
    free(ck->log.e);
    free(ck->dir);
    free(ck);
}

sp_status sp_ckpt_create(sp_ckpt **out, MPI_Comm comm, const char *dir, const sp_ckpt_opts *o,
                         sp_err *err) {
    *out = NULL;
    sp_ckpt_opts def;
    sp_ckpt_opts_default(&def);
    if (!o) o = &def;
    sp_err e = {SP_OK, ""};
    int rank = 0, provided = 0;
    MPI_Comm_rank(comm, &rank);
    MPI_Query_thread(&provided);
    const uint16_t one = 1;
    sp_status st = check_opts(o, dir, &e);
    if (st == SP_OK && provided != MPI_THREAD_MULTIPLE)
        st = sp_err_set(&e, SP_EUNSUPPORTED, "%s: checkpoints need MPI_THREAD_MULTIPLE", dir);
    if (st == SP_OK && *(const uint8_t *)&one != 1) /* CRCs are of little-endian bytes */
        st = sp_err_set(&e, SP_EUNSUPPORTED, "%s: checkpoints need a little-endian host", dir);
    if (st == SP_OK && rank == 0) st = sp_ck_mkdirs(dir, &e);
    if ((st = sp_mpi_agree(comm, st, &e)) != SP_OK) goto fail;

    sp_ckpt *ck = calloc(1, sizeof *ck);
    char *d = strdup(dir);
    if (!ck || !d) st = sp_err_set(&e, SP_ENOMEM, "%s: out of memory", dir);
    /* Every rank must reach the MPI_Comm_dup calls, so agree on the allocation first. */
    if ((st = sp_mpi_agree(comm, st, &e)) != SP_OK) {
        free(ck);
        free(d);
        goto fail;
    }
    ck->dir = d;
    ck->opts = *o;
    if (ck->opts.level == 0) ck->opts.level = o->compress == SP_CKPT_ZSTD ? 3 : 1;
    if (ck->opts.verify < 0) ck->opts.verify = o->compress != SP_CKPT_NONE;
    ck->last_step = -1;
    ck->comm_io = MPI_COMM_NULL;
    pthread_mutex_init(&ck->mu, NULL);
    pthread_cond_init(&ck->cv_work, NULL);
    pthread_cond_init(&ck->cv_done, NULL);
    st = sp_mpi_check(MPI_Comm_dup(comm, &ck->comm_io), "MPI_Comm_dup", &e);
    if (st == SP_OK) {
        MPI_Comm_rank(ck->comm_io, &ck->rank);
        MPI_Comm_size(ck->comm_io, &ck->size);
        if (pthread_create(&ck->thread, NULL, sp_ck_io_main, ck) != 0)
            st = sp_err_set(&e, SP_EIO, "%s: cannot start the checkpoint I/O thread", dir);
        else
            ck->thread_started = 1;
    }
    st = sp_mpi_agree(comm, st, &e);
    if (st == SP_OK) st = sp_ck_run_collective(ck, init_io, ck, &e);
    if (st != SP_OK) {
        free_engine(ck);
        goto fail;
    }
    *out = ck;
    return SP_OK;
fail:
    if (err) *err = e;
    return st;
}

/* ---- errors -------------------------------------------------------------------------------- */

/* Report the first error in [ck->reported, upto) and mark all of them reported. */
static sp_status report(sp_ckpt *ck, int64_t upto, sp_err *err) {
    sp_status st = SP_OK;
    pthread_mutex_lock(&ck->mu);
    sp_ck_errlog *l = &ck->log;
    if (upto > ck->reported) {
        sp_err first = l->e[ck->reported - l->base];
        int64_t more = upto - ck->reported - 1;
        st = first.code;
        if (more > 0)
            sp_err_set(err, st, "%.400s (and %lld more checkpoint error%s)", first.msg,
                       (long long)more, more > 1 ? "s" : "");
        else
            sp_err_set(err, st, "%s", first.msg);
        ck->reported = upto;
        /* Drop the reported entries. */
        int64_t drop = ck->reported - l->base;
        memmove(l->e, l->e + drop, (size_t)(l->count - ck->reported) * sizeof *l->e);
        l->base = ck->reported;
    }
    pthread_mutex_unlock(&ck->mu);
    return st;
}

static int job_refs(const sp_ck_job *j, const void *buf) {
    const char *p = buf;
    for (int i = 0; i < j->n_items; i++) {
        const char *b = j->items[i].buf;
        if (b && (p == b || (p > b && p < b + j->items[i].nbytes))) return 1;
    }
    return 0;
}

/* Free the finished history jobs among the head .. `upto` (NULL: the whole list). Unfinished
 * ones stay (the I/O thread still uses them). */
static void prune_history(sp_ckpt *ck, const sp_ck_job *upto) {
    pthread_mutex_lock(&ck->mu);
    sp_ck_job **pp = &ck->hist_head;
    int past = 0;
    while (*pp) {
        sp_ck_job *j = *pp;
        int is_upto = j == upto;
        if (!past && j->finished) {
            *pp = j->hnext;
            free_job(j);
        } else {
            pp = &j->hnext;
        }
        if (is_upto) past = 1;
    }
    pthread_mutex_unlock(&ck->mu);
    ck->hist_tail = NULL;
    for (sp_ck_job *j = ck->hist_head; j; j = j->hnext) ck->hist_tail = j;
}

sp_status sp_ckpt_wait_buffer(sp_ckpt *ck, const void *buf, sp_err *err) {
    SP_RETURN_IF(!ck, err, SP_EINVAL, "sp_ckpt_wait_buffer: NULL engine");
    if (!buf) return SP_OK;
    sp_ck_job *hit = NULL;
    for (sp_ck_job *j = ck->hist_head; j; j = j->hnext)
        if (job_refs(j, buf)) hit = j;
    if (!hit) return SP_OK;
    double t0 = sp_ck_now();
    pthread_mutex_lock(&ck->mu);
    while (!hit->released) pthread_cond_wait(&ck->cv_done, &ck->mu);
    int64_t mark = hit->err_mark;
    pthread_mutex_unlock(&ck->mu);
    ck->blocked_s += sp_ck_now() - t0;
    sp_status st = report(ck, mark, err);
    prune_history(ck, hit);
    return st;
}

sp_status sp_ckpt_wait_all(sp_ckpt *ck, sp_err *err) {
    SP_RETURN_IF(!ck, err, SP_EINVAL, "sp_ckpt_wait_all: NULL engine");
    double t0 = sp_ck_now();
    pthread_mutex_lock(&ck->mu);
    while (ck->n_finished < ck->n_committed) pthread_cond_wait(&ck->cv_done, &ck->mu);
    int64_t mark = ck->log.count;
    pthread_mutex_unlock(&ck->mu);
    ck->blocked_s += sp_ck_now() - t0;
    sp_status st = report(ck, mark, err);
    prune_history(ck, NULL);
    return st;
}

void sp_ckpt_get_stats(const sp_ckpt *ck, sp_ckpt_stats *s) {
    memset(s, 0, sizeof *s);
    if (!ck) return;
    pthread_mutex_t *mu = (pthread_mutex_t *)&ck->mu; /* the lock is not part of the value */
    pthread_mutex_lock(mu);
    s->write_s = ck->write_s;
    s->io_cpu_s = ck->io_cpu_s;
    s->bytes = ck->bytes;
    s->n_done = ck->n_done;
    s->n_failed = ck->n_failed;
    pthread_mutex_unlock(mu);
    s->blocked_s = ck->blocked_s;
    s->run_s = ck->run_s;
}

sp_status sp_ckpt_destroy(sp_ckpt *ck, sp_err *err) {
    if (!ck) return SP_OK;
    sp_status st = sp_ckpt_wait_all(ck, err);
    /* Every rank's I/O thread has finished the same jobs; the STOP job ends it. */
    free_engine(ck);
    return st;
}

/* ---- describing a checkpoint --------------------------------------------------------------- */

static sp_status pend_fail(sp_ckpt *ck, sp_err *err, sp_status code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Record the first error of the open description (commit fails with it) and return it. */
static sp_status pend_fail(sp_ckpt *ck, sp_err *err, sp_status code, const char *fmt, ...) {
    char msg[SP_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (ck->pend_st == SP_OK) {
        ck->pend_st = code;
        sp_err_set(&ck->pend_err, code, "%s", msg);
    }
    return sp_err_set(err, code, "%s", msg);
}

sp_status sp_ckpt_begin(sp_ckpt *ck, int64_t step, sp_err *err) {
    SP_RETURN_IF(!ck, err, SP_EINVAL, "sp_ckpt_begin: NULL engine");
    if (ck->pend_open) /* the open description fails; its commit still keeps ranks in step */
        return pend_fail(ck, err, SP_EINVAL,
                         "%s: checkpoint %lld begun while checkpoint %lld is still being "
                         "described", ck->dir, (long long)step,
                         (long long)(ck->pend ? ck->pend->step : -1));
    ck->pend_open = 1;
    ck->pend_st = SP_OK;
    ck->pend = calloc(1, sizeof *ck->pend);
    if (!ck->pend) return pend_fail(ck, err, SP_ENOMEM, "%s: out of memory", ck->dir);
    ck->pend->kind = SP_CK_JOB_CKPT;
    ck->pend->step = step;
    if (step < 0 || step <= ck->last_step || step > 99999999999LL)
        return pend_fail(ck, err, SP_EINVAL,
                         "%s: checkpoint step %lld must be in 0..99999999999 and above the last "
                         "committed step %lld", ck->dir, (long long)step,
                         (long long)ck->last_step);
    return SP_OK;
}

static int reserved_attr(const char *n) {
    return !strcmp(n, "format") || !strcmp(n, "version") || !strcmp(n, "step") ||
           !strcmp(n, "complete");
}

static sp_status put_attr(sp_ckpt *ck, const char *name, const char *s, int64_t v, int is_str,
                          sp_err *err) {
    SP_RETURN_IF(!ck, err, SP_EINVAL, "sp_ckpt_put_attr: NULL engine");
    SP_RETURN_IF(!ck->pend_open, err, SP_EINVAL, "%s: attribute put without sp_ckpt_begin",
                 ck->dir);
    if (ck->pend_st != SP_OK) return sp_err_set(err, ck->pend_st, "%s", ck->pend_err.msg);
    sp_ck_job *j = ck->pend;
    if (!name || !name[0] || strlen(name) > SP_CK_NAME_MAX || strchr(name, '/') ||
        reserved_attr(name))
        return pend_fail(ck, err, SP_EINVAL,
                         "%s: checkpoint %lld: bad attribute name \"%.64s\" (1..255 bytes, no "
                         "'/', not format/version/step/complete)", ck->dir, (long long)j->step,
                         name ? name : "(null)");
    for (int i = 0; i < j->n_attrs; i++)
        if (!strcmp(j->attrs[i].name, name))
            return pend_fail(ck, err, SP_EINVAL, "%s: checkpoint %lld: attribute '%s' put twice",
                             ck->dir, (long long)j->step, name);
    if (is_str && (!s || strlen(s) > SP_CK_ATTR_STR_MAX))
        return pend_fail(ck, err, SP_EINVAL,
                         "%s: checkpoint %lld: attribute '%s': NULL or longer than %d bytes",
                         ck->dir, (long long)j->step, name, SP_CK_ATTR_STR_MAX);
    if (j->n_attrs == j->cap_attrs) {
        int cap = j->cap_attrs ? 2 * j->cap_attrs : 8;
        sp_ck_attr *a = realloc(j->attrs, (size_t)cap * sizeof *a);
        if (!a) return pend_fail(ck, err, SP_ENOMEM, "%s: out of memory", ck->dir);
        j->attrs = a;
        j->cap_attrs = cap;
    }
    sp_ck_attr *a = &j->attrs[j->n_attrs];
    memset(a, 0, sizeof *a);
    a->name = strdup(name);
    a->is_str = is_str;
    a->str = is_str ? strdup(s) : NULL;
    a->i64 = v;
    if (!a->name || (is_str && !a->str)) {
        free(a->name);
        free(a->str);
        return pend_fail(ck, err, SP_ENOMEM, "%s: out of memory", ck->dir);
    }
    j->n_attrs++;
    return SP_OK;
}

sp_status sp_ckpt_put_attr_str(sp_ckpt *ck, const char *name, const char *value, sp_err *err) {
    return put_attr(ck, name, value, 0, 1, err);
}

sp_status sp_ckpt_put_attr_i64(sp_ckpt *ck, const char *name, int64_t v, sp_err *err) {
    return put_attr(ck, name, NULL, v, 0, err);
}

/* HDF5 path rules: "a/b/c" with non-empty components other than "." and "..". */
static int dset_name_ok(const char *n) {
    size_t len = n ? strlen(n) : 0;
    if (len == 0 || len > SP_CK_NAME_MAX || n[0] == '/' || n[len - 1] == '/') return 0;
    const char *c = n;
    while (c) {
        const char *e = strchr(c, '/');
        size_t k = e ? (size_t)(e - c) : strlen(c);
        if (k == 0 || (k == 1 && c[0] == '.') || (k == 2 && c[0] == '.' && c[1] == '.'))
            return 0;
        c = e ? e + 1 : NULL;
    }
    return 1;
}

/* 1 when a is b, or a group on b's path ("x" vs "x/y"), so both cannot be datasets. */
static int name_clash(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    if (na == nb) return !strcmp(a, b);
    if (na > nb) return name_clash(b, a);
    return !strncmp(a, b, na) && b[na] == '/';
}

sp_status sp_ckpt_put_rows(sp_ckpt *ck, const char *name, sp_ckpt_dtype dt, int ndim,
                           const int64_t *global_shape, int64_t row0, int64_t nrows,
                           const void *buf, sp_err *err) {
    SP_RETURN_IF(!ck, err, SP_EINVAL, "sp_ckpt_put_rows: NULL engine");
    SP_RETURN_IF(!ck->pend_open, err, SP_EINVAL, "%s: put_rows without sp_ckpt_begin", ck->dir);
    if (ck->pend_st != SP_OK) return sp_err_set(err, ck->pend_st, "%s", ck->pend_err.msg);
    sp_ck_job *j = ck->pend;
    long long step = (long long)j->step;
    if (!dset_name_ok(name))
        return pend_fail(ck, err, SP_EINVAL, "%s: checkpoint %lld: bad dataset name \"%.64s\"",
                         ck->dir, step, name ? name : "(null)");
    size_t es = sp_ckpt_dtype_size(dt);
    if (es == 0)
        return pend_fail(ck, err, SP_EINVAL, "%s: checkpoint %lld: dataset '%s': bad dtype %d",
                         ck->dir, step, name, (int)dt);
    if (ndim < 1 || ndim > SP_CKPT_MAX_NDIM || !global_shape)
        return pend_fail(ck, err, SP_EINVAL,
                         "%s: checkpoint %lld: dataset '%s': ndim %d is outside 1..%d", ck->dir,
                         step, name, ndim, SP_CKPT_MAX_NDIM);
    double total = (double)es;
    for (int d = 0; d < ndim; d++) {
        if (global_shape[d] < 0)
            return pend_fail(ck, err, SP_EINVAL,
                             "%s: checkpoint %lld: dataset '%s': shape[%d] = %lld is negative",
                             ck->dir, step, name, d, (long long)global_shape[d]);
        total *= (double)global_shape[d];
    }
    if (total > 0x1p60)
        return pend_fail(ck, err, SP_EINVAL, "%s: checkpoint %lld: dataset '%s' is too large",
                         ck->dir, step, name);
    if (row0 < 0 || nrows < 0 || row0 > global_shape[0] - nrows)
        return pend_fail(ck, err, SP_EINVAL,
                         "%s: checkpoint %lld: dataset '%s': rows %lld..%lld are outside "
                         "0..%lld", ck->dir, step, name, (long long)row0,
                         (long long)(row0 + nrows), (long long)global_shape[0]);
    size_t row_bytes = es;
    for (int d = 1; d < ndim; d++) row_bytes *= (size_t)global_shape[d];
    if (nrows > 0 && row_bytes > 0 && !buf)
        return pend_fail(ck, err, SP_EINVAL, "%s: checkpoint %lld: dataset '%s': NULL buffer",
                         ck->dir, step, name);
    for (int i = 0; i < j->n_items; i++)
        if (name_clash(j->items[i].name, name))
            return pend_fail(ck, err, SP_EINVAL,
                             "%s: checkpoint %lld: dataset '%s' clashes with dataset '%s' "
                             "(same name, or one is a group of the other)", ck->dir, step, name,
                             j->items[i].name);
    if (j->n_items == j->cap_items) {
        int cap = j->cap_items ? 2 * j->cap_items : 16;
        sp_ck_item *it = realloc(j->items, (size_t)cap * sizeof *it);
        if (!it) return pend_fail(ck, err, SP_ENOMEM, "%s: out of memory", ck->dir);
        j->items = it;
        j->cap_items = cap;
    }
    sp_ck_item *it = &j->items[j->n_items];
    memset(it, 0, sizeof *it);
    it->name = strdup(name);
    if (!it->name) return pend_fail(ck, err, SP_ENOMEM, "%s: out of memory", ck->dir);
    it->dt = dt;
    it->ndim = ndim;
    memcpy(it->shape, global_shape, (size_t)ndim * sizeof *global_shape);
    it->row0 = row0;
    it->nrows = nrows;
    it->buf = nrows > 0 ? buf : NULL;
    it->nbytes = (size_t)nrows * row_bytes;
    j->n_items++;
    return SP_OK;
}

/* FNV-1a over everything all ranks must describe identically. */
static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

static uint64_t describe_hash(const sp_ck_job *j) {
    uint64_t h = 0xcbf29ce484222325ULL;
    h = fnv(h, &j->step, sizeof j->step);
    h = fnv(h, &j->n_attrs, sizeof j->n_attrs);
    for (int i = 0; i < j->n_attrs; i++) {
        h = fnv(h, j->attrs[i].name, strlen(j->attrs[i].name) + 1);
        h = fnv(h, &j->attrs[i].is_str, sizeof j->attrs[i].is_str);
    }
    h = fnv(h, &j->n_items, sizeof j->n_items);
    for (int i = 0; i < j->n_items; i++) {
        const sp_ck_item *it = &j->items[i];
        int dt = (int)it->dt;
        h = fnv(h, it->name, strlen(it->name) + 1);
        h = fnv(h, &dt, sizeof dt);
        h = fnv(h, &it->ndim, sizeof it->ndim);
        h = fnv(h, it->shape, (size_t)it->ndim * sizeof it->shape[0]);
    }
    return h;
}

sp_status sp_ckpt_commit(sp_ckpt *ck, sp_err *err) {
    SP_RETURN_IF(!ck, err, SP_EINVAL, "sp_ckpt_commit: NULL engine");
    int begun = ck->pend_open;
    sp_ck_job *j = ck->pend;
    ck->pend = NULL;
    ck->pend_open = 0;
    /* Queue a job for every commit call, even a bad or missing description, so that the I/O
     * threads of all ranks see the same sequence; a bad one fails on every rank in phase 0. */
    if (!j) {
        j = calloc(1, sizeof *j);
        SP_RETURN_IF(!j, err, SP_ENOMEM, "%s: out of memory committing a checkpoint", ck->dir);
        j->kind = SP_CK_JOB_CKPT;
        j->step = -1;
    }
    if (!begun) {
        j->bad = sp_err_set(&j->bad_err, SP_EINVAL, "%s: commit without sp_ckpt_begin",
                            ck->dir);
    } else if (ck->pend_st != SP_OK) {
        j->bad = ck->pend_st;
        j->bad_err = ck->pend_err;
    }
    j->hash = describe_hash(j);
    if (j->bad == SP_OK) ck->last_step = j->step;
    ck->n_committed++;
    j->hnext = NULL;
    if (ck->hist_tail) ck->hist_tail->hnext = j;
    else ck->hist_head = j;
    ck->hist_tail = j;
    push(ck, j);
    if (!begun) return sp_err_set(err, SP_EINVAL, "%s: commit without sp_ckpt_begin", ck->dir);
    return SP_OK;
}
