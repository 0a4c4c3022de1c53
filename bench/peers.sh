#!/usr/bin/env bash
# The peer benchmark, in one command: levee (Wasm policies, then native
# policies) vs HAProxy vs nginx vs the bare upstream, GET throughput and
# p50/p99 at 64 connections plus quorum-write latency with a slow replica.
# Prints a Markdown table and saves it to bench/results/peers-<date>.md.
#
# Installs what it needs (idempotently), builds the plugins and a release
# levee, then hands over to bench/peers.py. Extra arguments go to peers.py
# (see `python3 bench/peers.py --help`), e.g. --layout shared or --rounds 3.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/ensure-apt.sh wrk haproxy nginx-light python3
echo "==> building the policy plugins (Wasm components)"
bash scripts/build-plugins.sh
echo "==> building levee (release)"
cargo build --release --locked -p levee

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
