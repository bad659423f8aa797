//! Connection-tracking keys and entries, and tuple handling.
//!
//! Each connection has two entries in the `CONNTRACK` LRU hash: one keyed by
//! the original-direction tuple and one by the reply-direction tuple. Each
//! entry carries the other's key (`peer`), so any packet finds its
//! connection with one lookup on its own tuple, including a reply whose tuple
//! NAT rewrote: the reply key is whatever the reply will look like on the
//! wire, not a mechanical inversion of the original.

use crate::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP};

/// A direction-specific tuple. Addresses are stored as read from the packet
/// (network byte order in memory); IPv4 uses `addr[0]` and zeroes the rest.
/// `sport`/`dport` are network byte order. For ICMP echo, `sport` is the
/// identifier (network byte order) and `dport` the ICMP type (host order),
/// so a request and its reply have different keys, as netfilter's tuple
/// carries the type.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct CtKey {
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<CtKey>() == 40);

impl CtKey {
    /// The tuple a reply to this packet carries (`nf_ct_invert_tuple`).
    #[inline(always)]
    pub fn inverted(&self) -> CtKey {
        let (sport, dport) = match self.proto {
            IPPROTO_ICMP | IPPROTO_ICMPV6 => (
                self.sport,
                invert_icmp_type(self.proto, self.dport as u8).unwrap_or(0xff) as u16,
            ),
            _ => (self.dport, self.sport),
        };
        CtKey {
            src: self.dst,
            dst: self.src,
            sport,
            dport,
            proto: self.proto,
            family: self.family,
            _pad: [0; 2],
        }
    }

    pub fn has_ports(&self) -> bool {
        matches!(self.proto, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP)
    }
}

/// `invmap` of `nf_conntrack_proto_icmp.c` / `icmpv6.c`: the reply type of
/// each query type that may start a connection (`valid_new`). Returns `None`
/// for every other type.
#[inline(always)]
pub fn invert_icmp_type(proto: u8, ty: u8) -> Option<u8> {
    match (proto, ty) {
        (IPPROTO_ICMP, 8) => Some(0),   // echo → echo reply
        (IPPROTO_ICMP, 0) => Some(8),   // echo reply → echo
        (IPPROTO_ICMP, 13) => Some(14), // timestamp
        (IPPROTO_ICMP, 14) => Some(13),
        (IPPROTO_ICMP, 15) => Some(16), // info request
        (IPPROTO_ICMP, 16) => Some(15),
        (IPPROTO_ICMP, 17) => Some(18), // address mask
        (IPPROTO_ICMP, 18) => Some(17),
        (IPPROTO_ICMPV6, 128) => Some(129), // echo
        (IPPROTO_ICMPV6, 129) => Some(128),
        (IPPROTO_ICMPV6, 139) => Some(140), // node information
        (IPPROTO_ICMPV6, 140) => Some(139),
        _ => None,
    }
}

/// ICMP query types that may create a connection (`valid_new`): requests,
/// never replies.
#[inline(always)]
pub fn icmp_type_starts_connection(proto: u8, ty: u8) -> bool {
    match proto {
        IPPROTO_ICMP => matches!(ty, 8 | 13 | 15 | 17),
        IPPROTO_ICMPV6 => matches!(ty, 128 | 139),
        _ => false,
    }
}

/// How an ICMP/ICMPv6 message is treated before any table lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpClass {
    /// A query or its reply, tracked by identifier.
    Query,
    /// An error quoting another packet: RELATED via the quoted tuple.
    Error,
    /// Neighbour and router discovery, redirects and MLD: never tracked
    /// (netfilter marks 130–136 and 143 UNTRACKED in `icmpv6_error`); see
    /// `nd` for what happens to them instead.
    Untracked,
    /// Anything else, e.g. a type number beyond what netfilter accepts.
    Invalid,
}

#[inline(always)]
pub fn classify_icmp(proto: u8, ty: u8) -> IcmpClass {
    if proto == IPPROTO_ICMP {
        match ty {
            3 | 4 | 5 | 11 | 12 => IcmpClass::Error,
            0..=18 => IcmpClass::Query,
            _ => IcmpClass::Invalid,
        }
    } else {
        match ty {
            1..=4 => IcmpClass::Error,
            130..=137 | 143 => IcmpClass::Untracked,
            _ if ty < 128 => IcmpClass::Invalid,
            _ => IcmpClass::Query,
        }
    }
}

/// Direction of an entry relative to its connection.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtDir {
    Original = 0,
    Reply = 1,
}

/// `ct_flags` bits (the subset of netfilter's `IPS_*` status we keep).
pub mod flags {
    /// `IPS_SEEN_REPLY`: traffic was seen in both directions.
    pub const SEEN_REPLY: u8 = 1 << 0;
    /// `IPS_ASSURED`.
    pub const ASSURED: u8 = 1 << 1;
    /// The FTP helper watches this (control) connection.
    pub const HELPER_FTP: u8 = 1 << 2;
    /// `IPS_EXPECTED`: created by an expectation (an FTP data connection);
    /// its original-direction packets are RELATED until a reply is seen.
    pub const EXPECTED: u8 = 1 << 3;
}

/// Value of the `CONNTRACK` map. Both entries of a connection hold the same
/// protocol state; the datapath writes both on every state change. Packet
/// counters and `expires_ns` are per direction: the connection lives until
/// the later of its two entries expires.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CtEntry {
    /// Key of the other direction's entry.
    pub peer: CtKey,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) after which this direction is
    /// dead.
    pub expires_ns: u64,
    /// When the connection was created (for UDP's stream detection).
    pub created_ns: u64,
    pub packets: u64,
    pub bytes: u64,
    /// A [`CtDir`] as u8.
    pub dir: u8,
    /// A [`crate::TcpState`] as u8 for TCP, 0 otherwise.
    pub tcp_state: u8,
    /// [`flags`] bits.
    pub flags: u8,
    /// A [`crate::nat::NatRewrite`] as u8: what to rewrite in packets that
    /// match this entry's key.
    pub nat: u8,
    /// The new port (ICMP: identifier), network order.
    pub nat_port: u16,
    pub _pad0: u16,
    /// For source rewrites: the interface whose address the translation
    /// used, so a masquerade binding can be recognised as stale after the
    /// address changes.
    pub nat_ifindex: u32,
    /// The new address, same layout as `CtKey::src`.
    pub nat_addr: [u32; 4],
    /// Sequence correction for this direction after a helper changed a
    /// segment's length (`nf_ct_seqadj`); identity otherwise.
    pub seqadj: crate::ftp::SeqAdj,
    /// SCTP: the association's state and verification tags, the same in
    /// both entries (`tcp_state` is unused for SCTP).
    pub sctp: crate::sctp::SctpConn,
    /// TCP, original entry only: one bit per direction (`1 << dir`, 0
    /// original, 1 reply), set when that direction's entry was given its state's usual
    /// (unshortened) expiry since both were last written together. A
    /// shortened timeout (unacknowledged data, retransmissions) must reach
    /// both entries; with neither bit set the other entry's expiry is no
    /// later than this one's, and a segment need not look it up.
    pub long_expiry: u8,
    pub _pad1: [u8; 3],
    /// TCP: both directions' windows (`tcp_in_window`). Only the
    /// original-direction entry's copy is live: every segment, from either
    /// side, reads and updates that one (see `TcpTrack::store_changes` for
    /// why two CPUs may do so at once); the reply entry's stays zero.
    pub tcp: crate::tcp::track::TcpTrack,
}
/// The window bounds are moved with an 8-byte compare-and-exchange on the
/// word that holds them (`tcp::track::Advance`): the windows start on an
/// 8-byte boundary of the entry (map values are 8-byte aligned).
const _: () = assert!(core::mem::offset_of!(CtEntry, tcp) % 8 == 0);
const _: () = assert!(core::mem::size_of::<CtEntry>() == 192);

impl CtEntry {
    pub fn is_reply(&self) -> bool {
        self.dir == CtDir::Reply as u8
    }
    pub fn seen_reply(&self) -> bool {
        self.flags & flags::SEEN_REPLY != 0
    }
}

/// The classification every packet gets, as `-m conntrack --ctstate`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtState {
    New = 0,
    Established = 1,
    Related = 2,
    Invalid = 3,
    Untracked = 4,
}

impl CtState {
    /// Bit for rule `ctstate` masks.
    pub const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// ctinfo for a packet that hit an existing entry (`resolve_normal_ct`): a
/// reply-direction packet is ESTABLISHED; an original-direction one is
/// ESTABLISHED once a reply was seen, NEW before.
#[inline(always)]
pub fn state_of_hit(entry_is_reply: bool, seen_reply: bool) -> CtState {
    if entry_is_reply || seen_reply {
        CtState::Established
    } else {
        CtState::New
    }
}

/// As [`state_of_hit`], for an entry with `ct_flags`: an expected
/// connection's original-direction packets are RELATED until the reply
/// (`IPS_EXPECTED` in `resolve_normal_ct`).
#[inline(always)]
pub fn state_of_entry(entry_is_reply: bool, ct_flags: u8) -> CtState {
    let seen_reply = ct_flags & flags::SEEN_REPLY != 0;
    if !entry_is_reply && !seen_reply && ct_flags & flags::EXPECTED != 0 {
        CtState::Related
    } else {
        state_of_hit(entry_is_reply, seen_reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(proto: u8, sport: u16, dport: u16) -> CtKey {
        CtKey {
            src: [0x0100_000a, 0, 0, 0],
            dst: [0x0200_000a, 0, 0, 0],
            sport,
            dport,
            proto,
            family: 4,
            _pad: [0; 2],
        }
    }

    #[test]
    fn inverting_swaps_addresses_and_ports() {
        let k = key(IPPROTO_TCP, 1234u16.to_be(), 80u16.to_be());
        let r = k.inverted();
        assert_eq!(r.src, k.dst);
        assert_eq!(r.dst, k.src);
        assert_eq!(r.sport, 80u16.to_be());
        assert_eq!(r.dport, 1234u16.to_be());
        assert_eq!(r.inverted(), k);
    }

    #[test]
    fn inverting_icmp_keeps_id_and_maps_type() {
        let k = key(IPPROTO_ICMP, 77u16.to_be(), 8);
        let r = k.inverted();
        assert_eq!(r.sport, 77u16.to_be());
        assert_eq!(r.dport, 0);
        let k6 = key(IPPROTO_ICMPV6, 5, 128);
        assert_eq!(k6.inverted().dport, 129);
    }

    #[test]
    fn icmp_classification() {
        assert_eq!(classify_icmp(IPPROTO_ICMP, 3), IcmpClass::Error);
        assert_eq!(classify_icmp(IPPROTO_ICMP, 11), IcmpClass::Error);
        assert_eq!(classify_icmp(IPPROTO_ICMP, 8), IcmpClass::Query);
        assert_eq!(classify_icmp(IPPROTO_ICMP, 40), IcmpClass::Invalid);
        assert_eq!(classify_icmp(IPPROTO_ICMPV6, 2), IcmpClass::Error);
        assert_eq!(classify_icmp(IPPROTO_ICMPV6, 135), IcmpClass::Untracked);
        assert_eq!(classify_icmp(IPPROTO_ICMPV6, 143), IcmpClass::Untracked);
        assert_eq!(classify_icmp(IPPROTO_ICMPV6, 137), IcmpClass::Untracked);
        assert_eq!(classify_icmp(IPPROTO_ICMPV6, 128), IcmpClass::Query);
        assert!(icmp_type_starts_connection(IPPROTO_ICMP, 8));
        assert!(!icmp_type_starts_connection(IPPROTO_ICMP, 0));
        assert!(icmp_type_starts_connection(IPPROTO_ICMPV6, 128));
        assert!(!icmp_type_starts_connection(IPPROTO_ICMPV6, 129));
    }

    #[test]
    fn hit_classification() {
        assert_eq!(state_of_hit(true, false), CtState::Established);
        assert_eq!(state_of_hit(false, true), CtState::Established);
        assert_eq!(state_of_hit(false, false), CtState::New);
    }
}
