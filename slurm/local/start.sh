#!/usr/bin/env bash
# start.sh — a throwaway one-node Slurm cluster on this machine, for tests and for trying the
# sbatch templates. Needs root and the Debian 12 packages slurmctld, slurmd, slurm-client
# (they bring slurm-wlm-basic-plugins, whose mpi_pmix plugin loads libpmix from libpmix-dev).
#
# Usage: slurm/local/start.sh [DIR] [--cpus N] [--mem-mb M] [--timeout S]
#   DIR        where everything lives (slurm.conf, state, spool, logs, pid files); created if
#              missing; default: a new mktemp -d directory
#   --cpus     CPUs the node advertises (default 4; more than the machine has is fine:
#              SlurmdParameters=config_overrides)
#   --mem-mb   RealMemory of the node in MiB (default 4096)
#   --timeout  seconds to wait for the node to become idle (default 60)
#
# The controller and the node daemon listen on two free TCP ports chosen at random, so
# several clusters (e.g. tests run in parallel) never meet. On success it prints, as its last
# line, the environment line to use the cluster:
#     export SLURM_CONF=DIR/slurm.conf
# and DIR/env holds the same line. Stop it with slurm/local/stop.sh DIR.
# Authentication is auth/none: for a private test machine only, never a shared one.
set -euo pipefail

die() { echo "start.sh: $*" >&2; exit 1; }

DIR="" CPUS=4 MEM=4096 TIMEOUT=60
while [ $# -gt 0 ]; do
  case "$1" in
    --cpus) CPUS=${2:?--cpus needs a value}; shift 2 ;;
    --mem-mb) MEM=${2:?--mem-mb needs a value}; shift 2 ;;
    --timeout) TIMEOUT=${2:?--timeout needs a value}; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *) [ -z "$DIR" ] || die "one directory only ('$DIR', then '$1')"; DIR=$1; shift ;;
  esac
done

[ "$(id -u)" -eq 0 ] || die "must run as root (slurmd starts jobs as their users)"
for b in slurmctld slurmd sinfo scontrol; do
  command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] ||
    die "$b not found: apt-get install slurmctld slurmd slurm-client"
done
PLUGDIR=$(dirname "$(find /usr/lib -name 'mpi_pmix*.so' -path '*slurm*' 2>/dev/null | head -1)" 2>/dev/null || true)
[ -n "$PLUGDIR" ] && [ -d "$PLUGDIR" ] || die "Slurm's mpi_pmix plugin not found (package slurm-wlm-basic-plugins)"

if [ -z "$DIR" ]; then DIR=$(mktemp -d "${TMPDIR:-/tmp}/sp-slurm.XXXXXX"); fi
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
[ ! -e "$DIR/slurmctld.pid" ] || die "$DIR already has a running cluster? (stop.sh $DIR first)"
mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"

# Two free ports: random high ports, checked against the listening sockets.
port_free() { ! ss -Htln 2>/dev/null | awk '{print $4}' | grep -Eq "[:.]$1\$"; }
pick_port() {
  local p
  for _ in $(seq 1 200); do
    p=$(( 20000 + RANDOM % 40000 ))
    if port_free "$p" && [ "$p" != "${1:-0}" ]; then echo "$p"; return 0; fi
  done
  die "no free TCP port found"
}
CTLD_PORT=$(pick_port)
SLURMD_PORT=$(pick_port "$CTLD_PORT")
NAME="sp$(basename "$DIR" | tr -dc 'a-zA-Z0-9' | tail -c 8 | tr 'A-Z' 'a-z')"

cat >"$DIR/slurm.conf" <<EOF
# Written by shardpress slurm/local/start.sh: a one-node test cluster. Not for production.
ClusterName=$NAME
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/none
CredType=cred/none
SlurmUser=root
SlurmdUser=root
PluginDir=$PLUGDIR
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=pmix
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
JobRequeue=1
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=10
MinJobAge=300
MessageTimeout=20
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF

export SLURM_CONF="$DIR/slurm.conf"
SLURMCTLD=$(command -v slurmctld || echo /usr/sbin/slurmctld)
SLURMD=$(command -v slurmd || echo /usr/sbin/slurmd)

fail_with_logs() {
  echo "start.sh: $*" >&2
  for f in "$DIR"/log/*.log; do [ -f "$f" ] && { echo "--- $f (last 20 lines)" >&2; tail -20 "$f" >&2; }; done
  "$(dirname "$0")/stop.sh" --keep "$DIR" >/dev/null 2>&1 || true
  exit 1
}

# -c: start clean (no state from an earlier run of this directory); -i: ignore old state.
"$SLURMCTLD" -f "$SLURM_CONF" -c -i >>"$DIR/log/slurmctld.out" 2>&1 || fail_with_logs "slurmctld did not start"
"$SLURMD" -f "$SLURM_CONF" -N localhost >>"$DIR/log/slurmd.out" 2>&1 || fail_with_logs "slurmd did not start"

deadline=$(( $(date +%s) + TIMEOUT ))
state=""
while :; do
  state=$(sinfo -h -N -n localhost -o '%t' 2>/dev/null | head -1 || true)
  case "$state" in idle|idle\*) [ "$state" = idle ] && break ;; esac
  case "$state" in down*|drain*|unk*)
    scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true ;;
  esac
  [ "$(date +%s)" -lt "$deadline" ] || fail_with_logs "the node is not idle after ${TIMEOUT}s (state '${state:-none}')"
  sleep 1
done
echo "export SLURM_CONF=$SLURM_CONF" >"$DIR/env"
echo "local Slurm cluster '$NAME' up in $DIR (slurmctld port $CTLD_PORT, slurmd port $SLURMD_PORT)" >&2
echo "export SLURM_CONF=$SLURM_CONF"
