//! TCP window tracking (`tcp_in_window`) through the real programs under
//! BPF_PROG_TEST_RUN: segments a blind attacker could forge are dropped and
//! counted once each, the connection they aimed at keeps its state, and
//! what netfilter lets by (old retransmissions, an inexact RST that earns a
//! challenge ACK, scaled windows) still passes.
//!
//! The client is on the LAN and starts at sequence 1000; the server is
//! beyond the WAN and starts at 5,000,000. No segment carries data unless
//! it says so, and every window field is 64,240.
//!
//! Needs root: `cargo test -p firewall --test window`.

mod common;

use common::*;
use etherparse::TcpOptionElement;
use firewall_common::{
    Counter::*,
    CtKey, TcpState,
    tcp::{
        TCP_ACK, TCP_PSH, TCP_RST, TCP_SYN,
        track::{TcpTrack, seen_flags},
    },
};

const CLIENT: &str = "10.1.0.5:40000";
const SERVER: &str = "203.0.113.7:80";
const CLIENT_ISN: u32 = 1000;
const SERVER_ISN: u32 = 5_000_000;
/// Far outside any window a 64 KiB (or even a scaled) receiver offers.
const FAR: u32 = 100_000_000;

/// One segment with TCP options, window field 64,240.
fn seg(
    from_client: bool,
    flags: u8,
    seq: u32,
    ack: u32,
    options: &[TcpOptionElement],
    payload: &[u8],
) -> Vec<u8> {
    seg_win(from_client, flags, seq, ack, 64240, options, payload)
}

/// One segment with TCP options and window field `win`.
fn seg_win(
    from_client: bool,
    flags: u8,
    seq: u32,
    ack: u32,
    win: u16,
    options: &[TcpOptionElement],
    payload: &[u8],
) -> Vec<u8> {
    let (src, dst) = if from_client {
        (sa(CLIENT), sa(SERVER))
    } else {
        (sa(SERVER), sa(CLIENT))
    };
    let ports = (src.port(), dst.port());
    let ip = plain(src.ip(), dst.ip());
    tcp_segment_with(ip, ports, flags, (seq, ack), win, options, payload)
}

fn client(flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    seg(true, flags, seq, ack, &[], payload)
}

fn server(flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    seg(false, flags, seq, ack, &[], payload)
}

/// Handshake plus one request and one response, so both sides have sent
/// data and acknowledged the other's. Returns the next sequence numbers
/// (client, server).
fn established(h: &Harness, syn_opts: &[TcpOptionElement]) -> (u32, u32) {
    let (c, s) = (CLIENT_ISN, SERVER_ISN);
    let steps = [
        (true, seg(true, TCP_SYN, c, 0, syn_opts, &[])),
        (
            false,
            seg(false, TCP_SYN | TCP_ACK, s, c + 1, syn_opts, &[]),
        ),
        (true, client(TCP_ACK, c + 1, s + 1, &[])),
        (true, client(TCP_PSH | TCP_ACK, c + 1, s + 1, b"GET /\r\n")),
        (false, server(TCP_PSH | TCP_ACK, s + 1, c + 8, b"hello\n")),
        (true, client(TCP_ACK, c + 8, s + 7, &[])),
    ];
    for (i, (from_client, frame)) in steps.iter().enumerate() {
        let v = if *from_client {
            h.ingress_lan(frame)
        } else {
            h.ingress_wan(frame)
        };
        assert_eq!(v, Verdict::Pass, "handshake step {i}");
    }
    h.assert_conn(&key(), TcpState::Established, SEEN_REPLY | ASSURED);
    (c + 8, s + 7)
}

fn key() -> CtKey {
    tcp_key(sa(CLIENT), sa(SERVER))
}

/// The windows of the connection (kept in its original-direction entry).
fn windows(h: &Harness) -> TcpTrack {
    h.entry(&key()).expect("original entry").tcp
}

#[test]
fn blind_rst_far_outside_the_window_is_dropped_and_the_connection_kept() {
    let h = Harness::new("");
    let (_, s) = established(&h, &[]);
    let before = windows(&h);
    for off in [FAR, 0u32.wrapping_sub(FAR)] {
        let rst = server(TCP_RST, s.wrapping_add(off), 0, &[]);
        assert_eq!(h.ingress_wan(&rst), Verdict::Drop, "RST at +{off}");
    }
    let (o, _) = h.assert_conn(&key(), TcpState::Established, SEEN_REPLY | ASSURED);
    assert_timeout(&o, 432_000);
    // The bounds stay; the RST is remembered as the last segment seen
    // (`nf_tcp_handle_invalid`), so an answering one can shorten the
    // timeout.
    assert_eq!(
        windows(&h).seen,
        before.seen,
        "a dropped RST moves no bound"
    );
    h.assert_counters(&[
        (AcceptNew, 1),
        (CtCreated, 1),
        (AcceptEstablished, 5),
        (FastPathNotForwarded, 5),
        (DropTcpWindowRst, 2),
    ]);
}

#[test]
fn rst_in_window_but_not_exact_passes_for_a_challenge_ack_and_keeps_the_state() {
    // RFC 5961: the endpoint answers it with a challenge ACK; netfilter
    // lets it through and keeps the state, and so do we.
    let h = Harness::new("");
    let (_, s) = established(&h, &[]);
    let rst = server(TCP_RST, s + 1000, 0, &[]);
    assert_eq!(h.ingress_wan(&rst), Verdict::Pass);
    h.assert_conn(&key(), TcpState::Established, SEEN_REPLY | ASSURED);
    // The exact one ends it.
    let rst = server(TCP_RST, s, 0, &[]);
    assert_eq!(h.ingress_wan(&rst), Verdict::Pass);
    let (o, r) = h.assert_conn(&key(), TcpState::Close, SEEN_REPLY | ASSURED);
    assert_timeout(&o, 10);
    assert_timeout(&r, 10);
    h.assert_counters(&[
        (AcceptNew, 1),
        (CtCreated, 1),
        (AcceptEstablished, 7),
        (FastPathNotForwarded, 7),
    ]);
}

#[test]
fn data_beyond_the_window_and_acks_of_unsent_data_are_dropped_from_either_side() {
    let h = Harness::new("");
    let (c, s) = established(&h, &[]);
    let before = windows(&h);
    // From the WAN: data far above what the client's window allows, and an
    // ACK of bytes the client never sent.
    let data = server(TCP_PSH | TCP_ACK, s.wrapping_add(FAR), c, b"evil");
    assert_eq!(h.ingress_wan(&data), Verdict::Drop);
    let ack = server(TCP_ACK, s, c.wrapping_add(FAR), &[]);
    assert_eq!(h.ingress_wan(&ack), Verdict::Drop);
    // From the LAN: the same, towards the server.
    let data = client(TCP_PSH | TCP_ACK, c.wrapping_add(FAR), s, b"evil");
    assert_eq!(h.ingress_lan(&data), Verdict::Drop);
    assert_eq!(windows(&h), before);
    h.assert_conn(&key(), TcpState::Established, SEEN_REPLY | ASSURED);
    h.assert_counters(&[
        (AcceptNew, 1),
        (CtCreated, 1),
        (AcceptEstablished, 5),
        (FastPathNotForwarded, 5),
        (DropTcpWindowSeqAbove, 2),
        (DropTcpWindowAckAbove, 1),
    ]);
}

#[test]
fn an_old_retransmission_below_the_window_passes_without_touching_the_windows() {
    // netfilter (since 5.19) ignores rather than drops it: the receiver
    // acknowledges it again, which keeps a connection alive.
    let h = Harness::new("");
    let (c, s) = established(&h, &[]);
    let before = windows(&h);
    let old = server(TCP_PSH | TCP_ACK, s - 200_000, c, b"stale");
    assert_eq!(h.ingress_wan(&old), Verdict::Pass);
    assert_eq!(windows(&h), before);
    h.assert_counters(&[
        (AcceptNew, 1),
        (CtCreated, 1),
        (AcceptEstablished, 6),
        (FastPathNotForwarded, 6),
        (TcpWindowSeqBelow, 1),
    ]);
}

#[test]
fn window_scale_and_sack_from_the_syns_are_recorded_and_widen_the_window() {
    let opts = [
        TcpOptionElement::MaximumSegmentSize(1460),
        TcpOptionElement::SelectiveAcknowledgementPermitted,
        TcpOptionElement::Timestamp(1, 0),
        TcpOptionElement::Noop,
        TcpOptionElement::WindowScale(7),
    ];
    // 64,240 << 7 is about 8 MB: a segment 1 MB ahead fits a scaled
    // window and not an unscaled one.
    const AHEAD: u32 = 1_000_000;
    for scaled in [true, false] {
        let h = Harness::new("");
        let (c, s) = established(&h, if scaled { &opts } else { &[] });
        let t = windows(&h);
        for side in 0..2 {
            let seen = t.seen[side];
            let want = if scaled {
                (7, seen_flags::WINDOW_SCALE | seen_flags::SACK_PERM)
            } else {
                (0, 0)
            };
            assert_eq!(
                (
                    seen.td_scale,
                    seen.flags & (seen_flags::WINDOW_SCALE | seen_flags::SACK_PERM)
                ),
                want,
                "direction {side}, scaled {scaled}"
            );
        }
        let data = client(TCP_PSH | TCP_ACK, c + AHEAD, s, b"later");
        let want = if scaled { Verdict::Pass } else { Verdict::Drop };
        assert_eq!(h.ingress_lan(&data), want, "scaled {scaled}");
        let dropped = if scaled { 0 } else { 1 };
        assert_eq!(h.counter(DropTcpWindowSeqAbove), dropped);
    }
}

#[test]
fn tcp_be_liberal_waives_the_window_but_never_for_an_rst() {
    let h = Harness::new("[conntrack]\ntcp_be_liberal = true\n");
    let (c, s) = established(&h, &[]);
    let data = server(TCP_PSH | TCP_ACK, s.wrapping_add(FAR), c, b"far");
    assert_eq!(h.ingress_wan(&data), Verdict::Pass);
    let rst = server(TCP_RST, s.wrapping_add(FAR), 0, &[]);
    assert_eq!(h.ingress_wan(&rst), Verdict::Drop);
    h.assert_conn(&key(), TcpState::Established, SEEN_REPLY | ASSURED);
    h.assert_counters(&[
        (AcceptNew, 1),
        (CtCreated, 1),
        (AcceptEstablished, 6),
        (FastPathNotForwarded, 6),
        (TcpWindowLiberal, 1),
        (DropTcpWindowRst, 1),
    ]);
}

#[test]
fn a_syn_ack_acknowledging_the_wrong_sequence_is_dropped() {
    // The reply to a SYN must acknowledge exactly the SYN: a guessed
    // SYN-ACK must not open the connection.
    let h = Harness::new("");
    let syn = client(TCP_SYN, CLIENT_ISN, 0, &[]);
    assert_eq!(h.ingress_lan(&syn), Verdict::Pass);
    let forged = server(TCP_SYN | TCP_ACK, SERVER_ISN, CLIENT_ISN + FAR, &[]);
    assert_eq!(h.ingress_wan(&forged), Verdict::Drop);
    h.assert_conn(&key(), TcpState::SynSent, UNREPLIED);
    let real = server(TCP_SYN | TCP_ACK, SERVER_ISN, CLIENT_ISN + 1, &[]);
    assert_eq!(h.ingress_wan(&real), Verdict::Pass);
    h.assert_conn(&key(), TcpState::SynRecv, SEEN_REPLY);
    h.assert_counters(&[
        (AcceptNew, 1),
        (CtCreated, 1),
        (AcceptEstablished, 1),
        (FastPathNotForwarded, 1),
        (DropTcpWindowAckAbove, 1),
    ]);
}

#[test]
fn a_connection_picked_up_mid_stream_from_the_lan_is_tracked_liberally() {
    // Its history is lost: netfilter's loose pickup assumes SACK and
    // waives the window both ways (`tcp_new`), as we do.
    let h = Harness::new("");
    let ack = client(TCP_ACK, 77_000, 9_000_000, &[]);
    assert_eq!(h.ingress_lan(&ack), Verdict::Pass);
    let t = windows(&h);
    for side in 0..2 {
        assert_eq!(
            t.seen[side].flags & (seen_flags::BE_LIBERAL | seen_flags::SACK_PERM),
            seen_flags::BE_LIBERAL | seen_flags::SACK_PERM,
            "direction {side}"
        );
    }
    // The server's first segment sets its side's window; one far beyond
    // it would be dropped on a connection whose handshake was seen.
    let first = server(TCP_PSH | TCP_ACK, 9_000_000, 77_000, b"x");
    assert_eq!(h.ingress_wan(&first), Verdict::Pass);
    let far = server(
        TCP_PSH | TCP_ACK,
        9_000_001u32.wrapping_add(FAR),
        77_000,
        b"y",
    );
    assert_eq!(h.ingress_wan(&far), Verdict::Pass);
    // Replied, and ESTABLISHED to ESTABLISHED: assured, as in netfilter.
    h.assert_conn(&key(), TcpState::Established, SEEN_REPLY | ASSURED);
    h.assert_counters(&[
        (AcceptNew, 1),
        (CtCreated, 1),
        (AcceptEstablished, 2),
        (FastPathNotForwarded, 2),
        (TcpWindowLiberal, 1),
    ]);
}

#[test]
fn retransmissions_past_tcp_max_retrans_cut_both_entries_to_the_retrans_timeout() {
    let h = Harness::new("[timeouts]\ntcp_retrans = 120\n");
    let (c, s) = established(&h, &[]);
    // Unacknowledged data: the UNACK timeout (300 s), both entries.
    let data = server(TCP_PSH | TCP_ACK, s, c, b"are you there?");
    assert_eq!(h.ingress_wan(&data), Verdict::Pass);
    let (o, r) = h.assert_conn(&key(), TcpState::Established, SEEN_REPLY | ASSURED);
    assert_timeout(&o, 300);
    assert_timeout(&r, 300);
    // The same segment again, three times (`tcp_max_retrans`): the
    // connection is cut to `tcp_retrans`.
    for _ in 0..3 {
        assert_eq!(h.ingress_wan(&data), Verdict::Pass);
    }
    let (o, r) = h.assert_conn(&key(), TcpState::Established, SEEN_REPLY | ASSURED);
    assert_timeout(&o, 120);
    assert_timeout(&r, 120);
    assert_eq!(windows(&h).retrans, 3);
}

#[test]
fn tcp_fast_open_data_on_the_syn_is_acknowledged_in_window() {
    // RFC 7413: the SYN carries data and the SYN-ACK acknowledges it.
    let h = Harness::new("");
    let (c, s) = (CLIENT_ISN, SERVER_ISN);
    let request = b"GET / HTTP/1.1\r\n\r\n";
    let syn = seg(true, TCP_SYN, c, 0, &[], request);
    assert_eq!(h.ingress_lan(&syn), Verdict::Pass);
    let data_end = c + 1 + request.len() as u32;
    let synack = seg(false, TCP_SYN | TCP_ACK, s, data_end, &[], &[]);
    assert_eq!(h.ingress_wan(&synack), Verdict::Pass);
    assert_eq!(
        h.ingress_lan(&client(TCP_ACK, data_end, s + 1, &[])),
        Verdict::Pass
    );
    let response = server(TCP_PSH | TCP_ACK, s + 1, data_end, b"HTTP/1.1 200 OK\r\n");
    assert_eq!(h.ingress_wan(&response), Verdict::Pass);
    h.assert_conn(&key(), TcpState::Established, SEEN_REPLY | ASSURED);
    assert_eq!(windows(&h).seen[0].td_end, data_end);
}

#[test]
fn simultaneous_open_reaches_established_through_the_programs() {
    let h = Harness::new("");
    let (c, s) = (CLIENT_ISN, SERVER_ISN);
    assert_eq!(h.ingress_lan(&client(TCP_SYN, c, 0, &[])), Verdict::Pass);
    // The other end's SYN crosses ours.
    assert_eq!(h.ingress_wan(&server(TCP_SYN, s, 0, &[])), Verdict::Pass);
    h.assert_conn(&key(), TcpState::SynSent2, SEEN_REPLY);
    assert_eq!(
        h.ingress_lan(&client(TCP_SYN | TCP_ACK, c, s + 1, &[])),
        Verdict::Pass
    );
    assert_eq!(
        h.ingress_wan(&server(TCP_SYN | TCP_ACK, s, c + 1, &[])),
        Verdict::Pass
    );
    assert_eq!(
        h.ingress_lan(&client(TCP_ACK, c + 1, s + 1, &[])),
        Verdict::Pass
    );
    assert_eq!(
        h.ingress_wan(&server(TCP_ACK, s + 1, c + 1, &[])),
        Verdict::Pass
    );
    h.assert_conn(&key(), TcpState::Established, SEEN_REPLY | ASSURED);
    assert_eq!(
        h.counter(DropTcpWindowSeqAbove) + h.counter(DropTcpWindowAckAbove),
        0
    );
}

#[test]
fn a_zero_window_probe_passes() {
    let h = Harness::new("[timeouts]\ntcp_retrans = 120\n");
    let (c, s) = established(&h, &[]);
    // The client closes its window: the connection gets the retransmission
    // timeout, as netfilter gives a zero window.
    let zero = seg_win(true, TCP_ACK, c, s, 0, &[], &[]);
    assert_eq!(h.ingress_lan(&zero), Verdict::Pass);
    let (o, r) = h.assert_conn(&key(), TcpState::Established, SEEN_REPLY | ASSURED);
    assert_timeout(&o, 120);
    assert_timeout(&r, 120);
    // The server probes the closed window with one byte: it passes.
    let probe = server(TCP_ACK, s, c, b"?");
    assert_eq!(h.ingress_wan(&probe), Verdict::Pass);
    h.assert_conn(&key(), TcpState::Established, SEEN_REPLY | ASSURED);
    assert_eq!(h.counter(DropTcpWindowSeqAbove), 0);
}
