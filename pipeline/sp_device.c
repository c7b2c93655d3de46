/* sp_device.c — see sp_device.h. */
#include "pipeline/sp_device.h"

#include <string.h>

#include "mpi/sp_mpi.h"

int sp_device_parse(const char *name) {
    if (!name) return -1;
    if (!strcmp(name, "cpu")) return SP_DEVICE_CPU;
    if (!strcmp(name, "cuda")) return SP_DEVICE_CUDA;
    if (!strcmp(name, "auto")) return SP_DEVICE_AUTO;
    return -1;
}

sp_status sp_device_arg(const char *val, int *out, sp_err *err) {
    int d = sp_device_parse(val);
    SP_RETURN_IF(d < 0, err, SP_EINVAL, "--device: '%s' is not cpu or cuda", val ? val : "");
    *out = d;
    return SP_OK;
}

const char *sp_device_name(int device) {
    return device == SP_DEVICE_CPU ? "cpu" : device == SP_DEVICE_CUDA ? "cuda" : "auto";
}

/* The rank's index among the ranks of comm on its node. */
static int node_rank(MPI_Comm comm) {
    int r = sp_cuda_env_local_rank();
    if (r >= 0) return r;
    MPI_Comm node;
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node) != MPI_SUCCESS)
        return 0;
    MPI_Comm_rank(node, &r);
    MPI_Comm_free(&node);
    return r;
}

sp_status sp_device_open(MPI_Comm comm, int want, sp_cuda **gpu, sp_err *err) {
    *gpu = NULL;
    sp_status st = SP_OK;
    if (want != SP_DEVICE_AUTO && want != SP_DEVICE_CPU && want != SP_DEVICE_CUDA)
        st = sp_err_set(err, SP_EINVAL, "--device: unknown value %d", want);
    if (want == SP_DEVICE_CPU || st != SP_OK) return sp_mpi_agree(comm, st, err);
    int n = sp_cuda_device_count(), mine = n > 0 ? 1 : 0, all = 0;
    if (want == SP_DEVICE_CUDA && !sp_cuda_built())
        st = sp_err_set(err, SP_EUNSUPPORTED, "--device cuda: this shardpress was built without "
                        "CUDA (configure with -DSP_CUDA=ON)");
    else if (want == SP_DEVICE_CUDA && n == 0)
        st = sp_err_set(err, SP_EUNSUPPORTED, "--device cuda: no CUDA device is visible to this "
                        "rank (no GPU, no driver, or CUDA_VISIBLE_DEVICES hides them)");
    SP_FORWARD(sp_mpi_agree(comm, st, err));
    /* auto: cuda only if every rank has a GPU. */
    SP_FORWARD(sp_mpi_check(MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, comm),
                            "MPI_Allreduce(device)", err));
    if (!all) return SP_OK; /* auto without a GPU somewhere: cpu (cuda failed above) */
    st = sp_cuda_open(gpu, sp_cuda_pick(node_rank(comm), n), err);
    st = sp_mpi_agree(comm, st, err);
    if (st != SP_OK) {
        sp_cuda_close(*gpu);
        *gpu = NULL;
    }
    return st;
}
