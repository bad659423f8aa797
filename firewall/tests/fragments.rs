//! Fragments under BPF_PROG_TEST_RUN (issue 12): a later fragment follows the
//! verdict and the translation of its datagram's first fragment, both
//! families, both directions, through masquerade and a port forward, at XDP
//! and at TC; and every bad fragment gets its defined verdict and counter.
//!
//! Datagrams are built whole by etherparse and cut into fragments here
//! ([`fragments_v4`], [`fragments_v6`]); what the programs let out is put
//! back together ([`reassemble_v4`]) and compared byte for byte with the
//! datagram etherparse builds with the translated addresses, so the
//! transport checksum the first fragment's incremental update left must be
//! the one computed over the whole datagram.
//!
//! Topology as in `nat.rs`: `lan0` 10.0.1.1/24, `wan0` 10.0.2.1/24, default
//! route out of `wan0`, forwarding on.
//!
//! Needs root: `cargo test -p firewall --test fragments`.

mod common;

use std::net::{IpAddr, SocketAddr};

use common::*;
use etherparse::{IpNumber, Ipv4Header};
use firewall_common::{
    Counter::{self, *},
    TcpState,
    tcp::{TCP_ACK, TCP_PSH, TCP_SYN},
};

const ROUTER_MORE: &[&str] = &[
    GATEWAY_NEIGH,
    "addr add fd00:1::1/64 dev lan0 nodad",
    "addr add fd00:2::1/64 dev wan0 nodad",
    "-6 route add default via fd00:2::fe dev wan0",
    "-6 neigh add fd00:2::fe lladdr 02:00:00:00:00:fe dev wan0",
];

const WAN_ADDR: &str = "10.0.2.1";
const MASQUERADE: &str = "masquerade = true";
const UDP_FORWARD: &str = "[[port_forward]]\nproto = \"udp\"\nport = 5060\nto = \"10.0.1.10\"\n";

fn router(wan_keys: &str, config_toml: &str) -> Harness {
    router_harness(ROUTER_MORE, FORWARDING, wan_keys, config_toml)
}

/// `len` bytes that differ from position to position, so a piece put back
/// in the wrong place shows.
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

const IP4: usize = ETH_LEN;
const IP6: usize = ETH_LEN;

/// Cuts a plain Ethernet + IPv4 frame (no options) into fragments of at
/// most `piece` bytes of IP payload (a multiple of 8), identification `id`,
/// each with its header checksum recomputed by etherparse.
fn fragments_v4(whole: &[u8], id: u16, piece: usize) -> Vec<Vec<u8>> {
    assert_eq!(piece % 8, 0);
    let (hdr, _) = Ipv4Header::from_slice(&whole[IP4..]).expect("IPv4 header");
    let data = &whole[IP4 + hdr.header_len()..];
    let mut out = Vec::new();
    let mut off = 0;
    while off < data.len() {
        let end = (off + piece).min(data.len());
        out.push(v4_fragment(
            whole,
            id,
            off,
            end < data.len(),
            &data[off..end],
        ));
        off = end;
    }
    out
}

/// One IPv4 fragment of `whole` at byte offset `off` carrying `bytes`.
fn v4_fragment(whole: &[u8], id: u16, off: usize, more: bool, bytes: &[u8]) -> Vec<u8> {
    let (mut hdr, _) = Ipv4Header::from_slice(&whole[IP4..]).expect("IPv4 header");
    hdr.identification = id;
    hdr.dont_fragment = false;
    hdr.more_fragments = more;
    hdr.fragment_offset = etherparse::IpFragOffset::try_new((off / 8) as u16).expect("offset");
    hdr.total_len = (hdr.header_len() + bytes.len()) as u16;
    hdr.header_checksum = hdr.calc_header_checksum();
    let mut f = whole[..IP4].to_vec();
    f.extend_from_slice(&hdr.to_bytes());
    f.extend_from_slice(bytes);
    f
}

/// Puts IPv4 fragments (in any order) back into the whole frame: the first
/// fragment's Ethernet and IP header, fragment fields cleared, identification
/// `0` and the header checksum recomputed, as etherparse builds a datagram.
/// Checks every fragment's own header checksum first.
#[track_caller]
fn reassemble_v4(frags: &[Vec<u8>]) -> Vec<u8> {
    let mut pieces: Vec<(usize, &[u8])> = Vec::new();
    let mut first = None;
    for f in frags {
        let (hdr, rest) = Ipv4Header::from_slice(&f[IP4..]).expect("fragment header");
        assert_eq!(
            hdr.header_checksum,
            hdr.calc_header_checksum(),
            "IPv4 header checksum of a fragment"
        );
        let off = hdr.fragment_offset.value() as usize * 8;
        let len = hdr.total_len as usize - hdr.header_len();
        if off == 0 {
            first = Some(hdr.clone());
        }
        pieces.push((off, &rest[..len]));
    }
    pieces.sort_by_key(|(off, _)| *off);
    let mut data = Vec::new();
    for (off, bytes) in pieces {
        assert_eq!(off, data.len(), "fragments leave a gap or overlap");
        data.extend_from_slice(bytes);
    }
    let mut hdr = first.expect("a first fragment");
    hdr.identification = 0;
    hdr.more_fragments = false;
    hdr.dont_fragment = true;
    hdr.fragment_offset = etherparse::IpFragOffset::ZERO;
    hdr.total_len = (hdr.header_len() + data.len()) as u16;
    hdr.header_checksum = hdr.calc_header_checksum();
    let mut f = frags[0][..IP4].to_vec();
    f.extend_from_slice(&hdr.to_bytes());
    f.extend_from_slice(&data);
    f
}

/// Cuts a plain Ethernet + IPv6 frame (no extension headers) into
/// fragments of at most `piece` bytes (a multiple of 8) behind a fragment
/// header with identification `id`.
fn fragments_v6(whole: &[u8], id: u32, piece: usize) -> Vec<Vec<u8>> {
    assert_eq!(piece % 8, 0);
    let nh = whole[IP6 + 6];
    let data = &whole[IP6 + 40..];
    let mut out = Vec::new();
    let mut off = 0;
    while off < data.len() {
        let end = (off + piece).min(data.len());
        out.push(v6_fragment(
            whole,
            &[],
            nh,
            id,
            off,
            end < data.len(),
            &data[off..end],
        ));
        off = end;
    }
    out
}

/// One IPv6 fragment: `whole`'s Ethernet and IPv6 header, then
/// `before` (extension headers ahead of the fragment header; its first
/// byte's next header must be 44), the fragment header naming `nh`, and
/// `bytes`.
fn v6_fragment(
    whole: &[u8],
    before: &[u8],
    nh: u8,
    id: u32,
    off: usize,
    more: bool,
    bytes: &[u8],
) -> Vec<u8> {
    let mut f = whole[..IP6 + 40].to_vec();
    f[IP6 + 6] = if before.is_empty() { 44 } else { 0 };
    f.extend_from_slice(before);
    f.push(nh);
    f.push(0);
    f.extend_from_slice(&((off as u16) | u16::from(more)).to_be_bytes());
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(bytes);
    let plen = (f.len() - IP6 - 40) as u16;
    f[IP6 + 4..IP6 + 6].copy_from_slice(&plen.to_be_bytes());
    f
}

fn udp_key(src: SocketAddr, dst: SocketAddr) -> firewall_common::CtKey {
    key(IpNumber::UDP, src, dst)
}

fn counters(h: &Harness, names: &[Counter]) -> Vec<(Counter, u64)> {
    names.iter().map(|c| (*c, h.counter(*c))).collect()
}

/// The everyday case: a small DNS query from the LAN through masquerade,
/// and a 3,000-byte answer in three fragments. Each fragment passes XDP and
/// is translated back at TC ingress; the datagram they make is the answer
/// addressed to the LAN host, with the checksum a whole datagram would have.
#[test]
fn a_fragmented_answer_to_a_masqueraded_query_reaches_the_lan_host_whole() {
    let h = router(MASQUERADE, "");
    let client = sa("10.0.1.5:40000");
    let server = sa("203.0.113.53:53");
    let public = at(WAN_ADDR, 40000);

    let query = udp(client, server, b"big.test TXT");
    assert_eq!(h.ingress_lan(&query), Verdict::Pass);
    assert_eq!(h.forward_to_wan(&query).0, Verdict::Pass);

    let answer = payload(3000);
    let frags = fragments_v4(&udp(server, public, &answer), 0x4242, 1480);
    assert_eq!(frags.len(), 3);
    let mut out = Vec::new();
    for f in &frags {
        assert_eq!(h.ingress_wan(f), Verdict::Pass);
        let (v, o) = h.tc_ingress(h.wan, f);
        assert_eq!(v, Verdict::Pass);
        let (v, o) = h.forward_to_lan(&o);
        assert_eq!(v, Verdict::Pass);
        out.push(o);
    }
    assert_eq!(reassemble_v4(&out), udp(server, client, &answer));
    h.assert_counters(&[
        (AcceptNew, 1),
        (CtCreated, 1),
        (AcceptEstablished, 1),
        (AcceptFragment, 2),
        (NatSrcRewritten, 1),
        (NatDstRewritten, 3),
        (FastPathNat, 1),
        (SkipForwarded, 3),
    ]);
}

/// An 8,000-byte datagram the LAN host fragmented itself: every fragment
/// leaves `wan0` from the WAN address, and the answer, fragmented, comes
/// back whole.
#[test]
fn a_lan_hosts_fragmented_datagram_leaves_masquerade_translated_and_its_answer_returns() {
    let h = router(MASQUERADE, "");
    let client = sa("10.0.1.5:41000");
    let server = sa("203.0.113.9:7");
    let public = at(WAN_ADDR, 41000);
    let data = payload(8000);

    let frags = fragments_v4(&udp(client, server, &data), 7, 1480);
    assert_eq!(frags.len(), 6);
    let mut out = Vec::new();
    for f in &frags {
        assert_eq!(h.ingress_lan(f), Verdict::Pass);
        let (v, o) = h.forward_to_wan(f);
        assert_eq!(v, Verdict::Pass);
        out.push(o);
    }
    assert_eq!(reassemble_v4(&out), udp(public, server, &data));
    h.assert_pair(
        &udp_key(client, server),
        &udp_key(server, public),
        TcpState::None,
        UNREPLIED,
    );

    let echo = fragments_v4(&udp(server, public, &data), 99, 1480);
    let mut back = Vec::new();
    for f in &echo {
        assert_eq!(h.ingress_wan(f), Verdict::Pass);
        let (v, o) = h.tc_ingress(h.wan, f);
        assert_eq!(v, Verdict::Pass);
        back.push(o);
    }
    assert_eq!(reassemble_v4(&back), udp(server, client, &data));
    assert_eq!(h.counter(AcceptFragment), 10);
    assert_eq!(h.counter(NatSrcRewritten), 6);
    assert_eq!(h.counter(NatDstRewritten), 6);
}

/// The router fragments what it forwards to a smaller MTU: XDP saw the
/// datagram whole, and TC egress, seeing its fragments, records the first
/// for the rest to take its translation.
#[test]
fn fragments_the_router_makes_take_the_translation_at_egress() {
    let h = router(MASQUERADE, "");
    let client = sa("10.0.1.5:42000");
    let server = sa("203.0.113.9:9");
    let public = at(WAN_ADDR, 42000);
    let data = payload(2000);
    let whole = udp(client, server, &data);
    assert_eq!(h.ingress_lan(&whole), Verdict::Pass);

    let mut out = Vec::new();
    for f in &fragments_v4(&whole, 0x77, 1480) {
        let (v, o) = h.forward_to_wan(f);
        assert_eq!(v, Verdict::Pass);
        out.push(o);
    }
    assert_eq!(reassemble_v4(&out), udp(public, server, &data));
    assert_eq!(h.counter(NatSrcRewritten), 2);
}

/// A port forward admits the first fragment (in `firewall_xdp_admit`,
/// which records it); the rest follow it to the LAN server.
#[test]
fn fragments_through_a_port_forward_follow_their_first_to_the_lan_server() {
    let h = router("", UDP_FORWARD);
    let client = sa("198.51.100.20:33000");
    let forwarded = at(WAN_ADDR, 5060);
    let target = sa("10.0.1.10:5060");
    let data = payload(2500);

    let mut out = Vec::new();
    for f in &fragments_v4(&udp(client, forwarded, &data), 0x1234, 1480) {
        assert_eq!(h.ingress_wan(f), Verdict::Pass);
        let (v, o) = h.tc_ingress(h.wan, f);
        assert_eq!(v, Verdict::Pass);
        out.push(o);
    }
    assert_eq!(reassemble_v4(&out), udp(client, target, &data));
    assert_eq!(h.counter(AcceptPortForward), 1);
    assert_eq!(h.counter(AcceptFragment), 1);
}

/// IPv6 is routed, never translated: the answer's fragments follow the
/// first into the LAN, untouched.
#[test]
fn ipv6_answer_fragments_follow_their_first_fragment() {
    let h = router("", "");
    let client = sa("[fd00:1::5]:40000");
    let server = sa("[2001:db8::53]:53");

    assert_eq!(h.ingress_lan(&udp(client, server, b"q")), Verdict::Pass);
    let answer = udp(server, client, &payload(3000));
    let frags = fragments_v6(&answer, 0xdead_beef, 1448);
    assert_eq!(frags.len(), 3);
    for f in &frags {
        assert_eq!(h.ingress_wan(f), Verdict::Pass);
        let (v, o) = h.tc_ingress(h.wan, f);
        assert_eq!((v, &o), (Verdict::Pass, f));
    }
    assert_eq!(h.counter(AcceptFragment), 2);
    assert_eq!(h.counter(AcceptEstablished), 1);
}

/// Fragments nobody asked for: the first is dropped by policy, and the rest
/// of its datagram with it, whatever the order. Nothing is created.
#[test]
fn a_fragmented_datagram_from_the_wan_to_an_unopened_port_stays_out() {
    let h = router(MASQUERADE, "");
    let attacker = sa("198.51.100.66:4444");
    let frags = fragments_v4(&udp(attacker, at(WAN_ADDR, 9999), &payload(3000)), 5, 1480);
    // A later fragment first: nothing on record to follow.
    assert_eq!(h.ingress_wan(&frags[2]), Verdict::Drop);
    assert_eq!(h.ingress_wan(&frags[0]), Verdict::Drop);
    assert_eq!(h.ingress_wan(&frags[1]), Verdict::Drop);
    assert_eq!(h.conntrack_len(), 0);
    assert_eq!(
        counters(&h, &[DropFragment, DropPolicy, DropFragmentFollows]),
        [(DropFragment, 1), (DropPolicy, 1), (DropFragmentFollows, 1)]
    );

    let v6 = fragments_v6(
        &udp(
            sa("[2001:db8::66]:4444"),
            sa("[fd00:1::5]:9999"),
            &payload(3000),
        ),
        6,
        1448,
    );
    for f in &v6 {
        assert_eq!(h.ingress_wan(f), Verdict::Drop);
    }
    assert_eq!(h.counter(DropPolicy), 2);
    assert_eq!(h.counter(DropFragmentFollows), 3);
    assert_eq!(h.conntrack_len(), 0);
}

/// A later fragment from the LAN with no first fragment on record passes
/// XDP (counted), but never leaves the masquerading interface untranslated.
#[test]
fn an_orphan_fragment_from_the_lan_never_leaves_masquerade_untranslated() {
    let h = router(MASQUERADE, "");
    let frags = fragments_v4(
        &udp(sa("10.0.1.5:43000"), sa("203.0.113.9:9"), &payload(3000)),
        11,
        1480,
    );
    assert_eq!(h.ingress_lan(&frags[1]), Verdict::Pass);
    let (v, _) = h.forward_to_wan(&frags[1]);
    assert_eq!(v, Verdict::Drop);
    h.assert_counters(&[(AcceptFragmentOrphan, 1), (DropFragmentUntranslated, 1)]);
}

/// RFC 1858's tiny fragment: a first fragment that stops inside the TCP
/// header (its flags would arrive after the verdict). It is dropped, and the
/// rest of its datagram with it; no connection is made.
#[test]
fn a_tiny_first_fragment_is_dropped_with_its_datagram() {
    let h = router("", "");
    let syn = tcp(
        sa("10.0.1.5:44000"),
        sa("203.0.113.9:80"),
        TCP_SYN,
        1,
        0,
        &[],
    );
    let frags = fragments_v4(&syn, 21, 8);
    assert_eq!(frags.len(), 3);
    for f in &frags {
        assert_eq!(h.ingress_lan(f), Verdict::Drop);
    }
    assert_eq!(h.conntrack_len(), 0);
    assert_eq!(
        counters(&h, &[DropFragmentTiny, DropFragmentFollows]),
        [(DropFragmentTiny, 1), (DropFragmentFollows, 2)]
    );
}

/// RFC 1858 / 3128: after the first fragment of a segment is accepted, a
/// fragment at offset 8 would rewrite its TCP flags and window. It is
/// dropped, and the datagram is dead: the rest of it is dropped too. An
/// unknown datagram's fragment at offset 8 is refused the same way.
#[test]
fn a_fragment_overlapping_the_tcp_header_kills_its_datagram() {
    let h = router("", "");
    let mut c = TcpConv::new("10.0.1.5:45000", "203.0.113.9:80");
    assert_eq!(h.ingress_lan(&c.client_sends(TCP_SYN, &[])), Verdict::Pass);
    assert_eq!(
        h.ingress_wan(&c.server_sends(TCP_SYN | TCP_ACK, &[])),
        Verdict::Pass
    );
    // Established: the fast path may forward it itself.
    assert_ne!(h.ingress_lan(&c.client_sends(TCP_ACK, &[])), Verdict::Drop);

    let seg = c.server_sends(TCP_ACK | TCP_PSH, &payload(2000));
    let frags = fragments_v4(&seg, 31, 1480);
    assert_eq!(h.ingress_wan(&frags[0]), Verdict::Pass);
    let data = &seg[IP4 + 20..];
    let overlap = v4_fragment(&seg, 31, 8, true, &data[8..64]);
    assert_eq!(h.ingress_wan(&overlap), Verdict::Drop);
    assert_eq!(h.ingress_wan(&frags[1]), Verdict::Drop);
    assert_eq!(
        counters(&h, &[DropFragmentOverlap, DropFragmentFollows]),
        [(DropFragmentOverlap, 1), (DropFragmentFollows, 1)]
    );

    let stray = v4_fragment(&seg, 32, 8, true, &data[8..64]);
    assert_eq!(h.ingress_lan(&stray), Verdict::Drop);
    assert_eq!(h.counter(DropFragmentOverlap), 2);
}

/// A second first fragment with another transport header for a datagram
/// already decided would swap the ports its verdict was made on: the
/// datagram is dropped whole. An exact duplicate is harmless and passes.
#[test]
fn a_different_second_first_fragment_is_an_overlap_a_duplicate_is_not() {
    let h = router("", "");
    let client = sa("10.0.1.5:46000");
    let frags = fragments_v4(&udp(client, sa("203.0.113.9:53"), &payload(3000)), 41, 1480);
    assert_eq!(h.ingress_lan(&frags[0]), Verdict::Pass);
    assert_eq!(h.ingress_lan(&frags[0]), Verdict::Pass);
    let other = fragments_v4(&udp(client, sa("203.0.113.9:54"), &payload(3000)), 41, 1480);
    assert_eq!(h.ingress_lan(&other[0]), Verdict::Drop);
    assert_eq!(h.ingress_lan(&frags[1]), Verdict::Drop);
    assert_eq!(
        counters(
            &h,
            &[DropFragmentOverlap, DropFragmentFollows, AcceptFragment]
        ),
        [
            (DropFragmentOverlap, 1),
            (DropFragmentFollows, 1),
            (AcceptFragment, 0)
        ]
    );
}

/// The "ping of death": a fragment whose offset plus length passes 65,535
/// bytes describes a datagram that cannot exist.
#[test]
fn a_fragment_ending_past_65535_bytes_is_dropped() {
    let h = router("", "");
    let ping = echo(ip("10.0.1.5"), ip("203.0.113.9"), true, 1, 1);
    assert_eq!(h.ingress_lan(&ping), Verdict::Pass);
    let last = v4_fragment(&ping, 51, 65528, false, &[0u8; 64]);
    assert_eq!(h.ingress_lan(&last), Verdict::Drop);
    assert_eq!(h.counter(DropFragmentOversize), 1);
}

/// A later fragment that carries another protocol than its datagram's
/// first fragment does not follow it.
#[test]
fn a_fragment_of_another_protocol_than_its_datagram_is_dropped() {
    let h = router("", "");
    let data = payload(3000);
    let frags = fragments_v4(
        &udp(sa("10.0.1.5:47000"), sa("203.0.113.9:53"), &data),
        61,
        1480,
    );
    assert_eq!(h.ingress_lan(&frags[0]), Verdict::Pass);
    let mut tcp_piece = frags[1].clone();
    let (mut hdr, _) = Ipv4Header::from_slice(&tcp_piece[IP4..]).expect("header");
    hdr.protocol = IpNumber::TCP;
    hdr.header_checksum = hdr.calc_header_checksum();
    tcp_piece[IP4..IP4 + 20].copy_from_slice(&hdr.to_bytes());
    assert_eq!(h.ingress_lan(&tcp_piece), Verdict::Drop);
    assert_eq!(h.counter(DropFragmentProto), 1);
    // The datagram itself is unharmed.
    assert_eq!(h.ingress_lan(&frags[1]), Verdict::Pass);
}

/// RFC 6946: an IPv6 atomic fragment (offset 0, no more fragments) is the
/// whole packet it looks like: tracked by its ports, and counted.
#[test]
fn an_ipv6_atomic_fragment_is_handled_as_the_whole_packet() {
    let h = router("", "");
    let client = sa("[fd00:1::5]:48000");
    let server = sa("[2001:db8::9]:53");
    let whole = udp(client, server, b"atomic");
    let atomic = v6_fragment(&whole, &[], 17, 71, 0, false, &whole[IP6 + 40..]);
    assert_eq!(h.ingress_lan(&atomic), Verdict::Pass);
    h.assert_conn(&udp_key(client, server), TcpState::None, UNREPLIED);
    h.assert_counters(&[(AcceptNew, 1), (CtCreated, 1), (FragmentAtomic, 1)]);
}

/// The fragment header may come after other extension headers (hop-by-hop
/// options here), and a destination options header may follow it in the
/// first fragment only: the later fragments' next header names it, and
/// they still follow their first fragment.
#[test]
fn an_ipv6_fragment_header_behind_extension_headers_is_followed() {
    let h = router("", "");
    let client = sa("[fd00:1::5]:49000");
    let server = sa("[2001:db8::9]:53");
    let whole = udp(client, server, &payload(3000));
    let udp_part = &whole[IP6 + 40..];
    // Hop-by-hop (next: fragment), 8 bytes of PadN.
    let hop_by_hop = [44, 0, 1, 4, 0, 0, 0, 0];
    // Destination options (next: UDP), 8 bytes of PadN.
    let mut first_part = vec![17, 0, 1, 4, 0, 0, 0, 0];
    first_part.extend_from_slice(&udp_part[..1440]);
    let first = v6_fragment(&whole, &hop_by_hop, 60, 81, 0, true, &first_part);
    let second = v6_fragment(
        &whole,
        &hop_by_hop,
        60,
        81,
        1448,
        true,
        &udp_part[1440..2880],
    );
    let last = v6_fragment(&whole, &hop_by_hop, 60, 81, 2888, false, &udp_part[2880..]);
    for f in [&first, &second, &last] {
        assert_eq!(h.ingress_lan(f), Verdict::Pass);
    }
    h.assert_conn(&udp_key(client, server), TcpState::None, UNREPLIED);
    assert_eq!(h.counter(AcceptFragment), 2);
    assert_eq!(h.counter(DropMalformed), 0);
}

/// The host's own fragmented datagram is tracked at TC egress by its first
/// fragment, and the fragmented answer is let in by XDP.
#[test]
fn the_hosts_own_fragmented_datagram_and_its_answer_pass() {
    let h = router("", "");
    let me = sa("10.0.2.1:50000");
    let server = sa("203.0.113.9:53");
    for f in &fragments_v4(&udp(me, server, &payload(3000)), 91, 1480) {
        assert_eq!(h.egress_host(f), Verdict::Pass);
    }
    h.assert_conn(&udp_key(me, server), TcpState::None, UNREPLIED);
    for f in &fragments_v4(&udp(server, me, &payload(3000)), 92, 1480) {
        assert_eq!(h.ingress_wan(f), Verdict::Pass);
    }
    assert_eq!(h.counter(AcceptFragment), 4);
    assert_eq!(h.counter(AcceptFragmentOrphan), 0);
}

/// The fast path leaves a first fragment of an established flow to the
/// stack, counted, so that its datagram keeps one path and one order.
#[test]
fn the_fast_path_leaves_fragments_to_the_stack() {
    let h = router("", "");
    let client = sa("10.0.1.5:51000");
    let server = sa("203.0.113.9:53");
    assert_eq!(h.ingress_lan(&udp(client, server, b"q")), Verdict::Pass);
    assert_eq!(h.ingress_wan(&udp(server, client, b"a")), Verdict::Pass);
    for f in &fragments_v4(&udp(server, client, &payload(3000)), 93, 1480) {
        assert_eq!(h.ingress_wan(f), Verdict::Pass);
    }
    assert_eq!(h.counter(FastPathFragment), 1);
    assert_eq!(h.counter(AcceptFragment), 2);
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("IP address")
}

/// RFC 1071 sum of `bytes`, folded: 0xffff over a message whose checksum is
/// right. (The test's own arithmetic, not the datapath's.)
fn ones_sum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// A port unreachable from the server quoting the first fragment of a
/// masqueraded datagram (as the server received it: from the WAN address)
/// is RELATED, and TC ingress translates the quote back to the LAN host,
/// with every checksum right.
#[test]
fn an_icmp_error_quoting_a_first_fragment_is_related_and_translated_back() {
    let h = router(MASQUERADE, "");
    let client = sa("10.0.1.5:52000");
    let server = sa("203.0.113.9:9");
    let frags = fragments_v4(&udp(client, server, &payload(3000)), 0x99, 1480);
    let mut sent = Vec::new();
    for f in &frags {
        assert_eq!(h.ingress_lan(f), Verdict::Pass);
        let (v, o) = h.forward_to_wan(f);
        assert_eq!(v, Verdict::Pass);
        sent.push(o);
    }
    // The quote: the first fragment's IP header (more fragments set) and 64
    // bytes of its UDP datagram.
    let quoted = &sent[0][IP4..IP4 + 20 + 64];
    let error = port_unreachable(ip("203.0.113.9"), ip(WAN_ADDR), quoted);
    assert_eq!(h.ingress_wan(&error), Verdict::Pass);
    assert_eq!(h.counter(AcceptRelated), 1);
    let (v, out) = h.tc_ingress(h.wan, &error);
    assert_eq!(v, Verdict::Pass);
    let (outer, icmp) = Ipv4Header::from_slice(&out[IP4..]).expect("outer header");
    assert_eq!(outer.destination, [10, 0, 1, 5]);
    assert_eq!(outer.header_checksum, outer.calc_header_checksum());
    assert_eq!(ones_sum(icmp), 0xffff, "ICMP checksum");
    let (inner, inner_rest) = Ipv4Header::from_slice(&icmp[8..]).expect("quoted header");
    assert_eq!(inner.source, [10, 0, 1, 5]);
    assert!(inner.more_fragments);
    assert_eq!(inner.header_checksum, inner.calc_header_checksum());
    assert_eq!(u16::from_be_bytes([inner_rest[0], inner_rest[1]]), 52000);
}

const HELPER: &str = "[[helper]]\nproto = \"tcp\"\nport = 21\nkind = \"ftp\"\n";

/// A fragmented segment of a helped FTP control connection is dropped at
/// egress: the helper can neither read a command split over fragments nor
/// resize the segment without breaking its datagram.
#[test]
fn a_fragmented_segment_of_a_helped_ftp_control_connection_is_dropped() {
    let h = router("", HELPER);
    let mut c = TcpConv::new("10.0.1.5:40021", "203.0.113.7:21");
    let syn = c.client_sends(TCP_SYN, &[]);
    assert_eq!(h.ingress_lan(&syn), Verdict::Pass);
    assert_eq!(h.forward_to_wan(&syn).0, Verdict::Pass);
    let syn_ack = c.server_sends(TCP_SYN | TCP_ACK, &[]);
    assert_eq!(h.ingress_wan(&syn_ack), Verdict::Pass);
    assert_eq!(h.tc_ingress(h.wan, &syn_ack).0, Verdict::Pass);
    let ack = c.client_sends(TCP_ACK, &[]);
    assert_eq!(h.ingress_lan(&ack), Verdict::Pass);
    assert_eq!(h.forward_to_wan(&ack).0, Verdict::Pass);

    let cmd = c.client_sends(TCP_PSH | TCP_ACK, b"PORT 10,0,1,5,195,80\r\n");
    let frags = fragments_v4(&cmd, 0x21, 24);
    assert_eq!(h.ingress_lan(&frags[0]), Verdict::Pass);
    assert_eq!(h.forward_to_wan(&frags[0]).0, Verdict::Drop);
    assert_eq!(h.counter(DropFragmentHelper), 1);
    assert_eq!(h.counter(FtpExpectCreated), 0);
}
