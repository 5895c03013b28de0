#!/usr/bin/env bash
# Launch one timely cluster of `streamlake run` processes on this machine.
#
#   scripts/cluster.sh [--log-dir DIR] N W [-- EXTRA RUN ARGS]
#
# Starts N processes x W worker threads (`streamlake run -n N -p i -w W -h HOSTFILE ...`), with a
# hostfile of free loopback ports (127.0.0.1), each process logging stdout+stderr to
# DIR/process-<i>.log (the hostfile is DIR/hosts, the pids DIR/pids). DIR defaults to $LOGDIR,
# else <repo>/data/logs/cluster-<UTC timestamp>-<pid>/.
# Everything after `--` goes to every `streamlake run` unchanged (e.g. --output, --run-id,
# --available-now). Relative paths in those arguments are taken from the current directory.
#
# Prints one line per process (pid, timely address, log file), then waits for all of them:
#   - all exit 0                   => prints each process's `run finished:` line, exit 0
#   - one exits non-zero (or dies) => SIGTERM to the others, SIGKILL to those still running
#                                     $CLUSTER_STOP_GRACE s later; exit with the first failure's code
#   - SIGINT/SIGTERM to this script => SIGTERM to every process (they commit and exit 0) and wait,
#                                     SIGKILL after $CLUSTER_STOP_GRACE s (a process stuck before the
#                                     cluster formed ignores SIGTERM); a second signal is forwarded
#                                     too (streamlake then exits at once, without committing)
#
# Each process runs in its own session (setsid), so a Ctrl-C in the terminal reaches only this
# script, which forwards exactly one SIGTERM: `streamlake run` treats a second signal as "exit now,
# without committing".
#
# Environment:
#   STREAMLAKE_BIN       the binary (default <repo>/target/release/streamlake; built if missing)
#   LOGDIR               log folder (overridden by --log-dir)
#   CLUSTER_STOP_GRACE   seconds between SIGTERM and SIGKILL (default 60)
#   NO_COLOR             set to 1 unless given: the logs carry no colour escapes
#   KAFKA_BOOTSTRAP_SERVERS, KAFKA_TOPIC, OUTPUT_PATH, RUN_ID, RUST_LOG  passed through to the processes
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
BIN="${STREAMLAKE_BIN:-$REPO_ROOT/target/release/streamlake}"
GRACE="${CLUSTER_STOP_GRACE:-60}"

LIB_TAG="[cluster.sh]"
LIB_DIE_CODE=2
# shellcheck source=scripts/lib.sh
source "$SCRIPT_DIR/lib.sh"
log() { printf '[cluster.sh] %s\n' "$*"; }

# ---------------------------------------------------------------------------------------------
# arguments

log_dir="${LOGDIR:-}"
positional=()
extra=()
while (($#)); do
    case "$1" in
        --log-dir) (($# >= 2)) || die "--log-dir needs a folder"; log_dir="$2"; shift 2 ;;
        --log-dir=*) log_dir="${1#--log-dir=}"; shift ;;
        -h | --help) usage 0 ;;
        --) shift; extra=("$@"); break ;;
        -*) die "unknown option '$1' (run arguments go after --)" ;;
        *) positional+=("$1"); shift ;;
    esac
done
((${#positional[@]} == 2)) || usage 2
N="${positional[0]}"
W="${positional[1]}"
[[ "$N" =~ ^[1-9][0-9]*$ ]] || die "N (processes) must be a positive integer, got '$N'"
[[ "$W" =~ ^[1-9][0-9]*$ ]] || die "W (workers per process) must be a positive integer, got '$W'"
[[ "$GRACE" =~ ^[0-9]+$ ]] || die "CLUSTER_STOP_GRACE must be a number of seconds, got '$GRACE'"
command -v setsid >/dev/null 2>&1 || die "needs setsid (util-linux)"
command -v python3 >/dev/null 2>&1 || die "needs python3 (to pick free ports)"
# The logs are files, not a terminal: no colour escapes in them.
export NO_COLOR="${NO_COLOR:-1}"

if [[ -z "$log_dir" ]]; then
    log_dir="$REPO_ROOT/data/logs/cluster-$(date -u +%Y%m%dT%H%M%SZ)-$$"
fi
mkdir -p "$log_dir" || die "cannot create log folder $log_dir"
log_dir="$(cd "$log_dir" && pwd)"

if [[ ! -x "$BIN" ]]; then
    [[ -z "${STREAMLAKE_BIN:-}" ]] || die "STREAMLAKE_BIN=$BIN is not an executable file"
    log "no release binary at $BIN: running cargo build --release"
    (cd "$REPO_ROOT" && cargo build --release) || die "cargo build --release failed"
fi

# ---------------------------------------------------------------------------------------------
# hostfile: N distinct free ports, held open together so the OS cannot hand out one twice

hostfile="$log_dir/hosts"
python3 - "$N" >"$hostfile" <<'PY' || die "could not pick $N free ports on 127.0.0.1"
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print("127.0.0.1:%d" % s.getsockname()[1])
for s in socks:
    s.close()
PY
mapfile -t addresses <"$hostfile"

# ---------------------------------------------------------------------------------------------
# launch

pids=()                # pid of process i
declare -A index_of=() # pid -> i
declare -A running=()  # pid -> 1 until reaped (an unreaped pid cannot be reused by the OS)
codes=()               # exit code of process i once reaped
stopping=0             # 1 once a stop was requested (signal or failure)
signals=0              # signals received
kill_at=""             # $SECONDS value at which survivors of a stop get SIGKILL
first_failure=""

forward_term() {
    local pid
    for pid in "${!running[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
}

# shellcheck disable=SC2317 # runs from a trap
on_signal() {
    signals=$((signals + 1))
    stopping=1
    if ((signals == 1)); then
        log "$1: SIGTERM to ${#running[@]} process(es): they commit and exit (SIGKILL after ${GRACE} s)"
    else
        log "$1 again: forwarding SIGTERM again (streamlake exits at once, without committing)"
    fi
    forward_term
    if [[ -z "$kill_at" ]]; then
        kill_at=$((SECONDS + GRACE))
    fi
}

# shellcheck disable=SC2317 # runs from a trap
on_exit() { # an unexpected exit of this script (an error) must not leave processes behind
    if ((${#running[@]})); then
        log "exiting with ${#running[@]} process(es) still running: SIGTERM to them"
        forward_term
    fi
}

trap 'on_signal SIGINT' INT
trap 'on_signal SIGTERM' TERM
trap on_exit EXIT

log "$N process(es) x $W worker(s) = $((N * W)) timely workers; hostfile $hostfile; logs in $log_dir"
for ((i = 0; i < N; i++)); do
    if ((stopping)); then
        break
    fi
    logfile="$log_dir/process-$i.log"
    start_bg "$logfile" "$BIN" run -n "$N" -p "$i" -w "$W" -h "$hostfile" ${extra[@]+"${extra[@]}"}
    pid=$started_pid
    pids+=("$pid")
    index_of[$pid]=$i
    running[$pid]=1
    log "process $i: pid $pid, timely ${addresses[$i]}, log $logfile"
done
# Written whole, then renamed: scripts/up.sh waits for this file to know every process started.
printf '%s\n' "${pids[@]}" >"$log_dir/pids.tmp"
mv "$log_dir/pids.tmp" "$log_dir/pids"

# ---------------------------------------------------------------------------------------------
# wait

# Polling `finished`, not `wait -n` (see scripts/lib.sh).
while ((${#running[@]})); do
    for pid in "${!running[@]}"; do
        finished "$pid" || continue
        reap "$pid"
        rc=$reaped_rc
        i="${index_of[$pid]}"
        unset "running[$pid]"
        codes[i]=$rc
        if ((rc == 0)); then
            log "process $i (pid $pid) exited 0"
            continue
        fi
        log "process $i (pid $pid) exited $rc; last lines of $log_dir/process-$i.log:"
        tail -n 15 "$log_dir/process-$i.log" | sed 's/^/    /' || true
        if [[ -z "$first_failure" ]]; then
            first_failure=$rc
        fi
        if ((${#running[@]})) && [[ -z "$kill_at" ]]; then
            log "stopping the other ${#running[@]} process(es): SIGTERM, SIGKILL after ${GRACE} s"
            stopping=1
            forward_term
            kill_at=$((SECONDS + GRACE))
        fi
    done
    if [[ -n "$kill_at" ]] && ((SECONDS >= kill_at)); then
        for pid in "${!running[@]}"; do
            log "process ${index_of[$pid]} (pid $pid) still runs ${GRACE} s after SIGTERM: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        done
        kill_at=$((SECONDS + 3600)) # once
    fi
    if ((${#running[@]})); then
        sleep 0.2 || true # a Ctrl-C in the terminal reaches sleep too
    fi
done

for ((i = 0; i < N; i++)); do
    summary="$(grep -m1 '^run finished:' "$log_dir/process-$i.log" || true)"
    if [[ -n "$summary" ]]; then
        log "process $i: $summary"
    fi
done
if [[ -n "$first_failure" ]]; then
    log "FAILED: exit codes ${codes[*]} (logs in $log_dir)"
    exit "$first_failure"
fi
log "all $N process(es) exited 0"
exit 0
