#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with rustup:
#   installs what it needs (idempotently), builds the Wasm plugins from
#   source, then runs fmt, clippy and every test (unit, property, crash,
#   end-to-end against real processes, the status page in headless Chromium).
# CI (.ci/run) runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# Packages the tests use: chromium for the status-page check, curl and
# nghttp2-client (nghttp) as TLS and HTTP/2 clients, g++ for
# libFuzzer (scripts/fuzz.sh), sqlite is bundled by rusqlite, the wasm
# toolchain is handled by build-plugins.sh; protobuf-compiler (protoc) for
# etcd-client's build script, etcd-server for the cluster-mode tests (they
# start their own etcd processes on loopback; the package's own service is
# not used).
bash scripts/ensure-apt.sh chromium ca-certificates g++ curl nghttp2-client protobuf-compiler etcd-server
bash scripts/ensure-registry.sh  # docker-registry for tests/oci.rs (it runs its own registry)

rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "==> building the policy plugins (Wasm components)"
bash scripts/build-plugins.sh

echo "==> cargo fmt --check"
cargo fmt --all --check

echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> cargo test"
cargo test --workspace --locked

echo "==> fuzzing: every target for a few seconds (long runs: see README, Fuzzing)"
bash scripts/fuzz.sh 5
