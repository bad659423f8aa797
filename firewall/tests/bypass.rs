//! The bypasses of issue 19 under BPF_PROG_TEST_RUN: frames that kernel
//! netfilter keeps out and an earlier datapath let in. Each test sends the
//! exact frame through the real programs and asserts the verdict, the
//! counter that says why, and that no connection was made.
//!
//! Topology: `router()` is the firewall as a router (addresses on both
//! sides, default routes out of `wan0`, forwarding on, an unreachable
//! prefix); LAN hosts in 10.0.1.0/24 and fd00:1::/64, the router's WAN
//! addresses 10.0.2.1 and 2001:db8:2::1.

mod common;

use std::net::{IpAddr, SocketAddr};

use common::*;
use etherparse::{IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header, icmpv4};
use firewall_common::{
    Counter::{self, *},
    TcpState,
    nd::iface_flags,
    tcp::{TCP_ACK, TCP_SYN},
};

/// After [`ROUTER_IP`]: IPv6 on both sides with its default route, and a
/// prefix of each family routed nowhere. The gateways stay unresolved.
const ROUTER_MORE: &[&str] = &[
    "addr add fd00:1::1/64 dev lan0 nodad",
    "addr add 2001:db8:2::1/64 dev wan0 nodad",
    "-6 route add default via 2001:db8:2::fe dev wan0",
    "route add unreachable 198.18.0.0/15",
    "-6 route add unreachable 2001:db8:dead::/48",
];

fn router_with(interfaces: &str, config: &str) -> Harness {
    Harness::with_setup(
        &Setup {
            interfaces,
            ip: &router_ip(ROUTER_MORE),
            sysctls: FORWARDING,
        },
        config,
    )
}

fn router(config: &str) -> Harness {
    router_with(DEFAULT_INTERFACES, config)
}

const MASQUERADE: &str = "[[interface]]\nname = \"wan0\"\nrole = \"wan\"\nmasquerade = true\n\n\
                          [[interface]]\nname = \"lan0\"\nrole = \"lan\"\n";

/// LAN clients and remote servers of both families.
const FLOWS: [(&str, &str); 2] = [
    ("10.0.1.5:40000", "203.0.113.7:80"),
    ("[fd00:1::5]:40000", "[2001:db8::7]:80"),
];

fn syn(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    tcp(client, server, TCP_SYN, 1000, 0, &[])
}

fn v4(frame: &[u8]) -> bool {
    frame[12..14] == [0x08, 0x00]
}

/// Recomputes the IPv4 header checksum of a plain frame.
fn fix_ip_checksum(frame: &mut [u8]) {
    let ihl = (frame[ETH_LEN] & 0x0f) as usize * 4;
    frame[ETH_LEN + 10..ETH_LEN + 12].copy_from_slice(&[0, 0]);
    let mut sum = 0u32;
    for w in frame[ETH_LEN..ETH_LEN + ihl].chunks(2) {
        sum += u16::from_be_bytes([w[0], w[1]]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    frame[ETH_LEN + 10..ETH_LEN + 12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

/// The frame with its TTL or hop limit set (IPv4 checksum kept right).
fn with_ttl(mut frame: Vec<u8>, ttl: u8) -> Vec<u8> {
    if v4(&frame) {
        frame[ETH_LEN + 8] = ttl;
        fix_ip_checksum(&mut frame);
    } else {
        frame[ETH_LEN + 7] = ttl;
    }
    frame
}

/// `frame` wrapped in `tags` VLAN tags (priority tags, VID 0), the
/// outermost announced by `tpid`, the inner ones by 802.1Q.
fn vlan_stacked(frame: &[u8], tags: usize, tpid: u16) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    for i in 0..tags {
        out.extend_from_slice(&if i == 0 { tpid } else { 0x8100 }.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
    }
    out.extend_from_slice(&frame[12..]);
    out
}

/// A dropped first packet: counted once under `counter`, no connection.
fn assert_refused(h: &Harness, verdict: Verdict, counter: Counter, what: &str) {
    assert_eq!(verdict, Verdict::Drop, "{what}");
    assert_eq!(h.counter(counter), 1, "{what}: {}", counter.name());
    assert_eq!(h.conntrack_len(), 0, "{what}: no connection");
}

// ---------------------------------------------------------------------------
// 1. VLAN tag stacks.

#[test]
fn frames_with_more_vlan_tags_than_the_parser_follows_are_dropped_with_no_connection() {
    let h = Harness::new("");
    let (client, server) = (sa("198.51.100.9:50000"), sa("10.1.0.5:22"));
    let inner = [
        syn(client, server),
        syn(sa("[2001:db8::9]:50000"), sa("[fd00:1::5]:22")),
        udp(client, sa("10.1.0.5:53"), b"query"),
        echo(ip("198.51.100.9"), ip("10.1.0.5"), true, 7, 1),
    ];
    let mut sent = 0;
    for frame in &inner {
        for tpid in [0x8100, 0x88a8, 0x9100] {
            // Up to what a 1,514-byte frame can hold around the packet.
            for tags in [3, 9, (1514 - frame.len()) / 4] {
                let stacked = vlan_stacked(frame, tags, tpid);
                for ifindex in [h.wan, h.lan] {
                    assert_eq!(
                        h.xdp(ifindex, &stacked),
                        Verdict::Drop,
                        "{tags} tags of {tpid:#06x}"
                    );
                    sent += 1;
                }
                assert_eq!(h.egress_host(&stacked), Verdict::Drop, "at tc egress");
                sent += 1;
            }
        }
    }
    assert_eq!(h.conntrack_len(), 0);
    h.assert_counters(&[(DropVlanStack, sent)]);
}

#[test]
fn two_tags_are_still_parsed_and_a_lone_0x9100_tag_is_refused() {
    let h = Harness::new("");
    let (client, server) = (sa("10.1.0.5:40000"), sa("203.0.113.7:80"));
    let two = vlan_stacked(&syn(client, server), 2, 0x88a8);
    assert_eq!(h.ingress_lan(&two), Verdict::Pass);
    h.assert_conn(&tcp_key(client, server), TcpState::SynSent, UNREPLIED);
    let other = vlan_stacked(&syn(sa("10.1.0.6:40000"), server), 1, 0x9100);
    assert_eq!(h.ingress_lan(&other), Verdict::Drop);
    h.assert_counters(&[(AcceptNew, 1), (CtCreated, 1), (DropVlanStack, 1)]);
}

// ---------------------------------------------------------------------------
// 2. No state for packets the stack will not forward or deliver.

#[test]
fn syn_from_the_lan_with_the_routers_own_address_creates_nothing() {
    for (own, server) in [
        ("10.0.2.1:22", "198.51.100.20:40000"),
        ("10.0.1.1:22", "198.51.100.20:40000"),
        ("[2001:db8:2::1]:22", "[2001:db8::20]:40000"),
    ] {
        let h = router("");
        let spoofed = syn(sa(own), sa(server));
        let v = h.ingress_lan(&spoofed);
        assert_refused(&h, v, DropMartian, own);
        // The WAN host's "reply" is a NEW connection to the router, and the
        // input policy drops it.
        let probe = syn(sa(server), sa(own));
        assert_eq!(h.ingress_wan(&probe), Verdict::Drop, "{own}");
        h.assert_counters(&[(DropMartian, 1), (DropPolicy, 1)]);
    }
}

#[test]
fn martian_sources_and_destinations_create_nothing() {
    let cases = [
        ("127.0.0.1:40000", "203.0.113.7:80"),
        ("224.0.0.5:40000", "203.0.113.7:80"),
        ("255.255.255.255:40000", "203.0.113.7:80"),
        ("0.1.2.3:40000", "203.0.113.7:80"),
        ("10.0.1.255:40000", "203.0.113.7:80"),
        ("10.0.1.5:40000", "0.0.0.1:80"),
        ("10.0.1.5:40000", "127.0.0.1:80"),
        ("[::1]:40000", "[2001:db8::7]:80"),
        ("[ff02::1]:40000", "[2001:db8::7]:80"),
        ("[::ffff:10.0.1.5]:40000", "[2001:db8::7]:80"),
        ("[fd00:1::5]:40000", "[::1]:80"),
        ("[fd00:1::5]:40000", "[ff01::1]:80"),
    ];
    let h = router("");
    for (src, dst) in cases {
        let v = h.ingress_lan(&syn(sa(src), sa(dst)));
        assert_eq!(v, Verdict::Drop, "{src} -> {dst}");
    }
    assert_eq!(h.conntrack_len(), 0);
    h.assert_counters(&[(DropMartian, cases.len() as u64)]);
}

#[test]
fn new_connection_from_a_source_with_no_route_back_is_refused() {
    let ssh = "[[rule]]\nchain = \"input\"\nproto = \"tcp\"\ndport = 22\naction = \"accept\"\n";
    let h = Harness::with_setup(
        &Setup {
            ip: &["addr add 192.0.2.2/24 dev wan0", "link set wan0 up"],
            sysctls: FORWARDING,
            ..Setup::default()
        },
        ssh,
    );
    // 192.0.2.0/24 is on-link; 198.51.100.0/24 is routed nowhere.
    let near = syn(sa("192.0.2.9:50000"), sa("192.0.2.2:22"));
    assert_eq!(h.ingress_wan(&near), Verdict::Pass);
    let far = syn(sa("198.51.100.20:50000"), sa("192.0.2.2:22"));
    assert_eq!(h.ingress_wan(&far), Verdict::Drop);
    assert_eq!(h.conntrack_len(), 2, "one connection, two entries");
    // Both matched the rule (its own counter says so); only one was let in.
    assert_eq!(h.rule_counter(0).packets, 2);
    h.assert_counters(&[(AcceptRule, 1), (CtCreated, 1), (DropMartian, 1)]);
}

#[test]
fn a_spent_ttl_on_a_forwarded_first_packet_goes_to_the_stack_without_a_connection() {
    for (client, server) in FLOWS {
        let h = router("");
        let (client, server) = (sa(client), sa(server));
        let f = with_ttl(syn(client, server), 1);
        assert_eq!(h.ingress_lan(&f), Verdict::Pass, "{client}");
        assert_eq!(h.conntrack_len(), 0, "{client}");
        h.assert_counters(&[(PassTtlExpired, 1)]);
        // The server's answer finds nothing and is NEW from the WAN.
        let answer = tcp(server, client, TCP_SYN | TCP_ACK, 5000, 1001, &[]);
        assert_eq!(h.ingress_wan(&answer), Verdict::Drop);
        // With TTL 2 the same packet is forwarded and tracked.
        let f = with_ttl(syn(client, server), 2);
        assert_eq!(h.ingress_lan(&f), Verdict::Pass);
        h.assert_conn(&tcp_key(client, server), TcpState::SynSent, UNREPLIED);
    }
}

#[test]
fn ttl_one_to_the_router_itself_is_delivered_and_tracked() {
    let h = router("");
    let (client, own) = (sa("10.0.1.5:40000"), sa("10.0.1.1:22"));
    assert_eq!(h.ingress_lan(&with_ttl(syn(client, own), 1)), Verdict::Pass);
    h.assert_conn(&tcp_key(client, own), TcpState::SynSent, UNREPLIED);
}

#[test]
fn a_port_forward_with_a_spent_ttl_is_dropped_rather_than_delivered_untranslated() {
    let fwd = "[[port_forward]]\nproto = \"tcp\"\nport = 8080\nto = \"10.0.1.10:80\"\n";
    let h = router_with(MASQUERADE, fwd);
    let f = with_ttl(syn(sa("198.51.100.20:50000"), sa("10.0.2.1:8080")), 1);
    let v = h.ingress_wan(&f);
    assert_refused(&h, v, DropTtlExpired, "port forward, TTL 1");
}

#[test]
fn first_packets_to_unroutable_destinations_create_nothing() {
    for (client, server) in [
        ("10.0.1.5:40000", "198.18.0.1:80"),
        ("[fd00:1::5]:40000", "[2001:db8:dead::1]:80"),
    ] {
        let h = router("");
        let f = syn(sa(client), sa(server));
        assert_eq!(h.ingress_lan(&f), Verdict::Pass, "{server}");
        assert_eq!(h.conntrack_len(), 0);
        h.assert_counters(&[(PassUnroutable, 1)]);
    }
}

#[test]
fn a_bad_ipv4_header_checksum_creates_nothing_but_is_not_checked_on_established_packets() {
    let h = router("");
    let mut c = TcpConv::new("10.0.1.5:40000", "203.0.113.7:80");
    let mut bad = c.client_sends(TCP_SYN, &[]);
    bad[ETH_LEN + 10] ^= 0x40;
    let v = h.ingress_lan(&bad);
    assert_refused(&h, v, DropBadIpChecksum, "SYN");
    // A good SYN, then established packets are not summed (the stack
    // drops a broken one itself).
    let mut c = TcpConv::new("10.0.1.5:40000", "203.0.113.7:80");
    assert_eq!(h.ingress_lan(&c.client_sends(TCP_SYN, &[])), Verdict::Pass);
    let mut answer = c.server_sends(TCP_SYN | TCP_ACK, &[]);
    answer[ETH_LEN + 10] ^= 0x40;
    assert_eq!(h.ingress_wan(&answer), Verdict::Pass);
}

/// A SYN with `opts` (a multiple of 4 bytes) as IPv4 options.
fn syn_with_options(client: SocketAddr, server: SocketAddr, opts: &[u8]) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (client.ip(), server.ip()) else {
        panic!("IPv4 only");
    };
    let mut ip = Ipv4Header::new(0, 64, IpNumber::TCP, s.octets(), d.octets()).unwrap();
    ip.options = opts.try_into().expect("options");
    tcp_segment(
        frame(etherparse::IpHeaders::Ipv4(ip, Default::default())),
        client.port(),
        server.port(),
        TCP_SYN,
        1000,
        0,
        &[],
    )
}

#[test]
fn source_routes_and_malformed_ipv4_options_create_nothing() {
    let (client, server) = (sa("10.0.1.5:40000"), sa("203.0.113.7:80"));
    let h = router("");
    let refused = [
        (&[131u8, 7, 4, 198, 51, 100, 1, 0][..], "loose source route"),
        (&[137, 7, 4, 198, 51, 100, 1, 0], "strict source route"),
        (&[7, 9, 4, 0], "record route longer than the header"),
        (&[68, 4, 4, 0], "timestamp with a bad pointer"),
        (&[134, 6, 0, 0, 0, 1, 0, 0], "CIPSO"),
    ];
    for (opts, what) in refused {
        let f = syn_with_options(client, server, opts);
        assert_eq!(h.ingress_lan(&f), Verdict::Drop, "{what}");
    }
    assert_eq!(h.conntrack_len(), 0);
    h.assert_counters(&[(DropIpOptions, refused.len() as u64)]);
    for (i, (opts, what)) in [
        (&[148u8, 4, 0, 0][..], "router alert"),
        (&[7, 7, 4, 0, 0, 0, 0, 0], "record route"),
        (&[1, 1, 1, 0], "padding"),
    ]
    .into_iter()
    .enumerate()
    {
        let client = at("10.0.1.5", 41000 + i as u16);
        assert_eq!(
            h.ingress_lan(&syn_with_options(client, server, opts)),
            Verdict::Pass,
            "{what}"
        );
        h.assert_conn(&tcp_key(client, server), TcpState::SynSent, UNREPLIED);
    }
}

/// An IPv6 SYN with a routing header (type 4, one segment) whose Segments
/// Left is `left`.
fn v6_syn_with_routing_header(left: u8) -> Vec<u8> {
    let s = syn(sa("[fd00:1::5]:40000"), sa("[2001:db8::7]:80"));
    let mut out = s[..ETH_LEN + 40].to_vec();
    out[ETH_LEN + 6] = 43;
    let plen = u16::from_be_bytes([s[ETH_LEN + 4], s[ETH_LEN + 5]]) + 24;
    out[ETH_LEN + 4..ETH_LEN + 6].copy_from_slice(&plen.to_be_bytes());
    // Next header TCP, length 2 (24 bytes), type 4, segments left, then
    // last entry, flags, tag, one 16-byte segment.
    out.extend_from_slice(&[6, 2, 4, left, 0, 0, 0, 0]);
    out.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]);
    out.extend_from_slice(&s[ETH_LEN + 40..]);
    out
}

#[test]
fn an_ipv6_routing_header_with_segments_left_creates_nothing() {
    let h = router("");
    let f = v6_syn_with_routing_header(1);
    let v = h.ingress_lan(&f);
    assert_refused(&h, v, DropIpOptions, "segments left 1");
    let h = router("");
    assert_eq!(h.ingress_lan(&v6_syn_with_routing_header(0)), Verdict::Pass);
    assert_eq!(h.counter(CtCreated), 1);
}

// ---------------------------------------------------------------------------
// 5. Transport checksums, UDP lengths, No Next Header.

/// Offset of the transport checksum in a plain frame of `proto`.
fn l4_checksum_at(frame: &[u8], proto: u8) -> usize {
    let l4 = if v4(frame) {
        ETH_LEN + (frame[ETH_LEN] & 0x0f) as usize * 4
    } else {
        ETH_LEN + 40
    };
    l4 + match proto {
        6 => 16,
        17 => 6,
        _ => 2,
    }
}

#[test]
fn first_packets_with_bad_transport_checksums_create_nothing() {
    let h = router("");
    for (client, server) in FLOWS {
        let (client, server) = (sa(client), sa(server));
        for (proto, frame) in [
            (6u8, syn(client, server)),
            (17, udp(client, server, b"query")),
            (1, echo(client.ip(), server.ip(), true, 9, 1)),
        ] {
            let mut bad = frame.clone();
            let at = l4_checksum_at(&bad, proto);
            bad[at] ^= 0x11;
            assert_eq!(h.ingress_lan(&bad), Verdict::Drop, "{client} proto {proto}");
        }
    }
    assert_eq!(h.conntrack_len(), 0);
    h.assert_counters(&[(DropBadChecksum, 6)]);
}

#[test]
fn udp_without_checksum_is_fine_over_ipv4_and_invalid_over_ipv6() {
    let h = router("");
    let mut f = udp(sa("10.0.1.5:5000"), sa("203.0.113.7:53"), b"q");
    let at = l4_checksum_at(&f, 17);
    f[at..at + 2].copy_from_slice(&[0, 0]);
    assert_eq!(h.ingress_lan(&f), Verdict::Pass);
    assert_eq!(h.counter(CtCreated), 1);
    let h = router("");
    let mut f = udp(sa("[fd00:1::5]:5000"), sa("[2001:db8::7]:53"), b"q");
    let at = l4_checksum_at(&f, 17);
    f[at..at + 2].copy_from_slice(&[0, 0]);
    let v = h.ingress_lan(&f);
    assert_refused(&h, v, DropBadChecksum, "IPv6 UDP, checksum 0");
}

/// The one's-complement sum of the pseudo-header of a plain frame's
/// transport segment, as a local sender leaves it in the checksum field
/// for the NIC to finish (`CHECKSUM_PARTIAL`).
fn partial_checksum(frame: &[u8], proto: u8) -> u16 {
    let mut words = Vec::new();
    let (addrs, l4_len) = if v4(frame) {
        let ihl = (frame[ETH_LEN] & 0x0f) as usize * 4;
        let tot = u16::from_be_bytes([frame[ETH_LEN + 2], frame[ETH_LEN + 3]]) as usize;
        (&frame[ETH_LEN + 12..ETH_LEN + 20], tot - ihl)
    } else {
        let plen = u16::from_be_bytes([frame[ETH_LEN + 4], frame[ETH_LEN + 5]]) as usize;
        (&frame[ETH_LEN + 8..ETH_LEN + 40], plen)
    };
    words.extend_from_slice(addrs);
    words.extend_from_slice(&[0, proto]);
    words.extend_from_slice(&(l4_len as u16).to_be_bytes());
    let mut sum = 0u32;
    for w in words.chunks(2) {
        sum += u16::from_be_bytes([w[0], w[1]]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[test]
fn an_offloaded_checksum_is_accepted_on_virtual_interfaces_only() {
    for (client, server) in FLOWS {
        let mut f = syn(sa(client), sa(server));
        let at = l4_checksum_at(&f, 6);
        let partial = partial_checksum(&f, 6);
        f[at..at + 2].copy_from_slice(&partial.to_be_bytes());
        // The test interfaces are veths: a local sender's packet may come
        // with the checksum still to be filled in.
        let h = router("");
        assert_eq!(h.ingress_lan(&f), Verdict::Pass, "{client} on a veth");
        assert_eq!(h.counter(CtCreated), 1);
        // From a NIC, such a field is just wrong.
        let mut h = router("");
        let mut cfg = h.maps.ifaces.get(&h.lan, 0).expect("lan0 configured");
        assert_ne!(cfg.flags & iface_flags::VIRTUAL, 0, "a veth is virtual");
        cfg.flags &= !iface_flags::VIRTUAL;
        h.maps.ifaces.insert(h.lan, cfg, 0).expect("IFACES");
        let v = h.ingress_lan(&f);
        assert_refused(&h, v, DropBadChecksum, &format!("{client} from a NIC"));
    }
}

#[test]
fn udp_lengths_beyond_the_packet_or_below_the_header_are_malformed() {
    let h = router("");
    let good = udp(sa("10.0.1.5:5000"), sa("203.0.113.7:53"), b"query");
    let len_at = ETH_LEN + 20 + 4;
    for ulen in [7u16, 0, (good.len() - ETH_LEN - 20 + 1) as u16] {
        let mut f = good.clone();
        f[len_at..len_at + 2].copy_from_slice(&ulen.to_be_bytes());
        assert_eq!(h.ingress_lan(&f), Verdict::Drop, "UDP length {ulen}");
    }
    assert_eq!(h.conntrack_len(), 0);
    h.assert_counters(&[(DropMalformed, 3)]);
}

#[test]
fn ipv6_no_next_header_creates_nothing() {
    let h = router("");
    let mut f = udp(sa("[fd00:1::5]:5000"), sa("[2001:db8::7]:53"), b"x");
    f[ETH_LEN + 6] = 59;
    let v = h.ingress_lan(&f);
    assert_refused(&h, v, DropNoNextHeader, "next header 59");
}

#[test]
fn a_first_fragment_is_tracked_although_its_checksum_covers_what_follows() {
    // A 3,000-byte datagram's first fragment: the UDP length and checksum
    // cover fragments still to come.
    let h = router("");
    let whole = udp(sa("10.0.1.5:5000"), sa("203.0.113.7:53"), &[7u8; 3000]);
    let mut first = whole[..ETH_LEN + 20 + 1480].to_vec();
    first[ETH_LEN + 2..ETH_LEN + 4].copy_from_slice(&1500u16.to_be_bytes());
    first[ETH_LEN + 6] = 0x20; // more fragments, offset 0
    fix_ip_checksum(&mut first);
    assert_eq!(h.ingress_lan(&first), Verdict::Pass);
    assert_eq!(h.counter(CtCreated), 1);
}

// ---------------------------------------------------------------------------
// 3. ICMP and ICMPv6.

fn ip(s: &str) -> IpAddr {
    s.parse().expect("IP address")
}

/// An ICMPv6 message of type `ty`, code `code`, with `hop` as hop limit,
/// bytes 4..8 `rest` and `body` after them.
fn icmp6(src: &str, dst: &str, hop: u8, ty: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (ip(src), ip(dst)) else {
        panic!("IPv6 only");
    };
    let header = Ipv6Header {
        traffic_class: 0,
        flow_label: Ipv6FlowLabel::ZERO,
        payload_length: 0,
        next_header: IpNumber::IPV6_ICMP,
        hop_limit: hop,
        source: s.octets(),
        destination: d.octets(),
    };
    let step = frame(etherparse::IpHeaders::Ipv6(header, Default::default())).icmpv6(
        etherparse::Icmpv6Type::Unknown {
            type_u8: ty,
            code_u8: code,
            bytes5to8: rest,
        },
    );
    let mut out = Vec::new();
    step.write(&mut out, body).expect("ICMPv6");
    out
}

const LINK_LOCAL_PEER: &str = "fe80::99";
/// A neighbour solicitation's target and a source link-layer option.
const NS_BODY: [u8; 24] = [
    0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // target fd00:1::1
    1, 1, 2, 0, 0, 0, 0, 0x99, // source link-layer address option
];

#[test]
fn neighbour_discovery_reaches_the_host_without_a_rule_and_is_never_forwarded() {
    let h = router("");
    // A solicitation for the router's address, and an advertisement.
    let ns = icmp6(
        LINK_LOCAL_PEER,
        "ff02::1:ff00:1",
        255,
        135,
        0,
        [0; 4],
        &NS_BODY,
    );
    assert_eq!(h.ingress_lan(&ns), Verdict::Pass);
    assert_eq!(h.ingress_wan(&ns), Verdict::Pass);
    let na = icmp6(
        "fd00:1::5",
        "fd00:1::1",
        255,
        136,
        0,
        [0x60, 0, 0, 0],
        &NS_BODY[..16],
    );
    assert_eq!(h.ingress_lan(&na), Verdict::Pass);
    // Unicast solicitations to a global address of the router (NUD).
    let nud = icmp6(
        "2001:db8:2::fe",
        "2001:db8:2::1",
        255,
        135,
        0,
        [0; 4],
        &NS_BODY[..16],
    );
    assert_eq!(h.ingress_wan(&nud), Verdict::Pass);
    // The same messages addressed to a LAN host, arriving from the WAN,
    // would be forwarded: never.
    let target = [0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];
    for (ty, body) in [
        (133u8, &[][..]),
        (134, &[0u8; 8][..]),
        (135, &target[..]),
        (136, &target[..]),
        (137, &[target, target].concat()[..]),
    ] {
        let f = icmp6("fe80::66", "fd00:1::5", 255, ty, 0, [0; 4], body);
        assert_eq!(h.ingress_wan(&f), Verdict::Drop, "type {ty} to a LAN host");
    }
    let mld = icmp6("fe80::66", "fd00:1::5", 1, 131, 0, [0; 4], &[0u8; 16]);
    assert_eq!(h.ingress_wan(&mld), Verdict::Drop, "MLD to a LAN host");
    assert_eq!(h.conntrack_len(), 0);
    h.assert_counters(&[(AcceptUntracked, 4), (DropNdForward, 6)]);
}

#[test]
fn malformed_neighbour_discovery_is_dropped() {
    let h = router("");
    let cases = [
        icmp6(
            LINK_LOCAL_PEER,
            "ff02::1:ff00:1",
            64,
            135,
            0,
            [0; 4],
            &NS_BODY,
        ),
        icmp6(
            LINK_LOCAL_PEER,
            "ff02::1:ff00:1",
            255,
            135,
            1,
            [0; 4],
            &NS_BODY,
        ),
        icmp6(
            LINK_LOCAL_PEER,
            "ff02::1:ff00:1",
            255,
            135,
            0,
            [0; 4],
            &NS_BODY[..12],
        ),
        // An option of length 0, then a payload.
        icmp6(LINK_LOCAL_PEER, "ff02::1:ff00:1", 255, 135, 0, [0; 4], &{
            let mut b = NS_BODY;
            b[17] = 0;
            b
        }),
        // Options that run past the end.
        icmp6(LINK_LOCAL_PEER, "ff02::1:ff00:1", 255, 135, 0, [0; 4], &{
            let mut b = NS_BODY;
            b[17] = 2;
            b
        }),
        // A router advertisement from a global address.
        icmp6(
            "2001:db8:2::fe",
            "ff02::1",
            255,
            134,
            0,
            [64, 0, 0, 0],
            &[0u8; 8],
        ),
        // MLD with a hop limit of 255.
        icmp6("fe80::66", "ff02::16", 255, 143, 0, [0; 4], &[]),
    ];
    for f in &cases {
        assert_eq!(h.ingress_wan(f), Verdict::Drop);
    }
    h.assert_counters(&[(DropNdInvalid, cases.len() as u64)]);
}

#[test]
fn router_advertisements_follow_the_interfaces_settings_and_the_rest_goes_to_the_rules() {
    let ra = icmp6(
        "fe80::fe",
        "ff02::1",
        255,
        134,
        0,
        [64, 0, 0x07, 0x08],
        &[0u8; 8],
    );
    let rs = icmp6("fe80::5", "ff02::2", 255, 133, 0, [0; 4], &[]);
    let mld = icmp6("fe80::5", "ff02::16", 1, 143, 0, [0; 4], &[]);
    // A router (forwarding on) with accept_ra at 1 ignores them: the rules
    // decide, and the WAN's input policy drops.
    let mut h = router("");
    assert_eq!(
        h.ingress_wan(&ra),
        Verdict::Drop,
        "RA, accept_ra 1 on a router"
    );
    // accept_ra 2: the kernel uses them, so they come in.
    h.sysctl("net.ipv6.conf.wan0.accept_ra", "2");
    assert_eq!(h.refresh_ipv6_settings(), vec!["wan0".to_string()]);
    assert_eq!(h.ingress_wan(&ra), Verdict::Pass, "RA, accept_ra 2");
    // Router solicitations and MLD: from the LAN (whose default accepts)
    // yes, from the WAN by rule only.
    assert_eq!(h.ingress_lan(&rs), Verdict::Pass);
    assert_eq!(h.ingress_lan(&mld), Verdict::Pass);
    assert_eq!(h.ingress_wan(&rs), Verdict::Drop);
    assert_eq!(h.ingress_wan(&mld), Verdict::Drop);
    h.assert_counters(&[(DropPolicy, 3), (AcceptUntracked, 2), (AcceptNew, 1)]);

    // A rule can open them, matching UNTRACKED.
    let rule = "[[rule]]\nchain = \"input\"\nproto = \"icmpv6\"\nctstate = [\"untracked\"]\n\
                action = \"accept\"\n";
    let h = router(rule);
    assert_eq!(h.ingress_wan(&rs), Verdict::Pass);
    h.assert_counters(&[(AcceptRule, 1)]);
    assert_eq!(h.conntrack_len(), 0);
}

/// A UDP flow from the LAN, tracked; returns its client and server.
fn tracked_udp(h: &Harness, client: &str, server: &str) -> (SocketAddr, SocketAddr) {
    let (client, server) = (sa(client), sa(server));
    assert_eq!(h.ingress_lan(&udp(client, server, b"query")), Verdict::Pass);
    (client, server)
}

#[test]
fn an_icmp_error_with_a_bad_checksum_is_not_related() {
    for (client, server) in FLOWS {
        let h = router("");
        let (client, server) = tracked_udp(&h, client, server);
        let quoted = &udp(client, server, b"query")[ETH_LEN..];
        let mut err = port_unreachable(server.ip(), client.ip(), quoted);
        let at = l4_checksum_at(&err, 1);
        err[at] ^= 0x01;
        assert_eq!(h.ingress_wan(&err), Verdict::Drop, "{client}");
        h.assert_counters(&[(AcceptNew, 1), (CtCreated, 1), (DropBadChecksum, 1)]);
    }
}

#[test]
fn an_icmp_error_quoting_a_non_first_fragment_is_not_related() {
    let h = router("");
    let (client, server) = tracked_udp(&h, "10.0.1.5:40000", "203.0.113.7:53");
    // Payload bytes of a later fragment that happen to look like the flow's
    // ports.
    let mut quoted = udp(client, server, b"query")[ETH_LEN..].to_vec();
    quoted[6] = 0x00;
    quoted[7] = 0xb9; // offset 185 × 8
    let err = port_unreachable(server.ip(), client.ip(), &quoted);
    assert_eq!(h.ingress_wan(&err), Verdict::Drop);
    h.assert_counters(&[(AcceptNew, 1), (CtCreated, 1), (DropIcmpErrorQuote, 1)]);
}

#[test]
fn an_error_from_outside_quoting_the_untranslated_tuple_is_not_related() {
    let h = router_with(MASQUERADE, "");
    let (client, server) = tracked_udp(&h, "10.0.1.5:40000", "203.0.113.7:53");
    // Sent straight to the LAN host's private address, quoting the packet
    // as it left the LAN host (before masquerade).
    let quoted = &udp(client, server, b"query")[ETH_LEN..];
    let err = port_unreachable(server.ip(), client.ip(), quoted);
    assert_eq!(h.ingress_wan(&err), Verdict::Drop);
    assert_eq!(h.counter(DropIcmpErrorNoConn), 1);
    // The error about the translated packet, to the router, is RELATED.
    let translated = &udp(sa("10.0.2.1:40000"), server, b"query")[ETH_LEN..];
    let err = port_unreachable(server.ip(), ip("10.0.2.1"), translated);
    assert_eq!(h.ingress_wan(&err), Verdict::Pass);
    assert_eq!(h.counter(AcceptRelated), 1);
}

#[test]
fn a_redirect_about_a_translated_connection_is_dropped() {
    let h = router_with(MASQUERADE, "");
    let (_, server) = tracked_udp(&h, "10.0.1.5:40000", "203.0.113.7:53");
    let translated = &udp(sa("10.0.2.1:40000"), server, b"query")[ETH_LEN..];
    let mut out = Vec::new();
    plain(ip("10.0.2.254"), ip("10.0.2.1"))
        .icmpv4(etherparse::Icmpv4Type::Redirect(icmpv4::RedirectHeader {
            code: icmpv4::RedirectCode::RedirectForHost,
            gateway_internet_address: [10, 0, 2, 253],
        }))
        .write(&mut out, translated)
        .expect("redirect");
    assert_eq!(h.ingress_wan(&out), Verdict::Drop);
    assert_eq!(h.counter(DropIcmpRedirectNat), 1);
}

#[test]
fn packet_too_big_quoting_extension_headers_is_related() {
    let h = router("");
    let (client, server) = tracked_udp(&h, "[fd00:1::5]:40000", "[2001:db8::7]:53");
    // The quoted datagram as it left: hop-by-hop options, then the first
    // fragment of a larger datagram.
    let plain_udp = udp(client, server, b"query");
    let ip6 = &plain_udp[ETH_LEN..ETH_LEN + 40];
    let l4 = &plain_udp[ETH_LEN + 40..];
    let mut quoted = ip6.to_vec();
    quoted[6] = 0; // hop-by-hop
    let plen = (l4.len() + 16) as u16;
    quoted[4..6].copy_from_slice(&plen.to_be_bytes());
    quoted.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]); // PadN
    quoted.extend_from_slice(&[17, 0, 0, 1, 0, 0, 0x12, 0x34]); // offset 0, M
    quoted.extend_from_slice(l4);
    let mut err = Vec::new();
    plain(ip("2001:db8:2::fe"), client.ip())
        .icmpv6(etherparse::Icmpv6Type::PacketTooBig { mtu: 1280 })
        .write(&mut err, &quoted)
        .expect("packet too big");
    assert_eq!(h.ingress_wan(&err), Verdict::Pass);
    assert_eq!(h.counter(AcceptRelated), 1);
}

#[test]
fn the_hosts_own_error_about_a_packet_without_a_connection_passes() {
    let h = router("");
    // The router's time-exceeded for a TTL-1 packet it refused to forward
    // (and for which it therefore made no connection).
    let (client, server) = (sa("10.0.1.5:40000"), sa("203.0.113.7:33434"));
    let probe = with_ttl(udp(client, server, b"probe"), 1);
    assert_eq!(h.ingress_lan(&probe), Verdict::Pass);
    let mut err = Vec::new();
    plain(ip("10.0.1.1"), client.ip())
        .icmpv4(etherparse::Icmpv4Type::TimeExceeded(
            icmpv4::TimeExceededCode::TtlExceededInTransit,
        ))
        .write(&mut err, &probe[ETH_LEN..])
        .expect("time exceeded");
    assert_eq!(h.egress_host(&err), Verdict::Pass);
    h.assert_counters(&[(PassTtlExpired, 1), (AcceptLocalIcmpError, 1)]);
    // The same error arriving from outside finds no connection.
    assert_eq!(h.ingress_wan(&err), Verdict::Drop);
    assert_eq!(h.counter(DropIcmpErrorNoConn), 1);
}

// ---------------------------------------------------------------------------
// 4. SCTP by ports and verification tag; other protocols through NAT.

/// An SCTP packet with verification tag `vtag` and `chunks` (already padded
/// to 4 bytes each). The CRC32c is left 0: the firewall does not check it.
fn sctp(src: SocketAddr, dst: SocketAddr, vtag: u32, chunks: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&src.port().to_be_bytes());
    payload.extend_from_slice(&dst.port().to_be_bytes());
    payload.extend_from_slice(&vtag.to_be_bytes());
    payload.extend_from_slice(&[0; 4]);
    payload.extend_from_slice(chunks);
    let mut out = Vec::new();
    plain(src.ip(), dst.ip())
        .write(&mut out, IpNumber::SCTP, &payload)
        .expect("SCTP packet");
    out
}

/// A chunk of type `ty` with `flags` and `value` (length = 4 + value).
fn chunk(ty: u8, flags: u8, value: &[u8]) -> Vec<u8> {
    let mut c = vec![ty, flags];
    c.extend_from_slice(&((4 + value.len()) as u16).to_be_bytes());
    c.extend_from_slice(value);
    while c.len() % 4 != 0 {
        c.push(0);
    }
    c
}

/// INIT or INIT ACK with Initiate Tag `tag` (window, streams, TSN after it).
fn init_chunk(ty: u8, tag: u32) -> Vec<u8> {
    let mut v = tag.to_be_bytes().to_vec();
    v.extend_from_slice(&[0, 1, 0, 0, 0, 10, 0, 10, 0, 0, 0, 1]);
    chunk(ty, 0, &v)
}

const TAG_CLIENT: u32 = 0x1111_1111;
const TAG_SERVER: u32 = 0x2222_2222;

/// An association from a LAN client to a server through the four-way
/// handshake; returns both ends.
fn sctp_association(h: &Harness, client: &str, server: &str) -> (SocketAddr, SocketAddr) {
    let (c, s) = (sa(client), sa(server));
    assert_eq!(
        h.ingress_lan(&sctp(c, s, 0, &init_chunk(1, TAG_CLIENT))),
        Verdict::Pass
    );
    assert_eq!(
        h.ingress_wan(&sctp(s, c, TAG_CLIENT, &init_chunk(2, TAG_SERVER))),
        Verdict::Pass
    );
    assert_eq!(
        h.ingress_lan(&sctp(c, s, TAG_SERVER, &chunk(10, 0, &[1; 8]))),
        Verdict::Pass,
        "COOKIE ECHO"
    );
    assert_eq!(
        h.ingress_wan(&sctp(s, c, TAG_CLIENT, &chunk(11, 0, &[]))),
        Verdict::Pass,
        "COOKIE ACK"
    );
    (c, s)
}

#[test]
fn sctp_is_tracked_by_ports_and_verification_tag() {
    for (client, server) in [
        ("10.0.1.5:5000", "203.0.113.7:3868"),
        ("[fd00:1::5]:5000", "[2001:db8::7]:3868"),
    ] {
        let h = router("");
        let (c, s) = sctp_association(&h, client, server);
        let (o, r) = h.assert_conn(
            &key(IpNumber::SCTP, c, s),
            TcpState::None,
            SEEN_REPLY | ASSURED,
        );
        assert_eq!(
            o.sctp.state,
            firewall_common::sctp::SctpState::Established as u8
        );
        assert_eq!(o.sctp, r.sctp, "both halves hold the association");
        let data = chunk(0, 3, &[0; 16]);
        assert_eq!(h.ingress_wan(&sctp(s, c, TAG_CLIENT, &data)), Verdict::Pass);
        // The right tag on another port is another association: NEW from
        // the WAN, dropped. A wrong tag on the right ports is INVALID.
        let other = SocketAddr::new(c.ip(), 5001);
        assert_eq!(
            h.ingress_wan(&sctp(s, other, 0, &init_chunk(1, 7))),
            Verdict::Drop
        );
        assert_eq!(
            h.ingress_wan(&sctp(s, c, 0xdead_beef, &data)),
            Verdict::Drop
        );
        // An ABORT with a wrong tag changes nothing; with the right one it
        // closes the association.
        assert_eq!(
            h.ingress_wan(&sctp(s, c, 0xdead_beef, &chunk(6, 0, &[]))),
            Verdict::Drop
        );
        let (o, _) = h.assert_conn(
            &key(IpNumber::SCTP, c, s),
            TcpState::None,
            SEEN_REPLY | ASSURED,
        );
        assert_eq!(
            o.sctp.state,
            firewall_common::sctp::SctpState::Established as u8
        );
        assert_eq!(
            h.ingress_wan(&sctp(s, c, TAG_CLIENT, &chunk(6, 0, &[]))),
            Verdict::Pass
        );
        let (o, _) = h.assert_conn(
            &key(IpNumber::SCTP, c, s),
            TcpState::None,
            SEEN_REPLY | ASSURED,
        );
        assert_eq!(o.sctp.state, firewall_common::sctp::SctpState::Closed as u8);
        assert_eq!(h.counter(DropInvalidSctp), 2, "{client}");
        assert_eq!(h.counter(DropPolicy), 1, "{client}");
    }
}

#[test]
fn sctp_packets_that_cannot_start_an_association_create_nothing() {
    let h = router("");
    let (c, s) = (sa("10.0.1.5:5000"), sa("203.0.113.7:3868"));
    let cases = [
        sctp(c, s, 5, &init_chunk(1, TAG_CLIENT)), // INIT with a tag
        sctp(c, s, TAG_CLIENT, &chunk(6, 0, &[])), // ABORT out of the blue
        sctp(c, s, TAG_CLIENT, &chunk(0, 3, &[0; 16])), // DATA out of the blue
        sctp(c, s, 0, &[init_chunk(1, 1), chunk(0, 3, &[0; 8])].concat()), // INIT not alone
        sctp(c, s, 0, &[0, 0, 0, 0]),              // an empty chunk
        sctp(c, s, 0, &[]),                        // no chunk at all
    ];
    for f in &cases {
        assert_eq!(h.ingress_lan(f), Verdict::Drop);
    }
    assert_eq!(h.conntrack_len(), 0);
    h.assert_counters(&[(DropInvalidSctp, cases.len() as u64)]);
}

/// A GRE (47) or ESP (50) packet: protocols without ports.
fn portless(proto: u8, src: IpAddr, dst: IpAddr) -> Vec<u8> {
    let mut out = Vec::new();
    plain(src, dst)
        .write(
            &mut out,
            IpNumber(proto),
            &[0x30, 0x01, 0x88, 0x0b, 0, 0, 0, 1],
        )
        .expect("packet");
    out
}

#[test]
fn gre_and_esp_pass_masquerade_for_one_inside_host_per_peer() {
    let h = router_with(MASQUERADE, "");
    let (a, b, peer, wan) = (
        ip("10.0.1.5"),
        ip("10.0.1.6"),
        ip("203.0.113.7"),
        ip("10.0.2.1"),
    );
    for proto in [47u8, 50] {
        let out = portless(proto, a, peer);
        assert_eq!(h.ingress_lan(&out), Verdict::Pass, "{proto} out");
        let (v, sent) = h.forward_to_wan(&out);
        assert_eq!(v, Verdict::Pass);
        assert_eq!(
            &sent[ETH_LEN + 12..ETH_LEN + 16],
            &[10, 0, 2, 1],
            "source translated"
        );
        assert_eq!(
            &sent[ETH_LEN + 20..],
            &out[ETH_LEN + 20..],
            "payload untouched"
        );
        let mut check = sent.clone();
        fix_ip_checksum(&mut check);
        assert_eq!(sent, check, "IPv4 header checksum updated");
        // The peer's answer comes back to the inside host.
        let back = portless(proto, peer, wan);
        assert_eq!(h.ingress_wan(&back), Verdict::Pass, "{proto} back");
        let (v, delivered) = h.tc_ingress(h.wan, &back);
        assert_eq!(v, Verdict::Pass);
        assert_eq!(&delivered[ETH_LEN + 16..ETH_LEN + 20], &[10, 0, 1, 5]);
        // A second inside host to the same peer: replies could not tell
        // them apart, so it is refused.
        assert_eq!(h.ingress_lan(&portless(proto, b, peer)), Verdict::Drop);
    }
    assert_eq!(h.counter(DropNatPeerBusy), 2);
}

#[test]
fn sctp_through_masquerade_keeps_its_ports() {
    let h = router_with(MASQUERADE, "");
    let (c, s) = (sa("10.0.1.5:5000"), sa("203.0.113.7:3868"));
    let init = sctp(c, s, 0, &init_chunk(1, TAG_CLIENT));
    assert_eq!(h.ingress_lan(&init), Verdict::Pass);
    let (v, sent) = h.forward_to_wan(&init);
    assert_eq!(v, Verdict::Pass);
    assert_eq!(&sent[ETH_LEN + 12..ETH_LEN + 16], &[10, 0, 2, 1]);
    assert_eq!(
        &sent[ETH_LEN + 20..],
        &init[ETH_LEN + 20..],
        "ports and chunks kept"
    );
    let ack = sctp(
        s,
        sa("10.0.2.1:5000"),
        TAG_CLIENT,
        &init_chunk(2, TAG_SERVER),
    );
    assert_eq!(h.ingress_wan(&ack), Verdict::Pass);
    let (v, delivered) = h.tc_ingress(h.wan, &ack);
    assert_eq!(v, Verdict::Pass);
    assert_eq!(&delivered[ETH_LEN + 16..ETH_LEN + 20], &[10, 0, 1, 5]);
    // Another inside host with the same ports to the same server.
    let other = sctp(sa("10.0.1.6:5000"), s, 0, &init_chunk(1, 9));
    assert_eq!(h.ingress_lan(&other), Verdict::Drop);
    assert_eq!(h.counter(DropNatPeerBusy), 1);
}
