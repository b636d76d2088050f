//! The `repro` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    repro::cli::main()
}
