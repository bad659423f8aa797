//! A table that a flood cannot empty: a router with masquerade, a port forward and a
//! connection table of 2,048 entries (1,024 connections), flooded through the port
//! forward with spoofed SYNs, ten times the table's entries. The idle ASSURED
//! connections (one through the port forward, one from the LAN) keep working, and a new
//! LAN connection gets in while the flood runs. The firewall's counters show how:
//! `ct_early_drop` (the flood's oldest unassured connections made room).

use std::{net::SocketAddrV4, time::Duration};

use anyhow::{Context as _, Result, ensure};
use tests::{
    Config, CtEntry, Family, Firewall, PortForward, Probe,
    flood::{IdleConnection, SynFlood},
    has_xdp_program,
    packets::mac_address,
    poll,
    topology::{self, LAN_HOST, ROUTER_WAN, RouterOptions, WAN_HOST},
    traffic::{self, Transport},
};

/// The table under test, in entries (two per connection).
const MAX_ENTRIES: u32 = 2048;
/// The forwarded port, the same on the router and on the LAN host.
const FORWARDED: u16 = 8080;
/// A WAN server the idle LAN connection talks to, and one new connections reach.
const WAN_IDLE_PORT: u16 = 9000;
const WAN_NEW_PORT: u16 = 9001;

fn v4(addr: tests::DualAddr, port: u16) -> SocketAddrV4 {
    match addr.get(Family::V4) {
        std::net::IpAddr::V4(a) => SocketAddrV4::new(a, port),
        std::net::IpAddr::V6(_) => unreachable!("an IPv4 address"),
    }
}

fn config() -> Config {
    Config::router()
        .with_masquerade("wan0")
        .with_port_forward(PortForward::tcp(
            FORWARDED,
            &format!("{}:{FORWARDED}", LAN_HOST.v4),
        ))
        .with_tail(&format!("[conntrack]\nmax_entries = {MAX_ENTRIES}\n"))
}

/// The one entry of `conntrack list` for TCP to `dport`, which must be ASSURED.
fn assured_entry(fw: &Firewall, dport: u16, what: &str) -> Result<CtEntry> {
    let port = dport.to_string();
    let entries = fw.conntrack(&["-p", "tcp", "--dport", &port])?;
    let established: Vec<&CtEntry> = entries
        .iter()
        .filter(|e| e.tcp_state.as_deref() == Some("ESTABLISHED"))
        .collect();
    ensure!(
        established.len() == 1 && established[0].has_flag("ASSURED"),
        "{what}: expected one ESTABLISHED, ASSURED connection to port {dport}: {established:#?}"
    );
    Ok(established[0].clone())
}

#[test]
fn a_syn_flood_of_ten_times_the_table_leaves_idle_assured_connections_and_lets_new_ones_in()
-> Result<()> {
    let topo = topology::router_with("table", RouterOptions::nat())?;
    // The spoofed sources need a way back, or admission refuses them as martians
    // before the table is ever full.
    topo.rtr.ip("route add 198.18.0.0/15 via 10.0.2.2")?;
    let fw = Firewall::start(&topo.rtr, &config())?;
    let stats = fw.stats()?;
    ensure!(
        u64::from(MAX_ENTRIES) == stats.conntrack.max_entries,
        "stats report a limit of {} entries",
        stats.conntrack.max_entries
    );

    // Two idle ASSURED connections: WAN → port forward → LAN server, and LAN → WAN
    // server through masquerade.
    let mut forwarded =
        IdleConnection::open(&topo.lan, FORWARDED, &topo.wan, v4(ROUTER_WAN, FORWARDED))
            .context("the connection through the port forward")?;
    let mut outbound = IdleConnection::open(
        &topo.wan,
        WAN_IDLE_PORT,
        &topo.lan,
        v4(WAN_HOST, WAN_IDLE_PORT),
    )
    .context("the connection from the LAN")?;
    let before_fwd = assured_entry(&fw, FORWARDED, "before the flood")?;
    let before_out = assured_entry(&fw, WAN_IDLE_PORT, "before the flood")?;
    let _new_server = traffic::peer_address_server(&topo.wan, Transport::Tcp, WAN_NEW_PORT)?;

    // The flood: spoofed SYNs to the forwarded port, ten times the table's entries
    // (twenty times its connections) at least, and on until told to stop.
    let router_mac = mac_address(&topo.rtr, "wan0")?;
    let mut flood = SynFlood::start(
        &topo.wan,
        "eth0",
        &router_mac,
        v4(ROUTER_WAN, FORWARDED),
        10 * MAX_ENTRIES,
    )?;
    // Wait until the table is full and the flood displaces its own connections.
    poll(
        "the table to fill and early drops to start",
        Duration::from_secs(20),
        || {
            let s = fw.stats()?;
            Ok(if s.conntrack.early_drops > 0 {
                Probe::Ready(())
            } else {
                Probe::Pending(format!("{:?}", s.conntrack))
            })
        },
    )?;

    // During the flood, a new LAN connection gets in (a few tries: the router's two
    // CPUs are busy).
    let mut answer = Err(anyhow::anyhow!("not tried"));
    for _ in 0..5 {
        answer = traffic::tcp_request(&topo.lan, WAN_HOST.get(Family::V4), WAN_NEW_PORT, "hi");
        if answer.as_ref().is_ok_and(|a| !a.is_empty()) {
            break;
        }
    }
    let answer = answer.context("a new LAN connection during the flood")?;
    ensure!(
        answer.starts_with(ROUTER_WAN.v4),
        "the new connection's server answered {answer:?} (expected the router's address)"
    );
    ensure!(
        flood.is_running()?,
        "the flood ended before the new connection was made: not a test of the flood"
    );
    let during = fw.stats()?;
    let sent = flood.stop()?;
    ensure!(
        sent >= u64::from(10 * MAX_ENTRIES),
        "the flood sent {sent} SYNs"
    );

    // Each idle connection's server speaks again, and its client hears it.
    forwarded
        .server_speaks()
        .context("the connection through the port forward, after the flood")?;
    outbound
        .server_speaks()
        .context("the connection from the LAN, after the flood")?;
    let after_fwd = assured_entry(&fw, FORWARDED, "after the flood")?;
    let after_out = assured_entry(&fw, WAN_IDLE_PORT, "after the flood")?;
    // The same connections, not new ones made by the servers' data (a LAN server's
    // segment would be picked up as a new outbound connection and masqueraded, keeping
    // its port: its original tuple would start at the LAN host).
    ensure!(
        after_fwd.orig == before_fwd.orig && after_out.orig == before_out.orig,
        "the idle connections are not the same ones: {before_fwd:?} → {after_fwd:?}, \
         {before_out:?} → {after_out:?}"
    );
    ensure!(
        forwarded.client_as_seen_by_server()?.ip().to_string() == WAN_HOST.v4,
        "the forwarded connection's server saw another client"
    );

    let after = fw.stats()?;
    eprintln!(
        "flood of {sent} SYNs: during it {:?}; after {:?}",
        during.conntrack, after.conntrack
    );
    ensure!(
        after.conntrack.early_drops > 0,
        "no early drop: {:?}",
        after.conntrack
    );
    // A walk of a hash that early drop changes under it may meet a key twice (the
    // kernel restarts a bucket whose element went away), so the entries counted during
    // the flood can exceed the table's size; the bound is checked once it is quiet.
    ensure!(
        during.conntrack.connections > u64::from(MAX_ENTRIES) / 2 - 64,
        "the table was not full during the flood: {:?}",
        during.conntrack
    );
    ensure!(
        after.conntrack.entries <= u64::from(MAX_ENTRIES),
        "the table holds more than its size: {:?}",
        after.conntrack
    );
    Ok(())
}

#[test]
fn a_pinned_lru_table_of_an_older_version_is_refused_and_nothing_is_attached() -> Result<()> {
    let topo = topology::router_with("table", RouterOptions::nat())?;
    let mut fw = Firewall::prepare(&topo.rtr, &config())?;
    // What an older version left: CONNTRACK pinned as an LRU hash.
    let maps = fw.pin_dir().join("maps");
    std::fs::create_dir_all(&maps).context("creating the pin dir")?;
    let pin = maps.join("CONNTRACK");
    topo.rtr.exec([
        "bpftool",
        "map",
        "create",
        &pin.display().to_string(),
        "type",
        "lru_hash",
        "key",
        "40",
        "value",
        "128",
        "entries",
        "2048",
        "name",
        "CONNTRACK",
    ])?;
    let err = fw
        .run(&[])
        .expect_err("`firewall run` adopted an LRU table");
    let log = fw.daemon_log();
    let line = log
        .lines()
        .find(|l| l.contains("error"))
        .with_context(|| format!("no error line ({err:#}): {log}"))?;
    for words in ["CONNTRACK", "LRU hash", "down"] {
        ensure!(
            line.contains(words),
            "the error does not say {words:?}: {line}"
        );
    }
    for iface in ["lan0", "wan0"] {
        ensure!(
            !has_xdp_program(&topo.rtr, iface)?,
            "XDP attached to {iface} after the refusal"
        );
    }
    ensure!(
        !fw.pin_dir().join("links").exists()
            || std::fs::read_dir(fw.pin_dir().join("links"))?
                .next()
                .is_none(),
        "links pinned after the refusal"
    );
    Ok(())
}
