#!/usr/bin/env bash
# A private PostgreSQL cluster for tests: Debian's server binaries, its own loopback port, data
# under a folder these scripts own (outside the clone), trust auth on 127.0.0.1 only.
# Usage: services/postgres.sh up|down|status|restart|stop  (stop keeps the data; up starts it again)
set -euo pipefail

PORT="${PG_PORT:-15432}"
# /tmp, not $HOME: the postgres user must be able to reach the data folder.
STATE="${CLICKWATCH_STATE:-/tmp/clickwatch-run}/postgres"
DATA="$STATE/data"
LOG="$STATE/postgres.log"
DB="clickwatch"

find_bin() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/pg_ctl" ] && { echo "$dir"; return 0; }
  done
  return 1
}

# initdb and postgres refuse to run as root; run them as the postgres user when we are root.
as_pg() {
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi
}

install() {
  if ! BIN="$(find_bin)"; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "postgres: installing Debian's postgresql package" >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null; }
      BIN="$(find_bin)"
    else
      echo "postgres: PostgreSQL server binaries not found; install them: apt-get install -y postgresql" >&2
      exit 1
    fi
  fi
}

ready() {
  "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -U postgres 2>/dev/null
}

running() {
  [ -f "$DATA/postmaster.pid" ] && as_pg "'$BIN/pg_ctl' -D '$DATA' status" >/dev/null 2>&1
}

up() {
  install
  if running && ready; then
    echo "postgres: already running on 127.0.0.1:$PORT"
  else
    mkdir -p "$STATE"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$STATE"; fi
    if [ ! -f "$DATA/PG_VERSION" ]; then
      as_pg "'$BIN/initdb' -D '$DATA' -A trust -U postgres -E UTF8 --no-locale" >"$STATE/initdb.log" 2>&1 \
        || { cat "$STATE/initdb.log" >&2; exit 1; }
    fi
    # fsync off: test data is disposable and the tests restart the server on purpose.
    as_pg "'$BIN/pg_ctl' -D '$DATA' -l '$LOG' -w -t 60 -o \"-p $PORT -k '$STATE' -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=50\" start" >/dev/null \
      || { tail -n 30 "$LOG" >&2; exit 1; }
  fi
  for _ in $(seq 1 120); do ready && break; sleep 0.5; done
  ready || { echo "postgres: did not become ready" >&2; tail -n 30 "$LOG" >&2; exit 1; }
  if ! "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -tAc "select 1 from pg_database where datname='$DB'" | grep -q 1; then
    "$BIN/psql" -q -h 127.0.0.1 -p "$PORT" -U postgres -c "create database $DB" >/dev/null
  fi
  echo "CLICKWATCH_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$PORT/$DB"
}

down() {
  BIN="$(find_bin)" || exit 0
  if running; then as_pg "'$BIN/pg_ctl' -D '$DATA' -m fast -w stop" >/dev/null; fi
  rm -rf "$STATE"
  echo "postgres: stopped"
}

restart() {
  install
  as_pg "'$BIN/pg_ctl' -D '$DATA' -l '$LOG' -m fast -w -t 60 -o \"-p $PORT -k '$STATE' -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=50\" restart" >/dev/null
  for _ in $(seq 1 120); do ready && break; sleep 0.5; done
  echo "postgres: restarted"
}

# Stop but keep the data: an outage the tests can end with `up`.
stop() {
  BIN="$(find_bin)" || exit 0
  if running; then as_pg "'$BIN/pg_ctl' -D '$DATA' -m fast -w stop" >/dev/null; fi
  echo "postgres: stopped (data kept)"
}

status() {
  BIN="$(find_bin)" || { echo "postgres: not installed"; exit 1; }
  if running && ready; then echo "postgres: running on 127.0.0.1:$PORT"; else echo "postgres: stopped"; exit 1; fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  restart) restart ;;
  stop) stop ;;
  *) echo "usage: $0 up|down|status|restart|stop" >&2; exit 2 ;;
esac
