#!/usr/bin/env bash
# device_prepare.sh — run HERE (the CPU machine) before bench/device_check.sh runs on a GPU
# machine (issue 14). The device tool sends the working tree only: ../shared does not travel,
# and the device image (CUDA toolkit, CMake, Python) may lack Open MPI, parallel HDF5 and
# OpenBLAS. This fills .devdata/ (in .gitignore; name it in the run's carry):
#   .devdata/calib.txt, eval.txt   the stories260K sample texts (../shared/data/text/...)
#   .devdata/bundle.tar.xz         (--bundle) a Release -DSP_CUDA=ON build of shardpress,
#                                  test_cuda, test_cuda_kernels, bench_gptq_cuda and
#                                  sp_synth_model with every shared library they need except
#                                  glibc's and CUDA's own, plus Open MPI's and PMIx's plugins
#                                  and help files: device_check.sh uses it when it cannot build
#                                  there. About 25 MB.
# Usage: bench/device_prepare.sh [--bundle]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
D=$ROOT/.devdata
mkdir -p "$D"
# .devdata/ is in .gitignore: it travels only when a run names it in carry.
cp ../shared/data/text/stories260K-samples/calib.txt ../shared/data/text/stories260K-samples/eval.txt "$D/"
[[ "${1:-}" == --bundle ]] || { echo "device_prepare.sh: texts in $D (no bundle)"; exit 0; }

. .ci/env.sh
B=$ROOT/build-devbundle
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release -DSP_CUDA=ON -DSP_TESTS=ON >/dev/null
cmake --build "$B" -j"$(nproc)" --target shardpress test_cuda test_cuda_kernels bench_gptq_cuda sp_synth_model >/dev/null
S=$(mktemp -d /tmp/sp-bundle.XXXXXX)
mkdir -p "$S/bin" "$S/lib" "$S/ompi" "$S/pmix" "$S/share" "$S/etc"
progs=(shardpress bench_gptq_cuda sp_synth_model tests/test_cuda tests/test_cuda_kernels)
for p in "${progs[@]}"; do cp "$B/$p" "$S/bin/"; done
OMPI_PLUG=/usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3
PMIX_PLUG=/usr/lib/x86_64-linux-gnu/pmix2/lib/pmix
cp -a "$OMPI_PLUG/." "$S/ompi/"
[[ -d $PMIX_PLUG ]] && cp -a "$PMIX_PLUG/." "$S/pmix/"
cp -a /usr/share/openmpi "$S/share/" 2>/dev/null || true
[[ -d /usr/share/pmix ]] && cp -a /usr/share/pmix "$S/share/"
cp -a /etc/openmpi "$S/etc/" 2>/dev/null || true
# Every library the programs and plugins load, but glibc's (the device's newer one serves) and
# CUDA's (the device has its own toolkit of the same major version).
{ for f in "$S"/bin/* "$S"/ompi/*.so "$S"/pmix/*.so; do ldd "$f" 2>/dev/null; done; } |
  awk '$3 ~ /^\// {print $3}' | sort -u |
  grep -Ev '/(libc|libm|libpthread|libdl|librt|libgcc_s|libstdc\+\+|ld-linux-x86-64)\.so|/cuda' |
  while read -r l; do cp -L "$l" "$S/lib/"; done
tar -C "$S" -cJf "$D/bundle.tar.xz" .
rm -rf "$S"
ls -la "$D"
echo "device_prepare.sh: bundle in $D/bundle.tar.xz"
