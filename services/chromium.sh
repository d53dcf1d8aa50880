#!/usr/bin/env bash
# Headless Chromium for the dashboard's browser test: Debian's `chromium` package, installed
# on first use. Nothing runs in the background; `up` installs and prints where the binary is.
# Usage: services/chromium.sh up|down|status
set -euo pipefail

find_bin() {
  local b
  for b in chromium chromium-browser google-chrome; do
    command -v "$b" >/dev/null 2>&1 && { command -v "$b"; return 0; }
  done
  return 1
}

up() {
  if ! BIN="$(find_bin)"; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "chromium: installing Debian's chromium package" >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null; }
      BIN="$(find_bin)"
    else
      echo "chromium: not found; install it: apt-get install -y chromium" >&2
      exit 1
    fi
  fi
  "$BIN" --version >&2
  echo "CLICKWATCH_CHROMIUM=$BIN"
}

case "${1:-}" in
  up) up ;;
  down) ;;
  status) BIN="$(find_bin)" && echo "chromium: $BIN" || { echo "chromium: not installed" >&2; exit 1; } ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
