#!/usr/bin/env bash
# Benchmark (issue 20): shardpress's searched GGUF mixes against llama.cpp's own mixes at the
# same file size. Written to the "## GGUF mixes" section of docs/benchmarks.md.
#
# For each llama.cpp mix (Q2_K, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_M, Q6_K), made by
# llama-quantize with llama-imatrix's imatrix from the same calibration text as ours:
#   ours = shardpress search --match-gguf THAT_FILE (the budget: its block linears' bytes) over
#          one quantize run with GGUF-type levels, exported with export --match-gguf THAT_FILE
#          (token_embd/output at its types), so our file is no bigger than llama.cpp's; with
#          --dense-from the model, modules no GGUF block fits (stories260K's 172-wide ffn_down,
#          F16 on both sides) hold the original weights, as llama.cpp's do, not GPTQ's.
# Both files go through llama.cpp's own forward (tests/gguf/llama_client.c, the prebuilt CPU
# libraries of node-llama-cpp 3.22.1): log-probabilities of EW held-out windows of CTX tokens,
# KL(F32 file ‖ quantized file) over the whole vocabulary per position (the F32 file's forward
# through llama.cpp is the reference), and perplexity. Times: llama-imatrix once + llama-quantize
# per mix, against our quantize once + search (+ export) per mix.
# Models: wiki-kjv-6M (K-quant shapes) and stories260K (64-wide rows: legacy types only).
# The low-bit types (issue 20 part 4): llama-quantize's whole-file Q2_0 and Q1_0 (and Q2_K again)
# against our search --match-gguf over a second quantize run whose levels include Q1_0 and Q2_0
# (LOWLEVELS), in the section "## GGUF mixes: Q2_0 and Q1_0".
# Usage: bench/run_gguf_mix.sh [build dir]   (SP_MIX_MODELS="wiki-kjv-6M" to run one model;
# SP_MIX_REUSE=1 keeps a previous run's quantize output and sensitivity table, and their times;
# SP_MIX_LOWBIT=0 leaves out the low-bit rows, SP_MIX_LOWBIT=only runs only them)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
B=${1:-$BUILD}
. .ci/env.sh
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
[ -x "$B/shardpress" ] || { cmake -S . -B "$B" >/dev/null; cmake --build "$B" -j2 >/dev/null; }
fail() { echo "FAIL: $*" >&2; exit 1; }
CACHE=$(cd "$B" && pwd)/npm-cache SP_SOURCE_DIR=$ROOT
. tests/gguf/llama_env.sh
LQ=$(llama_env_tool quantize); LI=$(llama_env_tool imatrix)
W=$(cd "$B" && pwd)/gguf-mix-bench
mkdir -p "$W"
ll() { "$CLIENT" "$BINS" "$@"; }
MIXES="Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_M Q6_K"
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.1f}')" "$1" "$(now)"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1])/float(sys.argv[2]):.2f}')" "$1" "$2"; }

# prepare NAME LEVELS BITS: our one quantize run ($W/NAME-q) and its sensitivity table, kept for a
# rerun (SP_MIX_REUSE=1); sets t_q and t_tab. BITS: the level activations are propagated through
# (the lowest level of the main runs, as before; 2 = Q2_0 in the low-bit runs rather than the
# Q1_0 level, which --levels would default to as its first).
prepare() {
  local name=$1 levels=$2 bits=$3 t0
  if [ "${SP_MIX_REUSE:-0}" = 1 ] && [ -f "$W/$name-once.txt" ] && [ -f "$W/$name-table.map.sensitivity.json" ]; then
    read -r t_q t_tab <"$W/$name-once.txt"
    return
  fi
  t0=$(now)
  "$B/shardpress" quantize --model "$model" --calib "$CAL" --out "$W/$name-q" --levels $levels \
    --bits $bits --nsamples $NS --ctx $CTX --force >/dev/null 2>"$W/$name-quantize.log"
  t_q=$(since "$t0")
  t0=$(now)
  "$B/shardpress" search --model "$W/$name-q" --calib "$CAL" --target-bits u4 --method sensitivity \
    --ctx $CTX --out "$W/$name-table.map" >/dev/null 2>"$W/s.log" || { tail -3 "$W/s.log"; fail "the sensitivity table failed"; }
  t_tab=$(since "$t0")
  echo "$t_q $t_tab" >"$W/$name-once.txt"
}

# measure TAG MIX NAME: llama-quantize MIX with the imatrix, our search --match-gguf it over the
# quantize run NAME, export, both through llama.cpp's forward; prints the table row.
measure() {
  local tag=$1 mix=$2 name=$3 t0 t_lq t_sp p k f r mixtypes res=()
  t0=$(now)
  "$LQ" --imatrix "$W/$tag-imatrix.gguf" "$W/$tag-f32.gguf" "$W/$tag-lq-$mix.gguf" $mix >"$W/lq.log" 2>&1 ||
    fail "llama-quantize $mix failed ($W/lq.log)"
  t_lq=$(since "$t0")
  t0=$(now)
  "$B/shardpress" search --model "$W/$name-q" --calib "$CAL" --match-gguf "$W/$tag-lq-$mix.gguf" \
    --out "$W/$name-$mix.map" --method sensitivity --ctx $CTX --stages 2048 --survivors 1 \
    --sensitivity "$W/$name-table.map.sensitivity.json" --json >"$W/s.json" 2>"$W/s.log" ||
    { tail -3 "$W/s.log" >&2; fail "search for $mix failed"; }
  "$B/shardpress" export --model "$W/$name-q" --format gguf --bits-map "$W/$name-$mix.map" \
    --match-gguf "$W/$tag-lq-$mix.gguf" --dense-from "$model" --out "$W/$tag-sp-$mix.gguf" --force \
    >/dev/null 2>"$W/x.log"
  t_sp=$(since "$t0")
  for f in lq sp; do
    p=$(ll logprobs "$W/$tag-$f-$mix.gguf" "$W/$tag.ids" $CTX $EW "$W/lp" | awk '/^ppl/ {print $2}')
    k=$(ll kl "$W/$tag-ref.lp" "$W/lp" "$V" | awk '{print $2}')
    res+=("$(stat -c %s "$W/$tag-$f-$mix.gguf")" "$k" "$(printf '%.4f' "$p")")
  done
  [ "${res[3]}" -le "${res[0]}" ] || fail "$tag $mix: our file (${res[3]} bytes) is larger than llama.cpp's (${res[0]})"
  r=$(ratio "${res[4]}" "${res[1]}")
  mixtypes=$(grep -v '^#' "$W/$name-$mix.map" | sort -k2 | awk '{print $2}' | uniq -c | awk '{printf "%s%s×%s", s, $2, $1; s=" "}')
  echo "| $tag | $mix | ${res[0]} | ${res[3]} | $(printf '%.5f' "${res[1]}") | $(printf '%.5f' "${res[4]}") | **$r** | ${res[2]} | ${res[5]} | $t_lq | $t_sp | $mixtypes |"
  echo "$tag $mix ($name): bytes ${res[0]} / ${res[3]}, KL ${res[1]} / ${res[4]} ($r), ppl ${res[2]} / ${res[5]}" >&2
}

rows=""; once=""; lrows=""; lonce=""
for tag in ${SP_MIX_MODELS:-wiki-kjv-6M stories260K}; do
  case $tag in
  wiki-kjv-6M)
    model=../shared/data/models/wiki-kjv-6M; CAL=$model/calib.txt; EVAL=$model/heldout.txt
    CTX=256 NS=128 EW=64 LEVELS=Q2_K,Q3_K,Q4_K,Q5_K,Q6_K,Q8_0 BITS=2
    LOWLEVELS=Q1_0,Q2_0,Q3_K,Q4_K,Q5_K,Q6_K LOWMIXES="Q1_0 Q2_0 Q2_K" ;;
  stories260K)
    model=models/stories260K; CAL=../shared/data/text/stories260K-samples/calib.txt
    EVAL=../shared/data/text/stories260K-samples/eval.txt
    CTX=128 NS=64 EW=64 LEVELS=Q4_0,Q5_0,Q8_0 BITS=4
    LOWLEVELS=Q2_0,Q4_0,Q5_0,Q8_0 LOWMIXES="Q2_0" ;; # 64-wide rows: no Q1_0 (block 128)
  *) fail "unknown model $tag" ;;
  esac
  V=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['vocab_size'])" "$model/config.json" 2>/dev/null || echo 512)
  "$B/shardpress" export --model "$model" --format gguf --out "$W/$tag-f32.gguf" --force >/dev/null
  "$B/shardpress" tokenize --model "$model" --file "$EVAL" | tr ' ' '\n' | grep -v '^$' >"$W/$tag.ids"
  ll logprobs "$W/$tag-f32.gguf" "$W/$tag.ids" $CTX $EW "$W/$tag-ref.lp" >/dev/null
  t0=$(now)
  (cd "$BINS" && "$LI" -m "$W/$tag-f32.gguf" -f "$ROOT/$CAL" -o "$W/$tag-imatrix.gguf" -c $CTX \
     --chunks $NS -t 1 >"$W/$tag-imatrix.log" 2>&1) || fail "llama-imatrix failed ($W/$tag-imatrix.log)"
  t_imx=$(since "$t0")
  LOW=${SP_MIX_LOWBIT:-1}
  if [ "$LOW" != only ]; then
    prepare "$tag" "$LEVELS" "$BITS"
    once+="| $tag | $t_imx | $t_q | $t_tab | $LEVELS |"$'\n'
    for mix in $MIXES; do rows+=$(measure "$tag" "$mix" "$tag")$'\n'; done
  fi
  if [ "$LOW" != 0 ]; then
    prepare "$tag-low" "$LOWLEVELS" 2
    lonce+="| $tag | $t_imx | $t_q | $t_tab | $LOWLEVELS |"$'\n'
    for mix in $LOWMIXES; do lrows+=$(measure "$tag" "$mix" "$tag-low")$'\n'; done
  fi
done

text="## GGUF mixes

\`bench/run_gguf_mix.sh\` ($(date -u +%Y-%m-%d), $(uname -m), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg),
OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, OPENBLAS_NUM_THREADS=$OPENBLAS_NUM_THREADS). Issue 20: for each llama.cpp mix,
\`llama-quantize --imatrix\` (llama-imatrix's imatrix from the calibration text) against
\`shardpress search --match-gguf\` that file (budget: its block linears' bytes, levels priced at
the bytes our export writes, \`--method sensitivity\`) over one \`quantize --levels\` run, exported
with \`export --match-gguf\` (token_embd/output at llama.cpp's types, quantized with our block
search). Every file through llama.cpp's own forward (node-llama-cpp 3.22.1 prebuilt CPU
libraries): KL(F32 file ‖ file) over the whole vocabulary, mean per position, and perplexity, on
64 held-out windows (wiki-kjv-6M: heldout.txt, ctx 256; stories260K: eval.txt, ctx 128).
Calibration for both sides: calib.txt (wiki-kjv-6M: 128×256 tokens; stories260K: 64×128).
Ratio = KL ours / KL llama.cpp (goal on wiki-kjv-6M: ≤ 0.75 from Q3_K_S to Q5_K_M, ≤ 0.8 at
Q2_K; stories260K ≤ 0.9). Bytes are whole files; ours are never larger (checked by the script).
Seconds: llama-quantize per mix; ours = search (the allocation from the model's sensitivity
table) + export per mix; the table is measured once per model (below).

| model | mix | bytes llama.cpp | bytes ours | KL llama.cpp | KL ours | ratio | PPL llama.cpp | PPL ours | s llama-quantize | s search+export | our block linears (bits×modules) |
|---|---|---|---|---|---|---|---|---|---|---|---|
${rows}
Once per model (seconds): llama-imatrix against our \`quantize --levels\` (GPTQ at every level)
and the ΔKL sensitivity table (\`search --method sensitivity\`, 2048 calibration tokens):

| model | s llama-imatrix | s shardpress quantize | s sensitivity table | levels |
|---|---|---|---|---|
${once}"
[ "${SP_MIX_LOWBIT:-1}" = only ] || { sp_bench_write_section "$DOC" "## GGUF mixes" "$text"; echo "$text"; }
[ "${SP_MIX_LOWBIT:-1}" != 0 ] || exit 0
ltext="## GGUF mixes: Q2_0 and Q1_0

\`SP_MIX_LOWBIT=only bench/run_gguf_mix.sh\` ($(date -u +%Y-%m-%d), $(uname -m), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg),
OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, OPENBLAS_NUM_THREADS=$OPENBLAS_NUM_THREADS; also part of a full run). Issue 20
part 4, the same method as \"GGUF mixes\" above: llama.cpp's whole-file Q1_0 and Q2_0 (and Q2_K
again) made by \`llama-quantize --imatrix\` (its Q1_0/Q2_0 quantizers take no imatrix: ggml 0.5's
quantize_q1_0/q2_0 run the reference rule, mean|x| and max|x|) against \`search --match-gguf\` over
a second \`quantize --levels\` run that has Q1_0 and Q2_0 as GPTQ levels (levels in the table
below; the exact least-weighted-error fp16 scale per block, kernels/sp_gtype_level.c). Our file is
never larger (checked). KL(F32 file ‖ file) through llama.cpp's forward, whole vocabulary.

| model | mix | bytes llama.cpp | bytes ours | KL llama.cpp | KL ours | ratio | PPL llama.cpp | PPL ours | s llama-quantize | s search+export | our block linears (bits×modules) |
|---|---|---|---|---|---|---|---|---|---|---|---|
${lrows}
Once per model (seconds): llama-imatrix, our \`quantize\` with the low-bit levels and its
sensitivity table:

| model | s llama-imatrix | s shardpress quantize | s sensitivity table | levels |
|---|---|---|---|---|
${lonce}"
sp_bench_write_section "$DOC" "## GGUF mixes: Q2_0 and Q1_0" "$ltext"
echo "$ltext"
