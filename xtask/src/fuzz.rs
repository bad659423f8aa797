//! `cargo xtask fuzz`: builds `firewall/examples/fuzz.rs` (xtask cannot depend on the
//! firewall crate: `cargo xtask setup` must build before bpf-linker exists) and runs it.
//! The fuzzer pushes mutated conversations through the real programs with
//! BPF_PROG_TEST_RUN and checks the datapath's invariants as it goes; see
//! docs/FUZZING.md. `cargo xtask test` runs [`CI_PACKETS`] packets of it with
//! [`CI_SEED`].

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::{cargo, describe, heading, run_visible, setup, target_dir, workspace_root};

/// The test layer's run: fixed, so a failure in CI reproduces with the same command.
pub const CI_SEED: &str = "0xf122";
pub const CI_PACKETS: &str = "200000";

/// What `cargo xtask fuzz` passes on to the fuzzer.
#[derive(Debug, clap::Args)]
pub struct FuzzArgs {
    /// Packets to send, over all phases (default 1,000,000).
    #[arg(long)]
    packets: Option<u64>,
    /// The run's seed, decimal or 0x-hex (default: from the clock, printed).
    #[arg(long)]
    seed: Option<String>,
    /// Only this phase: nat, plain or small-table.
    #[arg(long)]
    phase: Option<String>,
    /// Table-wide checks every N packets (default 256).
    #[arg(long)]
    check_every: Option<u64>,
    /// Known deviations (docs/FUZZING.md) fail the run too.
    #[arg(long)]
    strict: bool,
    /// Replay a failure's file (written to target/fuzz/) instead of fuzzing.
    #[arg(long)]
    replay: Option<PathBuf>,
    /// With --replay: drop frames while the failure remains, and write what is left.
    #[arg(long, requires = "replay")]
    minimise: bool,
}

impl FuzzArgs {
    fn words(&self) -> Vec<String> {
        let Self {
            packets,
            seed,
            phase,
            check_every,
            strict,
            replay,
            minimise,
        } = self;
        let mut w = Vec::new();
        let mut opt = |flag: &str, v: Option<String>| {
            if let Some(v) = v {
                w.push(flag.to_string());
                w.push(v);
            }
        };
        opt("--packets", packets.map(|n| n.to_string()));
        opt("--seed", seed.clone());
        opt("--phase", phase.clone());
        opt("--check-every", check_every.map(|n| n.to_string()));
        opt(
            "--replay",
            replay.as_ref().map(|p| p.to_string_lossy().into_owned()),
        );
        if *strict {
            w.push("--strict".into());
        }
        if *minimise {
            w.push("--minimise".into());
        }
        w
    }
}

/// `cargo xtask fuzz`: setup, a release build of the example (a long run is mostly
/// syscalls, but the frames and checks are not free), then the run in the terminal.
pub fn run(args: &FuzzArgs) -> Result<()> {
    setup::run()?;
    heading("build (release)");
    run_visible(&mut cargo([
        "build",
        "--release",
        "-p",
        "firewall",
        "--example",
        "fuzz",
    ]))?;
    heading("fuzz");
    let bin = target_dir().join("release").join("examples").join("fuzz");
    let mut command = Command::new(&bin);
    command
        .args(args.words())
        .arg("--out")
        .arg(target_dir().join("fuzz"))
        .current_dir(workspace_root());
    run_visible(&mut command)
}

/// The deterministic run of `cargo xtask test`, with the debug build the test layers
/// made: first the self-test (every invariant's check fires on a state made to break
/// it), then the run. Counts as one test: `Ok(true)` if both passed.
pub fn ci() -> Result<bool> {
    run_visible(&mut cargo(["build", "-p", "firewall", "--example", "fuzz"]))?;
    let bin = target_dir().join("debug").join("examples").join("fuzz");
    let mut self_test = Command::new(&bin);
    self_test.arg("--self-test").current_dir(workspace_root());
    if run_visible(&mut self_test).is_err() {
        return Ok(false);
    }
    let mut command = Command::new(&bin);
    command
        .args([
            "--packets",
            CI_PACKETS,
            "--seed",
            CI_SEED,
            "--strict",
            "--out",
        ])
        .arg(target_dir().join("fuzz"))
        .current_dir(workspace_root());
    let line = describe(&command);
    println!("$ {line}");
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting `{line}`"))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut out = std::io::stdout().lock();
    // The counter listing is long; the layer shows the rates, the verdict and any
    // known deviation (the full listing is what `cargo xtask fuzz` is for).
    let mut in_counters = false;
    for text in BufReader::new(stdout).lines() {
        let text = text.context("reading the fuzzer's output")?;
        if text.starts_with("counters reached") {
            in_counters = true;
        } else if in_counters && !text.starts_with("  ") {
            in_counters = false;
        }
        if !in_counters || text.starts_with("counters reached") {
            writeln!(out, "{text}")?;
        }
    }
    drop(out);
    let status = child.wait().context("waiting for the fuzzer")?;
    if status.code().is_none() {
        bail!("`{line}` was killed ({status})");
    }
    Ok(status.success())
}
