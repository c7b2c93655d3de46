# shardpress search (pipeline/search): determinism over 1/2/4 ranks, kill-and-resume, bad input,
# held-out quality against uniform (quality).
foreach(case ranks resume bad quality)
  sp_script_test(search_${case} test_search.sh ${case})
  set_tests_properties(search_${case} PROPERTIES ENVIRONMENT_MODIFICATION
    "SP_SYNTH=set:$<TARGET_FILE:sp_synth_model>")
endforeach()
