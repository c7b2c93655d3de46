#!/usr/bin/env bash
# stop.sh — stop a cluster made by slurm/local/start.sh and remove its directory.
#
# Usage: slurm/local/stop.sh [--keep] DIR
#   --keep   stop the daemons but leave DIR (logs) in place
# Jobs still running are cancelled first. The daemons are ended by the PIDs in their pid
# files (TERM, then KILL after 15 s); nothing else is touched. Safe to call twice, and on a
# half-started cluster.
set -uo pipefail

KEEP=0
if [ "${1:-}" = "--keep" ]; then KEEP=1; shift; fi
DIR=${1:-}
[ -n "$DIR" ] || { echo "usage: stop.sh [--keep] DIR" >&2; exit 2; }
[ -d "$DIR" ] || exit 0
DIR=$(cd "$DIR" && pwd)

# A pid file is trusted only if that process is a Slurm daemon started with this DIR's conf.
ours() {
  local pid=$1
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$DIR/slurm.conf"
}

if [ -f "$DIR/slurm.conf" ] && command -v scancel >/dev/null 2>&1; then
  SLURM_CONF="$DIR/slurm.conf" timeout 10 scancel --full --quiet --user=root 2>/dev/null || true
fi

pids=()
for f in "$DIR/slurmd.pid" "$DIR/slurmctld.pid"; do
  [ -f "$f" ] || continue
  pid=$(tr -dc '0-9' <"$f")
  [ -n "$pid" ] && ours "$pid" && { kill -TERM "$pid" 2>/dev/null; pids+=("$pid"); }
done
for _ in $(seq 1 15); do
  alive=0
  for pid in "${pids[@]}"; do ours "$pid" && alive=1; done
  [ "$alive" -eq 0 ] && break
  sleep 1
done
for pid in "${pids[@]}"; do ours "$pid" && kill -KILL "$pid" 2>/dev/null; done
rm -f "$DIR/slurmd.pid" "$DIR/slurmctld.pid"
if [ "$KEEP" -eq 0 ]; then rm -rf "$DIR"; fi
exit 0
