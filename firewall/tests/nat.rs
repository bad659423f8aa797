//! NAT under BPF_PROG_TEST_RUN: packets go through the real XDP, TC ingress
//! and TC egress programs of a private instance, in the order a router's
//! kernel would run them, and every rewritten packet is checked against a
//! packet etherparse built with the translated addresses, with each
//! checksum recomputed by etherparse (never by the code under test).
//!
//! Topology (see `common`): the test's own namespace is set up as a router,
//! `lan0` 10.0.1.1/24 (role lan) and `wan0` 10.0.2.1/24 (role wan, NAT keys
//! per test), forwarding on, default route via 10.0.2.254 on `wan0`, so the
//! XDP program's FIB lookup for a LAN host's packet to the Internet names
//! `wan0` as the egress interface. The TC programs are told their interface
//! through `__sk_buff.ifindex` and where a forwarded packet came from
//! through `__sk_buff.ingress_ifindex`, both of which BPF_PROG_TEST_RUN lets
//! a test set.
//!
//! Needs root (BPF and namespaces): `cargo test -p firewall --test nat`.

mod common;

use std::net::{IpAddr, SocketAddr};

use common::*;
use etherparse::{
    Icmpv4Type, IpNumber, Ipv4Header, NetHeaders, PacketHeaders, TransportHeader, UdpHeader, icmpv4,
};
use firewall_common::{
    Counter::{self, *},
    CtEntry, CtKey, TcpState,
    nat::NatRewrite,
    tcp::{TCP_ACK, TCP_PSH, TCP_RST, TCP_SYN},
};

/// After [`ROUTER_IP`]: the gateway resolved, and IPv6 routes both ways,
/// which the datapath checks before a new connection is made.
const ROUTER_MORE: &[&str] = &[
    GATEWAY_NEIGH,
    "addr add fd00:1::1/64 dev lan0 nodad",
    "-6 route add default dev wan0",
];

/// `wan0`'s address, which masquerade translates to.
const WAN_ADDR: &str = "10.0.2.1";
const MASQUERADE: &str = "masquerade = true";
const SERVER: &str = "203.0.113.7:80";

/// A router whose `wan0` carries `wan_keys` (NAT settings), with
/// `config_toml` after the interfaces.
fn router(wan_keys: &str, config_toml: &str) -> Harness {
    router_harness(ROUTER_MORE, FORWARDING, wan_keys, config_toml)
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("IP address")
}

/// An IPv4 address as the maps hold it (raw network-order bytes).
fn raw(a: IpAddr) -> u32 {
    match a {
        IpAddr::V4(v4) => u32::from_ne_bytes(v4.octets()),
        IpAddr::V6(_) => panic!("{a} is not IPv4"),
    }
}

fn udp_key(src: SocketAddr, dst: SocketAddr) -> CtKey {
    key(IpNumber::UDP, src, dst)
}

/// Offset of the UDP checksum in a plain Ethernet + IPv4 (no options) frame.
const UDP_CHECKSUM_AT: usize = ETH_LEN + Ipv4Header::MIN_LEN + 6;

/// The same UDP datagram with its checksum field 0: "no checksum" (RFC 768).
fn without_checksum(mut frame: Vec<u8>) -> Vec<u8> {
    frame[UDP_CHECKSUM_AT..UDP_CHECKSUM_AT + 2].copy_from_slice(&[0, 0]);
    frame
}

fn udp_checksum(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[UDP_CHECKSUM_AT], frame[UDP_CHECKSUM_AT + 1]])
}

/// A 12-byte payload that makes a UDP datagram from `src` to `dst` sum to
/// 0xffff (negative zero), whose checksum therefore computes to 0 and is
/// sent as 0xffff (RFC 768). With the last word 0 the checksum of the rest
/// is `c = ~S`; putting `c` into that word makes the sum `S + ~S = 0xffff`.
fn payload_summing_to_zero(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut payload = b"zero-sum!!\0\0".to_vec();
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
        panic!("IPv4 only");
    };
    let c = UdpHeader::without_ipv4_checksum(src.port(), dst.port(), payload.len())
        .expect("UDP header")
        .calc_checksum_ipv4_raw(s.octets(), d.octets(), &payload)
        .expect("UDP checksum");
    let n = payload.len();
    payload[n - 2..].copy_from_slice(&c.to_be_bytes());
    payload
}

/// What a frame says about itself: its endpoints and checksum fields, and
/// for an ICMP error the same of the packet it quotes. Building one
/// verifies every checksum the frame carries against etherparse's
/// recomputation: IPv4 header, TCP, UDP (unless 0, which means none) and
/// ICMP over the whole ICMP message; in a quote, the IPv4 header, and the
/// transport checksum when the quote holds the whole segment.
#[derive(Debug, PartialEq, Eq)]
struct Wire {
    src: IpAddr,
    dst: IpAddr,
    /// TCP/UDP ports; for ICMP, the identifier of a query (or 0) and the
    /// type.
    sport: u16,
    dport: u16,
    ip_checksum: Option<u16>,
    /// `None` in a quote that ends before the checksum.
    l4_checksum: Option<u16>,
    /// The packet an ICMP error quotes.
    quoted: Option<Box<Wire>>,
}

impl Wire {
    #[track_caller]
    fn of(frame: &[u8]) -> Wire {
        Wire::from_headers(&PacketHeaders::from_ethernet_slice(frame).expect("frame parses"))
    }

    #[track_caller]
    fn from_headers(h: &PacketHeaders) -> Wire {
        let payload = h.payload.slice();
        let (src, dst, ip_checksum, v4) = match &h.net {
            Some(NetHeaders::Ipv4(ip, _)) => {
                assert_eq!(
                    ip.header_checksum,
                    ip.calc_header_checksum(),
                    "IPv4 header checksum of {ip:?}"
                );
                (
                    IpAddr::from(ip.source),
                    IpAddr::from(ip.destination),
                    Some(ip.header_checksum),
                    Some(ip),
                )
            }
            Some(NetHeaders::Ipv6(ip, _)) => (
                IpAddr::from(ip.source),
                IpAddr::from(ip.destination),
                None,
                None,
            ),
            None => panic!("no IP header"),
        };
        let mut quoted = None;
        let (sport, dport, l4_checksum) = match (&h.transport, v4) {
            (Some(TransportHeader::Tcp(t)), Some(ip)) => {
                let want = t.calc_checksum_ipv4(ip, payload).expect("TCP checksum");
                assert_eq!(t.checksum, want, "TCP checksum");
                (t.source_port, t.destination_port, t.checksum)
            }
            (Some(TransportHeader::Udp(u)), Some(ip)) => {
                if u.checksum != 0 {
                    let want = u.calc_checksum_ipv4(ip, payload).expect("UDP checksum");
                    assert_eq!(u.checksum, want, "UDP checksum");
                }
                (u.source_port, u.destination_port, u.checksum)
            }
            (Some(TransportHeader::Icmpv4(i)), Some(_)) => {
                assert_eq!(
                    i.checksum,
                    i.icmp_type.calc_checksum(payload),
                    "ICMP checksum of {:?}",
                    i.icmp_type
                );
                let id = match i.icmp_type {
                    Icmpv4Type::EchoRequest(e) | Icmpv4Type::EchoReply(e) => e.id,
                    Icmpv4Type::DestinationUnreachable(_)
                    | Icmpv4Type::TimeExceeded(_)
                    | Icmpv4Type::ParameterProblem(_) => {
                        quoted = Some(Box::new(Wire::quote(payload)));
                        0
                    }
                    _ => 0,
                };
                (id, i.to_bytes()[0].into(), i.checksum)
            }
            // IPv6 frames are only compared whole.
            (Some(TransportHeader::Tcp(t)), None) => {
                (t.source_port, t.destination_port, t.checksum)
            }
            (other, _) => panic!("unexpected transport header {other:?}"),
        };
        Wire {
            src,
            dst,
            sport,
            dport,
            ip_checksum,
            l4_checksum: Some(l4_checksum),
            quoted,
        }
    }

    /// The packet an ICMP error quotes: whole, or cut after the first 8
    /// bytes of its transport header (all RFC 792 promises).
    #[track_caller]
    fn quote(bytes: &[u8]) -> Wire {
        let (ip, rest) = Ipv4Header::from_slice(bytes).expect("quoted IPv4 header");
        if rest.len() >= usize::from(ip.payload_len().expect("quoted length")) {
            return Wire::from_headers(&PacketHeaders::from_ip_slice(bytes).expect("quote parses"));
        }
        assert_eq!(
            ip.header_checksum,
            ip.calc_header_checksum(),
            "quoted IPv4 header checksum"
        );
        let be = |i: usize| u16::from_be_bytes([rest[i], rest[i + 1]]);
        let (sport, dport, l4_checksum) = match ip.protocol {
            IpNumber::TCP => (be(0), be(2), None),
            IpNumber::UDP => (be(0), be(2), Some(be(6))),
            IpNumber::ICMP => (be(4), rest[0].into(), Some(be(2))),
            other => panic!("quoted protocol {other:?}"),
        };
        Wire {
            src: IpAddr::from(ip.source),
            dst: IpAddr::from(ip.destination),
            sport,
            dport,
            ip_checksum: Some(ip.header_checksum),
            l4_checksum,
            quoted: None,
        }
    }
}

/// Asserts that the program's output `out` is exactly `expected` (a frame
/// etherparse built with the translated addresses), first field by field
/// with every checksum recomputed, then byte for byte.
#[track_caller]
fn assert_wire(out: &[u8], expected: &[u8]) {
    let got = Wire::of(out);
    let want = Wire::of(expected);
    assert_eq!(got, want, "translated packet");
    assert_eq!(out, expected, "translated frame, byte for byte");
}

/// Asserts an entry's rewrite: kind, address and port (ICMP: identifier).
#[track_caller]
fn assert_rewrite(e: &CtEntry, kind: NatRewrite, to: SocketAddr) {
    assert_eq!(e.nat, kind as u8, "entry's nat");
    assert_eq!(e.nat_addr, [raw(to.ip()), 0, 0, 0], "entry's nat_addr");
    assert_eq!(
        u16::from_be(e.nat_port),
        to.port(),
        "entry's nat_port (host order)"
    );
}

#[track_caller]
fn assert_no_rewrite(e: &CtEntry) {
    assert_eq!(e.nat, NatRewrite::None as u8, "entry's nat");
}

// ---------------------------------------------------------------------------
// Source NAT (masquerade) of LAN hosts.

#[test]
fn masqueraded_tcp_leaves_from_the_wan_address_and_replies_return_to_the_lan_host() {
    let h = router(MASQUERADE, "");
    let client = sa("10.0.1.5:40000");
    let server = sa(SERVER);
    // The original port is free, so it is kept.
    let public = at(WAN_ADDR, 40000);
    let orig = tcp_key(client, server);
    let reply = tcp_key(server, public);

    // XDP on lan0: the FIB names wan0, which masquerades. The pair is
    // created with the translated reply tuple.
    let syn = tcp(client, server, TCP_SYN, 1000, 0, &[]);
    assert_eq!(h.ingress_lan(&syn), Verdict::Pass);
    let (o, r) = h.assert_pair(&orig, &reply, TcpState::SynSent, UNREPLIED);
    assert_rewrite(&o, NatRewrite::Src, public);
    assert_eq!(o.nat_ifindex, h.wan, "original entry's nat_ifindex");
    assert_rewrite(&r, NatRewrite::Dst, client);
    assert_eq!(h.conntrack_len(), 2);
    h.assert_counters(&[(AcceptNew, 1), (CtCreated, 1)]);

    // Routed out of wan0: TC egress rewrites the source.
    let (v, out) = h.forward_to_wan(&syn);
    assert_eq!(v, Verdict::Pass);
    assert_wire(&out, &tcp(public, server, TCP_SYN, 1000, 0, &[]));
    h.assert_counters(&[(AcceptNew, 1), (CtCreated, 1), (NatSrcRewritten, 1)]);

    // The SYN-ACK to the WAN address: XDP on wan0 finds the reply entry,
    // TC ingress rewrites the destination back before routing, and lan0's
    // egress has nothing left to do.
    let syn_ack = tcp(server, public, TCP_SYN | TCP_ACK, 7000, 1001, &[]);
    assert_eq!(h.ingress_wan(&syn_ack), Verdict::Pass);
    let (v, out) = h.tc_ingress(h.wan, &syn_ack);
    assert_eq!(v, Verdict::Pass);
    let to_client = tcp(server, client, TCP_SYN | TCP_ACK, 7000, 1001, &[]);
    assert_wire(&out, &to_client);
    let (v, out) = h.forward_to_lan(&out);
    assert_eq!(v, Verdict::Pass);
    assert_eq!(out, to_client, "lan0 egress leaves the reply alone");
    h.assert_pair(&orig, &reply, TcpState::SynRecv, SEEN_REPLY);

    // The client's ACK with data.
    let request = b"GET / HTTP/1.0\r\n\r\n";
    let ack = tcp(client, server, TCP_PSH | TCP_ACK, 1001, 7001, request);
    assert_eq!(h.ingress_lan(&ack), Verdict::Pass);
    let (v, out) = h.forward_to_wan(&ack);
    assert_eq!(v, Verdict::Pass);
    assert_wire(
        &out,
        &tcp(public, server, TCP_PSH | TCP_ACK, 1001, 7001, request),
    );
    h.assert_pair(&orig, &reply, TcpState::Established, SEEN_REPLY | ASSURED);
    assert_eq!(h.conntrack_len(), 2);
    h.assert_counters(&[
        (AcceptNew, 1),
        (CtCreated, 1),
        (AcceptEstablished, 2),
        (NatSrcRewritten, 2),
        (NatDstRewritten, 1),
        (SkipForwarded, 1),
        (FastPathNat, 2),
    ]);
}

#[test]
fn rst_refusing_a_masqueraded_syn_reaches_the_lan_host() {
    let h = router(MASQUERADE, "");
    let client = sa("10.0.1.5:40000");
    let server = sa(SERVER);
    let public = at(WAN_ADDR, 40000);
    let syn = tcp(client, server, TCP_SYN, 1000, 0, &[]);
    assert_eq!(h.ingress_lan(&syn), Verdict::Pass);
    let (v, _) = h.forward_to_wan(&syn);
    assert_eq!(v, Verdict::Pass);

    // Nothing listens on the server: it refuses with RST. XDP passes it
    // and ends the pair (an RST before any reply ends the connection, as in
    // netfilter) by expiring both halves, but the RST itself must still
    // reach the client, or its connect() hangs until it times out instead
    // of failing at once.
    let rst = tcp(server, public, TCP_RST | TCP_ACK, 0, 1001, &[]);
    assert_eq!(h.ingress_wan(&rst), Verdict::Pass);
    assert_expired_pair(&h, &tcp_key(client, server));
    let (v, out) = h.tc_ingress(h.wan, &rst);
    assert_eq!(v, Verdict::Pass);
    assert_wire(&out, &tcp(server, client, TCP_RST | TCP_ACK, 0, 1001, &[]));
}

#[test]
fn masqueraded_udp_and_its_reply_are_translated_with_valid_checksums() {
    let h = router(MASQUERADE, "");
    let client = sa("10.0.1.5:5353");
    let server = sa("203.0.113.53:53");
    let public = at(WAN_ADDR, 5353);

    let query = udp(client, server, b"query: example.org A");
    assert_eq!(h.ingress_lan(&query), Verdict::Pass);
    let (o, r) = h.assert_pair(
        &udp_key(client, server),
        &udp_key(server, public),
        TcpState::None,
        UNREPLIED,
    );
    assert_rewrite(&o, NatRewrite::Src, public);
    assert_rewrite(&r, NatRewrite::Dst, client);
    let (v, out) = h.forward_to_wan(&query);
    assert_eq!(v, Verdict::Pass);
    assert_wire(&out, &udp(public, server, b"query: example.org A"));

    let answer = b"answer: example.org A 192.0.2.80";
    let response = udp(server, public, answer);
    assert_eq!(h.ingress_wan(&response), Verdict::Pass);
    let (v, out) = h.tc_ingress(h.wan, &response);
    assert_eq!(v, Verdict::Pass);
    assert_wire(&out, &udp(server, client, answer));
    h.assert_counters(&[
        (AcceptNew, 1),
        (CtCreated, 1),
        (AcceptEstablished, 1),
        (NatSrcRewritten, 1),
        (NatDstRewritten, 1),
        (FastPathNat, 1),
    ]);
}

#[test]
fn udp_without_a_checksum_keeps_checksum_zero_through_both_rewrites() {
    let h = router(MASQUERADE, "");
    let client = sa("10.0.1.5:5353");
    let server = sa("203.0.113.53:53");
    let public = at(WAN_ADDR, 5353);

    let query = without_checksum(udp(client, server, b"no checksum out"));
    assert_eq!(h.ingress_lan(&query), Verdict::Pass);
    let (v, out) = h.forward_to_wan(&query);
    assert_eq!(v, Verdict::Pass);
    assert_eq!(udp_checksum(&out), 0, "checksum stays 0 (none)");
    assert_wire(
        &out,
        &without_checksum(udp(public, server, b"no checksum out")),
    );

    let response = without_checksum(udp(server, public, b"no checksum back"));
    assert_eq!(h.ingress_wan(&response), Verdict::Pass);
    let (v, out) = h.tc_ingress(h.wan, &response);
    assert_eq!(v, Verdict::Pass);
    assert_eq!(udp_checksum(&out), 0, "checksum stays 0 (none)");
    assert_wire(
        &out,
        &without_checksum(udp(server, client, b"no checksum back")),
    );
    h.assert_counters(&[
        (AcceptNew, 1),
        (CtCreated, 1),
        (AcceptEstablished, 1),
        (NatSrcRewritten, 1),
        (NatDstRewritten, 1),
        (FastPathNat, 1),
    ]);
}

#[test]
fn udp_rewrite_whose_checksum_computes_to_zero_sends_all_ones() {
    let h = router(MASQUERADE, "");
    let client = sa("10.0.1.5:5353");
    let server = sa("203.0.113.53:53");
    let public = at(WAN_ADDR, 5353);

    // Outbound: the payload makes the translated datagram's checksum come
    // out as 0, which UDP must send as 0xffff (0 would mean "none").
    let out_payload = payload_summing_to_zero(public, server);
    let query = udp(client, server, &out_payload);
    let expected = udp(public, server, &out_payload);
    assert_eq!(udp_checksum(&expected), 0xffff, "test construction");
    assert!(
        ![0, 0xffff].contains(&udp_checksum(&query)),
        "the untranslated datagram has an ordinary checksum"
    );
    assert_eq!(h.ingress_lan(&query), Verdict::Pass);
    let (v, out) = h.forward_to_wan(&query);
    assert_eq!(v, Verdict::Pass);
    assert_eq!(udp_checksum(&out), 0xffff, "computed 0 is sent as 0xffff");
    assert_wire(&out, &expected);

    // Inbound: the same for the reply translated back to the client.
    let back_payload = payload_summing_to_zero(server, client);
    let response = udp(server, public, &back_payload);
    let expected = udp(server, client, &back_payload);
    assert_eq!(udp_checksum(&expected), 0xffff, "test construction");
    assert!(![0, 0xffff].contains(&udp_checksum(&response)));
    assert_eq!(h.ingress_wan(&response), Verdict::Pass);
    let (v, out) = h.tc_ingress(h.wan, &response);
    assert_eq!(v, Verdict::Pass);
    assert_eq!(udp_checksum(&out), 0xffff, "computed 0 is sent as 0xffff");
    assert_wire(&out, &expected);
}

#[test]
fn echo_request_gets_the_wan_address_and_a_free_id_and_its_reply_is_translated_back() {
    let h = router(MASQUERADE, "");
    let server = ip("203.0.113.7");
    let wan = ip(WAN_ADDR);
    let (first, second) = (ip("10.0.1.5"), ip("10.0.1.6"));
    const ID: u16 = 0x1234;

    // The first host's identifier is free on the WAN address: kept.
    let ping = echo(first, server, true, ID, 1);
    assert_eq!(h.ingress_lan(&ping), Verdict::Pass);
    let (o, _) = h.assert_pair(
        &icmp_key(first, server, ID, 8),
        &icmp_key(server, wan, ID, 0),
        TcpState::None,
        UNREPLIED,
    );
    assert_rewrite(&o, NatRewrite::Src, SocketAddr::new(wan, ID));
    let (v, out) = h.forward_to_wan(&ping);
    assert_eq!(v, Verdict::Pass);
    assert_wire(&out, &echo(wan, server, true, ID, 1));

    // The second host pings the same server with the same identifier:
    // (server, WAN address, ID) is taken, so it gets another one.
    let ping = echo(second, server, true, ID, 1);
    assert_eq!(h.ingress_lan(&ping), Verdict::Pass);
    let orig = icmp_key(second, server, ID, 8);
    let o = h.entry(&orig).expect("second host's original entry");
    let new_id = u16::from_be(o.nat_port);
    assert_ne!(new_id, ID, "the taken identifier is not reused");
    assert!(
        new_id >= 1024,
        "identifier {new_id} from nat_ports 1024-65535"
    );
    let (o, r) = h.assert_pair(
        &orig,
        &icmp_key(server, wan, new_id, 0),
        TcpState::None,
        UNREPLIED,
    );
    assert_rewrite(&o, NatRewrite::Src, SocketAddr::new(wan, new_id));
    assert_rewrite(&r, NatRewrite::Dst, SocketAddr::new(second, ID));
    let (v, out) = h.forward_to_wan(&ping);
    assert_eq!(v, Verdict::Pass);
    assert_wire(&out, &echo(wan, server, true, new_id, 1));

    // Each reply goes back to its own host with its own identifier.
    for (host, wire_id) in [(second, new_id), (first, ID)] {
        let pong = echo(server, wan, false, wire_id, 1);
        assert_eq!(h.ingress_wan(&pong), Verdict::Pass, "reply for {host}");
        let (v, out) = h.tc_ingress(h.wan, &pong);
        assert_eq!(v, Verdict::Pass);
        assert_wire(&out, &echo(server, host, false, ID, 1));
    }
    assert_eq!(h.conntrack_len(), 4);
    h.assert_counters(&[
        (AcceptNew, 2),
        (CtCreated, 2),
        (NatPortRemapped, 1),
        (AcceptEstablished, 2),
        (NatSrcRewritten, 2),
        (NatDstRewritten, 2),
        (FastPathNat, 2),
    ]);
}

#[test]
fn second_lan_host_with_the_same_source_port_gets_another_port_from_nat_ports() {
    let h = router(&format!("{MASQUERADE}\nnat_ports = \"50000-50099\""), "");
    let server = sa(SERVER);
    let first = sa("10.0.1.5:40000");
    let second = sa("10.0.1.6:40000");

    for c in [first, second] {
        assert_eq!(
            h.ingress_lan(&tcp(c, server, TCP_SYN, 1000, 0, &[])),
            Verdict::Pass,
            "SYN from {c}"
        );
    }
    // The first keeps its port (free, even outside nat_ports, as
    // netfilter does); the second's translated tuple would be the same, so
    // it gets a port from nat_ports.
    let first_public = at(WAN_ADDR, 40000);
    let (o1, r1) = h.assert_pair(
        &tcp_key(first, server),
        &tcp_key(server, first_public),
        TcpState::SynSent,
        UNREPLIED,
    );
    assert_rewrite(&o1, NatRewrite::Src, first_public);
    assert_rewrite(&r1, NatRewrite::Dst, first);
    let o2 = h
        .entry(&tcp_key(second, server))
        .expect("second host's original entry");
    let port = u16::from_be(o2.nat_port);
    assert!(
        (50000..=50099).contains(&port),
        "second host's port {port} from nat_ports"
    );
    let second_public = at(WAN_ADDR, port);
    let (o2, r2) = h.assert_pair(
        &tcp_key(second, server),
        &tcp_key(server, second_public),
        TcpState::SynSent,
        UNREPLIED,
    );
    assert_rewrite(&o2, NatRewrite::Src, second_public);
    assert_rewrite(&r2, NatRewrite::Dst, second);
    assert_eq!(h.conntrack_len(), 4);
    h.assert_counters(&[(AcceptNew, 2), (CtCreated, 2), (NatPortRemapped, 1)]);

    // Both translate out, and each SYN-ACK finds its own host.
    for (c, public) in [(first, first_public), (second, second_public)] {
        let (v, out) = h.forward_to_wan(&tcp(c, server, TCP_SYN, 1000, 0, &[]));
        assert_eq!(v, Verdict::Pass);
        assert_wire(&out, &tcp(public, server, TCP_SYN, 1000, 0, &[]));
    }
    for (c, public) in [(second, second_public), (first, first_public)] {
        let syn_ack = tcp(server, public, TCP_SYN | TCP_ACK, 9000, 1001, &[]);
        assert_eq!(
            h.ingress_wan(&syn_ack),
            Verdict::Pass,
            "SYN-ACK to {public}"
        );
        let (v, out) = h.tc_ingress(h.wan, &syn_ack);
        assert_eq!(v, Verdict::Pass);
        assert_wire(&out, &tcp(server, c, TCP_SYN | TCP_ACK, 9000, 1001, &[]));
    }
    h.assert_counters(&[
        (AcceptNew, 2),
        (CtCreated, 2),
        (NatPortRemapped, 1),
        (AcceptEstablished, 2),
        (NatSrcRewritten, 2),
        (NatDstRewritten, 2),
        (FastPathNat, 2),
    ]);
}

#[test]
fn connection_is_refused_when_every_port_of_nat_ports_is_taken() {
    // Two ports. The first host keeps its port 40000 (in the range), the
    // second gets 40001, and the third has nothing left: its original port
    // and the whole range are taken towards this server.
    let h = router(&format!("{MASQUERADE}\nnat_ports = \"40000-40001\""), "");
    let server = sa(SERVER);
    let hosts = [
        sa("10.0.1.5:40000"),
        sa("10.0.1.6:40000"),
        sa("10.0.1.7:40000"),
    ];
    for (c, port) in hosts[..2].iter().zip([40000, 40001]) {
        assert_eq!(
            h.ingress_lan(&tcp(*c, server, TCP_SYN, 1000, 0, &[])),
            Verdict::Pass,
            "SYN from {c}"
        );
        let (o, _) = h.assert_pair(
            &tcp_key(*c, server),
            &tcp_key(server, at(WAN_ADDR, port)),
            TcpState::SynSent,
            UNREPLIED,
        );
        assert_rewrite(&o, NatRewrite::Src, at(WAN_ADDR, port));
    }
    let third = tcp(hosts[2], server, TCP_SYN, 1000, 0, &[]);
    assert_eq!(h.ingress_lan(&third), Verdict::Drop);
    assert_eq!(h.entry(&tcp_key(hosts[2], server)), None);
    assert_eq!(h.conntrack_len(), 4, "only the first two connections");
    h.assert_counters(&[
        (AcceptNew, 2),
        (CtCreated, 2),
        (NatPortRemapped, 1),
        (DropNatExhausted, 1),
    ]);
}

// ---------------------------------------------------------------------------
// Port forwards (destination NAT).

const TCP_FORWARD: &str = "[[port_forward]]\nproto = \"tcp\"\nport = 8080\nto = \"10.0.1.10:80\"\n";
const UDP_FORWARD: &str = "[[port_forward]]\nproto = \"udp\"\nport = 5060\nto = \"10.0.1.10\"\n";

#[test]
fn port_forwarded_tcp_reaches_the_lan_server_and_its_replies_leave_from_the_forwarded_port() {
    let h = router(MASQUERADE, TCP_FORWARD);
    let client = sa("198.51.100.20:51000");
    let public = at(WAN_ADDR, 8080);
    let target = sa("10.0.1.10:80");
    let orig = tcp_key(client, public);
    let reply = tcp_key(target, client);

    // XDP on wan0 lets the new connection in through the forward.
    let syn = tcp(client, public, TCP_SYN, 100, 0, &[]);
    assert_eq!(h.ingress_wan(&syn), Verdict::Pass);
    let (o, r) = h.assert_pair(&orig, &reply, TcpState::SynSent, UNREPLIED);
    assert_rewrite(&o, NatRewrite::Dst, target);
    assert_rewrite(&r, NatRewrite::Src, public);
    h.assert_counters(&[(AcceptPortForward, 1), (CtCreated, 1)]);

    // TC ingress on wan0 sends it to the LAN server; lan0's egress leaves
    // it alone.
    let (v, out) = h.tc_ingress(h.wan, &syn);
    assert_eq!(v, Verdict::Pass);
    let to_target = tcp(client, target, TCP_SYN, 100, 0, &[]);
    assert_wire(&out, &to_target);
    let (v, out) = h.forward_to_lan(&out);
    assert_eq!(v, Verdict::Pass);
    assert_eq!(out, to_target);

    // The server's SYN-ACK: XDP on lan0 finds the reply entry, TC ingress
    // on lan0 has nothing to do, TC egress on wan0 puts the forwarded
    // address and port back as its source.
    let syn_ack = tcp(target, client, TCP_SYN | TCP_ACK, 3000, 101, &[]);
    assert_eq!(h.ingress_lan(&syn_ack), Verdict::Pass);
    let (v, out) = h.tc_ingress(h.lan, &syn_ack);
    assert_eq!(v, Verdict::Pass);
    assert_eq!(out, syn_ack, "lan0 ingress leaves the reply alone");
    let (v, out) = h.forward_to_wan(&syn_ack);
    assert_eq!(v, Verdict::Pass);
    assert_wire(
        &out,
        &tcp(public, client, TCP_SYN | TCP_ACK, 3000, 101, &[]),
    );

    // The client's ACK follows the same path as its SYN.
    let ack = tcp(client, public, TCP_ACK, 101, 3001, &[]);
    assert_eq!(h.ingress_wan(&ack), Verdict::Pass);
    let (v, out) = h.tc_ingress(h.wan, &ack);
    assert_eq!(v, Verdict::Pass);
    assert_wire(&out, &tcp(client, target, TCP_ACK, 101, 3001, &[]));
    h.assert_pair(&orig, &reply, TcpState::Established, SEEN_REPLY | ASSURED);
    assert_eq!(h.conntrack_len(), 2);
    h.assert_counters(&[
        (AcceptPortForward, 1),
        (CtCreated, 1),
        (AcceptEstablished, 2),
        (NatDstRewritten, 2),
        (NatSrcRewritten, 1),
        (SkipForwarded, 1),
        (FastPathNat, 2),
    ]);
}

#[test]
fn rst_from_a_port_forward_target_leaves_from_the_forwarded_address_and_port() {
    let h = router(MASQUERADE, TCP_FORWARD);
    let client = sa("198.51.100.20:51000");
    let public = at(WAN_ADDR, 8080);
    let target = sa("10.0.1.10:80");
    let syn = tcp(client, public, TCP_SYN, 100, 0, &[]);
    assert_eq!(h.ingress_wan(&syn), Verdict::Pass);
    let (v, _) = h.tc_ingress(h.wan, &syn);
    assert_eq!(v, Verdict::Pass);

    // The service on the target is down: it refuses with RST, which ends
    // the connection at XDP but must still reach the client translated.
    let rst = tcp(target, client, TCP_RST | TCP_ACK, 0, 101, &[]);
    assert_eq!(h.ingress_lan(&rst), Verdict::Pass);
    assert_expired_pair(&h, &tcp_key(client, public));
    let (v, out) = h.forward_to_wan(&rst);
    assert_eq!(v, Verdict::Pass, "the RST leaves wan0");
    assert_wire(&out, &tcp(public, client, TCP_RST | TCP_ACK, 0, 101, &[]));
}

#[test]
fn port_forwarded_udp_reaches_the_lan_server_and_its_reply_leaves_from_the_forwarded_port() {
    // No masquerade on wan0: port forwarding works on its own.
    let h = router("", UDP_FORWARD);
    let client = sa("198.51.100.20:5062");
    let public = at(WAN_ADDR, 5060);
    let target = sa("10.0.1.10:5060");
    let orig = udp_key(client, public);
    let reply = udp_key(target, client);

    let invite = udp(client, public, b"INVITE sip:bob@example.org SIP/2.0");
    assert_eq!(h.ingress_wan(&invite), Verdict::Pass);
    let (o, r) = h.assert_pair(&orig, &reply, TcpState::None, UNREPLIED);
    assert_rewrite(&o, NatRewrite::Dst, target);
    assert_rewrite(&r, NatRewrite::Src, public);
    let (v, out) = h.tc_ingress(h.wan, &invite);
    assert_eq!(v, Verdict::Pass);
    assert_wire(
        &out,
        &udp(client, target, b"INVITE sip:bob@example.org SIP/2.0"),
    );

    let ringing = udp(target, client, b"SIP/2.0 180 Ringing");
    assert_eq!(h.ingress_lan(&ringing), Verdict::Pass);
    let (v, out) = h.forward_to_wan(&ringing);
    assert_eq!(v, Verdict::Pass);
    assert_wire(&out, &udp(public, client, b"SIP/2.0 180 Ringing"));
    h.assert_pair(&orig, &reply, TcpState::None, SEEN_REPLY);
    h.assert_counters(&[
        (AcceptPortForward, 1),
        (CtCreated, 1),
        (AcceptEstablished, 1),
        (NatDstRewritten, 1),
        (NatSrcRewritten, 1),
        (FastPathNat, 1),
    ]);
}

// ---------------------------------------------------------------------------
// What never leaves translated, and what is never translated.

#[test]
fn forwarded_ipv4_packet_without_a_translation_does_not_leave_the_masquerading_interface() {
    let h = router(MASQUERADE, "");
    // A LAN host's segment XDP never created a connection for (say, the
    // table lost it): it must not reach the WAN with a private source.
    let stray = tcp(
        sa("10.0.1.5:40000"),
        sa(SERVER),
        TCP_PSH | TCP_ACK,
        1000,
        2000,
        b"x",
    );
    let (v, out) = h.forward_to_wan(&stray);
    assert_eq!(v, Verdict::Drop);
    assert_eq!(out, stray, "dropped untouched");
    assert_eq!(h.conntrack_len(), 0);
    h.assert_counters(&[(DropNatUntranslated, 1)]);
}

#[test]
fn ipv6_through_the_masquerading_interface_passes_untranslated() {
    let h = router(MASQUERADE, "");
    let client = sa("[fd00:1::5]:40000");
    let server = sa("[2001:db8::7]:80");
    let syn = tcp(client, server, TCP_SYN, 1000, 0, &[]);
    assert_eq!(h.ingress_lan(&syn), Verdict::Pass);
    let (o, r) = h.assert_conn(&tcp_key(client, server), TcpState::SynSent, UNREPLIED);
    assert_no_rewrite(&o);
    assert_no_rewrite(&r);
    let (v, out) = h.forward_to_wan(&syn);
    assert_eq!(v, Verdict::Pass);
    assert_eq!(out, syn, "IPv6 leaves as it came");

    let syn_ack = tcp(server, client, TCP_SYN | TCP_ACK, 5000, 1001, &[]);
    assert_eq!(h.ingress_wan(&syn_ack), Verdict::Pass);
    let (v, out) = h.tc_ingress(h.wan, &syn_ack);
    assert_eq!(v, Verdict::Pass);
    assert_eq!(out, syn_ack, "IPv6 comes in as it was sent");
    let (v, out) = h.forward_to_lan(&syn_ack);
    assert_eq!(v, Verdict::Pass);
    assert_eq!(out, syn_ack);
    h.assert_counters(&[
        (AcceptNew, 1),
        (CtCreated, 1),
        (AcceptEstablished, 1),
        (SkipForwarded, 2),
        (FastPathNoNeigh, 1),
    ]);
}

// ---------------------------------------------------------------------------
// Bindings that can no longer be honoured.

/// Runs a masqueraded handshake of `client` with `server` through every
/// hook (`public`: the client's translated address and port). The client's
/// next sequence number is 1001, the server's 7001.
fn masqueraded_handshake(h: &Harness, client: SocketAddr, server: SocketAddr, public: SocketAddr) {
    let syn = tcp(client, server, TCP_SYN, 1000, 0, &[]);
    assert_eq!(h.ingress_lan(&syn), Verdict::Pass);
    let (v, out) = h.forward_to_wan(&syn);
    assert_eq!(v, Verdict::Pass);
    assert_wire(&out, &tcp(public, server, TCP_SYN, 1000, 0, &[]));
    let syn_ack = tcp(server, public, TCP_SYN | TCP_ACK, 7000, 1001, &[]);
    assert_eq!(h.ingress_wan(&syn_ack), Verdict::Pass);
    let (v, _) = h.tc_ingress(h.wan, &syn_ack);
    assert_eq!(v, Verdict::Pass);
    let ack = tcp(client, server, TCP_ACK, 1001, 7001, &[]);
    assert_eq!(h.ingress_lan(&ack), Verdict::Pass);
    let (v, out) = h.forward_to_wan(&ack);
    assert_eq!(v, Verdict::Pass);
    assert_wire(&out, &tcp(public, server, TCP_ACK, 1001, 7001, &[]));
    h.assert_pair(
        &tcp_key(client, server),
        &tcp_key(server, public),
        TcpState::Established,
        SEEN_REPLY | ASSURED,
    );
}

/// The counters after [`masqueraded_handshake`] and one more packet of the
/// connection through XDP, plus `last`.
fn after_handshake_and_one_more(last: Counter) -> [(Counter, u64); 7] {
    [
        (AcceptNew, 1),
        (CtCreated, 1),
        (AcceptEstablished, 3),
        // Translated: every established packet takes the stack.
        (FastPathNat, 3),
        (NatSrcRewritten, 2),
        (NatDstRewritten, 1),
        (last, 1),
    ]
}

#[test]
fn masqueraded_connection_that_lost_its_reply_half_is_dropped_and_deleted_at_egress() {
    let mut h = router(MASQUERADE, "");
    let client = sa("10.0.1.5:40000");
    let server = sa(SERVER);
    let public = at(WAN_ADDR, 40000);
    masqueraded_handshake(&h, client, server, public);

    // The LRU evicts the reply half: replies could no longer be translated
    // back.
    h.maps
        .conntrack
        .remove(&tcp_key(server, public))
        .expect("removing the reply entry");

    // XDP still finds the original half; egress refuses to send with a
    // binding replies cannot follow, and deletes the orphan.
    let data = tcp(client, server, TCP_PSH | TCP_ACK, 1001, 7001, b"more");
    assert_eq!(h.ingress_lan(&data), Verdict::Pass);
    let (v, _) = h.forward_to_wan(&data);
    assert_eq!(v, Verdict::Drop);
    assert_eq!(h.entry(&tcp_key(client, server)), None, "original half");
    assert_eq!(h.conntrack_len(), 0);
    h.assert_counters(&after_handshake_and_one_more(DropNatPairBroken));

    // The next packet starts a complete pair again (a mid-stream pickup
    // from the LAN) and is translated.
    let next = tcp(client, server, TCP_PSH | TCP_ACK, 1001, 7001, b"more");
    assert_eq!(h.ingress_lan(&next), Verdict::Pass);
    h.assert_pair(
        &tcp_key(client, server),
        &tcp_key(server, public),
        TcpState::Established,
        UNREPLIED,
    );
    let (v, out) = h.forward_to_wan(&next);
    assert_eq!(v, Verdict::Pass);
    assert_wire(
        &out,
        &tcp(public, server, TCP_PSH | TCP_ACK, 1001, 7001, b"more"),
    );
}

#[test]
fn masqueraded_reply_whose_original_half_is_gone_is_dropped_and_deleted_at_ingress() {
    let mut h = router(MASQUERADE, "");
    let client = sa("10.0.1.5:40000");
    let server = sa(SERVER);
    let public = at(WAN_ADDR, 40000);
    masqueraded_handshake(&h, client, server, public);
    h.maps
        .conntrack
        .remove(&tcp_key(client, server))
        .expect("removing the original entry");

    // TC ingress will not translate for a connection whose other half is
    // gone, and deletes the orphan. (XDP, which reads a TCP connection's
    // windows from its original entry, stops such a segment first: see
    // the next test. TC's guard is what remains for the rest.)
    let data = tcp(server, public, TCP_PSH | TCP_ACK, 7001, 1001, b"reply");
    let (v, _) = h.tc_ingress(h.wan, &data);
    assert_eq!(v, Verdict::Drop);
    assert_eq!(h.entry(&tcp_key(server, public)), None, "reply half");
    assert_eq!(h.conntrack_len(), 0);
    let mut want = after_handshake_and_one_more(DropNatPairBroken).to_vec();
    // The segment never went through XDP.
    want[2].1 -= 1;
    want[3].1 -= 1;
    h.assert_counters(&want);
}

#[test]
fn tcp_reply_whose_original_half_is_gone_is_new_at_xdp_and_its_orphan_deleted() {
    let mut h = router(MASQUERADE, "");
    let client = sa("10.0.1.5:40000");
    let server = sa(SERVER);
    let public = at(WAN_ADDR, 40000);
    masqueraded_handshake(&h, client, server, public);
    h.maps
        .conntrack
        .remove(&tcp_key(client, server))
        .expect("removing the original entry");

    // Half a connection is no connection: the reply is NEW from the WAN.
    let data = tcp(server, public, TCP_PSH | TCP_ACK, 7001, 1001, b"reply");
    assert_eq!(h.ingress_wan(&data), Verdict::Drop);
    assert_eq!(h.entry(&tcp_key(server, public)), None, "reply half");
    assert_eq!(h.conntrack_len(), 0);
    h.assert_counters(&[
        (AcceptNew, 1),
        (CtCreated, 1),
        (AcceptEstablished, 2),
        (FastPathNat, 2),
        (NatSrcRewritten, 2),
        (NatDstRewritten, 1),
        (CtExpiredInPath, 1),
        // A mid-stream segment from the WAN: NEW, which policy drops.
        (DropPolicy, 1),
    ]);
}

#[test]
fn masquerade_binding_to_a_former_wan_address_is_dropped_and_deleted_after_the_address_changes() {
    let mut h = router(MASQUERADE, "");
    let client = sa("10.0.1.5:40000");
    let server = sa(SERVER);
    let public = at(WAN_ADDR, 40000);
    masqueraded_handshake(&h, client, server, public);

    // wan0's address changes, and the daemon brings IFACES up to date.
    h.ip("addr del 10.0.2.1/24 dev wan0");
    h.ip("addr add 10.0.2.9/24 dev wan0");
    h.ip("route replace default via 10.0.2.254 dev wan0");
    assert_eq!(h.refresh_masquerade(), vec!["wan0".to_string()]);
    let cfg = h.maps.ifaces.get(&h.wan, 0).expect("wan0 in IFACES");
    assert_eq!(cfg.nat_addr, raw(ip("10.0.2.9")));

    // The next packet of the old binding would leave from an address the
    // router no longer has: dropped, and the connection deleted.
    let data = tcp(client, server, TCP_PSH | TCP_ACK, 1001, 7001, b"more");
    assert_eq!(h.ingress_lan(&data), Verdict::Pass);
    let (v, _) = h.forward_to_wan(&data);
    assert_eq!(v, Verdict::Drop);
    h.assert_no_conn(&tcp_key(client, server));
    assert_eq!(h.entry(&tcp_key(server, public)), None, "reply half");
    assert_eq!(h.conntrack_len(), 0);
    h.assert_counters(&after_handshake_and_one_more(DropNatStale));

    // A new connection is bound to the new address.
    let new_public = at("10.0.2.9", 40001);
    let client2 = sa("10.0.1.5:40001");
    let syn = tcp(client2, server, TCP_SYN, 1000, 0, &[]);
    assert_eq!(h.ingress_lan(&syn), Verdict::Pass);
    let (v, out) = h.forward_to_wan(&syn);
    assert_eq!(v, Verdict::Pass);
    assert_wire(&out, &tcp(new_public, server, TCP_SYN, 1000, 0, &[]));
}

// ---------------------------------------------------------------------------
// The host's own traffic.

#[test]
fn host_originated_syn_leaving_a_snat_interface_is_translated_from_its_first_packet() {
    // SNAT to an address other than the interface's own: every packet the
    // host sends out of wan0 must carry 10.0.2.100.
    let h = router("snat = \"10.0.2.100\"", "");
    let host = sa("10.0.2.1:45000");
    let server = sa("203.0.113.7:443");
    let public = at("10.0.2.100", 45000);

    let syn = tcp(host, server, TCP_SYN, 1000, 0, &[]);
    let (v, out) = h.tc_egress_on(HOST_ORIGINATED, h.wan, &syn);
    assert_eq!(v, Verdict::Pass);
    let (o, r) = h.assert_pair(
        &tcp_key(host, server),
        &tcp_key(server, public),
        TcpState::SynSent,
        UNREPLIED,
    );
    assert_rewrite(&o, NatRewrite::Src, public);
    assert_rewrite(&r, NatRewrite::Dst, host);
    assert_wire(&out, &tcp(public, server, TCP_SYN, 1000, 0, &[]));
}

#[test]
fn host_originated_syn_whose_port_a_masqueraded_connection_holds_leaves_on_another_port() {
    let h = router(MASQUERADE, "");
    let server = sa("203.0.113.7:443");
    // A LAN host's connection holds WAN_ADDR:45000 towards the server.
    let lan_client = sa("10.0.1.5:45000");
    let public = at(WAN_ADDR, 45000);
    assert_eq!(
        h.ingress_lan(&tcp(lan_client, server, TCP_SYN, 1000, 0, &[])),
        Verdict::Pass
    );
    h.assert_pair(
        &tcp_key(lan_client, server),
        &tcp_key(server, public),
        TcpState::SynSent,
        UNREPLIED,
    );

    // The host picks the same port for its own connection to that server:
    // on the wire it would be the LAN host's connection, so it must leave
    // on another port, from its first packet on.
    let syn = tcp(public, server, TCP_SYN, 5000, 0, &[]);
    let (v, out) = h.tc_egress_on(HOST_ORIGINATED, h.wan, &syn);
    assert_eq!(v, Verdict::Pass);
    let o = h
        .entry(&tcp_key(public, server))
        .expect("host connection's original entry");
    let port = u16::from_be(o.nat_port);
    assert_ne!(port, 45000);
    let remapped = at(WAN_ADDR, port);
    assert_rewrite(&o, NatRewrite::Src, remapped);
    h.assert_pair(
        &tcp_key(public, server),
        &tcp_key(server, remapped),
        TcpState::SynSent,
        UNREPLIED,
    );
    assert_wire(&out, &tcp(remapped, server, TCP_SYN, 5000, 0, &[]));
}

// ---------------------------------------------------------------------------
// ICMP errors about translated connections.

#[test]
fn icmp_error_about_a_masqueraded_datagram_is_related_and_translated_back_to_the_lan_host() {
    let h = router(MASQUERADE, "");
    let client = sa("10.0.1.5:5353");
    let server = sa("203.0.113.53:53");
    let public = at(WAN_ADDR, 5353);
    let query = udp(client, server, b"query");
    assert_eq!(h.ingress_lan(&query), Verdict::Pass);
    let (v, _) = h.forward_to_wan(&query);
    assert_eq!(v, Verdict::Pass);

    // The server answers with port unreachable, quoting the datagram as
    // it received it: from the WAN address.
    let error = port_unreachable(
        server.ip(),
        public.ip(),
        &udp_ip_packet(public, server, b"query"),
    );
    assert_eq!(h.ingress_wan(&error), Verdict::Pass, "RELATED at XDP");
    let (v, out) = h.tc_ingress(h.wan, &error);
    assert_eq!(v, Verdict::Pass);
    // netfilter translates the error like the connection's replies: outer
    // destination and the quoted source back to the LAN host, with every
    // checksum fixed.
    assert_wire(
        &out,
        &port_unreachable(
            server.ip(),
            client.ip(),
            &udp_ip_packet(client, server, b"query"),
        ),
    );
}

/// An ICMPv4 error of type `ty` from `from` to `to`, quoting `quoted` (an
/// IP packet, whole or cut short).
fn icmp_error(from: IpAddr, to: IpAddr, ty: Icmpv4Type, quoted: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    plain(from, to)
        .icmpv4(ty)
        .write(&mut out, quoted)
        .expect("building ICMP error");
    out
}

/// The IP packet inside a plain Ethernet frame.
fn ip_packet(frame: &[u8]) -> &[u8] {
    &frame[ETH_LEN..]
}

const FRAG_NEEDED: Icmpv4Type =
    Icmpv4Type::DestinationUnreachable(icmpv4::DestUnreachableHeader::FragmentationNeeded {
        next_hop_mtu: 1400,
    });
const TTL_EXCEEDED: Icmpv4Type =
    Icmpv4Type::TimeExceeded(icmpv4::TimeExceededCode::TtlExceededInTransit);
/// A router on the path, neither end of any connection.
const ROUTER_ON_PATH: &str = "198.51.100.1";

#[test]
fn fragmentation_needed_about_a_remapped_tcp_connection_reaches_the_lan_host_with_its_own_port() {
    let h = router(&format!("{MASQUERADE}\nnat_ports = \"50000-50099\""), "");
    let server = sa(SERVER);
    let (first, second) = (sa("10.0.1.5:40000"), sa("10.0.1.6:40000"));
    for c in [first, second] {
        assert_eq!(
            h.ingress_lan(&tcp(c, server, TCP_SYN, 1000, 0, &[])),
            Verdict::Pass
        );
    }
    let o = h
        .entry(&tcp_key(second, server))
        .expect("second host's entry");
    let public = at(WAN_ADDR, u16::from_be(o.nat_port));
    assert_ne!(public.port(), 40000, "test construction: a remapped port");

    // A router on the path cannot forward the second host's segment and
    // says so (path MTU discovery), quoting it as it left wan0: the IP
    // header and the first 8 bytes of TCP.
    let segment =
        |from: SocketAddr| tcp(from, server, TCP_PSH | TCP_ACK, 1001, 7001, &[0x55; 1400]);
    let quote = |from: SocketAddr| ip_packet(&segment(from))[..28].to_vec();
    let error = icmp_error(ip(ROUTER_ON_PATH), public.ip(), FRAG_NEEDED, &quote(public));
    assert_eq!(h.ingress_wan(&error), Verdict::Pass, "RELATED at XDP");
    let (v, out) = h.tc_ingress(h.wan, &error);
    assert_eq!(v, Verdict::Pass);
    assert_wire(
        &out,
        &icmp_error(ip(ROUTER_ON_PATH), second.ip(), FRAG_NEEDED, &quote(second)),
    );
    h.assert_counters(&[
        (AcceptNew, 2),
        (CtCreated, 2),
        (NatPortRemapped, 1),
        (AcceptRelated, 1),
        (NatDstRewritten, 1),
    ]);
}

#[test]
fn time_exceeded_about_a_remapped_echo_request_reaches_the_lan_host_with_its_own_identifier() {
    let h = router(MASQUERADE, "");
    let server = ip("203.0.113.7");
    let wan = ip(WAN_ADDR);
    let (first, second) = (ip("10.0.1.5"), ip("10.0.1.6"));
    const ID: u16 = 0x1234;
    for host in [first, second] {
        assert_eq!(
            h.ingress_lan(&echo(host, server, true, ID, 1)),
            Verdict::Pass
        );
    }
    let o = h
        .entry(&icmp_key(second, server, ID, 8))
        .expect("second host's entry");
    let new_id = u16::from_be(o.nat_port);
    assert_ne!(new_id, ID, "test construction: a remapped identifier");

    // The TTL ran out on the way (traceroute -I): the whole request is
    // quoted, so its ICMP checksum must come back right too.
    let quoted = echo(wan, server, true, new_id, 1);
    let error = icmp_error(ip(ROUTER_ON_PATH), wan, TTL_EXCEEDED, ip_packet(&quoted));
    assert_eq!(h.ingress_wan(&error), Verdict::Pass, "RELATED at XDP");
    let (v, out) = h.tc_ingress(h.wan, &error);
    assert_eq!(v, Verdict::Pass);
    let original = echo(second, server, true, ID, 1);
    assert_wire(
        &out,
        &icmp_error(
            ip(ROUTER_ON_PATH),
            second,
            TTL_EXCEEDED,
            ip_packet(&original),
        ),
    );
    h.assert_counters(&[
        (AcceptNew, 2),
        (CtCreated, 2),
        (NatPortRemapped, 1),
        (AcceptRelated, 1),
        (NatDstRewritten, 1),
    ]);
}

#[test]
fn port_unreachable_from_a_port_forward_target_leaves_from_the_forwarded_address_and_port() {
    let h = router(MASQUERADE, UDP_FORWARD);
    let client = sa("198.51.100.20:5062");
    let public = at(WAN_ADDR, 5060);
    let target = sa("10.0.1.10:5060");
    let invite = udp(client, public, b"INVITE");
    assert_eq!(h.ingress_wan(&invite), Verdict::Pass);
    let (v, _) = h.tc_ingress(h.wan, &invite);
    assert_eq!(v, Verdict::Pass);

    // Nothing listens on the target: it answers about the datagram as it
    // received it. Leaving wan0, the error must carry the address the
    // client sent to, outside and inside.
    let error = port_unreachable(
        target.ip(),
        client.ip(),
        &udp_ip_packet(client, target, b"INVITE"),
    );
    assert_eq!(h.ingress_lan(&error), Verdict::Pass, "RELATED at XDP");
    let (v, out) = h.forward_to_wan(&error);
    assert_eq!(v, Verdict::Pass);
    assert_wire(
        &out,
        &port_unreachable(
            public.ip(),
            client.ip(),
            &udp_ip_packet(client, public, b"INVITE"),
        ),
    );
    h.assert_counters(&[
        (AcceptPortForward, 1),
        (CtCreated, 1),
        (NatDstRewritten, 1),
        (AcceptRelated, 1),
        (NatSrcRewritten, 1),
    ]);
}

/// Both halves of the connection with original key `orig` are still in the
/// map but expired: the datapath treats them as gone.
#[track_caller]
fn assert_expired_pair(h: &Harness, orig: &CtKey) {
    let e = h.entry(orig).expect("original half still present");
    assert_eq!(
        expires_in(&e),
        std::time::Duration::ZERO,
        "original half expired"
    );
    let r = h.entry(&e.peer).expect("reply half still present");
    assert_eq!(
        expires_in(&r),
        std::time::Duration::ZERO,
        "reply half expired"
    );
    assert_eq!(h.conntrack_len(), 2);
}
