//! The `levee` binary: argument parsing and the demo ([`cli`]); the product
//! is the library (`levee::`).

mod cli;

/// With `--features mimalloc`, mimalloc instead of the system allocator
/// (see the `mimalloc` feature in host/Cargo.toml).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
