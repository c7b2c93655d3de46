#!/usr/bin/env bash
# run_plan_accuracy.sh — `shardpress plan` against real `shardpress quantize --json` runs:
# predicted vs measured peak RSS per rank and seconds per phase, on the bundled model and on
# synthetic models (bench/sp_synth_model), written to the "## Plan accuracy" section of
# docs/benchmarks.md (other sections are untouched).
#
# Usage: bench/run_plan_accuracy.sh [--quick] [--no-large] [--no-doc]
#   --quick     the two small cases only (a smoke run: printed, never recorded)
#   --no-large  skip the cases that need more than 1 GiB per rank (D2048 and a 7B-shaped block,
#               up to about 8 GiB in all)
#   --no-doc    print only
# Environment: SP_BUILD_DIR (default <repo>/build), SP_DATA_DIR (default <repo>/../shared/data).
# Everything runs with OPENBLAS_NUM_THREADS=1 (one BLAS thread per rank, as 2 ranks on the
# 2-core reference machine have). plan calibrates its rates right before each case, with the
# same setting, so that the rates see the machine as the run will (other load included).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DATA="${SP_DATA_DIR:-$ROOT/../shared/data}"
SECTION="## Plan accuracy"
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=(mpirun --oversubscribe --bind-to none)

quick=0 write_doc=1 large=1
for a in "$@"; do
  case "$a" in
    --quick) quick=1; write_doc=0 ;;
    --no-large) large=0 ;;
    --no-doc) write_doc=0 ;;
    *) echo "usage: $0 [--quick] [--no-large] [--no-doc]" >&2; exit 2 ;;
  esac
done
SP="$BUILD/shardpress"
SYN="$BUILD/sp_synth_model"
[ -x "$SP" ] && [ -x "$SYN" ] || { echo "run_plan_accuracy.sh: build shardpress and sp_synth_model in $BUILD first" >&2; exit 1; }
"$SP" plan --help >/dev/null 2>&1 || { echo "run_plan_accuracy.sh: $SP has no 'plan' command" >&2; exit 1; }
CAL="$DATA/text/stories260K-samples/calib.txt"
W=$(mktemp -d "${TMPDIR:-/tmp}/sp-planacc.XXXXXX")
trap 'rm -rf "$W"' EXIT


# name | model | ranks | quantize options (also given to plan)
cases=(
  "bundled|$ROOT/models/stories260K|2|--nsamples 8 --ctx 128 --group-size 32 --bits 4"
  "bundled|$ROOT/models/stories260K|1|--nsamples 128 --ctx 512 --group-size 32 --bits 4"
)
if [ "$quick" -eq 0 ]; then
  "$SYN" --out "$W/syn-s" --hidden 256 --intermediate 688 --layers 12 --heads 4 --kv-heads 2 --vocab 512 --max-pos 1024 --seed 1
  "$SYN" --out "$W/syn-m" --hidden 1024 --intermediate 2816 --layers 4 --heads 16 --kv-heads 8 --vocab 512 --max-pos 1024 --seed 2
  cases+=(
    "syn-s D256 F688 L12|$W/syn-s|2|--nsamples 16 --ctx 256 --group-size 32 --bits 4 --checkpoint-every 1"
    "syn-m D1024 F2816 L4|$W/syn-m|1|--nsamples 32 --ctx 512 --group-size 128 --bits 4 --levels 3,4"
    "syn-m D1024 F2816 L4|$W/syn-m|2|--nsamples 32 --ctx 512 --group-size 128 --bits 4 --levels 3,4"
  )
  if [ "$large" -eq 1 ]; then
    "$SYN" --out "$W/syn-l" --hidden 2048 --intermediate 5632 --layers 2 --heads 16 --kv-heads 4 --vocab 512 --max-pos 1024 --seed 3
    cases+=("syn-l D2048 F5632 L2|$W/syn-l|2|--nsamples 16 --ctx 512 --group-size 128 --bits 4")
    "$SYN" --out "$W/syn-7b" --hidden 4096 --intermediate 11008 --layers 1 --heads 32 --kv-heads 32 --vocab 512 --max-pos 2048 --seed 4
    cases+=("7B block D4096 F11008 L1|$W/syn-7b|2|--nsamples 8 --ctx 1024 --group-size 128 --bits 4 --levels 3,4")
  fi
fi

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
rows=""
i=0
for c in "${cases[@]}"; do
  IFS='|' read -r name model ranks opts <<<"$c"
  i=$((i + 1))
  "$SP" plan --calibrate --calibrate-dir "$W" --save-rates "$W/rates.json" >/dev/null
  # shellcheck disable=SC2086
  "$SP" plan --model "$model" --ranks "$ranks" $opts --rates "$W/rates.json" --json >"$W/plan$i.json"
  qopts=$opts
  case "$opts" in *--checkpoint-every*) qopts="$opts --checkpoint-dir $W/ckpt$i" ;; esac
  # shellcheck disable=SC2086
  "${MPIRUN[@]}" -n "$ranks" "$SP" quantize --model "$model" --calib "$CAL" --out "$W/out$i" $qopts --json >"$W/run$i.json"
  row=$(python3 - "$W/plan$i.json" "$W/run$i.json" "$name" "$ranks" "$opts" <<'PY'
import json, sys
p = json.load(open(sys.argv[1])); r = json.load(open(sys.argv[2]))
name, ranks, opts = sys.argv[3], int(sys.argv[4]), sys.argv[5]
mem = p["memory"]
pred = [mem["rank0"]["rss_mb"]] + ([mem["other"]["rss_mb"]] if ranks > 1 else [])
meas = r["peak_rss_mb"][:2]
def pct(a, b): return f"{(a - b) / b * 100:+.0f}%"
rss = "; ".join(f"r{k}: {pred[k]:.1f} / {meas[k]:.1f} ({pct(pred[k], meas[k])})" for k in range(len(meas)))
ph = []
for k in ("hessian", "gptq", "propagate", "write"):
    a, b = p["phase_seconds"][k], r["phase_seconds"][k]
    ph.append(f"{k} {a:.2f} / {b:.2f}")
tot = f"{p['seconds']:.2f} / {r['seconds']:.2f} ({pct(p['seconds'], r['seconds'])})"
ra = p["rates"]
rates = f"{ra['sgemm_gflops']:.0f} / {ra['dgemm_gflops']:.0f}"
print(f"| {name} | {ranks} | `{opts}` | {rss} | {tot} | {', '.join(ph)} | {rates} |")
PY
)
  echo "$row"
  rows+="$row"$'\n'
  rm -rf "$W/out$i" "$W/ckpt$i"
done
[ "$write_doc" -eq 1 ] || exit 0

cpu="$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)"
section="$(cat <<EOF
$SECTION

What: \`shardpress plan\` (memory replayed from quantize's allocations, time from measured
rates; see \`pipeline/plan/sp_plan.h\`) against \`shardpress quantize --json\` run right after it
with the same settings: peak RSS per rank (rank 0 and rank 1, MiB, predicted / measured, error
relative to the measurement) and seconds (whole run and per phase, predicted / measured).
The predicted RSS includes the weight-file pages the run maps (every block on every rank):
they are page cache, reclaimable, and \`plan\` does not count them against --mem-per-rank.
Where the differences come from. Memory: the allocations are replayed exactly (same sizes,
same order, same work-unit schedule); what is estimated is the process baseline (plan's own
RSS after its BLAS calls, library pages included), rank 0's HDF5 state while it writes the
container (2 MiB), the checkpoint engine (5 MiB) and Open MPI's all-reduce temporary (half a
Hessian piece, measured). Time: flop counts at the calibrated GEMM rates plus element-wise work
at the measured scalar rate; MPI waits, page faults and other processes on the machine are not
modelled, so time predictions are lower bounds on a busy machine (the rates are calibrated just
before each case, but 2 ranks then share the 2 cores with whatever else runs).
The Llama-70B-shaped block (2 ranks, six levels) is compared with its plan in the next section,
"70B-shaped block, end to end" (bench/run_70b_block.sh runs plan before it).

Machine: $cpu, nproc $(nproc), OPENBLAS_NUM_THREADS=1 for plan's calibration and for every
rank; \`plan --calibrate\` right before each case (its sgemm / dgemm GFLOP/s in the last
column). Load average before: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg).
Command: \`bench/run_plan_accuracy.sh\`, $(date -u +%Y-%m-%d). Synthetic models: \`sp_synth_model\`
(BF16, random weights, vocabulary 512 with the bundled tokenizer); calibration text
stories260K-samples/calib.txt.

| model | ranks | settings | peak RSS MiB, predicted / measured | total s | phases s, predicted / measured | rates GF/s |
|---|---|---|---|---|---|---|
$rows
EOF
)"
sp_bench_write_section "$DOC" "$SECTION" "$section"
echo "run_plan_accuracy.sh: updated $DOC"
