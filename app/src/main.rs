//! `cleave`: the modular monolith, a module run alone, or the gateway, depending on features
//! and configuration. Everything is in the library; this only runs the CLI.

fn main() -> std::process::ExitCode {
    cleave::cli::main()
}
