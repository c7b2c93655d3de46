/* sp_gguf_cli.h — `shardpress export --format gguf`: option parsing, the type map, and the
 * single-writer protocol (rank 0 writes, every rank returns the agreed status). */
#ifndef SP_GGUF_CLI_H
#define SP_GGUF_CLI_H

#include <mpi.h>
#include <signal.h>

#include "common/sp_error.h"
#include "pipeline/sp_cli.h"

/* A --type-map file: one "module_name TYPE" per line (TYPE a GGUF type name such as Q4_K;
 * '#' comments and blank lines allowed). map->bits holds the sp_gtype numbers. Errors name the
 * file and the line. Free with sp_bits_map_free. */
sp_status sp_type_map_read(const char *path, sp_bits_map *map, sp_err *err);

/* 1 when argv holds "--format gguf" (or --format=gguf). */
int sp_gguf_cli_wants(int argc, char **argv);

/* quantize --format gguf:TYPE: *type gets TYPE, a quantized GGUF type (Q4_0, Q4_1, Q5_0,
 * Q5_1, Q8_0, Q2_K … Q6_K); its level's bits are sp_gtype_level's.
 * @return SP_EINVAL for another format or type (F32/F16 are not levels). */
sp_status sp_gguf_cli_format(const char *val, int *type, sp_err *err);

/* quantize --levels: a comma-separated list of bit widths 2..8, each optionally with its own
 * group size ("4g128": groups[i] = 128; without: groups[i] = 0, --group-size), or of quantized
 * GGUF type names (Q3_K,Q4_K,Q6_K -> levels 3,4,6 and types[i] the type; else types[i] = 0);
 * *is_types is set to 1 for the latter. */
sp_status sp_gguf_cli_levels(const char *val, int *levels, int max, int *n, int *types,
                             int *groups, int *is_types, sp_err *err);

/* Run the export subcommand with argv as given to `export` (argv[0] = "export"); stop_flag as in
 * sp_gguf_export_opts. */
sp_status sp_gguf_export_cli(MPI_Comm comm, int rank, int argc, char **argv,
                             const volatile sig_atomic_t *stop_flag, sp_err *err);

#endif
