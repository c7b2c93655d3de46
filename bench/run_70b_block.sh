#!/usr/bin/env bash
# Benchmark: one Llama-70B-shaped decoder block (hidden 8192, intermediate 28672, 64 heads,
# 8 KV heads, vocab 512) with synthetic bf16 weights, quantized end to end on 2 ranks at levels
# 2,3,4,5,6,8. Records time per phase and peak RSS per rank in docs/benchmarks.md.
# Usage: bench/run_70b_block.sh [build dir] [nsamples] [ctx]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "$0")/.."
B=${1:-build}; NS=${2:-4}; CTX=${3:-512}
. .ci/env.sh
export OMPI_MCA_rmaps_base_oversubscribe=1
[ -x "$B/shardpress" ] && [ -x "$B/sp_synth_model" ] || { cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release >/dev/null; cmake --build "$B" -j"$(nproc)" >/dev/null; }
W=${SP_BENCH_DIR:-$(mktemp -d /tmp/sp-70b.XXXXXX)}
M=$W/model; O=$W/out
[ -f "$M/config.json" ] || "$B/sp_synth_model" --out "$M" --hidden 8192 --intermediate 28672 --layers 1 \
    --heads 64 --kv-heads 8 --vocab 512 --dtype bf16 --max-pos 4096 --seed 1
rm -rf "$O"
CMD="mpirun -n 2 $B/shardpress quantize --model $M --calib ../shared/data/text/stories260K-samples/calib.txt --out $O --bits 4 --levels 2,3,4,5,6,8 --group-size 128 --nsamples $NS --ctx $CTX --json"
echo "$CMD"
J=$(eval "$CMD")
echo "$J"
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
section=$(python3 - "$J" "$CMD" "$cpu" "$(nproc)" "$(free -g | awk '/Mem:/{print $2}')" <<'PY'
import json, sys
j = json.loads(sys.argv[1]); cmd = sys.argv[2]; cpu, ncpu, mem = sys.argv[3], sys.argv[4], sys.argv[5]
ph = j["phase_seconds"]
rss = ", ".join(f"{x/1024:.2f} GiB" for x in j["peak_rss_mb"])
tot = sum(j["peak_rss_mb"]) / 1024
print(f"""## 70B-shaped block, end to end

What: one decoder block shaped like Llama-2/3-70B (hidden 8192, intermediate 28672, 64 heads,
8 KV heads; vocab 512 to keep the embedding small), synthetic bf16 weights written by
`sp_synth_model`, quantized with GPTQ at levels 2, 3, 4, 5, 6 and 8 (group 128, asym), calibrated
on {j['nsamples']} windows of {j['ctx']} tokens, on 2 ranks. Target: both ranks together fit in the
machine's memory because memory is bounded by one block.

Machine: {cpu}, nproc {ncpu}, {mem} GiB. Command (`bench/run_70b_block.sh`):

    {cmd}

| phase | seconds (rank 0 wall) |
|---|---|
| calibration (tokenize, embed) | {ph['calibration']:.1f} |
| Hessians (dense forward + accumulate + reduce) | {ph['hessian']:.1f} |
| GPTQ (all modules × 6 levels) | {ph['gptq']:.1f} |
| share (packed broadcast + segment) | {ph['share']:.1f} |
| propagate (quantized forward) | {ph['propagate']:.1f} |
| write (container) | {ph['write']:.1f} |
| **total** | **{j['seconds']:.1f}** |

Peak RSS per rank: {rss}; both ranks together: {tot:.2f} GiB of {mem} GiB.
Mean relative layer error at 4 bits: {j['mean_rel_layer_error']:.4e}.
""")
PY
)
sp_bench_write_section docs/benchmarks.md "## 70B-shaped block, end to end" "$section"
echo "$section"
[ -n "${SP_BENCH_DIR:-}" ] || rm -rf "$W"
