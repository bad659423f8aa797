//! Link-scope ICMPv6 arriving from outside (see `firewall_common::nd`):
//! validated, never forwarded, taken by the host without a rule where IPv6
//! needs it, otherwise handed to the rules as UNTRACKED.

use aya_ebpf::EbpfContext;
use firewall_common::{
    Counter,
    ip::{v6_is_link_scope, v6_is_multicast},
    nd::{NdMessage, accepted_without_rule, option_len, valid},
};

use crate::{
    fib::{self, Outcome},
    parse::{LoadBytes, Packet},
};

/// Options walked before a message is called malformed: far more than any
/// router advertisement carries.
const MAX_OPTIONS: usize = 32;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum NdVerdict {
    /// The host takes it without a rule.
    Accept,
    Drop(Counter),
    /// The rules decide, with ctstate UNTRACKED.
    Rules,
}

/// Judges a neighbour/router discovery, redirect or MLD message arriving
/// on `ifindex` (whose `nd::iface_flags` are `iface`).
#[inline(always)]
pub fn arriving<C: EbpfContext + LoadBytes>(
    ctx: &C,
    p: &Packet,
    ifindex: u32,
    iface: u8,
    from_lan: bool,
) -> NdVerdict {
    let ty = p.key.dport as u8;
    let Some(msg) = NdMessage::of_type(ty) else {
        return NdVerdict::Drop(Counter::DropNdInvalid);
    };
    let l4 = p.l4_off as usize;
    let l3_end = p.l3_off as usize + p.l3_len as usize;
    if l4 > l3_end
        || !valid(msg, ty, p.icmp_code, p.ttl, l3_end - l4, &p.key.src)
        || !options_fit(ctx, msg, l4, l3_end)
    {
        return NdVerdict::Drop(Counter::DropNdInvalid);
    }
    // Link-scope and multicast destinations stay on the link; anything
    // else is delivered here or would be forwarded, which never happens.
    if !v6_is_link_scope(&p.key.dst) && !v6_is_multicast(&p.key.dst) {
        let to_host = matches!(
            fib::route(ctx, &p.key, ifindex, false).outcome,
            Outcome::Local | Outcome::Disabled
        );
        if !to_host {
            return NdVerdict::Drop(Counter::DropNdForward);
        }
    }
    if accepted_without_rule(msg, iface, from_lan) {
        NdVerdict::Accept
    } else {
        NdVerdict::Rules
    }
}

/// RFC 4861 §4.6: options of non-zero length that end exactly where the
/// message does.
#[inline(always)]
fn options_fit<C: LoadBytes>(ctx: &C, msg: NdMessage, l4: usize, l3_end: usize) -> bool {
    let Some(start) = msg.options_offset() else {
        return true;
    };
    let mut off = l4 + start;
    for _ in 0..MAX_OPTIONS {
        if off == l3_end {
            return true;
        }
        if off + 2 > l3_end {
            return false;
        }
        let Ok(h) = ctx.load::<2>(off) else {
            return false;
        };
        let Some(len) = option_len(h[1]) else {
            return false;
        };
        off += len;
    }
    off == l3_end
}
