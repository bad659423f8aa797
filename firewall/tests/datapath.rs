//! The datapath under BPF_PROG_TEST_RUN: packets built with etherparse go
//! through the real XDP and TC programs of a private instance, and each test
//! asserts the verdict, the CONNTRACK entries and the exact STATS counters
//! (which prove the path a packet took).
//!
//! Topology (see `common`): `wan0` (role wan) and `lan0` (role lan) in a
//! namespace of the test's own, plus the host itself, whose packets the TC
//! egress program sees with `ingress_ifindex == 0`. Addresses: LAN hosts in
//! 10.1.0.0/24 and fd00:1::/64, remote servers in documentation ranges.
//!
//! Needs root (BPF and namespaces): `cargo test -p firewall --test datapath`.

mod common;

use std::{net::IpAddr, time::Duration};

use common::*;
use etherparse::{IpHeaders, IpNumber, Ipv4Options, Ipv6Extensions, Ipv6RawExtHeader, VlanId};
use firewall_common::{
    Counter::*,
    TcpState,
    tcp::{TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG},
};

/// ifindex of `lo`, which no test configures.
const LO: u32 = 1;

const V4_CLIENT: &str = "10.1.0.5:40000";
const V4_SERVER: &str = "203.0.113.7:80";
const V6_CLIENT: &str = "[fd00:1::5]:40000";
const V6_SERVER: &str = "[2001:db8::7]:80";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("IP address")
}

/// Runs the three-way handshake of `c` (client on the LAN, server beyond
/// the WAN) and checks each step passes.
fn handshake(h: &Harness, c: &mut TcpConv) {
    assert_eq!(h.ingress_lan(&c.client_sends(TCP_SYN, &[])), Verdict::Pass);
    assert_eq!(
        h.ingress_wan(&c.server_sends(TCP_SYN | TCP_ACK, &[])),
        Verdict::Pass
    );
    assert_eq!(h.ingress_lan(&c.client_sends(TCP_ACK, &[])), Verdict::Pass);
}

// ---------------------------------------------------------------------------
// TCP state machine.

#[test]
fn tcp_handshake_from_lan_reaches_established_and_data_passes_both_ways() {
    for (client, server) in [(V4_CLIENT, V4_SERVER), (V6_CLIENT, V6_SERVER)] {
        let h = Harness::new("");
        let mut c = TcpConv::new(client, server);
        let key = c.key();

        let syn = c.client_sends(TCP_SYN, &[]);
        assert_eq!(h.ingress_lan(&syn), Verdict::Pass, "SYN {client}");
        let (o, r) = h.assert_conn(&key, TcpState::SynSent, UNREPLIED);
        assert_timeout(&o, 120);
        assert_timeout(&r, 120);
        assert_eq!((o.packets, o.bytes), (1, l3_len(&syn)));
        assert_eq!((r.packets, r.bytes), (0, 0));
        h.assert_counters(&[(AcceptNew, 1), (CtCreated, 1)]);

        let syn_ack = c.server_sends(TCP_SYN | TCP_ACK, &[]);
        assert_eq!(h.ingress_wan(&syn_ack), Verdict::Pass, "SYN-ACK {client}");
        let (_, r) = h.assert_conn(&key, TcpState::SynRecv, SEEN_REPLY);
        assert_timeout(&r, 60);

        let ack = c.client_sends(TCP_ACK, &[]);
        assert_eq!(h.ingress_lan(&ack), Verdict::Pass, "ACK {client}");
        let (o, _) = h.assert_conn(&key, TcpState::Established, SEEN_REPLY | ASSURED);
        assert_timeout(&o, 432_000);

        let request = c.client_sends(TCP_PSH | TCP_ACK, b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(h.ingress_lan(&request), Verdict::Pass, "request {client}");
        let response = c.server_sends(TCP_PSH | TCP_ACK, b"HTTP/1.0 204 No Content\r\n\r\n");
        assert_eq!(h.ingress_wan(&response), Verdict::Pass, "response {client}");

        let (o, r) = h.assert_conn(&key, TcpState::Established, SEEN_REPLY | ASSURED);
        assert_eq!(o.packets, 3);
        assert_eq!(o.bytes, l3_len(&syn) + l3_len(&ack) + l3_len(&request));
        assert_eq!(r.packets, 2);
        assert_eq!(r.bytes, l3_len(&syn_ack) + l3_len(&response));
        h.assert_counters(&[
            (AcceptNew, 1),
            (CtCreated, 1),
            (AcceptEstablished, 4),
            (FastPathNotForwarded, 4),
        ]);
        assert_eq!(h.conntrack_len(), 2);
    }
}

#[test]
fn fin_exchange_and_last_ack_reach_time_wait() {
    let h = Harness::new("");
    let mut c = TcpConv::new(V4_CLIENT, V4_SERVER);
    handshake(&h, &mut c);

    assert_eq!(
        h.ingress_lan(&c.client_sends(TCP_FIN | TCP_ACK, &[])),
        Verdict::Pass
    );
    h.assert_conn(&c.key(), TcpState::FinWait, SEEN_REPLY | ASSURED);
    assert_eq!(
        h.ingress_wan(&c.server_sends(TCP_FIN | TCP_ACK, &[])),
        Verdict::Pass
    );
    h.assert_conn(&c.key(), TcpState::LastAck, SEEN_REPLY | ASSURED);
    assert_eq!(h.ingress_lan(&c.client_sends(TCP_ACK, &[])), Verdict::Pass);
    let (o, r) = h.assert_conn(&c.key(), TcpState::TimeWait, SEEN_REPLY | ASSURED);
    assert_timeout(&o, 120);
    assert_timeout(&r, 120);
    h.assert_counters(&[
        (AcceptNew, 1),
        (CtCreated, 1),
        (AcceptEstablished, 5),
        (FastPathNotForwarded, 5),
    ]);
}

#[test]
fn rst_in_established_moves_to_close_with_the_close_timeout() {
    let h = Harness::new("");
    let mut c = TcpConv::new(V4_CLIENT, V4_SERVER);
    handshake(&h, &mut c);

    assert_eq!(
        h.ingress_wan(&c.server_sends(TCP_RST | TCP_ACK, &[])),
        Verdict::Pass
    );
    let (o, r) = h.assert_conn(&c.key(), TcpState::Close, SEEN_REPLY | ASSURED);
    assert_timeout(&o, 10);
    assert_timeout(&r, 10);
    h.assert_counters(&[
        (AcceptNew, 1),
        (CtCreated, 1),
        (AcceptEstablished, 3),
        (FastPathNotForwarded, 3),
    ]);
}

#[test]
fn rst_answering_an_unreplied_syn_ends_the_connection_at_once() {
    let h = Harness::new("");
    let mut c = TcpConv::new(V4_CLIENT, V4_SERVER);
    assert_eq!(h.ingress_lan(&c.client_sends(TCP_SYN, &[])), Verdict::Pass);
    h.assert_conn(&c.key(), TcpState::SynSent, UNREPLIED);

    // The RST is the reply direction of a known tuple (ESTABLISHED_REPLY in
    // netfilter), so it passes; "if only reply is a RST" the connection is
    // over. Both entries expire now rather than vanish, so the TC hooks can
    // still translate this very RST; the datapath treats them as gone.
    assert_eq!(
        h.ingress_wan(&c.server_sends(TCP_RST | TCP_ACK, &[])),
        Verdict::Pass
    );
    for k in [c.key(), c.key().inverted()] {
        let e = h.entry(&k).expect("the expired half is still in the map");
        assert_eq!(expires_in(&e), Duration::ZERO, "{k:?} must be expired");
    }

    // The next packet finds no connection: a SYN-ACK cannot start one.
    assert_eq!(
        h.ingress_wan(&c.server_sends(TCP_SYN | TCP_ACK, &[])),
        Verdict::Drop
    );
    h.assert_no_conn(&c.key());
    assert_eq!(h.conntrack_len(), 0);
    h.assert_counters(&[
        (AcceptNew, 1),
        (CtCreated, 1),
        (AcceptEstablished, 1),
        (CtClosedByRst, 1),
        (CtExpiredInPath, 1),
        (DropInvalidTcpNew, 1),
        (FastPathNotForwarded, 1),
    ]);
}

#[test]
fn invalid_tcp_flag_combinations_are_dropped_on_lan_and_wan_without_an_entry() {
    let h = Harness::new("");
    let combos = [
        ("SYN|FIN", TCP_SYN | TCP_FIN),
        ("SYN|RST", TCP_SYN | TCP_RST),
        ("XMAS", TCP_FIN | TCP_PSH | TCP_URG),
        ("NULL", 0),
        ("bare FIN", TCP_FIN),
    ];
    for (name, flags) in combos {
        let mut c = TcpConv::new(V4_CLIENT, V4_SERVER);
        let pkt = c.client_sends(flags, &[]);
        assert_eq!(h.ingress_lan(&pkt), Verdict::Drop, "{name} from lan");
        assert_eq!(h.ingress_wan(&pkt), Verdict::Drop, "{name} from wan");
        h.assert_no_conn(&c.key());
    }
    assert_eq!(h.conntrack_len(), 0);
    h.assert_counters(&[(DropInvalidTcpFlags, 2 * combos.len() as u64)]);
}

#[test]
fn unsolicited_syn_from_wan_is_dropped_but_the_same_syn_from_lan_is_tracked() {
    let h = Harness::new("");
    let mut c = TcpConv::new("198.51.100.20:51000", "10.1.0.5:22");
    let syn = c.client_sends(TCP_SYN, &[]);

    assert_eq!(h.ingress_wan(&syn), Verdict::Drop);
    h.assert_no_conn(&c.key());
    h.assert_counters(&[(DropPolicy, 1)]);

    assert_eq!(h.ingress_lan(&syn), Verdict::Pass);
    h.assert_conn(&c.key(), TcpState::SynSent, UNREPLIED);
    h.assert_counters(&[(DropPolicy, 1), (AcceptNew, 1), (CtCreated, 1)]);
}

#[test]
fn syn_on_an_interface_without_a_role_is_treated_as_wan() {
    let h = Harness::new("");
    // lo exists in the namespace but is not in IFACES (as during a
    // reconfiguration): the datapath fails closed.
    let mut c = TcpConv::new(V4_CLIENT, V4_SERVER);
    assert_eq!(h.xdp(LO, &c.client_sends(TCP_SYN, &[])), Verdict::Drop);
    h.assert_no_conn(&c.key());
    h.assert_counters(&[(DropPolicy, 1)]);
}

#[test]
fn bare_ack_from_lan_is_picked_up_as_established_unreplied() {
    let h = Harness::new("");
    let mut c = TcpConv::new(V4_CLIENT, V4_SERVER);
    assert_eq!(
        h.ingress_lan(&c.client_sends(TCP_ACK, b"mid-stream")),
        Verdict::Pass
    );
    let (o, r) = h.assert_conn(&c.key(), TcpState::Established, UNREPLIED);
    // A picked-up flow without a reply is capped at the UNACK timeout, not
    // ESTABLISHED's five days.
    assert_timeout(&o, 300);
    assert_timeout(&r, 300);
    h.assert_counters(&[(AcceptNew, 1), (CtCreated, 1)]);
}

#[test]
fn bare_ack_from_wan_is_new_and_dropped_by_policy() {
    let h = Harness::new("");
    let mut c = TcpConv::new("198.51.100.20:51000", "10.1.0.5:22");
    assert_eq!(
        h.ingress_wan(&c.client_sends(TCP_ACK, b"mid-stream")),
        Verdict::Drop
    );
    h.assert_no_conn(&c.key());
    h.assert_counters(&[(DropPolicy, 1)]);
}

#[test]
fn syn_ack_as_first_packet_is_invalid_from_either_side() {
    let h = Harness::new("");
    let mut c = TcpConv::new(V4_CLIENT, V4_SERVER);
    let syn_ack = c.client_sends(TCP_SYN | TCP_ACK, &[]);
    assert_eq!(h.ingress_lan(&syn_ack), Verdict::Drop);
    assert_eq!(h.ingress_wan(&syn_ack), Verdict::Drop);
    assert_eq!(h.conntrack_len(), 0);
    h.assert_counters(&[(DropInvalidTcpNew, 2)]);
}

// ---------------------------------------------------------------------------
// UDP and ICMP.

#[test]
fn udp_reply_from_wan_passes_and_marks_the_connection_replied() {
    for (client, server) in [
        ("10.1.0.5:5353", "203.0.113.53:53"),
        ("[fd00:1::5]:5353", "[2001:db8::53]:53"),
    ] {
        let h = Harness::new("");
        let (client, server) = (client.parse().unwrap(), server.parse().unwrap());
        let orig = key(IpNumber::UDP, client, server);

        assert_eq!(h.ingress_lan(&udp(client, server, b"query")), Verdict::Pass);
        let (o, _) = h.assert_conn(&orig, TcpState::None, UNREPLIED);
        assert_timeout(&o, 30);

        assert_eq!(
            h.ingress_wan(&udp(server, client, b"answer")),
            Verdict::Pass
        );
        let (_, r) = h.assert_conn(&orig, TcpState::None, SEEN_REPLY);
        assert_eq!(r.packets, 1);
        // Not a stream yet (the reply came within 2 s): still 30 s.
        assert_timeout(&r, 30);
        h.assert_counters(&[
            (AcceptNew, 1),
            (CtCreated, 1),
            (AcceptEstablished, 1),
            (FastPathNotForwarded, 1),
        ]);
    }
}

#[test]
fn unsolicited_udp_from_wan_is_dropped_by_policy() {
    let h = Harness::new("");
    let (src, dst) = (
        "203.0.113.53:53".parse().unwrap(),
        "10.1.0.5:5353".parse().unwrap(),
    );
    assert_eq!(h.ingress_wan(&udp(src, dst, b"unasked")), Verdict::Drop);
    h.assert_no_conn(&key(IpNumber::UDP, src, dst));
    assert_eq!(h.conntrack_len(), 0);
    h.assert_counters(&[(DropPolicy, 1)]);
}

/// (lan host, remote, echo request type, echo reply type) per family.
const ECHO_CASES: [(&str, &str, u8, u8); 2] = [
    ("10.1.0.5", "203.0.113.7", 8, 0),
    ("fd00:1::5", "2001:db8::7", 128, 129),
];

#[test]
fn echo_reply_to_a_tracked_request_passes() {
    for (host, remote, request, reply) in ECHO_CASES {
        let h = Harness::new("");
        let (host, remote) = (ip(host), ip(remote));
        let id = 0x4242;
        let orig = icmp_key(host, remote, id, request);
        assert_eq!(orig.inverted(), icmp_key(remote, host, id, reply));

        assert_eq!(
            h.ingress_lan(&echo(host, remote, true, id, 1)),
            Verdict::Pass,
            "echo request {host}"
        );
        let (o, _) = h.assert_conn(&orig, TcpState::None, UNREPLIED);
        assert_timeout(&o, 30);

        assert_eq!(
            h.ingress_wan(&echo(remote, host, false, id, 1)),
            Verdict::Pass,
            "echo reply {host}"
        );
        h.assert_conn(&orig, TcpState::None, SEEN_REPLY);
        // A reply with another identifier belongs to no request.
        assert_eq!(
            h.ingress_wan(&echo(remote, host, false, id + 1, 1)),
            Verdict::Drop,
            "echo reply with a foreign id {host}"
        );
        h.assert_counters(&[
            (AcceptNew, 1),
            (CtCreated, 1),
            (AcceptEstablished, 1),
            (DropInvalidIcmp, 1),
            (FastPathNotForwarded, 1),
        ]);
    }
}

#[test]
fn unsolicited_echo_reply_is_invalid() {
    for (host, remote, _, _) in ECHO_CASES {
        let h = Harness::new("");
        let (host, remote) = (ip(host), ip(remote));
        // An echo reply may not start a connection (`valid_new`), whichever
        // side it comes from.
        assert_eq!(
            h.ingress_wan(&echo(remote, host, false, 7, 1)),
            Verdict::Drop
        );
        assert_eq!(
            h.ingress_lan(&echo(host, remote, false, 7, 1)),
            Verdict::Drop
        );
        assert_eq!(h.conntrack_len(), 0);
        h.assert_counters(&[(DropInvalidIcmp, 2)]);
    }
}

#[test]
fn echo_request_from_wan_is_dropped_by_policy() {
    for (host, remote, request, _) in ECHO_CASES {
        let h = Harness::new("");
        let (host, remote) = (ip(host), ip(remote));
        assert_eq!(
            h.ingress_wan(&echo(remote, host, true, 9, 1)),
            Verdict::Drop
        );
        h.assert_no_conn(&icmp_key(remote, host, 9, request));
        h.assert_counters(&[(DropPolicy, 1)]);
    }
}

#[test]
fn icmp_error_quoting_a_tracked_udp_flow_is_related() {
    for (client, server, router) in [
        ("10.1.0.5:5353", "203.0.113.53:53", "198.51.100.1"),
        ("[fd00:1::5]:5353", "[2001:db8::53]:53", "2001:db8:ffff::1"),
    ] {
        let h = Harness::new("");
        let (client, server, router) =
            (client.parse().unwrap(), server.parse().unwrap(), ip(router));
        let query = udp_ip_packet(client, server, b"query");
        assert_eq!(h.ingress_lan(&udp(client, server, b"query")), Verdict::Pass);

        let error = port_unreachable(router, client.ip(), &query);
        assert_eq!(h.ingress_wan(&error), Verdict::Pass, "error for {client}");
        // RELATED attaches to the connection without changing it.
        let (o, r) = h.assert_conn(
            &key(IpNumber::UDP, client, server),
            TcpState::None,
            UNREPLIED,
        );
        assert_eq!((o.packets, r.packets), (1, 0));
        h.assert_counters(&[(AcceptNew, 1), (CtCreated, 1), (AcceptRelated, 1)]);
    }
}

#[test]
fn icmp_error_quoting_an_unknown_flow_is_dropped() {
    for (client, server, other, router) in [
        (
            "10.1.0.5:5353",
            "203.0.113.53:53",
            "10.1.0.5:5354",
            "198.51.100.1",
        ),
        (
            "[fd00:1::5]:5353",
            "[2001:db8::53]:53",
            "[fd00:1::5]:5354",
            "2001:db8:ffff::1",
        ),
    ] {
        let h = Harness::new("");
        let (client, server, other, router) = (
            client.parse().unwrap(),
            server.parse().unwrap(),
            other.parse().unwrap(),
            ip(router),
        );
        assert_eq!(h.ingress_lan(&udp(client, server, b"query")), Verdict::Pass);

        // Quotes a datagram from a port that never sent anything.
        let unknown = udp_ip_packet(other, server, b"query");
        assert_eq!(
            h.ingress_wan(&port_unreachable(router, client.ip(), &unknown)),
            Verdict::Drop,
            "error quoting an unknown flow"
        );
        // Quotes the tracked datagram but travels to the server, not back
        // to the sender (`nf_conntrack_inet_error`: outer daddr != inner
        // saddr).
        let tracked = udp_ip_packet(client, server, b"query");
        assert_eq!(
            h.ingress_wan(&port_unreachable(router, server.ip(), &tracked)),
            Verdict::Drop,
            "error sent to the wrong end"
        );
        h.assert_counters(&[(AcceptNew, 1), (CtCreated, 1), (DropIcmpErrorNoConn, 2)]);
    }
}

// ---------------------------------------------------------------------------
// Expiry.

#[test]
fn expired_entry_is_removed_by_the_datapath_and_its_reply_dropped() {
    let mut h = Harness::new("[timeouts]\nudp = 1\n");
    let (client, server) = (
        "10.1.0.5:5353".parse().unwrap(),
        "203.0.113.53:53".parse().unwrap(),
    );
    assert_eq!(h.ingress_lan(&udp(client, server, b"query")), Verdict::Pass);
    let (o, _) = h.assert_conn(
        &key(IpNumber::UDP, client, server),
        TcpState::None,
        UNREPLIED,
    );
    assert_timeout(&o, 1);

    // The second runs out in both directions (written into the entries
    // rather than waited for): the entry counts as gone, so the late answer
    // is a NEW packet from the WAN.
    h.expire(&key(IpNumber::UDP, client, server));
    h.expire(&o.peer);
    assert_eq!(
        h.ingress_wan(&udp(server, client, b"answer")),
        Verdict::Drop
    );
    h.assert_no_conn(&key(IpNumber::UDP, client, server));
    assert_eq!(h.conntrack_len(), 0);
    h.assert_counters(&[
        (AcceptNew, 1),
        (CtCreated, 1),
        (CtExpiredInPath, 1),
        (DropPolicy, 1),
    ]);
}

// ---------------------------------------------------------------------------
// Parsing.

#[test]
fn truncated_and_inconsistent_headers_are_dropped_as_malformed() {
    let h = Harness::new("");
    let v4_syn = TcpConv::new(V4_CLIENT, V4_SERVER).client_sends(TCP_SYN, &[]);
    let v6_syn = TcpConv::new(V6_CLIENT, V6_SERVER).client_sends(TCP_SYN, &[]);
    let (v4_ip, v6_ip) = (ETH_LEN, ETH_LEN);
    let tcp4 = ETH_LEN + 20;

    // A valid IP header whose payload is only the first 10 bytes of a TCP
    // header: the IP lengths agree with the frame, only TCP is short.
    let short_tcp = |client: &str, server: &str, v4: bool| {
        let seg = TcpConv::new(client, server).client_sends(TCP_SYN, &[]);
        let l4 = if v4 { ETH_LEN + 20 } else { ETH_LEN + 40 };
        let (c, s) = (
            client.parse::<std::net::SocketAddr>().unwrap(),
            server.parse::<std::net::SocketAddr>().unwrap(),
        );
        let mut out = Vec::new();
        plain(c.ip(), s.ip())
            .write(&mut out, IpNumber::TCP, &seg[l4..l4 + 10])
            .unwrap();
        out
    };

    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("IPv4 header cut", v4_syn[..v4_ip + 10].to_vec()),
        (
            "IPv4 total length beyond the frame",
            v4_syn[..tcp4 + 10].to_vec(),
        ),
        (
            "TCP header cut (IPv4)",
            short_tcp(V4_CLIENT, V4_SERVER, true),
        ),
        ("IPv6 header cut", v6_syn[..v6_ip + 30].to_vec()),
        (
            "TCP header cut (IPv6)",
            short_tcp(V6_CLIENT, V6_SERVER, false),
        ),
    ];
    // IHL 4: a 16-byte IPv4 header cannot exist.
    let mut bad_ihl = v4_syn.clone();
    bad_ihl[v4_ip] = 0x44;
    cases.push(("IPv4 IHL < 5", bad_ihl));
    // Data offset 4: a 16-byte TCP header (`tcp_error`: doff*4 < 20).
    let mut short_doff = v4_syn.clone();
    short_doff[tcp4 + 12] = 4 << 4;
    cases.push(("TCP data offset < 5", short_doff));
    // Data offset 15: 60 bytes of header in a 20-byte segment.
    let mut long_doff = v4_syn.clone();
    long_doff[tcp4 + 12] = 15 << 4;
    cases.push(("TCP data offset beyond the segment", long_doff));

    // From the LAN, where policy would accept: the drop is the parser's.
    for (name, frame) in &cases {
        assert_eq!(h.ingress_lan(frame), Verdict::Drop, "{name}");
    }
    assert_eq!(h.conntrack_len(), 0);
    h.assert_counters(&[(DropMalformed, cases.len() as u64)]);
}

#[test]
fn non_ip_frames_pass_untouched() {
    let h = Harness::new("");
    let arp = arp_request([10, 1, 0, 5], [10, 1, 0, 1]);
    assert_eq!(h.ingress_wan(&arp), Verdict::Pass);
    assert_eq!(h.ingress_lan(&arp), Verdict::Pass);
    assert_eq!(h.egress_host(&arp), Verdict::Pass);
    assert_eq!(h.conntrack_len(), 0);
    h.assert_counters(&[(AcceptNonIp, 3)]);
}

/// Options of 6 bytes (the smallest extension header: 8 bytes in all): one
/// PadN option (type 1) with 4 bytes of padding (RFC 8200 §4.2).
fn pad_options() -> Ipv6RawExtHeader {
    Ipv6RawExtHeader::new_raw(IpNumber::TCP, &[1, 4, 0, 0, 0, 0]).expect("PadN options header")
}

/// IPv6 with a hop-by-hop options header. The builder chains the next-header
/// fields (IPv6 → hop-by-hop → TCP).
fn with_hop_by_hop(src: IpAddr, dst: IpAddr) -> etherparse::PacketBuilderStep<IpHeaders> {
    let IpHeaders::Ipv6(h, _) = ip_headers(src, dst) else {
        panic!("IPv6 only")
    };
    let ext = Ipv6Extensions {
        hop_by_hop_options: Some(pad_options()),
        ..Default::default()
    };
    frame(IpHeaders::Ipv6(h, ext))
}

/// IPv6 with hop-by-hop and destination options headers.
fn with_hop_by_hop_and_dest_opts(
    src: IpAddr,
    dst: IpAddr,
) -> etherparse::PacketBuilderStep<IpHeaders> {
    let IpHeaders::Ipv6(h, _) = ip_headers(src, dst) else {
        panic!("IPv6 only")
    };
    let ext = Ipv6Extensions {
        hop_by_hop_options: Some(pad_options()),
        destination_options: Some(pad_options()),
        ..Default::default()
    };
    frame(IpHeaders::Ipv6(h, ext))
}

/// IPv6 with a destination options header only.
fn with_dest_opts(src: IpAddr, dst: IpAddr) -> etherparse::PacketBuilderStep<IpHeaders> {
    let IpHeaders::Ipv6(h, _) = ip_headers(src, dst) else {
        panic!("IPv6 only")
    };
    let ext = Ipv6Extensions {
        destination_options: Some(pad_options()),
        ..Default::default()
    };
    frame(IpHeaders::Ipv6(h, ext))
}

/// IPv4 with a Router Alert option (RFC 2113: type 148, length 4): IHL 6.
fn with_router_alert(src: IpAddr, dst: IpAddr) -> etherparse::PacketBuilderStep<IpHeaders> {
    let IpHeaders::Ipv4(mut h, ext) = ip_headers(src, dst) else {
        panic!("IPv4 only")
    };
    h.options = Ipv4Options::try_from(&[148, 4, 0, 0][..]).expect("IPv4 options");
    frame(IpHeaders::Ipv4(h, ext))
}

/// IPv4 with the longest header there is: 40 bytes of options (39 NOPs and
/// an end-of-options), IHL 15.
fn with_max_options(src: IpAddr, dst: IpAddr) -> etherparse::PacketBuilderStep<IpHeaders> {
    let IpHeaders::Ipv4(mut h, ext) = ip_headers(src, dst) else {
        panic!("IPv4 only")
    };
    let mut opts = [1u8; 40];
    opts[39] = 0;
    h.options = Ipv4Options::from(opts);
    frame(IpHeaders::Ipv4(h, ext))
}

type Framing = fn(IpAddr, IpAddr) -> etherparse::PacketBuilderStep<IpHeaders>;

/// Sends a SYN framed by `framing` from the LAN and answers it with a plain
/// SYN-ACK from the WAN: both must land on the connection a plain SYN
/// would have created. Returns the SYN and its original entry.
#[track_caller]
fn framed_syn_answered_plainly(
    h: &Harness,
    name: &str,
    client: &str,
    server: &str,
    framing: Framing,
) -> (Vec<u8>, firewall_common::CtEntry) {
    let mut framed = TcpConv::new(client, server).framed(framing);
    let mut plain_conv = TcpConv::new(client, server);
    assert_eq!(framed.key(), plain_conv.key());
    let syn = framed.client_sends(TCP_SYN, &[]);
    plain_conv.client_sends(TCP_SYN, &[]);

    assert_eq!(h.ingress_lan(&syn), Verdict::Pass, "{name}: SYN");
    h.assert_conn(&plain_conv.key(), TcpState::SynSent, UNREPLIED);
    assert_eq!(
        h.ingress_wan(&plain_conv.server_sends(TCP_SYN | TCP_ACK, &[])),
        Verdict::Pass,
        "{name}: SYN-ACK"
    );
    let (o, _) = h.assert_conn(&plain_conv.key(), TcpState::SynRecv, SEEN_REPLY);
    h.assert_counters(&[
        (AcceptNew, 1),
        (CtCreated, 1),
        (AcceptEstablished, 1),
        (FastPathNotForwarded, 1),
    ]);
    (syn, o)
}

#[test]
fn headers_between_ip_and_tcp_are_skipped_to_the_ports() {
    let cases: [(&str, &str, &str, Framing); 5] = [
        ("IPv6 hop-by-hop", V6_CLIENT, V6_SERVER, with_hop_by_hop),
        (
            "IPv6 destination options",
            V6_CLIENT,
            V6_SERVER,
            with_dest_opts,
        ),
        (
            "IPv6 hop-by-hop + destination options",
            V6_CLIENT,
            V6_SERVER,
            with_hop_by_hop_and_dest_opts,
        ),
        ("IPv4 router alert", V4_CLIENT, V4_SERVER, with_router_alert),
        (
            "IPv4 40 bytes of options",
            V4_CLIENT,
            V4_SERVER,
            with_max_options,
        ),
    ];
    for (name, client, server, framing) in cases {
        let h = Harness::new("");
        let (syn, o) = framed_syn_answered_plainly(&h, name, client, server, framing);
        // The byte count is the whole IP packet, options included.
        assert_eq!(o.bytes, l3_len(&syn), "{name}");
    }
}

fn vlan_100(src: IpAddr, dst: IpAddr) -> etherparse::PacketBuilderStep<IpHeaders> {
    ethernet()
        .single_vlan(VlanId::try_new(100).unwrap())
        .ip(ip_headers(src, dst))
}

fn qinq_10_100(src: IpAddr, dst: IpAddr) -> etherparse::PacketBuilderStep<IpHeaders> {
    ethernet()
        .double_vlan(VlanId::try_new(10).unwrap(), VlanId::try_new(100).unwrap())
        .ip(ip_headers(src, dst))
}

#[test]
fn vlan_tagged_syn_from_lan_is_tracked_like_an_untagged_one() {
    for (name, framing, tags) in [
        ("802.1Q", vlan_100 as Framing, 1),
        ("802.1ad + 802.1Q", qinq_10_100 as Framing, 2),
    ] {
        let h = Harness::new("");
        let (syn, o) = framed_syn_answered_plainly(&h, name, V4_CLIENT, V4_SERVER, framing);
        // Counted from the IP header on: the tags are not layer 3.
        assert_eq!(o.bytes, (syn.len() - ETH_LEN - 4 * tags) as u64, "{name}");
    }
}

// ---------------------------------------------------------------------------
// Rules and chains.

const SSH_INPUT_RULE: &str = r#"
[[rule]]
chain = "input"
proto = "tcp"
dport = 22
action = "accept"
"#;

#[test]
fn input_rule_accepts_ssh_from_wan_and_counts_it() {
    for (client, host, telnet_client, telnet_host, forwarding) in [
        (
            "198.51.100.20:51000",
            "192.0.2.2:22",
            "198.51.100.20:51001",
            "192.0.2.2:23",
            "net.ipv4.conf.all.forwarding",
        ),
        (
            "[2001:db8:1::20]:51000",
            "[2001:db8:2::2]:22",
            "[2001:db8:1::20]:51001",
            "[2001:db8:2::2]:23",
            "net.ipv6.conf.all.forwarding",
        ),
    ] {
        let h = Harness::new(SSH_INPUT_RULE);
        // Forwarding on, the host's address on the WAN and a default route
        // out of it: the datapath's FIB lookup says local delivery (INPUT)
        // for the host, and the default route is the way back to the
        // client (without one its SYN is refused: see
        // `new_connection_from_a_source_with_no_route_back_is_refused`).
        h.sysctl(forwarding, "1");
        h.ip("link set wan0 up");
        if forwarding.contains("ipv6") {
            h.ip("addr add 2001:db8:2::2/64 dev wan0 nodad");
            h.ip("-6 route add default dev wan0");
        } else {
            h.ip("addr add 192.0.2.2/24 dev wan0");
            h.ip("route add default dev wan0");
        }
        let mut ssh = TcpConv::new(client, host);
        let syn = ssh.client_sends(TCP_SYN, &[]);
        assert_eq!(h.ingress_wan(&syn), Verdict::Pass, "SYN to {host}");
        h.assert_conn(&ssh.key(), TcpState::SynSent, UNREPLIED);
        let rc = h.rule_counter(0);
        assert_eq!((rc.packets, rc.bytes), (1, l3_len(&syn)));
        h.assert_counters(&[(AcceptRule, 1), (CtCreated, 1)]);

        let mut telnet = TcpConv::new(telnet_client, telnet_host);
        assert_eq!(
            h.ingress_wan(&telnet.client_sends(TCP_SYN, &[])),
            Verdict::Drop,
            "SYN to {telnet_host}"
        );
        h.assert_no_conn(&telnet.key());
        assert_eq!(h.rule_counter(0).packets, 1);
        h.assert_counters(&[(AcceptRule, 1), (CtCreated, 1), (DropPolicy, 1)]);

        // The accepted connection's later packets are ESTABLISHED and never
        // reach the rules again: the host answers, the client acknowledges.
        assert_eq!(
            h.egress_host(&ssh.server_sends(TCP_SYN | TCP_ACK, &[])),
            Verdict::Pass
        );
        assert_eq!(
            h.ingress_wan(&ssh.client_sends(TCP_ACK, &[])),
            Verdict::Pass
        );
        h.assert_conn(&ssh.key(), TcpState::Established, SEEN_REPLY | ASSURED);
        assert_eq!(h.rule_counter(0).packets, 1);
        h.assert_counters(&[
            (AcceptRule, 1),
            (CtCreated, 1),
            (DropPolicy, 1),
            (AcceptEstablished, 2),
            (FastPathNotForwarded, 1),
        ]);
    }
}

#[test]
fn chain_follows_the_route_input_for_local_addresses_forward_for_routed_ones() {
    let rules = format!(
        "{SSH_INPUT_RULE}\n[[rule]]\nchain = \"forward\"\nproto = \"tcp\"\n\
         dport = 8080\naction = \"accept\"\n"
    );
    for (remote, local, routed, setup) in [
        (
            "198.51.100.20",
            "10.1.0.1",
            "10.1.0.5",
            [
                "addr add 10.1.0.1/24 dev lan0",
                "net.ipv4.conf.all.forwarding",
            ],
        ),
        (
            "[2001:db8:1::20]",
            "[fd00:1::1]",
            "[fd00:1::5]",
            [
                "addr add fd00:1::1/64 dev lan0 nodad",
                "net.ipv6.conf.all.forwarding",
            ],
        ),
    ] {
        let h = Harness::new(&rules);
        // The firewall as a router: an address on the LAN side, its
        // prefix routed there, forwarding on.
        let [addr, forwarding] = setup;
        h.ip(addr);
        h.ip("link set lan0 up");
        h.ip("link set wan0 up");
        h.sysctl(forwarding, "1");
        // The way back to the remote clients.
        h.ip(if forwarding.contains("ipv6") {
            "-6 route add default dev wan0"
        } else {
            "route add default dev wan0"
        });

        // INPUT matches rule 0 only, FORWARD rule 1 only.
        let cases = [
            (local, 22, Verdict::Pass),
            (local, 8080, Verdict::Drop),
            (routed, 8080, Verdict::Pass),
            (routed, 22, Verdict::Drop),
        ];
        for (i, (dst, port, verdict)) in cases.into_iter().enumerate() {
            let mut c = TcpConv::new(&format!("{remote}:{}", 51000 + i), &format!("{dst}:{port}"));
            assert_eq!(
                h.ingress_wan(&c.client_sends(TCP_SYN, &[])),
                verdict,
                "SYN to {dst}:{port}"
            );
        }
        assert_eq!(h.rule_counter(0).packets, 1, "input rule ({local})");
        assert_eq!(h.rule_counter(1).packets, 1, "forward rule ({routed})");
        h.assert_counters(&[(AcceptRule, 2), (CtCreated, 2), (DropPolicy, 2)]);
    }
}

// ---------------------------------------------------------------------------
// TC egress.

#[test]
fn host_originated_syn_is_tracked_at_tc_egress_and_its_reply_accepted_at_xdp() {
    let h = Harness::new("");
    let mut c = TcpConv::new("192.0.2.2:45000", "203.0.113.7:443");
    assert_eq!(h.egress_host(&c.client_sends(TCP_SYN, &[])), Verdict::Pass);
    h.assert_conn(&c.key(), TcpState::SynSent, UNREPLIED);
    h.assert_counters(&[(AcceptNew, 1), (CtCreated, 1)]);

    assert_eq!(
        h.ingress_wan(&c.server_sends(TCP_SYN | TCP_ACK, &[])),
        Verdict::Pass
    );
    h.assert_conn(&c.key(), TcpState::SynRecv, SEEN_REPLY);
    assert_eq!(h.egress_host(&c.client_sends(TCP_ACK, &[])), Verdict::Pass);
    h.assert_conn(&c.key(), TcpState::Established, SEEN_REPLY | ASSURED);
    h.assert_counters(&[
        (AcceptNew, 1),
        (CtCreated, 1),
        (AcceptEstablished, 2),
        (FastPathNotForwarded, 1),
    ]);
}

#[test]
fn host_originated_syn_is_dropped_at_tc_egress_when_the_output_policy_drops() {
    let h = Harness::new("[policy]\noutput = \"drop\"\n");
    let mut c = TcpConv::new("192.0.2.2:45000", "203.0.113.7:443");
    assert_eq!(h.egress_host(&c.client_sends(TCP_SYN, &[])), Verdict::Drop);
    h.assert_no_conn(&c.key());
    h.assert_counters(&[(DropPolicy, 1)]);
}

#[test]
fn tc_egress_leaves_traffic_from_managed_interfaces_to_xdp() {
    let h = Harness::new("");
    let mut c = TcpConv::new(V4_CLIENT, V4_SERVER);
    let syn = c.client_sends(TCP_SYN, &[]);
    // Forwarded from lan0: XDP already tracked it there; a second pass
    // would advance the state machine twice.
    assert_eq!(h.tc_egress(h.lan, &syn), Verdict::Pass);
    assert_eq!(h.conntrack_len(), 0);
    h.assert_counters(&[(SkipForwarded, 1)]);

    // Arrived on an interface the firewall does not manage: TC is the only
    // hook that sees it, so it tracks it as OUTPUT.
    assert_eq!(h.tc_egress(LO, &syn), Verdict::Pass);
    h.assert_conn(&c.key(), TcpState::SynSent, UNREPLIED);
    h.assert_counters(&[(SkipForwarded, 1), (AcceptNew, 1), (CtCreated, 1)]);
}

// ---------------------------------------------------------------------------
// The verifier.

/// Every program verifies with room to spare under the verifier's budget of
/// a million processed instructions: a change that multiplies the paths
/// shows here, with the figures, before it stops the firewall loading.
#[test]
fn every_program_verifies_well_within_the_budget() {
    use firewall::{
        TC_CREATE_PROGRAM, TC_FTP_PROGRAM, TC_INGRESS_PROGRAM, TC_PROGRAM, XDP_ADMIT_PROGRAM,
        XDP_FASTPATH_PROGRAM, XDP_PROGRAM, XDP_REJECT_PROGRAM,
    };
    let h = Harness::new("");
    let mut report = Vec::new();
    for name in [
        XDP_PROGRAM,
        XDP_FASTPATH_PROGRAM,
        XDP_REJECT_PROGRAM,
        XDP_ADMIT_PROGRAM,
        TC_PROGRAM,
        TC_INGRESS_PROGRAM,
        TC_FTP_PROGRAM,
        TC_CREATE_PROGRAM,
    ] {
        let n = h
            .verified_instructions(name)
            .expect("the kernel reports verified instructions (5.16+)");
        report.push(format!("{name}: {n}"));
        assert!(
            n < 500_000,
            "{name} verified in {n} instructions: {report:?}"
        );
    }
    println!("verified instructions: {}", report.join(", "));
}
