#!/usr/bin/env bash
# Builds every policy plugin in plugins/ from source into a WebAssembly
# component:  plugins/<name>/      -> plugins/dist/<name>.wasm
#             plugins/zoo/<name>/  -> plugins/dist/zoo/<name>.wasm
#
# Usage: scripts/build-plugins.sh [--force]
#   LEVEE_PLUGINS_ROUTE=auto|rustup|debian picks the toolchain route (default
#   auto, see build_core_modules); the others exist to test each route.
#
# Idempotent: when every output is newer than every input (plugin sources,
# crates/policy, wit/, tools/componentize, this script) it prints "up to
# date" and exits without starting cargo, so CI can run it before every
# `cargo test`.
#
# Why the routes below: plugins target wasm32-unknown-unknown (no WASI, so no
# ambient capabilities). rustup's toolchain is the natural way to build that,
# but machines without network cannot `rustup target add` the std for it.
# Debian's rust packages ship std *sources*, so Debian's rustc/cargo can
# build std for wasm32 themselves (-Z build-std). rustup's own rustc cannot
# use those sources: they belong to a different compiler version.
#
# Each core module is then wrapped into a component by tools/componentize
# (a root-workspace binary using the wit-component crate), which also refuses
# any import beyond levee's host and request interfaces (contract 0.2.0).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
plugins_dir=$repo_root/plugins
dist_dir=$plugins_dir/dist
target_dir=$plugins_dir/target
wasm_target=wasm32-unknown-unknown
debian_packages=(rustc-web cargo-web rust-web-src lld-16)
wasm_ld=/usr/lib/llvm-16/bin/wasm-ld
# The componentizer gets its own target dir: if cargo runs this script (a
# test, a build step), the outer cargo may hold the lock on target/.
componentize_target_dir=$target_dir/componentize

log() { printf 'build-plugins: %s\n' "$*"; }
die() { printf 'build-plugins: error: %s\n' "$*" >&2; exit 1; }

# When called from cargo, the outer build's settings (target dir, rustc,
# flags, wrapper, jobserver) must not leak into the nested builds. Registry
# and network settings stay: they say how to reach crates.io.
strip_outer_cargo_env() {
    local name
    for name in $(compgen -e); do
        case $name in
            CARGO_HOME | CARGO_NET_* | CARGO_HTTP_* | CARGO_REGISTRY_* | CARGO_REGISTRIES_*) ;;
            CARGO* | RUSTC* | RUSTFLAGS | RUSTDOC* | RUST_RECURSION_COUNT) unset "$name" ;;
        esac
    done
}

# plugin_dirs: "relative-dir" per plugin crate, good plugins then the zoo.
plugin_dirs() {
    local manifest
    for manifest in "$plugins_dir"/*/Cargo.toml "$plugins_dir"/zoo/*/Cargo.toml; do
        [[ -f $manifest ]] || continue
        local dir=${manifest%/Cargo.toml}
        [[ $dir == "$target_dir"* ]] && continue
        printf '%s\n' "${dir#"$plugins_dir"/}"
    done
}

output_for() { printf '%s/%s.wasm\n' "$dist_dir" "$1"; }

package_name() {
    sed -n 's/^name = "\(.*\)"$/\1/p' "$plugins_dir/$1/Cargo.toml" | head -n 1
}

# Every input, as find(1) arguments over the source trees.
input_paths=("$plugins_dir" "$repo_root/crates/policy" "$repo_root/wit"
    "$repo_root/tools/componentize" "${BASH_SOURCE[0]}")

# True when some output is missing or older than some input.
outputs_stale() {
    local dir out
    for dir in $(plugin_dirs); do
        out=$(output_for "$dir")
        [[ -f $out ]] || return 0
        if [[ -n $(find "${input_paths[@]}" \
            \( -path "$target_dir" -o -path "$dist_dir" \) -prune \
            -o -type f -newer "$out" -print -quit) ]]; then
            return 0
        fi
    done
    return 1
}

have_rustup_wasm_target() {
    command -v rustup > /dev/null &&
        rustup target list --installed 2> /dev/null | grep -qx "$wasm_target"
}

# Route 1: rustup's toolchain with its prebuilt wasm32 std.
build_with_rustup() {
    log "route: rustup toolchain with the $wasm_target target"
    (cd "$plugins_dir" && cargo build --target "$wasm_target" --release)
}

ensure_debian_packages() {
    local missing=() package
    for package in "${debian_packages[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2> /dev/null | grep -q 'install ok installed' ||
            missing+=("$package")
    done
    ((${#missing[@]} == 0)) && return 0
    command -v apt-get > /dev/null ||
        die "need Debian packages ${missing[*]} (or rustup's $wasm_target target) and apt-get is not here"
    local sudo=()
    ((EUID == 0)) || sudo=(sudo)
    log "installing Debian packages: ${missing[*]}"
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
}

# Route 3: Debian's rustc/cargo build std for wasm32 from rust-web-src.
build_with_debian() {
    ensure_debian_packages
    [[ -x /usr/bin/rustc && -x /usr/bin/cargo && -x $wasm_ld ]] ||
        die "Debian toolchain incomplete: need /usr/bin/rustc, /usr/bin/cargo and $wasm_ld"
    log "route: Debian $(/usr/bin/rustc --version) with -Z build-std"
    (cd "$plugins_dir" &&
        RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
            CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=$wasm_ld \
            /usr/bin/cargo build -Z build-std=std,panic_abort \
            --target "$wasm_target" --release)
}

build_core_modules() {
    case ${LEVEE_PLUGINS_ROUTE:-auto} in
        auto) ;;
        rustup) build_with_rustup && return ;;
        debian) build_with_debian && return ;;
        *) die "LEVEE_PLUGINS_ROUTE must be auto, rustup or debian" ;;
    esac
    if have_rustup_wasm_target; then
        build_with_rustup
        return
    fi
    if command -v rustup > /dev/null &&
        timeout 60 rustup target add "$wasm_target" > /dev/null 2>&1 &&
        have_rustup_wasm_target; then
        build_with_rustup
        return
    fi
    log "rustup has no $wasm_target target and cannot add it (offline?)"
    build_with_debian
}

build_componentizer() {
    log "building tools/componentize"
    cargo build --quiet --manifest-path "$repo_root/Cargo.toml" \
        -p levee-componentize --release --target-dir "$componentize_target_dir"
}

componentize_all() {
    local componentize=$componentize_target_dir/release/levee-componentize
    local dir package core out
    mkdir -p "$dist_dir/zoo"
    for dir in $(plugin_dirs); do
        package=$(package_name "$dir")
        [[ -n $package ]] || die "no package name in plugins/$dir/Cargo.toml"
        core=$target_dir/$wasm_target/release/${package//-/_}.wasm
        [[ -f $core ]] || die "cargo produced no $core"
        out=$(output_for "$dir")
        "$componentize" "$core" "$out" || die "componentizing plugins/$dir failed"
    done
}

main() {
    local force=0
    case ${1:-} in
        --force) force=1 ;;
        "") ;;
        *) die "usage: scripts/build-plugins.sh [--force]" ;;
    esac
    if ((force == 0)) && ! outputs_stale; then
        log "up to date ($(plugin_dirs | wc -l) components in plugins/dist)"
        return 0
    fi
    strip_outer_cargo_env
    local started=$SECONDS
    build_core_modules
    build_componentizer
    componentize_all
    log "built $(plugin_dirs | wc -l) components in $((SECONDS - started)) s"
}

main "$@"
