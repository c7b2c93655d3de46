# The checkpoint engine's unit test (tests/unit/test_ckpt.c) on 1, 2 and 4 ranks: collective
# HDF5 writes, CRC combination across ranks, reading back on another rank count.
foreach(n 1 2 4)
  add_test(NAME mpi_ckpt_n${n} COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe -n ${n} $<TARGET_FILE:test_ckpt>)
  set_tests_properties(mpi_ckpt_n${n} PROPERTIES LABELS mpi TIMEOUT 300 ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_rmaps_base_oversubscribe=1")
endforeach()
