//! The XDP fast path under BPF_PROG_TEST_RUN: forwarded packets of
//! ESTABLISHED connections leave XDP with `XDP_REDIRECT`, routed by the
//! kernel's FIB, with the next hop's MAC, the egress interface's MAC, the
//! TTL/hop limit one lower and a valid IPv4 header checksum; everything the
//! fast path cannot do exactly as the stack would goes to the stack
//! (`XDP_PASS`), counted by reason. A test run reports the verdict and the
//! rewritten frame; nothing is sent.
//!
//! Topology (see `common`): the test's namespace is a router, `lan0`
//! 10.0.1.1/24 and 2001:db8:1::1/64 (role lan), `wan0` 10.0.2.1/24 and
//! 2001:db8:2::1/64 (role wan), forwarding on, default routes out of `wan0`
//! via gateways with permanent neighbour entries, and a permanent neighbour
//! entry for the LAN client. Expected frames are the input with the
//! rewrite applied by this file and the checksum computed by etherparse,
//! never by the code under test.
//!
//! Needs root (BPF and namespaces): `cargo test -p firewall --test fastpath`.

mod common;

use std::net::SocketAddr;

use common::*;
use etherparse::{IpNumber, Ipv4Header, Ipv4Options, SlicedPacket, VlanId};
use firewall_common::{
    Counter::*,
    TcpState,
    tcp::{TCP_ACK, TCP_PSH, TCP_SYN},
};

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x05];
const GATEWAY_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];

/// After [`ROUTER_IP`]: IPv6 on both sides with its default route, and
/// every neighbour resolved (the gateways, the LAN client), so that the
/// fast path finds the MACs it writes.
const ROUTER_MORE: &[&str] = &[
    "addr add 2001:db8:1::1/64 dev lan0 nodad",
    "addr add 2001:db8:2::1/64 dev wan0 nodad",
    "route add default via 2001:db8:2::fe dev wan0",
    GATEWAY_NEIGH,
    "neigh add 2001:db8:2::fe lladdr 02:00:00:00:00:fe dev wan0",
    "neigh add 10.0.1.5 lladdr 02:00:00:00:00:05 dev lan0",
    "neigh add 2001:db8:1::5 lladdr 02:00:00:00:00:05 dev lan0",
];

const CLIENT4: &str = "10.0.1.5:40000";
const SERVER4: &str = "203.0.113.7:80";
const CLIENT6: &str = "[2001:db8:1::5]:40000";
const SERVER6: &str = "[2001:db8:ff::7]:53";

/// The router with `top_level` keys (`fast_path`, `xdp_mode`) before the
/// default interfaces and `ip` commands after the standard setup.
fn router_with(top_level: &str, more_ip: &[&str]) -> Harness {
    let interfaces = format!("{top_level}{DEFAULT_INTERFACES}");
    Harness::with_setup(
        &Setup {
            interfaces: &interfaces,
            ip: &router_ip(&[ROUTER_MORE, more_ip].concat()),
            sysctls: FORWARDING,
        },
        "",
    )
}

fn router() -> Harness {
    router_with("", &[])
}

/// `frame` as a router forwards it: MACs replaced, TTL (IPv4) or hop limit
/// (IPv6) one lower, the IPv4 header checksum recomputed by etherparse.
fn forwarded(frame: &[u8], dst_mac: [u8; 6], src_mac: [u8; 6]) -> Vec<u8> {
    let mut out = frame.to_vec();
    out[0..6].copy_from_slice(&dst_mac);
    out[6..12].copy_from_slice(&src_mac);
    let ip = ETH_LEN;
    if out[ip] >> 4 == 4 {
        let (mut h, _) = Ipv4Header::from_slice(&out[ip..]).expect("IPv4 header");
        h.time_to_live -= 1;
        h.header_checksum = h.calc_header_checksum();
        out[ip..ip + h.header_len()].copy_from_slice(&h.to_bytes());
    } else {
        out[ip + 7] -= 1;
    }
    out
}

/// Asserts that etherparse reads the frame's IPv4 header checksum as valid.
#[track_caller]
fn assert_ipv4_checksum_valid(frame: &[u8]) {
    let (h, _) = Ipv4Header::from_slice(&frame[ETH_LEN..]).expect("IPv4 header");
    assert_eq!(
        h.header_checksum,
        h.calc_header_checksum(),
        "IPv4 header checksum"
    );
}

/// SYN from the LAN (NEW: to the stack), SYN-ACK from the WAN (a reply:
/// ESTABLISHED, fast-pathed to the client), ACK from the LAN (fast-pathed to
/// the gateway). Returns the three frames as XDP left them.
fn handshake(h: &Harness, client: SocketAddr, server: SocketAddr) -> [(Verdict, Vec<u8>); 3] {
    let syn = tcp(client, server, TCP_SYN, 1000, 0, &[]);
    let syn_ack = tcp(server, client, TCP_SYN | TCP_ACK, 7000, 1001, &[]);
    let ack = tcp(client, server, TCP_ACK, 1001, 7001, &[]);
    [
        h.xdp_out(h.lan, &syn),
        h.xdp_out(h.wan, &syn_ack),
        h.xdp_out(h.lan, &ack),
    ]
}

#[test]
fn established_tcp_is_forwarded_in_xdp_with_ttl_checksum_and_macs_rewritten() {
    let h = router();
    let (client, server) = (sa(CLIENT4), sa(SERVER4));
    let (lan_mac, wan_mac) = (h.mac("lan0"), h.mac("wan0"));
    let syn = tcp(client, server, TCP_SYN, 1000, 0, &[]);
    let syn_ack = tcp(server, client, TCP_SYN | TCP_ACK, 7000, 1001, &[]);
    let ack = tcp(client, server, TCP_ACK, 1001, 7001, &[]);
    let [(v_syn, out_syn), (v_syn_ack, out_syn_ack), (v_ack, out_ack)] =
        handshake(&h, client, server);

    // The first packet is NEW: the stack forwards it, untouched.
    assert_eq!(v_syn, Verdict::Pass, "SYN");
    assert_eq!(out_syn, syn, "SYN left as it came");
    // The reply goes back to the client out of lan0.
    assert_eq!(v_syn_ack, Verdict::Redirect, "SYN-ACK");
    assert_eq!(out_syn_ack, forwarded(&syn_ack, CLIENT_MAC, lan_mac));
    assert_eq!(out_syn_ack[ETH_LEN + 8], 63, "TTL");
    assert_ipv4_checksum_valid(&out_syn_ack);
    // The client's ACK goes to the gateway out of wan0.
    assert_eq!(v_ack, Verdict::Redirect, "ACK");
    assert_eq!(out_ack, forwarded(&ack, GATEWAY_MAC, wan_mac));
    assert_ipv4_checksum_valid(&out_ack);

    // Tracking ran exactly as without the fast path.
    let (o, r) = h.assert_conn(
        &tcp_key(client, server),
        TcpState::Established,
        SEEN_REPLY | ASSURED,
    );
    assert_eq!((o.packets, r.packets), (2, 1));
    assert_eq!(o.bytes, l3_len(&syn) + l3_len(&ack));
    assert_eq!(r.bytes, l3_len(&syn_ack));
    assert_timeout(&o, 432_000);
    h.assert_counters(&[
        (AcceptNew, 1),
        (CtCreated, 1),
        (AcceptEstablished, 2),
        (FastPathForwarded, 2),
    ]);
}

#[test]
fn established_ipv6_udp_is_forwarded_with_the_hop_limit_lowered() {
    let h = router();
    let (client, server) = (sa(CLIENT6), sa(SERVER6));
    let (lan_mac, wan_mac) = (h.mac("lan0"), h.mac("wan0"));
    let query = udp(client, server, b"query");
    let answer = udp(server, client, b"answer");
    let again = udp(client, server, b"another query");

    assert_eq!(h.ingress_lan(&query), Verdict::Pass, "first datagram");
    let (v, out) = h.xdp_out(h.wan, &answer);
    assert_eq!(v, Verdict::Redirect, "reply");
    assert_eq!(out, forwarded(&answer, CLIENT_MAC, lan_mac));
    assert_eq!(out[ETH_LEN + 7], 63, "hop limit");
    let (v, out) = h.xdp_out(h.lan, &again);
    assert_eq!(v, Verdict::Redirect, "second datagram");
    assert_eq!(out, forwarded(&again, GATEWAY_MAC, wan_mac));
    // The payload and the UDP checksum (the hop limit is not in the
    // pseudo-header) arrive as sent.
    let sliced = SlicedPacket::from_ethernet(&out).expect("parses");
    let Some(etherparse::TransportSlice::Udp(u)) = sliced.transport else {
        panic!("no UDP header");
    };
    assert_eq!(u.payload(), b"another query");
    let (o, r) = h.assert_conn(
        &key(IpNumber::UDP, client, server),
        TcpState::None,
        SEEN_REPLY,
    );
    assert_eq!((o.packets, r.packets), (2, 1));
    h.assert_counters(&[
        (AcceptNew, 1),
        (CtCreated, 1),
        (AcceptEstablished, 2),
        (FastPathForwarded, 2),
    ]);
}

#[test]
fn reply_without_a_neighbour_entry_takes_the_stack() {
    // No neighbour for 10.0.1.6: the stack resolves it (ARP), then later
    // packets can take the fast path.
    let h = router();
    let (client, server) = (sa("10.0.1.6:40000"), sa(SERVER4));
    let [(v_syn, _), (v, out), _] = handshake(&h, client, server);
    assert_eq!(v_syn, Verdict::Pass);
    let syn_ack = tcp(server, client, TCP_SYN | TCP_ACK, 7000, 1001, &[]);
    assert_eq!(
        v,
        Verdict::Pass,
        "SYN-ACK to a client without a neighbour entry"
    );
    assert_eq!(out, syn_ack, "left untouched for the stack");
    h.assert_counters(&[
        (AcceptNew, 1),
        (CtCreated, 1),
        (AcceptEstablished, 2),
        (FastPathNoNeigh, 1),
        (FastPathForwarded, 1),
    ]);
}

#[test]
fn ttl_of_one_or_zero_takes_the_stack() {
    let h = router();
    let (client, server) = (sa(CLIENT4), sa(SERVER4));
    handshake(&h, client, server);
    for ttl in [1u8, 0] {
        let mut data = tcp(client, server, TCP_PSH | TCP_ACK, 1001, 7001, b"x");
        data[ETH_LEN + 8] = ttl;
        let (v, out) = h.xdp_out(h.lan, &data);
        assert_eq!(v, Verdict::Pass, "TTL {ttl}");
        assert_eq!(out, data, "TTL {ttl}: untouched");
    }
    h.assert_counters(&[
        (AcceptNew, 1),
        (CtCreated, 1),
        (AcceptEstablished, 4),
        (FastPathForwarded, 2),
        (FastPathTtl, 2),
    ]);
}

#[test]
fn fast_path_off_in_the_config_sends_everything_to_the_stack() {
    let h = router_with("fast_path = false\n", &[]);
    let [(a, _), (b, _), (c, _)] = handshake(&h, sa(CLIENT4), sa(SERVER4));
    assert_eq!([a, b, c], [Verdict::Pass; 3]);
    h.assert_conn(
        &tcp_key(sa(CLIENT4), sa(SERVER4)),
        TcpState::Established,
        SEEN_REPLY | ASSURED,
    );
    // No fast-path counter at all: it was never tried.
    h.assert_counters(&[(AcceptNew, 1), (CtCreated, 1), (AcceptEstablished, 2)]);
}

#[test]
fn packet_larger_than_the_egress_mtu_takes_the_stack() {
    // wan0 carries at most 1280 bytes: a 1400-byte segment needs
    // fragmenting or an ICMP error, which only the stack does.
    let h = router_with("", &["link set wan0 mtu 1280"]);
    let (client, server) = (sa(CLIENT4), sa(SERVER4));
    handshake(&h, client, server);
    let big = tcp(client, server, TCP_PSH | TCP_ACK, 1001, 7001, &[0x55; 1360]);
    assert_eq!(l3_len(&big), 1400);
    let (v, out) = h.xdp_out(h.lan, &big);
    assert_eq!(v, Verdict::Pass);
    assert_eq!(out, big);
    let small = tcp(client, server, TCP_PSH | TCP_ACK, 1001, 7001, &[0x55; 1240]);
    assert_eq!(l3_len(&small), 1280);
    assert_eq!(h.xdp(h.lan, &small), Verdict::Redirect, "exactly the MTU");
    h.assert_counters(&[
        (AcceptNew, 1),
        (CtCreated, 1),
        (AcceptEstablished, 4),
        (FastPathForwarded, 3),
        (FastPathFragNeeded, 1),
    ]);
}

#[test]
fn egress_through_an_interface_the_firewall_does_not_manage_takes_the_stack() {
    // 198.51.100.0/24 is routed out of x0, which the config does not name.
    let h = router_with(
        "",
        &[
            "link add x0 type veth peer name x1",
            "addr add 198.51.100.1/24 dev x0",
            "link set x0 up",
            "link set x1 up",
            "neigh add 198.51.100.9 lladdr 02:00:00:00:00:09 dev x0",
        ],
    );
    let (client, server) = (sa(CLIENT4), sa("198.51.100.9:80"));
    let [_, (v_reply, _), (v, out)] = handshake(&h, client, server);
    assert_eq!(v_reply, Verdict::Redirect, "the reply goes out of lan0");
    assert_eq!(v, Verdict::Pass, "towards x0");
    assert_eq!(out, tcp(client, server, TCP_ACK, 1001, 7001, &[]));
    h.assert_counters(&[
        (AcceptNew, 1),
        (CtCreated, 1),
        (AcceptEstablished, 2),
        (FastPathForwarded, 1),
        (FastPathUnmanaged, 1),
    ]);
}

#[test]
fn native_mode_on_veth_takes_the_stack() {
    // A native-mode redirect to a veth is delivered only if the peer has
    // NAPI on, which the firewall cannot know: the loader marks no veth as
    // a target, and the fast path falls back.
    let h = router_with("xdp_mode = \"native\"\n", &[]);
    let [_, (a, _), (b, _)] = handshake(&h, sa(CLIENT4), sa(SERVER4));
    assert_eq!([a, b], [Verdict::Pass; 2]);
    h.assert_counters(&[
        (AcceptNew, 1),
        (CtCreated, 1),
        (AcceptEstablished, 2),
        (FastPathNoXdpTarget, 2),
    ]);
}

#[test]
fn ipv4_options_and_vlan_tags_take_the_stack() {
    let h = router();
    let (client, server) = (sa(CLIENT4), sa(SERVER4));
    handshake(&h, client, server);
    // Record-route style options (four NOPs and an end).
    let mut ip = Ipv4Header::new(0, 64, IpNumber::TCP, [10, 0, 1, 5], [203, 0, 113, 7])
        .expect("IPv4 header");
    ip.options = Ipv4Options::try_from(&[1u8, 1, 1, 0][..]).expect("options");
    let with_options = tcp_segment(
        frame(etherparse::IpHeaders::Ipv4(ip, Default::default())),
        client.port(),
        server.port(),
        TCP_ACK,
        1001,
        7001,
        &[],
    );
    let tagged = tcp_segment(
        ethernet()
            .single_vlan(VlanId::try_new(100).unwrap())
            .ip(ip_headers(client.ip(), server.ip())),
        client.port(),
        server.port(),
        TCP_ACK,
        1001,
        7001,
        &[],
    );
    for (name, f) in [("IPv4 options", &with_options), ("VLAN tag", &tagged)] {
        let (v, out) = h.xdp_out(h.lan, f);
        assert_eq!(v, Verdict::Pass, "{name}");
        assert_eq!(&out, f, "{name}: untouched");
    }
    h.assert_counters(&[
        (AcceptNew, 1),
        (CtCreated, 1),
        (AcceptEstablished, 4),
        (FastPathForwarded, 2),
        (FastPathUnusual, 2),
    ]);
}

#[test]
fn established_packet_to_the_router_itself_is_left_to_the_stack() {
    // A connection from the LAN host to the router (INPUT): the FIB says
    // local delivery. The router's own SYN-ACK leaves through TC egress.
    let h = router();
    let (client, router_addr) = (sa(CLIENT4), sa("10.0.1.1:22"));
    let syn = tcp(client, router_addr, TCP_SYN, 1000, 0, &[]);
    let syn_ack = tcp(router_addr, client, TCP_SYN | TCP_ACK, 7000, 1001, &[]);
    let ack = tcp(client, router_addr, TCP_ACK, 1001, 7001, &[]);
    assert_eq!(h.ingress_lan(&syn), Verdict::Pass);
    assert_eq!(h.egress_host(&syn_ack), Verdict::Pass);
    let (v, out) = h.xdp_out(h.lan, &ack);
    assert_eq!(v, Verdict::Pass, "the client's ACK to the router");
    assert_eq!(out, ack);
    h.assert_conn(
        &tcp_key(client, router_addr),
        TcpState::Established,
        SEEN_REPLY | ASSURED,
    );
    h.assert_counters(&[
        (AcceptNew, 1),
        (CtCreated, 1),
        (AcceptEstablished, 2),
        (FastPathNotForwarded, 1),
    ]);
}
