#!/usr/bin/env bash
# run_forward.sh — build bench_forward if needed, run it, and write its figures into the
# "## Forward block throughput" section of docs/benchmarks.md (other sections are untouched;
# the file is created when missing).
#
# Usage: bench/run_forward.sh [--quick] [--no-doc]
#   --quick   smaller block (D 1024, 2 x 512 tokens), a smoke run: printed, never recorded
#   --no-doc  print only; leave docs/benchmarks.md alone
# Environment: SP_BUILD_DIR (default <repo>/build), OPENBLAS_NUM_THREADS (default 2: the
# reference machine has 2 cores).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECTION="## Forward block throughput"
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-2}"

args=()
write_doc=1
for a in "$@"; do
  case "$a" in
    --quick) args+=(--quick); write_doc=0 ;;
    --no-doc) write_doc=0 ;;
    *) echo "usage: $0 [--quick] [--no-doc]" >&2; exit 2 ;;
  esac
done

if [[ ! -f "$BUILD/CMakeCache.txt" ]]; then
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$BUILD" --target bench_forward -j"$(nproc)" >/dev/null

cmd="OPENBLAS_NUM_THREADS=$OPENBLAS_NUM_THREADS bench_forward ${args[*]:-}"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
out="$("$BUILD/bench_forward" "${args[@]}")"
echo "$out"
[[ $write_doc -eq 1 ]] || exit 0

row="$(printf '%s\n' "$out" | sed -n 's/^ROW //p')"
[[ -n "$row" ]] || { echo "run_forward.sh: bench_forward printed no ROW line" >&2; exit 1; }
cpu="$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)"
ncpu="$(nproc)"
blas="$(dpkg-query -W -f='${Version}' libopenblas0-pthread 2>/dev/null || echo unknown)"
detail="$(printf '%s\n' "$out" | grep -v '^ROW ' | sed 's/^/    /')"

section="$(cat <<EOF
$SECTION

What: \`sp_block_forward\` on one synthetic decoder block (random fp32 weights, no model file),
several full windows in prefill style, against \`cblas_sgemm\` on square matrices timed in the
same run (best of 2 runs before and 2 after the forward, after a warm-up, so that a disturbed
phase lowers the ratio instead of flattering it). Flops counted: every linear,
2·T·(4D² + 3DF) per window, plus the attention products actually computed (causal lower
triangle in 256-row query tiles, diagonal tiles in full; about 0.56 of the full T×T square at
T = 2048). Norms, RoPE, softmax and SwiGLU run inside the timed region but are not counted.
Target: at least 50% of the sgemm rate. Other work on the machine lowers both rates (see the
load average); the ratio is the figure to compare.

Machine: $cpu, nproc $ncpu, OpenBLAS $blas (pthread), OPENBLAS_NUM_THREADS=$OPENBLAS_NUM_THREADS;
load average before the run: $load_before.
Command: \`bench/run_forward.sh ${args[*]:-}\` (runs \`$cmd\`), $(date -u +%Y-%m-%d).

| block | windows × tokens | time s | tokens/s | GFLOP/s | best window GFLOP/s | sgemm GFLOP/s | ratio (all windows) |
|---|---|---|---|---|---|---|---|
$row

Run log:

$detail
EOF
)"

sp_bench_write_section "$DOC" "$SECTION" "$section"
echo "run_forward.sh: updated $DOC"
