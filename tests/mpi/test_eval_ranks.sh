#!/usr/bin/env bash
# eval gives identical ppl and kl on 1, 2 and 4 ranks; KL of the model against its own saved
# logits is 0 within 1e-6; the saved logits file is identical for any rank count.
. "$(dirname "$0")/lib.sh"
TEXT="$SP_DATA_DIR/text/stories260K-samples/eval.txt"
M="$SP_MODEL_DIR"
"$SP_BIN" eval --model "$M" --text "$TEXT" --ctx 128 --max-windows 24 --save-logits "$WORK/ref.lg" --json >"$WORK/ref.json"
for n in 1 2 4; do
  mpi $n "$SP_BIN" eval --model "$M" --text "$TEXT" --ctx 128 --max-windows 24 --kl-base "$WORK/ref.lg" --json >"$WORK/r$n.json"
  mpi $n "$SP_BIN" eval --model "$M" --text "$TEXT" --ctx 128 --max-windows 24 --save-logits "$WORK/ref$n.lg" --json >/dev/null
  cmp "$WORK/ref.lg" "$WORK/ref$n.lg" || fail "saved logits differ on $n ranks"
done
python3 - "$WORK" <<'PY'
import json, sys
w = sys.argv[1]
ref = json.load(open(f"{w}/ref.json"))
r = {n: json.load(open(f"{w}/r{n}.json")) for n in (1, 2, 4)}
for n in (1, 2, 4):
    assert r[n]["ranks"] == n, r[n]
    assert r[n]["ppl"] == r[1]["ppl"], (n, r[n]["ppl"], r[1]["ppl"])
    assert r[n]["kl"] == r[1]["kl"], (n, r[n]["kl"], r[1]["kl"])
    assert r[n]["windows"] == 24 and r[n]["scored"] == 24 * 127, r[n]
    assert abs(r[n]["kl"]) <= 1e-6, r[n]["kl"]
    for k in ("tokens", "windows", "scored", "mean_nll", "ppl", "tokens_per_s", "ranks"):
        assert k in r[n], k
assert ref["ppl"] == r[1]["ppl"], (ref["ppl"], r[1]["ppl"])
assert 1.0 < ref["ppl"] < 50.0, ref["ppl"]   # stories260K on its own samples: low perplexity
print("ok: ppl", r[1]["ppl"], "kl", r[1]["kl"])
PY
# The safetensors and llama2.c copies of the model give the same perplexity.
"$SP_BIN" eval --model "$M/stories260K.bin" --text "$TEXT" --ctx 128 --max-windows 24 --kl-base "$WORK/ref.lg" --json >"$WORK/bin.json"
python3 -c "
import json,sys; a=json.load(open('$WORK/ref.json')); b=json.load(open('$WORK/bin.json'))
assert abs(a['ppl']-b['ppl']) <= 1e-9*a['ppl'], (a['ppl'], b['ppl']); assert abs(b['kl']) <= 1e-6, b['kl']; print('ok: .bin', b['ppl'])"
