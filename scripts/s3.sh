#!/usr/bin/env bash
# A local S3-compatible server (SeaweedFS, Apache-2.0) for development and tests, on 127.0.0.1.
#
#   scripts/s3.sh start     build the pinned SeaweedFS (first time only, cached), start it, wait
#                           until its S3 API answers a signed request, create the buckets; the LAST
#                           line of stdout is the endpoint http://127.0.0.1:PORT
#   scripts/s3.sh stop      stop the server of this state dir by its PID (SIGTERM, then SIGKILL)
#   scripts/s3.sh status    exit 0 and print the endpoint if running, exit 3 if not
#   scripts/s3.sh build     only build (or find) the cached binary and print its path
#   scripts/s3.sh env       print the AWS_* settings that reach it, as `export` lines:
#                           eval "$(scripts/s3.sh env)"
#   scripts/s3.sh bucket B  create bucket B (no error if it exists)
#
# Why SeaweedFS: a real S3 server (not a mock of the API), Apache-2.0, built from its Go module.
# Its S3 API refuses a conditional PUT (If-None-Match: *) on an existing key with 412, rejects a
# bad signature with 403, and keeps a multipart upload invisible until it is completed: the
# behaviours the object-store commit protocol depends on.
#
# The build: `go install` refuses the module (its go.mod has replace directives), so a wrapper
# module that requires it is built with `go build`. The first build downloads ~300 Go modules
# from the Go module proxy and compiles for 4-6 minutes on 2 cores; the binary (~230 MB) is then
# cached under $STREAMLAKE_CACHE_DIR/seaweedfs-<version>/ and a second run does not rebuild it.
#
# Environment:
#   S3_STATE_DIR          state folder: data, logs, pid, endpoint, credentials (default <repo>/.s3)
#   S3_PORT               S3 API port (default: the previous one if free, else a free one < 50000)
#   S3_BUCKETS            buckets created at start, space-separated (default: "lake")
#   S3_READY_TIMEOUT      seconds to wait for readiness (default: 60)
#   STREAMLAKE_CACHE_DIR  where built test servers are cached (default ${XDG_CACHE_HOME:-~/.cache}/streamlake)
#   WEED_BIN              use this weed binary instead of building one
#
# Credentials: a random access key and secret made at the first start, kept in
# <state>/credentials (mode 600) and never printed except by `env`. Traffic stays on loopback:
# every listener binds 127.0.0.1 and the master's telemetry (on by default, to
# telemetry.seaweedfs.com) is turned off.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"

# The pinned SeaweedFS: the Go module version (a pseudo-version of its master branch, 4.53).
WEED_MODULE="github.com/seaweedfs/seaweedfs"
WEED_VERSION="v0.0.0-20261109003541-7506e5f91cd6"

STATE_DIR="${S3_STATE_DIR:-$REPO_ROOT/.s3}"
case "$STATE_DIR" in /*) ;; *) STATE_DIR="$REPO_ROOT/$STATE_DIR" ;; esac
CACHE_DIR="${STREAMLAKE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/streamlake}"
WEED_CACHED="$CACHE_DIR/seaweedfs-$WEED_VERSION/weed"

DATA_DIR="$STATE_DIR/data"
LOG_FILE="$STATE_DIR/weed.log"
PID_FILE="$STATE_DIR/weed.pid"
ENDPOINT_FILE="$STATE_DIR/endpoint"
PORTS_FILE="$STATE_DIR/ports"
CRED_FILE="$STATE_DIR/credentials"
IDENTITIES="$STATE_DIR/identities.json"
REGION="us-east-1"

log() { printf '[s3.sh] %s\n' "$*" >&2; }
die() { printf '[s3.sh] ERROR: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

# ---------------------------------------------------------------------------------------------
# the binary

weed_bin() {
    if [[ -n "${WEED_BIN:-}" ]]; then
        [[ -x "$WEED_BIN" ]] || die "WEED_BIN=$WEED_BIN is not an executable file"
        echo "$WEED_BIN"
        return
    fi
    if [[ ! -x "$WEED_CACHED" ]]; then
        build_weed
    fi
    echo "$WEED_CACHED"
}

build_weed() {
    command -v go >/dev/null || die "Go is needed to build SeaweedFS (go 1.26 or newer); install it, or set WEED_BIN"
    local dest work started
    dest="$(dirname "$WEED_CACHED")"
    mkdir -p "$dest"
    work="$(mktemp -d "$dest/build.XXXXXX")"
    started="$(date +%s)"
    log "building SeaweedFS $WEED_VERSION (first time only: 4-6 minutes on 2 cores; cached in $dest)"
    cat >"$work/go.mod" <<EOF
module streamlake.local/testservers/seaweedfs

go 1.26
EOF
    cat >"$work/tools.go" <<EOF
//go:build tools

// Package tools pins the SeaweedFS server that the tests run (see scripts/s3.sh).
package tools

import _ "$WEED_MODULE/weed"
EOF
    # -mod=mod: the wrapper's go.mod and go.sum are written by `go get`, with the module's own
    # requirements; the weed binary is built from the module as published. -ldflags "-s -w": no
    # symbol table or DWARF, which nobody debugs here and which the linker spends a while writing.
    if ! (cd "$work" && GOFLAGS=-mod=mod go get "$WEED_MODULE@$WEED_VERSION" >"$work/build.log" 2>&1 \
        && GOFLAGS=-mod=mod go build -ldflags "-s -w" -o "$work/weed" "$WEED_MODULE/weed" >>"$work/build.log" 2>&1); then
        tail -n 30 "$work/build.log" >&2
        die "building SeaweedFS failed (log: $work/build.log)"
    fi
    mv -f "$work/weed" "$WEED_CACHED"
    rm -rf "$work"
    log "built $("$WEED_CACHED" version 2>/dev/null | head -n1) in $(($(date +%s) - started)) s: $WEED_CACHED"
}

# ---------------------------------------------------------------------------------------------
# process helpers

# live_pid and port_free (shared with scripts/kafka.sh): the server of THIS state dir is the weed
# whose command line names its data folder.
PID_MATCH="-dir=$DATA_DIR"
# shellcheck source=scripts/proc.sh
source "$SCRIPT_DIR/proc.sh"

# A port P in 20000-39999 with P and P+10000 free (weed listens on P+10000 for gRPC), clear of
# the ports in $* and of their +10000 ports.
pick_port() {
    local taken="" a p tries=0
    for a in "$@"; do taken+=" $a $((a + 10000)) "; done
    while ((tries < 200)); do
        p=$((20000 + RANDOM % 20000))
        tries=$((tries + 1))
        [[ "$taken" == *" $p "* || "$taken" == *" $((p + 10000)) "* ]] && continue
        port_free "$p" && port_free $((p + 10000)) && { echo "$p"; return 0; }
    done
    die "no free port pair found in 20000-49999"
}

# $1 if it and its +10000 port are free and clear of the ports in the rest, else a new pick_port.
reuse_port() {
    local want="$1" a
    shift
    if [[ "$want" =~ ^[0-9]+$ ]] && port_free "$want" && port_free $((want + 10000)); then
        for a in "$@"; do
            [[ "$want" == "$a" || "$want" == $((a + 10000)) || $((want + 10000)) == "$a" ]] && want=""
        done
        [[ -n "$want" ]] && { echo "$want"; return 0; }
    fi
    pick_port "$@"
}

# ---------------------------------------------------------------------------------------------
# credentials and requests

ensure_credentials() {
    if [[ ! -s "$CRED_FILE" ]]; then
        local key secret
        key="SL$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F)"
        secret="$(head -c 30 /dev/urandom | base64 | tr -d '/+=\n')"
        (umask 077 && printf '%s\n%s\n' "$key" "$secret" >"$CRED_FILE")
    fi
    ACCESS_KEY="$(sed -n 1p "$CRED_FILE")"
    SECRET_KEY="$(sed -n 2p "$CRED_FILE")"
    (umask 077 && cat >"$IDENTITIES" <<EOF
{"identities": [{"name": "streamlake-tests",
  "credentials": [{"accessKey": "$ACCESS_KEY", "secretKey": "$SECRET_KEY"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
EOF
    )
}

# A signed S3 request: s3_curl METHOD PATH [curl args]; prints the HTTP status. The secret goes
# to curl through a file, never on a command line that `ps` shows.
s3_curl() {
    local method="$1" path="$2"
    shift 2
    local cfg
    cfg="$(mktemp "$STATE_DIR/.curl.XXXXXX")" # mode 600, beside the credentials it holds
    printf 'user = "%s:%s"\n' "$ACCESS_KEY" "$SECRET_KEY" >"$cfg"
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 -K "$cfg" \
        --aws-sigv4 "aws:amz:$REGION:s3" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
        -X "$method" "$@" "$(cat "$ENDPOINT_FILE")$path" || true
    rm -f "$cfg"
}

create_bucket() { # $1 bucket
    local code
    code="$(s3_curl PUT "/$1")"
    case "$code" in
        200 | 409) ;;
        *) die "creating bucket $1 answered HTTP $code" ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# commands

cmd_start() {
    command -v curl >/dev/null || die "curl (7.75 or newer, for --aws-sigv4) is needed to check the server"
    command -v python3 >/dev/null || die "python3 is needed to find free ports"
    mkdir -p "$STATE_DIR" "$DATA_DIR"
    ensure_credentials
    local pid
    if pid="$(live_pid)"; then
        log "already running (pid $pid)"
        cat "$ENDPOINT_FILE"
        return 0
    fi
    local weed
    weed="$(weed_bin)"
    local s3 master volume filer previous
    previous="$(cat "$PORTS_FILE" 2>/dev/null || true)"
    s3="${S3_PORT:-}"
    if [[ -z "$s3" && -n "$previous" ]]; then
        s3="${previous%% *}"
        port_free "$s3" && port_free $((s3 + 10000)) || s3=""
    fi
    [[ -n "$s3" ]] || s3="$(pick_port)"
    [[ "$s3" =~ ^[0-9]+$ ]] && ((s3 >= 1024 && s3 < 50000)) \
        || die "S3_PORT=$s3: give a port from 1024 to 49999 (weed listens on the port + 10000 too)"
    port_free "$s3" && port_free $((s3 + 10000)) || die "port $s3 or $((s3 + 10000)) on 127.0.0.1 is in use"
    # The other ports too are those of the previous start when they are free: the master keeps
    # its state in <data>/m<master port>, so a new master port is a master without state, whose
    # new topology id the volume server's stamp contradicts, and SeaweedFS then freezes volume
    # growth ("volume growth is frozen after master state loss": every PUT that needs a new
    # volume fails with 500). With the same ports a restart on the same data works.
    local prev_master="" prev_volume="" prev_filer=""
    [[ -n "$previous" ]] && read -r _ prev_master prev_volume prev_filer <<<"$previous"
    master="$(reuse_port "$prev_master" "$s3")"
    volume="$(reuse_port "$prev_volume" "$s3" "$master")"
    filer="$(reuse_port "$prev_filer" "$s3" "$master" "$volume")"
    echo "$s3 $master $volume $filer" >"$PORTS_FILE"
    echo "http://127.0.0.1:$s3" >"$ENDPOINT_FILE"
    log "starting SeaweedFS: S3 on 127.0.0.1:$s3 (master $master, volume $volume, filer $filer); log $LOG_FILE"
    # setsid + exec: the recorded PID is the server itself, which `stop` signals.
    # -master.peers=none: the single master elects itself at once after a restart (the default
    # election took ~19 s). After a restart, PUTs that need a new volume still wait out the
    # master's fixed 15 s warm-up; a client with retries rides through it.
    setsid "$weed" server -dir="$DATA_DIR" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -master.port="$master" -master.telemetry=false -master.peers=none -volume.port="$volume" \
        -volume.max=0 -master.volumeSizeLimitMB=64 -volume.preStopSeconds=1 \
        -filer -filer.port="$filer" -s3 -s3.port="$s3" -s3.config="$IDENTITIES" \
        -s3.port.iceberg=0 -s3.port.lance=0 \
        >"$LOG_FILE" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$PID_FILE"
    local deadline=$(($(date +%s) + ${S3_READY_TIMEOUT:-60})) code=""
    while (($(date +%s) < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$LOG_FILE" >&2
            rm -f "$PID_FILE"
            die "SeaweedFS exited during start-up (log above)"
        fi
        # A signed request that lists buckets: 200 once the S3 gateway, the filer and the
        # credentials are all up.
        code="$(s3_curl GET /)"
        [[ "$code" == 200 ]] && break
        sleep 0.5
    done
    if [[ "$code" != 200 ]]; then
        tail -n 30 "$LOG_FILE" >&2
        cmd_stop
        die "SeaweedFS did not answer S3 within ${S3_READY_TIMEOUT:-60} s (last HTTP status: ${code:-none})"
    fi
    local bucket
    for bucket in ${S3_BUCKETS:-lake}; do
        create_bucket "$bucket"
    done
    log "ready (pid $pid); buckets: ${S3_BUCKETS:-lake}"
    cat "$ENDPOINT_FILE"
}

cmd_stop() {
    local pid
    if ! pid="$(live_pid)"; then
        log "not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local i
    # A SIGKILL loses the master's state, after which a restart on the same data refuses to grow
    # volumes (seen: "volume growth is frozen after master state loss"): wait for a clean exit.
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid still running after 30 s; SIGKILL (start the next one on fresh data)"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
    log "stopped (pid $pid)"
}

cmd_status() {
    if pid="$(live_pid)"; then
        cat "$ENDPOINT_FILE"
        return 0
    fi
    return 3
}

cmd_env() {
    [[ -s "$CRED_FILE" && -s "$ENDPOINT_FILE" ]] || die "no server state in $STATE_DIR: run scripts/s3.sh start first"
    ensure_credentials
    printf 'export AWS_ACCESS_KEY_ID=%q\n' "$ACCESS_KEY"
    printf 'export AWS_SECRET_ACCESS_KEY=%q\n' "$SECRET_KEY"
    printf 'export AWS_REGION=%q\n' "$REGION"
    printf 'export AWS_ENDPOINT_URL=%q\n' "$(cat "$ENDPOINT_FILE")"
    printf 'export AWS_ALLOW_HTTP=true\n'
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    build) weed_bin ;;
    env) cmd_env ;;
    bucket)
        [[ -n "${2:-}" ]] || die "usage: scripts/s3.sh bucket NAME"
        ensure_credentials
        live_pid >/dev/null || die "not running: scripts/s3.sh start first"
        create_bucket "$2"
        ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 64 ;;
esac
