#!/usr/bin/env bash
# Install the Debian 12 packages shardpress needs (only those that are missing).
set -euo pipefail
PKGS=(build-essential cmake pkg-config openmpi-bin libopenmpi-dev libhdf5-openmpi-dev hdf5-tools
      zlib1g-dev libzstd-dev libcmocka-dev libopenblas-dev liblapacke-dev libcjson-dev libpcre2-dev
      # the fuzz targets (issue 13): clang with libFuzzer and the sanitizer runtimes
      clang libclang-rt-14-dev
      # the test scripts' checks
      python3
      # the throwaway local Slurm cluster of the tests (srun --mpi=pmix needs the pmix plugin)
      slurmctld slurmd slurm-client slurm-wlm-basic-plugins libpmix-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
