# Issue 9 part 5: shardpress tokenize.
foreach(case model llama2 pieces ranks bad)
  sp_script_test(tokenize_${case} test_tokenize.sh ${case})
endforeach()
