# Issue 4 (checkpoints): kill/resume, clean preemption, corruption fallback, changed inputs.
foreach(case kill signal corrupt changed)
  sp_script_test(mpi_resume_${case} test_resume.sh ${case})
endforeach()
