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
#
# `--tls` adds the TLS rows (HAProxy, nginx and levee terminating TLS, over
# HTTP/1.1 with wrk and HTTP/2 with h2load, from nghttp2-client; openssl
# makes the run's certificate), about 2.2 minutes more.
set -euo pipefail
cd "$(dirname "$0")/.."

exec bash bench/run-harness.sh bench/peers.py \
  "wrk haproxy nginx-light python3 nghttp2-client openssl" "$@"
