#!/usr/bin/env bash
# bench/run_ef21.sh [ROUNDS] — the EF21 paper's experiment (logistic regression with the
# non-convex regulariser, λ = 0.1, n = 20 workers = 20 MPI ranks oversubscribed, Top-1) on the
# four LibSVM datasets of ../shared/data/libsvm: ef21, ef21w, ef (classic error feedback),
# naive (compressed GD without feedback) and gd, step factors 1, 2, 4, ..., 256, each run
# stopped at ‖∇f‖² < 1e-7 or after ROUNDS rounds (default 3000). Also K = d against gd, and
# bench/ef21_reference.py (a plain float64 Python implementation) on mushrooms at factor 256.
# Writes the "EF21" section of docs/benchmarks.md and the plots docs/figures/ef21-*.svg.
# CSVs are kept in $SP_BUILD_DIR/ef21-bench; SP_EF21_REUSE=1 reuses them (and the recorded
# load and time) instead of running the MPI jobs again.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$ROOT/.ci/env.sh"
R=${1:-3000}
B="$BUILD/bench_ef21"; DATA="$ROOT/../shared/data/libsvm"; OUT="$BUILD/ef21-bench"
mkdir -p "$OUT" "$ROOT/docs/figures"
# nice: 20 polling ranks on a shared machine must not starve the other users.
MPI=(nice -n 15 mpirun --allow-run-as-root --oversubscribe --bind-to none --mca mpi_yield_when_idle 1 -n 20)
F=1,2,4,8,16,32,64,128,256
if [ -z "${SP_EF21_REUSE:-}" ] || [ ! -e "$OUT/meta" ]; then
  load0=$(cut -d' ' -f1-3 /proc/loadavg)
  t0=$(date +%s)
  for ds in mushrooms phishing a9a w8a; do
    "${MPI[@]}" "$B" --data "$DATA/$ds.libsvm" --k 1 --method ef21,ef21w,ef,naive,gd --factor $F \
      --rounds "$R" --until 1e-7 --csv "$OUT/$ds" 2>"$OUT/$ds.log"
    echo "$ds done ($(( $(date +%s) - t0 )) s)"
  done
  # K = d is gradient descent: θ = 1, β = 0 give γ = F/L, and every coordinate is sent.
  "${MPI[@]}" "$B" --data "$DATA/mushrooms.libsvm" --k 1000000 --method ef21,gd --factor 1 --rounds "$R" \
    --until 1e-7 --csv "$OUT/kd-mushrooms" 2>"$OUT/kd.log"
  printf '%s\n%s\n%s\n%s\n' "$load0" "$(cut -d' ' -f1-3 /proc/loadavg)" "$(( $(date +%s) - t0 ))" \
    "$(date -u +%F)" >"$OUT/meta"
fi
{ read -r load0; read -r load1; read -r secs; read -r day; } <"$OUT/meta"
# The same method written again, plainly (float64, no MPI, no shardpress code).
rt=$(awk -F, 'NR > 1 && $2 < 1e-7 { print $1; exit }' "$OUT/mushrooms-ef21-f256.csv")
python3 "$ROOT/bench/ef21_reference.py" "$DATA/mushrooms.libsvm" 256 "${rt:-$R}" \
  "$OUT/mushrooms-ef21-f256.csv" >"$OUT/reference.txt"
python3 "$ROOT/bench/ef21_report.py" "$OUT" "$ROOT/docs/figures" "$R" >"$OUT/section.md"
sp_bench_write_section "$DOC" "## EF21" "## EF21

\`bench/run_ef21.sh $R\` ($day, $(nproc) cores shared with other jobs, load average $load0 at
the start and $load1 at the end, $secs s for the MPI runs): \`mpirun -n 20 bench_ef21 --data FILE
--k 1 --method ef21,ef21w,ef,naive,gd --factor $F --rounds $R --until 1e-7\` per dataset, every
worker an MPI rank, messages built by mpi/sp_ef21.h and mpi/sp_compress.h and exchanged with
\`sp_ef21_gather\`. The rounds are deterministic; only the seconds depend on the machine.

$(cat "$OUT/section.md")

Check against a second implementation (\`bench/ef21_reference.py\`: the same conventions written
plainly in float64 Python, λ_max by power iteration, no MPI and no shardpress code), mushrooms,
EF21, factor 256:

\`\`\`
$(cat "$OUT/reference.txt")
\`\`\`"
echo "wrote the EF21 section of $DOC"
