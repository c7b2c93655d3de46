# bench/lib.sh — shared by the bench/run_*.sh scripts (source it).

# Where every bench script works: the repository, the build it runs (SP_BUILD_DIR, default
# <repo>/build) and the figures file.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${SP_BUILD_DIR:-$ROOT/build}"
DOC="$ROOT/docs/benchmarks.md"

# sp_bench_write_section DOC HEADING TEXT
# Put TEXT (a markdown section that starts with the line HEADING) into DOC: the old section,
# from HEADING up to the next "## " heading, is replaced in place; a missing one is appended.
# Everything else in DOC is copied unchanged.
sp_bench_write_section() {
  local doc=$1 heading=$2 text=$3 sec out
  mkdir -p "$(dirname "$doc")"
  [[ -f "$doc" ]] || printf '# Benchmarks\n\nMeasured figures; each section says how to reproduce it.\n' >"$doc"
  sec=$(mktemp); out=$(mktemp)
  printf '%s\n\n' "$text" >"$sec"
  awk -v h="$heading" -v f="$sec" '
    $0 == h { while ((getline line < f) > 0) print line; skip = 1; found = 1; next }
    skip && /^## / { skip = 0 }
    !skip { print }
    END { if (!found) { print ""; while ((getline line < f) > 0) print line } }
  ' "$doc" >"$out"
  cat "$out" >"$doc"
  rm -f "$sec" "$out"
}
