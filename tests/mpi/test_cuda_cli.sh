#!/usr/bin/env bash
# --device cpu|cuda (pipeline/sp_device.h): a bad value and a missing CUDA (build or GPU) are
# one line on stderr on every rank count, leave no output behind, and --device cpu gives the
# same bytes and figures as no option (the default is cpu here: no GPU is visible). With a CUDA
# build and a GPU the same commands must succeed on cuda instead.
. "$(dirname "$0")/lib.sh"
M="$SP_MODEL_DIR"; CAL="$SP_DATA_DIR/text/stories260K-samples/calib.txt"
EV="$SP_DATA_DIR/text/stories260K-samples/eval.txt"
Q="--calib $CAL --nsamples 4 --ctx 64 --bits 4"

expect_error "^shardpress: error: --device: 'gpu' is not cpu or cuda$" \
  "$SP_BIN" quantize --model "$M" $Q --out "$WORK/bad" --device gpu
expect_error "^shardpress: error: --device: 'tpu' is not cpu or cuda$" \
  "$SP_BIN" eval --model "$M" --text "$EV" --ctx 64 --device tpu
expect_error "^shardpress: error: --device: '' is not cpu or cuda$" \
  "$SP_BIN" search --model "$WORK/none" --calib "$CAL" --target-bits 3 --out "$WORK/m" --device ''

rc=0
mpi 2 "$SP_BIN" quantize --model "$M" $Q --out "$WORK/qc" --device cuda >"$WORK/o" 2>"$WORK/e" || rc=$?
if [ "$rc" -ne 0 ]; then
  # No CUDA here: one line (rank 0 prints it for all), nothing left behind. One rank directly;
  # two through mpiexec, whose own lines about the exit code are not ours.
  pat="^shardpress: error: (rank [0-9]+: )?--device cuda: (this shardpress was built without CUDA \(configure with -DSP_CUDA=ON\)|no CUDA device is visible to this rank .*)$"
  expect_error "$pat" "$SP_BIN" quantize --model "$M" $Q --out "$WORK/qc1" --device cuda
  expect_error "$pat" "$SP_BIN" eval --model "$M" --text "$EV" --ctx 64 --max-windows 4 --device cuda
  [ "$(grep -c '^shardpress: error:' "$WORK/e")" -eq 1 ] || { cat "$WORK/e" >&2; fail "2 ranks: not one error line"; }
  grep -Eq "$pat" "$WORK/e" || { cat "$WORK/e" >&2; fail "2 ranks: unexpected message"; }
  for d in qc qc1; do
    [ ! -e "$WORK/$d" ] && [ ! -e "$WORK/$d.partial" ] || fail "a failed --device cuda left $d"
  done
  dev=cpu
else
  echo "a CUDA device is visible: checking that --device cuda runs"
  [ -f "$WORK/qc/model.sp.h5" ] || fail "--device cuda gave no container"
  dev=cuda
fi

# --device cpu is the default path on a machine without a GPU: byte-identical containers.
mpi 2 "$SP_BIN" quantize --model "$M" $Q --out "$WORK/q0" >/dev/null
mpi 2 "$SP_BIN" quantize --model "$M" $Q --out "$WORK/q1" --device cpu >/dev/null
if [ "$dev" = cpu ]; then
  cmp "$WORK/q0/model.sp.h5" "$WORK/q1/model.sp.h5" || fail "--device cpu changed the container"
fi
a=$(mpi 2 "$SP_BIN" eval --model "$M" --text "$EV" --ctx 64 --max-windows 8 --json | json_get /dev/stdin ppl)
b=$(mpi 2 "$SP_BIN" eval --model "$M" --text "$EV" --ctx 64 --max-windows 8 --device cpu --json | json_get /dev/stdin ppl)
[ "$dev" = cuda ] || [ "$a" = "$b" ] || fail "eval --device cpu: ppl $b, default $a"
"$SP_BIN" quantize --help | grep -q -- "--device cpu|cuda" || fail "quantize --help has no --device"
"$SP_BIN" eval --help | grep -q -- "--device cpu|cuda" || fail "eval --help has no --device"
"$SP_BIN" search --help | grep -q -- "--device cpu|cuda" || fail "search --help has no --device"
echo "ok ($dev)"
