use std::process::ExitCode;

use firewall::pins::{LinkKind, PinDir};
use serde::Serialize;

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Status {
    loaded: bool,
    pin_dir: String,
    interfaces: Vec<IfaceStatus>,
}

#[derive(Serialize)]
struct IfaceStatus {
    name: String,
    xdp: bool,
    tc_egress: bool,
}

/// Exit status 0 when programs are attached, 1 otherwise, so scripts can
/// wait for a starting daemon.
pub fn status(pins: &PinDir, a: StatusArgs) -> anyhow::Result<ExitCode> {
    let xdp = pins.linked_interfaces(LinkKind::Xdp);
    let tc = pins.linked_interfaces(LinkKind::Tc);
    let mut names: Vec<String> = xdp.iter().chain(tc.iter()).cloned().collect();
    names.sort();
    names.dedup();
    let st = Status {
        loaded: pins.has_maps() && !names.is_empty(),
        pin_dir: pins.root().display().to_string(),
        interfaces: names
            .into_iter()
            .map(|n| IfaceStatus {
                xdp: xdp.contains(&n),
                tc_egress: tc.contains(&n),
                name: n,
            })
            .collect(),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&st)?);
    } else if st.loaded {
        println!("firewall loaded at {}", st.pin_dir);
        for i in &st.interfaces {
            println!(
                "  {:<16} xdp={} tc_egress={}",
                i.name,
                if i.xdp { "attached" } else { "missing" },
                if i.tc_egress { "attached" } else { "missing" }
            );
        }
    } else {
        println!("no firewall loaded at {}", st.pin_dir);
    }
    Ok(if st.loaded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
