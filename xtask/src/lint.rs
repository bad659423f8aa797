//! `cargo xtask lint`: formatting and clippy, warnings denied.

use anyhow::{Result, bail};

use crate::{cargo, heading, run_visible};

/// The crates built for the host; the eBPF crate builds only through aya-build.
const CRATES: [&str; 4] = ["firewall", "firewall-common", "xtask", "tests"];

pub fn run() -> Result<()> {
    heading("lint");
    // Both run even if the first fails, so one pass reports everything.
    let fmt = run_visible(&mut cargo(["fmt", "--all", "--", "--check"]));
    let mut clippy = cargo(["clippy"]);
    for krate in CRATES {
        clippy.args(["-p", krate]);
    }
    clippy.args(["--all-targets", "--", "-D", "warnings"]);
    let clippy = run_visible(&mut clippy);
    match (fmt, clippy) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(_), Err(_)) => bail!("formatting and clippy both failed (run `cargo fmt --all`)"),
        (Err(_), Ok(())) => bail!("formatting differs: run `cargo fmt --all`"),
        (Ok(()), Err(err)) => Err(err.context("clippy found problems")),
    }
}
