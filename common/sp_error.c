/* sp_error.c — see sp_error.h. */
#include "common/sp_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *sp_strerror(sp_status code) {
    switch (code) {
    case SP_OK: return "ok";
    case SP_EINVAL: return "invalid argument";
    case SP_EIO: return "I/O error";
    case SP_EFORMAT: return "format error";
    case SP_ETRUNC: return "truncated file";
    case SP_ENOMEM: return "out of memory";
    case SP_EUNSUPPORTED: return "unsupported";
    case SP_ENOTFOUND: return "not found";
    case SP_EEXIST: return "already exists";
    case SP_EMPI: return "MPI error";
    case SP_ENUMERIC: return "numeric error";
    case SP_EINTERNAL: return "internal error";
    case SP_EINTERRUPTED: return "interrupted";
    }
    return "unknown error";
}

sp_status sp_err_set(sp_err *err, sp_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

sp_status sp_err_prefix(sp_err *err, const char *fmt, ...) {
    if (!err) return SP_OK;
    char prefix[SP_ERR_MSG_MAX], old[SP_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    /* Build "prefix: old" piecewise; the result is cut at SP_ERR_MSG_MAX - 1 bytes. */
    size_t n = strlen(prefix);
    if (n > sizeof err->msg - 3) n = sizeof err->msg - 3;
    memcpy(err->msg, prefix, n);
    memcpy(err->msg + n, ": ", 2);
    size_t room = sizeof err->msg - n - 3, m = strlen(old);
    if (m > room) m = room;
    memcpy(err->msg + n + 2, old, m);
    err->msg[n + 2 + m] = '\0';
    return err->code;
}

void *sp_malloc(size_t nbytes, sp_err *err, const char *what) {
    void *p = malloc(nbytes ? nbytes : 1);
    if (!p) sp_err_set(err, SP_ENOMEM, "cannot allocate %zu bytes for %s", nbytes, what);
    return p;
}

void *sp_calloc(size_t n, size_t size, sp_err *err, const char *what) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) sp_err_set(err, SP_ENOMEM, "cannot allocate %zu x %zu bytes for %s", n, size, what);
    return p;
}
