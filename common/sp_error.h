/* sp_error.h — status codes and error messages shared by every module.
 *
 * Contract (stated once, used everywhere):
 *   - A function that can fail returns sp_status. SP_OK (0) means success.
 *   - On failure it fills the caller's sp_err with a one-line message that names the
 *     file and the field (or tensor, or option) at fault, and returns the same code.
 *   - Library code never calls exit() or MPI_Abort(); only pipeline/main.c does.
 *   - An sp_err may be NULL, in which case only the code is returned.
 */
#ifndef SP_ERROR_H
#define SP_ERROR_H

#include <stddef.h>

typedef enum {
    SP_OK = 0,
    SP_EINVAL = 1,       /* bad argument or option value                         */
    SP_EIO = 2,          /* open/read/write/mmap failed (errno in the message)  */
    SP_EFORMAT = 3,      /* file is corrupt: a field holds an impossible value  */
    SP_ETRUNC = 4,       /* file is shorter than its header says               */
    SP_ENOMEM = 5,       /* allocation failed                                   */
    SP_EUNSUPPORTED = 6, /* valid input that shardpress does not handle        */
    SP_ENOTFOUND = 7,    /* a required file, tensor or key is missing           */
    SP_EEXIST = 8,       /* output exists and --force was not given            */
    SP_EMPI = 9,         /* an MPI call failed, or another rank failed         */
    SP_ENUMERIC = 10,    /* NaN/Inf, or a factorization that cannot succeed     */
    SP_EINTERNAL = 11,   /* a bug: an invariant did not hold                    */
    SP_EINTERRUPTED = 12 /* stopped by a signal (preemption); resumable if it checkpointed */
} sp_status;

#define SP_ERR_MSG_MAX 512

typedef struct {
    sp_status code;
    char msg[SP_ERR_MSG_MAX];
} sp_err;

/* Human name of a status code ("format error", ...). Never NULL. */
const char *sp_strerror(sp_status code);

/* Fill err (if non-NULL) with code and a printf-style message; returns code.
 * An existing message is overwritten. */
sp_status sp_err_set(sp_err *err, sp_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix the message already in err with "<prefix>: " (for adding context while
 * an error travels up). Returns err->code (or SP_OK when err is NULL). */
sp_status sp_err_prefix(sp_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Return from the current function with code and a message when cond holds. */
#define SP_RETURN_IF(cond, err, code, ...)                      \
    do {                                                        \
        if (cond) return sp_err_set((err), (code), __VA_ARGS__); \
    } while (0)

/* Return the status of expr from the current function when it is not SP_OK. */
#define SP_FORWARD(expr)                 \
    do {                                 \
        sp_status sp_fwd_s_ = (expr);    \
        if (sp_fwd_s_ != SP_OK) return sp_fwd_s_; \
    } while (0)

/* malloc/calloc that fill err on failure; they return NULL then. */
void *sp_malloc(size_t nbytes, sp_err *err, const char *what);
void *sp_calloc(size_t n, size_t size, sp_err *err, const char *what);

#endif
