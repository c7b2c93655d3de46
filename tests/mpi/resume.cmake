# Issue 4 (checkpoints): kill/resume, clean preemption, corruption fallback, changed inputs.
foreach(case kill signal corrupt changed finished weights)
  sp_script_test(mpi_resume_${case} test_resume.sh ${case})
endforeach()
# Issue 23: the same with --rotate hadamard (the rotation is part of the run and of its resume).
foreach(case kill signal)
  sp_script_test(mpi_resume_${case}_rotate test_resume.sh ${case} rotate)
endforeach()
