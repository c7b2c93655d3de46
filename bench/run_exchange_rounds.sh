#!/usr/bin/env bash
# Benchmark (issue 21, part 2): does `shardpress exchange` approach the sites' mean over rounds?
# Four sites with fixed local models (base + a delta each); each round's --base is the previous
# round's output. For each kind of delta, compressor and server step: the relative error of the
# global delta against the sites' mean delta after each of ROUNDS rounds,
#   ‖(out_t − base_0) − mean_i (local_i − base_0)‖ / ‖mean_i (local_i − base_0)‖,
# computed here (Python, from the files), and the bytes sent (uplink per site, from --json).
# Deltas: gauss (independent N(0, 0.01²) per site: the issue's experiment) and lowrank (not
# white noise: 4 directions shared by the sites per matrix with site-specific coefficients, plus
# sparse spikes and a little noise; tests/mpi/make_sites.py --kind lowrank). Base: stories260K.
# Usage: bench/run_exchange_rounds.sh [build dir] [rounds] > table (markdown, for
# docs/benchmarks.md). SP_BENCH_STEPS overrides the steps compared (default "1.0 0.2 auto").
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}; ROUNDS=${2:-20}
. .ci/env.sh
export OMPI_MCA_rmaps_base_oversubscribe=1 OPENBLAS_NUM_THREADS=1
[ -x "$B/shardpress" ] || { cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release >/dev/null; cmake --build "$B" -j"$(nproc)" >/dev/null; }
W=$(mktemp -d /tmp/sp-xrounds.XXXXXX)
trap 'rm -rf "$W"' EXIT
BASE=models/stories260K
STEPS=${SP_BENCH_STEPS:-"1.0 0.2 auto"}
for kind in gauss lowrank; do
  python3 tests/mpi/make_sites.py "$BASE" "$W/$kind" 4 --scale 0.01 --kind "$kind" --seed 2
  for comp in topk:0.01 topk:0.05 topk:0.05+q8; do
    for lr in $STEPS; do
      R="$W/run/$kind/$comp/$lr"; mkdir -p "$R"
      prev="$BASE"
      for t in $(seq 1 "$ROUNDS"); do
        mpirun -n 4 "$B/shardpress" exchange --base "$prev" --local "$W/$kind/{rank}" --state "$R/D" \
          --out "$R/r$t" --compressor "$comp" --server-lr "$lr" --json >"$R/j$t"
        prev="$R/r$t"
      done
    done
  done
done
python3 - "$W" "$BASE" "$ROUNDS" "$STEPS" <<'PY'
import array, json, math, os, struct, sys
W, BASE, ROUNDS, STEPS = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split()
def read(d):
    raw = open(os.path.join(d, 'model.safetensors'), 'rb').read()
    n = struct.unpack('<Q', raw[:8])[0]; h = json.loads(raw[8:8 + n]); h.pop('__metadata__', None)
    a = array.array('f'); a.frombytes(raw[8 + n:])
    return a  # every tensor, in file order (the same layout in every file)
b0 = read(BASE)
print('| deltas | compressor | step | rel. error after rounds 1 … %d | uplink per site per round | total sent in %d rounds |' % (ROUNDS, ROUNDS))
print('|---|---|---|---|---|---|')
for kind in ('gauss', 'lowrank'):
    sites = [read(os.path.join(W, kind, str(i))) for i in range(4)]
    mean = [sum(s[j] for s in sites) / 4 - b0[j] for j in range(len(b0))]
    nm = math.sqrt(sum(x * x for x in mean))
    for comp in ('topk:0.01', 'topk:0.05', 'topk:0.05+q8'):
        for lr in STEPS:
            R = os.path.join(W, 'run', kind, comp, lr)
            errs, up, down, steps = [], 0.0, 0.0, []
            for t in range(1, ROUNDS + 1):
                o = read(os.path.join(R, 'r%d' % t))
                errs.append(math.sqrt(sum((o[j] - b0[j] - mean[j]) ** 2 for j in range(len(b0)))) / nm)
                j = json.load(open(os.path.join(R, 'j%d' % t)))
                up += sum(j['up_bytes']); down += j['down_bytes'] * 4; dense = j['dense_bytes']
                steps.append(j['step']['mean'])
            name = 'auto (%.3f … %.3f)' % (min(steps), max(steps)) if lr == 'auto' else lr
            print('| %s | %s | %s | %s | %.0f B (%.4f of dense) | up %.2f MB + down %.2f MB |' % (
                kind, comp, name, ' '.join('%.3f' % e for e in errs), up / 4 / ROUNDS,
                up / 4 / ROUNDS / dense, up / 1e6, down / 1e6))
PY
