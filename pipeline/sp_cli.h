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

/* Print one JSON object (a cJSON *) on one line of stdout and free it (the --json outputs). */
struct cJSON;
void sp_cli_print_json(struct cJSON *j);

/* A --bits-map file: one "module_name bits" per line (bits 1..8, 1 the Q1_0 level; an integer word; '#' comments
 * and blank lines allowed). Used by eval/generate (level selection) and export (GPTQ dynamic overrides). */
typedef struct {
    int n;
    char **names;   /* [n] module names (HF tensor name without ".weight") */
    int *bits;      /* [n]                                                   */
} sp_bits_map;

/* Read path into map (free with sp_bits_map_free, also after a failure). Errors name the file
 * and the line. */
sp_status sp_bits_map_read(const char *path, sp_bits_map *map, sp_err *err);

/* The reader behind every "module_name VALUE" file (--bits-map, --type-map): '#' comments and
 * blank lines skipped; a line is exactly two words (then optionally a comment), each name
 * appears once (a duplicate is an error naming both lines), a line over 1022 bytes is an error;
 * value(tok) turns the second word (whole) into the int stored in map->bits, or
 * returns -1, and the error then says "expected 'module_name " followed by expect (which
 * closes the quote itself, e.g. "bits' with bits in 2..8"). `what` names the file
 * kind in the open error ("bits map"). */
typedef int (*sp_module_map_value_fn)(const char *tok);
sp_status sp_module_map_read(const char *path, const char *what, sp_module_map_value_fn value,
                             const char *expect, sp_bits_map *map, sp_err *err);
void sp_bits_map_free(sp_bits_map *map);

#endif
