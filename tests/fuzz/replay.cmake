# Included by tests/CMakeLists.txt: every fuzz target built as a plain executable with
# replay_main.c and run by ctest over its seed corpus and regression inputs (label "unit"), so
# the gcc and ASan builds replay every input that once crashed a reader (issue 13).
set(SP_FUZZ_TARGETS safetensors st_index config tokenizer_json tokenizer_bin llama2c bits_map
    run_json segment cmp_msg)
foreach(t ${SP_FUZZ_TARGETS})
  add_executable(replay_${t} ${CMAKE_CURRENT_LIST_DIR}/fuzz_${t}.c ${CMAKE_CURRENT_LIST_DIR}/replay_main.c)
  target_link_libraries(replay_${t} PRIVATE shardpress_lib)
  target_compile_definitions(replay_${t} PRIVATE SP_FUZZ_MODEL_DIR="${SP_MODEL_DIR}")
  file(GLOB _inputs CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/corpus/${t}/*
       ${CMAKE_CURRENT_LIST_DIR}/regress/${t}/*)
  add_test(NAME fuzz_replay_${t} COMMAND replay_${t} ${_inputs})
  set_tests_properties(fuzz_replay_${t} PROPERTIES LABELS unit TIMEOUT 300)
endforeach()
