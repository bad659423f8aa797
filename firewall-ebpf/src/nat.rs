//! Applying NAT rewrites to packets at TC.
//!
//! Rewrites use the kernel's `bpf_l3/l4_csum_replace` rather than the
//! software arithmetic in `firewall_common::csum`: a TCP or UDP packet built
//! by a local socket (or one crossing a veth from a container) carries
//! `CHECKSUM_PARTIAL`, where the checksum field holds only the pseudo-header
//! sum and the port is not covered yet. The helpers know which case they are
//! in; software updates from XDP would corrupt such packets.

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    programs::TcContext,
};
use firewall_common::{Counter, FAMILY_V4, nat::IfaceNat};

use crate::{
    conntrack::Rewrite,
    maps::{CONNTRACK, count},
    parse::{L4Kind, Packet},
};

/// Rewrites the source (`src`) or destination address and port (ICMP:
/// identifier) of an IPv4 packet in place.
#[inline(always)]
pub fn rewrite(ctx: &TcContext, p: &Packet, src: bool, addr: u32, port: u16) -> Result<(), ()> {
    if p.key.family != FAMILY_V4 {
        return Err(());
    }
    let l3 = p.l3_off as usize;
    let l4 = p.l4_off as usize;
    // SCTP's CRC32c and the protocols without ports (GRE, ESP, …) cover no
    // address: only the IPv4 header checksum changes, and their "port" (kept
    // or none) never does.
    let (csum_off, mangled, pseudo, ports) = match p.kind {
        L4Kind::Tcp => (l4 + 16, 0, true, true),
        L4Kind::Udp => (l4 + 6, BPF_F_MARK_MANGLED_0 as u64, true, true),
        L4Kind::IcmpQuery => (l4 + 2, 0, false, true),
        L4Kind::Sctp | L4Kind::Other => (0, 0, false, false),
        _ => return Err(()),
    };
    let (old_addr, addr_off) = if src {
        (p.key.src[0], l3 + 12)
    } else {
        (p.key.dst[0], l3 + 16)
    };
    if old_addr != addr {
        ctx.store(addr_off, &addr, 0).map_err(|_| ())?;
        ctx.l3_csum_replace(l3 + 10, old_addr as u64, addr as u64, 4)
            .map_err(|_| ())?;
        if pseudo {
            ctx.l4_csum_replace(
                csum_off,
                old_addr as u64,
                addr as u64,
                BPF_F_PSEUDO_HDR as u64 | mangled | 4,
            )
            .map_err(|_| ())?;
        }
    }
    let (old_port, port_off) = if p.kind == L4Kind::IcmpQuery {
        (p.key.sport, l4 + 4)
    } else if src {
        (p.key.sport, l4)
    } else {
        (p.key.dport, l4 + 2)
    };
    if old_port != port {
        if !ports {
            return Err(());
        }
        ctx.store(port_off, &port, 0).map_err(|_| ())?;
        ctx.l4_csum_replace(csum_off, old_port as u64, port as u64, mangled | 2)
            .map_err(|_| ())?;
    }
    Ok(())
}

/// Applies the rewrite of the packet's own entry if it is of the kind this
/// hook performs (`want`), after checking the binding is still sound: both
/// halves present, and a masquerade address still the interface's. Returns
/// whether it rewrote, or the drop reason when the packet must not go out.
#[inline(always)]
pub fn apply(
    ctx: &TcContext,
    p: &Packet,
    want: u8,
    out_nat: u8,
    out_addr: u32,
    out_ifindex: u32,
) -> Result<bool, Counter> {
    let Some(e) = CONNTRACK.get_ptr(&p.key) else {
        return Ok(false);
    };
    // SAFETY: map value pointer, valid for this run.
    let e = unsafe { &*e };
    if e.nat != want {
        return Ok(false);
    }
    let rw = Rewrite::of(e);
    if CONNTRACK.get_ptr(&e.peer).is_none() {
        // The LRU evicted the other half: replies could no longer be
        // translated back. Drop this half too so the next packet starts a
        // fresh, complete pair.
        let _ = CONNTRACK.remove(&p.key);
        return Err(Counter::DropNatPairBroken);
    }
    let src = want == firewall_common::nat::NatRewrite::Src as u8;
    if src
        && rw.ifindex == out_ifindex
        && out_nat == IfaceNat::Masquerade as u8
        && rw.addr != out_addr
    {
        let _ = CONNTRACK.remove(&e.peer);
        let _ = CONNTRACK.remove(&p.key);
        return Err(Counter::DropNatStale);
    }
    if rewrite(ctx, p, src, rw.addr, rw.port).is_err() {
        return Err(Counter::DropNatRewriteFailed);
    }
    count(if src {
        Counter::NatSrcRewritten
    } else {
        Counter::NatDstRewritten
    });
    Ok(true)
}

/// Translates an ICMPv4 error about a translated connection
/// (`nf_nat_icmp_reply_translation`): the outer source (`src`, egress) or
/// destination (ingress) address, and the opposite side of the quoted
/// packet — its destination address and port when the outer source
/// changes, its source when the outer destination changes — together with
/// the quoted IP header's checksum, the quoted transport checksum when the
/// quote includes it, and the ICMP checksum over the whole message.
///
/// Quoted checksums are full checksums (no offload applies to a quote), so
/// the software arithmetic of `firewall_common::csum` is right for them; the
/// ICMP checksum is updated with the helper for every word that changed.
#[inline(always)]
pub fn icmp_error(ctx: &TcContext, p: &Packet, src: bool, addr: u32, port: u16) -> Result<(), ()> {
    use firewall_common::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, csum};

    use crate::parse::LoadBytes;

    if p.key.family != FAMILY_V4 {
        return Err(());
    }
    let l3 = p.l3_off as usize;
    let icmp_csum = p.l4_off as usize + 2;
    let il3 = p.l4_off as usize + 8;
    let il4 = p.inner_l4_off as usize;

    // Outer address.
    let (old_outer, outer_off) = if src {
        (p.key.src[0], l3 + 12)
    } else {
        (p.key.dst[0], l3 + 16)
    };
    if old_outer != addr {
        ctx.store(outer_off, &addr, 0).map_err(|_| ())?;
        ctx.l3_csum_replace(l3 + 10, old_outer as u64, addr as u64, 4)
            .map_err(|_| ())?;
    }

    // Quoted address: the side that faces the translation.
    let (old_inner, inner_off) = if src {
        (p.inner.dst[0], il3 + 16)
    } else {
        (p.inner.src[0], il3 + 12)
    };
    let store16 = |off: usize, old: u16, new: u16| -> Result<(), ()> {
        ctx.store(off, &new, 0).map_err(|_| ())?;
        ctx.l4_csum_replace(icmp_csum, old as u64, new as u64, 2)
            .map_err(|_| ())
    };
    if old_inner != addr {
        ctx.store(inner_off, &addr, 0).map_err(|_| ())?;
        ctx.l4_csum_replace(icmp_csum, old_inner as u64, addr as u64, 4)
            .map_err(|_| ())?;
        let ck = u16::from_ne_bytes(LoadBytes::load::<2>(ctx, il3 + 10).map_err(|_| ())?);
        store16(il3 + 10, ck, csum::replace_u32(ck, old_inner, addr))?;
    }

    // Quoted port (ICMP: identifier) and the quoted transport checksum.
    let proto = p.inner.proto;
    let (old_port, port_off) = match proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            if src {
                (p.inner.dport, il4 + 2)
            } else {
                (p.inner.sport, il4)
            }
        }
        IPPROTO_ICMP => (p.inner.sport, il4 + 4),
        _ => return Ok(()),
    };
    if old_port != port {
        store16(port_off, old_port, port)?;
    }
    let l4_csum_off = match proto {
        IPPROTO_TCP => il4 + 16,
        IPPROTO_UDP => il4 + 6,
        _ => il4 + 2,
    };
    // The quote may stop before a TCP checksum (RFC 792 promises 8 bytes).
    let Ok(raw) = LoadBytes::load::<2>(ctx, l4_csum_off) else {
        return Ok(());
    };
    if l4_csum_off + 2 > p.l3_off as usize + p.l3_len as usize {
        return Ok(());
    }
    let old_ck = u16::from_ne_bytes(raw);
    let new_ck = match proto {
        IPPROTO_UDP => csum::udp_replace_u16(
            csum::udp_replace_u32(old_ck, old_inner, addr),
            old_port,
            port,
        ),
        IPPROTO_TCP => {
            csum::replace_u16(csum::replace_u32(old_ck, old_inner, addr), old_port, port)
        }
        _ => csum::replace_u16(old_ck, old_port, port),
    };
    if new_ck != old_ck {
        store16(l4_csum_off, old_ck, new_ck)?;
    }
    Ok(())
}
