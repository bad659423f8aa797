use std::process::ExitCode;

use anyhow::Context as _;
use firewall::{loader, pins::PinDir, sys};

pub fn down(pins: &PinDir) -> anyhow::Result<ExitCode> {
    sys::require_root()?;
    let removed = loader::down(pins)
        .with_context(|| format!("removing the firewall at {}", pins.root().display()))?;
    if removed.is_empty() {
        println!("nothing attached at {}", pins.root().display());
    } else {
        for r in removed {
            println!("detached {r}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
