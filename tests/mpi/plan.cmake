# shardpress plan (pipeline/plan/sp_plan*.c): CLI, rank-0 output, errors, and its memory prediction
# against a real quantize run. Skipped (77) while the CLI has no 'plan' command.
sp_script_test(plan_cli test_plan_cli.sh)
set_tests_properties(plan_cli PROPERTIES SKIP_RETURN_CODE 77)
sp_script_test(cli_default_ctx test_default_ctx.sh)
