# Issue 11 (GGUF): llama.cpp as the real client. tests/mpi/test_gguf.sh fetches node-llama-cpp's
# llama.cpp source bundle and prebuilt CPU libraries with npm into the build tree once, builds
# tests/gguf/llama_client.c against them, and checks what llama.cpp reads from our exports.
# Skipped (exit 77) when npm cannot reach its registry. gguf_check compares ggml's
# dequantization with shardpress's weights.
add_executable(sp_gguf_check ${CMAKE_SOURCE_DIR}/tests/gguf/gguf_check.c)
target_link_libraries(sp_gguf_check PRIVATE shardpress_lib)
foreach(case dense types kquant gptq gptqk imatrix bpe match rotate lowbit)
  sp_script_test(gguf_${case} test_gguf.sh ${case} ${CMAKE_BINARY_DIR}/npm-cache)
  set_tests_properties(gguf_${case} PROPERTIES SKIP_RETURN_CODE 77 ENVIRONMENT_MODIFICATION
    "SP_GGUF_CHECK=set:$<TARGET_FILE:sp_gguf_check>;SP_SYNTH=set:$<TARGET_FILE:sp_synth_model>")
endforeach()
