#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft, broker+controller in one JVM) on loopback, for tests.
#
#   services/kafka.sh up       install if needed, start, wait until ready; prints KAFKA_BROKERS=host:port
#   services/kafka.sh restart  stop (SIGTERM; --kill for SIGKILL) and start again on the same data, so
#                              topics, offsets and committed groups survive (for reliability tests)
#   services/kafka.sh down     stop and delete all broker state
#   services/kafka.sh status   exit 0 if running, 1 if not
#
# Only KAFKA_BROKERS=... goes to stdout, so `eval "$(services/kafka.sh up)"` works;
# progress and errors go to stderr.
#
# Environment:
#   KAFKA_PORT             client listener (default 19092)
#   KAFKA_CONTROLLER_PORT  KRaft controller listener (default 19093)
#   CLICKWATCH_CACHE       jar cache root (default ~/.cache/clickwatch); jars land in $CLICKWATCH_CACHE/kafka/jars
#   CLICKWATCH_STATE       runtime state root (default /tmp/clickwatch-run); broker state in $CLICKWATCH_STATE/kafka
#
# The jars come from Maven Central through mvn rather than the Apache download
# site, because package registries are the only network this project can rely on.
# The same jar directory also holds kafka-tools, so tests can run e.g.
#   java -cp "$CLICKWATCH_CACHE/kafka/jars/*" org.apache.kafka.tools.ConsoleProducer ...
set -euo pipefail

KAFKA_VERSION=4.4.0
# log4j-slf4j-impl must match the log4j-core that kafka-server pulls in; without
# an SLF4J binding the broker logs nothing and readiness can't be detected.
LOG4J_VERSION=2.25.5
DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1

PORT=${KAFKA_PORT:-19092}
CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-19093}
CACHE_DIR=${CLICKWATCH_CACHE:-$HOME/.cache/clickwatch}/kafka
STATE_DIR=${CLICKWATCH_STATE:-/tmp/clickwatch-run}/kafka
JARS_DIR=$CACHE_DIR/jars
PID_FILE=$STATE_DIR/kafka.pid
LOG_FILE=$STATE_DIR/server.log
PROPS=$STATE_DIR/server.properties
READY_TIMEOUT=60
STOP_TIMEOUT=30
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
JVM=(-Xms64m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$STATE_DIR/log4j2.properties")

log() { echo "kafka: $*" >&2; }
die() { log "$*"; exit 1; }

need_tools() {
    local missing=()
    command -v "$JAVA" >/dev/null 2>&1 || missing+=(java)
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    if ((${#missing[@]})); then
        log "missing: ${missing[*]}"
        log "install with: apt-get install -y openjdk-17-jre-headless maven"
        exit 1
    fi
    # Kafka 4.x brokers are compiled for Java 17 (class file 61); an older JVM
    # would fail later with an opaque UnsupportedClassVersionError.
    local major
    major=$("$JAVA" -XshowSettings:properties -version 2>&1 |
        sed -n 's/^ *java\.specification\.version = \([0-9]*\).*/\1/p')
    if [[ -z $major || $major -lt 17 ]]; then
        log "java ${major:-?} found, Kafka $KAFKA_VERSION needs 17+"
        log "install with: apt-get install -y openjdk-17-jre-headless maven"
        exit 1
    fi
}

installed() {
    [[ -f $JARS_DIR/.kafka-version && $(<"$JARS_DIR/.kafka-version") == "$KAFKA_VERSION" ]]
}

install() {
    installed && return 0
    need_tools mvn
    log "downloading Kafka $KAFKA_VERSION jars via Maven into $JARS_DIR"
    local work=$CACHE_DIR/fetch
    rm -rf "$work" "$JARS_DIR.tmp"
    mkdir -p "$work"
    # connect-runtime (jetty, jersey, ...) is excluded from kafka-tools: the
    # console clients don't use it and it would double the download.
    cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.clickwatch</groupId>
  <artifactId>kafka-fetch</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>$KAFKA_VERSION</version>
      <exclusions>
        <exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId></exclusion>
      </exclusions>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
    # Copy into a temp dir and rename, so an interrupted download never looks installed.
    # Output goes to a file and is shown only on failure: Maven 3.8 prints stray
    # ANSI resets even under -B -q.
    if ! mvn -B -q -f "$work/pom.xml" "$DEPENDENCY_PLUGIN:copy-dependencies" \
        -DincludeScope=runtime -DoutputDirectory="$JARS_DIR.tmp" >"$work/mvn.log" 2>&1; then
        tail -n 40 "$work/mvn.log" >&2
        die "mvn failed to fetch org.apache.kafka:kafka_2.13:$KAFKA_VERSION"
    fi
    echo "$KAFKA_VERSION" >"$JARS_DIR.tmp/.kafka-version"
    rm -rf "$JARS_DIR" "$work"
    mv "$JARS_DIR.tmp" "$JARS_DIR"
}

# Prints the broker pid if the pid file names a live Kafka JVM using our config.
# The cmdline check guards against a stale pid file whose pid was reused.
broker_pid() {
    [[ -f $PID_FILE ]] || return 1
    local pid
    pid=$(<"$PID_FILE")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$PROPS" || return 1
    echo "$pid"
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# The port opening is not enough: the listener accepts connections before the
# broker has caught up with the metadata log and can serve requests.
broker_ready() {
    port_open "$1" && grep -q 'Kafka Server started' "$LOG_FILE" 2>/dev/null
}

running_port() {
    sed -n 's#^listeners=PLAINTEXT://127\.0\.0\.1:\([0-9]*\),.*#\1#p' "$PROPS" 2>/dev/null
}

log_tail() {
    if [[ -f $LOG_FILE ]]; then
        log "last lines of $LOG_FILE:"
        tail -n 40 "$LOG_FILE" >&2
    fi
}

stop_pid() {
    local pid=$1 waited=0
    kill "$pid" 2>/dev/null || return 0
    # SIGTERM triggers Kafka's controlled shutdown, which flushes logs.
    while kill -0 "$pid" 2>/dev/null; do
        if ((waited >= STOP_TIMEOUT * 10)); then
            log "pid $pid still alive after ${STOP_TIMEOUT}s, sending SIGKILL"
            kill -9 "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}

write_config() {
    cat >"$PROPS" <<EOF
node.id=1
process.roles=broker,controller
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
# A static voter set needs no --standalone/--initial-controllers at format time.
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
log.dirs=$STATE_DIR/data
num.partitions=4
auto.create.topics.enable=true
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
    # Everything to stdout (redirected to server.log by the caller): one file to
    # grep for readiness and to show when startup fails.
    cat >"$STATE_DIR/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
EOF
}

random_cluster_id() {
    # Same shape as Kafka's Uuid.toString(): 16 random bytes, URL-safe base64,
    # unpadded. A leading '-' would be parsed as an option by StorageTool.
    local id
    while :; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
        [[ $id != -* ]] && break
    done
    echo "$id"
}

cmd_up() {
    local p
    for p in "$PORT" "$CONTROLLER_PORT"; do
        [[ $p =~ ^[0-9]+$ ]] || die "port '$p' is not a number"
    done
    [[ $PORT != "$CONTROLLER_PORT" ]] || die "KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ"
    need_tools
    mkdir -p "$CACHE_DIR"
    # Serialises concurrent `up`s (e.g. parallel test jobs) on install and start.
    exec 9>"$CACHE_DIR/.lock"
    flock 9

    local pid
    if pid=$(broker_pid); then
        local port
        port=$(running_port)
        [[ $port == "$PORT" ]] ||
            die "already running (pid $pid) on port $port, not $PORT; run '$0 down' first"
        if wait_ready "$pid"; then
            log "already running (pid $pid)"
            echo "KAFKA_BROKERS=127.0.0.1:$PORT"
            return 0
        fi
        exit 1
    fi

    install

    # Leftovers from a crashed broker would carry a stale cluster id and pid.
    rm -rf "$STATE_DIR"
    mkdir -p "$STATE_DIR"
    for p in "$PORT" "$CONTROLLER_PORT"; do
        ! port_open "$p" || die "port $p on 127.0.0.1 is already in use by another process"
    done
    write_config

    # C1 only: the format tool runs for about a second, so JIT warm-up is pure cost.
    "$JAVA" "${JVM[@]}" -XX:TieredStopAtLevel=1 -cp "$JARS_DIR/*" kafka.tools.StorageTool format \
        -t "$(random_cluster_id)" -c "$PROPS" >>"$LOG_FILE" 2>&1 || {
        log_tail
        die "formatting storage failed"
    }
    start_broker
}

# Starts the broker on the formatted storage in $STATE_DIR and waits until it is ready.
start_broker() {
    local pid
    # setsid: the broker must outlive this shell and ignore Ctrl-C sent to the
    # caller's process group (e.g. a test runner being interrupted).
    # 9>&-: the broker must not inherit the lock, or every later `up` would block.
    setsid "$JAVA" "${JVM[@]}" -cp "$JARS_DIR/*" kafka.Kafka "$PROPS" \
        </dev/null >>"$LOG_FILE" 2>&1 9>&- &
    pid=$!
    echo "$pid" >"$PID_FILE"
    log "started pid $pid, waiting up to ${READY_TIMEOUT}s"

    wait_ready "$pid" || exit 1
    log "ready on 127.0.0.1:$PORT"
    echo "KAFKA_BROKERS=127.0.0.1:$PORT"
}

# Waits for readiness; on timeout or crash shows the log and kills the broker,
# so a failed `up` never leaves a half-started JVM holding the ports.
wait_ready() {
    local pid=$1 deadline=$((SECONDS + READY_TIMEOUT))
    while ! broker_ready "$PORT"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log_tail
            log "broker exited during startup"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            log_tail
            log "not ready after ${READY_TIMEOUT}s, stopping it"
            stop_pid "$pid"
            return 1
        fi
        sleep 0.2
    done
}

cmd_down() {
    local pid
    if pid=$(broker_pid); then
        log "stopping pid $pid"
        stop_pid "$pid"
    else
        log "not running"
    fi
    rm -rf "$STATE_DIR"
}

# Same data, same config: only the JVM is replaced. The old log is kept as server.log.1, so
# readiness is read from the new one.
cmd_restart() {
    local signal=TERM
    case ${1:-} in
        "") ;;
        --kill) signal=KILL ;;
        *) die "restart takes only --kill, not '$1'" ;;
    esac
    [[ -f $STATE_DIR/data/meta.properties && -f $PROPS ]] ||
        die "no broker data in $STATE_DIR to restart on; run '$0 up' first"
    need_tools
    mkdir -p "$CACHE_DIR"
    exec 9>"$CACHE_DIR/.lock"
    flock 9
    local pid
    if pid=$(broker_pid); then
        if [[ $signal == KILL ]]; then
            log "killing pid $pid (SIGKILL)"
            kill -9 "$pid" 2>/dev/null || true
            while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
        else
            log "stopping pid $pid"
            stop_pid "$pid"
        fi
    else
        log "not running; starting on the existing data"
    fi
    [[ $(running_port) == "$PORT" ]] ||
        die "the data in $STATE_DIR is for port $(running_port), not $PORT"
    for p in "$PORT" "$CONTROLLER_PORT"; do
        ! port_open "$p" || die "port $p on 127.0.0.1 is already in use by another process"
    done
    [[ ! -f $LOG_FILE ]] || mv -f "$LOG_FILE" "$LOG_FILE.1"
    start_broker
}

cmd_status() {
    local pid
    if pid=$(broker_pid) && broker_ready "$(running_port)"; then
        echo "running (pid $pid, 127.0.0.1:$(running_port))"
        return 0
    fi
    echo "stopped"
    return 1
}

case ${1:-} in
    up) cmd_up ;;
    down) cmd_down ;;
    restart) cmd_restart "${2:-}" ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 up|restart [--kill]|down|status" >&2
        exit 2
        ;;
esac
