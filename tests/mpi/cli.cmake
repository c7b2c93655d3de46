# Issue 21 (parts 5 and 6): help texts generated from the code, and every command stopping
# promptly on SIGTERM/SIGINT with nothing half-written.
sp_script_test(cli_help_types test_help.sh)
foreach(case eval eval_mpi generate export_gguf quantize exchange_files search_sensitivity)
  sp_script_test(cli_signal_${case} test_signals.sh ${case})
  set_tests_properties(cli_signal_${case} PROPERTIES ENVIRONMENT_MODIFICATION
    "SP_SYNTH=set:$<TARGET_FILE:sp_synth_model>")
endforeach()
