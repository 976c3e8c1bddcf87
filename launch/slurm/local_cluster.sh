#!/usr/bin/env bash
# A real one-node Slurm (munge + slurmctld + slurmd) on this machine, for the launcher tests and
# for trying the sbatch scripts locally. Needs root and Debian's packages
#   apt-get install slurmctld slurmd slurm-client munge
# Usage: launch/slurm/local_cluster.sh start|stop|status
# `stop` ends only the daemons that `start` launched (their pids are kept in $STATE_DIR).
set -euo pipefail

STATE_DIR=${FMP_SLURM_STATE:-/run/fmpretrain-slurm}
HOST=$(hostname -s)
CONF=/etc/slurm/slurm.conf

start() {
    if sinfo -h -o %t 2>/dev/null | grep -qE "idle|mix|alloc"; then
        echo "a Slurm controller already answers: $(sinfo -h -o '%P %D %t %c CPUs'); leaving it be"
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then echo "local_cluster.sh: needs root" >&2; exit 1; fi
    for bin in munged slurmctld slurmd sbatch; do
        command -v "$bin" >/dev/null || { echo "local_cluster.sh: $bin not installed" >&2; exit 1; }
    done
    mkdir -p "$STATE_DIR" /run/munge /etc/munge /var/log/munge /var/lib/munge \
        /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /etc/slurm
    chown munge:munge /run/munge /etc/munge /var/log/munge /var/lib/munge
    chmod 700 /var/log/munge
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        runuser -u munge -- /usr/sbin/munged
        pgrep -u munge -n munged > "$STATE_DIR/munged.pid"
    fi

    local cpus mem
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
    cat > "$CONF" <<CONF
ClusterName=fmpretrain-local
SlurmctldHost=$HOST
AuthType=auth/munge
CryptoType=crypto/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmUser=root
SlurmdUser=root
ReturnToService=2
JobRequeue=1
MinJobAge=3600
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SchedulerType=sched/backfill
MpiDefault=none
KillWait=30
NodeName=$HOST CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
    /usr/sbin/slurmctld
    /usr/sbin/slurmd
    for _ in $(seq 60); do
        if sinfo -h -o %t 2>/dev/null | grep -q idle; then
            echo "local Slurm is up: $(sinfo -h -o '%P %D %t %c CPUs')"
            return 0
        fi
        sleep 1
    done
    echo "local_cluster.sh: the node did not become idle; see /var/log/slurm/" >&2
    exit 1
}

stop() {
    for daemon in slurmd slurmctld munged; do
        pidfile="$STATE_DIR/$daemon.pid"
        if [ -s "$pidfile" ]; then
            kill "$(cat "$pidfile")" 2>/dev/null || true
            rm -f "$pidfile"
        fi
    done
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) sinfo && squeue ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
