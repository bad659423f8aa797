//! The invariants checked after every program run: the verdict counters
//! against the return code, a dropped packet against the connection table,
//! and what leaves a masquerading interface.

use std::collections::HashSet;

use firewall_common::{
    CtEntry, CtKey,
    ct::flags,
    nat::NatRewrite,
    stats::Counter,
    tcp::{TCP_SYN, TcpFlagIndex, track::seen_flags},
};

use crate::{common::Verdict, state::Table};

/// Which program ran, as far as its counters are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookKind {
    Xdp,
    TcIngress,
    /// tcx egress of a packet that arrived on a managed interface.
    TcEgressForwarded,
    /// tcx egress of the host's own packet.
    TcEgressLocal,
}

/// One program run, with the state before and after it.
pub struct RunRecord<'a> {
    pub kind: HookKind,
    pub verdict: Verdict,
    /// Growth of each `STATS` counter during the run.
    pub delta: &'a [u64],
    pub before: &'a Table,
    pub after: &'a Table,
    /// CLOCK_MONOTONIC after the run.
    pub now: u64,
    pub frame_len: usize,
    /// The frame is a first fragment (offset 0, more to come).
    pub first_fragment: bool,
    /// The TCP flags of a TCP frame.
    pub tcp_flags: Option<u8>,
    /// Known deviations are failures too.
    pub strict: bool,
}

/// The verdicts a run counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// One verdict counter.
    Single(Counter),
    /// Accepted by tracking and policy, then dropped by a later stage of
    /// tcx egress (source NAT, the FTP helper): two counters, as in
    /// netfilter, where conntrack has accepted a packet before NAT or a
    /// helper drops it.
    AcceptedThenDropped,
    /// tcx ingress passing a packet: it counts only what it drops (and, as
    /// information, what it rewrites); XDP counted the verdict.
    Silent,
}

/// Whether `c` is a verdict: what became of a packet (`accept_*`, `pass_*`,
/// `skip_forwarded`, `drop_*`), as opposed to a note on the way (`ct_*`,
/// `nat_*`, `ftp_*`, `fastpath_*`, `log_*`, `rule_limited`, `tcp_*`), of
/// which a run may count any number. The names are the classification:
/// `firewall_common::stats` declares no other, and its prefixes are
/// consistent (every `drop_*` is counted where a packet is dropped).
pub fn is_verdict(c: Counter) -> bool {
    is_accept(c) || is_drop(c)
}

fn is_accept(c: Counter) -> bool {
    let n = c.name();
    n.starts_with("accept_") || n.starts_with("pass_") || c == Counter::SkipForwarded
}

fn is_drop(c: Counter) -> bool {
    c.name().starts_with("drop_")
}

/// Drops of a stage after tracking and policy accepted the packet, at tcx
/// egress: the translation (`nat::apply`), the FTP helper's program.
const AFTER_ACCEPT: &[Counter] = &[
    Counter::DropNatPairBroken,
    Counter::DropNatStale,
    Counter::DropNatRewriteFailed,
    Counter::DropFtpPartial,
    Counter::DropFtpInvalid,
    Counter::DropFtpUnmangleable,
    Counter::DropFragmentHelper,
    Counter::DropMalformed,
];

/// Every run counts exactly one verdict, of the kind its return code says
/// (XDP_PASS and XDP_REDIRECT an acceptance, XDP_DROP and TC_ACT_SHOT a
/// drop, XDP_TX a REJECT's answer), with the exceptions [`Shape`] names.
pub fn verdict_counters(r: &RunRecord) -> Result<Shape, String> {
    let counted: Vec<(Counter, u64)> = Counter::ALL
        .iter()
        .map(|&c| (c, r.delta[c as usize]))
        .filter(|&(c, n)| n > 0 && (is_verdict(c) || forwarded_translation(r, c)))
        .collect();
    let names = || {
        counted
            .iter()
            .map(|(c, n)| format!("{} +{n}", c.name()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let all_notes = || {
        Counter::ALL
            .iter()
            .filter(|c| r.delta[**c as usize] > 0)
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let wrong = |why: &str| {
        Err(format!(
            "{:?} returned {:?} and counted [{}] ({why}); every counter that grew: [{}]",
            r.kind,
            r.verdict,
            names(),
            all_notes()
        ))
    };
    if counted.iter().any(|&(_, n)| n > 1) {
        return wrong("a verdict counted more than once");
    }
    let dropped = matches!(r.verdict, Verdict::Drop | Verdict::Tx);
    match (r.kind, counted.as_slice()) {
        (HookKind::TcIngress, []) if !dropped => Ok(Shape::Silent),
        (HookKind::TcIngress, [(c, _)]) if dropped && is_drop(*c) => Ok(Shape::Single(*c)),
        (HookKind::TcIngress, _) => wrong("tcx ingress counts its drops, one each, and only them"),
        (HookKind::TcEgressLocal, [(a, _), (d, _)])
        | (HookKind::TcEgressLocal, [(d, _), (a, _)])
            if dropped && is_accept(*a) && AFTER_ACCEPT.contains(d) =>
        {
            Ok(Shape::AcceptedThenDropped)
        }
        (_, [(c, _)]) => {
            let fits = match r.verdict {
                Verdict::Pass => !is_drop(*c),
                Verdict::Drop => is_drop(*c),
                Verdict::Tx => *c == Counter::DropReject,
                Verdict::Redirect => {
                    *c == Counter::AcceptEstablished
                        && r.delta[Counter::FastPathForwarded as usize] == 1
                }
            };
            if fits {
                Ok(Shape::Single(*c))
            } else {
                wrong("the verdict counted is not the one returned")
            }
        }
        _ => wrong("expected exactly one verdict"),
    }
}

/// At tcx egress of a forwarded packet a translation is the pass verdict:
/// `egress_forwarded_nat` returns after `nat::apply` rewrote the packet
/// without counting `skip_forwarded`.
fn forwarded_translation(r: &RunRecord, c: Counter) -> bool {
    r.kind == HookKind::TcEgressForwarded && c == Counter::NatSrcRewritten
}

/// Tracker verdicts reached after `conntrack::track` counted the packet in
/// its entry (`e.packets += 1` comes before the tracker decides).
const TRACKER_DROPS: &[Counter] = &[
    Counter::DropInvalidSctp,
    Counter::DropInvalidTcpState,
    Counter::DropTcpWindowSeqAbove,
    Counter::DropTcpWindowAckAbove,
    Counter::DropTcpWindowRst,
];

/// Drops by the rules or the policy. The packet may belong to a connection
/// that has not been answered yet: its original-direction packets are NEW
/// and meet the policy again, after tracking updated the entry, as in
/// netfilter, where conntrack runs in PREROUTING before the filter table.
const POLICY_DROPS: &[Counter] = &[
    Counter::DropPolicy,
    Counter::DropRule,
    Counter::DropReject,
    Counter::DropRejectNoReply,
];

/// A dropped packet changes no connection entry. What may change, and why:
///
/// * entries of connections that had already expired (both halves), or
///   half-connections, are removed by whatever lookup meets them
///   (`lookup_alive`, the tracker's orphan check, early drop's reaping);
///   this is garbage collection, counted `ct_expired_in_datapath`;
/// * a SYN reopening a closed connection deletes it before the new one is
///   judged (`ct_reopened`, `nf_conntrack_tcp_packet`);
/// * early drop deletes unassured connections to make room
///   (`ct_early_drop`), even if the insert then fails;
/// * `drop_nat_pair_broken` removes the surviving half, `drop_nat_stale`
///   the stale binding;
/// * a segment the tracker refuses was already counted in its entry's
///   packets and bytes, and an out-of-window FIN or RST shortens the
///   connection's timeout (`nf_tcp_handle_invalid`);
/// * a packet of an unanswered connection refused by policy was tracked
///   first (see [`POLICY_DROPS`]).
///
/// Nothing is ever added.
pub fn dropped_changes_nothing(
    r: &RunRecord,
    reason: Counter,
    known: &mut Vec<Known>,
) -> Result<(), String> {
    let d = |c: Counter| r.delta[c as usize];
    if let Some((k, _)) = r.after.iter().find(|(k, _)| !r.before.contains_key(k)) {
        return Err(format!("{} added {k:?}", reason.name()));
    }
    let removed: Vec<&CtKey> = r
        .before
        .keys()
        .filter(|k| !r.after.contains_key(*k))
        .collect();
    let reaped = d(Counter::CtExpiredInPath);
    let events = reaped
        + d(Counter::CtEarlyDrop)
        + d(Counter::CtReopened)
        + u64::from(matches!(
            reason,
            Counter::DropNatPairBroken | Counter::DropNatStale
        ));
    if removed.len() as u64 > 2 * events {
        return Err(format!(
            "{} removed {} entries in {events} counted removals: {removed:?}",
            reason.name(),
            removed.len()
        ));
    }
    for k in &removed {
        let e = &r.before[*k];
        let peer = r.before.get(&e.peer);
        let expired = e.expires_ns < r.now && peer.is_none_or(|p| p.expires_ns < r.now);
        let orphan = peer.is_none();
        let ok = (reaped > 0 && (expired || orphan))
            || (d(Counter::CtReopened) > 0
                && e.tcp_state >= firewall_common::TcpState::TimeWait as u8)
            || (d(Counter::CtEarlyDrop) > 0 && e.flags & flags::ASSURED == 0)
            || (reason == Counter::DropNatPairBroken && orphan)
            || (reason == Counter::DropNatStale
                && (e.nat != 0 || peer.is_some_and(|p| p.nat != 0)));
        if !ok {
            return Err(format!(
                "{} removed {k:?} (expired {expired}, half {orphan}), entry {e:?}",
                reason.name()
            ));
        }
    }
    let changed: Vec<(&CtKey, &CtEntry, &CtEntry)> = r
        .before
        .iter()
        .filter_map(|(k, b)| r.after.get(k).filter(|a| *a != b).map(|a| (k, b, a)))
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    let describe = || {
        changed
            .iter()
            .map(|(k, b, a)| format!("{k:?}: {}", entry_diff(b, a)))
            .collect::<Vec<_>>()
            .join("; ")
    };
    if POLICY_DROPS.contains(&reason) {
        return tracked_then_refused(&changed, r.strict, known)
            .map_err(|why| format!("{} changed entries ({why}): {}", reason.name(), describe()));
    }
    if TRACKER_DROPS.contains(&reason) {
        return tracker_refused(r, reason, &changed, known);
    }
    Err(format!("{} changed entries: {}", reason.name(), describe()))
}

/// The changes a segment the tracker refused may leave: its entry counted
/// it, an out-of-window FIN or RST shortened the timeout and was noted
/// (`nf_tcp_handle_invalid`), and the known deviations.
fn tracker_refused(
    r: &RunRecord,
    reason: Counter,
    changed: &[(&CtKey, &CtEntry, &CtEntry)],
    known: &mut Vec<Known>,
) -> Result<(), String> {
    let mut counted = 0;
    for (k, b, a) in changed {
        let mut a = **a;
        if a.packets == b.packets + 1
            && a.bytes > b.bytes
            && a.bytes - b.bytes <= r.frame_len as u64
        {
            counted += 1;
            a.packets = b.packets;
            a.bytes = b.bytes;
        }
        if reason != Counter::DropInvalidSctp && a.expires_ns < b.expires_ns {
            a.expires_ns = b.expires_ns;
        }
        let fin_or_rst = [TcpFlagIndex::Fin as u8, TcpFlagIndex::Rst as u8];
        if b.flags & flags::ASSURED != 0 && fin_or_rst.contains(&a.tcp.last_index) {
            a.tcp.last_index = b.tcp.last_index;
            a.tcp.last_dir = b.tcp.last_dir;
        }
        if !r.strict && r.first_fragment {
            let liberal = seen_flags::BE_LIBERAL;
            let newly =
                |d: usize| a.tcp.seen[d].flags & liberal != 0 && b.tcp.seen[d].flags & liberal == 0;
            if newly(0) || newly(1) {
                for d in 0..2 {
                    a.tcp.seen[d].flags =
                        a.tcp.seen[d].flags & !liberal | b.tcp.seen[d].flags & liberal;
                }
                known.push(Known::RefusedFirstFragmentMakesLiberal);
            }
        }
        if !r.strict {
            let syn = r.tcp_flags.is_some_and(|f| f & TCP_SYN != 0);
            if let Some(k) = window_initialised(b, &mut a, syn) {
                known.push(k);
            }
        }
        if a != **b || counted > 1 {
            return Err(format!(
                "{} changed more than its packet count and a shorter timeout: {k:?}: {}",
                reason.name(),
                entry_diff(b, &a)
            ));
        }
    }
    Ok(())
}

/// Takes back, in `a`, what the known deviation `RefusedSegmentInitialisesWindow`
/// writes: for a side's first segment, that side's window, the window scale
/// of both, and the receiver's `td_end`/`td_maxend` if it has sent nothing
/// either (`tcp_in_window`'s pickup tweak); for a SYN or SYN-ACK, both
/// windows and the last segment's flags (the resynchronisation from an
/// ignored SYN).
fn window_initialised(b: &CtEntry, a: &mut CtEntry, syn: bool) -> Option<Known> {
    if a.tcp.seen == b.tcp.seen {
        return None;
    }
    if syn {
        a.tcp.seen = b.tcp.seen;
        a.tcp.last_flags = b.tcp.last_flags;
        return Some(Known::RefusedSegmentInitialisesWindow);
    }
    let sender = (0..2).find(|&d| b.tcp.seen[d].td_maxwin == 0 && a.tcp.seen[d].td_maxwin != 0)?;
    let receiver = 1 - sender;
    a.tcp.seen[sender] = b.tcp.seen[sender];
    a.tcp.seen[receiver].td_scale = b.tcp.seen[receiver].td_scale;
    if b.tcp.seen[receiver].td_maxwin == 0 {
        a.tcp.seen[receiver].td_end = b.tcp.seen[receiver].td_end;
        a.tcp.seen[receiver].td_maxend = b.tcp.seen[receiver].td_maxend;
    }
    Some(Known::RefusedSegmentInitialisesWindow)
}

/// Behaviour the fuzzer found that breaks an invariant as stated, reported
/// and awaiting a decision (see docs/FUZZING.md, *Known deviations*).
/// Tolerated and counted unless `--strict`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Known {
    /// A segment that the window check refuses has already written the
    /// windows when it is the first its side sends (it initialises that
    /// side: from a SYN-ACK, with window scaling turned off both ways if it
    /// has no window scale option; from anything else, as a mid-stream
    /// pickup) or a SYN-ACK answering a SYN the tracker ignored (both sides
    /// resynchronised from it). All of it happens in place before
    /// `tcp_in_window`'s checks, as in netfilter (`tcp_in_window`,
    /// `nf_conntrack_tcp_packet`'s ignore case). ARCHITECTURE.md says a
    /// dropped segment changes no bound.
    RefusedSegmentInitialisesWindow,
    /// A first fragment the tracker refuses has already marked both
    /// directions of its connection liberal (`track` sets BE_LIBERAL for a
    /// partial segment before the transition check, and the datapath
    /// stores the windows whatever the verdict), so window checks stay off
    /// for the connection.
    RefusedFirstFragmentMakesLiberal,
    /// A connection whose tuple is its own reply (same address both ways,
    /// and the same port or none): `create` inserts the original entry,
    /// then the reply entry under the same key, which replaces it; what is
    /// left is one reply-direction entry naming itself.
    SelfInverseTuple,
    /// A non-first fragment the host sends out of a masquerading interface
    /// from a LAN address leaves untranslated: `process` accepts the
    /// host's later fragments (`accept_fragment`) before any translation,
    /// and they carry no ports to find a binding by. The fragment work in
    /// progress (a fragment map) is meant to give them their first
    /// fragment's translation.
    HostFragmentUntranslated,
    /// A new untranslated connection whose reply tuple is another
    /// connection's original key replaces that entry: `conntrack::create`
    /// inserts the reply entry with BPF_ANY. Under masquerade the other
    /// connection's reply key is its translated tuple, so the untranslated
    /// inverse of its original tuple misses and can start a connection.
    /// What is left is the other connection's reply entry naming a key
    /// that now belongs to the new one.
    ReplyEntryReplacesAnother,
    /// A connection a port forward or an FTP expectation let in has its
    /// next original-direction packet before the reply (a retransmitted
    /// SYN, a second datagram) judged by the policy, which from the WAN
    /// drops it (`drop_policy`): a hit that is not ESTABLISHED goes to the
    /// policy with the plain fallback, not the port forward's acceptance,
    /// and an expected connection's RELATED hit is judged too.
    UnansweredForwardRefused,
}

impl Known {
    pub const ALL: [Known; 6] = [
        Known::RefusedSegmentInitialisesWindow,
        Known::RefusedFirstFragmentMakesLiberal,
        Known::SelfInverseTuple,
        Known::HostFragmentUntranslated,
        Known::ReplyEntryReplacesAnother,
        Known::UnansweredForwardRefused,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Known::RefusedSegmentInitialisesWindow => "refused-segment-initialises-window",
            Known::RefusedFirstFragmentMakesLiberal => "refused-first-fragment-makes-liberal",
            Known::SelfInverseTuple => "self-inverse-tuple",
            Known::HostFragmentUntranslated => "host-fragment-untranslated",
            Known::ReplyEntryReplacesAnother => "reply-entry-replaces-another",
            Known::UnansweredForwardRefused => "unanswered-forward-refused",
        }
    }
}

/// A run that created a connection left every entry that existed before it
/// as the entry it was: same peer, same direction (values may change; a
/// key may go, if it expired or was displaced). Returns the entries whose
/// peer key another connection took over (the known deviation
/// `ReplyEntryReplacesAnother`), for the caller to fail on or tolerate.
pub fn creation_keeps_others(before: &Table, after: &Table) -> Result<Vec<CtKey>, String> {
    let mut victims = Vec::new();
    for (k, b) in before {
        let Some(a) = after.get(k) else {
            continue;
        };
        // The same two keys, each other's peers still, directions swapped:
        // a connection reopened by a SYN from its reply side (netfilter
        // kills the old one and the SYN's side becomes the original).
        let swapped =
            a.peer == b.peer && a.dir != b.dir && after.get(&a.peer).is_some_and(|p| p.peer == *k);
        // The old pair gone whole (expired in the datapath, early-dropped,
        // reopened) and `k` made again for the new connection: nothing of
        // the old one is left to dangle.
        let replaced_whole = after.get(&b.peer).is_none() && b.peer != a.peer;
        if (a.peer, a.dir) != (b.peer, b.dir) && !swapped && !replaced_whole {
            // The entry that named `k` as its peer has lost its other half.
            victims.push(b.peer);
            if before.get(&b.peer).is_none_or(|v| v.peer != *k) {
                return Err(format!(
                    "{k:?} changed identity (peer {:?} dir {} -> peer {:?} dir {})",
                    b.peer, b.dir, a.peer, a.dir
                ));
            }
        }
    }
    Ok(victims)
}

/// The changes of a packet tracked on an unanswered connection before the
/// policy refused it: one connection, answered by nobody before the run,
/// whose entry counted exactly this packet.
///
/// Not a connection whose first packet a port forward or an FTP
/// expectation let in: the port forward is accepted unless a rule drops it,
/// and an expected connection's packets are RELATED until the reply, which
/// the policy never judges (ARCHITECTURE.md, *The path of a packet*, step
/// 6). Refusing its second packet is the known deviation
/// `UnansweredForwardRefused`.
fn tracked_then_refused(
    changed: &[(&CtKey, &CtEntry, &CtEntry)],
    strict: bool,
    known: &mut Vec<Known>,
) -> Result<(), String> {
    let keys: HashSet<&CtKey> = changed.iter().map(|(k, _, _)| *k).collect();
    let (k, b, a) = changed
        .iter()
        .find(|(_, b, a)| a.packets == b.packets + 1)
        .ok_or("no entry counted the packet")?;
    if b.flags & flags::SEEN_REPLY != 0 || b.is_reply() {
        return Err(format!("{k:?} is not an unanswered original direction"));
    }
    if keys.iter().any(|c| **c != **k && **c != b.peer) {
        return Err("entries of more than one connection changed".into());
    }
    if a.peer != b.peer || a.dir != b.dir {
        return Err("the entry's identity changed".into());
    }
    if b.nat == NatRewrite::Dst as u8 || b.flags & flags::EXPECTED != 0 {
        if strict {
            return Err(format!(
                "{k:?} was let in by a port forward or an expectation"
            ));
        }
        known.push(Known::UnansweredForwardRefused);
    }
    Ok(())
}

/// The fields that differ between two entries, for reports.
pub fn entry_diff(b: &CtEntry, a: &CtEntry) -> String {
    let mut out = Vec::new();
    macro_rules! field {
        ($($f:ident),*) => {$(
            if b.$f != a.$f {
                out.push(format!("{}: {:?} -> {:?}", stringify!($f), b.$f, a.$f));
            }
        )*};
    }
    field!(
        peer,
        expires_ns,
        created_ns,
        packets,
        bytes,
        dir,
        tcp_state,
        flags,
        nat,
        nat_port,
        nat_ifindex,
        nat_addr,
        seqadj,
        sctp,
        long_expiry,
        tcp
    );
    out.join(", ")
}
