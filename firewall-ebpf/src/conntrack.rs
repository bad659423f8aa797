//! Connection tracking: lookup, state update and creation.

use aya_ebpf::bindings::BPF_NOEXIST;
use firewall_common::{
    Counter, CtEntry, CtKey, CtState, IPPROTO_NONE, Settings, TcpState,
    ct::{CtDir, flags, icmp_type_starts_connection, state_of_entry},
    nat::NatRewrite,
    sctp::{SctpConn, SctpState},
    tcp::{self, TcpFlagIndex, TcpTransition},
    timeouts::{NS_PER_SEC, UDP_STREAM_AFTER_NS},
};

use crate::{
    early_drop::{self, E2BIG},
    maps::{CONNTRACK, CT_SCRATCH, count},
    nat::{self, NatSpec},
    parse::{L4Kind, Packet},
    sctp::{self, Outcome},
};

/// A rewrite to apply to a packet, copied out of its entry.
#[derive(Clone, Copy)]
pub struct Rewrite {
    /// A [`NatRewrite`] as u8.
    pub kind: u8,
    pub addr: u32,
    /// Network order.
    pub port: u16,
    pub ifindex: u32,
}

impl Rewrite {
    #[inline(always)]
    pub fn of(e: &CtEntry) -> Rewrite {
        Rewrite {
            kind: e.nat,
            addr: e.nat_addr[0],
            port: e.nat_port,
            ifindex: e.nat_ifindex,
        }
    }
}

/// `NatRewrite::None` as u8, for the per-packet paths that only pass the
/// kind along (the rewrite itself is read back from the entry where it is
/// applied: carrying it through the call chain overflowed the BPF stack).
pub const NO_REWRITE: u8 = NatRewrite::None as u8;

/// What tracking concluded about a packet before policy.
pub enum Tracked {
    /// Belongs to a live connection. `state` is the packet's ctstate;
    /// `nat` the kind of translation its entry carries; `helped` says a
    /// helper watches the connection.
    Hit {
        state: CtState,
        nat: u8,
        helped: bool,
    },
    /// No live connection; creating one is allowed if policy accepts.
    Miss,
    /// INVALID, with the reason to count.
    Invalid(Counter),
}

/// Looks up `key` and treats an entry as gone once both directions have
/// expired, even if the ager has not removed it yet. Returns a pointer valid
/// for this program run.
#[inline(always)]
pub fn lookup_alive(key: &CtKey, now: u64) -> Option<*mut CtEntry> {
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
        peer.sctp = e.sctp;
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
    let state = state_of_entry(reply, e.flags);
    let nat = e.nat;
    let helped = e.flags & flags::HELPER_FTP != 0;
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
                        // not to have an established connection": the pair
                        // is gone from now on. It is expired rather than
                        // deleted so the TC hooks can still translate this
                        // RST (the client must see its refusal); the next
                        // lookup or the ager removes it.
                        write_both(e, e.tcp_state, e.flags, now.saturating_sub(1));
                        count(Counter::CtClosedByRst);
                        return Tracked::Hit { state, nat, helped };
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
        L4Kind::Sctp => {
            let Outcome::Accept { quiet } = sctp::track(e.sctp, reply, false) else {
                return Tracked::Invalid(Counter::DropInvalidSctp);
            };
            let conn = sctp::conn();
            let st = SctpState::from_u8(conn.state).unwrap_or(SctpState::Closed);
            // `nf_conntrack_sctp_packet` assures on reaching ESTABLISHED.
            if st == SctpState::Established {
                new_flags |= flags::ASSURED;
            }
            let expires = if quiet {
                e.expires_ns
            } else {
                now + st.timeout_secs() as u64 * NS_PER_SEC
            };
            if conn != e.sctp || new_flags != e.flags {
                e.sctp = conn;
                write_both(e, 0, new_flags, expires);
            } else {
                e.expires_ns = expires;
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
    Tracked::Hit { state, nat, helped }
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
        // `sctp_new`: the association it starts stays in the SCTP slot
        // for `create`.
        L4Kind::Sctp => match sctp::track(SctpConn::default(), false, true) {
            Outcome::Accept { .. } => Ok(0),
            Outcome::Invalid => Err(Counter::DropInvalidSctp),
        },
        // Nothing follows the header chain: no transport to track
        // (netfilter finds no l4 protocol and calls it INVALID).
        _ if p.key.proto == IPPROTO_NONE => Err(Counter::DropNoNextHeader),
        _ => Ok(0),
    }
}

/// Creates both entries of a new connection whose first packet policy
/// accepted. The reply entry goes in first with `BPF_NOEXIST`: for NAT that
/// insert is the atomic claim of the translated tuple (port or ICMP id), so
/// two connections can never hold the same one.
///
/// A full table makes room by early drop (`early_drop::insert`); if nothing
/// can be displaced the packet is dropped (`drop_table_full`), and a half
/// already inserted is removed again: a connection is never left with one
/// half. `-EEXIST` is another CPU (or another connection's claim) first.
#[inline(always)]
pub fn create(
    p: &Packet,
    tcp_state: u8,
    s: &Settings,
    now: u64,
    nat: NatSpec,
    ct_flags: u8,
) -> Result<u8, Counter> {
    let t = &s.timeouts;
    let sctp_conn = if p.kind == L4Kind::Sctp {
        sctp::conn()
    } else {
        SctpConn::default()
    };
    let secs = match p.kind {
        L4Kind::Tcp => match TcpState::from_u8(tcp_state) {
            Some(st) => t.tcp(st, false),
            None => t.tcp_close,
        },
        L4Kind::Udp => t.udp,
        L4Kind::IcmpQuery => t.icmp,
        L4Kind::Sctp => SctpState::from_u8(sctp_conn.state)
            .unwrap_or(SctpState::Closed)
            .timeout_secs(),
        _ => t.generic,
    };
    // Both entries are built in per-CPU slots: 224 bytes of stack would
    // not fit beside the rule walk's frames.
    let (Some(op), Some(rp)) = (CT_SCRATCH.get_ptr_mut(0), CT_SCRATCH.get_ptr_mut(1)) else {
        return Err(Counter::CtInsertFailed);
    };
    // SAFETY: this CPU's two distinct slots.
    let (orig, reply) = unsafe { (&mut *op, &mut *rp) };
    *orig = CtEntry {
        peer: p.key.inverted(),
        expires_ns: now + secs as u64 * NS_PER_SEC,
        created_ns: now,
        packets: 1,
        bytes: p.l3_len as u64,
        dir: CtDir::Original as u8,
        tcp_state,
        flags: ct_flags,
        sctp: sctp_conn,
        ..CtEntry::default()
    };
    *reply = CtEntry {
        peer: p.key,
        dir: CtDir::Reply as u8,
        packets: 0,
        bytes: 0,
        ..*orig
    };
    match nat {
        NatSpec::None => {
            match early_drop::insert(&p.key, orig, BPF_NOEXIST as u64, &p.key, now) {
                Ok(()) => {}
                Err(E2BIG) => return Err(Counter::DropTableFull),
                Err(_) => {
                    // Another CPU created it first; its entries stand.
                    count(Counter::CtInsertFailed);
                    return Ok(NO_REWRITE);
                }
            }
            if let Err(err) = early_drop::insert(&orig.peer, reply, 0, &p.key, now) {
                let _ = CONNTRACK.remove(&p.key);
                if err == E2BIG {
                    return Err(Counter::DropTableFull);
                }
                count(Counter::CtInsertFailed);
                return Ok(NO_REWRITE);
            }
        }
        NatSpec::Dest { addr, port } => {
            nat::bind_dest(p, orig, reply, addr, port, now)?;
            if let Err(err) = early_drop::insert(&p.key, orig, BPF_NOEXIST as u64, &orig.peer, now)
            {
                let _ = CONNTRACK.remove(&orig.peer);
                if err == E2BIG {
                    return Err(Counter::DropTableFull);
                }
                count(Counter::CtInsertFailed);
                return Ok(NO_REWRITE);
            }
        }
        NatSpec::Source {
            addr,
            lo,
            hi,
            ifindex,
        } => {
            nat::claim_source(p, orig, reply, addr, lo, hi, ifindex, now)?;
            if let Err(err) = early_drop::insert(&p.key, orig, BPF_NOEXIST as u64, &orig.peer, now)
            {
                let _ = CONNTRACK.remove(&orig.peer);
                if err == E2BIG {
                    return Err(Counter::DropTableFull);
                }
                count(Counter::CtInsertFailed);
                return Ok(NO_REWRITE);
            }
        }
    }
    early_drop::remember(&p.key);
    count(Counter::CtCreated);
    Ok(orig.nat)
}
