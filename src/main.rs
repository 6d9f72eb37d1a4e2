//! The `wooter` binary: see [`wooter::cli`].

fn main() -> std::process::ExitCode {
    wooter::cli::main()
}
