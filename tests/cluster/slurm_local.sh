#!/usr/bin/env bash
# A single-node SLURM cluster on 127.0.0.1 for the cluster test, started by hand (no systemd).
#   slurm_local.sh install   apt-get install slurmctld slurmd slurm-client munge (root, Debian)
#   slurm_local.sh start     munged + slurmctld + slurmd; returns when the node is idle
#   slurm_local.sh stop      stops what start started, by PID, and removes slurm.conf
# One fake GPU (gres gpu, File=/dev/null) so GPU jobs schedule; no accounting daemon, so Snakemake's
# slurm plugin must poll with squeue (config/profiles/slurm sets slurm-status-command: squeue).
# Env: STATE (default ${TMPDIR:-/tmp}/slurm-local), START_TIMEOUT (seconds, default 60).
set -euo pipefail
STATE=${STATE:-${TMPDIR:-/tmp}/slurm-local}
PIDS=$STATE/pids
LOGS=$STATE/log
HOST=$(hostname -s)

install() {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The postinst scripts print "invoke-rc.d: policy-rc.d denied execution": nothing starts by itself.
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge > /dev/null
}

write_config() {
    local cpus mem
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) * 8 / 10 ))
    mkdir -p /etc/slurm "$STATE/spool/ctld" "$STATE/spool/d" "$LOGS" "$PIDS"
    # No cgroups in containers: linuxproc process tracking and no task plugin. Accounting "none" must not
    # be combined with AccountingStorageTRES=gres/gpu (slurmctld refuses to start).
    cat > /etc/slurm/slurm.conf <<CONF
ClusterName=local
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
GresTypes=gpu
MinJobAge=3600
ReturnToService=2
MpiDefault=none
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
    # A gres needs a device file; Count=1 alone leaves the node INVAL.
    printf 'AutoDetect=off\nNodeName=%s Name=gpu File=/dev/null\n' "$HOST" > /etc/slurm/gres.conf
}

start_munge() {
    if [ ! -s /etc/munge/munge.key ]; then
        /usr/sbin/mungekey --create --force
        chown munge:munge /etc/munge/munge.key
    fi
    mkdir -p /run/munge
    chown munge:munge /run/munge
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
    for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
    cp /run/munge/munged.pid "$PIDS/munged.pid"
    munge -n | unmunge > /dev/null
}

start() {
    write_config
    start_munge
    /usr/sbin/slurmctld -D -c > "$LOGS/slurmctld.out" 2>&1 &
    echo $! > "$PIDS/slurmctld.pid"
    /usr/sbin/slurmd -D > "$LOGS/slurmd.out" 2>&1 &
    echo $! > "$PIDS/slurmd.pid"
    local deadline state=""
    deadline=$(( $(date +%s) + ${START_TIMEOUT:-60} ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        for d in slurmctld slurmd; do
            if ! kill -0 "$(cat "$PIDS/$d.pid")" 2> /dev/null; then
                echo "$d exited during start-up:" >&2
                tail -n 20 "$LOGS/$d.out" "$LOGS/$d.log" >&2 || true
                return 1
            fi
        done
        state=$(timeout 5 sinfo -h -N -o %T 2> /dev/null || true)
        [ "$state" = idle ] && break
        sleep 0.2
    done
    if [ "$state" != idle ]; then
        echo "the node is not idle after ${START_TIMEOUT:-60} s (state '$state')" >&2
        tail -n 20 "$LOGS"/*.log >&2 || true
        return 1
    fi
    sinfo -N -o "%N %T %c %m %G"
}

stop() {
    for d in slurmd slurmctld munged; do
        local f="$PIDS/$d.pid" pid
        [ -s "$f" ] || continue
        pid=$(cat "$f")
        if kill "$pid" 2> /dev/null; then
            for _ in $(seq 100); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
            # slurmd ignores SIGTERM once slurmctld is gone
            kill -0 "$pid" 2> /dev/null && kill -9 "$pid" 2> /dev/null || true
        fi
        rm -f "$f"
    done
    # With slurm.conf present and no controller, every snakemake start waits ~10 s in `scontrol show config`
    # (the slurm plugin calls it at import): remove it.
    rm -f /etc/slurm/slurm.conf /etc/slurm/gres.conf
}

"${1:?usage: $0 install|start|stop}"
