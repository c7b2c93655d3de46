#!/usr/bin/env bash
# quantize --levels 3,4g64: a level with its own group size (issue 19, the richer search space).
#  - its values are those of a plain GPTQ run at that group size (same Hessians: both propagate
#    through the 4-bit level), tensor for tensor in the GPTQ export, on 1 and 2 ranks;
#  - the other level keeps --group-size (its scales have ceil(in/32) rows);
#  - search prices each level at what it stores: codes + (fp16 scale + zero) per group of ITS
#    size, checked against a sum over the model's shapes written here;
#  - a killed run resumes (run.json records the group sizes) to the same bytes;
#  - bad values are one-line errors.
. "$(dirname "$0")/lib.sh"
M="$SP_MODEL_DIR"; CAL="$SP_DATA_DIR/text/stories260K-samples/calib.txt"
Q=(--nsamples 16 --ctx 128 --bits 4)
mpi 2 "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/a" "${Q[@]}" --levels 3,4g64 --group-size 32 >/dev/null
"$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/a1" "${Q[@]}" --levels 3,4g64 --group-size 32 >/dev/null
cmp "$WORK/a/model.sp.h5" "$WORK/a1/model.sp.h5" || fail "1 and 2 ranks differ"
"$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/b" "${Q[@]}" --levels 4 --group-size 64 >/dev/null
for d in a b; do "$SP_BIN" export --model "$WORK/$d" --format gptq --out "$WORK/x$d" >/dev/null; done
# every module at 3 bits: the g32 level
python3 - "$M/config.json" >"$WORK/map3.txt" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
for l in range(c["num_hidden_layers"]):
    for m in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
              "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"):
        print(f"model.layers.{l}.{m} 3")
PY
"$SP_BIN" export --model "$WORK/a" --format gptq --out "$WORK/xa3" --bits-map "$WORK/map3.txt" >/dev/null
# a mixed map (odd modules at 4g64, the rest at 3 bits g32) exported as GPTQ ('dynamic' group
# sizes per module) evaluates to the same numbers as the container with that map
awk 'NR % 2 { $2 = 4 } 1' "$WORK/map3.txt" >"$WORK/mix.txt"
"$SP_BIN" export --model "$WORK/a" --format gptq --out "$WORK/xmix" --bits-map "$WORK/mix.txt" >/dev/null
EV="$SP_DATA_DIR/text/stories260K-samples/eval.txt"
"$SP_BIN" eval --model "$WORK/xmix" --text "$EV" --ctx 128 --max-windows 16 --json >"$WORK/ex.json"
"$SP_BIN" eval --model "$WORK/a" --bits-map "$WORK/mix.txt" --text "$EV" --ctx 128 --max-windows 16 --json >"$WORK/ec.json"
"$SP_BIN" eval --model "$WORK/a" --level 3 --text "$EV" --ctx 128 --max-windows 16 --json >"$WORK/e3.json"
[ "$(json_get "$WORK/ex.json" ppl)" = "$(json_get "$WORK/ec.json" ppl)" ] || fail "GPTQ export of the mixed map: ppl $(json_get "$WORK/ex.json" ppl) vs the container's $(json_get "$WORK/ec.json" ppl)"
[ "$(json_get "$WORK/ec.json" ppl)" != "$(json_get "$WORK/e3.json" ppl)" ] || fail "the mixed map changed nothing"
python3 - "$WORK/xmix/quantize_config.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])).get("dynamic", {})
# every 4-bit module is overridden to its level's group size: 64, or -1 (one group per row)
# where the row is 64 wide (all but down_proj, whose input is the 172-wide MLP)
four = {k: v.get("group_size") for k, v in d.items() if v.get("bits") == 4}
assert four and all(g == (64 if "down_proj" in k else -1) for k, g in four.items()), four
assert any("down_proj" in k for k in four), four
PY
"$SP_BIN" search --model "$WORK/a" --calib "$CAL" --ctx 128 --method sensitivity --target-bits u3 \
  --out "$WORK/s" --json >"$WORK/s.json" 2>/dev/null
python3 - "$WORK" "$M/config.json" <<'PY'
import json, math, struct, sys
w, cfg = sys.argv[1], json.load(open(sys.argv[2]))
def tensors(d):
    raw = open(f"{d}/model.safetensors", "rb").read(); n = struct.unpack("<Q", raw[:8])[0]
    h = json.loads(raw[8:8 + n]); h.pop("__metadata__", None)
    return {k: (v["shape"], raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]) for k, v in h.items()}
a, b, a3 = tensors(f"{w}/xa"), tensors(f"{w}/xb"), tensors(f"{w}/xa3")
assert a.keys() == b.keys(), sorted(set(a) ^ set(b))
diff = [k for k in a if a[k] != b[k]]
assert not diff, f"4g64 level differs from a plain g64 run in {len(diff)} tensors, e.g. {diff[:3]}"
D, F, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
kv = D * cfg.get("num_key_value_heads", cfg["num_attention_heads"]) // cfg["num_attention_heads"]
shapes = {"q_proj": (D, D), "k_proj": (kv, D), "v_proj": (kv, D), "o_proj": (D, D),
          "gate_proj": (F, D), "up_proj": (F, D), "down_proj": (D, F)}  # (out, in)
n = 0
for k, (sh, _) in a3.items():
    if not k.endswith(".scales"): continue
    out, inn = shapes[k.split(".")[-2]]
    assert sh == [math.ceil(inn / 32), out], (k, sh)  # the 3-bit level keeps --group-size 32
    assert a[k][0] == [math.ceil(inn / 64), out], (k, a[k][0])  # the 4-bit level: its own 64
    n += 1
assert n == 7 * L, n
# stored bits per weight of each uniform level: b + (16 + b) per group of the level's size
tot = sum(o * i for o, i in shapes.values()) * L
def avg(bits, g): return sum(o * i * bits + o * math.ceil(i / g) * (16 + bits) for o, i in shapes.values()) * L / tot
u = json.load(open(f"{w}/s.json"))["uniform_avg_bits"]
print("uniform", u, "expected", avg(3, 32), avg(4, 64))
assert abs(u["3"] - avg(3, 32)) < 1e-9 and abs(u["4"] - avg(4, 64)) < 1e-9, u
print("ok: 4g64 equals a g64 run bit for bit; 3 keeps g32; search prices", u)
PY
# a killed run resumes to the same bytes (run.json keeps the levels' group sizes)
rc=0; SP_FAULT=kill:0:2 "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/r" "${Q[@]}" \
  --levels 3,4g64 --group-size 32 --checkpoint-dir "$WORK/ck" >/dev/null 2>&1 || rc=$?
[ "$rc" -ne 0 ] && [ -e "$WORK/ck/latest" ] || fail "expected a killed run with a checkpoint (rc $rc)"
[ "$(json_get "$WORK/ck/run.json" level_group_sizes)" = "[0, 64]" ] || fail "run.json lacks the group sizes"
mpi 2 "$SP_BIN" resume "$WORK/ck" >/dev/null || fail "resume failed"
cmp "$WORK/a/model.sp.h5" "$WORK/r/model.sp.h5" || fail "resume wrote other bytes"
# bad values: one line each, nothing written
for bad in "4g0:'4g0': the group size after 'g' must be >= 1, or -1 for one group per row" \
           "4gx:'4gx': the group size after 'g' must be >= 1, or -1 for one group per row" \
           "g64:'g64' is not BITS or BITSgGROUP \(e.g. 3 or 4g128\)" \
           "9g64:9 is outside 2..8" \
           "4g64,4g128:4g64 and 4g128 are both 4-bit levels \(one group size per bit width\)"; do
  expect_error "^shardpress: error: --levels: ${bad#*:}\$" \
    "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/bad" "${Q[@]}" --levels "${bad%%:*}"
  [ ! -e "$WORK/bad" ] || fail "a refused quantize left $WORK/bad"
done
expect_error "^shardpress: error: quantize: level 4g64: a level's own group size runs on the CPU only \(--device cpu\)\$" \
  "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/bad" "${Q[@]}" --levels 3,4g64 --device cuda
echo "ok"
