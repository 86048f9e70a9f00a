#!/usr/bin/env bash
# Start, stop or inspect a throw-away single-node SLURM cluster on this machine, for the test
# that submits a Snakemake workflow through snakemake-executor-plugin-slurm.
#
# Usage:
#   bash scripts/slurm_cluster.sh start  [STATE_DIR]   # install (if needed), start, wait for an idle node
#   bash scripts/slurm_cluster.sh stop   [STATE_DIR]   # cancel jobs, stop slurmd, slurmctld, munged
#   bash scripts/slurm_cluster.sh status [STATE_DIR]   # exit 0 when all three daemons run
#
# STATE_DIR (default /tmp/plmdepth-slurm) holds slurm.conf, the daemons' PID files, logs and
# spool/state directories. `start` prints exactly one line on stdout,
#     export SLURM_CONF=STATE_DIR/slurm.conf
# (everything else goes to stderr), so a caller can do  eval "$(bash scripts/slurm_cluster.sh start)".
# sbatch/squeue/scontrol/sinfo need that SLURM_CONF.
#
# Needs root: it may apt-get install Debian's slurm-wlm and munge (Slurm 22.05 on bookworm) and runs
# munged (as user munge), slurmctld and slurmd (as root) as plain daemons -- no systemd, no cgroups,
# no slurmdbd. Outside STATE_DIR it only touches /run/munge (munged's socket, where Slurm's
# auth/munge looks for it), the munge key /etc/munge/munge.key (created when absent) and
# /run/slurm/conf (slurmd's cache of the configuration; see "configless" below).
#
# Environment: SLURM_START_TIMEOUT (seconds to wait for the idle node, default 60).
# A failed start leaves whatever daemons did start running, for inspection; `stop` removes them.
set -euo pipefail

PROG="slurm_cluster.sh"
CMD="${1:-}"
STATE_DIR="${2:-/tmp/plmdepth-slurm}"
START_TIMEOUT="${SLURM_START_TIMEOUT:-60}"

usage() {
    echo "usage: bash scripts/$PROG {start|stop|status} [STATE_DIR]   (default STATE_DIR: /tmp/plmdepth-slurm)" >&2
}
log() { echo "$PROG: $*" >&2; }
die() { echo "$PROG: error: $*" >&2; exit 1; }

case "$CMD" in
    start|stop|status) ;;
    *) usage; exit 64 ;;
esac

if [ "$(id -u)" -ne 0 ]; then
    echo "$PROG needs root (it installs slurm-wlm/munge and runs the SLURM and munge daemons); skipping." >&2
    exit 2
fi

mkdir -p "$STATE_DIR"
STATE_DIR="$(cd "$STATE_DIR" && pwd -P)"   # absolute: the path ends up in slurm.conf
CONF="$STATE_DIR/slurm.conf"
NODE="$(hostname -s)"
MUNGE_DIR="$STATE_DIR/munge"               # munged's pid/log/seed; owned by user munge
MUNGE_KEY=/etc/munge/munge.key
MUNGE_RUN=/run/munge                       # default socket dir; Slurm's auth/munge connects there
CTLD_PID="$STATE_DIR/slurmctld.pid"
SLURMD_PID="$STATE_DIR/slurmd.pid"
MUNGED_PID="$MUNGE_DIR/munged.pid"
CTLD_LOG="$STATE_DIR/slurmctld.log"
SLURMD_LOG="$STATE_DIR/slurmd.log"
MUNGED_LOG="$MUNGE_DIR/munged.log"
SLURMD_CONF_CACHE=/run/slurm/conf          # written by a configless slurmd (see start_slurmd)
export SLURM_CONF="$CONF"

# --- process helpers (by PID file only; never by process name) --------------------------------

# proc_is PID COMM: true when PID is a live process whose command name is COMM (the name check
# guards against a stale PID file whose number now belongs to something else).
proc_is() {
    [ -n "$1" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ]
}

pid_of() { [ -s "$1" ] && tr -dc '0-9' <"$1"; }

# pid_alive PIDFILE COMM: PIDFILE names a live COMM process.
pid_alive() {
    proc_is "$(pid_of "$1" || true)" "$2"
}

# stop_daemon NAME PIDFILE: SIGTERM, wait up to 20 s for that PID to go, then SIGKILL.
# (Waits on the PID itself: a daemon may remove its PID file before it has finished exiting.)
stop_daemon() {
    local name="$1" pidfile="$2" pid
    pid="$(pid_of "$pidfile" || true)"
    if ! proc_is "$pid" "$name"; then
        log "$name not running"
        rm -f "$pidfile"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 200); do
        proc_is "$pid" "$name" || break
        sleep 0.1
    done
    if proc_is "$pid" "$name"; then
        log "$name (pid $pid) ignored SIGTERM for 20 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            [ -d "/proc/$pid" ] || break
            sleep 0.1
        done
    fi
    rm -f "$pidfile"
    log "stopped $name (pid $pid)"
}

all_running() {
    pid_alive "$MUNGED_PID" munged && pid_alive "$CTLD_PID" slurmctld && pid_alive "$SLURMD_PID" slurmd
}

logs_hint() {
    echo "see the logs: $CTLD_LOG, $SLURMD_LOG, $MUNGED_LOG (config: $CONF)"
}

# --- start ---------------------------------------------------------------------------------------

install_packages() {
    if { command -v slurmctld && command -v slurmd && command -v munged && command -v sbatch; } >/dev/null; then
        return 0
    fi
    log "installing Debian's slurm-wlm and munge (apt-get) ..."
    export DEBIAN_FRONTEND=noninteractive
    # Keep the packages' maintainer scripts from starting their own slurmctld/slurmd/munged
    # (init scripts with default paths that would clash with ours): policy-rc.d exit 101 = "deny".
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        made_policy=1
    fi
    local rc=0
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge; } \
        >"$STATE_DIR/apt-get.log" 2>&1 || rc=$?
    if [ "$made_policy" = 1 ]; then rm -f "$policy"; fi
    [ "$rc" = 0 ] || die "apt-get install slurm-wlm munge failed (rc=$rc); see $STATE_DIR/apt-get.log"
    if ! { command -v slurmctld && command -v slurmd && command -v munged; } >/dev/null; then
        die "slurmctld/slurmd/munged still missing after apt-get install"
    fi
}

write_config() {
    local cpus mem_mb margin real_mem
    cpus="$(nproc)"
    mem_mb=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))
    # RealMemory must not exceed what slurmd measures, or the node is drained ("Low RealMemory");
    # leave 5 % (at least 512 MB) for the OS and the daemons.
    margin=$(( mem_mb / 20 ))
    if [ "$margin" -lt 512 ]; then margin=512; fi
    real_mem=$(( mem_mb - margin ))

    mkdir -p "$STATE_DIR/ctld-state" "$STATE_DIR/slurmd-spool"
    cat >"$CONF" <<EOF
# Written by scripts/$PROG: a single-node test cluster. Regenerated on every (non-idempotent) start.
ClusterName=plmdepth
# The controller is this machine; NodeName must equal \`hostname -s\` so that slurmd finds its entry.
SlurmctldHost=$NODE(127.0.0.1)
# Daemons run as root (SlurmUser); no slurm user, no privilege drop to worry about.
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# Configless: slurmd is started with --conf-server and caches this file in /run/slurm/conf.
# Needed because snakemake-executor-plugin-slurm-jobstep strips every SLURM_* variable
# (SLURM_CONF included) before its nested \`srun\` inside the allocation; that srun then finds
# the configuration through slurmd's cache instead of SLURM_CONF.
SlurmctldParameters=enable_configless
StateSaveLocation=$STATE_DIR/ctld-state
SlurmdSpoolDir=$STATE_DIR/slurmd-spool
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$CTLD_LOG
SlurmdLogFile=$SLURMD_LOG
SlurmctldDebug=info
SlurmdDebug=info
# No systemd, no cgroups: track job processes via /proc parent links, no CPU binding/limits.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# No slurmdbd: no accounting database, so \`sacct\` does not work (status comes from squeue).
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
# No mail on this machine; the default /usr/bin/mail is missing and slurmctld logs an error.
MailProg=/bin/true
# Hand out single CPUs (and memory) rather than whole nodes, so several 1-CPU jobs run at once.
# CR_CPU_Memory (not CR_Core_Memory): with hyper-threads CR_Core would give each job a whole core.
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
# A job without --mem would otherwise be given the node's whole RealMemory and block all others.
DefMemPerCPU=1024
# Finished jobs stay visible to \`squeue --states=all\` for MinJobAge seconds; after that squeue
# forgets them. What snakemake-executor-plugin-slurm 2.8.0 does (read from its source):
#  - with --slurm-status-command squeue it polls
#    \`squeue --format='%i|%T' --states=all --noheader --name <run uuid>\`; a job absent from the
#    answer counts as still queued, so a job that left squeue before being seen would hang the run;
#  - its first check comes --slurm-init-seconds-before-status-checks (default 40 s) after the
#    executor starts; the interval then grows by 10 s per check without a finished job, up to
#    180 s, and drops back to the initial value whenever a job finishes;
#  - if MinJobAge < 3 x init-seconds-before-status-checks (120 s by default) and a \`sacct\`
#    binary exists (slurm-client ships one), it switches to sacct, which without slurmdbd only
#    says "Slurm accounting storage is disabled": the run then waits forever.
# 600 s is above 3 x 40 s and above the 180 s maximum poll interval.
MinJobAge=600
# Bring the node back by itself when slurmd re-registers after a stop/start.
ReturnToService=2
SlurmdTimeout=60
# CPUs and RealMemory from this machine (nproc, /proc/meminfo minus a margin).
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_mem State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munged() {
    if pid_alive "$MUNGED_PID" munged; then
        return 0
    fi
    # /run is a tmpfs (or at least not kept across reboots): recreate munged's socket dir.
    install -d -o munge -g munge -m 0755 "$MUNGE_RUN"
    install -d -o munge -g munge -m 0700 "$MUNGE_DIR"
    if [ ! -s "$MUNGE_KEY" ]; then
        log "creating munge key $MUNGE_KEY"
        install -d -o munge -g munge -m 0700 "$(dirname "$MUNGE_KEY")"
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile="$MUNGE_KEY"
        else
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
        fi
    fi
    # munged refuses a key that is not owned by munge or is readable by group/others.
    chown munge:munge "$MUNGE_KEY"
    chmod go-rwx "$MUNGE_KEY"
    # munged should not run as root: start it as user munge (it daemonizes and writes its PID file).
    runuser -u munge -- /usr/sbin/munged \
        --pid-file="$MUNGED_PID" --log-file="$MUNGED_LOG" --seed-file="$MUNGE_DIR/munged.seed" \
        || die "munged failed to start; $(logs_hint)"
    for _ in $(seq 1 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "munged does not answer on $MUNGE_RUN/munge.socket.2; $(logs_hint)"
}

start_slurmctld() {
    if pid_alive "$CTLD_PID" slurmctld; then
        return 0
    fi
    # Runs as root, daemonizes, writes SlurmctldPidFile; state survives in ctld-state/.
    slurmctld -f "$CONF" || die "slurmctld failed to start; $(logs_hint)"
}

start_slurmd() {
    if pid_alive "$SLURMD_PID" slurmd; then
        return 0
    fi
    # Configless mode (see slurm.conf): slurmd fetches slurm.conf from slurmctld and caches it in
    # /run/slurm/conf, where client commands without SLURM_CONF (the jobstep plugin's nested srun)
    # look for it. SLURM_CONF is unset so that slurmd takes the configless path rather than the
    # file. -N: the node name, in case the kernel hostname is longer than `hostname -s`.
    env -u SLURM_CONF slurmd --conf-server 127.0.0.1:6817 -N "$NODE" \
        || die "slurmd failed to start; $(logs_hint)"
}

node_state() { sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n1; }

wait_for_idle() {
    local deadline=$(( SECONDS + START_TIMEOUT )) state=""
    while [ "$SECONDS" -lt "$deadline" ]; do
        state="$(node_state || true)"
        case "$state" in
            idle|mixed|allocated) return 0 ;;
        esac
        pid_alive "$CTLD_PID" slurmctld || die "slurmctld exited during start-up; $(logs_hint)"
        pid_alive "$SLURMD_PID" slurmd || die "slurmd exited during start-up; $(logs_hint)"
        sleep 0.5
    done
    die "node $NODE not idle after ${START_TIMEOUT}s (state: '${state:-unknown}'); $(logs_hint)"
}

cmd_start() {
    if all_running; then
        log "already running (slurmctld pid $(pid_of "$CTLD_PID"), slurmd pid $(pid_of "$SLURMD_PID"), munged pid $(pid_of "$MUNGED_PID"))"
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    local t0=$SECONDS
    install_packages
    # Keep the config of a controller that still runs (partial restart); otherwise regenerate it.
    pid_alive "$CTLD_PID" slurmctld || write_config
    start_munged
    start_slurmctld
    start_slurmd
    wait_for_idle
    log "cluster up in $(( SECONDS - t0 ))s: node $NODE idle in partition debug ($(nproc) CPUs); state in $STATE_DIR"
    echo "export SLURM_CONF=$CONF"
}

# --- stop / status -------------------------------------------------------------------------------

cmd_stop() {
    # Cancel leftover jobs first, so that no slurmstepd/job processes outlive the cluster.
    if pid_alive "$CTLD_PID" slurmctld; then
        local jobs
        jobs="$(squeue -h -o '%A' 2>/dev/null | tr '\n' ' ' || true)"
        if [ -n "${jobs// /}" ]; then
            log "cancelling jobs: $jobs"
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for _ in $(seq 1 100); do
                [ -z "$(squeue -h -t running,completing -o '%A' 2>/dev/null)" ] && break
                sleep 0.2
            done
        fi
    fi
    stop_daemon slurmd "$SLURMD_PID"
    stop_daemon slurmctld "$CTLD_PID"
    stop_daemon munged "$MUNGED_PID"
    # slurmd's configless cache would point stray client commands at a dead controller.
    rm -rf "$SLURMD_CONF_CACHE"
}

cmd_status() {
    local rc=0 d pidfile
    for d in munged slurmctld slurmd; do
        case "$d" in
            munged) pidfile="$MUNGED_PID" ;;
            slurmctld) pidfile="$CTLD_PID" ;;
            slurmd) pidfile="$SLURMD_PID" ;;
        esac
        if pid_alive "$pidfile" "$d"; then
            echo "$d: running (pid $(pid_of "$pidfile"))"
        else
            echo "$d: not running"
            rc=1
        fi
    done
    if pid_alive "$CTLD_PID" slurmctld; then
        echo "SLURM_CONF=$CONF"
        sinfo -N -o '%N %P %T %c %m' 2>&1 || true
    fi
    return "$rc"
}

"cmd_$CMD"
