//! The `levee` binary: all logic lives in the library (see `levee::cli`).

fn main() -> std::process::ExitCode {
    levee::cli::main()
}
