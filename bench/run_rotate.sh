#!/usr/bin/env bash
# Benchmark (issue 23): quantize --rotate none|hadamard|orthogonal. Held-out KL(dense ‖
# quantized) at uniform 2, 3 and 4 bits, group 32 and 128, and the quantize time with and
# without rotation, on the bundled stories260K and on ../shared/data/models/wiki-kjv-6M (a
# trained 6.8M Llama; its calib.txt / heldout.txt). Plus bench_rotate: the cost of building Q
# and of x·Q at D = 8192, extrapolated to a 70B-shaped block. Written to the "## Rotations"
# section of docs/benchmarks.md.
#
# Every run: GPTQ with the defaults (act-order, hmse scale search, asym), one rank, a separate
# run per bit width (--bits B, nothing else stored), --rotate-seed 0. KL over the held-out
# windows, from the dense model's top-64 log-probabilities (`eval --save-logits`, `--kl-base`).
# Usage: bench/run_rotate.sh [build dir]   (QUICK=1: one small cell, written to the build dir:
# a check of the script itself)
#        bench/run_rotate.sh extra [build dir]: the settings where a rotation is expected to help
# most, on wiki-kjv-6M at 3 bits: one group per row (--group-size -1) with GPTQ, and RTN at
# group 128 and per row; section "## Rotations: per-row groups and RTN".
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
EXTRA=0
[ "${1:-}" = extra ] && { EXTRA=1; shift; }
B=${1:-$BUILD}
. .ci/env.sh
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
[ -x "$B/shardpress" ] && [ -x "$B/bench_rotate" ] || { cmake -S . -B "$B" >/dev/null; cmake --build "$B" -j2 >/dev/null; }
W=$B/rotate-bench
[ $EXTRA = 1 ] && W=$B/rotate-bench-extra
rm -rf "$W"; mkdir -p "$W"
SP="$B/shardpress"
S260=models/stories260K; SD=../shared/data/text/stories260K-samples
KJV=../shared/data/models/wiki-kjv-6M
load0=$(cut -d' ' -f1-3 /proc/loadavg)

if [ $EXTRA = 1 ]; then
  "$SP" eval --model "$KJV" --text "$KJV/heldout.txt" --ctx 256 --max-windows 64 --save-logits "$W/kjv.lg" >/dev/null
  rows=""
  for setting in "gptq -1" "rtn 128" "rtn -1"; do
    read -r m g <<<"$setting"
    declare -A K=()
    for r in none hadamard orthogonal; do
      out="$W/kjv-$m-$g-$r"
      "$SP" quantize --model "$KJV" --calib "$KJV/calib.txt" --out "$out" --bits 3 --group-size "$g" \
        --nsamples 64 --ctx 256 --method "$m" --rotate "$r" >/dev/null
      K[$r]=$("$SP" eval --model "$out" --text "$KJV/heldout.txt" --ctx 256 --max-windows 64 \
              --kl-base "$W/kjv.lg" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["kl"])')
      rm -rf "$out"
    done
    echo "$m g$g: none ${K[none]} hadamard ${K[hadamard]} orthogonal ${K[orthogonal]}"
    rows+=$(python3 -c "
import sys
n, h, o = map(float, sys.argv[3:6])
print(f'| {sys.argv[1]} | {sys.argv[2]} | {n:.5f} | {h:.5f} ({h/n:.2f}) | {o:.5f} ({o/n:.2f}) |')
" "$m" "$g" "${K[none]}" "${K[hadamard]}" "${K[orthogonal]}")$'\n'
  done
  inc=$("$B/bench_rotate" --incoherence "$KJV"; "$B/bench_rotate" --incoherence "$S260")
  echo "$inc"
  text="## Rotations: per-row groups and RTN

What: the same measurement as \"Rotations\" on wiki-kjv-6M at 3 bits (64 × 256 calibration windows,
KL over 64 × 256 held-out tokens, --rotate-seed 0, one rank) in the settings where a rotation is
expected to matter most: one scale per row (group -1: an outlier column sets the whole row's
scale) and round-to-nearest (no GPTQ error compensation; RTN uses min-max scales).

Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), nproc $(nproc), load average at start $load0.
Command: \`bench/run_rotate.sh extra\`, $(date -u +%Y-%m-%d).

| method | group | KL none | KL hadamard (× none) | KL orthogonal (× none) |
|---|---|---|---|---|
${rows}
What a rotation can even out (\`bench_rotate --incoherence MODEL\`): per module kind, the mean
over rows and layers of max|w| / rms(w) with the norms folded, without and with the hadamard
rotation, beside the same statistic for rows of as many standard Gaussian values. Where the
unrotated weights are already at the Gaussian value, there are no large input channels to spread.

\`\`\`
${inc}
\`\`\`"
  sp_bench_write_section "$DOC" "## Rotations: per-row groups and RTN" "$text"
  echo "written: $DOC (## Rotations: per-row groups and RTN)"
  exit 0
fi

# model name dir calib heldout nsamples ctx eval-windows
models=("stories260K $S260 $SD/calib.txt $SD/eval.txt 128 256 64"
        "wiki-kjv-6M $KJV $KJV/calib.txt $KJV/heldout.txt 64 256 64")
GS="32 128" BS="2 3 4" CD=8192
if [ "${QUICK:-0}" = 1 ]; then
  models=("stories260K $S260 $SD/calib.txt $SD/eval.txt 8 128 4"); GS=32 BS=3 CD=256 DOC=$W/quick.md
fi
rows="" trows=""
for spec in "${models[@]}"; do
  read -r name dir cal ev ns ctx ew <<<"$spec"
  "$SP" eval --model "$dir" --text "$ev" --ctx "$ctx" --max-windows "$ew" --save-logits "$W/$name.lg" >/dev/null
  declare -A T=() G=() R=() N=()
  for g in $GS; do
    for b in $BS; do
      declare -A K=()
      for r in none hadamard orthogonal; do
        out="$W/$name-$r-$b-$g"
        "$SP" quantize --model "$dir" --calib "$cal" --out "$out" --bits "$b" --group-size "$g" \
          --nsamples "$ns" --ctx "$ctx" --rotate "$r" --json >"$out.json"
        K[$r]=$("$SP" eval --model "$out" --text "$ev" --ctx "$ctx" --max-windows "$ew" \
                --kl-base "$W/$name.lg" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["kl"])')
        read -r t gp rt <<<"$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); p=j["phase_seconds"]; print(j["seconds"], p["gptq"], p["rotate"])' "$out.json")"
        T[$r]=$(python3 -c "print(${T[$r]:-0} + $t)"); G[$r]=$(python3 -c "print(${G[$r]:-0} + $gp)")
        R[$r]=$(python3 -c "print(${R[$r]:-0} + $rt)"); N[$r]=$(( ${N[$r]:-0} + 1 ))
        rm -rf "$out"
      done
      rows+=$(python3 -c "
import sys
n, h, o = map(float, sys.argv[4:7])
print(f'| {sys.argv[1]} | {sys.argv[2]} | {sys.argv[3]} | {n:.5f} | {h:.5f} ({h/n:.2f}) | {o:.5f} ({o/n:.2f}) |')
" "$name" "$b" "$g" "${K[none]}" "${K[hadamard]}" "${K[orthogonal]}")$'\n'
      echo "$name $b bits g$g: none ${K[none]} hadamard ${K[hadamard]} orthogonal ${K[orthogonal]}"
    done
  done
  for r in none hadamard orthogonal; do
    trows+=$(python3 -c "
import sys
t, g, r, n, t0 = float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7])
print(f'| {sys.argv[1]} | {sys.argv[2]} | {t/n:.2f} | {t/n/(t0/n):.2f} | {g/n:.2f} | {r/n:.3f} |')
" "$name" "$r" "${T[$r]}" "${G[$r]}" "${R[$r]}" "${N[$r]}" "${T[none]}")$'\n'
  done
  unset T G R N
done
cost=$(nice "$B/bench_rotate" $CD 512 1)
echo "$cost"

text="## Rotations

What: \`quantize --rotate none|hadamard|orthogonal\` (issue 23; docs/architecture.md,
\"Rotations\"): RMSNorm weights folded into the linears, the residual stream rotated by one D×D
orthogonal Q and v/o per head by a head_dim one (SpinQuant R1 + R2), before GPTQ. Held-out
KL(dense ‖ quantized) per token at uniform 2, 3 and 4 bits, group 32 and 128 (asym, act-order,
hmse: the defaults), --rotate-seed 0; in brackets the ratio to \`none\`. Each cell is its own
quantize run (one rank, \`--bits B\` only). stories260K: 128 × 256-token calibration windows of
\`stories260K-samples/calib.txt\`, KL over 64 × 256 tokens of \`eval.txt\`; wiki-kjv-6M: 64 × 256
of its \`calib.txt\`, KL over 64 × 256 of its \`heldout.txt\`. Top-64 dense log-probabilities.
Group 128 on stories260K (rows of 64 and 172 inputs) is one group per row, or two for down_proj.

Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), nproc $(nproc),
load average at start $load0 (shared with other jobs: times are ±10 % or worse), OpenBLAS
OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, 1 thread. Command: \`bench/run_rotate.sh\`, $(date -u +%Y-%m-%d).

| model | bits | group | KL none | KL hadamard (× none) | KL orthogonal (× none) |
|---|---|---|---|---|---|
${rows}
Quantize time, mean over the six runs of a model (GPTQ phase and the rotation itself: building Q,
rotating the windows' embeddings and every block; the embedding and head are rotated when the
container is written). Wall times on this shared machine follow its load more than the setting
(runs of the same setting differ by 2× at load average 9 to 17); the rotate column is the
rotation's own time inside the run, the figure to compare:

| model | rotate | quantize s | × none | gptq s | rotate s |
|---|---|---|---|---|---|
${trows}
Cost at D = 8192 (\`bench_rotate 8192 512 1\`, one thread; a 70B-shaped block is 104448 vectors of
8192 values to rotate, R2 on head_dim 128 is negligible):

\`\`\`
${cost}
\`\`\`"
sp_bench_write_section "$DOC" "## Rotations" "$text"
echo "written: $DOC (## Rotations)"
