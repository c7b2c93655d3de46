#!/usr/bin/env bash
# run_ckpt.sh — build bench_ckpt if needed, measure the disk's raw sequential write bandwidth
# with dd, run bench_ckpt on 2 ranks, and write the "## Checkpoint engine" section of
# docs/benchmarks.md (other sections are untouched; the file is created when missing).
#
# Usage: bench/run_ckpt.sh [--quick] [--no-doc] [--dir DIR]
#   --quick   64 MiB per rank, 2 iterations: a smoke run, printed, never recorded
#   --no-doc  print only; leave docs/benchmarks.md alone
#   --dir     scratch directory on the disk to measure (default <repo>/build-ckpt-bench);
#             it is created, and removed afterwards
# Environment: SP_BUILD_DIR (default <repo>/build), SP_CKPT_MIB (per rank, default 512, so a
# checkpoint is 1 GiB over the 2 ranks), SP_CKPT_ITERS (default 4), SP_CKPT_COMPUTE (compute
# between checkpoints as a multiple of the synchronous checkpoint time, default 1.5).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECTION="## Checkpoint engine"
MIB="${SP_CKPT_MIB:-512}"
ITERS="${SP_CKPT_ITERS:-4}"
COMPUTE="${SP_CKPT_COMPUTE:-1.5}"
DIR="$ROOT/build-ckpt-bench"
write_doc=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) MIB=64; ITERS=2; write_doc=0 ;;
    --no-doc) write_doc=0 ;;
    --dir) DIR="$2"; shift ;;
    *) echo "usage: $0 [--quick] [--no-doc] [--dir DIR]" >&2; exit 2 ;;
  esac
  shift
done

if [[ ! -f "$BUILD/CMakeCache.txt" ]]; then
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$BUILD" --target bench_ckpt -j"$(nproc)" >/dev/null 2>&1 ||
  { echo "run_ckpt.sh: building bench_ckpt failed" >&2; exit 1; }

mkdir -p "$DIR"
trap 'rm -rf "$DIR/ck" "$DIR/dd.tmp"; rmdir "$DIR" 2>/dev/null || true' EXIT

# Raw sequential write bandwidth of the same disk, 1 GiB (the size of one checkpoint):
# buffered + fsync (the path the engine takes) and O_DIRECT (the device without the page cache).
dd_mbps() {
  local out
  out="$(dd if=/dev/zero of="$DIR/dd.tmp" bs=1M count=1024 "$@" 2>&1 | tail -n1)"
  rm -f "$DIR/dd.tmp"
  sed -n 's/.*, \([0-9.]*\) \([MG]B\)\/s$/\1 \2\/s/p' <<<"$out"
}
dd_fsync_before="$(dd_mbps conv=fsync)"
dd_direct_before="$(dd_mbps oflag=direct)"

MPIEXEC="${MPIEXEC:-mpiexec}"
cmd="OPENBLAS_NUM_THREADS=1 $MPIEXEC -n 2 bench_ckpt --dir DIR/ck --mib $MIB --iters $ITERS --compute $COMPUTE"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
out="$(OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
  "$MPIEXEC" --bind-to none -n 2 "$BUILD/bench_ckpt" --dir "$DIR/ck" --mib "$MIB" \
  --iters "$ITERS" --compute "$COMPUTE")"
dd_fsync_after="$(dd_mbps conv=fsync)"
dd_direct_after="$(dd_mbps oflag=direct)"
echo "$out"
echo "dd 1 GiB buffered+fsync: $dd_fsync_before (before), $dd_fsync_after (after)"
echo "dd 1 GiB O_DIRECT:       $dd_direct_before (before), $dd_direct_after (after)"
[[ $write_doc -eq 1 ]] || exit 0

val() { sed -n "s/^$1 //p" <<<"$out"; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", 100 * a / b }'; }
cpu="$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)"
ncpu="$(nproc)"
disk="$(df -h "$DIR" | awk 'NR == 2 { printf "%s (%s, %s total, %s free), mounted on %s", $1, fs, $2, $4, $6 }' fs="$(df -T "$DIR" | awk 'NR == 2 { print $2 }')")"
detail="$(grep -v '^[A-Z_]* [-0-9.]*$' <<<"$out" | sed 's/^/    /')"
sync_s="$(val SYNC_S)"; blocked="$(val BLOCKED_S)"; blocked_max="$(val BLOCKED_MAX_S)"
bg="$(val BG_MBPS)"; syncbw="$(val SYNC_MBPS)"
ratio="$(val RATIO_PCT)"; ratio_max="$(pct "$blocked_max" "$sync_s")"
comp_iso="$(val COMP_ISO_S)"; comp_lazy="$(val COMP_LAZY_S)"; io_cpu="$(val IO_CPU_S)"
slow="$(awk -v a="$comp_lazy" -v b="$comp_iso" 'BEGIN { printf "%+.0f", 100 * (a / b - 1) }')"

section="$(cat <<EOF
$SECTION

What: \`bench/bench_ckpt.c\` on 2 ranks, engine defaults (uncompressed, so no read-back
verification). Each rank checkpoints $MIB MiB of float32 into one global dataset, $(( 2 * MIB )) MiB
per checkpoint. First $ITERS checkpoints are written synchronously with the same engine (commit +
\`wait_all\`), then $ITERS lazily with simulated compute between them (single-threaded
\`cblas_sgemm\` loops calibrated to $COMPUTE × the synchronous time; the checkpointed buffer
is overwritten after \`sp_ckpt_wait_buffer\`), then $ITERS synchronously again with read-back
verification forced on (the default for compressed checkpoints), to show its cost. Blocked
time = the commit call + the wait before the buffer is next overwritten (the final
\`wait_all\` for the last checkpoint). All figures are the maximum over the 2 ranks.
Goal: blocked ≤ 5% of the synchronous time.

Machine: $cpu, nproc $ncpu; load average before the run: $load_before (a shared machine:
other jobs may run at the same time, so the I/O figures scatter; see the run log).
Disk: $disk.
Command: \`bench/run_ckpt.sh\` (runs \`$cmd\`), $(date -u +%Y-%m-%d).

| | per checkpoint |
|---|---|
| synchronous write (commit + wait_all) | $sync_s s = $syncbw MB/s end to end |
| lazy: main thread blocked, mean (max) | $blocked s ($blocked_max s) |
| **blocked / synchronous, mean (max)** | **$ratio% ($ratio_max%)** |
| lazy: background write (I/O thread time) | $(val IO_LAZY_S) s = $bg MB/s |
| lazy: I/O thread CPU time (busiest rank) | $io_cpu s |
| synchronous, read-back verification off / on | $(val SYNC_NOVERIFY_S) s / $(val SYNC_VERIFY_S) s |
| compute step alone → with a checkpoint in the background | $comp_iso s → $comp_lazy s ($slow%) |
| raw disk, dd 1 GiB buffered + conv=fsync (before / after) | $dd_fsync_before / $dd_fsync_after |
| raw disk, dd 1 GiB oflag=direct (before / after) | $dd_direct_before / $dd_direct_after |

The engine writes through the page cache and fsyncs, so dd with conv=fsync is its ceiling; a
checkpoint also costs a CRC pass over the data before the write, the fsync of every rank,
and the publish (rename, \`latest\`, deleting the checkpoint that falls out of \`keep\`).
With 2 ranks on 2 cores the compute threads use every core, so the I/O threads' CPU time
(CRC, copies into the page cache) and the kernel's write-back slow the compute down: that is
the price of checkpointing from the CPU on a saturated machine, and it shows as compute
slowdown, not as blocked time.

Run log:

$detail
EOF
)"

sp_bench_write_section "$DOC" "$SECTION" "$section"
echo "run_ckpt.sh: updated $DOC"
