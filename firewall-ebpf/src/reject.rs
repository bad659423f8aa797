//! REJECT at XDP: the refused packet is rewritten in place into the answer
//! (a TCP RST, or an ICMP error quoting it) and sent back out of the
//! interface it arrived on with XDP_TX. Header contents and checksums come
//! from `firewall_common::reject`; this module only moves bytes.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    macros::map,
    maps::PerCpuArray,
    programs::XdpContext,
};
use firewall_common::{
    Counter, FAMILY_V6, IPPROTO_TCP,
    reject::{
        ICMP4_OVERHEAD, ICMP4_QUOTE_L4, ICMP6_OVERHEAD, may_answer, rst_numbers, write_icmp_error,
        write_ipv4_header, write_ipv6_header, write_tcp_rst,
    },
};

use crate::{
    maps::count,
    parse::{Packet, opaque},
    rules::Reject,
};

/// Longest L2 header the parser accepts: Ethernet and two VLAN tags.
const MAX_L2: usize = 22;
/// Most of an IPv6 packet an ICMPv6 error quotes here (a multiple of four
/// for `bpf_csum_diff`; RFC 4443 allows any prefix up to the minimum MTU).
const ICMP6_QUOTE_MAX: usize = 256;

#[inline(always)]
pub fn xdp(ctx: &XdpContext, p: &Packet, r: Reject) -> u32 {
    // SAFETY: [u32; 4] and [u8; 16] have the same size; the words hold
    // network-order bytes.
    let (src, dst): ([u8; 16], [u8; 16]) = unsafe {
        (
            core::mem::transmute(p.key.src),
            core::mem::transmute(p.key.dst),
        )
    };
    let v6 = p.key.family == FAMILY_V6;
    let tcp = p.key.proto == IPPROTO_TCP;
    let sent = if !may_answer(v6, &dst, p.tcp_flags, tcp) {
        Err(())
    } else if r.rst && tcp {
        rst(ctx, p, v6, &src, &dst)
    } else if v6 {
        icmp6(ctx, p, &src, &dst, r)
    } else {
        icmp4(ctx, p, &src, &dst, r)
    };
    match sent {
        Ok(()) => {
            count(Counter::DropReject);
            xdp_action::XDP_TX
        }
        Err(()) => {
            count(Counter::DropRejectNoReply);
            xdp_action::XDP_DROP
        }
    }
}

/// A checked pointer to `N` bytes at `off`.
#[inline(always)]
fn at<const N: usize>(ctx: &XdpContext, off: usize) -> Result<*mut [u8; N], ()> {
    let off = opaque(off);
    // Small enough that offset plus size stays within the verifier's
    // packet range (MAX_PACKET_OFF).
    if off > 0x3fff {
        return Err(());
    }
    let start = ctx.data();
    if start + off + N > ctx.data_end() {
        return Err(());
    }
    Ok((start + off) as *mut [u8; N])
}

#[inline(always)]
fn swap_macs(ctx: &XdpContext) -> Result<(), ()> {
    let eth = at::<12>(ctx, 0)?;
    // SAFETY: bounds-checked by `at`; the only reference to those bytes.
    let eth = unsafe { &mut *eth };
    let mut swapped = [0u8; 12];
    swapped[..6].copy_from_slice(&eth[6..]);
    swapped[6..].copy_from_slice(&eth[..6]);
    *eth = swapped;
    Ok(())
}

/// The `N` bytes at `off`, to build a header in place.
#[inline(always)]
fn slot<const N: usize>(ctx: &XdpContext, off: usize) -> Result<&'static mut [u8; N], ()> {
    let p = at::<N>(ctx, off)?;
    // SAFETY: bounds-checked by `at`; valid until the packet is resized,
    // and each caller is done with it before that.
    Ok(unsafe { &mut *p })
}

/// Cuts the frame to `len` bytes.
#[inline(always)]
fn truncate(ctx: &XdpContext, len: usize) -> Result<(), ()> {
    let cur = ctx.data_end() - ctx.data();
    if len > cur {
        return Err(());
    }
    let delta = -((cur - len) as i32);
    // SAFETY: the context is valid for this run.
    if delta != 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx as *mut _, delta) } != 0 {
        return Err(());
    }
    Ok(())
}

#[inline(never)]
fn rst(ctx: &XdpContext, p: &Packet, v6: bool, src: &[u8; 16], dst: &[u8; 16]) -> Result<(), ()> {
    let l3 = p.l3_off as usize;
    let l4 = p.l4_off as usize;
    let seq_ack = at::<8>(ctx, l4 + 4)?;
    // SAFETY: bounds-checked by `at`.
    let b = unsafe { *seq_ack };
    let seq = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let ack = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
    let payload = (l3 + p.l3_len as usize).saturating_sub(p.payload_off as usize) as u32;
    let (rseq, rack, flags) = rst_numbers(seq, ack, p.tcp_flags, payload);
    let sport = u16::from_be(p.key.dport);
    let dport = u16::from_be(p.key.sport);
    // Answer from the refused packet's destination to its source.
    swap_macs(ctx)?;
    let ip_len = if v6 {
        write_ipv6_header(slot(ctx, l3)?, dst, src, IPPROTO_TCP, 20);
        40
    } else {
        write_ipv4_header(slot(ctx, l3)?, dst, src, IPPROTO_TCP, 40);
        20
    };
    write_tcp_rst(
        slot(ctx, l3 + ip_len)?,
        v6,
        dst,
        src,
        sport,
        dport,
        rseq,
        rack,
        flags,
    );
    truncate(ctx, l3 + ip_len + 20)
}

/// Sum of `len` bytes at `off` (a multiple of four, at most
/// `ICMP6_QUOTE_MAX`), word by word: `bpf_csum_diff` would need the
/// verifier to know the packet holds `off + len` bytes for a variable
/// `len`, which it cannot relate to one bounds check.
#[inline(always)]
fn sum_at(ctx: &XdpContext, off: usize, len: usize) -> Result<u32, ()> {
    let mut acc: u32 = 0;
    let mut i = 0;
    while i < ICMP6_QUOTE_MAX / 4 {
        if i * 4 >= len {
            break;
        }
        let w = at::<4>(ctx, off + i * 4)?;
        // SAFETY: bounds-checked by `at`.
        let b = unsafe { *w };
        acc += u16::from_ne_bytes([b[0], b[1]]) as u32 + u16::from_ne_bytes([b[2], b[3]]) as u32;
        i += 1;
    }
    Ok(acc)
}

/// Moves the L2 header `by` bytes towards the (new) start after the head
/// grew by `by`, and swaps its MAC addresses.
#[inline(always)]
fn grow_head(ctx: &XdpContext, l3: usize, by: usize) -> Result<(), ()> {
    if l3 > MAX_L2 {
        return Err(());
    }
    // SAFETY: the context is valid for this run.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx as *mut _, -(by as i32)) } != 0 {
        return Err(());
    }
    let from = at::<MAX_L2>(ctx, by)?;
    let to = at::<MAX_L2>(ctx, 0)?;
    // SAFETY: both bounds-checked; `by` ≥ MAX_L2 so they do not overlap.
    let (from, to) = unsafe { (&*from, &mut *to) };
    let mut i = 0;
    while i < MAX_L2 {
        if i < l3 {
            to[i] = from[i];
        }
        i += 1;
    }
    swap_macs(ctx)
}

#[inline(never)]
fn icmp4(
    ctx: &XdpContext,
    p: &Packet,
    src: &[u8; 16],
    dst: &[u8; 16],
    r: Reject,
) -> Result<(), ()> {
    let l3 = p.l3_off as usize;
    // The quote: the refused packet's IP header and 8 bytes of what follows.
    let quote = (p.l4_off - p.l3_off) as usize + ICMP4_QUOTE_L4;
    if quote > p.l3_len as usize || quote % 4 != 0 {
        return Err(());
    }
    let qsum = sum_at(ctx, l3, quote)?;
    grow_head(ctx, l3, ICMP4_OVERHEAD)?;
    write_ipv4_header(
        slot(ctx, l3)?,
        dst,
        src,
        firewall_common::IPPROTO_ICMP,
        (ICMP4_OVERHEAD + quote) as u16,
    );
    write_icmp_error(
        slot(ctx, l3 + 20)?,
        false,
        dst,
        src,
        r.icmp_type,
        r.icmp_code,
        qsum,
        quote as u32,
    );
    truncate(ctx, l3 + ICMP4_OVERHEAD + quote)
}

#[inline(never)]
fn icmp6(
    ctx: &XdpContext,
    p: &Packet,
    src: &[u8; 16],
    dst: &[u8; 16],
    r: Reject,
) -> Result<(), ()> {
    let l3 = p.l3_off as usize;
    let mut quote = (p.l3_len as usize) & !3;
    if quote > ICMP6_QUOTE_MAX {
        quote = ICMP6_QUOTE_MAX;
    }
    if quote < 48 {
        return Err(());
    }
    let qsum = sum_at(ctx, l3, quote)?;
    grow_head(ctx, l3, ICMP6_OVERHEAD)?;
    write_ipv6_header(
        slot(ctx, l3)?,
        dst,
        src,
        firewall_common::IPPROTO_ICMPV6,
        (8 + quote) as u16,
    );
    write_icmp_error(
        slot(ctx, l3 + 40)?,
        true,
        dst,
        src,
        r.icmp_type,
        r.icmp_code,
        qsum,
        quote as u32,
    );
    truncate(ctx, l3 + ICMP6_OVERHEAD + quote)
}

/// The REJECT answer `firewall_xdp` hands to `firewall_xdp_reject`.
#[map]
pub static REJECT_ARGS: PerCpuArray<Reject> = PerCpuArray::with_max_entries(1, 0);
