//! `firewall reload`: replace the running ruleset (and timeouts, port
//! forwards, helpers) atomically; tracked connections survive.
//!
//! With a daemon running, the config it was started with is checked here
//! first (so mistakes are reported on this terminal), then the daemon is
//! sent SIGHUP and this waits until it reports the result. Without one,
//! `--config` is required and the ruleset is installed into the pinned maps
//! directly.

use std::{
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use firewall::{
    DAEMON_PID, RELOADS, RELOADS_REFUSED, config, loader, maps::Maps, pins::PinDir, reload,
    ruleset, sys,
};

#[derive(clap::Args, Debug)]
pub struct ReloadArgs {
    /// Config to load. Defaults to the running daemon's own `--config`;
    /// required when no daemon runs.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// How long to wait for the daemon to apply it.
    #[arg(long, default_value_t = 10)]
    pub timeout_secs: u64,
}

pub fn reload(pins: &PinDir, a: ReloadArgs) -> anyhow::Result<ExitCode> {
    sys::require_root()?;
    let mut maps = Maps::from_pins(pins)?;
    let pid = maps.daemon_stat(DAEMON_PID) as u32;
    let daemon =
        (pid != 0 && std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(pid);
    let path = match (daemon, &a.config) {
        (Some(pid), given) => {
            let own = reload::daemon_config_path(pid)
                .with_context(|| format!("finding the config of the daemon (pid {pid})"))?;
            if let Some(given) = given {
                let same = std::fs::canonicalize(given).ok() == std::fs::canonicalize(&own).ok();
                if !same {
                    bail!(
                        "the daemon (pid {pid}) runs with {}; it reloads that file, not {}",
                        own.display(),
                        given.display()
                    );
                }
            }
            own
        }
        (None, Some(given)) => given.clone(),
        (None, None) => bail!(
            "no daemon is running at {}: give --config",
            pins.root().display()
        ),
    };

    // The same checks the daemon makes, so errors show here.
    let cfg = config::load(&path)?;
    let ifaces = loader::resolve_interfaces(&cfg)?;
    let sources = loader::rule_sources(&cfg, &ifaces)?;
    let rules: Vec<_> = sources.iter().map(|s| s.rule.clone()).collect();
    firewall_common::rule::compile::compile(&rules, loader::policy_bytes(&cfg))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;

    let Some(pid) = daemon else {
        let installed = loader::configure(&mut maps, &cfg, &ifaces)?;
        println!(
            "reloaded {}: {} rules live (generation {})",
            path.display(),
            installed.rules,
            installed.generation
        );
        return Ok(ExitCode::SUCCESS);
    };
    let before = maps.daemon_stat(RELOADS);
    let refused_before = maps.daemon_stat(RELOADS_REFUSED);
    // SAFETY: plain kill(2).
    if unsafe { libc::kill(pid as i32, libc::SIGHUP) } != 0 {
        bail!(
            "signalling the daemon (pid {pid}): {}",
            std::io::Error::last_os_error()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(a.timeout_secs);
    while maps.daemon_stat(RELOADS) == before {
        if Instant::now() > deadline {
            bail!(
                "the daemon (pid {pid}) did not report the reload within {} s",
                a.timeout_secs
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if maps.daemon_stat(RELOADS_REFUSED) != refused_before {
        bail!("the daemon (pid {pid}) refused the reload; its log says why");
    }
    let (hdr, live) = ruleset::live(&maps).context("reading the new ruleset")?;
    println!(
        "reloaded {}: {} rules live (generation {})",
        path.display(),
        live.len(),
        hdr.generation
    );
    Ok(ExitCode::SUCCESS)
}
