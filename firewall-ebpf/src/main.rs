//! Entry points. Each program reads like the packet's path: parse, track,
//! decide, account. The logic lives in the modules below and in
//! `firewall-common`.
#![no_std]
#![no_main]

mod conntrack;
mod maps;
mod parse;
mod rules;

use aya_ebpf::{
    EbpfContext,
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC, bpf_fib_lookup as FibParams, xdp_action, xdp_md},
    cty::c_void,
    helpers::{
        bpf_fib_lookup, bpf_ktime_get_ns,
        generated::{bpf_skb_load_bytes, bpf_xdp_load_bytes},
    },
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use firewall_common::{Chain, Counter, CtState, FAMILY_V4, Role, Settings};

use crate::{
    conntrack::Tracked,
    maps::{IFACES, SCRATCH, SETTINGS, count},
    parse::{L4Kind, LoadBytes, Packet, ParseError},
    rules::PolicyVerdict,
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Pass,
    Drop,
}

/// Where the packet was seen.
#[derive(Clone, Copy)]
enum Hook {
    /// XDP on a managed interface.
    Ingress { ifindex: u32, role: Role },
    /// TC egress, for traffic the host originates (or that arrived on an
    /// interface the firewall does not manage).
    Egress,
}

/// Bytes made linear at TC before direct header reads: Ethernet, two VLAN
/// tags, IPv4 with maximal options or IPv6 with ordinary extension headers,
/// and a TCP header with options.
const HEADER_PULL: u32 = 256;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
/// BPF_FIB_LKUP_RET_NOT_FWDED / _FWD_DISABLED: local delivery (or a host
/// that does not forward). Everything else means the kernel would route it.
const FIB_NOT_FWDED: i64 = 4;
const FIB_FWD_DISABLED: i64 = 5;

#[xdp]
pub fn firewall_xdp(ctx: XdpContext) -> u32 {
    let ifindex = ctx.ingress_ifindex() as u32;
    // SAFETY: read-only lookup of a plain value.
    let role = match unsafe { IFACES.get(&ifindex) } {
        Some(c) if c.role == Role::Lan as u8 => Role::Lan,
        Some(_) => Role::Wan,
        // Attached but not configured (e.g. mid-reconfiguration): fail
        // closed like a WAN.
        None => Role::Wan,
    };
    match process(
        &ctx,
        ctx.data(),
        ctx.data_end(),
        Hook::Ingress { ifindex, role },
    ) {
        Verdict::Pass => xdp_action::XDP_PASS,
        Verdict::Drop => xdp_action::XDP_DROP,
    }
}

#[classifier]
pub fn firewall_tc_egress(ctx: TcContext) -> i32 {
    // SAFETY: the context pointer is valid for the program run.
    let ingress = unsafe { (*ctx.skb.skb).ingress_ifindex };
    if ingress != 0 && unsafe { IFACES.get(&ingress) }.is_some() {
        // Transit traffic: the XDP program on its way in already decided
        // and tracked it. Running the state machine twice would advance it
        // twice.
        count(Counter::SkipForwarded);
        return TC_ACT_UNSPEC;
    }
    // Headers may sit in paged data for locally built skbs; make the first
    // bytes linear so direct packet access can see them.
    let want = core::cmp::min(ctx.len(), HEADER_PULL);
    if ctx.data_end() - ctx.data() < want as usize {
        let _ = ctx.pull_data(want);
    }
    match process(&ctx, ctx.data(), ctx.data_end(), Hook::Egress) {
        Verdict::Pass => TC_ACT_UNSPEC,
        Verdict::Drop => TC_ACT_SHOT as i32,
    }
}

impl LoadBytes for XdpContext {
    #[inline(always)]
    fn load<const N: usize>(&self, off: usize) -> Result<[u8; N], ParseError> {
        let mut buf = [0u8; N];
        // SAFETY: the helper bounds-checks against the frame.
        let rc = unsafe {
            bpf_xdp_load_bytes(
                self.ctx as *mut xdp_md,
                off as u32,
                buf.as_mut_ptr() as *mut c_void,
                N as u32,
            )
        };
        if rc < 0 {
            Err(ParseError::Malformed)
        } else {
            Ok(buf)
        }
    }

    #[inline(always)]
    fn holds(&self, start: usize, end: usize, len: usize) -> bool {
        start + len <= end
    }
}

impl LoadBytes for TcContext {
    #[inline(always)]
    fn load<const N: usize>(&self, off: usize) -> Result<[u8; N], ParseError> {
        let mut buf = [0u8; N];
        // SAFETY: the helper bounds-checks against the skb.
        let rc = unsafe {
            bpf_skb_load_bytes(
                self.skb.skb as *const c_void,
                off as u32,
                buf.as_mut_ptr() as *mut c_void,
                N as u32,
            )
        };
        if rc < 0 {
            Err(ParseError::Malformed)
        } else {
            Ok(buf)
        }
    }

    #[inline(always)]
    fn holds(&self, _start: usize, _end: usize, len: usize) -> bool {
        len <= self.len() as usize
    }
}

#[inline(always)]
fn drop_with(c: Counter) -> Verdict {
    count(c);
    Verdict::Drop
}

#[inline(always)]
fn pass_with(c: Counter) -> Verdict {
    count(c);
    Verdict::Pass
}

#[inline(always)]
fn process<C: EbpfContext + LoadBytes>(ctx: &C, start: usize, end: usize, hook: Hook) -> Verdict {
    let Some(p) = SCRATCH.get_ptr_mut(0) else {
        return drop_with(Counter::DropMalformed);
    };
    // SAFETY: this CPU's scratch slot; nothing else uses it during the run.
    let p = unsafe { &mut *p };
    match parse::parse(ctx, start, end, p) {
        Ok(()) => {}
        Err(ParseError::NotIp) => return pass_with(Counter::AcceptNonIp),
        Err(ParseError::Malformed) => return drop_with(Counter::DropMalformed),
    }
    let p = &*p;
    let Some(settings) = SETTINGS.get(0) else {
        return drop_with(Counter::DropPolicy);
    };
    let untrusted = matches!(
        hook,
        Hook::Ingress {
            role: Role::Wan,
            ..
        }
    );
    let now = unsafe { bpf_ktime_get_ns() };
    match p.kind {
        L4Kind::IcmpUntracked => return pass_with(Counter::AcceptUntracked),
        L4Kind::IcmpInvalid => return drop_with(Counter::DropInvalidIcmp),
        L4Kind::Fragment => {
            // Non-first fragments carry no transport header; without the
            // first fragment's verdict we cannot tie them to a connection.
            return if untrusted {
                drop_with(Counter::DropFragment)
            } else {
                pass_with(Counter::AcceptFragment)
            };
        }
        L4Kind::IcmpError => {
            return if conntrack::related(&p, now) {
                pass_with(Counter::AcceptRelated)
            } else {
                drop_with(Counter::DropIcmpErrorNoConn)
            };
        }
        _ => {}
    }
    match conntrack::track(&p, settings, now) {
        Tracked::Invalid(reason) => drop_with(reason),
        Tracked::Hit {
            state: CtState::Established,
        } => pass_with(Counter::AcceptEstablished),
        Tracked::Hit { state } => {
            // An original-direction packet of a connection that has not
            // been answered yet is still NEW: policy decides again.
            match policy(ctx, &p, settings, hook, state) {
                PolicyVerdict::Accept(c) => pass_with(c),
                PolicyVerdict::Drop(c) => drop_with(c),
            }
        }
        Tracked::Miss => {
            let tcp_state = match conntrack::new_flow_state(&p) {
                Ok(s) => s,
                Err(reason) => return drop_with(reason),
            };
            match policy(ctx, &p, settings, hook, CtState::New) {
                PolicyVerdict::Accept(c) => {
                    conntrack::create(&p, tcp_state, settings, now);
                    pass_with(c)
                }
                PolicyVerdict::Drop(c) => drop_with(c),
            }
        }
    }
}

#[inline(always)]
fn policy<C: EbpfContext>(
    ctx: &C,
    p: &Packet,
    s: &Settings,
    hook: Hook,
    state: CtState,
) -> PolicyVerdict {
    match hook {
        Hook::Egress => rules::decide(p, s, Chain::Output, 0, None, state),
        Hook::Ingress { ifindex, role } => {
            // The chain only matters when rules or differing policies can
            // tell INPUT from FORWARD; skip the FIB lookup otherwise.
            let chain = if s.rule_count > 0 || s.policy[0] != s.policy[1] {
                ingress_chain(ctx, p, ifindex)
            } else {
                Chain::Input
            };
            rules::decide(p, s, chain, ifindex, Some(role), state)
        }
    }
}

/// INPUT or FORWARD, decided the way the kernel will: a FIB lookup that
/// reports local delivery (or forwarding disabled) means INPUT.
#[inline(always)]
fn ingress_chain<C: EbpfContext>(ctx: &C, p: &Packet, ifindex: u32) -> Chain {
    // SAFETY: all-zero is a valid bpf_fib_lookup.
    let mut params: FibParams = unsafe { core::mem::zeroed() };
    params.l4_protocol = p.key.proto;
    params.sport = p.key.sport;
    params.dport = p.key.dport;
    params.ifindex = ifindex;
    if p.key.family == FAMILY_V4 {
        params.family = AF_INET;
        params.__bindgen_anon_1.tot_len = (p.l3_len as u16).to_be();
        params.__bindgen_anon_3.ipv4_src = p.key.src[0];
        params.__bindgen_anon_4.ipv4_dst = p.key.dst[0];
    } else {
        params.family = AF_INET6;
        params.__bindgen_anon_1.tot_len = (p.l3_len as u16).to_be();
        params.__bindgen_anon_3.ipv6_src = p.key.src;
        params.__bindgen_anon_4.ipv6_dst = p.key.dst;
    }
    let ret = unsafe {
        bpf_fib_lookup(
            ctx.as_ptr(),
            &mut params,
            core::mem::size_of::<FibParams>() as i32,
            0,
        )
    };
    if ret == FIB_NOT_FWDED || ret == FIB_FWD_DISABLED {
        Chain::Input
    } else {
        Chain::Forward
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
