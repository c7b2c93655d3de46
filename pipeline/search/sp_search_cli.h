/* sp_search_cli.h — `shardpress search` argument parsing and its report (used by main.c). */
#ifndef SP_SEARCH_CLI_H
#define SP_SEARCH_CLI_H

#include <mpi.h>
#include <signal.h>

#include "common/sp_error.h"
#include "pipeline/search/sp_search.h"

/* Collective: parse argv (argv[0] = "search"), run, print (rank 0). */
sp_status sp_search_cli(MPI_Comm comm, int rank, int argc, char **argv,
                        volatile sig_atomic_t *stop_flag, sp_err *err);
/* The human summary or the one JSON object (rank 0 prints). */
void sp_search_print_result(int rank, const sp_search_opts *o, const sp_search_result *r, int json);

#endif
