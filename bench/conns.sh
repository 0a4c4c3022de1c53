#!/usr/bin/env bash
# Memory per connection, in one command: resident memory per idle
# keep-alive connection and per in-flight request of levee (native and Wasm
# policies), HAProxy and nginx, side by side (N = 1k, 8k, 32k idle
# connections; 1k, 4k requests in flight), and how much of it each returns
# after the connections close. Prints a Markdown table and saves it to
# bench/results/conns-<date>.md. About 4-5 minutes; --quick about 1.5.
#
# Installs what it needs (idempotently), builds the plugins and a release
# levee unless given, then hands over to bench/conns.py, which raises its
# own file-descriptor limit (see bench/README.md, "Memory per connection").
# Extra arguments go to conns.py (`python3 bench/conns.py --help`), e.g.
#   bash bench/conns.sh --levee-bin /path/to/levee --plugins-dir /path/to/dist
#   bash bench/conns.sh --quick
set -euo pipefail
cd "$(dirname "$0")/.."

build_levee=1
build_plugins=1
for arg in "$@"; do
  case "$arg" in
    --levee-bin | --levee-bin=*) build_levee=0 ;;
    --plugins-dir | --plugins-dir=*) build_plugins=0 ;;
  esac
done

bash scripts/ensure-apt.sh haproxy nginx-light python3
if [ "$build_plugins" = 1 ]; then
  echo "==> building the policy plugins (Wasm components)"
  bash scripts/build-plugins.sh
else
  echo "==> --plugins-dir given: not building the plugins"
fi
if [ "$build_levee" = 1 ]; then
  echo "==> building levee (release)"
  cargo build --release --locked -p levee
else
  echo "==> --levee-bin given: not building levee"
fi

# conns.py stops everything it starts, by PID, on any exit. The trap covers
# the one process this script starts, in case the script itself is stopped.
harness_pid=""
stop_harness() {
  if [ -n "$harness_pid" ] && kill -0 "$harness_pid" 2>/dev/null; then
    kill -TERM "$harness_pid" 2>/dev/null || true
    wait "$harness_pid" 2>/dev/null || true
  fi
}
trap stop_harness EXIT
trap 'exit 130' INT TERM HUP

python3 bench/conns.py "$@" &
harness_pid=$!
wait "$harness_pid"
