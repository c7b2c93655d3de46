/* sp_exchange.h — `shardpress exchange`: one federated round of EF21 compressed model-delta
 * exchange (mpi/sp_ef21.h) over sites, with its state in ckpt/.
 *
 * A round (sites i = 0..n−1; the server is site 0):
 *   v_i = local_i − base, per tensor, in fp32, cut into units of <= SP_EXCHANGE_UNIT values;
 *   site i sends c_i = C(s_i·v_i − g_i) and sets g_i += c_i                 (uplink)
 *   the server sets g += Σ_i w_i c_i in site order, so g tracks Σ_i w_i s_i v_i:
 *     uniform (EF21, w_i = 1/n) and smooth (EF21-W, w_i ∝ ‖v_i‖): s_i = 1/(n·w_i), target the
 *     mean of the v_i; data:N1,..,Nn (FedAvg): w_i = N_i/ΣN, s_i = 1, target Σ_i w_i v_i
 *   downlink: no --downlink: the server sends lr·g as f32 (dense); out = base + lr·g.
 *             --downlink SPEC: the server keeps its model x (x_0 = base), x += lr·g, sends
 *             c = C(x − base) (base = x̂, what the sites hold) and out = base + c (EF21-BC).
 *   out is written in the base's dtype, config and tokenizer copied; every job's rank 0 writes
 *   it from the downlink messages, so it is the same bytes everywhere.
 * State (through ckpt/, step = rounds done): g_i of the job's sites ("g_sites" [S, P]), the
 * server's g ("g") and x ("x"), the weights, and attributes: round, compressor, downlink,
 * weights, lr, sites, the base layout's fingerprint and the CRC-32 of the output it wrote
 * (the base the next round must be given). The randk streams are derived from (seed, round,
 * unit, site), so the RNG state is (seed, round).
 * Order: output first (temp + rename), state last. A round killed before its state commit is
 * redone from the old state and writes the same bytes; a round already committed is refused
 * (its output is the next round's base), so nothing is counted twice.
 * Memory: the state vectors (g_i; the server also g and x) in fp32 plus one unit's buffers;
 * the models are mmap'ed and the output is streamed.
 */
#ifndef SP_EXCHANGE_H
#define SP_EXCHANGE_H

#include <mpi.h>
#include <signal.h>
#include <stdint.h>

#include "common/sp_error.h"

/* Values per compression unit (a tensor is cut into units of at most this many values). */
#define SP_EXCHANGE_UNIT ((size_t)1 << 22)
#define SP_EXCHANGE_MAX_SITES 4096

typedef enum { SP_XKILL_NONE = 0, SP_XKILL_MID, SP_XKILL_BEFORE_COMMIT } sp_exchange_kill;

typedef struct {
    const char *base, *local, *state, *out; /* local: a pattern, {rank}/{site} = site id     */
    const char *compressor;                 /* uplink spec (mpi/sp_compress.h)              */
    const char *downlink;                   /* NULL: dense lr·g                             */
    const char *weights;                    /* uniform | data:N1,N2,... | smooth            */
    double lr;                              /* the server's fixed step, when !lr_auto       */
    int lr_auto;                            /* 1 (default): EF21's step from the measured   *
                                             * contraction of each unit (sp_exchange.c)     */
    const char *files_dir;                  /* NULL: MPI transport; else the shared dir     */
    int site0;                              /* site id of rank 0 of this job (files)        */
    int sites;                              /* total sites (0: the communicator's size)     */
    double timeout_s;                       /* files: how long to wait for another's file   */
    int diag;                               /* compute the relative error (MPI transport)   */
    sp_exchange_kill kill_at;               /* tests: SIGKILL this process at that point    */
    const volatile sig_atomic_t *stop_flag; /* raised: stop before the commit (sp_stop.h)   */
} sp_exchange_opts;

typedef struct {
    int64_t round;       /* the round this run completed (1 = the first)                    */
    int sites, site0, jobsites;
    int64_t values;      /* P: values exchanged per site                                    */
    double dense_bytes;  /* 4·P: one dense fp32 delta                                       */
    double up_bytes[SP_EXCHANGE_MAX_SITES]; /* messages sent (files: the whole file, framing
                                               included); < 0: not known to this job         */
    double weights[SP_EXCHANGE_MAX_SITES]; /* w_i used (smooth: measured in round 1)      */
    double down_bytes;   /* the same for the downlink, per receiving site                   */
    double rel_error;    /* ‖g − mean v‖/‖mean v‖, < 0 when not computed                    */
    double step_mean, step_min, step_max; /* the server's steps over units (mean weighted by
                                             unit length); < 0 where this job has no server  */
    double seconds;
} sp_exchange_result;

void sp_exchange_defaults(sp_exchange_opts *o);

/* Collective over comm: one round. @return SP_OK with *r filled (rank 0); on error every rank
 * returns the same code and message, and neither the state nor --out has changed. */
sp_status sp_exchange_run(MPI_Comm comm, const sp_exchange_opts *o, sp_exchange_result *r,
                          sp_err *err);

/* Collective: parse argv (argv[0] = "exchange"), run, print (rank 0). */
sp_status sp_exchange_cli(MPI_Comm comm, int rank, int argc, char **argv,
                          const volatile sig_atomic_t *stop_flag, sp_err *err);

#endif
