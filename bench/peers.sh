#!/usr/bin/env bash
# The peer benchmark, in one command: levee (native policies, Wasm policies)
# vs HAProxy vs nginx vs the bare upstream, GET throughput, p50/p99, CPU per
# request and peak RSS at 64 connections, in front of three cheap nginx
# upstreams (so the proxy is the bottleneck). Prints a Markdown table and
# saves it to bench/results/peers-<date>.md.
#
# Installs what it needs (idempotently), builds the plugins and a release
# levee, then hands over to bench/peers.py. Extra arguments go to peers.py
# (see `python3 bench/peers.py --help`), e.g. --rounds 1 or
# --upstream nginx,kv-replica.
#
# Measuring a binary built elsewhere: `--levee-bin PATH` skips the cargo
# build of levee, `--plugins-dir DIR` skips the plugin build, e.g.
#   bash bench/peers.sh --levee-bin /path/to/levee --plugins-dir /path/to/dist
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

bash scripts/ensure-apt.sh wrk haproxy nginx-light python3
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

# peers.py stops everything it starts, by PID, on any exit. The trap covers
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

python3 bench/peers.py "$@" &
harness_pid=$!
wait "$harness_pid"
