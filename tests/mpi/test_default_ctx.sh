#!/usr/bin/env bash
# Defaults that fit the model: without --ctx, plan and quantize use min(2048,
# max_position_embeddings) (512 for the bundled model) and say so; an explicit --ctx above the
# model's maximum stays an error.
. "$(dirname "$0")/lib.sh"
M="$SP_MODEL_DIR"; CAL="$SP_DATA_DIR/text/stories260K-samples/calib.txt"

out=$("$SP_BIN" plan --model "$M" --ranks 2) || fail "plan without --ctx failed: $out"
grep -q "^note .*--ctx 512: the default, min(2048, max_position_embeddings 512)" <<<"$out" \
  || fail "plan does not say which --ctx it chose: $out"
grep -q "128 windows x 512 tokens" <<<"$out" || fail "plan did not use ctx 512: $out"
"$SP_BIN" plan --model "$M" --ranks 2 --json | python3 -c '
import json, sys; p = json.load(sys.stdin)
assert p["ctx"] == 512 and p["ctx_defaulted"] is True, p'

mpi 2 "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/q" --nsamples 4 --json \
  | python3 -c '
import json, sys; r = json.load(sys.stdin)
assert r["ctx"] == 512 and r["ctx_defaulted"] is True, r'
out=$(mpi 1 "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/q2" --nsamples 2)
grep -q "2 windows x 512 tokens (--ctx default" <<<"$out" || fail "quantize does not say: $out"
# an explicit value is kept, and one that is too large is an error
mpi 1 "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/q3" --nsamples 2 --ctx 64 --json \
  | python3 -c 'import json, sys; r = json.load(sys.stdin); assert r["ctx"] == 64 and not r["ctx_defaulted"], r'
expect_error "quantize: --ctx 4096 is larger than the model's maximum \(max_position_embeddings 512\)" \
  "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/q4" --nsamples 2 --ctx 4096
[ ! -e "$WORK/q4" ] || fail "a failed quantize left $WORK/q4"
echo "ok"
