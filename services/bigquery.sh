#!/usr/bin/env bash
# Local BigQuery API emulator (bqemulator, from PyPI) on loopback, for tests.
#
#   services/bigquery.sh up       install if needed, start, wait until it answers
#   services/bigquery.sh down     stop it and remove its runtime state
#   services/bigquery.sh status   exit 0 if running, 1 if not
#
# Everything it installs or writes lives outside the repo, so the work tree
# stays clean and a warm cache survives `git clean`:
#   ${CLICKWATCH_CACHE:-$HOME/.cache/clickwatch}/bigquery/{venv,home}
#   ${CLICKWATCH_STATE:-/tmp/clickwatch-run}/bigquery/{pid,log}
# Ports: ${BQ_REST_PORT:-19050} (REST), ${BQ_GRPC_PORT:-19060} (gRPC).
set -euo pipefail

CACHE_DIR="${CLICKWATCH_CACHE:-$HOME/.cache/clickwatch}/bigquery"
VENV="$CACHE_DIR/venv"
# bqemulator runs `INSTALL spatial` at start, which DuckDB resolves under
# $HOME/.duckdb/extensions and would otherwise download (no internet here).
# We give it a HOME of its own with the extension pre-installed from the
# duckdb-extension-spatial wheel, so the user's real ~/.duckdb is untouched.
BQ_HOME="$CACHE_DIR/home"
STATE_DIR="${CLICKWATCH_STATE:-/tmp/clickwatch-run}/bigquery"
PID_FILE="$STATE_DIR/pid"
LOG_FILE="$STATE_DIR/log"

REST_PORT="${BQ_REST_PORT:-19050}"
GRPC_PORT="${BQ_GRPC_PORT:-19060}"
HOST=127.0.0.1
PROJECT=test-project
READY_TIMEOUT=60
STOP_TIMEOUT=15

# The set verified to start offline on this machine kind (duckdb and the
# spatial extension must be the same version); numpy was verified unpinned.
PINS=(bqemulator==1.4.0 duckdb==1.5.5 duckdb-extension-spatial==1.5.5 numpy)

HEALTH_URL="http://$HOST:$REST_PORT/bigquery/v2/projects/$PROJECT/datasets"

log() { echo "bigquery: $*" >&2; }
die() { log "$*"; exit 1; }

# --- install ---------------------------------------------------------------

check_python() {
    command -v python3 >/dev/null 2>&1 \
        || die "python3 not found; install it: apt-get install -y python3 python3-venv"
    # Debian's python3 has the venv module but not ensurepip unless
    # python3-venv is installed, and `python3 -m venv` then fails half-way.
    python3 -c 'import venv, ensurepip' >/dev/null 2>&1 \
        || die "python3 has no venv support; install it: apt-get install -y python3-venv"
}

# True when $VENV/bin/python runs *as a venv*. Without pyvenv.cfg (a venv
# half-deleted, e.g. by someone wiping the cache while we run) the same
# binary is the base interpreter, and pip would install into the system or
# pyenv Python: never let pip run unless this holds.
venv_ok() {
    [[ -x "$VENV/bin/python" && -f "$VENV/pyvenv.cfg" ]] || return 1
    "$VENV/bin/python" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)' >/dev/null 2>&1
}

# True when the venv runs and already holds the pinned versions, so a warm
# `up` skips pip entirely (even a no-op pip run would add seconds to it).
venv_has_pins() {
    venv_ok && [[ -x "$VENV/bin/bqemulator" ]] || return 1
    "$VENV/bin/python" - <<'EOF' >/dev/null 2>&1
import importlib.metadata as m
want = {"bqemulator": "1.4.0", "duckdb": "1.5.5", "duckdb-extension-spatial": "1.5.5"}
for name, version in want.items():
    assert m.version(name) == version, name
m.version("numpy")
EOF
}

# True when DuckDB, run with our HOME, reports spatial as installed.
spatial_installed() {
    HOME="$BQ_HOME" "$VENV/bin/python" -c '
import duckdb, sys
row = duckdb.sql("select installed from duckdb_extensions() where extension_name = '"'spatial'"'").fetchone()
sys.exit(0 if row and row[0] else 1)' >/dev/null 2>&1
}

install_spatial() {
    mkdir -p "$BQ_HOME"
    # The wheel ships the binary extension as a plain file in site-packages;
    # find it rather than hard-coding the package layout.
    HOME="$BQ_HOME" "$VENV/bin/python" - <<'EOF'
import pathlib, sysconfig, duckdb
roots = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
found = sorted(p for r in roots for p in pathlib.Path(r).rglob("spatial.duckdb_extension"))
if not found:
    raise SystemExit("bigquery: spatial.duckdb_extension not found in the venv")
duckdb.sql(f"INSTALL '{found[0]}'")
EOF
}

ensure_installed() {
    if ! venv_has_pins; then
        check_python
        # A venv whose interpreter no longer runs (e.g. the python it was made
        # from is gone), that is not a venv any more, or that never got pip
        # cannot be repaired: start over.
        if ! { venv_ok && [[ -x "$VENV/bin/pip" ]]; }; then
            rm -rf "$VENV"
            log "creating venv in $VENV"
            python3 -m venv "$VENV"
            venv_ok || die "python3 -m venv did not produce a working venv in $VENV"
        fi
        log "installing ${PINS[*]}"
        # --require-virtualenv: a second guard against installing outside it.
        "$VENV/bin/python" -m pip install --require-virtualenv --quiet \
            --disable-pip-version-check "${PINS[@]}"
        venv_has_pins || die "pip ran but the venv still lacks ${PINS[*]}"
    fi
    if ! spatial_installed; then
        log "installing the DuckDB spatial extension into $BQ_HOME"
        install_spatial
        spatial_installed || die "DuckDB still reports spatial as not installed"
    fi
}

# --- runtime ---------------------------------------------------------------

# True when pid is our emulator: this venv's bqemulator on these ports.
# Guards against a recycled pid in a stale pid file.
is_ours() {
    local args=()
    mapfile -d '' args 2>/dev/null <"/proc/$1/cmdline" || return 1
    [[ " ${args[*]} " == *" $VENV/bin/bqemulator start "*" --rest-port $REST_PORT "*" --grpc-port $GRPC_PORT "* ]]
}

# The pid file holds the emulator's pid, which is also its process group id
# (it is started with setsid), so `down` can kill the whole group.
# If the pid file is gone (state dir wiped while it ran), fall back to
# finding our emulator by its command line, so `up` does not trip over its
# port and `down` can still stop it. Pure bash, no fork per process.
running_pid() {
    local pid=""
    if [[ -f "$PID_FILE" ]]; then
        pid="$(cat "$PID_FILE" 2>/dev/null)" || pid=""
        if [[ "$pid" =~ ^[0-9]+$ ]] && is_ours "$pid"; then
            echo "$pid"
            return 0
        fi
    fi
    local dir
    for dir in /proc/[0-9]*; do
        pid="${dir#/proc/}"
        if is_ours "$pid"; then
            echo "$pid"
            return 0
        fi
    done
    return 1
}

healthy() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsS -o /dev/null --max-time 2 "$HEALTH_URL" 2>/dev/null
    else
        python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
            "$HEALTH_URL" >/dev/null 2>&1
    fi
}

# Something already accepts connections on the port (not ours, or an
# orphan whose pid file was lost): starting would fail with a bind error.
port_busy() {
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

print_env() {
    echo "BIGQUERY_EMULATOR=http://$HOST:$REST_PORT"
    echo "BIGQUERY_EMULATOR_GRPC=$HOST:$GRPC_PORT"
}

log_tail() {
    if [[ -f "$LOG_FILE" ]]; then
        log "last lines of $LOG_FILE:"
        tail -n 40 "$LOG_FILE" >&2
    fi
}

wait_ready() {
    local pid="$1" deadline=$((SECONDS + READY_TIMEOUT))
    until healthy; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "emulator exited during start-up"
            log_tail
            rm -f "$PID_FILE"
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "not ready after ${READY_TIMEOUT}s on $HEALTH_URL"
            log_tail
            # Don't leave a hung emulator holding the ports for the next try.
            stop_group "$pid"
            rm -f "$PID_FILE"
            exit 1
        fi
        sleep 0.2
    done
}

cmd_up() {
    local pid
    if pid="$(running_pid)"; then
        # Running from an earlier `up`: possibly still starting, so wait.
        mkdir -p "$STATE_DIR"
        echo "$pid" >"$PID_FILE"
        wait_ready "$pid"
        log "already running (pid $pid)"
        print_env
        return 0
    fi
    rm -f "$PID_FILE"

    ensure_installed

    local port
    for port in "$REST_PORT" "$GRPC_PORT"; do
        if port_busy "$port"; then
            die "port $port on $HOST is already in use by another process; set BQ_REST_PORT / BQ_GRPC_PORT or stop it"
        fi
    done

    # Persistent (a DuckDB file in the state folder, removed by `down`) so that a
    # `restart` keeps the data, as a real outage would.
    mkdir -p "$STATE_DIR/data"
    : >"$LOG_FILE"
    # setsid: own session and process group, so `down` can kill any children
    # and a Ctrl-C in the caller's terminal does not reach it.
    # stdin/stdout/stderr are detached so a caller capturing our output
    # (e.g. `$(services/bigquery.sh up)`) does not hang on the emulator.
    # BQEMU_ENABLE_FORMAT_EXTENSIONS=false: those extensions would be
    # downloaded at start, and nothing here needs them.
    HOME="$BQ_HOME" BQEMU_ENABLE_FORMAT_EXTENSIONS=false \
        setsid "$VENV/bin/bqemulator" start \
        --rest-host "$HOST" --rest-port "$REST_PORT" \
        --grpc-host "$HOST" --grpc-port "$GRPC_PORT" \
        --persistent --data-dir "$STATE_DIR/data" --project "$PROJECT" \
        </dev/null >>"$LOG_FILE" 2>&1 9>&- &
    pid=$!
    echo "$pid" >"$PID_FILE"
    log "started (pid $pid), waiting for $HEALTH_URL"
    wait_ready "$pid"
    log "ready"
    print_env
}

# SIGTERM the emulator's process group (negative pid: the group setsid
# made), wait for it to exit, SIGKILL if it will not. bqemulator shuts down
# gracefully on SIGTERM in about 2 s.
stop_group() {
    local pid="$1"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 -- "-$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            log "still alive after ${STOP_TIMEOUT}s, sending SIGKILL"
            kill -KILL -- "-$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.2
    done
}

cmd_down() {
    local pid
    if ! pid="$(running_pid)"; then
        log "not running"
        rm -rf "$STATE_DIR"
        return 0
    fi
    stop_group "$pid"
    rm -rf "$STATE_DIR"
    log "stopped (pid $pid)"
}

# Stop but keep the data: an outage the tests can end with `up`.
cmd_stop() {
    local pid
    if pid="$(running_pid)"; then
        stop_group "$pid"
        rm -f "$PID_FILE"
    fi
    log "stopped (data kept)"
}

# Stop and start again, keeping the data: simulates an outage for the tests.
cmd_restart() {
    local pid
    if pid="$(running_pid)"; then
        stop_group "$pid"
        rm -f "$PID_FILE"
    fi
    cmd_up
}

cmd_status() {
    local pid
    if pid="$(running_pid)"; then
        if healthy; then
            echo "running (pid $pid) on http://$HOST:$REST_PORT"
        else
            echo "running (pid $pid) but not answering on $HEALTH_URL yet"
        fi
        return 0
    fi
    echo "stopped"
    return 1
}

# Serialise up/down: two test runs calling `up` at once would otherwise both
# run pip into the same venv or both try to bind the ports. The emulator is
# started with fd 9 closed so it does not keep holding the lock.
lock() {
    command -v flock >/dev/null 2>&1 || return 0
    mkdir -p "$CACHE_DIR"
    exec 9>"$CACHE_DIR/.lock"
    flock 9
}

case "${1:-}" in
    up) lock; cmd_up ;;
    down) lock; cmd_down ;;
    restart) lock; cmd_restart ;;
    stop) lock; cmd_stop ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 up|down|status|restart|stop" >&2
        exit 2
        ;;
esac
