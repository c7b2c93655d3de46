/* sp_stop.h — stopping a job when the user or the scheduler asks (SIGTERM, SIGINT, SIGUSR1).
 *
 * pipeline/main.c installs the only signal handler: it stores the signal's number in one
 * sig_atomic_t flag (0: not asked). Jobs get a pointer to that flag (NULL: never stop) and look
 * at it between units of work — a window, a token, a tensor, a block — at points where stopping
 * leaves nothing half-written. When it is raised they take their ordinary failure path (which
 * removes "<out>.partial" and temporary files) and return SP_EINTERRUPTED. Collective jobs
 * must agree on the status (sp_mpi_agree) before the next collective, so ranks that saw the
 * signal at different units still stop together. Library code installs no handlers.
 */
#ifndef SP_STOP_H
#define SP_STOP_H

#include <signal.h>

#include "common/sp_error.h"

/* 1 when flag is not NULL and raised. Async-signal-safe to read; never blocks. */
int sp_stop_raised(const volatile sig_atomic_t *flag);

/* SP_OK, or when the flag is raised SP_EINTERRUPTED with "<what>: stopped by SIGTERM; nothing
 * written" (the signal's name from the flag). */
sp_status sp_stop_check(const volatile sig_atomic_t *flag, const char *what, sp_err *err);

#endif
