#!/usr/bin/env bash
# quantize --true-sequential (with act-order and the diag(H)-weighted scale search): containers
# byte-identical on 1, 2 and 3 ranks (the per-stage schedule differs on each) and different from
# the one-pass Hessians; run.json records both options, and a run stopped by SIGUSR1 resumes on
# another rank count to the same bytes; GPTQ still beats RTN in KL.
. "$(dirname "$0")/lib.sh"
M="$SP_MODEL_DIR"; CAL="$SP_DATA_DIR/text/stories260K-samples/calib.txt"; EV="$SP_DATA_DIR/text/stories260K-samples/eval.txt"
Q=(--bits 4 --levels 3,4 --group-size 32 --nsamples 32 --ctx 256 --act-order --scale-search hmse)
for n in 1 2 3; do
  mpi $n "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/s$n" "${Q[@]}" --true-sequential --json >"$WORK/s$n.json"
done
cmp "$WORK/s1/model.sp.h5" "$WORK/s2/model.sp.h5" || fail "true-sequential: 1 and 2 ranks differ"
cmp "$WORK/s1/model.sp.h5" "$WORK/s3/model.sp.h5" || fail "true-sequential: 1 and 3 ranks differ"
echo "ok: 1, 2, 3 ranks identical"
"$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/p" "${Q[@]}" --no-true-sequential --json >"$WORK/p.json"
! cmp -s "$WORK/s1/model.sp.h5" "$WORK/p/model.sp.h5" || fail "--true-sequential changed nothing"
python3 - "$WORK" <<'PY'
import json, sys
w = sys.argv[1]
s = json.load(open(f"{w}/s2.json")); p = json.load(open(f"{w}/p.json"))
assert s["true_sequential"] is True and p["true_sequential"] is False, (s, p)
assert s["scale_search"] == "hmse" and s["act_order"] is True and s["modules"] == 35, s
PY
# stop after the first checkpoint, resume on another rank count: same bytes as uninterrupted
D="$WORK/ck"; OUT="$WORK/o"
setsid $SP_MPIEXEC -n 2 "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$OUT" "${Q[@]}" --true-sequential --checkpoint-dir "$D" >"$WORK/job.out" 2>"$WORK/job.err" &
pg=$!
for _ in $(seq 400); do [ -e "$D/latest" ] && break; sleep 0.05; done
kill -USR1 -- "-$pg" 2>/dev/null || true
rc=0; wait "$pg" || rc=$?
python3 -c "import json; j=json.load(open('$D/run.json')); assert j['true_sequential'] == 1 and j['scale_search'] == 'hmse' and j['act_order'] == 1, j"
if [ ! -e "$OUT" ]; then
  [ $rc -eq 3 ] || { cat "$WORK/job.err"; fail "expected exit 3 (preempted), got $rc"; }
  mpi 1 "$SP_BIN" resume "$D" >/dev/null
else
  echo "run finished before the signal"
fi
cmp "$WORK/s1/model.sp.h5" "$OUT/model.sp.h5" || fail "resumed true-sequential run differs"
echo "ok: resumed run identical"
"$SP_BIN" eval --model "$M" --text "$EV" --ctx 256 --max-windows 32 --save-logits "$WORK/ref.lg" >/dev/null
"$SP_BIN" quantize --model "$M" --out "$WORK/r" --method rtn --bits 4 --levels 3,4 --group-size 32 --ctx 256 --scale-search mse >/dev/null
for m in s1 r; do
  "$SP_BIN" eval --model "$WORK/$m" --text "$EV" --ctx 256 --max-windows 32 --kl-base "$WORK/ref.lg" --level 4 --json >"$WORK/$m.kl.json"
done
python3 -c "
import json; g=json.load(open('$WORK/s1.kl.json'))['kl']; r=json.load(open('$WORK/r.kl.json'))['kl']
print(f'KL 4 bits: true-seq hmse act-order {g:.5f}  rtn mse {r:.5f}'); assert 0 < g < r, (g, r)"
# hmse needs a Hessian
expect_error "hmse.*GPTQ" "$SP_BIN" quantize --model "$M" --out "$WORK/x" --method rtn --ctx 256 --scale-search hmse
expect_error "scale-search.*'foo'" "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/x" --scale-search foo
