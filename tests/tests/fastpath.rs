//! The XDP fast path end to end: through the router (no NAT), the packets of an
//! established TCP transfer and of a UDP exchange are forwarded by XDP itself
//! (`fastpath_forwarded` grows by at least one per packet the test expects to be
//! fast-pathed) and arrive intact, over IPv4 and IPv6. Generic XDP on veth, as `auto`
//! picks; the redirect goes out through the egress veth's ordinary transmit.

use anyhow::{Result, ensure};
use tests::{
    Config, Family, Firewall,
    topology::{self, LAN_HOST, WAN_HOST},
    traffic,
};

const HTTP_PORT: u16 = 8080;
const UDP_PORT: u16 = 5353;

fn tcp_download_through_the_router_is_fast_pathed_and_intact(family: Family) -> Result<()> {
    const SIZE: usize = 8 << 20;
    let topo = topology::router("fp")?;
    // One segment per skb on the server: a TSO/GSO super-packet is larger than the
    // MTU, and the fast path leaves those to the stack (they are counted as
    // `fastpath_fallback_frag_needed`). With one segment each, every data segment is
    // an ordinary MTU-sized packet.
    topo.wan.ip("link set eth0 gso_max_segs 1")?;
    let fw = Firewall::start(&topo.rtr, &Config::router())?;
    let status = fw.cli(["status"])?;
    ensure!(
        status.contains("fast path on"),
        "status does not say the fast path is on: {status}"
    );
    let www = traffic::web_root()?;
    let source = www.path().join("big.bin");
    std::fs::write(&source, traffic::pseudo_random_bytes(SIZE))?;
    let _server = traffic::http_server(&topo.wan, HTTP_PORT, www.path())?;
    let out = tempfile::tempdir()?;
    let target = out.path().join("big.bin");

    let url = traffic::url(WAN_HOST.get(family), HTTP_PORT, "big.bin");
    let before = fw.stats()?;
    traffic::http_download(&topo.lan, &url, &target)?;
    let after = fw.stats()?;
    ensure!(
        traffic::sha256_file(&target)? == traffic::sha256_file(&source)?,
        "the file did not arrive intact over {family}"
    );
    let forwarded = after.counter("fastpath_forwarded")? - before.counter("fastpath_forwarded")?;
    // At least every full-sized data segment (MSS ≤ 1460) was forwarded in XDP.
    let segments = (SIZE / 1460) as u64;
    ensure!(
        forwarded >= segments,
        "only {forwarded} packets fast-pathed over {family}, expected at least {segments}: \
         {after:?}"
    );
    Ok(())
}

#[test]
fn tcp_download_through_the_router_is_fast_pathed_and_intact_over_ipv4() -> Result<()> {
    tcp_download_through_the_router_is_fast_pathed_and_intact(Family::V4)
}

#[test]
fn tcp_download_through_the_router_is_fast_pathed_and_intact_over_ipv6() -> Result<()> {
    tcp_download_through_the_router_is_fast_pathed_and_intact(Family::V6)
}

fn udp_exchange_through_the_router_is_fast_pathed(family: Family) -> Result<()> {
    const ROUNDS: u64 = 5;
    let topo = topology::router("fpu")?;
    let fw = Firewall::start(&topo.rtr, &Config::router())?;
    let _echo = traffic::udp_echo_server(&topo.wan, UDP_PORT)?;
    let before = fw.counter("fastpath_forwarded")?;
    // One flow (fixed source port): the first datagram is NEW and takes the stack,
    // which also resolves both neighbours; every reply and every later datagram is
    // ESTABLISHED.
    for round in 0..ROUNDS {
        let payload = format!("datagram {round} from {}\n", LAN_HOST.get(family));
        let reply = traffic::udp_request_from_port(
            &topo.lan,
            WAN_HOST.get(family),
            UDP_PORT,
            40_500,
            &payload,
        )?;
        ensure!(reply == payload, "round {round}: wrong reply {reply:?}");
    }
    let forwarded = fw.counter("fastpath_forwarded")? - before;
    ensure!(
        forwarded >= 2 * ROUNDS - 1,
        "only {forwarded} of the {} established datagrams were fast-pathed over {family}: {:?}",
        2 * ROUNDS - 1,
        fw.stats()?
    );
    Ok(())
}

#[test]
fn udp_exchange_through_the_router_is_fast_pathed_over_ipv4() -> Result<()> {
    udp_exchange_through_the_router_is_fast_pathed(Family::V4)
}

#[test]
fn udp_exchange_through_the_router_is_fast_pathed_over_ipv6() -> Result<()> {
    udp_exchange_through_the_router_is_fast_pathed(Family::V6)
}

#[test]
fn with_the_fast_path_off_nothing_is_fast_pathed_and_traffic_still_flows() -> Result<()> {
    let topo = topology::router("fpo")?;
    let fw = Firewall::start(&topo.rtr, &Config::router().with_fast_path(false))?;
    let status = fw.cli(["status"])?;
    ensure!(status.contains("fast path off"), "status: {status}");
    let _echo = traffic::udp_echo_server(&topo.wan, UDP_PORT)?;
    for round in 0..3 {
        let payload = format!("datagram {round}\n");
        let reply = traffic::udp_request_from_port(
            &topo.lan,
            WAN_HOST.get(Family::V4),
            UDP_PORT,
            40_501,
            &payload,
        )?;
        ensure!(reply == payload, "round {round}: wrong reply {reply:?}");
    }
    let stats = fw.stats()?;
    ensure!(
        stats.counter("accept_established")? >= 5,
        "replies and later datagrams not established: {stats:?}"
    );
    ensure!(
        stats.counter("fastpath_forwarded")? == 0,
        "fast-pathed with fast_path = false: {stats:?}"
    );
    Ok(())
}
