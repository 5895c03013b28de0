#!/usr/bin/env bash
# The whole platform on this machine in one command: what `docker compose up` started in the
# original (Kafka, kafka-init, the Spark job, the producer, the Airflow DAG), as local processes.
#
#   scripts/up.sh [--workers W] [--duration SECONDS] [--output DIR]
#
#   1. builds target/release/streamlake if it is missing (cargo build --release)
#   2. Kafka: starts the local broker (scripts/kafka.sh start) unless KAFKA_BOOTSTRAP_SERVERS is
#      set or a broker of this checkout already runs (then it is used and left running)
#   3. topic: streamlake topic create (the original kafka-init)
#   4. producer: streamlake produce at MSGS_PER_SEC events/s (default 5)
#   5. job: 2 processes x W workers of streamlake run (scripts/cluster.sh), --starting-offsets
#      earliest --roll-interval 10s, RUN_ID local_run: a second `up` resumes the same dataset from
#      its checkpoint, and nothing produced while it was down is lost
#   6. validator: streamlake validate --every 5m (the original Airflow DAG's schedule)
#
# It prints one line per component (address or pid, log file, output folder), then runs until
# Ctrl-C / SIGTERM or, with --duration, for that many seconds. Stopping goes in order: the
# producer (SIGTERM, its last line says how many events it produced), a short pause so the job
# reads the last events, the job (SIGTERM: every process commits and exits 0), the validator, the
# broker (only if this script started it). After a clean stop it runs `streamlake validate
# --audit` and prints its summary. Exit 0 when everything stopped cleanly and the audit passed.
#
# A second Ctrl-C while stopping hurries the component being stopped (streamlake exits at once,
# without its last commit; the checkpoint keeps the output exactly-once all the same).
#
# Options:
#   --workers W         worker threads per job process (default 1; 2 processes always)
#   --duration SECONDS  stop by itself after that long (for tests and demos)
#   --output DIR        raw dataset folder (default $OUTPUT_PATH, else <repo>/data/output/parquet);
#                       final window rows go to DIR/../aggregates/<name of DIR>/run_<RUN_ID>/
#
# Environment (variables not set are read from <repo>/.env, as docker compose does):
#   KAFKA_BOOTSTRAP_SERVERS  use this broker; start none
#   KAFKA_TOPIC              topic (default events)
#   MSGS_PER_SEC             producer rate (default 5)
#   RUN_ID                   dataset name (default local_run)
#   OUTPUT_PATH              default of --output
#   UP_LOG_DIR               log folder (default <repo>/data/logs/up-<UTC timestamp>)
#   UP_DRAIN_SECONDS         pause between stopping the producer and the job (default 2)
#   UP_STOP_TIMEOUT          seconds to wait for each component to stop (default 120)
#   STREAMLAKE_BIN           the binary (default <repo>/target/release/streamlake)
#   KAFKA_STATE_DIR, KAFKA_HEAP, ...  passed to scripts/kafka.sh
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"

LIB_TAG="[up]"
LIB_DIE_CODE=1
# shellcheck source=scripts/lib.sh
source "$SCRIPT_DIR/lib.sh"
say() { printf '[up] %s\n' "$*"; }
line() { printf '[up] %-9s %s\n' "$1" "$2"; } # one line per component

# ---------------------------------------------------------------------------------------------
# arguments and settings

workers=1
duration=""
output=""
while (($#)); do
    case "$1" in
        --workers) (($# >= 2)) || die "--workers needs a number"; workers="$2"; shift 2 ;;
        --workers=*) workers="${1#*=}"; shift ;;
        --duration) (($# >= 2)) || die "--duration needs seconds"; duration="$2"; shift 2 ;;
        --duration=*) duration="${1#*=}"; shift ;;
        --output) (($# >= 2)) || die "--output needs a folder"; output="$2"; shift 2 ;;
        --output=*) output="${1#*=}"; shift ;;
        -h | --help) usage 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
[[ "$workers" =~ ^[1-9][0-9]*$ ]] || die "--workers must be a positive integer, got '$workers'"
[[ -z "$duration" || "$duration" =~ ^[0-9]+$ ]] || die "--duration must be whole seconds, got '$duration'"

# .env: KEY=VALUE lines, for variables the environment does not set (never evaluated as shell).
if [[ -f "$REPO_ROOT/.env" ]]; then
    while IFS= read -r kv || [[ -n "$kv" ]]; do
        [[ "$kv" =~ ^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
        key="${BASH_REMATCH[1]}"
        value="${BASH_REMATCH[2]}"
        value="${value%\"}" && value="${value#\"}"
        [[ -z "${!key+x}" ]] && export "$key=$value"
    done <"$REPO_ROOT/.env"
fi

export KAFKA_TOPIC="${KAFKA_TOPIC:-events}"
export MSGS_PER_SEC="${MSGS_PER_SEC:-5}"
export RUN_ID="${RUN_ID:-local_run}"
export NO_COLOR="${NO_COLOR:-1}" # logs are files: no colour escapes
BIN="${STREAMLAKE_BIN:-$REPO_ROOT/target/release/streamlake}"
DRAIN="${UP_DRAIN_SECONDS:-2}"
STOP_TIMEOUT="${UP_STOP_TIMEOUT:-120}"
[[ "$STOP_TIMEOUT" =~ ^[0-9]+$ ]] || die "UP_STOP_TIMEOUT must be seconds, got '$STOP_TIMEOUT'"
[[ "$DRAIN" =~ ^[0-9]+$ ]] || die "UP_DRAIN_SECONDS must be seconds, got '$DRAIN'"

output="${output:-${OUTPUT_PATH:-$REPO_ROOT/data/output/parquet}}"
mkdir -p "$output" || die "cannot create the output folder $output"
output="$(cd "$output" && pwd)" # relative paths are from the caller's directory
export OUTPUT_PATH="$output"
aggregates="$(dirname "$output")/aggregates/$(basename "$output")/run_$RUN_ID"

log_dir="${UP_LOG_DIR:-$REPO_ROOT/data/logs/up-$(date -u +%Y%m%dT%H%M%SZ)-$$}"
mkdir -p "$log_dir/job" || die "cannot create the log folder $log_dir"
log_dir="$(cd "$log_dir" && pwd)"

# One platform per output folder: two jobs writing one checkpoint would corrupt it. Children
# inherit the lock (fd 8), so it stays held while any of them runs; the broker does not get it.
if command -v flock >/dev/null 2>&1; then
    exec 8>"$output/.up.lock"
    flock -n 8 || die "another scripts/up.sh (or a job it started) is using $output"
fi

# ---------------------------------------------------------------------------------------------
# process helpers

stop_requested=0 # a signal asked to stop
hurry=0          # a further signal while stopping
current_pid=""   # the component being stopped (gets the hurry signal)
producer_pid=""
job_pid=""
validator_pid=""
started_kafka=0

# shellcheck disable=SC2317 # runs from a trap
on_signal() {
    if ((stop_requested)); then
        hurry=1
        if [[ -n "$current_pid" ]]; then
            say "$1 again: hurrying pid $current_pid (SIGTERM again: streamlake exits at once)"
            kill -TERM "$current_pid" 2>/dev/null || true
        fi
        return 0
    fi
    stop_requested=1
    say "$1: stopping (producer, job, validator, broker); a second Ctrl-C hurries"
}

# An error exit (die) must not leave components running.
# shellcheck disable=SC2317 # runs from a trap
on_exit() {
    local pid
    for pid in "$producer_pid" "$job_pid" "$validator_pid"; do
        if [[ -n "$pid" ]] && ! finished "$pid"; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    if ((started_kafka)); then
        bash "$SCRIPT_DIR/kafka.sh" stop 8>&- || true
    fi
}
trap 'on_signal SIGINT' INT
trap 'on_signal SIGTERM' TERM
trap on_exit EXIT

# Waits for $1 (name $2) to exit, SIGKILL after STOP_TIMEOUT s; sets wait_rc.
wait_rc=0
wait_exit() {
    local pid="$1" name="$2" deadline=$((SECONDS + STOP_TIMEOUT)) killed=0
    current_pid="$pid"
    while ! finished "$pid"; do
        if ((!killed && SECONDS >= deadline)); then
            say "$name (pid $pid) still runs ${STOP_TIMEOUT} s after SIGTERM: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            killed=1
        fi
        sleep 0.2 || true
    done
    current_pid=""
    reap "$pid"
    wait_rc=$reaped_rc
}

check_stop() { # during startup: a signal skips the remaining steps
    if ((stop_requested)); then
        say "stop requested during startup"
        return 1
    fi
}

# ---------------------------------------------------------------------------------------------
# start

startup() {
    if [[ ! -x "$BIN" ]]; then
        [[ -z "${STREAMLAKE_BIN:-}" ]] || die "STREAMLAKE_BIN=$BIN is not an executable file"
        line build "no binary at $BIN: cargo build --release (the first build takes several minutes)"
        (cd "$REPO_ROOT" && cargo build --release) || die "cargo build --release failed"
    fi

    # Kafka
    local kafka_state="${KAFKA_STATE_DIR:-$REPO_ROOT/.kafka}" addr out
    case "$kafka_state" in /*) ;; *) kafka_state="$REPO_ROOT/$kafka_state" ;; esac
    if [[ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then
        line kafka "$KAFKA_BOOTSTRAP_SERVERS (from KAFKA_BOOTSTRAP_SERVERS; not started or stopped here)"
    elif addr="$(bash "$SCRIPT_DIR/kafka.sh" status 2>/dev/null 8>&-)"; then
        export KAFKA_BOOTSTRAP_SERVERS="$addr"
        line kafka "$addr already running (pid $(cat "$kafka_state/kafka.pid" 2>/dev/null || echo '?'); left running at stop), log $kafka_state/logs/server.log"
    else
        say "starting Kafka with scripts/kafka.sh start (the first start fetches the jars with Maven)"
        started_kafka=1
        out="$(bash "$SCRIPT_DIR/kafka.sh" start 8>&-)" || die "scripts/kafka.sh start failed (see above)"
        addr="$(tail -n1 <<<"$out")"
        [[ "$addr" =~ ^[0-9.]+:[0-9]+$ ]] || die "unexpected address from scripts/kafka.sh start: '$addr'"
        export KAFKA_BOOTSTRAP_SERVERS="$addr"
        line kafka "$addr started (pid $(cat "$kafka_state/kafka.pid" 2>/dev/null || echo '?')), log $kafka_state/logs/server.log"
    fi
    check_stop || return 1

    # topic (kafka-init)
    if ! out="$("$BIN" topic create 2>"$log_dir/topic.log")"; then
        cat "$log_dir/topic.log" >&2
        die "streamlake topic create failed (log $log_dir/topic.log)"
    fi
    line topic "$out"
    check_stop || return 1

    # producer
    start_bg "$log_dir/producer.log" "$BIN" produce
    producer_pid=$started_pid
    line producer "pid $producer_pid, $MSGS_PER_SEC events/s to $KAFKA_TOPIC, log $log_dir/producer.log"

    # job: one timely cluster of 2 processes (a pids file left by an earlier run in this log
    # folder would say it started before it did)
    rm -f "$log_dir/job/pids"
    start_bg "$log_dir/job/cluster.log" bash "$SCRIPT_DIR/cluster.sh" --log-dir "$log_dir/job" 2 "$workers" -- \
        --topic "$KAFKA_TOPIC" --output "$output" --run-id "$RUN_ID" \
        --starting-offsets earliest --roll-interval 10s
    job_pid=$started_pid
    line job "2 processes x $workers worker(s), RUN_ID $RUN_ID, scripts/cluster.sh pid $job_pid, log $log_dir/job/cluster.log"
    line job "raw Parquet $output/run_$RUN_ID, window averages $aggregates"
    # cluster.sh writes its pids file once every process started: then its log has their lines.
    local waited=0
    while [[ ! -f "$log_dir/job/pids" ]]; do
        if finished "$job_pid" || ((waited >= 100)); then
            break
        fi
        sleep 0.1 || true
        waited=$((waited + 1))
    done
    grep '^\[cluster.sh\] process [0-9]*: pid' "$log_dir/job/cluster.log" 2>/dev/null \
        | sed 's/^\[cluster.sh\] /[up] job       /' || true

    # validator (the Airflow DAG)
    start_bg "$log_dir/validator.log" "$BIN" validate --path "$output" --every 5m
    validator_pid=$started_pid
    line validator "pid $validator_pid, every 5m, log $log_dir/validator.log, reports $output/_reports/"
}

# ---------------------------------------------------------------------------------------------
# run until told to stop, the duration is over, or a component dies

failures=()
monitor() {
    local end="" pid name
    if [[ -n "$duration" ]]; then
        end=$((SECONDS + duration))
        say "running for $duration s (Ctrl-C stops earlier); logs in $log_dir"
    else
        say "running; Ctrl-C (or SIGTERM to pid $$) stops everything; logs in $log_dir"
    fi
    say "window averages: tail -f $log_dir/job/process-0.log"
    while ((!stop_requested)); do
        if [[ -n "$end" ]] && ((SECONDS >= end)); then
            say "--duration $duration s reached: stopping"
            return 0
        fi
        for name in producer job validator; do
            case "$name" in
                producer) pid=$producer_pid ;;
                job) pid=$job_pid ;;
                validator) pid=$validator_pid ;;
            esac
            if finished "$pid"; then
                reap "$pid"
                local rc=$reaped_rc
                failures+=("$name exited by itself with code $rc")
                say "$name (pid $pid) exited by itself with code $rc; last lines of its log:"
                case "$name" in
                    producer) tail -n 15 "$log_dir/producer.log" | sed 's/^/    /' ;;
                    job) tail -n 25 "$log_dir/job/cluster.log" | sed 's/^/    /' ;;
                    validator) tail -n 15 "$log_dir/validator.log" | sed 's/^/    /' ;;
                esac
                case "$name" in
                    producer) producer_pid="" ;;
                    job) job_pid="" ;;
                    validator) validator_pid="" ;;
                esac
                return 1
            fi
        done
        sleep 0.5 || true
    done
}

# ---------------------------------------------------------------------------------------------
# stop, in order

stop_all() {
    local rc summary
    stop_requested=1
    if [[ -n "$producer_pid" ]]; then
        kill -TERM "$producer_pid" 2>/dev/null || true
        wait_exit "$producer_pid" producer
        rc=$wait_rc
        summary="$(grep '^produced ' "$log_dir/producer.log" | tail -n1 || true)"
        line producer "stopped (exit $rc): ${summary:-no summary line, see $log_dir/producer.log}"
        ((rc == 0)) || failures+=("producer exited $rc")
        producer_pid=""
        if [[ -n "$job_pid" ]] && ((DRAIN > 0 && !hurry)); then
            say "letting the job read the last events for $DRAIN s"
            sleep "$DRAIN" || true
        fi
    fi
    if [[ -n "$job_pid" ]]; then
        line job "stopping: SIGTERM to scripts/cluster.sh (pid $job_pid): every process commits and exits"
        kill -TERM "$job_pid" 2>/dev/null || true
        wait_exit "$job_pid" job
        rc=$wait_rc
        grep '^\[cluster.sh\] process [0-9]*: run finished:' "$log_dir/job/cluster.log" 2>/dev/null \
            | sed 's/^\[cluster.sh\] /[up] job       /' || true
        line job "stopped (exit $rc), logs $log_dir/job/"
        ((rc == 0)) || failures+=("job exited $rc (see $log_dir/job/)")
        job_pid=""
    fi
    if [[ -n "$validator_pid" ]]; then
        kill -TERM "$validator_pid" 2>/dev/null || true
        wait_exit "$validator_pid" validator
        rc=$wait_rc
        line validator "stopped (exit $rc), log $log_dir/validator.log"
        ((rc == 0)) || failures+=("validator exited $rc (see $log_dir/validator.log)")
        validator_pid=""
    fi
    if ((started_kafka)); then
        started_kafka=0
        if bash "$SCRIPT_DIR/kafka.sh" stop 8>&-; then
            line kafka "stopped"
        else
            failures+=("scripts/kafka.sh stop failed")
        fi
    fi
}

audit() {
    local rc
    set +e
    "$BIN" validate --path "$output" --audit >"$log_dir/audit.log" 2>&1
    rc=$?
    set -e
    grep -E '^\[validate\] Total rows|^audit: ' "$log_dir/audit.log" | sed 's/^/[up] audit     /' || true
    line audit "exit $rc, full report in $log_dir/audit.log"
    ((rc == 0)) || failures+=("validate --audit exited $rc (see $log_dir/audit.log)")
}

# `if`/`||` keep a failed step from exiting at once: everything started is stopped in order.
say "logs in $log_dir"
if startup; then
    monitor || true
fi
stop_all
if ((${#failures[@]} == 0)); then
    audit
fi
if ((${#failures[@]})); then
    say "FAILED:"
    printf '[up]   %s\n' "${failures[@]}"
    exit 1
fi
say "stopped cleanly; start again with scripts/up.sh to resume RUN_ID $RUN_ID"
exit 0
