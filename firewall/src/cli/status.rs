use std::process::ExitCode;

use firewall::{
    DAEMON_PID, SETUP_COMPLETE,
    maps::Maps,
    pins::{LinkKind, PinDir},
};
use serde::Serialize;

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Status {
    loaded: bool,
    /// pid of the running daemon that set this instance up, if it is alive.
    daemon_pid: Option<u32>,
    pin_dir: String,
    /// Whether the datapath forwards ESTABLISHED packets in XDP: the
    /// config's `fast_path`, and off with fewer than two interfaces (nothing
    /// to forward between). `None` when no settings are readable.
    fast_path: Option<bool>,
    interfaces: Vec<IfaceStatus>,
}

#[derive(Serialize)]
struct IfaceStatus {
    name: String,
    xdp: bool,
    tc_egress: bool,
    tc_ingress: bool,
}

/// Exit status 0 when programs are attached, 1 otherwise, so scripts can
/// wait for a starting daemon.
pub fn status(pins: &PinDir, a: StatusArgs) -> anyhow::Result<ExitCode> {
    let xdp = pins.linked_interfaces(LinkKind::Xdp);
    let tc = pins.linked_interfaces(LinkKind::Tc);
    let tcin = pins.linked_interfaces(LinkKind::TcIngress);
    let mut names: Vec<String> = xdp
        .iter()
        .chain(tc.iter())
        .chain(tcin.iter())
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    // Loaded means a daemon finished setting up every interface once; links
    // appearing one by one during a first start do not count yet.
    let maps = Maps::from_pins(pins).ok();
    let complete = maps
        .as_ref()
        .is_some_and(|m| m.daemon_stat(SETUP_COMPLETE) == 1);
    let daemon_pid = maps
        .as_ref()
        .map(|m| m.daemon_stat(DAEMON_PID) as u32)
        .filter(|pid| *pid != 0 && std::path::Path::new(&format!("/proc/{pid}")).exists());
    let fast_path = maps
        .as_ref()
        .and_then(|m| m.settings.get(&0, 0).ok())
        .map(|s| s.fast_path != 0);
    let st = Status {
        loaded: complete && !names.is_empty(),
        daemon_pid,
        pin_dir: pins.root().display().to_string(),
        fast_path,
        interfaces: names
            .into_iter()
            .map(|n| IfaceStatus {
                xdp: xdp.contains(&n),
                tc_egress: tc.contains(&n),
                tc_ingress: tcin.contains(&n),
                name: n,
            })
            .collect(),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&st)?);
    } else if st.loaded {
        println!("firewall loaded at {}", st.pin_dir);
        match st.daemon_pid {
            Some(pid) => println!("  daemon running, pid {pid}"),
            None => println!("  no daemon running (enforcing; entries age in the datapath)"),
        }
        if let Some(on) = st.fast_path {
            println!("  fast path {}", if on { "on" } else { "off" });
        }
        for i in &st.interfaces {
            let word = |b: bool| if b { "attached" } else { "missing" };
            println!(
                "  {:<16} xdp={} tc_egress={} tc_ingress={}",
                i.name,
                word(i.xdp),
                word(i.tc_egress),
                word(i.tc_ingress)
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
