# Issue 13: a failing rank (SIGKILL, failed allocation, full disk) ends a 4-rank quantize
# within 30 s, with one message and no output that looks complete. SP_FAULT: common/sp_fault.h.
foreach(case kill alloc bad_spec enospc)
  sp_script_test(mpi_failure_${case} test_failure.sh ${case})
  set_tests_properties(mpi_failure_${case} PROPERTIES SKIP_RETURN_CODE 77)
endforeach()
# Issue 13: byte flips over a small container and a checkpoint: detected or provably harmless.
foreach(case container checkpoint)
  sp_script_test(flip_sweep_${case} test_flip_sweep.sh ${case})
endforeach()
