#!/usr/bin/env bash
# bench/run_search.sh [GENERATIONS] — the search on the bundled model, all in one run:
#   KL on held-out text (eval.txt) of the searched map vs uniform levels and --method greedy at
#   2.5 / 3.0 / 3.5 bits (code bits plus overhead: uniform-level averages interpolated), layer
#   evaluations per generation with the prefix cache and without (full re-runs), seconds per
#   generation on 1 and 2 ranks, and plan --search's prediction of the latter.
# Writes the "Search" section of docs/benchmarks.md.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$ROOT/.ci/env.sh"
G=${1:-100}
SP="$BUILD/shardpress"; M="$ROOT/models/stories260K"; D="$ROOT/../shared/data/text/stories260K-samples"
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
S=(--ctx 256 --offspring 16 --stages 512,2048,8192 --survivors 4,2,1)
num() { sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p" "$2"; }
mpirun -n 2 "$SP" quantize --model "$M" --calib "$D/calib.txt" --out "$W/q" --levels 2,3,4,5,6,8 --group-size 32 >/dev/null
mpirun -n 2 "$SP" eval --model "$M" --text "$D/eval.txt" --ctx 256 --save-logits "$W/dense" >/dev/null
kl() { mpirun -n 2 "$SP" eval --model "$W/q" --text "$D/eval.txt" --ctx 256 --kl-base "$W/dense" --json "$@" | sed -n 's/.*"kl":\([-0-9.e+]*\).*/\1/p'; }
mpirun -n 1 "$SP" search --model "$W/q" --calib "$D/calib.txt" --target-bits 8 --method greedy --out "$W/p" --ctx 256 --stages 256 --survivors 1 --json >"$W/u.json"
u() { num "$1" "$W/u.json"; }
rows=""
for x in 2.5 3.0 3.5; do
  lo=${x%.*}; hi=$((lo + 1)); f=${x#*.}
  t=$(python3 -c "print('%.6f' % ($(u $lo) + 0.$f * ($(u $hi) - $(u $lo))))")
  mpirun -n 2 "$SP" search --model "$W/q" --calib "$D/calib.txt" --target-bits "$t" --out "$W/e$x" "${S[@]}" --generations "$G" --json >"$W/e$x.json" 2>/dev/null
  mpirun -n 2 "$SP" search --model "$W/q" --calib "$D/calib.txt" --target-bits "$t" --out "$W/g$x" "${S[@]}" --method greedy --json >/dev/null
  ke=$(kl --bits-map "$W/e$x"); kg=$(kl --bits-map "$W/g$x"); klo=$(kl --level $lo); khi=$(kl --level $hi)
  le=$(num layer_evaluations "$W/e$x.json"); lf=$(num layer_evaluations_full "$W/e$x.json")
  rows+="| $x | $t | $(printf %.5f $klo) / $(printf %.5f $khi) | $(printf %.5f $kg) | $(printf %.5f $ke) | $(python3 -c "print('%.2f' % ($ke / $klo if '$f' == '0' else $ke / $kg))") | $(python3 -c "print(round($le / $G), round($lf / $G), '%.2fx' % ($lf / $le))") |
"
done
t3=$(printf %.6f "$(u 3)")
for n in 1 2; do
  mpirun -n $n "$SP" search --model "$W/q" --calib "$D/calib.txt" --target-bits "$t3" --out "$W/t$n" "${S[@]}" --generations 10 --json >"$W/t$n.json" 2>/dev/null
done
pool=$(num pool_windows "$W/t1.json")
"$SP" plan --model "$M" --search --ranks 2 "${S[@]}" --generations 10 --pool-windows "$pool" --calibrate --calibrate-dir "$W" --json >"$W/plan.json"
sec() { python3 -c "print('%.2f' % ($(num seconds "$1") / 10))"; }
sp_bench_write_section "$DOC" "## Search" "## Search

\`bench/run_search.sh $G\` ($(date -u +%F), $(nproc) cores, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}): bundled
model, GPTQ levels 2,3,4,5,6,8 g32 from calib.txt, search on calib.txt (ctx 256, 16 offspring,
stages 512/2048/8192 tokens, survivors 4/2/1, $G generations, --groups size), KL(dense ‖ model)
on eval.txt (held out). Budget x = stored bits interpolated between uniform levels.

| x | target | KL uniform floor(x) / ceil(x) | KL greedy | KL evolution | evo / uniform (x.0) or / greedy (x.5) | layer evals per gen: cache, full, ratio |
|---|---|---|---|---|---|---|
${rows}
Seconds per generation (10 generations at the uniform 3-bit budget): 1 rank $(sec "$W/t1.json"),
2 ranks $(sec "$W/t2.json"); plan --search predicts $(python3 -c "print('%.2f' % $(num seconds_per_generation "$W/plan.json"))") s on 2 ranks (calibrated rates)."
echo "wrote the Search section of $DOC"
