//! The rest of netfilter's TCP tracker (`nf_conntrack_proto_tcp.c`): the
//! window of each direction (`tcp_in_window`), `tcp_new`, and the cases
//! `nf_conntrack_tcp_packet` handles around the transition table (a SYN
//! re-initialising a direction, an ignored packet that re-syncs, RST
//! checks, challenge ACKs, simultaneous open, the timeout choice), as one
//! pure function per segment.
//!
//! Sequence numbers compare in serial-number arithmetic ([`after`],
//! [`before`]). Names follow the kernel (`td_end`, `td_maxend`, …) so the
//! two can be read side by side.

use super::{
    TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, TcpFlagIndex, TcpState, TcpTransition, flag_index,
    options::{MAX_WSCALE, NO_WSCALE, TcpOptions, after, before},
    transition,
};
use crate::timeouts::Timeouts;

/// `MAXACKWINCONST`: the least window an ACK may lag behind.
const MAXACKWINCONST: u32 = 66_000;

/// `ip_ct_tcp_state.flags`.
pub mod seen_flags {
    pub const WINDOW_SCALE: u8 = 0x01;
    pub const SACK_PERM: u8 = 0x02;
    pub const CLOSE_INIT: u8 = 0x04;
    pub const BE_LIBERAL: u8 = 0x08;
    pub const DATA_UNACKNOWLEDGED: u8 = 0x10;
    pub const MAXACK_SET: u8 = 0x20;
}

/// `ip_ct_tcp.last_flags` beyond the `seen_flags` it carries.
pub mod last_flags {
    pub const EXP_CHALLENGE_ACK: u8 = 0x40;
    pub const SIMULTANEOUS_OPEN: u8 = 0x80;
}

/// `ip_ct_tcp_state`: what one direction's sender has shown.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// max(seq + len): the highest sequence end sent.
    pub td_end: u32,
    /// max(ack + max(win, 1)) of the other direction: how far this one
    /// may send.
    pub td_maxend: u32,
    /// The largest window this direction advertised.
    pub td_maxwin: u32,
    /// The highest ack this direction sent.
    pub td_maxack: u32,
    pub td_scale: u8,
    /// [`seen_flags`].
    pub flags: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<Seen>() == 20);

/// `ip_ct_tcp` but its state (kept in the entry's `tcp_state`): both
/// directions' windows and the last packet's summary.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpTrack {
    /// By direction: original, reply.
    pub seen: [Seen; 2],
    pub last_seq: u32,
    pub last_ack: u32,
    pub last_end: u32,
    pub last_win: u16,
    /// 0 original, 1 reply.
    pub last_dir: u8,
    /// A [`TcpFlagIndex`] as u8.
    pub last_index: u8,
    pub last_wscale: u8,
    pub last_flags: u8,
    pub retrans: u8,
    pub _pad: [u8; 5],
}
const _: () = assert!(core::mem::size_of::<TcpTrack>() == 64);
const _: () = assert!(core::mem::size_of::<Segment>() == 24);

impl Seen {
    /// Copies into `dst` each field that differs between `self` (before)
    /// and `after`. A bound the tracker moved forward is written only if
    /// it is ahead of what `dst` holds now: two CPUs tracking segments of
    /// the same direction at once must not let the later writer put back
    /// the smaller end. A bound the tracker moved back (a SYN
    /// reinitialising its sender) is written as is.
    #[inline(always)]
    fn store_changes<A: Advance>(&self, after: &Seen, live: &mut TcpTrack, dir: usize, advance: A) {
        macro_rules! seq_bound {
            ($($f:ident),*) => {$(
                if after.$f != self.$f {
                    if before(after.$f, self.$f) {
                        live.seen[dir].$f = after.$f;
                    } else {
                        advance.advance(
                            live,
                            SEEN_AT[dir] + core::mem::offset_of!(Seen, $f),
                            after.$f,
                        );
                    }
                }
            )*};
        }
        seq_bound!(td_end, td_maxend, td_maxack);
        let dst = &mut live.seen[dir];
        if after.td_maxwin != self.td_maxwin
            && (after.td_maxwin < self.td_maxwin || after.td_maxwin > dst.td_maxwin)
        {
            dst.td_maxwin = after.td_maxwin;
        }
        if after.td_scale != self.td_scale {
            dst.td_scale = after.td_scale;
        }
        if after.flags != self.flags {
            dst.flags = after.flags;
        }
    }
}

/// Where each direction's [`Seen`] starts in a [`TcpTrack`].
const SEEN_AT: [usize; 2] = [
    core::mem::offset_of!(TcpTrack, seen),
    core::mem::offset_of!(TcpTrack, seen) + core::mem::size_of::<Seen>(),
];

/// How a sequence bound is moved forward: `advance(track, off, to)` must
/// leave the u32 at byte `off` of `track` at `to` unless it is already
/// after `to` (another CPU moved it further). The datapath's is a
/// compare-and-exchange (BPF_CMPXCHG on the map value), so that of two CPUs
/// writing one bound the larger stays; a plain compare and store leaves a
/// window between the two in which the smaller wins, and a later ACK of the
/// data it covered then looks like one of data never sent. The offset is a
/// constant where it is called (the verifier allows no arithmetic on a
/// pointer's bits, so the exchange's 8-byte word is found from it). Static
/// dispatch: BPF has no indirect calls.
pub trait Advance: Copy {
    fn advance(self, track: &mut TcpTrack, off: usize, to: u32);
}

/// [`Advance`] for a copy no other CPU writes (the host's tests).
#[derive(Clone, Copy)]
pub struct Plain;

impl Advance for Plain {
    #[inline(always)]
    fn advance(self, track: &mut TcpTrack, off: usize, to: u32) {
        assert!(off.is_multiple_of(4) && off + 4 <= core::mem::size_of::<TcpTrack>());
        // SAFETY: an aligned u32 inside `track` (checked above).
        let p = unsafe { (track as *mut TcpTrack as *mut u8).add(off) as *mut u32 };
        // SAFETY: as above.
        unsafe {
            if after(to, *p) {
                *p = to;
            }
        }
    }
}

impl TcpTrack {
    /// Writes to `dst` (the connection's live copy) only the fields that
    /// `after` changed relative to `self`, the copy the tracker started
    /// from.
    ///
    /// The two directions of a connection may be tracked on two CPUs at
    /// once, and nothing locks the entry (a BPF spin lock would need the
    /// map's BTF, which the loader does not give it). Written back whole, one CPU's copy would undo
    /// the other's updates. Field by field, each bound the checks depend
    /// on has one writer in steady state: a segment moves its sender's
    /// `td_end` and `td_maxack` and its receiver's `td_maxend`, so the
    /// other direction's concurrent segment touches different fields.
    /// Two segments of the same direction on two CPUs (a sender whose
    /// thread moved) write the same bounds: those only ever move forward
    /// here, through `advance` (see [`Advance`]), so the later write cannot
    /// undo the earlier's larger one. What
    /// else two CPUs may both write (the flag bits, the last-segment
    /// notes) is learnt again from the next segment too, or narrows only
    /// the lower bounds, whose failures are ignored (accepted), not
    /// dropped.
    #[inline(always)]
    pub fn store_changes<A: Advance>(&self, after: &TcpTrack, dst: &mut TcpTrack, advance: A) {
        self.seen[0].store_changes(&after.seen[0], dst, 0, advance);
        self.seen[1].store_changes(&after.seen[1], dst, 1, advance);
        macro_rules! changed {
            ($($f:ident),*) => {$(
                if after.$f != self.$f {
                    dst.$f = after.$f;
                }
            )*};
        }
        changed!(
            last_seq,
            last_ack,
            last_end,
            last_win,
            last_dir,
            last_index,
            last_wscale,
            last_flags,
            retrans
        );
    }
}

/// A segment as the tracker reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub seq: u32,
    pub ack: u32,
    /// The raw (unscaled) window.
    pub win: u16,
    /// The TCP flags byte.
    pub flags: u8,
    pub _pad: u8,
    /// Payload length.
    pub len: u32,
    /// The options the tracker reads (only meaningful when read: a SYN, or
    /// a receiver that permitted SACK).
    pub opts: TcpOptions,
}

impl Segment {
    /// `segment_seq_plus_len`: SYN and FIN count one each.
    pub fn end(&self) -> u32 {
        self.seq
            .wrapping_add(self.len)
            .wrapping_add((self.flags & TCP_SYN != 0) as u32)
            .wrapping_add((self.flags & TCP_FIN != 0) as u32)
    }

    fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
}

/// The settings the tracker follows (netfilter's sysctls).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpConfig {
    /// `nf_conntrack_tcp_be_liberal`: window failures pass; an out-of-window
    /// RST is still INVALID.
    pub be_liberal: bool,
    /// `nf_conntrack_tcp_loose`: a mid-stream segment may start a
    /// connection (the caller decides where that is allowed).
    pub loose: bool,
    /// `nf_conntrack_tcp_max_retrans`.
    pub max_retrans: u8,
}

impl TcpConfig {
    pub const NETFILTER: TcpConfig = TcpConfig {
        be_liberal: false,
        loose: true,
        max_retrans: 3,
    };
}

/// What the connection's status says (`IPS_SEEN_REPLY`, `IPS_ASSURED`)
/// before this packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtStatus {
    pub seen_reply: bool,
    pub assured: bool,
}

/// Why a packet is accepted without changing the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// `sIG` in the transition table (and a SYN in TIME_WAIT/CLOSE that
    /// does not reopen).
    Transition,
    /// A challenge ACK answering a SYN in LAST_ACK (RFC 5961).
    ChallengeAck,
    /// Data before the receiver's window: a retransmission.
    SeqBelow,
    /// An ACK below the window's lower bound: overly delayed.
    AckBelow,
    /// Up to a window more than the receiver allowed, from TCPs that
    /// overshoot.
    Overshoot,
}

/// Why a packet is INVALID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// `sIV` in the transition table.
    State,
    /// Sequence over the receiver's window (`td_maxend`).
    SeqAbove,
    /// Acknowledges data never sent (`td_end`).
    AckAbove,
    /// An RST whose sequence is below what the other side acknowledged.
    Rst,
}

/// The outcome of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted: the state is now `state`; `timeout` seconds from now
    /// (`None`: keep the current expiry, a retransmitted SYN); `assured`
    /// sets ASSURED. `liberal`: the window check failed and was waived
    /// for a liberal sender.
    Accept {
        state: TcpState,
        timeout: Option<u32>,
        assured: bool,
        liberal: bool,
    },
    /// Accepted, nothing changes but the tracker's notes.
    Ignore(Ignored),
    /// INVALID. `shrink`: cut an ASSURED connection's timeout to UNACK
    /// (`nf_tcp_handle_invalid`: a FIN or RST answering one from the other
    /// side, out of window).
    Invalid { why: Invalid, shrink: bool },
    /// A SYN reopening a closed connection: delete it, and the packet is
    /// NEW.
    Reopen,
    /// An RST before any reply: the connection is gone (`nf_ct_kill_acct`),
    /// the packet passes.
    Kill,
}

/// `tcp_new` for the first segment of a connection in the original
/// direction, once the transition table has allowed it: the window notes a
/// SYN or a picked-up segment starts with.
pub fn new_connection(seg: &Segment) -> TcpTrack {
    let mut t = TcpTrack::default();
    let s = &mut t.seen[0];
    s.td_end = seg.end();
    s.td_maxwin = if seg.win == 0 { 1 } else { seg.win as u32 };
    if seg.has(TCP_SYN) {
        s.td_maxend = s.td_end;
        apply_options(s, &seg.opts);
    } else {
        // A mid-stream pickup: its history is lost; SACK and a liberal
        // window allow for the scaling we cannot know.
        s.td_maxend = s.td_end.wrapping_add(s.td_maxwin);
        t.seen[0].flags = seen_flags::SACK_PERM | seen_flags::BE_LIBERAL;
        t.seen[1].flags = seen_flags::SACK_PERM | seen_flags::BE_LIBERAL;
    }
    t.last_index = TcpFlagIndex::None as u8;
    t
}

/// `tcp_options` into a direction: the window scale and SACK-permitted of
/// its SYN.
fn apply_options(s: &mut Seen, o: &TcpOptions) {
    s.td_scale = 0;
    s.flags &= seen_flags::BE_LIBERAL;
    if o.sack_perm != 0 {
        s.flags |= seen_flags::SACK_PERM;
    }
    if o.wscale != NO_WSCALE {
        s.td_scale = if o.wscale > MAX_WSCALE {
            MAX_WSCALE
        } else {
            o.wscale
        };
        s.flags |= seen_flags::WINDOW_SCALE;
    }
}

/// `nf_ct_tcp_state_reset`.
fn reset(s: &mut Seen) {
    s.td_end = 0;
    s.td_maxend = 0;
    s.td_maxwin = 0;
    s.td_maxack = 0;
    s.td_scale = 0;
    s.flags &= seen_flags::BE_LIBERAL;
}

/// `tcp_can_early_drop`: a closing state.
fn closing(state: TcpState) -> bool {
    matches!(
        state,
        TcpState::FinWait
            | TcpState::LastAck
            | TcpState::TimeWait
            | TcpState::Close
            | TcpState::CloseWait
    )
}

/// What, besides the segment, decides its fate.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    pub status: CtStatus,
    pub cfg: &'a TcpConfig,
    pub timeouts: &'a Timeouts,
    /// The sequence correction a helper applied to the other direction
    /// (`nf_ct_seq_offset` of the receiver at `ack - 1`), which the ack is
    /// first taken back by.
    pub recv_offset: i32,
    /// The segment is the first fragment of a fragmented datagram: its
    /// length, and so its end, is not known here. The connection is
    /// tracked liberally from now on, both ways as a picked-up one is,
    /// rather than have the ACK of the unseen bytes look like an ACK of
    /// data never sent. (TCP sets DF and rarely fragments; netfilter
    /// reassembles first, which this datapath does not.)
    pub partial: bool,
}

/// `nf_conntrack_tcp_packet` for a segment of a tracked connection in
/// state `old`, direction `reply`.
pub fn packet(
    t: &mut TcpTrack,
    old: TcpState,
    reply: bool,
    seg: &Segment,
    cx: &Context,
) -> Outcome {
    let Context {
        status,
        cfg,
        timeouts,
        recv_offset,
        partial,
    } = *cx;
    let dir = reply as usize;
    if partial {
        t.seen[0].flags |= seen_flags::BE_LIBERAL;
        t.seen[1].flags |= seen_flags::BE_LIBERAL;
    }
    let index = flag_index(seg.flags);
    let mut old = old;
    let mut new = match transition(reply, index, old) {
        TcpTransition::To(s) => Some(s),
        TcpTransition::Ignore => None,
        TcpTransition::Invalid => {
            return Outcome::Invalid {
                why: Invalid::State,
                shrink: false,
            };
        }
    };
    let mut skip_window = false;
    match new {
        Some(TcpState::SynSent) if old >= TcpState::TimeWait => {
            // A SYN reopening a closed or aborted connection.
            let closed = (t.seen[dir].flags | t.seen[1 - dir].flags) & seen_flags::CLOSE_INIT != 0;
            let aborted = t.last_dir as usize == dir && t.last_index == TcpFlagIndex::Rst as u8;
            if closed || aborted {
                return Outcome::Reopen;
            }
            // Otherwise it is handled as an ignored packet.
            new = None;
        }
        Some(TcpState::TimeWait)
            if old == TcpState::LastAck
                && index == TcpFlagIndex::Ack
                && t.last_dir as usize != dir
                && t.last_index == TcpFlagIndex::Syn as u8
                && t.last_flags & last_flags::EXP_CHALLENGE_ACK != 0 =>
        {
            t.last_flags &= !last_flags::EXP_CHALLENGE_ACK;
            return Outcome::Ignore(Ignored::ChallengeAck);
        }
        Some(TcpState::SynSent2) => t.last_flags |= last_flags::SIMULTANEOUS_OPEN,
        Some(TcpState::SynRecv)
            if reply
                && index == TcpFlagIndex::Ack
                && t.last_flags & last_flags::SIMULTANEOUS_OPEN != 0 =>
        {
            new = Some(TcpState::Established);
        }
        Some(TcpState::Close) if index == TcpFlagIndex::Rst => {
            let (check, keep) = rst_check(t, old, dir, seg, status);
            if keep {
                new = Some(old);
            }
            match check {
                RstCheck::Invalid => {
                    return Outcome::Invalid {
                        why: Invalid::Rst,
                        shrink: false,
                    };
                }
                RstCheck::SkipWindow => skip_window = true,
                RstCheck::Window => {}
            }
        }
        _ => {}
    }
    let new = match new {
        Some(s) => s,
        None => match ignored(t, &mut old, dir, index, seg) {
            Some(s) => s,
            None => return Outcome::Ignore(Ignored::Transition),
        },
    };
    let mut liberal = false;
    if !skip_window {
        match in_window(t, old, dir, index, seg, cfg, recv_offset) {
            Window::Accept => {}
            Window::Liberal => liberal = true,
            Window::Ignore(why) => return Outcome::Ignore(why),
            Window::Invalid(why) => {
                return Outcome::Invalid {
                    // An RST is counted as one, whichever bound it broke.
                    why: if seg.has(TCP_RST) { Invalid::Rst } else { why },
                    shrink: handle_invalid(t, dir, index, status),
                };
            }
        }
    }
    // From here on the packet is in window.
    t.last_index = index as u8;
    t.last_dir = dir as u8;
    if old != new && new == TcpState::FinWait {
        t.seen[dir].flags |= seen_flags::CLOSE_INIT;
    }
    let state_t = timeouts.tcp(new, true);
    let unack_flag = (t.seen[0].flags | t.seen[1].flags) & seen_flags::DATA_UNACKNOWLEDGED != 0;
    let mut timeout = if t.retrans >= cfg.max_retrans && state_t > timeouts.tcp_retrans {
        timeouts.tcp_retrans
    } else if index == TcpFlagIndex::Rst {
        timeouts.tcp_close
    } else if unack_flag && state_t > timeouts.tcp_unack {
        timeouts.tcp_unack
    } else if t.last_win == 0 && state_t > timeouts.tcp_retrans {
        timeouts.tcp_retrans
    } else {
        state_t
    };
    let mut assured = false;
    if !status.seen_reply {
        if seg.has(TCP_RST) {
            return Outcome::Kill;
        }
        if index == TcpFlagIndex::Syn && old == TcpState::SynSent {
            // A retransmitted SYN does not renew the timeout, or port reuse
            // could keep the entry (and its NAT binding) alive forever.
            return Outcome::Accept {
                state: new,
                timeout: None,
                assured: false,
                liberal,
            };
        }
        if new == TcpState::Established && timeout > timeouts.tcp_unack {
            timeout = timeouts.tcp_unack;
        }
    } else if !status.assured
        && matches!(old, TcpState::SynRecv | TcpState::Established)
        && new == TcpState::Established
    {
        assured = true;
    }
    Outcome::Accept {
        state: new,
        timeout: Some(timeout),
        assured,
        liberal,
    }
}

enum RstCheck {
    /// Go on to the window check.
    Window,
    /// In window without checking (closing, or answering what we let by).
    SkipWindow,
    Invalid,
}

/// The RST cases of `nf_conntrack_tcp_packet` (`case TCP_CONNTRACK_CLOSE`),
/// in its order. The flag says the RST was in window but not exact: the
/// state is kept, for a challenge ACK.
fn rst_check(
    t: &TcpTrack,
    old: TcpState,
    dir: usize,
    seg: &Segment,
    status: CtStatus,
) -> (RstCheck, bool) {
    if closing(old) {
        return (RstCheck::SkipWindow, false);
    }
    let other = &t.seen[1 - dir];
    let established = old == TcpState::Established && status.assured;
    let mut keep = false;
    if other.flags & seen_flags::MAXACK_SET != 0 && t.last_index != TcpFlagIndex::Syn as u8 {
        let seq = seg.seq;
        if seq == 0 && !established {
            // Most likely the answer to a SYN we let through.
            return (RstCheck::Window, false);
        }
        if before(seq, other.td_maxack) {
            return (RstCheck::Invalid, false);
        }
        if !established || seq == other.td_maxack {
            return (RstCheck::Window, false);
        }
        let train = t.last_index == TcpFlagIndex::Ack as u8
            && t.last_dir as usize == dir
            && seq == t.last_end;
        if train {
            return (RstCheck::Window, false);
        }
        keep = true;
    }
    let answers_ours = ((status.seen_reply && t.last_index == TcpFlagIndex::Syn as u8)
        || (!status.assured && t.last_index == TcpFlagIndex::Ack as u8))
        && seg.ack == t.last_end;
    let answers_challenge = old == TcpState::SynSent
        && t.last_index == TcpFlagIndex::Ack as u8
        && t.last_dir == 1
        && seg.seq == t.last_ack;
    if answers_ours || answers_challenge {
        (RstCheck::SkipWindow, keep)
    } else {
        (RstCheck::Window, keep)
    }
}

/// An ignored packet (`case TCP_CONNTRACK_IGNORE`): a SYN/ACK answering a
/// SYN we ignored re-syncs the connection (returns the state to go on
/// with, `old` becoming SYN_SENT); anything else is noted for that.
fn ignored(
    t: &mut TcpTrack,
    old: &mut TcpState,
    dir: usize,
    index: TcpFlagIndex,
    seg: &Segment,
) -> Option<TcpState> {
    if index == TcpFlagIndex::SynAck
        && t.last_index == TcpFlagIndex::Syn as u8
        && t.last_dir as usize != dir
        && seg.ack == t.last_end
    {
        *old = TcpState::SynSent;
        let ld = (t.last_dir & 1) as usize;
        t.seen[ld].td_end = t.last_end;
        t.seen[ld].td_maxend = t.last_end;
        t.seen[ld].td_maxwin = if t.last_win == 0 {
            1
        } else {
            t.last_win as u32
        };
        t.seen[ld].td_scale = t.last_wscale;
        t.last_flags &= !last_flags::EXP_CHALLENGE_ACK;
        t.seen[ld].flags = t.last_flags;
        reset(&mut t.seen[dir]);
        return Some(TcpState::SynRecv);
    }
    t.last_index = index as u8;
    t.last_dir = dir as u8;
    t.last_seq = seg.seq;
    t.last_end = seg.end();
    t.last_win = seg.win;
    if index == TcpFlagIndex::Syn && dir == 0 {
        t.last_flags = 0;
        t.last_wscale = 0;
        if seg.opts.wscale != NO_WSCALE {
            t.last_flags |= seen_flags::WINDOW_SCALE;
            t.last_wscale = if seg.opts.wscale > MAX_WSCALE {
                MAX_WSCALE
            } else {
                seg.opts.wscale
            };
        }
        if seg.opts.sack_perm != 0 {
            t.last_flags |= seen_flags::SACK_PERM;
        }
        if *old == TcpState::LastAck {
            t.last_flags |= last_flags::EXP_CHALLENGE_ACK;
        }
    }
    if *old == TcpState::SynSent && index == TcpFlagIndex::Ack && dir == 1 {
        t.last_ack = seg.ack;
    }
    None
}

enum Window {
    Accept,
    /// A failure passed because the sender is tracked liberally.
    Liberal,
    Ignore(Ignored),
    Invalid(Invalid),
}

/// `nf_tcp_log_invalid`'s verdict: liberal senders (a mid-stream pickup)
/// pass window failures, as in netfilter. The `tcp_be_liberal` setting
/// passes them too, but here never an RST: netfilter lets an
/// out-of-window RST through with it, which is exactly the blind reset the
/// window check is there to stop.
fn unless_liberal(sender: &Seen, cfg: &TcpConfig, seg: &Segment, w: Window) -> Window {
    if sender.flags & seen_flags::BE_LIBERAL != 0 || (cfg.be_liberal && !seg.has(TCP_RST)) {
        Window::Liberal
    } else {
        w
    }
}

/// `MAXACKWINDOW(sender)`.
fn max_ack_window(sender: &Seen) -> u32 {
    if sender.td_maxwin > MAXACKWINCONST {
        sender.td_maxwin
    } else {
        MAXACKWINCONST
    }
}

/// `tcp_init_sender`.
fn init_sender(t: &mut TcpTrack, dir: usize, seg: &Segment, end: u32, win: u32) {
    let s = &mut t.seen[dir];
    s.td_end = end;
    s.td_maxend = end;
    s.td_maxwin = if win == 0 { 1 } else { win };
    apply_options(s, &seg.opts);
    // RFC 1323: both sides must offer window scaling to use it.
    if dir == 1
        && !(t.seen[1].flags & seen_flags::WINDOW_SCALE != 0
            && t.seen[0].flags & seen_flags::WINDOW_SCALE != 0)
    {
        t.seen[1].td_scale = 0;
        t.seen[0].td_scale = 0;
    }
}

/// `tcp_in_window`.
fn in_window(
    t: &mut TcpTrack,
    state: TcpState,
    dir: usize,
    index: TcpFlagIndex,
    seg: &Segment,
    cfg: &TcpConfig,
    recv_offset: i32,
) -> Window {
    let rdir = 1 - dir;
    let mut seq = seg.seq;
    let mut ack = seg.ack;
    let mut sack = if t.seen[rdir].flags & seen_flags::SACK_PERM != 0 {
        seg.opts.sack
    } else {
        seg.ack
    };
    let win_raw = seg.win;
    let mut win = win_raw as u32;
    let mut end = seg.end();
    ack = ack.wrapping_sub(recv_offset as u32);
    sack = sack.wrapping_sub(recv_offset as u32);

    if t.seen[dir].td_maxwin == 0 {
        if seg.has(TCP_SYN) {
            init_sender(t, dir, seg, end, win);
            if !seg.has(TCP_ACK) {
                // Simultaneous open.
                return Window::Accept;
            }
        } else {
            // Mid-connection: take what the packet shows.
            let scale = t.seen[dir].td_scale;
            let swin = win << scale;
            let s = &mut t.seen[dir];
            s.td_end = end;
            s.td_maxwin = if swin == 0 { 1 } else { swin };
            s.td_maxend = end.wrapping_add(s.td_maxwin);
            let r = &mut t.seen[rdir];
            if r.td_maxwin == 0 {
                // Nothing seen the other way yet: let III and IV pass.
                r.td_end = sack;
                r.td_maxend = sack;
            } else if sack == r.td_end.wrapping_add(1) {
                // Likely the answer to a keepalive.
                r.td_end = r.td_end.wrapping_add(1);
            }
        }
    } else if seg.has(TCP_SYN)
        && after(end, t.seen[dir].td_end)
        && matches!(state, TcpState::SynSent | TcpState::SynRecv)
    {
        // RFC 793: a reinitialised TCP uses higher sequence numbers.
        init_sender(t, dir, seg, end, win);
        if dir == 1 && !seg.has(TCP_ACK) {
            return Window::Accept;
        }
    }

    if !seg.has(TCP_ACK) {
        ack = t.seen[rdir].td_end;
        sack = ack;
    } else if seg.flags & (TCP_ACK | TCP_RST) == TCP_ACK | TCP_RST && seg.ack == 0 {
        // Broken stacks set ACK with a zero ack in RSTs.
        ack = t.seen[rdir].td_end;
        sack = ack;
    }
    if seg.has(TCP_RST) && seq == 0 && state == TcpState::SynSent {
        // An RST answering a SYN.
        seq = t.seen[dir].td_end;
        end = seq;
    }

    let sender = t.seen[dir];
    let receiver = t.seen[rdir];
    let seq_ok = before(seq, sender.td_maxend.wrapping_add(1));
    if !seq_ok {
        let overshot = end.wrapping_sub(sender.td_maxend).wrapping_add(1);
        let ack_ok = after(
            sack,
            receiver
                .td_end
                .wrapping_sub(max_ack_window(&sender))
                .wrapping_sub(1),
        );
        let in_recv_win = receiver.td_maxwin != 0
            && after(
                end,
                sender
                    .td_end
                    .wrapping_sub(receiver.td_maxwin)
                    .wrapping_sub(1),
            );
        if in_recv_win
            && ack_ok
            && overshot <= receiver.td_maxwin
            && before(sack, receiver.td_end.wrapping_add(1))
        {
            // TCPs that send more than the window allows: note the data,
            // so its ACK is not over the bound later.
            t.seen[dir].td_end = end;
            t.seen[dir].flags |= seen_flags::DATA_UNACKNOWLEDGED;
            return unless_liberal(&sender, cfg, seg, Window::Ignore(Ignored::Overshoot));
        }
        return unless_liberal(&sender, cfg, seg, Window::Invalid(Invalid::SeqAbove));
    }
    if !before(sack, receiver.td_end.wrapping_add(1)) {
        return unless_liberal(&sender, cfg, seg, Window::Invalid(Invalid::AckAbove));
    }
    let in_recv_win = receiver.td_maxwin == 0
        || after(
            end,
            sender
                .td_end
                .wrapping_sub(receiver.td_maxwin)
                .wrapping_sub(1),
        );
    if !in_recv_win {
        return unless_liberal(&sender, cfg, seg, Window::Ignore(Ignored::SeqBelow));
    }
    if !after(
        sack,
        receiver
            .td_end
            .wrapping_sub(max_ack_window(&sender))
            .wrapping_sub(1),
    ) {
        return unless_liberal(&sender, cfg, seg, Window::Ignore(Ignored::AckBelow));
    }

    // Window scaling (RFC 1323) applies to everything but SYNs.
    if !seg.has(TCP_SYN) {
        win <<= sender.td_scale;
    }
    // The sender.
    let swin = win.wrapping_add(sack.wrapping_sub(ack));
    let s = &mut t.seen[dir];
    if s.td_maxwin < swin {
        s.td_maxwin = swin;
    }
    if after(end, s.td_end) {
        s.td_end = end;
        s.flags |= seen_flags::DATA_UNACKNOWLEDGED;
    }
    if seg.has(TCP_ACK) {
        if s.flags & seen_flags::MAXACK_SET == 0 {
            s.td_maxack = ack;
            s.flags |= seen_flags::MAXACK_SET;
        } else if after(ack, s.td_maxack) {
            s.td_maxack = ack;
        }
    }
    let sender_maxend = s.td_maxend;
    // The receiver.
    let r = &mut t.seen[rdir];
    if r.td_maxwin != 0 && after(end, sender_maxend) {
        r.td_maxwin = r.td_maxwin.wrapping_add(end.wrapping_sub(sender_maxend));
    }
    if after(sack.wrapping_add(win), r.td_maxend.wrapping_sub(1)) {
        r.td_maxend = sack.wrapping_add(win);
        if win == 0 {
            r.td_maxend = r.td_maxend.wrapping_add(1);
        }
    }
    if ack == r.td_end {
        r.flags &= !seen_flags::DATA_UNACKNOWLEDGED;
    }
    // Retransmissions.
    if index == TcpFlagIndex::Ack {
        if t.last_dir as usize == dir
            && t.last_seq == seq
            && t.last_ack == ack
            && t.last_end == end
            && t.last_win == win_raw
        {
            t.retrans = t.retrans.saturating_add(1);
        } else {
            t.last_dir = dir as u8;
            t.last_seq = seq;
            t.last_ack = ack;
            t.last_end = end;
            t.last_win = win_raw;
            t.retrans = 0;
        }
    }
    Window::Accept
}

/// `nf_tcp_handle_invalid`: whether an out-of-window FIN or RST answering
/// one from the other side cuts an ASSURED connection's timeout; otherwise
/// it is noted.
fn handle_invalid(t: &mut TcpTrack, dir: usize, index: TcpFlagIndex, status: CtStatus) -> bool {
    if !status.assured || !matches!(index, TcpFlagIndex::Rst | TcpFlagIndex::Fin) {
        return false;
    }
    let answers = t.last_dir as usize != dir
        && (t.last_index == TcpFlagIndex::Fin as u8 || t.last_index == TcpFlagIndex::Rst as u8);
    if answers {
        true
    } else {
        t.last_index = index as u8;
        t.last_dir = dir as u8;
        false
    }
}

#[cfg(test)]
mod tests;
