#!/usr/bin/env bash
# THE test command of streamlake:
#
#   scripts/test.sh                      setup + fmt + clippy + tests
#   scripts/test.sh --setup-only         only install what the tests need (apt packages, .venv), then exit
#   scripts/test.sh [CARGO_ARGS] [-- TEST_ARGS]
#                                        e.g. scripts/test.sh --test integration -- reliability:: --nocapture
#                                        => cargo test --profile ci --features crash-points --test integration -- --test-threads=2 reliability:: --nocapture
#
# The `ci` profile (Cargo.toml) is `release` without LTO and debug info: linking ~25 test binaries
# with thin LTO and debug info took most of a fresh run once delta-rs joined the dependencies.
#
# Works on a fresh Debian 12 machine (as root, or with sudo) that has Java 17, Maven, Go 1.26, Rust (cargo with
# rustfmt + clippy) and python3; installs everything else itself. See scripts/README.md.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
cd "$REPO_ROOT"

VENV_DIR="$REPO_ROOT/.venv"
REQUIREMENTS="$SCRIPT_DIR/requirements-test.txt"
VENV_STAMP="$VENV_DIR/.requirements-test.stamp"
# DuckDB with httpfs for the S3 read-back (see the requirements file for why a second venv).
DUCKDB_S3_VENV="$REPO_ROOT/.venv-duckdb-s3"
DUCKDB_S3_REQUIREMENTS="$SCRIPT_DIR/requirements-duckdb-s3.txt"
TEST_KAFKA_STATE_DIR="${STREAMLAKE_TEST_KAFKA_STATE_DIR:-$REPO_ROOT/.kafka-test}"
# The local S3 server (SeaweedFS, scripts/s3.sh); its binary is cached outside the repo.
TEST_S3_STATE_DIR="${STREAMLAKE_TEST_S3_STATE_DIR:-$REPO_ROOT/.s3-test}"

# Debian packages needed to build rdkafka (feature cmake-build: librdkafka via CMake, C and C++
# compilers, zlib through libz-sys/pkg-config) and zstd-sys (C compiler); chromium (headless)
# for the status-page test in tests/observability.rs.
# librdkafka 2.12's CMake build includes <curl/curl.h> even with curl disabled, so the
# headers must exist (seen: "fatal error: curl/curl.h: No such file or directory").
# libssl-dev: librdkafka is built with OpenSSL (feature ssl; SASL SCRAM and OAUTHBEARER need it
# too) for the tests against the broker's SASL_SSL and mutual-TLS listeners.
# curl: scripts/s3.sh signs its readiness probe and bucket creation with `curl --aws-sigv4`.
APT_PACKAGES=(cmake g++ make pkg-config zlib1g-dev libcurl4-openssl-dev libssl-dev chromium curl)

T_ALL="$(date +%s)"
CURRENT_STEP="setup"
STARTED_KAFKA=0
STARTED_S3=0
TEST_PID=""

section() {
    CURRENT_STEP="$1"
    printf '\n==================== %s ====================\n' "$1"
}
info() { printf '[test.sh] %s\n' "$*"; }
die() {
    printf '[test.sh] ERROR: %s\n' "$*" >&2
    exit 1
}

# Runs a step, prints its duration.
step() { # $1 = title, rest = command
    local title="$1" t0 rc
    shift
    section "$title"
    printf '$ %s\n' "$*"
    t0="$(date +%s)"
    set +e
    "$@"
    rc=$?
    set -e
    if ((rc != 0)); then
        printf '[test.sh] FAILED: %s (exit %d, after %d s)\n' "$title" "$rc" "$(($(date +%s) - t0))" >&2
        exit "$rc"
    fi
    printf '[test.sh] ok: %s (%d s)\n' "$title" "$(($(date +%s) - t0))"
}

as_root() {
    if [[ "$(id -u)" == 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

# ---------------------------------------------------------------------------------------------
# setup (idempotent and quick when everything is already there)

ensure_base_tools() {
    local missing=()
    for t in java mvn cargo python3 go; do
        command -v "$t" >/dev/null 2>&1 || missing+=("$t")
    done
    ((${#missing[@]} == 0)) || die "missing preinstalled tool(s): ${missing[*]} (need Java 17+, Maven, Rust/cargo, python3, Go 1.26+ to build the S3 test server)"
}

pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

ensure_apt_packages() {
    local missing=() p
    command -v dpkg-query >/dev/null 2>&1 || {
        info "no dpkg (not Debian?): skipping system packages, make sure these exist: ${APT_PACKAGES[*]}"
        return 0
    }
    for p in "${APT_PACKAGES[@]}"; do
        pkg_installed "$p" || missing+=("$p")
    done
    # `python3 -m venv` needs ensurepip, which Debian's python3 only has with python3-venv.
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        missing+=(python3-venv)
    fi
    if ((${#missing[@]} == 0)); then
        info "system packages present: ${APT_PACKAGES[*]}"
        return 0
    fi
    info "installing missing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -q
    as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
}

ensure_rust_tools() {
    local need=()
    command -v rustfmt >/dev/null 2>&1 && command -v cargo-fmt >/dev/null 2>&1 || need+=(rustfmt)
    command -v cargo-clippy >/dev/null 2>&1 || need+=(clippy)
    ((${#need[@]} == 0)) && { info "rustfmt and clippy present"; return 0; }
    command -v rustup >/dev/null 2>&1 || die "missing Rust component(s) ${need[*]} and no rustup to add them"
    info "adding Rust component(s): ${need[*]}"
    rustup component add "${need[@]}" || die "rustup component add ${need[*]} failed"
}

venv_stamp_value() {
    # The requirements' content and the interpreter's version: either changing => reinstall.
    printf '%s %s\n' "$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)" \
        "$("$VENV_DIR/bin/python" -c 'import sys; print(sys.version.split()[0])' 2>/dev/null || echo none)"
}

ensure_venv() {
    if [[ -x "$VENV_DIR/bin/python" ]] && "$VENV_DIR/bin/python" -c 'import sys' >/dev/null 2>&1; then
        if [[ -f "$VENV_STAMP" && "$(cat "$VENV_STAMP")" == "$(venv_stamp_value)" ]]; then
            info "python venv up to date: $VENV_DIR ($(head -c 12 "$VENV_STAMP")...)"
            return 0
        fi
    else
        info "creating python venv $VENV_DIR with $(command -v python3) ($(python3 --version 2>&1))"
        rm -rf "$VENV_DIR"
        python3 -m venv "$VENV_DIR" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    fi
    info "installing $REQUIREMENTS into $VENV_DIR"
    rm -f "$VENV_STAMP"
    "$VENV_DIR/bin/python" -m pip install --disable-pip-version-check --no-input -q \
        --only-binary=:all: -r "$REQUIREMENTS" \
        || die "pip install -r $REQUIREMENTS failed"
    "$VENV_DIR/bin/python" -c 'import pyarrow, pandas, duckdb' \
        || die "the venv cannot import pyarrow/pandas/duckdb after install"
    venv_stamp_value >"$VENV_STAMP"
    info "venv ready: $("$VENV_DIR/bin/python" -c 'import sys, pyarrow, pandas, duckdb; print("python", sys.version.split()[0], "pyarrow", pyarrow.__version__, "pandas", pandas.__version__, "duckdb", duckdb.__version__)')"
}

# The small second venv of DuckDB 1.5.5 and its httpfs extension wheel; reinstalled when the
# requirements file or the interpreter changes.
# Spark 3.5 with Delta Lake for the Delta read-back (tests/common/delta.rs, read_spark): pyspark
# 3.5.7 in scripts/bench/.venv-spark and delta-spark's jars in scripts/spark-delta/jars (Maven
# Central), once; about a minute cold, under a second when present.
ensure_spark_delta() {
    local t0
    t0="$(date +%s)"
    bash "$SCRIPT_DIR/spark-delta/setup.sh" || die "scripts/spark-delta/setup.sh failed (pyspark 3.5.7 or the Delta jars)"
    info "Spark + Delta Lake ready ($(($(date +%s) - t0)) s)"
}

ensure_duckdb_s3_venv() {
    local stamp="$DUCKDB_S3_VENV/.stamp" want
    want="$(sha256sum "$DUCKDB_S3_REQUIREMENTS" | cut -d' ' -f1) $(python3 -c 'import sys; print(sys.version.split()[0])')"
    if [[ -x "$DUCKDB_S3_VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        info "duckdb+httpfs venv up to date: $DUCKDB_S3_VENV"
        return 0
    fi
    info "installing $DUCKDB_S3_REQUIREMENTS into $DUCKDB_S3_VENV"
    rm -rf "$DUCKDB_S3_VENV"
    python3 -m venv "$DUCKDB_S3_VENV" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    "$DUCKDB_S3_VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q \
        --only-binary=:all: -r "$DUCKDB_S3_REQUIREMENTS" \
        || die "pip install -r $DUCKDB_S3_REQUIREMENTS failed"
    "$DUCKDB_S3_VENV/bin/python" -c 'import duckdb, duckdb_extension_httpfs' \
        || die "the duckdb+httpfs venv cannot import duckdb and duckdb_extension_httpfs after install"
    echo "$want" >"$stamp"
}

# Background setup jobs. The downloads (pip, Maven) wait on the network and the SeaweedFS build
# mostly on one core, so they run beside the cargo builds (fmt, clippy, building the tests) instead
# of before them; everything is waited for, and checked, before the first test starts. Each job
# runs in its own process group (set -m) so that an early exit stops it with its children, and
# writes to its own log, printed when it is waited for. A job that fails stops the run at the next
# check, with its log.
BG_DIR=""
BG_NAMES=()
declare -A BG_PID=() BG_T0=() BG_TITLE=() BG_RC=()

bg_start() { # $1 = name, $2 = title, rest = command (a function of this script or a program)
    local name="$1" title="$2"
    shift 2
    [[ -n "$BG_DIR" ]] || BG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/streamlake-test-setup.XXXXXX")"
    set -m
    ("$@") </dev/null >"$BG_DIR/$name.log" 2>&1 &
    BG_PID[$name]=$!
    set +m
    BG_T0[$name]="$(date +%s)"
    BG_TITLE[$name]="$title"
    BG_NAMES+=("$name")
    info "started in the background: $title (log: $BG_DIR/$name.log)"
}

bg_fail() { # $1 = name: prints its log and fails the run
    local name="$1"
    printf '\n---- log of the background step "%s" (%s) ----\n' "${BG_TITLE[$name]}" "$BG_DIR/$name.log" >&2
    tail -n 80 "$BG_DIR/$name.log" >&2 || true
    printf -- '---- end of log ----\n' >&2
    CURRENT_STEP="${BG_TITLE[$name]}"
    die "background step failed: ${BG_TITLE[$name]} (exit ${BG_RC[$name]}, after $(($(date +%s) - BG_T0[$name])) s)"
}

# Fails the run now if a background job has already failed (between the foreground steps, so a
# broken download does not wait for the whole build to be reported).
bg_check() {
    local name rc
    for name in "${BG_NAMES[@]}"; do
        [[ -n "${BG_RC[$name]:-}" ]] && continue
        kill -0 "${BG_PID[$name]}" 2>/dev/null && continue
        rc=0
        wait "${BG_PID[$name]}" || rc=$?
        BG_RC[$name]=$rc
        ((rc == 0)) || bg_fail "$name"
    done
}

# Waits for every background job, prints its log and duration; fails on the first that failed.
bg_wait_all() { # $1 = the section's title (optional)
    local name rc t_wait
    ((${#BG_NAMES[@]})) || return 0
    section "${1:-setup: waiting for the background steps}"
    for name in "${BG_NAMES[@]}"; do
        t_wait="$(date +%s)"
        if [[ -z "${BG_RC[$name]:-}" ]]; then
            rc=0
            wait "${BG_PID[$name]}" || rc=$?
            BG_RC[$name]=$rc
        fi
        ((BG_RC[$name] == 0)) || bg_fail "$name"
        printf -- '---- %s ----\n' "${BG_TITLE[$name]}"
        cat "$BG_DIR/$name.log"
        printf '[test.sh] ok: %s (started %d s ago; waited %d s for it here)\n' "${BG_TITLE[$name]}" \
            "$(($(date +%s) - BG_T0[$name]))" "$(($(date +%s) - t_wait))"
    done
    BG_NAMES=()
    rm -rf "$BG_DIR"
    BG_DIR=""
}

# Stops background jobs still running (an early exit): each job's whole process group.
bg_stop_all() {
    local name
    for name in "${BG_NAMES[@]}"; do
        [[ -n "${BG_RC[$name]:-}" ]] && continue
        kill -TERM -- "-${BG_PID[$name]}" 2>/dev/null || true
    done
}

timed() { # $1 = what, rest = command: runs it (a failure ends the job) and says how long it took
    local what="$1" t0
    shift
    t0="$(date +%s)"
    "$@"
    info "$what: done in $(($(date +%s) - t0)) s"
}

python_venvs() {
    timed "python venv (.venv)" ensure_venv
    timed "duckdb+httpfs venv" ensure_duckdb_s3_venv
}

# One job for both Maven users: concurrent Maven runs would share one local repository.
java_downloads() {
    timed "Kafka jars" env KAFKA_STATE_DIR="$TEST_KAFKA_STATE_DIR" bash "$SCRIPT_DIR/kafka.sh" fetch
    timed "Spark + Delta Lake" ensure_spark_delta
}

# Builds the pinned SeaweedFS once (4-6 min on 2 cores), then finds it cached. Niced: the cargo
# builds in the foreground come first, it takes the slack.
ensure_s3_server() {
    local bin
    bin="$(nice -n 10 bash "$SCRIPT_DIR/s3.sh" build)" || die "could not build the S3 test server (scripts/s3.sh build)"
    info "S3 test server binary: $bin"
}

s3_server_build() {
    timed "S3 test server" ensure_s3_server
}

# The part of the setup the cargo builds need, in the foreground; the rest in the background.
setup() {
    local t0
    t0="$(date +%s)"
    section "setup: tools, system packages (background: python venvs, jars, S3 server)"
    ensure_base_tools
    ensure_apt_packages
    ensure_rust_tools
    bg_start venvs "python venvs (pip)" python_venvs
    bg_start java "Kafka, Spark and Delta jars (pip, Maven)" java_downloads
    bg_start s3 "S3 test server (SeaweedFS, Go)" s3_server_build
    info "foreground setup done in $(($(date +%s) - t0)) s"
}

# ---------------------------------------------------------------------------------------------
# S3 (SeaweedFS)

start_s3() {
    section "S3 server (SeaweedFS)"
    local out endpoint t0
    t0="$(date +%s)"
    STARTED_S3=1
    # An empty server each run (the credentials are kept). A server left running by a killed run
    # is stopped first: its data must not be deleted under it.
    S3_STATE_DIR="$TEST_S3_STATE_DIR" bash "$SCRIPT_DIR/s3.sh" stop >/dev/null 2>&1 || true
    rm -rf "$TEST_S3_STATE_DIR/data"
    out="$(S3_STATE_DIR="$TEST_S3_STATE_DIR" bash "$SCRIPT_DIR/s3.sh" start)" \
        || die "could not start the S3 server (scripts/s3.sh start failed)"
    endpoint="$(tail -n1 <<<"$out")"
    [[ "$endpoint" =~ ^http://127\.0\.0\.1:[0-9]+$ ]] || die "unexpected endpoint from s3.sh start: '$endpoint'"
    # The standard AWS variables, as a user sets them for any S3 client, and no others: a
    # developer's own AWS_* settings (profile, session token, endpoint) must not reach the tests.
    local envs var
    envs="$(S3_STATE_DIR="$TEST_S3_STATE_DIR" bash "$SCRIPT_DIR/s3.sh" env)" || die "scripts/s3.sh env failed"
    for var in $(compgen -e | grep '^AWS_' || true); do
        unset "$var"
    done
    eval "$envs"
    [[ "${AWS_ENDPOINT_URL:-}" == "$endpoint" ]] || die "s3.sh env gave AWS_ENDPOINT_URL='${AWS_ENDPOINT_URL:-}', not $endpoint"
    export STREAMLAKE_TEST_S3_BUCKET=lake
    export STREAMLAKE_TEST_S3_STATE_DIR="$TEST_S3_STATE_DIR"
    info "S3 ready at $AWS_ENDPOINT_URL, bucket $STREAMLAKE_TEST_S3_BUCKET ($(($(date +%s) - t0)) s)"
}

stop_s3() {
    if ((STARTED_S3)); then
        section "stopping the S3 server"
        S3_STATE_DIR="$TEST_S3_STATE_DIR" bash "$SCRIPT_DIR/s3.sh" stop || true
        STARTED_S3=0
    fi
}

# ---------------------------------------------------------------------------------------------
# Kafka

stop_kafka() {
    if ((STARTED_KAFKA)); then
        section "stopping the test Kafka broker"
        KAFKA_STATE_DIR="$TEST_KAFKA_STATE_DIR" bash "$SCRIPT_DIR/kafka.sh" stop || true
        STARTED_KAFKA=0
    fi
}

on_exit() {
    local rc=$? failed_step="$CURRENT_STEP"
    trap '' INT TERM # let the cleanup finish
    trap - EXIT
    # The tests run in a process group of their own (tests_with_clippy_beside): stop it with the
    # programs the tests started, before the broker and the S3 server go.
    if [[ -n "$TEST_PID" ]] && kill -0 "$TEST_PID" 2>/dev/null; then
        kill -TERM -- "-$TEST_PID" 2>/dev/null || true
        wait "$TEST_PID" 2>/dev/null || true
    fi
    bg_stop_all
    stop_kafka
    stop_s3
    if ((rc == 0)); then
        printf '\n[test.sh] ALL STEPS PASSED in %d s\n' "$(($(date +%s) - T_ALL))"
    else
        printf '\n[test.sh] FAILED (step: %s, exit %d) after %d s\n' "$failed_step" "$rc" "$(($(date +%s) - T_ALL))" >&2
    fi
    exit "$rc"
}

start_kafka() {
    section "Kafka broker"
    if [[ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]]; then
        info "using the given KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS"
        return 0
    fi
    local out addr t0
    t0="$(date +%s)"
    STARTED_KAFKA=1 # set before starting: stop is harmless if nothing runs
    # Fresh, empty cluster each run (KAFKA_FRESH wipes only when no broker of that state dir runs).
    out="$(KAFKA_STATE_DIR="$TEST_KAFKA_STATE_DIR" KAFKA_FRESH="${STREAMLAKE_TEST_KAFKA_FRESH:-1}" \
        bash "$SCRIPT_DIR/kafka.sh" start)" || die "could not start Kafka (scripts/kafka.sh start failed)"
    addr="$(tail -n1 <<<"$out")"
    [[ "$addr" =~ ^127\.0\.0\.1:[0-9]+$ ]] || die "unexpected address from kafka.sh start: '$addr'"
    export KAFKA_BOOTSTRAP_SERVERS="$addr"
    info "Kafka ready at $KAFKA_BOOTSTRAP_SERVERS ($(($(date +%s) - t0)) s)"
    # The secured listeners of the same broker; certificates and client properties are in secure/.
    local secure="$TEST_KAFKA_STATE_DIR/secure" f
    [[ "$secure" == /* ]] || secure="$REPO_ROOT/$secure" # as kafka.sh resolves it
    for f in sasl_ssl_address ssl_address; do
        [[ -s "$secure/$f" ]] || die "kafka.sh start wrote no $secure/$f"
    done
    export STREAMLAKE_TEST_KAFKA_SECURE_DIR="$secure"
    STREAMLAKE_TEST_SASL_SSL_BROKERS="$(cat "$secure/sasl_ssl_address")"
    STREAMLAKE_TEST_SSL_BROKERS="$(cat "$secure/ssl_address")"
    export STREAMLAKE_TEST_SASL_SSL_BROKERS STREAMLAKE_TEST_SSL_BROKERS
    info "STREAMLAKE_TEST_KAFKA_SECURE_DIR=$STREAMLAKE_TEST_KAFKA_SECURE_DIR"
    info "STREAMLAKE_TEST_SASL_SSL_BROKERS=$STREAMLAKE_TEST_SASL_SSL_BROKERS"
    info "STREAMLAKE_TEST_SSL_BROKERS=$STREAMLAKE_TEST_SSL_BROKERS"
}

# The slowest units of the test build (its `--timings` report), so that a build that grows shows
# why in the log. Informational: a report it cannot read does not fail the run.
build_time_summary() {
    local report="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/cargo-timings/cargo-timing.html"
    [[ -f "$report" ]] || { info "no build timing report at $report"; return 0; }
    python3 "$SCRIPT_DIR/build_timings.py" "$report" 12 || info "could not summarise $report"
}

# ---------------------------------------------------------------------------------------------
# clippy, beside the tests

# Both feature sets: the tests run the `crash-points` build, users the default one, and each has
# code the other does not compile.
clippy_both() {
    nice -n 19 cargo clippy --profile ci --all-targets -- -D warnings
    nice -n 19 cargo clippy --profile ci --all-targets --features crash-points -- -D warnings
}

# Waits until the cargo process $1 runs a test binary (it has released the build directory's
# lock by then: the build before it is a no-op after `--no-run`) or has ended, then runs clippy.
# Started earlier, clippy could take the lock first and hold the tests back for its whole build.
clippy_once_tests_run() {
    local cargo_pid="$1" child exe
    while kill -0 "$cargo_pid" 2>/dev/null; do
        for child in $(ps -o pid= --ppid "$cargo_pid" 2>/dev/null); do
            exe="$(readlink "/proc/$child/exe" 2>/dev/null || true)"
            [[ "$exe" == */deps/* ]] && break 2
        done
        sleep 1
    done
    clippy_both
}

# The tests, with clippy in the background beside them. Why beside: the tests mostly wait (on the
# broker, on the job's rolls, on fsyncs), ~60% of both cores idle, and clippy has to check every
# dependency again (check builds are not shared with the test build): 8-9 minutes of a fresh run
# in front of the tests, now in their slack, niced below them. Its log is printed, and a warning
# fails the run, once the tests are done.
tests_with_clippy_beside() {
    local t0 rc
    section "cargo test (ci profile: optimised, no LTO), with clippy beside it (-D warnings)"
    printf '$ %s\n' "$*"
    t0="$(date +%s)"
    set +e
    set -m
    "$@" &
    TEST_PID=$!
    set +m
    bg_start clippy "cargo clippy (ci profile, all targets, both feature sets, -D warnings)" \
        clippy_once_tests_run "$TEST_PID"
    wait "$TEST_PID"
    rc=$?
    TEST_PID=""
    set -e
    if ((rc != 0)); then
        printf '[test.sh] FAILED: cargo test (exit %d, after %d s)\n' "$rc" "$(($(date +%s) - t0))" >&2
        CURRENT_STEP="cargo test"
        exit "$rc"
    fi
    printf '[test.sh] ok: cargo test (%d s)\n' "$(($(date +%s) - t0))"
    bg_wait_all "clippy (waiting for it)"
}

# ---------------------------------------------------------------------------------------------

main() {
    local setup_only=0
    local cargo_args=() test_args=() seen_dd=0 a
    for a in "$@"; do
        if ((seen_dd)); then
            test_args+=("$a")
        elif [[ "$a" == "--" ]]; then
            seen_dd=1
        elif [[ "$a" == "--setup-only" ]]; then
            setup_only=1
        else
            cargo_args+=("$a")
        fi
    done

    trap on_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    setup
    if ((setup_only)); then
        bg_wait_all
        info "--setup-only: done"
        return 0
    fi

    export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
    step "cargo fmt --check" cargo fmt --check
    bg_check
    # The reliability tests kill the job at named crash points (src/crash.rs), which exist only
    # in builds with the `crash-points` feature: the tests run such a build.
    # The same command as the test step below, without running: the build overlaps the background
    # setup, and the test step's time is the tests'.
    step "cargo test --no-run (build the tests)" \
        cargo test --profile ci --features crash-points --no-run --timings ${cargo_args[@]+"${cargo_args[@]}"}
    build_time_summary
    bg_wait_all

    start_kafka
    start_s3
    export STREAMLAKE_TEST_PYTHON="$VENV_DIR/bin/python"
    export STREAMLAKE_TEST_DUCKDB_S3_PYTHON="$DUCKDB_S3_VENV/bin/python"
    export STREAMLAKE_REQUIRE_KAFKA=1
    # The broker-restart scenario starts a broker of its own with these jars.
    export STREAMLAKE_TEST_KAFKA_LIBS="$TEST_KAFKA_STATE_DIR/libs"
    info "KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS"
    info "STREAMLAKE_TEST_PYTHON=$STREAMLAKE_TEST_PYTHON"
    info "STREAMLAKE_REQUIRE_KAFKA=$STREAMLAKE_REQUIRE_KAFKA"

    tests_with_clippy_beside cargo test --profile ci --features crash-points ${cargo_args[@]+"${cargo_args[@]}"} \
        -- --test-threads=2 ${test_args[@]+"${test_args[@]}"}
}

main "$@"
