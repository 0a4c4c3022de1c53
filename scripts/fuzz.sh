#!/usr/bin/env bash
# Fuzzing: builds the cargo-fuzz targets in fuzz/ and runs each one for
# SECONDS (default 5). Exits non-zero if any target crashes, fails an
# assertion, hangs or fails to build, and prints the input that did it.
#
#   scripts/fuzz.sh                  every target, 5 s each (scripts/test.sh)
#   scripts/fuzz.sh 3600             every target, an hour each
#   scripts/fuzz.sh 600 config_from_json admin_service_body
#
# The targets (fuzz/fuzz_targets/, `cargo fuzz list`) and their properties
# are described in each target's `//!` docs. Seeds are read from
# fuzz/corpus/<target>/ (in the repo, never written); what a run discovers
# goes to fuzz/target/corpus/<target>/ and is kept for the next run.
# A failing input lands in fuzz/artifacts/<target>/ (both git-ignored);
# reproduce it with the `cargo fuzz run ... <file>` line printed below.
#
# Toolchain: cargo-fuzz passes nightly-only rustc flags (-Zsanitizer=address).
# A nightly toolchain may be absent on a fresh machine and cannot be
# downloaded offline, so by default this uses the toolchain cargo resolves
# to here (the project's stable, see rust-version in Cargo.toml) with
# RUSTC_BOOTSTRAP=1, which makes it accept those flags; stable ships the
# AddressSanitizer runtime too. LEVEE_FUZZ_TOOLCHAIN=nightly uses rustup's
# nightly instead. Either way the build lives in fuzz/target, apart from
# the workspace's target/, and carries debug assertions (overflow checks).
#
# cargo-fuzz itself is installed once, pinned, into fuzz/target/tools (from
# crates.io; a C++ compiler builds libFuzzer).
set -euo pipefail

readonly CARGO_FUZZ_VERSION=0.13.2
readonly TIMEOUT_PER_INPUT_S=10

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
fuzz_dir=$root/fuzz
tools=$fuzz_dir/target/tools
logs=$fuzz_dir/target/logs

log() { echo "fuzz.sh: $*" >&2; }
die() {
    log "$*"
    exit 2
}

seconds=${1:-5}
[[ $seconds =~ ^[0-9]+$ && $seconds -ge 1 ]] || die "SECONDS must be a whole number >= 1, got '$seconds'"
shift $(($# > 0 ? 1 : 0))

install_cargo_fuzz() {
    if "$tools/bin/cargo-fuzz" --version 2> /dev/null | grep -qx "cargo-fuzz $CARGO_FUZZ_VERSION"; then
        return
    fi
    command -v c++ > /dev/null || die "need a C++ compiler (Debian: g++) to build libFuzzer"
    log "installing cargo-fuzz $CARGO_FUZZ_VERSION into $tools"
    cargo install --quiet --locked --version "$CARGO_FUZZ_VERSION" --root "$tools" cargo-fuzz
}

# `cargo fuzz` with the chosen toolchain.
cargo_fuzz() {
    case ${LEVEE_FUZZ_TOOLCHAIN:-default} in
        default) RUSTC_BOOTSTRAP=1 cargo fuzz "$@" ;;
        nightly) cargo +nightly fuzz "$@" ;;
        *) die "LEVEE_FUZZ_TOOLCHAIN must be unset or nightly" ;;
    esac
}

# One target for $seconds; 0 when it found nothing.
run_target() {
    local target=$1 output=$logs/$1.log
    local work=$fuzz_dir/target/corpus/$target seeds=$fuzz_dir/corpus/$target
    local args=(-max_total_time="$seconds" -timeout="$TIMEOUT_PER_INPUT_S" -print_final_stats=1)
    mkdir -p "$work" "$seeds"
    # The JSON and text targets get the field-name dictionary.
    case $target in decode_*) ;; *) args+=(-dict="$fuzz_dir/dict/json.dict") ;; esac
    local started=$SECONDS status=0
    cargo_fuzz run --debug-assertions "$target" "$work" "$seeds" -- "${args[@]}" > "$output" 2>&1 || status=$?
    local execs rate
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$output" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$output" | tail -1)
    if [[ $status -eq 0 ]]; then
        printf 'fuzz.sh: %-20s ok    %9s execs  %6s/s  %3ss  corpus %s\n' \
            "$target" "${execs:-?}" "${rate:-?}" "$((SECONDS - started))" "$(find "$work" -type f | wc -l)"
        return 0
    fi
    printf 'fuzz.sh: %-20s FAILED (exit %s) after %ss\n' "$target" "$status" "$((SECONDS - started))"
    # The panic (and its message, the line after) or the sanitizer's verdict.
    grep -E -A1 "panicked at" "$output" | head -4 | sed 's/^/    /' >&2 || true
    grep -E "^(SUMMARY|==[0-9]+== ?ERROR)" "$output" | head -2 | sed 's/^/    /' >&2 || true
    local crash
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$output" | tail -1)
    if [[ -n $crash ]]; then
        log "  failing input: $crash"
        log "  reproduce: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --debug-assertions $target $crash)"
    fi
    log "  full output: $output"
    return 1
}

command -v cargo > /dev/null || die "cargo not found (install rustup first)"
install_cargo_fuzz
export PATH=$tools/bin:$PATH
cd "$fuzz_dir"
mkdir -p "$logs"

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo_fuzz list)
fi
[[ ${#targets[@]} -gt 0 ]] || die "no fuzz targets found"

build_started=$SECONDS
if ! cargo_fuzz build --debug-assertions > "$logs/build.log" 2>&1; then
    tail -30 "$logs/build.log" >&2
    die "building the fuzz targets failed (full output: $logs/build.log)"
fi
log "built ${#targets[@]} targets in $((SECONDS - build_started))s; running each for ${seconds}s"

failed=()
for target in "${targets[@]}"; do
    run_target "$target" || failed+=("$target")
done
if [[ ${#failed[@]} -gt 0 ]]; then
    log "FAILED: ${failed[*]}"
    exit 1
fi
log "all ${#targets[@]} targets ran ${seconds}s each without a failure"
