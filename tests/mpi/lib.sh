# Shared helpers for the CLI/MPI tests. Sourced by the test scripts; ctest sets SP_BIN,
# SP_MODEL_DIR, SP_DATA_DIR_CONFIGURED, SP_SOURCE_DIR and SP_MPIEXEC.
set -euo pipefail
fail() { echo "FAIL: $*" >&2; exit 1; }

# The shared test data: $SP_DATA_DIR from the environment, else the directory configured at
# build time (tests/CMakeLists.txt), else <clone>/../shared/data. A script that reads it
# fails at once, in one line naming where it looked, when it is not there.
SP_DATA_DIR="${SP_DATA_DIR:-${SP_DATA_DIR_CONFIGURED:-${SP_SOURCE_DIR:-.}/../shared/data}}"
if grep -q 'SP_DATA_DIR' "$0" && [ ! -d "$SP_DATA_DIR/text" ]; then
  fail "test data not found: looked in SP_DATA_DIR=$SP_DATA_DIR (set SP_DATA_DIR to the shared data directory; README.md, \"Test data\")"
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sp-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# mpirun with N ranks
mpi() { local n=$1; shift; $SP_MPIEXEC -n "$n" "$@"; }

# expect_error PATTERN CMD...: CMD must exit non-zero, print exactly one line on stderr,
# that line must match the extended regex PATTERN, and it must not crash (no signal exit).
expect_error() {
  local pat=$1; shift
  local rc=0
  "$@" >"$WORK/.stdout" 2>"$WORK/.stderr" || rc=$?
  [ "$rc" -ne 0 ] || fail "expected failure, got success: $*"
  [ "$rc" -lt 128 ] || fail "crashed with signal $((rc-128)): $*"
  local lines; lines=$(wc -l <"$WORK/.stderr")
  [ "$lines" -eq 1 ] || { cat "$WORK/.stderr" >&2; fail "expected one line on stderr, got $lines"; }
  grep -Eq "$pat" "$WORK/.stderr" || { cat "$WORK/.stderr" >&2; fail "stderr does not match /$pat/"; }
  echo "ok: $(cat "$WORK/.stderr")"
}

# json_get FILE KEY: the value of a top-level key of the one JSON object in FILE
json_get() { python3 -c 'import json,sys; print(repr(json.load(open(sys.argv[1]))[sys.argv[2]]))' "$1" "$2"; }
