//! `firewall import`: an iptables-save dump to a config on stdout.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{anyhow, bail};
use firewall::{iptables, syntax::Family};

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// Output of `iptables-save` or `ip6tables-save`.
    pub file: PathBuf,
    /// Address family of the dump; detected from its header and addresses
    /// when not given.
    #[arg(long, value_enum)]
    pub family: Option<FamilyArg>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum FamilyArg {
    Ipv4,
    Ipv6,
}

pub fn import(a: ImportArgs) -> anyhow::Result<ExitCode> {
    let origin = a.file.display().to_string();
    let text =
        std::fs::read_to_string(&a.file).map_err(|e| anyhow!("{origin}: cannot read: {e}"))?;
    let family = match a.family {
        Some(FamilyArg::Ipv4) => Family::V4,
        Some(FamilyArg::Ipv6) => Family::V6,
        None => match iptables::detect_family(&text) {
            Ok(Some(f)) => f,
            Ok(None) => {
                eprintln!(
                    "note: {origin}: nothing tells the address family; reading it as ipv4 (see --family)"
                );
                Family::V4
            }
            Err(e) => bail!("{origin}: {e}; pass --family"),
        },
    };
    let ruleset = iptables::parse_save(&text, family).map_err(|e| anyhow!(e.in_file(&origin)))?;
    match iptables::to_toml(&ruleset) {
        Ok(config) => {
            print!("{config}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            // One line per offending line of the dump, each complete on its
            // own; nothing on stdout.
            for item in &e.items {
                eprintln!("firewall: error: {}", item.in_file(&origin));
            }
            bail!(
                "{origin}: not imported: {} line(s) use what the config cannot express yet",
                e.items.len()
            )
        }
    }
}
