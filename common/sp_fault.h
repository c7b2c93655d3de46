/* sp_fault.h — fault injection for the failure tests (tests/mpi/failure.cmake).
 *
 * The environment variable SP_FAULT names faults as "kind:rank:layer", several separated by
 * commas, e.g. SP_FAULT=kill:2:1 or SP_FAULT=alloc:1:3,kill:0:4. Kinds:
 *   kill    the rank sends itself SIGKILL (as the OOM killer or a node loss would) in the
 *           middle of decoder block `layer`: after its Hessians, before its GPTQ units;
 *   alloc   the same rank, same place: the allocation of its first full Hessian fails and
 *           takes the real out-of-memory path (SP_ENOMEM), its message ending in
 *           "(injected by SP_FAULT)".
 * rank and layer are non-negative integers; "*" matches any. Unset or empty: no faults.
 * A job parses the variable once at its start (a bad value is SP_EINVAL naming SP_FAULT) and
 * then asks sp_fault_hit at one place per block, so the cost outside tests is one compare per
 * block. Only quantize (pipeline/quantize) injects faults today.
 */
#ifndef SP_FAULT_H
#define SP_FAULT_H

#include "common/sp_error.h"

#define SP_FAULT_ENV "SP_FAULT"
#define SP_FAULT_MAX 8
#define SP_FAULT_ANY (-1)

typedef enum { SP_FAULT_KILL = 0, SP_FAULT_ALLOC, SP_FAULT_KINDS } sp_fault_kind;

typedef struct {
    int n;
    struct { sp_fault_kind kind; int rank, layer; } f[SP_FAULT_MAX];
} sp_fault;

/* Parse spec (NULL or "" gives no faults) into *out.
 * @return SP_OK; SP_EINVAL with a message naming SP_FAULT and the bad item. */
sp_status sp_fault_parse(const char *spec, sp_fault *out, sp_err *err);

/* 1 when *f holds a fault of this kind for (rank, layer). Pure; f may be NULL. */
int sp_fault_hit(const sp_fault *f, sp_fault_kind kind, int rank, int layer);

#endif
