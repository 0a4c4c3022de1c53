//! The `levee` binary: argument parsing and the demo ([`cli`]); the product
//! is the library (`levee::`).

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
