# Slurm (slurm/): sbatch templates on a throwaway local cluster. Skipped (77) without root or
# without the Slurm packages. RESOURCE_LOCK slurm: one local cluster at a time (each uses its
# own directory and ports, but two would compete for the machine's 2 cores).
foreach(case quantize requeue search)
  sp_script_test(slurm_${case} test_slurm.sh ${case})
  set_tests_properties(slurm_${case} PROPERTIES SKIP_RETURN_CODE 77 RESOURCE_LOCK slurm
    TIMEOUT 600)
endforeach()
