//! TCP window tracking in the datapath: a segment's options copied into a
//! per-CPU slot and walked one option per `bpf_loop` call, then
//! `firewall_common::tcp::track` run on a copy of the connection's windows
//! in a one-iteration `bpf_loop` callback. As a callback the tracker's
//! branches are verified once, not once per path of the program that
//! calls it, and its stack is its own.

use aya_ebpf::{cty::c_void, helpers::generated::bpf_loop, macros::map, maps::PerCpuArray};
use firewall_common::{
    TcpState,
    tcp::{
        TCP_SYN,
        options::{MAX_TCP_OPTIONS, OptionWalk},
        track::{self, Context, CtStatus, Ignored, Invalid, Outcome, Segment, TcpTrack},
    },
};

use crate::{
    maps::SETTINGS,
    parse::{LoadBytes, Packet, opaque, pkt_flags},
};

/// Moves a window bound of the live entry forward with BPF_CMPXCHG, a few
/// tries at most (see `firewall_common::tcp::track::Advance`).
#[derive(Clone, Copy)]
pub struct Cmpxchg;

impl track::Advance for Cmpxchg {
    /// The BPF target compiled for the `generic` CPU has a 64-bit
    /// compare-and-exchange only: the exchange covers the aligned eight
    /// bytes around the bound and puts back its neighbour as it found it
    /// (a neighbour changed meanwhile fails the exchange, which is retried).
    #[inline(always)]
    fn advance(self, track: &mut TcpTrack, off: usize, to: u32) {
        let shift = ((off & 4) * 8) as u64;
        let mask = 0xffff_ffffu64 << shift;
        // SAFETY: the aligned u64 of the entry's windows that holds the
        // bound (`CtEntry::tcp` starts on an 8-byte boundary, asserted in
        // firewall-common; `off` is a constant inside the windows), valid
        // for this run.
        let word = unsafe { (track as *mut TcpTrack as *mut u8).add(off & !7) as *mut u64 };
        // SAFETY: as above.
        let mut cur = unsafe { core::ptr::read_volatile(word) };
        for _ in 0..4 {
            let bound = ((cur & mask) >> shift) as u32;
            if !firewall_common::tcp::options::after(to, bound) {
                return;
            }
            let new = (cur & !mask) | ((to as u64) << shift);
            // SAFETY: as above.
            let (now, done) = unsafe {
                core::intrinsics::atomic_cxchg::<
                    u64,
                    { core::intrinsics::AtomicOrdering::SeqCst },
                    { core::intrinsics::AtomicOrdering::SeqCst },
                >(word, cur, new)
            };
            if done {
                return;
            }
            cur = now;
        }
    }
}

/// `Outcome` flattened for map memory (an enum with fields would leave
/// bytes the verifier sees as uninitialised).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Verdict {
    /// One of the `KIND_*` constants.
    pub kind: u8,
    /// `Accept`: the new state as u8.
    pub state: u8,
    /// `Accept`: sets ASSURED.
    pub assured: u8,
    /// `Accept`: the window check was waived for a liberal sender.
    pub liberal: u8,
    /// `Ignore`: an [`Ignored`] as u8; `Invalid`: an [`Invalid`] as u8.
    pub why: u8,
    /// `Accept`: a timeout is set; `Invalid`: cut the timeout (`shrink`).
    pub has_timeout: u8,
    pub _pad: [u8; 2],
    pub timeout: u32,
}

pub const KIND_ACCEPT: u8 = 0;
pub const KIND_IGNORE: u8 = 1;
pub const KIND_INVALID: u8 = 2;
pub const KIND_REOPEN: u8 = 3;
pub const KIND_KILL: u8 = 4;

/// A segment, the connection's windows before and after it, and the
/// verdict.
#[repr(C)]
pub struct Slot {
    opts: [u8; MAX_TCP_OPTIONS],
    walk: OptionWalk,
    pub seg: Segment,
    /// The windows as read from the entry, and as the tracker left them.
    pub before: TcpTrack,
    pub after: TcpTrack,
    recv_offset: i32,
    old: u8,
    reply: u8,
    seen_reply: u8,
    assured: u8,
    partial: u8,
    _pad: [u8; 3],
    pub verdict: Verdict,
}

#[map]
static TCP_SLOT: PerCpuArray<Slot> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's slot, as `segment` and `run` left it.
#[inline(always)]
pub fn slot() -> Option<&'static Slot> {
    TCP_SLOT.get(0)
}

/// Reads `p`'s segment into the slot, once per packet, before the
/// datapath branches: every path that tracks a segment finds it there, and
/// the verifier walks this code once rather than once per path. Options
/// are walked unless they are the timestamps-only layout nearly every
/// segment carries (`tcp_sack`'s fast path); the tracker itself ignores
/// SACK blocks the receiver did not permit. Options the packet does not
/// hold (its data offset was checked by the parser) read as none.
#[inline(always)]
pub fn segment<C: LoadBytes>(ctx: &C, p: &Packet) {
    let Some(s) = TCP_SLOT.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot.
    let s = unsafe { &mut *s };
    let end = p.l3_off as u32 + p.l3_len;
    let payload_off = p.payload_off as u32;
    s.seg = Segment {
        seq: p.tcp_seq,
        ack: p.tcp_ack,
        win: p.tcp_win,
        flags: p.tcp_flags,
        _pad: 0,
        len: end.saturating_sub(payload_off),
        opts: Default::default(),
    };
    s.seg.opts.sack = p.tcp_ack;
    s.partial = (p.flags & pkt_flags::FIRST_FRAGMENT != 0) as u8;
    // The verifier needs the size test next to the helper call, where
    // LLVM would have dropped it as known.
    let len = opaque(payload_off.saturating_sub(p.l4_off as u32 + 20));
    if len == 0 || len > MAX_TCP_OPTIONS as u32 {
        return;
    }
    if !ctx.load_raw(p.l4_off as u32 + 20, s.opts.as_mut_ptr(), len) {
        return;
    }
    if p.tcp_flags & TCP_SYN == 0 && OptionWalk::timestamps_only(&s.opts, len as usize) {
        return;
    }
    s.walk = OptionWalk::new(len as usize, p.tcp_ack);
    // SAFETY: callback as bpf_loop expects; it uses the slot only.
    unsafe {
        bpf_loop(
            MAX_TCP_OPTIONS as u32,
            option_step as *mut c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    let Some(s) = TCP_SLOT.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot, fresh after the call.
    unsafe { (*s).seg.opts = (*s).walk.found };
}

/// `bpf_loop` callback: one option. Returns 1 to stop.
#[inline(never)]
extern "C" fn option_step(_index: u64, _data: *mut c_void) -> i64 {
    let Some(s) = TCP_SLOT.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's slot.
    let s = unsafe { &mut *s };
    s.walk.step(&s.opts) as i64
}

/// Runs the segment in the slot through the tracker, from the windows
/// `t` of a connection in state `old` (as u8), in direction `reply`. The
/// verdict, and the windows after it, are in the slot.
#[inline(always)]
pub fn run(t: &TcpTrack, old: u8, reply: bool, status: CtStatus, recv_offset: i32) -> bool {
    let Some(s) = TCP_SLOT.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's slot.
    let s = unsafe { &mut *s };
    s.before = *t;
    s.old = old;
    s.reply = reply as u8;
    s.seen_reply = status.seen_reply as u8;
    s.assured = status.assured as u8;
    s.recv_offset = recv_offset;
    s.verdict.kind = KIND_INVALID;
    s.verdict.why = Invalid::State as u8;
    firewall_tcp_track() == 0
}

/// The tracker, as a BPF global function: the kernel verifies it once, on
/// its own, whatever state the caller is in (a static subprogram or a
/// `bpf_loop` callback is verified again for every distinct caller state,
/// and the tracker's branches times the datapath's paths exceed the
/// verifier's budget). It takes no arguments and touches only map memory,
/// as global functions must. Returns 0 when the verdict is in the slot.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn firewall_tcp_track() -> i64 {
    let Some(settings) = SETTINGS.get(0) else {
        return 1;
    };
    let Some(s) = TCP_SLOT.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's slot.
    let s = unsafe { &mut *s };
    let Some(old) = TcpState::from_u8(s.old) else {
        return 1;
    };
    let cfg = settings.tcp_config();
    let cx = Context {
        status: CtStatus {
            seen_reply: s.seen_reply != 0,
            assured: s.assured != 0,
        },
        cfg: &cfg,
        timeouts: &settings.timeouts,
        recv_offset: s.recv_offset,
        partial: s.partial != 0,
    };
    s.after = s.before;
    let out = track::packet(&mut s.after, old, s.reply != 0, &s.seg, &cx);
    s.verdict = flatten(out);
    0
}

#[inline(always)]
fn flatten(out: Outcome) -> Verdict {
    let mut v = Verdict {
        kind: KIND_ACCEPT,
        state: 0,
        assured: 0,
        liberal: 0,
        why: 0,
        has_timeout: 0,
        _pad: [0; 2],
        timeout: 0,
    };
    match out {
        Outcome::Accept {
            state,
            timeout,
            assured,
            liberal,
        } => {
            v.state = state as u8;
            v.assured = assured as u8;
            v.liberal = liberal as u8;
            if let Some(secs) = timeout {
                v.has_timeout = 1;
                v.timeout = secs;
            }
        }
        Outcome::Ignore(why) => {
            v.kind = KIND_IGNORE;
            v.why = why as u8;
        }
        Outcome::Invalid { why, shrink } => {
            v.kind = KIND_INVALID;
            v.why = why as u8;
            v.has_timeout = shrink as u8;
        }
        Outcome::Reopen => v.kind = KIND_REOPEN,
        Outcome::Kill => v.kind = KIND_KILL,
    }
    v
}

/// The first segment of a connection, as `tcp_new` then the tracker from
/// NONE see it: the windows its entry starts with are in the slot's
/// `after`, and the verdict says whether it may start one.
#[inline(always)]
pub fn first() -> bool {
    let Some(s) = TCP_SLOT.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's slot.
    let s = unsafe { &mut *s };
    let t = track::new_connection(&s.seg);
    run(
        &t,
        TcpState::None as u8,
        false,
        CtStatus {
            seen_reply: false,
            assured: false,
        },
        0,
    )
}

/// Names for the `Ignored` and `Invalid` reasons as u8.
pub mod why {
    use super::{Ignored, Invalid};
    pub const IGNORED_SEQ_BELOW: u8 = Ignored::SeqBelow as u8;
    pub const IGNORED_ACK_BELOW: u8 = Ignored::AckBelow as u8;
    pub const IGNORED_OVERSHOOT: u8 = Ignored::Overshoot as u8;
    pub const INVALID_SEQ_ABOVE: u8 = Invalid::SeqAbove as u8;
    pub const INVALID_ACK_ABOVE: u8 = Invalid::AckAbove as u8;
    pub const INVALID_RST: u8 = Invalid::Rst as u8;
}
