//! The `repro` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    // Die quietly on a closed pipe (`repro dag | head`) like other Unix tools,
    // instead of panicking in a write to stdout or stderr.
    // SAFETY: called before any thread starts; restores the default action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // SAFETY: as above, no other thread runs yet.
    unsafe { repro::model::cpu::set_candle_env() };
    repro::cli::main()
}
