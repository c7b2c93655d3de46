# Issue 2 (core): CLI tests on the bundled model, with real MPI ranks.
sp_script_test(cli_greedy_200 test_greedy.sh)
sp_script_test(mpi_eval_ranks_ppl_kl test_eval_ranks.sh)
foreach(case truncated header_len overlap dtype shape missing arch empty_text non_utf8
        short_text ctx_too_large mpi_bad_file exchange_local search_out)
  sp_script_test(bad_input_${case} test_bad_input.sh ${case})
endforeach()
