#!/usr/bin/env bash
# Benchmark (issue 11): shardpress's GPTQ-in-type GGUF files against llama.cpp's own
# llama-quantize at the same types, without an imatrix, with llama-imatrix's, and with the one
# `quantize --imatrix-out` writes. Written to the "## GGUF" section of docs/benchmarks.md.
#
# Every file is evaluated by the same evaluator: llama.cpp's forward pass (tests/gguf/
# llama_client.c, fp32 KV cache) on held-out windows of eval.txt, KL_K against the dense model's
# top-64 reference from `shardpress eval --save-logits` (the KL of "KL divergence" in
# docs/architecture.md). Tensor types are equal in every file of a row: the linear weights at the
# type, token_embd and an untied output F32, and rows the type's block does not divide (stories260K's ffn_down) F32,
# so the bits per weight are equal.
# Models: the bundled stories260K, and a synthetic one (random weights at a small Llama shape,
# rows of 256/768, the stories260K tokenizer; see bench/run_quality.sh for why).
# Usage: bench/run_gguf.sh [build dir]. Needs npm (llama.cpp is fetched as the tests do).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
B=${1:-$BUILD}
. .ci/env.sh
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
[ -x "$B/shardpress" ] && [ -x "$B/sp_synth_model" ] || { cmake -S . -B "$B" >/dev/null; cmake --build "$B" -j2 >/dev/null; }
fail() { echo "FAIL: $*" >&2; exit 1; }
CACHE=$B/npm-cache SP_SOURCE_DIR=$ROOT
. tests/gguf/llama_env.sh
LQ=$(llama_env_tool quantize); LI=$(llama_env_tool imatrix)
W=$B/gguf-bench
mkdir -p "$W"
CAL=../shared/data/text/stories260K-samples/calib.txt
EVAL=../shared/data/text/stories260K-samples/eval.txt
NS=64 CTX=128 EW=32   # calibration windows x ctx (both imatrices and GPTQ); eval windows of CTX
SYN=$W/synth
[ -f "$SYN/config.json" ] || "$B/sp_synth_model" --out "$SYN" --hidden 256 --intermediate 768 \
  --layers 4 --heads 4 --kv-heads 2 --vocab 512 --max-pos 512 --dtype f32 --seed 7 >/dev/null
ll() { "$CLIENT" "$BINS" "$@"; }

# kl_of REF LP: KL_K(dense || file) and ppl from llama.cpp's log-probabilities LP
kl_of() {
  python3 - "$1" "$2" <<'PY'
import array, math, struct, sys
b = open(sys.argv[1], 'rb').read()
_, K, ctx, nw, V, rb = struct.unpack('<6I', b[8:32]); n = struct.unpack('<Q', b[40:48])[0]
a = array.array('f'); a.frombytes(open(sys.argv[2], 'rb').read())
kl = 0.0
for r in range(n):
    o = 64 + r * rb
    lp = struct.unpack(f'<{K}f', b[o:o + 4 * K]); ids = struct.unpack(f'<{K}i', b[o + 4 * K:o + 8 * K])
    rest = struct.unpack('<f', b[o + 8 * K:o + 8 * K + 4])[0]
    row = a[r * V:(r + 1) * V]
    s = 0.0; mq = 0.0
    for i in range(K):
        p = math.exp(lp[i]); s += p * (lp[i] - row[ids[i]]); mq += math.exp(row[ids[i]])
    if rest > -math.inf:
        rq = max(1.0 - mq, 1e-30); s += math.exp(rest) * (rest - math.log(rq))
    kl += s
print(f"{kl / n:.6f}")
PY
}

rows=""
for model in models/stories260K "$SYN"; do
  tag=$(basename "$model")
  "$B/shardpress" eval --model "$model" --text $EVAL --ctx $CTX --max-windows $EW --save-logits "$W/$tag.ref" >/dev/null
  "$B/shardpress" tokenize --model "$model" --file $EVAL | tr ' ' '\n' | grep -v '^$' >"$W/$tag.ids"
  "$B/shardpress" export --model "$model" --format gguf --out "$W/$tag-f32.gguf" --force >/dev/null
  (cd "$BINS" && "$LI" -m "$W/$tag-f32.gguf" -f "$ROOT/$CAL" -o "$W/$tag-llama.imatrix.gguf" -c $CTX \
     --chunks $NS -t 1 >"$W/$tag-imatrix.log" 2>&1) || fail "llama-imatrix failed ($W/$tag-imatrix.log)"
  # ffn_down rows of 172 (stories260K) fit no block: F32 in every file
  extra=(); [ "$tag" = stories260K ] && extra=(--tensor-type ffn_down=f32)
  # K-quants need rows of 256: the synthetic model only (stories260K's rows are 64 wide)
  types="Q4_0 Q4_1 Q5_0 Q5_1 Q8_0"; [ "$tag" = stories260K ] || types="$types Q2_K Q3_K Q4_K Q5_K Q6_K"
  for t in $types; do
    res=()
    # Q4_0/Q5_0/Q8_0 are plain levels with a choice of scale search; the other types are levels
    # of their own (issue 11), whose block parameters have one search (sp_gtype_block_params)
    sss="hmse gguf"; case $t in Q4_0|Q5_0|Q8_0) ;; *) sss="gguf"; res+=("n/a") ;; esac
    for ss in $sss; do
      "$B/shardpress" quantize --model "$model" --calib $CAL --out "$W/$tag-$t-$ss" --format gguf:$t \
        --scale-search $ss --nsamples $NS --ctx $CTX --imatrix-out "$W/$tag-sp.imatrix.gguf" --force >/dev/null
      "$B/shardpress" export --model "$W/$tag-$t-$ss" --format gguf --embed-type F32 --output-type F32 --out "$W/$tag-$t-$ss.gguf" --force >/dev/null
      ll logprobs "$W/$tag-$t-$ss.gguf" "$W/$tag.ids" $CTX $EW "$W/lp" >/dev/null
      res+=("$(kl_of "$W/$tag.ref" "$W/lp")")
    done
    for im in none llama sp; do
      args=(); [ $im != none ] && args=(--imatrix "$W/$tag-$im.imatrix.gguf")
      "$LQ" "${args[@]}" --pure --token-embedding-type f32 --output-tensor-type f32 "${extra[@]}" "$W/$tag-f32.gguf" "$W/$tag-$t-lq-$im.gguf" $t >"$W/lq.log" 2>&1 ||
        fail "llama-quantize $t $im failed ($W/lq.log)"
      ll logprobs "$W/$tag-$t-lq-$im.gguf" "$W/$tag.ids" $CTX $EW "$W/lp" >/dev/null
      res+=("$(kl_of "$W/$tag.ref" "$W/lp")")
    done
    ratio=$(python3 -c "import sys; print(f'{float(sys.argv[1])/float(sys.argv[2]):.2f}')" "${res[1]}" "${res[3]}")
    rows+="| $tag | $t | ${res[0]} | ${res[1]} | ${res[2]} | ${res[3]} | ${res[4]} | $ratio |"$'\n'
  done
done

text="## GGUF

\`bench/run_gguf.sh\` ($(date -u +%Y-%m-%d), $(uname -m), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)).
KL_K (top-64 + rest, nats per position) of each GGUF file against the dense model, all through
llama.cpp's own forward pass (node-llama-cpp 3.22.1 prebuilt CPU libraries), on $EW held-out
windows of $CTX tokens of eval.txt. Calibration: $NS windows of $CTX tokens of calib.txt for
shardpress's GPTQ and both imatrices. Same tensor types in every file of a row (linear weights
at the type — llama-quantize with \`--pure\`, so no K-quant mixes —, token_embd and the
synthetic model's untied output F32, stories260K's 172-wide ffn_down F32), so equal bits per
weight. K-quants only on the synthetic model (they need rows of 256; stories260K's are 64).
Columns: shardpress \`quantize --format gguf:TYPE\` (act-order) with \`--scale-search hmse\`
(min-max grid, diag(H)-weighted shrink) and with its default \`gguf\` (ggml's own scale rule,
the same weighted shrink; for Q4_1, Q5_1 and the K-quants the type's own level, whose block
parameters come from the diag(H)-weighted search of \`sp_gtype_block_params\`, fixed per
256-column super-block when GPTQ reaches it) exported with \`export --format gguf\`; llama.cpp's
\`llama-quantize\` without an imatrix, with \`llama-imatrix\`'s, and with shardpress's
\`--imatrix-out\`. Ratio: shardpress (default) / llama-quantize with llama-imatrix's imatrix (the
issue's goal: at most 0.75). The synthetic model has random weights: its figures test the
pipeline, not the method.

| model | type | shardpress GPTQ, --scale-search hmse | shardpress GPTQ, default (gguf) | llama-quantize | + llama-imatrix | + shardpress imatrix | ratio |
|---|---|---|---|---|---|---|---|
${rows}"
sp_bench_write_section "$DOC" "## GGUF" "$text"
echo "$text"
