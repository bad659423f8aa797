//! Entry points. Each program reads like the packet's path: parse, track,
//! decide, translate, account. The logic lives in the modules below and in
//! `firewall-common`.
//!
//! * XDP (ingress): tracking and the verdict for everything arriving.
//! * TC ingress: destination NAT (port forwards, replies of masqueraded
//!   connections), before the kernel routes the packet.
//! * TC egress: tracking of host-originated traffic, and source NAT after
//!   routing.
#![no_std]
#![no_main]
// BPF_CMPXCHG for the TCP window bounds (`tcp::Cmpxchg`): the BPF target has no
// `AtomicU32` (its spec claims no compare-and-swap), the instruction exists.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod admit;
mod conntrack;
mod csum;
mod early_drop;
mod fastpath;
mod fib;
mod flow;
mod frag;
mod ftp;
mod maps;
mod nat;
mod nd;
mod parse;
mod reject;
mod related;
mod rules;
mod sctp;
mod tcp;

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC, xdp_action},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use firewall_common::{
    Counter, Role,
    abi::{tc_jump, xdp_jump},
    nat::NatRewrite,
};

use crate::{
    fastpath::{FASTPATH_ARGS, FastPathArgs},
    flow::{
        Hook, NEW_CONNECTION, Verdict, admit_and_create, drop_with, egress_create,
        egress_forwarded, egress_local, process,
    },
    ftp::{ftp_egress, ftp_ingress},
    maps::{IFACES, JUMP, JUMP_XDP, SETTINGS, count, iface},
    nat::{egress_forwarded_nat, icmp_error_nat, translatable},
    parse::{L4Kind, parsed, pull_headers, scratch},
    reject::REJECT_ARGS,
};

#[xdp]
pub fn firewall_xdp(ctx: XdpContext) -> u32 {
    let ifindex = ctx.ingress_ifindex() as u32;
    // SAFETY: read-only lookup of a plain value.
    let cfg = unsafe { IFACES.get(&ifindex) }.copied();
    let role = match cfg {
        Some(c) if c.role == Role::Lan as u8 => Role::Lan,
        Some(_) => Role::Wan,
        // Attached but not configured (e.g. mid-reconfiguration): fail
        // closed like a WAN.
        None => Role::Wan,
    };
    let flags = cfg.map_or(0, |c| c.flags);
    let (verdict, _) = process(
        &ctx,
        ctx.data(),
        ctx.data_end(),
        Hook::Ingress {
            ifindex,
            role,
            flags,
        },
    );
    match verdict {
        Verdict::Pass => xdp_action::XDP_PASS,
        Verdict::Established { fast: false } => {
            // Translated or helped: the rewrites, the helper and the guard
            // that nothing leaves a NAT interface untranslated run at tc,
            // which a redirect would skip.
            if SETTINGS.get(0).is_some_and(|s| s.fast_path != 0) {
                count(Counter::FastPathNat);
            }
            xdp_action::XDP_PASS
        }
        Verdict::Established { fast: true } if first_fragment() => {
            // Its datagram's later fragments take the stack's path (see
            // `frag`): so does it, and the order of the pieces is kept.
            count(Counter::FastPathFragment);
            xdp_action::XDP_PASS
        }
        Verdict::Established { fast: true } => {
            // The fast path is its own program (a tail call): verified
            // apart from this one, whose paths it would otherwise multiply.
            if let Some(slot) = FASTPATH_ARGS.get_ptr_mut(0) {
                // SAFETY: this CPU's slot.
                unsafe { *slot = FastPathArgs { cfg } };
                // SAFETY: the slot holds firewall_xdp_fastpath, installed
                // by the loader.
                let _ = unsafe { JUMP_XDP.tail_call(&ctx, xdp_jump::FASTPATH) };
            }
            // Not reached unless the program is missing: the stack forwards.
            xdp_action::XDP_PASS
        }
        Verdict::Admit => {
            // SAFETY: the slot holds firewall_xdp_admit, installed by the
            // loader.
            let _ = unsafe { JUMP_XDP.tail_call(&ctx, xdp_jump::ADMIT) };
            // Not reached unless the program is missing: make nothing.
            count(Counter::DropPolicy);
            xdp_action::XDP_DROP
        }
        Verdict::Drop => xdp_action::XDP_DROP,
        Verdict::Reject(r) => {
            // The answer is built by its own program, with a fresh stack:
            // this one's frame is mostly spent.
            if let Some(slot) = REJECT_ARGS.get_ptr_mut(0) {
                // SAFETY: this CPU's slot.
                unsafe { *slot = r };
                // SAFETY: index 0 holds firewall_xdp_reject, installed by
                // the loader.
                let _ = unsafe { JUMP_XDP.tail_call(&ctx, xdp_jump::REJECT) };
            }
            count(Counter::DropRejectNoReply);
            xdp_action::XDP_DROP
        }
    }
}

/// Whether the packet just processed is a first fragment.
#[inline(always)]
fn first_fragment() -> bool {
    scratch().is_some_and(|p| p.flags & parse::pkt_flags::FIRST_FRAGMENT != 0)
}

/// The fast path for an ESTABLISHED packet, reached by tail call from
/// `firewall_xdp` (see `fastpath`).
#[xdp]
pub fn firewall_xdp_fastpath(ctx: XdpContext) -> u32 {
    match FASTPATH_ARGS.get(0) {
        Some(a) => fastpath::forward(&ctx, ctx.ingress_ifindex() as u32, a.cfg),
        None => xdp_action::XDP_PASS,
    }
}

/// The admission and creation of a first packet's connection, reached by
/// tail call from `firewall_xdp` once policy accepted it (see `admit`),
/// with the packet still parsed in the per-CPU slot.
#[xdp]
pub fn firewall_xdp_admit(ctx: XdpContext) -> u32 {
    match (scratch(), NEW_CONNECTION.get(0), SETTINGS.get(0)) {
        (Some(p), Some(args), Some(s)) => match admit_and_create(&ctx, p, s, args) {
            Verdict::Pass => xdp_action::XDP_PASS,
            _ => xdp_action::XDP_DROP,
        },
        _ => {
            count(Counter::DropMalformed);
            xdp_action::XDP_DROP
        }
    }
}

/// REJECT's answer, reached by tail call from `firewall_xdp` with the
/// refused packet still parsed in the per-CPU scratch slot.
#[xdp]
pub fn firewall_xdp_reject(ctx: XdpContext) -> u32 {
    match (scratch(), REJECT_ARGS.get(0)) {
        (Some(p), Some(r)) => reject::xdp(&ctx, p, *r),
        _ => {
            count(Counter::DropRejectNoReply);
            xdp_action::XDP_DROP
        }
    }
}

/// Not part of the firewall: the bench's stateless forwarding program (see
/// `fastpath::bare`), the limit of the XDP hook on the machine.
#[xdp]
pub fn bare_forward(ctx: XdpContext) -> u32 {
    fastpath::bare(&ctx)
}

/// Not part of the firewall: the bench attaches it to the veth peers of a
/// router running native XDP, because a veth delivers redirected XDP frames
/// only when its peer has NAPI on, which an XDP program turns on.
#[xdp]
pub fn bare_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[classifier]
pub fn firewall_tc_egress(ctx: TcContext) -> i32 {
    // SAFETY: the context pointer is valid for the program run.
    let (ingress, ifindex) = unsafe { ((*ctx.skb.skb).ingress_ifindex, (*ctx.skb.skb).ifindex) };
    let nat_on = SETTINGS
        .get(0)
        .is_some_and(|s| s.nat != 0 || s.helpers != 0);
    let forwarded = ingress != 0 && unsafe { IFACES.get(&ingress) }.is_some();
    if forwarded && !nat_on {
        // Transit traffic: the XDP program on its way in already decided
        // and tracked it. Running the state machine twice would advance it
        // twice.
        count(Counter::SkipForwarded);
        return TC_ACT_UNSPEC;
    }
    pull_headers(&ctx);
    let verdict = if forwarded {
        egress_forwarded(&ctx, ifindex)
    } else {
        egress_local(&ctx, ifindex)
    };
    match verdict {
        Verdict::Pass | Verdict::Established { .. } => TC_ACT_UNSPEC,
        Verdict::Admit => {
            // SAFETY: the slot holds firewall_tc_create, installed by the
            // loader.
            let _ = unsafe { JUMP.tail_call(&ctx, tc_jump::CREATE) };
            // Not reached unless the program is missing: make nothing.
            count(Counter::DropPolicy);
            TC_ACT_SHOT as i32
        }
        Verdict::Drop => TC_ACT_SHOT as i32,
        // OUTPUT has no REJECT (the config refuses it); fail closed.
        Verdict::Reject(_) => {
            count(Counter::DropRejectNoReply);
            TC_ACT_SHOT as i32
        }
    }
}

#[classifier]
pub fn firewall_tc_ingress(ctx: TcContext) -> i32 {
    let Some(settings) = SETTINGS.get(0) else {
        return TC_ACT_UNSPEC;
    };
    if settings.nat == 0 && settings.helpers == 0 {
        return TC_ACT_UNSPEC;
    }
    pull_headers(&ctx);
    let Ok(p) = frag::parsed(&ctx, ctx.data(), ctx.data_end()) else {
        // XDP already judged the packet; nothing here to translate.
        return TC_ACT_UNSPEC;
    };
    if p.kind == L4Kind::Fragment && p.frag_fate != frag::fate::FOLLOW {
        // An orphan XDP let in from inside: nothing to translate it by.
        return TC_ACT_UNSPEC;
    }
    if p.kind == L4Kind::IcmpError {
        return icmp_error_nat(&ctx, p, NatRewrite::Dst);
    }
    if !translatable(p.kind) {
        return TC_ACT_UNSPEC;
    }
    if settings.helpers != 0 && p.kind == L4Kind::Tcp {
        if let Err(c) = ftp_ingress(&ctx, p) {
            count(c);
            return TC_ACT_SHOT as i32;
        }
    }
    match nat::apply(&ctx, p, NatRewrite::Dst as u8, 0, 0, 0) {
        Ok(_) => TC_ACT_UNSPEC,
        Err(c) => {
            count(c);
            TC_ACT_SHOT as i32
        }
    }
}

/// The connection of a first packet the host itself sends, reached by tail
/// call from `firewall_tc_egress` once policy accepted it, with the packet
/// still parsed in the per-CPU slot; then its source translation (or the
/// FTP program), as `firewall_tc_egress` would have done.
#[classifier]
pub fn firewall_tc_create(ctx: TcContext) -> i32 {
    // SAFETY: the context pointer is valid for the program run.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    match egress_create(&ctx, ifindex) {
        Verdict::Pass | Verdict::Established { .. } => TC_ACT_UNSPEC,
        Verdict::Drop | Verdict::Reject(_) | Verdict::Admit => TC_ACT_SHOT as i32,
    }
}

/// Egress for segments of helped connections, reached by tail call from
/// `firewall_tc_egress` after the packet was tracked and judged: the FTP
/// helper, the sequence correction, then the same source translation as
/// any other packet.
#[classifier]
pub fn firewall_tc_ftp(ctx: TcContext) -> i32 {
    // SAFETY: the context pointer is valid for the program run.
    let (ingress, ifindex) = unsafe { ((*ctx.skb.skb).ingress_ifindex, (*ctx.skb.skb).ifindex) };
    let forwarded = ingress != 0 && unsafe { IFACES.get(&ingress) }.is_some();
    pull_headers(&ctx);
    let Ok(p) = parsed(&ctx, ctx.data(), ctx.data_end()) else {
        count(Counter::DropMalformed);
        return TC_ACT_SHOT as i32;
    };
    if let Err(c) = ftp_egress(&ctx, p) {
        count(c);
        return TC_ACT_SHOT as i32;
    }
    let out = iface(ifindex).unwrap_or_default();
    let verdict = if forwarded {
        egress_forwarded_nat(&ctx, p, &out, ifindex)
    } else {
        match nat::apply(
            &ctx,
            p,
            NatRewrite::Src as u8,
            out.nat,
            out.nat_addr,
            ifindex,
        ) {
            Ok(_) => Verdict::Pass,
            Err(c) => drop_with(c),
        }
    };
    match verdict {
        Verdict::Pass | Verdict::Established { .. } => TC_ACT_UNSPEC,
        Verdict::Drop | Verdict::Reject(_) | Verdict::Admit => TC_ACT_SHOT as i32,
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
