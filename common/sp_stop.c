/* sp_stop.c — see sp_stop.h. */
#include "common/sp_stop.h"

int sp_stop_raised(const volatile sig_atomic_t *flag) { return flag && *flag != 0; }

static const char *sig_name(int sig) {
    switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGUSR1: return "SIGUSR1";
    default: return "a signal";
    }
}

sp_status sp_stop_check(const volatile sig_atomic_t *flag, const char *what, sp_err *err) {
    if (!sp_stop_raised(flag)) return SP_OK;
    return sp_err_set(err, SP_EINTERRUPTED, "%s: stopped by %s; nothing written", what,
                      sig_name((int)*flag));
}
