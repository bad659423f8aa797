//! `firewall`: load, run, inspect and remove the XDP/TC stateful firewall.

mod cli;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    let default_level = if matches!(args.command, cli::Command::Run(_)) {
        "info"
    } else {
        "warn"
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level))
        .format_target(false)
        .init();
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(e) => {
            // One line for the user; RUST_LOG=debug shows more where it exists.
            eprintln!("firewall: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
