#!/usr/bin/env bash
# Issue 21 part 5: every command stops promptly on SIGTERM/SIGINT and leaves nothing
# half-written. Case $1 runs one command on a synthetic model large enough that it would run
# for tens of seconds (each command alone: 20 s to minutes on this machine), signals it after
# 2 s, and checks that it
#   - exits within STOP_S seconds of the signal (the old code ignored the caught SIGTERM and ran
#     to completion),
#   - exits non-zero and not by the signal (it stopped itself: 3, the "preempted" status),
#   - says so in one line naming the command and the signal,
#   - leaves no output and no partial or temporary file in its output directory.
# Cases: eval (SIGTERM, --save-logits, 1 rank), eval_mpi (SIGTERM to every process of a
# 2-rank job, as Slurm signals a step), generate (SIGINT), export_gguf (SIGTERM while it
# re-quantizes to Q3_K), quantize (SIGTERM, no --checkpoint-dir), exchange_files (SIGTERM while
# site 0 waits for another site's file), search_sensitivity (SIGTERM to a search during
# its ΔKL table, one long collective run: it used to ignore the signal until the table was done).
. "$(dirname "$0")/lib.sh"
EV="$SP_DATA_DIR/text/stories260K-samples/eval.txt"
SIG_AFTER=2 STOP_S=15
SYN="$WORK/syn"
"$SP_SYNTH" --out "$SYN" --hidden 512 --intermediate 1376 --layers 8 --heads 8 --kv-heads 8 \
  --vocab 512 --max-pos 512 --dtype f32 >/dev/null
OUTD="$WORK/out"; mkdir "$OUTD"

# stop_run SIG NRANKS CMD...: CMD in its own process group; SIG to the whole group after
# SIG_AFTER s; sets RC, ELAPSED (s after the signal), and leaves stdout/stderr in $WORK/o, e.
stop_run() {
  local sig=$1 n=$2; shift 2
  if [ "$n" = 0 ]; then setsid "$SP_BIN" "$@" >"$WORK/o" 2>"$WORK/e" &
  else setsid $SP_MPIEXEC -n "$n" "$SP_BIN" "$@" >"$WORK/o" 2>"$WORK/e" & fi
  local pg=$!
  sleep "$SIG_AFTER"
  kill -0 "$pg" 2>/dev/null || { cat "$WORK/e" >&2; fail "$1 ended before the signal (rc $(wait "$pg"; echo $?)): make the workload larger"; }
  local t0; t0=$(date +%s.%N)
  kill -"$sig" -- "-$pg"
  # the job must end by itself; give it STOP_S, then kill it and fail
  local waited=0
  while kill -0 "$pg" 2>/dev/null && [ "$waited" -lt $((STOP_S * 10)) ]; do sleep 0.1; waited=$((waited + 1)); done
  if kill -0 "$pg" 2>/dev/null; then
    kill -9 -- "-$pg" 2>/dev/null || true; wait "$pg" 2>/dev/null || true
    fail "$1 still running ${STOP_S} s after SIG$sig"
  fi
  RC=0; wait "$pg" || RC=$?
  ELAPSED=$(python3 -c "import time; print(round(time.time() - $t0, 2))")
  echo "$1: SIG$sig -> exit $RC after $ELAPSED s: $(head -1 "$WORK/e")"
}
# nothing_written: the output directory is empty (no output, no .partial, no temporary file)
nothing_written() {
  [ -z "$(ls -A "$OUTD")" ] || fail "left behind in $OUTD: $(ls -A "$OUTD" | tr '\n' ' ')"
}
# stopped_cleanly CMD SIG: exit 3, one stderr line naming the command and the signal
stopped_cleanly() {
  [ "$RC" -eq 3 ] || { cat "$WORK/e" >&2; fail "expected exit 3 (stopped), got $RC"; }
  [ "$(wc -l <"$WORK/e")" -eq 1 ] || { cat "$WORK/e" >&2; fail "expected one line on stderr"; }
  grep -Eq "^shardpress: error: $1: stopped by $2; nothing written\$" "$WORK/e" \
    || fail "unexpected message: $(cat "$WORK/e")"
}

case "$1" in
eval)
  stop_run TERM 0 eval --model "$SYN" --text "$EV" --ctx 128 --save-logits "$OUTD/ref.lg"
  stopped_cleanly eval SIGTERM; nothing_written ;;
eval_mpi)
  stop_run TERM 2 eval --model "$SYN" --text "$EV" --ctx 128 --save-logits "$OUTD/ref.lg"
  # mpiexec adds its own report of the ranks' exit status; each rank stopped itself
  [ "$RC" -ne 0 ] && [ "$RC" -lt 128 ] || fail "expected a non-zero exit that is not a signal's, got $RC"
  grep -q "eval: stopped by SIGTERM; nothing written" "$WORK/e" || fail "no stop message: $(cat "$WORK/e")"
  nothing_written ;;
generate)
  stop_run INT 0 generate --model "$SYN" --steps 480 --prompt "Once upon a time"
  stopped_cleanly generate SIGINT
  [ ! -s "$WORK/o" ] || fail "generate printed text after SIGINT"
  nothing_written ;;
export_gguf)
  stop_run TERM 0 export --model "$SYN" --format gguf --type Q3_K --out "$OUTD/m.gguf"
  stopped_cleanly export SIGTERM; nothing_written ;;
exchange_files)
  # site 0 of 2 (--transport files) has sent its messages and waits for site 1's, which never
  # come; the wait (--timeout 300) ends at the signal, with no output and no state committed
  python3 "$(dirname "$0")/make_sites.py" "$SP_MODEL_DIR" "$WORK/sites" 1 --scale 0.01
  stop_run TERM 0 exchange --base "$SP_MODEL_DIR" --local "$WORK/sites/0" --state "$WORK/D" \
    --out "$OUTD/x" --transport "files:$WORK/fx" --site 0 --sites 2 --timeout 300
  stopped_cleanly exchange SIGTERM; nothing_written
  [ ! -e "$WORK/D/latest" ] || fail "the stopped round committed state" ;;
quantize)
  stop_run TERM 0 quantize --model "$SYN" --calib "$EV" --out "$OUTD/q" --nsamples 16 --ctx 256
  [ "$RC" -eq 3 ] || { cat "$WORK/e" >&2; fail "expected exit 3, got $RC"; }
  grep -Eq "stopped by a signal (in|after) block [1-7] of 8 \(no --checkpoint-dir: nothing saved\)" "$WORK/e" || fail "unexpected message: $(cat "$WORK/e")"
  nothing_written ;;
search_sensitivity)
  # a 3-level container of the bundled model: the table runs every (module, level) pair
  "$SP_BIN" quantize --model "$SP_MODEL_DIR" --calib "$EV" --out "$WORK/q" --levels 2,3,4 \
    --group-size 32 --nsamples 4 --ctx 64 >/dev/null
  stop_run TERM 0 search --model "$WORK/q" --calib "$EV" --target-bits 3 --method sensitivity \
    --ctx 256 --stages 4096 --survivors 1 --out "$OUTD/map"
  stopped_cleanly search SIGTERM; nothing_written ;;
*) fail "unknown case $1" ;;
esac
awk -v e="$ELAPSED" -v s="$STOP_S" 'BEGIN { exit !(e < s) }' || fail "took $ELAPSED s"
echo "ok: $1 stopped in $ELAPSED s, nothing written"
