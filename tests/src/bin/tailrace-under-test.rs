//! The `tailrace` binary, built inside the end-to-end test package so that tests can start,
//! stop and SIGKILL it (`CARGO_BIN_EXE_*` names only a package's own binaries).

fn main() -> std::process::ExitCode {
    tailrace::cli::main()
}
