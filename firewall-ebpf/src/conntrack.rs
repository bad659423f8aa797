//! Connection tracking: lookup, state update and creation.

use aya_ebpf::bindings::BPF_NOEXIST;
use firewall_common::{
    Counter, CtEntry, CtKey, CtState, Settings, TcpState,
    ct::{CtDir, flags, icmp_type_starts_connection, state_of_hit},
    tcp::{self, TcpFlagIndex, TcpTransition},
    timeouts::{NS_PER_SEC, UDP_STREAM_AFTER_NS},
};

use crate::{
    maps::{CONNTRACK, count},
    parse::{L4Kind, Packet},
};

/// What tracking concluded about a packet before policy.
pub enum Tracked {
    /// Belongs to a live connection. `state` is the packet's ctstate.
    Hit { state: CtState },
    /// No live connection; creating one is allowed if policy accepts.
    Miss,
    /// INVALID, with the reason to count.
    Invalid(Counter),
}

/// Looks up `key` and treats an entry as gone once both directions have
/// expired, even if the ager has not removed it yet. Returns a pointer valid
/// for this program run.
#[inline(always)]
fn lookup_alive(key: &CtKey, now: u64) -> Option<*mut CtEntry> {
    let e = CONNTRACK.get_ptr_mut(key)?;
    // SAFETY: map value pointer, valid for the program run.
    let entry = unsafe { &*e };
    if entry.expires_ns >= now {
        return Some(e);
    }
    let peer_key = entry.peer;
    if let Some(peer) = CONNTRACK.get_ptr_mut(&peer_key) {
        if unsafe { (*peer).expires_ns } >= now {
            return Some(e);
        }
    }
    let _ = CONNTRACK.remove(key);
    let _ = CONNTRACK.remove(&peer_key);
    count(Counter::CtExpiredInPath);
    None
}

/// Applies a state/flag change to both entries of the connection and
/// refreshes both timers; used only when something changes, so the common
/// per-packet path writes a single entry.
#[inline(always)]
fn write_both(e: &mut CtEntry, tcp_state: u8, ct_flags: u8, expires: u64) {
    e.tcp_state = tcp_state;
    e.flags = ct_flags;
    e.expires_ns = expires;
    let peer_key = e.peer;
    if let Some(peer) = CONNTRACK.get_ptr_mut(&peer_key) {
        let peer = unsafe { &mut *peer };
        peer.tcp_state = tcp_state;
        peer.flags = ct_flags;
        peer.expires_ns = expires;
    }
}

#[inline(always)]
fn delete_pair(key: &CtKey, peer: &CtKey) {
    let _ = CONNTRACK.remove(key);
    let _ = CONNTRACK.remove(peer);
}

/// Tracks a packet of a connection-oriented kind (TCP, UDP, ICMP query,
/// other protocols). ICMP errors and untracked kinds never come here.
#[inline(always)]
pub fn track(p: &Packet, s: &Settings, now: u64) -> Tracked {
    if p.kind == L4Kind::Tcp && !tcp::flags_valid(p.tcp_flags) {
        return Tracked::Invalid(Counter::DropInvalidTcpFlags);
    }
    let Some(e) = lookup_alive(&p.key, now) else {
        return Tracked::Miss;
    };
    // SAFETY: valid map value pointer for this run.
    let e = unsafe { &mut *e };
    let reply = e.is_reply();
    let seen_reply = e.seen_reply();
    let state = state_of_hit(reply, seen_reply);
    e.packets += 1;
    e.bytes += p.l3_len as u64;

    let mut new_flags = e.flags;
    if reply {
        new_flags |= flags::SEEN_REPLY;
    }
    let t = &s.timeouts;
    match p.kind {
        L4Kind::Tcp => {
            let idx = tcp::flag_index(p.tcp_flags);
            let old = match TcpState::from_u8(e.tcp_state) {
                Some(st) => st,
                None => return Tracked::Invalid(Counter::DropInvalidTcpState),
            };
            match tcp::transition(reply, idx, old) {
                TcpTransition::Invalid => return Tracked::Invalid(Counter::DropInvalidTcpState),
                TcpTransition::Ignore => {}
                TcpTransition::To(new) => {
                    if tcp::is_reopen(old, new) {
                        // nf_conntrack_tcp_packet kills the old entry and
                        // repeats the lookup: the SYN starts a new connection.
                        let peer = e.peer;
                        delete_pair(&p.key, &peer);
                        count(Counter::CtReopened);
                        return Tracked::Miss;
                    }
                    if idx == TcpFlagIndex::Rst && !seen_reply {
                        // "If only reply is a RST, we can consider ourselves
                        // not to have an established connection": delete now.
                        let peer = e.peer;
                        delete_pair(&p.key, &peer);
                        count(Counter::CtClosedByRst);
                        return Tracked::Hit { state };
                    }
                    let now_seen = new_flags & flags::SEEN_REPLY != 0;
                    if new == TcpState::Established && now_seen {
                        new_flags |= flags::ASSURED;
                    }
                    let secs = if idx == TcpFlagIndex::Rst {
                        t.tcp_close
                    } else {
                        t.tcp(new, now_seen)
                    };
                    let expires = now + secs as u64 * NS_PER_SEC;
                    if new as u8 != e.tcp_state || new_flags != e.flags {
                        write_both(e, new as u8, new_flags, expires);
                    } else {
                        e.expires_ns = expires;
                    }
                }
            }
        }
        _ => {
            let secs = match p.kind {
                L4Kind::Udp => {
                    let stream = new_flags & flags::SEEN_REPLY != 0
                        && now.wrapping_sub(e.created_ns) >= UDP_STREAM_AFTER_NS;
                    if stream {
                        new_flags |= flags::ASSURED;
                    }
                    t.udp(stream)
                }
                L4Kind::IcmpQuery => t.icmp,
                _ => t.generic,
            };
            let expires = now + secs as u64 * NS_PER_SEC;
            if new_flags != e.flags {
                write_both(e, 0, new_flags, expires);
            } else {
                e.expires_ns = expires;
            }
        }
    }
    Tracked::Hit { state }
}

/// Whether the first packet of an unknown flow may start a connection, and
/// its initial TCP state. Returns the drop reason otherwise.
#[inline(always)]
pub fn new_flow_state(p: &Packet) -> Result<u8, Counter> {
    match p.kind {
        L4Kind::Tcp => match tcp::new_connection_state(p.tcp_flags) {
            Some(st) => Ok(st as u8),
            None => Err(Counter::DropInvalidTcpNew),
        },
        L4Kind::IcmpQuery => {
            if icmp_type_starts_connection(p.key.proto, p.key.dport as u8) {
                Ok(0)
            } else {
                Err(Counter::DropInvalidIcmp)
            }
        }
        _ => Ok(0),
    }
}

/// Creates both entries of a new connection whose first packet policy
/// accepted.
#[inline(always)]
pub fn create(p: &Packet, tcp_state: u8, s: &Settings, now: u64) {
    let t = &s.timeouts;
    let secs = match p.kind {
        L4Kind::Tcp => match TcpState::from_u8(tcp_state) {
            Some(st) => t.tcp(st, false),
            None => t.tcp_close,
        },
        L4Kind::Udp => t.udp,
        L4Kind::IcmpQuery => t.icmp,
        _ => t.generic,
    };
    let reply_key = p.key.inverted();
    let mut entry = CtEntry {
        peer: reply_key,
        expires_ns: now + secs as u64 * NS_PER_SEC,
        created_ns: now,
        packets: 1,
        bytes: p.l3_len as u64,
        dir: CtDir::Original as u8,
        tcp_state,
        flags: 0,
        _pad: [0; 5],
    };
    if CONNTRACK
        .insert(&p.key, &entry, BPF_NOEXIST as u64)
        .is_err()
    {
        // Another CPU created it first; its entries stand.
        count(Counter::CtInsertFailed);
        return;
    }
    entry.peer = p.key;
    entry.dir = CtDir::Reply as u8;
    entry.packets = 0;
    entry.bytes = 0;
    if CONNTRACK.insert(&reply_key, &entry, 0).is_err() {
        let _ = CONNTRACK.remove(&p.key);
        count(Counter::CtInsertFailed);
        return;
    }
    count(Counter::CtCreated);
}

/// RELATED: an ICMP error whose quoted packet belongs to a live connection,
/// and which travels back towards the quoted packet's sender
/// (`nf_conntrack_inet_error`: outer daddr must equal the inner saddr).
#[inline(always)]
pub fn related(p: &Packet, now: u64) -> bool {
    if p.inner.src != p.key.dst {
        return false;
    }
    lookup_alive(&p.inner, now).is_some()
}
