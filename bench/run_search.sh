#!/usr/bin/env bash
# bench/run_search.sh [G_SEEDED] [G_PLAIN] — issue 19's "Must show", one command, one run, on the
# bundled model (stories260K: calib.txt / eval.txt) and on wiki-kjv-6M (calib.txt / heldout.txt):
#   GPTQ levels 2,3,4,5,6,8 g32; every search at ctx 256, 16 offspring, stages SP_BENCH_STAGES
#   (default below), survivors 4,2,1 on 2 ranks; KL(dense ‖ model) measured by `eval` on the held-out text.
#   - --method sensitivity at u2.5, u3, u3.5 in one run: held-out KL vs uniform, the table's cost
#     in layer evaluations, token-layers and seconds against a light generation and a default one
#     (128 offspring, 2048/16384/131072: measured for one generation on the bundled model);
#   - plain EvoPress: G_PLAIN (default 60) generations from uniform, --screen 1;
#   - seeded (--init sensitivity, the table reused) G_SEEDED (default 40) generations with
#     --screen 1 and --screen 4 (bundled model: u2.5,u3,u3.5 in one run);
#   - seeded + screened under --max-evals = 25% of plain's layer evaluations (table included);
#   - bundled model: seconds and layer evaluations per generation on 1 and 2 ranks (10 gens);
#   - plan --search for a 70B model (sparse safetensors headers) with the sensitivity pass;
#   - the richer space: levels with their own group sizes (SP_BENCH_RICH, default
#     2,3g128,4g128,5g128,6g128,8g128; "" skips it) at the g32 set's u3 stored bits: uniform
#     levels, --method sensitivity and seeded --screen 4 evolution (G_SEEDED generations).
# Writes the "Search" section of docs/benchmarks.md. Reductions for a busy machine (the section
# states the values used): SP_BENCH_MODELS="stories wiki" (default) selects the models;
# SP_BENCH_DIR=D keeps the work in D and skips the steps whose output is there (rerun to go on);
# SP_BENCH_WIKI_G (default G_SEEDED) and SP_BENCH_WIKI_PLAIN=0 (no plain run on wiki-kjv-6M, so
# no 25% run there either); SP_BENCH_MULTI_EVO=0 (the seeded --screen 4 run at u3 only);
# SP_BENCH_TIMING_GENS (default 10); SP_BENCH_NSAMPLES (GPTQ windows, default 128).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$ROOT/.ci/env.sh"
G=${1:-40}; P=${2:-60}
SP="$BUILD/shardpress"
if [ -n "${SP_BENCH_DIR:-}" ]; then W=$SP_BENCH_DIR; mkdir -p "$W"
else W=$(mktemp -d); trap 'rm -rf "$W"' EXIT; fi
WG=${SP_BENCH_WIKI_G:-$G}; WPLAIN=${SP_BENCH_WIKI_PLAIN:-1}; MULTI=${SP_BENCH_MULTI_EVO:-1}
TG=${SP_BENCH_TIMING_GENS:-10}; NS=${SP_BENCH_NSAMPLES:-128}
RICH=${SP_BENCH_RICH-2,3g128,4g128,5g128,6g128,8g128}
# step OUT CMD...: run CMD (stdout to OUT) unless OUT exists and is not empty
step() { local o=$1; shift; [ -s "$o" ] && return 0; "$@" >"$o.part" && mv "$o.part" "$o"; }
STG=${SP_BENCH_STAGES:-512,2048,16384} # 16384: see docs/architecture.md, "Why seeded evolution plateaus"
S=(--ctx 256 --offspring 16 --stages "$STG" --survivors 4,2,1)
DEF=(--ctx 256 --offspring 128 --stages 2048,16384,131072 --survivors 16,4,1) # search's defaults
num() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {'r': r}))" "$@"; }
t0=$(date +%s)

run_model() { # name model_dir calib eval
  local n=$1 M=$2 CAL=$3 EV=$4 d="$W/$1" g=$G plain=1 multi=$MULTI; mkdir -p "$d"
  [ "$n" = wiki ] && { g=$WG; plain=$WPLAIN; multi=0; }
  [ -s "$d/q/model.sp.h5" ] || mpirun -n 2 "$SP" quantize --model "$M" --calib "$CAL" --out "$d/q" \
    --levels 2,3,4,5,6,8 --group-size 32 --nsamples "$NS" --ctx 256 --force >/dev/null
  [ -s "$d/dense" ] || mpirun -n 2 "$SP" eval --model "$M" --text "$EV" --ctx 256 --save-logits "$d/dense" >/dev/null
  # klq / searchq QDIR ...: held-out KL of a map of QDIR, a light-schedule search on QDIR
  klq() { local q=$1; shift; mpirun -n 2 "$SP" eval --model "$q" --text "$EV" --ctx 256 --kl-base "$d/dense" --json "$@" | sed -n 's/.*"kl":\([-0-9.e+]*\).*/\1/p'; }
  searchq() { local q=$1; shift; mpirun -n 2 "$SP" search --model "$q" --calib "$CAL" "${S[@]}" --json "$@" 2>/dev/null; }
  kl() { klq "$d/q" "$@"; }
  search() { searchq "$d/q" "$@"; }
  searchd() { mpirun -n 2 "$SP" search --model "$d/q" --calib "$CAL" "${DEF[@]}" --json "$@" 2>/dev/null; }
  step "$d/sens.json" search --method sensitivity --target-bits u2.5,u3,u3.5 --out "$d/sens"
  local T="$d/sens.sensitivity.json"
  [ "$plain" = 1 ] && step "$d/plain.json" search --target-bits u3 --init uniform --screen 1 --generations "$P" --out "$d/plain"
  # one generation of the default schedule (what "the table costs less than two generations
  # of default evolution" compares with): measured on the bundled model; on wiki-kjv-6M its
  # count is the schedule's full re-run count and its seconds are estimated (see the section)
  if [ "$n" = stories ]; then step "$d/def1.json" searchd --target-bits u3 --sensitivity "$d/sens.sensitivity.json" \
    --generations 1 --out "$d/def1"; fi
  step "$d/seed1.json" search --target-bits u3 --sensitivity "$T" --screen 1 --generations "$g" --out "$d/seed1"
  local tg=u3; [ "$multi" = 1 ] && tg=u2.5,u3,u3.5
  step "$d/seed4.json" search --target-bits $tg --sensitivity "$T" --screen 4 --generations "$g" --out "$d/seed4"
  local tab; tab=$(num "$d/sens.json" 'r["sensitivity"]["layer_evaluations"]')
  if [ "$plain" = 1 ]; then
    # 25% of plain's evaluations, the table's included (--max-evals never exceeds its budget)
    local cap; cap=$(num "$d/plain.json" "r['layer_evaluations'] // 4 - $tab")
    step "$d/budget.json" search --target-bits u3 --sensitivity "$T" --screen 4 --generations 1000 --max-evals "$cap" --out "$d/budget"
  fi
  [ -s "$d/kl.txt" ] || { { echo "u2 $(kl --level 2)"; echo "u3 $(kl --level 3)"; echo "u4 $(kl --level 4)"
    for x in u2.5 u3 u3.5; do echo "sens.$x $(kl --bits-map "$d/sens.$x")"; done
    [ "$plain" = 1 ] && echo "plain $(kl --bits-map "$d/plain")"
    echo "seed1 $(kl --bits-map "$d/seed1")"
    if [ "$multi" = 1 ]; then for x in u2.5 u3 u3.5; do echo "seed4.$x $(kl --bits-map "$d/seed4.$x")"; done
    else echo "seed4.u3 $(kl --bits-map "$d/seed4")"; fi
    [ "$plain" = 1 ] && echo "budget $(kl --bits-map "$d/budget")"; true; } >"$d/kl.part" && mv "$d/kl.part" "$d/kl.txt"; }
  [ -n "$RICH" ] || return 0
  # The richer space: the same GPTQ with each level's own group size, searched at the g32 set's
  # uniform 3-bit stored bits (an absolute --target-bits: this set's u3 is its 3-bit level's).
  local B; B=$(num "$d/sens.json" 'repr(r["uniform_avg_bits"]["3"])')
  [ -s "$d/qr/model.sp.h5" ] || mpirun -n 2 "$SP" quantize --model "$M" --calib "$CAL" --out "$d/qr" \
    --levels "$RICH" --group-size 32 --nsamples "$NS" --ctx 256 --force >/dev/null
  searchr() { searchq "$d/qr" "$@"; }
  step "$d/rsens.json" searchr --method sensitivity --target-bits "$B" --out "$d/rsens"
  step "$d/rseed.json" searchr --target-bits "$B" --sensitivity "$d/rsens.sensitivity.json" --screen 4 \
    --generations "$g" --out "$d/rseed"
  klr() { klq "$d/qr" "$@"; }
  [ -s "$d/klr.txt" ] || { { for b in 2 3 4; do echo "u$b $(klr --level $b)"; done
    echo "sens $(klr --bits-map "$d/rsens")"; echo "seed $(klr --bits-map "$d/rseed")"; } >"$d/klr.part" && mv "$d/klr.part" "$d/klr.txt"; }
}

MODELS=${SP_BENCH_MODELS:-stories wiki}
for m in $MODELS; do
  case $m in
    stories) D="$ROOT/../shared/data/text/stories260K-samples"; run_model stories "$ROOT/models/stories260K" "$D/calib.txt" "$D/eval.txt" ;;
    wiki) D="$ROOT/../shared/data/models/wiki-kjv-6M"; run_model wiki "$D" "$D/calib.txt" "$D/heldout.txt" ;;
  esac
done
# seconds per generation on 1 and 2 ranks (bundled model, seeded + screened, 10 generations)
if [[ " $MODELS " == *" stories "* ]]; then
  for r in 1 2; do
    step "$W/t$r.json" mpirun -n $r "$SP" search --model "$W/stories/q" --calib "$ROOT/../shared/data/text/stories260K-samples/calib.txt" \
      "${S[@]}" --target-bits u3 --sensitivity "$W/stories/sens.sensitivity.json" --screen 4 --generations "$TG" \
      --out "$W/t$r" --json
  done
fi
# plan --search for Llama-2-70B shapes (sparse files: real safetensors headers, no data)
python3 - "$W/l70" <<'PY'
import json, os, struct, sys
d = sys.argv[1]; os.makedirs(d, exist_ok=True)
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
"$SP" plan --model "$W/l70" --search --ranks 16 --levels 2,3,4,5,6,8 --json >"$W/plan70.json"
took=$(( $(date +%s) - t0 ))
text=$(python3 - "$W" "$G" "$P" "$MODELS" "$took" "$WG" "$TG" "$RICH" <<'PY'
import json, os, sys
w, G, P, models, took = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(), int(sys.argv[5])
WG, TG, RICH = int(sys.argv[6]), int(sys.argv[7]), sys.argv[8]
J = lambda p: json.load(open(p))
out = []
for m in models:
    d = f"{w}/{m}"
    kl = dict(l.split() for l in open(f"{d}/kl.txt")); kl = {k: float(v) for k, v in kl.items()}
    s, s1, s4 = (J(f"{d}/{x}.json") for x in ("sens", "seed1", "seed4"))
    has_plain = os.path.exists(f"{d}/plain.json")
    pl = J(f"{d}/plain.json") if has_plain else None
    bu = J(f"{d}/budget.json") if has_plain else None
    g = WG if m == "wiki" else G
    u3 = kl["u3"]; tab = s["sensitivity"]["layer_evaluations"]
    gen = (pl or s4)["layer_evaluations"] / (pl or s4)["generations"] if (pl or s4)["generations"] else 1
    gname = "plain" if pl else "seeded --screen 4"
    name = {"stories": "bundled model (stories260K)", "wiki": "wiki-kjv-6M"}[m]
    out.append(f"**{name}**: uniform 2/3/4-bit KL {kl['u2']:.5f} / {u3:.5f} / {kl['u4']:.5f}; "
               f"pool {s['pool_windows']} windows of 256 tokens, dense reference computed for "
               f"{(pl or s4)['reference_windows']} of them in the {gname} run.\n")
    out.append("| map at u3 (uniform 3-bit's stored bits) | held-out KL | × uniform 3-bit | layer evaluations (table + search) | seconds (2 ranks) |")
    out.append("|---|---|---|---|---|")
    out.append(f"| uniform 3-bit | {u3:.5f} | 1.00 | 0 | - |")
    out.append(f"| `--method sensitivity` | {kl['sens.u3']:.5f} | {kl['sens.u3'] / u3:.2f} | {tab} ({tab / gen:.2f} {gname} generations) | {s['sensitivity']['seconds']:.1f} (table) |")
    if pl:
        out.append(f"| plain EvoPress, {P} gen, `--init uniform --screen 1` | {kl['plain']:.5f} | {kl['plain'] / u3:.2f} | {pl['layer_evaluations']} | {pl['seconds']:.0f} |")
    out.append(f"| seeded, {g} gen, `--screen 1` | {kl['seed1']:.5f} | {kl['seed1'] / u3:.2f} | {tab} + {s1['layer_evaluations']} | {s1['seconds']:.0f} |")
    t4 = [t for t in s4["targets"] if t["out"].endswith(("seed4", "seed4.u3"))][0]
    out.append(f"| seeded, {g} gen, `--screen 4` | {kl['seed4.u3']:.5f} | {kl['seed4.u3'] / u3:.2f} | {tab} + {t4['layer_evaluations']} | {s4['seconds'] / len(s4['targets']):.0f} |")
    if bu:
        out.append(f"| seeded + `--screen 4`, `--max-evals` = 25% of plain's ({bu['generations']} gen) | {kl['budget']:.5f} | {kl['budget'] / u3:.2f} | {tab} + {bu['layer_evaluations']} = {(tab + bu['layer_evaluations']) / pl['layer_evaluations'] * 100:.0f}% of plain | {bu['seconds']:.0f} |")
    out.append("")
    # What the table costs against generations of evolution, in layer evaluations (window-layers),
    # token-layers (the same × ctx: every window has ctx tokens) and seconds.
    ctx = s["ctx"]; ts = s["sensitivity"]["seconds"]; nwt = s["sensitivity"]["windows"]
    le, ls = s1["layer_evaluations"] / s1["generations"], s1["seconds"] / s1["generations"]
    if os.path.exists(f"{d}/def1.json"):
        d1 = J(f"{d}/def1.json"); de, dsec = d1["layer_evaluations"], d1["seconds"]
        dnote = "measured: one generation, `--generations 1`, its lazy dense reference included"
    else:
        L = len(J(f"{d}/sens.sensitivity.json")["modules"]) // 7; pool = s["pool_windows"]
        de = L * (128 * 8 + 16 * 64 + 5 * min(512, pool)); dsec = de * s1["seconds"] / s1["layer_evaluations"]
        dnote = (f"not run: its count is the schedule's full re-run count L·(128·8 + 16·64 + 5·{min(512, pool)}) "
                 f"(an upper bound: the prefix cache saves some), its seconds that count at the seeded "
                 f"`--screen 1` run's measured seconds per layer evaluation")
    out.append(f"What the table costs ({nwt} windows of {ctx} tokens), against one generation of evolution:\n")
    out.append("| | layer evaluations | token-layers | seconds (2 ranks) | table ÷ this (evaluations / seconds) |")
    out.append("|---|---|---|---|---|")
    out.append(f"| the table | {tab} | {tab * ctx} | {ts:.1f} | - |")
    out.append(f"| light generation (seeded `--screen 1`, mean of {s1['generations']}) | {le:.0f} | {le * ctx:.0f} | {ls:.2f} | {tab / le:.2f} / {ts / ls:.2f} |")
    out.append(f"| default generation (128 offspring, stages 2048,16384,131072, survivors 16,4,1) | {de:.0f} | {de * ctx:.0f} | {dsec:.1f} | {tab / de:.2f} / {ts / dsec:.2f} |")
    out.append(f"\nDefault generation: {dnote}. Light generations' seconds are whole runs (dense reference included) divided by their generations.\n")
    if m == "stories" and "seed4.u2.5" not in kl:
        out.append("Several budgets (one `--method sensitivity` run with `--target-bits u2.5,u3,u3.5`):\n")
        out.append("| budget | stored bits | KL uniform floor / ceil | KL sensitivity |")
        out.append("|---|---|---|---|")
        for x, lo, hi in (("u2.5", "u2", "u3"), ("u3", "u3", "u4"), ("u3.5", "u3", "u4")):
            t = [t for t in s["targets"] if t["out"].endswith("." + x)][0]
            out.append(f"| {x} | {t['target_bits']:.6f} | {kl[lo]:.5f} / {kl[hi]:.5f} | {kl['sens.' + x]:.5f} |")
        out.append(f"\nThe sensitivity run for all three budgets took {s['seconds']:.1f} s (table "
                   f"{s['sensitivity']['seconds']:.1f} s, dense reference and each map's fitness the rest).\n")
    if m == "stories" and "seed4.u2.5" in kl:
        out.append("Several budgets (one `--method sensitivity` run, one seeded `--screen 4` run, each with "
                   "`--target-bits u2.5,u3,u3.5`; uX = uniform X-bit's stored bits, interpolated):\n")
        out.append("| budget | stored bits | KL uniform floor / ceil | KL sensitivity | KL seeded evolution |")
        out.append("|---|---|---|---|---|")
        for x, lo, hi in (("u2.5", "u2", "u3"), ("u3", "u3", "u4"), ("u3.5", "u3", "u4")):
            t = [t for t in s["targets"] if t["out"].endswith("." + x)][0]
            out.append(f"| {x} | {t['target_bits']:.6f} | {kl[lo]:.5f} / {kl[hi]:.5f} | {kl['sens.' + x]:.5f} | {kl['seed4.' + x]:.5f} |")
        out.append(f"\nThe sensitivity run for all three budgets took {s['seconds']:.1f} s (table "
                   f"{s['sensitivity']['seconds']:.1f} s, dense reference and each map's fitness the rest).\n")
    if RICH:
        kr = {k: float(v) for k, v in (l.split() for l in open(f"{d}/klr.txt"))}
        rs, re_ = J(f"{d}/rsens.json"), J(f"{d}/rseed.json")
        ua = rs["uniform_avg_bits"]; B = rs["target_bits"]
        out.append(f"The richer space on {name}: `quantize --levels {RICH} --group-size 32` (each level "
                   f"with its own group size where given, the same GPTQ otherwise), searched at the g32 set's "
                   f"uniform 3-bit stored bits ({B:.6f}); every ratio is against the g32 set's uniform "
                   f"3-bit KL {u3:.5f} above:\n")
        out.append("| map | stored bits | held-out KL | × uniform 3-bit (g32) | layer evaluations | seconds (2 ranks) |")
        out.append("|---|---|---|---|---|---|")
        out.append(f"| uniform 3-bit g32 (the set above) | {B:.4f} | {u3:.5f} | 1.00 | 0 | - |")
        for b in (2, 3, 4):
            over = " (over budget)" if ua[str(b)] > B + 1e-9 else ""
            out.append(f"| uniform level {b} of this set{over} | {ua[str(b)]:.4f} | {kr[f'u{b}']:.5f} | {kr[f'u{b}'] / u3:.2f} | 0 | - |")
        rt = rs["sensitivity"]["layer_evaluations"]
        out.append(f"| `--method sensitivity` | {rs['avg_bits']:.4f} | {kr['sens']:.5f} | {kr['sens'] / u3:.2f} | {rt} (table) | {rs['sensitivity']['seconds']:.1f} (table) |")
        out.append(f"| seeded, {g} gen, `--screen 4` | {re_['avg_bits']:.4f} | {kr['seed']:.5f} | {kr['seed'] / u3:.2f} | {rt} + {re_['layer_evaluations']} | {re_['seconds']:.0f} |")
        out.append("")
    if m == "stories":
        t1, t2 = J(f"{w}/t1.json"), J(f"{w}/t2.json")
        out.append(f"Per generation (seeded, `--screen 4`, {TG} generations at u3): {t1['layer_evaluations'] / TG:.0f} layer "
                   f"evaluations ({t1['layer_evaluations_full'] / TG:.0f} without the prefix cache); "
                   f"{t1['seconds'] / TG:.2f} s on 1 rank, {t2['seconds'] / TG:.2f} s on 2 ranks (whole runs, "
                   f"dense reference included, divided by {TG}).\n")
p = J(f"{w}/plan70.json")
out.append(f"plan --search, Llama-2-70B shapes, 16 CPU ranks, search defaults (ctx 2048, 128 offspring, "
           f"stages 2048/16384/131072): sensitivity table {p['layer_evaluations_sensitivity']:.0f} window-layers, "
           f"{p['seconds_sensitivity'] / 3600:.1f} h; one generation {p['seconds_per_generation'] / 3600:.1f} h; "
           f"dense model's mapped pages {p['memory_mb']['dense_mapped'] / 1024:.1f} GiB of "
           f"{p['peak_rss_mb'] / 1024:.1f} GiB peak RSS per rank (default rates of plan, not calibrated).")
out.append(f"\nWhole bench: {took} s. Load average at the end: {open('/proc/loadavg').read().split()[:3]}.")
print("\n".join(out))
PY
)
sp_bench_write_section "$DOC" "## Search" "## Search

\`bench/run_search.sh $G $P\` ($(date -u +%F), $(nproc) cores shared with other jobs, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, models: $MODELS).
GPTQ levels 2,3,4,5,6,8 g32 ($NS windows of 256 tokens), every search on the model's calib.txt
with \`--ctx 256 --offspring 16 --stages $STG --survivors 4,2,1\` on 2 ranks; KL(dense ‖
model) by \`eval\` on held-out text (eval.txt; wiki-kjv-6M: heldout.txt). The table: the first
stage's tokens (2 windows). Layer evaluations are counted as one rank runs them; \`--max-evals\`
never exceeds its budget (a generation starts only if its worst case still fits).
Settings of this run: G_SEEDED $G, G_PLAIN $P, wiki-kjv-6M seeded generations $WG, plain run on
wiki-kjv-6M: $WPLAIN, seeded multi-budget evolution on the bundled model: $MULTI, timing
generations $TG.

$text"
echo "wrote the Search section of $DOC"
