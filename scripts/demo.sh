#!/usr/bin/env bash
# levee's main job on an embedded default: builds levee and the example Wasm
# policy plugins (installing what it needs, idempotently), then runs
# `levee demo`, which starts three real key-value replicas on loopback, puts
# levee in front of them and narrates a failure scenario, the retries
# decided by the retry plugins in Rust, JavaScript and Python.
# The first run compiles the JavaScript and Python plugins (~50 s, said as
# it happens); the compiled code is kept for later runs (~2.5 s) in
# ~/.cache/levee/demo-plugin-cache (LEVEE_DEMO_CACHE_DIR to put it elsewhere).
# Extra arguments go to `levee demo` (e.g. --keep).
set -euo pipefail
cd "$(dirname "$0")/.."
# protoc: etcd-client's build script compiles etcd's gRPC definitions.
bash scripts/ensure-apt.sh protobuf-compiler
bash scripts/build-plugins.sh
cargo build --release --locked -p levee
exec target/release/levee demo --plugin-dir plugins/dist "$@"
