use std::{path::PathBuf, process::ExitCode};

use anyhow::bail;
use firewall::config;

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    #[arg(long, short)]
    pub config: PathBuf,
}

pub fn check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let cfg = config::load(&a.config)?;
    // Interfaces are resolved at `run`; here only report which are missing
    // on this machine, without failing (the config may be for another box).
    let mut interfaces = firewall::sys::interfaces();
    for (n, i) in cfg.interfaces.iter().enumerate() {
        if firewall::sys::ifindex(&i.name).is_none() {
            eprintln!("note: interface {} does not exist on this machine", i.name);
            // A stand-in index, so the rules still compile below.
            interfaces.push((i.name.clone(), u32::MAX - n as u32));
        }
    }
    // Compile the rules as `run` would, so a ruleset the datapath's tables
    // cannot hold is reported here and not first at `run`.
    let mut rules = Vec::new();
    for r in &cfg.rules {
        match r.to_match(&interfaces) {
            Ok(m) => rules.push(m),
            Err(e) => {
                eprintln!("note: {e} (on this machine)");
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    if let Err(e) =
        firewall_common::rule::compile::compile(&rules, firewall::loader::policy_bytes(&cfg))
    {
        bail!("{}: {e}", a.config.display());
    }
    let summary = format!(
        "{}: ok ({} interfaces, {} rules)",
        a.config.display(),
        cfg.interfaces.len(),
        cfg.rules.len()
    );
    println!("{summary}");
    Ok(ExitCode::SUCCESS)
}
