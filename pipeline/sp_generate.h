/* sp_generate.h — `shardpress generate`: sample text from a model.
 *
 * A correctness tool, not an inference engine: there is no KV cache, and every step runs the
 * whole sequence through the model again, converting one block at a time (so a 70B model still
 * fits; it is just slow). Temperature 0 is greedy (ties go to the lowest id). Sampling uses a
 * seeded xorshift64* generator, so the same --seed gives the same text.
 * Rank 0 generates; other ranks wait (the result does not depend on the rank count).
 */
#ifndef SP_GENERATE_H
#define SP_GENERATE_H

#include <mpi.h>
#include <signal.h>

#include "common/sp_error.h"

typedef struct {
    const char *model_dir;
    const char *prompt;      /* NULL or "": start from BOS only                         */
    int steps;               /* tokens to generate                                      */
    float temperature;       /* 0: greedy                                               */
    unsigned long long seed;
    int level;               /* quantized models: bits for every module (0: default)    */
    const char *bits_map;
    const volatile sig_atomic_t *stop_flag; /* raised: stop before the next token, print nothing */
} sp_generate_opts;

/* Collective. On rank 0 *text is the decoded prompt + continuation (malloc'ed; free it). */
sp_status sp_generate_run(MPI_Comm comm, const sp_generate_opts *o, char **text, sp_err *err);

#endif
