#!/usr/bin/env bash
# bench/fuzz.sh [SECONDS] — run every libFuzzer target of tests/fuzz for SECONDS each (default
# 60), one after the other, from the seed corpus plus the regression inputs, and write per
# target executions, coverage (libFuzzer's cov = edges, ft = features), corpus size, exec/s and
# crashes/leaks/timeouts into the "## Fuzzing" section of docs/benchmarks.md, with the machine,
# its load and the command. Builds <repo>/build-fuzz (clang, -DSP_FUZZ=ON) when it is missing.
#   --no-doc   print only
# The goal of issue 13 is 10 million executions per target with 0 failures; SECONDS needed for
# that is 1e7 / exec/s, printed per target.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
nodoc=0; SECONDS_EACH=60
for a in "$@"; do case "$a" in --no-doc) nodoc=1 ;; *) SECONDS_EACH=$a ;; esac; done
FB="$ROOT/build-fuzz"
. "$ROOT/.ci/env.sh"
if [ ! -x "$FB/tests/fuzz/fuzz_config" ]; then
  CC=clang cmake -S "$ROOT" -B "$FB" -DSP_FUZZ=ON -DSP_TESTS=OFF -DSP_WERROR=ON >/dev/null
fi
cmake --build "$FB" -j2 >/dev/null
TARGETS=(safetensors st_index config tokenizer_json tokenizer_bin llama2c bits_map run_json segment)
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
load0=$(cut -d' ' -f1-3 /proc/loadavg)
rows=""; total_fail=0
for t in "${TARGETS[@]}"; do
  rc=0
  bash "$ROOT/tests/fuzz/run_fuzz.sh" "$FB/tests/fuzz/fuzz_$t" "$t" "$SECONDS_EACH" "$W" >"$W/$t.out" 2>&1 || rc=$?
  log="$W/$t/fuzz.log"
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log" | tail -1)
  eps=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last"); ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
  corp=$(sed -nE 's/.* corp: ([0-9]+)\/.*/\1/p' <<<"$last")
  crashes=$(find "$W/$t/artifacts" -type f | wc -l)
  nreg=$( { find "$ROOT/tests/fuzz/regress/$t" -type f 2>/dev/null || true; } | wc -l)
  [ "$rc" -eq 0 ] || total_fail=$((total_fail + 1))
  need=$(python3 -c "e=float('${eps:-0}' or 0); print(f'{1e7/e:,.0f}' if e > 0 else '?')")
  row="| $t | ${execs:-?} | ${eps:-?} | ${cov:-?} | ${ft:-?} | ${corp:-?} | $crashes | $nreg | $need |"
  echo "$row"; rows+="$row"$'\n'
  [ "$rc" -eq 0 ] || { tail -20 "$W/$t.out"; mkdir -p "$ROOT/build-fuzz/artifacts/$t"; cp "$W/$t/artifacts"/* "$ROOT/build-fuzz/artifacts/$t/" 2>/dev/null || true; }
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)
cpu=$(sed -nE 's/^model name\s*:\s*//p' /proc/cpuinfo | head -1)
section="## Fuzzing

What: each reader's libFuzzer target (tests/fuzz/fuzz_<target>.c, clang 14, ASan + UBSan, leak
detection on, 5 s per-input timeout, 2 GiB RSS limit, inputs up to 64 KiB) run for
${SECONDS_EACH} s, one target at a time, from its seed corpus (tests/fuzz/corpus, cut from the
real files) plus its regression inputs. exec/s is libFuzzer's average; cov and ft are its edge
and feature counts at the end; failures = crash, leak, timeout or OOM inputs found (kept in
build-fuzz/artifacts). \"s for 10M\" is the time one target would need at that rate for the
issue's goal of 10 million executions.

Command: \`bench/fuzz.sh $SECONDS_EACH\` on $(nproc) cores ($cpu), load average
$load0 before and $load1 after (2 cores shared with other work: rates are lower bounds).

| target | executions | exec/s | cov | ft | corpus | failures | regression inputs | s for 10M |
|---|---|---|---|---|---|---|---|---|
${rows}"
[ "$nodoc" -eq 1 ] || sp_bench_write_section "$DOC" "## Fuzzing" "$section"
echo "$section"
[ "$total_fail" -eq 0 ] || { echo "FAIL: $total_fail target(s) found failures (build-fuzz/artifacts)"; exit 1; }
