//! Admission: what a first packet must pass, after policy accepted it and
//! before its connection is created.
//!
//! XDP decides before the stack has seen the packet, and the stack may
//! still drop it: netfilter only confirms a connection when its first
//! packet leaves (`nf_conntrack_confirm`), so a packet the kernel discards
//! leaves nothing behind. Here the connection is made in XDP, so every
//! reason the stack would have to discard the packet is checked first:
//! a martian or own source, a source with no way back, a destination the
//! input path refuses, a bad IPv4 header checksum, malformed options or a
//! source route, a spent TTL or hop limit on a forwarded packet, no route,
//! and a bad transport checksum (which netfilter's `nf_conntrack_checksum`
//! calls INVALID). Only packets from outside the host are checked: what
//! the host itself sends is trusted, as netfilter trusts it.
//!
//! Established packets never come here: they pay for none of this.

use aya_ebpf::{
    EbpfContext, cty::c_void, helpers::generated::bpf_loop, macros::map, maps::PerCpuArray,
};
use firewall_common::{
    Counter, FAMILY_V4, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
    csum::{L4Checksum, fold, pseudo_sum_v4, pseudo_sum_v6, verify_l4},
    ip::{
        Ipv4Options, MAX_IPV4_OPTIONS, OptionWalk, martian_destination_v4, martian_destination_v6,
        martian_source_v4, martian_source_v6, v6_is_link_local,
    },
    nd::iface_flags,
};

use crate::{
    csum,
    fib::{self, Outcome},
    parse::{L4Kind, LoadBytes, Packet, pkt_flags},
};

/// What becomes of a first packet policy accepted.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Create its connection.
    Create,
    /// Drop it, counted.
    Drop(Counter),
    /// Let the stack have it (for its ICMP error), but make no connection.
    PassUntracked(Counter),
}

/// Where the packet arrived.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Arrival {
    pub ifindex: u32,
    /// The interface's `nd::iface_flags`.
    pub flags: u8,
}

/// Checks a first packet from outside the host. `route` is what the
/// policy's lookup found (`Outcome::Unknown` if it made none); `dnat` says
/// the packet will be translated to another destination (a port forward,
/// or a data connection following its master), so its route is not known
/// yet.
#[inline(always)]
pub fn first_packet<C: EbpfContext + LoadBytes>(
    ctx: &C,
    p: &Packet,
    at: Arrival,
    route: fib::Route,
    dnat: bool,
) -> Admission {
    let v4 = p.key.family == FAMILY_V4;
    let martian = if v4 {
        martian_source_v4(p.key.src[0], p.key.dst[0]) || martian_destination_v4(p.key.dst[0])
    } else {
        martian_source_v6(&p.key.src) || martian_destination_v6(&p.key.dst)
    };
    if martian {
        return Admission::Drop(Counter::DropMartian);
    }
    if let Err(c) = ip_header(ctx, p) {
        return Admission::Drop(c);
    }
    if dnat {
        // Without its translation the stack would deliver it locally.
        if p.ttl <= 1 {
            return Admission::Drop(Counter::DropTtlExpired);
        }
    } else {
        let route = if route.outcome == Outcome::Unknown {
            fib::route(ctx, &p.key, at.ifindex, false)
        } else {
            route
        };
        match route.outcome {
            Outcome::Forward => {
                if p.ttl <= 1 {
                    return Admission::PassUntracked(Counter::PassTtlExpired);
                }
                // `ip6_forward` answers "beyond scope" instead.
                if !v4 && v6_is_link_local(&p.key.src) {
                    return Admission::PassUntracked(Counter::PassUnroutable);
                }
            }
            Outcome::Unroutable => return Admission::PassUntracked(Counter::PassUnroutable),
            _ => {}
        }
    }
    // The way back: a source that routes to this host (its own address, a
    // broadcast address) or nowhere is one the input path refuses
    // (`fib_validate_source`), or one no reply could reach.
    // An IPv6 link-local source is on the link by definition (and the
    // helper never routes to one).
    if v4 || !v6_is_link_local(&p.key.src) {
        let back = fib::route(ctx, &p.key, at.ifindex, true);
        if matches!(back.outcome, Outcome::Local | Outcome::Unroutable) {
            return Admission::Drop(Counter::DropMartian);
        }
    }
    match transport_checksum(ctx, p) {
        Some(L4Checksum::Valid) => Admission::Create,
        Some(L4Checksum::Partial) if at.flags & iface_flags::VIRTUAL != 0 => Admission::Create,
        Some(_) => Admission::Drop(Counter::DropBadChecksum),
        None => Admission::Drop(Counter::DropMalformed),
    }
}

/// The IPv4 header checksum and options (`ip_rcv_core`,
/// `ip_options_compile`), or an IPv6 routing header with segments left.
#[inline(always)]
pub fn ip_header<C: LoadBytes>(ctx: &C, p: &Packet) -> Result<(), Counter> {
    if p.key.family != FAMILY_V4 {
        if p.flags & pkt_flags::SOURCE_ROUTE != 0 {
            return Err(Counter::DropIpOptions);
        }
        return Ok(());
    }
    let ihl = (p.l4_off - p.l3_off) as usize;
    let Some(s) = csum::sum(ctx, p.l3_off as usize, ihl) else {
        return Err(Counter::DropMalformed);
    };
    if fold(s) != 0xffff {
        return Err(Counter::DropBadIpChecksum);
    }
    if ihl > 20 && ipv4_options(ihl - 20) != Ipv4Options::Ok {
        return Err(Counter::DropIpOptions);
    }
    Ok(())
}

/// The options of the header `ip_header` just summed (the last chunk),
/// walked one option per `bpf_loop` call.
#[inline(always)]
fn ipv4_options(len: usize) -> Ipv4Options {
    let Some(w) = OPTION_WALK.get_ptr_mut(0) else {
        return Ipv4Options::Malformed;
    };
    // SAFETY: this CPU's slot.
    unsafe { *w = OptionWalk::new(len) };
    // SAFETY: callback as bpf_loop expects; no context needed.
    unsafe {
        bpf_loop(
            MAX_IPV4_OPTIONS as u32,
            option_step as *mut c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    // A fresh lookup: LLVM must not reuse what it wrote before the call.
    OPTION_WALK
        .get(0)
        .map_or(Ipv4Options::Malformed, |w| w.finish())
}

#[map]
static OPTION_WALK: PerCpuArray<OptionWalk> = PerCpuArray::with_max_entries(1, 0);

/// `bpf_loop` callback: one option. Returns 1 once the walk is over.
#[inline(never)]
extern "C" fn option_step(_index: u64, _ctx: *mut c_void) -> i64 {
    let (Some(w), Some(buf)) = (OPTION_WALK.get_ptr_mut(0), csum::last_chunk()) else {
        return 1;
    };
    let Some(opts) = buf.get(20..20 + MAX_IPV4_OPTIONS) else {
        return 1;
    };
    let Ok(opts) = <&[u8; MAX_IPV4_OPTIONS]>::try_from(opts) else {
        return 1;
    };
    // SAFETY: this CPU's slot.
    let w = unsafe { &mut *w };
    i64::from(w.step(opts).is_some())
}

/// The transport checksum of a TCP, UDP or ICMP packet; `Valid` for
/// protocols without one this firewall checks (SCTP's CRC32c is not:
/// computing it costs more than the packet is worth here) and for the first
/// fragment of a datagram. `None` when the bytes are not all there.
#[inline(always)]
pub fn transport_checksum<C: LoadBytes>(ctx: &C, p: &Packet) -> Option<L4Checksum> {
    let l4 = p.l4_off as usize;
    let l3_end = p.l3_off as usize + p.l3_len as usize;
    if l4 > l3_end {
        return None;
    }
    let proto = p.key.proto;
    let (field_off, len) = match proto {
        IPPROTO_TCP => (16, l3_end - l4),
        IPPROTO_UDP => {
            let h: [u8; 8] = ctx.load(l4).ok()?;
            (6, u16::from_be_bytes([h[4], h[5]]) as usize)
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => (2, l3_end - l4),
        _ => return Some(L4Checksum::Valid),
    };
    if !matches!(
        p.kind,
        L4Kind::Tcp | L4Kind::Udp | L4Kind::IcmpQuery | L4Kind::IcmpError
    ) {
        return Some(L4Checksum::Valid);
    }
    // The checksum of a fragmented datagram covers fragments not seen yet;
    // netfilter checks it after reassembly, which XDP cannot do.
    if p.flags & pkt_flags::FIRST_FRAGMENT != 0 {
        return Some(L4Checksum::Valid);
    }
    let field = u16::from_ne_bytes(ctx.load::<2>(l4 + field_off).ok()?);
    let v4 = p.key.family == FAMILY_V4;
    if proto == IPPROTO_UDP && field == 0 {
        // "No checksum" is allowed over IPv4 only (RFC 8200 §8.1).
        return Some(if v4 {
            L4Checksum::Valid
        } else {
            L4Checksum::Bad
        });
    }
    let pseudo = if proto == IPPROTO_ICMP {
        0
    } else if v4 {
        pseudo_sum_v4(p.key.src[0], p.key.dst[0], proto, len as u16)
    } else {
        pseudo_sum_v6(&p.key.src, &p.key.dst, proto, len as u32)
    };
    let segment = csum::sum(ctx, l4, len)?;
    Some(verify_l4(field, pseudo, segment))
}
