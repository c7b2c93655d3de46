/* sp_opts.h — each command declares its options in one table; sp_opts_parse does the rest.
 *
 * The commands used to repeat the same getopt_long loop: a `struct option` array, a switch
 * with one case per option calling sp_cli_int/sp_cli_double, the -h/--help case, the
 * "unknown or incomplete option" and "unexpected argument" errors. A table row says where an
 * option's value goes and how it is checked:
 *
 *   const sp_opt t[] = {
 *       SP_OPT_S("model", &o.model_dir),
 *       SP_OPT_I("ctx", &o.ctx, 2, 1 << 24),
 *       SP_OPT_F("json", &json, 1),
 *       SP_OPT_X("device", &o.device, device_fn),
 *   };
 *
 * Values are checked as they are met, in argv order; the first bad one is the error, and its
 * message names the option (sp_cli.h's rules). Not thread-safe (getopt_long's globals).
 */
#ifndef SP_OPTS_H
#define SP_OPTS_H

#include "common/sp_error.h"

typedef enum {
    SP_OPT_FLAG,   /* no value: *(int *)dst = (int)lo                                         */
    SP_OPT_STR,    /* *(const char **)dst = the value (argv's own string)                     */
    SP_OPT_INT,    /* *(int *)dst = an integer in [lo, hi] (hi <= INT_MAX)                     */
    SP_OPT_LONG,   /* *(long *)dst = an integer in [lo, hi]                                    */
    SP_OPT_DOUBLE, /* *(double *)dst = a finite number in [dlo, dhi]                           */
    SP_OPT_FN      /* fn(opt, value, dst, err): anything else (a list, a name among several)   */
} sp_opt_kind;

typedef sp_status (*sp_opt_fn)(const char *opt, const char *val, void *dst, sp_err *err);

typedef struct {
    const char *name;   /* the long name without "--"                                        */
    sp_opt_kind kind;
    void *dst;
    long lo, hi;        /* SP_OPT_INT/LONG bounds; SP_OPT_FLAG: lo is the value stored         */
    double dlo, dhi;    /* SP_OPT_DOUBLE bounds                                                */
    sp_opt_fn fn;       /* SP_OPT_FN; opt is "--name"                                          */
} sp_opt;

/* Rows (designated initializers: the fields not named are zero). */
#define SP_OPT_F(n, d, v) {.name = (n), .kind = SP_OPT_FLAG, .dst = (d), .lo = (v)}
#define SP_OPT_S(n, d) {.name = (n), .kind = SP_OPT_STR, .dst = (d)}
#define SP_OPT_I(n, d, l, h) {.name = (n), .kind = SP_OPT_INT, .dst = (d), .lo = (l), .hi = (h)}
#define SP_OPT_L(n, d, l, h) {.name = (n), .kind = SP_OPT_LONG, .dst = (d), .lo = (l), .hi = (h)}
#define SP_OPT_D(n, d, l, h) {.name = (n), .kind = SP_OPT_DOUBLE, .dst = (d), .dlo = (l), .dhi = (h)}
#define SP_OPT_X(n, d, f) {.name = (n), .kind = SP_OPT_FN, .dst = (d), .fn = (f)}

#define SP_OPTS_MAX 64

/* Parse argv[1..argc) (argv[0] is the command's name, cmd) with the n options of t, plus -h and
 * --help, which set *help to 1 and end the parse with SP_OK (the caller prints its usage).
 * Arguments that are not options go, in order, to pos[0..max_pos) with their count in *n_pos
 * (pos may be NULL when max_pos is 0); one more is "<cmd>: unexpected argument 'X'".
 * @return SP_OK; SP_EINVAL "<cmd>: unknown or incomplete option 'X' (see shardpress <cmd>
 *         --help)", or the value's error naming the option; SP_EINTERNAL for a table of more than
 *         SP_OPTS_MAX rows. */
sp_status sp_opts_parse(const char *cmd, const sp_opt *t, int n, int argc, char **argv,
                        int *help, const char **pos, int max_pos, int *n_pos, sp_err *err);

#endif
