#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, combined broker+controller) for development and tests.
#
#   scripts/kafka.sh start    fetch jars (first time), format storage (first time), start, wait until ready;
#                             the LAST line of stdout is the bootstrap address 127.0.0.1:PORT
#   scripts/kafka.sh stop     stop the broker of this state dir (SIGTERM, then SIGKILL after ~30 s)
#   scripts/kafka.sh status   exit 0 and print the address if running, exit 3 if not
#                             (the secured listeners' addresses go to stderr)
#   scripts/kafka.sh fetch    only fetch the jars (first time; nothing when present), e.g. while
#                             something else builds; `start` does it too
#   scripts/kafka.sh acl-deny-read USER TOPIC
#                             add a DENY Read ACL for User:USER on TOPIC (over the PLAINTEXT listener)
#
# Beside PLAINTEXT, the broker listens on SASL_SSL (SCRAM-SHA-256/512, PLAIN, OAUTHBEARER with
# unsecured JWTs) and SSL (mutual TLS); certificates, passwords and ready-made librdkafka client
# properties are in <state dir>/secure/ (see scripts/README.md). Nothing there is for production.
#
# Environment:
#   KAFKA_STATE_DIR        state folder (default: <repo>/.kafka)
#   KAFKA_PORT             PLAINTEXT port (default: the previous one if still free, else a free one)
#   KAFKA_CONTROLLER_PORT  CONTROLLER port (default: likewise)
#   KAFKA_SASL_SSL_PORT    SASL_SSL port (default: likewise)
#   KAFKA_SSL_PORT         SSL (mutual TLS) port (default: likewise)
#   KAFKA_HEAP             heap size, e.g. 512m (=> -Xms512m -Xmx512m), or full JVM flags "-Xms.. -Xmx.."
#                          (default: 1g)
#   KAFKA_READY_TIMEOUT    seconds to wait for readiness (default: 90)
#   KAFKA_STOP_TIMEOUT     seconds to wait after SIGTERM before SIGKILL (default: 30)
#   KAFKA_LIBS_DIR         folder of the Kafka jars (default: <state dir>/libs), shareable between state dirs
#   KAFKA_FRESH=1          on start (when not running): wipe data/ and logs/ first (empty cluster)
#
# Progress goes to stderr; stdout carries only the PLAINTEXT address (start/status). Passwords are
# never printed.
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
LIBS_DIR_FILE="$STATE_DIR/libs-dir" # the jars the running broker was started with
LOCK_FILE="$STATE_DIR/.lock"

# Test-only TLS/SASL material, made once and reused (KAFKA_FRESH keeps it). File names here are
# a contract with the Rust tests.
SECURE_DIR="$STATE_DIR/secure"
SECURE_STAMP="$SECURE_DIR/.complete"
SASL_SSL_ADDR_FILE="$SECURE_DIR/sasl_ssl_address"
SSL_ADDR_FILE="$SECURE_DIR/ssl_address"
# The cluster id whose storage holds the SCRAM credentials of the passwords in secure/.
SCRAM_STAMP="$SECURE_DIR/.scram-cluster-id"
SASL_USERS=(streamlake denied)

READY_TIMEOUT="${KAFKA_READY_TIMEOUT:-90}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"

log() { printf '[kafka.sh] %s\n' "$*" >&2; }
die() { printf '[kafka.sh] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
    echo "usage: $0 start|stop|status|fetch | $0 acl-deny-read USER TOPIC" >&2
    exit 2
}

now() { date +%s; }

# ---------------------------------------------------------------------------------------------
# process helpers

# live_pid, port_free, free_port (shared with scripts/s3.sh)
PID_MATCH="$SERVER_PROPS"
# shellcheck source=scripts/proc.sh
source "$SCRIPT_DIR/proc.sh"

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

# ---------------------------------------------------------------------------------------------
# secured listeners (SASL_SSL, SSL): test-only certificates and users

secret_of() { cat "$SECURE_DIR/$1.password"; }

# Replaces every password of secure/ by ***: for tool output that is shown on failure.
mask_secrets() {
    local args=() u
    for u in "${SASL_USERS[@]}"; do
        [[ -f "$SECURE_DIR/$u.password" ]] && args+=(-e "s/$(secret_of "$u")/***/g")
    done
    if ((${#args[@]})); then sed "${args[@]}"; else cat; fi
}

# $1 = file stem, $2 = subject, $3 = extensions, $4 = signing CA stem (empty: self-signed CA)
make_cert() {
    local stem="$1" subj="$2" ext="$3" ca="$4" serial
    serial="0x$(openssl rand -hex 16)"
    if [[ -z "$ca" ]]; then
        openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -set_serial "$serial" \
            -keyout "$stem.key" -out "$stem.pem" -subj "$subj" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    else
        openssl req -newkey rsa:2048 -nodes -keyout "$stem.key" -out "$stem.csr" -subj "$subj"
        openssl x509 -req -sha256 -days 3650 -set_serial "$serial" -in "$stem.csr" \
            -CA "$ca.pem" -CAkey "$ca.key" -out "$stem.pem" -extfile <(printf '%s\n' "$ext")
        rm -f "$stem.csr"
    fi
}

# Made once per state dir (about a second of openssl) and reused by every later start, also
# across KAFKA_FRESH=1. An incomplete folder (no stamp) is made again from scratch.
ensure_secure_material() {
    [[ -f "$SECURE_STAMP" ]] && return 0
    command -v openssl >/dev/null 2>&1 || die "missing required tool: openssl (for the test certificates)"
    log "making test certificates and SASL users in $SECURE_DIR ..."
    rm -rf "$SECURE_DIR"
    mkdir -p "$SECURE_DIR"
    chmod 700 "$SECURE_DIR"
    local gen_log="$SECURE_DIR/.openssl.log" u
    local rc
    # Broker: subjectAltName IP:127.0.0.1 only and a CN that is no host name, so that
    # "localhost:PORT" fails host-name verification (OpenSSL falls back to the CN without DNS SANs).
    # Not in an `if`: that would switch off set -e inside the subshell.
    set +e
    (
        set -euo pipefail
        umask 077
        cd "$SECURE_DIR"
        make_cert ca "/CN=streamlake test CA" "" ""
        make_cert other-ca "/CN=streamlake unrelated test CA" "" ""
        make_cert broker "/CN=streamlake test broker" "$(printf '%s\n' \
            "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
            "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1")" ca
        make_cert client "/CN=streamlake-client" "$(printf '%s\n' \
            "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
            "extendedKeyUsage=clientAuth")" ca
        # A client certificate the broker must refuse (signed by the unrelated CA).
        make_cert other-client "/CN=streamlake-client" "$(printf '%s\n' \
            "basicConstraints=critical,CA:FALSE" "extendedKeyUsage=clientAuth")" other-ca
        # Kafka's PEM key store: the private key (unencrypted PKCS#8) and the certificate chain.
        cat broker.key broker.pem ca.pem >broker-keystore.pem
        rm -f broker.key other-ca.key
        # hex: no quoting trouble in JAAS strings, SCRAM specs or properties files
        for u in "${SASL_USERS[@]}"; do
            openssl rand -hex 24 >"$u.password"
        done
        chmod 644 ca.pem other-ca.pem client.pem other-client.pem broker.pem
    ) >"$gen_log" 2>&1
    rc=$?
    set -e
    if ((rc != 0)); then
        cat "$gen_log" >&2 || true
        die "making the test certificates with openssl failed (log: $gen_log)"
    fi
    rm -f "$gen_log"
    date -u +%Y-%m-%dT%H:%M:%SZ >"$SECURE_STAMP"
    log "test certificates made (CA $SECURE_DIR/ca.pem)"
}

write_client_properties() { # $1 = SASL_SSL address, $2 = SSL address
    local sasl_addr="$1" ssl_addr="$2" u f
    echo "$sasl_addr" >"$SASL_SSL_ADDR_FILE"
    echo "$ssl_addr" >"$SSL_ADDR_FILE"
    (
        umask 077
        for u in "${SASL_USERS[@]}"; do
            f="$SECURE_DIR/client-sasl-ssl.properties"
            [[ "$u" == streamlake ]] || f="$SECURE_DIR/client-sasl-ssl-$u.properties"
            cat >"$f" <<PROPS
# generated by scripts/kafka.sh: librdkafka client properties, SASL_SSL as user $u
# broker: $sasl_addr (also in sasl_ssl_address); SCRAM-SHA-256 and PLAIN take the same password
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.username=$u
sasl.password=$(secret_of "$u")
ssl.ca.location=$SECURE_DIR/ca.pem
PROPS
            # The same for Kafka's Java tools (--command-config).
            cat >"$SECURE_DIR/java-sasl-ssl-$u.properties" <<PROPS
# generated by scripts/kafka.sh: Java client properties, SASL_SSL as user $u
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$u" password="$(secret_of "$u")";
ssl.truststore.type=PEM
ssl.truststore.location=$SECURE_DIR/ca.pem
PROPS
        done
        cat >"$SECURE_DIR/client-sasl-ssl-oauthbearer.properties" <<PROPS
# generated by scripts/kafka.sh: librdkafka client properties, SASL_SSL with an unsecured JWT
# (alg "none"): the broker accepts any principal this way, test use only
security.protocol=SASL_SSL
sasl.mechanism=OAUTHBEARER
enable.sasl.oauthbearer.unsecure.jwt=true
sasl.oauthbearer.config=principal=streamlake
ssl.ca.location=$SECURE_DIR/ca.pem
PROPS
        cat >"$SECURE_DIR/client-mtls.properties" <<PROPS
# generated by scripts/kafka.sh: librdkafka client properties, mutual TLS as User:CN=streamlake-client
# broker: $ssl_addr (also in ssl_address)
security.protocol=SSL
ssl.ca.location=$SECURE_DIR/ca.pem
ssl.certificate.location=$SECURE_DIR/client.pem
ssl.key.location=$SECURE_DIR/client.key
PROPS
    )
}

storage_cluster_id() { sed -n 's/^cluster\.id=//p' "$DATA_DIR/meta.properties" 2>/dev/null | head -n1; }

# Storage formatted before the secured listeners existed (or whose SCRAM users were made with
# other passwords) gets its SCRAM users through the running broker instead of a re-format, so
# no data is lost.
ensure_scram_users() { # $1 = PLAINTEXT address
    local addr="$1" cid u m out
    cid="$(storage_cluster_id)"
    [[ -n "$cid" && -f "$SCRAM_STAMP" && "$(cat "$SCRAM_STAMP")" == "$cid" ]] && return 0
    [[ -f "$SECURE_STAMP" ]] || return 0 # a broker started by an older kafka.sh
    log "adding the SCRAM users (${SASL_USERS[*]}) to the existing storage (once) ..."
    # One mechanism per call: a request may alter a user's credentials only once.
    for u in "${SASL_USERS[@]}"; do
        for m in SCRAM-SHA-256 SCRAM-SHA-512; do
            if ! out="$(tools_java org.apache.kafka.tools.ConfigCommand --bootstrap-server "$addr" \
                --command-config "$ADMIN_PROPS" --alter --entity-type users --entity-name "$u" \
                --add-config "$m=[password=$(secret_of "$u")]" 2>&1)"; then
                mask_secrets <<<"$out" >&2
                die "could not add the $m user $u (org.apache.kafka.tools.ConfigCommand failed)"
            fi
        done
    done
    echo "$cid" >"$SCRAM_STAMP"
}

choose_port() { # $1 = explicit env value, $2 = file with the previous value, $3 = ports not to use (space-separated)
    local explicit="$1" file="$2" avoid=" $3 " p
    if [[ -n "$explicit" ]]; then
        [[ "$explicit" =~ ^[0-9]+$ ]] || die "invalid port '$explicit'"
        [[ "$avoid" != *" $explicit "* ]] || die "port $explicit is given for two listeners"
        port_free "$explicit" || die "port $explicit on 127.0.0.1 is already in use"
        echo "$explicit"
        return
    fi
    if [[ -f "$file" ]]; then
        p="$(sed -n 's/.*:\([0-9][0-9]*\)$/\1/p; s/^\([0-9][0-9]*\)$/\1/p' "$file" | head -n1)"
        if [[ -n "$p" && "$avoid" != *" $p "* ]] && port_free "$p"; then
            echo "$p"
            return
        fi
    fi
    for _ in 1 2 3 4 5; do
        p="$(free_port)"
        [[ "$avoid" != *" $p "* ]] && { echo "$p"; return; }
    done
    die "could not find a free port"
}

write_server_properties() { # $1 PLAINTEXT, $2 CONTROLLER, $3 SASL_SSL, $4 SSL port
    local port="$1" cport="$2" sport="$3" tport="$4"
    # It holds the PLAIN passwords.
    rm -f "$SERVER_PROPS"
    (umask 077 && : >"$SERVER_PROPS")
    cat >"$SERVER_PROPS" <<EOF
# generated by scripts/kafka.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ); rewritten on every start
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport,SASL_SSL://127.0.0.1:$sport,SSL://127.0.0.1:$tport
advertised.listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://127.0.0.1:$sport,SSL://127.0.0.1:$tport
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$DATA_DIR

# TLS on SASL_SSL and SSL: the broker certificate (IP:127.0.0.1) and the CA that signed it, as PEM
ssl.keystore.type=PEM
ssl.keystore.location=$SECURE_DIR/broker-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$SECURE_DIR/ca.pem
# mutual TLS on SSL; the principal is the client certificate's DN (User:CN=streamlake-client)
listener.name.ssl.ssl.client.auth=required

# SASL on SASL_SSL. SCRAM users live in the cluster metadata (added at format time), PLAIN users
# in the JAAS line, OAUTHBEARER takes unsecured JWTs (alg "none", the token's sub is the principal).
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN,OAUTHBEARER
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_streamlake="$(secret_of streamlake)" user_denied="$(secret_of denied)";
listener.name.sasl_ssl.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="broker";

# ACLs: none by default, and a resource without ACLs is open to all, so tests add DENY ACLs where
# they need an authorization error. ANONYMOUS is PLAINTEXT and CONTROLLER.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=true
super.users=User:ANONYMOUS;User:streamlake;User:CN=streamlake-client

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
    local scram=() u pw
    for u in "${SASL_USERS[@]}"; do
        pw="$(secret_of "$u")"
        scram+=(--add-scram "SCRAM-SHA-256=[name=$u,password=$pw]" --add-scram "SCRAM-SHA-512=[name=$u,password=$pw]")
    done
    # controller.quorum.voters is set (static quorum), so no --standalone / --initial-controllers.
    if ! tools_java kafka.tools.StorageTool format --cluster-id "$cluster_id" --config "$SERVER_PROPS" \
        "${scram[@]}" >"$LOGS_DIR/format.log" 2>&1; then
        mask_secrets <"$LOGS_DIR/format.log" >&2 || true
        die "kafka.tools.StorageTool format failed"
    fi
    echo "$cluster_id" >"$SCRAM_STAMP"
    log "formatted (cluster id $cluster_id, SCRAM users ${SASL_USERS[*]})"
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

secure_ports_open() { # the secured listeners of secure/*_address accept connections
    local f a
    for f in "$SASL_SSL_ADDR_FILE" "$SSL_ADDR_FILE"; do
        [[ -f "$f" ]] || continue
        a="$(cat "$f")"
        port_open "${a##*:}" || return 1
    done
}

log_secure_addresses() {
    if [[ -f "$SASL_SSL_ADDR_FILE" && -f "$SSL_ADDR_FILE" ]]; then
        log "SASL_SSL at $(cat "$SASL_SSL_ADDR_FILE"), SSL (mutual TLS) at $(cat "$SSL_ADDR_FILE"); certificates and client properties in $SECURE_DIR"
    else
        log "no secured listeners recorded in $SECURE_DIR (a broker started by an older kafka.sh? restart it)"
    fi
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
        if port_open "$port" && admin_ready "$addr" && secure_ports_open; then
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
    local t_start pid addr port cport sport tport
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
        ensure_scram_users "$addr"
        log_secure_addresses
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
    ensure_secure_material

    port="$(choose_port "${KAFKA_PORT:-}" "$ADDR_FILE" "")"
    cport="$(choose_port "${KAFKA_CONTROLLER_PORT:-}" "$CTRL_PORT_FILE" "$port")"
    sport="$(choose_port "${KAFKA_SASL_SSL_PORT:-}" "$SASL_SSL_ADDR_FILE" "$port $cport")"
    tport="$(choose_port "${KAFKA_SSL_PORT:-}" "$SSL_ADDR_FILE" "$port $cport $sport")"
    addr="127.0.0.1:$port"
    write_server_properties "$port" "$cport" "$sport" "$tport"
    write_client_properties "127.0.0.1:$sport" "127.0.0.1:$tport"
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
    echo "$LIBS_DIR" >"$LIBS_DIR_FILE"

    wait_ready "$pid" "$addr" 1
    ensure_scram_users "$addr"
    log_secure_addresses
    log "started in $(($(now) - t_start)) s total (pid $pid)"
    echo "$addr"
}

cmd_fetch() {
    require_tools
    mkdir -p "$STATE_DIR"
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$LOCK_FILE"
        flock -w 180 9 || die "could not lock $LOCK_FILE"
    fi
    fetch_libs
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
            log_secure_addresses
        else
            log "process running (pid $pid) but $addr is not accepting connections (yet)"
        fi
        echo "$addr"
        return 0
    fi
    log "not running (state dir $STATE_DIR)"
    return 3
}

# For tests that need an authorization error: USER may describe TOPIC (metadata, offsets) but
# not read it, so its Fetch requests fail with TOPIC_AUTHORIZATION_FAILED; the super users
# (streamlake, the mTLS client, PLAINTEXT) still read it. The ALLOW Describe is needed because
# any ACL on a resource ends allow.everyone.if.no.acl.found for it: with the DENY Read alone the
# topic's metadata would already fail for USER. Goes through the PLAINTEXT listener.
cmd_acl_deny_read() { # $1 = user name (principal User:$1), $2 = topic
    local user="$1" topic="$2" pid addr out acl
    [[ -n "$user" && -n "$topic" ]] || usage
    pid="$(live_pid)" || die "no broker running (state dir $STATE_DIR); run '$0 start' first"
    addr="$(cat "$ADDR_FILE")"
    # The broker's own jars, also when it was started with a KAFKA_LIBS_DIR not set here.
    if [[ -z "${KAFKA_LIBS_DIR:-}" && -f "$LIBS_DIR_FILE" ]]; then
        LIBS_DIR="$(cat "$LIBS_DIR_FILE")"
    fi
    compgen -G "$LIBS_DIR/kafka-tools-*.jar" >/dev/null || die "no Kafka jars in $LIBS_DIR (set KAFKA_LIBS_DIR)"
    for acl in "--deny-principal User:$user --operation Read" "--allow-principal User:$user --operation Describe"; do
        # shellcheck disable=SC2086 # $acl is two option pairs
        if ! out="$(tools_java org.apache.kafka.tools.AclCommand --bootstrap-server "$addr" \
            --command-config "$ADMIN_PROPS" --add $acl --topic "$topic" 2>&1)"; then
            printf '%s\n' "$out" >&2
            die "adding the ACL ($acl) on topic $topic failed (org.apache.kafka.tools.AclCommand)"
        fi
    done
    log "topic $topic: DENY Read and ALLOW Describe for User:$user (broker pid $pid)"
}

case "${1:-}" in
    start | stop | status | fetch)
        [[ $# -eq 1 ]] || usage
        "cmd_$1"
        ;;
    acl-deny-read)
        [[ $# -eq 3 ]] || usage
        cmd_acl_deny_read "$2" "$3"
        ;;
    *) usage ;;
esac
