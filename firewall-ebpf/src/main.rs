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

mod admit;
mod conntrack;
mod csum;
mod fastpath;
mod fib;
mod ftp;
mod maps;
mod nat;
mod nd;
mod parse;
mod reject;
mod related;
mod rules;
mod sctp;

use aya_ebpf::{
    EbpfContext,
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC, xdp_action, xdp_md},
    cty::c_void,
    helpers::{
        bpf_ktime_get_ns,
        generated::{bpf_skb_load_bytes, bpf_xdp_load_bytes},
    },
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use firewall_common::{
    Chain, Counter, CtState, FAMILY_V4, IfaceConfig, Role, Settings,
    ct::flags,
    ftp::{ExpectKey, expect_flags},
    nat::{IfaceNat, NatRewrite, PortFwdKey},
    settings_nat,
};

use crate::{
    admit::Admission,
    conntrack::{NO_REWRITE, NatSpec, Rewrite, Tracked},
    maps::{
        CONNTRACK, EXPECT, FASTPATH_ARGS, FastPathArgs, HELPERS, IFACES, JUMP, JUMP_XDP, PORT_FWD,
        REJECT_ARGS, SCRATCH, SETTINGS, XDP_JUMP_FASTPATH, XDP_JUMP_REJECT, count,
    },
    nd::NdVerdict,
    parse::{L4Kind, LoadBytes, Packet, ParseError},
    rules::{Fallback, PolicyVerdict},
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Pass,
    Drop,
    /// Drop and answer (a REJECT rule).
    Reject(rules::Reject),
    /// Accepted as ESTABLISHED: at XDP, the fast path may forward it.
    Established,
}

/// Where the packet was seen.
#[derive(Clone, Copy)]
enum Hook {
    /// XDP on a managed interface; `flags` are its `nd::iface_flags`.
    Ingress { ifindex: u32, role: Role, flags: u8 },
    /// TC egress on `ifindex`, for traffic the host originates (or that
    /// arrived on an interface the firewall does not manage).
    Egress { ifindex: u32 },
}

/// Bytes made linear at TC before direct header reads: Ethernet, two VLAN
/// tags, IPv4 with maximal options or IPv6 with ordinary extension headers,
/// and a TCP header with options.
const HEADER_PULL: u32 = 256;

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
    let (verdict, nat) = process(
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
        Verdict::Established => {
            // The fast path is its own program (a tail call): verified
            // apart from this one, whose paths it would otherwise multiply.
            if let Some(slot) = FASTPATH_ARGS.get_ptr_mut(0) {
                // SAFETY: this CPU's slot.
                unsafe { *slot = FastPathArgs { cfg, nat } };
                // SAFETY: the slot holds firewall_xdp_fastpath, installed
                // by the loader.
                let _ = unsafe { JUMP_XDP.tail_call(&ctx, XDP_JUMP_FASTPATH) };
            }
            // Not reached unless the program is missing: the stack forwards.
            xdp_action::XDP_PASS
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
                let _ = unsafe { JUMP_XDP.tail_call(&ctx, XDP_JUMP_REJECT) };
            }
            count(Counter::DropRejectNoReply);
            xdp_action::XDP_DROP
        }
    }
}

/// The fast path for an ESTABLISHED packet, reached by tail call from
/// `firewall_xdp` (see `fastpath`).
#[xdp]
pub fn firewall_xdp_fastpath(ctx: XdpContext) -> u32 {
    match FASTPATH_ARGS.get(0) {
        Some(a) => fastpath::forward(&ctx, ctx.ingress_ifindex() as u32, a.cfg, a.nat),
        None => xdp_action::XDP_PASS,
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
        Verdict::Pass | Verdict::Established => TC_ACT_UNSPEC,
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
    let Ok(p) = parsed(&ctx, ctx.data(), ctx.data_end()) else {
        // XDP already judged the packet; nothing here to translate.
        return TC_ACT_UNSPEC;
    };
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

/// An ICMP error about a translated connection: the quoted packet and the
/// outer address are translated back, like the connection's own packets
/// (`nf_nat_icmp_reply_translation`). `want` is the rewrite this hook does.
#[inline(always)]
fn icmp_error_nat(ctx: &TcContext, p: &Packet, want: NatRewrite) -> i32 {
    // The quoted tuple inverted is the key of the direction the error
    // travels (see conntrack::related).
    let Some(e) = CONNTRACK.get_ptr(&p.inner.inverted()) else {
        return TC_ACT_UNSPEC;
    };
    // SAFETY: map value pointer, valid for this run.
    let rw = Rewrite::of(unsafe { &*e });
    if rw.kind != want as u8 {
        return TC_ACT_UNSPEC;
    }
    match nat::icmp_error(ctx, p, want == NatRewrite::Src, rw.addr, rw.port) {
        Ok(()) => {
            count(if want == NatRewrite::Src {
                Counter::NatSrcRewritten
            } else {
                Counter::NatDstRewritten
            });
            TC_ACT_UNSPEC
        }
        Err(()) => {
            count(Counter::DropNatRewriteFailed);
            TC_ACT_SHOT as i32
        }
    }
}

/// Acks of a helped connection whose other direction had a command
/// rewritten go back to what that direction's sender counts.
#[inline(always)]
fn ftp_ingress(ctx: &TcContext, p: &Packet) -> Result<(), Counter> {
    let Some(e) = CONNTRACK.get_ptr(&p.key) else {
        return Ok(());
    };
    // SAFETY: map value pointer, valid for this run.
    let e = unsafe { &*e };
    if e.flags & flags::HELPER_FTP == 0 {
        return Ok(());
    }
    let Some(other) = CONNTRACK.get_ptr(&e.peer) else {
        return Ok(());
    };
    // SAFETY: as above.
    let other = unsafe { &*other };
    if other.seqadj.is_identity() {
        return Ok(());
    }
    ftp::adjust(ctx, p, other, true)?;
    ftp::adjust_sack(ctx, p, other)
}

/// A segment of a helped connection on its way out: the helper reads it
/// (and may rewrite it), then its sequence number gets the correction.
#[inline(always)]
fn ftp_egress(ctx: &TcContext, p: &Packet) -> Result<(), Counter> {
    let Some(e) = ftp_entry(p) else {
        return Ok(());
    };
    // SAFETY: map value pointer, valid for this run.
    let e = unsafe { &mut *e };
    if e.flags & flags::HELPER_FTP == 0 {
        return Ok(());
    }
    let now = unsafe { bpf_ktime_get_ns() };
    ftp::help(ctx, p, e, now)?;
    if e.seqadj.is_identity() {
        return Ok(());
    }
    ftp::adjust(ctx, p, e, false)
}

/// Host-originated traffic: track and decide, then source-translate.
#[inline(always)]
fn egress_local(ctx: &TcContext, ifindex: u32) -> Verdict {
    let (verdict, nat_kind) = process(ctx, ctx.data(), ctx.data_end(), Hook::Egress { ifindex });
    if matches!(verdict, Verdict::Drop | Verdict::Reject(_)) {
        return verdict;
    }
    let Some(p) = scratch() else {
        return drop_with(Counter::DropMalformed);
    };
    if p.kind == L4Kind::Tcp && helped(p) {
        return to_ftp_program(ctx);
    }
    if nat_kind != NatRewrite::Src as u8 {
        return verdict;
    }
    let out = iface(ifindex);
    match nat::apply(
        ctx,
        p,
        NatRewrite::Src as u8,
        out.nat,
        out.nat_addr,
        ifindex,
    ) {
        Ok(_) => Verdict::Pass,
        Err(c) => drop_with(c),
    }
}

/// Transit traffic leaving through `ifindex`: XDP tracked and judged it on
/// the way in; here only its source translation remains. A packet never
/// leaves a NAT interface untranslated.
#[inline(always)]
fn egress_forwarded(ctx: &TcContext, ifindex: u32) -> Verdict {
    let Ok(p) = parsed(ctx, ctx.data(), ctx.data_end()) else {
        return drop_with(Counter::DropMalformed);
    };
    let out = iface(ifindex);
    if p.kind == L4Kind::IcmpError {
        let Some(e) = CONNTRACK.get_ptr(&p.inner.inverted()) else {
            return untranslated_guard(p, &out);
        };
        // SAFETY: map value pointer, valid for this run.
        if unsafe { (*e).nat } == NatRewrite::Src as u8 {
            return if icmp_error_nat(ctx, p, NatRewrite::Src) == TC_ACT_UNSPEC {
                Verdict::Pass
            } else {
                Verdict::Drop
            };
        }
        return untranslated_guard(p, &out);
    }
    if p.kind == L4Kind::Tcp && helped(p) {
        return to_ftp_program(ctx);
    }
    egress_forwarded_nat(ctx, p, &out, ifindex)
}

/// The source translation of a forwarded packet, and the guard that no
/// packet leaves a NAT interface untranslated.
#[inline(always)]
fn egress_forwarded_nat(ctx: &TcContext, p: &Packet, out: &IfaceConfig, ifindex: u32) -> Verdict {
    if translatable(p.kind) {
        match nat::apply(
            ctx,
            p,
            NatRewrite::Src as u8,
            out.nat,
            out.nat_addr,
            ifindex,
        ) {
            Ok(true) => return Verdict::Pass,
            Ok(false) => {}
            Err(c) => return drop_with(c),
        }
    }
    untranslated_guard(p, out)
}

/// Whether the packet belongs to a connection the FTP helper watches.
#[inline(always)]
fn helped(p: &Packet) -> bool {
    if !SETTINGS.get(0).is_some_and(|s| s.helpers != 0) {
        return false;
    }
    // SAFETY: map value pointers, valid for this run.
    ftp_entry(p).is_some_and(|e| unsafe { (*e).flags } & flags::HELPER_FTP != 0)
}

/// The entry of the direction a TCP segment travels. Usually keyed by the
/// segment's own tuple; a reply whose destination tc ingress already
/// translated back (a masqueraded connection's reply leaving towards the
/// LAN) no longer carries its entry's key, but its inverse is the original
/// entry, whose peer is the one we want.
#[inline(always)]
fn ftp_entry(p: &Packet) -> Option<*mut firewall_common::CtEntry> {
    if let Some(e) = CONNTRACK.get_ptr_mut(&p.key) {
        return Some(e);
    }
    let orig = CONNTRACK.get_ptr(&p.key.inverted())?;
    // SAFETY: map value pointer, valid for this run.
    let peer = unsafe { (*orig).peer };
    CONNTRACK.get_ptr_mut(&peer)
}

/// Continues in `firewall_tc_ftp` (a tail call: a program of its own, so
/// the helper's parser has its own verifier budget and stack). Returns only
/// if the jump fails, and then drops: a command must not leave unhandled.
#[inline(always)]
fn to_ftp_program(ctx: &TcContext) -> Verdict {
    // SAFETY: index 0 holds firewall_tc_ftp, installed by the loader.
    unsafe { JUMP.tail_call(ctx, 0) };
    drop_with(Counter::DropFtpUnmangleable)
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
    let out = iface(ifindex);
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
        Verdict::Pass | Verdict::Established => TC_ACT_UNSPEC,
        Verdict::Drop | Verdict::Reject(_) => TC_ACT_SHOT as i32,
    }
}

/// A packet never leaves a NAT interface untranslated.
#[inline(always)]
fn untranslated_guard(p: &Packet, out: &IfaceConfig) -> Verdict {
    if out.nat != IfaceNat::None as u8 && p.key.family == FAMILY_V4 && p.key.src[0] != out.nat_addr
    {
        return drop_with(Counter::DropNatUntranslated);
    }
    pass_with(Counter::SkipForwarded)
}

#[inline(always)]
fn iface(ifindex: u32) -> IfaceConfig {
    // SAFETY: read-only lookup of a plain value.
    unsafe { IFACES.get(&ifindex) }.copied().unwrap_or_default()
}

/// Headers may sit in paged data for locally built skbs; make the first
/// bytes linear so direct packet access can see them.
#[inline(always)]
fn pull_headers(ctx: &TcContext) {
    let want = core::cmp::min(ctx.len(), HEADER_PULL);
    if ctx.data_end() - ctx.data() < want as usize {
        let _ = ctx.pull_data(want);
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

    #[inline(always)]
    fn load_raw(&self, off: u32, buf: *mut u8, len: u32) -> bool {
        // SAFETY: the helper bounds-checks against the frame; the caller
        // owns `len` bytes at `buf`.
        unsafe { bpf_xdp_load_bytes(self.ctx as *mut xdp_md, off, buf as *mut c_void, len) >= 0 }
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

    #[inline(always)]
    fn load_raw(&self, off: u32, buf: *mut u8, len: u32) -> bool {
        // SAFETY: the helper bounds-checks against the skb; the caller
        // owns `len` bytes at `buf`.
        unsafe {
            bpf_skb_load_bytes(self.skb.skb as *const c_void, off, buf as *mut c_void, len) >= 0
        }
    }
}

#[inline(always)]
fn reject_with(r: rules::Reject) -> Verdict {
    Verdict::Reject(r)
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
fn scratch() -> Option<&'static mut Packet> {
    // SAFETY: this CPU's scratch slot; programs run to completion on one
    // CPU, so nothing else uses it during the run.
    SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// Parses into the per-CPU scratch slot.
#[inline(always)]
fn parsed<C: LoadBytes>(ctx: &C, start: usize, end: usize) -> Result<&'static Packet, ParseError> {
    let p = scratch().ok_or(ParseError::Malformed)?;
    parse::parse(ctx, start, end, p)?;
    Ok(p)
}

/// Parse, track, decide. Returns the verdict and, for a packet of a
/// translated connection, the rewrite its entry carries.
#[inline(always)]
fn process<C: EbpfContext + LoadBytes>(
    ctx: &C,
    start: usize,
    end: usize,
    hook: Hook,
) -> (Verdict, u8) {
    let none = NO_REWRITE;
    let p = match parsed(ctx, start, end) {
        Ok(p) => p,
        Err(ParseError::NotIp) => return (pass_with(Counter::AcceptNonIp), none),
        Err(ParseError::Malformed) => return (drop_with(Counter::DropMalformed), none),
        Err(ParseError::VlanStack) => return (drop_with(Counter::DropVlanStack), none),
    };
    let Some(settings) = SETTINGS.get(0) else {
        return (drop_with(Counter::DropPolicy), none);
    };
    let now = unsafe { bpf_ktime_get_ns() };
    let mut state = CtState::New;
    let pending = match p.kind {
        L4Kind::IcmpInvalid => return (drop_with(Counter::DropInvalidIcmp), none),
        L4Kind::Fragment => {
            // Non-first fragments carry no transport header; without the
            // first fragment's verdict we cannot tie them to a connection.
            let untrusted = matches!(
                hook,
                Hook::Ingress {
                    role: Role::Wan,
                    ..
                }
            );
            let v = if untrusted {
                drop_with(Counter::DropFragment)
            } else {
                pass_with(Counter::AcceptFragment)
            };
            return (v, none);
        }
        L4Kind::IcmpError => {
            let r = match hook {
                Hook::Ingress { .. } => related::arriving(ctx, p, now),
                Hook::Egress { .. } => related::leaving(p, now),
            };
            return match r {
                Ok((c, nat)) => (pass_with(c), nat),
                Err(c) => (drop_with(c), none),
            };
        }
        L4Kind::IcmpUntracked => match hook {
            // The host's own neighbour discovery.
            Hook::Egress { .. } => return (pass_with(Counter::AcceptUntracked), none),
            Hook::Ingress {
                ifindex,
                role,
                flags,
            } => match nd::arriving(ctx, p, ifindex, flags, role == Role::Lan) {
                NdVerdict::Accept => return (pass_with(Counter::AcceptUntracked), none),
                NdVerdict::Drop(c) => return (drop_with(c), none),
                NdVerdict::Rules => {
                    state = CtState::Untracked;
                    Pending::decided(none)
                }
            },
        },
        // The tracker reads every chunk header; a packet whose chunks
        // fail netfilter's basic checks is INVALID.
        L4Kind::Sctp if !sctp::read_chunks(ctx, p) => {
            return (drop_with(Counter::DropInvalidSctp), none);
        }
        _ => match conntrack::track(p, settings, now) {
            Tracked::Invalid(reason) => return (drop_with(reason), none),
            Tracked::Hit {
                state: CtState::Established,
                nat,
            } => {
                count(Counter::AcceptEstablished);
                return (Verdict::Established, nat);
            }
            // An original-direction packet of a connection that has not
            // been answered yet is still NEW: policy decides again.
            Tracked::Hit { state: st, nat } => {
                state = st;
                Pending::decided(nat)
            }
            Tracked::Miss => match first_packet(p, settings, hook, now) {
                Ok(pending) => pending,
                Err(done) => return done,
            },
        },
    };
    let routed = if pending.dnat {
        // The output interface is not known before translation: `oif`
        // conditions do not match port-forwarded packets.
        Routed {
            chain: Chain::Forward,
            route: fib::Route::UNKNOWN,
        }
    } else if state == CtState::Untracked {
        // Link-scope messages for the host (`nd` dropped the others).
        Routed {
            chain: Chain::Input,
            route: fib::Route::UNKNOWN,
        }
    } else {
        route(ctx, p, settings, hook)
    };
    // One call site of the policy: every inlined copy of the rule walk
    // costs the verifier a full exploration of it.
    let verdict = if pending.related {
        // An announced data connection: RELATED, policy does not apply.
        PolicyVerdict::Accept(Counter::AcceptExpected)
    } else {
        let fallback = if pending.port_forward {
            Fallback::Accept(Counter::AcceptPortForward)
        } else {
            Fallback::Policy
        };
        policy(p, settings, hook, &routed, state, fallback)
    };
    match verdict {
        PolicyVerdict::Drop(c) => (drop_with(c), none),
        PolicyVerdict::Reject(r) => (reject_with(r), none),
        PolicyVerdict::Accept(c) if !pending.create => (pass_with(c), pending.nat),
        PolicyVerdict::Accept(c) => {
            if let Hook::Ingress { ifindex, flags, .. } = hook {
                let at = admit::Arrival { ifindex, flags };
                match admit::first_packet(ctx, p, at, routed.route, pending.dnat) {
                    Admission::Create => {}
                    Admission::Drop(reason) => return (drop_with(reason), none),
                    Admission::PassUntracked(reason) => return (pass_with(reason), none),
                }
            }
            let spec = if pending.dnat {
                NatSpec::Dest {
                    addr: pending.dnat_addr,
                    port: pending.dnat_port,
                }
            } else {
                source_nat(p, settings, routed.chain, routed.route.oif)
            };
            match conntrack::create(p, pending.tcp_state, settings, now, spec, pending.ct_flags) {
                Ok(rw) => (pass_with(c), rw),
                Err(reason) => (drop_with(reason), none),
            }
        }
    }
}

/// A packet the policy decides on, and what follows its acceptance. A
/// plain struct with every field set on every path: an enum left some
/// bytes undefined, and LLVM spilled the undefined register, which the
/// verifier rejects (`!read_ok`).
#[derive(Clone, Copy)]
struct Pending {
    /// A first packet, whose connection is created on acceptance; else a
    /// packet of a connection tracked already (whose rewrite is `nat`), or
    /// one never tracked.
    create: bool,
    /// The first packet of a data connection a helper announced: RELATED,
    /// no policy.
    related: bool,
    /// A port forward lets it in unless a rule drops it.
    port_forward: bool,
    nat: u8,
    tcp_state: u8,
    ct_flags: u8,
    /// Translated to `dnat_addr:dnat_port` (a port forward, or a data
    /// connection following its master); else the source NAT of its route
    /// applies.
    dnat: bool,
    dnat_addr: u32,
    dnat_port: u16,
}

impl Pending {
    /// A packet whose connection (if any) exists: policy only.
    #[inline(always)]
    fn decided(nat: u8) -> Pending {
        Pending {
            create: false,
            related: false,
            port_forward: false,
            nat,
            tcp_state: 0,
            ct_flags: 0,
            dnat: false,
            dnat_addr: 0,
            dnat_port: 0,
        }
    }
}

/// The first packet of a flow up to the policy: its validity, whether a
/// helper announced it (RELATED), the helper to attach, and a port forward.
#[inline(always)]
fn first_packet(p: &Packet, s: &Settings, hook: Hook, now: u64) -> Result<Pending, (Verdict, u8)> {
    let tcp_state = match conntrack::new_flow_state(p) {
        Ok(st) => st,
        Err(reason) => return Err((drop_with(reason), NO_REWRITE)),
    };
    let mut pending = Pending {
        create: true,
        tcp_state,
        ..Pending::decided(NO_REWRITE)
    };
    if s.helpers != 0 && p.kind == L4Kind::Tcp {
        if let Some(spec) = expected(p, now) {
            // Without a translation of its own (a passive data connection
            // from inside), it still gets the source NAT of the interface
            // it leaves through, like any connection.
            if let NatSpec::Dest { addr, port } = spec {
                pending.dnat = true;
                pending.dnat_addr = addr;
                pending.dnat_port = port;
            }
            pending.related = true;
            pending.ct_flags = flags::EXPECTED;
            return Ok(pending);
        }
        let key = PortFwdKey {
            proto: p.key.proto,
            _pad: 0,
            port: p.key.dport,
        };
        // SAFETY: read-only lookup of a plain value.
        if unsafe { HELPERS.get(&key) }.is_some() {
            pending.ct_flags |= flags::HELPER_FTP;
        }
    }
    if let Some(NatSpec::Dest { addr, port }) = port_forward(p, s, hook) {
        pending.port_forward = true;
        pending.dnat = true;
        pending.dnat_addr = addr;
        pending.dnat_port = port;
    }
    Ok(pending)
}

/// The first packet of a data connection a helper announced: consumes the
/// expectation and says how to translate the connection (like its master,
/// `nf_nat_follow_master`).
#[inline(always)]
fn expected(p: &Packet, now: u64) -> Option<NatSpec> {
    let ek = ExpectKey::of_packet(&p.key);
    // SAFETY: read-only copy of a plain value.
    let exp = unsafe { EXPECT.get(&ek) }.copied()?;
    let _ = EXPECT.remove(&ek);
    if exp.expires_ns < now {
        return None;
    }
    Some(
        if exp.flags & expect_flags::NAT != 0 && exp.nat_dst != p.key.dst {
            NatSpec::Dest {
                addr: exp.nat_dst[0],
                port: exp.nat_dport,
            }
        } else {
            NatSpec::None
        },
    )
}

/// A NEW TCP/UDP packet arriving on a WAN interface for a forwarded port.
#[inline(always)]
fn port_forward(p: &Packet, s: &Settings, hook: Hook) -> Option<NatSpec> {
    if s.nat & settings_nat::PORT_FORWARD == 0
        || p.key.family != FAMILY_V4
        || !matches!(p.kind, L4Kind::Tcp | L4Kind::Udp)
        || !matches!(
            hook,
            Hook::Ingress {
                role: Role::Wan,
                ..
            }
        )
    {
        return None;
    }
    let key = PortFwdKey {
        proto: p.key.proto,
        _pad: 0,
        port: p.key.dport,
    };
    // SAFETY: read-only lookup of a plain value.
    let t = unsafe { PORT_FWD.get(&key) }?;
    Some(NatSpec::Dest {
        addr: t.addr,
        port: t.port,
    })
}

/// Packets of the kinds that NAT translates (`firewall_common::nat::
/// proto_nat` says how far).
#[inline(always)]
fn translatable(kind: L4Kind) -> bool {
    matches!(
        kind,
        L4Kind::Tcp | L4Kind::Udp | L4Kind::IcmpQuery | L4Kind::Sctp | L4Kind::Other
    )
}

/// Masquerade/SNAT for a new IPv4 connection leaving through a NAT
/// interface (forwarded, or originated by the host).
#[inline(always)]
fn source_nat(p: &Packet, s: &Settings, chain: Chain, out_ifindex: u32) -> NatSpec {
    if s.nat & settings_nat::SOURCE == 0
        || p.key.family != FAMILY_V4
        || chain == Chain::Input
        || out_ifindex == 0
        || !translatable(p.kind)
    {
        return NatSpec::None;
    }
    let out = iface(out_ifindex);
    if out.nat == IfaceNat::None as u8 {
        return NatSpec::None;
    }
    NatSpec::Source {
        addr: out.nat_addr,
        lo: out.nat_port_lo,
        hi: out.nat_port_hi,
        ifindex: out_ifindex,
    }
}

#[inline(always)]
fn policy(
    p: &Packet,
    s: &Settings,
    hook: Hook,
    routed: &Routed,
    state: CtState,
    fallback: Fallback,
) -> PolicyVerdict {
    let chain = routed.chain;
    let oif = routed.route.oif;
    let at = match hook {
        Hook::Egress { .. } => rules::Position {
            chain,
            iif: 0,
            oif,
            role: None,
            state,
        },
        Hook::Ingress { ifindex, role, .. } => rules::Position {
            chain,
            iif: ifindex,
            oif: if chain == Chain::Forward { oif } else { 0 },
            role: Some(role),
            state,
        },
    };
    rules::decide(p, s, &at, fallback)
}

/// The chain, and where the routing table sends the packet.
#[derive(Clone, Copy)]
struct Routed {
    chain: Chain,
    /// At egress, the interface itself; at ingress, the FIB's answer, or
    /// `Outcome::Unknown` when nothing needed one.
    route: fib::Route,
}

/// At egress it is OUTPUT through the interface itself; at ingress a FIB
/// lookup decides, done only when rules, differing policies or source NAT
/// need it (admission makes its own when it must).
#[inline(always)]
fn route<C: EbpfContext>(ctx: &C, p: &Packet, s: &Settings, hook: Hook) -> Routed {
    let ifindex = match hook {
        Hook::Egress { ifindex } => {
            return Routed {
                chain: Chain::Output,
                route: fib::Route {
                    outcome: fib::Outcome::Forward,
                    oif: ifindex,
                },
            };
        }
        Hook::Ingress { ifindex, .. } => ifindex,
    };
    let needs_nat = s.nat & settings_nat::SOURCE != 0 && p.key.family == FAMILY_V4;
    let no_rules = rules::ruleset(s).is_none_or(|h| h.count == 0 && h.policy[0] == h.policy[1]);
    if no_rules && !needs_nat {
        return Routed {
            chain: Chain::Input,
            route: fib::Route::UNKNOWN,
        };
    }
    let route = fib::route(ctx, &p.key, ifindex, false);
    let chain = match route.outcome {
        fib::Outcome::Local | fib::Outcome::Disabled => Chain::Input,
        _ => Chain::Forward,
    };
    Routed { chain, route }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
