#!/usr/bin/env bash
# Start a single-node SLURM (munged + slurmctld + slurmd, all on this machine) for tests.
#
#   sudo bash cluster/start_local_slurm.sh          # install if needed, configure, start, wait
#   sudo bash cluster/start_local_slurm.sh --stop   # stop the daemons this script started
#
# For Debian/Ubuntu machines and containers without systemd (CI runners, docker): the
# daemons are started directly, not as services. Root is required. The configuration is
# the smallest that works: one node called $(hostname -s) with all its CPUs and ~90% of
# its memory, one partition "debug", no cgroups (proctrack/linuxproc, task/none), no
# accounting database. It overwrites /etc/slurm/slurm.conf (a copy of an existing file is
# kept as slurm.conf.bak-simstudy). Do not run this on a machine that is part of a real
# cluster.
#
# Environment: SLURM_TEST_PARTITION (default "debug"), SLURM_TEST_TIMEOUT (seconds to
# wait for the node to become idle, default 60).
set -euo pipefail

PARTITION="${SLURM_TEST_PARTITION:-debug}"
TIMEOUT="${SLURM_TEST_TIMEOUT:-60}"
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
STATE=/var/lib/slurm
LOGS=/var/log/slurm

log() { echo "[start_local_slurm] $*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts daemons)"

stop_daemons() {
  for pidfile in /run/slurmd.pid /run/slurmctld.pid /run/munge/munged.pid; do
    if [ -s "$pidfile" ]; then
      pid=$(cat "$pidfile")
      if kill -0 "$pid" 2>/dev/null; then
        log "stopping pid $pid ($pidfile)"
        kill "$pid" || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      fi
      rm -f "$pidfile"
    fi
  done
}

if [ "${1:-}" = "--stop" ]; then
  stop_daemons
  exit 0
fi

# ---------------------------------------------------------------- packages
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
   || ! command -v sbatch >/dev/null; then
  command -v apt-get >/dev/null || die "slurm is not installed and apt-get is not available"
  log "installing slurm-wlm and munge with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d: packages must not try to start services (no systemd in containers)
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created_policy=1; fi
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
  [ "$created_policy" = 1 ] && rm -f "$policy"
fi

# ---------------------------------------------------------------- munge
if [ ! -s /etc/munge/munge.key ]; then
  log "creating /etc/munge/munge.key"
  mkdir -p /etc/munge
  if command -v mungekey >/dev/null; then mungekey --create --force --keyfile=/etc/munge/munge.key
  else dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; fi
fi
id munge >/dev/null 2>&1 || die "the munge package did not create the 'munge' user"
mkdir -p /run/munge /var/lib/munge /var/log/munge
chown munge:munge /etc/munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge
chmod 0700 /etc/munge /var/lib/munge /var/log/munge
chmod 0755 /run/munge
chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "starting munged"
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
  for _ in $(seq 1 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  munge -n | unmunge >/dev/null || die "munged does not answer"
fi

# ---------------------------------------------------------------- slurm.conf
HOST=$(hostname -s)
CPUS=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc obeys OMP_NUM_THREADS, which workers set to 1
MEM_MB=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
mkdir -p "$CONF_DIR" "$STATE/slurmctld" "$STATE/slurmd" "$LOGS"
NEW=$(mktemp)
cat > "$NEW" <<CONF
# Written by simstudy cluster/start_local_slurm.sh: single-node test cluster.
ClusterName=simstudy-test
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
MinJobAge=60
KillWait=5
Waittime=0
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
if [ -f "$CONF" ] && ! grep -q "simstudy cluster/start_local_slurm.sh" "$CONF"; then
  cp "$CONF" "$CONF.bak-simstudy"
fi
if ! cmp -s "$NEW" "$CONF" 2>/dev/null; then
  log "writing $CONF (node $HOST, $CPUS CPUs, ${MEM_MB} MB)"
  cp "$NEW" "$CONF"
  # a running controller must pick up the new file
  stop_daemons_slurm_only=1
else
  stop_daemons_slurm_only=0
fi
rm -f "$NEW"
chmod 0644 "$CONF"

# ---------------------------------------------------------------- daemons
running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if [ "$stop_daemons_slurm_only" = 1 ]; then
  for pidfile in /run/slurmd.pid /run/slurmctld.pid; do
    if running "$pidfile"; then kill "$(cat "$pidfile")" || true; sleep 1; fi
  done
fi
if ! running /run/slurmctld.pid; then
  log "starting slurmctld"
  slurmctld
fi
if ! running /run/slurmd.pid; then
  log "starting slurmd"
  slurmd
fi

log "waiting for node $HOST to be idle (up to ${TIMEOUT}s)"
deadline=$(( $(date +%s) + TIMEOUT ))
while :; do
  state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null | head -n1 || true)
  case "$state" in
    idle|mixed|allocated) break ;;
    drained*|draining|down*|*drain*)
      scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  if [ "$(date +%s)" -ge "$deadline" ]; then
    sinfo -N -l >&2 || true
    tail -n 20 "$LOGS/slurmctld.log" "$LOGS/slurmd.log" >&2 || true
    die "node $HOST did not become idle (state: ${state:-none})"
  fi
  sleep 1
done
sinfo
log "SLURM is up: partition $PARTITION, node $HOST ($CPUS CPUs, ${MEM_MB} MB)"
