//! Regression tests for what `cargo xtask fuzz` found, each with the frames
//! that found it (docs/FUZZING.md, *Found and fixed*).
//!
//! Needs root: `cargo test -p firewall --test fuzz_found`.

mod common;

use common::*;
use firewall_common::{
    Counter::{self, *},
    CtDir, TcpState,
    tcp::{TCP_ACK, TCP_PSH, TCP_SYN, track::seen_flags},
};

/// The fuzzer's `nat` phase, as far as these tests need it: `wan0`
/// masquerades, `lan0` is the LAN, the router forwards.
fn nat_router(config_toml: &str) -> Harness {
    router_harness(
        &[GATEWAY_NEIGH],
        FORWARDING,
        "masquerade = true",
        config_toml,
    )
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn grew(h: &Harness, c: Counter) -> bool {
    h.counter(c) > 0
}

/// A connection a port forward let in: its next packet before the server
/// answers (a retransmitted SYN, a second datagram) is a hit that is not
/// ESTABLISHED, and goes to the policy with the plain fallback rather than
/// the port forward's acceptance; from the WAN the forward policy drops it
/// (`drop_policy`), after tracking counted it. Found by the fuzzer's check
/// that a dropped packet changes no entry.
#[test]
fn a_port_forward_accepts_the_connections_next_packets_before_the_reply() {
    let h = nat_router(
        "[[port_forward]]\nproto = \"tcp\"\nport = 8080\nto = \"10.0.1.10:80\"\n\n\
         [[port_forward]]\nproto = \"udp\"\nport = 5000\nto = \"10.0.1.11\"\n",
    );
    let client = sa("203.0.113.9:40000");
    let syn = tcp(client, sa("10.0.2.1:8080"), TCP_SYN, 1000, 0, b"");
    assert_eq!(h.ingress_wan(&syn), Verdict::Pass, "SYN");
    assert_eq!(h.ingress_wan(&syn), Verdict::Pass, "retransmitted SYN");
    let to = sa("10.0.2.1:5000");
    assert_eq!(h.ingress_wan(&udp(client, to, b"one")), Verdict::Pass);
    assert_eq!(h.ingress_wan(&udp(client, to, b"two")), Verdict::Pass);
    assert_eq!(h.counter(DropPolicy), 0);
}

/// The same for a data connection an FTP PORT announced: its packets are
/// RELATED until the reply, which the policy never judges (ARCHITECTURE.md,
/// step 6), yet the server's retransmitted SYN is dropped.
#[test]
fn an_expected_connection_accepts_its_next_packets_before_the_reply() {
    let h = Harness::with_setup(
        &Setup {
            interfaces: DEFAULT_INTERFACES,
            ip: &router_ip(&[GATEWAY_NEIGH]),
            sysctls: FORWARDING,
        },
        "[[helper]]\nproto = \"tcp\"\nport = 21\nkind = \"ftp\"\n",
    );
    let (client, server) = (sa("10.0.1.5:40000"), sa("203.0.113.7:21"));
    let steps = [
        (true, tcp(client, server, TCP_SYN, 1000, 0, b"")),
        (
            false,
            tcp(server, client, TCP_SYN | TCP_ACK, 7000, 1001, b""),
        ),
        (true, tcp(client, server, TCP_ACK, 1001, 7001, b"")),
        (
            true,
            tcp(
                client,
                server,
                TCP_ACK | TCP_PSH,
                1001,
                7001,
                b"PORT 10,0,1,5,195,80\r\n",
            ),
        ),
    ];
    for (from_lan, frame) in &steps {
        if *from_lan {
            assert_eq!(h.ingress_lan(frame), Verdict::Pass);
            assert_eq!(h.forward_to_wan(frame).0, Verdict::Pass);
        } else {
            assert_eq!(h.ingress_wan(frame), Verdict::Pass);
        }
    }
    let syn = tcp(
        sa("203.0.113.7:20"),
        sa("10.0.1.5:50000"),
        TCP_SYN,
        90_000,
        0,
        b"",
    );
    assert_eq!(h.ingress_wan(&syn), Verdict::Pass, "data SYN");
    assert_eq!(h.ingress_wan(&syn), Verdict::Pass, "retransmitted data SYN");
}

/// Fuzzer seed 0xd (2 frames after `--minimise`): the reply entry of a new
/// untranslated connection replaced the original entry of a masqueraded
/// one. `conntrack::create` inserts the reply entry of an untranslated
/// connection with BPF_ANY; under masquerade the masqueraded connection's
/// reply key is the translated tuple, so the untranslated inverse of its
/// original tuple is a miss, and a packet with that tuple creates a
/// connection whose reply key is the masqueraded one's original key.
/// netfilter refuses such a connection at confirmation (`nf_conntrack_confirm`
/// finds the reply tuple taken).
///
/// Here a forward rule lets the WAN reach a LAN host, and the server of
/// the host's masqueraded connection opens one to the host's own address
/// and port: the masqueraded connection loses its original entry, and its
/// next packet leaves untranslated, so it is dropped (`drop_nat_untranslated`).
#[test]
fn a_new_connection_never_replaces_an_entry_of_another() {
    let h = nat_router(
        "[[rule]]\nchain = \"forward\"\nproto = \"tcp\"\ndst = \"10.0.1.5\"\naction = \"accept\"\n",
    );
    let client = sa("10.0.1.5:40000");
    let server = sa("203.0.113.7:80");
    let public = sa("10.0.2.1:40000");
    assert_eq!(
        h.ingress_lan(&tcp(client, server, TCP_SYN, 1000, 0, b"")),
        Verdict::Pass
    );
    h.assert_pair(
        &tcp_key(client, server),
        &tcp_key(server, public),
        TcpState::SynSent,
        UNREPLIED,
    );
    // The server, to the client's own address and port.
    h.ingress_wan(&tcp(server, client, TCP_SYN, 7000, 0, b""));
    h.assert_pair(
        &tcp_key(client, server),
        &tcp_key(server, public),
        TcpState::SynSent,
        UNREPLIED,
    );
}

/// The same, with the frames the fuzzer found: a LAN host's segment picked
/// up mid-stream and masqueraded, then the host sending the inverse tuple
/// out of `lan0`.
#[test]
fn a_new_connection_never_replaces_an_entry_of_another_fuzzer_frames() {
    let h = nat_router("");
    let first = unhex(
        "02000000000a02000000000b080045000088123400004006e3d7c0000201c0000263040100143af8fdcf\
         bbe720388018faf004f100000101080a0000000500000005bb0624caeee99a2ce70248b3cc31dfbc356b\
         adaa5599e1cc7c3cd928712685816cd0bc09567e4fc468964dc2443b2b4de25712e3eb99d3b696575\
         61c2cb085f9d03dcf4b1d525674363d7ae4cdc62f7fe3694035",
    );
    let second = unhex(
        "02000000000a02000000000b080045000028123400004006e437c0000263c00002010014040162e93115\
         40b144f65010faf012c40000",
    );
    assert_eq!(h.ingress_lan(&first), Verdict::Pass);
    let (_, out) = h.tc_ingress(h.lan, &first);
    let (v, _) = h.forward_to_wan(&out);
    assert_eq!(v, Verdict::Pass);
    let orig = tcp_key(sa("192.0.2.1:1025"), sa("192.0.2.99:20"));
    let reply = tcp_key(sa("192.0.2.99:20"), sa("10.0.2.1:1025"));
    let state = h.entry(&orig).expect("masqueraded connection").tcp_state;
    h.tc_egress_on(HOST_ORIGINATED, h.lan, &second);
    let o = h.entry(&orig).expect("original entry");
    assert_eq!(
        o.dir,
        CtDir::Original as u8,
        "the original entry's direction"
    );
    assert_eq!(o.peer, reply, "the original entry's peer");
    assert_eq!(o.tcp_state, state);
}

/// A tuple that is its own reply (same address both ways, same port): the
/// reply entry replaces the original under the one key, leaving a
/// reply-direction entry that names itself. Found by the fuzzer as UDP-Lite
/// from `10.0.2.1` to `10.0.2.1` sent by the host; from a LAN host to
/// itself, hairpinned, it is the same.
#[test]
fn a_tuple_that_is_its_own_reply_leaves_no_reply_entry_in_its_place() {
    let h = nat_router("");
    let me = sa("10.0.1.5:7");
    h.ingress_lan(&udp(me, me, b"to myself"));
    let key = firewall_common::CtKey {
        proto: firewall_common::IPPROTO_UDP,
        ..tcp_key(me, me)
    };
    if let Some(e) = h.entry(&key) {
        assert_eq!(
            e.dir,
            CtDir::Original as u8,
            "the entry under the packet's own tuple is a reply entry"
        );
    }
}

/// Fuzzer seed 0x1: a SYN-ACK whose SACK blocks acknowledge data never
/// sent is refused (`drop_tcp_window_ack_above`), but `tcp_in_window` has
/// already initialised the reply direction from it, and, since it carries
/// no window scale option, turned window scaling off for both directions
/// (as netfilter does: it initialises the sender in place before checking).
/// ARCHITECTURE.md: "A dropped segment changes no bound."
#[test]
fn a_refused_syn_ack_leaves_the_windows_as_they_were() {
    let h = nat_router("");
    // 10.0.1.5:23528 -> 203.0.113.8:80, SYN with MSS, SACK-permitted,
    // timestamps, window scale 13.
    let syn = unhex(
        "02000000000a02000000000b08004500004012340000400621770a000105cb0071085be8005081fecc37\
         00000000b002faf087700000020405b4010104020101080a62525fc4000000000103030d",
    );
    // The answer to 10.0.2.1:23528, acknowledging the SYN, with four SACK
    // blocks far beyond anything sent.
    let syn_ack = unhex(
        "02000000000a02000000000b08004500004c123400004006206fcb0071080a00020100505be84f6cd76e\
         81fecc38e012faf0e42e000001010522cc031149cc03133dcc031531cc031725cc031919cc031b0dcc03\
         1d01cc031ef5",
    );
    assert_eq!(h.ingress_lan(&syn), Verdict::Pass);
    let key = tcp_key(sa("10.0.1.5:23528"), sa("203.0.113.8:80"));
    let before = h.entry(&key).expect("connection").tcp;
    assert_eq!(h.ingress_wan(&syn_ack), Verdict::Drop);
    assert!(grew(&h, DropTcpWindowAckAbove));
    assert_eq!(h.entry(&key).expect("connection").tcp, before);
}

/// What the deviation above costs: a spoofed SYN-ACK with a wrong
/// acknowledgement (dropped) still initialises the reply direction, and the
/// handshake that follows breaks: the server's real SYN-ACK passes, and the
/// client's ACK completing the handshake is dropped. Whoever knows the
/// tuple (server, public address and port) can stop connections being set
/// up, one spoofed segment each.
#[test]
fn a_spoofed_syn_ack_does_not_break_the_handshake() {
    let h = nat_router("");
    let client = sa("10.0.1.5:23528");
    let server = sa("203.0.113.8:80");
    let public = sa("10.0.2.1:23528");
    let syn = tcp_segment_with(
        plain(client.ip(), server.ip()),
        (23528, 80),
        TCP_SYN,
        (1000, 0),
        64240,
        &[etherparse::TcpOptionElement::WindowScale(7)],
        b"",
    );
    assert_eq!(h.ingress_lan(&syn), Verdict::Pass);
    let spoofed = tcp(server, public, TCP_SYN | TCP_ACK, 777_777, 1_000_000, b"");
    assert_eq!(h.ingress_wan(&spoofed), Verdict::Drop);
    let syn_ack = tcp_segment_with(
        plain(server.ip(), public.ip()),
        (80, 23528),
        TCP_SYN | TCP_ACK,
        (9000, 1001),
        64240,
        &[etherparse::TcpOptionElement::WindowScale(7)],
        b"",
    );
    assert_eq!(h.ingress_wan(&syn_ack), Verdict::Pass);
    let ack = tcp_segment_with(
        plain(client.ip(), server.ip()),
        (23528, 80),
        TCP_ACK,
        (1001, 9001),
        502,
        &[],
        b"",
    );
    assert_eq!(
        h.ingress_lan(&ack),
        Verdict::Pass,
        "the handshake's last ACK"
    );
}

/// Fuzzer seed 0x1: a first fragment of a segment the state machine
/// refuses (an ACK in SYN_SENT from the original side) is dropped
/// (`drop_invalid_tcp_state`), but `track` has already marked both
/// directions liberal for it (a partial segment), and the datapath stores
/// the windows whatever the verdict: window checks stay off for the
/// connection.
#[test]
fn a_refused_first_fragment_leaves_the_windows_as_they_were() {
    let h = nat_router("");
    let syn = unhex(
        "02000000000a02000000000b08004500004012340000400621770a000105cb0071085be8005081fecc37\
         00000000b002faf087700000020405b4010104020101080a62525fc4000000000103030d",
    );
    // Same flow, PSH|ACK, IPv4 "more fragments".
    let first_fragment = unhex(
        "02000000000a02000000000b080045000034b413200040065fa40a000105cb0071085be8005081fecc38\
         4f6cd8085018faf04ac20000020c1ccd5fb39525d6bf9f5d",
    );
    assert_eq!(h.ingress_lan(&syn), Verdict::Pass);
    let key = tcp_key(sa("10.0.1.5:23528"), sa("203.0.113.8:80"));
    assert_eq!(h.ingress_lan(&first_fragment), Verdict::Drop);
    assert!(grew(&h, DropInvalidTcpState));
    let t = h.entry(&key).expect("connection").tcp;
    for (dir, seen) in t.seen.iter().enumerate() {
        assert_eq!(
            seen.flags & seen_flags::BE_LIBERAL,
            0,
            "direction {dir} made liberal by a refused segment"
        );
    }
}

/// Fuzzer seed 0x2: a non-first fragment the host sends from its LAN
/// address leaves the masquerading `wan0` untranslated (`accept_fragment`
/// before any translation). The fragment work in progress is meant to
/// give it its first fragment's translation, or drop it.
#[test]
fn a_later_fragment_the_host_sends_does_not_leave_a_masquerading_interface_untranslated() {
    let h = nat_router("");
    // 10.0.1.1 -> 203.0.113.25, UDP, fragment offset 0xff.
    let fragment = unhex(
        "02000000000a02000000000b08004500001d123400ff401121820a000101cb0071190014001500008ca12c",
    );
    let (v, out) = h.tc_egress_on(HOST_ORIGINATED, h.wan, &fragment);
    if v == Verdict::Pass {
        assert_ne!(
            out[ETH_LEN + 12..ETH_LEN + 16],
            [10, 0, 1, 1],
            "left wan0 from the LAN address"
        );
    }
}
