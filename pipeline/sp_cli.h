/* sp_cli.h — small helpers shared by the subcommands of pipeline/main.c: strict number
 * parsing with messages that name the option. */
#ifndef SP_CLI_H
#define SP_CLI_H

#include "common/sp_error.h"

/* Parse an integer option value in [lo, hi]; the message names the option. */
sp_status sp_cli_int(const char *opt, const char *val, long lo, long hi, long *out, sp_err *err);
/* Parse a finite floating-point option value in [lo, hi]. */
sp_status sp_cli_double(const char *opt, const char *val, double lo, double hi, double *out,
                        sp_err *err);
/* Parse a comma-separated list of integers in [lo, hi] (at most max items). */
sp_status sp_cli_int_list(const char *opt, const char *val, long lo, long hi, int *out, int max,
                          int *n, sp_err *err);

/* A --bits-map file: one "module_name bits" per line (bits 2..8; '#' comments and blank lines
 * allowed). Used by eval/generate (level selection) and export (GPTQ dynamic overrides). */
typedef struct {
    int n;
    char **names;   /* [n] module names (HF tensor name without ".weight") */
    int *bits;      /* [n]                                                   */
} sp_bits_map;

/* Read path into map (free with sp_bits_map_free, also after a failure). Errors name the file
 * and the line. */
sp_status sp_bits_map_read(const char *path, sp_bits_map *map, sp_err *err);
void sp_bits_map_free(sp_bits_map *map);

#endif
