# shellcheck shell=bash
# Process and port helpers shared by the local test servers, scripts/kafka.sh and scripts/s3.sh
# (sourced, not run). The caller defines log() and sets PID_FILE and PID_MATCH (a string that
# only its own server's command line contains, e.g. its config file) before calling live_pid.

# Prints the recorded PID if it belongs to a live server of THIS state dir (its command line
# contains PID_MATCH); removes a stale pid file. A PID alone could have been reused by anything.
live_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(tr -dc '0-9' <"$PID_FILE" || true)"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null \
        && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$PID_MATCH"; then
        echo "$pid"
        return 0
    fi
    log "removing stale pid file ($PID_FILE, pid '${pid}')"
    rm -f "$PID_FILE"
    return 1
}

# Whether nothing listens on 127.0.0.1:$1.
port_free() {
    python3 - "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
# As the JVM and Go bind: SO_REUSEADDR, so connections of a stopped server in TIME_WAIT do not
# count as "in use" (a restart on the same port must work); a listening socket still does.
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

# A port the kernel picks as free on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
