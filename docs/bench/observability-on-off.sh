#!/usr/bin/env bash
# Paired runs of the embedded pipeline (file source, six plugins, raw none) with the
# observability listener off and on (on: /metrics and /api/dashboard scraped every second).
# Reports wall seconds and the host's CPU seconds (user + sys, from GNU time): CPU is the
# steadier figure on a shared machine, since the wall clock also counts other tenants.
# Setup: /tmp/obsbench/events.jsonl from `clickwatch generate --to file --count 300000 --out ...`,
# /tmp/obsbench/plugins/ with the six shipped .wasm files from target/plugins/.
set -euo pipefail
cd /tmp/obsbench
BIN=/work/main/target/debug/clickwatch
ROUNDS=${ROUNDS:-4}
# SCRAPE_INTERVAL=0 scrapes back to back: it magnifies the listener's cost far above the
# noise, so the cost of one scrape can be read off and scaled to a real scrape rate.
SCRAPE_INTERVAL=${SCRAPE_INTERVAL:-1}
for round in $(seq 1 "$ROUNDS"); do
  for mode in off on; do
    rm -rf out && mkdir out
    cat > config.toml <<TOML
[source]
type = "file"
path = "/tmp/obsbench/events.jsonl"
[pipeline]
batch_size = 1000
[plugins]
dir = "/tmp/obsbench/plugins"
watch = false
[observability]
enabled = $([ $mode = on ] && echo true || echo false)
listen = "127.0.0.1:19464"
[sinks.raw]
type = "none"
[sinks.aggregates]
type = "sqlite"
path = "/tmp/obsbench/out/agg.db"
[sinks.alerts]
type = "file"
path = "/tmp/obsbench/out/alerts.jsonl"
stdout = false
[sinks.dead_letters]
type = "file"
path = "/tmp/obsbench/out/dead.jsonl"
TOML
    /usr/bin/time -f "%e %U %S" -o out/time $BIN run --config config.toml > out/log 2>&1 &
    pid=$!
    scrapes=0
    if [ $mode = on ]; then
      while kill -0 $pid 2>/dev/null; do
        curl -s -o /dev/null http://127.0.0.1:19464/metrics && curl -s -o /dev/null http://127.0.0.1:19464/api/dashboard && scrapes=$((scrapes+1)) || true
        sleep "$SCRAPE_INTERVAL"
      done
    fi
    wait $pid
    read -r wall user sys < out/time
    echo "round=$round mode=$mode seconds=$wall events_per_s=$(echo "300000 / $wall" | bc) cpu_seconds=$(echo "$user + $sys" | bc) scrapes=$scrapes"
  done
done
