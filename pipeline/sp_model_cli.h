/* sp_model_cli.h — the commands that run a model (or its tokenizer) and print what it gives:
 * `eval`, `generate`, `tokenize`. Each parses its argv (argv[0] = the command's name) with an
 * option table (pipeline/sp_opts.h), runs its job collectively on comm, prints on rank 0 and
 * returns the status every rank agrees on. stop_flag: main.c's signal flag (common/sp_stop.h).
 */
#ifndef SP_MODEL_CLI_H
#define SP_MODEL_CLI_H

#include <mpi.h>
#include <signal.h>

#include "common/sp_error.h"

sp_status sp_eval_cli(MPI_Comm comm, int rank, int argc, char **argv,
                      const volatile sig_atomic_t *stop_flag, sp_err *err);
sp_status sp_generate_cli(MPI_Comm comm, int rank, int argc, char **argv,
                          const volatile sig_atomic_t *stop_flag, sp_err *err);
sp_status sp_tokenize_cli(MPI_Comm comm, int rank, int argc, char **argv,
                          const volatile sig_atomic_t *stop_flag, sp_err *err);

#endif
