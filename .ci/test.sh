#!/usr/bin/env bash
# The whole test suite: install what is missing, build (warnings are errors), run every unit and
# MPI test with ctest, then the same suite again under AddressSanitizer + UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install-deps.sh
. .ci/env.sh
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
J=$(nproc)
cmake -S . -B build -DSP_WERROR=ON >/dev/null
cmake --build build -j"$J"
(cd build && ctest --output-on-failure -j"$J")
# The quick start builds Release (-O3): its extra flow-analysis warnings must not break it.
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DSP_WERROR=ON -DSP_TESTS=OFF >/dev/null
cmake --build build-release -j"$J"
# The optional CUDA path (issue 14) compiles wherever nvcc is installed. Only its unit tests run
# here: test_cuda (device choice, no-GPU answers) and test_cuda_kernels, which exits 77
# (skipped) unless a GPU is visible. bench/device_check.sh is the run on a GPU machine.
if [[ -x /usr/local/cuda/bin/nvcc ]]; then
  cmake -S . -B build-cuda -DSP_CUDA=ON -DSP_WERROR=ON -DSP_TESTS=ON \
    -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc >/dev/null
  cmake --build build-cuda -j"$J"
  (cd build-cuda && ctest --output-on-failure -R '^test_cuda')
fi
cmake -S . -B build-asan -DSP_WERROR=ON -DSP_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-asan -j"$J"
(cd build-asan && ctest --output-on-failure -j"$J")
