//! Replacing the configuration of a running firewall without a restart:
//! rules and policies (atomically, see [`crate::ruleset`]), timeouts, port
//! forwards and helpers. Tracked connections and NAT bindings are kept.
//!
//! What the attached programs and map sizes depend on (the interfaces, their
//! roles and NAT, `xdp_mode`, `max_entries`) cannot change this way; a
//! reload that would change them is refused before anything is written.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::{
    config::{self, Config, ConfigError},
    loader::{self, Iface, LoadError},
    maps::Maps,
    ruleset::Installed,
};

#[derive(Debug, Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0} changed: a reload cannot change it, restart the daemon")]
    NotReloadable(&'static str),
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// Why `new` cannot replace `running` in place, if it cannot.
pub fn check_reloadable(running: &Config, new: &Config) -> Result<(), ReloadError> {
    if running.interfaces != new.interfaces {
        return Err(ReloadError::NotReloadable("[[interface]]"));
    }
    if running.xdp_mode != new.xdp_mode {
        return Err(ReloadError::NotReloadable("xdp_mode"));
    }
    if running.max_entries != new.max_entries {
        return Err(ReloadError::NotReloadable("max_entries"));
    }
    Ok(())
}

/// Reads `path`, checks it against `running`, and applies it.
pub fn reload(
    maps: &mut Maps,
    running: &Config,
    path: &Path,
    ifaces: &[Iface],
) -> Result<(Config, Installed), ReloadError> {
    let new = config::load(path)?;
    check_reloadable(running, &new)?;
    // Everything that can be refused (rules that do not compile, unknown
    // interfaces) is checked by `configure` before its first write.
    let installed = loader::configure(maps, &new, ifaces)?;
    Ok((new, installed))
}

/// The `--config` a running daemon was started with, from its command line
/// (relative paths resolved against its working directory).
pub fn daemon_config_path(pid: u32) -> Option<PathBuf> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = cmdline
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let mut path = None;
    for (i, a) in args.iter().enumerate() {
        if let Some(v) = a.strip_prefix("--config=") {
            path = Some(v.to_string());
        } else if a == "--config" || a == "-c" {
            path = args.get(i + 1).cloned();
        } else if let Some(v) = a.strip_prefix("-c").filter(|v| !v.is_empty()) {
            path = Some(v.to_string());
        }
    }
    let path = PathBuf::from(path?);
    if path.is_absolute() {
        return Some(path);
    }
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
    Some(cwd.join(path))
}
