//! `cargo xtask <verb>`: the one entry point for developers and CI.

mod bench;
mod fuzz;
mod lab;
mod lint;
mod setup;
mod test;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, Result, bail};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Development tasks for the firewall workspace"
)]
enum Verb {
    /// Install the toolchain pieces and Debian packages the build and tests need, and
    /// mount bpffs. Idempotent.
    Setup,
    /// rustfmt check and clippy with warnings denied.
    Lint,
    /// setup, lint, build, then every test layer; ends with `N passed, N failed`.
    Test,
    /// Build a LAN/router/WAN lab, run the firewall in it and show real traffic.
    Lab,
    /// setup, release build, then per-packet (BPF_PROG_TEST_RUN), scale and end-to-end
    /// benchmarks; a Markdown table, and JSON in target/bench/.
    Bench,
    /// setup, release build, then mutated traffic through the real programs with the
    /// datapath's invariants checked; prints packets/s and the counters reached
    /// (docs/FUZZING.md).
    Fuzz(fuzz::FuzzArgs),
}

fn main() -> ExitCode {
    let result = match Verb::parse() {
        Verb::Setup => setup::run(),
        Verb::Lint => lint::run(),
        Verb::Test => test::run(),
        Verb::Lab => lab::run(),
        Verb::Bench => bench::run(),
        Verb::Fuzz(args) => fuzz::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if !err.is::<Reported>() {
                eprintln!("error: {err:#}");
            }
            ExitCode::FAILURE
        }
    }
}

/// An error the verb has already printed; only the exit code is left to set.
#[derive(Debug)]
struct Reported;

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("failed (reported above)")
    }
}

impl std::error::Error for Reported {}

/// The workspace root (xtask lives one level below it).
fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
}

/// The cargo target directory, honouring `$CARGO_TARGET_DIR`.
fn target_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    if target.is_absolute() {
        target
    } else {
        workspace_root().join(target)
    }
}

/// `target/debug/firewall`.
fn firewall_bin() -> PathBuf {
    target_dir().join("debug").join("firewall")
}

/// `cargo ARGS...` in the workspace root. The rustup proxy from PATH, so that
/// `+nightly` works.
fn cargo<const N: usize>(args: [&str; N]) -> Command {
    let mut command = Command::new("cargo");
    command.args(args).current_dir(workspace_root());
    command
}

fn describe(command: &Command) -> String {
    let mut words = vec![command.get_program().to_string_lossy().into_owned()];
    words.extend(
        command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned()),
    );
    words.join(" ")
}

/// Runs `command` with the terminal's stdio, echoing it first; a non-zero exit is an
/// error naming the command.
fn run_visible(command: &mut Command) -> Result<()> {
    let line = describe(command);
    println!("$ {line}");
    let status = command
        .status()
        .with_context(|| format!("starting `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Runs `command` quietly and returns stdout, or `None` if it could not start or
/// exited non-zero (for probing what is installed).
fn probe(command: &mut Command) -> Option<String> {
    let output = command.output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A heading on its own line, so long logs are easy to scan.
fn heading(text: &str) {
    println!("\n==> {text}");
}
