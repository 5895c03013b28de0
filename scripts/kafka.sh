#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, combined broker+controller) for development and tests.
#
#   scripts/kafka.sh start    fetch jars (first time), format storage (first time), start, wait until ready;
#                             the LAST line of stdout is the bootstrap address 127.0.0.1:PORT
#   scripts/kafka.sh stop     stop the broker of this state dir (SIGTERM, then SIGKILL after ~30 s)
#   scripts/kafka.sh status   exit 0 and print the address if running, exit 3 if not
#
# Environment:
#   KAFKA_STATE_DIR        state folder (default: <repo>/.kafka)
#   KAFKA_PORT             PLAINTEXT port (default: the previous one if still free, else a free one)
#   KAFKA_CONTROLLER_PORT  CONTROLLER port (default: likewise)
#   KAFKA_HEAP             heap size, e.g. 512m (=> -Xms512m -Xmx512m), or full JVM flags "-Xms.. -Xmx.."
#                          (default: 1g)
#   KAFKA_READY_TIMEOUT    seconds to wait for readiness (default: 90)
#   KAFKA_STOP_TIMEOUT     seconds to wait after SIGTERM before SIGKILL (default: 30)
#   KAFKA_LIBS_DIR         folder of the Kafka jars (default: <state dir>/libs), shareable between state dirs
#   KAFKA_FRESH=1          on start (when not running): wipe data/ and logs/ first (empty cluster)
#
# Progress goes to stderr; stdout carries only the address (start/status).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
POM="$SCRIPT_DIR/kafka/pom.xml"

STATE_DIR="${KAFKA_STATE_DIR:-$REPO_ROOT/.kafka}"
case "$STATE_DIR" in /*) ;; *) STATE_DIR="$REPO_ROOT/$STATE_DIR" ;; esac

# KAFKA_LIBS_DIR lets several state dirs (e.g. a test's own broker) share one set of jars.
LIBS_DIR="${KAFKA_LIBS_DIR:-$STATE_DIR/libs}"
DATA_DIR="$STATE_DIR/data"
LOGS_DIR="$STATE_DIR/logs"
SERVER_PROPS="$STATE_DIR/server.properties"
LOG4J_SERVER="$STATE_DIR/log4j2-server.xml"
LOG4J_TOOLS="$STATE_DIR/log4j2-tools.xml"
ADMIN_PROPS="$STATE_DIR/admin.properties"
PID_FILE="$STATE_DIR/kafka.pid"
ADDR_FILE="$STATE_DIR/address"
CTRL_PORT_FILE="$STATE_DIR/controller-port"
LIBS_STAMP="$LIBS_DIR/.complete"
LOCK_FILE="$STATE_DIR/.lock"

READY_TIMEOUT="${KAFKA_READY_TIMEOUT:-90}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"

log() { printf '[kafka.sh] %s\n' "$*" >&2; }
die() { printf '[kafka.sh] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
    echo "usage: $0 start|stop|status" >&2
    exit 2
}

now() { date +%s; }

# ---------------------------------------------------------------------------------------------
# process helpers

# Prints the recorded PID if it belongs to a live broker of THIS state dir; cleans a stale pid file.
live_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(tr -dc '0-9' <"$PID_FILE" || true)"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null \
        && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$SERVER_PROPS"; then
        echo "$pid"
        return 0
    fi
    log "removing stale pid file ($PID_FILE, pid '${pid}')"
    rm -f "$PID_FILE"
    return 1
}

port_free() {
    python3 - "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
# As the JVM binds: SO_REUSEADDR, so connections of a stopped broker in TIME_WAIT do not count
# as "in use" (a restart on the same port must work); a listening socket still does.
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

port_open() { # cheap TCP probe, no JVM
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

tools_java() { # run a Kafka CLI class with quiet logging
    java -Xms64m -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
        -Dlog4j2.configurationFile="$LOG4J_TOOLS" \
        -cp "$LIBS_DIR/*" "$@"
}

# A real admin round trip, bounded in time: BrokerApiVersionsCommand bootstraps, fetches cluster
# metadata and sends ApiVersions to every broker listed there. KRaft lists only UNFENCED brokers in
# metadata responses, so seeing "(id: 1 " means the broker accepts requests AND can host partitions
# (topic creation with replication factor 1 will succeed).
admin_ready() {
    local addr="$1" out
    out="$(timeout 30 java -Xms64m -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
        -Dlog4j2.configurationFile="$LOG4J_TOOLS" -cp "$LIBS_DIR/*" \
        org.apache.kafka.tools.BrokerApiVersionsCommand \
        --bootstrap-server "$addr" --command-config "$ADMIN_PROPS" 2>/dev/null)" || return 1
    grep -q "(id: 1 " <<<"$out"
}

# ---------------------------------------------------------------------------------------------
# setup steps

require_tools() {
    local missing=()
    command -v java >/dev/null 2>&1 || missing+=(java)
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    command -v timeout >/dev/null 2>&1 || missing+=("timeout (coreutils)")
    if [[ ! -f "$LIBS_STAMP" ]] && ! command -v mvn >/dev/null 2>&1; then
        missing+=("mvn (needed once to fetch the Kafka jars)")
    fi
    if ((${#missing[@]})); then
        printf '[kafka.sh] ERROR: missing required tool: %s\n' "${missing[@]}" >&2
        exit 1
    fi
}

# The stamp records the pom's checksum: editing the pom (e.g. a new Kafka version) refetches.
fetch_libs() {
    local want
    want="$(sha256sum "$POM" | cut -d' ' -f1)"
    if [[ -f "$LIBS_STAMP" && "$(cat "$LIBS_STAMP")" == "$want" ]] \
        && compgen -G "$LIBS_DIR/kafka_2.13-*.jar" >/dev/null; then
        return 0
    fi
    log "fetching Kafka jars with Maven into $LIBS_DIR ..."
    local t0
    t0="$(now)"
    rm -rf "$LIBS_DIR"
    mkdir -p "$LIBS_DIR" "$LOGS_DIR"
    local mvn_log="$LOGS_DIR/mvn-fetch.log"
    if ! mvn -q -B -Dstyle.color=never -f "$POM" \
        org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$LIBS_DIR" >"$mvn_log" 2>&1; then
        rm -rf "$LIBS_DIR"
        tail -n 40 "$mvn_log" >&2 || true
        die "fetching the Kafka jars with mvn failed (pom: $POM, full output: $mvn_log)"
    fi
    compgen -G "$LIBS_DIR/kafka_2.13-*.jar" >/dev/null || die "mvn ran but no kafka_2.13 jar in $LIBS_DIR"
    echo "$want" >"$LIBS_STAMP"
    log "jars fetched in $(($(now) - t0)) s ($(find "$LIBS_DIR" -name '*.jar' | wc -l) jars)"
}

write_log4j_configs() {
    cat >"$LOG4J_SERVER" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- generated by scripts/kafka.sh. shutdownHook=disable: the files are flushed on every event, and
     late shutdown messages still reach server.log instead of a "JVM is shutting down" warning. -->
<Configuration status="warn" shutdownHook="disable">
  <Appenders>
    <RollingFile name="server" fileName="$LOGS_DIR/server.log" filePattern="$LOGS_DIR/server.log.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <Policies><SizeBasedTriggeringPolicy size="50 MB"/></Policies>
      <DefaultRolloverStrategy max="4"/>
    </RollingFile>
    <RollingFile name="stateChange" fileName="$LOGS_DIR/state-change.log" filePattern="$LOGS_DIR/state-change.log.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <Policies><SizeBasedTriggeringPolicy size="20 MB"/></Policies>
      <DefaultRolloverStrategy max="2"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="server"/></Root>
    <Logger name="state.change.logger" level="INFO" additivity="false"><AppenderRef ref="stateChange"/></Logger>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="kafka.log.LogCleaner" level="WARN"/>
  </Loggers>
</Configuration>
EOF
    cat >"$LOG4J_TOOLS" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<!-- generated by scripts/kafka.sh: CLI tools log warnings to stderr only -->
<Configuration status="warn">
  <Appenders>
    <Console name="stderr" target="SYSTEM_ERR"><PatternLayout pattern="[%d] %p %m (%c)%n"/></Console>
  </Appenders>
  <Loggers>
    <Root level="WARN"><AppenderRef ref="stderr"/></Root>
  </Loggers>
</Configuration>
EOF
    cat >"$ADMIN_PROPS" <<'EOF'
# generated by scripts/kafka.sh: admin client settings for the readiness probe
request.timeout.ms=5000
default.api.timeout.ms=10000
socket.connection.setup.timeout.ms=2000
socket.connection.setup.timeout.max.ms=5000
reconnect.backoff.max.ms=1000
EOF
}

choose_port() { # $1 = explicit env value, $2 = file with the previous value, $3 = port not to use
    local explicit="$1" file="$2" avoid="$3" p
    if [[ -n "$explicit" ]]; then
        [[ "$explicit" =~ ^[0-9]+$ ]] || die "invalid port '$explicit'"
        port_free "$explicit" || die "port $explicit on 127.0.0.1 is already in use"
        echo "$explicit"
        return
    fi
    if [[ -f "$file" ]]; then
        p="$(sed -n 's/.*:\([0-9][0-9]*\)$/\1/p; s/^\([0-9][0-9]*\)$/\1/p' "$file" | head -n1)"
        if [[ -n "$p" && "$p" != "$avoid" ]] && port_free "$p"; then
            echo "$p"
            return
        fi
    fi
    for _ in 1 2 3 4 5; do
        p="$(free_port)"
        [[ "$p" != "$avoid" ]] && { echo "$p"; return; }
    done
    die "could not find a free port"
}

write_server_properties() {
    local port="$1" cport="$2"
    cat >"$SERVER_PROPS" <<EOF
# generated by scripts/kafka.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ); rewritten on every start
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$DATA_DIR

# single node: every replication factor / ISR is 1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# fewer internal partitions than the default 50: faster first consumer group / transaction
offsets.topic.num.partitions=5
transaction.state.log.num.partitions=5

num.partitions=3
auto.create.topics.enable=false
delete.topic.enable=true
group.initial.rebalance.delay.ms=0

# small machine (2 cores)
num.network.threads=2
num.io.threads=4
background.threads=4
num.recovery.threads.per.data.dir=1
log.cleaner.dedupe.buffer.size=16777216
EOF
}

is_formatted() { [[ -f "$DATA_DIR/meta.properties" ]]; }

format_storage() {
    is_formatted && return 0
    log "formatting KRaft storage in $DATA_DIR ..."
    local cluster_id
    cluster_id="$(tools_java kafka.tools.StorageTool random-uuid | tail -n1)"
    [[ -n "$cluster_id" ]] || die "kafka.tools.StorageTool random-uuid printed nothing"
    echo "$cluster_id" >"$STATE_DIR/cluster-id"
    mkdir -p "$DATA_DIR"
    # controller.quorum.voters is set (static quorum), so no --standalone / --initial-controllers.
    if ! tools_java kafka.tools.StorageTool format --cluster-id "$cluster_id" --config "$SERVER_PROPS" \
        >"$LOGS_DIR/format.log" 2>&1; then
        cat "$LOGS_DIR/format.log" >&2 || true
        die "kafka.tools.StorageTool format failed"
    fi
    log "formatted (cluster id $cluster_id)"
}

heap_opts() {
    local h="${KAFKA_HEAP:-1g}"
    if [[ "$h" == -* ]]; then echo "$h"; else echo "-Xms$h -Xmx$h"; fi
}

print_log_tail() {
    {
        echo "---- tail of $LOGS_DIR/server.log ----"
        tail -n 60 "$LOGS_DIR/server.log" 2>/dev/null || echo "(no server.log)"
        echo "---- tail of $LOGS_DIR/kafka.out (JVM stdout/stderr) ----"
        tail -n 30 "$LOGS_DIR/kafka.out" 2>/dev/null || echo "(no kafka.out)"
        echo "----"
    } >&2
}

wait_ready() { # $1 pid, $2 address, $3 = 1 if this invocation launched it (then kill it on timeout)
    local pid="$1" addr="$2" port="${2##*:}" launched="${3:-0}" t0 deadline
    t0="$(now)"
    deadline=$((t0 + READY_TIMEOUT))
    log "waiting up to ${READY_TIMEOUT} s for the broker (pid $pid) at $addr ..."
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "the broker process $pid exited during startup"
            rm -f "$PID_FILE"
            print_log_tail
            exit 1
        fi
        if port_open "$port" && admin_ready "$addr"; then
            log "broker ready after $(($(now) - t0)) s"
            return 0
        fi
        if (($(now) >= deadline)); then
            log "broker not ready after ${READY_TIMEOUT} s"
            print_log_tail
            if [[ "$launched" == 1 ]]; then
                log "killing the broker this start launched (pid $pid)"
                kill -KILL "$pid" 2>/dev/null || true
                rm -f "$PID_FILE"
            fi
            exit 1
        fi
        sleep 0.5
    done
}

# ---------------------------------------------------------------------------------------------
# commands

cmd_start() {
    local t_start pid addr port cport
    t_start="$(now)"
    require_tools
    mkdir -p "$STATE_DIR"
    # Serialise concurrent start/stop on the same state dir.
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$LOCK_FILE"
        flock -w 180 9 || die "could not lock $LOCK_FILE"
    fi

    if pid="$(live_pid)"; then
        addr="$(cat "$ADDR_FILE" 2>/dev/null || true)"
        [[ -n "$addr" ]] || die "broker pid $pid runs but $ADDR_FILE is missing; run '$0 stop' first"
        fetch_libs
        write_log4j_configs
        log "already running (pid $pid)"
        wait_ready "$pid" "$addr"
        echo "$addr"
        return 0
    fi

    fetch_libs

    if [[ "${KAFKA_FRESH:-0}" == 1 ]]; then
        log "KAFKA_FRESH=1: wiping $DATA_DIR and $LOGS_DIR"
        rm -rf "$DATA_DIR" "$LOGS_DIR"
    fi
    mkdir -p "$DATA_DIR" "$LOGS_DIR"
    write_log4j_configs

    port="$(choose_port "${KAFKA_PORT:-}" "$ADDR_FILE" "")"
    cport="$(choose_port "${KAFKA_CONTROLLER_PORT:-}" "$CTRL_PORT_FILE" "$port")"
    addr="127.0.0.1:$port"
    write_server_properties "$port" "$cport"
    format_storage

    log "starting Kafka broker+controller on $addr (controller 127.0.0.1:$cport), logs in $LOGS_DIR"
    rm -f "$PID_FILE"
    # setsid: own session, so Ctrl-C / signals to the caller's process group don't reach it.
    # The inner shell records its own PID and then execs java, so the PID is the JVM's.
    # shellcheck disable=SC2046,SC2016
    nohup setsid bash -c 'echo $$ >"$1.tmp" && mv "$1.tmp" "$1"; shift; exec "$@"' kafka-launch "$PID_FILE" \
        java $(heap_opts) -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
        -Djava.awt.headless=true \
        -Dkafka.logs.dir="$LOGS_DIR" \
        -Dlog4j2.configurationFile="$LOG4J_SERVER" \
        -cp "$LIBS_DIR/*" kafka.Kafka "$SERVER_PROPS" \
        >"$LOGS_DIR/kafka.out" 2>&1 </dev/null 9>&- &
    local launcher=$!
    for _ in $(seq 1 100); do
        [[ -s "$PID_FILE" ]] && break
        sleep 0.05
    done
    [[ -s "$PID_FILE" ]] || { kill "$launcher" 2>/dev/null || true; die "broker launcher did not record a PID"; }
    pid="$(cat "$PID_FILE")"
    echo "$addr" >"$ADDR_FILE"
    echo "$cport" >"$CTRL_PORT_FILE"

    wait_ready "$pid" "$addr" 1
    log "started in $(($(now) - t_start)) s total (pid $pid)"
    echo "$addr"
}

cmd_stop() {
    local pid t0
    if [[ -d "$STATE_DIR" ]] && command -v flock >/dev/null 2>&1; then
        exec 9>"$LOCK_FILE"
        flock -w 180 9 || die "could not lock $LOCK_FILE"
    fi
    if ! pid="$(live_pid)"; then
        log "no broker running (state dir $STATE_DIR)"
        return 0
    fi
    t0="$(now)"
    log "stopping broker pid $pid (SIGTERM, up to ${STOP_TIMEOUT} s) ..."
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((t0 + STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && (($(now) < deadline)); do
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "still alive after ${STOP_TIMEOUT} s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    if kill -0 "$pid" 2>/dev/null; then
        die "broker pid $pid did not exit"
    fi
    rm -f "$PID_FILE"
    log "stopped in $(($(now) - t0)) s"
}

cmd_status() {
    local pid addr
    if pid="$(live_pid 2>/dev/null)"; then
        addr="$(cat "$ADDR_FILE" 2>/dev/null || echo '?')"
        if port_open "${addr##*:}"; then
            log "running (pid $pid) at $addr"
        else
            log "process running (pid $pid) but $addr is not accepting connections (yet)"
        fi
        echo "$addr"
        return 0
    fi
    log "not running (state dir $STATE_DIR)"
    return 3
}

[[ $# -eq 1 ]] || usage
case "$1" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) usage ;;
esac
