#!/usr/bin/env bash
# run_gptq.sh — build bench_gptq if needed, run it, and write its figures into the
# "## GPTQ kernel" section of docs/benchmarks.md (other sections are untouched; the file is
# created when missing).
#
# Usage: bench/run_gptq.sh [--cuda] [--quick] [--no-doc]
#   --cuda    the GPU path instead (issue 14): builds bench_gptq_cuda with -DSP_CUDA=ON in
#             SP_BUILD_DIR (default <repo>/build-cuda), runs it and writes the section
#             "## GPTQ kernel (CUDA)"; the reference rate is the GPU's own cublasSgemm
#   --quick   skip the [8192, 28672] (70B down_proj) case: printed, never recorded
#   --no-doc  print only; leave docs/benchmarks.md alone
# Environment: SP_BUILD_DIR (default <repo>/build), OPENBLAS_NUM_THREADS (default 2: the
# reference machine has 2 cores). The full run needs about 14 GB of memory and a few minutes.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECTION="## GPTQ kernel"
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-2}"

args=()
write_doc=1
cuda=0
for a in "$@"; do
  case "$a" in
    --quick) args+=(--quick); write_doc=0 ;;
    --no-doc) write_doc=0 ;;
    --cuda) cuda=1 ;;
    *) echo "usage: $0 [--cuda] [--quick] [--no-doc]" >&2; exit 2 ;;
  esac
done

if [[ $cuda -eq 1 ]]; then
  BUILD="${SP_BUILD_DIR:-$ROOT/build-cuda}"
  SECTION="## GPTQ kernel (CUDA)"
  if [[ ! -f "$BUILD/CMakeCache.txt" ]]; then
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSP_CUDA=ON -DSP_TESTS=OFF >/dev/null
  fi
  cmake --build "$BUILD" --target bench_gptq_cuda -j"$(nproc)" >/dev/null
  set +e
  out="$("$BUILD/bench_gptq_cuda" "${args[@]}")"
  rc=$?
  set -e
  echo "$out"
  [[ $rc -eq 0 ]] || { echo "run_gptq.sh --cuda: bench_gptq_cuda exited $rc" >&2; exit "$rc"; }
  [[ $write_doc -eq 1 ]] || exit 0
  mrow="$(printf '%s\n' "$out" | sed -n 's/^CROWM //p')"
  hrows="$(printf '%s\n' "$out" | sed -n 's/^CROWH //p')"
  rows="$(printf '%s\n' "$out" | sed -n 's/^CROW //p')"
  detail="$(printf '%s\n' "$out" | grep -v '^CROW' | sed 's/^/    /')"
  cpu="$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)"
  section="$(cat <<EOF
$SECTION

What: \`sp_gptq_prepare\` + \`sp_gptq_quantize\` with \`sp_gptq_opts.gpu\` (the float path on the
GPU: cuSOLVER spotrf, cuBLAS sgemm lazy updates, the column-loop kernel) at 4 bits, group 128,
asymmetric, block 128, damp 0.01; inputs and flop count as in "GPTQ kernel"; H accumulated on
the GPU (\`sp_hacc_use_cuda\`). Reference: \`cublasSgemm\` 4096³ on the same GPU (best of 5, and
one right before each timed GPTQ run, which the ratio uses). For 4096² the CPU float path
quantizes the same layer with the same H: the fraction of differing codes, both layer errors.

Machine: $cpu, nproc $(nproc), GPU in the first table. Command: \`bench/run_gptq.sh --cuda${args[*]:+ ${args[*]}}\`
(runs \`bench_gptq_cuda${args[*]:+ ${args[*]}}\`), $(date -u +%Y-%m-%d).

| GPU | cublasSgemm 4096³ GFLOP/s |
|---|---|
$mrow

| Hessian C | rows n | add + copy to the host s | GFLOP/s | vs sgemm (fp64 vs fp32 rate) |
|---|---|---|---|---|
$hrows

| layer | W [R, C] | options | prepare s | quantize s | total s | GFLOP/s | sgemm just before | vs sgemm | vs CPU path |
|---|---|---|---|---|---|---|---|---|---|
$rows

Run log:

$detail
EOF
)"
  sp_bench_write_section "$DOC" "$SECTION" "$section"
  echo "run_gptq.sh: updated $DOC"
  exit 0
fi

if [[ ! -f "$BUILD/CMakeCache.txt" ]]; then
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$BUILD" --target bench_gptq -j"$(nproc)" >/dev/null

cmd="OPENBLAS_NUM_THREADS=$OPENBLAS_NUM_THREADS bench_gptq${args[*]:+ ${args[*]}}"
out="$("$BUILD/bench_gptq" "${args[@]}")"
echo "$out"
[[ $write_doc -eq 1 ]] || exit 0

rows="$(printf '%s\n' "$out" | sed -n 's/^ROW //p')"
hrows="$(printf '%s\n' "$out" | sed -n 's/^ROWH //p')"
mrow="$(printf '%s\n' "$out" | sed -n 's/^ROWM //p')"
lrow="$(printf '%s\n' "$out" | sed -n 's/^ROWL | //p')"
[[ -n "$rows" && -n "$hrows" && -n "$mrow" ]] || {
  echo "run_gptq.sh: bench_gptq printed no ROW lines" >&2; exit 1; }
cpu="$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)"
ncpu="$(nproc)"
blas="$(dpkg-query -W -f='${Version}' libopenblas0-pthread 2>/dev/null || echo unknown)"
detail="$(printf '%s\n' "$out" | grep -v '^ROW' | sed 's/^/    /')"

section="$(cat <<EOF
$SECTION

What: \`sp_gptq_prepare\` + \`sp_gptq_quantize\` (float path) at 4 bits, group 128, asymmetric,
block 128, damp 0.01, on synthetic layers of Llama shapes, W [out, in] = [R, C]; and
\`sp_hacc_add\` (exact fixed-point accumulation of double products, as quantize uses it). Inputs: X [2048, C] low rank (64) plus noise with
log-normal column scales, H = 2/n·XᵀX; W ~ N(0, 0.02²) with 1% outliers ×5. Reference rates
from the same run: \`cblas_sgemm\` 4096³ and \`cblas_dsyrk\` (C = 4096, k = 2048), best of 3.

Flops counted (2 per multiply-add): GPTQ = C³/3 (Cholesky of H + λI) + R·C·(C − 1) (each
pair of columns j < k gets one multiply-add per row: the lazy block updates and the updates
inside blocks); quantization, transposes and group parameters run inside the measured time
but are not counted. (The reference gptq.py also inverts H and factors the inverse:
4/3·C³ + R·C².) Hessian = n·C², for a second batch of n rows (the first add also pays the
page faults of the C² sum; best of 5 at C = 4096, one at C = 28672). Targets: GPTQ at least
50% of the sgemm rate; 4096 x 4096 in at most 0.8 s (the reference gptq.py on torch takes about 4.1 s on this machine, a figure
given to us, not re-measured here: torch is not installed); Hessian at least 80% of dsyrk.
Layer error = tr(ΔW H ΔWᵀ) with the undamped H, vs round-to-nearest with the same groups (for
C = 28672 over the first 1024 rows). H has rank <= 2048 < C (singular before damping), so GPTQ
can move error into its null space: the GPTQ/RTN ratios are lower than on real calibration data.

Machine: $cpu, nproc $ncpu, OpenBLAS $blas (pthread), OPENBLAS_NUM_THREADS=$OPENBLAS_NUM_THREADS.
Command: \`bench/run_gptq.sh${args[*]:+ ${args[*]}}\` (runs \`$cmd\`), $(date -u +%Y-%m-%d).
Timings are the best of 3 runs (4096 x 4096), 2 ([11008, 4096]) or 1 ([8192, 28672]): the
machine is shared with other jobs, and single runs vary by ±15% or more. Every timed run is
paired with a reference measured right before it (one sgemm 4096³ before each GPTQ run, one
dsyrk C=4096 before each Hessian add), and the percentages compare the best run with its own
reference: the machine's speed drifts over seconds, so a reference taken minutes earlier would
add that drift to the ratio. The table just below is the best of 3 at the start of the run.

| sgemm GFLOP/s | dsyrk GFLOP/s |
|---|---|
$mrow

| Hessian C | rows n | first add s | add s | GFLOP/s | dsyrk C=4096 just before, GFLOP/s | vs that dsyrk | expand s (sp_hacc_take) |
|---|---|---|---|---|---|---|---|
$hrows

| layer | W [R, C] | act_order | prepare s | quantize s | total s | GFLOP/s | sgemm just before, GFLOP/s | vs that sgemm | layer err GPTQ | layer err RTN | GPTQ/RTN |
|---|---|---|---|---|---|---|---|---|---|---|---|
$rows

One factorization serves every bit width: after the 4-bit run above, the same context
quantized [4096, 4096] at ${lrow:-n/a} (quantize only).

Run log:

$detail
EOF
)"

sp_bench_write_section "$DOC" "$SECTION" "$section"
echo "run_gptq.sh: updated $DOC"
