#!/usr/bin/env bash
# Slurm tests on a throwaway local cluster (slurm/local/start.sh), one case per run:
#   quantize  slurm/quantize.sbatch with 2 tasks (srun --mpi=pmix) on the bundled model gives
#             the same model.sp.h5 bytes as `mpirun -n 2 shardpress quantize`.
#   requeue   a checkpointed job is sent SIGUSR1 (as Slurm does before the time limit) after its
#             first checkpoint; the template forwards it, shardpress stops at a block boundary
#             with exit 3, the template requeues the job, the requeued job resumes from the
#             checkpoint and the output equals an uninterrupted run's.
#   search    slurm/search.sbatch (2 tasks) is sent SIGUSR1 after its first generation's
#             checkpoint; it stops with exit 3, is requeued, resumes, and writes the MAP of an
#             uninterrupted `mpirun -n 2 shardpress search`.
# Exit 77 (skipped) without root, without Slurm (Debian: slurmctld slurmd slurm-client), or
# when this shardpress has no `resume`. Every wait has a timeout; the daemons are always
# stopped (trap), and each run uses its own directory and free ports.
. "$(dirname "$0")/lib.sh"
CASE=${1:?usage: test_slurm.sh quantize|requeue|search}
SRC=$SP_SOURCE_DIR
M="$SP_MODEL_DIR"
CAL="$SP_DATA_DIR/text/stories260K-samples/calib.txt"
skip() { echo "SKIP: $*"; exit 77; }

[ "$(id -u)" -eq 0 ] || skip "needs root (slurmd runs the jobs)"
for b in slurmctld slurmd sbatch scontrol scancel sinfo; do
  command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] ||
    skip "$b not found (apt-get install slurmctld slurmd slurm-client)"
done
"$SP_BIN" resume --help >/dev/null 2>&1 || skip "this shardpress has no 'resume' command"

CL="$WORK/cluster"
cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
    for f in "$WORK"/job-*.out "$CL"/log/slurmctld.log "$CL"/log/slurmd.log; do
      [ -f "$f" ] && { echo "--- $f (last 30 lines)" >&2; tail -30 "$f" >&2; }
    done
  fi
  bash "$SRC/slurm/local/stop.sh" "$CL" >/dev/null 2>&1
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

env_line=$(bash "$SRC/slurm/local/start.sh" "$CL" --cpus 4 --timeout 60 2>"$WORK/start.err" | tail -1) ||
  { cat "$WORK/start.err" >&2; fail "the local Slurm cluster did not start"; }
eval "$env_line"
[ -n "${SLURM_CONF:-}" ] || fail "start.sh printed no SLURM_CONF line"
export SP_BIN

job_state() { scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | head -1 | cut -d= -f2; }
job_field() { scontrol show job "$1" 2>/dev/null | grep -o "$2=[^ ]*" | head -1 | cut -d= -f2; }

# wait_for SECONDS DESCRIPTION CMD...: poll CMD every half second until it succeeds.
wait_for() {
  local secs=$1 what=$2; shift 2
  local end=$(( $(date +%s) + secs ))
  until "$@"; do
    [ "$(date +%s)" -lt "$end" ] || fail "timed out after ${secs}s waiting for $what"
    sleep 0.5
  done
}

# done_or_failed: true once job $jid COMPLETED; fails the test if it ended any other way.
done_or_failed() {
  local s; s=$(job_state "$jid")
  case "$s" in COMPLETED) return 0 ;; FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE)
    fail "job $jid ended $s" ;; esac
  # Slurm holds a requeued job back for the credential lifetime (about 2 min, Reason=BeginTime);
  # a real cluster waits it out, the test moves the begin time to now — but only a few
  # seconds after the requeue: slurmd compares credential times in whole seconds, and a
  # relaunch in the same second as the revocation is killed ("Job credential revoked").
  if [ "$s" = PENDING ] && [ "$(job_field "$jid" Reason)" = BeginTime ]; then
    [ -n "${pending_since:-}" ] || pending_since=$SECONDS
    if (( SECONDS - pending_since >= 5 )); then
      scontrol update JobId="$jid" StartTime=now >/dev/null 2>&1 || true
    fi
  fi
  return 1
}

case "$CASE" in
quantize)
  Q=(--nsamples 8 --ctx 128 --group-size 32 --bits 4)
  mpi 2 "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$WORK/ref" "${Q[@]}" >/dev/null
  rc=0
  MODEL="$M" CALIB="$CAL" OUT="$WORK/out" NSAMPLES=8 CTX=128 GROUP_SIZE=32 BITS=4 \
    timeout 300 sbatch --wait -n 2 --chdir="$WORK" --output="$WORK/job-%j.out" \
    "$SRC/slurm/quantize.sbatch" >"$WORK/sbatch.out" || rc=$?
  [ "$rc" -ne 124 ] || fail "the job did not finish within 300 s"
  [ "$rc" -eq 0 ] || fail "sbatch --wait exited with $rc"
  grep -q "done: $WORK/out" "$WORK"/job-*.out || fail "the job log does not say it is done"
  [ -f "$WORK/out/model.sp.h5" ] || fail "no $WORK/out/model.sp.h5"
  cmp "$WORK/ref/model.sp.h5" "$WORK/out/model.sp.h5" ||
    fail "srun --mpi=pmix (2 tasks) and mpirun -n 2 give different outputs"
  echo "ok: sbatch + srun --mpi=pmix output equals mpirun -n 2"
  ;;
requeue)
  SYN="$(dirname "$SP_BIN")/sp_synth_model"
  [ -x "$SYN" ] || fail "$SYN not built"
  # 12 blocks of about a second each: plenty of blocks left after the first checkpoint.
  "$SYN" --out "$WORK/syn" --hidden 256 --intermediate 688 --layers 12 --heads 4 --kv-heads 2 \
    --vocab 512 --max-pos 1024 --seed 7
  Q=(--nsamples 16 --ctx 256 --group-size 32 --bits 4)
  mpi 2 "$SP_BIN" quantize --model "$WORK/syn" --calib "$CAL" --out "$WORK/ref" "${Q[@]}" >/dev/null
  jid=$(MODEL="$WORK/syn" CALIB="$CAL" OUT="$WORK/out" CKPT_DIR="$WORK/ckpt" CKPT_EVERY=1 \
        NSAMPLES=16 CTX=256 GROUP_SIZE=32 BITS=4 \
        sbatch --parsable -n 2 --chdir="$WORK" --output="$WORK/job-%j.out" \
        "$SRC/slurm/quantize.sbatch") || fail "sbatch failed"
  jid=${jid%%;*}
  wait_for 120 "the first checkpoint ($WORK/ckpt/latest)" test -f "$WORK/ckpt/latest"
  [ "$(job_state "$jid")" = RUNNING ] || fail "job $jid is $(job_state "$jid"), not RUNNING, after its first checkpoint"
  scancel --signal=USR1 --batch "$jid" || fail "scancel --signal=USR1 --batch $jid failed"
  echo "sent SIGUSR1 to job $jid after checkpoint $(cat "$WORK/ckpt/latest")"
  wait_for 300 "job $jid to be requeued, resume and complete" done_or_failed
  restarts=$(job_field "$jid" Restarts)
  log=$(cat "$WORK"/job-"$jid".out)
  grep -q "caught SIGUSR1" <<<"$log" || fail "the batch script never caught SIGUSR1"
  grep -q "preempted: checkpoint in $WORK/ckpt; requeueing" <<<"$log" ||
    fail "the step did not exit with 3 (preempted) or the job was not requeued"
  grep -q "resuming from $WORK/ckpt" <<<"$log" || fail "the requeued job did not resume"
  [ "${restarts:-0}" -ge 1 ] || fail "scontrol reports Restarts=${restarts:-?}, expected >= 1"
  cmp "$WORK/ref/model.sp.h5" "$WORK/out/model.sp.h5" ||
    fail "the preempted + requeued + resumed output differs from the uninterrupted one"
  echo "ok: SIGUSR1 -> checkpoint, exit 3, requeue (Restarts=$restarts), resume; output identical"
  ;;
search)
  Q="$WORK/q"
  mpi 2 "$SP_BIN" quantize --model "$M" --calib "$CAL" --out "$Q" --nsamples 16 --ctx 128 \
    --levels 2,3,4,8 --group-size 32 >/dev/null
  S=(GENERATIONS=40 OFFSPRING=6 STAGES=256,512 SURVIVORS=2,1 CTX=128 SEED=5)
  mpi 2 "$SP_BIN" search --model "$Q" --calib "$CAL" --target-bits 3.0 --out "$WORK/ref.map" \
    --generations 40 --offspring 6 --stages 256,512 --survivors 2,1 --ctx 128 --seed 5 >/dev/null
  jid=$(env "${S[@]}" QDIR="$Q" CALIB="$CAL" TARGET_BITS=3.0 OUT="$WORK/out.map" CKPT_DIR="$WORK/ckpt" \
        sbatch --parsable -n 2 --chdir="$WORK" --output="$WORK/job-%j.out" \
        "$SRC/slurm/search.sbatch") || fail "sbatch failed"
  jid=${jid%%;*}
  wait_for 120 "the first generation's checkpoint ($WORK/ckpt/latest)" test -f "$WORK/ckpt/latest"
  [ "$(job_state "$jid")" = RUNNING ] || fail "job $jid is $(job_state "$jid"), not RUNNING, after its first checkpoint"
  scancel --signal=USR1 --batch "$jid" || fail "scancel --signal=USR1 --batch $jid failed"
  wait_for 300 "job $jid to be requeued, resume and complete" done_or_failed
  log=$(cat "$WORK"/job-"$jid".out)
  grep -q "caught SIGUSR1" <<<"$log" || fail "the batch script never caught SIGUSR1"
  grep -q "preempted: checkpoint in $WORK/ckpt; requeueing" <<<"$log" ||
    fail "the search step did not exit with 3 (preempted) or the job was not requeued"
  grep -q "resuming from $WORK/ckpt" <<<"$log" || fail "the requeued job did not resume"
  cmp "$WORK/ref.map" "$WORK/out.map" ||
    fail "the preempted + requeued + resumed MAP differs from the uninterrupted one"
  echo "ok: search.sbatch: SIGUSR1 -> checkpoint, exit 3, requeue, resume; MAP identical"
  ;;
*) fail "unknown case '$CASE'" ;;
esac
