//! `cleave-preset`: the `cleave` program under a second name, built only with the
//! `preset-binary` feature (see Cargo.toml).

#[path = "../main.rs"]
mod program;

fn main() -> std::process::ExitCode {
    program::main()
}
