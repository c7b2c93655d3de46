#!/usr/bin/env bash
# bench/mutants.sh — break the code on purpose and check that a test notices (issue 21).
#
#   bench/mutants.sh [LIST...]        (default: bench/mutants.txt)
#
# Each LIST line (blank lines and '#' comments skipped) is one mutation:
#   FILE | ORIGINAL LINE | MUTATED LINE | TESTS | WHERE FROM
# FILE is relative to the repository; ORIGINAL must occur exactly once in it (trimmed
# whitespace); TESTS are ctest names separated by commas or spaces (run as an exact-name
# regex); WHERE FROM (optional) names the issue item. Fields are separated by " | "; a '|'
# inside a field is written '\|'.
#
# What it does: copies the committed tree of SP_MUT_REV (default HEAD; `git archive`, so
# uncommitted edits are not part of the run) to a scratch directory, configures and builds it
# (-DSP_WERROR=ON, -j2), runs every listed test once unmutated (all must pass: a mutation is
# only "caught" against a green baseline), then for each mutation: replaces the line, rebuilds
# incrementally, runs its tests with ctest -j2, records which failed, and restores the file.
# A mutation is "caught" when at least one of its tests fails, "MISSED" when all pass, and
# "not applied" when its line is not found once or the mutant does not build.
# The table goes to docs/benchmarks.md, section "## Mutation testing", with the machine,
# the date, the revision and the command. Exit status: 0 when every mutation was caught.
#
# Environment: SP_MUT_REV (revision, default HEAD), SP_MUT_DIR (scratch directory, default
# a new /tmp/sp-mutants.XXXXXX, removed at the end unless SP_MUT_KEEP=1), SP_DATA_DIR (the
# shared test data; default <repo>/../shared/data, since the scratch copy has no ../shared).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
. .ci/env.sh
LISTS=("$@"); [ ${#LISTS[@]} -gt 0 ] || LISTS=("$ROOT/bench/mutants.txt")
REV=$(git rev-parse --short "${SP_MUT_REV:-HEAD}")
export SP_DATA_DIR="${SP_DATA_DIR:-$(cd "$ROOT/../shared/data" 2>/dev/null && pwd || echo "$ROOT/../shared/data")}"
[ -d "$SP_DATA_DIR/text" ] || { echo "mutants: test data not found in SP_DATA_DIR=$SP_DATA_DIR" >&2; exit 1; }
S="${SP_MUT_DIR:-$(mktemp -d /tmp/sp-mutants.XXXXXX)}"; mkdir -p "$S"
[ "${SP_MUT_KEEP:-0}" = 1 ] || trap 'rm -rf "$S"' EXIT
T0=$(date +%s)

# ---- the mutations ----------------------------------------------------------------------
M="$S/mutations.tsv"; : >"$M"
for l in "${LISTS[@]}"; do
  python3 - "$l" >>"$M" <<'PY'
import sys
for n, raw in enumerate(open(sys.argv[1]), 1):
    line = raw.rstrip("\n")
    if not line.strip() or line.lstrip().startswith("#"):
        continue
    f = [x.strip().replace("\\|", "|") for x in line.split(" | ")]
    if len(f) < 4:
        sys.exit(f"{sys.argv[1]}: line {n}: expected FILE | ORIGINAL | MUTATED | TESTS [| FROM]")
    tests = " ".join(t for t in f[3].replace(",", " ").split())
    print("\t".join([f[0], f[1], f[2], tests, f[4] if len(f) > 4 else ""]))
PY
done
N=$(wc -l <"$M")
echo "mutants: $N mutations, revision $REV, scratch $S"

# ---- scratch copy and build ----------------------------------------------------------------
rm -rf "$S/src"; mkdir -p "$S/src"
git archive "$REV" | tar -x -m -C "$S/src"   # -m: files dated now, so a reused build rebuilds
nice cmake -S "$S/src" -B "$S/build" -DSP_WERROR=ON >"$S/configure.log" 2>&1 \
  || { tail -20 "$S/configure.log"; exit 1; }
nice cmake --build "$S/build" -j2 >"$S/build.log" 2>&1 || { tail -30 "$S/build.log"; exit 1; }
# A mutant rebuilds only what its tests run: the CLI and the helpers the scripts call, and a
# unit test's own executable (unit tests are named after it); relinking every test program
# after a library change would take most of the time.
TARGETS=$(cmake --build "$S/build" --target help | sed -n 's/^\.\.\. \([A-Za-z0-9_]*\).*/\1/p')
targets_for() {
  local t out="shardpress sp_synth_model sp_gguf_check"
  for t in "$@"; do grep -qx "$t" <<<"$TARGETS" && out="$out $t"; done
  echo "$out"
}

# run_tests NAMES...: ctest on exactly these names; prints the names that failed (or did not run)
run_tests() {
  local re; re="^($(printf '%s|' "$@" | sed 's/|$//'))\$"
  (cd "$S/build" && nice ctest -R "$re" -j2 --timeout 900 </dev/null >"$S/ctest.log" 2>&1) || true
  python3 - "$S/ctest.log" "$@" <<'PY'
import re, sys
log = open(sys.argv[1]).read()
passed = set(re.findall(r"Test +#\d+: (\S+) \.+ +Passed", log))
print(" ".join(t for t in sys.argv[2:] if t not in passed))
PY
}

# ---- baseline: every listed test passes on the unmutated tree -------------------------------
ALL=$(cut -f4 "$M" | tr ' ' '\n' | sort -u | tr '\n' ' ')
echo "mutants: baseline ($ALL)"
tb=$(date +%s)
BAD=$(run_tests $ALL)
[ -z "$BAD" ] || { cat "$S/ctest.log"; echo "mutants: these tests fail without a mutation: $BAD" >&2; exit 1; }
echo "mutants: baseline green in $(( $(date +%s) - tb )) s"

# ---- each mutation -----------------------------------------------------------------------
R="$S/results.tsv"; : >"$R"
i=0
while IFS=$'\t' read -r -u 3 file orig mut tests from; do
  i=$((i + 1)); t1=$(date +%s)
  cp "$S/src/$file" "$S/orig" 2>/dev/null || { printf '%s\tnot applied (no file)\t\t0\n' "$i" >>"$R"; continue; }
  if ! python3 - "$S/src/$file" "$orig" "$mut" <<'PY'
import sys
p, orig, mut = sys.argv[1:4]
lines = open(p).read().split("\n")
hits = [k for k, l in enumerate(lines) if l.strip() == orig]
if len(hits) != 1:
    sys.exit(f"{p}: the original line occurs {len(hits)} times")
k = hits[0]
lines[k] = lines[k][: len(lines[k]) - len(lines[k].lstrip())] + mut
open(p, "w").write("\n".join(lines))
PY
  then
    printf '%s\tnot applied (line not found once)\t\t0\n' "$i" >>"$R"; continue
  fi
  # shellcheck disable=SC2046
  if nice cmake --build "$S/build" -j2 --target $(targets_for $tests) >"$S/mbuild.log" 2>&1; then
    failed=$(run_tests $tests)
    if [ -n "$failed" ]; then verdict="caught"; else verdict="MISSED"; fi
  else
    verdict="not applied (does not build)"; failed=""
  fi
  cp "$S/orig" "$S/src/$file"; touch "$S/src/$file"
  dt=$(( $(date +%s) - t1 ))
  printf '%s\t%s\t%s\t%s\n' "$i" "$verdict" "$failed" "$dt" >>"$R"
  echo "mutants: [$i/$N] $verdict ${failed:+by $failed} ($file, $dt s)"
done 3<"$M"

# ---- the table -----------------------------------------------------------------------------
TOTAL=$(( $(date +%s) - T0 ))
CPU=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
TEXT=$(python3 - "$M" "$R" "$REV" "$TOTAL" "$(nproc)" "$CPU" "$(date -u +%Y-%m-%d)" "$*" <<'PY'
import sys
mut = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
res = {l.split("\t")[0]: l.rstrip("\n").split("\t") for l in open(sys.argv[2])}
rev, total, cores, cpu, day, args = sys.argv[3:9]
def code(s):
    return "`" + s.replace("|", "\\|").replace("`", "'") + "`"
caught = sum(1 for r in res.values() if r[1] == "caught")
out = ["## Mutation testing", "",
       "What: each mutation below is applied alone to a scratch copy of the committed tree, "
       "built (-Werror) and tested with the tests it names; \"caught\" means at least one of "
       "them failed (the failing ones are listed), after the same tests passed on the "
       "unmutated tree. The list is bench/mutants.txt (issues 19 and 21).", "",
       f"Command: `bench/mutants.sh{(' ' + args) if args else ''}` at revision {rev}, "
       f"{day}, {cores} cores ({cpu}), ctest -j2, shared with other work; {total} s in all "
       f"(build and baseline included).", "",
       f"Result: {caught} of {len(mut)} mutations caught.", "",
       "| # | file | original → mutated | from | tests run | result | failed tests | s |",
       "|---|---|---|---|---|---|---|---|"]
for k, m in enumerate(mut, 1):
    r = res.get(str(k), [str(k), "not run", "", "0"])
    out.append(f"| {k} | {m[0]} | {code(m[1])} → {code(m[2])} | {m[4]} | {m[3]} | {r[1]} | "
               f"{r[2]} | {r[3]} |")
print("\n".join(out))
PY
)
sp_bench_write_section "$DOC" "## Mutation testing" "$TEXT"
echo "$TEXT"
[ "$(grep -c $'\tcaught\t' "$R")" -eq "$N" ]
