//! Link-scope ICMPv6 arriving from outside (see `firewall_common::nd`):
//! validated, never forwarded, taken by the host without a rule where IPv6
//! needs it, otherwise handed to the rules as UNTRACKED.

use aya_ebpf::{
    EbpfContext, cty::c_void, helpers::generated::bpf_loop, macros::map, maps::PerCpuArray,
};
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

/// The options walk between `bpf_loop` calls.
#[repr(C)]
struct OptionWalk {
    off: u32,
    end: u32,
    /// 0 walking, 1 fit, 2 malformed.
    result: u32,
}

#[map]
static ND_OPTIONS: PerCpuArray<OptionWalk> = PerCpuArray::with_max_entries(1, 0);

/// RFC 4861 §4.6: options of non-zero length that end exactly where the
/// message does. Walked one option per `bpf_loop` call: unrolled, the walk
/// cost the XDP program a quarter of the verifier's budget.
#[inline(always)]
fn options_fit<C: LoadBytes>(ctx: &C, msg: NdMessage, l4: usize, l3_end: usize) -> bool {
    let Some(start) = msg.options_offset() else {
        return true;
    };
    let Some(w) = ND_OPTIONS.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's slot.
    unsafe {
        *w = OptionWalk {
            off: (l4 + start) as u32,
            end: l3_end as u32,
            result: 0,
        };
    }
    // SAFETY: the callback and the stack pointer to `ctx` as bpf_loop
    // expects; `ctx` outlives the loop.
    unsafe {
        bpf_loop(
            MAX_OPTIONS as u32,
            option_step::<C> as *mut c_void,
            ctx as *const C as *mut c_void,
            0,
        )
    };
    ND_OPTIONS.get(0).is_some_and(|w| w.result == 1)
}

/// `bpf_loop` callback: one option. Returns 1 once the walk is over.
#[inline(never)]
extern "C" fn option_step<C: LoadBytes>(_index: u64, data: *mut c_void) -> i64 {
    // SAFETY: `data` is the `&C` `options_fit` passed, alive for the loop.
    let ctx = unsafe { &*(data as *const C) };
    let Some(w) = ND_OPTIONS.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's slot.
    let w = unsafe { &mut *w };
    if w.off == w.end {
        w.result = 1;
        return 1;
    }
    if w.off + 2 > w.end {
        w.result = 2;
        return 1;
    }
    let len = match ctx.load::<2>(w.off as usize) {
        Ok(h) => option_len(h[1]),
        Err(_) => None,
    };
    match len {
        Some(n) => {
            w.off += n as u32;
            0
        }
        None => {
            w.result = 2;
            1
        }
    }
}
