//! The bypasses of issue 19 end to end: crafted frames (scapy) through the router
//! topology, watched with tcpdump on the far side. Where a test shows the frame would
//! get through without the firewall, it first sends it with no firewall loaded, so the
//! test cannot pass by the frame being lost on its own.

use std::{net::IpAddr, time::Duration};

use anyhow::{Result, ensure};
use tests::{
    Config, Family, Firewall, Probe,
    packets::{Capture, mac_address, scapy_send, scapy_sendp},
    poll,
    topology::{self, LAN_HOST, ROUTER_WAN, RouterTopology, WAN_HOST},
    traffic,
};

/// Time for a crafted frame to cross the router before a capture is read.
const SETTLE: Duration = Duration::from_millis(700);

fn topology() -> Result<RouterTopology> {
    topology::router("byp")
}

/// Waits until the firewall's counter `name` reaches `at_least`.
fn counted(fw: &Firewall, name: &str, at_least: u64) -> Result<()> {
    poll(
        &format!("{name} to reach {at_least}"),
        Duration::from_secs(5),
        || {
            let n = fw.counter(name)?;
            Ok(if n >= at_least {
                Probe::Ready(())
            } else {
                Probe::Pending(format!("{name} = {n}"))
            })
        },
    )
}

fn ip_layer(family: Family, src: IpAddr, dst: IpAddr) -> String {
    match family {
        Family::V4 => format!("IP(src='{src}', dst='{dst}')"),
        Family::V6 => format!("IPv6(src='{src}', dst='{dst}')"),
    }
}

/// A SYN from the WAN host to the LAN host wrapped in three priority tags: the kernel
/// strips them one by one and routes the SYN. Without the firewall it reaches the LAN
/// host; with it, it never does, and the firewall counts it.
fn check_vlan_stack_from_the_wan(family: Family) -> Result<()> {
    let topo = topology()?;
    let rtr_mac = mac_address(&topo.rtr, "wan0")?;
    let (wan, lan) = (WAN_HOST.get(family), LAN_HOST.get(family));
    let frame = format!(
        "Ether(dst='{rtr_mac}')/Dot1Q(vlan=0)/Dot1Q(vlan=0)/Dot1Q(vlan=0)/{}/\
         TCP(sport=40000, dport=2323, flags='S')",
        ip_layer(family, wan, lan)
    );
    let filter = format!("tcp port 2323 and src host {wan}");

    let mut before = Capture::start(&topo.lan, "eth0", &filter)?;
    scapy_sendp(&topo.wan, "eth0", &frame)?;
    let seen = before.packets(SETTLE);
    ensure!(
        seen.len() == 1,
        "without the firewall the stacked SYN should reach the LAN host: {seen:?}"
    );

    let fw = Firewall::start(&topo.rtr, &Config::router())?;
    let mut after = Capture::start(&topo.lan, "eth0", &filter)?;
    scapy_sendp(&topo.wan, "eth0", &frame)?;
    counted(&fw, "drop_vlan_stack", 1)?;
    let seen = after.packets(SETTLE);
    ensure!(
        seen.is_empty(),
        "the stacked SYN reached the LAN host: {seen:?}"
    );
    ensure!(fw.conntrack(&[])?.is_empty(), "a connection was made");
    Ok(())
}

#[test]
fn vlan_stacked_syn_from_the_wan_never_reaches_the_lan_host() -> Result<()> {
    check_vlan_stack_from_the_wan(Family::V4)
}

#[test]
fn vlan_stacked_syn_v6_from_the_wan_never_reaches_the_lan_host() -> Result<()> {
    check_vlan_stack_from_the_wan(Family::V6)
}

/// A LAN host sends one SYN with the router's own WAN address as its source, to the
/// WAN host's port 40000. Then the WAN host, from port 40000, connects to a web server
/// on the router: it must fail like any unsolicited connection from the WAN.
fn check_spoofed_own_source(family: Family) -> Result<()> {
    let topo = topology()?;
    let web = traffic::web_root()?;
    let _server = traffic::http_server(&topo.rtr, 8022, web.path())?;
    let fw = Firewall::start(&topo.rtr, &Config::router())?;
    let (own, wan) = (ROUTER_WAN.get(family), WAN_HOST.get(family));
    scapy_send(
        &topo.lan,
        &format!(
            "{}/TCP(sport=8022, dport=40000, flags='S')",
            ip_layer(family, own, wan)
        ),
    )?;
    counted(&fw, "drop_martian", 1)?;
    let url = traffic::url(own, 8022, "/");
    let got = traffic::http_get_from_port(&topo.wan, &url, 40000);
    ensure!(
        got.is_err(),
        "the WAN host reached the router's web server from port 40000"
    );
    ensure!(
        fw.counter("drop_policy")? >= 1,
        "the WAN host's SYN was not dropped by the input policy"
    );
    Ok(())
}

#[test]
fn syn_from_the_lan_spoofing_the_routers_address_opens_nothing() -> Result<()> {
    check_spoofed_own_source(Family::V4)
}

#[test]
fn syn_v6_from_the_lan_spoofing_the_routers_address_opens_nothing() -> Result<()> {
    check_spoofed_own_source(Family::V6)
}

/// The LAN host sends a UDP datagram to the WAN host; a packet-too-big error about it
/// comes back quoting the datagram as a fragmented one would be quoted, after a
/// hop-by-hop header and a fragment header. It is RELATED and reaches the LAN host.
#[test]
fn packet_too_big_quoting_a_fragmented_ipv6_datagram_reaches_the_sender() -> Result<()> {
    let topo = topology()?;
    let fw = Firewall::start(&topo.rtr, &Config::router())?;
    let (lan, wan) = (LAN_HOST.get(Family::V6), WAN_HOST.get(Family::V6));
    let _echo = traffic::udp_echo_server(&topo.wan, 9999)?;
    let answer = traffic::udp_request_from_port(&topo.lan, wan, 9999, 40000, "hello")?;
    ensure!(answer == "hello", "the UDP exchange failed: {answer:?}");
    let mut capture = Capture::start(&topo.lan, "eth0", "icmp6 and ip6[40] == 2")?;
    scapy_send(
        &topo.wan,
        &format!(
            "IPv6(src='{wan}', dst='{lan}')/ICMPv6PacketTooBig(mtu=1280)/\
             IPv6(src='{lan}', dst='{wan}')/IPv6ExtHdrHopByHop()/\
             IPv6ExtHdrFragment(offset=0, m=1, id=4660)/UDP(sport=40000, dport=9999)/\
             Raw(b'x' * 64)"
        ),
    )?;
    counted(&fw, "accept_related", 1)?;
    let seen = capture.packets(SETTLE);
    ensure!(seen.len() == 1, "the LAN host saw {seen:?}");
    Ok(())
}

/// Neighbour discovery is link-scope: a solicitation from the WAN host addressed to
/// the LAN host's global address is forwarded by the kernel without the firewall, and
/// never with it.
#[test]
fn neighbour_discovery_from_the_wan_is_not_forwarded() -> Result<()> {
    let topo = topology()?;
    let (lan, wan) = (LAN_HOST.get(Family::V6), WAN_HOST.get(Family::V6));
    let ns = format!("IPv6(src='{wan}', dst='{lan}', hlim=255)/ICMPv6ND_NS(tgt='{lan}')");
    let filter = format!("icmp6 and src host {wan}");

    let mut before = Capture::start(&topo.lan, "eth0", &filter)?;
    scapy_send(&topo.wan, &ns)?;
    let seen = before.packets(SETTLE);
    ensure!(
        seen.len() == 1,
        "without the firewall the solicitation should be forwarded: {seen:?}"
    );

    let fw = Firewall::start(&topo.rtr, &Config::router())?;
    let mut after = Capture::start(&topo.lan, "eth0", &filter)?;
    scapy_send(&topo.wan, &ns)?;
    counted(&fw, "drop_nd_forward", 1)?;
    let seen = after.packets(SETTLE);
    ensure!(seen.is_empty(), "forwarded: {seen:?}");
    Ok(())
}

/// A protocol without ports from the LAN host through masquerade: it leaves with the
/// router's address, the WAN host's answer comes back to the LAN host, and a second
/// LAN host talking the same protocol to the same WAN host meanwhile is refused
/// (replies could not tell the two apart).
fn check_portless_through_masquerade(proto: u8, layer: &str) -> Result<()> {
    let topo = topology::router_with(
        "bypnat",
        topology::RouterOptions {
            second_lan_host: true,
            ..topology::RouterOptions::nat()
        },
    )?;
    let config = Config::router()
        .with_interface("lan1", tests::Role::Lan)
        .with_masquerade("wan0");
    let fw = Firewall::start(&topo.rtr, &config)?;
    let lan2 = topo.lan2.as_ref().expect("second LAN host");
    let (lan, wan, rtr) = (
        LAN_HOST.get(Family::V4),
        WAN_HOST.get(Family::V4),
        ROUTER_WAN.get(Family::V4),
    );
    let mut at_wan = Capture::start(&topo.wan, "eth0", &format!("ip proto {proto}"))?;
    let mut at_lan = Capture::start(&topo.lan, "eth0", &format!("ip proto {proto}"))?;
    scapy_send(&topo.lan, &format!("IP(src='{lan}', dst='{wan}')/{layer}"))?;
    let seen = poll_capture(&mut at_wan, 1)?;
    ensure!(
        seen[0].contains(&format!("{rtr} > {wan}")),
        "left untranslated: {seen:?}"
    );
    scapy_send(&topo.wan, &format!("IP(src='{wan}', dst='{rtr}')/{layer}"))?;
    let seen = poll_capture(&mut at_lan, 1)?;
    ensure!(
        seen.iter().any(|l| l.contains(&format!("{wan} > {lan}"))),
        "the answer did not reach the LAN host: {seen:?}"
    );
    let lan2_addr = topology::LAN2_HOST.get(Family::V4);
    scapy_send(lan2, &format!("IP(src='{lan2_addr}', dst='{wan}')/{layer}"))?;
    counted(&fw, "drop_nat_peer_busy", 1)?;
    let seen = at_wan.packets(SETTLE);
    let arrived = seen
        .iter()
        .filter(|l| l.contains(&format!("> {wan}:")))
        .count();
    ensure!(arrived == 1, "the second LAN host got through: {seen:?}");
    Ok(())
}

/// Waits until `capture` holds `n` packets, and returns them.
fn poll_capture(capture: &mut Capture, n: usize) -> Result<Vec<String>> {
    poll(
        &format!("{n} captured packets"),
        Duration::from_secs(5),
        || {
            let seen = capture.packets(Duration::ZERO);
            Ok(if seen.len() >= n {
                Probe::Ready(seen)
            } else {
                Probe::Pending(format!("{seen:?}"))
            })
        },
    )
}

#[test]
fn pptp_gre_passes_masquerade_for_one_lan_host() -> Result<()> {
    check_portless_through_masquerade(47, "GRE(proto=0x880b, key_present=1, key=0x00060001)")
}

#[test]
fn esp_passes_masquerade_for_one_lan_host() -> Result<()> {
    check_portless_through_masquerade(50, "ESP(spi=0x1001, seq=1, data=b'encrypted')")
}
