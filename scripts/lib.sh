# shellcheck shell=bash
# Process-supervision pieces shared by scripts/up.sh and scripts/cluster.sh (sourced, not run).
#
# The caller sets LIB_TAG (its log prefix, e.g. "[up]") and LIB_DIE_CODE (the exit code of die)
# before sourcing, and keeps its own `set -euo pipefail`.

# The script's header comment (line 2 up to `set -euo`) as help: on stdout for --help ($1 = 0),
# on stderr for a usage error ($1 = 2); then exits $1.
usage() {
    local script="${BASH_SOURCE[-1]}"
    if (($1 == 0)); then
        sed -n '2,/^set -euo/p' "$script" | sed '$d; s/^# \{0,1\}//'
    else
        sed -n '2,/^set -euo/p' "$script" | sed '$d; s/^# \{0,1\}//' >&2
    fi
    exit "$1"
}

die() {
    printf '%s ERROR: %s\n' "$LIB_TAG" "$*" >&2
    exit "$LIB_DIE_CODE"
}

# True once process $1 has exited: bash reaped it already (no /proc entry; `wait PID` still
# returns its status) or it is a zombie waiting for `wait`. Polling this, not `wait -n`: bash
# forgets a job killed by a signal once it has printed "Killed", after which `wait -n PID` fails
# with "no such job" (seen with bash 5.2); `wait PID` still works.
finished() {
    local stat state
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
    state="${stat##*) }"
    [[ "${state:0:1}" == Z ]]
}

# Reaps process $1 (which must have finished, or this blocks) and sets reaped_rc to its exit
# code, without `set -e` ending the script on a non-zero one.
reaped_rc=0
reap() {
    set +e
    wait "$1"
    reaped_rc=$?
    set -e
}

# Starts a command in its own session, stdin from /dev/null, stdout and stderr to $1; sets
# started_pid. Its own session: a Ctrl-C in the terminal reaches only the calling script, which
# decides what to forward. A background child of a non-interactive shell is not a process group
# leader, so setsid execs the command in place: started_pid is the command itself.
started_pid=""
start_bg() {
    local logfile="$1"
    shift
    setsid "$@" >"$logfile" 2>&1 </dev/null &
    started_pid=$!
}
