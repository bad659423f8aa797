use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use firewall::{
    DAEMON_PID, RELOADS, RELOADS_REFUSED, SETUP_COMPLETE, ager, config, loader, maps::Maps,
    pins::PinDir, reload, sys,
};
use log::{info, warn};
use tokio::signal::unix::{SignalKind, signal};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[arg(long, short)]
    pub config: PathBuf,
    /// Remove the firewall when the daemon exits on SIGINT/SIGTERM, instead
    /// of leaving it enforcing.
    #[arg(long)]
    pub detach_on_exit: bool,
}

pub fn run(pins: &PinDir, a: RunArgs) -> anyhow::Result<ExitCode> {
    sys::require_root()?;
    let mut cfg = config::load(&a.config)?;
    let ifaces = loader::resolve_interfaces(&cfg)?;
    sys::ensure_bpffs(pins.root())?;
    let adopting = pins.has_maps();
    if adopting {
        info!(
            "adopting the firewall pinned at {}: tracked connections are kept",
            pins.root().display()
        );
    }

    // Signal handlers go in before anything is attached: a SIGTERM that
    // arrives mid-setup must still reach the exit path (and, with
    // --detach-on-exit, the detach), not kill us with the default action.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .enable_io()
        .build()
        .context("starting the runtime")?;
    let (mut term, mut int, mut hup) = rt.block_on(async {
        anyhow::Ok((
            signal(SignalKind::terminate()).context("installing SIGTERM handler")?,
            signal(SignalKind::interrupt()).context("installing SIGINT handler")?,
            signal(SignalKind::hangup()).context("installing SIGHUP handler")?,
        ))
    })?;

    let setup = || -> anyhow::Result<(aya::Ebpf, Maps)> {
        let mut ebpf = loader::load_object(Some(pins), cfg.max_entries)?;
        let mut maps = Maps::from_ebpf(&mut ebpf)?;
        loader::configure(&mut maps, &cfg, &ifaces)?;
        loader::attach(&mut ebpf, pins, &ifaces)?;
        // The attached programs tail-call through this load's arrays; an
        // earlier load's are no longer reached.
        loader::retire_program_arrays(pins, loader::Retire::Older);
        Ok((ebpf, maps))
    };
    let (_ebpf, mut maps) = match setup() {
        Ok(v) => v,
        Err(e) => {
            // A fresh instance leaves nothing behind; an adopted one keeps
            // enforcing with whatever it had.
            if adopting {
                loader::retire_program_arrays(pins, loader::Retire::Newest);
            } else {
                let _ = loader::down(pins);
            }
            return Err(e);
        }
    };
    maps.set_daemon_stat(DAEMON_PID, u64::from(std::process::id()));
    maps.set_daemon_stat(SETUP_COMPLETE, 1);
    let names: Vec<String> = ifaces
        .iter()
        .map(|i| format!("{} ({:?})", i.name, i.role))
        .collect();
    info!(
        "enforcing on {} with {} rules; pins at {}",
        names.join(", "),
        cfg.rules.len(),
        pins.root().display()
    );

    rt.block_on(async {
        // The ager's wake-up is a deadline, not a sleep re-armed on every
        // loop turn: the address check ticks every second and would
        // otherwise postpone a longer ager interval forever.
        let mut ager_cap = ager::max_sleep(&cfg.timeouts);
        let mut ager_at = tokio::time::Instant::now() + ager::MIN_INTERVAL;
        let mut addr_check = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(ager_at) => {
                    let s = ager::sweep(&mut maps, ager_cap);
                    ager_at = tokio::time::Instant::now() + s.next;
                }
                _ = addr_check.tick() => {
                    for name in loader::refresh_masquerade(&mut maps, &ifaces) {
                        let addr = firewall::sys::ipv4_address(&name)
                            .map_or_else(|| "no address".to_owned(), |a| a.to_string());
                        info!("{name}: masquerade address is now {addr}");
                    }
                    for name in loader::refresh_ipv6_settings(&mut maps, &ifaces) {
                        info!("{name}: IPv6 router advertisement/redirect settings changed");
                    }
                }
                _ = hup.recv() => {
                    match reload::reload(&mut maps, &cfg, &a.config, &ifaces) {
                        Ok((new, installed)) => {
                            info!(
                                "reloaded {}: {} rules live (generation {})",
                                a.config.display(),
                                installed.rules,
                                installed.generation
                            );
                            cfg = new;
                            ager_cap = ager::max_sleep(&cfg.timeouts);
                        }
                        Err(e) => {
                            warn!("reload refused, the running configuration stays: {e}");
                            let refused = maps.daemon_stat(RELOADS_REFUSED);
                            maps.set_daemon_stat(RELOADS_REFUSED, refused + 1);
                        }
                    }
                    let n = maps.daemon_stat(RELOADS);
                    maps.set_daemon_stat(RELOADS, n + 1);
                }
                _ = term.recv() => { info!("SIGTERM"); break; }
                _ = int.recv() => { info!("SIGINT"); break; }
            }
        }
    });
    maps.set_daemon_stat(DAEMON_PID, 0);

    if a.detach_on_exit {
        drop(maps);
        let removed = loader::down(pins)?;
        info!("detached: {}", removed.join(", "));
    } else {
        warn!(
            "exiting; the firewall stays in place (remove it with `firewall --pin-dir {} down`)",
            pins.root().display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
