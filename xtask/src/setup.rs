//! `cargo xtask setup`: everything the build, tests and lab need on a fresh machine.
//! Each step checks first and says whether it installs or skips.

use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::{cargo, heading, probe, run_visible};

/// bpf-linker must match the LLVM of the pinned aya toolchain.
const BPF_LINKER_VERSION: &str = "0.10.2";

/// Debian packages of the tests and the lab.
const PACKAGES: [&str; 16] = [
    "iproute2",
    "iputils-ping",
    "iperf3",
    "curl",
    "vsftpd",
    "nftables",
    "iptables",
    "conntrack",
    "tcpdump",
    "socat",
    "python3-scapy",
    "bpftool",
    "netsniff-ng",
    "traceroute",
    // Fragmented DNS answers (issue 12): a real server and `dig`.
    "dnsmasq-base",
    "bind9-dnsutils",
];

const BPFFS: &str = "/sys/fs/bpf";

pub fn run() -> Result<()> {
    heading("setup");
    nightly_rust_src().context("setup: rust-src for nightly")?;
    bpf_linker().context("setup: bpf-linker")?;
    debian_packages().context("setup: Debian packages")?;
    bpffs().context("setup: bpffs")?;
    Ok(())
}

fn nightly_rust_src() -> Result<()> {
    let installed = probe(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]));
    match installed {
        Some(components) if components.lines().any(|c| c.starts_with("rust-src")) => {
            println!("skip: rust-src (nightly) is installed");
            Ok(())
        }
        Some(_) => {
            println!("install: rust-src for nightly");
            run_visible(Command::new("rustup").args([
                "component",
                "add",
                "rust-src",
                "--toolchain",
                "nightly",
            ]))
        }
        None => {
            println!("install: nightly toolchain with rust-src");
            run_visible(Command::new("rustup").args([
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
                "--component",
                "rust-src",
            ]))
        }
    }
}

fn bpf_linker() -> Result<()> {
    let version = probe(Command::new("bpf-linker").arg("--version"));
    // `bpf-linker --version` prints `bpf-linker 0.10.2`.
    let found = version
        .as_deref()
        .and_then(|out| out.split_whitespace().nth(1))
        .map(str::to_owned);
    if found.as_deref() == Some(BPF_LINKER_VERSION) {
        println!("skip: bpf-linker {BPF_LINKER_VERSION} is installed");
        return Ok(());
    }
    match found {
        Some(other) => println!("install: bpf-linker {BPF_LINKER_VERSION} (found {other})"),
        None => println!("install: bpf-linker {BPF_LINKER_VERSION}"),
    }
    let spec = format!("bpf-linker@{BPF_LINKER_VERSION}");
    run_visible(&mut cargo(["+nightly", "install", &spec, "--locked"]))
}

fn is_installed(package: &str) -> bool {
    probe(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|status| status.trim() == "install ok installed")
}

fn debian_packages() -> Result<()> {
    let (present, missing): (Vec<_>, Vec<_>) = PACKAGES
        .into_iter()
        .partition(|package| is_installed(package));
    if !present.is_empty() {
        println!("skip: {} (installed)", present.join(" "));
    }
    if missing.is_empty() {
        return Ok(());
    }
    require_root("installing Debian packages")?;
    println!("install: {}", missing.join(" "));
    run_visible(Command::new("apt-get").args(["update", "-q"]))?;
    run_visible(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing),
    )
}

fn bpffs() -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    let mounted = mounts.lines().any(|line| {
        let fields: Vec<_> = line.split_whitespace().collect();
        matches!(fields.as_slice(), [_, target, "bpf", ..] if *target == BPFFS)
    });
    if mounted {
        println!("skip: bpffs is mounted at {BPFFS}");
        return Ok(());
    }
    require_root("mounting bpffs")?;
    println!("install: mount bpffs at {BPFFS}");
    run_visible(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]))
}

fn require_root(what: &str) -> Result<()> {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{what} needs root; rerun as root");
    }
    Ok(())
}
