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

exec bash bench/run-harness.sh bench/conns.py "haproxy nginx-light python3" "$@"
