#!/usr/bin/env bash
# Local SLURM cluster (Debian slurm-wlm + munge) for tests: start [--nodes N] | stop | status.
#
#   start   install slurm-wlm + munge if missing (apt), write the config, start munged (unless a working munged is
#           already there), slurmctld and the slurmd(s), wait until `sinfo` shows every node idle.
#           --nodes 1 (default): one node named after this host, daemons in the host's namespaces.
#           --nodes N (N >= 2): N nodes lsnode1..lsnodeN on this machine, each slurmd in its own network and UTS
#           namespace (`ip netns` lslurm1..N, hostname = node name) with its own address on a private bridge
#           (lslurm0, $LOCAL_SLURM_SUBNET.0/24; slurmctld on .1, node i on .(10+i)). No forwarding, no NAT, no
#           default route: the nodes reach each other and slurmctld, nothing else.
#           The PIDs of exactly the daemons it started are recorded in $LOCAL_SLURM_STATE (default
#           /var/tmp/local_slurm). Already running with the same node count -> no-op; with another -> error.
#   stop    cancel the cluster's jobs, kill exactly the recorded PIDs (never by name), remove the config, state,
#           namespaces, bridge and /etc/netns/lslurm* it made.
#   status  daemons and `sinfo`; exit 0 when every node is up, 3 when the cluster is not running.
#
# Exit codes: 0 ok, 1 error, 3 not running (status), 77 skipped: cannot run here (not root, no apt-get, apt failed,
# and for --nodes >= 2: no `ip`/`unshare` or network namespaces not permitted).
# Env: LOCAL_SLURM_STATE (state dir), LOCAL_SLURM_TIMEOUT (seconds to wait for the nodes, default 90),
#      LOCAL_SLURM_NODES (default for --nodes, 1), LOCAL_SLURM_SUBNET (first three octets, default 10.213.7).
set -euo pipefail

STATE=${LOCAL_SLURM_STATE:-/var/tmp/local_slurm}
TIMEOUT=${LOCAL_SLURM_TIMEOUT:-90}
NODES=${LOCAL_SLURM_NODES:-1}
SUBNET=${LOCAL_SLURM_SUBNET:-10.213.7}
CONF=/etc/slurm/slurm.conf
MARKER="# written by tools/local_slurm.sh"
MUNGE_KEY=/etc/munge/munge.key
BRIDGE=lslurm0
NS_PREFIX=lslurm      # network namespaces lslurm1..N; host ends of their veth pairs lslurm1h..Nh
NODE_PREFIX=lsnode    # node names and UTS hostnames in multi-node mode
SKIP=77

log() { echo "local_slurm: $*"; }
die() { echo "local_slurm: ERROR: $*" >&2; exit 1; }
skip() { echo "local_slurm: SKIP: $*"; exit "$SKIP"; }

# pid_alive FILE_STEM [COMM]: true when $STATE/FILE_STEM.pid names a live process whose command is COMM
# (default FILE_STEM).
pid_alive() {
    local f="$STATE/$1.pid" comm=${2:-$1} pid
    [[ -s $f ]] || return 1
    pid=$(<"$f")
    [[ -r /proc/$pid/comm && $(<"/proc/$pid/comm") == "$comm" ]]
}

# foreign_daemon NAME: print the PID of a running NAME that this script did not start (detection only).
foreign_daemon() {
    local own=" " f p
    for f in "$STATE"/*.pid; do [[ -s $f ]] && own+="$(<"$f") "; done
    for p in /proc/[0-9]*; do
        [[ -r $p/comm && $(<"$p/comm" 2>/dev/null) == "$1" && $own != *" ${p#/proc/} "* ]] &&
            { echo "${p#/proc/}"; return 0; }
    done
    return 1
}

# The node names of the configured cluster (one per line).
node_names() {
    local n i
    n=$(<"$STATE/nodes")
    if ((n == 1)); then hostname -s; else for ((i = 1; i <= n; i++)); do echo "$NODE_PREFIX$i"; done; fi
}

# slurmd_stem NODE: the PID file stem of NODE's slurmd (SlurmdPidFile=$STATE/slurmd-%n.pid in multi-node mode).
slurmd_stem() { if (($(<"$STATE/nodes") == 1)); then echo slurmd; else echo "slurmd-$1"; fi; }

all_slurmd_alive() {
    local node
    [[ -s $STATE/nodes ]] || return 1
    for node in $(node_names); do pid_alive "$(slurmd_stem "$node")" slurmd || return 1; done
}

# nodes_ready: every node idle (or running jobs) according to sinfo.
nodes_ready() {
    local states
    states=$(sinfo -h -N -o '%T' 2>/dev/null) || return 1
    [[ -n $states ]] && (($(wc -l <<<"$states") == $(<"$STATE/nodes"))) &&
        ! grep -qvE '^(idle|mix|alloc)' <<<"$states"
}

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

# check_namespaces: skip (77) unless this machine lets us make network + UTS namespaces, veth pairs and a bridge.
check_namespaces() {
    command -v ip >/dev/null || skip "--nodes $NODES needs iproute2's 'ip' (apt-get install iproute2)"
    command -v unshare >/dev/null && command -v nsenter >/dev/null || skip "--nodes $NODES needs util-linux's unshare and nsenter"
    local probe="${NS_PREFIX}probe$$" err
    if ! err=$(ip netns add "$probe" 2>&1); then skip "network namespaces not permitted here: $err"; fi
    if ! err=$(nsenter --net="/run/netns/$probe" unshare --mount --uts --propagation private -- \
            sh -c 'mount --bind /etc/hostname /etc/hostname && hostname probe' 2>&1); then
        ip netns del "$probe" 2>/dev/null || true
        skip "mount/UTS namespaces not permitted here: $err"
    fi
    if ! err=$(ip link add "${NS_PREFIX}probe" type veth peer name eth0 netns "$probe" 2>&1); then
        ip netns del "$probe" 2>/dev/null || true
        skip "veth pairs not permitted here: $err"
    fi
    ip link del "${NS_PREFIX}probe" 2>/dev/null || true
    ip netns del "$probe"
}

# net_down: remove the bridge, veth pairs, namespaces and /etc/netns files this script makes (by their fixed names).
net_down() {
    local ns
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$NS_PREFIX[0-9]+$" || true); do
        ip link del "${ns}h" 2>/dev/null || true
        ip netns del "$ns" 2>/dev/null || true
        rm -rf "/etc/netns/${ns:?}"
    done
    ip link del "$BRIDGE" 2>/dev/null || true
    rmdir /etc/netns 2>/dev/null || true  # only when empty
}

# net_up: bridge lslurm0 ($SUBNET.1/24) and, per node i, namespace lslurm<i> with eth0 = $SUBNET.(10+i) and an
# /etc/netns/lslurm<i>/hosts (bind-mounted over the node's /etc/hosts) naming every node and slurmctld.
net_up() {
    local i ns hosts host
    host=$(hostname -s)
    if ip -o -4 addr show | grep -v " $BRIDGE " | grep -q " $SUBNET\."; then
        die "subnet $SUBNET.0/24 is already in use on this machine; set LOCAL_SLURM_SUBNET to a free one"
    fi
    net_down
    ip link add "$BRIDGE" type bridge
    ip addr add "$SUBNET.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    hosts=$(printf '127.0.0.1 localhost\n%s.1 %s\n' "$SUBNET" "$host")
    for ((i = 1; i <= NODES; i++)); do hosts+=$(printf '\n%s.%d %s%d' "$SUBNET" $((10 + i)) "$NODE_PREFIX" "$i"); done
    for ((i = 1; i <= NODES; i++)); do
        ns=$NS_PREFIX$i
        ip netns add "$ns"
        ip link add "${ns}h" type veth peer name eth0 netns "$ns"
        ip link set "${ns}h" master "$BRIDGE" up
        ip -n "$ns" addr add "$SUBNET.$((10 + i))/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link set lo up
        mkdir -p "/etc/netns/$ns"
        echo "$hosts" >"/etc/netns/$ns/hosts"
    done
    log "network: bridge $BRIDGE $SUBNET.1/24, nodes $(for ((i = 1; i <= NODES; i++)); do
        printf '%s%d=%s.%d ' "$NODE_PREFIX" "$i" "$SUBNET" $((10 + i)); done)"
}

write_config() {
    local host cpus mem_mb nodes_line part_nodes ctl_host slurmd_files
    host=$(hostname -s)
    cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc honours OMP_NUM_THREADS
    mem_mb=$(awk '/^MemTotal:/ {m = int($2 / 1024); print (m > 2048 ? m - 1024 : int(m * 0.8))}' /proc/meminfo)
    if [[ -e $CONF ]] && ! grep -qxF "$MARKER" "$CONF"; then
        die "$CONF exists and was not written by this script; move it away first"
    fi
    mkdir -p /etc/slurm "$STATE/spool/slurmctld" "$STATE/log"
    if ((NODES == 1)); then
        mkdir -p "$STATE/spool/slurmd"
        ctl_host=$host
        slurmd_files="SlurmdPidFile=$STATE/slurmd.pid
SlurmdSpoolDir=$STATE/spool/slurmd
SlurmdLogFile=$STATE/log/slurmd.log"
        nodes_line="NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN"
        part_nodes=$host
    else
        # Every node sees all of this machine's CPUs and memory; split the memory so the totals stay honest.
        mem_mb=$((mem_mb / NODES))
        ctl_host="$host($SUBNET.1)"
        slurmd_files="SlurmdPidFile=$STATE/slurmd-%n.pid
SlurmdSpoolDir=$STATE/spool/slurmd-%n
SlurmdLogFile=$STATE/log/slurmd-%n.log"
        nodes_line=""
        local i
        for ((i = 1; i <= NODES; i++)); do
            mkdir -p "$STATE/spool/slurmd-$NODE_PREFIX$i"
            nodes_line+="NodeName=$NODE_PREFIX$i NodeAddr=$SUBNET.$((10 + i)) CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
"
        done
        part_nodes="$NODE_PREFIX[1-$NODES]"
    fi
    cat >"$CONF" <<CONF_EOF
$MARKER
# state, logs and PID files in $STATE; removed by 'tools/local_slurm.sh stop'
ClusterName=local
SlurmctldHost=$ctl_host
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmUser=root
SlurmctldPidFile=$STATE/slurmctld.pid
StateSaveLocation=$STATE/spool/slurmctld
SlurmctldLogFile=$STATE/log/slurmctld.log
$slurmd_files
ReturnToService=2
MpiDefault=none
KillWait=10
${nodes_line%$'\n'}
PartitionName=debug Nodes=$part_nodes Default=YES MaxTime=INFINITE State=UP
CONF_EOF
    log "wrote $CONF ($NODES node(s), CPUs=$cpus, RealMemory=${mem_mb}MB each)"
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

# start_daemon STEM LOG CMD...: run CMD (a slurm daemon that daemonises and writes $STATE/STEM.pid), wait for it.
start_daemon() {
    local stem=$1 logf=$2 i
    shift 2
    pid_alive "$stem" "${stem%%-*}" && return 0
    rm -f "$STATE/$stem.pid"
    "$@" || die "$stem failed to start (log: $logf)"
    for ((i = 0; i < 100; i++)); do pid_alive "$stem" "${stem%%-*}" && return 0; sleep 0.1; done
    tail -n 20 "$logf" >&2 || true
    die "$stem did not come up (log: $logf)"
}

start_slurmds() {
    local node i pid
    if ((NODES == 1)); then
        start_daemon slurmd "$STATE/log/slurmd.log" /usr/sbin/slurmd -f "$CONF"
        return
    fi
    for ((i = 1; i <= NODES; i++)); do
        node=$NODE_PREFIX$i
        # Inside the node's network namespace: a private mount namespace with the node's /etc/hosts bind-mounted
        # and a UTS namespace whose hostname is the node name (slurmd finds its node by hostname; the job's tasks
        # inherit all three). Not `ip netns exec`: it remounts /sys, hiding the cgroup mounts slurmd needs.
        start_daemon "slurmd-$node" "$STATE/log/slurmd-$node.log" \
            nsenter --net="/run/netns/$NS_PREFIX$i" unshare --mount --uts --propagation private -- \
            sh -c "mount --bind /etc/netns/$NS_PREFIX$i/hosts /etc/hosts && hostname $node && exec /usr/sbin/slurmd -f $CONF"
    done
}

cmd_start() {
    [[ $(id -u) == 0 ]] || skip "must run as root to install and run slurm daemons (uid $(id -u))"
    [[ $NODES =~ ^[1-9][0-9]*$ ]] || die "--nodes must be a positive integer, got '$NODES'"
    if [[ -s $STATE/nodes ]] && pid_alive slurmctld && all_slurmd_alive && nodes_ready; then
        (($(<"$STATE/nodes") == NODES)) ||
            die "already running with $(<"$STATE/nodes") node(s); run '$0 stop' first to start $NODES"
        log "already running with $NODES node(s) (state $STATE)"
        return 0
    fi
    mkdir -p "$STATE"
    install_packages
    ((NODES == 1)) || check_namespaces
    local pid
    if ! pid_alive slurmctld; then
        for d in slurmctld slurmd; do
            if pid=$(foreign_daemon $d); then die "a $d not started by this script is running (pid $pid); stop it first"; fi
        done
        echo "$NODES" >"$STATE/nodes"
        write_config
        # slurmctld keeps job state across restarts; a fresh cluster starts from an empty queue.
        rm -rf "${STATE:?}/spool/slurmctld/"*
    elif (($(<"$STATE/nodes") != NODES)); then
        die "slurmctld is running for $(<"$STATE/nodes") node(s); run '$0 stop' first to start $NODES"
    fi
    ((NODES == 1)) || all_slurmd_alive || net_up
    start_munge
    start_daemon slurmctld "$STATE/log/slurmctld.log" /usr/sbin/slurmctld -f "$CONF"
    start_slurmds
    local t0=$SECONDS
    until nodes_ready; do
        if ((SECONDS - t0 >= TIMEOUT)); then
            sinfo -N -R >&2 || true
            tail -n 20 "$STATE"/log/*.log >&2 || true
            die "nodes not idle after ${TIMEOUT}s ($(sinfo -h -N -o '%N=%T' 2>/dev/null | tr '\n' ' ')); run '$0 stop' to clean up"
        fi
        sleep 1
    done
    log "cluster up: $(sinfo -h -N -o '%N %T CPUs=%c Mem=%mMB' | paste -sd ';' | sed 's/;/; /g')"
}

# kill_recorded STEM: TERM then KILL the recorded PID of STEM, only if it is still that daemon.
kill_recorded() {
    local stem=$1 comm=${1%%-*} pid i
    if pid_alive "$stem" "$comm"; then
        pid=$(<"$STATE/$stem.pid")
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do pid_alive "$stem" "$comm" || break; sleep 0.1; done
        if pid_alive "$stem" "$comm"; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
        log "stopped $stem (pid $pid)"
    fi
    rm -f "$STATE/$stem.pid"
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
    local f
    for f in "$STATE"/slurmd*.pid; do [[ -e $f ]] && kill_recorded "$(basename "$f" .pid)"; done
    kill_recorded slurmctld
    kill_recorded munged
    if [[ -s $STATE/nodes ]] && (($(<"$STATE/nodes") > 1)); then net_down; fi
    if [[ -e $CONF ]] && grep -qxF "$MARKER" "$CONF"; then rm -f "$CONF"; fi
    rm -rf "${STATE:?}"
    log "stopped; removed $STATE and $CONF"
}

cmd_status() {
    local up=0 node
    pid_alive munged && log "munged running (pid $(<"$STATE/munged.pid"))" || log "munged not started by this script"
    pid_alive slurmctld && log "slurmctld running (pid $(<"$STATE/slurmctld.pid"))" ||
        log "slurmctld not started by this script"
    if [[ -s $STATE/nodes ]]; then
        for node in $(node_names); do
            if pid_alive "$(slurmd_stem "$node")" slurmd; then
                log "slurmd for $node running (pid $(<"$STATE/$(slurmd_stem "$node").pid"))"
            else log "slurmd for $node not running"; fi
        done
    fi
    if pid_alive slurmctld && all_slurmd_alive; then
        log "nodes: $(<"$STATE/nodes")"
        sinfo -N -o '%N %T %c %m' && up=1
        squeue || true
    fi
    ((up)) || exit 3
}

cmd=${1:-}
shift || true
while (($#)); do
    case $1 in
        --nodes) NODES=${2:?--nodes needs a number}; shift 2 ;;
        --nodes=*) NODES=${1#*=}; shift ;;
        *) echo "usage: $0 start [--nodes N]|stop|status" >&2; exit 2 ;;
    esac
done
case $cmd in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 start [--nodes N]|stop|status" >&2; exit 2 ;;
esac
