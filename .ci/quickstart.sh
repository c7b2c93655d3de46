#!/usr/bin/env bash
# Quick start: install what is missing, build, and run the main job on the bundled model:
# quantize at six levels on 2 ranks, choose per-module bit widths at the budget of uniform
# 3-bit (the sensitivity allocation, then EvoPress started from it), evaluate dense / uniform /
# sensitivity / searched (ppl and KL to the dense model on
# held-out text), export the searched model as GPTQ safetensors, and print a table. Then the
# same search at the same budget over levels with their own group sizes (3g128, 4g128, ...:
# cheaper scales, so more modules fit at 4 bits), exported too.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install-deps.sh
. .ci/env.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
SP=./build/shardpress
M=models/stories260K
D=../shared/data/text/stories260K-samples
CAL=$D/calib.txt; EVAL=$D/eval.txt
[ -f "$CAL" ] || { echo "quickstart: $CAL not found: clone shardpress beside its shared/ data" >&2; exit 1; }
OUT=build/quickstart; rm -rf "$OUT"; mkdir -p "$OUT"
run() { echo "\$ $*" | sed 's#\./build/#build/#'; "$@"; }
num() { sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p" "$2"; }
ub() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" $OUT/search.json; } # uniform B-bit's stored bits

echo "== quantize: GPTQ at 2,3,4,5,6,8 bits, group 32, on 2 ranks =="
run mpirun -n 2 $SP quantize --model $M --calib "$CAL" --out $OUT/q --levels 2,3,4,5,6,8 --group-size 32
echo "== the dense reference on held-out text =="
run mpirun -n 2 $SP eval --model $M --text "$EVAL" --ctx 256 --save-logits $OUT/dense.logits --json >$OUT/dense.json
echo "== search: bit widths at the budget of uniform 3-bit (u3): the sensitivity map, then evolution from it =="
run mpirun -n 2 $SP search --model $OUT/q --calib "$CAL" --target-bits u3 --out $OUT/sens.txt --ctx 256 \
    --method sensitivity --stages 512,2048,8192 --survivors 4,2,1 --json >$OUT/sens.json
run mpirun -n 2 $SP search --model $OUT/q --calib "$CAL" --target-bits u3 --out $OUT/map.txt --ctx 256 \
    --sensitivity $OUT/sens.txt.sensitivity.json \
    --generations 30 --offspring 16 --stages 512,2048,8192 --survivors 4,2,1 --json >$OUT/search.json
echo "== the same budget over levels with their own group sizes (2 at g32; 3..8 at g128) =="
B=$(ub 3) # u3 of the g32 levels
run mpirun -n 2 $SP quantize --model $M --calib "$CAL" --out $OUT/qg --levels 2,3g128,4g128,5g128,6g128,8g128 --group-size 32
run mpirun -n 2 $SP search --model $OUT/qg --calib "$CAL" --target-bits $B --out $OUT/gsens.txt --ctx 256 \
    --method sensitivity --stages 512,2048,8192 --survivors 4,2,1 --json >$OUT/gsens.json
run mpirun -n 2 $SP search --model $OUT/qg --calib "$CAL" --target-bits $B --out $OUT/gmap.txt --ctx 256 \
    --sensitivity $OUT/gsens.txt.sensitivity.json \
    --generations 30 --offspring 16 --stages 512,2048,8192 --survivors 4,2,1 --json >$OUT/gsearch.json
echo "== eval: ppl and KL(dense || model) =="
for b in 4 3; do
  mpirun -n 2 $SP eval --model $OUT/q --text "$EVAL" --ctx 256 --level $b --kl-base $OUT/dense.logits --json >$OUT/u$b.json
done
for m in map sens; do
  run mpirun -n 2 $SP eval --model $OUT/q --text "$EVAL" --ctx 256 --bits-map $OUT/$m.txt --kl-base $OUT/dense.logits --json >$OUT/e_$m.json
  run mpirun -n 2 $SP eval --model $OUT/qg --text "$EVAL" --ctx 256 --bits-map $OUT/g$m.txt --kl-base $OUT/dense.logits --json >$OUT/e_g$m.json
done
echo "== export: the searched model as GPTQ-packed safetensors =="
run $SP export --model $OUT/q --format gptq --gptq-v2 --bits-map $OUT/map.txt --out $OUT/gptq
run $SP export --model $OUT/qg --format gptq --gptq-v2 --bits-map $OUT/gmap.txt --out $OUT/gptq_g
for b in 4 3; do  # the uniform models, for their sizes
  grep -v '^#' $OUT/map.txt | awk -v b=$b '{print $1, b}' >$OUT/u$b.txt
  $SP export --model $OUT/q --format gptq --gptq-v2 --bits-map $OUT/u$b.txt --out $OUT/gptq_u$b >/dev/null
done
mib() { du -b --apparent-size "$1"/*.safetensors | awk '{s+=$1} END {printf "%.3f", s/1048576}'; }
echo
echo "== summary (KL on held-out text; bits = stored bits per linear weight, scales and zeros included) =="
printf '%-22s %10s %8s %10s %10s\n' model "size MiB" bits ppl KL
printf '%-22s %10s %8s %10.4f %10s\n' "dense (fp32)" "$(mib $M)" 32 "$(num ppl $OUT/dense.json)" 0
printf '%-22s %10s %8.3f %10.4f %10.5f\n' "uniform 4-bit" "$(mib $OUT/gptq_u4)" "$(ub 4)" "$(num ppl $OUT/u4.json)" "$(num kl $OUT/u4.json)"
printf '%-22s %10s %8.3f %10.4f %10.5f\n' "uniform 3-bit" "$(mib $OUT/gptq_u3)" "$(ub 3)" "$(num ppl $OUT/u3.json)" "$(num kl $OUT/u3.json)"
printf '%-22s %10s %8.3f %10.4f %10.5f\n' "sensitivity @ 3-bit" "-" "$(num avg_bits $OUT/sens.json)" "$(num ppl $OUT/e_sens.json)" "$(num kl $OUT/e_sens.json)"
printf '%-22s %10s %8.3f %10.4f %10.5f\n' "evolution @ 3-bit" "$(mib $OUT/gptq)" "$(num avg_bits $OUT/search.json)" "$(num ppl $OUT/e_map.json)" "$(num kl $OUT/e_map.json)"
echo "levels with their own group sizes (2,3g128,4g128,5g128,6g128,8g128), same budget:"
printf '%-22s %10s %8.3f %10.4f %10.5f\n' "sensitivity @ 3-bit" "-" "$(num avg_bits $OUT/gsens.json)" "$(num ppl $OUT/e_gsens.json)" "$(num kl $OUT/e_gsens.json)"
printf '%-22s %10s %8.3f %10.4f %10.5f\n' "evolution @ 3-bit" "$(mib $OUT/gptq_g)" "$(num avg_bits $OUT/gsearch.json)" "$(num ppl $OUT/e_gmap.json)" "$(num kl $OUT/e_gmap.json)"
echo "(sizes include the fp32 embeddings and norms of this 260K-parameter model; map: $OUT/map.txt, picture: $OUT/map.txt.svg)"
