# Issue 23 (quantize --rotate): the rotated output is the same function (bundled model, and a
# synthetic Qwen2-style model with biases), records the rotation, is rank-count deterministic;
# bad input. Resume with --rotate: tests/mpi/resume.cmake.
foreach(case same qwen2 search bad)
  sp_script_test(mpi_rotate_${case} test_rotate.sh ${case})
  set_tests_properties(mpi_rotate_${case} PROPERTIES ENVIRONMENT_MODIFICATION
    "SP_SYNTH=set:$<TARGET_FILE:sp_synth_model>")
endforeach()
