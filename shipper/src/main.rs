//! The `tailrace` binary; everything is in [`tailrace::cli`].

fn main() -> std::process::ExitCode {
    tailrace::cli::main()
}
