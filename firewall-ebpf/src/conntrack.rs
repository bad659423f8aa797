//! Connection tracking: lookup, state update and creation.

use aya_ebpf::bindings::BPF_NOEXIST;
use firewall_common::{
    Counter, CtEntry, CtKey, CtState, IPPROTO_NONE, Settings, TcpState, Timeouts,
    ct::{CtDir, flags, icmp_type_starts_connection, state_of_entry},
    nat::NatRewrite,
    sctp::{SctpConn, SctpState},
    settings_tcp,
    tcp::{TCP_SYN, flags_valid, track::CtStatus},
    timeouts::{NS_PER_SEC, UDP_STREAM_AFTER_NS},
};

use crate::{
    early_drop::{self, E2BIG},
    maps::{CONNTRACK, CT_SCRATCH, count},
    nat::{self, NatSpec},
    parse::{L4Kind, Packet},
    sctp::{self, Outcome},
    tcp,
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
    if p.kind == L4Kind::Tcp && !flags_valid(p.tcp_flags) {
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
            let status = CtStatus {
                seen_reply,
                assured: e.flags & flags::ASSURED != 0,
            };
            match track_tcp(p, e, reply, status, new_flags, t, now) {
                TcpResult::Go => {}
                TcpResult::Gone => return Tracked::Miss,
                TcpResult::Invalid(reason) => return Tracked::Invalid(reason),
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

enum TcpResult {
    /// Accepted: the packet belongs to the connection.
    Go,
    /// The connection is gone (reopened by a SYN, or half of it missing):
    /// the packet is NEW.
    Gone,
    Invalid(Counter),
}

/// A segment of a tracked TCP connection: the state machine and the
/// window check (`nf_conntrack_tcp_packet`), then what the outcome does to
/// both entries. The windows live in the original-direction entry, so a
/// reply looks that one up as well.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn track_tcp(
    p: &Packet,
    e: &mut CtEntry,
    reply: bool,
    status: CtStatus,
    new_flags: u8,
    t: &Timeouts,
    now: u64,
) -> TcpResult {
    let orig = if reply {
        match CONNTRACK.get_ptr_mut(&e.peer) {
            Some(o) => o,
            None => {
                // Half a connection is no connection.
                let _ = CONNTRACK.remove(&p.key);
                count(Counter::CtExpiredInPath);
                return TcpResult::Gone;
            }
        }
    } else {
        e as *mut CtEntry
    };
    // SAFETY: a map value pointer (or `e` itself), valid for this run.
    let o = unsafe { &mut *orig };
    // A helper's length changes: the ack is taken back by the receiver's
    // correction (`nf_ct_seq_offset(ct, !dir, ack - 1)`).
    let mut recv_offset = 0;
    if e.flags & flags::HELPER_FTP != 0 {
        let at = p.tcp_ack.wrapping_sub(1);
        if reply {
            recv_offset = o.seqadj.offset(at);
        } else if let Some(r) = CONNTRACK.get_ptr(&e.peer) {
            // SAFETY: map value pointer, valid for this run.
            recv_offset = unsafe { (*r).seqadj.offset(at) };
        }
    }
    if !tcp::run(&o.tcp, e.tcp_state, reply, status, recv_offset) {
        return TcpResult::Invalid(Counter::DropInvalidTcpState);
    }
    let Some(slot) = tcp::slot() else {
        return TcpResult::Invalid(Counter::DropInvalidTcpState);
    };
    let v = slot.verdict;
    // A refused segment changes no bound (stricter than netfilter, which
    // initialises a sender from its first segment in place before the
    // checks: one spoofed SYN-ACK with a wrong ACK would then set the
    // reply direction's window, and scaling, for the real one to fail).
    if v.kind != tcp::KIND_INVALID {
        slot.before
            .store_changes(&slot.after, &mut o.tcp, tcp::Cmpxchg);
    }
    match v.kind {
        tcp::KIND_ACCEPT => {}
        tcp::KIND_IGNORE => {
            count(match v.why {
                tcp::why::IGNORED_SEQ_BELOW => Counter::TcpWindowSeqBelow,
                tcp::why::IGNORED_ACK_BELOW => Counter::TcpWindowAckBelow,
                tcp::why::IGNORED_OVERSHOOT => Counter::TcpWindowOvershoot,
                _ => Counter::TcpIgnored,
            });
            return TcpResult::Go;
        }
        tcp::KIND_REOPEN => {
            // nf_conntrack_tcp_packet kills the old entry and repeats the
            // lookup: the SYN starts a new connection.
            let peer = e.peer;
            delete_pair(&p.key, &peer);
            count(Counter::CtReopened);
            return TcpResult::Gone;
        }
        tcp::KIND_KILL => {
            // "If only reply is a RST, we can consider ourselves not to
            // have an established connection": the pair is gone from now
            // on. It is expired rather than deleted so the TC hooks can
            // still translate this RST (the client must see its refusal);
            // the next lookup or the ager removes it.
            write_both(e, e.tcp_state, e.flags, now.saturating_sub(1));
            count(Counter::CtClosedByRst);
            return TcpResult::Go;
        }
        _ => {
            if v.has_timeout != 0 {
                // `nf_tcp_handle_invalid`: an out-of-window FIN or RST
                // answering one from the other side cuts an ASSURED
                // connection short.
                shorten_both(e, now + t.tcp_unack as u64 * NS_PER_SEC);
            }
            return TcpResult::Invalid(match v.why {
                tcp::why::INVALID_SEQ_ABOVE => Counter::DropTcpWindowSeqAbove,
                tcp::why::INVALID_ACK_ABOVE => Counter::DropTcpWindowAckAbove,
                tcp::why::INVALID_RST => Counter::DropTcpWindowRst,
                _ => Counter::DropInvalidTcpState,
            });
        }
    }
    if v.liberal != 0 {
        count(Counter::TcpWindowLiberal);
    }
    let mut ct_flags = new_flags;
    if v.assured != 0 {
        ct_flags |= flags::ASSURED;
    }
    if v.has_timeout == 0 {
        // A retransmitted SYN: the expiry stays (port reuse must not keep
        // an unanswered entry, and its NAT binding, alive forever).
        if v.state != e.tcp_state || ct_flags != e.flags {
            write_both(e, v.state, ct_flags, e.expires_ns);
        }
        return TcpResult::Go;
    }
    let expires = now + v.timeout as u64 * NS_PER_SEC;
    // The tracker shortens the state's timeout (unacknowledged data,
    // retransmissions, a zero window): the connection's, so both
    // entries' (it lives until the later of the two expires). The other
    // entry is looked up only when it may live longer than the new expiry
    // (`long_expiry`): a bulk sender's every segment shortens, and would
    // otherwise pay a second lookup each.
    let replied = ct_flags & flags::SEEN_REPLY != 0;
    let usual = TcpState::from_u8(v.state).map_or(0, |st| t.tcp(st, replied));
    let own = 1u8 << (reply as u8);
    let other = 1u8 << (!reply as u8);
    if v.state != e.tcp_state || ct_flags != e.flags {
        write_both(e, v.state, ct_flags, expires);
        o.long_expiry = if v.timeout < usual { 0 } else { own | other };
    } else if v.timeout < usual {
        if o.long_expiry & other != 0 || expires < e.expires_ns {
            write_both(e, v.state, ct_flags, expires);
            o.long_expiry = 0;
        } else if expires - e.expires_ns >= NS_PER_SEC {
            // Coarse refresh: within a second the expiry is left as is.
            e.expires_ns = expires;
        }
    } else {
        e.expires_ns = expires;
        if o.long_expiry & own == 0 {
            o.long_expiry |= own;
        }
    }
    TcpResult::Go
}

/// Cuts both entries' expiry to `at` at the latest.
#[inline(always)]
fn shorten_both(e: &mut CtEntry, at: u64) {
    if e.expires_ns > at {
        e.expires_ns = at;
    }
    let peer_key = e.peer;
    if let Some(peer) = CONNTRACK.get_ptr_mut(&peer_key) {
        // SAFETY: map value pointer, valid for this run.
        let peer = unsafe { &mut *peer };
        if peer.expires_ns > at {
            peer.expires_ns = at;
        }
    }
}

/// Whether the first packet of an unknown flow may start a connection, and
/// its initial TCP state. Returns the drop reason otherwise. For TCP the
/// windows the connection starts with are left in the TCP slot for
/// `create`.
#[inline(always)]
pub fn new_flow_state(p: &Packet, s: &Settings) -> Result<u8, Counter> {
    match p.kind {
        L4Kind::Tcp => {
            // `tcp_new`: without `tcp_loose` only a SYN starts one.
            if p.tcp_flags & TCP_SYN == 0 && s.tcp & settings_tcp::LOOSE == 0 {
                return Err(Counter::DropInvalidTcpNew);
            }
            if !tcp::first() {
                return Err(Counter::DropInvalidTcpNew);
            }
            match tcp::slot() {
                Some(slot) if slot.verdict.kind == tcp::KIND_ACCEPT => Ok(slot.verdict.state),
                _ => Err(Counter::DropInvalidTcpNew),
            }
        }
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
    // Both entries are built in per-CPU slots, field by field: a 192-byte
    // struct literal is a stack temporary, and the frames of the programs
    // that create connections have no room for one beside the tracker's.
    let (Some(op), Some(rp)) = (CT_SCRATCH.get_ptr_mut(0), CT_SCRATCH.get_ptr_mut(1)) else {
        return Err(Counter::CtInsertFailed);
    };
    // SAFETY: this CPU's two distinct slots.
    let (orig, reply) = unsafe { (&mut *op, &mut *rp) };
    // SAFETY: CtEntry is plain bytes; all zeroes is its default.
    unsafe { core::ptr::write_bytes(op, 0, 1) };
    orig.peer = p.key.inverted();
    orig.expires_ns = now + secs as u64 * NS_PER_SEC;
    orig.created_ns = now;
    orig.packets = 1;
    orig.bytes = p.l3_len as u64;
    orig.dir = CtDir::Original as u8;
    orig.tcp_state = tcp_state;
    orig.flags = ct_flags;
    orig.sctp = sctp_conn;
    // SAFETY: map memory to map memory.
    unsafe { core::ptr::copy_nonoverlapping(op, rp, 1) };
    reply.peer = p.key;
    reply.dir = CtDir::Reply as u8;
    reply.packets = 0;
    reply.bytes = 0;
    // The windows `new_flow_state` left in the TCP slot; only the
    // original entry's copy is live.
    if p.kind == L4Kind::Tcp {
        if let Some(slot) = tcp::slot() {
            orig.tcp = slot.after;
        }
    }
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
            // The reply tuple may be another connection's entry (a
            // masqueraded connection's inverse, or this very tuple when it
            // is its own reply): never overwritten. netfilter refuses the
            // packet at confirm (`insert_failed`) the same way.
            if let Err(err) = early_drop::insert(&orig.peer, reply, BPF_NOEXIST as u64, &p.key, now)
            {
                let _ = CONNTRACK.remove(&p.key);
                if err == E2BIG {
                    return Err(Counter::DropTableFull);
                }
                return Err(Counter::DropCtClash);
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
