# The CUDA path's CLI (issue 14): --device on quantize/eval/search, one clear line when CUDA is
# not there, the same results on the CPU as without the option; on a machine with a GPU and a
# CUDA build, the GPU runs instead (tests/mpi/test_cuda_cli.sh says which it checked).
sp_script_test(cuda_cli test_cuda_cli.sh)
