//! IP fragments without reassembly: a later fragment follows the verdict
//! and the translation of its datagram's first fragment.
//!
//! netfilter reassembles before conntrack (`nf_defrag_ipv4/6`), so rules and
//! NAT see whole datagrams. An XDP program cannot hold packets back, so the
//! datapath does what Cilium and Calico do, and more strictly: the first
//! fragment (offset 0, the only one with a transport header) is tracked and
//! judged like any packet, and its datagram — (family, source, destination,
//! IP identification) — is remembered with the verdict and the connection
//! tuple for `ipfrag_time` (IPv4 30 s, IPv6 60 s as
//! `nf_conntrack_frag6_timeout`). Later fragments look the datagram up:
//! they get the same verdict, and with the tuple the same connection's
//! address translation (only the first fragment holds ports and the
//! transport checksum, which covers the whole datagram: its incremental
//! update is enough).
//!
//! What cannot be tied to a first fragment gets a fixed verdict by where it
//! arrives (see [`Later::Orphan`]), and a datagram that shows the shape of
//! an attack is dropped whole, counted by reason:
//! * a later fragment that reaches into the transport header the first
//!   fragment carried (RFC 1858, RFC 3128: overlapping fragments that would
//!   rewrite ports or TCP flags after the verdict);
//! * a second, different first fragment for a datagram already decided;
//! * a fragment whose protocol differs from its datagram's (RFC 791 makes
//!   the identification unique per protocol too, but a firewall that keyed
//!   by protocol would let a fragment of another protocol borrow nothing and
//!   be an orphan; keying without it makes the lie visible);
//! * an offset plus length past 65,535 bytes (the reassembled datagram could
//!   not exist: "ping of death").
//!
//! A first fragment too short to hold its transport header (the tiny
//! fragment attack) is refused by the parser before it gets here.

use crate::{CtKey, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP};

/// Datagrams remembered at once (an LRU: under a flood of first fragments
/// the stalest datagram is forgotten and its remaining fragments become
/// orphans, never a wrong verdict). Cilium's default, 8192.
pub const MAX_FRAG_DATAGRAMS: u32 = 8192;

/// `ipfrag_time`: how long a datagram's fragments may trail its first.
pub const FRAG_TIMEOUT_V4_NS: u64 = 30_000_000_000;
/// `nf_conntrack_frag6_timeout`.
pub const FRAG_TIMEOUT_V6_NS: u64 = 60_000_000_000;

/// The largest IP datagram (IPv4 total length, IPv6 payload length).
pub const MAX_DATAGRAM: u32 = 65_535;

/// A datagram: who sent it to whom, and its identification. The protocol is
/// not part of the key (see the module doc).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FragKey {
    pub src: [u32; 4],
    pub dst: [u32; 4],
    /// IPv4: the 16-bit identification; IPv6: the fragment header's 32-bit
    /// one (as read, network order).
    pub id: u32,
    pub family: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<FragKey>() == 40);

/// `FragEntry::verdict` values.
pub mod frag_verdict {
    /// The first fragment was accepted: later ones pass (and are
    /// translated like it).
    pub const ACCEPT: u8 = 1;
    /// The first fragment was dropped (policy, invalid): so are the rest.
    pub const DROP: u8 = 2;
    /// The datagram was caught overlapping its own transport header or
    /// changing protocol: every fragment still to come is dropped.
    pub const POISONED: u8 = 3;
}

/// What the first fragment left for the rest of its datagram.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FragEntry {
    /// The first fragment's connection tuple, as read where it was recorded
    /// (its addresses are the key's).
    pub ct: CtKey,
    /// Monotonic ns after which the datagram is forgotten.
    pub expires: u64,
    /// The protocol later fragments must carry: IPv4's protocol field, or
    /// the IPv6 fragment header's next header (which may name an extension
    /// header that only the first fragment holds).
    pub frag_proto: u8,
    /// A [`frag_verdict`] value.
    pub verdict: u8,
    /// Bytes of the first fragment from the fragmentable part's start to
    /// the end of its transport header: no later fragment may start before.
    pub header_end: u16,
    pub _pad: [u8; 4],
}
const _: () = assert!(core::mem::size_of::<FragEntry>() == 56);

/// What a later (non-first) fragment gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Later {
    /// Its first fragment was accepted: pass, with this connection tuple.
    Follow(CtKey),
    /// Its first fragment was dropped.
    FollowDrop,
    /// No first fragment on record (never seen, expired, or forgotten): the
    /// caller applies the verdict of the interface's role.
    Orphan,
    /// It reaches into the transport header (RFC 1858 / 3128).
    Overlap,
    /// Its protocol is not its datagram's.
    ProtoMismatch,
    /// Offset plus length past [`MAX_DATAGRAM`].
    Oversize,
    /// Its datagram was poisoned by an earlier fragment.
    Poisoned,
}

/// What a first fragment may do before it is tracked like any packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum First {
    /// Nothing on record for this datagram, or the same first fragment
    /// again (a duplicate): track and judge it.
    Track,
    /// A different first fragment for a datagram already decided: it would
    /// replace the transport header the verdict was made on.
    Overlap,
    ProtoMismatch,
    Poisoned,
}

/// How long the fragments of a `family` datagram may trail its first.
#[inline(always)]
pub fn timeout_ns(family: u8) -> u64 {
    if family == crate::FAMILY_V6 {
        FRAG_TIMEOUT_V6_NS
    } else {
        FRAG_TIMEOUT_V4_NS
    }
}

/// Whether a fragment at `offset` (bytes) carrying `len` bytes of the
/// fragmentable part ends past the largest datagram.
#[inline(always)]
pub fn oversize(offset: u32, len: u32) -> bool {
    offset + len > MAX_DATAGRAM
}

/// The shortest transport header of `proto` a later fragment must not
/// reach into when the first fragment is unknown: what RFC 3128's rule
/// protects (TCP's flags end at byte 14, its fixed header at 20).
#[inline(always)]
pub fn min_header(proto: u8) -> u16 {
    match proto {
        IPPROTO_TCP => 20,
        IPPROTO_UDP | IPPROTO_ICMP | IPPROTO_ICMPV6 => 8,
        IPPROTO_SCTP => 12,
        _ => 0,
    }
}

/// The fate of a later fragment at `offset` (bytes into the fragmentable
/// part) carrying `len` bytes of protocol `frag_proto`, given what its
/// datagram's first fragment left (`entry`, if any) at `now`.
#[inline(always)]
pub fn later(entry: Option<&FragEntry>, frag_proto: u8, offset: u16, len: u32, now: u64) -> Later {
    if oversize(offset as u32, len) {
        return Later::Oversize;
    }
    let Some(e) = entry.filter(|e| e.expires > now) else {
        // Unknown datagram: still refuse what would overlap any header of
        // its protocol (a TCP fragment at offset 8: RFC 1858's attack).
        return if offset < min_header(frag_proto) {
            Later::Overlap
        } else {
            Later::Orphan
        };
    };
    if e.verdict == frag_verdict::POISONED {
        return Later::Poisoned;
    }
    if e.frag_proto != frag_proto {
        return Later::ProtoMismatch;
    }
    if offset < e.header_end {
        return Later::Overlap;
    }
    if e.verdict == frag_verdict::ACCEPT {
        Later::Follow(e.ct)
    } else {
        Later::FollowDrop
    }
}

/// The fate of a first fragment with tuple `ct` and protocol `frag_proto`,
/// given what is on record for its datagram.
#[inline(always)]
pub fn first(entry: Option<&FragEntry>, ct: &CtKey, frag_proto: u8, now: u64) -> First {
    let Some(e) = entry.filter(|e| e.expires > now) else {
        return First::Track;
    };
    if e.verdict == frag_verdict::POISONED {
        First::Poisoned
    } else if e.frag_proto != frag_proto {
        First::ProtoMismatch
    } else if e.ct != *ct {
        First::Overlap
    } else {
        First::Track
    }
}

#[cfg(test)]
mod tests;
