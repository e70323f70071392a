#!/usr/bin/env bash
# A real, single-node SLURM cluster on this machine, for testing the workflow
# with `snakemake --profile profiles/slurm`.
#
#   tests/slurm/cluster.sh start [--install]
#                                   start munged, slurmctld and slurmd, wait for
#                                   the node; exits 3 naming the missing Debian
#                                   packages unless --install (apt-get) is given
#   tests/slurm/cluster.sh stop [--purge]
#                                   cancel jobs, stop the daemons, remove the
#                                   /etc/slurm/slurm.conf symlink; --purge also
#                                   deletes the state folder
#   tests/slurm/cluster.sh status   exit 0 if the cluster answers, else 1
#   tests/slurm/cluster.sh env      print the export lines (eval "$(... env)")
#
# Everything (config, munge key, sockets, pid files, logs, spool and state)
# lives in one folder: ${DICOMPREP_SLURM_DIR:-/tmp/dicomprep-slurm}.
# Ports: ${DICOMPREP_SLURMCTLD_PORT:-16817} and ${DICOMPREP_SLURMD_PORT:-16818}
# (not the SLURM defaults, so a real installation on the same host is not hit).
#
# start and stop must run as root (Debian packages, daemons running as root).
# The ports and /etc/slurm/slurm.conf are machine-wide, so only one cluster can
# run at a time: tests/test_slurm.py holds an flock on $MACHINE_LOCK (below)
# from start to stop, and so should any script that starts one, e.g.
#   flock /tmp/dicomprep-slurm.lock sh -c 'cluster.sh start && ... ; cluster.sh stop'
# Jobs run as the submitting user; the client tools only need SLURM_CONF, and
# /etc/slurm/slurm.conf points at our config too, because the SLURM executor
# plugin's inner `srun` drops SLURM_CONF from the environment.

set -euo pipefail

DIR=${DICOMPREP_SLURM_DIR:-/tmp/dicomprep-slurm}
CTLD_PORT=${DICOMPREP_SLURMCTLD_PORT:-16817}
SLURMD_PORT=${DICOMPREP_SLURMD_PORT:-16818}
PACKAGES=(slurmctld slurmd slurm-client munge)
MACHINE_LOCK=${DICOMPREP_SLURM_MACHINE_LOCK:-/tmp/dicomprep-slurm.lock}
START_TIMEOUT=${DICOMPREP_SLURM_START_TIMEOUT:-30}

CONF=$DIR/etc/slurm.conf
MUNGE_KEY_DIR=$DIR/munge/key
MUNGE_KEY=$MUNGE_KEY_DIR/munge.key
MUNGE_RUN=$DIR/munge/run
MUNGE_SOCKET=$MUNGE_RUN/munge.socket.2
MUNGE_PID=$MUNGE_RUN/munged.pid
MUNGE_SEED=$DIR/munge/lib/munged.seed
RUN=$DIR/run
LOG=$DIR/log
STATE=$DIR/state
SPOOL=$DIR/spool/slurmd
CTLD_PID=$RUN/slurmctld.pid
SLURMD_PID=$RUN/slurmd.pid
MARKER=$DIR/.dicomprep-slurm        # proves the folder is ours (for --purge)
LINK_RECORD=$RUN/etc-link           # what start did to /etc/slurm
ETC_DIR=/etc/slurm
ETC_CONF=$ETC_DIR/slurm.conf

NODE=$(hostname -s)

export SLURM_CONF=$CONF

say() { printf 'cluster.sh: %s\n' "$*"; }
die() { printf 'cluster.sh: error: %s\n' "$1" >&2; exit "${2:-1}"; }

need_root() {
    if [[ $(id -u) -ne 0 ]]; then
        die "'$1' must be run as root (the cluster's packages and daemons are root's)" 2
    fi
}

# --- processes -----------------------------------------------------------

# pid of our daemon from its pid file, or nothing. A pid counts only if the
# process is alive, has the expected name and was started with our folder on
# its command line (guards against stale pid files and recycled pids).
our_pid() {
    local pidfile=$1 name=$2 pid
    [[ -s $pidfile ]] || return 0
    pid=$(tr -dc '0-9' <"$pidfile")
    [[ -n $pid && -d /proc/$pid ]] || return 0
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]] || return 0
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$DIR" || return 0
    echo "$pid"
}

# slurmstepd processes of our cluster (they keep slurmd's log file open).
our_stepds() {
    local p fd
    for p in /proc/[0-9]*; do
        [[ $(cat "$p/comm" 2>/dev/null) == slurmstepd ]] || continue
        for fd in "$p"/fd/*; do
            if [[ $(readlink "$fd" 2>/dev/null) == "$LOG"/* ]]; then
                echo "${p#/proc/}"
                break
            fi
        done
    done
}

# descendants PID...: the PIDs and all their descendants.
descendants() {
    ps -e -o pid=,ppid= | awk -v roots="$*" '
        { parent[$1] = $2 }
        END {
            n = split(roots, q, " ")
            for (i = 1; i <= n; i++) keep[q[i]] = 1
            do {
                changed = 0
                for (p in parent)
                    if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; changed = 1 }
            } while (changed)
            for (p in keep) printf "%s ", p
        }'
}

# wait_gone PID NAME: wait up to 10 s for PID to exit, then SIGKILL it.
wait_gone() {
    local pid=$1 name=$2 i
    for ((i = 0; i < 100; i++)); do
        [[ -d /proc/$pid ]] || { say "stopped $name (pid $pid)"; return 0; }
        sleep 0.1
    done
    say "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        [[ -d /proc/$pid ]] || return 0
        sleep 0.1
    done
    say "warning: $name (pid $pid) is still alive"
}

stop_pid() { kill -TERM "$1" 2>/dev/null && wait_gone "$1" "$2"; return 0; }

answers() { [[ -f $CONF ]] && timeout 10 sinfo -h >/dev/null 2>&1; }

node_state() { timeout 10 sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n1; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

show_logs() {
    local f
    for f in "$DIR/munge/munged.log" "$LOG/slurmctld.log" "$LOG/slurmd.log"; do
        [[ -f $f ]] || continue
        printf '\n----- tail of %s -----\n' "$f" >&2
        tail -n 25 "$f" >&2
    done
}

# --- start ---------------------------------------------------------------

missing_packages() {
    local p
    for p in "${PACKAGES[@]}"; do
        if [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) != installed ]]; then
            printf '%s ' "$p"
        fi
    done
}

install_packages() {
    local missing=()
    read -r -a missing <<<"$(missing_packages)"
    ((${#missing[@]})) || return 0
    say "installing ${missing[*]} (apt-get, log in $LOG/apt.log)"
    local t0=$SECONDS
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
        >"$LOG/apt.log" 2>&1; then
        tail -n 20 "$LOG/apt.log" >&2
        die "installing ${missing[*]} failed"
    fi
    say "packages installed in $((SECONDS - t0)) s"
}

write_conf() {
    local mem cpus tmp
    cpus=$(nproc)
    # leave ~10% of the memory to the system; SLURM marks the node invalid if
    # RealMemory exceeds what slurmd detects
    mem=$(free -m | awk '/^Mem:/ { m = int($2 * 0.9); print (m < 256 ? 256 : m) }')
    tmp=$(mktemp "$DIR/etc/slurm.conf.XXXXXX")
    cat >"$tmp" <<EOF
# Single-node test cluster for dicomprep, written by tests/slurm/cluster.sh.
ClusterName=dicomprep
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$STATE
SlurmdSpoolDir=$SPOOL
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# jobs submitted without --mem would otherwise reserve the whole node
DefMemPerCPU=1000
SchedulerType=sched/backfill
# start batch jobs on the next scheduler tick (~1 s) instead of up to 3 s later
SchedulerParameters=batch_sched_delay=0
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
# finished jobs stay visible to squeue for 5 min (status checks without sacct)
MinJobAge=300
ReturnToService=2
InactiveLimit=0
KillWait=5
SlurmctldTimeout=60
SlurmdTimeout=60
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    if [[ -f $CONF ]] && cmp -s "$tmp" "$CONF"; then
        rm -f "$tmp"
    else
        chmod 644 "$tmp"
        mv -f "$tmp" "$CONF"
    fi
}

link_etc_conf() {
    if [[ -L $ETC_CONF ]]; then
        if [[ $(readlink "$ETC_CONF") == "$CONF" ]]; then
            # ours (e.g. left by a crashed run): keep the original record
            [[ -f $LINK_RECORD ]] || echo "created_dir=0" >"$LINK_RECORD"
            return 0
        fi
        if [[ -e $ETC_CONF ]]; then
            die "$ETC_CONF is a symlink to $(readlink "$ETC_CONF"), not to $CONF; refusing to replace it"
        fi
        # dangling: left by a cluster whose state folder is gone
        rm -f "$ETC_CONF"
        echo "created_dir=0" >"$LINK_RECORD"
    fi
    if [[ -e $ETC_CONF ]]; then
        die "$ETC_CONF exists (a real SLURM configuration?); refusing to replace it. Remove or move it and retry."
    fi
    local created_dir=0
    if [[ ! -d $ETC_DIR ]]; then
        mkdir -p "$ETC_DIR"
        created_dir=1
    fi
    ln -s "$CONF" "$ETC_CONF"
    echo "created_dir=$created_dir" >"$LINK_RECORD"
}

unlink_etc_conf() {
    if [[ -L $ETC_CONF && $(readlink "$ETC_CONF") == "$CONF" ]]; then
        rm -f "$ETC_CONF"
        say "removed symlink $ETC_CONF"
        if [[ -f $LINK_RECORD ]] && grep -qx 'created_dir=1' "$LINK_RECORD"; then
            rmdir "$ETC_DIR" 2>/dev/null || true
        fi
    fi
    rm -f "$LINK_RECORD"
}

start_munged() {
    if [[ -n $(our_pid "$MUNGE_PID" munged) ]]; then
        return 0
    fi
    rm -f "$MUNGE_PID" "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"   # stale leftovers
    chmod 700 "$MUNGE_KEY_DIR"
    chmod 755 "$MUNGE_RUN"
    if [[ ! -s $MUNGE_KEY ]]; then
        mungekey --create --keyfile="$MUNGE_KEY" >/dev/null 2>&1 \
            || dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
    fi
    chmod 400 "$MUNGE_KEY"
    # 9>&-: the daemons must not inherit (and keep) the lock on $DIR/.lock
    munged --key-file="$MUNGE_KEY" --socket="$MUNGE_SOCKET" --pid-file="$MUNGE_PID" \
        --log-file="$DIR/munge/munged.log" --seed-file="$MUNGE_SEED" 9>&- \
        || { show_logs; die "munged failed to start"; }
    local i
    for ((i = 0; i < 50; i++)); do
        [[ -S $MUNGE_SOCKET ]] && return 0
        sleep 0.1
    done
    show_logs
    die "munged did not create $MUNGE_SOCKET"
}

start_slurmctld() {
    [[ -n $(our_pid "$CTLD_PID" slurmctld) ]] && return 0
    rm -f "$CTLD_PID"
    port_busy "$CTLD_PORT" && die "port $CTLD_PORT is in use (set DICOMPREP_SLURMCTLD_PORT)"
    slurmctld -i -f "$CONF" 9>&- || { show_logs; die "slurmctld failed to start"; }
}

start_slurmd() {
    [[ -n $(our_pid "$SLURMD_PID" slurmd) ]] && return 0
    rm -f "$SLURMD_PID"
    port_busy "$SLURMD_PORT" && die "port $SLURMD_PORT is in use (set DICOMPREP_SLURMD_PORT)"
    slurmd -f "$CONF" -N "$NODE" 9>&- || { show_logs; die "slurmd failed to start"; }
}

wait_idle() {
    local deadline=$((SECONDS + START_TIMEOUT)) state="" resumed=0
    while ((SECONDS < deadline)); do
        state=$(node_state || true)
        case $state in
            idle | mixed | allocated | completing)
                # slurmd writes its pid file a moment after registering
                [[ -n $(our_pid "$SLURMD_PID" slurmd) ]] && return 0
                ;;
            down* | drain*)
                # left over from an earlier run that stopped uncleanly
                if ((!resumed)); then
                    scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
                    resumed=1
                fi
                ;;
        esac
        sleep 0.2
    done
    say "node $NODE is not idle after ${START_TIMEOUT} s (state: '${state:-no answer}')" >&2
    show_logs
    say "the daemons are left running for inspection; '$0 stop' ends them" >&2
    exit 1
}

cmd_start() {
    need_root start
    local install=0 arg t0 missing
    for arg in "$@"; do
        case $arg in
            --install) install=1 ;;
            *) die "unknown option for start: $arg" 2 ;;
        esac
    done
    missing=$(missing_packages)
    if [[ -n $missing ]] && ((!install)); then
        die "SLURM is not installed (missing Debian packages: ${missing% }); install them with
  apt-get install -y --no-install-recommends ${missing% }
or run '$0 start --install'" 3
    fi
    t0=$(date +%s.%N)
    mkdir -p "$DIR"/{etc,run,log,state,spool/slurmd,munge/key,munge/run,munge/lib}
    touch "$MARKER"
    ((install)) && install_packages
    exec 9>"$DIR/.lock"
    flock -w 60 9 || die "another cluster.sh holds $DIR/.lock"

    local running=0
    [[ -n $(our_pid "$MUNGE_PID" munged) ]] && ((running += 1))
    [[ -n $(our_pid "$CTLD_PID" slurmctld) ]] && ((running += 1))
    [[ -n $(our_pid "$SLURMD_PID" slurmd) ]] && ((running += 1))
    if ((running == 3)) && answers; then
        link_etc_conf
        say "already running ($DIR); node $NODE is $(node_state)"
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    ((running == 0)) && write_conf
    [[ -f $CONF ]] || write_conf
    link_etc_conf
    start_munged
    start_slurmctld
    start_slurmd
    wait_idle
    say "cluster up in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s" \
        "(node $NODE, partition debug, state in $DIR)"
    echo "export SLURM_CONF=$CONF"
}

# --- stop ----------------------------------------------------------------

cmd_stop() {
    need_root stop
    local purge=0 arg
    for arg in "$@"; do
        case $arg in
            --purge) purge=1 ;;
            *) die "unknown option for stop: $arg" 2 ;;
        esac
    done
    if [[ ! -d $DIR ]]; then
        unlink_etc_conf
        say "nothing to stop ($DIR does not exist)"
        return 0
    fi
    exec 9>"$DIR/.lock"
    flock -w 60 9 || die "another cluster.sh holds $DIR/.lock"

    local pid i
    # cancel jobs first, so no slurmstepd outlives slurmd
    if [[ -n $(our_pid "$CTLD_PID" slurmctld) ]] && answers; then
        local jobs
        jobs=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ') || true
        if [[ -n ${jobs// /} ]]; then
            say "cancelling jobs: $jobs"
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            # wait for them to end (only slurmd can end them)
            if [[ -n $(our_pid "$SLURMD_PID" slurmd) ]]; then
                for ((i = 0; i < 100; i++)); do
                    [[ -z $(squeue -h -t PENDING,RUNNING,COMPLETING -o %i 2>/dev/null) ]] && break
                    sleep 0.1
                done
            fi
        fi
    fi
    pid=$(our_pid "$SLURMD_PID" slurmd)
    [[ -n $pid ]] && stop_pid "$pid" slurmd
    # slurmstepd left behind (slurmd died with jobs running): kill each with
    # the job processes below it
    local stepds
    stepds=$(our_stepds)
    if [[ -n $stepds ]]; then
        local tree
        # shellcheck disable=SC2086
        tree=$(descendants $stepds)
        say "killing leftover slurmstepd processes and their jobs: $tree"
        # shellcheck disable=SC2086
        kill -KILL $tree 2>/dev/null || true
    fi
    # slurmctld and munged take ~2 s each to exit: stop them together
    local ctld munge
    ctld=$(our_pid "$CTLD_PID" slurmctld)
    munge=$(our_pid "$MUNGE_PID" munged)
    [[ -n $ctld ]] && kill -TERM "$ctld" 2>/dev/null
    [[ -n $munge ]] && kill -TERM "$munge" 2>/dev/null
    [[ -n $ctld ]] && wait_gone "$ctld" slurmctld
    [[ -n $munge ]] && wait_gone "$munge" munged
    rm -f "$SLURMD_PID" "$CTLD_PID" "$MUNGE_PID" "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
    unlink_etc_conf
    exec 9>&-
    if ((purge)); then
        if [[ -f $MARKER && $DIR != / ]]; then
            rm -rf -- "$DIR"
            say "removed $DIR"
        else
            say "not purging $DIR: it lacks the $MARKER marker"
        fi
    fi
    say "stopped"
}

# --- status / env ----------------------------------------------------------

cmd_status() {
    if command -v sinfo >/dev/null && answers; then
        sinfo
        exit 0
    fi
    say "cluster in $DIR is not answering"
    exit 1
}

cmd_env() { echo "export SLURM_CONF=$CONF"; }

case ${1:-} in
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    status) cmd_status ;;
    env) cmd_env ;;
    lock-path) echo "$MACHINE_LOCK" ;;
    *)
        echo "usage: $0 start [--install] | stop [--purge] | status | env | lock-path" >&2
        exit 2
        ;;
esac
