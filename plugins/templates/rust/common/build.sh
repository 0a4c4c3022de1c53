#!/usr/bin/env bash
# Builds this plugin into {{name}}.wasm, a WebAssembly component for levee's
# `{{world}}` world, the way levee builds its own plugins (wasm-route.sh,
# copied from levee's scripts/: rustup's wasm32-unknown-unknown target, else
# Debian's rustc with -Z build-std).
#
# Usage: ./build.sh [cargo build options, e.g. --locked]
#   CARGO_TARGET_DIR is honoured (share one between plugins: the Debian
#   route compiles std once per target dir); LEVEE_PLUGINS_ROUTE=rustup or
#   debian forces a route.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

log() { printf '{{name}}: %s\n' "$*"; }
die() { printf '{{name}}: error: %s\n' "$*" >&2; exit 1; }

# shellcheck source=wasm-route.sh
source ./wasm-route.sh
wasm_output=component

wasm_cargo_build . "$@"
target_dir=$(cargo metadata --no-deps --format-version 1 --offline |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
built=$target_dir/$wasm_target/release/{{crate_name}}.wasm
[[ -f $built ]] || die "cargo produced no $built"
cp "$built" {{name}}.wasm
log "built {{name}}.wasm; check it with: levee plugin check {{name}}.wasm --config '{}'"
