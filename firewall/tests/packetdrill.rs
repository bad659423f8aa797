//! The kernel's conntrack packetdrill cases
//! (`tools/testing/selftests/net/netfilter/packetdrill/conntrack_*.pkt`)
//! replayed as packet sequences through the real programs under
//! BPF_PROG_TEST_RUN, each packet's verdict and the connection's state
//! asserted where the script checks them, and the INVALID count the script
//! expects (there an `-m conntrack --ctstate INVALID -j DROP` rule's
//! counter; here the drops counted by reason).
//!
//! In the scripts a socket on the test host talks to a scripted peer. Here
//! the host and the peer sit on either side of the firewall: where the
//! host connects, it is on the LAN and the peer beyond the WAN; where the
//! host listens, the peer connects from the LAN (the direction, not the
//! interface, is what conntrack's logic turns on). Sequence numbers are
//! the scripts' relative ones plus each side's initial sequence number.
//!
//! Needs root: `cargo test -p firewall --test packetdrill`.

mod common;

use common::*;
use etherparse::TcpOptionElement;
use firewall_common::{
    Counter::{self, *},
    CtKey, TcpState,
    tcp::{TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN},
};

const LAN_END: &str = "10.1.0.5:40000";
const WAN_END: &str = "203.0.113.7:8080";
/// The host's and the peer's initial sequence numbers.
const H: u32 = 1_000_000;
const P: u32 = 3_000_000_000;

/// The SYN options of the scripts' connecting sockets.
fn syn_opts(wscale: u8) -> [TcpOptionElement; 5] {
    [
        TcpOptionElement::MaximumSegmentSize(1460),
        TcpOptionElement::SelectiveAcknowledgementPermitted,
        TcpOptionElement::Timestamp(1, 0),
        TcpOptionElement::Noop,
        TcpOptionElement::WindowScale(wscale),
    ]
}

/// One side of a replayed conversation.
#[derive(Clone, Copy)]
enum Side {
    /// The endpoint on the LAN.
    Lan,
    /// The endpoint beyond the WAN.
    Wan,
}

/// A segment from `from`, as it arrives at the firewall.
struct Seg<'a> {
    flags: u8,
    seq: u32,
    ack: u32,
    win: u16,
    opts: &'a [TcpOptionElement],
    len: usize,
}

fn seg(flags: u8, seq: u32, ack: u32) -> Seg<'static> {
    Seg {
        flags,
        seq,
        ack,
        win: 65535,
        opts: &[],
        len: 0,
    }
}

impl<'a> Seg<'a> {
    fn win(self, win: u16) -> Self {
        Seg { win, ..self }
    }
    fn opts(self, opts: &'a [TcpOptionElement]) -> Self {
        Seg { opts, ..self }
    }
    fn len(self, len: usize) -> Self {
        Seg { len, ..self }
    }
}

/// Sends `s` from `from` through the XDP program of its interface.
fn send(h: &Harness, from: Side, s: Seg) -> Verdict {
    let (src, dst) = match from {
        Side::Lan => (sa(LAN_END), sa(WAN_END)),
        Side::Wan => (sa(WAN_END), sa(LAN_END)),
    };
    let payload = vec![0x61; s.len];
    let ip = plain(src.ip(), dst.ip());
    let ports = (src.port(), dst.port());
    let out = tcp_segment_with(ip, ports, s.flags, (s.seq, s.ack), s.win, s.opts, &payload);
    match from {
        Side::Lan => h.ingress_lan(&out),
        Side::Wan => h.ingress_wan(&out),
    }
}

/// The connection's key when `client` opened it.
fn key(client: Side) -> CtKey {
    match client {
        Side::Lan => tcp_key(sa(LAN_END), sa(WAN_END)),
        Side::Wan => tcp_key(sa(WAN_END), sa(LAN_END)),
    }
}

fn state(h: &Harness, client: Side) -> TcpState {
    let e = h.entry(&key(client)).expect("the connection's entry");
    TcpState::from_u8(e.tcp_state).expect("a TCP state")
}

/// Every INVALID drop by reason, as the scripts' INVALID rule counts them.
fn invalid(h: &Harness) -> u64 {
    [
        DropTcpWindowSeqAbove,
        DropTcpWindowAckAbove,
        DropTcpWindowRst,
        DropInvalidTcpState,
        DropInvalidTcpFlags,
        DropInvalidTcpNew,
    ]
    .iter()
    .map(|&c: &Counter| h.counter(c))
    .sum()
}

/// `conntrack_rst_invalid.pkt`: RSTs outside the window (seq 0, 1000000),
/// in it but before what the host acknowledged (42, then one short of it)
/// are INVALID and the connection stays ESTABLISHED; the exact one closes.
#[test]
fn rst_invalid() {
    let h = Harness::new("");
    let (host, peer) = (Side::Lan, Side::Wan);
    let opts = syn_opts(8);
    assert_eq!(
        send(&h, host, seg(TCP_SYN, H, 0).opts(&opts)),
        Verdict::Pass
    );
    let mss = [TcpOptionElement::MaximumSegmentSize(1460)];
    let synack = seg(TCP_SYN | TCP_ACK, P + 1, H + 1).opts(&mss);
    assert_eq!(send(&h, peer, synack), Verdict::Pass);
    assert_eq!(send(&h, host, seg(TCP_ACK, H + 1, P + 1)), Verdict::Pass);
    for k in 0..3 {
        let data = seg(TCP_ACK, P + 1 + 1000 * k, H + 1).len(1000);
        assert_eq!(send(&h, peer, data), Verdict::Pass, "data {k}");
    }
    for k in 1..=3 {
        let ack = seg(TCP_ACK, H + 1, P + 1 + 1000 * k);
        assert_eq!(send(&h, host, ack), Verdict::Pass, "ack {k}");
    }
    for (i, rel) in [0, 1_000_000, 42].into_iter().enumerate() {
        let rst = seg(TCP_RST, P + rel, 0).win(0);
        assert_eq!(send(&h, peer, rst), Verdict::Drop, "RST {i} at {rel}");
        assert_eq!(state(&h, host), TcpState::Established);
    }
    let data = seg(TCP_PSH | TCP_ACK, H + 1, P + 3001).len(1000);
    assert_eq!(send(&h, host, data), Verdict::Pass);
    assert_eq!(
        send(&h, peer, seg(TCP_ACK, P + 3001, H + 1001)),
        Verdict::Pass
    );
    let short = seg(TCP_RST | TCP_ACK, P + 3000, H + 1001).win(0);
    assert_eq!(send(&h, peer, short), Verdict::Drop);
    assert_eq!(state(&h, host), TcpState::Established);
    let exact = seg(TCP_RST | TCP_ACK, P + 3001, H + 1001).win(0);
    assert_eq!(send(&h, peer, exact), Verdict::Pass);
    assert_eq!(state(&h, host), TcpState::Close);
    assert_eq!(h.counter(DropTcpWindowRst), 4);
    assert_eq!(invalid(&h), 4);
}

/// `conntrack_inexact_rst.pkt`: once the connection is closing, a late,
/// inexact RST from the peer is not INVALID.
#[test]
fn inexact_rst() {
    let h = Harness::new("");
    let (host, peer) = (Side::Lan, Side::Wan);
    let opts = syn_opts(8);
    let mss = [TcpOptionElement::MaximumSegmentSize(1460)];
    assert_eq!(
        send(&h, host, seg(TCP_SYN, H, 0).opts(&opts)),
        Verdict::Pass
    );
    let synack = seg(TCP_SYN | TCP_ACK, P + 1, H + 1).opts(&mss);
    assert_eq!(send(&h, peer, synack), Verdict::Pass);
    assert_eq!(send(&h, host, seg(TCP_ACK, H + 1, P + 1)), Verdict::Pass);
    for k in 0..3 {
        let data = seg(TCP_ACK, P + 1 + 1000 * k, H + 1).len(1000);
        assert_eq!(send(&h, peer, data), Verdict::Pass);
    }
    for k in 1..=3 {
        assert_eq!(
            send(&h, host, seg(TCP_ACK, H + 1, P + 1 + 1000 * k)),
            Verdict::Pass
        );
    }
    let data = seg(TCP_PSH | TCP_ACK, H + 1, P + 3001).len(1000);
    assert_eq!(send(&h, host, data), Verdict::Pass);
    // The peer closes; the host acknowledges its FIN.
    let fin = seg(TCP_FIN | TCP_ACK, P + 3001, H + 1001);
    assert_eq!(send(&h, peer, fin), Verdict::Pass);
    assert_eq!(
        send(&h, host, seg(TCP_ACK, H + 1001, P + 3002)),
        Verdict::Pass
    );
    assert_eq!(state(&h, host), TcpState::CloseWait);
    // The host closes with unread data: RST.
    let rst = seg(TCP_RST | TCP_ACK, H + 1001, P + 3002);
    assert_eq!(send(&h, host, rst), Verdict::Pass);
    assert_eq!(state(&h, host), TcpState::Close);
    // A spurious RST from the peer, far from exact: closing, so not INVALID.
    let late = seg(TCP_RST, P + 2001, 0).win(0);
    assert_eq!(send(&h, peer, late), Verdict::Pass);
    assert_eq!(invalid(&h), 0);
}

/// `conntrack_syn_challenge_ack.pkt`: the peer answers the host's SYN with
/// a challenge ACK for an old incarnation; the host resets it and
/// retries; the connection is then made. Nothing is INVALID.
#[test]
fn syn_challenge_ack() {
    let h = Harness::new("");
    let (host, peer) = (Side::Lan, Side::Wan);
    let opts = syn_opts(8);
    let peer_opts = [
        TcpOptionElement::MaximumSegmentSize(1460),
        TcpOptionElement::Noop,
        TcpOptionElement::Noop,
        TcpOptionElement::Timestamp(1, 1),
        TcpOptionElement::Noop,
        TcpOptionElement::WindowScale(0),
    ];
    assert_eq!(
        send(&h, host, seg(TCP_SYN, H, 0).opts(&opts)),
        Verdict::Pass
    );
    let challenge = seg(TCP_ACK, P + 145_824_453, H + 643_160_523)
        .win(240)
        .opts(&peer_opts);
    assert_eq!(send(&h, peer, challenge), Verdict::Pass);
    let rst = seg(TCP_RST, H + 643_160_523, 0).win(0);
    assert_eq!(send(&h, host, rst), Verdict::Pass);
    let e = h.entry(&key(host)).expect("the connection survives");
    assert_eq!(TcpState::from_u8(e.tcp_state), Some(TcpState::SynSent));
    assert_eq!(e.flags & SEEN_REPLY, 0, "still UNREPLIED");
    assert_eq!(
        send(&h, host, seg(TCP_SYN, H, 0).opts(&opts)),
        Verdict::Pass
    );
    let synack = seg(TCP_SYN | TCP_ACK, P, H + 1).win(250).opts(&peer_opts);
    assert_eq!(send(&h, peer, synack), Verdict::Pass);
    let ts = [
        TcpOptionElement::Noop,
        TcpOptionElement::Noop,
        TcpOptionElement::Timestamp(1, 1),
    ];
    let ack = seg(TCP_ACK, H + 1, P + 1).win(256).opts(&ts);
    assert_eq!(send(&h, host, ack), Verdict::Pass);
    h.assert_conn(&key(host), TcpState::Established, SEEN_REPLY | ASSURED);
    assert_eq!(invalid(&h), 0);
}

/// `conntrack_synack_old.pkt`: a SYN/ACK for an old incarnation (its ACK
/// is not the host's SYN) is INVALID and leaves SYN_SENT; after the SYN is
/// retransmitted, the correct SYN/ACK, with a sequence number below the
/// stale one's, is accepted (a regression once called it "SEQ over upper
/// bound").
#[test]
fn synack_old() {
    let h = Harness::new("");
    let (host, peer) = (Side::Lan, Side::Wan);
    let opts = syn_opts(8);
    let stale_opts = [
        TcpOptionElement::MaximumSegmentSize(1440),
        TcpOptionElement::Noop,
        TcpOptionElement::Noop,
        TcpOptionElement::Timestamp(1, 1),
        TcpOptionElement::Noop,
        TcpOptionElement::WindowScale(0),
    ];
    let good_opts = [
        TcpOptionElement::MaximumSegmentSize(1460),
        TcpOptionElement::Noop,
        TcpOptionElement::Noop,
        TcpOptionElement::Timestamp(1, 1),
        TcpOptionElement::Noop,
        TcpOptionElement::WindowScale(0),
    ];
    // The scripts' relative numbers: the stale SYN/ACK at the peer's base,
    // the correct one 65,535 below it.
    let stale_isn = P;
    let isn = P.wrapping_sub(65_535);
    assert_eq!(
        send(&h, host, seg(TCP_SYN, H, 0).opts(&opts)),
        Verdict::Pass
    );
    let stale = seg(TCP_SYN | TCP_ACK, stale_isn, H + 643_160_523)
        .win(240)
        .opts(&stale_opts);
    assert_eq!(send(&h, peer, stale), Verdict::Drop);
    assert_eq!(
        send(&h, host, seg(TCP_SYN, H, 0).opts(&opts)),
        Verdict::Pass
    );
    let e = h.entry(&key(host)).expect("the connection survives");
    assert_eq!(TcpState::from_u8(e.tcp_state), Some(TcpState::SynSent));
    assert_eq!(e.flags & SEEN_REPLY, 0, "still UNREPLIED");
    let synack = seg(TCP_SYN | TCP_ACK, isn, H + 1).win(250).opts(&good_opts);
    assert_eq!(send(&h, peer, synack), Verdict::Pass);
    let ts = [
        TcpOptionElement::Noop,
        TcpOptionElement::Noop,
        TcpOptionElement::Timestamp(1067, 1),
    ];
    let data = seg(TCP_PSH | TCP_ACK, H + 1, isn.wrapping_add(1))
        .win(256)
        .opts(&ts)
        .len(1);
    assert_eq!(send(&h, host, data), Verdict::Pass);
    h.assert_conn(&key(host), TcpState::Established, SEEN_REPLY | ASSURED);
    assert_eq!(invalid(&h), 1, "the stale SYN/ACK only");
}

/// `conntrack_ack_loss_stall.pkt`: after the host acknowledged some 66 kB,
/// the peer resends its first segment, long acknowledged: below the
/// window, it passes (the host acknowledges it again) and is not INVALID.
#[test]
fn ack_loss_stall() {
    let h = Harness::new("");
    // The host listens; the peer connects.
    let (host, peer) = (Side::Wan, Side::Lan);
    let mss = [TcpOptionElement::MaximumSegmentSize(1000)];
    let host_mss = [TcpOptionElement::MaximumSegmentSize(1460)];
    assert_eq!(
        send(&h, peer, seg(TCP_SYN, P, 0).win(32792).opts(&mss)),
        Verdict::Pass
    );
    let synack = seg(TCP_SYN | TCP_ACK, H, P + 1).opts(&host_mss);
    assert_eq!(send(&h, host, synack), Verdict::Pass);
    assert_eq!(send(&h, peer, seg(TCP_ACK, P + 1, H + 1)), Verdict::Pass);
    let mut next = P + 1;
    for k in 0..46 {
        let data = seg(TCP_PSH | TCP_ACK, next, H + 1).win(257).len(1460);
        assert_eq!(send(&h, peer, data), Verdict::Pass, "segment {k}");
        next += 1460;
        assert_eq!(
            send(&h, host, seg(TCP_ACK, H + 1, next)),
            Verdict::Pass,
            "ack {k}"
        );
    }
    let old = seg(TCP_PSH | TCP_ACK, P + 1, H + 1).win(257).len(1460);
    assert_eq!(send(&h, peer, old), Verdict::Pass);
    assert_eq!(send(&h, host, seg(TCP_ACK, H + 1, next)), Verdict::Pass);
    assert_eq!(state(&h, peer), TcpState::Established);
    assert_eq!(invalid(&h), 0);
    assert_eq!(h.counter(TcpWindowSeqBelow), 1);
}

/// `conntrack_synack_reuse.pkt`: a new SYN on an established connection's
/// tuple draws a challenge ACK, which passes; the peer's RST clears the
/// state, and its retried SYN starts a connection the host's SYN/ACK takes
/// to SYN_RECV. No SYN/ACK is INVALID.
#[test]
fn synack_reuse() {
    let h = Harness::new("");
    let (host, peer) = (Side::Wan, Side::Lan);
    let peer_syn = [
        TcpOptionElement::MaximumSegmentSize(1000),
        TcpOptionElement::Noop,
        TcpOptionElement::WindowScale(7),
        TcpOptionElement::Timestamp(1, 0),
        TcpOptionElement::Noop,
        TcpOptionElement::Noop,
    ];
    let host_synack = [
        TcpOptionElement::MaximumSegmentSize(1460),
        TcpOptionElement::Noop,
        TcpOptionElement::Noop,
        TcpOptionElement::Timestamp(100, 1),
        TcpOptionElement::Noop,
        TcpOptionElement::WindowScale(8),
    ];
    let ts = [
        TcpOptionElement::Timestamp(2, 100),
        TcpOptionElement::Noop,
        TcpOptionElement::Noop,
    ];
    let syn = seg(TCP_SYN, P, 0).win(32792).opts(&peer_syn);
    assert_eq!(send(&h, peer, syn), Verdict::Pass);
    let synack = seg(TCP_SYN | TCP_ACK, H, P + 1).opts(&host_synack);
    assert_eq!(send(&h, host, synack), Verdict::Pass);
    assert_eq!(
        send(&h, peer, seg(TCP_ACK, P + 1, H + 1).win(257).opts(&ts)),
        Verdict::Pass
    );
    let data = seg(TCP_PSH | TCP_ACK, P + 1, H + 1)
        .win(257)
        .opts(&ts)
        .len(100);
    assert_eq!(send(&h, peer, data), Verdict::Pass);
    assert_eq!(
        send(&h, host, seg(TCP_ACK, H + 1, P + 101).win(256).opts(&ts)),
        Verdict::Pass
    );
    h.assert_conn(&key(peer), TcpState::Established, SEEN_REPLY | ASSURED);

    // A new SYN on the same tuple, and the host's challenge ACK.
    let again = seg(TCP_SYN, P + 2000, 0).win(32792).opts(&peer_syn);
    assert_eq!(send(&h, peer, again), Verdict::Pass);
    let challenge = seg(TCP_ACK, H + 1, P + 101).win(256).opts(&ts);
    assert_eq!(send(&h, host, challenge), Verdict::Pass);
    // The peer resets the old incarnation: the state is cleared.
    let rst = seg(TCP_RST | TCP_ACK, P + 101, H + 1).win(257);
    assert_eq!(send(&h, peer, rst), Verdict::Pass);
    assert_eq!(state(&h, peer), TcpState::Close);
    // Its retried SYN starts over; the host's SYN/ACK gives SYN_RECV.
    let retry = seg(TCP_SYN, P + 2000, 0).win(32792).opts(&peer_syn);
    assert_eq!(send(&h, peer, retry), Verdict::Pass);
    let synack = seg(TCP_SYN | TCP_ACK, H + 50_000, P + 2001).opts(&host_synack);
    assert_eq!(send(&h, host, synack), Verdict::Pass);
    assert_eq!(state(&h, peer), TcpState::SynRecv);
    assert_eq!(invalid(&h), 0);
}
