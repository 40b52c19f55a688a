#!/usr/bin/env bash
# A throw-away one-node SLURM cluster on this host, for the tests and for trying hydra/launcher=slurm:
# munged, MariaDB + slurmdbd (accounting: submitit notices cancelled and failed jobs through sacct),
# slurmctld and slurmd, each on a free 127.0.0.1 port under one state folder, started by hand (no systemd).
#
#   scripts/slurm-cluster.sh start [STATE]   installs what is missing (apt, as root), starts, waits until idle
#   scripts/slurm-cluster.sh status [STATE]  which of its daemons run; the node's state
#   scripts/slurm-cluster.sh stop [STATE]    cancels its jobs, stops exactly the processes it started (pids)
#   scripts/slurm-cluster.sh install         only installs what is missing (make setup runs this as root)
#
# STATE defaults to $MLPLAB_SLURM_DIR or /tmp/mlplab-slurm. After start: `source STATE/env` points sbatch,
# squeue, sacct and mlplab's hydra/launcher=slurm at this cluster (it sets SLURM_CONF).
set -euo pipefail

command=${1:-status}
STATE=$(realpath -m "${2:-${MLPLAB_SLURM_DIR:-/tmp/mlplab-slurm}}")
PIDS=$STATE/pids
NODE=$(hostname -s)
DAEMONS="munged mariadbd slurmdbd slurmctld slurmd"  # the order they start in; stopped in reverse

SHELL_EXE=$(readlink /proc/$$/exe)
# No job control: with it, each background child leads its own process group, and setsid(1) then forks, so the
# pid recorded would be setsid's, gone at once, while the daemon runs on unrecorded.
set +m

say() { echo "slurm-cluster: $*" >&2; }
die() { say "error: $*"; exit 1; }

pid_of() { [ -f "$PIDS/$1" ] && cat "$PIDS/$1"; }
# alive NAME: its recorded pid runs, and is still that daemon (a pid may be reused after a reboot).
# No pipe into `grep -q` here: under pipefail, its early exit can fail the pipe by SIGPIPE.
alive() {
  local pid cmdline
  pid=$(pid_of "$1") && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  cmdline=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *"$1"* ]]
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...: until COMMAND succeeds; the daemon's log tail if it never does
  local seconds=$1 what=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ! alive "$what"; then
      tail -n 20 "$STATE/log/$what.log" >&2 2>/dev/null || true
      die "$what exited while starting (log: $STATE/log/$what.log)"
    fi
    [ $SECONDS -lt $deadline ] || { tail -n 20 "$STATE/log/$what.log" >&2 2>/dev/null || true; die "$what did not come up in ${seconds}s"; }
    sleep 0.1
  done
}

launch() {  # launch NAME COMMAND...: in the foreground mode of the daemon, in the background of this script
  local name=$1; shift
  setsid "$@" >>"$STATE/log/$name.log" 2>&1 < /dev/null &
  local pid=$! deadline=$((SECONDS + 10))
  echo "$pid" > "$PIDS/$name"
  # Until it execs, the child is a copy of this script, whose command line does not name the daemon, so alive()
  # would call it dead (seen in CI under load: "munged exited while starting" beside a healthy munged).
  while [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$SHELL_EXE" ] && [ $SECONDS -lt $deadline ]; do sleep 0.02; done
}

install_missing() {
  local missing=()
  command -v munged >/dev/null || missing+=(munge)
  command -v mariadbd >/dev/null || missing+=(mariadb-server)
  command -v slurmdbd >/dev/null || missing+=(slurmdbd)
  { command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null; } || missing+=(slurm-wlm)
  [ ${#missing[@]} -eq 0 ] && return
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || die "missing ${missing[*]}: install them (apt-get install ${missing[*]}) or run this as root"
  say "installing ${missing[*]} (Debian's packages; their services are not started)"
  apt-get update -qq
  # policy-rc.d 101: the packages' own services stay stopped; this script starts its own copies
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d.mlplab && chmod +x /usr/sbin/policy-rc.d.mlplab
  local had_policy=0; [ -e /usr/sbin/policy-rc.d ] && had_policy=1
  [ $had_policy = 1 ] || cp /usr/sbin/policy-rc.d.mlplab /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  [ $had_policy = 1 ] || rm -f /usr/sbin/policy-rc.d
  rm -f /usr/sbin/policy-rc.d.mlplab
}

write_configs() {
  local ctld_port=$1 slurmd_port=$2 dbd_port=$3 db_port=$4 db_pass=$5
  local cpus mem
  cpus=$(nproc)
  mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  cat > "$STATE/slurm.conf" <<EOF
# Written by scripts/slurm-cluster.sh: a one-node cluster on $NODE, state in $STATE.
ClusterName=mlplab
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$STATE/munge/munge.socket,cred_expire=5
# cred_expire: a requeued job waits this long (+1 s) before it may start again (SLURM: 120 s; 5 is its least)
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MessageTimeout=10
KillWait=10
MinJobAge=60
JobRequeue=1
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$dbd_port
AccountingStoragePass=$STATE/munge/munge.socket
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
  cat > "$STATE/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$STATE/munge/munge.socket
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$dbd_port
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$db_port
StorageUser=slurm
StoragePass=$db_pass
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$STATE/slurmdbd.conf"
  cat > "$STATE/env" <<EOF
# source this file: sbatch, squeue, sacct and hydra/launcher=slurm then use the cluster in $STATE
export SLURM_CONF=$STATE/slurm.conf
EOF
}

start() {
  [ "$(id -u)" = 0 ] || die "the throw-away cluster runs its daemons as root (slurmd starts jobs as their user): run it as root"
  if alive slurmctld && alive slurmd; then say "already running ($STATE)"; status; return; fi
  [ -d "$PIDS" ] && stop_daemons quiet
  install_missing
  trap 'say "start failed: stopping what it started"; stop_daemons quiet' EXIT  # nothing half-started stays behind
  rm -rf "$STATE"
  mkdir -p "$PIDS" "$STATE"/{log,run,ctld,slurmd,munge,mysql}
  chmod 700 "$STATE/munge"
  local ctld_port slurmd_port dbd_port db_port db_pass
  ctld_port=$(free_port); slurmd_port=$(free_port); dbd_port=$(free_port); db_port=$(free_port)
  db_pass=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
  write_configs "$ctld_port" "$slurmd_port" "$dbd_port" "$db_port" "$db_pass"

  mungekey --create --keyfile="$STATE/munge/munge.key" >/dev/null 2>&1 \
    || dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$STATE/munge/munge.key"
  launch munged munged --foreground --force --key-file="$STATE/munge/munge.key" \
    --socket="$STATE/munge/munge.socket" --pid-file="$STATE/run/munged.pid" \
    --seed-file="$STATE/munge/munge.seed" --log-file="$STATE/log/munged.log"
  wait_for 10 munged test -S "$STATE/munge/munge.socket"

  mariadb-install-db --no-defaults --datadir="$STATE/mysql" --user=root --auth-root-authentication-method=socket \
    --skip-test-db >"$STATE/log/mariadb-install.log" 2>&1 || { tail "$STATE/log/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
  launch mariadbd mariadbd --no-defaults --datadir="$STATE/mysql" --socket="$STATE/run/mysql.sock" \
    --port="$db_port" --bind-address=127.0.0.1 --user=root --pid-file="$STATE/run/mariadbd.pid" \
    --log-error="$STATE/log/mariadbd.log" --skip-name-resolve --innodb-buffer-pool-size=64M
  wait_for 60 mariadbd mariadb --no-defaults --socket="$STATE/run/mysql.sock" -u root -e 'SELECT 1'
  mariadb --no-defaults --socket="$STATE/run/mysql.sock" -u root <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$db_pass';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
EOF

  launch slurmdbd env SLURM_CONF="$STATE/slurm.conf" slurmdbd -D  # reads slurmdbd.conf beside SLURM_CONF
  wait_for 60 slurmdbd env SLURM_CONF="$STATE/slurm.conf" sacctmgr -i -n list cluster
  # the cluster and a user for accounting (slurmctld registers the cluster itself; root's association lets it run jobs)
  SLURM_CONF="$STATE/slurm.conf" sacctmgr -i -Q add cluster mlplab >/dev/null 2>&1 || true
  export SLURM_CONF="$STATE/slurm.conf"
  launch slurmctld slurmctld -D -i -f "$STATE/slurm.conf"
  wait_for 30 slurmctld scontrol ping
  launch slurmd slurmd -D -f "$STATE/slurm.conf"
  wait_for 30 slurmd sh -c "sinfo -h -n '$NODE' -o %T | grep -qx idle"
  trap - EXIT
  say "up: node $NODE idle; source $STATE/env to use it"
  echo "export SLURM_CONF=$STATE/slurm.conf"
}

stop_daemons() {
  local quiet=${1:-}
  if alive slurmctld; then  # its jobs first, so no job step outlives the cluster
    SLURM_CONF="$STATE/slurm.conf" scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
    local deadline=$((SECONDS + 15))
    while [ -n "$(SLURM_CONF="$STATE/slurm.conf" squeue -h -o %A 2>/dev/null)" ] && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
  fi
  # SLURM's daemons together, then what they stood on (each takes ~2 s to stop)
  stop_group "$quiet" slurmd slurmctld slurmdbd
  stop_group "$quiet" mariadbd munged
}

stop_group() {  # stop_group QUIET NAME...: SIGTERM to each, SIGKILL to any still there after 15 s
  local quiet=$1; shift
  local name pid pids=()
  for name in "$@"; do
    pid=$(pid_of "$name") || continue
    if alive "$name"; then kill -TERM "$pid" 2>/dev/null || true; pids+=("$name:$pid"); fi
  done
  local deadline=$((SECONDS + 15)) entry
  for entry in "${pids[@]}"; do
    pid=${entry#*:}
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    [ -n "$quiet" ] || say "stopped ${entry%%:*} (pid $pid)"
  done
  for name in "$@"; do rm -f "$PIDS/$name"; done
}

stop() {
  [ -d "$PIDS" ] || { say "not running ($STATE)"; return; }
  stop_daemons
}

status() {
  [ -d "$PIDS" ] || { say "not running ($STATE)"; return 1; }
  local name running=0
  for name in $DAEMONS; do
    if alive "$name"; then echo "$name: running (pid $(pid_of "$name"))"; running=$((running + 1))
    else echo "$name: stopped"; fi
  done
  if alive slurmctld; then SLURM_CONF="$STATE/slurm.conf" sinfo -h -o "node %n: %T" 2>/dev/null || true; fi
  [ $running -eq 5 ]
}

case "$command" in
  install) install_missing ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "unknown command '$command': use start, stop, status or install" ;;
esac
