//! Invariants of the whole connection table, checked every few hundred
//! packets and at the end (walking the table is the expensive part), and
//! the ager's, checked after moving the clock.

use std::collections::{HashMap, HashSet};

use firewall::{ager, maps::Maps, sys::monotonic_ns};
use firewall_common::{
    CtEntry, CtKey, FAMILY_V4, IPPROTO_ICMP, IPPROTO_ICMPV6, ct::CtDir, nat::NatRewrite,
};

use crate::state::{self, Table};

/// Both halves of every connection exist and point at each other, one in
/// each direction, and agree on the protocol state ("both entries of a
/// connection hold the same protocol state", `firewall_common::ct`).
/// Counts, rather than fails on, the known deviations that break pairs:
/// entries that are their own peer (`SelfInverseTuple`), unless `strict`,
/// and the `victims` of `ReplyEntryReplacesAnother` (recorded, or failed
/// on, when their peer was taken over).
pub fn pairs(t: &Table, strict: bool, victims: &HashSet<CtKey>) -> Result<PairDeviations, String> {
    let mut found = PairDeviations::default();
    for (k, e) in t {
        if e.peer == *k && invert(k) == *k && !strict {
            found.selves.push(*k);
            continue;
        }
        if victims.contains(k) {
            found.victims += 1;
            continue;
        }
        let Some(p) = t.get(&e.peer) else {
            return Err(format!("{k:?} ({}) has no peer {:?}", dir(e), e.peer));
        };
        if p.peer != *k {
            return Err(format!(
                "{k:?} names {:?} as its peer, which names {:?}",
                e.peer, p.peer
            ));
        }
        if e.dir == p.dir || e.dir > CtDir::Reply as u8 {
            return Err(format!("{k:?} and its peer are both {}", dir(e)));
        }
        if (e.tcp_state, e.flags, e.sctp) != (p.tcp_state, p.flags, p.sctp) {
            return Err(format!(
                "{k:?} and its peer disagree: state {} / {}, flags {:#x} / {:#x}, sctp {:?} / {:?}",
                e.tcp_state, p.tcp_state, e.flags, p.flags, e.sctp, p.sctp
            ));
        }
    }
    Ok(found)
}

/// Entries [`pairs`] passed over.
#[derive(Debug, Default)]
pub struct PairDeviations {
    /// Entries that are their own peer, under a tuple that is its own
    /// reply.
    pub selves: Vec<CtKey>,
    pub victims: u64,
}

fn dir(e: &CtEntry) -> &'static str {
    if e.is_reply() { "reply" } else { "original" }
}

/// `key` inverted as a reply carries it: addresses swapped, ports swapped,
/// an ICMP query's identifier kept and its type answered (netfilter's
/// `invmap`). Written here rather than taken from `CtKey::inverted`, so
/// that the check does not lean on the code it checks.
pub fn invert(key: &CtKey) -> CtKey {
    let (sport, dport) = match key.proto {
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let answer = match (key.proto, key.dport) {
                (IPPROTO_ICMP, 8) => 0,
                (IPPROTO_ICMP, 0) => 8,
                (IPPROTO_ICMP, 13) => 14,
                (IPPROTO_ICMP, 14) => 13,
                (IPPROTO_ICMP, 15) => 16,
                (IPPROTO_ICMP, 16) => 15,
                (IPPROTO_ICMP, 17) => 18,
                (IPPROTO_ICMP, 18) => 17,
                (IPPROTO_ICMPV6, 128) => 129,
                (IPPROTO_ICMPV6, 129) => 128,
                (IPPROTO_ICMPV6, 139) => 140,
                (IPPROTO_ICMPV6, 140) => 139,
                _ => 0xff,
            };
            (key.sport, answer)
        }
        _ => (key.dport, key.sport),
    };
    CtKey {
        src: key.dst,
        dst: key.src,
        sport,
        dport,
        ..*key
    }
}

/// `key` as the entry's rewrite leaves it: the source (egress) or
/// destination (ingress) address and port; for ICMP the identifier, which
/// is the source "port" both ways.
fn rewritten(key: &CtKey, e: &CtEntry) -> CtKey {
    let mut k = *key;
    let icmp = matches!(k.proto, IPPROTO_ICMP | IPPROTO_ICMPV6);
    if e.nat == NatRewrite::Src as u8 {
        k.src = e.nat_addr;
        k.sport = e.nat_port;
    } else if e.nat == NatRewrite::Dst as u8 {
        k.dst = e.nat_addr;
        if icmp {
            k.sport = e.nat_port;
        } else {
            k.dport = e.nat_port;
        }
    }
    k
}

/// No two connections hold the same translated tuple, and every
/// translation is one the reply undoes: the original tuple as its rewrite
/// leaves it is the reply key inverted, and the reply key as the reply
/// entry's rewrite leaves it is the original key inverted.
/// The `victims` of `ReplyEntryReplacesAnother`, whose peer belongs to
/// another connection now, are passed over.
pub fn translations(t: &Table, victims: &HashSet<CtKey>) -> Result<(), String> {
    let mut holders: HashMap<CtKey, CtKey> = HashMap::new();
    for (k, o) in t
        .iter()
        .filter(|(k, e)| !e.is_reply() && !victims.contains(k))
    {
        let Some(r) = t.get(&o.peer) else {
            continue; // `pairs` reports it.
        };
        if o.nat != NatRewrite::None as u8 && k.family != FAMILY_V4 {
            return Err(format!(
                "{k:?}: IPv6 is never translated, but rewrite {}",
                o.nat
            ));
        }
        let wire = rewritten(k, o);
        if invert(&wire) != o.peer {
            return Err(format!(
                "{k:?} leaves as {wire:?}, whose reply is not its reply key {:?}",
                o.peer
            ));
        }
        let back = rewritten(&o.peer, r);
        if invert(&back) != *k {
            return Err(format!(
                "the reply {:?} is translated to {back:?}, which does not answer {k:?}",
                o.peer
            ));
        }
        if let Some(other) = holders.insert(wire, *k) {
            return Err(format!(
                "{other:?} and {k:?} both hold the translated tuple {wire:?}"
            ));
        }
    }
    Ok(())
}

/// Moves the connection table's clock `by_ns` forward: every entry's
/// expiry and creation time move back by as much, which is what the
/// datapath and the ager would see had that time passed. The fuzzer's
/// controllable clock: expiry happens in a run of seconds without waiting
/// for netfilter's timeouts.
pub fn advance_clock(maps: &mut Maps, table: &Table, by_ns: u64) {
    for (k, e) in table {
        let mut e = *e;
        e.expires_ns = e.expires_ns.saturating_sub(by_ns);
        e.created_ns = e.created_ns.saturating_sub(by_ns);
        // BPF_EXIST: never resurrect an entry the datapath deleted meanwhile
        // (nothing runs meanwhile; this is a statement, not a race guard).
        let _ = maps.conntrack.insert(k, e, 2);
    }
}

/// The expiry of the connection `key` belongs to: the later of its two
/// halves (an orphan's own).
fn connection_expiry(t: &Table, key: &CtKey) -> u64 {
    let e = &t[key];
    let peer = t.get(&e.peer).map_or(0, |p| p.expires_ns);
    e.expires_ns.max(peer)
}

/// Runs the daemon's ager (`ager::sweep`) and checks it removed only
/// connections that had expired, both halves together, and every one that
/// had expired before it started. Returns how many entries it removed.
pub fn age(maps: &mut Maps) -> Result<u64, String> {
    let before = state::table(maps);
    let started = monotonic_ns();
    let sweep = ager::sweep(maps, ager::MAX_INTERVAL);
    let ended = monotonic_ns();
    let after = state::table(maps);
    let mut removed = 0;
    for k in before.keys() {
        let expiry = connection_expiry(&before, k);
        let gone = !after.contains_key(k);
        if gone {
            removed += 1;
            if expiry >= ended {
                return Err(format!(
                    "the ager removed {k:?}, which expires {} ms after the sweep",
                    (expiry - ended) / 1_000_000
                ));
            }
            let peer = before[k].peer;
            if after.contains_key(&peer) {
                return Err(format!("the ager removed {k:?} but left its peer {peer:?}"));
            }
        } else if expiry < started {
            return Err(format!(
                "the ager left {k:?}, expired {} ms before the sweep",
                (started - expiry) / 1_000_000
            ));
        }
    }
    if after.keys().any(|k| !before.contains_key(k)) {
        return Err("entries appeared during the sweep".into());
    }
    if sweep.removed != removed {
        return Err(format!(
            "the ager reports {} removals, the table lost {removed}",
            sweep.removed
        ));
    }
    Ok(removed)
}
