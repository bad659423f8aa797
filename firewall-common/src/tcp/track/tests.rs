//! The tracker against netfilter's behaviour: conversations replayed
//! segment by segment, with the verdict and state of each asserted, and
//! the kernel's packetdrill cases (`tools/testing/selftests/net/netfilter/
//! packetdrill/conntrack_*.pkt`) where they apply to a middlebox.

use super::*;
use crate::tcp::{
    TCP_PSH,
    options::{NO_WSCALE, TcpOptions},
};

const C: bool = false; // the client sends (original direction)
const S: bool = true; // the server sends (reply direction)

/// A connection as the datapath keeps it: the tracker, the state and the
/// status bits it updates from each outcome.
struct Conn {
    t: TcpTrack,
    state: TcpState,
    status: CtStatus,
    cfg: TcpConfig,
}

fn syn_opts(wscale: u8) -> TcpOptions {
    TcpOptions {
        wscale,
        sack_perm: 1,
        _pad: [0; 2],
        sack: 0,
    }
}

fn seg(flags: u8, seq: u32, ack: u32, win: u16, len: u32) -> Segment {
    Segment {
        seq,
        ack,
        win,
        flags,
        _pad: 0,
        len,
        opts: TcpOptions {
            sack: ack,
            ..TcpOptions::default()
        },
    }
}

impl Conn {
    /// A connection opened by a client SYN with window scale `ws`.
    fn open(iss: u32, ws: u8) -> Conn {
        let mut first = seg(TCP_SYN, iss, 0, 64_240, 0);
        first.opts = syn_opts(ws);
        Conn::first(first)
    }

    /// What the datapath does with a first segment, as netfilter does:
    /// `tcp_new`, then the segment through the tracker from NONE.
    fn first(s: Segment) -> Conn {
        let mut c = Conn {
            t: new_connection(&s),
            state: TcpState::None,
            status: CtStatus {
                seen_reply: false,
                assured: false,
            },
            cfg: TcpConfig::NETFILTER,
        };
        c.accepts(C, s);
        c
    }

    fn send(&mut self, reply: bool, s: Segment) -> Outcome {
        let cx = Context {
            status: self.status,
            cfg: &self.cfg,
            timeouts: &Timeouts::NETFILTER,
            recv_offset: 0,
            partial: false,
        };
        let out = packet(&mut self.t, self.state, reply, &s, &cx);
        if let Outcome::Accept { state, assured, .. } = out {
            self.state = state;
            self.status.assured |= assured;
        }
        if reply && !matches!(out, Outcome::Invalid { .. }) {
            self.status.seen_reply = true;
        }
        out
    }

    fn accepts(&mut self, reply: bool, s: Segment) {
        let out = self.send(reply, s);
        assert!(
            matches!(out, Outcome::Accept { .. }),
            "{s:?} from {} in {:?}: {out:?}",
            if reply { "server" } else { "client" },
            self.state
        );
    }
}

const CISS: u32 = 1_000;
const SISS: u32 = 5_000_000;

/// SYN, SYN/ACK, ACK with window scale 7 both ways: ESTABLISHED, ASSURED.
fn established() -> Conn {
    let mut c = Conn::open(CISS, 7);
    let mut sa = seg(TCP_SYN | TCP_ACK, SISS, CISS + 1, 65_160, 0);
    sa.opts = syn_opts(7);
    sa.opts.sack = CISS + 1;
    c.accepts(S, sa);
    assert_eq!(c.state, TcpState::SynRecv);
    c.accepts(C, seg(TCP_ACK, CISS + 1, SISS + 1, 502, 0));
    assert_eq!(c.state, TcpState::Established);
    assert!(c.status.assured);
    c
}

#[test]
fn a_handshake_learns_both_windows_with_scaling() {
    let c = established();
    let [client, server] = c.t.seen;
    assert_eq!(client.td_scale, 7);
    assert_eq!(server.td_scale, 7);
    assert!(client.flags & seen_flags::SACK_PERM != 0);
    assert!(server.flags & seen_flags::WINDOW_SCALE != 0);
    // The client's last ACK announced 502 << 7 bytes.
    assert_eq!(server.td_maxend, SISS + 1 + (502 << 7));
}

#[test]
fn scaling_needs_both_sides() {
    let mut c = Conn::open(CISS, 7);
    let mut sa = seg(TCP_SYN | TCP_ACK, SISS, CISS + 1, 65_160, 0);
    sa.opts = syn_opts(NO_WSCALE);
    c.accepts(S, sa);
    assert_eq!(c.t.seen[0].td_scale, 0, "the client's scale is dropped");
    assert_eq!(c.t.seen[1].td_scale, 0);
}

#[test]
fn data_flows_in_window_both_ways() {
    let mut c = established();
    let mut cseq = CISS + 1;
    let mut sseq = SISS + 1;
    for _ in 0..200 {
        c.accepts(C, seg(TCP_ACK | TCP_PSH, cseq, sseq, 502, 100));
        cseq += 100;
        c.accepts(S, seg(TCP_ACK | TCP_PSH, sseq, cseq, 509, 1448));
        sseq += 1448;
    }
    assert_eq!(c.state, TcpState::Established);
}

#[test]
fn a_blind_rst_with_a_far_sequence_is_invalid_and_changes_nothing() {
    // conntrack_rst_invalid.pkt: RSTs at 0, far beyond, inside but
    // inexact and one short are INVALID (an RST counts as one whichever
    // bound it broke); the exact one closes.
    let mut c = established();
    c.accepts(C, seg(TCP_ACK | TCP_PSH, CISS + 1, SISS + 1, 502, 3000));
    c.accepts(S, seg(TCP_ACK, SISS + 1, CISS + 3001, 509, 0));
    let before = c.t;
    for (seq, why) in [
        (0, Invalid::Rst),
        (CISS + 1_000_000, Invalid::Rst),
        (CISS + 42, Invalid::Rst),
        (CISS + 3000, Invalid::Rst),
    ] {
        let out = c.send(C, seg(TCP_RST | TCP_ACK, seq, SISS + 1, 0, 0));
        assert!(
            matches!(out, Outcome::Invalid { why: w, .. } if w == why),
            "RST at {seq}: {out:?}"
        );
        assert_eq!(c.state, TcpState::Established);
    }
    assert_eq!(c.t.seen, before.seen, "no window moved");
    let out = c.send(C, seg(TCP_RST | TCP_ACK, CISS + 3001, SISS + 1, 0, 0));
    assert!(
        matches!(
            out,
            Outcome::Accept {
                state: TcpState::Close,
                ..
            }
        ),
        "{out:?}"
    );
}

#[test]
fn an_in_window_inexact_rst_keeps_the_state_for_a_challenge_ack() {
    let mut c = established();
    c.accepts(S, seg(TCP_ACK | TCP_PSH, SISS + 1, CISS + 1, 509, 1000));
    c.accepts(C, seg(TCP_ACK, CISS + 1, SISS + 1001, 502, 0));
    // The client acked 1001; an RST from the server a little past it, in
    // window, is not exact.
    let out = c.send(S, seg(TCP_RST | TCP_ACK, SISS + 1500, CISS + 1, 0, 0));
    assert!(
        matches!(
            out,
            Outcome::Accept {
                state: TcpState::Established,
                ..
            }
        ),
        "{out:?}"
    );
}

#[test]
fn data_whose_ack_is_above_anything_sent_is_invalid() {
    let mut c = established();
    let out = c.send(
        S,
        seg(TCP_ACK | TCP_PSH, SISS + 1, CISS + 10_000_000, 509, 100),
    );
    assert!(
        matches!(
            out,
            Outcome::Invalid {
                why: Invalid::AckAbove,
                ..
            }
        ),
        "{out:?}"
    );
    let out = c.send(
        S,
        seg(TCP_ACK | TCP_PSH, SISS + 100_000_000, CISS + 1, 509, 100),
    );
    assert!(
        matches!(
            out,
            Outcome::Invalid {
                why: Invalid::SeqAbove,
                ..
            }
        ),
        "{out:?}"
    );
}

#[test]
fn an_old_retransmission_is_ignored_not_invalid() {
    // conntrack_ack_loss_stall.pkt: a segment resent after much later data
    // was acknowledged must still reach the host.
    let mut c = established();
    let mut sseq = SISS + 1;
    for _ in 0..46 {
        c.accepts(S, seg(TCP_ACK | TCP_PSH, sseq, CISS + 1, 509, 1448));
        sseq += 1448;
        c.accepts(C, seg(TCP_ACK, CISS + 1, sseq, 502, 0));
    }
    let out = c.send(S, seg(TCP_ACK | TCP_PSH, SISS + 1, CISS + 1, 509, 1448));
    assert!(
        !matches!(out, Outcome::Invalid { .. }),
        "the resent first segment: {out:?}"
    );
}

#[test]
fn retransmitted_acks_are_counted_and_shorten_the_timeout() {
    let mut c = established();
    let mut last = None;
    for _ in 0..5 {
        last = Some(c.send(C, seg(TCP_ACK, CISS + 1, SISS + 1, 502, 0)));
    }
    assert!(c.t.retrans >= 3);
    assert_eq!(
        last,
        Some(Outcome::Accept {
            state: TcpState::Established,
            timeout: Some(Timeouts::NETFILTER.tcp_retrans),
            assured: false,
            liberal: false,
        })
    );
}

#[test]
fn a_zero_window_probe_passes() {
    let mut c = established();
    // The client closes its window.
    c.accepts(S, seg(TCP_ACK | TCP_PSH, SISS + 1, CISS + 1, 509, 1000));
    c.accepts(C, seg(TCP_ACK, CISS + 1, SISS + 1001, 0, 0));
    // A one-byte probe at the edge.
    let out = c.send(S, seg(TCP_ACK, SISS + 1001, CISS + 1, 509, 1));
    assert!(!matches!(out, Outcome::Invalid { .. }), "{out:?}");
}

#[test]
fn sequence_numbers_wrap() {
    let mut c = Conn::open(u32::MAX - 100, 0);
    let mut sa = seg(TCP_SYN | TCP_ACK, u32::MAX - 50, u32::MAX - 99, 65_535, 0);
    sa.opts = syn_opts(0);
    sa.opts.sack = u32::MAX - 99;
    c.accepts(S, sa);
    c.accepts(C, seg(TCP_ACK, u32::MAX - 99, u32::MAX - 49, 65_535, 0));
    let mut cseq = u32::MAX - 99;
    for _ in 0..10 {
        c.accepts(C, seg(TCP_ACK | TCP_PSH, cseq, u32::MAX - 49, 65_535, 1000));
        cseq = cseq.wrapping_add(1000);
    }
    c.accepts(S, seg(TCP_ACK, u32::MAX - 49, cseq, 65_535, 0));
    assert!(cseq < 10_000, "wrapped");
}

#[test]
fn sack_blocks_beyond_the_data_sent_are_invalid() {
    let mut c = established();
    c.accepts(S, seg(TCP_ACK | TCP_PSH, SISS + 1, CISS + 1, 509, 3000));
    // A SACK up to what was sent is fine; beyond it is not.
    let mut ok = seg(TCP_ACK, CISS + 1, SISS + 1001, 502, 0);
    ok.opts.sack = SISS + 3001;
    c.accepts(C, ok);
    let mut bad = seg(TCP_ACK, CISS + 1, SISS + 1001, 502, 0);
    bad.opts.sack = SISS + 90_000;
    let out = c.send(C, bad);
    assert!(
        matches!(
            out,
            Outcome::Invalid {
                why: Invalid::AckAbove,
                ..
            }
        ),
        "{out:?}"
    );
}

#[test]
fn be_liberal_passes_window_failures_but_not_bad_rsts() {
    let mut c = established();
    c.cfg.be_liberal = true;
    let out = c.send(
        S,
        seg(TCP_ACK | TCP_PSH, SISS + 100_000_000, CISS + 1, 509, 100),
    );
    assert!(matches!(out, Outcome::Accept { .. }), "{out:?}");
    c.accepts(C, seg(TCP_ACK | TCP_PSH, CISS + 1, SISS + 1, 502, 3000));
    c.accepts(S, seg(TCP_ACK, SISS + 1, CISS + 3001, 509, 0));
    let out = c.send(C, seg(TCP_RST | TCP_ACK, 0, SISS + 1, 0, 0));
    assert!(
        matches!(
            out,
            Outcome::Invalid {
                why: Invalid::Rst,
                ..
            }
        ),
        "{out:?}"
    );
}

#[test]
fn a_picked_up_connection_is_liberal() {
    let mut first = seg(TCP_ACK, 77_000, 999_000, 500, 100);
    first.opts.sack = 999_000;
    let mut c = Conn::first(first);
    assert_eq!(c.state, TcpState::Established);
    assert!(c.t.seen[0].flags & seen_flags::BE_LIBERAL != 0);
    // Whatever the window, the far side's data passes.
    c.accepts(S, seg(TCP_ACK | TCP_PSH, 999_000, 77_100, 500, 60_000));
    c.accepts(C, seg(TCP_ACK, 77_100, 1_059_000, 500, 0));
    assert!(c.status.assured);
}

#[test]
fn an_rst_before_any_reply_kills_the_connection() {
    let mut c = Conn::open(CISS, 7);
    let out = c.send(S, seg(TCP_RST | TCP_ACK, 0, CISS + 1, 0, 0));
    assert_eq!(out, Outcome::Kill);
}

#[test]
fn a_retransmitted_syn_does_not_renew_the_timeout() {
    let mut c = Conn::open(CISS, 7);
    let mut again = seg(TCP_SYN, CISS, 0, 64_240, 0);
    again.opts = syn_opts(7);
    let out = c.send(C, again);
    assert_eq!(
        out,
        Outcome::Accept {
            state: TcpState::SynSent,
            timeout: None,
            assured: false,
            liberal: false,
        }
    );
}

#[test]
fn a_syn_reopens_a_closed_connection() {
    let mut c = established();
    c.accepts(C, seg(TCP_FIN | TCP_ACK, CISS + 1, SISS + 1, 502, 0));
    c.accepts(S, seg(TCP_FIN | TCP_ACK, SISS + 1, CISS + 2, 509, 0));
    c.accepts(C, seg(TCP_ACK, CISS + 2, SISS + 2, 502, 0));
    assert_eq!(c.state, TcpState::TimeWait);
    let mut syn = seg(TCP_SYN, CISS + 100_000, 0, 64_240, 0);
    syn.opts = syn_opts(7);
    assert_eq!(c.send(C, syn), Outcome::Reopen);
}

#[test]
fn simultaneous_open_reaches_established() {
    let mut c = Conn::open(CISS, 7);
    // The "server" sends its own SYN.
    let mut syn = seg(TCP_SYN, SISS, 0, 65_000, 0);
    syn.opts = syn_opts(7);
    c.accepts(S, syn);
    assert_eq!(c.state, TcpState::SynSent2);
    let mut sa = seg(TCP_SYN | TCP_ACK, CISS, SISS + 1, 64_240, 0);
    sa.opts = syn_opts(7);
    sa.opts.sack = SISS + 1;
    c.accepts(C, sa);
    assert_eq!(c.state, TcpState::SynRecv);
    c.accepts(S, seg(TCP_ACK, SISS + 1, CISS + 1, 509, 0));
    assert_eq!(c.state, TcpState::Established);
}

#[test]
fn a_syn_ack_for_an_ignored_syn_resyncs() {
    // conntrack_synack_reuse / the "b)" case: the firewall kept an old
    // connection; a new SYN on the tuple is ignored, the server's SYN/ACK
    // for it brings the firewall back in sync.
    let mut c = established();
    let mut syn = seg(TCP_SYN, 900_000_000, 0, 64_240, 0);
    syn.opts = syn_opts(7);
    assert_eq!(c.send(C, syn), Outcome::Ignore(Ignored::Transition));
    let mut sa = seg(TCP_SYN | TCP_ACK, 77, 900_000_001, 65_160, 0);
    sa.opts = syn_opts(7);
    sa.opts.sack = 900_000_001;
    c.accepts(S, sa);
    assert_eq!(c.state, TcpState::SynRecv);
    c.accepts(C, seg(TCP_ACK, 900_000_001, 78, 502, 0));
    assert_eq!(c.state, TcpState::Established);
}

#[test]
fn a_challenge_ack_in_last_ack_does_not_close() {
    let mut c = established();
    c.accepts(S, seg(TCP_FIN | TCP_ACK, SISS + 1, CISS + 1, 509, 0));
    c.accepts(C, seg(TCP_FIN | TCP_ACK, CISS + 1, SISS + 2, 502, 0));
    assert_eq!(c.state, TcpState::LastAck);
    // A new SYN from the client, ignored; the server answers with a
    // challenge ACK, which must not be taken for the last ACK.
    let mut syn = seg(TCP_SYN, CISS + 500_000, 0, 64_240, 0);
    syn.opts = syn_opts(7);
    assert_eq!(c.send(C, syn), Outcome::Ignore(Ignored::Transition));
    let out = c.send(S, seg(TCP_ACK, SISS + 2, CISS + 2, 509, 0));
    assert_eq!(out, Outcome::Ignore(Ignored::ChallengeAck));
    assert_eq!(c.state, TcpState::LastAck);
}

#[test]
fn late_rst_on_a_closing_connection_is_accepted() {
    // conntrack_inexact_rst.pkt: CLOSE_WAIT, then CLOSE; a late inexact
    // RST passes because the connection is closing.
    let mut c = established();
    c.accepts(S, seg(TCP_FIN | TCP_ACK, SISS + 1, CISS + 1, 509, 0));
    c.accepts(C, seg(TCP_ACK, CISS + 1, SISS + 2, 502, 0));
    assert_eq!(c.state, TcpState::CloseWait);
    let out = c.send(S, seg(TCP_RST, SISS + 77_777, 0, 0, 0));
    assert!(
        matches!(
            out,
            Outcome::Accept {
                state: TcpState::Close,
                ..
            }
        ),
        "{out:?}"
    );
}

#[test]
fn a_stale_syn_ack_does_not_stop_the_right_one() {
    // conntrack_synack_old.pkt: a SYN/ACK acking an old ISN, then the
    // right one.
    let mut c = Conn::open(CISS, 7);
    let mut old = seg(TCP_SYN | TCP_ACK, SISS, 12345, 65_160, 0);
    old.opts = syn_opts(7);
    old.opts.sack = 12345;
    let out = c.send(S, old);
    assert!(matches!(out, Outcome::Invalid { .. }), "{out:?}");
    assert_eq!(c.state, TcpState::SynSent);
    let mut right = seg(TCP_SYN | TCP_ACK, SISS, CISS + 1, 65_160, 0);
    right.opts = syn_opts(7);
    right.opts.sack = CISS + 1;
    c.accepts(S, right);
    c.accepts(C, seg(TCP_ACK, CISS + 1, SISS + 1, 502, 0));
    assert_eq!(c.state, TcpState::Established);
    assert!(c.status.assured);
}

#[test]
fn unacknowledged_data_shortens_the_timeout() {
    let mut c = established();
    let out = c.send(S, seg(TCP_ACK | TCP_PSH, SISS + 1, CISS + 1, 509, 1000));
    assert_eq!(
        out,
        Outcome::Accept {
            state: TcpState::Established,
            timeout: Some(Timeouts::NETFILTER.tcp_unack),
            assured: false,
            liberal: false,
        }
    );
    let out = c.send(C, seg(TCP_ACK, CISS + 1, SISS + 1001, 502, 0));
    assert_eq!(
        out,
        Outcome::Accept {
            state: TcpState::Established,
            timeout: Some(Timeouts::NETFILTER.tcp_established),
            assured: false,
            liberal: false,
        }
    );
}

#[test]
fn be_liberal_never_passes_an_rst_beyond_the_window() {
    let mut c = established();
    c.cfg.be_liberal = true;
    // Beyond td_maxend: netfilter's liberal setting would pass it.
    let out = c.send(S, seg(TCP_RST, SISS + 100_000_000, 0, 0, 0));
    assert!(
        matches!(
            out,
            Outcome::Invalid {
                why: Invalid::Rst,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(c.state, TcpState::Established);
    // Data as far out passes, marked liberal.
    let out = c.send(S, seg(TCP_ACK, SISS + 100_000_000, CISS + 1, 509, 10));
    assert!(
        matches!(out, Outcome::Accept { liberal: true, .. }),
        "{out:?}"
    );
}

#[test]
fn in_window_segments_are_not_marked_liberal() {
    let mut c = established();
    let out = c.send(C, seg(TCP_ACK | TCP_PSH, CISS + 1, SISS + 1, 502, 100));
    assert!(
        matches!(out, Outcome::Accept { liberal: false, .. }),
        "{out:?}"
    );
}

/// Two CPUs tracking the two directions at once, each from its own copy:
/// written back field by field, neither undoes the other's bound.
#[test]
fn concurrent_directions_keep_each_others_bounds() {
    let c = established();
    let start = c.t;
    let cx = Context {
        status: c.status,
        cfg: &c.cfg,
        timeouts: &Timeouts::NETFILTER,
        recv_offset: 0,
        partial: false,
    };
    // CPU A: the client sends data; CPU B: the server acks with a larger
    // window, both from `start`.
    let mut a = start;
    let out_a = packet(
        &mut a,
        c.state,
        C,
        &seg(TCP_ACK | TCP_PSH, CISS + 1, SISS + 1, 502, 1000),
        &cx,
    );
    let mut b = start;
    let out_b = packet(
        &mut b,
        c.state,
        S,
        &seg(TCP_ACK, SISS + 1, CISS + 1, 2000, 0),
        &cx,
    );
    assert!(matches!(out_a, Outcome::Accept { .. }), "{out_a:?}");
    assert!(matches!(out_b, Outcome::Accept { .. }), "{out_b:?}");
    let mut live = start;
    start.store_changes(&a, &mut live, Plain);
    start.store_changes(&b, &mut live, Plain);
    // The client's end from A, the client's new upper bound from B.
    assert_eq!(live.seen[0].td_end, a.seen[0].td_end);
    assert_eq!(live.seen[0].td_maxend, b.seen[0].td_maxend);
    assert!(after(live.seen[0].td_maxend, start.seen[0].td_maxend));
    assert!(after(live.seen[0].td_end, start.seen[0].td_end));
    // Unchanged fields are left as the live copy has them.
    let mut other = start;
    other.seen[1].td_maxack = 12345;
    start.store_changes(&start, &mut other, Plain);
    assert_eq!(other.seen[1].td_maxack, 12345);
}

#[test]
fn concurrent_segments_of_one_direction_never_move_a_bound_back() {
    // A sender whose thread moved CPUs: two of its segments tracked at
    // once from the same copy, the later one stored first.
    let c = established();
    let start = c.t;
    let cx = Context {
        status: c.status,
        cfg: &c.cfg,
        timeouts: &Timeouts::NETFILTER,
        recv_offset: 0,
        partial: false,
    };
    let mut first = start;
    let mut second = start;
    for (t, seq) in [(&mut first, CISS + 1), (&mut second, CISS + 1001)] {
        let out = packet(
            t,
            c.state,
            C,
            &seg(TCP_ACK | TCP_PSH, seq, SISS + 1, 502, 1000),
            &cx,
        );
        assert!(matches!(out, Outcome::Accept { .. }), "{out:?}");
    }
    let mut live = start;
    start.store_changes(&second, &mut live, Plain);
    start.store_changes(&first, &mut live, Plain);
    assert_eq!(live.seen[0].td_end, CISS + 2001, "the larger end stays");
    // The server acknowledges everything: in window.
    let mut after_ack = live;
    let out = packet(
        &mut after_ack,
        c.state,
        S,
        &seg(TCP_ACK, SISS + 1, CISS + 2001, 509, 0),
        &cx,
    );
    assert!(matches!(out, Outcome::Accept { .. }), "{out:?}");
}

#[test]
fn a_bound_the_tracker_moves_back_is_stored_as_is() {
    // A reinitialised sender (a SYN on a closed connection) starts over
    // below its old end.
    let start = established().t;
    let mut after = start;
    after.seen[0].td_end = start.seen[0].td_end.wrapping_sub(5000);
    after.seen[0].td_maxwin = 10;
    let mut live = start;
    start.store_changes(&after, &mut live, Plain);
    assert_eq!(live.seen[0].td_end, after.seen[0].td_end);
    assert_eq!(live.seen[0].td_maxwin, 10);
}

#[test]
fn a_first_fragment_makes_the_connection_liberal() {
    let mut c = established();
    let cx = Context {
        status: c.status,
        cfg: &c.cfg,
        timeouts: &Timeouts::NETFILTER,
        recv_offset: 0,
        partial: true,
    };
    // 1000 bytes seen of a 3000-byte segment.
    let out = packet(
        &mut c.t,
        c.state,
        C,
        &seg(TCP_ACK | TCP_PSH, CISS + 1, SISS + 1, 502, 1000),
        &cx,
    );
    assert!(matches!(out, Outcome::Accept { .. }), "{out:?}");
    assert!(c.t.seen[0].flags & seen_flags::BE_LIBERAL != 0);
    assert!(c.t.seen[1].flags & seen_flags::BE_LIBERAL != 0);
    // The server acks all 3000: beyond what was seen, yet not INVALID.
    c.accepts(S, seg(TCP_ACK, SISS + 1, CISS + 3001, 509, 0));
}
