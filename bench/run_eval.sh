#!/usr/bin/env bash
# Benchmark: `shardpress eval` tokens/s on the bundled model, 1 and 2 ranks, and writes the
# "## Eval throughput" section of docs/benchmarks.md.
# Usage: bench/run_eval.sh [build dir (default build)]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "$0")/.."
B=${1:-build}
. .ci/env.sh
[ -x "$B/shardpress" ] || { cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release >/dev/null; cmake --build "$B" -j"$(nproc)" >/dev/null; }
M=models/stories260K
TEXT=../shared/data/text/stories260K-samples/eval.txt
rows=""
for n in 1 2; do
  best=0; line=""
  for rep in 1 2 3; do
    j=$(mpirun -n $n "$B/shardpress" eval --model $M --text $TEXT --ctx 256 --json)
    tps=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['tokens_per_s'])" "$j")
    if python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) else 1)" "$tps" "$best"; then best=$tps; line=$j; fi
  done
  rows+=$(python3 -c "
import json,sys; j=json.loads(sys.argv[1])
print(f\"| {j['ranks']} | {j['windows']} x {j['ctx']} | {j['tokens_per_s']:.0f} | {j['seconds']:.2f} | {j['ppl']:.4f} |\")" "$line")$'\n'
done
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
section=$(cat <<MD
## Eval throughput

What: \`shardpress eval\` on the bundled stories260K model over \`stories260K-samples/eval.txt\`
(all windows of 256 tokens), best of 3 runs; tokens/s counts every token of every window over the
wall time of the forward + scoring phase (tokenization excluded). The perplexity column shows the
runs computed the same thing on every rank count.

Machine: ${cpu}, nproc $(nproc), load average at start $(cut -d" " -f1-3 /proc/loadavg). Command: \`bench/run_eval.sh\`, $(date +%Y-%m-%d).

| ranks | windows × ctx | tokens/s | seconds | ppl |
|---|---|---|---|---|
${rows}
MD
)
sp_bench_write_section docs/benchmarks.md "## Eval throughput" "$section"
echo "$section"
