#!/usr/bin/env bash
# Builds every policy plugin in plugins/ from source into a WebAssembly
# component:  plugins/<name>/         -> plugins/dist/<name>.wasm
#             plugins/zoo/<name>/     -> plugins/dist/zoo/<name>.wasm
#             plugins/js/<name>/      -> plugins/dist/<name>-js.wasm  (policy.js)
#             plugins/python/<name>/  -> plugins/dist/<name>-py.wasm  (app.py)
#
# Usage: scripts/build-plugins.sh [--force]
#   LEVEE_PLUGINS_ROUTE=auto|rustup|debian picks the toolchain route (default
#   auto, see scripts/wasm-route.sh); the others exist to test each route.
#
# Idempotent: when every output is newer than every input (plugin sources,
# crates/policy, wit/, tools/componentize, this script) it prints "up to
# date" and exits without starting cargo, so CI can run it before every
# `cargo test`.
#
# The toolchain routes (rustup's wasm32 target, else Debian's rustc with
# -Z build-std) are in scripts/wasm-route.sh, shared with the Rust plugins
# that `levee plugin new` scaffolds (plugins/templates; not inputs here).
#
# Each core module is then wrapped into a component by tools/componentize
# (a root-workspace binary using the wit-component crate), which also refuses
# any import beyond levee's host and request interfaces (contract 0.2.0).
#
# JavaScript and Python plugins (all for the `retry-policy` world) are built
# by pinned componentize-js (npm, into plugins/target/js-tools) and
# componentize-py (PyPI, into the venv plugins/target/py-venv), each
# installed only when missing or at another version; node/npm and Python's
# venv module come from Debian (scripts/ensure-apt.sh) when absent. Each
# language is rebuilt only when its own outputs are stale.
# componentize-js runs with every WASI feature disabled, so its component
# imports only levee:policy/{types,host,request}. componentize-py's
# CPython imports WASI 0.2 (clocks, random, cli, filesystem, sockets), which
# the host links to a context that grants nothing.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
plugins_dir=$repo_root/plugins
dist_dir=$plugins_dir/dist
target_dir=$plugins_dir/target
# The componentizer gets its own target dir: if cargo runs this script (a
# test, a build step), the outer cargo may hold the lock on target/.
componentize_target_dir=$target_dir/componentize
componentize_js_version=0.23.0
componentize_py_version=0.25.1
js_tools_dir=$target_dir/js-tools
componentize_js=$js_tools_dir/node_modules/.bin/componentize-js
py_venv_dir=$target_dir/py-venv
componentize_py=$py_venv_dir/bin/componentize-py
# What componentize-js may leave out of its engine: every WASI feature.
js_disabled_features=(stdio random clocks http fetch-event)

log() { printf 'build-plugins: %s\n' "$*"; }
die() { printf 'build-plugins: error: %s\n' "$*" >&2; exit 1; }

# wasm_cargo_build and the toolchain routes; defines wasm_target.
# shellcheck source=wasm-route.sh
source "$repo_root/scripts/wasm-route.sh"

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

# Every input of the Rust plugins, as find(1) arguments over the source
# trees (the JavaScript and Python sources are pruned: they have their own).
input_paths=("$plugins_dir" "$repo_root/crates/policy" "$repo_root/wit"
    "$repo_root/tools/componentize" "${BASH_SOURCE[0]}" "$repo_root/scripts/wasm-route.sh")

# True when $1 is missing or older than some file under the paths after it.
stale() {
    local out=$1
    shift
    [[ -f $out ]] || return 0
    [[ -n $(find "$@" \
        \( -path "$target_dir" -o -path "$dist_dir" -o -path "$plugins_dir/js" \
        -o -path "$plugins_dir/python" -o -path "$plugins_dir/templates" \
        -o -name __pycache__ \) -prune \
        -o -type f -newer "$out" -print -quit) ]]
}

# True when some Rust plugin's output is missing or older than some input.
outputs_stale() {
    local dir
    for dir in $(plugin_dirs); do
        stale "$(output_for "$dir")" "${input_paths[@]}" && return 0
    done
    return 1
}

# "name" per JavaScript plugin (plugins/js/<name>/policy.js) or Python
# plugin (plugins/python/<name>/app.py).
js_plugins() {
    local source
    for source in "$plugins_dir"/js/*/policy.js; do
        [[ -f $source ]] && basename "$(dirname "$source")"
    done
    return 0
}
py_plugins() {
    local source
    for source in "$plugins_dir"/python/*/app.py; do
        [[ -f $source ]] && basename "$(dirname "$source")"
    done
    return 0
}

js_output_for() { printf '%s/%s-js.wasm\n' "$dist_dir" "$1"; }
py_output_for() { printf '%s/%s-py.wasm\n' "$dist_dir" "$1"; }

# The stale JavaScript (js_stale) or Python (py_stale) plugins' names.
js_stale() {
    local name
    for name in $(js_plugins); do
        stale "$(js_output_for "$name")" "$plugins_dir/js/$name" "$repo_root/wit" \
            "${BASH_SOURCE[0]}" && printf '%s\n' "$name"
    done
    return 0
}
py_stale() {
    local name
    for name in $(py_plugins); do
        stale "$(py_output_for "$name")" "$plugins_dir/python/$name" "$repo_root/wit" \
            "${BASH_SOURCE[0]}" && printf '%s\n' "$name"
    done
    return 0
}

component_count() {
    { plugin_dirs; js_plugins; py_plugins; } | wc -l
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

# componentize-js at the pinned version, installed with npm into
# plugins/target/js-tools when missing or at another version.
ensure_componentize_js() {
    local installed=$js_tools_dir/node_modules/@bytecodealliance/componentize-js/package.json
    if [[ -x $componentize_js && -f $installed ]] &&
        grep -q "\"version\": \"$componentize_js_version\"" "$installed"; then
        return 0
    fi
    command -v npm > /dev/null && command -v node > /dev/null ||
        "$repo_root/scripts/ensure-apt.sh" nodejs npm
    log "installing componentize-js $componentize_js_version into ${js_tools_dir#"$repo_root"/}"
    mkdir -p "$js_tools_dir"
    npm install --prefix "$js_tools_dir" --save-exact --no-audit --no-fund --loglevel=error \
        "@bytecodealliance/componentize-js@$componentize_js_version" > /dev/null ||
        die "npm could not install componentize-js $componentize_js_version"
}

# componentize-py at the pinned version, in the venv plugins/target/py-venv.
ensure_componentize_py() {
    if [[ -x $componentize_py ]] &&
        [[ $("$componentize_py" --version 2> /dev/null) == "componentize-py $componentize_py_version" ]]; then
        return 0
    fi
    if [[ ! -x $py_venv_dir/bin/pip ]]; then
        command -v python3 > /dev/null && python3 -c 'import ensurepip, venv' 2> /dev/null ||
            "$repo_root/scripts/ensure-apt.sh" python3 python3-venv
        python3 -m venv "$py_venv_dir" || die "python3 -m venv $py_venv_dir failed"
    fi
    log "installing componentize-py $componentize_py_version into ${py_venv_dir#"$repo_root"/}"
    "$py_venv_dir/bin/pip" install --quiet --disable-pip-version-check \
        "componentize-py==$componentize_py_version" ||
        die "pip could not install componentize-py $componentize_py_version"
}

build_js_plugins() {
    local names=("$@") name out
    ((${#names[@]} > 0)) || return 0
    ensure_componentize_js
    mkdir -p "$dist_dir"
    for name in "${names[@]}"; do
        out=$(js_output_for "$name")
        log "componentize-js $componentize_js_version: plugins/js/$name -> ${out#"$repo_root"/}"
        "$componentize_js" "$plugins_dir/js/$name/policy.js" \
            --wit "$repo_root/wit/levee-policy.wit" --world-name retry-policy \
            --disable "${js_disabled_features[@]}" -o "$out.tmp" > /dev/null ||
            die "componentize-js failed on plugins/js/$name"
        mv "$out.tmp" "$out"
    done
}

# Built from a copy of the sources, so that CPython's __pycache__ lands
# in plugins/target, not in the source tree.
build_py_plugins() {
    local names=("$@") name out staged
    ((${#names[@]} > 0)) || return 0
    ensure_componentize_py
    mkdir -p "$dist_dir"
    for name in "${names[@]}"; do
        out=$(py_output_for "$name")
        staged=$target_dir/py-build/$name
        rm -rf "$staged"
        mkdir -p "$staged"
        cp -R "$plugins_dir/python/$name/." "$staged/"
        log "componentize-py $componentize_py_version: plugins/python/$name -> ${out#"$repo_root"/}"
        "$componentize_py" -d "$repo_root/wit/levee-policy.wit" -w retry-policy \
            componentize -p "$staged" app -o "$out.tmp" > /dev/null ||
            die "componentize-py failed on plugins/python/$name"
        mv "$out.tmp" "$out"
    done
}

main() {
    local force=0
    case ${1:-} in
        --force) force=1 ;;
        "") ;;
        *) die "usage: scripts/build-plugins.sh [--force]" ;;
    esac
    local rust=1 js py
    if ((force == 1)); then
        mapfile -t js < <(js_plugins)
        mapfile -t py < <(py_plugins)
    else
        outputs_stale || rust=0
        mapfile -t js < <(js_stale)
        mapfile -t py < <(py_stale)
    fi
    if ((rust == 0 && ${#js[@]} == 0 && ${#py[@]} == 0)); then
        log "up to date ($(component_count) components in plugins/dist)"
        return 0
    fi
    strip_outer_cargo_env
    local started=$SECONDS
    if ((rust == 1)); then
        wasm_cargo_build "$plugins_dir"
        build_componentizer
        componentize_all
    fi
    build_js_plugins "${js[@]}"
    build_py_plugins "${py[@]}"
    log "built in $((SECONDS - started)) s ($(component_count) components in plugins/dist)"
}

main "$@"
