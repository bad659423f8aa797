//! RELATED: an ICMP or ICMPv6 error about a tracked connection
//! (`nf_conntrack_inet_error`).
//!
//! From outside the host, an error must first be well formed: a valid
//! IPv4 header checksum and ICMP checksum (netfilter checks both in
//! PREROUTING), and a quote that starts at a transport header (a quoted
//! non-first fragment has none, and its payload bytes could look like any
//! flow's ports). Then the quoted tuple, inverted, must be a live
//! connection's entry: the entry of the direction the error travels, which
//! for a translated connection is keyed by the translated tuple the error
//! quotes, and whose rewrite undoes the translation. The error must head
//! back to the quoted packet's sender (outer destination = inner source).
//!
//! Errors the host itself sends may quote a packet as it arrived, before
//! its translation (netfilter attaches the original connection with
//! `nf_ct_attach`), so at egress the quoted tuple is also looked up as it
//! is; and a packet the stack refused to forward (TTL, no route) has no
//! connection at all, because none was made for it (`admit`): its error is
//! the host's own and passes. Only the host gets these allowances: from
//! outside, an error quoting an untranslated tuple would reach an inside
//! host past its translation.

use firewall_common::{Counter, CtKey, FAMILY_V4, IPPROTO_ICMP, csum::L4Checksum, nat::NatRewrite};

use crate::{
    admit, conntrack,
    parse::{LoadBytes, Packet, pkt_flags},
};

/// ICMPv4 redirect.
const ICMP_REDIRECT: u8 = 5;

/// An error's fate: accepted (with the rewrite kind of the entry it belongs
/// to) or dropped, counted.
pub type Related = Result<(Counter, u8), Counter>;

/// An ICMP error arriving from outside.
#[inline(never)]
pub fn arriving<C: LoadBytes>(ctx: &C, p: &Packet, now: u64) -> Related {
    admit::ip_header(ctx, p)?;
    match admit::transport_checksum(ctx, p) {
        Some(L4Checksum::Valid) => {}
        Some(_) => return Err(Counter::DropBadChecksum),
        None => return Err(Counter::DropMalformed),
    }
    if p.flags & pkt_flags::QUOTES_FRAGMENT != 0 {
        return Err(Counter::DropIcmpErrorQuote);
    }
    if p.inner.src != p.key.dst {
        return Err(Counter::DropIcmpErrorNoConn);
    }
    match about(p, &p.inner.inverted(), now) {
        Some(r) => r,
        None => Err(Counter::DropIcmpErrorNoConn),
    }
}

/// An ICMP error the host itself sends.
#[inline(always)]
pub fn leaving(p: &Packet, now: u64) -> Related {
    if p.inner.src != p.key.dst {
        return Err(Counter::DropIcmpErrorNoConn);
    }
    if p.flags & pkt_flags::QUOTES_FRAGMENT == 0 {
        if let Some(r) = about(p, &p.inner.inverted(), now) {
            return r;
        }
        if let Some(r) = about(p, &p.inner, now) {
            return r.map(|(c, _)| (c, conntrack::NO_REWRITE));
        }
    }
    Ok((Counter::AcceptLocalIcmpError, conntrack::NO_REWRITE))
}

/// The error as RELATED to the connection whose entry is `key`, if it is
/// alive: accepted with the rewrite kind the entry carries, except a
/// redirect about a translated connection (`nf_nat_icmp_reply_translation`
/// drops those).
#[inline(always)]
fn about(p: &Packet, key: &CtKey, now: u64) -> Option<Related> {
    let e = conntrack::lookup_alive(key, now)?;
    // SAFETY: valid map value pointer for this run.
    let nat = unsafe { (*e).nat };
    let redirect = p.key.family == FAMILY_V4
        && p.key.proto == IPPROTO_ICMP
        && p.key.dport as u8 == ICMP_REDIRECT;
    Some(if redirect && nat != NatRewrite::None as u8 {
        Err(Counter::DropIcmpRedirectNat)
    } else {
        Ok((Counter::AcceptRelated, nat))
    })
}
