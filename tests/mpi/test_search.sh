#!/usr/bin/env bash
# shardpress search on the bundled model, one case per invocation:
#   ranks     the same MAP bytes on 1, 2 and 4 ranks (evolution and sensitivity), the JSON keys, the
#             EvoPress map, SVG and history files, and the budget
#   resume    SIGUSR1 -> checkpoint -> exit 3, and SIGKILL mid-run; `resume` finishes both with
#             the MAP of an uninterrupted run
#   bad       one line and a non-zero exit, no MAP left behind, for each bad input of issue 10
#   quality   the searched maps beat uniform 3-bit on held-out text (eval.txt, KL to the dense
#             model measured by eval, not by the search): --method sensitivity, and a short
#             evolution started from it; the sensitivity table and MAP are the same on 1 and 2
#             ranks, --sensitivity FILE reuses the table, several --target-bits in one run
. "$(dirname "$0")/lib.sh"
M="$SP_MODEL_DIR"; CAL="$SP_DATA_DIR/text/stories260K-samples/calib.txt"
Q="$WORK/q"
mpi 2 "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$Q" --nsamples 16 --ctx 128 \
  --levels 2,3,4,8 --group-size 32 >/dev/null
S=(--model "$Q" --calib "$CAL" --target-bits 3.0 --ctx 128 --generations 3 --offspring 6
   --stages 256,512 --survivors 2,1 --seed 5)

case "$1" in
  ranks)
    for n in 1 2 4; do
      # the default BLAS threads (variable unset): cores / ranks threads per rank
      env -u OPENBLAS_NUM_THREADS $SP_MPIEXEC -n $n "$SP_BIN" search "${S[@]}" --out "$WORK/map$n" --json >"$WORK/r$n.json" 2>"$WORK/p$n"
      mpi $n "$SP_BIN" search "${S[@]}" --method sensitivity --out "$WORK/greedy$n" >/dev/null
      # screening (9 children a generation, the surrogate's best 3 measured) under a layer-
      # evaluation budget: the budget ends the search at the same generation on every count
      mpi $n "$SP_BIN" search "${S[@]}" --offspring 3 --screen 3 --generations 50 --max-evals 1500 \
        --out "$WORK/scr$n" --json >"$WORK/scr$n.json" 2>/dev/null
    done
    for n in 2 4; do
      cmp "$WORK/map1" "$WORK/map$n" || fail "evolution MAP differs between 1 and $n ranks"
      cmp "$WORK/map1.evopress.txt" "$WORK/map$n.evopress.txt" || fail "EvoPress map differs ($n ranks)"
      cmp "$WORK/greedy1" "$WORK/greedy$n" || fail "sensitivity MAP differs between 1 and $n ranks"
      cmp "$WORK/scr1" "$WORK/scr$n" || fail "--screen/--max-evals MAP differs between 1 and $n ranks"
      cmp "$WORK/scr1.history.json" "$WORK/scr$n.history.json" || fail "--screen history differs ($n ranks)"
    done
    [ "$(grep -c '^gen ' "$WORK/p1")" -eq 3 ] || fail "expected 3 progress lines: $(cat "$WORK/p1")"
    python3 - "$WORK" <<'PY'
import json, re, sys
w = sys.argv[1]
r = json.load(open(f"{w}/r1.json")); r4 = json.load(open(f"{w}/r4.json"))
for k in ("target_bits", "avg_bits", "fitness_kl", "generations", "layer_evaluations",
          "layer_evaluations_saved", "seconds", "ranks", "uniform_avg_bits"):
    assert k in r, k
assert r["generations"] == 3 and r4["ranks"] == 4
assert r["fitness_kl"] == r4["fitness_kl"], (r["fitness_kl"], r4["fitness_kl"])
# (layer evaluations may differ: ranks that share a window each run its parent states)
assert 0 < r["layer_evaluations"] < r["layer_evaluations_full"], r
assert r["avg_bits"] <= 3.0 + 5e-7 and r["avg_bits"] > r["uniform_avg_bits"]["2"], r
# the map: every linear module once, bits among the stored levels; the EvoPress form agrees
lines = [l.split() for l in open(f"{w}/map1") if not l.startswith("#")]
assert len(lines) == 35 and all(b in ("2", "3", "4", "8") for _, b in lines), lines
evo = [l.strip().split(": ") for l in open(f"{w}/map1.evopress.txt")]
assert [[n, b] for n, b in lines] == evo
# stored bits recomputed from the shapes: codes + fp16 scale + b-bit zero per group of 32
shape = {"q_proj": (64, 64), "k_proj": (32, 64), "v_proj": (32, 64), "o_proj": (64, 64),
         "gate_proj": (172, 64), "up_proj": (172, 64), "down_proj": (64, 172)}
bits = tot = 0
for n, b in lines:
    rows, cols = shape[n.split(".")[-1]]; b = int(b); g = -(-cols // 32)
    bits += rows * cols * b + rows * g * (16 + b); tot += rows * cols
assert abs(bits / tot - r["avg_bits"]) < 1e-12, (bits / tot, r["avg_bits"])
h = json.load(open(f"{w}/map1.history.json"))
assert len(h["generations"]) == 3 and h["generations"][-1]["fitness_kl"] == r["fitness_kl"]
svg = open(f"{w}/map1.svg").read()
assert svg.startswith("<svg") and svg.count("<rect") >= 35
# --max-evals 1500 is never exceeded (table included), and the search stops only when one more
# generation's worst case (every candidate run from layer 0) could exceed it. Worst case of this
# schedule, from the settings: 5 layers x (3 children x 2 windows of 128 tokens + (2 survivors +
# the parent) x 4 windows) = 90 layer evaluations.
s = json.load(open(f"{w}/scr1.json")); hs = json.load(open(f"{w}/scr1.history.json"))["generations"]
tab = s["sensitivity"]["layer_evaluations"]; g = s["generations"]; total = tab + s["layer_evaluations"]
assert 0 < g < 50 and len(hs) == g, (g, len(hs))
assert all(0 < x["layer_evaluations"] <= 90 for x in hs), hs
assert total <= 1500 < total + 90, (tab, s["layer_evaluations"])
# the surrogate's prediction and rank correlation are recorded next to the measured KL
assert all(isinstance(x["predicted_kl"], float) and -1 <= x["surrogate_rho"] <= 1 for x in hs), hs
PY
    # plan --search: memory and time per generation for these settings
    "$SP_BIN" plan --model "$M" --search --ranks 2 --ctx 128 --generations 3 --offspring 6 \
      --stages 256,512 --survivors 2,1 --levels 2,3,4,8 --json >"$WORK/plan.json"
    python3 - "$WORK/plan.json" "$WORK/r1.json" "$M/model.safetensors" <<'PY'
import json, os, sys
p = json.load(open(sys.argv[1])); r = json.load(open(sys.argv[2]))
assert p["job"] == "search" and p["peak_rss_mb"] > p["memory_mb"]["reference"] > 0, p
# the sensitivity pass: plan's count is the search's, exactly; the dense model's pages are
# counted (every block + embedding, the bundled model's fp32 file less its header and norms)
assert p["layer_evaluations_sensitivity"] == r["sensitivity"]["layer_evaluations"], (p, r["sensitivity"])
assert abs(p["memory_mb"]["dense_mapped"] * 2**20 - os.path.getsize(sys.argv[3])) < 0.02 * os.path.getsize(sys.argv[3]), p
# the lazy reference: no more windows than drawn, and plan expects about as many
assert r["reference_windows"] <= r["pool_windows"], r
PY
    "$SP_BIN" plan --model "$M" --search --ranks 2 --ctx 128 --generations 3 --offspring 6 \
      --stages 256,512 --survivors 2,1 --json | python3 -c '
import json, sys; p = json.load(sys.stdin)
assert p["job"] == "search" and p["peak_rss_mb"] > p["memory_mb"]["reference"] > 0, p
assert p["seconds_per_generation"] > 0 and p["seconds"] > 3 * p["seconds_per_generation"], p
assert 0 < p["layer_evaluations_per_generation"] <= p["layer_evaluations_full_per_generation"] + 20, p'
    # the map is usable: eval reads it
    mpi 2 "$SP_BIN" eval --model "$Q" --text "$CAL" --ctx 128 --max-windows 4 --bits-map "$WORK/map1" >/dev/null \
      || fail "eval cannot read the searched map"
    echo ok ;;
  resume)
    mpi 2 "$SP_BIN" search "${S[@]}" --out "$WORK/ref" >/dev/null
    # SIGUSR1: checkpoint at the end of the generation, exit 3, resume on another rank count
    rc=0
    ( mpi 2 "$SP_BIN" search "${S[@]}" --out "$WORK/sig" --checkpoint-dir "$WORK/ck" >"$WORK/sig.out" 2>&1 ) &
    pid=$!
    for _ in $(seq 900); do grep -q '^gen ' "$WORK/sig.out" 2>/dev/null && break; sleep 0.2; done
    pkill -USR1 -f "shardpress search .*--checkpoint-dir $WORK/ck" || true
    wait $pid || rc=$?
    [ -e "$WORK/sig" ] && [ $rc -eq 0 ] && echo "note: the search finished before the signal"
    [ $rc -eq 0 ] || [ $rc -eq 3 ] || fail "expected exit 3 after SIGUSR1, got $rc: $(cat "$WORK/sig.out")"
    if [ $rc -eq 3 ]; then
      [ ! -e "$WORK/sig" ] || fail "an interrupted search left a MAP"
      grep -q "shardpress resume" "$WORK/sig.out" || fail "no resume hint: $(cat "$WORK/sig.out")"
      mpi 1 "$SP_BIN" resume "$WORK/ck" >/dev/null || fail "resume failed"
    fi
    cmp "$WORK/ref" "$WORK/sig" || fail "resumed MAP differs from the uninterrupted one"
    # SIGKILL in the middle: resume from the last generation's checkpoint
    ( mpi 2 "$SP_BIN" search "${S[@]}" --out "$WORK/kill" --checkpoint-dir "$WORK/ck2" >"$WORK/kill.out" 2>&1 ) &
    pid=$!
    for _ in $(seq 900); do [ -e "$WORK/ck2/latest" ] && break; sleep 0.2; done
    pkill -KILL -f "shardpress search .*--checkpoint-dir $WORK/ck2" || true
    wait $pid || true
    [ ! -e "$WORK/kill" ] || [ -e "$WORK/ck2/latest" ] || fail "neither finished nor checkpointed"
    mpi 2 "$SP_BIN" resume "$WORK/ck2" >/dev/null || fail "resume after SIGKILL failed"
    cmp "$WORK/ref" "$WORK/kill" || fail "MAP after SIGKILL + resume differs"
    # --max-evals across a resume: the table measured by the run (848 layer evaluations here)
    # still counts after it (the checkpoint's copy keeps its cost), so the resumed run stops at
    # the uninterrupted run's generation (3 of 8; with the table forgotten it ran all 8)
    B=(--generations 8 --max-evals 1208)
    mpi 2 "$SP_BIN" search "${S[@]}" "${B[@]}" --out "$WORK/refb" --json >"$WORK/refb.json" 2>/dev/null
    python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); assert 0 < r["generations"] < 8, r' \
      "$WORK/refb.json" || fail "--max-evals did not stop the reference run early"
    rc=0
    ( mpi 2 "$SP_BIN" search "${S[@]}" "${B[@]}" --out "$WORK/sigb" --checkpoint-dir "$WORK/ck3" >"$WORK/sigb.out" 2>&1 ) &
    pid=$!
    for _ in $(seq 900); do grep -q '^gen ' "$WORK/sigb.out" 2>/dev/null && break; sleep 0.2; done
    pkill -USR1 -f "shardpress search .*--checkpoint-dir $WORK/ck3" || true
    wait $pid || rc=$?
    [ $rc -eq 0 ] && echo "note: the --max-evals search finished before the signal"
    [ $rc -eq 0 ] || [ $rc -eq 3 ] || fail "expected exit 3 after SIGUSR1, got $rc: $(cat "$WORK/sigb.out")"
    [ $rc -eq 0 ] || mpi 2 "$SP_BIN" resume "$WORK/ck3" >/dev/null || fail "resume (--max-evals) failed"
    cmp "$WORK/refb" "$WORK/sigb" || fail "--max-evals: resumed MAP differs from the uninterrupted one"
    cmp "$WORK/refb.history.json" "$WORK/sigb.history.json" || fail "--max-evals: resumed history differs"
    echo ok ;;
  bad)
    mpi 1 "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/q1" --nsamples 2 --ctx 64 \
      --levels 4 >/dev/null
    expect_error "holds one level \(4 bits\); search needs a quantize run with several --levels" \
      "$SP_BIN" search "${S[@]}" --model "$WORK/q1" --out "$WORK/m1"
    expect_error "search: --target-bits 2.000000 is outside what the stored levels allow: 2.578390 \(uniform 2-bit\) to 8.771186 \(uniform 8-bit\)" \
      "$SP_BIN" search "${S[@]}" --target-bits 2 --out "$WORK/m2"
    expect_error "search: --target-bits 9.000000 is outside" "$SP_BIN" search "${S[@]}" --target-bits 9 --out "$WORK/m3"
    head -c 2000 "$CAL" >"$WORK/short.txt"
    expect_error "short.txt: the calibration text makes [0-9]+ windows of 128 tokens \([0-9]+ tokens\), shorter than the first stage of 4096 tokens" \
      "$SP_BIN" search "${S[@]}" --calib "$WORK/short.txt" --stages 4096,8192 --out "$WORK/m4"
    # a dense model that is not the container's: same shapes, other weights -> fingerprint
    cp -r "$M" "$WORK/other"; python3 - "$WORK/other/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p)); c["rms_norm_eps"] = 1e-6; json.dump(c, open(p, "w"))
PY
    expect_error "other: fingerprint 0x[0-9a-f]{8}, but .*source.json says the container was made from a model with 0x[0-9a-f]{8}: not the same dense model" \
      "$SP_BIN" search "${S[@]}" --dense "$WORK/other" --out "$WORK/m5"
    # the same layout with every weight scaled by 0.5-1.5 (issue 21: the layout fingerprint
    # passed it): the CRCs of the values that quantize recorded in source.json refuse it
    cp -r "$M" "$WORK/scaled"; python3 - "$WORK/scaled/model.safetensors" <<'PY'
import array, json, random, struct, sys
p = sys.argv[1]; raw = bytearray(open(p, "rb").read()); n = struct.unpack("<Q", raw[:8])[0]
a = array.array("f"); a.frombytes(bytes(raw[8 + n:])); r = random.Random(3)
a = array.array("f", (x * r.uniform(0.5, 1.5) for x in a)); raw[8 + n:] = a.tobytes()
open(p, "wb").write(raw)
PY
    expect_error "scaled: tensor 'model\.embed_tokens\.weight' differs from the model .*/q was made from \(source\.json\) \(CRC-32 0x[0-9a-f]{8}, expected 0x[0-9a-f]{8}\)" \
      "$SP_BIN" search "${S[@]}" --dense "$WORK/scaled" --out "$WORK/m10"
    # ... and one of other shapes
    "$SP_SYNTH" --out "$WORK/synth" --hidden 64 --intermediate 128 --layers 5 --heads 8 \
      --kv-heads 4 --vocab 512 --dtype f32 --max-pos 512 >/dev/null
    expect_error "synth: does not match .*: config.json field hidden_dim is 128 in the dense model, 172 in the container" \
      "$SP_BIN" search "${S[@]}" --dense "$WORK/synth" --out "$WORK/m6"
    mv "$Q/source.json" "$WORK/source.json"
    expect_error "no source.json naming the dense model; pass --dense DIR" "$SP_BIN" search "${S[@]}" --out "$WORK/m7"
    mv "$WORK/source.json" "$Q/source.json"
    expect_error "search: --survivors has 1 values for 2 --stages" "$SP_BIN" search "${S[@]}" --survivors 1 --out "$WORK/m8"
    expect_error "search: --method greedy was removed \(it never beat uniform\); --method sensitivity is the cheap method" \
      "$SP_BIN" search "${S[@]}" --method greedy --out "$WORK/m1"
    expect_error "search: --target-bits: 'u9' is outside the stored levels \(2 to 8 bits\)" \
      "$SP_BIN" search "${S[@]}" --target-bits u3,u9 --out "$WORK/m2"
    expect_error "search: --target-bits: 'x' is not a number of bits \(or uX\)" \
      "$SP_BIN" search "${S[@]}" --target-bits u3,x --out "$WORK/m2"
    expect_error "search: --checkpoint-dir takes one --target-bits \(2 given\)" \
      "$SP_BIN" search "${S[@]}" --target-bits u3,u4 --checkpoint-dir "$WORK/ckb" --out "$WORK/m3"
    # --sensitivity FILE: a table of another container is refused, naming the file and field
    mpi 1 "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/q2" --nsamples 4 --ctx 64 \
      --levels 2,3,4,8 --group-size 64 --method rtn >/dev/null
    mpi 1 "$SP_BIN" search "${S[@]}" --model "$WORK/q2" --method sensitivity --out "$WORK/t2" >/dev/null
    expect_error "t2.sensitivity.json: field 'container_bytes' does not match .*/q/model.sp.h5: measured on another quantization" \
      "$SP_BIN" search "${S[@]}" --sensitivity "$WORK/t2.sensitivity.json" --out "$WORK/m4"
    echo '{"format": "shardpress-sensitivity", "levels": [2, 3, 4]}' >"$WORK/bad.json"
    expect_error "bad.json: field 'levels' differs from the container's levels" \
      "$SP_BIN" search "${S[@]}" --sensitivity "$WORK/bad.json" --out "$WORK/m5"
    # errors on 2 ranks end both with one line
    rc=0; timeout 120 $SP_MPIEXEC -n 2 "$SP_BIN" search "${S[@]}" --target-bits 9 --out "$WORK/m9" 2>"$WORK/err" || rc=$?
    [ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "2 ranks: expected a clean failure, rc=$rc"
    [ "$(grep -c 'shardpress: error' "$WORK/err")" -eq 1 ] || fail "2 ranks: $(cat "$WORK/err")"
    for i in 1 2 3 4 5 6 7 8 9 10; do
      ls "$WORK"/m$i* >/dev/null 2>&1 && fail "a failed search left $WORK/m$i*"
    done
    echo ok ;;
  quality)
    E="$SP_DATA_DIR/text/stories260K-samples/eval.txt"
    mpi 2 "$SP_BIN" eval --model "$M" --text "$E" --ctx 128 --max-windows 40 --save-logits "$WORK/dense" >/dev/null
    kl() { mpi 2 "$SP_BIN" eval --model "$Q" --text "$E" --ctx 128 --max-windows 40 --kl-base "$WORK/dense" --json "$@" |
           sed -n 's/.*"kl":\([-0-9.e+]*\).*/\1/p'; }
    Q3=(--model "$Q" --calib "$CAL" --target-bits u3 --ctx 128 --stages 256,512 --survivors 2,1 --seed 5)
    for n in 1 2; do
      mpi $n "$SP_BIN" search "${Q3[@]}" --method sensitivity --out "$WORK/sens$n" --json >"$WORK/sens$n.json"
    done
    cmp "$WORK/sens1" "$WORK/sens2" || fail "sensitivity MAP differs between 1 and 2 ranks"
    python3 - "$WORK" <<'PY' || fail "sensitivity table"
import json, sys
w = sys.argv[1]
a = json.load(open(f"{w}/sens1.sensitivity.json")); b = json.load(open(f"{w}/sens2.sensitivity.json"))
assert a["table"] == b["table"], "table differs between 1 and 2 ranks"
assert a["format"] == "shardpress-sensitivity" and len(a["table"]) == 35 and a["levels"] == [2, 3, 4, 8]
assert all(r[0] > r[3] > 0 for r in a["table"]), a["table"]       # 2-bit hurts more than 8-bit
r = json.load(open(f"{w}/sens1.json"))
assert r["method"] == "sensitivity" and r["sensitivity"]["measured"] and r["sensitivity"]["exact_allocation"]
# only layer(m) onward runs: per window, 4 levels x sum over modules of (5 - layer), + the dense pass
assert r["sensitivity"]["layer_evaluations"] == r["sensitivity"]["windows"] * (4 * 7 * (5 + 4 + 3 + 2 + 1) + 4), r
assert abs(r["avg_bits"] - r["uniform_avg_bits"]["3"]) < 1e-6 or r["avg_bits"] < r["uniform_avg_bits"]["3"]
PY
    ku=$(kl --level 3); ks=$(kl --bits-map "$WORK/sens1")
    python3 -c "import sys; sys.exit(0 if $ks < $ku else 1)" || fail "sensitivity map's held-out KL $ks is not below uniform 3-bit's $ku"
    # a short evolution from the table (--init sensitivity): still below uniform, and no worse
    # than 1.1x the map it started from (inverted selection ends far above both)
    mpi 2 "$SP_BIN" search "${Q3[@]}" --stages 256,1024 --generations 6 --offspring 8 --init sensitivity \
      --sensitivity "$WORK/sens1.sensitivity.json" --out "$WORK/evo" >/dev/null
    ke=$(kl --bits-map "$WORK/evo")
    python3 -c "import sys; sys.exit(0 if $ke < $ku and $ke < 1.1 * $ks else 1)" ||
      fail "evolution's held-out KL $ke: not below uniform 3-bit $ku / 1.1 x sensitivity $ks"
    # several budgets from one table: the u3 map is the single-target map, byte for byte
    mpi 2 "$SP_BIN" search "${Q3[@]}" --target-bits u2.5,u3,u3.5 --method sensitivity \
      --sensitivity "$WORK/sens1.sensitivity.json" --out "$WORK/multi" --json >"$WORK/multi.json"
    cmp "$WORK/sens1" "$WORK/multi.u3" || fail "--target-bits u2.5,u3,u3.5: the u3 map differs"
    [ ! -e "$WORK/multi" ] && [ ! -e "$WORK/multi.sensitivity.json" ] || fail "multi: unexpected files"
    python3 - "$WORK/multi.json" "$WORK/sens1.json" <<'PY' || fail "multi targets"
import json, sys
r = json.load(open(sys.argv[1])); s = json.load(open(sys.argv[2]))
t = r["targets"]; u = s["uniform_avg_bits"]
assert [x["out"].split("/multi.")[-1] for x in t] == ["u2.5", "u3", "u3.5"], t
assert abs(t[0]["target_bits"] - round((u["2"] + u["3"]) / 2, 6)) < 1e-9, t
assert abs(t[2]["target_bits"] - round((u["3"] + u["4"]) / 2, 6)) < 1e-9, t
assert t[0]["fitness_kl"] > t[1]["fitness_kl"] > t[2]["fitness_kl"], t
assert all(x["avg_bits"] <= x["target_bits"] + 5e-7 for x in t), t
assert not r["sensitivity"]["measured"]
PY
    echo ok ;;
  *) fail "unknown case $1" ;;
esac
