#!/usr/bin/env bash
# Benchmark (issue 21, part 3): the cost of the weight CRCs on the 70B-shaped block of
# bench/run_70b_block.sh (hidden 8192, intermediate 28672, 64 heads, 8 KV heads, synthetic bf16):
# loading the block (read + bf16->fp32 + NaN check) with and without the CRC-32 of every tensor,
# best of REPS each, alternating, in one process (bench/bench_weight_crc.c). This is a shorter
# equivalent of the end-to-end block run: the CRCs add work only where a block is loaded (once per
# block per run on rank 0; on resume, once per finished block, spread over the ranks), so the
# added time per block is "load+crc - load", to compare with the block's total in
# docs/benchmarks.md "70B-shaped block, end to end".
# Usage: bench/run_weight_crc.sh [build dir] [reps]. SP_BENCH_DIR=DIR keeps the model (1.6 GiB).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}; REPS=${2:-3}
. .ci/env.sh
[ -x "$B/bench_weight_crc" ] && [ -x "$B/sp_synth_model" ] || { cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release >/dev/null; cmake --build "$B" -j"$(nproc)" >/dev/null; }
W=${SP_BENCH_DIR:-$(mktemp -d /tmp/sp-crc.XXXXXX)}
M=$W/model
[ -f "$M/config.json" ] || "$B/sp_synth_model" --out "$M" --hidden 8192 --intermediate 28672 --layers 1 \
    --heads 64 --kv-heads 8 --vocab 512 --dtype bf16 --max-pos 4096 --seed 1 >/dev/null
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), nproc $(nproc), $(free -g | awk '/Mem:/ {print $2}') GiB; load $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%F)"
echo "command: bench/run_weight_crc.sh $B $REPS"
"$B/bench_weight_crc" "$M" 0 "$REPS"
[ -n "${SP_BENCH_DIR:-}" ] || rm -rf "$W"
