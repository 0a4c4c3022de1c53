#!/usr/bin/env bash
# What bench/peers.sh and bench/conns.sh share: install the packages the
# harness needs (idempotently), build the plugins and a release levee unless
# `--plugins-dir` / `--levee-bin` say where they are, then run the harness
# and stop it by PID if this script is stopped.
# Usage (from the repo root): bash bench/run-harness.sh HARNESS.py "APT PACKAGES" ARGS...
set -euo pipefail
harness=$1
packages=$2
shift 2

build_levee=1
build_plugins=1
for arg in "$@"; do
  case "$arg" in
    --levee-bin | --levee-bin=*) build_levee=0 ;;
    --plugins-dir | --plugins-dir=*) build_plugins=0 ;;
  esac
done

# shellcheck disable=SC2086 # one word per package
bash scripts/ensure-apt.sh $packages protobuf-compiler
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

# The harness stops everything it starts, by PID, on any exit. The trap covers
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

python3 "$harness" "$@" &
harness_pid=$!
wait "$harness_pid"
