# Issue 3 (quantize): quality, determinism across runs and rank counts, bad input.
sp_script_test(mpi_quantize_quality_determinism test_quantize.sh)
foreach(case short_calib bits_range group_size nan_weight out_exists mpi_short_calib ckpt_readonly memory)
  sp_script_test(quantize_bad_${case} test_quantize_bad.sh ${case})
endforeach()
sp_script_test(cli_export_gptq_roundtrip test_export.sh)
# Issue 9: true-sequential and the weighted scale search, determinism and resume.
sp_script_test(mpi_quantize_true_sequential test_quantize_seq.sh)
# Issue 19: a level with its own group size ("4g64"): bitwise a plain run at that size, priced by search, resumable.
sp_script_test(mpi_quantize_level_groups test_level_groups.sh)
