use std::{path::PathBuf, process::ExitCode};

use firewall::config;

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    #[arg(long, short)]
    pub config: PathBuf,
}

pub fn check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let cfg = config::load(&a.config)?;
    firewall::loader::check_supported(&cfg)?;
    // Interfaces are resolved at `run`; here only report which are missing
    // on this machine, without failing (the config may be for another box).
    for i in &cfg.interfaces {
        if firewall::sys::ifindex(&i.name).is_none() {
            eprintln!("note: interface {} does not exist on this machine", i.name);
        }
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
