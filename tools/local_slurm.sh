#!/usr/bin/env bash
# Single-node SLURM cluster (Debian slurm-wlm + munge) for tests: start | stop | status.
#
#   start   install slurm-wlm + munge if missing (apt), write the config for this host, start munged (unless a
#           working munged is already there), slurmctld and slurmd, wait until `sinfo` shows the node idle.
#           The PIDs of exactly the daemons it started are recorded in $LOCAL_SLURM_STATE (default
#           /var/tmp/local_slurm). Already running -> no-op.
#   stop    cancel the cluster's jobs, kill exactly the recorded PIDs (never by name), remove the config and state.
#   status  daemons and `sinfo`; exit 0 when the node is up, 3 when the cluster is not running.
#
# Exit codes: 0 ok, 1 error, 3 not running (status), 77 skipped: cannot run here (not root, no apt-get, apt failed).
# Env: LOCAL_SLURM_STATE (state dir), LOCAL_SLURM_TIMEOUT (seconds to wait for the node, default 90).
set -euo pipefail

STATE=${LOCAL_SLURM_STATE:-/var/tmp/local_slurm}
TIMEOUT=${LOCAL_SLURM_TIMEOUT:-90}
CONF=/etc/slurm/slurm.conf
MARKER="# written by tools/local_slurm.sh"
MUNGE_KEY=/etc/munge/munge.key
SKIP=77

log() { echo "local_slurm: $*"; }
die() { echo "local_slurm: ERROR: $*" >&2; exit 1; }
skip() { echo "local_slurm: SKIP: $*"; exit "$SKIP"; }

# pid_alive NAME: true when $STATE/NAME.pid names a live process whose command is NAME.
pid_alive() {
    local f="$STATE/$1.pid" pid
    [[ -s $f ]] || return 1
    pid=$(<"$f")
    [[ -r /proc/$pid/comm && $(<"/proc/$pid/comm") == "$1" ]]
}

# foreign_daemon NAME: print the PID of a running NAME that this script did not start (detection only).
foreign_daemon() {
    local own="" p
    [[ -s $STATE/$1.pid ]] && own=$(<"$STATE/$1.pid")
    for p in /proc/[0-9]*; do
        [[ -r $p/comm && $(<"$p/comm" 2>/dev/null) == "$1" && ${p#/proc/} != "$own" ]] && { echo "${p#/proc/}"; return 0; }
    done
    return 1
}

node_state() { sinfo -h -N -o '%T' 2>/dev/null | head -n1 || true; }

install_packages() {
    local missing=()
    command -v munged >/dev/null || [[ -x /usr/sbin/munged ]] || missing+=(munge)
    [[ -x /usr/sbin/slurmctld && -x /usr/sbin/slurmd ]] && command -v sbatch >/dev/null || missing+=(slurm-wlm)
    ((${#missing[@]} == 0)) && return 0
    command -v apt-get >/dev/null || skip "slurm-wlm/munge are not installed and apt-get is not available"
    log "installing ${missing[*]} (apt-get)"
    if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >"$STATE/apt.log" 2>&1 ||
           { apt-get update -q >>"$STATE/apt.log" 2>&1 &&
             DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >>"$STATE/apt.log" 2>&1; }; }; then
        tail -n 5 "$STATE/apt.log" >&2
        skip "apt-get install ${missing[*]} failed (log: $STATE/apt.log)"
    fi
}

write_config() {
    local host cpus mem_mb
    host=$(hostname -s)
    cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc honours OMP_NUM_THREADS
    mem_mb=$(awk '/^MemTotal:/ {m = int($2 / 1024); print (m > 2048 ? m - 1024 : int(m * 0.8))}' /proc/meminfo)
    if [[ -e $CONF ]] && ! grep -qxF "$MARKER" "$CONF"; then
        die "$CONF exists and was not written by this script; move it away first"
    fi
    mkdir -p /etc/slurm "$STATE/spool/slurmd" "$STATE/spool/slurmctld" "$STATE/log"
    cat >"$CONF" <<EOF
$MARKER
# state, logs and PID files in $STATE; removed by 'tools/local_slurm.sh stop'
ClusterName=local
SlurmctldHost=$host
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmUser=root
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmdSpoolDir=$STATE/spool/slurmd
StateSaveLocation=$STATE/spool/slurmctld
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ReturnToService=2
MpiDefault=none
KillWait=10
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    log "wrote $CONF (node $host, CPUs=$cpus, RealMemory=${mem_mb}MB)"
}

start_munge() {
    if pid_alive munged; then return 0; fi
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        log "using the munged already running (not started here, will not be stopped)"
        return 0
    fi
    if [[ ! -s $MUNGE_KEY ]]; then
        mkdir -p /etc/munge
        head -c 1024 /dev/urandom >"$MUNGE_KEY"
        log "created $MUNGE_KEY"
    fi
    chown munge:munge "$MUNGE_KEY" && chmod 400 "$MUNGE_KEY"
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    # munged runs as the munge user, so its own PID file lives in /run/munge; copy it into the state dir.
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid ||
        die "munged failed to start (see /var/log/munge/munged.log)"
    local i
    for ((i = 0; i < 50; i++)); do [[ -s /run/munge/munged.pid ]] && break; sleep 0.1; done
    cp /run/munge/munged.pid "$STATE/munged.pid"
    pid_alive munged || die "munged exited right after start (see /var/log/munge/munged.log)"
    munge -n | unmunge >/dev/null || die "munged is running but munge/unmunge fails"
}

# start_daemon NAME: start /usr/sbin/NAME (it daemonises and writes $STATE/NAME.pid).
start_daemon() {
    local name=$1 pid i
    pid_alive "$name" && return 0
    if pid=$(foreign_daemon "$name"); then
        die "a $name not started by this script is running (pid $pid); stop it first"
    fi
    rm -f "$STATE/$name.pid"
    "/usr/sbin/$name" -f "$CONF" || die "$name failed to start (log: $STATE/log/$name.log)"
    for ((i = 0; i < 100; i++)); do pid_alive "$name" && return 0; sleep 0.1; done
    tail -n 20 "$STATE/log/$name.log" >&2 || true
    die "$name did not come up (log: $STATE/log/$name.log)"
}

cmd_start() {
    [[ $(id -u) == 0 ]] || skip "must run as root to install and run slurm daemons (uid $(id -u))"
    if pid_alive slurmctld && pid_alive slurmd && [[ $(node_state) == idle* || $(node_state) == mix* ||
            $(node_state) == alloc* ]]; then
        log "already running (state $STATE)"
        return 0
    fi
    mkdir -p "$STATE"
    install_packages
    pid_alive slurmctld || write_config
    start_munge
    # slurmctld keeps job state across restarts; a fresh cluster starts from an empty queue.
    pid_alive slurmctld || rm -rf "${STATE:?}/spool/slurmctld/"*
    start_daemon slurmctld
    start_daemon slurmd
    local t0=$SECONDS s
    while :; do
        s=$(node_state)
        [[ $s == idle* ]] && break
        if ((SECONDS - t0 >= TIMEOUT)); then
            sinfo -R >&2 || true
            tail -n 20 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" >&2 || true
            die "node not idle after ${TIMEOUT}s (state '${s:-none}'); run '$0 stop' to clean up"
        fi
        sleep 1
    done
    log "cluster up: $(sinfo -h -N -o '%N %T CPUs=%c Mem=%mMB')"
}

# kill_recorded NAME: TERM then KILL the recorded PID of NAME, only if it is still that daemon.
kill_recorded() {
    local name=$1 pid i
    if pid_alive "$name"; then
        pid=$(<"$STATE/$name.pid")
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do pid_alive "$name" || break; sleep 0.1; done
        if pid_alive "$name"; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
        log "stopped $name (pid $pid)"
    fi
    rm -f "$STATE/$name.pid"
}

cmd_stop() {
    [[ -d $STATE ]] || { log "not running (no $STATE)"; return 0; }
    [[ $(id -u) == 0 ]] || die "must run as root to stop the daemons"
    if pid_alive slurmctld; then
        local jobs i
        jobs=$(squeue -h -o %i 2>/dev/null || true)
        if [[ -n $jobs ]]; then
            log "cancelling jobs: $(echo $jobs)"
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for ((i = 0; i < 30; i++)); do [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break; sleep 1; done
        fi
    fi
    kill_recorded slurmd
    kill_recorded slurmctld
    kill_recorded munged
    if [[ -e $CONF ]] && grep -qxF "$MARKER" "$CONF"; then rm -f "$CONF"; fi
    rm -rf "${STATE:?}"
    log "stopped; removed $STATE and $CONF"
}

cmd_status() {
    local name up=0
    for name in munged slurmctld slurmd; do
        if pid_alive "$name"; then log "$name running (pid $(<"$STATE/$name.pid"))"
        else log "$name not started by this script"; fi
    done
    if pid_alive slurmctld && pid_alive slurmd; then
        sinfo -N -o '%N %T %c %m' && up=1
        squeue || true
    fi
    ((up)) || exit 3
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
