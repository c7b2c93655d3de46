/* sp_device.h — `--device cpu|cuda` for the jobs (quantize, eval, search): which ranks compute
 * where, decided once, collectively, so that every rank takes the same path.
 *
 * auto (no --device): cuda when this shardpress was built with SP_CUDA and every rank sees a
 *   GPU; cpu otherwise. All-or-nothing, because a job that mixed CPU and GPU ranks would give
 *   other bits (the two paths differ in the last bits: docs/architecture.md "CUDA path").
 * cuda: fails on every rank with one line when the build has no CUDA or a rank sees no GPU.
 * One rank drives one GPU: with CUDA_VISIBLE_DEVICES set per rank by the launcher (e.g.
 *   srun --gpus-per-task=1) each rank sees one device, 0; otherwise device = local rank mod
 *   visible devices, the local rank from the launcher's environment (sp_cuda_env_local_rank)
 *   or else the rank within the node's shared-memory communicator.
 */
#ifndef SP_DEVICE_H
#define SP_DEVICE_H

#include <mpi.h>

#include "common/sp_error.h"
#include "kernels/cuda/sp_cuda.h"

enum { SP_DEVICE_AUTO = 0, SP_DEVICE_CPU = 1, SP_DEVICE_CUDA = 2 };

/* "cpu" -> SP_DEVICE_CPU, "cuda" -> SP_DEVICE_CUDA, "auto" -> SP_DEVICE_AUTO; -1 otherwise. */
int sp_device_parse(const char *name);
/* The value of a --device option into *out, or SP_EINVAL naming it. */
sp_status sp_device_arg(const char *val, int *out, sp_err *err);
/* The option's help line, shared by the commands that take it. */
#define SP_DEVICE_USAGE                                                                        \
    "  --device cpu|cuda   where the block forward, Hessians and GPTQ run (default: cuda when\n" \
    "                      built with -DSP_CUDA=ON and every rank sees a GPU, else cpu)\n"
/* getopt_long value of --device (outside the printable range the short options use). */
#define SP_DEVICE_OPT 0x1d0

/* "auto", "cpu", "cuda". */
const char *sp_device_name(int device);

/* Collective over comm. Resolve want (SP_DEVICE_*) as described above and open this rank's GPU
 * when the answer is cuda: *gpu is the handle (close it with sp_cuda_close), NULL for cpu.
 * @return SP_OK on every rank, or the same one-line error on every rank. */
sp_status sp_device_open(MPI_Comm comm, int want, sp_cuda **gpu, sp_err *err);

#endif
