/* sp_opts.c — see sp_opts.h. */
#include "pipeline/sp_opts.h"

#include <getopt.h>
#include <stddef.h>
#include <stdio.h>

#include "pipeline/sp_cli.h"

/* getopt_long returns IDX0 + row for row's option, so no row collides with 'h' or '?'. */
#define IDX0 0x1000

static sp_status set_value(const sp_opt *r, const char *val, sp_err *err) {
    char opt[80];
    snprintf(opt, sizeof opt, "--%s", r->name);
    long v = 0;
    double d = 0;
    switch (r->kind) {
    case SP_OPT_FLAG: *(int *)r->dst = (int)r->lo; return SP_OK;
    case SP_OPT_STR: *(const char **)r->dst = val; return SP_OK;
    case SP_OPT_INT:
        SP_FORWARD(sp_cli_int(opt, val, r->lo, r->hi, &v, err));
        *(int *)r->dst = (int)v;
        return SP_OK;
    case SP_OPT_LONG:
        SP_FORWARD(sp_cli_int(opt, val, r->lo, r->hi, &v, err));
        *(long *)r->dst = v;
        return SP_OK;
    case SP_OPT_DOUBLE:
        SP_FORWARD(sp_cli_double(opt, val, r->dlo, r->dhi, &d, err));
        *(double *)r->dst = d;
        return SP_OK;
    case SP_OPT_FN: return r->fn(opt, val, r->dst, err);
    }
    return sp_err_set(err, SP_EINTERNAL, "%s: unknown option kind", opt);
}

sp_status sp_opts_parse(const char *cmd, const sp_opt *t, int n, int argc, char **argv,
                        int *help, const char **pos, int max_pos, int *n_pos, sp_err *err) {
    SP_RETURN_IF(n < 0 || n > SP_OPTS_MAX, err, SP_EINTERNAL, "%s: %d options (at most %d)", cmd,
                 n, SP_OPTS_MAX);
    struct option lo[SP_OPTS_MAX + 2];
    for (int i = 0; i < n; i++)
        lo[i] = (struct option){t[i].name, t[i].kind == SP_OPT_FLAG ? no_argument
                                                                    : required_argument,
                                NULL, IDX0 + i};
    lo[n] = (struct option){"help", no_argument, NULL, 'h'};
    lo[n + 1] = (struct option){NULL, 0, NULL, 0};
    *help = 0;
    if (n_pos) *n_pos = 0;
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (ch == 'h') {
            *help = 1;
            return SP_OK;
        }
        SP_RETURN_IF(ch < IDX0 || ch >= IDX0 + n, err, SP_EINVAL, "%s: unknown or incomplete "
                     "option '%s' (see shardpress %s --help)", cmd, argv[optind - 1], cmd);
        SP_FORWARD(set_value(&t[ch - IDX0], optarg, err));
    }
    /* getopt_long moved the other arguments, in order, to argv[optind..) */
    for (int i = optind; i < argc; i++) {
        SP_RETURN_IF(!n_pos || *n_pos >= max_pos, err, SP_EINVAL, "%s: unexpected argument '%s'",
                     cmd, argv[i]);
        pos[(*n_pos)++] = argv[i];
    }
    return SP_OK;
}
