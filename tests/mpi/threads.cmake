# Issue 9 (determinism): results independent of rank and thread counts with the thread
# variables unset (the scripts remove the OPENBLAS_NUM_THREADS=1 that sp_script_test sets).
sp_script_test(mpi_threads_eval test_threads.sh eval)
sp_script_test(mpi_threads_quantize test_threads.sh quantize)
