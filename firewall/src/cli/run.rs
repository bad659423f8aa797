use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use firewall::{ager, config, loader, maps::Maps, pins::PinDir, sys};
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
    let cfg = config::load(&a.config)?;
    let ifaces = loader::resolve_interfaces(&cfg)?;
    sys::ensure_bpffs(pins.root())?;
    let adopting = pins.has_maps();
    if adopting {
        info!(
            "adopting the firewall pinned at {}: tracked connections are kept",
            pins.root().display()
        );
    }

    let setup = || -> anyhow::Result<(aya::Ebpf, Maps)> {
        let mut ebpf = loader::load_object(Some(pins), cfg.max_entries)?;
        let mut maps = Maps::from_ebpf(&mut ebpf)?;
        loader::configure(&mut maps, &cfg, &ifaces)?;
        loader::attach(&mut ebpf, pins, &ifaces)?;
        Ok((ebpf, maps))
    };
    let (_ebpf, mut maps) = match setup() {
        Ok(v) => v,
        Err(e) => {
            // A fresh instance leaves nothing behind; an adopted one keeps
            // enforcing with whatever it had.
            if !adopting {
                let _ = loader::down(pins);
            }
            return Err(e);
        }
    };
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

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .enable_io()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async {
        let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
        let mut next = ager::MIN_INTERVAL;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(next) => {
                    let s = ager::sweep(&mut maps);
                    next = s.next;
                }
                _ = term.recv() => { info!("SIGTERM"); break; }
                _ = int.recv() => { info!("SIGINT"); break; }
            }
        }
        anyhow::Ok(())
    })?;

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
