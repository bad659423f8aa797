//! Fragments in the datapath (the rules are `firewall_common::frag`'s).
//!
//! Every program parses through [`parsed`], which looks a fragment's
//! datagram up in `FRAGMENTS` once and leaves its fate in the packet
//! (`Packet::frag_fate`); a later fragment whose first fragment was
//! accepted also takes that fragment's tuple (ports, and the transport
//! protocol an IPv6 fragment header may hide behind extension headers), so
//! that from there on the connection lookups and NAT rewrites treat it as a
//! packet of its connection. `process` turns the fate into a verdict by
//! interface role; the TC programs translate what followed. A first
//! fragment is recorded with its verdict by [`record`], called where each
//! program knows the verdict.

use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::map, maps::LruHashMap};
use firewall_common::{
    Counter,
    frag::{self, FragEntry, FragKey, MAX_FRAG_DATAGRAMS, first, frag_verdict, later, timeout_ns},
};

use crate::parse::{L4Kind, LoadBytes, Packet, ParseError, parse, pkt_flags, scratch};

/// Datagrams whose first fragment was seen (see `firewall_common::frag`).
#[map]
pub static FRAGMENTS: LruHashMap<FragKey, FragEntry> =
    LruHashMap::with_max_entries(MAX_FRAG_DATAGRAMS, 0);

/// `Packet::frag_fate` values. `NONE` for every packet that is not a
/// fragment, and for a first fragment that may be tracked.
pub mod fate {
    pub const NONE: u8 = 0;
    /// A later fragment of an accepted datagram; the packet holds its tuple.
    pub const FOLLOW: u8 = 1;
    /// A later fragment of a dropped (or poisoned) datagram.
    pub const FOLLOW_DROP: u8 = 2;
    /// A later fragment with no first fragment on record.
    pub const ORPHAN: u8 = 3;
    pub const OVERLAP: u8 = 4;
    pub const PROTO: u8 = 5;
    pub const OVERSIZE: u8 = 6;
}

/// Parses into the per-CPU scratch slot, then settles a fragment's fate.
/// Whole packets pay one branch; the clock is read only for fragments.
#[inline(always)]
pub fn parsed<C: LoadBytes>(
    ctx: &C,
    start: usize,
    end: usize,
) -> Result<&'static Packet, ParseError> {
    let p = scratch().ok_or(ParseError::Malformed)?;
    p.frag_fate = fate::NONE;
    parse(ctx, start, end, p)?;
    if p.kind == L4Kind::Fragment {
        settle_later(p);
    } else if p.flags & pkt_flags::FIRST_FRAGMENT != 0 {
        settle_first(p);
    }
    Ok(p)
}

#[inline(always)]
fn key_of(p: &Packet) -> FragKey {
    FragKey {
        src: p.key.src,
        dst: p.key.dst,
        id: p.frag_id,
        family: p.key.family,
        _pad: [0; 3],
    }
}

// Not inlined, like `settle_first` and `record`: their keys and entries
// would otherwise sit in the frame of every program that parses, which the
// window tracker's calls already take close to the 512-byte stack limit.
#[inline(never)]
fn settle_later(p: &mut Packet) {
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    let key = key_of(p);
    let e = FRAGMENTS.get_ptr_mut(&key);
    // SAFETY: map value pointer, valid for this run.
    let entry = e.map(|e| unsafe { &*e });
    p.frag_fate = match later(entry, p.frag_proto, p.frag_off, p.frag_len as u32, now) {
        frag::Later::Follow(ct) => {
            p.key = ct;
            fate::FOLLOW
        }
        frag::Later::FollowDrop | frag::Later::Poisoned => fate::FOLLOW_DROP,
        frag::Later::Orphan => fate::ORPHAN,
        frag::Later::Overlap => {
            // netfilter discards the whole datagram on an overlap.
            if let Some(e) = e {
                // SAFETY: as above.
                unsafe { (*e).verdict = frag_verdict::POISONED };
            }
            fate::OVERLAP
        }
        frag::Later::ProtoMismatch => fate::PROTO,
        frag::Later::Oversize => fate::OVERSIZE,
    };
}

#[inline(never)]
fn settle_first(p: &mut Packet) {
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    let key = key_of(p);
    let e = FRAGMENTS.get_ptr_mut(&key);
    // SAFETY: map value pointer, valid for this run.
    let entry = e.map(|e| unsafe { &*e });
    p.frag_fate = match first(entry, &p.key, p.frag_proto, now) {
        frag::First::Track => fate::NONE,
        frag::First::Overlap => {
            if let Some(e) = e {
                // SAFETY: as above.
                unsafe { (*e).verdict = frag_verdict::POISONED };
            }
            fate::OVERLAP
        }
        frag::First::ProtoMismatch => fate::PROTO,
        frag::First::Poisoned => fate::FOLLOW_DROP,
    };
}

/// The counter of a fragment whose fate is not to pass, or `None`.
#[inline(always)]
pub fn refused(p: &Packet) -> Option<Counter> {
    match p.frag_fate {
        fate::FOLLOW_DROP => Some(Counter::DropFragmentFollows),
        fate::OVERLAP => Some(Counter::DropFragmentOverlap),
        fate::PROTO => Some(Counter::DropFragmentProto),
        fate::OVERSIZE => Some(Counter::DropFragmentOversize),
        _ => None,
    }
}

/// Records a first fragment's verdict for the rest of its datagram, unless
/// its datagram is already decided otherwise (a poisoned or different
/// record stays). Anything else is left alone, at the cost of one branch:
/// the call is made for first fragments only.
#[inline(always)]
pub fn record(p: &Packet, accepted: bool) {
    if p.flags & pkt_flags::FIRST_FRAGMENT != 0 && p.frag_fate == fate::NONE && p.key.family != 0 {
        record_first(p, accepted);
    }
}

#[inline(never)]
fn record_first(p: &Packet, accepted: bool) {
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    let entry = FragEntry {
        ct: p.key,
        expires: now + timeout_ns(p.key.family),
        frag_proto: p.frag_proto,
        verdict: if accepted {
            frag_verdict::ACCEPT
        } else {
            frag_verdict::DROP
        },
        header_end: header_end(p),
        _pad: [0; 4],
    };
    // An LRU insert fails only without memory; the datagram's later
    // fragments are then orphans, which is what a forgotten datagram is.
    let _ = FRAGMENTS.insert(&key_of(p), &entry, 0);
}

/// Bytes from the fragmentable part's start to the end of the transport
/// header of a first fragment.
#[inline(always)]
fn header_end(p: &Packet) -> u16 {
    let l4_len = match p.kind {
        L4Kind::Tcp => p.payload_off.wrapping_sub(p.l4_off),
        L4Kind::Sctp => 12,
        L4Kind::Udp
        | L4Kind::IcmpQuery
        | L4Kind::IcmpError
        | L4Kind::IcmpUntracked
        | L4Kind::IcmpInvalid => 8,
        L4Kind::Other | L4Kind::Fragment => 0,
    };
    (p.l4_off + l4_len).saturating_sub(p.frag_start)
}
