# Issue 12 (EF21 compressed exchange): ranks, kill/resume, files transport, bad inputs.
foreach(n 1 2 4)
  sp_script_test(mpi_exchange_ranks_${n} test_exchange.sh ranks ${n})
endforeach()
foreach(case verify rounds kill files bad)
  sp_script_test(mpi_exchange_${case} test_exchange.sh ${case})
endforeach()
