#!/usr/bin/env bash
# quantize -> export --format gptq -> eval gives the same numbers as eval of the container,
# including per-module levels (--bits-map in eval, 'dynamic' overrides in the export).
. "$(dirname "$0")/lib.sh"
M="$SP_MODEL_DIR"; CAL="$SP_DATA_DIR/text/stories260K-samples/calib.txt"; EV="$SP_DATA_DIR/text/stories260K-samples/eval.txt"
"$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/q" --bits 4 --levels 3,4,8 --group-size 32 --nsamples 16 --ctx 128 --sym >/dev/null
"$SP_BIN" eval --model "$M" --text "$EV" --ctx 128 --max-windows 32 --save-logits "$WORK/ref.lg" >/dev/null
printf 'model.layers.0.mlp.down_proj 8\nmodel.layers.4.self_attn.q_proj 3\n' >"$WORK/map.txt"
"$SP_BIN" export --model "$WORK/q" --format gptq --out "$WORK/x" >/dev/null
"$SP_BIN" export --model "$WORK/q" --format gptq --out "$WORK/xm" --bits-map "$WORK/map.txt" >/dev/null
for d in q x; do "$SP_BIN" eval --model "$WORK/$d" --text "$EV" --ctx 128 --max-windows 32 --kl-base "$WORK/ref.lg" --json >"$WORK/$d.json"; done
"$SP_BIN" eval --model "$WORK/q" --text "$EV" --ctx 128 --max-windows 32 --kl-base "$WORK/ref.lg" --bits-map "$WORK/map.txt" --json >"$WORK/qm.json"
"$SP_BIN" eval --model "$WORK/xm" --text "$EV" --ctx 128 --max-windows 32 --kl-base "$WORK/ref.lg" --json >"$WORK/xm.json"
python3 - "$WORK" <<'PY'
import json, sys
w = sys.argv[1]
r = {k: json.load(open(f"{w}/{k}.json")) for k in ("q", "x", "qm", "xm")}
assert r["q"]["ppl"] == r["x"]["ppl"] and r["q"]["kl"] == r["x"]["kl"], (r["q"], r["x"])
assert r["qm"]["ppl"] == r["xm"]["ppl"] and r["qm"]["kl"] == r["xm"]["kl"], (r["qm"], r["xm"])
assert r["qm"]["kl"] != r["q"]["kl"], "the bits map changed nothing"
qc = json.load(open(f"{w}/xm/quantize_config.json"))
dyn = qc.get("dynamic", {})
assert any("down_proj" in k and v.get("bits") == 8 for k, v in dyn.items()), dyn
assert any("q_proj" in k and v.get("bits") == 3 for k, v in dyn.items()), dyn
cfg = json.load(open(f"{w}/x/config.json"))
assert cfg["quantization_config"]["bits"] == 4 and cfg["quantization_config"]["quant_method"] == "gptq"
print("ok: export matches container", r["q"]["kl"], r["qm"]["kl"])
PY
# bad format / existing output are refused with one line
# (issue 21: each pattern is the actual message, not any line that mentions a digit)
expect_error "^shardpress: error: export: --format 'awq' is not supported \(gptq, gguf\)\$" \
  "$SP_BIN" export --model "$WORK/q" --format awq --out "$WORK/y"
[ ! -e "$WORK/y" ] || fail "a refused export left $WORK/y"
expect_error "^shardpress: error: $WORK/x: already exists \(use --force to replace it\)\$" \
  "$SP_BIN" export --model "$WORK/q" --format gptq --out "$WORK/x"
expect_error "^shardpress: error: $WORK/q/model\.sp\.h5: module model\.layers\.[0-9]+\.[a-z_.]+ has no 2-bit level \(stored: 3, 4, 8\)\$" \
  "$SP_BIN" eval --model "$WORK/q" --text "$EV" --ctx 128 --level 2
