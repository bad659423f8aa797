//! ICMP and ICMPv6 errors (RELATED) through a masquerading router, from a router on the
//! path: the LAN host reaches a far host two hops away ([`wan2`]), over IPv4 only through
//! masquerade on `wan0`. An error from the WAN router quotes the translated packet and
//! is addressed to the router's WAN address; it reaches the LAN host only if the
//! firewall matches it to the connection and translates it back (outer destination and
//! quoted source). IPv6 errors are forwarded untranslated. Forged errors quoting no
//! connection are dropped.

use std::{net::IpAddr, path::Path, time::Duration};

use anyhow::{Context as _, Result, ensure};
use tests::{
    Config, Family, Firewall, Netns, Probe, Stats,
    packets::{icmp_counter, scapy_send},
    poll,
    traffic::{self, Transport},
    wan2::{self, FAR_HOST, LAN_HOST, ROUTER_LAN, ROUTER_WAN, WAN_ROUTER, Wan2Topology},
};

/// The MTU the WAN router forwards to the far host with ([`Wan2Topology::limit_far_mtu`]).
const PATH_MTU: u32 = 1280;
/// Where the far host receives uploads.
const UPLOAD_PORT: u16 = 9000;
/// Large enough that an upload without path MTU discovery stalls for good.
const UPLOAD_SIZE: usize = 4 << 20;
/// Bound on an upload (it takes well under a second when it works).
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(30);

fn topology() -> Result<Wan2Topology> {
    wan2::wan2("rel")
}

/// The router with `masquerade = true` on `wan0`.
fn masquerade() -> Config {
    Config::router().with_masquerade("wan0")
}

/// How much counter `name` grew from `before` to `after`.
fn grew(before: &Stats, after: &Stats, name: &str) -> Result<u64> {
    Ok(after.counter(name)?.saturating_sub(before.counter(name)?))
}

fn family_flag(family: Family) -> &'static str {
    match family {
        Family::V4 => "-4",
        Family::V6 => "-6",
    }
}

/// The hops `traceroute -n -q 1 -w 2 -m 4 EXTRA... DST` from `netns` lists, in order;
/// a hop that did not answer is `*`.
fn traceroute(netns: &Netns, family: Family, extra: &[&str], dst: IpAddr) -> Result<Vec<String>> {
    let dst = dst.to_string();
    let mut args = vec![
        "timeout",
        "30",
        "traceroute",
        family_flag(family),
        "-n",
        "-q",
        "1",
        "-w",
        "2",
        "-m",
        "4",
    ];
    args.extend_from_slice(extra);
    args.push(&dst);
    let output = netns.exec(&args)?;
    // ` 1  10.0.1.1  0.052 ms` or ` 2  *`; the header line starts with `traceroute`.
    let hops = output
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let _number: u8 = words.next()?.parse().ok()?;
            Some(words.next().unwrap_or("").to_owned())
        })
        .collect();
    Ok(hops)
}

/// Traceroute from the LAN host to the far host lists the router, the WAN router and
/// the far host: the errors of the last two crossed the firewall as RELATED and, over
/// IPv4, were translated back from the router's WAN address.
fn check_traceroute(family: Family, extra: &[&str]) -> Result<()> {
    let topo = topology()?;
    let fw = Firewall::start(&topo.rtr, &masquerade())?;
    let before = fw.stats()?;
    let hops = traceroute(&topo.lan, family, extra, FAR_HOST.get(family))?;
    let expected: Vec<String> = [ROUTER_LAN, WAN_ROUTER, FAR_HOST]
        .iter()
        .map(|addr| addr.get(family).to_string())
        .collect();
    let after = fw.stats()?;
    ensure!(
        hops == expected,
        "traceroute {extra:?} listed hops {hops:?}, expected {expected:?}; counters: {:?}",
        after.counters
    );
    // The WAN router's time exceeded at least; with UDP probes the far host's port
    // unreachable too.
    let related = grew(&before, &after, "accept_related")?;
    ensure!(
        related >= 1,
        "accept_related grew by {related}: {:?}",
        after.counters
    );
    if family == Family::V4 {
        let rewritten = grew(&before, &after, "nat_dst_rewritten")?;
        ensure!(
            rewritten >= 2,
            "nat_dst_rewritten grew by {rewritten}, expected the time exceeded and the \
             last hop's answer: {:?}",
            after.counters
        );
    }
    ensure!(
        grew(&before, &after, "drop_icmp_error_no_conn")? == 0,
        "an error from the path was dropped as matching no connection: {:?}",
        after.counters
    );
    Ok(())
}

#[test]
fn udp_traceroute_through_masquerade_shows_every_hop() -> Result<()> {
    check_traceroute(Family::V4, &[])
}

#[test]
fn icmp_traceroute_through_masquerade_shows_every_hop() -> Result<()> {
    check_traceroute(Family::V4, &["-I"])
}

#[test]
fn udp_traceroute_v6_shows_every_hop() -> Result<()> {
    check_traceroute(Family::V6, &[])
}

#[test]
fn icmp_traceroute_v6_shows_every_hop() -> Result<()> {
    check_traceroute(Family::V6, &["-I"])
}

/// The LAN host's cached path MTU to the far host is [`PATH_MTU`] (`ip route get`
/// shows `mtu 1280` only for a learned exception).
fn ensure_learned_path_mtu(lan: &Netns, family: Family) -> Result<()> {
    let route = lan.exec([
        "ip",
        family_flag(family),
        "route",
        "get",
        &FAR_HOST.get(family).to_string(),
    ])?;
    ensure!(
        route.contains(&format!("mtu {PATH_MTU}")),
        "the LAN host did not learn the path MTU {PATH_MTU}: {route}"
    );
    Ok(())
}

/// `ping -M do -s 1400` from the LAN host gets the WAN router's "fragmentation needed"
/// (IPv4, translated back) or "packet too big" (IPv6) with the path MTU.
fn check_ping_learns_path_mtu(family: Family) -> Result<()> {
    let topo = topology()?;
    topo.limit_far_mtu(PATH_MTU)?;
    let fw = Firewall::start(&topo.rtr, &masquerade())?;
    let before = fw.stats()?;
    let far = FAR_HOST.get(family).to_string();
    let output = topo.lan.run([
        "ping",
        family_flag(family),
        "-n",
        "-M",
        "do",
        "-s",
        "1400",
        "-c",
        "1",
        "-W",
        "2",
        &far,
    ])?;
    let after = fw.stats()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let from = format!("From {}", WAN_ROUTER.get(family));
    let (error, mtu) = match family {
        Family::V4 => ("Frag needed", format!("mtu = {PATH_MTU}")),
        Family::V6 => ("Packet too big", format!("mtu={PATH_MTU}")),
    };
    ensure!(
        text.contains(&from) && text.contains(error) && text.contains(&mtu),
        "ping did not report {error:?} {mtu:?} {from:?}:\n{text}\ncounters: {:?}",
        after.counters
    );
    ensure_learned_path_mtu(&topo.lan, family)?;
    ensure!(
        grew(&before, &after, "accept_related")? >= 1,
        "accept_related did not count the error: {:?}",
        after.counters
    );
    if family == Family::V4 {
        ensure!(
            grew(&before, &after, "nat_dst_rewritten")? >= 1,
            "nat_dst_rewritten did not count the error: {:?}",
            after.counters
        );
    }
    Ok(())
}

#[test]
fn ping_through_masquerade_learns_the_path_mtu() -> Result<()> {
    check_ping_learns_path_mtu(Family::V4)
}

#[test]
fn ping_v6_learns_the_path_mtu() -> Result<()> {
    check_ping_learns_path_mtu(Family::V6)
}

/// A TCP upload from the LAN host to the far host arrives intact. The far host
/// advertises the full MSS, so the LAN host's first segments are too large for the
/// path and only the WAN router's error, passed (and over IPv4 translated) by the
/// firewall, lets the upload finish: without it the connection stalls.
///
/// An upload, not a download: only packets the LAN host sends can draw an error that
/// crosses the firewall to the LAN; the far host's own errors stay beyond the WAN router.
fn check_upload_uses_path_mtu(family: Family) -> Result<()> {
    let topo = topology()?;
    topo.limit_far_mtu(PATH_MTU)?;
    let fw = Firewall::start(&topo.rtr, &masquerade())?;
    let dir = tempfile::Builder::new()
        .prefix("fw-related-")
        .tempdir()
        .context("creating a temporary directory")?;
    let source = dir.path().join("upload");
    let target = dir.path().join("received");
    std::fs::write(&source, traffic::pseudo_random_bytes(UPLOAD_SIZE))?;
    let mut server = topo.far.spawn([
        "socat".to_owned(),
        "-u".to_owned(),
        format!("TCP6-LISTEN:{UPLOAD_PORT},ipv6only=0,reuseaddr"),
        format!("CREATE:{}", path_text(&target)?),
    ])?;
    traffic::wait_for_listener(&topo.far, Transport::Tcp, UPLOAD_PORT, &mut server)?;

    let before = fw.stats()?;
    let far = FAR_HOST.get(family);
    let connect = match far {
        IpAddr::V4(addr) => format!("TCP4:{addr}:{UPLOAD_PORT}"),
        IpAddr::V6(addr) => format!("TCP6:[{addr}]:{UPLOAD_PORT}"),
    };
    let limit = UPLOAD_TIMEOUT.as_secs().to_string();
    topo.lan
        .exec([
            "timeout",
            &limit,
            "socat",
            "-u",
            &format!("OPEN:{}", path_text(&source)?),
            &connect,
        ])
        .context("the upload stalled: no path MTU discovery through the firewall?")?;
    // The client is done once its data is in the socket buffer; the server exits when
    // it has read everything.
    let status = server
        .wait_timeout(UPLOAD_TIMEOUT)
        .context("the far host did not receive the whole upload")?;
    ensure!(status.success(), "the upload server failed: {status}");
    let after = fw.stats()?;
    ensure!(
        traffic::sha256_file(&target)? == traffic::sha256_file(&source)?,
        "the far host received {} bytes that are not the upload ({UPLOAD_SIZE} bytes)",
        std::fs::metadata(&target)?.len()
    );
    ensure_learned_path_mtu(&topo.lan, family)?;
    ensure!(
        grew(&before, &after, "accept_related")? >= 1,
        "accept_related did not count the WAN router's error: {:?}",
        after.counters
    );
    Ok(())
}

fn path_text(path: &Path) -> Result<&str> {
    path.to_str().context("non-UTF-8 path")
}

#[test]
fn upload_through_masquerade_uses_the_path_mtu() -> Result<()> {
    check_upload_uses_path_mtu(Family::V4)
}

#[test]
fn upload_v6_uses_the_path_mtu() -> Result<()> {
    check_upload_uses_path_mtu(Family::V6)
}

/// The WAN router forges a port unreachable quoting a UDP datagram that was never
/// sent: to the router's WAN address (IPv4; the firewall would have to translate it to
/// reach the LAN) or to the LAN host (IPv6). It is dropped as matching no connection,
/// and neither the router's stack nor the LAN host sees an ICMP error.
fn check_forged_error_dropped(family: Family) -> Result<()> {
    let topo = topology()?;
    let fw = Firewall::start(&topo.rtr, &masquerade())?;
    let (victim, victim_name, packet, unreachables) = match family {
        Family::V4 => (
            &topo.rtr,
            "the router",
            format!(
                "IP(src='{wanr}', dst='{wan}')/ICMP(type=3, code=3)/\
                 IP(src='{wan}', dst='{far}')/UDP(sport=40001, dport=9999)",
                wanr = WAN_ROUTER.v4,
                wan = ROUTER_WAN.v4,
                far = FAR_HOST.v4,
            ),
            "InDestUnreachs",
        ),
        Family::V6 => (
            &topo.lan,
            "the LAN host",
            format!(
                "IPv6(src='{wanr}', dst='{lan}')/ICMPv6DestUnreach(code=4)/\
                 IPv6(src='{lan}', dst='{far}')/UDP(sport=40001, dport=9999)",
                wanr = WAN_ROUTER.v6,
                lan = LAN_HOST.v6,
                far = FAR_HOST.v6,
            ),
            "Icmp6InDestUnreachs",
        ),
    };
    let lan_counter = match family {
        Family::V4 => "InMsgs",
        Family::V6 => "Icmp6InMsgs",
    };
    let victim_before = icmp_counter(victim, family, unreachables)?;
    let lan_before = icmp_counter(&topo.lan, family, lan_counter)?;
    let before = fw.stats()?;
    scapy_send(&topo.wanr, &packet)?;
    poll(
        "drop_icmp_error_no_conn to count the forged error",
        Duration::from_secs(5),
        || {
            let stats = fw.stats()?;
            Ok(if grew(&before, &stats, "drop_icmp_error_no_conn")? >= 1 {
                Probe::Ready(())
            } else {
                Probe::Pending(format!("{:?}", stats.counters))
            })
        },
    )?;
    let after = fw.stats()?;
    ensure!(
        grew(&before, &after, "accept_related")? == 0,
        "the forged error was accepted as RELATED: {:?}",
        after.counters
    );
    let victim_after = icmp_counter(victim, family, unreachables)?;
    ensure!(
        victim_after == victim_before,
        "{victim_name} received the forged error ({unreachables} {victim_before} -> \
         {victim_after})"
    );
    let lan_after = icmp_counter(&topo.lan, family, lan_counter)?;
    ensure!(
        lan_after == lan_before,
        "the LAN host received ICMP ({lan_counter} {lan_before} -> {lan_after})"
    );
    Ok(())
}

#[test]
fn forged_error_without_a_connection_is_dropped() -> Result<()> {
    check_forged_error_dropped(Family::V4)
}

#[test]
fn forged_error_v6_without_a_connection_is_dropped() -> Result<()> {
    check_forged_error_dropped(Family::V6)
}
