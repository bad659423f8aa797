//! The harness itself, without a firewall: every path the firewall tests rely on works
//! in a bare topology, so a failure elsewhere points at the firewall, not the setup.

use anyhow::{Result, ensure};
use tests::{
    Family,
    topology::{self, HOST, LAN_HOST, PEER, WAN_HOST},
    traffic::{self, ConnectOutcome},
};

fn bare_router_carries_tcp_udp_and_ping_both_ways(family: Family) -> Result<()> {
    let topo = topology::router("topo")?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("hello"), "hello from wan\n")?;
    let _wan_http = traffic::http_server(&topo.wan, 8080, dir.path())?;
    let _lan_http = traffic::http_server(&topo.lan, 8080, dir.path())?;
    let _wan_echo = traffic::udp_echo_server(&topo.wan, 5353)?;

    // UDP first: unlike TCP it does not retransmit, so it fails if the first packets
    // of a fresh topology get lost (see `topology::wait_until_ready`).
    let reply = traffic::udp_request(&topo.lan, WAN_HOST.get(family), 5353, "ping\n")?;
    ensure!(reply == "ping\n", "unexpected UDP reply {reply:?}");
    let body = traffic::http_get(
        &topo.lan,
        &traffic::url(WAN_HOST.get(family), 8080, "hello"),
    )?;
    ensure!(body == b"hello from wan\n", "unexpected body {body:?}");
    ensure!(
        traffic::ping(&topo.lan, WAN_HOST.get(family))?,
        "no echo reply"
    );
    // Without a firewall the WAN reaches the LAN, and a closed port answers with RST.
    let outcome = traffic::try_connect(&topo.wan, LAN_HOST.get(family), 8080)?;
    ensure!(
        outcome == ConnectOutcome::Connected,
        "WAN → LAN: {outcome:?}"
    );
    let outcome = traffic::try_connect(&topo.wan, LAN_HOST.get(family), 8081)?;
    ensure!(
        outcome == ConnectOutcome::Refused,
        "closed port: {outcome:?}"
    );
    Ok(())
}

#[test]
fn bare_router_carries_tcp_udp_and_ping_both_ways_over_ipv4() -> Result<()> {
    bare_router_carries_tcp_udp_and_ping_both_ways(Family::V4)
}

#[test]
fn bare_router_carries_tcp_udp_and_ping_both_ways_over_ipv6() -> Result<()> {
    bare_router_carries_tcp_udp_and_ping_both_ways(Family::V6)
}

#[test]
fn wan_without_return_routes_cannot_reach_lan() -> Result<()> {
    let topo = topology::router_with(
        "topo",
        topology::RouterOptions {
            wan_return_routes: false,
            ..topology::RouterOptions::default()
        },
    )?;
    for family in [Family::V4, Family::V6] {
        ensure!(
            !traffic::ping(&topo.wan, LAN_HOST.get(family)).unwrap_or(false),
            "WAN reached the LAN over {family} without a route"
        );
    }
    Ok(())
}

#[test]
fn bare_host_topology_connects_both_ways() -> Result<()> {
    let topo = topology::host("topo")?;
    let dir = tempfile::tempdir()?;
    let _peer_http = traffic::http_server(&topo.peer, 8080, dir.path())?;
    let _host_http = traffic::http_server(&topo.host, 8080, dir.path())?;
    for family in [Family::V4, Family::V6] {
        traffic::http_get(&topo.host, &traffic::url(PEER.get(family), 8080, ""))?;
        traffic::http_get(&topo.peer, &traffic::url(HOST.get(family), 8080, ""))?;
    }
    Ok(())
}

#[test]
fn dropping_a_topology_removes_its_namespaces() -> Result<()> {
    let names = {
        let topo = topology::router("topo")?;
        let _server = traffic::udp_echo_server(&topo.lan, 5353)?;
        [topo.lan.name(), topo.rtr.name(), topo.wan.name()].map(str::to_owned)
    };
    let listed = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()?;
    let listed = String::from_utf8_lossy(&listed.stdout);
    for name in names {
        ensure!(
            !listed
                .lines()
                .any(|line| line.split_whitespace().next() == Some(&name)),
            "namespace {name} still exists"
        );
    }
    Ok(())
}
