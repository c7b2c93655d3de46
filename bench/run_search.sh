#!/usr/bin/env bash
# bench/run_search.sh [GENERATIONS] — the search on the bundled model, all in one run:
#   KL on held-out text (eval.txt) of the searched map vs uniform levels and --method greedy at
#   2.5 / 3.0 / 3.5 bits (code bits plus overhead: uniform-level averages interpolated), layer
#   evaluations per generation with the prefix cache and without (full re-runs), seconds per
#   generation on 1 and 2 ranks, and plan --search's prediction of the latter;
#   then plan --search against a measured search on a synthetic 7B-shaped model with two layers
#   (seconds per generation and peak RSS per rank), and plan's estimate for a 70B model.
# Writes the "Search" section of docs/benchmarks.md. SP_BENCH_NO_7B=1 skips the 7B-shaped part
# (a few minutes and 6 GiB on 2 idle cores).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$ROOT/.ci/env.sh"
G=${1:-100}
SP="$BUILD/shardpress"; M="$ROOT/models/stories260K"; D="$ROOT/../shared/data/text/stories260K-samples"
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
S=(--ctx 256 --offspring 16 --stages 512,2048,8192 --survivors 4,2,1)
num() { sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p" "$2"; }
mpirun -n 2 "$SP" quantize --model "$M" --calib "$D/calib.txt" --out "$W/q" --levels 2,3,4,5,6,8 --group-size 32 >/dev/null
mpirun -n 2 "$SP" eval --model "$M" --text "$D/eval.txt" --ctx 256 --save-logits "$W/dense" >/dev/null
kl() { mpirun -n 2 "$SP" eval --model "$W/q" --text "$D/eval.txt" --ctx 256 --kl-base "$W/dense" --json "$@" | sed -n 's/.*"kl":\([-0-9.e+]*\).*/\1/p'; }
mpirun -n 1 "$SP" search --model "$W/q" --calib "$D/calib.txt" --target-bits 8 --method greedy --out "$W/p" --ctx 256 --stages 256 --survivors 1 --json >"$W/u.json"
u() { num "$1" "$W/u.json"; }
rows=""
for x in 2.5 3.0 3.5; do
  lo=${x%.*}; hi=$((lo + 1)); f=${x#*.}
  t=$(python3 -c "print('%.6f' % ($(u $lo) + 0.$f * ($(u $hi) - $(u $lo))))")
  mpirun -n 2 "$SP" search --model "$W/q" --calib "$D/calib.txt" --target-bits "$t" --out "$W/e$x" "${S[@]}" --generations "$G" --json >"$W/e$x.json" 2>/dev/null
  mpirun -n 2 "$SP" search --model "$W/q" --calib "$D/calib.txt" --target-bits "$t" --out "$W/g$x" "${S[@]}" --method greedy --json >/dev/null
  ke=$(kl --bits-map "$W/e$x"); kg=$(kl --bits-map "$W/g$x"); klo=$(kl --level $lo); khi=$(kl --level $hi)
  le=$(num layer_evaluations "$W/e$x.json"); lf=$(num layer_evaluations_full "$W/e$x.json")
  rows+="| $x | $t | $(printf %.5f $klo) / $(printf %.5f $khi) | $(printf %.5f $kg) | $(printf %.5f $ke) | $(python3 -c "print('%.2f' % ($ke / $klo if '$f' == '0' else $ke / $kg))") | $(python3 -c "print(round($le / $G), round($lf / $G), '%.2fx' % ($lf / $le))") |
"
done
t3=$(printf %.6f "$(u 3)")
# The same 3-bit budget with --groups none (raise one module, lower others until it fits): freer
# moves than EvoPress's equal-size level switch, at the price of a budget that holds only to <=.
mpirun -n 2 "$SP" search --model "$W/q" --calib "$D/calib.txt" --target-bits "$t3" --out "$W/n3" "${S[@]}" --generations "$G" --groups none --json >"$W/n3.json" 2>/dev/null
kn=$(kl --bits-map "$W/n3"); k3=$(kl --level 3)
none_row="With \`--groups none\` at the 3-bit budget ($G generations): KL $(printf %.5f $kn), $(python3 -c "print('%.2f' % ($kn / $k3))")× uniform 3-bit; avg bits $(num avg_bits "$W/n3.json") of $t3."
for n in 1 2; do
  mpirun -n $n "$SP" search --model "$W/q" --calib "$D/calib.txt" --target-bits "$t3" --out "$W/t$n" "${S[@]}" --generations 10 --json >"$W/t$n.json" 2>/dev/null
done
pool=$(num pool_windows "$W/t1.json")
"$SP" plan --model "$M" --search --ranks 2 "${S[@]}" --generations 10 --pool-windows "$pool" --calibrate --calibrate-dir "$W" --save-rates "$W/plan.rates" --json >"$W/plan.json"
sec() { python3 -c "print('%.2f' % ($(num seconds "$1") / 10))"; }

# --- plan --search against a measured search: 7B-shaped layers (D 4096, F 11008, 32 heads) ---
big=""
if [ "${SP_BENCH_NO_7B:-0}" != 1 ]; then
  "$BUILD/sp_synth_model" --out "$W/s7" --hidden 4096 --intermediate 11008 --layers 2 --heads 32 \
    --kv-heads 32 --vocab 512 --max-pos 2048 --seed 11 >/dev/null
  mpirun -n 2 "$SP" quantize --model "$W/s7" --calib "$D/calib.txt" --out "$W/q7" --levels 2,3,4 \
    --group-size 128 --nsamples 2 --ctx 256 --scale-search minmax >/dev/null
  S7=(--ctx 256 --generations 3 --offspring 6 --stages 512,1024 --survivors 2,1)
  # A short calibration text (about 20 windows): the dense reference covers the whole pool,
  # which at 7B shapes costs about 2 s per window on this machine.
  head -c 20000 "$D/calib.txt" >"$W/calib7.txt"
  t7=$(mpirun -n 1 "$SP" search --model "$W/q7" --calib "$W/calib7.txt" --target-bits 8 --method greedy \
       --out "$W/p7" --ctx 256 --stages 256 --survivors 1 --json | sed -n 's/.*"uniform_avg_bits":{[^}]*"3":\([0-9.e+]*\).*/\1/p')
  mpirun -n 2 "$SP" search --model "$W/q7" --calib "$W/calib7.txt" --target-bits "$t7" --out "$W/m7" "${S7[@]}" --json >"$W/m7.json" 2>/dev/null
  "$SP" plan --model "$W/s7" --search --ranks 2 "${S7[@]}" --levels 2,3,4 --pool-windows "$(num pool_windows "$W/m7.json")" --calibrate --calibrate-dir "$W" --json >"$W/plan7.json"
  big=$(python3 - "$W" <<'PY'
import json, sys
w = sys.argv[1]
p = json.load(open(f"{w}/plan7.json")); m = json.load(open(f"{w}/m7.json"))
le = m["layer_evaluations"] / m["generations"]
print(f"| seconds, whole search (dense reference + 3 generations) | {p['seconds']:.1f} | {m['seconds']:.1f} | {p['seconds'] / m['seconds']:.2f} |")
print(f"| peak RSS per rank, MiB (largest rank) | {p['peak_rss_mb']:.0f} | {m['peak_rss_mb_max']:.0f} | {p['peak_rss_mb'] / m['peak_rss_mb_max']:.2f} |")
print(f"| layer evaluations per generation | {p['layer_evaluations_per_generation']:.1f} | {le:.1f} | {p['layer_evaluations_per_generation'] / le:.2f} |")
PY
)
fi

# --- plan's estimate for Llama-2-70B (sparse files: real safetensors headers, no data) ---
python3 - "$W/l70" <<'PY'
import json, os, struct, sys
d = sys.argv[1]; os.makedirs(d)
D, F, KV, V, L = 8192, 28672, 1024, 32000, 80
json.dump({"architectures": ["LlamaForCausalLM"], "hidden_size": D, "intermediate_size": F,
           "num_hidden_layers": L, "num_attention_heads": 64, "num_key_value_heads": 8,
           "vocab_size": V, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
           "tie_word_embeddings": False, "torch_dtype": "bfloat16"}, open(f"{d}/config.json", "w"))
t = [("model.embed_tokens.weight", [V, D])]
for l in range(L):
    for n, sh in (("input_layernorm", [D]), ("self_attn.q_proj", [D, D]), ("self_attn.k_proj", [KV, D]),
                  ("self_attn.v_proj", [KV, D]), ("self_attn.o_proj", [D, D]),
                  ("post_attention_layernorm", [D]), ("mlp.gate_proj", [F, D]),
                  ("mlp.up_proj", [F, D]), ("mlp.down_proj", [D, F])):
        t.append((f"model.layers.{l}.{n}.weight", sh))
t += [("model.norm.weight", [D]), ("lm_head.weight", [V, D])]
hdr, off = {}, 0
for n, sh in t:
    b = 2 * sh[0] * (sh[1] if len(sh) > 1 else 1)
    hdr[n] = {"dtype": "BF16", "shape": sh, "data_offsets": [off, off + b]}; off += b
h = json.dumps(hdr).encode(); h += b" " * (-len(h) % 8)
with open(f"{d}/model.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h))); f.write(h); f.truncate(8 + len(h) + off)
PY
"$SP" plan --model "$W/l70" --search --ranks 16 --levels 2,3,4,5,6,8 --rates "$W/plan.rates" --json >"$W/plan70.json" 2>/dev/null ||
  "$SP" plan --model "$W/l70" --search --ranks 16 --levels 2,3,4,5,6,8 --json >"$W/plan70.json"
est70=$(python3 - "$W/plan70.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1])); m = p["memory_mb"]
print(f"peak {p['peak_rss_mb'] / 1024:.1f} GiB per rank (dense reference {m['reference'] / 1024:.1f} GiB, "
      f"window states {m['states'] / 1024:.1f} GiB, blocks {m['blocks'] / 1024:.2f} GiB); "
      f"{p['seconds_per_generation']:.0f} s per generation, {p['seconds'] / 3600:.1f} h for the default "
      f"150 generations; {p['layer_evaluations_per_generation']:.0f} of "
      f"{p['layer_evaluations_full_per_generation']:.0f} layer evaluations per generation with the cache")
PY
)
sp_bench_write_section "$DOC" "## Search" "## Search

\`bench/run_search.sh $G\` ($(date -u +%F), $(nproc) cores, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}): bundled
model, GPTQ levels 2,3,4,5,6,8 g32 from calib.txt, search on calib.txt (ctx 256, 16 offspring,
stages 512/2048/8192 tokens, survivors 4/2/1, $G generations, --groups size), KL(dense ‖ model)
on eval.txt (held out). Budget x = stored bits interpolated between uniform levels.

| x | target | KL uniform floor(x) / ceil(x) | KL greedy | KL evolution | evo / uniform (x.0) or / greedy (x.5) | layer evals per gen: cache, full, ratio |
|---|---|---|---|---|---|---|
${rows}
${none_row}

Seconds per generation (10 generations at the uniform 3-bit budget): 1 rank $(sec "$W/t1.json"),
2 ranks $(sec "$W/t2.json"); plan --search predicts $(python3 -c "print('%.2f' % $(num seconds_per_generation "$W/plan.json"))") s on 2 ranks (calibrated rates).
Load average when the run ended: $(cut -d' ' -f1-3 /proc/loadavg).
${big:+
plan --search against a measured search on a synthetic 7B-shaped model (sp_synth_model: D 4096,
F 11008, 32 heads, 2 layers, vocabulary 512), levels 2,3,4 g128 (minmax scales) from 2 windows
of 256 tokens, search on the first 20,000 bytes of calib.txt, 2 ranks, \`--ctx 256 --generations 3 --offspring 6 --stages 512,1024 --survivors 2,1\` at the
uniform 3-bit budget; plan calibrated its rates right after:

| 7B-shaped, 2 ranks | plan --search | measured | plan / measured |
|---|---|---|---|
$big
}
Estimate for Llama-2-70B (80 layers, 16 ranks, levels 2,3,4,5,6,8, search defaults: ctx 2048,
128 offspring, stages 2048/16384/131072, survivors 16/4/1; rates of this machine, one rank):
$est70."
echo "wrote the Search section of $DOC"
