#!/usr/bin/env bash
# run_fuzz.sh BINARY TARGET SECONDS WORKDIR — one fuzz target, the way ctest and bench/fuzz.sh
# run it: first every regression input (tests/fuzz/regress/TARGET: each must now run cleanly),
# then SECONDS of fuzzing from a fresh copy of the seed corpus (tests/fuzz/corpus/TARGET) plus
# the regression inputs. A crash, leak, timeout (5 s per input) or out-of-memory (2 GiB) fails.
# The last libFuzzer status line (execs, cov, ft) is printed as "fuzz: TARGET ..." for the
# benchmark script; crash inputs are left in WORKDIR/TARGET/artifacts.
set -euo pipefail
bin=$1 target=$2 seconds=$3 work=$4
src=$(cd "$(dirname "$0")" && pwd)
# Leaks count as failures here (.ci/test.sh turns leak detection off for the other suites).
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export OPENBLAS_NUM_THREADS=1
w="$work/$target"
rm -rf "$w" && mkdir -p "$w/corpus" "$w/artifacts"
cp "$src/corpus/$target"/* "$w/corpus/"
opts=(-timeout=5 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 -artifact_prefix="$w/artifacts/")
if compgen -G "$src/regress/$target/*" >/dev/null; then
  cp "$src/regress/$target"/* "$w/corpus/"
  "$bin" "${opts[@]}" "$src/regress/$target"/* >"$w/regress.log" 2>&1 ||
    { tail -40 "$w/regress.log"; echo "FAIL: $target: a regression input fails again"; exit 1; }
fi
rc=0
"$bin" "${opts[@]}" -max_total_time="$seconds" "$w/corpus" >"$w/fuzz.log" 2>&1 || rc=$?
stats=$(grep -E '^#[0-9]+' "$w/fuzz.log" | tail -1 || true)
execs=$(grep -E 'stat::number_of_executed_units' "$w/fuzz.log" | awk '{print $2}' || true)
echo "fuzz: $target execs=${execs:-?} last=[$stats]"
if [ "$rc" -ne 0 ]; then
  grep -E 'ERROR|SUMMARY|==[0-9]+==|#[0-9]+ +in ' "$w/fuzz.log" | head -40
  echo "FAIL: $target: libFuzzer exited with $rc; inputs in $w/artifacts"; ls "$w/artifacts"
  exit 1
fi
