# How to build a cargo package for wasm32-unknown-unknown on this machine.
# Sourced (not run) by scripts/build-plugins.sh, and copied as
# `wasm-route.sh` into every Rust plugin that `levee plugin new` scaffolds,
# so a plugin builds the way levee's own plugins do, outside this repo too.
# The sourcing script defines log() and die() first.
#
#   wasm_cargo_build DIR [CARGO_ARGS...]
#       `cargo build --release --target wasm32-unknown-unknown` in DIR.
#       wasm_output=core (the default; set it after sourcing) leaves a core
#       module, which the caller turns into a component;
#       wasm_output=component links with wasm-component-ld (shipped with
#       rustup's Rust), whose output is the component itself.
#   LEVEE_PLUGINS_ROUTE=auto|rustup|debian picks the toolchain route
#       (default auto: rustup when it has the target or can add it, else
#       Debian); the others exist to test each route.
#
# Why the routes: plugins target wasm32-unknown-unknown (no WASI, so no
# ambient capabilities). rustup's toolchain is the natural way to build that,
# but machines without network cannot `rustup target add` the std for it.
# Debian's rust packages ship std *sources*, so Debian's rustc/cargo can
# build std for wasm32 themselves (-Z build-std, compiled once per target
# dir). rustup's own rustc cannot use those sources: they belong to a
# different compiler version.

wasm_target=wasm32-unknown-unknown
debian_packages=(rustc-web cargo-web rust-web-src lld-16)
wasm_ld=/usr/lib/llvm-16/bin/wasm-ld
wasm_output=core

have_rustup_wasm_target() {
    command -v rustup > /dev/null &&
        rustup target list --installed 2> /dev/null | grep -qx "$wasm_target"
}

# wasm-component-ld: on PATH, else the one in rustup's active toolchain.
wasm_component_linker() {
    local found sysroot host
    if found=$(command -v wasm-component-ld); then
        printf '%s\n' "$found"
        return
    fi
    sysroot=$(rustc --print sysroot 2> /dev/null) || true
    host=$(rustc -vV 2> /dev/null | sed -n 's/^host: //p') || true
    found=$sysroot/lib/rustlib/$host/bin/wasm-component-ld
    [[ -n $sysroot && -x $found ]] ||
        die "no wasm-component-ld: it comes with rustup's Rust (1.82 or later), or: cargo install wasm-component-ld"
    printf '%s\n' "$found"
}

# Route 1: rustup's toolchain with its prebuilt wasm32 std.
wasm_build_with_rustup() {
    local dir=$1
    shift
    log "route: rustup toolchain with the $wasm_target target"
    local link=() linker
    if [[ $wasm_output == component ]]; then
        linker=$(wasm_component_linker) || exit 1
        link=("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=$linker")
    fi
    (cd "$dir" && env "${link[@]}" cargo build --target "$wasm_target" --release "$@")
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

# Route 2: Debian's rustc/cargo build std for wasm32 from rust-web-src.
wasm_build_with_debian() {
    local dir=$1
    shift
    ensure_debian_packages
    [[ -x /usr/bin/rustc && -x /usr/bin/cargo && -x $wasm_ld ]] ||
        die "Debian toolchain incomplete: need /usr/bin/rustc, /usr/bin/cargo and $wasm_ld"
    log "route: Debian $(/usr/bin/rustc --version) with -Z build-std"
    local link=("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=$wasm_ld") linker
    if [[ $wasm_output == component ]]; then
        linker=$(wasm_component_linker) || exit 1
        link=("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=$linker"
            "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS=-Clink-arg=--wasm-ld-path=$wasm_ld")
    fi
    (cd "$dir" &&
        env RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 "${link[@]}" \
            /usr/bin/cargo build -Z build-std=std,panic_abort \
            --target "$wasm_target" --release "$@")
}

wasm_cargo_build() {
    case ${LEVEE_PLUGINS_ROUTE:-auto} in
        auto) ;;
        rustup)
            wasm_build_with_rustup "$@"
            return
            ;;
        debian)
            wasm_build_with_debian "$@"
            return
            ;;
        *) die "LEVEE_PLUGINS_ROUTE must be auto, rustup or debian" ;;
    esac
    if have_rustup_wasm_target; then
        wasm_build_with_rustup "$@"
        return
    fi
    if command -v rustup > /dev/null &&
        timeout 60 rustup target add "$wasm_target" > /dev/null 2>&1 &&
        have_rustup_wasm_target; then
        wasm_build_with_rustup "$@"
        return
    fi
    log "rustup has no $wasm_target target and cannot add it (offline?)"
    wasm_build_with_debian "$@"
}
