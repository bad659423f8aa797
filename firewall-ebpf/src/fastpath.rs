//! The XDP fast path: a forwarded packet of an ESTABLISHED connection is
//! routed, rewritten and sent out in XDP (`bpf_fib_lookup`, MAC rewrite,
//! TTL or hop limit, `bpf_redirect`), like a netfilter flowtable, instead of
//! going up through the stack.
//!
//! It runs after tracking, so the connection's state, timers and counters
//! are exactly those of the ordinary path. Anything it cannot do exactly as
//! the stack would returns `XDP_PASS`, counted by reason:
//!
//! * a redirect skips tcx ingress and egress, where NAT rewrites (with the
//!   kernel's checksum helpers, for `CHECKSUM_PARTIAL` packets XDP cannot
//!   recognise), the FTP helper and the "never leave a NAT interface
//!   untranslated" guard run. Translated or helped flows, and IPv4 leaving a
//!   NAT interface, take the stack;
//! * TTL ≤ 1, a packet larger than the egress MTU (including GSO packets),
//!   no neighbour entry yet, local delivery: the stack sends the ICMP
//!   error, fragments, resolves the neighbour or delivers;
//! * VLAN tags, IPv4 options, fragments, IPv6 extension headers (hop-by-hop
//!   options must be processed by every router);
//! * an egress interface the firewall does not manage, or one that cannot
//!   take an XDP frame from this attach mode (see `iface_xdp`).

use aya_ebpf::{
    bindings::{
        BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_FWD_DISABLED, BPF_FIB_LKUP_RET_NO_NEIGH,
        BPF_FIB_LKUP_RET_NOT_FWDED, BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup as FibParams,
        xdp_action,
    },
    helpers::generated::bpf_redirect,
    macros::map,
    maps::PerCpuArray,
    programs::XdpContext,
};
use firewall_common::{Counter, FAMILY_V4, IfaceConfig, csum, iface_xdp, nat::IfaceNat};

use crate::{
    fib::{self, AF_INET, AF_INET6},
    maps::{SETTINGS, count, iface},
    parse::SCRATCH,
};

const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const IPV6_LEN: usize = 40;

/// The XDP verdict for a packet tracking accepted as ESTABLISHED, whose
/// connection is neither translated nor helped (`firewall_xdp` checked,
/// before the tail call): a redirect out of the egress interface, or
/// `XDP_PASS` to the stack. `in_cfg` is the arrival interface's entry in
/// `IFACES`.
#[inline(always)]
pub fn forward(ctx: &XdpContext, in_ifindex: u32, in_cfg: Option<IfaceConfig>) -> u32 {
    if !SETTINGS.get(0).is_some_and(|s| s.fast_path != 0) {
        return xdp_action::XDP_PASS;
    }
    let Some(in_cfg) = in_cfg else {
        count(Counter::FastPathUnmanaged);
        return xdp_action::XDP_PASS;
    };
    match route_and_rewrite(ctx, in_ifindex, in_cfg.xdp) {
        Ok(out) => {
            count(Counter::FastPathForwarded);
            // SAFETY: plain helper call; returns XDP_REDIRECT (flags 0 are valid).
            unsafe { bpf_redirect(out, 0) as u32 }
        }
        Err(reason) => {
            count(reason);
            xdp_action::XDP_PASS
        }
    }
}

/// Checks that the packet can be forwarded here, rewrites it, and returns
/// the egress ifindex. Nothing is written before every check passed.
#[inline(always)]
fn route_and_rewrite(ctx: &XdpContext, in_ifindex: u32, in_xdp: u8) -> Result<u32, Counter> {
    let p = SCRATCH.get_ptr(0).ok_or(Counter::FastPathUnusual)?;
    // SAFETY: this CPU's parse slot, filled for this packet by `process`.
    let p = unsafe { &*p };
    if p.l3_off as usize != ETH_LEN {
        return Err(Counter::FastPathUnusual);
    }
    let v4 = p.key.family == FAMILY_V4;
    let start = ctx.data();
    let end = ctx.data_end();
    // SAFETY: all-zero is a valid bpf_fib_lookup (`fill` sets it anyway).
    let mut fib: FibParams = unsafe { core::mem::zeroed() };
    fib::fill(&mut fib, &p.key, in_ifindex, false);
    // The MTU check of the lookup compares against this: anything longer
    // (a GSO packet, too) is left to the stack.
    fib.__bindgen_anon_1.tot_len = if p.l3_len > 0xffff {
        0xffff
    } else {
        p.l3_len as u16
    };
    let hdr = (start + ETH_LEN) as *mut u8;
    if v4 {
        if start + ETH_LEN + IPV4_LEN > end {
            return Err(Counter::FastPathUnusual);
        }
        // SAFETY: 20 header bytes are within the frame (checked above).
        let ip = unsafe { &*(hdr as *const [u8; IPV4_LEN]) };
        // No options (IHL 5), not a fragment (MF clear, offset 0).
        if ip[0] != 0x45 || ip[6] & 0x3f != 0 || ip[7] != 0 {
            return Err(Counter::FastPathUnusual);
        }
        if ip[8] <= 1 {
            return Err(Counter::FastPathTtl);
        }
        fib.__bindgen_anon_2.tos = ip[1];
    } else {
        if start + ETH_LEN + IPV6_LEN > end {
            return Err(Counter::FastPathUnusual);
        }
        // SAFETY: 40 header bytes are within the frame (checked above).
        let ip = unsafe { &*(hdr as *const [u8; IPV6_LEN]) };
        // Extension headers: hop-by-hop options are for every router.
        if p.l4_off as usize != ETH_LEN + IPV6_LEN {
            return Err(Counter::FastPathUnusual);
        }
        if ip[7] <= 1 {
            return Err(Counter::FastPathTtl);
        }
        // Traffic class and flow label (`ip6_flowinfo`).
        fib.__bindgen_anon_2.flowinfo = u32::from_ne_bytes([ip[0] & 0x0f, ip[1], ip[2], ip[3]]);
    }
    match fib::lookup(ctx, &mut fib) {
        BPF_FIB_LKUP_RET_SUCCESS => {}
        BPF_FIB_LKUP_RET_NOT_FWDED | BPF_FIB_LKUP_RET_FWD_DISABLED => {
            return Err(Counter::FastPathNotForwarded);
        }
        BPF_FIB_LKUP_RET_NO_NEIGH => return Err(Counter::FastPathNoNeigh),
        BPF_FIB_LKUP_RET_FRAG_NEEDED => return Err(Counter::FastPathFragNeeded),
        _ => return Err(Counter::FastPathNoRoute),
    }
    let out = fib.ifindex;
    if out == in_ifindex {
        return Err(Counter::FastPathUnusual);
    }
    let out_cfg = iface(out).ok_or(Counter::FastPathUnmanaged)?;
    if v4 && out_cfg.nat != IfaceNat::None as u8 {
        return Err(Counter::FastPathNat);
    }
    if in_xdp & iface_xdp::GENERIC == 0 && out_cfg.xdp & iface_xdp::FRAME_TARGET == 0 {
        return Err(Counter::FastPathNoXdpTarget);
    }
    rewrite(start, end, v4, &fib.dmac, &fib.smac)?;
    Ok(out)
}

/// MACs to the next hop's and the egress interface's; TTL or hop limit
/// down by one, with the IPv4 header checksum updated (RFC 1624).
#[inline(always)]
fn rewrite(
    start: usize,
    end: usize,
    v4: bool,
    dmac: &[u8; 6],
    smac: &[u8; 6],
) -> Result<(), Counter> {
    let l3_end = if v4 { IPV4_LEN } else { IPV6_LEN };
    if start + ETH_LEN + l3_end > end {
        return Err(Counter::FastPathUnusual);
    }
    let eth = start as *mut [u8; 6];
    // SAFETY: the Ethernet header and the IP header were bounds-checked
    // against the frame just above.
    unsafe {
        *eth = *dmac;
        *eth.add(1) = *smac;
        let ip = (start + ETH_LEN) as *mut u8;
        if v4 {
            let ttl = *ip.add(8);
            let proto = *ip.add(9);
            let check = ip.add(10) as *mut [u8; 2];
            let new = csum::ttl_decrement(u16::from_ne_bytes(*check), ttl, proto);
            *ip.add(8) = ttl.wrapping_sub(1);
            *check = new.to_ne_bytes();
        } else {
            *ip.add(7) = (*ip.add(7)).wrapping_sub(1);
        }
    }
    Ok(())
}

/// The bench's bare forwarding program: what forwarding in XDP costs with
/// no state at all (FIB lookup, MAC and TTL/hop-limit rewrite, redirect),
/// the ceiling of this hook on the machine. Everything it cannot forward
/// goes to the stack.
#[inline(always)]
pub fn bare(ctx: &XdpContext) -> u32 {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + ETH_LEN + IPV4_LEN > end {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: the Ethernet header and 20 bytes after it are in the frame.
    let (ethertype, ip) = unsafe {
        (
            *((start + 12) as *const [u8; 2]),
            &*((start + ETH_LEN) as *const [u8; IPV4_LEN]),
        )
    };
    // SAFETY: all-zero is a valid bpf_fib_lookup.
    let mut fib: FibParams = unsafe { core::mem::zeroed() };
    fib.ifindex = ctx.ingress_ifindex() as u32;
    let v4 = match ethertype {
        [0x08, 0x00] => {
            if ip[8] <= 1 {
                return xdp_action::XDP_PASS;
            }
            fib.family = AF_INET;
            fib.__bindgen_anon_2.tos = ip[1];
            fib.__bindgen_anon_1.tot_len = u16::from_be_bytes([ip[2], ip[3]]);
            fib.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]);
            fib.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]);
            true
        }
        [0x86, 0xdd] => {
            if start + ETH_LEN + IPV6_LEN > end {
                return xdp_action::XDP_PASS;
            }
            // SAFETY: 40 header bytes are within the frame (checked above).
            let ip6 = unsafe { &*((start + ETH_LEN) as *const [u8; IPV6_LEN]) };
            if ip6[7] <= 1 {
                return xdp_action::XDP_PASS;
            }
            fib.family = AF_INET6;
            let payload = u16::from_be_bytes([ip6[4], ip6[5]]);
            fib.__bindgen_anon_1.tot_len = payload.saturating_add(IPV6_LEN as u16);
            let word = |i: usize| u32::from_ne_bytes([ip6[i], ip6[i + 1], ip6[i + 2], ip6[i + 3]]);
            fib.__bindgen_anon_3.ipv6_src = [word(8), word(12), word(16), word(20)];
            fib.__bindgen_anon_4.ipv6_dst = [word(24), word(28), word(32), word(36)];
            false
        }
        _ => return xdp_action::XDP_PASS,
    };
    let rc = fib::lookup(ctx, &mut fib);
    if rc != BPF_FIB_LKUP_RET_SUCCESS || rewrite(start, end, v4, &fib.dmac, &fib.smac).is_err() {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: plain helper call.
    unsafe { bpf_redirect(fib.ifindex, 0) as u32 }
}

/// What `firewall_xdp` hands to `firewall_xdp_fastpath`: the arrival
/// interface's `IFACES` entry, if it has one.
#[derive(Clone, Copy)]
pub struct FastPathArgs {
    pub cfg: Option<IfaceConfig>,
}

#[map]
pub static FASTPATH_ARGS: PerCpuArray<FastPathArgs> = PerCpuArray::with_max_entries(1, 0);
